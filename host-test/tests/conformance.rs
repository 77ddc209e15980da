//! host-test against the conformance fixture: every host call family and the
//! WASI subset, asserted by outcome (what the upstream saw, the reply, logs,
//! metrics), never by call order.
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{cluster, conformance, conformance_with, report, run_case};
use host_test::{ClusterMock, FailureKind, Host, MockResponse, Request};
use serde_json::json;

#[test]
fn header_map_calls_change_what_the_upstream_and_client_see() {
    let mut host = conformance();
    let exchange = run_case(
        &mut host,
        "headers",
        &[
            ("x-replaced", "old"),
            ("x-removed", "gone"),
            ("x-echo", "hi"),
        ],
    );
    let upstream = exchange
        .upstream
        .clone()
        .expect("request reached the upstream");
    assert_eq!(upstream.header("x-added").as_deref(), Some("1"));
    assert_eq!(upstream.header("x-replaced").as_deref(), Some("new"));
    assert_eq!(upstream.header("x-removed"), None);
    assert_eq!(upstream.header("x-set-all").as_deref(), Some("yes"));
    assert_eq!(upstream.header("x-echo-hex").as_deref(), Some("6869"));
    assert_eq!(exchange.header("x-resp-added").as_deref(), Some("1"));
    assert_eq!(
        exchange.header("x-resp-status-seen").as_deref(),
        Some("200")
    );
}

#[test]
fn header_values_arrive_without_surrounding_whitespace_as_from_envoys_codecs() {
    let mut host = conformance();
    host.set_upstream(MockResponse::with_status(200).header("x-upstream", " \tv "));
    let exchange = run_case(&mut host, "headers", &[("x-echo", "  hi\t")]);
    let upstream = exchange
        .upstream
        .clone()
        .expect("request reached the upstream");
    assert_eq!(upstream.header("x-echo").as_deref(), Some("hi"));
    assert_eq!(upstream.header("x-echo-hex").as_deref(), Some("6869"));
    assert_eq!(exchange.header("x-upstream").as_deref(), Some("v"));
}

#[test]
fn properties_use_envoy_paths_and_encodings() {
    let mut host = conformance();
    let start = host.now_ns();
    let exchange = run_case(&mut host, "properties", &[]);
    let r = report(&exchange);
    assert_eq!(r["request.path"], "/case");
    assert_eq!(r["request.method"], "GET");
    assert_eq!(r["request.headers.x-case"], "properties");
    assert_eq!(r["source.address"], "10.0.0.1:45000");
    assert_eq!(r["plugin_name"], "conformance");
    // Empty values come back as a null pointer, which the SDK reads as None (as on Envoy).
    assert_eq!(r["plugin_root_id"], serde_json::Value::Null);
    assert_eq!(r["no.such"], serde_json::Value::Null);
    assert_eq!(
        r["request.time"],
        json!(start as i64),
        "timestamps are 8-byte LE nanoseconds"
    );
    assert_eq!(r["set_property"], "Ok");
    assert_eq!(r["conformance_k"], "v");
}

#[test]
fn shared_data_cas_starts_non_zero_and_stale_writes_lose() {
    let mut host = conformance();
    let r = report(&run_case(&mut host, "shared-data", &[]));
    assert_eq!(r["initial"]["value"], serde_json::Value::Null);
    assert_eq!(r["set_unconditional"], "Ok");
    assert_ne!(r["after_set"]["cas"], json!(0));
    assert_eq!(r["set_current_cas"], "Ok");
    assert_eq!(r["set_stale_cas"], "CasMismatch");
    assert_eq!(r["set_cas_zero"], "Ok");
    let (value, cas) = host.shared_data(b"conformance.k").unwrap();
    assert_eq!(r["final"]["value"], String::from_utf8(value).unwrap());
    assert_eq!(r["final"]["cas"], json!(cas));
}

#[test]
fn shared_data_is_shared_across_workers() {
    let mut host = conformance_with("{}", 2);
    run_case(&mut host, "shared-data", &[("x-key", "k")]);
    let other = report(
        &host.send(
            Request::get("/")
                .header("x-case", "shared-get")
                .header("x-key", "k")
                .on_worker(1),
        ),
    );
    assert!(
        other["value"].is_string(),
        "worker 1 sees worker 0's write: {other}"
    );
}

