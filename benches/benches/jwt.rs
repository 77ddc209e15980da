//! jwt-auth: signature verification for every algorithm natively, token
//! parsing, the pure core's whole decision with and without a
//! verified-token cache hit, and request lifecycles through host-test
//! (the shipped `jwt_auth.wasm`) with an RS256 token that is verified on
//! every request, that misses the cache every time, and that hits it.
//! Keys are generated at start and tokens minted here.
//!
//! Figures for Wasm in V8 (what Envoy runs) come from the harness
//! described in `filters/jwt-auth/README.md` ("Speed"); host-test runs
//! wasmtime, so its lifecycle figures show the same code under Cranelift.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use benches::{fail, or_exit, wasm, Case};
use criterion::{criterion_group, criterion_main, Criterion};
use hmac::Mac;
use host_test::{FilterSpec, Host, Request};
use jwt_auth::auth::{Env, Keys, Outcome, Plan};
use jwt_auth::config::{validate, JwksSource};
use jwt_auth::{crypto, jwks, jwt};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::json;
use sha2::{Sha256, Sha384, Sha512};

const ISSUER: &str = "https://issuer.example";
/// 2100-01-01: the tokens never expire during a run.
const EXP: u64 = 4_102_444_800;
/// host-test's default wall clock (2026-01-01), also the core's clock here.
const NOW: u64 = 1_767_225_600;

/// Every algorithm with the `kid` of its key.
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

/// One key per type (RSA 2048), their JWKS, and a signer per algorithm.
struct Keyring {
    rsa: rsa::RsaPrivateKey,
    p256: p256::ecdsa::SigningKey,
    p384: p384::ecdsa::SigningKey,
    p521: p521::ecdsa::SigningKey,
    ed: ed25519_dalek::SigningKey,
    oct: Vec<u8>,
}

impl Keyring {
    fn generate() -> Self {
        use rand::RngCore;
        let mut rng = rand::thread_rng();
        // p384/p521 0.14 take a newer rand_core than rand 0.8's: draw bytes.
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
            if let Some(first) = bytes.first_mut() {
                *first &= 1;
            }
            if let Ok(key) = p521::ecdsa::SigningKey::from_slice(&bytes) {
                break key;
            }
        };
        let mut oct = vec![0u8; 64];
        rng.fill_bytes(&mut oct);
        Self {
            rsa: or_exit(rsa::RsaPrivateKey::new(&mut rng, 2048), "RSA key"),
            p256: p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng),
            p384,
            p521,
            ed: ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
            oct,
        }
    }

    fn jwks(&self) -> String {
        let public = self.rsa.to_public_key();
        let ec = |crv: &str, kid: &str, point: &[u8]| {
            let coords = point.get(1..).unwrap_or_default();
            let (x, y) = coords.split_at(coords.len() / 2);
            json!({"kty": "EC", "crv": crv, "kid": kid, "x": B64.encode(x), "y": B64.encode(y)})
        };
        json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "n": B64.encode(public.n().to_bytes_be()),
             "e": B64.encode(public.e().to_bytes_be())},
            ec("P-256", "ec256", self.p256.verifying_key().to_encoded_point(false).as_bytes()),
            ec("P-384", "ec384", self.p384.verifying_key().to_sec1_point(false).as_bytes()),
            ec("P-521", "ec521", self.p521.verifying_key().to_sec1_point(false).as_bytes()),
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed",
             "x": B64.encode(self.ed.verifying_key().as_bytes())},
            {"kty": "oct", "kid": "oct", "k": B64.encode(&self.oct)},
        ]})
        .to_string()
    }

    /// A token for `alg`; `jti` makes otherwise equal tokens differ.
    fn mint(&self, alg: &str, kid: &str, jti: u32) -> String {
        let claims = json!({"iss": ISSUER, "sub": "alice", "aud": "api", "exp": EXP,
            "iat": NOW, "jti": jti.to_string(), "scope": "read write",
            "email": "alice@example.com", "groups": ["dev", "ops"]});
        let input = format!(
            "{}.{}",
            B64.encode(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string()),
            B64.encode(claims.to_string())
        );
        format!("{input}.{}", B64.encode(self.sign(alg, input.as_bytes())))
    }

    fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        use rsa::pkcs1v15::SigningKey;
        use rsa::pss::BlindedSigningKey;
        let rsa = self.rsa.clone();
        let mut rng = rand::thread_rng();
        fn mac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8]) -> Vec<u8> {
            let mut mac = or_exit(
                <M as hmac::digest::KeyInit>::new_from_slice(secret),
                "HMAC key",
            );
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
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
            "HS256" => mac::<hmac::Hmac<Sha256>>(&self.oct, input),
            "HS384" => mac::<hmac::Hmac<Sha384>>(&self.oct, input),
            "HS512" => mac::<hmac::Hmac<Sha512>>(&self.oct, input),
            other => fail(&format!("no signer for {other}")),
        }
    }
}

