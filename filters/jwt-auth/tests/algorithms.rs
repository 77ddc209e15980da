//! Every signature algorithm end to end through the filter's pure core
//! (config validation, JWKS parsing, token extraction and parsing,
//! verification, the decision): for each of RS256/384/512, PS256/384/512,
//! ES256/384/512, HS256/384/512 and EdDSA a valid token passes and a token
//! signed by another key, a tampered payload, an alg that does not fit the
//! key, `none` and HS256 keyed with public key bytes (algorithm confusion)
//! fail. Keys are generated here, once per test binary; tokens are minted
//! here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use jwt_auth::auth::{Env, Keys, Outcome, Plan};
use jwt_auth::config::{validate, JwksSource};
use jwt_auth::extract::Request;
use jwt_auth::status::Status;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.example";

/// Private keys of every type: `main` is in the JWKS, `other` is not.
struct KeySet {
    rsa: rsa::RsaPrivateKey,
    p256: p256::ecdsa::SigningKey,
    p384: p384::ecdsa::SigningKey,
    p521: p521::ecdsa::SigningKey,
    ed: ed25519_dalek::SigningKey,
    oct: Vec<u8>,
}

impl KeySet {
    fn generate() -> Self {
        use rand::RngCore;
        let mut rng = rand::thread_rng();
        // p384/p521 0.14 take a newer rand_core than the tests' rand 0.8,
        // so their secrets are drawn as bytes (retried until in range).
        let p384 = loop {
            let mut bytes = [0u8; 48];
            rng.fill_bytes(&mut bytes);
            if let Ok(key) = p384::ecdsa::SigningKey::from_slice(&bytes) {
                break key;
            }
        };
        let p521 = loop {
            let mut bytes = [0u8; 66];
            rng.fill_bytes(&mut bytes);
            bytes[0] &= 1;
            if let Ok(key) = p521::ecdsa::SigningKey::from_slice(&bytes) {
                break key;
            }
        };
        let mut oct = vec![0u8; 64];
        rng.fill_bytes(&mut oct);
        Self {
            rsa: rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            p256: p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng),
            p384,
            p521,
            ed: ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
            oct,
        }
    }

    /// The public JWKs, `kid` per type, no `alg` unless `with_alg`.
    fn jwks(&self, with_alg: bool) -> Vec<Value> {
        let public = self.rsa.to_public_key();
        let ec = |crv: &str, point: &[u8]| {
            let coords = &point[1..];
            let (x, y) = coords.split_at(coords.len() / 2);
            json!({"kty": "EC", "crv": crv, "x": B64.encode(x), "y": B64.encode(y)})
        };
        let p256_point = self.p256.verifying_key().to_encoded_point(false);
        let mut keys = [
            (
                "rsa",
                "RS256",
                json!({"kty": "RSA", "n": B64.encode(public.n().to_bytes_be()),
                       "e": B64.encode(public.e().to_bytes_be())}),
            ),
            ("ec256", "ES256", ec("P-256", p256_point.as_bytes())),
            (
                "ec384",
                "ES384",
                ec(
                    "P-384",
                    self.p384.verifying_key().to_sec1_point(false).as_bytes(),
                ),
            ),
            (
                "ec521",
                "ES512",
                ec(
                    "P-521",
                    self.p521.verifying_key().to_sec1_point(false).as_bytes(),
                ),
            ),
            (
                "ed",
                "EdDSA",
                json!({"kty": "OKP", "crv": "Ed25519",
                       "x": B64.encode(self.ed.verifying_key().as_bytes())}),
            ),
            (
                "oct",
                "HS256",
                json!({"kty": "oct", "k": B64.encode(&self.oct)}),
            ),
        ];
        keys.iter_mut()
            .map(|(kid, alg, jwk)| {
                jwk["kid"] = json!(kid);
                if with_alg {
                    jwk["alg"] = json!(alg);
                }
                jwk.clone()
            })
            .collect()
    }

    /// Signs `input` with this set's key for `alg`.
    fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        use rsa::pkcs1v15::SigningKey;
        use rsa::pss::BlindedSigningKey;
        let rsa = self.rsa.clone();
        let mut rng = rand::thread_rng();
        match alg {
            "RS256" => SigningKey::<Sha256>::new(rsa).sign(input).to_vec(),
            "RS384" => SigningKey::<Sha384>::new(rsa).sign(input).to_vec(),
            "RS512" => SigningKey::<Sha512>::new(rsa).sign(input).to_vec(),
            "PS256" => BlindedSigningKey::<Sha256>::new(rsa)
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            "PS384" => BlindedSigningKey::<Sha384>::new(rsa)
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            "PS512" => BlindedSigningKey::<Sha512>::new(rsa)
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            "ES256" => {
                let sig: p256::ecdsa::Signature = self.p256.sign(input);
                sig.to_bytes().to_vec()
            }
            "ES384" => {
                use p384::ecdsa::signature::Signer as _;
                let sig: p384::ecdsa::Signature = self.p384.sign(input);
                sig.to_bytes().to_vec()
            }
            "ES512" => {
                use p521::ecdsa::signature::Signer as _;
                let sig: p521::ecdsa::Signature = self.p521.sign(input);
                sig.to_bytes().to_vec()
            }
            "EdDSA" => {
                use ed25519_dalek::Signer as _;
                self.ed.sign(input).to_bytes().to_vec()
            }
            "HS256" => hmac_sign::<Hmac<Sha256>>(&self.oct, input),
            "HS384" => hmac_sign::<Hmac<Sha384>>(&self.oct, input),
            "HS512" => hmac_sign::<Hmac<Sha512>>(&self.oct, input),
            other => panic!("no signer for {other}"),
        }
    }
}