#[test]
fn enqueue_delivers_on_queue_ready_to_the_owner() {
    let mut host = conformance_with(r#"{"queue": "jobs"}"#, 2);
    let r = report(&run_case(
        &mut host,
        "queue",
        &[("x-queue", "jobs"), ("x-item", "hello")],
    ));
    assert_eq!(r["resolve"], "Ok");
    assert_eq!(r["enqueue"], "Ok");
    assert!(host.logs().iter().any(|l| l.message == "queue_ready hello"));
    assert_eq!(
        host.shared_data(b"queue.last").map(|(v, _)| v),
        Some(b"hello".to_vec())
    );
    let missing = report(&run_case(&mut host, "queue", &[("x-queue", "nope")]));
    assert_eq!(missing["resolve"], "NotFound");
}

#[test]
fn metrics_follow_envoy_rules() {
    let mut host = conformance();
    let r = report(&run_case(&mut host, "metrics", &[]));
    assert_eq!(r["counter_increment"], "Ok");
    assert_eq!(r["counter_increment_negative"], "BadArgument");
    assert_eq!(r["counter_increment_zero"], "BadArgument");
    assert_eq!(r["gauge_value"], 7);
    assert_eq!(r["gauge_value_after_decrement"], 5);
    assert_eq!(r["histogram_get"]["error"], "BadArgument");
    assert_eq!(r["unknown_metric_get"]["error"], "NotFound");
    assert_eq!(host.metric("conformance.requests"), Some(1));
    assert_eq!(host.metric("conformance.active"), Some(5));
    let sizes = host
        .metrics()
        .into_iter()
        .find(|m| m.name == "conformance.sizes")
        .unwrap();
    assert_eq!(sizes.samples, vec![42]);
}

#[test]
fn time_is_the_virtual_clock() {
    let mut host = conformance();
    let before = report(&run_case(&mut host, "time", &[]));
    assert_eq!(before["now_ns"], json!(host.now_ns()));
    host.advance(Duration::from_secs(61));
    let after = report(&run_case(&mut host, "time", &[]));
    let delta = after["now_ns"].as_u64().unwrap() - before["now_ns"].as_u64().unwrap();
    assert_eq!(delta, 61_000_000_000);
}

#[test]
fn log_levels_are_recorded_and_filtered() {
    let mut host = conformance();
    host.set_log_level(host_test::LogLevel::Warn);
    let r = report(&run_case(&mut host, "log", &[]));
    assert_eq!(r["log_level"], 3);
    let messages: Vec<String> = host.logs().into_iter().map(|l| l.message).collect();
    assert!(messages.contains(&"level 4".to_owned()) && messages.contains(&"level 5".to_owned()));
    assert!(
        !messages.contains(&"level 2".to_owned()),
        "info dropped at warn: {messages:?}"
    );
}

#[test]
fn http_callout_answer_reaches_the_filter() {
    let mut host = conformance();
    host.set_cluster("backend", cluster(200, "pong"));
    let exchange = run_case(&mut host, "http-call", &[]);
    assert_eq!(exchange.header("x-callout-status").as_deref(), Some("200"));
    let r = report(&exchange);
    assert_eq!(r["body"], "pong");
    assert_eq!(r["no_headers"], false);
    let callout = &host.callouts()[0];
    assert_eq!(callout.cluster, "backend");
    assert!(callout
        .headers
        .contains(&(b":path".to_vec(), b"/x".to_vec())));
}

#[test]
fn http_callout_to_an_unknown_cluster_is_bad_argument() {
    let mut host = conformance();
    let exchange = run_case(&mut host, "http-call", &[("x-cluster", "nowhere")]);
    assert_eq!(exchange.status, 503);
    assert_eq!(
        exchange.header("x-dispatch-error").as_deref(),
        Some("BadArgument")
    );
}

#[test]
fn http_callout_timeout_and_reset_arrive_without_headers() {
    let mut host = conformance();
    host.set_cluster(
        "slow",
        ClusterMock {
            hang: true,
            ..ClusterMock::default()
        },
    );
    host.set_cluster(
        "broken",
        ClusterMock {
            reset: true,
            ..ClusterMock::default()
        },
    );
    let start = host.now_ns();
    let timed_out = report(&run_case(
        &mut host,
        "http-call",
        &[("x-cluster", "slow"), ("x-timeout-ms", "250")],
    ));
    assert_eq!(timed_out["no_headers"], true);
    assert_eq!(
        host.now_ns() - start,
        250_000_000,
        "the timeout fired at its virtual time"
    );
    let reset = report(&run_case(
        &mut host,
        "http-call",
        &[("x-cluster", "broken")],
    ));
    assert_eq!(reset["no_headers"], true);
}

#[test]
fn a_delayed_answer_arrives_after_its_delay() {
    let mut host = conformance();
    host.set_cluster(
        "backend",
        ClusterMock {
            delay: Duration::from_millis(40),
            ..cluster(200, "late")
        },
    );
    let start = host.now_ns();
    let r = report(&run_case(&mut host, "http-call", &[]));
    assert_eq!(r["body"], "late");
    assert_eq!(host.now_ns() - start, 40_000_000);
}

#[test]
fn paused_request_continues_after_the_callout() {
    let mut host = conformance();
    host.set_cluster("backend", cluster(204, ""));
    let exchange = run_case(&mut host, "continue-later", &[]);
    assert_eq!(exchange.status, 200);
    let upstream = exchange.upstream.unwrap();
    assert_eq!(upstream.header("x-resumed").as_deref(), Some("yes"));
    assert_eq!(upstream.header("x-callout-status").as_deref(), Some("204"));
}

#[test]
fn grpc_call_success_and_failure() {
    let mut host = conformance();
    host.set_cluster("grpc", cluster(200, "pong"));
    host.set_cluster(
        "denied",
        ClusterMock {
            grpc_status: 7,
            ..cluster(200, "permission denied")
        },
    );
    let ok = report(&run_case(&mut host, "grpc-call", &[]));
    assert_eq!(ok["status_code"], 0);
    assert_eq!(ok["body"], "pong");
    assert_eq!(host.callouts()[0].grpc_method, "svc.Service/Method");
    assert_eq!(host.callouts()[0].body, b"ping");
    let denied = report(&run_case(
        &mut host,
        "grpc-call",
        &[("x-cluster", "denied")],
    ));
    assert_eq!(denied["status_code"], 7);
    assert_eq!(denied["grpc_status"]["code"], 7);
    assert_eq!(denied["grpc_status"]["message"], "permission denied");
}

#[test]
fn grpc_call_to_an_unknown_cluster_is_parse_failure_as_in_envoy() {
    // Envoy's grpcCall first reads the name as a serialised GrpcService and
    // answers ParseFailure when no cluster has it (not BadArgument, as for
    // an HTTP call); the SDK turns anything else into a panic.
    let mut host = conformance();
    let exchange = run_case(&mut host, "grpc-call", &[("x-cluster", "nowhere")]);
    assert_eq!(exchange.status, 503);
    assert_eq!(
        exchange.header("x-dispatch-error").as_deref(),
        Some("ParseFailure")
    );
}

#[test]
fn a_responder_answers_from_the_call_with_a_binary_message() {
    let mut host = conformance();
    host.set_cluster("grpc", cluster(200, "never used: the responder wins"));
    host.set_cluster_responder(
        "grpc",
        Box::new(|call| {
            let mut message = call.body.clone();
            message.reverse();
            message.push(0xff);
            ClusterMock {
                message: Some(message),
                ..ClusterMock::default()
            }
        }),
    );
    let ok = report(&run_case(&mut host, "grpc-call", &[]));
    assert_eq!(ok["status_code"], 0);
    assert_eq!(ok["body_hex"], "676e6970ff");
}

#[test]
fn forward_grpc_holds_each_request_until_its_call_is_answered() {
    let mut host = conformance_with(
        r#"{"forward_grpc": {"cluster": "grpc", "service": "svc.Service", "method": "Check",
            "message_hex": "0a0201ff"}}"#,
        1,
    );
    host.set_cluster(
        "grpc",
        ClusterMock {
            delay: Duration::from_millis(7),
            ..cluster(200, "ok")
        },
    );
    let before = host.now_ns();
    let exchange = host.send(Request::get("/any"));
    assert_eq!(exchange.status, 200);
    assert!(exchange.upstream.is_some(), "continued after the answer");
    assert!(host.now_ns() - before >= 7_000_000, "waited for the answer");
    let call = &host.callouts()[0];
    assert_eq!(call.grpc_method, "svc.Service/Check");
    assert_eq!(call.body, [0x0a, 0x02, 0x01, 0xff]);
    // A failed call continues too.
    host.set_cluster(
        "grpc",
        ClusterMock {
            reset: true,
            ..ClusterMock::default()
        },
    );
    assert!(host.send(Request::get("/any")).upstream.is_some());
    // Bad hex refuses the configuration.
    let mut bad = Host::new().unwrap();
    assert!(bad
        .add_filter(
            host_test::FilterSpec::file("conformance", common::fixture("conformance")).config(
                r#"{"forward_grpc": {"cluster": "c", "service": "s", "method": "m", "message_hex": "zz"}}"#
            )
        )
        .is_err());
}

