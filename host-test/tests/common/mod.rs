//! Shared helpers for host-test's integration tests: fixture paths and hosts.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::panic,
    clippy::expect_used
)]

use std::path::PathBuf;

use host_test::{ClusterMock, Exchange, FilterSpec, Host, MockResponse, Request};

/// `dist/fixtures/<name>.wasm`, built by `make fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dist/fixtures")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make fixtures` (make test does) first",
        path.display()
    );
    path
}

/// A host running the conformance fixture with `config` on `workers` workers.
pub fn conformance_with(config: &str, workers: u32) -> Host {
    let mut host = Host::with_workers(workers).unwrap();
    host.add_filter(FilterSpec::file("conformance", fixture("conformance")).config(config))
        .unwrap();
    host
}

/// A one-worker host running the conformance fixture with `{}`.
pub fn conformance() -> Host {
    conformance_with("{}", 1)
}

/// Sends `x-case: case` plus `headers`.
pub fn run_case(host: &mut Host, case: &str, headers: &[(&str, &str)]) -> Exchange {
    let mut request = Request::get("/case").header("x-case", case);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    host.send(request)
}

/// The JSON report of a case that answers with one.
pub fn report(exchange: &Exchange) -> serde_json::Value {
    serde_json::from_slice(&exchange.body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): status {} body {:?}",
            exchange.status,
            exchange.body_text()
        )
    })
}

/// A cluster answering `status` with `body`.
pub fn cluster(status: u16, body: &str) -> ClusterMock {
    ClusterMock {
        response: MockResponse {
            status: Some(status),
            body: body.to_owned(),
            ..MockResponse::default()
        },
        ..ClusterMock::default()
    }
}
