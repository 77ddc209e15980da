//! The shipped jwt_auth.wasm under host-test: responses, headers, JWKS
//! fetch paths, the cross-worker cache and the virtual clock. Tokens are
//! minted here from keys generated here; the RFC 7515 A.2 token is the
//! one fixed vector (its `exp` is 2011, so the wall clock is set to then).
//! `cache_contention` (at the end) drives the shared verified-token cache
//! from 8 worker VMs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use host_test::{ClusterMock, FilterSpec, Host, MockResponse, Request};
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use sha2::Sha256;

const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dist/filters/jwt_auth.wasm"
);
/// Virtual wall clock used by most tests: 2026-01-01T00:00:00Z (host-test's default).
const NOW: u64 = 1_767_225_600;

fn wasm() -> &'static str {
    assert!(
        std::path::Path::new(WASM).exists(),
        "{WASM} is missing: run `make build` (or build jwt-auth for wasm32-wasip1 and copy it to dist/filters)"
    );
    WASM
}

/// One RSA key per test binary: generation is the slow part.
fn rsa_key() -> &'static rsa::RsaPrivateKey {
    static KEY: std::sync::OnceLock<rsa::RsaPrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap())
}

fn rsa_jwk(kid: &str) -> Value {
    let public = rsa_key().to_public_key();
    json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
           "n": B64.encode(public.n().to_bytes_be()), "e": B64.encode(public.e().to_bytes_be())})
}

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

fn rs256(kid: &str, claims: &Value) -> String {
    let input = signing_input(&json!({"alg": "RS256", "kid": kid}), claims);
    let sig = SigningKey::<Sha256>::new(rsa_key().clone()).sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig.to_bytes()))
}

/// The HMAC secret of the `oct` key "hs" (generated for these tests only).
const HS_SECRET: &[u8] = b"an hmac secret generated for this test only";

fn hs_jwk(kid: &str) -> Value {
    json!({"kty": "oct", "kid": kid, "k": B64.encode(HS_SECRET)})
}

/// HS256 with [`HS_SECRET`]: cheap enough to mint thousands of tokens.
fn hs256(kid: &str, claims: &Value) -> String {
    let input = signing_input(&json!({"alg": "HS256", "kid": kid}), claims);
    let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(HS_SECRET).unwrap();
    hmac::Mac::update(&mut mac, input.as_bytes());
    format!(
        "{input}.{}",
        B64.encode(hmac::Mac::finalize(mac).into_bytes())
    )
}

