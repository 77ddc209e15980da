//! Contention (issue #10, item 3): the shipped Wasm module on 8 worker VMs in
//! one host-test host admits exactly what the bucket arithmetic allows, per
//! key, whatever the interleaving.
//!
//! Proptest chooses which VM runs each request and how the virtual clock
//! moves between requests; the requests mix three rules (a keyed rule with a
//! header-then-cookie key, a `POST /login` rule keyed by query parameter then
//! client IP, and a keyless rule every request hits), so denials by one rule
//! must leave the others uncharged. An independent model of the documented
//! arithmetic (README, "Bucket": starts full, `tokens_per_fill` every whole
//! `fill_interval` after the anchor, a full bucket re-anchored at the request
//! that finds it full) predicts every status, every `RateLimit` item
//! (`r` and `t`), `Retry-After` and the final counters.
//!
//! Granularity: host-test runs each callback to completion, so two VMs'
//! requests never overlap by themselves. The racing tests use host-test's
//! shared-data hook ([`host_test::SharedDataHook`]), which writes between a
//! VM's `get_shared_data` and its compare-and-swap, as a request on another
//! worker would: a *steal* takes a token (as an admitted request elsewhere),
//! a *bump* rewrites the same bytes (a concurrent write that changes only
//! the CAS stamp). That drives the filter's CAS retry, late denial and refund
//! paths with real stale stamps. What the hook cannot do is run another VM's
//! code at that point; the limiter's native tests do that with an in-memory
//! store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use host_test::{Exchange, FilterSpec, Host, MockResponse, Request, SharedRead};
use proptest::prelude::*;
use rate_limit::bucket::{BucketState, Slot};
use rate_limit::config::validate;
use rate_limit::rules::{Plan, RequestView};

const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dist/filters/rate_limit.wasm"
);

const WORKERS: u32 = 8;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// One rule of the config below, as the model sees it.
struct RuleSpec {
    name: &'static str,
    max: u32,
    per_fill: u32,
    interval_ns: u64,
}

/// In config order. `login`'s interval is not whole seconds, so `t` rounds.
const RULES: [RuleSpec; 3] = [
    RuleSpec {
        name: "user",
        max: 5,
        per_fill: 2,
        interval_ns: SEC,
    },
    RuleSpec {
        name: "login",
        max: 3,
        per_fill: 1,
        interval_ns: 2500 * MS,
    },
    RuleSpec {
        name: "all",
        max: 30,
        per_fill: 6,
        interval_ns: 700 * MS,
    },
];

const CONFIG: &str = r#"{"rules": [
    {"name": "user", "match": {"prefix": "/api"},
     "key": [{"header": "x-user"}, {"cookie": "session"}],
     "token_bucket": {"max_tokens": 5, "tokens_per_fill": 2, "fill_interval": "1s"}},
    {"name": "login", "match": {"path": "/login", "method": "POST"},
     "key": [{"query_param": "api_key"}, {"client_ip": {}}],
     "token_bucket": {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "2.5s"}},
    {"name": "all",
     "token_bucket": {"max_tokens": 30, "tokens_per_fill": 6, "fill_interval": "0.7s"}}],
  "client_ip": {"xff_num_trusted_hops": 1},
  "response": {"headers": "draft", "retry_after": true}}"#;

fn host() -> Host {
    assert!(
        Path::new(WASM).exists(),
        "{WASM} is missing: run `make build` (or build rate-limit for wasm32-wasip1 and copy it to dist/filters)"
    );
    let mut host = Host::with_workers(WORKERS).unwrap();
    host.add_filter(FilterSpec::file("rl", WASM).config(CONFIG))
        .unwrap();
    host.set_upstream(MockResponse::with_status(200).body("ok"));
    host
}

/// One generated request. Values come from small sets so keys repeat; some
/// share prefixes (`u1`, `u10`), and `x-user: ""` counts as absent.
#[derive(Debug, Clone)]
struct Send {
    worker: u32,
    /// 0 `/api/items`, 1 `/login`, 2 `/other`, 3 `/api`.
    path: u8,
    post: bool,
    user: Option<u8>,
    session: Option<u8>,
    api_key: Option<u8>,
    ip: u8,
}

