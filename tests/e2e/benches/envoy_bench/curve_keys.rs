//! The ES256, ES384, ES512, EdDSA and HS256 keys and tokens of the
//! `*-es256`, `*-es384`, `*-es512`, `*-eddsa` and `*-hs256` cases. The keys are derived from fixed labels (test only, never
//! secret), so every run verifies with the same key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// `kid` of each key in its JWKS and tokens.
const KID: &str = "bench-curve-key";

/// The algorithms this module has keys for.
pub const ALGS: [&str; 5] = ["ES256", "ES384", "ES512", "EdDSA", "HS256"];

/// The first `bytes`-byte secret, a chain of digests of a labelled
/// counter, that `from_slice` takes (a valid scalar: below the group
/// order, about half of them for P-521 and nearly all for the others).
fn scalar_key<K>(alg: &str, bytes: usize, from_slice: impl Fn(&[u8]) -> Option<K>) -> K {
    let mut counter = 0u32;
    loop {
        let label = format!("envoy-bench {alg} key {counter}, test only");
        let mut secret = Vec::with_capacity(bytes + 32);
        let mut block = Sha256::digest(label);
        while secret.len() < bytes {
            secret.extend_from_slice(&block);
            block = Sha256::digest(block);
        }
        secret.truncate(bytes);
        if let Some(key) = from_slice(&secret) {
            return key;
        }
        counter += 1;
    }
}

fn p256_key() -> p256::ecdsa::SigningKey {
    scalar_key("ES256", 32, |secret| {
        p256::ecdsa::SigningKey::from_slice(secret).ok()
    })
}

fn p384_key() -> p384::ecdsa::SigningKey {
    scalar_key("ES384", 48, |secret| {
        p384::ecdsa::SigningKey::from_slice(secret).ok()
    })
}

fn p521_key() -> p521::ecdsa::SigningKey {
    // 66 bytes, of which the scalar may use 521 bits: the top byte's
    // highest 7 bits cleared.
    scalar_key("ES512", 66, |secret| {
        let mut secret = secret.to_vec();
        if let Some(top) = secret.first_mut() {
            *top &= 1;
        }
        p521::ecdsa::SigningKey::from_slice(&secret).ok()
    })
}

/// The HS256 secret: 32 bytes, as RFC 7518 asks for at least.
fn hmac_secret() -> [u8; 32] {
    Sha256::digest(b"envoy-bench HS256 secret, test only").into()
}

fn ed25519_key() -> ed25519_dalek::SigningKey {
    let secret: [u8; 32] = Sha256::digest(b"envoy-bench EdDSA key, test only").into();
    ed25519_dalek::SigningKey::from_bytes(&secret)
}

/// The public JWKS of `alg`'s key.
pub fn jwks(alg: &str) -> String {
    let jwk = if alg == "ES256" {
        let point = p256_key().verifying_key().to_encoded_point(false);
        let (x, y) = (point.x(), point.y());
        json!({"kty": "EC", "crv": "P-256", "kid": KID, "alg": "ES256", "use": "sig",
               "x": B64.encode(x.map(|x| x.to_vec()).unwrap_or_default()),
               "y": B64.encode(y.map(|y| y.to_vec()).unwrap_or_default())})
    } else if alg == "ES384" || alg == "ES512" {
        // Uncompressed SEC1: 0x04, then x and y of equal length.
        let (crv, point) = if alg == "ES384" {
            (
                "P-384",
                p384_key()
                    .verifying_key()
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
            )
        } else {
            (
                "P-521",
                p521_key()
                    .verifying_key()
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
            )
        };
        let coordinates = point.get(1..).unwrap_or_default();
        let (x, y) = coordinates.split_at(coordinates.len() / 2);
        json!({"kty": "EC", "crv": crv, "kid": KID, "alg": alg, "use": "sig",
               "x": B64.encode(x), "y": B64.encode(y)})
    } else if alg == "HS256" {
        json!({"kty": "oct", "kid": KID, "alg": "HS256", "k": B64.encode(hmac_secret())})
    } else {
        let public = ed25519_key().verifying_key();
        json!({"kty": "OKP", "crv": "Ed25519", "kid": KID, "alg": "EdDSA", "use": "sig",
               "x": B64.encode(public.as_bytes())})
    };
    json!({ "keys": [jwk] }).to_string()
}

/// A token of `alg` for `sub` with the chain's issuer and audience, valid
/// for `ttl_secs` from now.
pub fn token(alg: &str, sub: &str, ttl_secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let header = json!({"alg": alg, "typ": "JWT", "kid": KID});
    let claims = json!({
        "iss": e2e::chain::ISSUER, "aud": e2e::chain::AUDIENCE, "sub": sub,
        "iat": now, "exp": now + ttl_secs,
    });
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = sign(alg, input.as_bytes());
    format!("{input}.{}", B64.encode(signature))
}

fn sign(alg: &str, input: &[u8]) -> Vec<u8> {
    if alg == "ES256" {
        use p256::ecdsa::signature::Signer;
        let signature: p256::ecdsa::Signature = p256_key().sign(input);
        signature.to_bytes().to_vec()
    } else if alg == "ES384" {
        use p384::ecdsa::signature::Signer;
        let signature: p384::ecdsa::Signature = p384_key().sign(input);
        signature.to_bytes().to_vec()
    } else if alg == "ES512" {
        use p521::ecdsa::signature::Signer;
        let signature: p521::ecdsa::Signature = p521_key().sign(input);
        signature.to_bytes().to_vec()
    } else if alg == "HS256" {
        use hmac::Mac;
        match hmac::Hmac::<Sha256>::new_from_slice(&hmac_secret()) {
            Ok(mut mac) => {
                mac.update(input);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    } else {
        use ed25519_dalek::Signer;
        ed25519_key().sign(input).to_bytes().to_vec()
    }
}

/// jwt_authn's config for `alg`: the RS256 one (see `jwt_config`) with this
/// key's JWKS, without `jwt_cache_config`.
pub fn config(rs256: Value, alg: &str) -> Value {
    let mut config = rs256;
    if let Some(provider) = config.pointer_mut("/providers/idp") {
        provider["local_jwks"] = json!({ "inline_string": jwks(alg) });
    }
    config
}