fn claims(extra: Value) -> Value {
    let mut base =
        json!({"iss": "https://idp.example", "aud": "api", "sub": "alice", "exp": NOW + 3600});
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

fn local_config(provider_extra: Value, keys: &[Value]) -> String {
    let mut provider = json!({
        "issuer": "https://idp.example",
        "audiences": ["api"],
        "local_jwks": {"inline_string": jwks(keys)},
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
    });
    provider
        .as_object_mut()
        .unwrap()
        .extend(provider_extra.as_object().unwrap().clone());
    json!({
        "providers": {"idp": provider},
        "rules": [
            {"match": {"prefix": "/health"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}
        ]
    })
    .to_string()
}

fn remote_config(extra: Value) -> String {
    let mut remote = json!({
        "http_uri": {"uri": "https://idp.example/.well-known/jwks.json", "cluster": "jwks", "timeout": "5s"},
        "cache_duration": "300s"
    });
    remote
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({
        "providers": {"idp": {"issuer": "https://idp.example", "remote_jwks": remote}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]
    })
    .to_string()
}

fn host(config: &str, workers: u32) -> Host {
    let mut host = Host::with_workers(workers).unwrap();
    host.add_filter(FilterSpec::file("jwt", wasm()).config(config.as_bytes().to_vec()))
        .unwrap();
    host
}

fn jwks_cluster(body: &str) -> ClusterMock {
    ClusterMock {
        response: MockResponse::with_status(200)
            .header("content-type", "application/json")
            .body(body),
        ..ClusterMock::default()
    }
}

fn get(path: &str, token: &str) -> Request {
    Request::get(path).header("authorization", format!("Bearer {token}"))
}

#[test]
fn valid_rs256_token_passes_with_claim_header_and_without_the_token() {
    let mut host = host(&local_config(json!({}), &[rsa_jwk("k1")]), 1);
    let exchange = host.send(get("/api", &rs256("k1", &claims(json!({})))));
    assert_eq!(exchange.status, 200, "{exchange:?}");
    let upstream = exchange.upstream.unwrap();
    assert_eq!(upstream.header("x-jwt-sub").as_deref(), Some("alice"));
    assert_eq!(upstream.header("authorization"), None);
    assert_eq!(host.metric("jwt_auth.allowed"), Some(1));
}

#[test]
fn header_by_header_and_whole_map_writes_give_the_same_request() {
    // One claim header: three single writes. Five: eleven, past the
    // filter's limit, so one whole-map write.
    let one = json!([{"header_name": "x-jwt-sub", "claim_name": "sub"}]);
    let five = json!([
        {"header_name": "x-jwt-sub", "claim_name": "sub"},
        {"header_name": "x-jwt-iss", "claim_name": "iss"},
        {"header_name": "x-jwt-aud", "claim_name": "aud"},
        {"header_name": "x-jwt-exp", "claim_name": "exp"},
        {"header_name": "x-jwt-team", "claim_name": "team"},
    ]);
    let token = rs256("k1", &claims(json!({"team": "blue"})));
    let upstream = |claim_to_headers: &Value| -> Vec<(String, String)> {
        let config = local_config(
            json!({"claim_to_headers": claim_to_headers}),
            &[rsa_jwk("k1")],
        );
        let mut host = host(&config, 1);
        let request = get("/api", &token)
            .header("x-jwt-sub", "spoofed")
            .header("x-jwt-team", "spoofed")
            .header("x-jwt-sub", "spoofed-again")
            .header("x-keep", "1");
        let exchange = host.send(request);
        assert_eq!(exchange.status, 200, "{exchange:?}");
        exchange
            .upstream
            .unwrap()
            .headers
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            // Only the headers the test sent or the filter writes (the
            // host adds `x-request-id` and `x-forwarded-proto` as Envoy does).
            .filter(|(n, _)| n.starts_with("x-jwt-") || n == "x-keep" || n == "authorization")
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    };
    // The token and every spoofed copy of an added header are gone; the
    // claim headers come last, in config order.
    assert_eq!(
        upstream(&one),
        pairs(&[
            ("x-jwt-team", "spoofed"),
            ("x-keep", "1"),
            ("x-jwt-sub", "alice")
        ])
    );
    let exp = (NOW + 3600).to_string();
    assert_eq!(
        upstream(&five),
        pairs(&[
            ("x-keep", "1"),
            ("x-jwt-sub", "alice"),
            ("x-jwt-iss", "https://idp.example"),
            ("x-jwt-aud", "api"),
            ("x-jwt-exp", &exp),
            ("x-jwt-team", "blue"),
        ])
    );
}

#[test]
fn failures_answer_like_jwt_authn() {
    let mut host = host(&local_config(json!({}), &[rsa_jwk("k1")]), 1);
    let missing = host.send(Request::get("/api?x=1"));
    assert_eq!(missing.status, 401);
    assert_eq!(String::from_utf8_lossy(&missing.body), "Jwt is missing");
    assert_eq!(
        missing.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"http://example.com/api?x=1\"")
    );

    let mut forged = rs256("k1", &claims(json!({})));
    forged.push('A');
    let bad = host.send(get("/api", &forged));
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"http://example.com/api\", error=\"invalid_token\"")
    );

    let wrong_aud = host.send(get("/api", &rs256("k1", &claims(json!({"aud": "other"})))));
    assert_eq!(wrong_aud.status, 403);
    assert_eq!(
        String::from_utf8_lossy(&wrong_aud.body),
        "Audiences in Jwt are not allowed"
    );

    let wrong_iss = host.send(get(
        "/api",
        &rs256("k1", &claims(json!({"iss": "https://evil"}))),
    ));
    assert_eq!(
        (
            wrong_iss.status,
            String::from_utf8_lossy(&wrong_iss.body).into_owned()
        ),
        (401, "Jwt issuer is not configured".into())
    );

    let unknown_kid = host.send(get("/api", &rs256("k9", &claims(json!({})))));
    assert_eq!(
        String::from_utf8_lossy(&unknown_kid.body),
        "Jwks doesn't have key to match kid or alg from Jwt"
    );

    let none = format!(
        "{}.",
        signing_input(&json!({"alg": "none"}), &claims(json!({})))
    );
    assert_eq!(
        String::from_utf8_lossy(&host.send(get("/api", &none)).body),
        "Jwt header [alg] is not supported"
    );

    assert_eq!(host.send(Request::get("/health")).status, 200);
    assert_eq!(host.metric("jwt_auth.denied"), Some(6));
    assert_eq!(host.metric("jwt_auth.allowed"), Some(1));
}

