//! The soak's plan and its bookkeeping (`src/bin/soak.rs` runs it): a
//! deterministic, seeded mix of requests for the shipped chain, what each
//! request must get back, what every filter's counters must read afterwards,
//! and how a Wasm crash shows in Envoy's log.
//!
//! Every expected value is derived from the plan and the shipped manifests,
//! never from what Envoy answered, so a response and a counter are checked
//! against the same independent prediction:
//!
//! - **Canary cohorts.** canary-router's split is a documented, seedless hash
//!   (FNV-1a 64 + fmix64 onto the weights, filters/canary-router/README.md),
//!   so the version of every request is known in advance. A unit test checks
//!   the replica against the filter's own `split` module.
//! - **Rate limits.** Every user of the valid pool sends fewer than
//!   `per_user.max_tokens` `/api` requests in the whole run, so `per_user`
//!   never denies them whatever the timing. A *burst* is `max_tokens + 10`
//!   back-to-back requests from a fresh user, well inside one
//!   `fill_interval`: exactly the last 10 are denied. The global `everyone`
//!   rule is kept from denying anything by pacing (see [`Pacer`]).
//! - **Bucket slots.** rate-limit hashes each key into one of `max_keys`
//!   slots, and two keys in one slot share a bucket: a pool user whose slot a
//!   burst has drained would then be denied. The plan only uses user names
//!   whose slots are all distinct (the replica of the slot hash is checked
//!   against the filter's `rules::Plan` in a unit test), so
//!   `rate_limit.per_user.slot_shared` must stay 0.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::chain::{self, Idp};
use crate::manifests;

/// Requests in a burst beyond the `per_user` bucket: these many 429s per burst.
pub const BURST_EXTRA: u32 = 10;
/// One burst is scheduled after every this many single requests, so bursts
/// are about 5% of the traffic.
pub const BURST_EVERY: u64 = 2_000;
/// Requests each pool user sends in the whole run; must stay below
/// `per_user.max_tokens` ([`ChainParams::from_manifests`] refuses a manifest
/// where it does not).
pub const REQUESTS_PER_USER: u32 = 40;
/// Pool users active at a time. 256 tokens fit jwt-auth's shared 1000-slot
/// cache with few evictions, so most valid requests are cache hits, as in a
/// real sidecar, instead of every request paying an RSA verification.
pub const ACTIVE_USERS: u32 = 256;
/// `everyone` tokens per interval the pacer lets the clients use: 80%, so
/// the requests in flight when a window turns (one per connection) and
/// scheduling jitter cannot reach the bucket's size.
pub const PACE_PERCENT: u32 = 80;