#[test]
fn grpc_stream_answers_each_message_then_closes() {
    let mut host = conformance();
    host.set_cluster(
        "grpc",
        ClusterMock {
            grpc_status: 0,
            ..cluster(200, "echo")
        },
    );
    let r = report(&run_case(&mut host, "grpc-stream", &[]));
    assert_eq!(r["messages"], json!(["echo", "echo"]));
    assert_eq!(r["closed_by"], "server");
    assert_eq!(r["status_code"], 0);
}

#[test]
fn grpc_cancel_then_cancel_again_is_not_found() {
    let mut host = conformance();
    host.set_cluster(
        "grpc",
        ClusterMock {
            delay: Duration::from_secs(1),
            ..cluster(200, "x")
        },
    );
    let r = report(&run_case(&mut host, "grpc-cancel", &[]));
    assert_eq!(r["dispatch"], "Ok");
    assert_eq!(r["cancel"], "Ok");
    assert_eq!(r["cancel_again"], "NotFound");
}

#[test]
fn clear_route_cache_is_recorded_and_unknown_functions_are_not_found() {
    let mut host = conformance();
    let r = report(&run_case(&mut host, "foreign", &[]));
    assert_eq!(r["clear_route_cache"]["status"], "Ok");
    assert_eq!(r["no_such_function"]["status"], "NotFound");
    assert_eq!(host.foreign_calls().len(), 1);
    assert_eq!(host.foreign_calls()[0].function, "clear_route_cache");
}