#[test]
fn rfc7515_a2_token_verifies_until_its_exp_plus_skew() {
    // RFC 7515 A.2: iss "joe", exp 1300819380, RS256.
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    const N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    let config = json!({
        "providers": {"rfc": {"issuer": "joe", "local_jwks": {"inline_string": jwks(&[json!({"kty": "RSA", "n": N, "e": "AQAB"})])}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "rfc"}}]
    });
    let mut host = host(&config.to_string(), 1);
    host.set_wall_clock((1_300_819_380 + 60) * 1_000_000_000);
    assert_eq!(host.send(get("/", TOKEN)).status, 200);
    host.advance(Duration::from_secs(1));
    let late = host.send(get("/", TOKEN));
    assert_eq!(
        (
            late.status,
            String::from_utf8_lossy(&late.body).into_owned()
        ),
        (401, "Jwt is expired".into())
    );
}

#[test]
fn clock_skew_edges_follow_the_virtual_clock() {
    let mut host = host(
        &local_config(json!({"clock_skew_seconds": 10}), &[rsa_jwk("k1")]),
        1,
    );
    let token = rs256("k1", &claims(json!({"exp": NOW + 5, "nbf": NOW + 10})));
    assert_eq!(host.send(get("/", &token)).status, 200, "nbf within skew");
    host.advance(Duration::from_secs(15));
    assert_eq!(
        host.send(get("/", &token)).status,
        200,
        "exp + skew is the last second"
    );
    host.advance(Duration::from_secs(1));
    assert_eq!(host.send(get("/", &token)).status, 401);
    let early = rs256("k1", &claims(json!({"nbf": NOW + 100})));
    assert_eq!(
        String::from_utf8_lossy(&host.send(get("/", &early)).body),
        "Jwt not yet valid"
    );
}

#[test]
fn tokens_are_found_in_configured_places_only() {
    let config = local_config(
        json!({"from_headers": [{"name": "x-token", "value_prefix": "Token "}], "from_params": ["jwt"], "from_cookies": ["session"], "forward": false}),
        &[rsa_jwk("k1")],
    );
    let mut host = host(&config, 1);
    let token = rs256("k1", &claims(json!({})));
    let by_header = host.send(Request::get("/").header("x-token", format!("Token {token}")));
    assert_eq!(by_header.status, 200);
    assert_eq!(by_header.upstream.unwrap().header("x-token"), None);
    let by_param = host.send(Request::get(&format!("/p?jwt={token}&keep=1")));
    assert_eq!(by_param.status, 200);
    assert_eq!(
        by_param.upstream.unwrap().header(":path").as_deref(),
        Some("/p?keep=1")
    );
    let by_cookie = host.send(Request::get("/").header("cookie", format!("a=b; session={token}")));
    assert_eq!(by_cookie.status, 200);
    // Configured locations replace the defaults.
    assert_eq!(host.send(get("/", &token)).status, 401);
}

#[test]
fn forward_keeps_the_token_and_payload_header_carries_the_payload() {
    let config = local_config(
        json!({"forward": true, "forward_payload_header": "x-jwt-payload"}),
        &[rsa_jwk("k1")],
    );
    let mut host = host(&config, 1);
    let token = rs256("k1", &claims(json!({})));
    let upstream = host
        .send(get("/", &token).header("x-jwt-payload", "spoofed"))
        .upstream
        .unwrap();
    assert_eq!(
        upstream.header("authorization"),
        Some(format!("Bearer {token}"))
    );
    assert_eq!(
        upstream.header("x-jwt-payload").as_deref(),
        token.split('.').nth(1)
    );
}

#[test]
fn claim_rules_deny_with_403() {
    let mut config: Value =
        serde_json::from_str(&local_config(json!({}), &[rsa_jwk("k1")])).unwrap();
    config["claim_rules"] =
        json!([{"match": {"prefix": "/admin"}, "claims": {"roles": ["admin"]}}]);
    let mut host = host(&config.to_string(), 1);
    let user = rs256("k1", &claims(json!({"roles": ["dev"]})));
    let admin = rs256("k1", &claims(json!({"roles": ["dev", "admin"]})));
    assert_eq!(host.send(get("/admin/x", &user)).status, 403);
    assert_eq!(host.send(get("/admin/x", &admin)).status, 200);
    assert_eq!(host.send(get("/other", &user)).status, 200);
}

