//! Mesh-wide rate limits in real Envoy (issue #11): two Envoy processes
//! ("two pods") ask one rate-limit service backed by one Redis, so a limit
//! of N per minute admits exactly N across both, with our Wasm filter's
//! global mode, with Envoy's native `envoy.filters.http.ratelimit`, and with
//! one of each (they speak the same protocol, so they share the counter).
//! Then the faults: Redis or the service killed mid-run, where every request
//! follows its rule's `failure_mode` or local fallback, and none waits much
//! past the rule's timeout; a native Envoy with `failure_mode_deny` beside
//! it answers 500 like the Wasm `deny` rule. (Measured here: with Redis
//! gone the service does not answer within the 250 ms timeout, so those
//! requests take the timeout; with the service gone they fail at once.)
//!
//! Limits come from the service's sample file (`mesh.yaml`, domain `mesh`:
//! 10 per 60 s per `user` entry). Each test starts its own Redis, service and
//! Envoys (`--concurrency 1`), so the counts never mix between tests. The
//! rules use `failure_mode: deny` where the service must answer, so a broken
//! service shows up as 500s rather than as silently admitted requests.
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use e2e::global::{
    self, FailureMode, GlobalRule, RateLimitService, Redis, USER_HEADER, USER_LIMIT,
};
use e2e::{paths, Bootstrap, EchoUpstream, Envoy, EnvoyOptions, Response, Route, UpstreamConfig};

/// Requests past the limit in the two-pod tests.
const EXTRA: usize = 5;
/// The rule name of the two-pod tests (counters `rate_limit.per_user.*`).
const RULE: &str = "per_user";
/// A generous deadline where the service is healthy: a loaded CI machine
/// must not turn a slow answer into a failure.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(2);
/// The deadline of the fault test's rules: long enough that a healthy
/// answer on this machine never misses it, short enough that a request
/// waiting for it is obvious.
const FAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// How far past the rule's timeout a request may finish when the service
/// or Redis is gone (Envoy's own work, the upstream hop, a busy machine).
const MARGIN: Duration = Duration::from_secs(1);
/// Requests per rule after the fault.
const AFTER_FAULT: usize = 5;
/// The fallback rule's local bucket.
const FALLBACK_TOKENS: u32 = 3;

/// Which filter an Envoy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limiter {
    /// Our Wasm filter, one global rule.
    Wasm,
    /// Envoy's native ratelimit filter with the same descriptor.
    Native,
}

/// Redis, the service on the sample limits, and the echo upstream.
struct Mesh {
    // Dropped in reverse order of start: Envoys (held by the test) first,
    // then the service, then Redis.
    upstream: EchoUpstream,
    service: RateLimitService,
    redis: Redis,
}

impl Mesh {
    fn start() -> Self {
        let redis = Redis::start();
        let service = RateLimitService::start(&paths::ratelimit_service_limits(), &redis);
        let upstream = EchoUpstream::start(UpstreamConfig::default());
        Self {
            upstream,
            service,
            redis,
        }
    }

    /// An Envoy ("pod") with `limiter`, proxying `/` to the echo upstream.
    fn pod(&self, limiter: Limiter) -> Envoy {
        let bootstrap = match limiter {
            Limiter::Wasm => {
                let rule = GlobalRule {
                    timeout: HEALTHY_TIMEOUT,
                    failure_mode: FailureMode::Deny,
                    ..GlobalRule::new(RULE)
                };
                Bootstrap::new()
                    .filter(global::wasm_filter(&[rule]))
                    .route("/", Route::Upstream(self.upstream.addr()))
            }
            Limiter::Native => Bootstrap::new()
                .filter(global::native_filter(HEALTHY_TIMEOUT, FailureMode::Deny))
                .rate_limited_route(
                    "/",
                    Route::Upstream(self.upstream.addr()),
                    global::native_route_rate_limits(),
                ),
        };
        start(bootstrap.grpc_cluster(global::CLUSTER, self.service.addr()))
    }
}

