//! Global mode in host-test: the shipped module calls a model rate-limit
//! service (a host-test responder that decodes each `RateLimitRequest` and
//! counts per descriptor set, as Limitador does with one fixed window), and
//! every answer, failure and fallback is checked from the client's side,
//! the upstream's side and the counters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use host_test::{ClusterMock, Exchange, FilterSpec, Host, MockResponse, Request};
use prost::Message;
use ratelimit_proto::{
    Code, DescriptorStatus, Duration as ProtoDuration, HeaderValue, RateLimit, RateLimitRequest,
    RateLimitResponse, Unit,
};

const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dist/filters/rate_limit.wasm"
);

/// How the model service answers.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    /// Count and answer OK / OVER_LIMIT.
    Count,
    /// Never answer: the call fails at its timeout.
    Hang,
    /// The connection fails at once.
    Reset,
    /// A gRPC error status.
    Status(u32),
    /// These bytes as the message.
    Raw(Vec<u8>),
}

/// A fixed-window service: `limit` hits per descriptor set per window.
struct Model {
    limit: u32,
    mode: Mode,
    counts: HashMap<Vec<Vec<(String, String)>>, u32>,
    requests: Vec<RateLimitRequest>,
    /// Added to every answer.
    response_headers: Vec<HeaderValue>,
    request_headers: Vec<HeaderValue>,
    raw_body: Vec<u8>,
}

type Shared = Rc<RefCell<Model>>;

fn model(limit: u32) -> Shared {
    Rc::new(RefCell::new(Model {
        limit,
        mode: Mode::Count,
        counts: HashMap::new(),
        requests: Vec::new(),
        response_headers: Vec::new(),
        request_headers: Vec::new(),
        raw_body: Vec::new(),
    }))
}

fn answer(model: &Shared, message: &[u8]) -> ClusterMock {
    let mut m = model.borrow_mut();
    let request = RateLimitRequest::decode(message).expect("the filter sends a valid request");
    m.requests.push(request.clone());
    match m.mode.clone() {
        Mode::Hang => {
            return ClusterMock {
                hang: true,
                ..ClusterMock::default()
            }
        }
        Mode::Reset => {
            return ClusterMock {
                reset: true,
                ..ClusterMock::default()
            }
        }
        Mode::Status(code) => {
            return ClusterMock {
                grpc_status: code,
                ..ClusterMock::default()
            }
        }
        Mode::Raw(bytes) => {
            return ClusterMock {
                message: Some(bytes),
                ..ClusterMock::default()
            }
        }
        Mode::Count => {}
    }
    let limit = m.limit;
    let mut over = false;
    let statuses = request
        .descriptors
        .iter()
        .map(|d| {
            let key: Vec<Vec<(String, String)>> = vec![d
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect()];
            let count = m.counts.entry(key).or_insert(0);
            *count += request.hits_addend.max(1);
            let code = if *count > limit {
                over = true;
                Code::OverLimit
            } else {
                Code::Ok
            };
            DescriptorStatus {
                code: code as i32,
                current_limit: Some(RateLimit {
                    requests_per_unit: limit,
                    unit: Unit::Minute as i32,
                    name: "per-user".into(),
                }),
                limit_remaining: limit.saturating_sub(*count),
                duration_until_reset: Some(ProtoDuration {
                    seconds: 42,
                    nanos: 500_000_000,
                }),
            }
        })
        .collect();
    let response = RateLimitResponse {
        overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
        statuses,
        response_headers_to_add: m.response_headers.clone(),
        request_headers_to_add: m.request_headers.clone(),
        raw_body: if over { m.raw_body.clone() } else { Vec::new() },
    };
    ClusterMock {
        message: Some(response.encode_to_vec()),
        delay: Duration::from_millis(2),
        ..ClusterMock::default()
    }
}