const USERS: [&str; 4] = ["", "u1", "u10", "u100"];

impl Send {
    /// `:path`, with the query.
    fn path(&self) -> String {
        let mut path = String::from(match self.path {
            0 => "/api/items",
            1 => "/login",
            2 => "/other",
            _ => "/api",
        });
        if let Some(key) = self.api_key {
            path.push_str(&format!("?api_key=k{key}"));
        }
        path
    }

    fn request(&self) -> Request {
        let path = self.path();
        let method = if self.post { "POST" } else { "GET" };
        let mut request = Request::new(method, &path)
            .header("x-forwarded-for", format!("10.9.0.{}", self.ip))
            .on_worker(self.worker);
        if let Some(user) = self.user {
            request = request.header("x-user", USERS[usize::from(user)]);
        }
        if let Some(session) = self.session {
            request = request.header("cookie", format!("theme=dark; session=s{session}"));
        }
        request
    }

    /// The model's bucket name for each rule the request hits, in rule
    /// order: the first present source, tagged with its position; all
    /// absent is one shared bucket per rule.
    fn buckets(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        if matches!(self.path, 0 | 3) {
            let user = self
                .user
                .map(|u| USERS[usize::from(u)])
                .filter(|u| !u.is_empty());
            let key = match (user, self.session) {
                (Some(user), _) => format!("0:{user}"),
                (None, Some(session)) => format!("1:s{session}"),
                (None, None) => "absent".to_owned(),
            };
            out.push((0, key));
        }
        if self.path == 1 && self.post {
            let key = match self.api_key {
                Some(key) => format!("0:k{key}"),
                None => format!("1:10.9.0.{}", self.ip),
            };
            out.push((1, key));
        }
        out.push((2, String::new()));
        out
    }
}

#[derive(Debug, Clone)]
enum Op {
    Send(Send),
    Advance(Duration),
}

fn send_strategy() -> impl Strategy<Value = Send> {
    (
        0..WORKERS,
        prop_oneof![3 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
        any::<bool>(),
        proptest::option::of(0u8..4),
        proptest::option::of(0u8..3),
        proptest::option::of(0u8..3),
        0u8..3,
    )
        .prop_map(|(worker, path, post, user, session, api_key, ip)| Send {
            worker,
            path,
            post,
            user,
            session,
            api_key,
            ip,
        })
}

fn advance_strategy() -> impl Strategy<Value = Duration> {
    prop_oneof![
        // Anywhere, to the microsecond: fills and `t` rounding off the grid.
        (0u64..2_000_000).prop_map(Duration::from_micros),
        // Exactly on the fill grid of each rule.
        (1u64..4).prop_map(|k| Duration::from_millis(700 * k)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_millis(2500)),
        // Just short of a fill.
        Just(Duration::from_nanos(SEC - 1)),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            6 => send_strategy().prop_map(Op::Send),
            1 => advance_strategy().prop_map(Op::Advance),
        ],
        20..200,
    )
}

/// A bucket of the model.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    anchor_ns: u64,
}

/// What the model predicts for one rule of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    rule: usize,
    remaining: u32,
    reset_secs: u64,
}

/// The documented bucket arithmetic, written independently of the filter.
#[derive(Debug, Default)]
struct Model {
    buckets: HashMap<(usize, String), Bucket>,
    allowed: [i64; 3],
    limited: [i64; 3],
    /// Admissions per (rule, bucket), for the per-key assertion.
    admitted_per_key: HashMap<(usize, String), u32>,
}

impl Model {
    /// The bucket refilled to `now`: whole intervals after the anchor; full
    /// re-anchors at `now`. A bucket first seen is full, anchored at `now`.
    fn bucket_at(&mut self, rule: usize, key: &str, now: u64) -> &mut Bucket {
        let spec = &RULES[rule];
        let bucket = self
            .buckets
            .entry((rule, key.to_owned()))
            .or_insert(Bucket {
                tokens: spec.max,
                anchor_ns: now,
            });
        let fills = now.saturating_sub(bucket.anchor_ns) / spec.interval_ns;
        let tokens =
            (u64::from(bucket.tokens) + fills * u64::from(spec.per_fill)).min(u64::from(spec.max));
        if tokens == u64::from(spec.max) {
            bucket.anchor_ns = now.max(bucket.anchor_ns);
        } else {
            bucket.anchor_ns += fills * spec.interval_ns;
        }
        bucket.tokens = tokens as u32;
        bucket
    }