#[test]
fn local_response_short_circuits_the_upstream() {
    let mut host = conformance();
    let exchange = run_case(&mut host, "local-401", &[]);
    assert_eq!(exchange.status, 401);
    assert_eq!(
        exchange.header("www-authenticate").as_deref(),
        Some("Bearer")
    );
    assert_eq!(exchange.body_text(), "unauthorized");
    assert!(exchange.upstream.is_none());
    assert_eq!(exchange.local_reply.unwrap().filter, "conformance");
}

#[test]
fn bodies_can_be_rewritten_both_ways() {
    let mut host = conformance();
    host.set_upstream(MockResponse {
        status: Some(200),
        body: "pong".into(),
        ..MockResponse::default()
    });
    let exchange = host.send(
        Request::new("POST", "/")
            .header("x-case", "body")
            .body("ping"),
    );
    assert_eq!(exchange.upstream.as_ref().unwrap().body, b"replaced:ping");
    assert_eq!(exchange.body_text(), "resp:pong");
}

#[test]
fn trailers_can_be_read_and_added() {
    let mut host = conformance();
    host.set_upstream(MockResponse {
        status: Some(200),
        body: "x".into(),
        trailers: host_test::yaml_types::HeaderList(vec![("grpc-status".into(), "0".into())]),
        ..MockResponse::default()
    });
    let exchange = host.send(
        Request::new("POST", "/")
            .header("x-case", "trailers")
            .body("b")
            .trailer("x-t", "1"),
    );
    let upstream = exchange.upstream.unwrap();
    assert!(upstream
        .trailers
        .contains(&(b"x-trailer-added".to_vec(), b"1".to_vec())));
    assert!(exchange
        .trailers
        .contains(&(b"x-resp-trailer-added".to_vec(), b"1".to_vec())));
}

