//! rate-limit in a real Envoy with two workers: one bucket per user, exact
//! across both workers' VMs (the buckets live in shared data), with the
//! draft headers and `Retry-After` on denials, and shadow mode that only
//! counts.
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use e2e::{paths, Bootstrap, Connection, Envoy, EnvoyOptions, HttpFilter, Response, Route};

/// Bucket size per user.
const LIMIT: usize = 5;
/// Requests each user sends.
const N: usize = 20;
/// Keep-alive connections, spread over the workers by `exact_balance`.
const CONNECTIONS: usize = 4;
const WORKERS: u32 = 2;
/// One fill of 5 tokens an hour: nothing refills during the test, so the
/// admitted count is exactly the bucket.
const FILL_SECS: u64 = 3600;

fn config(shadow: bool) -> String {
    format!(
        r#"{{"rules": [{{"name": "per_user", "key": [{{"header": "x-user"}}],
            "token_bucket": {{"max_tokens": {LIMIT}, "tokens_per_fill": {LIMIT},
                              "fill_interval": "{FILL_SECS}s"}}}}],
            "response": {{"headers": "draft", "retry_after": true}},
            "shadow_mode": {shadow}}}"#
    )
}

/// Envoy with `--concurrency 2`, the filter, and a `direct_response` 200.
fn rate_limit_envoy(shadow: bool) -> Envoy {
    let bootstrap = Bootstrap::new()
        .filter(HttpFilter::wasm(
            "rate_limit",
            &paths::filter_wasm("rate_limit"),
            &config(shadow),
        ))
        .route(
            "/",
            Route::Direct {
                status: 200,
                body: "ok".into(),
                headers: vec![],
            },
        )
        .exact_balance();
    let options = EnvoyOptions {
        concurrency: WORKERS,
        ..EnvoyOptions::default()
    };
    Envoy::start_with(&bootstrap, &options)
}

/// Opens the connections and sends one request on each (no `x-user`, a
/// different bucket from the users'), so Envoy has accepted all of them.
/// Returns them with the per-worker connection counts.
fn connections(envoy: &Envoy) -> Vec<Connection> {
    let mut conns: Vec<Connection> = (0..CONNECTIONS).map(|_| envoy.connect()).collect();
    for conn in &mut conns {
        let r = conn
            .request("GET", "/warm", &[("x-user", "warm-up")])
            .unwrap();
        assert_eq!(r.status, 200, "warm-up");
    }
    let per_worker = worker_connections(envoy);
    assert_eq!(
        per_worker.len(),
        WORKERS as usize,
        "per-worker listener stats: {per_worker:?}"
    );
    assert!(
        per_worker.iter().all(|(_, n)| *n >= 1),
        "every worker must have a connection: {per_worker:?}"
    );
    conns
}

/// `listener.<addr>.worker_<i>.downstream_cx_total` of the main listener.
fn worker_connections(envoy: &Envoy) -> Vec<(String, u64)> {
    envoy
        .stats()
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with("listener.127.0.0.1_")
                && name.contains(".worker_")
                && name.ends_with(".downstream_cx_total")
        })
        .collect()
}

