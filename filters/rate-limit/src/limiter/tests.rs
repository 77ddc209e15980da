//! Native tests of the limiter against an in-memory shared-data store that
//! can run other workers' requests in the middle of a request's host calls.

use super::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;

type Hook = Box<dyn FnOnce()>;

/// Shared data as proxy-wasm hosts keep it: CAS stamps start at 1 and change
/// on every write; a stale stamp on an existing key is refused.
#[derive(Default)]
struct Memory {
    map: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

/// One worker's handle on the shared memory. `hooks` run before this
/// handle's nth host call (counted in `ops`): another worker's request
/// interleaved between our get and set.
#[derive(Clone, Default)]
struct MemStore {
    memory: Rc<RefCell<Memory>>,
    ops: Rc<Cell<u32>>,
    hooks: Rc<RefCell<Vec<(u32, Hook)>>>,
    gets: Rc<Cell<u32>>,
    sets: Rc<Cell<u32>>,
}

impl MemStore {
    fn worker(&self) -> Self {
        Self {
            memory: Rc::clone(&self.memory),
            ..Self::default()
        }
    }

    fn before_op(&self) {
        let op = self.ops.get();
        self.ops.set(op + 1);
        let hook = {
            let mut hooks = self.hooks.borrow_mut();
            hooks
                .iter()
                .position(|(at, _)| *at == op)
                .map(|i| hooks.remove(i).1)
        };
        if let Some(hook) = hook {
            hook();
        }
    }

    /// Runs `hook` before this handle's `k`th host call from now.
    fn interleave(&self, k: u32, hook: Hook) {
        self.hooks.borrow_mut().push((self.ops.get() + k, hook));
    }

    fn take_unrun_hooks(&self) -> Vec<Hook> {
        self.hooks.borrow_mut().drain(..).map(|(_, h)| h).collect()
    }

    fn keys(&self) -> usize {
        self.memory.borrow().map.len()
    }

    fn slot(&self, key: &str) -> Option<Slot> {
        let memory = self.memory.borrow();
        memory.map.get(key).and_then(|(v, _)| Slot::decode(v))
    }
}

impl SharedStore for MemStore {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.before_op();
        self.gets.set(self.gets.get() + 1);
        self.memory.borrow().map.get(key).cloned()
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        self.before_op();
        self.sets.set(self.sets.get() + 1);
        let mut memory = self.memory.borrow_mut();
        if let Some((_, current)) = memory.map.get(key) {
            if cas != 0 && cas != *current {
                return Err(SetError::CasMismatch);
            }
        }
        memory.next_cas += 1;
        let stamp = memory.next_cas;
        memory.map.insert(key.to_owned(), (value.to_vec(), stamp));
        Ok(())
    }
}

fn spec(max: u32, per_fill: u32, interval_ns: u64) -> BucketSpec {
    BucketSpec {
        max_tokens: max,
        tokens_per_fill: per_fill,
        interval_ns,
    }
}

fn limiter(
    rules: &[(&str, BucketSpec)],
    shadow: bool,
    on_contention: OnContention,
    store: MemStore,
) -> LocalLimiter<MemStore> {
    LocalLimiter::new(
        rules.iter().map(|(n, s)| ((*n).to_owned(), *s)),
        shadow,
        on_contention,
        store,
    )
}

fn hit(rule: u16, slot: u32, fingerprint: u64) -> Hit {
    Hit {
        rule,
        slot,
        fingerprint,
    }
}

fn decide(limiter: &mut LocalLimiter<MemStore>, hits: &[Hit], now: u64) -> Decision {
    let mut decision = Decision::default();
    limiter.decide(hits, now, &mut decision);
    decision
}

fn outcomes(decision: &Decision) -> Vec<RuleOutcome> {
    decision.reports.iter().map(|r| r.outcome).collect()
}