/// The native filter's counter `ratelimit.<suffix>`, which Envoy files
/// under the cluster the request was routed to (the echo upstream's), not
/// under the rate-limit service's cluster.
fn native_counter_name(mesh: &Mesh, suffix: &str) -> String {
    format!(
        "cluster.upstream_{}.ratelimit.{suffix}",
        mesh.upstream.addr().port()
    )
}

fn start(bootstrap: Bootstrap) -> Envoy {
    let options = EnvoyOptions {
        concurrency: 1,
        ..EnvoyOptions::default()
    };
    Envoy::start_with(&bootstrap, &options)
}

/// `USER_LIMIT + EXTRA` requests as `user`, alternating between the pods.
fn alternate(pods: &[&Envoy], user: &str) -> Vec<Response> {
    let mut conns: Vec<_> = pods.iter().map(|pod| pod.connect()).collect();
    (0..USER_LIMIT + EXTRA)
        .map(|i| {
            let n = conns.len();
            conns[i % n]
                .request("GET", "/api/items", &[(USER_HEADER, user)])
                .unwrap_or_else(|e| panic!("request #{i}: {e}"))
        })
        .collect()
}

/// Exactly the first `USER_LIMIT` admitted, the rest 429: the sequence
/// every limiter (and every mix of them) must produce.
fn expected_statuses() -> Vec<u16> {
    let mut want = vec![200; USER_LIMIT];
    want.extend(vec![429; EXTRA]);
    want
}

fn statuses(responses: &[Response]) -> Vec<u16> {
    responses.iter().map(|r| r.status).collect()
}

/// The rate-limit headers on a 429: our filter's draft headers built from
/// the service's `current_limit` and `limit_remaining`, or the native
/// filter's `x-ratelimit-*` (`DRAFT_VERSION_03`) and `x-envoy-ratelimited`.
fn assert_limit_headers(response: &Response, limiter: Limiter, what: &str) {
    match limiter {
        Limiter::Wasm => {
            let policy = response
                .header("ratelimit-policy")
                .unwrap_or_else(|| panic!("{what}: no RateLimit-Policy: {:?}", response.headers));
            assert!(
                policy.starts_with(&format!("\"{RULE}\";q={USER_LIMIT}")),
                "{what}: RateLimit-Policy {policy:?}"
            );
            let state = response
                .header("ratelimit")
                .unwrap_or_else(|| panic!("{what}: no RateLimit: {:?}", response.headers));
            assert!(
                state.starts_with(&format!("\"{RULE}\";r=0;t=")),
                "{what}: RateLimit {state:?}"
            );
        }
        Limiter::Native => {
            assert_eq!(
                response.header("x-envoy-ratelimited"),
                Some("true"),
                "{what}: {:?}",
                response.headers
            );
            let limit = response.header("x-ratelimit-limit").unwrap_or_default();
            assert!(
                limit.starts_with(&USER_LIMIT.to_string()),
                "{what}: x-ratelimit-limit {limit:?}"
            );
            assert_eq!(
                response.header("x-ratelimit-remaining"),
                Some("0"),
                "{what}"
            );
        }
    }
}

/// Counter `name` (0 when Envoy has not created it yet).
fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| v)
}

/// The Wasm filter's counter `rate_limit.<rule>.<suffix>`, which Envoy
/// files under `wasmcustom.` in `/stats`.
fn wasm_counter_name(rule: &str, suffix: &str) -> String {
    format!("wasmcustom.rate_limit.{rule}.{suffix}")
}