    /// Decides a request hitting `hits` at `now`: admitted only if every
    /// bucket has a token, and then each loses one.
    fn decide(&mut self, hits: &[(usize, String)], now: u64) -> (bool, Vec<Item>) {
        let admit = hits
            .iter()
            .all(|(rule, key)| self.bucket_at(*rule, key, now).tokens > 0);
        let mut items = Vec::new();
        for (rule, key) in hits {
            let bucket = self.bucket_at(*rule, key, now);
            if admit {
                bucket.tokens -= 1;
            }
            let (tokens, anchor) = (bucket.tokens, bucket.anchor_ns);
            let reset_ns = (anchor + RULES[*rule].interval_ns)
                .saturating_sub(now)
                .max(1);
            items.push(Item {
                rule: *rule,
                remaining: tokens,
                reset_secs: reset_ns.div_ceil(SEC),
            });
            if admit {
                self.allowed[*rule] += 1;
                *self
                    .admitted_per_key
                    .entry((*rule, key.clone()))
                    .or_default() += 1;
            } else if tokens == 0 {
                self.limited[*rule] += 1;
            }
        }
        (admit, items)
    }
}

/// Parses `"name";r=N;t=T, ...` into items.
fn parse_ratelimit(value: &str) -> Vec<Item> {
    value
        .split(", ")
        .map(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap().trim_matches('"');
            let rule = RULES.iter().position(|r| r.name == name).unwrap();
            let mut item = Item {
                rule,
                remaining: u32::MAX,
                reset_secs: u64::MAX,
            };
            for part in parts {
                match part.split_once('=').unwrap() {
                    ("r", v) => item.remaining = v.parse().unwrap(),
                    ("t", v) => item.reset_secs = v.parse().unwrap(),
                    other => panic!("unexpected parameter {other:?}"),
                }
            }
            item
        })
        .collect()
}

/// Asserts status, `RateLimit` and `Retry-After` of one exchange against the
/// model's prediction.
fn check_exchange(
    exchange: &Exchange,
    admit: bool,
    items: &[Item],
    step: usize,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        exchange.status,
        if admit { 200 } else { 429 },
        "step {}: {:?}",
        step,
        exchange.local_reply
    );
    let header = exchange.header("ratelimit").unwrap_or_default();
    prop_assert_eq!(parse_ratelimit(&header), items.to_vec(), "step {}", step);
    let retry_after = exchange.header("retry-after");
    if admit {
        prop_assert_eq!(retry_after, None, "step {}", step);
    } else {
        let longest = items
            .iter()
            .filter(|i| i.remaining == 0)
            .map(|i| i.reset_secs)
            .max()
            .unwrap_or(1)
            .max(1);
        prop_assert_eq!(retry_after, Some(longest.to_string()), "step {}", step);
    }
    Ok(())
}

fn check_counters(host: &Host, model: &Model, exact_limited: bool) -> Result<(), TestCaseError> {
    for (rule, spec) in RULES.iter().enumerate() {
        let name = spec.name;
        let counter = |what: &str| {
            host.metric(&format!("rate_limit.{name}.{what}"))
                .unwrap_or(0)
        };
        prop_assert_eq!(counter("allowed"), model.allowed[rule], "{}.allowed", name);
        if exact_limited {
            prop_assert_eq!(counter("limited"), model.limited[rule], "{}.limited", name);
        }
        prop_assert_eq!(counter("contention"), 0, "{}.contention", name);
        // The model gives every key its own bucket: a key that shared
        // another's slot would fail here, naming the cause.
        prop_assert_eq!(counter("slot_shared"), 0, "{}.slot_shared", name);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every request's status and headers, and the final counters, equal
    /// the model's, for any order of workers and clock moves.
    #[test]
    fn eight_workers_admit_exactly_the_bucket_arithmetic_per_key(ops in ops()) {
        let mut host = host();
        let mut model = Model::default();
        let mut admitted_per_key: HashMap<(usize, String), u32> = HashMap::new();
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Advance(by) => host.advance(*by),
                Op::Send(send) => {
                    let hits = send.buckets();
                    let (admit, items) = model.decide(&hits, host.now_ns());
                    let exchange = host.send(send.request());
                    check_exchange(&exchange, admit, &items, step)?;
                    if exchange.status == 200 {
                        for hit in hits {
                            *admitted_per_key.entry(hit).or_default() += 1;
                        }
                    }
                }
            }
        }
        prop_assert_eq!(&admitted_per_key, &model.admitted_per_key);
        check_counters(&host, &model, true)?;
    }
}

