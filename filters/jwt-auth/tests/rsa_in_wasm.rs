//! RSA verification inside the shipped jwt_auth.wasm, under host-test.
//!
//! `montgomery::lanes` runs Wasm SIMD code that no native test reaches
//! (natively the portable lanes run instead), so this drives it through the
//! module: for keys of 1025, 2048, 2049, 3072 and 4096 bits and every
//! RS*/PS* algorithm, a valid token passes and the same token with one
//! signature bit flipped, another signature of the right length, or a
//! changed payload gets 401. The odd sizes leave partly filled limbs and
//! blocks, and a 4096-bit key has more than one block pair per row.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use host_test::{FilterSpec, Host, Request};
use rand::Rng;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};

const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dist/filters/jwt_auth.wasm"
);
/// host-test's default wall clock, 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;
const BITS: [usize; 5] = [1025, 2048, 2049, 3072, 4096];
const ALGS: [&str; 6] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

fn sign(key: &RsaPrivateKey, alg: &str, input: &[u8]) -> Option<Vec<u8>> {
    use rsa::pkcs1v15::SigningKey as Pkcs1;
    use rsa::pss::SigningKey as Pss;
    let mut rng = rand::thread_rng();
    let key = key.clone();
    let signature = match alg {
        "RS256" => Pkcs1::<Sha256>::new(key)
            .try_sign_with_rng(&mut rng, input)
            .map(|s| s.to_vec()),
        "RS384" => Pkcs1::<Sha384>::new(key)
            .try_sign_with_rng(&mut rng, input)
            .map(|s| s.to_vec()),
        "RS512" => Pkcs1::<Sha512>::new(key)
            .try_sign_with_rng(&mut rng, input)
            .map(|s| s.to_vec()),
        "PS256" => Pss::<Sha256>::new(key)
            .try_sign_with_rng(&mut rng, input)
            .map(|s| s.to_vec()),
        "PS384" => Pss::<Sha384>::new(key)
            .try_sign_with_rng(&mut rng, input)
            .map(|s| s.to_vec()),
        "PS512" => Pss::<Sha512>::new(key)
            .try_sign_with_rng(&mut rng, input)
            .map(|s| s.to_vec()),
        other => panic!("no such alg {other}"),
    };
    // A 1025-bit key is too short for PSS with SHA-512.
    signature.ok()
}

fn jwk(kid: &str, key: &RsaPrivateKey) -> Value {
    let public = key.to_public_key();
    json!({"kty": "RSA", "kid": kid, "use": "sig",
           "n": B64.encode(public.n().to_bytes_be()), "e": B64.encode(public.e().to_bytes_be())})
}

fn token(alg: &str, kid: &str, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}",
        signing_input(alg, kid, claims),
        B64.encode(signature)
    )
}

fn signing_input(alg: &str, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "kid": kid});
    format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

fn status(host: &mut Host, token: &str) -> u16 {
    let request = Request::get("/api").header("authorization", format!("Bearer {token}"));
    host.send(request).status
}

#[test]
fn rsa_signatures_verify_in_wasm_exactly_when_valid() {
    assert!(
        std::path::Path::new(WASM).exists(),
        "{WASM} is missing: run `make build`"
    );
    let mut rng = rand::thread_rng();
    let keys: Vec<(String, RsaPrivateKey)> = BITS
        .iter()
        .map(|&bits| {
            let key = RsaPrivateKey::new(&mut rng, bits).unwrap();
            (format!("k{bits}"), key)
        })
        .collect();
    let jwks: Vec<Value> = keys.iter().map(|(kid, key)| jwk(kid, key)).collect();
    let config = json!({
        "providers": {"idp": {
            "issuer": "https://idp.example",
            "local_jwks": {"inline_string": json!({"keys": jwks}).to_string()},
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]
    });
    let mut host = Host::new().unwrap();
    host.add_filter(FilterSpec::file("jwt", WASM).config(config.to_string().into_bytes()))
        .unwrap();
    let claims = json!({"iss": "https://idp.example", "sub": "alice", "exp": NOW + 3600});
    let other_claims = json!({"iss": "https://idp.example", "sub": "mallory", "exp": NOW + 3600});
    let mut checked = 0;
    for (kid, key) in &keys {
        for alg in ALGS {
            let input = signing_input(alg, kid, &claims);
            let Some(signature) = sign(key, alg, input.as_bytes()) else {
                assert_eq!(kid, "k1025", "{alg}: only the 1025-bit key is too short");
                continue;
            };
            let valid = token(alg, kid, &claims, &signature);
            assert_eq!(status(&mut host, &valid), 200, "{kid} {alg} valid");

            let mut flipped = signature.clone();
            let bit = rng.gen_range(0..flipped.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            let flipped = token(alg, kid, &claims, &flipped);
            assert_eq!(status(&mut host, &flipped), 401, "{kid} {alg} bit {bit}");

            let mut random = vec![0u8; signature.len()];
            rng.fill(&mut random[..]);
            random[0] &= 0x7f;
            let random = token(alg, kid, &claims, &random);
            assert_eq!(status(&mut host, &random), 401, "{kid} {alg} random");

            let moved = token(alg, kid, &other_claims, &signature);
            assert_eq!(status(&mut host, &moved), 401, "{kid} {alg} other payload");
            checked += 1;
        }
    }
    assert_eq!(checked, BITS.len() * ALGS.len() - 1);
}