/// What a request is; its expected outcome follows from this and the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A pool user's valid token, GET on `/api`, `/admin` or another path.
    Valid,
    /// A pool user's valid token, POST or PUT with a JSON body.
    ValidWrite,
    /// Valid token plus `x-canary: always`: canary-router's first rule, v2.
    ForcedHeader,
    /// Valid token plus cookie `canary=true`: the second rule, v2.
    ForcedCookie,
    /// Valid token plus a Firefox user agent: the third rule, v2.
    ForcedFirefox,
    /// Valid token plus header values with bytes 0x80-0xFF (issue #10's
    /// hazard: a string getter would trap on them).
    HostileHeader,
    /// Valid token plus a client-sent `x-jwt-sub` and `x-canary-version`:
    /// both must be replaced by the filters, so the key and the version
    /// are the real user's.
    Spoofed,
    /// `GET /healthz` without a token (jwt-auth's rule exempts it) and with
    /// `x-user-id`, canary-router's first key source.
    Health,
    /// A burst request inside the user's `per_user` bucket: 200.
    BurstAdmitted,
    /// A burst request beyond the bucket: 429.
    BurstLimited,
    /// No `authorization` header: 401 `Jwt is missing`.
    Missing,
    /// `authorization: Basic ...`: no Bearer token, 401 `Jwt is missing`.
    WrongScheme,
    /// A correctly signed token whose `exp` passed an hour ago.
    Expired,
    /// A valid token with one signature character changed.
    BadSignature,
    /// Not a JWT: one, two or four sections, or a header that is not JSON.
    Malformed,
    /// Signed, but for another audience: 403.
    WrongAudience,
    /// Signed with the right key but naming an unknown `kid`: jwt-auth
    /// refetches the JWKS (at most every 30 s) before it answers.
    UnknownKid,
    /// `alg: none`, no signature.
    AlgNone,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 18] = [
        Kind::Valid,
        Kind::ValidWrite,
        Kind::ForcedHeader,
        Kind::ForcedCookie,
        Kind::ForcedFirefox,
        Kind::HostileHeader,
        Kind::Spoofed,
        Kind::Health,
        Kind::BurstAdmitted,
        Kind::BurstLimited,
        Kind::Missing,
        Kind::WrongScheme,
        Kind::Expired,
        Kind::BadSignature,
        Kind::Malformed,
        Kind::WrongAudience,
        Kind::UnknownKid,
        Kind::AlgNone,
    ];

    /// Single (non-burst) kinds and their weights per 1000 single requests.
    const SINGLE_WEIGHTS: [(Kind, u64); 16] = [
        (Kind::Valid, 510),
        (Kind::ValidWrite, 40),
        (Kind::ForcedHeader, 25),
        (Kind::ForcedCookie, 20),
        (Kind::ForcedFirefox, 20),
        (Kind::HostileHeader, 30),
        (Kind::Spoofed, 25),
        (Kind::Health, 30),
        (Kind::Missing, 80),
        (Kind::WrongScheme, 20),
        (Kind::Expired, 50),
        (Kind::BadSignature, 50),
        (Kind::Malformed, 50),
        (Kind::WrongAudience, 25),
        (Kind::UnknownKid, 5),
        (Kind::AlgNone, 20),
    ];

    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::ValidWrite => "valid_write",
            Kind::ForcedHeader => "forced_v2_header",
            Kind::ForcedCookie => "forced_v2_cookie",
            Kind::ForcedFirefox => "forced_v2_firefox",
            Kind::HostileHeader => "hostile_header_bytes",
            Kind::Spoofed => "spoofed_sub_and_version",
            Kind::Health => "health_no_token",
            Kind::BurstAdmitted => "burst_admitted",
            Kind::BurstLimited => "burst_limited",
            Kind::Missing => "missing_token",
            Kind::WrongScheme => "wrong_scheme",
            Kind::Expired => "expired",
            Kind::BadSignature => "bad_signature",
            Kind::Malformed => "malformed",
            Kind::WrongAudience => "wrong_audience",
            Kind::UnknownKid => "unknown_kid",
            Kind::AlgNone => "alg_none",
        }
    }

    /// Whether jwt-auth lets it through.
    pub fn passes_jwt(self) -> bool {
        self.pool_user()
            || matches!(
                self,
                Kind::Health | Kind::BurstAdmitted | Kind::BurstLimited
            )
    }

    /// Whether it carries a pool user's valid token.
    pub fn pool_user(self) -> bool {
        matches!(
            self,
            Kind::Valid
                | Kind::ValidWrite
                | Kind::ForcedHeader
                | Kind::ForcedCookie
                | Kind::ForcedFirefox
                | Kind::HostileHeader
                | Kind::Spoofed
        )
    }

    /// Whether jwt-auth finds a Bearer token in it (and so looks it up in
    /// its cache: `jwt_cache_hit + jwt_cache_miss` counts these, once each,
    /// even for a request that waited for a JWKS refetch).
    pub fn has_token(self) -> bool {
        !matches!(self, Kind::Health | Kind::Missing | Kind::WrongScheme)
    }

    /// Whether canary-router's rules (not the split) pick its version.
    pub fn forced(self) -> bool {
        matches!(
            self,
            Kind::ForcedHeader | Kind::ForcedCookie | Kind::ForcedFirefox
        )
    }

    /// The status it must get (jwt_authn answers a wrong audience with 403,
    /// every other token failure with 401).
    pub fn status(self) -> u16 {
        if self == Kind::BurstLimited {
            429
        } else if self == Kind::WrongAudience {
            403
        } else if self.passes_jwt() {
            200
        } else {
            401
        }
    }

    /// jwt-auth's 401/403 body for it (jwt_authn's status text); `None` for
    /// the kinds jwt-auth lets through. Malformed tokens have several
    /// messages, one per [`Request::variant`]: see [`malformed_body`].
    pub fn denial_body(self, variant: u8) -> Option<&'static str> {
        Some(match self {
            Kind::Missing | Kind::WrongScheme => "Jwt is missing",
            Kind::Expired => "Jwt is expired",
            Kind::BadSignature => "Jwt verification fails",
            Kind::Malformed => malformed_body(variant),
            Kind::WrongAudience => "Audiences in Jwt are not allowed",
            Kind::UnknownKid => "Jwks doesn't have key to match kid or alg from Jwt",
            Kind::AlgNone => "Jwt header [alg] is not supported",
            _ => return None,
        })
    }
}

/// Malformed-token variants: the token after `Bearer ` and jwt-auth's answer.
const MALFORMED: [(&str, &str); 4] = [
    (
        "not-a-jwt",
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
    ),
    (
        "aGVhZGVy.cGF5bG9hZA",
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
    ),
    (
        "a.b.c.d",
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
    ),
    // base64url of `header`: decodes, but is not JSON.
    ("aGVhZGVy.cGF5bG9hZA.c2ln", "Jwt header is an invalid JSON"),
];

/// jwt-auth's answer to malformed variant `variant`.
pub fn malformed_body(variant: u8) -> &'static str {
    MALFORMED
        .get(usize::from(variant) % MALFORMED.len())
        .map_or("", |(_, body)| body)
}

/// One request of the plan. `user` indexes the pool (pool kinds), the
/// bursts (burst kinds) or the health probes; `variant` picks a path,
/// method or malformed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// What it is.
    pub kind: Kind,
    /// Whose it is (see above).
    pub user: u32,
    /// Which form of the kind.
    pub variant: u8,
}

/// One step of a client thread: a request, or a burst sent back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One request.
    One(Request),
    /// `size` requests from burst user `user`; the first `admitted` pass.
    Burst {
        /// Burst user index.
        user: u32,
        /// Requests in the burst.
        size: u32,
        /// How many of them the `per_user` bucket admits.
        admitted: u32,
    },
}

