#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::HashMap;
use std::net::IpAddr;

use prost::Message;
use ratelimit_proto::{
    Code, DescriptorStatus, Duration as ProtoDuration, RateLimit, RateLimitRequest,
    RateLimitResponse, Unit,
};

use super::*;
use crate::config::{validate, ConfigError};

#[derive(Default)]
struct View {
    headers: HashMap<&'static str, Vec<u8>>,
    ip: Option<IpAddr>,
}

impl RequestView for View {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.headers.get(name).cloned().filter(|v| !v.is_empty())
    }
    fn client_ip(&mut self) -> Option<IpAddr> {
        self.ip
    }
}

fn view(headers: &[(&'static str, &[u8])]) -> View {
    View {
        headers: headers.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
        ip: Some("10.1.2.3".parse().unwrap()),
    }
}

fn global_rule(global: &str) -> String {
    format!(r#"{{"rules": [{{"name": "g", "match": {{"prefix": "/api"}}, "global": {global}}}]}}"#)
}

const ISSUE_GLOBAL: &str = r#"{"cluster": "ratelimit", "domain": "mesh", "timeout": "20ms",
    "descriptors": [[{"key": "user", "from": {"header": "x-jwt-sub"}}, {"key": "path", "from": "path"}]],
    "failure_mode": "allow", "local_fallback": true}"#;

fn plan(json: &str) -> GlobalPlan {
    GlobalPlan::new(&validate(json.as_bytes()).unwrap())
}

fn decoded(calls: &[Call]) -> Vec<(u16, RateLimitRequest)> {
    calls
        .iter()
        .map(|c| (c.rule, RateLimitRequest::decode(&c.message[..]).unwrap()))
        .collect()
}

fn entries(request: &RateLimitRequest) -> Vec<Vec<(String, String)>> {
    request
        .descriptors
        .iter()
        .map(|d| {
            d.entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect()
        })
        .collect()
}

#[test]
fn the_issue_config_needs_its_fallback_bucket() {
    let error = validate(global_rule(ISSUE_GLOBAL).as_bytes()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "rate-limit: rules[0].token_bucket: required by global.local_fallback: true"
    );
    let json = r#"{"rules": [{"name": "g", "global": GLOBAL,
        "key": [{"header": "x-jwt-sub"}],
        "token_bucket": {"max_tokens": 10, "fill_interval": "60s"}}]}"#
        .replace("GLOBAL", ISSUE_GLOBAL);
    let config = validate(json.as_bytes()).unwrap();
    assert_eq!(config.global.len(), 1);
    assert_eq!(config.rules.len(), 1);
    assert!(config.rules[0].fallback_only);
    assert_eq!(config.global[0].fallback, Some(0));
    let global = &config.global[0].global;
    assert_eq!(global.timeout, std::time::Duration::from_millis(20));
    assert_eq!(global.failure_mode, FailureMode::Allow);
    assert_eq!(global.descriptors[0][1].from, Source::Path);
}

