//! The shipped filters never trap on request data: random methods, paths,
//! header names and values (including bytes 0x80-0xFF, which Envoy passes
//! through), bodies and upstream answers, through the real `.wasm` files.

// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use host_test::{FilterSpec, Host, MockResponse, Request};
use proptest::prelude::*;

fn filter(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dist/filters")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make build` (make test does) first",
        path.display()
    );
    path
}

fn chain() -> Host {
    let mut host = Host::with_workers(2).unwrap();
    host.add_filter(FilterSpec::file("metrics", filter("metrics")).config(
        r#"{"dimensions": {"method": true, "response_code": true, "response_code_class": true,
            "version": {"header": "x-canary-version", "default": "unknown"},
            "route": {"prefixes": ["/api"], "default": "other"}}}"#,
    ))
    .unwrap();
    host.add_filter(
        FilterSpec::file("security-headers", filter("security_headers"))
            .config(r#"{"profile":"owasp"}"#),
    )
    .unwrap();
    host
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("x-canary-version".to_owned()),
        Just("x-forwarded-proto".to_owned()),
        Just(":scheme".to_owned()),
        Just("content-type".to_owned()),
        "[a-z][a-z0-9-]{0,12}",
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn no_request_traps_a_filter(
        method in "[A-Z]{1,8}",
        path in "/[ -~]{0,30}",
        headers in proptest::collection::vec((header_name(), header_value()), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        status in 100u16..600,
        response_type in header_value(),
    ) {
        let mut host = chain();
        let mut request = Request::new(&method, &path).body(&body);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let mut upstream = MockResponse::with_status(status).body("x");
        upstream.headers.0.push(("content-type".into(), String::from_utf8_lossy(&response_type).into_owned()));
        let exchange = host.send(request.upstream(upstream));
        prop_assert!(exchange.failures.is_empty(), "{:?}", exchange.failures);
        prop_assert_eq!(exchange.status, status);
    }
}