/// The filter's counter `rate_limit.per_user.<suffix>`, waiting up to 10 s
/// for it to reach `want` (it is bumped before the answer leaves, but the
/// admin thread reads it independently). Envoy files metrics a Wasm module
/// defines under `wasmcustom.` in `/stats` (Prometheus drops the prefix).
fn assert_counter(envoy: &Envoy, suffix: &str, want: u64) {
    let name = format!("wasmcustom.rate_limit.per_user.{suffix}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = envoy.stats();
        let got = all.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        if got == Some(want) {
            return;
        }
        if Instant::now() > deadline {
            let ours: Vec<_> = all
                .iter()
                .filter(|(n, _)| n.contains("rate_limit"))
                .collect();
            panic!("{name}: want {want}, got {got:?}; rate_limit stats: {ours:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `N` requests for `user`, round-robin over the connections.
fn send_as(conns: &mut [Connection], user: &str) -> Vec<Response> {
    (0..N)
        .map(|i| {
            conns[i % conns.len()]
                .request("GET", "/api/items", &[("x-user", user)])
                .unwrap()
        })
        .collect()
}

/// The seconds `t` (or `Retry-After`) the filter reports: the fill is
/// `FILL_SECS` after the bucket's first request, rounded up.
fn assert_reset_secs(value: u64, what: &str) {
    assert!(
        (FILL_SECS - 60..=FILL_SECS).contains(&value),
        "{what}: {value} s is not the time to the next fill"
    );
}

/// `"per_user";r=<r>;t=<t>` → (r, t).
fn parse_ratelimit(value: &str) -> (u64, u64) {
    let rest = value
        .strip_prefix("\"per_user\";r=")
        .unwrap_or_else(|| panic!("RateLimit: {value:?}"));
    let (r, t) = rest
        .split_once(";t=")
        .unwrap_or_else(|| panic!("RateLimit: {value:?}"));
    (r.parse().unwrap(), t.parse().unwrap())
}

const POLICY: &str = "\"per_user\";q=5;w=3600";

/// A user's 20 requests: exactly the first 5 admitted with the remaining
/// count going 4..0, the other 15 denied with 429, `Retry-After` and the
/// draft headers.
fn assert_one_bucket(responses: &[Response], user: &str) {
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        LIMIT,
        "{user}: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        N - LIMIT,
        "{user}: {statuses:?}"
    );
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.header("ratelimit-policy"), Some(POLICY), "{user} #{i}");
        let (remaining, reset) = parse_ratelimit(r.header("ratelimit").unwrap());
        assert_reset_secs(reset, "RateLimit t");
        if i < LIMIT {
            // Sequential requests over both workers: the shared bucket
            // counts down exactly, whichever worker serves the request.
            assert_eq!(r.status, 200, "{user} #{i}");
            assert_eq!(remaining, (LIMIT - 1 - i) as u64, "{user} #{i}");
            assert!(r.header("retry-after").is_none(), "{user} #{i}");
        } else {
            assert_eq!(r.status, 429, "{user} #{i}");
            assert_eq!(remaining, 0, "{user} #{i}");
            assert_eq!(r.text(), "rate limited\n", "{user} #{i}");
            let retry: u64 = r
                .header("retry-after")
                .unwrap_or_else(|| panic!("{user} #{i}: no Retry-After"))
                .parse()
                .unwrap();
            assert_reset_secs(retry, "Retry-After");
        }
    }
}

#[test]
fn each_user_gets_exactly_its_bucket_across_two_workers() {
    let envoy = rate_limit_envoy(false);
    let mut conns = connections(&envoy);

    let alice = send_as(&mut conns, "alice");
    assert_one_bucket(&alice, "alice");
    // Bob's bucket is his own: alice's drained bucket does not touch it.
    let bob = send_as(&mut conns, "bob");
    assert_one_bucket(&bob, "bob");

    // The counters are shared by both workers' VMs; the warm-up user's
    // requests count too.
    assert_counter(&envoy, "allowed", (2 * LIMIT + CONNECTIONS) as u64);
    assert_counter(&envoy, "limited", (2 * (N - LIMIT)) as u64);
    assert_counter(&envoy, "shadow_limited", 0);
    assert_counter(&envoy, "contention", 0);
    // Both workers served rate-limited traffic: each has connections that
    // carried alice's and bob's requests.
    let per_worker = worker_connections(&envoy);
    assert!(per_worker.iter().all(|(_, n)| *n >= 1), "{per_worker:?}");
}

#[test]
fn shadow_mode_admits_everyone_and_counts_the_would_be_denials() {
    let envoy = rate_limit_envoy(true);
    let mut conns = connections(&envoy);

    let alice = send_as(&mut conns, "alice");
    for (i, r) in alice.iter().enumerate() {
        assert_eq!(r.status, 200, "#{i}");
        assert!(r.header("retry-after").is_none(), "#{i}");
        // Truthful headers: the bucket really is empty after 5.
        let (remaining, _) = parse_ratelimit(r.header("ratelimit").unwrap());
        assert_eq!(remaining, (LIMIT - 1).saturating_sub(i) as u64, "#{i}");
    }
    assert_counter(&envoy, "shadow_limited", (N - LIMIT) as u64);
    assert_counter(&envoy, "allowed", (LIMIT + CONNECTIONS) as u64);
    assert_counter(&envoy, "limited", 0);
}