#[test]
fn the_path_is_needed_only_by_path_matches_and_path_or_query_entries() {
    let needs = |matcher: &str, from: &str| {
        let json = format!(
            r#"{{"rules": [{{"name": "g"{matcher}, "global": {{"cluster": "c", "domain": "d",
                "descriptors": [[{{"key": "k", "from": {from}}}]]}}}}]}}"#
        );
        plan(&json).needs_path()
    };
    assert!(!needs("", r#"{"header": "x-user"}"#));
    assert!(!needs("", r#""authority""#));
    assert!(needs(
        r#", "match": {"prefix": "/api"}"#,
        r#"{"header": "x-user"}"#
    ));
    assert!(needs("", r#""path""#));
    assert!(needs("", r#"{"query_param": "k"}"#));
}

#[test]
fn global_defaults_follow_envoy() {
    let config = validate(
        global_rule(r#"{"cluster": "rl", "domain": "d", "descriptors": [[{"key": "k", "from": {"value": "v"}}]]}"#)
            .as_bytes(),
    )
    .unwrap();
    let global = &config.global[0].global;
    assert_eq!(global.timeout, config::DEFAULT_TIMEOUT);
    assert_eq!(global.failure_mode, FailureMode::Allow);
    assert!(!global.local_fallback);
    assert!(config.rules.is_empty());
}

#[test]
fn global_errors_name_the_field() {
    let error = |global: &str| {
        validate(global_rule(global).as_bytes())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        error(r#"{"cluster": "", "domain": "d", "descriptors": [[{"key": "k", "from": "path"}]]}"#),
        r#"rate-limit: rules[0].global.cluster: must be 1..=256 bytes without control characters, got """#
    );
    assert_eq!(
        error(r#"{"cluster": "c", "domain": "d", "descriptors": []}"#),
        "rate-limit: rules[0].global.descriptors: must list 1..=8 descriptors, got 0"
    );
    assert_eq!(
        error(r#"{"cluster": "c", "domain": "d", "descriptors": [[]]}"#),
        "rate-limit: rules[0].global.descriptors[0]: must list 1..=8 entries, got 0"
    );
    assert!(error(
        r#"{"cluster": "c", "domain": "d", "descriptors": [[{"key": "k", "from": "body"}]]}"#
    )
    .starts_with("rate-limit: rules[0].global.descriptors[0][0].from: must be \"path\""));
    assert!(error(r#"{"cluster": "c", "domain": "d", "descriptors": [[{"key": "k", "from": {"header": "X-U"}}]]}"#)
        .starts_with("rate-limit: rules[0].global.descriptors[0][0].from: header:"));
    assert!(error(
        r#"{"cluster": "c", "domain": "d", "descriptors": [[{"key": "", "from": "path"}]]}"#
    )
    .starts_with("rate-limit: rules[0].global.descriptors[0][0].key:"));
    assert_eq!(
        error(
            r#"{"cluster": "c", "domain": "d", "timeout": "0s", "descriptors": [[{"key": "k", "from": "path"}]]}"#
        ),
        r#"rate-limit: rules[0].global.timeout: must be 1ms..=10s, got "0s""#
    );
    assert!(error(r#"{"cluster": "c", "domain": "d", "failure_mode": "retry", "descriptors": [[{"key": "k", "from": "path"}]]}"#)
        .starts_with("rate-limit: invalid config:"));
    assert!(error(r#"{"cluster": "c", "domain": "d", "descriptors": [[{"key": "k", "from": "path"}]], "grpc": 1}"#)
        .starts_with("rate-limit: invalid config:"));
    // A bucket or key a global rule cannot use is refused, not ignored.
    let unused = validate(
        br#"{"rules": [{"name": "g", "global": {"cluster": "c", "domain": "d", "descriptors": [[{"key": "k", "from": "path"}]]},
        "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}]}"#,
    )
    .unwrap_err();
    assert_eq!(
        unused.to_string(),
        "rate-limit: rules[0].token_bucket: only used by the local fallback; set global.local_fallback: true or remove it"
    );
    // A local rule still needs its bucket.
    assert_eq!(
        validate(br#"{"rules": [{"name": "l"}]}"#).unwrap_err(),
        ConfigError::MissingTokenBucket { index: 0 }
    );
    // Names are unique across local and global rules.
    let twice = validate(
        br#"{"rules": [{"name": "a", "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}},
        {"name": "a", "global": {"cluster": "c", "domain": "d", "descriptors": [[{"key": "k", "from": "path"}]]}}]}"#,
    )
    .unwrap_err();
    assert_eq!(
        twice.to_string(),
        r#"rate-limit: rules[1].name: "a" is already used by an earlier rule"#
    );
}

#[test]
fn a_call_carries_the_domain_every_complete_descriptor_and_one_hit() {
    let mut plan = plan(&global_rule(
        r#"{"cluster": "rl", "domain": "mesh", "descriptors": [
            [{"key": "user", "from": {"header": "x-user"}}, {"key": "path", "from": "path"}],
            [{"key": "ip", "from": "client_ip"}, {"key": "m", "from": "method"}, {"key": "kind", "from": {"value": "api"}}],
            [{"key": "session", "from": {"cookie": "sid"}}],
            [{"key": "api_key", "from": {"query_param": "key"}}, {"key": "host", "from": "authority"}]]}"#,
    ));
    let mut calls = Vec::new();
    let mut request = view(&[
        ("x-user", b"ann"),
        ("cookie", b"a=1; sid=s42"),
        (":authority", b"example.com"),
    ]);
    plan.calls(
        Some(b"/api/items?key=k9"),
        Some(b"GET"),
        &mut request,
        &mut calls,
    );
    let calls = decoded(&calls);
    assert_eq!(calls.len(), 1);
    let (rule, request) = &calls[0];
    assert_eq!(*rule, 0);
    assert_eq!(request.domain, "mesh");
    assert_eq!(request.hits_addend, 1);
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        entries(request),
        vec![
            pairs(&[("user", "ann"), ("path", "/api/items")]),
            pairs(&[("ip", "10.1.2.3"), ("m", "GET"), ("kind", "api")]),
            pairs(&[("session", "s42")]),
            pairs(&[("api_key", "k9"), ("host", "example.com")]),
        ]
    );
}

#[test]
fn a_descriptor_with_a_missing_value_is_dropped_and_no_descriptor_means_no_call() {
    let mut plan = plan(&global_rule(
        r#"{"cluster": "rl", "domain": "mesh", "descriptors": [
            [{"key": "user", "from": {"header": "x-user"}}],
            [{"key": "path", "from": "path"}]]}"#,
    ));
    let mut calls = Vec::new();
    // Empty counts as missing: only the path descriptor is left.
    plan.calls(
        Some(b"/api/x"),
        None,
        &mut view(&[("x-user", b"")]),
        &mut calls,
    );
    assert_eq!(
        entries(&decoded(&calls)[0].1),
        vec![vec![("path".to_owned(), "/api/x".to_owned())]]
    );
    // Only a user descriptor, and no user: no call at all.
    let mut user_only = plan_user_only();
    calls.clear();
    user_only.calls(Some(b"/api/x"), None, &mut view(&[]), &mut calls);
    assert!(calls.is_empty());
    // The rule's match is honoured.
    calls.clear();
    plan.calls(
        Some(b"/other"),
        None,
        &mut view(&[("x-user", b"ann")]),
        &mut calls,
    );
    assert!(calls.is_empty());
}

proptest::proptest! {
    /// The plan keeps each rule's message between requests: whatever the
    /// earlier requests were (descriptors dropped or not, longer or shorter
    /// values), a request gets the message a fresh plan would send.
    #[test]
    fn a_reused_plan_sends_what_a_fresh_plan_sends(
        requests in proptest::collection::vec(
            (
                proptest::option::of("[a-z]{0,12}"),
                proptest::option::of("[a-z]{0,3}"),
                proptest::option::of("/[a-z]{0,8}"),
            ),
            1..8,
        ),
    ) {
        let config = global_rule(
            r#"{"cluster": "rl", "domain": "mesh", "descriptors": [
                [{"key": "user", "from": {"header": "x-user"}}, {"key": "kind", "from": {"value": "api"}}],
                [{"key": "session", "from": {"cookie": "sid"}}],
                [{"key": "path", "from": "path"}, {"key": "user", "from": {"header": "x-user"}}]]}"#,
        );
        let mut reused = plan(&config);
        for (user, session, path) in requests {
            let mut headers: Vec<(&'static str, Vec<u8>)> = Vec::new();
            if let Some(user) = user {
                headers.push(("x-user", user.into_bytes()));
            }
            if let Some(session) = session {
                headers.push(("cookie", format!("sid={session}").into_bytes()));
            }
            let headers: Vec<(&'static str, &[u8])> =
                headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let path = path.map(|p| format!("/api{p}"));
            let path = path.as_deref().map(str::as_bytes);
            let (mut from_reused, mut from_fresh) = (Vec::new(), Vec::new());
            reused.calls(path, None, &mut view(&headers), &mut from_reused);
            plan(&config).calls(path, None, &mut view(&headers), &mut from_fresh);
            proptest::prop_assert_eq!(from_reused, from_fresh);
        }
    }
}

fn plan_user_only() -> GlobalPlan {
    plan(&global_rule(
        r#"{"cluster": "rl", "domain": "mesh", "descriptors": [[{"key": "user", "from": {"header": "x-user"}}]]}"#,
    ))
}

#[test]
fn values_that_are_not_utf8_still_count() {
    let mut calls = Vec::new();
    plan_user_only().calls(
        Some(b"/api"),
        None,
        &mut view(&[("x-user", b"a\xffb")]),
        &mut calls,
    );
    assert_eq!(entries(&decoded(&calls)[0].1)[0][0].1, "a\u{fffd}b");
}

fn response(code: Code, statuses: Vec<DescriptorStatus>) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: code as i32,
        statuses,
        ..Default::default()
    }
}

fn status(code: Code, limit: u32, unit: Unit, remaining: u32, reset_s: i64) -> DescriptorStatus {
    DescriptorStatus {
        code: code as i32,
        current_limit: Some(RateLimit {
            requests_per_unit: limit,
            unit: unit as i32,
            name: String::new(),
        }),
        limit_remaining: remaining,
        duration_until_reset: Some(ProtoDuration {
            seconds: reset_s,
            nanos: 0,
        }),
    }
}

#[test]
fn answers_are_read_and_anything_else_is_a_failure() {
    let ok = response(Code::Ok, vec![]);
    assert_eq!(interpret(0, Some(&ok.encode_to_vec())), Answer::Ok(ok));
    let over = response(
        Code::OverLimit,
        vec![status(Code::OverLimit, 10, Unit::Minute, 0, 30)],
    );
    assert_eq!(
        interpret(0, Some(&over.encode_to_vec())),
        Answer::OverLimit(over)
    );
    // gRPC errors: deadline, unavailable, unknown domain, empty value.
    for code in [4, 14, 5, 3, 13] {
        assert_eq!(interpret(code, None), Answer::Failed(Failure::Grpc(code)));
    }
    // An empty message decodes to code UNKNOWN: no verdict.
    assert_eq!(interpret(0, None), Answer::Failed(Failure::NoVerdict));
    assert_eq!(
        interpret(0, Some(&[0x08, 0x07])),
        Answer::Failed(Failure::NoVerdict)
    );
    // Garbage: a truncated length-delimited field, a bad wire type.
    assert_eq!(
        interpret(0, Some(&[0x12, 0x05, 0x01])),
        Answer::Failed(Failure::Undecodable)
    );
    assert_eq!(
        interpret(0, Some(&[0x0f])),
        Answer::Failed(Failure::Undecodable)
    );
    let huge = vec![0u8; MAX_ANSWER_LEN + 1];
    assert_eq!(
        interpret(0, Some(&huge)),
        Answer::Failed(Failure::Undecodable)
    );
}

#[test]
fn random_bytes_never_panic_the_reader() {
    // A deterministic xorshift stream: 20,000 messages of 0..64 bytes.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = usize::try_from(next() % 64).unwrap();
        let bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        let _ = interpret(0, Some(&bytes));
    }
}

#[test]
fn resolution_prefers_over_limit_then_fail_closed_then_fallback() {
    use FailureMode::{Allow, Deny};
    use RuleResolution as R;
    assert_eq!(resolve([(R::Ok, Allow)], false), Resolution::Admit);
    assert_eq!(resolve([(R::Error, Allow)], false), Resolution::Admit);
    assert_eq!(resolve([(R::Error, Deny)], false), Resolution::FailClosed);
    assert_eq!(resolve([(R::Fallback, Deny)], false), Resolution::Fallback);
    assert_eq!(
        resolve([(R::Fallback, Allow), (R::Error, Deny)], false),
        Resolution::FailClosed
    );
    assert_eq!(
        resolve([(R::OverLimit, Allow), (R::Error, Deny)], false),
        Resolution::OverLimit
    );
    // Shadow mode counts OVER_LIMIT but lets the request through.
    assert_eq!(resolve([(R::OverLimit, Allow)], true), Resolution::Admit);
    assert_eq!(
        resolve_rule(&Answer::Failed(Failure::Dispatch), true),
        RuleResolution::Fallback
    );
    assert_eq!(
        resolve_rule(&Answer::Failed(Failure::Dispatch), false),
        RuleResolution::Error
    );
}

#[test]
fn the_tightest_status_feeds_the_headers() {
    let answer = response(
        Code::OverLimit,
        vec![
            status(Code::Ok, 100, Unit::Hour, 50, 1_000),
            status(Code::OverLimit, 10, Unit::Minute, 0, 42),
            DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            },
        ],
    );
    assert_eq!(
        service_quota(&answer),
        Some(ServiceQuota {
            limit: 10,
            window_secs: Some(60),
            remaining: 0,
            reset_ns: 42_000_000_000,
            over_limit: true,
        })
    );
    // A service that reports no limits gives no headers.
    assert_eq!(service_quota(&response(Code::Ok, vec![])), None);
    let unknown_unit = response(Code::Ok, vec![status(Code::Ok, 5, Unit::Unknown, 4, 1)]);
    assert_eq!(service_quota(&unknown_unit).unwrap().window_secs, None);
}

#[test]
fn timeouts_take_seconds_or_whole_milliseconds() {
    let timeout = |t: &str| {
        validate(
            global_rule(&format!(
                r#"{{"cluster": "c", "domain": "d", "timeout": "{t}", "descriptors": [[{{"key": "k", "from": "path"}}]]}}"#
            ))
            .as_bytes(),
        )
        .map(|c| c.global[0].global.timeout)
    };
    assert_eq!(
        timeout("20ms").unwrap(),
        std::time::Duration::from_millis(20)
    );
    assert_eq!(
        timeout("0.25s").unwrap(),
        std::time::Duration::from_millis(250)
    );
    assert!(timeout("1.5ms").is_err());
    assert!(timeout("ms").is_err());
    assert!(timeout("11s").is_err());
    assert!(timeout("99999999999999999999999ms").is_err());
}
