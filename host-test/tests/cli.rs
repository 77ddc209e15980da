//! The `host-test` binary: exit codes, reports and the Prometheus exposition,
//! run as a user runs it.
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn host_test(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_host-test"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("RUST_BACKTRACE") && !stderr.contains("panicked"),
        "no backtraces: {stderr}"
    );
    output
}

fn run(name: &str) -> (i32, String, String) {
    let path = data(name);
    let output = host_test(&["run", path.to_str().unwrap()]);
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_passing_scenario_exits_zero_with_a_summary_line() {
    let (code, stdout, _) = run("pass.yaml");
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.lines().any(|l| l == "1 passed, 0 failed"),
        "{stdout}"
    );
}

#[test]
fn a_failed_expectation_exits_one_with_a_diff() {
    let (code, stdout, _) = run("fail.yaml");
    assert_eq!(code, 1);
    assert!(stdout.contains("step 1: GET /ok"), "{stdout}");
    assert!(
        stdout.contains("- expected: 200") && stdout.contains("+ actual:   401"),
        "{stdout}"
    );
    assert!(
        stdout.contains("local reply from filter \"conformance\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("response_headers[\"www-authenticate\"]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"Basic\"") && stdout.contains("\"Bearer\""),
        "{stdout}"
    );
}

#[test]
fn a_trap_fails_the_step_naming_filter_callback_and_panic_text() {
    let (code, stdout, _) = run("trap.yaml");
    assert_eq!(code, 1);
    assert!(
        stdout.contains("filter \"conformance\" worker 0: proxy_on_request_headers trapped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("deliberate panic from conformance fixture"),
        "{stdout}"
    );
}

#[test]
fn an_expected_trap_passes() {
    assert_eq!(run("expected_trap.yaml").0, 0);
}

#[test]
fn a_loop_is_stopped_and_reported() {
    let (code, stdout, _) = run("loop.yaml");
    assert_eq!(code, 1);
    assert!(stdout.contains("exceeded its fuel budget"), "{stdout}");
}

#[test]
fn on_configure_false_fails_with_the_filters_reason() {
    let (code, stdout, _) = run("reject.yaml");
    assert_eq!(code, 1);
    assert!(
        stdout.contains("proxy_on_configure returned false"),
        "{stdout}"
    );
    assert!(
        stdout.contains("refusing config: fail_configure is true"),
        "{stdout}"
    );
}

#[test]
fn a_file_that_is_not_wasm_is_named() {
    let (code, stdout, _) = run("not_wasm.yaml");
    assert_eq!(code, 1);
    assert!(
        stdout.contains("filter \"text\": not a WebAssembly core module"),
        "{stdout}"
    );
}

#[test]
fn unusable_input_exits_two_with_one_line() {
    let (code, _, stderr) = run("missing_wasm.yaml");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("filters[0].wasm: dist/filters/no_such_filter.wasm does not exist"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let (code, _, stderr) = run("bad_field.yaml");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown field `stauts`") && stderr.contains("line 5"),
        "{stderr}"
    );

    let (code, _, stderr) = run("no_such_scenario.yaml");
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn usage_errors_exit_two() {
    let output = host_test(&["run"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn json_output_is_machine_readable() {
    let path = data("fail.yaml");
    let output = host_test(&["run", "--json", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report[0]["steps"][0]["mismatches"][0]["field"], "status");
    assert_eq!(report[0]["steps"][0]["exchange"]["status"], 401);
}

#[test]
fn metrics_exposition_parses_as_prometheus_with_envoy_labels() {
    let path = data("metrics.yaml");
    let output = host_test(&["metrics", path.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let requests: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "mesh_requests_total")
        .collect();
    assert_eq!(requests.len(), 2, "{text}");
    let get = requests
        .iter()
        .find(|s| s.labels.get("method") == Some("GET"))
        .unwrap();
    assert_eq!(get.labels.get("response_code"), Some("200"));
    assert_eq!(get.labels.get("response_code_class"), Some("2xx"));
    assert_eq!(get.labels.get("version"), Some("v2"));
    assert_eq!(get.labels.get("route"), Some("/api"));
    assert!(
        matches!(get.value, prometheus_parse::Value::Counter(v) if v == 2.0),
        "{:?}",
        get.value
    );
    let post = requests
        .iter()
        .find(|s| s.labels.get("method") == Some("POST"))
        .unwrap();
    assert_eq!(post.labels.get("response_code"), Some("503"));
    assert_eq!(post.labels.get("route"), Some("/admin"));
    let duration = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "mesh_request_duration_milliseconds"
                && s.labels.get("method") == Some("GET")
        })
        .unwrap();
    let prometheus_parse::Value::Histogram(buckets) = &duration.value else {
        panic!("{:?}", duration.value)
    };
    let count_at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
    assert_eq!(count_at(5.0), Some(0.0));
    assert_eq!(count_at(10.0), Some(1.0), "7 ms");
    assert_eq!(count_at(25.0), Some(2.0), "12 ms");
}
