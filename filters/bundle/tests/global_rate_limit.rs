//! The bundle routes a gRPC answer to the stage that made the call:
//! rate-limit's global mode works inside the bundle, and its 429, sent from
//! a gRPC callback, is still hardened by the security_headers stage before
//! it, as a 429 from the local mode is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;

use host_test::{ClusterMock, FilterSpec, Host, MockResponse, Request};
use prost::Message;
use ratelimit_proto::{Code, RateLimitRequest, RateLimitResponse};

const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dist/filters/bundle.wasm"
);

#[test]
fn global_mode_runs_inside_the_bundle() {
    assert!(
        Path::new(WASM).exists(),
        "{WASM} is missing: run `make build`"
    );
    let config = r#"{
      "security_headers": {"profile": "owasp"},
      "rate_limit": {"rules": [{"name": "g", "global": {"cluster": "ratelimit", "domain": "mesh",
          "descriptors": [[{"key": "user", "from": {"header": "x-user"}}]]}}]}
    }"#;
    let mut host = Host::new().unwrap();
    host.add_filter(FilterSpec::file("bundle", WASM).config(config))
        .unwrap();
    host.set_upstream(MockResponse::with_status(200).body("ok"));
    // Two hits allowed in all.
    let hits = Rc::new(Cell::new(0u32));
    let seen = Rc::clone(&hits);
    host.set_cluster_responder(
        "ratelimit",
        Box::new(move |call| {
            let request = RateLimitRequest::decode(&call.body[..]).unwrap();
            assert_eq!(request.domain, "mesh");
            seen.set(seen.get() + 1);
            let code = if seen.get() > 2 {
                Code::OverLimit
            } else {
                Code::Ok
            };
            ClusterMock {
                message: Some(
                    RateLimitResponse {
                        overall_code: code as i32,
                        ..RateLimitResponse::default()
                    }
                    .encode_to_vec(),
                ),
                ..ClusterMock::default()
            }
        }),
    );
    let send = |host: &mut Host| {
        let exchange = host.send(Request::get("/api").header("x-user", "ann"));
        assert!(exchange.failures.is_empty(), "{:?}", exchange.failures);
        assert!(
            exchange.stalled.is_none(),
            "stalled in {:?}",
            exchange.stalled
        );
        exchange
    };
    let admitted = send(&mut host);
    assert_eq!(admitted.status, 200);
    assert!(admitted.upstream.is_some());
    assert_eq!(
        admitted.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(send(&mut host).status, 200);
    let denied = send(&mut host);
    assert_eq!(denied.status, 429);
    assert!(denied.upstream.is_none());
    assert_eq!(
        denied.header("x-envoy-ratelimited").as_deref(),
        Some("true")
    );
    assert_eq!(
        denied.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(hits.get(), 3);
}
