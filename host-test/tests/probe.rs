//! host-test against the probe fixture (`host-test/fixtures/probe`): each
//! scripted call reaches the host, in the phase it is listed in. The Envoy
//! bench relies on this when it measures a filter's host calls alone.
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::fixture;
use host_test::{ClusterMock, FilterSpec, Host, MockResponse, Request};

fn probe(script: &str) -> Host {
    let mut host = Host::with_workers(1).unwrap();
    host.add_filter(FilterSpec::file("probe", fixture("probe")).config(script))
        .unwrap();
    host
}

#[test]
fn scripted_calls_reach_the_host_in_their_phase() {
    let mut host = probe(
        r#"{"request_headers": [["map", "request"], ["get", "request", "x-user"], ["time"],
              ["replace", "request", "x-version", "v1"], ["remove", "request", "x-drop"],
              ["add", "request", "x-added", "1"], ["gauge", "probe.active", 1],
              ["shared_cas", "probe.bucket", "token"], ["clear_route_cache"],
              ["property", "source", "address"]],
            "response_headers": [["map", "response"],
              ["rewrite", "response", ["x-powered-by"], [["x-frame-options", "DENY"]]]],
            "log": [["get", "response", ":status"], ["counter", "probe.requests"],
              ["histogram", "probe.ms", 7], ["gauge", "probe.active", -1]]}"#,
    );
    host.set_upstream(
        MockResponse::with_status(200)
            .header("x-powered-by", "PHP/8.3")
            .header("x-kept", "yes"),
    );
    let exchange = host.send(
        Request::get("/")
            .header("x-user", "ann")
            .header("x-version", "v9")
            .header("x-drop", "1"),
    );
    let upstream = exchange
        .upstream
        .clone()
        .expect("request reached the upstream");
    assert_eq!(upstream.header("x-version").as_deref(), Some("v1"));
    assert_eq!(upstream.header("x-drop"), None);
    assert_eq!(upstream.header("x-added").as_deref(), Some("1"));
    // The rewrite kept what it read, minus the dropped name, plus its pair.
    assert_eq!(exchange.header("x-powered-by"), None);
    assert_eq!(exchange.header("x-kept").as_deref(), Some("yes"));
    assert_eq!(exchange.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(host.metric("probe.requests"), Some(1));
    assert_eq!(host.metric("probe.active"), Some(0));
    let histogram = host
        .metrics()
        .into_iter()
        .find(|m| m.name == "probe.ms")
        .unwrap();
    assert_eq!(histogram.samples, vec![7]);
    assert_eq!(
        host.shared_data(b"probe.bucket").map(|(value, _)| value),
        Some(b"token".to_vec())
    );
    let foreign: Vec<String> = host
        .foreign_calls()
        .into_iter()
        .map(|call| call.function)
        .collect();
    assert_eq!(foreign, vec!["clear_route_cache".to_owned()]);

    // A second request: the CAS write succeeds again (it used the CAS it read).
    host.send(Request::get("/"));
    assert_eq!(host.metric("probe.requests"), Some(2));
    assert_eq!(
        host.shared_data(b"probe.bucket").map(|(_, cas)| cas),
        Some(2)
    );
}

#[test]
fn a_malformed_script_refuses_the_configuration_with_the_call_named() {
    let mut host = Host::with_workers(1).unwrap();
    let refused = host.add_filter(
        FilterSpec::file("probe", fixture("probe")).config(r#"{"log": [["time"], ["sleep"]]}"#),
    );
    assert!(refused.is_err(), "a bad script must fail on_configure");
    assert!(
        host.logs()
            .iter()
            .any(|l| l.message.contains("probe: log[1]: unknown call \"sleep\"")),
        "{:?}",
        host.logs()
    );
}

#[test]
fn a_grpc_call_holds_the_request_until_its_answer_and_the_answer_phase_runs() {
    let mut host = probe(
        r#"{"request_headers": [["grpc", "rls", "svc.Service", "Check", "0a0201ff", 20]],
            "grpc_response": [["grpc_body"], ["counter", "probe.answers"]]}"#,
    );
    host.set_cluster(
        "rls",
        ClusterMock {
            delay: Duration::from_millis(3),
            ..common::cluster(200, "ok")
        },
    );
    let before = host.now_ns();
    let exchange = host.send(Request::get("/"));
    assert!(exchange.upstream.is_some(), "resumed after the answer");
    assert!(host.now_ns() - before >= 3_000_000, "waited for the answer");
    let call = &host.callouts()[0];
    assert_eq!(call.grpc_method, "svc.Service/Check");
    assert_eq!(call.body, [0x0a, 0x02, 0x01, 0xff]);
    assert_eq!(host.metric("probe.answers"), Some(1));
}