#[test]
fn a_bucket_starts_full_and_refills_per_interval() {
    let store = MemStore::default();
    let mut l = limiter(
        &[("r", spec(3, 2, 60 * SEC))],
        false,
        OnContention::Allow,
        store,
    );
    let h = [hit(0, 5, 1)];
    let admitted = |l: &mut LocalLimiter<MemStore>, now: u64, n: u32| {
        (0..n)
            .filter(|_| decide(l, &h, now).verdict == Verdict::Admit)
            .count()
    };
    assert_eq!(admitted(&mut l, 0, 5), 3);
    assert_eq!(admitted(&mut l, 59 * SEC, 5), 0);
    assert_eq!(admitted(&mut l, 60 * SEC, 5), 2);
    assert_eq!(admitted(&mut l, 300 * SEC, 5), 3);
}

#[test]
fn reports_carry_remaining_tokens_and_time_to_the_next_fill() {
    let mut l = limiter(
        &[("r", spec(2, 1, 10 * SEC))],
        false,
        OnContention::Allow,
        MemStore::default(),
    );
    let h = [hit(0, 0, 1)];
    let first = decide(&mut l, &h, 0);
    assert_eq!(first.reports[0].remaining, 1);
    assert_eq!(first.reports[0].reset_ns, 10 * SEC);
    decide(&mut l, &h, 3 * SEC);
    let denied = decide(&mut l, &h, 4 * SEC);
    assert_eq!(denied.verdict, Verdict::Deny);
    assert_eq!(outcomes(&denied), [RuleOutcome::Limited]);
    assert_eq!(denied.reports[0].remaining, 0);
    assert_eq!(denied.retry_after_ns(), 6 * SEC);
}

#[test]
fn the_common_path_is_one_get_and_one_set_per_rule() {
    let store = MemStore::default();
    let mut l = limiter(
        &[("a", spec(100, 1, SEC)), ("b", spec(100, 1, SEC))],
        false,
        OnContention::Allow,
        store.clone(),
    );
    let h = [hit(0, 1, 1), hit(1, 0, 0)];
    decide(&mut l, &h, 0); // creates both slots
    let (gets, sets) = (store.gets.get(), store.sets.get());
    decide(&mut l, &h, 1);
    assert_eq!(store.gets.get() - gets, 2);
    assert_eq!(store.sets.get() - sets, 2);
}

#[test]
fn a_request_denied_by_one_rule_takes_no_token_from_another() {
    let store = MemStore::default();
    let mut l = limiter(
        &[
            ("wide", spec(10, 10, 60 * SEC)),
            ("narrow", spec(1, 1, 60 * SEC)),
        ],
        false,
        OnContention::Allow,
        store.clone(),
    );
    let h = [hit(0, 0, 0), hit(1, 0, 0)];
    assert_eq!(decide(&mut l, &h, 0).verdict, Verdict::Admit);
    for _ in 0..5 {
        let d = decide(&mut l, &h, 0);
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(
            outcomes(&d),
            [RuleOutcome::NotCharged, RuleOutcome::Limited]
        );
        assert_eq!(d.reports[0].remaining, 9);
    }
    assert_eq!(store.slot("rate_limit.wide.0").unwrap().state.tokens, 9);
}

#[test]
fn a_token_taken_before_a_late_denial_is_given_back() {
    // Our request reads both rules, takes a token from "wide", and then
    // finds that another worker took "narrow"'s last token in between.
    let store = MemStore::default();
    let rules = [
        ("wide", spec(10, 10, 60 * SEC)),
        ("narrow", spec(2, 1, 60 * SEC)),
    ];
    let mut ours = limiter(&rules, false, OnContention::Allow, store.clone());
    let other_store = store.worker();
    let other = Rc::new(RefCell::new(limiter(
        &rules,
        false,
        OnContention::Allow,
        other_store,
    )));
    let (narrow_only, both) = ([hit(1, 0, 0)], [hit(0, 0, 0), hit(1, 0, 0)]);
    // Create both slots, leaving narrow with one token.
    decide(&mut ours, &[hit(0, 0, 0)], 0);
    decide(&mut other.borrow_mut(), &narrow_only, 0);
    let stolen = Rc::new(Cell::new(false));
    let (o, s) = (Rc::clone(&other), Rc::clone(&stolen));
    // Our ops: get wide, get narrow, set wide, [other runs] set narrow.
    ours.store().interleave(
        3,
        Box::new(move || {
            let d = decide(&mut o.borrow_mut(), &narrow_only, 0);
            s.set(d.verdict == Verdict::Admit);
        }),
    );
    let d = decide(&mut ours, &both, 0);
    assert!(stolen.get());
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(
        outcomes(&d),
        [RuleOutcome::NotCharged, RuleOutcome::Limited]
    );
    assert_eq!(store.slot("rate_limit.wide.0").unwrap().state.tokens, 9);
}