/// What the shared-data hook does at one read of a bucket slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Race {
    /// Another worker's admitted request takes a token (only at the first
    /// read of a slot in a request, so the model's order is known: see
    /// [`RaceState`]); a bump when the bucket is empty.
    Steal,
    /// Another worker rewrites the same bytes: only the stamp changes.
    Bump,
    /// Nothing happens at this read.
    Pass,
}

/// Shared between the test and the hook.
#[derive(Default)]
struct RaceState {
    model: Model,
    now_ns: u64,
    /// The request in flight: its bucket per rule name, the races left to
    /// play on its reads, and the slots already read once.
    hits: HashMap<&'static str, String>,
    plan: Vec<Race>,
    read: HashSet<&'static str>,
    /// Rules whose slot existed when the request started: only their
    /// first read is the check phase (a slot the request creates is read
    /// again only by its refund, after the request's own write).
    existed: HashSet<&'static str>,
    steals: u32,
    bumps: u32,
    /// A check-phase read that disagreed with the model.
    mismatch: Option<String>,
}

impl RaceState {
    /// The hook's answer to one read. Steals happen only at the first read
    /// of a slot that existed when the request started, which is the
    /// limiter's check phase: every steal
    /// therefore lands before the request's first write, so the model
    /// applies the steals and then decides the request as one step. Later
    /// reads (commit retries, refunds) only get bumps, which change nothing
    /// but the stamp. At most 3 races per request stay below the filter's 8
    /// CAS attempts, so `on_contention` never decides.
    fn on_read(&mut self, read: &SharedRead<'_>) -> Option<Vec<u8>> {
        let key = std::str::from_utf8(read.key).ok()?;
        let rest = key.strip_prefix("rate_limit.")?;
        let (name, slot) = rest.split_once('.')?;
        if slot == "lock" {
            return None;
        }
        let rule = RULES.iter().position(|r| r.name == name)?;
        let name = RULES[rule].name;
        let bucket_key = self.hits.get(name)?.clone();
        let first_read = self.existed.contains(name) && self.read.insert(name);
        let stored = Slot::decode(read.value)?;
        let now = self.now_ns;
        let modelled = *self.model.bucket_at(rule, &bucket_key, now);
        if first_read {
            // What every earlier request (admissions, refunds, steals) left
            // in shared data must be the model's bucket.
            let mut at_now = Model::default();
            at_now.buckets.insert(
                (rule, bucket_key.clone()),
                Bucket {
                    tokens: stored.state.tokens,
                    anchor_ns: stored.state.last_fill_ns,
                },
            );
            let stored_now = *at_now.bucket_at(rule, &bucket_key, now);
            if stored_now.tokens != modelled.tokens && self.mismatch.is_none() {
                self.mismatch = Some(format!("{key}: stored {stored_now:?}, model {modelled:?}"));
            }
        }
        let race = if self.plan.is_empty() {
            return None;
        } else {
            self.plan.remove(0)
        };
        if race == Race::Pass {
            return None;
        }
        if race == Race::Steal && first_read && modelled.tokens > 0 {
            let bucket = self.model.bucket_at(rule, &bucket_key, now);
            bucket.tokens -= 1;
            self.steals += 1;
            let slot = Slot {
                fingerprint: stored.fingerprint,
                state: BucketState {
                    tokens: bucket.tokens,
                    last_fill_ns: bucket.anchor_ns,
                },
            };
            return Some(slot.encode().to_vec());
        }
        self.bumps += 1;
        Some(read.value.to_vec())
    }
}