#[test]
fn non_utf8_header_with_the_string_getter_kills_the_vm_like_envoy() {
    let mut host = conformance_with("{}", 2);
    let fine = host.send(
        Request::get("/")
            .header("x-case", "panic-utf8")
            .header("x-bad", "ok")
            .on_worker(0),
    );
    assert_eq!(fine.header("x-bad-echo").as_deref(), Some("ok"));
    let bad = host.send(
        Request::get("/")
            .header("x-case", "panic-utf8")
            .header("x-bad", b"caf\xe9")
            .on_worker(0),
    );
    assert_eq!(bad.status, 503, "fail closed");
    let failure = &bad.failures[0];
    assert_eq!(failure.kind, FailureKind::Trap);
    assert_eq!(failure.callback, "proxy_on_request_headers");
    assert!(
        failure
            .guest_log
            .iter()
            .any(|l| l.contains("Utf8Error") || l.contains("utf-8") || l.contains("Utf8")),
        "{failure}"
    );
    // Every later request on that worker fails too; the other worker is fine.
    let after = host.send(Request::get("/").on_worker(0));
    assert_eq!(
        (after.status, after.local_reply.unwrap().details.as_str()),
        (503, "wasm_fail_stream")
    );
    assert_eq!(host.send(Request::get("/").on_worker(1)).status, 200);
}

#[test]
fn a_panic_is_reported_with_the_guest_message() {
    let mut host = conformance();
    let exchange = run_case(&mut host, "panic", &[]);
    let failure = &exchange.failures[0];
    assert_eq!(failure.kind, FailureKind::Trap);
    let text = failure.to_string();
    assert!(
        text.contains("conformance") && text.contains("proxy_on_request_headers"),
        "{text}"
    );
    assert!(
        text.contains("deliberate panic from conformance fixture"),
        "{text}"
    );
}

#[test]
fn fail_open_skips_a_dead_filter() {
    let mut host = host_test::Host::new().unwrap();
    host.add_filter(
        host_test::FilterSpec::file("conformance", common::fixture("conformance"))
            .config("{}")
            .failure_policy(host_test::FailurePolicy::FailOpen),
    )
    .unwrap();
    let exchange = run_case(&mut host, "panic", &[]);
    assert_eq!(exchange.status, 200);
    assert!(exchange.upstream.is_some());
    assert_eq!(exchange.failures.len(), 1);
}

#[test]
fn a_filter_stuck_in_a_loop_is_stopped_by_its_budget() {
    let mut host = conformance();
    host.set_limits(host_test::VmLimits {
        fuel_per_callback: 5_000_000,
        ..host_test::VmLimits::default()
    });
    let mut host2 = host_test::Host::new().unwrap();
    host2.set_limits(host_test::VmLimits {
        fuel_per_callback: 5_000_000,
        ..host_test::VmLimits::default()
    });
    host2
        .add_filter(
            host_test::FilterSpec::file("conformance", common::fixture("conformance")).config("{}"),
        )
        .unwrap();
    let exchange = run_case(&mut host2, "spin", &[]);
    assert_eq!(exchange.failures[0].kind, FailureKind::Budget);
    assert!(exchange.failures[0].to_string().contains("fuel budget"));
    assert_eq!(exchange.status, 503);
    drop(host);
}