#[test]
fn a_cas_conflict_is_retried_and_both_requests_are_counted() {
    let store = MemStore::default();
    let rules = [("r", spec(5, 1, 60 * SEC))];
    let mut ours = limiter(&rules, false, OnContention::Allow, store.clone());
    let other = Rc::new(RefCell::new(limiter(
        &rules,
        false,
        OnContention::Allow,
        store.worker(),
    )));
    decide(&mut ours, &[hit(0, 0, 0)], 0);
    let o = Rc::clone(&other);
    // Between our get and our set, the other worker takes a token.
    ours.store().interleave(
        1,
        Box::new(move || {
            decide(&mut o.borrow_mut(), &[hit(0, 0, 0)], 0);
        }),
    );
    let d = decide(&mut ours, &[hit(0, 0, 0)], 0);
    assert_eq!(d.verdict, Verdict::Admit);
    assert_eq!(d.reports[0].remaining, 2);
    assert_eq!(store.slot("rate_limit.r.0").unwrap().state.tokens, 2);
}

/// A store whose writes always lose: every CAS write mismatches.
struct HostileStore(MemStore);

impl SharedStore for HostileStore {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.get(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        if cas == 0 {
            self.0.set(key, value, cas)
        } else {
            Err(SetError::CasMismatch)
        }
    }
}

#[test]
fn exhausted_retries_follow_on_contention() {
    for (policy, verdict) in [
        (OnContention::Allow, Verdict::Admit),
        (OnContention::Deny, Verdict::Deny),
    ] {
        let memory = MemStore::default();
        let rules = [("r", spec(5, 1, SEC)), ("s", spec(5, 1, SEC))];
        // Create the slots with a friendly store first.
        decide(
            &mut limiter(&rules, false, policy, memory.clone()),
            &[hit(0, 0, 0)],
            0,
        );
        let mut l = LocalLimiter::new(
            rules.iter().map(|(n, s)| ((*n).to_owned(), *s)),
            false,
            policy,
            HostileStore(memory.clone()),
        );
        let mut d = Decision::default();
        l.decide(&[hit(0, 0, 0)], 0, &mut d);
        assert_eq!(d.verdict, verdict, "{policy:?}");
        assert_eq!(outcomes(&d), [RuleOutcome::Contention]);
        assert_eq!(memory.slot("rate_limit.r.0").unwrap().state.tokens, 4);
    }
}

#[test]
fn shadow_mode_admits_counts_and_still_charges_rules_with_tokens() {
    let store = MemStore::default();
    let mut l = limiter(
        &[
            ("wide", spec(10, 10, 60 * SEC)),
            ("narrow", spec(1, 1, 60 * SEC)),
        ],
        true,
        OnContention::Allow,
        store.clone(),
    );
    let h = [hit(0, 0, 0), hit(1, 0, 0)];
    assert_eq!(
        outcomes(&decide(&mut l, &h, 0)),
        [RuleOutcome::Allowed, RuleOutcome::Allowed]
    );
    let d = decide(&mut l, &h, 0);
    assert_eq!(d.verdict, Verdict::Admit);
    assert_eq!(
        outcomes(&d),
        [RuleOutcome::Allowed, RuleOutcome::ShadowLimited]
    );
    assert_eq!(store.slot("rate_limit.wide.0").unwrap().state.tokens, 8);
    assert_eq!(store.slot("rate_limit.narrow.0").unwrap().state.tokens, 0);
}