fn racing_host(state: &Rc<RefCell<RaceState>>) -> Host {
    let mut host = host();
    let hook_state = Rc::clone(state);
    host.set_shared_data_hook(Some(Box::new(move |read| {
        hook_state.borrow_mut().on_read(read)
    })));
    host
}

/// Sends `send` with `plan` played on its reads; returns the model's verdict
/// and the exchange.
fn send_racing(
    host: &mut Host,
    state: &Rc<RefCell<RaceState>>,
    send: &Send,
    plan: &[Race],
) -> (bool, Exchange) {
    let hits = send.buckets();
    {
        let mut state = state.borrow_mut();
        state.now_ns = host.now_ns();
        state.hits = hits
            .iter()
            .map(|(rule, key)| (RULES[*rule].name, key.clone()))
            .collect();
        state.plan = plan.to_vec();
        state.read.clear();
        state.existed = slot_keys(send)
            .into_iter()
            .filter(|(_, key)| host.shared_data(key.as_bytes()).is_some())
            .map(|(rule, _)| RULES[rule].name)
            .collect();
    }
    let exchange = host.send(send.request());
    let mut state = state.borrow_mut();
    // Steals were applied to the model as they happened; the request is
    // decided after them.
    let now = state.now_ns;
    let (admit, _) = state.model.decide(&hits, now);
    state.hits.clear();
    state.plan.clear();
    (admit, exchange)
}

/// The request's view for the crate's own key hashing ([`Plan`]), used only
/// to name the shared-data slot of each bucket.
struct View<'a>(&'a Send);

impl RequestView for View<'_> {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        let send = self.0;
        match name {
            "x-user" => send
                .user
                .map(|u| USERS[usize::from(u)].as_bytes().to_vec())
                .filter(|v| !v.is_empty()),
            "cookie" => send
                .session
                .map(|s| format!("theme=dark; session=s{s}").into_bytes()),
            _ => None,
        }
    }

    fn client_ip(&mut self) -> Option<IpAddr> {
        Some(IpAddr::from([10, 9, 0, self.0.ip]))
    }
}

/// `(rule, shared-data key)` of each slot `send` hits.
fn slot_keys(send: &Send) -> Vec<(usize, String)> {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    let plan = PLAN.get_or_init(|| Plan::new(&validate(CONFIG.as_bytes()).unwrap()));
    let path = send.path();
    let method = if send.post { "POST" } else { "GET" };
    let mut hits = Vec::new();
    plan.hits(
        Some(path.as_bytes()),
        Some(method.as_bytes()),
        &mut View(send),
        &mut hits,
    );
    hits.iter()
        .map(|hit| {
            let rule = usize::from(hit.rule);
            (
                rule,
                format!("rate_limit.{}.{}", RULES[rule].name, hit.slot),
            )
        })
        .collect()
}

