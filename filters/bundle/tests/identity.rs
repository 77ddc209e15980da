#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The identity guarantee: every scenario file whose chain the bundle can
//! express passes with the five separate filters AND rewritten into one
//! bundle filter (dist/filters/bundle.wasm) with the combined config.
//!
//! Scenarios: tests/scenarios/*.yaml, tests/scenarios/*/*.yaml (what
//! `make scenarios` runs) and this crate's tests/scenarios/*.yaml (chains of
//! all five filters, including jwt-auth resuming from its root callback).
//! Those that chain anything but the shipped filters (host-test's fixtures)
//! are out of scope: printed and counted, nothing to compare.
//!
//! The rewrite keeps everything but the filter list: one filter "bundle"
//! whose config has one section per filter (its `config` as written), the
//! common root_id / vm_id / vm_config / failure_policy, and
//! `local_reply_by: <filter>` becomes `local_reply_by: bundle` (the host
//! attributes a local reply to the plugin). A scenario the bundle cannot
//! express must be listed in [`EXCLUDED`] with its reason; the test fails
//! on an unlisted one and on a listed one that has become expressible, and
//! prints the list with its count.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

/// Filters the bundle links, by their dist file stem, in chain order. The
/// stem is also the section name.
const SECTIONS: [&str; 5] = [
    "security_headers",
    "jwt_auth",
    "rate_limit",
    "canary_router",
    "metrics",
];

/// Scenarios of shipped filters only that the bundle cannot express, with
/// why (two instances of a filter, a non-canonical order, filters that
/// differ in VM settings, a per-filter failure expectation). Paths from the
/// repo root. None today.
const EXCLUDED: &[(&str, &str)] = &[];

/// Why a scenario has no bundle form.
enum NoBundle {
    /// It chains a module that is not a shipped filter (out of scope).
    NotShipped(String),
    /// Shipped filters only, but not expressible as one bundle.
    Inexpressible(String),
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn bundle_wasm(root: &Path) -> PathBuf {
    let path = root.join("dist/filters/bundle.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `make build`, or build the bundle on its own: \
         `cargo build --release --target wasm32-wasip1 -p bundle && \
         cp target/wasm32-wasip1/release/bundle.wasm dist/filters/` \
         (its own cargo invocation: built together with the filters, their \
         `entry` feature collides)",
        path.display()
    );
    path
}

fn scenario_files(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![
        root.join("tests/scenarios"),
        root.join("filters/bundle/tests/scenarios"),
    ];
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("tests/scenarios")) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn key(name: &str) -> Value {
    Value::String(name.to_owned())
}

fn field<'a>(map: &'a Mapping, name: &str) -> Option<&'a Value> {
    map.get(key(name))
}

