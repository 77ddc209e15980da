//! The shipped Wasm module in host-test: several worker VMs sharing one
//! bucket admit exactly the bucket's arithmetic under the virtual clock, and
//! many distinct keys stay within `max_keys` shared-data slots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use host_test::{FilterSpec, Host, MockResponse, Request};

const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dist/filters/rate_limit.wasm"
);

fn host(workers: u32, config: &str) -> Host {
    assert!(
        Path::new(WASM).exists(),
        "{WASM} is missing: run `make build` (or build rate-limit for wasm32-wasip1 and copy it to dist/filters)"
    );
    let mut host = Host::with_workers(workers).unwrap();
    host.add_filter(FilterSpec::file("rl", WASM).config(config))
        .unwrap();
    host.set_upstream(MockResponse::with_status(200).body("ok"));
    host
}

/// Worker order for request `i`: a fixed, irregular interleaving over 4
/// workers (not round-robin), so consecutive requests often change VM.
fn worker(i: u32) -> u32 {
    const ORDER: [u32; 13] = [0, 3, 3, 1, 2, 0, 2, 1, 3, 0, 1, 1, 2];
    ORDER.get((i % 13) as usize).copied().unwrap_or(0)
}

#[test]
fn four_workers_hammering_one_key_admit_exactly_the_bucket() {
    let mut host = host(
        4,
        r#"{"rules": [{"name": "k", "key": [{"header": "x-key"}],
            "token_bucket": {"max_tokens": 50, "tokens_per_fill": 7, "fill_interval": "1s"}}],
            "response": {"headers": "none"}}"#,
    );
    let mut admitted = 0u32;
    let mut sent = 0u32;
    let mut send = |host: &mut Host, n: u32| {
        let mut ok = 0;
        for _ in 0..n {
            let exchange = host.send(
                Request::get("/")
                    .header("x-key", "hot")
                    .on_worker(worker(sent)),
            );
            sent += 1;
            match exchange.status {
                200 => ok += 1,
                429 => {}
                other => panic!("unexpected status {other}"),
            }
        }
        admitted += ok;
        ok
    };
    // Starts full: exactly max_tokens of 200 requests.
    assert_eq!(send(&mut host, 200), 50);
    // Each fill_interval adds exactly tokens_per_fill.
    for _ in 0..5 {
        host.advance(Duration::from_secs(1));
        assert_eq!(send(&mut host, 40), 7);
    }
    // 2.5 intervals: two fills are due, not three.
    host.advance(Duration::from_millis(2500));
    assert_eq!(send(&mut host, 40), 14);
    // Idle long enough: back to max_tokens, never beyond.
    host.advance(Duration::from_secs(3600));
    assert_eq!(send(&mut host, 100), 50);
    assert_eq!(admitted, 50 + 5 * 7 + 14 + 50);
    assert_eq!(
        host.metric("rate_limit.k.allowed"),
        Some(i64::from(admitted))
    );
    assert_eq!(
        host.metric("rate_limit.k.limited"),
        Some(i64::from(sent - admitted))
    );
    assert_eq!(host.metric("rate_limit.k.contention"), Some(0));
}

#[test]
fn distinct_keys_never_use_more_than_max_keys_slots() {
    let max_keys = 64u32;
    let mut host = host(
        2,
        &format!(
            r#"{{"rules": [{{"name": "k", "key": [{{"header": "x-key"}}],
            "token_bucket": {{"max_tokens": 1, "fill_interval": "60s"}}}}], "max_keys": {max_keys}}}"#
        ),
    );
    for i in 0..20_000u32 {
        host.send(Request::get("/").header("x-key", format!("client-{i}")));
    }
    let used = (0..max_keys * 4)
        .filter(|slot| {
            host.shared_data(format!("rate_limit.k.{slot}").as_bytes())
                .is_some()
        })
        .count();
    assert_eq!(used, max_keys as usize);
    assert!(host.shared_data(b"rate_limit.k.lock").is_some());
    // With far more keys than slots, shared buckets are counted.
    assert!(host.metric("rate_limit.k.slot_shared").unwrap() > 0);
}
