//! `--callgrind`: instructions per request instead of CPU time.
//!
//! Each configuration's Envoy runs under `valgrind --tool=callgrind`. The
//! bench sends the warm-up requests, has callgrind dump its counts
//! (`callgrind_control --dump`), sends `--requests` more, dumps again, and
//! divides the second dump's total by the request count. Counts do not
//! depend on the machine's load, so two builds can be compared from one
//! run each, where the CPU-time figures of the global cases swing by ±3 µs
//! between runs. They are counts, not time: a cache miss or a syscall
//! costs one instruction here, so ratios of counts are not the issues'
//! CPU ratios, and the timed bench stays the measure of those.
//!
//! V8 generates and patches code at run time, so valgrind must check every
//! write to code (`--smc-check=all-non-file`); Envoy runs about 50 times
//! slower under it, and each configuration takes under a minute.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::envoy::{Envoy, EnvoyOptions};

use super::{Case, Settings};

/// Requests sent before counting: the VM's first calls compile and fill
/// caches.
const WARMUP: usize = 300;

/// Start-up under callgrind.
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// Instructions per request of each case, in `settings.cases` order.
pub fn run(settings: &Settings) -> Result<(), String> {
    for tool in ["valgrind", "callgrind_control"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            return Err(format!(
                "--callgrind needs {tool} (Debian's valgrind; `make bench-envoy-callgrind` installs it)"
            ));
        }
    }
    let dir = std::env::temp_dir().join(format!("envoy-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!(
        "envoy-bench --callgrind: {} configs, {WARMUP} warm-up then {} counted requests each; callgrind output in {}",
        settings.cases.len(),
        settings.requests,
        dir.display()
    );
    let mut counts: BTreeMap<Case, f64> = BTreeMap::new();
    for &case in &settings.cases {
        let per_request =
            count(case, settings.requests, &dir).map_err(|e| format!("{}: {e}", case.name()))?;
        println!(
            "{:<22} {per_request:>10.0} instructions per request",
            case.id()
        );
        counts.insert(case, per_request);
    }
    print_table(settings, &counts);
    Ok(())
}

/// One case: Envoy under callgrind, the count of `requests` requests.
fn count(case: Case, requests: usize, dir: &Path) -> Result<f64, String> {
    let out = dir.join(format!("{}.callgrind", case.id()));
    let options = EnvoyOptions {
        concurrency: 1,
        log_level: "warning".into(),
        cpu: None,
        under: vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            "--smc-check=all-non-file".into(),
            format!("--callgrind-out-file={}", out.display()),
        ],
        // V8 compiles the whole module before Envoy is ready: minutes for
        // the bundle under valgrind.
        ready_timeout: START_TIMEOUT,
    };
    let envoy = Envoy::try_start_with(&case.bootstrap(), &options).map_err(|e| e.to_string())?;
    let mut conn = envoy.connect();
    let mut send = |n: usize| -> Result<(), String> {
        for _ in 0..n {
            let response = conn
                .send_raw(case.request(), false)
                .map_err(|e| e.to_string())?;
            if response.status != 200 {
                return Err(format!("answered {} under callgrind", response.status));
            }
        }
        Ok(())
    };
    send(WARMUP)?;
    dump(envoy.pid())?;
    send(requests)?;
    dump(envoy.pid())?;
    drop(envoy);
    // Dumps are numbered from 1; the second holds the counted requests.
    let second = dir.join(format!("{}.callgrind.2", case.id()));
    let total = total_instructions(&second)?;
    Ok(total as f64 / requests as f64)
}

/// Has callgrind write its counts since the last dump (and zero them).
fn dump(pid: u32) -> Result<(), String> {
    let output = Command::new("callgrind_control")
        .args(["--dump", &pid.to_string()])
        .output()
        .map_err(|e| format!("callgrind_control: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "callgrind_control --dump {pid}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The `summary:` line of a callgrind dump: all instructions it counted.
fn total_instructions(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("summary:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("{}: no summary line", path.display()))
}

fn print_table(settings: &Settings, counts: &BTreeMap<Case, f64>) {
    let none = counts.get(&Case::None).copied();
    println!();
    println!("| configuration | instructions per request | added vs none |");
    println!("|---|---|---|");
    for case in &settings.cases {
        let Some(&n) = counts.get(case) else { continue };
        let added = none.map_or("".to_owned(), |none| {
            format!("{:+.1}k", (n - none) / 1000.0)
        });
        println!("| {} | {:.1}k | {added} |", case.name(), n / 1000.0);
    }
    let added = |case: Case| -> Option<f64> {
        Some(counts.get(&case)? - counts.get(&Case::GlobalBaseline)?)
    };
    if let (Some(native), Some(wasm)) = (added(Case::GlobalNative), added(Case::GlobalWasm)) {
        let floor = added(Case::FloorGlobal).map_or(String::new(), |floor| {
            format!(
                ", its host calls alone (floor-global) {:.2}x",
                floor / native
            )
        });
        println!(
            "\nglobal, in instructions over the baseline: Wasm {:.1}k, native {:.1}k: {:.2}x{floor}; \
             rate-limit global's code over its calls {}",
            wasm / 1000.0,
            native / 1000.0,
            wasm / native,
            added(Case::FloorGlobal).map_or("not run".to_owned(), |floor| format!("{:+.1}k", (wasm - floor) / 1000.0)),
        );
    }
}
