//! JWKS documents: jwt-auth's key-set parser, then verification of every
//! RFC token against whatever keys it accepted (hostile key material must
//! fail verification, not the VM; and must not make it slow: libFuzzer's
//! `-timeout` reports a slow unit).
#![no_main]

use std::sync::OnceLock;

use jwt_auth::jwt::Jwt;
use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::{fixtures, mint};

fn tokens() -> &'static [Jwt] {
    static TOKENS: OnceLock<Vec<Jwt>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let minted = mint::sign(
            format!(r#"{{"alg":"HS256","kid":"{}"}}"#, fixtures::MINT_KID).as_bytes(),
            br#"{"iss":"https://idp.example.com","sub":"alice"}"#,
        );
        fixtures::RFC_TOKENS
            .iter()
            .map(|t| (*t).to_owned())
            .chain([minted])
            .map(|t| jwt_auth::jwt::parse(t.as_bytes(), 8192).expect("fixture token parses"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(jwks) = jwt_auth::jwks::parse(data) else {
        return;
    };
    assert!(!jwks.keys.is_empty(), "an accepted key set has keys");
    for jwt in tokens() {
        let _ = jwt_auth::crypto::verify_jwt(jwt, &jwks);
    }
});