/// The filter config: one provider with the keys inline, `sub` to a
/// header, every path protected; `cache_size` adds `jwt_cache_config`.
fn config(jwks: &str, cache_size: Option<u32>) -> String {
    let mut provider = json!({
        "issuer": ISSUER,
        "audiences": ["api"],
        "local_jwks": {"inline_string": jwks},
        "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
    });
    if let (Some(size), Some(fields)) = (cache_size, provider.as_object_mut()) {
        fields.insert(
            "jwt_cache_config".to_owned(),
            json!({"jwt_cache_size": size}),
        );
    }
    json!({
        "providers": {"idp": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]
    })
    .to_string()
}

/// The core's host side: local keys, a cache that always hits or never
/// does, a fixed clock.
struct CoreEnv<'a> {
    plan: &'a Plan,
    hit: bool,
}

impl Env for CoreEnv<'_> {
    fn keys(&self, provider: usize) -> Keys<'_> {
        match self.plan.config.providers.get(provider).map(|p| &p.jwks) {
            Some(JwksSource::Local(jwks)) => Keys::Ready(jwks),
            _ => Keys::FetchFailed,
        }
    }
    fn unknown_kid(&mut self, _provider: usize) -> bool {
        false
    }
    fn cache_lookup(&mut self, _provider: usize, _token: &[u8]) -> bool {
        self.hit
    }
    fn cache_insert(&mut self, _provider: usize, _token: &[u8], _exp: Option<u64>) {}
    fn now(&self) -> u64 {
        NOW
    }
}

fn plan(jwks: &str, cache_size: Option<u32>) -> Plan {
    Plan::new(or_exit(
        validate(config(jwks, cache_size).as_bytes()),
        "jwt-auth config",
    ))
}

/// Natively: verification per algorithm (keys parsed once, as the filter
/// holds them), parsing, and the core's decision without and with a cache
/// hit.
fn native(c: &mut Criterion) {
    let keyring = Keyring::generate();
    let jwks_text = keyring.jwks();
    let keys = or_exit(jwks::parse(jwks_text.as_bytes()), "JWKS");
    let mut group = c.benchmark_group("jwt_native");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (alg, kid) in ALGS {
        let token = keyring.mint(alg, kid, 0);
        let parsed = or_exit(
            jwt::parse(token.as_bytes(), 8192).map_err(|status| format!("{status:?}")),
            "parse",
        );
        if !crypto::verify_jwt(&parsed, &keys).is_ok() {
            fail(&format!("{alg}: the minted token does not verify"));
        }
        group.bench_function(format!("verify/{alg}"), |b| {
            b.iter(|| crypto::verify_jwt(black_box(&parsed), &keys));
        });
    }
    let token = keyring.mint("RS256", "rsa", 0);
    group.bench_function("parse/RS256", |b| {
        b.iter(|| jwt::parse(black_box(token.as_bytes()), 8192));
    });
    group.bench_function("jwks_parse/6_keys", |b| {
        b.iter(|| jwks::parse(black_box(jwks_text.as_bytes())));
    });

    let headers = vec![(
        "authorization".to_owned(),
        format!("Bearer {token}").into_bytes(),
    )];
    let request = jwt_auth::extract::Request {
        method: b"GET",
        path: b"/api",
        headers: &headers,
    };
    for (name, cache, hit) in [
        ("core_uncached/RS256", None, false),
        ("core_cached/RS256", Some(100), true),
    ] {
        let plan = plan(&jwks_text, cache);
        let mut env = CoreEnv { plan: &plan, hit };
        if !matches!(plan.evaluate(&request, &mut env), Outcome::Allow(_)) {
            fail(&format!("{name}: the request is not allowed"));
        }
        group.bench_function(name, |b| {
            b.iter(|| plan.evaluate(black_box(&request), &mut env));
        });
    }
    group.finish();
}