impl Step {
    /// Requests in the step.
    pub fn len(&self) -> u64 {
        match self {
            Step::One(_) => 1,
            Step::Burst { size, .. } => u64::from(*size),
        }
    }

    /// Never true; for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The requests of the step, in sending order.
    pub fn requests(&self) -> Vec<Request> {
        match *self {
            Step::One(request) => vec![request],
            Step::Burst {
                user,
                size,
                admitted,
            } => (0..size)
                .map(|i| Request {
                    kind: if i < admitted {
                        Kind::BurstAdmitted
                    } else {
                        Kind::BurstLimited
                    },
                    user,
                    variant: 0,
                })
                .collect(),
        }
    }
}

/// A splitmix64 generator: tiny, seedable, and the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (multiply-high; `n = 0` gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The chain parameters the plan depends on, read from the shipped
/// WasmPlugins so a changed manifest changes the expectations (or stops the
/// soak with the reason) instead of silently breaking them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainParams {
    /// The version canary-router's three rules route to.
    pub forced_version: String,
    /// `per_user.token_bucket.max_tokens`.
    pub per_user_max: u32,
    /// `per_user.token_bucket.fill_interval`.
    pub per_user_interval: Duration,
    /// `everyone.token_bucket.max_tokens`.
    pub everyone_max: u32,
    /// `everyone.token_bucket.fill_interval`.
    pub everyone_interval: Duration,
    /// rate-limit's `max_keys`.
    pub max_keys: u32,
    /// canary-router's `split`, in order.
    pub split: Vec<(String, u32)>,
}

