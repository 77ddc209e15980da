//! Fixed inputs of the targets: published key and token vectors, the HS256
//! secret the targets mint with, and one realistic config per filter (the
//! same shapes as the filters' README examples, with local keys so no
//! callout is needed).
//!
//! The house rule is that fixtures are generated; the exceptions are
//! published RFC vectors, each with its source below. The HS256 secret is
//! made here and guards nothing.

/// RFC 7515 Appendix A.1: the HMAC key (`kty: oct`).
pub const RFC7515_A1_JWK: &str = r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#;
/// RFC 7515 Appendix A.1: the complete HS256 JWS.
pub const RFC7515_A1_TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// RFC 7515 Appendix A.2.1: the RSA public key.
pub const RFC7515_A2_JWK: &str = r#"{"kty":"RSA","e":"AQAB","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"}"#;
/// RFC 7515 Appendix A.2.1: the complete RS256 JWS.
pub const RFC7515_A2_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
/// RFC 7515 Appendix A.3.1: the P-256 public key.
pub const RFC7515_A3_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
/// RFC 7515 Appendix A.3.1: the complete ES256 JWS.
pub const RFC7515_A3_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
/// RFC 8037 Appendix A.2: the Ed25519 public key.
pub const RFC8037_A2_JWK: &str =
    r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
/// RFC 8037 Appendix A.4: an EdDSA JWS over a plain-text payload (not a
/// JWT: the parser must refuse its payload, the signature itself is good).
pub const RFC8037_A4_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

/// The secret the targets mint HS256 tokens with; made here, guards nothing.
pub const MINT_SECRET: &[u8] = b"fuzz targets' own HS256 secret, made for them";
/// `kid` of [`MINT_SECRET`] in the key sets below.
pub const MINT_KID: &str = "fuzz-hs256";

/// [`MINT_SECRET`] as an `oct` JWK.
#[must_use]
pub fn mint_jwk() -> String {
    use base64::Engine;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(MINT_SECRET);
    format!(r#"{{"kty":"oct","kid":"{MINT_KID}","alg":"HS256","k":"{k}"}}"#)
}

/// Every published public key above plus the minting key: the fixed key set
/// tokens are verified against.
#[must_use]
pub fn all_keys_jwks() -> String {
    format!(
        r#"{{"keys":[{RFC7515_A1_JWK},{RFC7515_A2_JWK},{RFC7515_A3_JWK},{RFC8037_A2_JWK},{}]}}"#,
        mint_jwk()
    )
}

/// The RFC tokens that verify against [`all_keys_jwks`].
pub const RFC_TOKENS: [&str; 3] = [RFC7515_A1_TOKEN, RFC7515_A2_TOKEN, RFC7515_A3_TOKEN];

/// Unix time at which the RFC tokens (`exp` 1300819380) are still valid.
pub const RFC_NOW: u64 = 1_300_819_000;

/// security-headers: the README's complete example.
pub const SECURITY_HEADERS_CONFIG: &str = r#"{
  "profile": "owasp",
  "mode": "if_absent",
  "headers": {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "clear-site-data": null,
    "x-frame-options": {"value": "DENY", "mode": "overwrite"},
    "x-served-by": "mesh"
  },
  "remove": ["x-debug-token"],
  "remove_profile_defaults": true,
  "hsts": {"max_age": 63072000, "include_subdomains": true, "preload": true, "https_only": true},
  "csp": {"html_only": true, "report_only": false, "report_uri": "https://csp.example.com/report"}
}"#;

/// metrics: the README's example with a capped version dimension.
pub const METRICS_CONFIG: &str = r#"{
  "prefix": "mesh",
  "dimensions": {
    "method": true,
    "response_code": true,
    "response_code_class": true,
    "version": {"header": "x-canary-version", "default": "unknown", "max_values": 16},
    "route": {"prefixes": ["/api", "/admin", "/health", "/static/"], "default": "other"}
  },
  "histogram_buckets_ms": [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
  "max_label_value_len": 64
}"#;

/// rate-limit: the README's complete example, with `max_keys` small enough
/// that fuzzed keys collide and trusted X-Forwarded-For hops.
pub const RATE_LIMIT_CONFIG: &str = r#"{
  "rules": [
    {"name": "per_user", "match": {"prefix": "/api"},
     "key": [{"header": "x-jwt-sub"}, {"client_ip": {}}],
     "token_bucket": {"max_tokens": 100, "tokens_per_fill": 100, "fill_interval": "60s"}},
    {"name": "login", "match": {"path": "/login", "method": "POST"},
     "key": [{"cookie": "session"}, {"query_param": "api_key"}, {"client_ip": {}}],
     "token_bucket": {"max_tokens": 5, "tokens_per_fill": 1, "fill_interval": "12s"}},
    {"name": "by_path", "match": {"prefix": "/static"}, "key": [{"path": {}}],
     "token_bucket": {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "0.5s"}},
    {"name": "everyone", "key": [],
     "token_bucket": {"max_tokens": 1000, "tokens_per_fill": 1000, "fill_interval": "1s"}}
  ],
  "client_ip": {"xff_num_trusted_hops": 1},
  "response": {"status": 429, "body": "rate limited\n", "headers": "draft", "retry_after": true},
  "shadow_mode": false,
  "max_keys": 64,
  "on_contention": "allow"
}"#;