fn host(workers: u32, config: &str, service: &Shared) -> Host {
    assert!(
        Path::new(WASM).exists(),
        "{WASM} is missing: run `make build`"
    );
    let mut host = Host::with_workers(workers).unwrap();
    host.add_filter(FilterSpec::file("rl", WASM).config(config))
        .unwrap();
    host.set_upstream(MockResponse::with_status(200).body("ok"));
    let service = Rc::clone(service);
    host.set_cluster_responder(
        "ratelimit",
        Box::new(move |call| {
            assert_eq!(
                call.grpc_method,
                "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
            );
            answer(&service, &call.body)
        }),
    );
    host
}

/// A global rule `g` on `/api`, one descriptor `user` from `x-user`.
fn global_config(extra_global: &str, extra_rule: &str, extra_top: &str) -> String {
    format!(
        r#"{{"rules": [{{"name": "g", "match": {{"prefix": "/api"}},
            "global": {{"cluster": "ratelimit", "domain": "mesh", "timeout": "20ms",
                "descriptors": [[{{"key": "user", "from": {{"header": "x-user"}}}}]] {extra_global}}}
            {extra_rule}}}] {extra_top}}}"#
    )
}

fn get(host: &mut Host, user: &str, worker: u32) -> Exchange {
    let exchange = host.send(
        Request::get("/api/items")
            .header("x-user", user)
            .on_worker(worker),
    );
    assert!(
        exchange.failures.is_empty(),
        "trap: {:?}",
        exchange.failures
    );
    exchange
}

fn statuses(host: &mut Host, user: &str, n: u32) -> Vec<u16> {
    (0..n).map(|i| get(host, user, i % 4).status).collect()
}

fn counter(host: &Host, name: &str) -> i64 {
    host.metric(&format!("rate_limit.g.{name}")).unwrap_or(0)
}