#[test]
fn remote_jwks_requests_wait_for_a_slow_first_fetch() {
    let mut host = Host::new().unwrap();
    host.set_cluster(
        "jwks",
        ClusterMock {
            delay: Duration::from_secs(2),
            ..jwks_cluster(&jwks(&[rsa_jwk("k1")]))
        },
    );
    host.add_filter(FilterSpec::file("jwt", wasm()).config(remote_config(json!({}))))
        .unwrap();
    let exchange = host.send(get("/", &rs256("k1", &claims(json!({})))));
    assert_eq!(exchange.status, 200, "{exchange:?}");
    assert_eq!(host.metric("jwt_auth.jwks_fetch_success"), Some(1));
}

#[test]
fn failing_fetch_fails_closed_and_recovers_on_retry() {
    for mock in [
        ClusterMock {
            reset: true,
            ..ClusterMock::default()
        },
        ClusterMock {
            response: MockResponse::with_status(500),
            ..ClusterMock::default()
        },
    ] {
        let mut host = Host::new().unwrap();
        host.set_cluster("jwks", mock);
        host.add_filter(FilterSpec::file("jwt", wasm()).config(remote_config(json!({}))))
            .unwrap();
        let token = rs256("k1", &claims(json!({})));
        let exchange = host.send(get("/", &token));
        assert_eq!(
            (
                exchange.status,
                String::from_utf8_lossy(&exchange.body).into_owned()
            ),
            (401, "Jwks remote fetch is failed".into())
        );
        assert!(host.metric("jwt_auth.jwks_fetch_failed").unwrap() >= 1);
        host.set_cluster("jwks", jwks_cluster(&jwks(&[rsa_jwk("k1")])));
        host.advance(Duration::from_secs(2)); // failed_refetch_duration default 1s
        assert_eq!(host.send(get("/", &token)).status, 200);
    }
}

#[test]
fn garbage_or_failed_refresh_keeps_the_last_good_keys() {
    let mut host = Host::new().unwrap();
    host.set_cluster("jwks", jwks_cluster(&jwks(&[rsa_jwk("k1")])));
    host.add_filter(
        FilterSpec::file("jwt", wasm()).config(remote_config(json!({"cache_duration": "10s"}))),
    )
    .unwrap();
    let token = rs256("k1", &claims(json!({})));
    assert_eq!(host.send(get("/", &token)).status, 200);
    host.set_cluster("jwks", jwks_cluster("<html>not json</html>"));
    host.advance(Duration::from_secs(11));
    assert!(host.metric("jwt_auth.jwks_fetch_failed").unwrap() >= 1);
    assert_eq!(host.send(get("/", &token)).status, 200);
    host.set_cluster("jwks", jwks_cluster(&"x".repeat(300 * 1024)));
    host.advance(Duration::from_secs(11));
    assert_eq!(host.send(get("/", &token)).status, 200);
}

#[test]
fn unknown_kid_refetches_at_most_every_30_seconds() {
    let mut host = Host::new().unwrap();
    host.set_cluster("jwks", jwks_cluster(&jwks(&[rsa_jwk("old")])));
    host.add_filter(FilterSpec::file("jwt", wasm()).config(remote_config(json!({}))))
        .unwrap();
    assert_eq!(
        host.send(get("/", &rs256("old", &claims(json!({})))))
            .status,
        200
    );
    // The IdP rotates; within 30 s of the last fetch the new kid is refused.
    host.set_cluster("jwks", jwks_cluster(&jwks(&[rsa_jwk("new")])));
    let rotated = rs256("new", &claims(json!({})));
    assert_eq!(host.send(get("/", &rotated)).status, 401);
    host.advance(Duration::from_secs(31));
    let exchange = host.send(get("/", &rotated));
    assert_eq!(exchange.status, 200, "{exchange:?}");
    assert_eq!(host.metric("jwt_auth.jwks_fetch_success"), Some(2));
}

