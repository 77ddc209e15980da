//! The bundle against the five separate filters it replaces: one request
//! lifecycle through security_headers → jwt_auth → rate_limit →
//! canary_router → metrics in host-test, as five filters (five VMs, five
//! HTTP contexts) and as one bundle (one VM, one context), with the same
//! typical configs (the other benches' configs plus a jwt-auth provider
//! with a local JWKS). A second pair, security-headers alone and as a
//! one-stage bundle, isolates what the bundle's own dispatch costs.
//!
//! The difference is host-test's (wasmtime's) per-filter cost, not
//! Envoy's V8 cost; the ratio is the point.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Duration;

use benches::{
    fail, or_exit, wasm, CANARY_ROUTER_CONFIG, METRICS_CONFIG, RATE_LIMIT_CONFIG,
    SECURITY_HEADERS_CONFIG,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use host_test::yaml_types::HeaderList;
use host_test::{Exchange, FilterSpec, Host, MockResponse, Request};

/// RFC 7515 Appendix A.2's RS256 public key (a published test vector), as
/// a local JWKS; the issuer claim is forwarded as `x-jwt-iss`; verified
/// tokens are cached, as in production (without the cache every request
/// pays an RS256 verification, ~90 µs here, which hides the difference the
/// bench is about).
const JWT_AUTH_CONFIG: &str = r#"{"providers":{"rfc":{"issuer":"joe",
"local_jwks":{"inline_string":"{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\",\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ\"}]}"},
"claim_to_headers":[{"header_name":"x-jwt-iss","claim_name":"iss"}],
"jwt_cache_config":{"jwt_cache_size":100}}},
"rules":[{"match":{"prefix":"/"},"requires":{"provider_name":"rfc"}}]}"#;

/// RFC 7515 Appendix A.2's signed token (iss "joe", exp 1300819380).
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

/// The token's `exp`: valid within the default 60 s clock skew. The virtual
/// clock does not move during the bench.
const CLOCK_NS: u64 = 1_300_819_380 * 1_000_000_000;

/// The five filters in chain order: (dist file stem = section name, config).
fn stages() -> [(&'static str, &'static str); 5] {
    [
        ("security_headers", SECURITY_HEADERS_CONFIG),
        ("jwt_auth", JWT_AUTH_CONFIG),
        ("rate_limit", RATE_LIMIT_CONFIG),
        ("canary_router", CANARY_ROUTER_CONFIG),
        ("metrics", METRICS_CONFIG),
    ]
}

fn request() -> Request {
    Request::get("/api/users/42")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-forwarded-proto", "https")
        .header("x-user", "bench-client")
        .header("x-user-id", "user-42")
        .header("user-agent", "envoy-bench")
}

fn upstream() -> MockResponse {
    MockResponse {
        status: Some(200),
        headers: HeaderList(vec![
            (
                "content-type".to_owned(),
                "text/html; charset=utf-8".to_owned(),
            ),
            ("server".to_owned(), "nginx/1.25.3".to_owned()),
        ]),
        body: "<!doctype html><title>ok</title>".to_owned(),
        ..MockResponse::default()
    }
}

fn host_of(filters: Vec<FilterSpec>) -> Host {
    let mut host = or_exit(Host::new(), "creating the host");
    host.set_wall_clock(CLOCK_NS);
    for filter in filters {
        or_exit(host.add_filter(filter), "loading a filter");
    }
    host.set_upstream(upstream());
    host
}

fn separate(stages: &[(&str, &str)]) -> Host {
    host_of(
        stages
            .iter()
            .map(|(name, config)| {
                FilterSpec::file(name, wasm(&format!("filters/{name}.wasm"))).config(*config)
            })
            .collect(),
    )
}

fn bundle(stages: &[(&str, &str)]) -> Host {
    let sections: Vec<String> = stages
        .iter()
        .map(|(name, config)| format!("{name:?}:{config}"))
        .collect();
    let config = format!("{{{}}}", sections.join(","));
    host_of(vec![FilterSpec::file(
        "bundle",
        wasm("filters/bundle.wasm"),
    )
    .config(config)])
}

/// What a lifecycle produced, minus what legitimately differs (the
/// per-stream request id).
fn observable(exchange: &Exchange) -> String {
    let mut headers = exchange.headers.clone();
    headers.sort();
    let upstream = exchange.upstream.as_ref().map(|u| {
        let mut h: Vec<_> = u
            .headers
            .iter()
            .filter(|(k, _)| k.as_slice() != b"x-request-id")
            .cloned()
            .collect();
        h.sort();
        h
    });
    format!(
        "{} {headers:?} {upstream:?} {:?}",
        exchange.status, exchange.failures
    )
}

/// Sends a warm-up request through both hosts and ends the process unless
/// both answered 200 alike (a bench of an error path would be worse than
/// none).
fn check(name: &str, separate: &mut Host, bundle: &mut Host, want_header: &str) {
    let a = separate.send(request());
    let b = bundle.send(request());
    if a.status != 200 || !a.failures.is_empty() || a.header(want_header).is_none() {
        fail(&format!(
            "{name}: the separate filters answered {} (failures {:?}) without {want_header}",
            a.status, a.failures
        ));
    }
    if observable(&a) != observable(&b) {
        fail(&format!(
            "{name}: the bundle answered unlike the separate filters:\n  separate {}\n  bundle   {}",
            observable(&a),
            observable(&b)
        ));
    }
}

fn lifecycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("bundle_lifecycle");
    group.measurement_time(Duration::from_secs(5));

    let all = stages();
    let mut five = separate(&all);
    let mut one = bundle(&all);
    check("five filters", &mut five, &mut one, "ratelimit");
    let sec_only = [("security_headers", SECURITY_HEADERS_CONFIG)];
    let mut sec = separate(&sec_only);
    let mut sec_bundle = bundle(&sec_only);
    check(
        "security-headers",
        &mut sec,
        &mut sec_bundle,
        "x-frame-options",
    );

    for (name, host) in [
        ("five_separate_filters", &mut five),
        ("bundle_of_five", &mut one),
        ("security_headers_alone", &mut sec),
        ("bundle_security_headers_only", &mut sec_bundle),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                request,
                |request| black_box(host.send(request)),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, lifecycle);
criterion_main!(benches);