fn hmac_sign<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8]) -> Vec<u8> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret).unwrap();
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// Every algorithm and the `kid` of the key type it needs.
const ALGS: [(&str, &str); 13] = [
    ("RS256", "rsa"),
    ("RS384", "rsa"),
    ("RS512", "rsa"),
    ("PS256", "rsa"),
    ("PS384", "rsa"),
    ("PS512", "rsa"),
    ("ES256", "ec256"),
    ("ES384", "ec384"),
    ("ES512", "ec521"),
    ("HS256", "oct"),
    ("HS384", "oct"),
    ("HS512", "oct"),
    ("EdDSA", "ed"),
];

fn main_keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(KeySet::generate)
}

fn other_keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(KeySet::generate)
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "exp": NOW + 600})
}

fn input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

/// A token for `alg` with `kid`, signed by `keys`.
fn mint(keys: &KeySet, alg: &str, kid: &str, claims: &Value) -> String {
    let input = input(&json!({"alg": alg, "kid": kid, "typ": "JWT"}), claims);
    let sig = keys.sign(alg, input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

fn plan(with_alg: bool) -> Plan {
    let jwks = json!({ "keys": main_keys().jwks(with_alg) }).to_string();
    let config = json!({
        "providers": {"p": {
            "issuer": ISSUER,
            "local_jwks": {"inline_string": jwks},
            "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
    });
    Plan::new(validate(config.to_string().as_bytes()).unwrap())
}

/// The host side: the local keys, no cache, a fixed clock.
struct Host<'a>(&'a Plan);

impl Env for Host<'_> {
    fn keys(&self, provider: usize) -> Keys<'_> {
        match self.0.config.providers.get(provider).map(|p| &p.jwks) {
            Some(JwksSource::Local(jwks)) => Keys::Ready(jwks),
            _ => Keys::FetchFailed,
        }
    }
    fn unknown_kid(&mut self, _provider: usize) -> bool {
        false
    }
    fn cache_lookup(&mut self, _provider: usize, _token: &[u8]) -> bool {
        false
    }
    fn cache_insert(&mut self, _provider: usize, _token: &[u8], _exp: Option<u64>) {}
    fn now(&self) -> u64 {
        NOW
    }
}

fn decide(plan: &Plan, token: &str) -> Outcome {
    let headers = vec![(
        "authorization".to_owned(),
        format!("Bearer {token}").into_bytes(),
    )];
    let request = Request {
        method: b"GET",
        path: b"/api",
        headers: &headers,
    };
    plan.evaluate(&request, &mut Host(plan))
}

fn assert_allowed(plan: &Plan, token: &str, what: &str) {
    match decide(plan, token) {
        Outcome::Allow(m) => assert!(
            m.add.contains(&("x-sub".to_owned(), "alice".to_owned())),
            "{what}: claims not forwarded: {m:?}"
        ),
        other => panic!("{what}: expected Allow, got {other:?}"),
    }
}

fn assert_denied(plan: &Plan, token: &str, want: Status, what: &str) {
    assert_eq!(decide(plan, token), Outcome::Deny(want), "{what}");
}

#[test]
fn every_algorithm_accepts_a_token_signed_by_its_key() {
    let plan = plan(false);
    for (alg, kid) in ALGS {
        assert_allowed(&plan, &mint(main_keys(), alg, kid, &claims()), alg);
        // Without a `kid` every key is a candidate; the fitting one verifies.
        let no_kid = input(&json!({"alg": alg}), &claims());
        let sig = main_keys().sign(alg, no_kid.as_bytes());
        assert_allowed(
            &plan,
            &format!("{no_kid}.{}", B64.encode(sig)),
            &format!("{alg} without kid"),
        );
    }
}

#[test]
fn every_algorithm_refuses_a_token_signed_by_another_key() {
    let plan = plan(false);
    for (alg, kid) in ALGS {
        assert_denied(
            &plan,
            &mint(other_keys(), alg, kid, &claims()),
            Status::JwtVerificationFail,
            alg,
        );
    }
}

#[test]
fn every_algorithm_refuses_a_tampered_payload_or_signature() {
    let plan = plan(false);
    for (alg, kid) in ALGS {
        let token = mint(main_keys(), alg, kid, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged =
            B64.encode(json!({"iss": ISSUER, "sub": "mallory", "exp": NOW + 600}).to_string());
        let swapped = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_denied(&plan, &swapped, Status::JwtVerificationFail, alg);

        let mut sig = B64.decode(parts[2]).unwrap();
        let last = sig.len() - 1;
        sig[last / 2] ^= 0x01;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], B64.encode(&sig));
        assert_denied(&plan, &flipped, Status::JwtVerificationFail, alg);

        // A signature cut short: the length check (EdDSA has its own status).
        sig.truncate(last);
        let short = format!("{}.{}.{}", parts[0], parts[1], B64.encode(&sig));
        let want = if alg == "EdDSA" {
            Status::JwtEd25519SignatureWrongLength
        } else {
            Status::JwtVerificationFail
        };
        assert_denied(&plan, &short, want, &format!("{alg} short"));
    }
}