#[test]
fn a_request_resumed_after_a_kid_refetch_counts_its_cache_lookup_once() {
    let mut host = Host::new().unwrap();
    host.set_cluster("jwks", jwks_cluster(&jwks(&[rsa_jwk("old")])));
    host.add_filter(
        FilterSpec::file("jwt", wasm()).config(remote_config(json!({})).replace(
            r#""issuer":"#,
            r#""jwt_cache_config":{"jwt_cache_size":10},"issuer":"#,
        )),
    )
    .unwrap();
    // The first fetch has answered (the keys hold "old" only) and the
    // 30 s re-fetch interval has passed.
    host.advance(Duration::from_secs(31));
    host.set_cluster("jwks", jwks_cluster(&jwks(&[rsa_jwk("new")])));
    // An unknown kid: the request waits for a re-fetch, then is evaluated
    // again and allowed. One request, one lookup.
    let rotated = rs256("new", &claims(json!({})));
    let exchange = host.send(get("/", &rotated));
    assert_eq!(exchange.status, 200, "{exchange:?}");
    assert_eq!(host.metric("jwt_auth.jwks_fetch_success"), Some(2));
    assert_eq!(host.metric("jwt_auth.jwt_cache_miss"), Some(1));
    assert_eq!(host.metric("jwt_auth.jwt_cache_hit"), Some(0));
    assert_eq!(host.send(get("/", &rotated)).status, 200);
    assert_eq!(host.metric("jwt_auth.jwt_cache_hit"), Some(1));
    assert_eq!(host.metric("jwt_auth.jwt_cache_miss"), Some(1));
}

#[test]
fn verified_tokens_are_cached_across_workers() {
    let mut host = host(
        &local_config(
            json!({"jwt_cache_config": {"jwt_cache_size": 10}}),
            &[rsa_jwk("k1")],
        ),
        2,
    );
    let token = rs256("k1", &claims(json!({})));
    assert_eq!(host.send(get("/", &token).on_worker(0)).status, 200);
    assert_eq!(host.send(get("/", &token).on_worker(1)).status, 200);
    assert_eq!(host.metric("jwt_auth.jwt_cache_miss"), Some(1));
    assert_eq!(host.metric("jwt_auth.jwt_cache_hit"), Some(1));
}

#[test]
fn unsupported_and_unknown_fields_fail_configuration() {
    for (config, needle) in [
        (
            json!({"providers": {}, "requirement_map": {}}),
            "requirement_map",
        ),
        (
            json!({"providers": {"p": {"payload_in_metadata": "x", "local_jwks": {"inline_string": "{}"}}}}),
            "payload_in_metadata",
        ),
        (json!({"providers": {}, "rulez": []}), "rulez"),
    ] {
        let mut host = Host::new().unwrap();
        let err = host
            .add_filter(FilterSpec::file("jwt", wasm()).config(config.to_string()))
            .unwrap_err();
        assert!(format!("{err}").contains(needle), "{err}");
    }
}

#[test]
fn other_algorithms_verify_end_to_end() {
    use ed25519_dalek::Signer as _;
    let ed = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let ec = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let ec_point = ec.verifying_key().to_encoded_point(false);
    let keys = [
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": B64.encode(ed.verifying_key().as_bytes())}),
        json!({"kty": "EC", "crv": "P-256", "kid": "ec", "x": B64.encode(ec_point.x().unwrap()), "y": B64.encode(ec_point.y().unwrap())}),
        hs_jwk("hs"),
        rsa_jwk("ps")
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "alg")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    ];
    let mut host = host(&local_config(json!({}), &keys), 1);
    let c = claims(json!({}));

    let input = signing_input(&json!({"alg": "EdDSA", "kid": "ed"}), &c);
    let eddsa = format!(
        "{input}.{}",
        B64.encode(ed.sign(input.as_bytes()).to_bytes())
    );

    let input = signing_input(&json!({"alg": "ES256", "kid": "ec"}), &c);
    let sig: p256::ecdsa::Signature = ec.sign(input.as_bytes());
    let es256 = format!("{input}.{}", B64.encode(sig.to_bytes()));

    let hs256 = hs256("hs", &c);

    let input = signing_input(&json!({"alg": "PS256", "kid": "ps"}), &c);
    let pss = rsa::pss::BlindedSigningKey::<Sha256>::new(rsa_key().clone());
    let ps256 = format!(
        "{input}.{}",
        B64.encode(
            pss.sign_with_rng(&mut rand::thread_rng(), input.as_bytes())
                .to_bytes()
        )
    );

    for (name, token) in [
        ("EdDSA", eddsa),
        ("ES256", es256),
        ("HS256", hs256),
        ("PS256", ps256),
    ] {
        let exchange = host.send(get("/", &token));
        assert_eq!(
            exchange.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&exchange.body)
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    #[test]
    fn random_authorization_bytes_never_trap(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        thread_local! {
            static HOST: std::cell::RefCell<Host> = std::cell::RefCell::new(host(&local_config(json!({}), &[rsa_jwk("k1")]), 1));
        }
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            let mut with_prefix = b"Bearer ".to_vec();
            with_prefix.extend_from_slice(&bytes);
            for value in [bytes.clone(), with_prefix] {
                let exchange = h.send(Request::get("/").header("authorization", &value));
                assert_eq!(exchange.status, 401, "{exchange:?}");
                assert!(exchange.failures.is_empty(), "{:?}", exchange.failures);
            }
        });
    }
}