#[test]
fn the_service_decides_exactly_across_workers_and_denials_look_like_envoys() {
    let service = model(5);
    let mut host = host(4, &global_config("", "", ""), &service);
    let got = statuses(&mut host, "ann", 8);
    assert_eq!(got, [200, 200, 200, 200, 200, 429, 429, 429]);
    // Another user has a budget of its own.
    assert_eq!(get(&mut host, "bob", 2).status, 200);

    let denied = get(&mut host, "ann", 3);
    assert_eq!(denied.status, 429);
    assert_eq!(denied.body_text(), "rate limited\n");
    assert_eq!(
        denied.header("x-envoy-ratelimited").as_deref(),
        Some("true")
    );
    assert_eq!(
        denied.header("ratelimit-policy").as_deref(),
        Some(r#""g";q=5;w=60"#)
    );
    assert_eq!(
        denied.header("ratelimit").as_deref(),
        Some(r#""g";r=0;t=43"#)
    );
    assert_eq!(denied.header("retry-after").as_deref(), Some("43"));
    let admitted = get(&mut host, "cy", 0);
    assert_eq!(
        admitted.header("ratelimit").as_deref(),
        Some(r#""g";r=4;t=43"#)
    );

    let m = service.borrow();
    assert_eq!(m.requests.len(), 11, "one call per request");
    let first = &m.requests[0];
    assert_eq!(first.domain, "mesh");
    assert_eq!(first.hits_addend, 1);
    assert_eq!(first.descriptors[0].entries[0].key, "user");
    assert_eq!(first.descriptors[0].entries[0].value, "ann");
    drop(m);
    assert_eq!(host.callouts()[0].cluster, "ratelimit");
    assert_eq!(host.callouts()[0].timeout_ms, 20);
    assert_eq!(counter(&host, "global_ok"), 7);
    assert_eq!(counter(&host, "global_over_limit"), 4);
}

#[test]
fn requests_outside_the_rule_or_without_a_descriptor_make_no_call() {
    let service = model(1);
    let mut host = host(1, &global_config("", "", ""), &service);
    assert_eq!(host.send(Request::get("/health")).status, 200);
    // No x-user (and an empty one): the only descriptor is incomplete.
    assert_eq!(host.send(Request::get("/api/x")).status, 200);
    assert_eq!(
        host.send(Request::get("/api/x").header("x-user", ""))
            .status,
        200
    );
    assert!(service.borrow().requests.is_empty());
}

#[test]
fn local_rules_decide_first_and_only_admitted_requests_reach_the_service() {
    let service = model(100);
    let config = r#"{"rules": [
        {"name": "local", "token_bucket": {"max_tokens": 2, "fill_interval": "60s"}},
        {"name": "g", "global": {"cluster": "ratelimit", "domain": "mesh",
            "descriptors": [[{"key": "user", "from": {"header": "x-user"}}]]}}]}"#;
    let mut host = host(2, config, &service);
    assert_eq!(statuses(&mut host, "ann", 4), [200, 200, 429, 429]);
    assert_eq!(service.borrow().requests.len(), 2);
    // Admitted answers list both policies.
    let mut host = self::host(1, config, &model(100));
    let first = get(&mut host, "ann", 0);
    assert_eq!(
        first.header("ratelimit-policy").as_deref(),
        Some(r#""local";q=2;w=120, "g";q=100;w=60"#)
    );
}

#[test]
fn a_failing_service_follows_failure_mode_and_never_outlasts_the_timeout() {
    for (mode, failure_mode, expected) in [
        (Mode::Hang, "allow", 200),
        (Mode::Hang, "deny", 500),
        (Mode::Reset, "allow", 200),
        (Mode::Reset, "deny", 500),
        (Mode::Status(5), "deny", 500),  // unknown domain
        (Mode::Status(3), "allow", 200), // an empty descriptor value
        (Mode::Status(13), "deny", 500),
        (Mode::Raw(vec![0x12, 0x05, 0x01]), "deny", 500), // garbage
        (Mode::Raw(Vec::new()), "deny", 500),             // no verdict
        (Mode::Raw(vec![0x08, 0x09]), "allow", 200),      // unknown code
    ] {
        let service = model(100);
        service.borrow_mut().mode = mode.clone();
        let config = global_config(&format!(r#", "failure_mode": "{failure_mode}""#), "", "");
        let mut host = host(1, &config, &service);
        let before = host.now_ns();
        let exchange = get(&mut host, "ann", 0);
        assert_eq!(exchange.status, expected, "{mode:?} {failure_mode}");
        assert!(exchange.stalled.is_none(), "{mode:?}");
        assert!(
            host.now_ns() - before <= 20_000_000 + 5_000_000,
            "{mode:?}: the request waited past the 20 ms timeout"
        );
        if expected == 500 {
            assert!(exchange.body.is_empty());
        }
        assert_eq!(counter(&host, "global_error"), 1, "{mode:?}");
        assert_eq!(counter(&host, "global_ok"), 0);
        assert!(
            host.logs()
                .iter()
                .any(|l| l.message.contains("rate-limit service failed")),
            "{mode:?}: a failure must leave a log line"
        );
    }
}

#[test]
fn an_unknown_cluster_is_a_failure_not_a_trap() {
    let service = model(100);
    let config = global_config(r#", "failure_mode": "deny""#, "", "")
        .replace(r#""cluster": "ratelimit""#, r#""cluster": "nowhere""#);
    let mut host = host(1, &config, &service);
    let exchange = get(&mut host, "ann", 0);
    assert_eq!(exchange.status, 500);
    assert_eq!(counter(&host, "global_error"), 1);
    assert!(host
        .logs()
        .iter()
        .any(|l| l.message.contains("cannot call cluster \"nowhere\"")));
}

#[test]
fn the_local_fallback_bucket_protects_while_the_service_is_down() {
    let service = model(100);
    let config = global_config(
        r#", "failure_mode": "deny", "local_fallback": true"#,
        r#", "key": [{"header": "x-user"}], "token_bucket": {"max_tokens": 3, "fill_interval": "60s"}"#,
        "",
    );
    let mut host = host(2, &config, &service);
    // Up: the service decides, the fallback bucket is not charged.
    assert_eq!(statuses(&mut host, "ann", 4), [200; 4]);
    assert_eq!(counter(&host, "allowed"), 0);
    // Down: the bucket (3 per user) decides; failure_mode is not used.
    service.borrow_mut().mode = Mode::Reset;
    assert_eq!(statuses(&mut host, "ann", 5), [200, 200, 200, 429, 429]);
    assert_eq!(get(&mut host, "bob", 1).status, 200);
    assert_eq!(counter(&host, "global_fallback"), 6);
    assert_eq!(counter(&host, "allowed"), 4);
    assert_eq!(counter(&host, "limited"), 2);
    let denied = get(&mut host, "ann", 0);
    assert_eq!(
        denied.header("ratelimit").as_deref(),
        Some(r#""g";r=0;t=60"#),
        "the fallback denial carries the bucket's headers"
    );
    assert!(denied.header("x-envoy-ratelimited").is_none());
    // Back up: the service decides again.
    service.borrow_mut().mode = Mode::Count;
    assert_eq!(get(&mut host, "ann", 1).status, 200);
}

#[test]
fn service_headers_and_body_are_passed_on() {
    let service = model(1);
    {
        let mut m = service.borrow_mut();
        m.request_headers = vec![HeaderValue {
            key: "X-RL-Checked".into(),
            value: "yes".into(),
            raw_value: Vec::new(),
        }];
        m.response_headers = vec![
            HeaderValue {
                key: "x-rl-service".into(),
                value: String::new(),
                raw_value: b"limitador".to_vec(),
            },
            HeaderValue {
                key: "bad name".into(),
                value: "dropped".into(),
                raw_value: Vec::new(),
            },
        ];
        m.raw_body = b"slow down\n".to_vec();
    }
    let mut host = host(1, &global_config("", "", ""), &service);
    let admitted = get(&mut host, "ann", 0);
    assert_eq!(admitted.status, 200);
    assert_eq!(
        admitted
            .upstream
            .as_ref()
            .unwrap()
            .header("x-rl-checked")
            .as_deref(),
        Some("yes")
    );
    assert_eq!(
        admitted.header("x-rl-service").as_deref(),
        Some("limitador")
    );
    let denied = get(&mut host, "ann", 0);
    assert_eq!(denied.status, 429);
    assert_eq!(denied.body_text(), "slow down\n");
    assert_eq!(denied.header("x-rl-service").as_deref(), Some("limitador"));
    // The service's headers replace this filter's own.
    assert!(denied.header("ratelimit").is_none());
    assert!(denied.header("bad name").is_none());
}

#[test]
fn shadow_mode_counts_over_limit_but_admits() {
    let service = model(1);
    let mut host = host(
        1,
        &global_config("", "", r#", "shadow_mode": true"#),
        &service,
    );
    assert_eq!(statuses(&mut host, "ann", 3), [200, 200, 200]);
    assert_eq!(counter(&host, "global_over_limit"), 2);
}

#[test]
fn two_global_rules_are_asked_at_once_and_either_can_deny() {
    let service = model(2);
    let config = r#"{"rules": [
        {"name": "g", "global": {"cluster": "ratelimit", "domain": "mesh",
            "descriptors": [[{"key": "user", "from": {"header": "x-user"}}]]}},
        {"name": "p", "global": {"cluster": "ratelimit", "domain": "mesh",
            "descriptors": [[{"key": "path", "from": "path"}]]}}]}"#;
    let mut host = host(1, config, &service);
    assert_eq!(get(&mut host, "ann", 0).status, 200);
    assert_eq!(get(&mut host, "bob", 0).status, 200);
    // ann is fine, but /api/items has had its 2.
    assert_eq!(get(&mut host, "cy", 0).status, 429);
    assert_eq!(service.borrow().requests.len(), 6);
}

#[test]
fn header_values_that_are_not_utf8_do_not_trap() {
    let service = model(1);
    let mut host = host(1, &global_config("", "", ""), &service);
    let exchange = host.send(Request::get("/api/x").header("x-user", b"\xff\xfe".as_slice()));
    assert!(exchange.failures.is_empty());
    assert_eq!(exchange.status, 200);
    assert_eq!(
        service.borrow().requests[0].descriptors[0].entries[0].value,
        "\u{fffd}\u{fffd}"
    );
}