/// The bundle form of a scenario, or why there is none.
fn rewrite(scenario: &Value, bundle: &Path, root: &Path) -> Result<Value, NoBundle> {
    let mut out = scenario
        .as_mapping()
        .ok_or(NoBundle::Inexpressible("not a mapping".to_owned()))?
        .clone();
    let filters = field(&out, "filters")
        .and_then(Value::as_sequence)
        .ok_or(NoBundle::Inexpressible("no filters list".to_owned()))?
        .clone();
    // Out of scope first: a fixture anywhere in the chain.
    for filter in &filters {
        let wasm = filter.get("wasm").and_then(Value::as_str).unwrap_or("");
        let stem = Path::new(wasm)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        if Path::new(wasm).parent() != Some(Path::new("dist/filters")) || !SECTIONS.contains(&stem)
        {
            return Err(NoBundle::NotShipped(format!("chains {wasm}")));
        }
    }
    let inexpressible = |reason: String| NoBundle::Inexpressible(reason);
    let mut sections = Mapping::new();
    let mut names = Vec::new();
    let mut last: Option<usize> = None;
    let mut shared: Vec<(&str, Value)> = Vec::new();
    for filter in &filters {
        let filter = filter
            .as_mapping()
            .ok_or(inexpressible("a filter is not a mapping".to_owned()))?;
        let name = field(filter, "name").and_then(Value::as_str).unwrap_or("");
        let wasm = field(filter, "wasm").and_then(Value::as_str).unwrap_or("");
        let stem = Path::new(wasm)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        let position = SECTIONS
            .iter()
            .position(|s| *s == stem)
            .ok_or(inexpressible(format!("{wasm}: not a bundled filter")))?;
        match last {
            Some(previous) if previous == position => {
                return Err(inexpressible(format!("two instances of {stem}")));
            }
            Some(previous) if previous > position => {
                return Err(inexpressible(format!(
                    "filters in a non-canonical order ({} before {stem})",
                    SECTIONS[previous]
                )));
            }
            _ => {}
        }
        last = Some(position);
        names.push(name.to_owned());
        sections.insert(
            key(stem),
            field(filter, "config").cloned().unwrap_or(Value::Null),
        );
        // One VM has one of each: the filters must agree (defaults count).
        for setting in ["root_id", "vm_id", "vm_config", "failure_policy"] {
            let value = field(filter, setting).cloned().unwrap_or(Value::Null);
            let value = match (setting, value) {
                ("root_id" | "vm_id", Value::Null) => key(""),
                ("failure_policy", Value::Null) => key("fail_closed"),
                (_, value) => value,
            };
            match shared.iter().find(|(s, _)| *s == setting) {
                Some((_, seen)) if *seen != value => {
                    return Err(inexpressible(format!("the filters differ in {setting}")));
                }
                Some(_) => {}
                None => shared.push((setting, value)),
            }
        }
    }
    let mut bundle_filter = Mapping::new();
    bundle_filter.insert(key("name"), key("bundle"));
    bundle_filter.insert(key("wasm"), key(bundle.to_str().unwrap()));
    bundle_filter.insert(key("config"), Value::Mapping(sections));
    for (setting, value) in shared {
        if !value.is_null() {
            bundle_filter.insert(key(setting), value);
        }
    }
    out.insert(
        key("filters"),
        Value::Sequence(vec![Value::Mapping(bundle_filter)]),
    );
    // The rewritten file lives elsewhere: make a stats_config path absolute.
    if let Some(Value::String(file)) = field(&out, "stats_config").cloned() {
        out.insert(key("stats_config"), key(root.join(file).to_str().unwrap()));
    }
    if let Some(Value::Sequence(steps)) = out.get_mut(key("steps")) {
        for step in steps {
            let Some(expect) = step.get_mut("expect").and_then(Value::as_mapping_mut) else {
                continue;
            };
            if expect.contains_key(key("failure")) {
                return Err(inexpressible(
                    "expects a filter's VM failure, which names one filter".to_owned(),
                ));
            }
            let named = field(expect, "local_reply_by")
                .and_then(Value::as_str)
                .is_some_and(|by| names.iter().any(|n| n == by));
            if named {
                expect.insert(key("local_reply_by"), key("bundle"));
            }
        }
    }
    Ok(Value::Mapping(out))
}

fn describe(outcome: &host_test::scenario::ScenarioOutcome) -> String {
    let mut text = String::new();
    if let Some(load) = &outcome.load_error {
        let _ = writeln!(
            text,
            "      load: expected {} / actual {}",
            load.expected, load.actual
        );
    }
    for step in &outcome.steps {
        for m in &step.mismatches {
            // A prometheus_contains miss carries the whole exposition.
            let actual: String = m.actual.chars().take(200).collect();
            let _ = writeln!(
                text,
                "      step {} ({}): {}: expected {} / actual {actual}",
                step.step, step.label, m.field, m.expected
            );
        }
    }
    text
}

fn run(path: &Path) -> host_test::scenario::ScenarioOutcome {
    host_test::scenario::run_file(path).unwrap_or_else(|e| {
        panic!(
            "{}: {} (a missing dist/filters/*.wasm means: run `make build`)",
            e.file, e.message
        )
    })
}

