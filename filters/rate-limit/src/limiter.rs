//! The decision: a [`Limiter`] takes the rule slots a request hits and says
//! admit or deny, with what each rule saw. [`LocalLimiter`] keeps the
//! buckets in proxy-wasm shared data, exact across worker VMs through
//! compare-and-swap. No proxy-wasm import: the store is a trait
//! ([`SharedStore`]) the filter implements with host calls and tests with a
//! map.
//!
//! Room for a global mode: a limiter that asks Envoy's
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` is another
//! producer of the same [`Decision`]; the filter already separates deciding
//! from applying a decision, so that mode adds a paused path (send the gRPC
//! call, return `Action::Pause`, build the [`Decision`] in
//! `on_grpc_call_response`, or from a [`LocalLimiter`] as fallback) without
//! changing this one.
//!
//! # Exactness
//! One request is two phases. *Check*: read every hit slot (one
//! `get_shared_data` each) and refill it to "now"; if any rule has no token,
//! deny without writing anything, so a denied request consumes no token from
//! any rule. *Commit*: write each slot back with one token fewer, with the
//! CAS stamp from the read. A CAS mismatch (another worker wrote in between)
//! re-reads that slot and retries, at most [`CAS_ATTEMPTS`] times; if the
//! re-read finds the bucket empty, tokens already taken from earlier rules
//! are given back (also by CAS) and the request is denied. Every write of an
//! existing slot is therefore a read-modify-write against the value it was
//! computed from, so admissions never exceed `max_tokens` plus the fills due,
//! whatever the number of workers.
//!
//! Shared data has no atomic "create if absent" (a write to a missing key
//! ignores the CAS stamp), so the first write of a slot takes a per-rule lock
//! key by CAS, re-checks that the slot is still missing, writes it and
//! releases the lock; a lock older than [`LOCK_TTL_NS`] (its holder trapped)
//! may be taken over. This costs a few extra host calls once per slot
//! lifetime; the common case stays one get and one set per applicable rule.
//!
//! # Collisions (bounded memory)
//! A rule has at most `max_keys` slots and shared data cannot delete, so two
//! keys can meet in one slot. A slot stores the owning key's fingerprint. A
//! newcomer whose slot holds a *full* bucket takes it over (a full bucket is
//! indistinguishable from a new one, so nothing is lost). Otherwise the
//! newcomer *shares* the owner's bucket until it is full again: each key
//! still gets at most its own limit (fail safe), but two busy keys in one
//! slot limit each other; the `collision` flag (and README sizing advice)
//! make that visible.

use crate::bucket::{BucketSpec, Slot};
use crate::config::OnContention;

/// Attempts per rule at a CAS write (and at giving a token back) before
/// `on_contention` decides.
pub const CAS_ATTEMPTS: u32 = 8;
/// A slot-creation lock older than this (host-clock ns) is considered
/// abandoned.
pub const LOCK_TTL_NS: u64 = 1_000_000_000;

/// One rule's bucket slot that a request charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Rule position in the config.
    pub rule: u16,
    /// Slot within the rule, `< max_keys` (0 for a keyless rule).
    pub slot: u32,
    /// Fingerprint of the request's key.
    pub fingerprint: u64,
}

/// What one rule did with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOutcome {
    /// A token was taken.
    Allowed,
    /// No token: the rule denied the request.
    Limited,
    /// No token, but shadow mode let the request through.
    ShadowLimited,
    /// CAS retries ran out; `on_contention` decided.
    Contention,
    /// The rule had a token but another rule denied the request, so none was
    /// taken (or it was given back).
    NotCharged,
}

/// One rule's part of a [`Decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleReport {
    /// Rule position in the config.
    pub rule: u16,
    /// What the rule did.
    pub outcome: RuleOutcome,
    /// The slot held another key's partly used bucket, which this request
    /// shared.
    pub collision: bool,
    /// Tokens left after this request.
    pub remaining: u32,
    /// Nanoseconds until the rule's bucket next gains tokens.
    pub reset_ns: u64,
}

