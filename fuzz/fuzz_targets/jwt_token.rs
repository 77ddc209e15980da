//! Token strings: jwt-auth's compact-JWS parser, then signature
//! verification against a fixed key set (every published RFC key plus the
//! fuzz minting key), the cache encoding and the claim-to-header rendering.
//!
//! Findings besides a panic: a token that verifies although its signed
//! part is neither an RFC token's nor HMAC-signed with the minting secret
//! (a forgery; only the signature's encoding may differ), and a cache entry that does not hit its own token.
#![no_main]

use std::sync::OnceLock;

use jwt_auth::jwks::Jwks;
use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::{fixtures, mint};

fn keys() -> &'static Jwks {
    static KEYS: OnceLock<Jwks> = OnceLock::new();
    KEYS.get_or_init(|| {
        jwt_auth::jwks::parse(fixtures::all_keys_jwks().as_bytes())
            .expect("the fixed key set parses")
    })
}

fuzz_target!(|data: &[u8]| {
    // jwt-auth's default max_jwt_bytes.
    let Ok(jwt) = jwt_auth::jwt::parse(data, 8192) else {
        return;
    };
    if jwt_auth::crypto::verify_jwt(&jwt, keys()).is_ok() {
        let signed = |token: &str| token.rsplit_once('.').map(|(input, _)| input.to_owned());
        let rfc = fixtures::RFC_TOKENS
            .iter()
            .any(|t| signed(t).as_deref() == Some(jwt.signing_input.as_str()));
        // Or honestly signed with the minting secret (a seed does that).
        let minted = mint::sign_input(&jwt.signing_input) == jwt.signature;
        assert!(
            rfc || minted,
            "a token not signed by a fixture key verified: {:?}",
            String::from_utf8_lossy(data)
        );
    }
    let entry = jwt_auth::cache::encode(data, jwt.exp);
    assert!(jwt_auth::cache::hit(&entry, data, 0, 0));
    let _ = jwt_auth::cache::slot_key(1, 100, data);
    for (name, value) in &jwt.claims {
        let _ = jwt_auth::claims::header_value(value);
        let path: Vec<String> = name.split('.').map(str::to_owned).collect();
        let _ = jwt_auth::jwt::claim_at(&jwt.claims, &path);
    }
});
