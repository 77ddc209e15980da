//! RSA verification inside the shipped jwt_auth.wasm, under host-test.
//!
//! `montgomery::lanes` runs Wasm SIMD code that no native test reaches
//! (natively the portable lanes run instead), so this drives it through the
//! module: for keys of 1025, 2048, 2049, 3072 and 4096 bits and every
//! RS*/PS* algorithm, a valid token passes and the same token with one
//! signature bit flipped, another signature of the right length, or a
//! changed payload gets 401. The odd sizes leave partly filled limbs and
//! blocks, and a 4096-bit key has more than one block pair per row.
//!
//! On a CPU with fused multiply-add, wasmtime runs `f64x2.relaxed_madd`
//! fused, so the module takes the 52-bit float limbs
//! (`montgomery::float`), and the test checks that it says so; elsewhere
//! it takes the integer limbs, which the same checks then cover.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use host_test::VmLimits;
use in_wasm::{claims, host, signing_input, status};
use rand::Rng;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};

mod in_wasm;

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

#[test]
fn rsa_signatures_verify_in_wasm_exactly_when_valid() {
    let mut rng = rand::thread_rng();
    let keys: Vec<(String, RsaPrivateKey)> = BITS
        .iter()
        .map(|&bits| {
            let key = RsaPrivateKey::new(&mut rng, bits).unwrap();
            (format!("k{bits}"), key)
        })
        .collect();
    let jwks: Vec<Value> = keys.iter().map(|(kid, key)| jwk(kid, key)).collect();
    let mut host = host(&jwks, VmLimits::default());
    let (claims, other_claims) = (claims("alice"), claims("mallory"));
    let mut checked = 0;
    for (kid, key) in &keys {
        for alg in ALGS {
            let input = signing_input(alg, kid, &claims);
            let Some(signature) = sign(key, alg, input.as_bytes()) else {
                assert_eq!(kid, "k1025", "{alg}: only the 1025-bit key is too short");
                continue;
            };
            assert_eq!(
                status(&mut host, &input, &signature),
                200,
                "{kid} {alg} valid"
            );

            let mut flipped = signature.clone();
            let bit = rng.gen_range(0..flipped.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                status(&mut host, &input, &flipped),
                401,
                "{kid} {alg} bit {bit}"
            );

            let mut random = vec![0u8; signature.len()];
            rng.fill(&mut random[..]);
            random[0] &= 0x7f;
            assert_eq!(
                status(&mut host, &input, &random),
                401,
                "{kid} {alg} random"
            );

            let moved = signing_input(alg, kid, &other_claims);
            assert_eq!(
                status(&mut host, &moved, &signature),
                401,
                "{kid} {alg} other payload"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, BITS.len() * ALGS.len() - 1);

    let arithmetic: Vec<String> = host
        .logs()
        .into_iter()
        .map(|record| record.message)
        .filter(|message| message.starts_with("jwt-auth: RSA keys use"))
        .collect();
    assert_eq!(arithmetic.len(), 1, "{arithmetic:?}");
    if host_has_fma() {
        assert!(
            arithmetic[0].contains("fused multiply-add"),
            "{arithmetic:?}"
        );
    }
}

/// Whether this CPU has fused multiply-add, which wasmtime then uses for
/// `relaxed_madd`.
fn host_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}