#[test]
fn a_newcomer_takes_over_a_full_slot_and_shares_a_used_one() {
    let store = MemStore::default();
    let mut l = limiter(
        &[("r", spec(3, 3, 60 * SEC))],
        false,
        OnContention::Allow,
        store.clone(),
    );
    // Key 1 uses slot 7.
    decide(&mut l, &[hit(0, 7, 1)], 0);
    // Key 2 lands in the same slot while key 1's bucket is not full: shares.
    let shared = decide(&mut l, &[hit(0, 7, 2)], SEC);
    assert!(shared.reports[0].collision);
    assert_eq!(shared.reports[0].remaining, 1);
    assert_eq!(store.slot("rate_limit.r.7").unwrap().fingerprint, 1);
    // After a refill the bucket is full again: key 2 takes the slot over.
    let taken = decide(&mut l, &[hit(0, 7, 2)], 61 * SEC);
    assert!(!taken.reports[0].collision);
    assert_eq!(taken.reports[0].remaining, 2);
    assert_eq!(store.slot("rate_limit.r.7").unwrap().fingerprint, 2);
}

#[test]
fn a_million_distinct_keys_never_use_more_than_max_keys_slots() {
    let max_keys = 1000u32;
    let store = MemStore::default();
    let mut l = limiter(
        &[("r", spec(10, 1, SEC))],
        false,
        OnContention::Allow,
        store.clone(),
    );
    let mut d = Decision::default();
    let mut peak_capacity = 0;
    for i in 0..1_000_000u64 {
        // Same slot mapping as the rules module: hash mod max_keys.
        let fingerprint = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let slot = u32::try_from(fingerprint % u64::from(max_keys)).unwrap();
        l.decide(&[hit(0, slot, fingerprint)], i * 1000, &mut d);
        if i % 100_000 == 0 {
            peak_capacity = peak_capacity.max(store.memory.borrow().map.capacity());
        }
    }
    // max_keys slots plus the rule's creation lock, and the map stopped growing.
    assert_eq!(store.keys(), max_keys as usize + 1);
    assert_eq!(store.memory.borrow().map.capacity(), peak_capacity);
}

#[test]
fn garbage_in_a_slot_is_replaced_by_a_fresh_bucket() {
    let store = MemStore::default();
    store
        .memory
        .borrow_mut()
        .map
        .insert("rate_limit.r.0".into(), (b"junk".to_vec(), 1));
    let mut l = limiter(
        &[("r", spec(2, 1, SEC))],
        false,
        OnContention::Allow,
        store.clone(),
    );
    assert_eq!(decide(&mut l, &[hit(0, 0, 0)], 0).reports[0].remaining, 1);
    assert_eq!(store.slot("rate_limit.r.0").unwrap().state.tokens, 1);
}

#[test]
fn a_held_creation_lock_delays_creation_and_an_abandoned_one_expires() {
    let store = MemStore::default();
    let until = (5 * SEC).to_le_bytes().to_vec();
    store
        .memory
        .borrow_mut()
        .map
        .insert("rate_limit.r.lock".into(), (until, 1));
    let mut l = limiter(
        &[("r", spec(2, 1, SEC))],
        false,
        OnContention::Deny,
        store.clone(),
    );
    let d = decide(&mut l, &[hit(0, 0, 0)], SEC);
    assert_eq!(outcomes(&d), [RuleOutcome::Contention]);
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(store.slot("rate_limit.r.0"), None);
    let d = decide(&mut l, &[hit(0, 0, 0)], 6 * SEC);
    assert_eq!(outcomes(&d), [RuleOutcome::Allowed]);
}