/// canary-router: the README's complete example.
pub const CANARY_ROUTER_CONFIG: &str = r#"{
  "route_header": "x-canary-version",
  "rules": [
    {"match": {"headers": [{"name": "x-canary", "exact": "always"}]}, "version": "v2"},
    {"match": {"cookies": [{"name": "canary", "exact": "true"}]}, "version": "v2"},
    {"match": {"headers": [{"name": "user-agent", "regex": ".*Firefox.*"}]}, "version": "v2"},
    {"match": {"query_params": [{"name": "version", "exact": "stable"}]}, "version": "v1"},
    {"match": {"headers": [{"name": "x-beta", "present": true}, {"name": "x-tenant", "prefix": "acme-"}]}, "version": "v3"}
  ],
  "split": [{"version": "v1", "weight": 80}, {"version": "v2", "weight": 20}, {"version": "v3", "weight": 0}],
  "hash_on": [{"header": "x-user-id"}, {"cookie": "session"}, {"query": "uid"}],
  "sticky_cookie": {"name": "canary-version", "max_age_seconds": 86400, "path": "/", "secure": false},
  "response_header": true,
  "clear_route_cache": true
}"#;

/// jwt-auth: two local providers (the minting key, and the RFC keys for
/// issuer `joe`), every token location, claim headers, the cache, a
/// requirement tree, CORS bypass and a claim rule.
#[must_use]
pub fn jwt_auth_config() -> String {
    let idp_jwks =
        serde_json::to_string(&format!(r#"{{"keys":[{}]}}"#, mint_jwk())).unwrap_or_default();
    let joe_jwks = serde_json::to_string(&format!(
        r#"{{"keys":[{RFC7515_A1_JWK},{RFC7515_A2_JWK},{RFC7515_A3_JWK}]}}"#
    ))
    .unwrap_or_default();
    format!(
        r#"{{
  "providers": {{
    "idp": {{
      "issuer": "https://idp.example.com",
      "audiences": ["bookstore"],
      "local_jwks": {{"inline_string": {idp_jwks}}},
      "from_headers": [{{"name": "authorization", "value_prefix": "Bearer "}}, {{"name": "x-jwt", "value_prefix": ""}}],
      "forward_payload_header": "x-jwt-payload",
      "claim_to_headers": [{{"header_name": "x-jwt-sub", "claim_name": "sub"}}, {{"header_name": "x-jwt-tenant", "claim_name": "org.tenant"}}],
      "jwt_cache_config": {{"jwt_cache_size": 64}},
      "clear_route_cache": true
    }},
    "joe": {{
      "issuer": "joe",
      "local_jwks": {{"inline_string": {joe_jwks}}},
      "from_params": ["jwt"],
      "from_cookies": ["session-jwt"],
      "forward": true,
      "claim_to_headers": [{{"header_name": "x-jwt-iss", "claim_name": "iss"}}]
    }}
  }},
  "rules": [
    {{"match": {{"prefix": "/healthz"}}}},
    {{"match": {{"prefix": "/public"}}, "requires": {{"allow_missing": {{}}}}}},
    {{"match": {{"safe_regex": {{"regex": "/partners/[a-z]+"}}}}, "requires": {{"provider_name": "joe"}}}},
    {{"match": {{"path": "/both", "case_sensitive": false}}, "requires": {{"requires_all": {{"requirements": [{{"provider_name": "idp"}}, {{"provider_name": "joe"}}]}}}}}},
    {{"match": {{"prefix": "/"}}, "requires": {{"requires_any": {{"requirements": [{{"provider_name": "idp"}}, {{"provider_name": "joe"}}]}}}}}}
  ],
  "bypass_cors_preflight": true,
  "claim_rules": [{{"match": {{"prefix": "/admin"}}, "claims": {{"scope": ["admin"], "org.tenant": ["acme", "globex"]}}}}]
}}"#
    )
}

/// bundle: every filter's section, each the config above.
#[must_use]
pub fn bundle_config() -> String {
    format!(
        r#"{{"jwt_auth": {}, "rate_limit": {RATE_LIMIT_CONFIG}, "canary_router": {CANARY_ROUTER_CONFIG},
  "security_headers": {SECURITY_HEADERS_CONFIG}, "metrics": {METRICS_CONFIG}}}"#,
        jwt_auth_config()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_is_valid() {
        security_headers::config::validate(SECURITY_HEADERS_CONFIG.as_bytes()).unwrap();
        metrics::config::validate(METRICS_CONFIG.as_bytes()).unwrap();
        rate_limit::config::validate(RATE_LIMIT_CONFIG.as_bytes()).unwrap();
        canary_router::config::validate(CANARY_ROUTER_CONFIG.as_bytes()).unwrap();
        jwt_auth::config::validate(jwt_auth_config().as_bytes()).unwrap();
    }

    #[test]
    fn rfc_tokens_verify_against_the_fixed_keys() {
        let jwks = jwt_auth::jwks::parse(all_keys_jwks().as_bytes()).unwrap();
        assert_eq!(jwks.keys.len(), 5, "{:?}", jwks.skipped);
        for token in RFC_TOKENS {
            let jwt = jwt_auth::jwt::parse(token.as_bytes(), 8192).unwrap();
            assert!(jwt_auth::crypto::verify_jwt(&jwt, &jwks).is_ok(), "{token}");
        }
    }
}