fn race_plan() -> impl Strategy<Value = Vec<Race>> {
    proptest::collection::vec(
        prop_oneof![Just(Race::Steal), Just(Race::Bump), Just(Race::Pass)],
        0..=3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// With writes from "other workers" landing between each VM's reads and
    /// its compare-and-swap, every verdict still equals the model (steals
    /// first, then the request), the shared buckets equal the model at every
    /// request's first read (so refunds gave back exactly what was taken),
    /// and the `allowed` counters match.
    #[test]
    fn cas_races_between_get_and_set_keep_the_count_exact(
        ops in proptest::collection::vec(
            prop_oneof![
                6 => (send_strategy(), race_plan()).prop_map(|(s, p)| (Op::Send(s), p)),
                1 => advance_strategy().prop_map(|d| (Op::Advance(d), Vec::new())),
            ],
            20..200,
        )
    ) {
        let state = Rc::new(RefCell::new(RaceState::default()));
        let mut host = racing_host(&state);
        for (step, (op, plan)) in ops.iter().enumerate() {
            match op {
                Op::Advance(by) => host.advance(*by),
                Op::Send(send) => {
                    let (admit, exchange) = send_racing(&mut host, &state, send, plan);
                    prop_assert_eq!(
                        exchange.status,
                        if admit { 200 } else { 429 },
                        "step {}: plan {:?}",
                        step,
                        plan
                    );
                    let mismatch = state.borrow().mismatch.clone();
                    prop_assert!(mismatch.is_none(), "step {}: {:?}", step, mismatch);
                }
            }
        }
        // `limited` is not compared: a request denied in its check phase
        // from a pre-steal read names only the rules it saw empty.
        check_counters(&host, &state.borrow().model, false)?;
    }
}

/// Request on `/api/items` for user `u1`: hits `user` then `all`.
fn user_request(worker: u32) -> Send {
    Send {
        worker,
        path: 0,
        post: false,
        user: Some(1),
        session: None,
        api_key: None,
        ip: 0,
    }
}

#[test]
fn a_token_stolen_from_a_later_rule_after_the_check_denies_and_refunds_the_earlier_rule() {
    let state = Rc::new(RefCell::new(RaceState::default()));
    let mut host = racing_host(&state);
    let send = |host: &mut Host, send: &Send, plan: &[Race]| {
        let (admit, exchange) = send_racing(host, &state, send, plan);
        assert_eq!(
            exchange.status,
            if admit { 200 } else { 429 },
            "{send:?} {plan:?}"
        );
        admit
    };
    // Requests on `/other` hit only `all`.
    let other = |worker| Send {
        path: 2,
        ..user_request(worker)
    };
    // Creates both slots: user 4 left, all 29.
    assert!(send(&mut host, &user_request(0), &[]));
    for worker in 0..29 {
        assert!(send(&mut host, &other(worker % WORKERS), &[]));
    }
    assert!(!send(&mut host, &other(1), &[]));
    host.advance(Duration::from_millis(700));
    // all: 6. Reads: user check (steal: 3), all check (steal: 5), user's
    // commit re-read (bump), then the commits: still admitted (2 and 4).
    assert!(send(
        &mut host,
        &user_request(2),
        &[Race::Steal, Race::Steal, Race::Bump]
    ));
    for worker in 3..6 {
        assert!(send(&mut host, &other(worker), &[]));
    }
    // all: 1. The check phase sees user 2 and all 1, then all's last token
    // is stolen; user is charged, all's commit re-reads an empty bucket, so
    // the request is denied and user's token given back, under a bump.
    let tokens_before = state.borrow().model.buckets[&(0, "0:u1".to_owned())].tokens;
    assert_eq!(tokens_before, 2);
    assert!(!send(
        &mut host,
        &user_request(4),
        &[Race::Pass, Race::Steal, Race::Pass, Race::Bump]
    ));
    // The next check read of user's slot compares shared data with the
    // model (the request itself is denied: all is empty).
    assert!(!send(&mut host, &user_request(5), &[]));
    let state = state.borrow();
    assert_eq!(state.mismatch, None);
    assert_eq!((state.steals, state.bumps), (3, 2));
    assert_eq!(state.model.buckets[&(0, "0:u1".to_owned())].tokens, 2);
    let stored = host.shared_data(b"rate_limit.all.0").unwrap().0;
    assert_eq!(Slot::decode(&stored).unwrap().state.tokens, 0);
    assert_eq!(host.metric("rate_limit.user.contention"), Some(0));
    assert_eq!(host.metric("rate_limit.user.allowed"), Some(2));
}

#[test]
fn seven_stale_stamps_in_a_row_are_retried_and_the_eighth_is_contention() {
    // A request on `/other` hits only `all`: its check read and then each
    // commit re-read is bumped, so attempt k meets a stale stamp while
    // bumps remain. `on_contention: allow` (the default) admits uncharged.
    fn run(bumps: usize) -> (u16, i64, i64, u32) {
        let state = Rc::new(RefCell::new(RaceState::default()));
        let mut host = racing_host(&state);
        let other = Send {
            path: 2,
            ..user_request(0)
        };
        send_racing(&mut host, &state, &other, &[]);
        let (_, exchange) = send_racing(&mut host, &state, &other, &vec![Race::Bump; bumps]);
        let stored = host.shared_data(b"rate_limit.all.0").unwrap().0;
        (
            exchange.status,
            host.metric("rate_limit.all.allowed").unwrap_or(0),
            host.metric("rate_limit.all.contention").unwrap_or(0),
            Slot::decode(&stored).unwrap().state.tokens,
        )
    }
    assert_eq!(run(7), (200, 2, 0, 28));
    assert_eq!(run(8), (200, 1, 1, 29));
}