impl ChainParams {
    /// Reads the shipped manifests.
    ///
    /// # Errors
    ///
    /// A message naming the field the soak needs and did not find.
    pub fn from_manifests() -> Result<Self, String> {
        let chain = manifests::chain();
        let config = |name: &str| -> Result<Value, String> {
            let plugin = chain
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| format!("no {name} in the chain"))?;
            serde_json::from_str(&plugin.config).map_err(|e| format!("{name} config: {e}"))
        };
        let rate = config("rate-limit")?;
        let rule = |name: &str| -> Result<(u32, Duration), String> {
            let rule = rate
                .get("rules")
                .and_then(Value::as_array)
                .and_then(|rules| {
                    rules
                        .iter()
                        .find(|r| r.get("name").and_then(Value::as_str) == Some(name))
                })
                .ok_or_else(|| format!("rate-limit: the soak needs rule {name:?}"))?;
            let max = rule
                .pointer("/token_bucket/max_tokens")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| format!("rate-limit: {name}.token_bucket.max_tokens"))?;
            let fill = rule
                .pointer("/token_bucket/tokens_per_fill")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            if fill != u64::from(max) {
                return Err(format!(
                    "rate-limit: {name}: the soak's reasoning needs tokens_per_fill == max_tokens \
                     (each fill refills the bucket completely)"
                ));
            }
            let interval = rule
                .pointer("/token_bucket/fill_interval")
                .and_then(Value::as_str)
                .and_then(parse_seconds)
                .ok_or_else(|| format!("rate-limit: {name}.token_bucket.fill_interval"))?;
            Ok((max, interval))
        };
        let (per_user_max, per_user_interval) = rule("per_user")?;
        let (everyone_max, everyone_interval) = rule("everyone")?;
        let max_keys = rate
            .get("max_keys")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(65_536);
        let canary = config("canary-router")?;
        let split = canary
            .get("split")
            .and_then(Value::as_array)
            .ok_or("canary-router: split")?
            .iter()
            .map(|entry| {
                let version = entry.get("version").and_then(Value::as_str);
                let weight = entry
                    .get("weight")
                    .and_then(Value::as_u64)
                    .and_then(|w| u32::try_from(w).ok());
                match (version, weight) {
                    (Some(v), Some(w)) => Ok((v.to_owned(), w)),
                    _ => Err(format!("canary-router: split entry {entry}")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if REQUESTS_PER_USER >= per_user_max {
            return Err(format!(
                "per_user.max_tokens {per_user_max} must exceed REQUESTS_PER_USER {REQUESTS_PER_USER}"
            ));
        }
        let forced: Vec<&str> = canary
            .get("rules")
            .and_then(Value::as_array)
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|r| r.get("version")?.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let forced_version = match forced.as_slice() {
            [first, rest @ ..] if rest.iter().all(|v| v == first) && forced.len() == 3 => {
                (*first).to_owned()
            }
            _ => {
                return Err(format!(
                    "canary-router: the soak expects three rules (x-canary header, canary \
                     cookie, Firefox) naming one version; found {forced:?}"
                ))
            }
        };
        Ok(Self {
            forced_version,
            per_user_max,
            per_user_interval,
            everyone_max,
            everyone_interval,
            max_keys,
            split,
        })
    }

    /// The version canary-router's split gives `key` (its documented hash:
    /// FNV-1a 64, fmix64, then `floor(h * total / 2^64)` onto consecutive
    /// ranges in split order).
    pub fn version_for(&self, key: &[u8]) -> &str {
        let total: u64 = self.split.iter().map(|(_, w)| u64::from(*w)).sum();
        let point = ((u128::from(canary_hash(key)) * u128::from(total)) >> 64) as u64;
        let mut bound = 0u64;
        for (version, weight) in &self.split {
            bound += u64::from(*weight);
            if point < bound {
                return version;
            }
        }
        self.split.last().map_or("", |(v, _)| v.as_str())
    }

    /// How many pacer tokens per `everyone` interval: [`PACE_PERCENT`] of the bucket.
    pub fn pace_budget(&self) -> usize {
        usize::try_from(u64::from(self.everyone_max) * u64::from(PACE_PERCENT) / 100).unwrap_or(1)
    }
}

/// `"60s"`, `"0.5s"` (protobuf JSON durations).
fn parse_seconds(text: &str) -> Option<Duration> {
    let seconds: f64 = text.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// canary-router's key hash: FNV-1a 64 then MurmurHash3's fmix64, as its
/// README documents (the unit test pins it to the filter's own function).
pub fn canary_hash(key: &[u8]) -> u64 {
    let mut h = fnv1a(0xcbf2_9ce4_8422_2325, key);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The `per_user` slot of subject `sub`: rate-limit hashes the first key
/// source (tag = its position, 0 for `x-jwt-sub`) with FNV-1a 64 and a
/// splitmix64 finaliser, modulo `max_keys` (filters/rate-limit/src/rules.rs;
/// the unit test pins this replica to the filter's `rules::Plan`).
pub fn per_user_slot(sub: &[u8], max_keys: u32) -> u32 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    // The offset basis with tag byte 0 (the source's position) mixed in.
    let tagged = 0xcbf2_9ce4_8422_2325_u64.wrapping_mul(PRIME);
    let mut z = fnv1a(tagged, sub);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    u32::try_from(z % u64::from(max_keys.max(1))).unwrap_or(0)
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// `count` names `<prefix>-<n>` whose `per_user` slots are free in `taken`
/// (and are then taken), so no two soak users ever share a bucket.
pub fn pick_names(
    prefix: &str,
    count: u32,
    max_keys: u32,
    taken: &mut HashSet<u32>,
) -> Vec<String> {
    let mut names = Vec::new();
    let mut n = 0u64;
    while names.len() < count as usize && taken.len() < max_keys as usize {
        let name = format!("{prefix}-{n}");
        n += 1;
        if taken.insert(per_user_slot(name.as_bytes(), max_keys)) {
            names.push(name);
        }
    }
    names
}

/// The whole plan: one list of steps per client thread.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Steps per thread.
    pub threads: Vec<Vec<Step>>,
    /// Pool users the plan refers to (indices `0..pool_users`).
    pub pool_users: u32,
    /// Burst users (indices `0..bursts`).
    pub bursts: u32,
    /// Requests in the plan.
    pub requests: u64,
}

impl Plan {
    /// A plan of exactly `requests` requests over `threads` threads from
    /// `seed`. Steps are dealt to the threads in turn, so each thread's mix
    /// is the same.
    ///
    /// Pool users are used in blocks of [`ACTIVE_USERS`]: each block's users
    /// send [`REQUESTS_PER_USER`] requests each, interleaved, then the next
    /// block takes over. No user therefore exceeds `REQUESTS_PER_USER`
    /// requests (below `per_user.max_tokens`) over the whole run.
    pub fn generate(requests: u64, threads: usize, seed: u64, params: &ChainParams) -> Self {
        let mut rng = Rng::new(seed);
        let threads = threads.max(1);
        let mut steps: Vec<Vec<Step>> = vec![Vec::new(); threads];
        let total_weight: u64 = Kind::SINGLE_WEIGHTS.iter().map(|(_, w)| w).sum();
        let burst_size = params.per_user_max + BURST_EXTRA;
        let block = u64::from(ACTIVE_USERS) * u64::from(REQUESTS_PER_USER);
        let (mut planned, mut singles, mut pool_uses) = (0u64, 0u64, 0u64);
        let (mut bursts, mut pool_users, mut next, mut last_was_burst) =
            (0u32, 0u32, 0usize, false);
        while planned < requests {
            let remaining = requests - planned;
            let burst_due = singles > 0 && singles.is_multiple_of(BURST_EVERY) && !last_was_burst;
            let step = if burst_due && remaining >= u64::from(burst_size) {
                bursts += 1;
                Step::Burst {
                    user: bursts - 1,
                    size: burst_size,
                    admitted: params.per_user_max,
                }
            } else {
                singles += 1;
                let mut pick = rng.below(total_weight);
                let mut kind = Kind::Valid;
                for (k, w) in Kind::SINGLE_WEIGHTS {
                    if pick < w {
                        kind = k;
                        break;
                    }
                    pick -= w;
                }
                let user = if kind.pool_user() {
                    // Block b holds users [b * ACTIVE, (b + 1) * ACTIVE); inside a
                    // block the users take turns, each REQUESTS_PER_USER times.
                    let b = pool_uses / block;
                    let within = pool_uses % block;
                    pool_uses += 1;
                    let user = u32::try_from(
                        b * u64::from(ACTIVE_USERS) + within % u64::from(ACTIVE_USERS),
                    )
                    .unwrap_or(u32::MAX);
                    pool_users = pool_users.max(user.saturating_add(1));
                    user
                } else {
                    u32::try_from(rng.below(64)).unwrap_or(0)
                };
                let variant = u8::try_from(rng.below(256)).unwrap_or(0);
                Step::One(Request {
                    kind,
                    user,
                    variant,
                })
            };
            last_was_burst = matches!(step, Step::Burst { .. });
            planned += step.len();
            if let Some(list) = steps.get_mut(next) {
                list.push(step);
            }
            next = (next + 1) % threads;
        }
        Self {
            threads: steps,
            pool_users,
            bursts,
            requests: planned,
        }
    }
}

/// Tokens and names the requests are built from.
#[derive(Debug, Clone)]
pub struct Material {
    /// Pool user names (`x-jwt-sub`).
    pub users: Vec<String>,
    /// `Bearer <token>` per pool user.
    pub user_tokens: Vec<String>,
    /// Burst user names.
    pub burst_users: Vec<String>,
    /// `Bearer <token>` per burst user.
    pub burst_tokens: Vec<String>,
    /// `authorization` values for the invalid kinds, a few forms each.
    pub expired: Vec<String>,
    /// Valid tokens with a changed signature character.
    pub bad_signature: Vec<String>,
    /// Tokens for another audience.
    pub wrong_audience: Vec<String>,
    /// Tokens naming an unknown `kid`.
    pub unknown_kid: Vec<String>,
    /// `alg: none` tokens.
    pub alg_none: Vec<String>,
}

impl Material {
    /// Mints everything `plan` needs; valid tokens live `ttl` from now.
    ///
    /// # Errors
    ///
    /// When no slot-distinct names are left (more users than `max_keys`).
    pub fn mint(
        idp: &Idp,
        plan: &Plan,
        params: &ChainParams,
        ttl: Duration,
    ) -> Result<Self, String> {
        let mut taken = HashSet::new();
        let users = pick_names("soak-user", plan.pool_users, params.max_keys, &mut taken);
        let burst_users = pick_names("soak-burst", plan.bursts, params.max_keys, &mut taken);
        if users.len() < plan.pool_users as usize || burst_users.len() < plan.bursts as usize {
            return Err(format!(
                "{} users and {} bursts do not fit rate-limit's {} slots without sharing",
                plan.pool_users, plan.bursts, params.max_keys
            ));
        }
        let bearer = |t: String| format!("Bearer {t}");
        let ttl = ttl.as_secs().max(60);
        let user_tokens = users.iter().map(|u| bearer(idp.token(u, ttl))).collect();
        let burst_tokens = burst_users
            .iter()
            .map(|u| bearer(idp.token(u, ttl)))
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": chain::KID});
        let claims = |sub: &str, aud: &str, exp: u64| json!({"iss": chain::ISSUER, "aud": aud, "sub": sub, "iat": now.saturating_sub(7200), "exp": exp});
        let forms = 4;
        let expired = (0..forms)
            .map(|i| {
                bearer(idp.token_with(
                    &header,
                    &claims(
                        &format!("expired-{i}"),
                        chain::AUDIENCE,
                        now.saturating_sub(3600),
                    ),
                ))
            })
            .collect();
        let bad_signature = (0..forms)
            .map(|i| bearer(corrupt_signature(&idp.token(&format!("forger-{i}"), ttl))))
            .collect();
        let wrong_audience = (0..forms)
            .map(|i| {
                bearer(idp.token_with(
                    &header,
                    &claims(&format!("other-{i}"), "not-shop", now + ttl),
                ))
            })
            .collect();
        let unknown_kid = (0..forms)
            .map(|i| {
                let header = json!({"alg": "RS256", "typ": "JWT", "kid": format!("rotated-{i}")});
                bearer(idp.token_with(
                    &header,
                    &claims(&format!("kid-{i}"), chain::AUDIENCE, now + ttl),
                ))
            })
            .collect();
        let alg_none = (0..forms)
            .map(|i| {
                use base64::engine::general_purpose::URL_SAFE_NO_PAD;
                use base64::Engine;
                let header =
                    URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
                let body = URL_SAFE_NO_PAD
                    .encode(claims(&format!("none-{i}"), chain::AUDIENCE, now + ttl).to_string());
                bearer(format!("{header}.{body}."))
            })
            .collect();
        Ok(Self {
            users,
            user_tokens,
            burst_users,
            burst_tokens,
            expired,
            bad_signature,
            wrong_audience,
            unknown_kid,
            alg_none,
        })
    }
}

/// The token with one character in the middle of its signature changed
/// (the middle, so the change is never in the final character's unused
/// padding bits, which some decoders ignore).
fn corrupt_signature(token: &str) -> String {
    let Some(dot) = token.rfind('.') else {
        return token.to_owned();
    };
    let middle = dot + (token.len() - dot) / 2;
    token
        .char_indices()
        .map(|(i, c)| {
            if i == middle {
                if c == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                c
            }
        })
        .collect()
}

/// A request on the wire, and what it must get back.
#[derive(Debug, Clone)]
pub struct Built {
    /// Encoded HTTP/1.1 request.
    pub bytes: Vec<u8>,
    /// Method (a `metrics` label).
    pub method: &'static str,
    /// Path with query.
    pub path: String,
    /// Expected status.
    pub status: u16,
    /// Expected body for 401/403/429 answers.
    pub body: Option<&'static str>,
    /// Expected version (`x-canary-version` on the answer) for 200s.
    pub version: Option<String>,
    /// The subject the application must see, for jwt-verified requests.
    pub sub: Option<String>,
    /// Whether the request charges `per_user` (a verified `/api` request).
    pub per_user: bool,
    /// The `x-canary-version` the client itself sent. canary-router replaces
    /// it on every request it routes, but a request answered locally before
    /// canary-router (a 401, a 429) keeps it, and metrics, which reads the
    /// header at the end of the stream, labels that request with the
    /// client's value (measured: `soak --unpaced`, whose 429s include
    /// spoofed requests). Bounded by metrics' `max_values`, but chosen by
    /// the client.
    pub client_version: Option<&'static str>,
}

/// The `route` label metrics gives `path` for the shipped prefixes
/// (`/api`, `/admin`, `/health`; whole segments, query ignored).
pub fn route_label(path: &str) -> &'static str {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    for prefix in ["/api", "/admin", "/health"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with('/') {
                return prefix;
            }
        }
    }
    "other"
}