/// Single worker, arbitrary request times: admissions never exceed the
/// bucket plus the fills due, over the whole run and over every window.
fn check_bound(spec: BucketSpec, times: &[u64], admitted_at: &[u64]) -> Result<(), TestCaseError> {
    let Some(&start) = times.first() else {
        return Ok(());
    };
    let max = u64::from(spec.max_tokens);
    let per_fill = u64::from(spec.tokens_per_fill);
    let end = *times.last().unwrap_or(&start);
    let total = admitted_at.len() as u64;
    prop_assert!(total <= max + per_fill * ((end - start) / spec.interval_ns));
    for (i, &from) in admitted_at.iter().enumerate() {
        for (j, &to) in admitted_at.iter().enumerate().skip(i) {
            let in_window = (j - i + 1) as u64;
            let bound = max + per_fill * ((to - from) / spec.interval_ns + 1);
            prop_assert!(in_window <= bound, "{in_window} admitted in [{from}, {to}]");
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn admitted_never_exceed_capacity_plus_fills_due(
        max in 1u32..20, per_fill_pick in 1u32..20, interval in 1u64..50,
        gaps in proptest::collection::vec(0u64..30, 1..120),
    ) {
        let per_fill = per_fill_pick.min(max);
        let spec = spec(max, per_fill, interval);
        let mut l = limiter(&[("r", spec)], false, OnContention::Allow, MemStore::default());
        let mut now = 1_000;
        let (mut times, mut admitted_at) = (Vec::new(), Vec::new());
        for gap in gaps {
            now += gap;
            times.push(now);
            if decide(&mut l, &[hit(0, 0, 0)], now).verdict == Verdict::Admit {
                admitted_at.push(now);
            }
        }
        check_bound(spec, &times, &admitted_at)?;
        // And the bucket is not stingy: the first max_tokens are admitted.
        let first_burst = times.iter().take_while(|&&t| t == times[0]).count();
        prop_assert!(admitted_at.len() >= first_burst.min(max as usize));
    }

    /// Several workers whose requests run inside each other's host calls (a
    /// request may start between another's get and set) admit exactly what
    /// one worker would: never more, and when no request hit contention,
    /// exactly min(requests, max_tokens) at one instant.
    #[test]
    fn interleaved_workers_admit_exactly_the_bucket(
        max in 1u32..12,
        schedule in proptest::collection::vec((0u8..4, proptest::option::of(0u32..6)), 1..40),
    ) {
        let memory = MemStore::default();
        let workers: Vec<Rc<RefCell<LocalLimiter<MemStore>>>> = (0..4)
            .map(|_| Rc::new(RefCell::new(limiter(
                &[("r", spec(max, 1, 60 * SEC)), ("all", spec(1000, 1, SEC))],
                false, OnContention::Deny, memory.worker()))))
            .collect();
        let admitted = Rc::new(Cell::new(0u32));
        let contended = Rc::new(Cell::new(0u32));
        // A VM runs one callback at a time: a request due on a worker that
        // is mid-request (an ancestor in the nesting) waits until the end.
        let deferred: Rc<RefCell<Vec<Hook>>> = Rc::default();
        // Build request i+1 to run either inside request i (before its
        // k-th host call) or right after it.
        let mut next: Option<Hook> = None;
        for &(worker, nest_at) in schedule.iter().rev() {
            let limiter = Rc::clone(&workers[usize::from(worker)]);
            let (admitted, contended) = (Rc::clone(&admitted), Rc::clone(&contended));
            let then = next.take();
            let body: Hook = Box::new(move || {
                let store = limiter.borrow().store().clone();
                let mut after = then;
                if let Some(k) = nest_at {
                    if let Some(hook) = after.take() {
                        store.interleave(k, hook);
                    }
                }
                let d = {
                    let mut l = limiter.borrow_mut();
                    decide(&mut l, &[hit(0, 3, 9), hit(1, 0, 0)], 0)
                };
                if d.verdict == Verdict::Admit {
                    admitted.set(admitted.get() + 1);
                }
                if d.reports.iter().any(|r| r.outcome == RuleOutcome::Contention) {
                    contended.set(contended.get() + 1);
                }
                for hook in store.take_unrun_hooks().into_iter().chain(after) {
                    hook();
                }
            });
            let target = Rc::clone(&workers[usize::from(worker)]);
            let deferred = Rc::clone(&deferred);
            next = Some(Box::new(move || {
                if target.try_borrow_mut().is_ok() {
                    body();
                } else {
                    deferred.borrow_mut().push(body);
                }
            }));
        }
        if let Some(first) = next {
            first();
        }
        loop {
            let later: Vec<Hook> = deferred.borrow_mut().drain(..).collect();
            if later.is_empty() {
                break;
            }
            for hook in later {
                hook();
            }
        }
        prop_assert!(admitted.get() <= max);
        if contended.get() == 0 {
            prop_assert_eq!(admitted.get(), (schedule.len() as u32).min(max));
        }
        let slot = memory.slot("rate_limit.r.3").unwrap();
        prop_assert_eq!(slot.state.tokens, max - admitted.get());
    }
}
