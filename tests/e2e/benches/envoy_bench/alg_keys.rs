//! The keys and tokens of the per-algorithm cases (`jwt-auth-<alg>` and
//! `jwt-authn-<alg>`), one pair for every algorithm jwt-auth supports but
//! RS256, which `jwt-auth-uncached` covers. The RSA algorithms use the e2e
//! test key (tests/e2e/data); the others' keys are derived from fixed
//! labels (test only, never secret), so every run verifies with the same
//! key.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use e2e::chain::Idp;
pub use jwt_auth::jwt::Alg;
use rsa::rand_core::{self, CryptoRng, RngCore};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// `kid` of each key in its JWKS and tokens.
const KID: &str = "bench-alg-key";

/// The algorithms with a case pair of their own: jwt-auth's all but RS256,
/// in the bench's order.
pub const ALGS: [Alg; 12] = [
    Alg::Rs384,
    Alg::Rs512,
    Alg::Ps256,
    Alg::Ps384,
    Alg::Ps512,
    Alg::Es256,
    Alg::Es384,
    Alg::Es512,
    Alg::Hs256,
    Alg::Hs384,
    Alg::Hs512,
    Alg::EdDsa,
];

/// The labels of an algorithm missing from [`ALGS`], which `--only` can
/// never pick.
const UNLISTED: Labels = Labels {
    wasm_id: "jwt-auth-unlisted",
    native_id: "jwt-authn-unlisted",
    wasm_name: "jwt-auth, unlisted algorithm",
    native_name: "jwt_authn, unlisted algorithm",
};

/// An algorithm's case ids and names.
#[derive(Clone, Copy)]
pub struct Labels {
    pub wasm_id: &'static str,
    pub native_id: &'static str,
    pub wasm_name: &'static str,
    pub native_name: &'static str,
}

/// What the bench calls each algorithm's cases.
pub trait CaseLabels {
    fn labels(self) -> Labels;
}

impl CaseLabels for Alg {
    /// `jwt-auth-es256`, `jwt_authn, ES256 verified every request (native)`
    /// and the like, made once and kept for the process's life.
    fn labels(self) -> Labels {
        static LABELS: OnceLock<Vec<(Alg, Labels)>> = OnceLock::new();
        let labels = LABELS.get_or_init(|| {
            ALGS.iter()
                .map(|&alg| {
                    let jose = alg.name();
                    let id = jose.to_lowercase();
                    let labels = Labels {
                        wasm_id: format!("jwt-auth-{id}").leak(),
                        native_id: format!("jwt-authn-{id}").leak(),
                        wasm_name: format!("jwt-auth, {jose} verified every request (Wasm)").leak(),
                        native_name: format!("jwt_authn, {jose} verified every request (native)")
                            .leak(),
                    };
                    (alg, labels)
                })
                .collect()
        });
        labels
            .iter()
            .find(|(alg, _)| *alg == self)
            .map_or(UNLISTED, |(_, labels)| *labels)
    }
}

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

/// The HMAC secret of `alg`: as long as its hash, the least RFC 7518 asks
/// for.
fn hmac_secret(alg: Alg) -> Vec<u8> {
    let label = format!("envoy-bench {} secret, test only", alg.name());
    match alg {
        Alg::Hs384 => Sha384::digest(label).to_vec(),
        Alg::Hs512 => Sha512::digest(label).to_vec(),
        _ => Sha256::digest(label).to_vec(),
    }
}

fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(Idp::load)
}

/// The PSS salts' source: a digest chain, so that the bench's PSS tokens
/// are the same from run to run. Test only; a real signer needs a real
/// random source.
struct SaltChain {
    block: [u8; 32],
}

