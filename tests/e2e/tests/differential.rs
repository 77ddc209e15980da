//! Differential runs: every scenario file under tests/scenarios, once in
//! host-test and once in a real Envoy (see `e2e::differential` for the
//! translation). Any difference fails; scenarios and steps Envoy cannot
//! reproduce are listed with the reason, and the counts are checked so a
//! change that quietly excludes more cannot pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use e2e::differential::{self, Verdict};
use e2e::paths;

/// At least this many request steps must be compared (the count when the
/// test was written, so excluding more fails it).
const MIN_COMPARED_STEPS: usize = 107;
/// At least this many scenario files must run in Envoy.
const MIN_COMPARED_SCENARIOS: usize = 42;
/// At least this many scenarios must have their final metrics compared.
const MIN_METRICS_COMPARED: usize = 23;

fn scenario_files() -> Vec<PathBuf> {
    let root = paths::repo_root().join("tests/scenarios");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no scenarios under {}", root.display());
    files
}

#[test]
fn every_scenario_gives_the_same_answers_in_host_test_and_envoy() {
    let root = paths::repo_root();
    let (mut steps, mut scenarios, mut with_metrics, mut failures) = (0, 0, 0, Vec::new());
    for file in scenario_files() {
        let relative = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let report = differential::run(&file);
        match &report.verdict {
            Verdict::HostOnly(reason) => println!("{relative}: host-test only: {reason}"),
            Verdict::Compared => {
                scenarios += 1;
                steps += report.compared;
                if report.metrics_compared {
                    with_metrics += 1;
                }
                let skipped: String = report
                    .not_compared
                    .iter()
                    .map(|note| format!("; not compared: {note}"))
                    .collect();
                println!(
                    "{relative}: {} steps compared{}, {} differences{skipped}",
                    report.compared,
                    if report.metrics_compared {
                        " and metrics"
                    } else {
                        ""
                    },
                    report.differences.len()
                );
            }
        }
        if !report.differences.is_empty() {
            let lines: Vec<String> = report
                .differences
                .iter()
                .map(|d| format!("  {d}"))
                .collect();
            failures.push(format!(
                "{relative}:\n{}\n  Envoy log tail:\n{}",
                lines.join("\n"),
                report.envoy_log_tail
            ));
        }
    }
    println!("{scenarios} scenarios and {steps} steps compared, metrics in {with_metrics}");
    assert!(
        failures.is_empty(),
        "host-test and Envoy differ:\n{}",
        failures.join("\n")
    );
    assert!(
        steps >= MIN_COMPARED_STEPS
            && scenarios >= MIN_COMPARED_SCENARIOS
            && with_metrics >= MIN_METRICS_COMPARED,
        "only {scenarios} scenarios / {steps} steps / metrics in {with_metrics} compared \
         (want >= {MIN_COMPARED_SCENARIOS} / {MIN_COMPARED_STEPS} / {MIN_METRICS_COMPARED})"
    );
}