/// A host with jwt_auth.wasm (and `cache_size`), after checked warm-up
/// requests with `tokens`.
fn jwt_host(jwks: &str, cache_size: Option<u32>, tokens: &[String]) -> Host {
    let mut host = or_exit(Host::new(), "creating the host");
    let path = wasm("filters/jwt_auth.wasm");
    or_exit(
        host.add_filter(FilterSpec::file("jwt", &path).config(config(jwks, cache_size))),
        "loading jwt_auth.wasm",
    );
    host.set_upstream(Case::Noop.upstream());
    for token in tokens {
        let exchange = host.send(request(token));
        let sub = exchange
            .upstream
            .as_ref()
            .and_then(|upstream| upstream.header("x-jwt-sub"));
        if exchange.status != 200 || sub.as_deref() != Some("alice") {
            fail(&format!(
                "jwt_auth.wasm: the warm-up request was not allowed (status {}, failures {:?})",
                exchange.status, exchange.failures
            ));
        }
    }
    host
}

fn request(token: &str) -> Request {
    Request::get("/api").header("authorization", format!("Bearer {token}"))
}

/// Request lifecycles through host-test, beside the `noop` baseline.
fn lifecycle(c: &mut Criterion) {
    let keyring = Keyring::generate();
    let jwks_text = keyring.jwks();
    let mut group = c.benchmark_group("jwt_lifecycle");
    group.measurement_time(Duration::from_secs(5));

    let mut noop = Case::Noop.host();
    group.bench_function("noop", |b| {
        b.iter(|| black_box(noop.send(Request::get("/"))));
    });

    for alg in ["RS256", "ES256", "EdDSA", "HS256"] {
        let kid = ALGS
            .iter()
            .find(|(name, _)| *name == alg)
            .map_or("", |(_, kid)| kid);
        let token = keyring.mint(alg, kid, 0);
        let mut host = jwt_host(&jwks_text, None, std::slice::from_ref(&token));
        group.bench_function(format!("{alg}_verified_every_request"), |b| {
            b.iter(|| black_box(host.send(request(&token))));
        });
    }

    // A one-slot cache and two tokens taken in turn: every request misses,
    // verifies and writes the slot (a new token's first request).
    let tokens = [
        keyring.mint("RS256", "rsa", 1),
        keyring.mint("RS256", "rsa", 2),
    ];
    let mut host = jwt_host(&jwks_text, Some(1), &tokens);
    let mut turns = tokens.iter().cycle();
    group.bench_function("RS256_cache_miss", |b| {
        b.iter(|| {
            turns
                .next()
                .map(|token| black_box(host.send(request(token))))
        });
    });

    let token = keyring.mint("RS256", "rsa", 3);
    let mut host = jwt_host(&jwks_text, Some(100), std::slice::from_ref(&token));
    group.bench_function("RS256_cache_hit", |b| {
        b.iter(|| black_box(host.send(request(&token))));
    });
    group.finish();
}

criterion_group!(benches, native, lifecycle);
criterion_main!(benches);
