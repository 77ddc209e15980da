//! What the tests that drive the shipped jwt_auth.wasm under host-test
//! share: the module's path, host-test's clock, a host running the filter
//! over a local JWKS, and tokens for it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use host_test::{FilterSpec, Host, Request, VmLimits};
use serde_json::{json, Value};

pub const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dist/filters/jwt_auth.wasm"
);
/// host-test's default wall clock, 2026-01-01T00:00:00Z.
pub const NOW: u64 = 1_767_225_600;
pub const ISSUER: &str = "https://idp.example";

/// A host running the module with one provider, `idp`, whose keys are
/// `jwks`, required on every path.
pub fn host(jwks: &[Value], limits: VmLimits) -> Host {
    assert!(
        std::path::Path::new(WASM).exists(),
        "{WASM} is missing: run `make build`"
    );
    let config = json!({
        "providers": {"idp": {
            "issuer": ISSUER,
            "local_jwks": {"inline_string": json!({"keys": jwks}).to_string()},
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]
    });
    let mut host = Host::new().unwrap();
    host.set_limits(limits);
    host.add_filter(FilterSpec::file("jwt", WASM).config(config.to_string().into_bytes()))
        .unwrap();
    host
}

/// Claims the provider accepts, for `sub`.
pub fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "sub": sub, "exp": NOW + 3600})
}

/// The signing input of a token with this header's `alg` and `kid`.
pub fn signing_input(alg: &str, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "kid": kid});
    format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

/// The status of a request that carries `input.signature` as its token.
pub fn status(host: &mut Host, input: &str, signature: &[u8]) -> u16 {
    let token = format!("{input}.{}", B64.encode(signature));
    let request = Request::get("/api").header("authorization", format!("Bearer {token}"));
    host.send(request).status
}