/// Builds request `r` from `material`.
pub fn build(r: Request, material: &Material, params: &ChainParams) -> Built {
    let pick = |list: &[String]| {
        list.get(usize::from(r.variant) % list.len().max(1))
            .cloned()
            .unwrap_or_default()
    };
    let user = usize::try_from(r.user).unwrap_or(usize::MAX);
    let pool_name = material.users.get(user).cloned().unwrap_or_default();
    let pool_token = material.user_tokens.get(user).cloned().unwrap_or_default();
    let mut headers: Vec<(String, Vec<u8>)> = vec![("x-forwarded-proto".into(), b"https".to_vec())];
    let mut method = "GET";
    let mut body: Vec<u8> = Vec::new();
    let mut path = "/api/items".to_owned();
    let mut sub = None;
    let mut version = None;
    let mut client_version = None;
    let auth = |headers: &mut Vec<(String, Vec<u8>)>, value: &str| {
        headers.push(("authorization".into(), value.as_bytes().to_vec()));
    };
    if r.kind.pool_user() {
        auth(&mut headers, &pool_token);
        sub = Some(pool_name.clone());
        version = Some(if r.kind.forced() {
            params.forced_version.clone()
        } else {
            params.version_for(pool_name.as_bytes()).to_owned()
        });
    }
    match r.kind {
        Kind::Valid => {
            path = match r.variant % 20 {
                0..=9 => "/api/items".to_owned(),
                10..=14 => format!("/api/orders/{}?page=2", r.variant),
                15..=16 => "/admin/stats".to_owned(),
                _ => "/shop/cart".to_owned(),
            };
        }
        Kind::ValidWrite => {
            let (m, p) = if r.variant.is_multiple_of(2) {
                ("POST", "/api/orders".to_owned())
            } else {
                ("PUT", format!("/api/items/{}", r.variant))
            };
            method = m;
            path = p;
            body = format!("{{\"item\":{},\"qty\":1}}", r.variant).into_bytes();
            headers.push(("content-type".into(), b"application/json".to_vec()));
        }
        Kind::ForcedHeader => headers.push(("x-canary".into(), b"always".to_vec())),
        Kind::ForcedCookie => {
            headers.push(("cookie".into(), b"theme=dark; canary=true".to_vec()));
        }
        Kind::ForcedFirefox => headers.push((
            "user-agent".into(),
            b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".to_vec(),
        )),
        Kind::HostileHeader => {
            headers.push((
                "x-note".into(),
                vec![b'c', b'a', b'f', 0xe9, 0x80, 0xff, b'!'],
            ));
            headers.push(("user-agent".into(), vec![b'b', b'o', b't', 0xfe, 0xfd]));
            headers.push(("accept-language".into(), vec![0xc3, 0x28, b',', 0xa0]));
        }
        Kind::Spoofed => {
            headers.push(("x-jwt-sub".into(), b"mallory".to_vec()));
            headers.push(("x-canary-version".into(), b"v9".to_vec()));
            client_version = Some("v9");
        }
        Kind::Health => {
            path = "/healthz".to_owned();
            let probe = format!("probe-{}", r.user);
            version = Some(params.version_for(probe.as_bytes()).to_owned());
            headers.push(("x-user-id".into(), probe.into_bytes()));
        }
        Kind::BurstAdmitted | Kind::BurstLimited => {
            path = "/api/burst".to_owned();
            let name = material.burst_users.get(user).cloned().unwrap_or_default();
            let token = material.burst_tokens.get(user).cloned().unwrap_or_default();
            auth(&mut headers, &token);
            if r.kind == Kind::BurstAdmitted {
                version = Some(params.version_for(name.as_bytes()).to_owned());
                sub = Some(name);
            }
        }
        Kind::Missing => {}
        Kind::WrongScheme => auth(&mut headers, "Basic c29hazpzb2Fr"),
        Kind::Expired => auth(&mut headers, &pick(&material.expired)),
        Kind::BadSignature => auth(&mut headers, &pick(&material.bad_signature)),
        Kind::Malformed => {
            let token = MALFORMED
                .get(usize::from(r.variant) % MALFORMED.len())
                .map_or("", |(t, _)| t);
            auth(&mut headers, &format!("Bearer {token}"));
        }
        Kind::WrongAudience => auth(&mut headers, &pick(&material.wrong_audience)),
        Kind::UnknownKid => auth(&mut headers, &pick(&material.unknown_kid)),
        Kind::AlgNone => auth(&mut headers, &pick(&material.alg_none)),
    }
    let status = r.kind.status();
    let expected_body = match r.kind {
        Kind::BurstLimited => Some(RATE_LIMITED_BODY),
        kind => kind.denial_body(r.variant),
    };
    let per_user =
        r.kind.passes_jwt() && r.kind != Kind::BurstLimited && route_label(&path) == "/api";
    Built {
        bytes: encode(method, &path, &headers, &body),
        method,
        path,
        status,
        body: expected_body,
        version,
        sub,
        per_user,
        client_version,
    }
}