#[test]
fn an_alg_that_does_not_fit_the_key_type_fails() {
    // The token names a key of another type by `kid`. Without `alg` in the
    // JWK the key is a candidate that cannot verify (verification fails);
    // with it, no key matches (jwt_verify_lib's kid/alg status).
    let without = plan(false);
    let with = plan(true);
    for (alg, own_kid) in ALGS {
        for (_, kid) in ALGS {
            if kid == own_kid {
                continue;
            }
            let token = mint(main_keys(), alg, kid, &claims());
            assert_denied(
                &without,
                &token,
                Status::JwtVerificationFail,
                &format!("{alg} with kid {kid}"),
            );
            assert_denied(
                &with,
                &token,
                Status::JwksKidAlgMismatch,
                &format!("{alg} with kid {kid}, JWK alg declared"),
            );
        }
    }
    // A declared alg must match exactly, even within the key type.
    let rs384 = mint(main_keys(), "RS384", "rsa", &claims());
    assert_denied(
        &with,
        &rs384,
        Status::JwksKidAlgMismatch,
        "RS384 on RS256 JWK",
    );
    assert_allowed(
        &with,
        &mint(main_keys(), "RS256", "rsa", &claims()),
        "RS256",
    );
}

#[test]
fn alg_none_is_refused_in_any_spelling() {
    let plan = plan(false);
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let unsigned = input(&json!({"alg": alg}), &claims());
        for token in [format!("{unsigned}."), format!("{unsigned}.AAAA")] {
            assert_denied(
                &plan,
                &token,
                Status::JwtHeaderNotImplementedAlg,
                &format!("alg {alg:?}"),
            );
        }
    }
}

#[test]
fn hs256_keyed_with_public_key_bytes_is_refused() {
    use rsa::pkcs8::EncodePublicKey;
    let plan = plan(false);
    let keys = main_keys();
    let public = keys.rsa.to_public_key();
    let jwks = keys.jwks(false);
    let p256 = keys.p256.verifying_key().to_encoded_point(false);
    // What an attacker could use as the HMAC secret: the public key in
    // every form a verifier might hand to HMAC by mistake.
    let secrets: Vec<Vec<u8>> = vec![
        public.n().to_bytes_be(),
        public.to_public_key_der().unwrap().as_bytes().to_vec(),
        public
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
            .into_bytes(),
        jwks[0].to_string().into_bytes(),
        p256.as_bytes().to_vec(),
        keys.ed.verifying_key().as_bytes().to_vec(),
    ];
    for (i, secret) in secrets.iter().enumerate() {
        for kid in [Some("rsa"), Some("ec256"), Some("ed"), None] {
            let header = match kid {
                Some(kid) => json!({"alg": "HS256", "kid": kid}),
                None => json!({"alg": "HS256"}),
            };
            let input = input(&header, &claims());
            let sig = hmac_sign::<Hmac<Sha256>>(secret, input.as_bytes());
            assert_denied(
                &plan,
                &format!("{input}.{}", B64.encode(sig)),
                Status::JwtVerificationFail,
                &format!("secret form {i}, kid {kid:?}"),
            );
        }
    }
}