impl RngCore for SaltChain {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            self.block = Sha256::digest(self.block).into();
            for (byte, source) in chunk.iter_mut().zip(self.block) {
                *byte = source;
            }
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SaltChain {}

fn ed25519_key() -> ed25519_dalek::SigningKey {
    let secret: [u8; 32] = Sha256::digest(b"envoy-bench EdDSA key, test only").into();
    ed25519_dalek::SigningKey::from_bytes(&secret)
}

/// The public JWKS of `alg`'s key.
pub fn jwks(alg: Alg) -> String {
    let jwk = match alg {
        Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512 => {
            let public = idp().key().to_public_key();
            json!({"kty": "RSA", "kid": KID, "alg": alg.name(), "use": "sig",
                   "n": B64.encode(public.n().to_bytes_be()),
                   "e": B64.encode(public.e().to_bytes_be())})
        }
        Alg::Hs256 | Alg::Hs384 | Alg::Hs512 => {
            json!({"kty": "oct", "kid": KID, "alg": alg.name(), "k": B64.encode(hmac_secret(alg))})
        }
        _ => curve_jwk(alg),
    };
    json!({ "keys": [jwk] }).to_string()
}

/// The JWK of an elliptic-curve algorithm's key.
fn curve_jwk(alg: Alg) -> Value {
    if alg == Alg::Es256 {
        let point = p256_key().verifying_key().to_encoded_point(false);
        let (x, y) = (point.x(), point.y());
        json!({"kty": "EC", "crv": "P-256", "kid": KID, "alg": "ES256", "use": "sig",
               "x": B64.encode(x.map(|x| x.to_vec()).unwrap_or_default()),
               "y": B64.encode(y.map(|y| y.to_vec()).unwrap_or_default())})
    } else if alg == Alg::Es384 || alg == Alg::Es512 {
        // Uncompressed SEC1: 0x04, then x and y of equal length.
        let (crv, point) = if alg == Alg::Es384 {
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
        json!({"kty": "EC", "crv": crv, "kid": KID, "alg": alg.name(), "use": "sig",
               "x": B64.encode(x), "y": B64.encode(y)})
    } else {
        let public = ed25519_key().verifying_key();
        json!({"kty": "OKP", "crv": "Ed25519", "kid": KID, "alg": "EdDSA", "use": "sig",
               "x": B64.encode(public.as_bytes())})
    }
}

/// A token of `alg` for `sub` with the chain's issuer and audience, valid
/// for `ttl_secs` from now.
pub fn token(alg: Alg, sub: &str, ttl_secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let header = json!({"alg": alg.name(), "typ": "JWT", "kid": KID});
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

fn sign(alg: Alg, input: &[u8]) -> Vec<u8> {
    let rsa_key = || idp().key().clone();
    let mut salts = SaltChain { block: [0; 32] };
    match alg {
        Alg::Rs256 => rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa_key())
            .sign(input)
            .to_vec(),
        Alg::Rs384 => rsa::pkcs1v15::SigningKey::<Sha384>::new(rsa_key())
            .sign(input)
            .to_vec(),
        Alg::Rs512 => rsa::pkcs1v15::SigningKey::<Sha512>::new(rsa_key())
            .sign(input)
            .to_vec(),
        Alg::Ps256 => rsa::pss::SigningKey::<Sha256>::new(rsa_key())
            .sign_with_rng(&mut salts, input)
            .to_vec(),
        Alg::Ps384 => rsa::pss::SigningKey::<Sha384>::new(rsa_key())
            .sign_with_rng(&mut salts, input)
            .to_vec(),
        Alg::Ps512 => rsa::pss::SigningKey::<Sha512>::new(rsa_key())
            .sign_with_rng(&mut salts, input)
            .to_vec(),
        Alg::Es256 => {
            use p256::ecdsa::signature::Signer;
            let signature: p256::ecdsa::Signature = p256_key().sign(input);
            signature.to_bytes().to_vec()
        }
        Alg::Es384 => {
            use p384::ecdsa::signature::Signer;
            let signature: p384::ecdsa::Signature = p384_key().sign(input);
            signature.to_bytes().to_vec()
        }
        Alg::Es512 => {
            use p521::ecdsa::signature::Signer;
            let signature: p521::ecdsa::Signature = p521_key().sign(input);
            signature.to_bytes().to_vec()
        }
        Alg::Hs256 => hmac_tag::<hmac::Hmac<Sha256>>(alg, input),
        Alg::Hs384 => hmac_tag::<hmac::Hmac<Sha384>>(alg, input),
        Alg::Hs512 => hmac_tag::<hmac::Hmac<Sha512>>(alg, input),
        Alg::EdDsa => {
            use ed25519_dalek::Signer;
            ed25519_key().sign(input).to_bytes().to_vec()
        }
    }
}

/// The HMAC of `input` under `alg`'s secret, with `M` its `Hmac<hash>`.
fn hmac_tag<M: hmac::Mac + hmac::digest::KeyInit>(alg: Alg, input: &[u8]) -> Vec<u8> {
    match <M as hmac::Mac>::new_from_slice(&hmac_secret(alg)) {
        Ok(mut mac) => {
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// jwt_authn's config for `alg`: the RS256 one (see `jwt_config`) with this
/// key's JWKS, without `jwt_cache_config`.
pub fn config(rs256: Value, alg: Alg) -> Value {
    let mut config = rs256;
    if let Some(provider) = config.pointer_mut("/providers/idp") {
        provider["local_jwks"] = json!({ "inline_string": jwks(alg) });
    }
    config
}