/// Admit or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request through.
    Admit,
    /// Answer it with the configured status.
    Deny,
}

/// A limiter's answer for one request. Reused across requests to avoid
/// allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Admit or deny.
    pub verdict: Verdict,
    /// One report per hit, in hit order.
    pub reports: Vec<RuleReport>,
}

impl Default for Decision {
    fn default() -> Self {
        Self {
            verdict: Verdict::Admit,
            reports: Vec::new(),
        }
    }
}

impl Decision {
    /// Nanoseconds until every rule that denied has a token again: the
    /// longest reset among them (contention denials count with their reset).
    pub fn retry_after_ns(&self) -> u64 {
        self.reports
            .iter()
            .filter(|r| matches!(r.outcome, RuleOutcome::Limited | RuleOutcome::Contention))
            .map(|r| r.reset_ns)
            .max()
            .unwrap_or(1)
    }
}

/// Decides requests.
pub trait Limiter {
    /// Decides a request that hits `hits` at host time `now_ns`, writing the
    /// answer into `decision` (whose previous content is discarded).
    fn decide(&mut self, hits: &[Hit], now_ns: u64, decision: &mut Decision);
}

/// Why a shared-data write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// The CAS stamp is stale: someone wrote since our read.
    CasMismatch,
    /// Any other host error.
    Failed,
}

/// proxy-wasm shared data: `proxy_get_shared_data` / `proxy_set_shared_data`.
pub trait SharedStore {
    /// The value and CAS stamp of `key`, `None` when absent.
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `key` if its stamp is still `cas` (0: unconditionally; a
    /// missing key is always written, as in proxy-wasm hosts).
    ///
    /// # Errors
    /// [`SetError`].
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError>;
}

/// A shared-data key (`rate_limit.<rule>.<slot>` or `rate_limit.<rule>.lock`)
/// built on the stack: rule names are at most 64 bytes.
#[derive(Clone, Copy)]
struct KeyBuf {
    bytes: [u8; 96],
    len: usize,
}

impl KeyBuf {
    fn new(prefix: &str, slot: Option<u32>) -> Self {
        use std::io::Write;
        let mut bytes = [0u8; 96];
        let mut cursor = std::io::Cursor::new(&mut bytes[..]);
        // Cannot fail: prefix <= 76 bytes (validated names) plus 10 digits.
        let _ = match slot {
            Some(slot) => write!(cursor, "{prefix}{slot}"),
            None => write!(cursor, "{prefix}lock"),
        };
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        Self { bytes, len }
    }