#[test]
fn every_expressible_scenario_passes_both_as_separate_filters_and_as_the_bundle() {
    let root = repo_root();
    let bundle = bundle_wasm(&root);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bundle-identity");
    std::fs::create_dir_all(&out_dir).unwrap();

    let mut compared = Vec::new();
    let mut out_of_scope = Vec::new();
    let mut excluded = Vec::new();
    let mut problems = Vec::new();
    for path in scenario_files(&root) {
        let relative = path
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let scenario: Value = serde_yaml_ng::from_str(&text).unwrap();
        let listed = EXCLUDED.iter().find(|(file, _)| *file == relative);
        let rewritten = match (rewrite(&scenario, &bundle, &root), listed) {
            (Ok(_), Some(_)) => {
                problems.push(format!(
                    "{relative}: listed in EXCLUDED but the bundle can express it; remove it from the list"
                ));
                continue;
            }
            (Err(NoBundle::NotShipped(what)), _) => {
                out_of_scope.push((relative, what));
                continue;
            }
            (Err(NoBundle::Inexpressible(reason)), None) => {
                problems.push(format!(
                    "{relative}: the bundle cannot express it ({reason}); add it to EXCLUDED with the reason"
                ));
                continue;
            }
            (Err(NoBundle::Inexpressible(_)), Some((_, reason))) => {
                excluded.push((relative, *reason));
                continue;
            }
            (Ok(rewritten), None) => rewritten,
        };
        let bundle_file = out_dir.join(relative.replace('/', "__"));
        std::fs::write(&bundle_file, serde_yaml_ng::to_string(&rewritten).unwrap()).unwrap();

        let separate = run(&path);
        let bundled = run(&bundle_file);
        match (separate.passed(), bundled.passed()) {
            (true, true) => compared.push(relative),
            (separate_passed, bundle_passed) => problems.push(format!(
                "{relative}: separate filters {}, bundle {} (bundle form: {})\n{}{}",
                if separate_passed { "pass" } else { "FAIL" },
                if bundle_passed { "pass" } else { "FAIL" },
                bundle_file.display(),
                if separate_passed {
                    String::new()
                } else {
                    format!("    separate:\n{}", describe(&separate))
                },
                if bundle_passed {
                    String::new()
                } else {
                    format!("    bundle:\n{}", describe(&bundled))
                },
            )),
        }
    }

    println!(
        "bundle identity: {} scenarios pass both ways:",
        compared.len()
    );
    for file in &compared {
        println!("  {file}");
    }
    println!(
        "out of scope: {} (chain a module that is not a shipped filter):",
        out_of_scope.len()
    );
    for (file, what) in &out_of_scope {
        println!("  {file}: {what}");
    }
    println!(
        "excluded: {} (shipped filters only, but not expressible as one bundle):",
        excluded.len()
    );
    for (file, reason) in &excluded {
        println!("  {file}: {reason}");
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Guards against a vacuous pass (a moved scenario directory, say).
    assert!(
        compared.len() >= 40,
        "only {} scenarios compared",
        compared.len()
    );
}

fn rewrite_text(yaml: &str) -> Result<Value, NoBundle> {
    let scenario: Value = serde_yaml_ng::from_str(yaml).unwrap();
    rewrite(&scenario, Path::new("/b.wasm"), Path::new("/repo"))
}

fn inexpressible(yaml: &str) -> String {
    match rewrite_text(yaml) {
        Err(NoBundle::Inexpressible(reason)) => reason,
        Err(NoBundle::NotShipped(what)) => panic!("out of scope: {what}"),
        Ok(v) => panic!("rewritten: {v:?}"),
    }
}

#[test]
fn rewrite_combines_sections_and_renames_the_replier() {
    let out = rewrite_text(
        "filters:
  - {name: sec, wasm: dist/filters/security_headers.wasm}
  - {name: rl, wasm: dist/filters/rate_limit.wasm, config: {rules: []}}
stats_config: manifests/x.yaml
steps:
  - request: {path: /}
    expect: {local_reply_by: rl}
",
    )
    .unwrap_or_else(|_| panic!("not rewritten"));
    let expected: Value = serde_yaml_ng::from_str(
        "filters:
  - name: bundle
    wasm: /b.wasm
    config: {security_headers: null, rate_limit: {rules: []}}
    root_id: ''
    vm_id: ''
    failure_policy: fail_closed
stats_config: /repo/manifests/x.yaml
steps:
  - request: {path: /}
    expect: {local_reply_by: bundle}
",
    )
    .unwrap();
    assert_eq!(out, expected);
}

#[test]
fn rewrite_refuses_what_one_bundle_cannot_be() {
    let two = "filters:
  - {name: a, wasm: dist/filters/metrics.wasm}
  - {name: b, wasm: dist/filters/metrics.wasm}
";
    assert_eq!(inexpressible(two), "two instances of metrics");
    let order = "filters:
  - {name: a, wasm: dist/filters/metrics.wasm}
  - {name: b, wasm: dist/filters/jwt_auth.wasm}
";
    assert!(inexpressible(order).contains("non-canonical order"));
    let vm = "filters:
  - {name: a, wasm: dist/filters/jwt_auth.wasm, vm_id: x}
  - {name: b, wasm: dist/filters/metrics.wasm}
";
    assert_eq!(inexpressible(vm), "the filters differ in vm_id");
    let failure = "filters:
  - {name: a, wasm: dist/filters/metrics.wasm}
steps:
  - expect: {failure: trap}
";
    assert!(inexpressible(failure).contains("VM failure"));
}

#[test]
fn rewrite_leaves_fixture_chains_out_of_scope() {
    let fixture = "filters:
  - {name: a, wasm: dist/fixtures/conformance.wasm}
  - {name: b, wasm: dist/filters/metrics.wasm}
";
    assert!(matches!(
        rewrite_text(fixture),
        Err(NoBundle::NotShipped(_))
    ));
}
