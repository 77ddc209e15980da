//! The full chain in a real Envoy, built from the shipped WasmPlugins: their
//! pluginConfigs, in the order Istio derives from their phases and
//! priorities (security-headers → jwt-auth → rate-limit → canary-router →
//! metrics). jwt-auth fetches its JWKS by callout from a loopback stand-in
//! for the identity provider, under the cluster name the manifest gives;
//! canary-router's route header picks one of two upstream clusters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::chain::{self, Idp, RunningChain};
use e2e::{paths, Envoy};
use prometheus_parse::{Scrape, Value};

/// `mesh_requests_total` by `(response_code, version)`, once it reaches `total`.
fn requests_by_code_and_version(envoy: &Envoy, total: f64) -> HashMap<(String, String), f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = envoy.admin_get("/stats/prometheus").text();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let mut counts = HashMap::new();
        for sample in scrape
            .samples
            .iter()
            .filter(|s| s.metric == "mesh_requests_total")
        {
            let (Value::Counter(v) | Value::Untyped(v)) = sample.value else {
                continue;
            };
            let key = (
                sample
                    .labels
                    .get("response_code")
                    .unwrap_or_default()
                    .to_owned(),
                sample.labels.get("version").unwrap_or_default().to_owned(),
            );
            *counts.entry(key).or_insert(0.0) += v;
        }
        if counts.values().sum::<f64>() >= total || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_shipped_chain_authenticates_limits_routes_hardens_and_counts() {
    let idp = Idp::load();
    let chain = RunningChain::start(&idp);
    let envoy = &chain.envoy;
    let https = ("x-forwarded-proto", "https");

    // No token: jwt-auth's 401, hardened by security-headers, which runs
    // before it; nothing reaches an upstream.
    let denied = envoy.get("/api/items", &[https]);
    assert_eq!(denied.status, 401, "{}", envoy.log_tail());
    assert_eq!(denied.text(), "Jwt is missing");
    assert!(denied
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer realm="));
    assert_eq!(denied.header("x-frame-options"), Some("DENY"));
    assert!(denied.header("strict-transport-security").is_some());

    // A valid token (the JWKS arrives by callout on first use): the
    // application sees the subject, never the token, and the version header
    // that routed it; the route cache was cleared, so the cluster matches it.
    let alice = format!("Bearer {}", idp.token("alice", 3600));
    let ok = envoy.get("/api/items", &[https, ("authorization", &alice)]);
    assert_eq!(ok.status, 200, "{}", envoy.log_tail());
    assert_eq!(ok.header("x-frame-options"), Some("DENY"));
    let seen_v1 = chain.v1.seen();
    let seen_v2 = chain.v2.seen();
    let (cluster, seen) = match (seen_v1.last(), seen_v2.last()) {
        (Some(r), None) => ("v1", r.clone()),
        (None, Some(r)) => ("v2", r.clone()),
        other => panic!("expected exactly one upstream call: {other:?}"),
    };
    let header = |name: &str| {
        seen.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-jwt-sub").as_deref(), Some("alice"));
    assert_eq!(
        header("authorization"),
        None,
        "the token must not be forwarded"
    );
    assert_eq!(header("x-canary-version").as_deref(), Some(cluster));
    assert_eq!(
        ok.header("x-canary-version"),
        Some(cluster),
        "response_header: true"
    );

    // The tester's header forces v2, which only the v2 cluster serves.
    let before = chain.v2.seen().len();
    let forced = envoy.get(
        "/api/items",
        &[https, ("authorization", &alice), ("x-canary", "always")],
    );
    assert_eq!(forced.status, 200);
    assert_eq!(forced.header("x-canary-version"), Some("v2"));
    assert_eq!(
        chain.v2.seen().len(),
        before + 1,
        "x-canary: always must reach reviews-v2"
    );

    // rate-limit keys on the x-jwt-sub jwt-auth set: bob gets the manifest's
    // 100 per minute, then 429 with the draft headers, still hardened.
    let bob = format!("Bearer {}", idp.token("bob", 3600));
    let mut conn = envoy.connect();
    let statuses: Vec<u16> = (0..101)
        .map(|_| {
            conn.request("GET", "/api/orders", &[https, ("authorization", &bob)])
                .unwrap()
                .status
        })
        .collect();
    assert!(statuses[..100].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(statuses[100], 429);
    let limited = conn
        .request("GET", "/api/orders", &[https, ("authorization", &bob)])
        .unwrap();
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert!(
        limited.header("ratelimit-policy").is_some(),
        "{:?}",
        limited.headers
    );
    assert_eq!(limited.header("x-frame-options"), Some("DENY"));

    // metrics runs last and labels each request with the version
    // canary-router chose: alice's two and bob's hundred admitted requests.
    // The local replies of the filters before it (401, 429) never pass its
    // headers callbacks, but Envoy calls its on_log at stream end, so they
    // are counted once each, under version "unknown".
    let counts = requests_by_code_and_version(envoy, 102.0);
    let admitted: f64 = counts
        .iter()
        .filter(|((code, _), _)| code == "200")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(admitted, 102.0, "{counts:?}");
    let v2 = counts
        .get(&("200".into(), "v2".into()))
        .copied()
        .unwrap_or(0.0);
    assert!(v2 >= 1.0, "{counts:?}");
    let local = |counts: &HashMap<(String, String), f64>, code: &str| {
        counts
            .get(&(code.to_owned(), "unknown".to_owned()))
            .copied()
            .unwrap_or(0.0)
    };
    let mut counts = counts;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (local(&counts, "401"), local(&counts, "429")) != (1.0, 2.0) && Instant::now() < deadline
    {
        counts = requests_by_code_and_version(envoy, 105.0);
    }
    assert_eq!(
        (local(&counts, "401"), local(&counts, "429")),
        (1.0, 2.0),
        "{counts:?}"
    );
    println!("mesh_requests_total by (code, version): {counts:?}");
}

#[test]
fn the_standalone_config_is_rendered_from_the_current_manifests() {
    let path = chain::standalone_config_path();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == chain::standalone_config_text(&Idp::load()),
        "{} is out of date: run `cargo run -q -p e2e --bin chain-demo -- --write-config`",
        path.display()
    );
}

#[test]
fn envoy_accepts_the_standalone_config() {
    // Validation mode parses the whole config and builds every listener,
    // cluster and filter (the Wasm modules included) without binding ports,
    // so it cannot collide with anything running here.
    let out = Command::new(paths::envoy_bin())
        .current_dir(paths::repo_root())
        .args(["--mode", "validate", "-c"])
        .arg(chain::standalone_config_path())
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "envoy --mode validate failed:\n{log}");
    assert!(log.contains("OK"), "{log}");
}
