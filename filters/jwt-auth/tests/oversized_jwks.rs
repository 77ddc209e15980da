//! Threat model, oversized JWKS: a JWKS endpoint (compromised, or a wrong
//! URL serving a large file) cannot make the filter buffer or parse an
//! unbounded document. A response over 256 KiB is a failed fetch: requests
//! fail closed with jwt_authn's message, the failure is counted, and nothing
//! traps. A JWKS under the limit holding an RSA key over 8192 bits is
//! refused, so no request pays for a huge modular exponentiation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use host_test::{ClusterMock, FilterSpec, Host, MockResponse, Request};
use serde_json::json;

const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dist/filters/jwt_auth.wasm"
);

/// The filter's limit on a fetched JWKS body (`MAX_JWKS_BYTES`).
const LIMIT: usize = 256 * 1024;

fn host_with_jwks(body: String) -> Host {
    assert!(
        std::path::Path::new(WASM).exists(),
        "{WASM} is missing: run `make build`"
    );
    let config = json!({
        "providers": {"idp": {
            "issuer": "https://idp.example",
            "remote_jwks": {
                "http_uri": {"uri": "https://idp.example/jwks", "cluster": "jwks", "timeout": "5s"}
            }
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]
    });
    let mut host = Host::new().unwrap();
    host.set_cluster(
        "jwks",
        ClusterMock {
            response: MockResponse::with_status(200)
                .header("content-type", "application/json")
                .body(&body),
            ..ClusterMock::default()
        },
    );
    host.add_filter(FilterSpec::file("jwt", WASM).config(config.to_string()))
        .unwrap();
    host
}

/// An RS256 token for `kid` with a meaningless signature: these tests stop
/// at the keys, before any signature check could pass.
fn token(kid: &str) -> String {
    let header = B64.encode(json!({"alg": "RS256", "kid": kid}).to_string());
    let payload = B64.encode(json!({"iss": "https://idp.example"}).to_string());
    format!("{header}.{payload}.AAAA")
}

fn send(host: &mut Host, kid: &str) -> (u16, String) {
    let exchange =
        host.send(Request::get("/").header("authorization", format!("Bearer {}", token(kid))));
    assert!(exchange.failures.is_empty(), "{:?}", exchange.failures);
    (
        exchange.status,
        String::from_utf8_lossy(&exchange.body).into_owned(),
    )
}

/// A syntactically valid JWKS of `size` bytes or a little more: one real-
/// looking key plus an ignored padding member.
fn padded_jwks(size: usize) -> String {
    let key = json!({"kty": "RSA", "kid": "k1", "e": "AQAB", "n": B64.encode([0xc5u8; 256])});
    let skeleton = json!({"keys": [key], "padding": ""}).to_string();
    let padding = "x".repeat(size.saturating_sub(skeleton.len()));
    json!({"keys": [key], "padding": padding}).to_string()
}

#[test]
fn a_jwks_over_the_limit_is_a_failed_fetch() {
    let mut host = host_with_jwks(padded_jwks(LIMIT + 1));
    assert_eq!(
        send(&mut host, "k1"),
        (401, "Jwks remote fetch is failed".to_owned())
    );
    assert_eq!(host.metric("jwt_auth.jwks_fetch_failed"), Some(1));
    assert_eq!(host.metric("jwt_auth.jwks_fetch_success"), Some(0));
}

#[test]
fn a_jwks_just_under_the_limit_is_accepted() {
    // The same document one byte under the limit is fetched and used (the
    // token's signature is junk, so the answer is a verification failure,
    // which proves the key was found).
    let mut host = host_with_jwks(padded_jwks(LIMIT - 1));
    assert_eq!(
        send(&mut host, "k1"),
        (401, "Jwt verification fails".to_owned())
    );
    assert_eq!(host.metric("jwt_auth.jwks_fetch_success"), Some(1));
}

#[test]
fn an_rsa_key_over_8192_bits_is_not_usable() {
    // 16384-bit modulus (odd): parsed as JSON, refused as a key.
    let mut n = vec![0xffu8; 2048];
    if let Some(last) = n.last_mut() {
        *last = 0xfb;
    }
    let body = json!({"keys": [{"kty": "RSA", "kid": "big", "e": "AQAB", "n": B64.encode(n)}]})
        .to_string();
    let mut host = host_with_jwks(body);
    // The only key is unusable, so the document has no valid key at all,
    // which makes the fetch a failure, as a JWKS that does not parse is.
    assert_eq!(
        send(&mut host, "big"),
        (401, "Jwks remote fetch is failed".to_owned())
    );
    assert_eq!(host.metric("jwt_auth.jwks_fetch_failed"), Some(1));
}
