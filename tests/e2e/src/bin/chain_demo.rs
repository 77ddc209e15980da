//! `chain-demo`: the shipped chain in a real Envoy, a few illustrative
//! requests, and what they did (the Envoy part of `make demo`).
//!
//! `chain-demo --write-config` renders manifests/envoy/full-chain.yaml (the
//! standalone config of `make up`); `chain-demo --token SUB` prints a token
//! that chain accepts, valid for a day.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use e2e::chain::{self, Idp, RunningChain};
use e2e::{manifests, Response};

const HTTPS: (&str, &str) = ("x-forwarded-proto", "https");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let idp = Idp::load();
    match refs.as_slice() {
        [] => match demo(&idp) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chain-demo: {e}");
                ExitCode::from(1)
            }
        },
        ["--write-config"] => {
            let path = chain::standalone_config_path();
            if let Err(e) = std::fs::write(&path, chain::standalone_config_text(&idp)) {
                eprintln!("chain-demo: {}: {e}", path.display());
                return ExitCode::from(2);
            }
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        ["--token", sub] => {
            println!("{}", idp.token(sub, 24 * 3600));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: chain-demo [--write-config | --token SUB]");
            ExitCode::from(2)
        }
    }
}

fn demo(idp: &Idp) -> Result<(), String> {
    let order: Vec<String> = manifests::chain().into_iter().map(|p| p.name).collect();
    println!(
        "== The chain in Envoy: {} (manifests/istio/wasmplugins)",
        order.join(" -> ")
    );
    let running = RunningChain::start(idp);
    let mut conn = running.envoy.connect();
    let mut send = |path: &str, extra: &[(&str, &str)]| -> Result<Response, String> {
        let mut headers = vec![HTTPS];
        headers.extend_from_slice(extra);
        conn.request("GET", path, &headers)
            .map_err(|e| format!("GET {path} through Envoy: {e}"))
    };
    let served_by = |running: &RunningChain, before: (usize, usize)| match (
        running.v1.seen().len() > before.0,
        running.v2.seen().len() > before.1,
    ) {
        (true, false) => chain::CLUSTERS[0],
        (false, true) => chain::CLUSTERS[1],
        _ => "no upstream",
    };
    let counts = |running: &RunningChain| (running.v1.seen().len(), running.v2.seen().len());

    let r = send("/api/items", &[])?;
    println!(
        "  no token                    -> {} {:?}; x-frame-options: {}, strict-transport-security: {}",
        r.status,
        r.text(),
        r.header("x-frame-options").unwrap_or("-"),
        r.header("strict-transport-security").unwrap_or("-")
    );

    let alice = format!("Bearer {}", idp.token("alice", 3600));
    let before = counts(&running);
    let r = send("/api/items", &[("authorization", &alice)])?;
    let seen = running
        .v1
        .seen()
        .into_iter()
        .chain(running.v2.seen())
        .last();
    let saw = |name: &str| {
        seen.as_ref()
            .and_then(|s| s.headers.iter().find(|(n, _)| n == name))
            .map_or("(absent)".to_owned(), |(_, v)| v.clone())
    };
    println!(
        "  alice's token               -> {} from {}; the app saw x-jwt-sub: {}, authorization: {}",
        r.status,
        served_by(&running, before),
        saw("x-jwt-sub"),
        saw("authorization")
    );

    let before = counts(&running);
    let r = send(
        "/api/items",
        &[("authorization", &alice), ("x-canary", "always")],
    )?;
    println!(
        "  x-canary: always            -> {} from {}",
        r.status,
        served_by(&running, before)
    );

    let mut split = BTreeMap::new();
    for user in 0..40 {
        let token = format!("Bearer {}", idp.token(&format!("user-{user}"), 3600));
        let r = send("/api/items", &[("authorization", &token)])?;
        *split
            .entry(r.header("x-canary-version").unwrap_or("none").to_owned())
            .or_insert(0) += 1;
    }
    println!("  40 users, 80/20 by x-jwt-sub -> {split:?} (sticky: the same user always lands the same way)");

    let bob = format!("Bearer {}", idp.token("bob", 3600));
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut last = None;
    for _ in 0..101 {
        let r = send("/api/orders", &[("authorization", &bob)])?;
        *statuses.entry(r.status).or_insert(0) += 1;
        last = Some(r);
    }
    if let Some(r) = last {
        println!(
            "  101 requests as bob         -> {statuses:?}; the last: retry-after: {}, ratelimit-policy: {}",
            r.header("retry-after").unwrap_or("-"),
            r.header("ratelimit-policy").unwrap_or("-")
        );
    }

    println!("== Envoy's /stats/prometheus, mesh_requests_total:");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        let text = running.envoy.admin_get("/stats/prometheus").text();
        lines = text
            .lines()
            .filter(|l| l.starts_with("mesh_requests_total{"))
            .map(str::to_owned)
            .collect();
        let total: f64 = lines
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if total >= 143.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for line in lines {
        println!("  {line}");
    }
    Ok(())
}
