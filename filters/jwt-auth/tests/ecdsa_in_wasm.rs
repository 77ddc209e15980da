//! ES256, ES384 and ES512 verification inside the shipped jwt_auth.wasm, under
//! host-test.
//!
//! `src/ecdsa/` sums table points with its own field arithmetic, which is
//! built for wasm32 with 32-bit `usize` there; this drives it through the
//! module with several keys per curve, so both key tables and the shared
//! tables of G are used: a valid token passes, and the same token with
//! one signature bit flipped, with `r` and `s` swapped, or with a changed
//! payload gets 401.
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
use rand::{Rng, RngCore};
use serde_json::{json, Value};

mod in_wasm;
/// Keys per curve.
const KEYS: usize = 3;
/// Tokens per key.
const TOKENS: usize = 4;
/// Fuel per callback: configure builds nine key tables and three tables
/// of G, between 1.5 and 2 x 10^9 instructions (2026-12-07), more than
/// host-test's default budget. A JWKS of a few keys of one curve fits.
const FUEL: u64 = 3_000_000_000;

/// A signing key of either curve, with what the JWKS and tokens need.
enum Key {
    P256(p256_014::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

impl Key {
    fn random(alg: &str) -> Self {
        let mut rng = rand::thread_rng();
        loop {
            let mut secret = vec![0u8; 66];
            rng.fill_bytes(&mut secret);
            let key = match alg {
                "ES256" => p256_014::ecdsa::SigningKey::from_slice(&secret[..32])
                    .ok()
                    .map(Key::P256),
                "ES384" => p384::ecdsa::SigningKey::from_slice(&secret[..48])
                    .ok()
                    .map(Key::P384),
                "ES512" => {
                    // 521 bits: 1 in the top byte.
                    secret[0] &= 1;
                    p521::ecdsa::SigningKey::from_slice(&secret)
                        .ok()
                        .map(Key::P521)
                }
                other => panic!("no key type for {other}"),
            };
            if let Some(key) = key {
                assert_eq!(key.alg(), alg);
                return key;
            }
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::P256(_) => "ES256",
            Key::P384(_) => "ES384",
            Key::P521(_) => "ES512",
        }
    }

    fn jwk(&self, kid: &str) -> Value {
        let (crv, sec1) = match self {
            Key::P256(key) => (
                "P-256",
                key.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            ),
            Key::P384(key) => (
                "P-384",
                key.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            ),
            Key::P521(key) => (
                "P-521",
                key.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            ),
        };
        // Uncompressed SEC1: 0x04, then x and y of equal length.
        let (x, y) = sec1[1..].split_at((sec1.len() - 1) / 2);
        json!({"kty": "EC", "crv": crv, "kid": kid, "use": "sig",
               "x": B64.encode(x), "y": B64.encode(y)})
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Key::P256(key) => {
                use p256_014::ecdsa::signature::Signer;
                let signature: p256_014::ecdsa::Signature = key.sign(input);
                signature.to_bytes().to_vec()
            }
            Key::P384(key) => {
                use p384::ecdsa::signature::Signer;
                let signature: p384::ecdsa::Signature = key.sign(input);
                signature.to_bytes().to_vec()
            }
            Key::P521(key) => {
                use p521::ecdsa::signature::Signer;
                let signature: p521::ecdsa::Signature = key.sign(input);
                signature.to_bytes().to_vec()
            }
        }
    }
}

#[test]
fn ecdsa_signatures_verify_in_wasm_exactly_when_valid() {
    let keys: Vec<(String, Key)> = ["ES256", "ES384", "ES512"]
        .into_iter()
        .flat_map(|alg| (0..KEYS).map(move |i| (format!("{alg}-{i}"), Key::random(alg))))
        .collect();
    let jwks: Vec<Value> = keys.iter().map(|(kid, key)| key.jwk(kid)).collect();
    let limits = VmLimits {
        fuel_per_callback: FUEL,
        ..VmLimits::default()
    };
    let mut host = host(&jwks, limits);
    let mut rng = rand::thread_rng();
    let mut checked = 0;
    for (kid, key) in &keys {
        let alg = key.alg();
        for n in 0..TOKENS {
            let input = signing_input(alg, kid, &claims(&format!("user-{n}")));
            let signature = key.sign(input.as_bytes());
            assert_eq!(status(&mut host, &input, &signature), 200, "{kid} valid");

            let mut flipped = signature.clone();
            let bit = rng.gen_range(0..flipped.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(status(&mut host, &input, &flipped), 401, "{kid} bit {bit}");

            let (r, s) = signature.split_at(signature.len() / 2);
            let swapped = [s, r].concat();
            assert_eq!(
                status(&mut host, &input, &swapped),
                401,
                "{kid} r, s swapped"
            );

            let moved = signing_input(alg, kid, &claims("mallory"));
            assert_eq!(
                status(&mut host, &moved, &signature),
                401,
                "{kid} other payload"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * KEYS * TOKENS);
}