#[test]
fn a_tick_resumes_a_paused_stream_through_the_effective_context() {
    let mut host = conformance_with(r#"{"tick_ms": 10}"#, 1);
    let exchange = run_case(&mut host, "resume-on-tick", &[]);
    assert_eq!(exchange.status, 200);
    assert_eq!(
        exchange.upstream.unwrap().header("x-resumed-by").as_deref(),
        Some("tick")
    );
    assert!(host.metric("conformance.ticks").unwrap() >= 1);
}

#[test]
fn ticks_follow_the_virtual_clock() {
    let mut host = conformance_with(r#"{"tick_ms": 100}"#, 2);
    host.advance(Duration::from_millis(1050));
    assert_eq!(
        host.metric("conformance.ticks"),
        Some(20),
        "10 ticks on each of 2 workers"
    );
}

#[test]
fn a_stream_nothing_resumes_is_reported_as_stalled() {
    let mut host = conformance();
    let exchange = run_case(&mut host, "resume-on-tick", &[]);
    assert_eq!(exchange.status, 504);
    assert!(exchange.stalled.unwrap().contains("conformance"));
}

#[test]
fn close_stream_resets_the_stream() {
    let mut host = conformance();
    let exchange = run_case(&mut host, "close-stream", &[]);
    assert!(exchange.reset);
    assert_eq!(exchange.status, 0);
    assert!(exchange.upstream.is_none());
}

#[test]
fn wasi_follows_the_host_clock_seed_and_environment() {
    let run = |seed: u64| {
        let mut host = conformance();
        host.set_seed(seed);
        host.set_env("MESH", "1");
        let r = report(&run_case(&mut host, "wasi", &[]));
        (r, host)
    };
    let (r, host) = run(7);
    assert_eq!(r["system_time_ns"], json!(host.now_ns()));
    assert_eq!(r["env_count"], 1);
    assert_eq!(r["args_count"], 0);
    assert_eq!(r["fs_read"]["ok"], false);
    assert_eq!(
        run(7).0["random_u64"],
        r["random_u64"],
        "same seed, same randomness"
    );
    assert_ne!(run(8).0["random_u64"], r["random_u64"]);
    let logs = host.logs();
    assert!(logs
        .iter()
        .any(|l| l.message.contains("stdout line") && l.level == host_test::LogLevel::Info));
    assert!(logs
        .iter()
        .any(|l| l.message.contains("stderr line") && l.level == host_test::LogLevel::Error));
}

#[test]
fn on_configure_false_is_an_error_that_quotes_the_filter() {
    let mut host = host_test::Host::new().unwrap();
    let err = host
        .add_filter(
            host_test::FilterSpec::file("conformance", common::fixture("conformance"))
                .config(r#"{"fail_configure": true}"#),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("proxy_on_configure returned false"), "{text}");
    assert!(text.contains("refusing config"), "{text}");
}

#[test]
fn root_on_done_can_defer_until_proxy_done() {
    let mut host = conformance_with(r#"{"tick_ms": 10, "delay_done": true}"#, 1);
    assert!(host.shutdown().is_empty(), "not done until proxy_done");
    host.advance(Duration::from_millis(20));
    assert!(host.logs().iter().any(|l| l.message == "proxy_done -> Ok"));
}

#[test]
fn a_filter_can_close_its_grpc_stream() {
    let mut host = conformance();
    host.set_cluster("grpc", cluster(200, "echo"));
    let r = report(&run_case(
        &mut host,
        "grpc-stream",
        &[("x-grpc-close", "filter")],
    ));
    assert_eq!(r["closed_by"], "filter");
    assert_eq!(r["close_call"], "Ok");
}

#[test]
fn vm_and_plugin_configuration_reach_their_callbacks() {
    let mut host = host_test::Host::new().unwrap();
    host.add_filter(
        host_test::FilterSpec::file("conformance", common::fixture("conformance"))
            .vm_config("vm-settings")
            .config("{}")
            .root_id("root-a"),
    )
    .unwrap();
    let messages: Vec<String> = host.logs().into_iter().map(|l| l.message).collect();
    assert!(
        messages
            .iter()
            .any(|m| m == "vm_start vm_config_size=11 vm_config=vm-settings"),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m == "configure plugin_config_size=2"),
        "{messages:?}"
    );
    let r = report(&run_case(&mut host, "properties", &[]));
    assert_eq!(r["plugin_root_id"], "root-a");
}

#[test]
fn the_wall_clock_can_be_set_for_published_vectors() {
    let mut host = conformance();
    host.set_wall_clock(1_300_819_380_000_000_000);
    let r = report(&run_case(&mut host, "time", &[]));
    assert_eq!(r["now_ns"], json!(1_300_819_380_000_000_000u64));
}