    fn as_str(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

/// One rule as the limiter sees it.
#[derive(Debug, Clone)]
struct LimitRule {
    /// `rate_limit.<name>.`
    key_prefix: String,
    spec: BucketSpec,
}

/// A hit during one decision.
#[derive(Clone, Copy)]
struct Pending {
    hit: Hit,
    key: KeyBuf,
    /// CAS stamp of the read; `None` when the slot did not exist.
    cas: Option<u32>,
    /// The bucket as of now (refilled), with its owner.
    slot: Slot,
    collision: bool,
    outcome: RuleOutcome,
}

enum Charge {
    Done,
    Empty,
    Contended,
}

enum Create {
    Created,
    Exists,
    Busy,
}

/// Token buckets in shared data, exact across worker VMs.
pub struct LocalLimiter<S> {
    rules: Vec<LimitRule>,
    shadow: bool,
    on_contention: OnContention,
    store: S,
    pending: Vec<Pending>,
}

impl<S: SharedStore> LocalLimiter<S> {
    /// A limiter for `rules` (name and bucket, in config order).
    pub fn new(
        rules: impl IntoIterator<Item = (String, BucketSpec)>,
        shadow: bool,
        on_contention: OnContention,
        store: S,
    ) -> Self {
        Self {
            rules: rules
                .into_iter()
                .map(|(name, spec)| LimitRule {
                    key_prefix: format!("rate_limit.{name}."),
                    spec,
                })
                .collect(),
            shadow,
            on_contention,
            store,
            pending: Vec::new(),
        }
    }

    /// The store (tests inspect it).
    pub fn store(&self) -> &S {
        &self.store
    }

    fn spec(&self, rule: u16) -> Option<BucketSpec> {
        self.rules.get(usize::from(rule)).map(|r| r.spec)
    }

    /// Reads (or re-reads) a slot and refills it to `now_ns`.
    fn load(&mut self, pending: &mut Pending, now_ns: u64) {
        let Some(spec) = self.spec(pending.hit.rule) else {
            return;
        };
        let fingerprint = pending.hit.fingerprint;
        let fresh = Slot {
            fingerprint,
            state: spec.fresh(now_ns),
        };
        (pending.cas, pending.slot, pending.collision) = match self.store.get(pending.key.as_str())
        {
            None => (None, fresh, false),
            // Not ours (another version's layout): start over, by CAS.
            Some((bytes, cas)) => match Slot::decode(&bytes) {
                None => (Some(cas), fresh, false),
                Some(stored) => {
                    let state = spec.refill(stored.state, now_ns);
                    if state.tokens >= spec.max_tokens {
                        // Full: the request's key (re)claims the slot.
                        (Some(cas), Slot { fingerprint, state }, false)
                    } else {
                        let slot = Slot {
                            fingerprint: stored.fingerprint,
                            state,
                        };
                        (Some(cas), slot, stored.fingerprint != fingerprint)
                    }
                }
            },
        };
    }

    /// Takes one token from `pending`'s slot, re-reading on CAS mismatch.
    fn charge(&mut self, pending: &mut Pending, now_ns: u64) -> Charge {
        for _ in 0..CAS_ATTEMPTS {
            if pending.slot.state.tokens == 0 {
                return Charge::Empty;
            }
            let mut next = pending.slot;
            next.state.tokens -= 1;
            match pending.cas {
                Some(cas) => {
                    if self
                        .store
                        .set(pending.key.as_str(), &next.encode(), cas)
                        .is_ok()
                    {
                        pending.slot = next;
                        return Charge::Done;
                    }
                    self.load(pending, now_ns);
                }
                None => match self.create(pending, &next, now_ns) {
                    Create::Created => {
                        pending.slot = next;
                        return Charge::Done;
                    }
                    Create::Exists | Create::Busy => self.load(pending, now_ns),
                },
            }
        }
        Charge::Contended
    }

    /// First write of a missing slot, under the rule's lock (module doc).
    fn create(&mut self, pending: &Pending, value: &Slot, now_ns: u64) -> Create {
        let Some(rule) = self.rules.get(usize::from(pending.hit.rule)) else {
            return Create::Busy;
        };
        let lock = KeyBuf::new(&rule.key_prefix, None);
        let lock = lock.as_str();
        match self.store.get(lock) {
            None => {
                // Make the lock exist (unlocked) so it can be taken by CAS.
                let _ = self.store.set(lock, &0u64.to_le_bytes(), 0);
                return Create::Busy;
            }
            Some((held_until, cas)) => {
                let held_until = <[u8; 8]>::try_from(held_until.as_slice())
                    .map(u64::from_le_bytes)
                    .unwrap_or(0);
                if held_until > now_ns {
                    return Create::Busy;
                }
                let until = now_ns.saturating_add(LOCK_TTL_NS);
                if self.store.set(lock, &until.to_le_bytes(), cas).is_err() {
                    return Create::Busy;
                }
            }
        }
        let key = pending.key.as_str();
        let result = if self.store.get(key).is_some() {
            Create::Exists
        } else if self.store.set(key, &value.encode(), 0).is_ok() {
            Create::Created
        } else {
            Create::Busy
        };
        // We hold the lock, so an unconditional release is ours to make.
        let _ = self.store.set(lock, &0u64.to_le_bytes(), 0);
        result
    }

    /// Gives back the token `pending` took; `false` when CAS retries ran out
    /// (the token is lost: fewer admissions, never more).
    fn refund(&mut self, pending: &Pending, now_ns: u64) -> bool {
        let Some(spec) = self.spec(pending.hit.rule) else {
            return false;
        };
        for _ in 0..CAS_ATTEMPTS {
            let Some((bytes, cas)) = self.store.get(pending.key.as_str()) else {
                return false;
            };
            let Some(mut slot) = Slot::decode(&bytes) else {
                return false;
            };
            slot.state = spec.refill(slot.state, now_ns);
            slot.state.tokens = slot.state.tokens.saturating_add(1).min(spec.max_tokens);
            if self
                .store
                .set(pending.key.as_str(), &slot.encode(), cas)
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// Gives back every token taken so far in this decision.
    fn refund_charged(&mut self, pending: &mut [Pending], now_ns: u64) {
        for p in pending.iter_mut() {
            if p.outcome == RuleOutcome::Allowed {
                p.outcome = if self.refund(p, now_ns) {
                    p.slot.state.tokens = p.slot.state.tokens.saturating_add(1);
                    RuleOutcome::NotCharged
                } else {
                    RuleOutcome::Contention
                };
            }
        }
    }

    fn commit(&mut self, pending: &mut [Pending], now_ns: u64) -> Verdict {
        for i in 0..pending.len() {
            let Some(p) = pending.get_mut(i) else { break };
            if p.slot.state.tokens == 0 {
                // Only reached in shadow mode: enforcement denied earlier.
                p.outcome = RuleOutcome::ShadowLimited;
                continue;
            }
            let mut current = *p;
            let charge = self.charge(&mut current, now_ns);
            let enforce_deny = match charge {
                Charge::Done => {
                    current.outcome = RuleOutcome::Allowed;
                    false
                }
                Charge::Empty if self.shadow => {
                    current.outcome = RuleOutcome::ShadowLimited;
                    false
                }
                Charge::Empty => {
                    current.outcome = RuleOutcome::Limited;
                    true
                }
                Charge::Contended => {
                    current.outcome = RuleOutcome::Contention;
                    self.on_contention == OnContention::Deny && !self.shadow
                }
            };
            if let Some(p) = pending.get_mut(i) {
                *p = current;
            }
            if enforce_deny {
                let (before, _) = pending.split_at_mut(i);
                self.refund_charged(before, now_ns);
                return Verdict::Deny;
            }
        }
        Verdict::Admit
    }
}

impl<S: SharedStore> Limiter for LocalLimiter<S> {
    fn decide(&mut self, hits: &[Hit], now_ns: u64, decision: &mut Decision) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.clear();
        for &hit in hits {
            let Some(rule) = self.rules.get(usize::from(hit.rule)) else {
                continue;
            };
            let mut p = Pending {
                hit,
                key: KeyBuf::new(&rule.key_prefix, Some(hit.slot)),
                cas: None,
                slot: Slot {
                    fingerprint: hit.fingerprint,
                    state: rule.spec.fresh(now_ns),
                },
                collision: false,
                outcome: RuleOutcome::NotCharged,
            };
            self.load(&mut p, now_ns);
            pending.push(p);
        }
        let short = pending.iter().any(|p| p.slot.state.tokens == 0);
        decision.verdict = if short && !self.shadow {
            // Check phase denied: nothing is written, nothing consumed.
            for p in &mut pending {
                if p.slot.state.tokens == 0 {
                    p.outcome = RuleOutcome::Limited;
                }
            }
            Verdict::Deny
        } else {
            self.commit(&mut pending, now_ns)
        };
        decision.reports.clear();
        for p in &pending {
            let reset_ns = self
                .spec(p.hit.rule)
                .map_or(1, |spec| spec.next_fill_in_ns(p.slot.state, now_ns));
            decision.reports.push(RuleReport {
                rule: p.hit.rule,
                outcome: p.outcome,
                collision: p.collision,
                remaining: p.slot.state.tokens,
                reset_ns,
            });
        }
        self.pending = pending;
    }
}

#[cfg(test)]
mod tests;
