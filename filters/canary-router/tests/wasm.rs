//! The built Wasm module agrees with the native core: over many users and two
//! worker VMs, every request reaches the cluster the native `decide` picks,
//! so sidecars (and the dashboards that recompute the hash) agree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use canary_router::config::validate;
use canary_router::matcher::HeaderList;
use canary_router::router::decide;
use host_test::{FilterSpec, Host, MockResponse, Request, Route};

const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dist/filters/canary_router.wasm"
);

const CONFIG: &str = r#"{"split": [{"version": "v1", "weight": 80}, {"version": "v2", "weight": 20}],
    "hash_on": [{"header": "x-user-id"}], "response_header": true}"#;

fn host() -> Host {
    assert!(
        std::path::Path::new(WASM).exists(),
        "{WASM} is missing: run `make build` first"
    );
    let mut host = Host::with_workers(2).unwrap();
    host.add_filter(FilterSpec::file("canary", WASM).config(CONFIG))
        .unwrap();
    for version in ["v1", "v2"] {
        host.add_route(Route {
            header: "x-canary-version".into(),
            value: version.into(),
            cluster: format!("reviews-{version}"),
            response: MockResponse::with_status(200),
        });
    }
    host
}

#[test]
fn wasm_and_native_pick_the_same_version_for_every_user_on_every_worker() {
    let config = validate(CONFIG.as_bytes()).unwrap();
    let mut host = host();
    let mut canary = 0;
    for i in 0..1000 {
        let id = format!("customer-{i}");
        let native = decide(
            &config,
            &mut HeaderList::new([("x-user-id", id.as_str())]),
            || panic!("keyed"),
        );
        let want = format!("reviews-{}", config.versions[native.version]);
        for worker in 0..2 {
            let exchange = host.send(Request::get("/").header("x-user-id", &id).on_worker(worker));
            let upstream = exchange.upstream.expect("routed upstream");
            assert_eq!(upstream.cluster, want, "{id} on worker {worker}");
        }
        canary += usize::from(native.version == 1);
    }
    assert!((170..=230).contains(&canary), "{canary} of 1000 on v2");
    assert_eq!(
        host.metric("canary_router.requests_v2"),
        Some(2 * canary as i64)
    );
}

#[test]
fn keyless_requests_without_a_cookie_are_spread_randomly() {
    let mut host = host();
    let v2 = (0..400)
        .filter(|_| {
            let exchange = host.send(Request::get("/"));
            exchange.upstream.unwrap().cluster == "reviews-v2"
        })
        .count();
    assert!((40..=120).contains(&v2), "{v2} of 400 random picks on v2");
}