/// Contention (issue #10, item 3): the verified-token cache shared by 8
/// worker VMs through shared data.
///
/// The cache (`src/cache.rs`) is direct-mapped: a token's slot is
/// `DefaultHasher(last 32 bytes) % jwt_cache_size` (a forged token, which
/// carries another token's signature, lands in that token's slot) and the
/// slot stores `exp` and the
/// *whole* token; a lookup hits only on a byte-equal token that has not
/// passed `exp + clock_skew`. So a hash collision (two tokens, one slot, the
/// only way the 64-bit hash is truncated) can only evict, never hand one
/// token's verification to another; and claims always come from the
/// presented token's own bytes (parsed, or this VM's kept parse of the
/// byte-equal token). These tests check exactly that
/// from the outside, against a model of the table, with every read of the
/// table observed through host-test's shared-data hook.
mod cache_contention {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::hash::{DefaultHasher, Hasher};
    use std::rc::Rc;

    use proptest::prelude::*;

    use super::*;

    const WORKERS: u32 = 8;
    const SEC: u64 = 1_000_000_000;

    /// The provider: HS256 (cheap to mint), cache on, two claim headers and
    /// the payload header.
    fn config(cache_size: u32, skew: u32) -> String {
        local_config(
            json!({
                "jwt_cache_config": {"jwt_cache_size": cache_size},
                "clock_skew_seconds": skew,
                "forward_payload_header": "x-jwt-payload",
                "claim_to_headers": [
                    {"header_name": "x-jwt-sub", "claim_name": "sub"},
                    {"header_name": "x-jwt-role", "claim_name": "role"}
                ],
            }),
            &[hs_jwk("hs")],
        )
    }

    /// `clock_skew_seconds`: 0 means the default, 60 (README).
    fn effective_skew(skew: u32) -> u64 {
        if skew == 0 {
            60
        } else {
            u64::from(skew)
        }
    }

    /// Token `i`: same kid, same length for every `i` (fixed-width `sub`
    /// and `role`, `exp` of equal digit count), and long common prefixes
    /// (the header and the leading claims are identical).
    #[derive(Debug, Clone)]
    struct Minted {
        token: String,
        sub: String,
        role: String,
        payload: String,
        exp: u64,
    }

    fn mint(i: usize, exp: u64) -> Minted {
        let sub = format!("user-{i:03}");
        let role = ["reader", "writer", "admins"][i % 3].to_owned();
        let token = hs256("hs", &claims(json!({"sub": sub, "role": role, "exp": exp})));
        let payload = token.split('.').nth(1).unwrap().to_owned();
        Minted {
            token,
            sub,
            role,
            payload,
            exp,
        }
    }

    /// The slot index the Wasm module computes: `DefaultHasher` over the
    /// last 32 bytes' `[u8]` `Hash`, which writes the length as a `usize`
    /// first; the module is wasm32, so that is 4 bytes here, not 8.
    fn slot_of(token: &str, size: u32) -> u64 {
        let tail = &token.as_bytes()[token.len().saturating_sub(32)..];
        let mut hasher = DefaultHasher::new();
        hasher.write(&u32::try_from(tail.len()).unwrap().to_le_bytes());
        hasher.write(tail);
        hasher.finish() % u64::from(size)
    }

    /// Every read of shared data, as the hook saw it.
    type Reads = Rc<RefCell<Vec<(String, Vec<u8>)>>>;

    fn cache_host(cache_size: u32, skew: u32) -> (Host, Reads) {
        let mut host = host(&config(cache_size, skew), WORKERS);
        let reads: Reads = Rc::default();
        let log = Rc::clone(&reads);
        host.set_shared_data_hook(Some(Box::new(move |read| {
            log.borrow_mut().push((
                String::from_utf8_lossy(read.key).into_owned(),
                read.value.to_vec(),
            ));
            None
        })));
        (host, reads)
    }

    fn cache_counters(host: &Host) -> (i64, i64) {
        (
            host.metric("jwt_auth.jwt_cache_hit").unwrap_or(0),
            host.metric("jwt_auth.jwt_cache_miss").unwrap_or(0),
        )
    }