/// rate-limit's denial body in the shipped config.
pub const RATE_LIMITED_BODY: &str = "rate limited\n";

/// The expectation for the outcome a request actually had, in an unpaced
/// run (`soak --unpaced`). Without the pacer the global `everyone` bucket
/// runs dry at times, so any request that reaches rate-limit may be
/// answered 429, and a burst request planned beyond its bucket may pass (a
/// request `everyone` denied took no `per_user` token). Which one happens
/// depends on timing, so the run records it and every counter is then
/// reconciled with the outcomes, not with the plan. Other requests, and the
/// answers of a paced run, keep the planned expectation.
pub fn as_outcome(
    r: Request,
    built: Built,
    status: u16,
    material: &Material,
    params: &ChainParams,
) -> Built {
    if !r.kind.passes_jwt() {
        return built;
    }
    match (status, r.kind) {
        (429, Kind::BurstLimited) => built,
        (429, _) => Built {
            status: 429,
            body: Some(RATE_LIMITED_BODY),
            version: None,
            sub: None,
            per_user: false,
            ..built
        },
        (200, Kind::BurstLimited) => build(
            Request {
                kind: Kind::BurstAdmitted,
                ..r
            },
            material,
            params,
        ),
        _ => built,
    }
}

/// An HTTP/1.1 request with raw header values (the hostile kind needs
/// bytes that are not UTF-8, which `client::encode_request` cannot carry).
fn encode(method: &str, path: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: shop.example.com\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Keeps the requests that reach rate-limit's `everyone` rule below its
/// bucket in every window of its fill interval.
///
/// Why this makes `everyone` deterministic: `tokens_per_fill` equals
/// `max_tokens`, so every fill refills the bucket completely, and fills
/// come one interval after the bucket was last found full. Between two
/// such moments (at most one interval apart) the bucket can only run dry if
/// more than `max_tokens` requests arrive. The clients are closed-loop (one
/// request in flight per connection), so the filter sees at most the
/// paced count plus one per connection in any interval; [`PACE_PERCENT`]
/// leaves far more room than that.
#[derive(Debug)]
pub struct Pacer {
    budget: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
    waited: Mutex<Duration>,
}

impl Pacer {
    /// At most `budget` admissions in any `window`.
    pub fn new(budget: usize, window: Duration) -> Self {
        Self {
            budget: budget.max(1),
            window,
            sent: Mutex::new(VecDeque::new()),
            waited: Mutex::new(Duration::ZERO),
        }
    }

    /// Blocks until one more request fits, then records it.
    pub fn admit(&self) {
        loop {
            let now = Instant::now();
            let wait = {
                let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    sent.pop_front();
                }
                if sent.len() < self.budget {
                    sent.push_back(now);
                    return;
                }
                sent.front().map_or(Duration::ZERO, |t| {
                    self.window.saturating_sub(now.duration_since(*t))
                })
            };
            *self.waited.lock().unwrap_or_else(PoisonError::into_inner) += wait;
            std::thread::sleep(wait.max(Duration::from_micros(100)));
        }
    }

    /// Time the clients spent waiting for the pacer.
    pub fn waited(&self) -> Duration {
        *self.waited.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Substrings of Envoy 1.40 log lines that mean a Wasm VM failed, as
/// `soak --probe-trap` shows them for a deliberate panic in the conformance
/// fixture (measured 2026-11-24):
///
/// ```text
/// [critical][wasm] [source/extensions/common/wasm/context.cc:1160] wasm log conformance conformance: conformance: panic: panicked at host-test/fixtures/conformance/src/control.rs:55:5:
/// [error][wasm] [source/extensions/common/wasm/wasm_vm.cc:38] Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable
/// ```
///
/// The first line is the filter's panic hook (`filter_common::panic_hook`
/// and the SDK's own hook both print Rust's `panicked at`); the second is
/// proxy-wasm-cpp-host failing the VM after V8's trap, and is printed for
/// any trap, panic hook or not. Any critical-level line counts too.
pub const CRASH_PATTERNS: [&str; 5] = [
    "Function: ",
    "Uncaught RuntimeError",
    "panicked at",
    ": panic: ",
    "[critical]",
];

/// The lines of `log` that match a [`CRASH_PATTERNS`] entry.
pub fn crash_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| CRASH_PATTERNS.iter().any(|p| line.contains(p)))
        .map(str::to_owned)
        .collect()
}