/// Waits up to 10 s for `sum(name over envoys)` to reach `want` (the admin
/// thread reads counters independently of the worker that bumps them).
fn assert_counter_sum(envoys: &[&Envoy], name: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: u64 = envoys.iter().map(|e| counter(e, name)).sum();
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            let ours: Vec<Vec<(String, u64)>> = envoys
                .iter()
                .map(|e| {
                    e.stats()
                        .into_iter()
                        .filter(|(n, _)| {
                            n.starts_with("wasmcustom.rate_limit.")
                                || (n.contains(".ratelimit.")
                                    && !n.starts_with("cluster.ratelimit."))
                                || n == "cluster.ratelimit.upstream_rq_total"
                        })
                        .collect()
                })
                .collect();
            panic!("{name}: want {want} over all pods, got {got}; rate-limit stats: {ours:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two pods of `kinds`, N+k requests alternating between them: exactly
/// [`expected_statuses`], 429s with rate-limit headers; returns the pods.
fn two_pods_admit_exactly_the_limit(kinds: [Limiter; 2]) -> (Mesh, Vec<Envoy>) {
    let mesh = Mesh::start();
    let pods: Vec<Envoy> = kinds.iter().map(|kind| mesh.pod(*kind)).collect();
    let responses = alternate(&pods.iter().collect::<Vec<_>>(), "alice");
    assert_eq!(statuses(&responses), expected_statuses(), "{kinds:?}");
    for (i, response) in responses.iter().enumerate().skip(USER_LIMIT) {
        assert_limit_headers(response, kinds[i % 2], &format!("{kinds:?} #{i}"));
    }
    // Every admitted request reached the upstream, through either pod.
    assert_eq!(mesh.upstream.take_seen().len(), USER_LIMIT, "{kinds:?}");
    (mesh, pods)
}

#[test]
fn two_wasm_pods_admit_exactly_the_limit_across_both() {
    let (mesh, pods) = two_pods_admit_exactly_the_limit([Limiter::Wasm, Limiter::Wasm]);
    let pods: Vec<&Envoy> = pods.iter().collect();
    // Each pod saw half the requests; together they agree with the service.
    assert_counter_sum(
        &pods,
        &wasm_counter_name(RULE, "global_ok"),
        USER_LIMIT as u64,
    );
    assert_counter_sum(
        &pods,
        &wasm_counter_name(RULE, "global_over_limit"),
        EXTRA as u64,
    );
    assert_counter_sum(&pods, &wasm_counter_name(RULE, "global_error"), 0);
    assert_counter_sum(&pods, &wasm_counter_name(RULE, "global_fallback"), 0);
    // The service answered every call over the one HTTP/2 cluster.
    assert_counter_sum(
        &pods,
        "cluster.ratelimit.upstream_rq_total",
        (USER_LIMIT + EXTRA) as u64,
    );
    drop(mesh);
}

#[test]
fn two_native_pods_agree_exactly_with_the_wasm_pods() {
    // The same request sequence as the Wasm test, answered the same:
    // `expected_statuses` is what both must produce, request by request.
    let (mesh, pods) = two_pods_admit_exactly_the_limit([Limiter::Native, Limiter::Native]);
    let pods: Vec<&Envoy> = pods.iter().collect();
    assert_counter_sum(&pods, &native_counter_name(&mesh, "ok"), USER_LIMIT as u64);
    assert_counter_sum(
        &pods,
        &native_counter_name(&mesh, "over_limit"),
        EXTRA as u64,
    );
    assert_counter_sum(&pods, &native_counter_name(&mesh, "error"), 0);
    drop(mesh);
}

#[test]
fn a_wasm_pod_and_a_native_pod_share_one_limit() {
    // Same protocol, same descriptor, same service: the two filters charge
    // the same counter, so a mesh can mix them.
    let (mesh, pods) = two_pods_admit_exactly_the_limit([Limiter::Wasm, Limiter::Native]);
    // Alternating from the Wasm pod: requests 0, 2, ... 8 admitted there,
    // 1, 3, ... 9 at the native pod; 10, 12, 14 denied at Wasm, 11, 13 native.
    let wasm_ok = USER_LIMIT.div_ceil(2) as u64;
    let wasm_over = EXTRA.div_ceil(2) as u64;
    assert_counter_sum(&[&pods[0]], &wasm_counter_name(RULE, "global_ok"), wasm_ok);
    assert_counter_sum(
        &[&pods[0]],
        &wasm_counter_name(RULE, "global_over_limit"),
        wasm_over,
    );
    assert_counter_sum(
        &[&pods[1]],
        &native_counter_name(&mesh, "ok"),
        USER_LIMIT as u64 - wasm_ok,
    );
    assert_counter_sum(
        &[&pods[1]],
        &native_counter_name(&mesh, "over_limit"),
        EXTRA as u64 - wasm_over,
    );
    drop(mesh);
}

/// What gets killed mid-run.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Redis,
    Service,
}

/// One rule per failure behaviour, each on its own path prefix.
fn fault_rules() -> Vec<GlobalRule> {
    let rule = |name: &str, failure_mode, fallback| GlobalRule {
        name: name.to_owned(),
        prefix: Some(format!("/{name}")),
        timeout: FAULT_TIMEOUT,
        failure_mode,
        local_fallback_tokens: fallback,
        ..GlobalRule::new(name)
    };
    vec![
        rule("allow", FailureMode::Allow, None),
        rule("deny", FailureMode::Deny, None),
        // `allow` underneath: only the fallback bucket can turn a request
        // away, so a 429 here proves the fallback decided.
        rule("fallback", FailureMode::Allow, Some(FALLBACK_TOKENS)),
    ]
}

/// A request as `bob` on `path`, with its wall time.
fn timed(conn: &mut e2e::Connection, path: &str) -> (Response, Duration) {
    let start = Instant::now();
    let response = conn
        .request("GET", path, &[(USER_HEADER, "bob")])
        .unwrap_or_else(|e| panic!("{path}: {e} after {:?}", start.elapsed()));
    (response, start.elapsed())
}

fn fault_run(fault: Fault) {
    let mut mesh = Mesh::start();
    let envoy = start(
        Bootstrap::new()
            .filter(global::wasm_filter(&fault_rules()))
            .route("/", Route::Upstream(mesh.upstream.addr()))
            .grpc_cluster(global::CLUSTER, mesh.service.addr()),
    );
    // Envoy's native filter beside it, failing closed, for comparison.
    let native = start(
        Bootstrap::new()
            .filter(global::native_filter(FAULT_TIMEOUT, FailureMode::Deny))
            .rate_limited_route(
                "/",
                Route::Upstream(mesh.upstream.addr()),
                global::native_route_rate_limits(),
            )
            .grpc_cluster(global::CLUSTER, mesh.service.addr()),
    );
    let mut native_conn = native.connect();
    let mut conn = envoy.connect();
    // Healthy: the service answers every rule (bob is far below 10/min).
    let (r, _) = timed(&mut native_conn, "/native/x");
    assert_eq!(r.status, 200, "native before the fault: {}", r.text());
    for rule in ["allow", "deny", "fallback"] {
        let (r, _) = timed(&mut conn, &format!("/{rule}/x"));
        assert_eq!(r.status, 200, "{rule} before the fault: {}", r.text());
        assert_counter_sum(&[&envoy], &wasm_counter_name(rule, "global_ok"), 1);
    }

    match fault {
        Fault::Redis => {
            mesh.redis.stop();
            assert!(!mesh.redis.answers_ping(), "Redis still answers");
        }
        Fault::Service => mesh.service.stop(),
    }

    let bound = FAULT_TIMEOUT + MARGIN;
    let mut want_fallback_statuses = vec![200; FALLBACK_TOKENS as usize];
    want_fallback_statuses.extend(vec![429; AFTER_FAULT - FALLBACK_TOKENS as usize]);
    for (rule, want) in [
        ("allow", vec![200; AFTER_FAULT]),
        ("deny", vec![500; AFTER_FAULT]),
        ("fallback", want_fallback_statuses),
    ] {
        let mut got = Vec::new();
        let mut slowest = Duration::ZERO;
        for i in 0..AFTER_FAULT {
            let (r, elapsed) = timed(&mut conn, &format!("/{rule}/x"));
            assert!(
                elapsed <= bound,
                "{fault:?}: {rule} #{i} took {elapsed:?}, more than timeout {FAULT_TIMEOUT:?} + {MARGIN:?}"
            );
            got.push(r.status);
            slowest = slowest.max(elapsed);
        }
        eprintln!("{fault:?}: {rule}: {got:?}, slowest {slowest:?}");
        assert_eq!(got, want, "{fault:?}: {rule} after the fault");
        // Each failed call counts once: as an error where failure_mode
        // decided, as a fallback where the local bucket did (whose own
        // allowed/limited counters then say how it decided).
        let (errors, fallbacks) = if rule == "fallback" {
            (0, AFTER_FAULT as u64)
        } else {
            (AFTER_FAULT as u64, 0)
        };
        assert_counter_sum(&[&envoy], &wasm_counter_name(rule, "global_error"), errors);
        assert_counter_sum(
            &[&envoy],
            &wasm_counter_name(rule, "global_fallback"),
            fallbacks,
        );
        if rule == "fallback" {
            assert_counter_sum(
                &[&envoy],
                &wasm_counter_name(rule, "allowed"),
                u64::from(FALLBACK_TOKENS),
            );
            assert_counter_sum(
                &[&envoy],
                &wasm_counter_name(rule, "limited"),
                (AFTER_FAULT - FALLBACK_TOKENS as usize) as u64,
            );
        }
        // Nothing more was counted as answered.
        assert_counter_sum(&[&envoy], &wasm_counter_name(rule, "global_ok"), 1);
    }
    // The native filter with failure_mode_deny answers as our `deny` rule,
    // within the same bound.
    for i in 0..2 {
        let (r, elapsed) = timed(&mut native_conn, "/native/x");
        assert_eq!(r.status, 500, "{fault:?}: native #{i}");
        assert!(elapsed <= bound, "{fault:?}: native #{i} took {elapsed:?}");
    }
    assert_counter_sum(
        &[&native],
        &native_counter_name(&mesh, "failure_mode_allowed"),
        0,
    );
    assert_counter_sum(&[&native], &native_counter_name(&mesh, "error"), 2);
}

#[test]
fn redis_down_mid_run_follows_failure_mode_and_fallback_within_the_timeout() {
    fault_run(Fault::Redis);
}

#[test]
fn service_down_mid_run_follows_failure_mode_and_fallback_within_the_timeout() {
    fault_run(Fault::Service);
}

#[test]
fn redis_harness_starts_on_a_free_port_and_stops_on_demand() {
    let mut first = Redis::start();
    let second = Redis::start();
    assert_ne!(first.port(), second.port());
    assert!(first.answers_ping() && second.answers_ping());
    first.stop();
    assert!(!first.answers_ping(), "killed Redis still answers");
    assert!(
        second.answers_ping(),
        "stopping one Redis touched the other"
    );
}

/// Bad input from a healthy service: a domain it has no limits for is
/// refused with gRPC NOT_FOUND. The filter follows each rule's
/// `failure_mode`, counts `global_error` and logs a line naming the rule;
/// the VM keeps serving (no trap: later requests are still decided).
#[test]
fn an_unknown_domain_follows_failure_mode_with_a_log_line() {
    let mesh = Mesh::start();
    let rule = |name: &str, failure_mode| GlobalRule {
        prefix: Some(format!("/{name}")),
        domain: "no-such-domain".to_owned(),
        timeout: HEALTHY_TIMEOUT,
        failure_mode,
        ..GlobalRule::new(name)
    };
    let envoy = start(
        Bootstrap::new()
            .filter(global::wasm_filter(&[
                rule("open", FailureMode::Allow),
                rule("closed", FailureMode::Deny),
            ]))
            .route("/", Route::Upstream(mesh.upstream.addr()))
            .grpc_cluster(global::CLUSTER, mesh.service.addr()),
    );
    let mut conn = envoy.connect();
    for _ in 0..3 {
        let open = conn
            .request("GET", "/open", &[(USER_HEADER, "carol")])
            .unwrap();
        assert_eq!(open.status, 200);
        let closed = conn
            .request("GET", "/closed", &[(USER_HEADER, "carol")])
            .unwrap();
        assert_eq!(closed.status, 500);
    }
    assert_counter_sum(&[&envoy], &wasm_counter_name("open", "global_error"), 3);
    assert_counter_sum(&[&envoy], &wasm_counter_name("closed", "global_error"), 3);
    let log = envoy.log();
    for name in ["open", "closed"] {
        assert!(
            log.contains(&format!("rule {name}: rate-limit service failed (Grpc(5))")),
            "no log line for rule {name}: {}",
            envoy.log_tail()
        );
    }
    assert!(
        mesh.service.log().contains("no-such-domain"),
        "the service logs the refusal: {}",
        mesh.service.log()
    );
}