    /// The upstream got exactly `minted`'s claims.
    fn assert_claims_of(exchange: &host_test::Exchange, minted: &Minted, what: &str) {
        assert_eq!(exchange.status, 200, "{what}: {exchange:?}");
        let upstream = exchange.upstream.as_ref().unwrap();
        assert_eq!(
            upstream.header("x-jwt-sub").as_deref(),
            Some(minted.sub.as_str()),
            "{what}"
        );
        assert_eq!(
            upstream.header("x-jwt-role").as_deref(),
            Some(minted.role.as_str()),
            "{what}"
        );
        assert_eq!(
            upstream.header("x-jwt-payload").as_deref(),
            Some(minted.payload.as_str()),
            "{what}"
        );
        assert_eq!(upstream.header("authorization"), None, "{what}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// A token cached by one VM is served from the cache on all 8 VMs
        /// up to and including the second `exp + skew` (so 1 ns and 1 s
        /// before the first rejected instant), and rejected by all 8 from
        /// `exp + skew + 1 s` on, although its entry is still in the table.
        #[test]
        fn a_cached_token_expires_at_exp_plus_skew_on_every_worker(
            skew in prop_oneof![Just(0u32), 1u32..120],
            lifetime in 1u64..600,
            populator in 0..WORKERS,
            order in Just((0..WORKERS).collect::<Vec<_>>()).prop_shuffle(),
            extra in 0u64..5_000,
        ) {
            let (mut host, reads) = cache_host(100, skew);
            let minted = mint(7, NOW + lifetime);
            let last_ok = NOW + lifetime + effective_skew(skew);
            assert_claims_of(&host.send(get("/", &minted.token).on_worker(populator)), &minted, "populate");
            prop_assert_eq!(cache_counters(&host), (0, 1));
            let mut hits = 0;
            // 1 s before the bound, then 1 ns before it.
            for at in [last_ok * SEC, (last_ok + 1) * SEC - 1] {
                host.advance(Duration::from_nanos(at - host.now_ns()));
                for &worker in &order {
                    assert_claims_of(&host.send(get("/", &minted.token).on_worker(worker)), &minted, "before exp + skew");
                    hits += 1;
                }
            }
            prop_assert_eq!(cache_counters(&host), (hits, 1));
            // At the bound and after it: expired everywhere, counted as misses.
            let mut misses = 1;
            for at in [(last_ok + 1) * SEC, (last_ok + 1) * SEC + extra * 1_000_000] {
                host.advance(Duration::from_nanos(at - host.now_ns()));
                for &worker in &order {
                    let exchange = host.send(get("/", &minted.token).on_worker(worker));
                    prop_assert_eq!(exchange.status, 401);
                    prop_assert_eq!(String::from_utf8_lossy(&exchange.body), "Jwt is expired");
                    prop_assert!(exchange.upstream.is_none());
                    misses += 1;
                }
            }
            prop_assert_eq!(cache_counters(&host), (hits, misses));
            // The entry was there all along: expiry, not eviction, refused it.
            let reads = reads.borrow();
            let (_, last) = reads.last().unwrap();
            prop_assert_eq!(&last[8..], minted.token.as_bytes());
            prop_assert_eq!(u64::from_le_bytes(last[..8].try_into().unwrap()), minted.exp);
        }
    }

    /// One request of the interleaving test.
    #[derive(Debug, Clone)]
    enum Op {
        /// Token `token` (or its payload with token `forged`'s signature,
        /// which is the same length) on `worker`.
        Send {
            token: usize,
            forged: Option<usize>,
            worker: u32,
        },
        Advance(Duration),
    }

    fn ops(tokens: usize) -> impl Strategy<Value = Vec<Op>> {
        let send = (
            0..tokens,
            proptest::option::weighted(0.15, 0..tokens),
            0..WORKERS,
        )
            .prop_map(|(token, forged, worker)| Op::Send {
                token,
                forged,
                worker,
            });
        let advance = prop_oneof![
            (0u64..3_000).prop_map(Duration::from_millis),
            (1u64..20).prop_map(Duration::from_secs),
        ];
        proptest::collection::vec(
            prop_oneof![8 => send, 1 => advance.prop_map(Op::Advance)],
            10..150,
        )
    }

    /// A direct-mapped table of `size` slots, as the README describes it.
    struct Table {
        size: u32,
        skew: u64,
        slots: HashMap<u64, (String, u64)>,
    }

    impl Table {
        /// Whether `token` hits at `now` (Unix seconds).
        fn lookup(&self, token: &str, now: u64) -> bool {
            self.slots
                .get(&slot_of(token, self.size))
                .is_some_and(|(stored, exp)| stored == token && now <= exp + self.skew)
        }

        fn insert(&mut self, token: &str, exp: u64) {
            self.slots
                .insert(slot_of(token, self.size), (token.to_owned(), exp));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        /// Many same-length tokens of one kid, interleaved over 8 VMs with
        /// a small table (collisions and evictions all the time) and forged
        /// tokens that carry a valid token's header and payload with another
        /// token's signature: every answer carries the presented token's own
        /// claims or is refused, hits and misses follow the direct-mapped
        /// model (one table per VM in front of the shared one) exactly, and
        /// every shared table read is of the predicted slot.
        #[test]
        fn the_shared_cache_never_serves_another_tokens_claims_or_an_expired_token(
            size in 1u32..7,
            skew in 1u32..30,
            (lifetimes, ops) in (2usize..13).prop_flat_map(|n| {
                (proptest::collection::vec(1u64..90, n), ops(n))
            }),
        ) {
            let (mut host, reads) = cache_host(size, skew);
            let minted: Vec<Minted> = lifetimes
                .iter()
                .enumerate()
                .map(|(i, lifetime)| mint(i, NOW + lifetime))
                .collect();
            prop_assert!(minted.iter().all(|m| m.token.len() == minted[0].token.len()));
            let table_of = || Table { size, skew: u64::from(skew), slots: HashMap::new() };
            // The shared table, and each VM's own copies in front of it.
            let mut table = table_of();
            let mut kept: Vec<Table> = (0..WORKERS).map(|_| table_of()).collect();
            let (mut hits, mut misses) = (0i64, 0i64);
            let mut prefix: Option<String> = None;
            for (step, op) in ops.iter().enumerate() {
                let (token, forged, worker) = match op {
                    Op::Advance(by) => {
                        host.advance(*by);
                        continue;
                    }
                    Op::Send { token, forged, worker } => (*token, *forged, *worker),
                };
                let own = &minted[token];
                let presented = match forged {
                    Some(other) if other != token => {
                        let signature = minted[other].token.rsplit('.').next().unwrap();
                        let (input, _) = own.token.rsplit_once('.').unwrap();
                        format!("{input}.{signature}")
                    }
                    _ => own.token.clone(),
                };
                let is_forged = presented != own.token;
                let now = host.now_ns() / SEC;
                let kept_here = &mut kept[usize::try_from(worker).unwrap()];
                let kept_hit = kept_here.lookup(&presented, now);
                let hit = kept_hit || table.lookup(&presented, now);
                // A VM's own copy answers without reading the shared table.
                let held = if kept_hit {
                    None
                } else {
                    table.slots.get(&slot_of(&presented, size)).map(|(t, _)| t.clone())
                };
                if hit { hits += 1 } else { misses += 1 }
                let expired = now > own.exp + u64::from(skew);
                reads.borrow_mut().clear();
                let exchange = host.send(get("/", &presented).on_worker(worker));
                let what = format!("step {step}: token {token} forged {forged:?} worker {worker} now +{}", now - NOW);
                if is_forged {
                    prop_assert_eq!(exchange.status, 401, "{}", what);
                    prop_assert!(!expired || String::from_utf8_lossy(&exchange.body) == "Jwt is expired", "{}", what);
                } else if expired {
                    prop_assert_eq!(exchange.status, 401, "{}", what);
                    prop_assert_eq!(String::from_utf8_lossy(&exchange.body), "Jwt is expired", "{}", what);
                } else {
                    assert_claims_of(&exchange, own, &what);
                    if !hit {
                        table.insert(&presented, own.exp);
                    }
                    if !kept_hit {
                        kept_here.insert(&presented, own.exp);
                    }
                }
                prop_assert_eq!(cache_counters(&host), (hits, misses), "{}", what);
                // Each request answered by its VM's own copy reads nothing;
                // any other reads its slot of the shared table, once, and
                // finds what the model says the slot held.
                let reads = reads.borrow();
                prop_assert_eq!(reads.len(), usize::from(held.is_some()), "{}", what);
                for (key, value) in reads.iter() {
                    let (key_prefix, slot) = key.rsplit_once('.').unwrap();
                    let prefix = prefix.get_or_insert_with(|| key_prefix.to_owned());
                    prop_assert_eq!(&key_prefix, prefix, "{}", what);
                    prop_assert_eq!(slot.parse::<u64>().unwrap(), slot_of(&presented, size), "{}", what);
                    let stored = String::from_utf8_lossy(&value[8..]).into_owned();
                    prop_assert_eq!(Some(stored), held.clone(), "{}", what);
                }
            }
        }
    }
}