/// A counter (or gauge) value from `/stats`' plain text: `name: value`.
pub fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(": ")?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Samples of `metric` from `/stats/prometheus` text, as (labels, value).
/// Label values of the metrics filter never hold quotes or backslashes, so
/// a plain split is exact here.
pub fn prometheus_samples(text: &str, metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once("} ") {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(value) => ("", value),
                None => continue,
            },
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let labels = labels
            .split(',')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.to_owned(), v.trim_matches('"').to_owned()))
            })
            .collect();
        out.push((labels, value));
    }
    out
}

/// Envoy's resident set size in KiB, from `/proc/<pid>/status` `VmRSS`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChainParams {
        ChainParams::from_manifests().unwrap()
    }

    #[test]
    fn the_canary_replica_matches_canary_router() {
        let split = canary_router::split::Split::new(&[80, 20]).unwrap();
        let p = params();
        assert_eq!(p.split, vec![("v1".into(), 80), ("v2".into(), 20)]);
        for i in 0..20_000 {
            let key = format!("soak-user-{i}");
            assert_eq!(
                canary_hash(key.as_bytes()),
                canary_router::split::key_hash(key.as_bytes())
            );
            let want = ["v1", "v2"][split.pick(canary_router::split::key_hash(key.as_bytes()))];
            assert_eq!(p.version_for(key.as_bytes()), want, "{key}");
        }
    }

    struct Sub(Vec<u8>);
    impl rate_limit::rules::RequestView for Sub {
        fn header(&mut self, name: &str) -> Option<Vec<u8>> {
            (name == "x-jwt-sub").then(|| self.0.clone())
        }
        fn client_ip(&mut self) -> Option<std::net::IpAddr> {
            None
        }
    }

    #[test]
    fn the_slot_replica_matches_rate_limit() {
        let chain = manifests::chain();
        let raw = &chain
            .iter()
            .find(|p| p.name == "rate-limit")
            .unwrap()
            .config;
        let config = rate_limit::config::validate(raw.as_bytes()).unwrap();
        let plan = rate_limit::rules::Plan::new(&config);
        let p = params();
        for i in 0..20_000 {
            let sub = format!("soak-user-{i}");
            let mut hits = Vec::new();
            plan.hits(
                Some(b"/api/items"),
                Some(b"GET"),
                &mut Sub(sub.clone().into_bytes()),
                &mut hits,
            );
            // per_user is rule 0 in the manifest.
            let per_user = hits.iter().find(|h| h.rule == 0).unwrap();
            assert_eq!(
                per_user.slot,
                per_user_slot(sub.as_bytes(), p.max_keys),
                "{sub}"
            );
        }
    }

    #[test]
    fn picked_names_never_share_a_slot() {
        let mut taken = HashSet::new();
        let names = pick_names("soak-user", 5000, 65_536, &mut taken);
        assert_eq!(names.len(), 5000);
        let slots: HashSet<u32> = names
            .iter()
            .map(|n| per_user_slot(n.as_bytes(), 65_536))
            .collect();
        assert_eq!(slots.len(), 5000);
    }

    #[test]
    fn plans_are_deterministic_exact_and_within_the_per_user_budget() {
        let p = params();
        let a = Plan::generate(50_000, 2, 7, &p);
        let b = Plan::generate(50_000, 2, 7, &p);
        assert_eq!(a.threads, b.threads);
        assert_eq!(a.requests, 50_000);
        let sent: u64 = a.threads.iter().flatten().map(Step::len).sum();
        assert_eq!(sent, 50_000);
        assert!(a.bursts >= 20, "{}", a.bursts);
        let mut per_user = std::collections::HashMap::new();
        for step in a.threads.iter().flatten() {
            if let Step::One(r) = step {
                if r.kind.pool_user() {
                    *per_user.entry(r.user).or_insert(0u32) += 1;
                }
            }
        }
        assert!(per_user.values().all(|n| *n <= REQUESTS_PER_USER));
        assert!(per_user.keys().all(|u| *u < a.pool_users));
        assert!(per_user.len() > 500, "{}", per_user.len());
    }

    #[test]
    fn route_labels_follow_whole_segments() {
        assert_eq!(route_label("/api/items"), "/api");
        assert_eq!(route_label("/api?x"), "/api");
        assert_eq!(route_label("/apix"), "other");
        assert_eq!(route_label("/healthz"), "other");
        assert_eq!(route_label("/admin/stats"), "/admin");
    }

    #[test]
    fn crash_lines_find_traps_and_panics_only() {
        let log = "[info][wasm] wasm log jwt-auth: configured\n\
                   [error][wasm] Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable\n\
                   [critical][wasm] wasm log x: conformance: panic: panicked at src/x.rs:1:1\n";
        assert_eq!(crash_lines(log).len(), 2);
    }

    #[test]
    fn prometheus_lines_parse() {
        let text = "# TYPE mesh_requests_total counter\n\
                    mesh_requests_total{method=\"GET\",response_code=\"200\"} 42\n\
                    mesh_requests_totalx 1\n";
        let samples = prometheus_samples(text, "mesh_requests_total");
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].0.get("method").unwrap(), "GET");
        assert_eq!(samples[0].1, 42.0);
    }
}
