//! jwt-auth's request path without the host: token extraction (headers,
//! query parameters, cookies), route matching, the requirement tree,
//! verification with the fixture config's local keys, claim checks, claim
//! headers and the failure reply's `WWW-Authenticate`. Tokens are either
//! raw bytes or minted with fuzzed claims ([`mesh_wasm_fuzz::mint`]), so
//! the code after a good signature is fuzzed too.
//!
//! Findings besides a panic: a header the filter would add (or a
//! `WWW-Authenticate` value) that is not a valid header value, and a
//! request allowed on a route that requires a token although no token in
//! it verifies.
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use jwt_auth::auth::{Outcome, Plan};
use jwt_auth::config::JwksSource;
use jwt_auth::extract::Request;
use jwt_auth::jwks::Jwks;
use jwt_auth::status;
use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::fakes::JwtEnv;
use mesh_wasm_fuzz::fixtures;
use mesh_wasm_fuzz::mint::TokenSpec;

#[derive(Debug, Arbitrary)]
enum Token {
    Minted(Box<TokenSpec>),
    Rfc(u8),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Place {
    Bearer,
    BearerLowerCase,
    XJwt,
    Query,
    AccessToken,
    Cookie,
}

#[derive(Debug, Arbitrary)]
enum Path {
    Root,
    Api,
    Admin,
    Public,
    Healthz,
    Partners,
    Both,
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    options: bool,
    path: Path,
    tokens: Vec<(Token, Place)>,
    headers: Vec<(String, Vec<u8>)>,
    rfc_clock: bool,
}

fn all_keys() -> &'static Jwks {
    static KEYS: OnceLock<Jwks> = OnceLock::new();
    KEYS.get_or_init(|| {
        jwt_auth::jwks::parse(fixtures::all_keys_jwks().as_bytes()).expect("fixture keys")
    })
}

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        Plan::new(
            jwt_auth::config::validate(fixtures::jwt_auth_config().as_bytes())
                .expect("fixture config is valid"),
        )
    })
}

fuzz_target!(|input: Input| {
    let plan = plan();
    let mut path = match &input.path {
        Path::Root => b"/".to_vec(),
        Path::Api => b"/api/orders?id=7".to_vec(),
        Path::Admin => b"/admin/users".to_vec(),
        Path::Public => b"/public/x".to_vec(),
        Path::Healthz => b"/healthz".to_vec(),
        Path::Partners => b"/partners/acme".to_vec(),
        Path::Both => b"/BOTH".to_vec(),
        Path::Raw(raw) => raw.clone(),
    };
    let mut headers: Vec<(String, Vec<u8>)> = input
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    let jwks = all_keys();
    let mut verifiable = false;
    for (token, place) in input.tokens.iter().take(4) {
        let token = match token {
            Token::Minted(spec) => spec.mint().into_bytes(),
            Token::Rfc(i) => fixtures::RFC_TOKENS[usize::from(*i) % 3]
                .as_bytes()
                .to_vec(),
            Token::Raw(raw) => raw.clone(),
        };
        verifiable |= jwt_auth::jwt::parse(&token, usize::MAX)
            .is_ok_and(|jwt| jwt_auth::crypto::verify_jwt(&jwt, jwks).is_ok());
        let mut header = |name: &str, prefix: &[u8]| {
            headers.push((name.to_owned(), [prefix, &token].concat()));
        };
        match place {
            Place::Bearer => header("authorization", b"Bearer "),
            Place::BearerLowerCase => header("authorization", b"bearer "),
            Place::XJwt => header("x-jwt", b""),
            Place::Cookie => header("cookie", b"theme=dark; session-jwt="),
            Place::Query | Place::AccessToken => {
                let name: &[u8] = if matches!(place, Place::Query) {
                    b"jwt"
                } else {
                    b"access_token"
                };
                let joint: &[u8] = if path.contains(&b'?') { b"&" } else { b"?" };
                path = [&path[..], joint, name, b"=", &token].concat();
            }
        }
    }
    let method: &[u8] = if input.options { b"OPTIONS" } else { b"GET" };
    let request = Request {
        method,
        path: &path,
        headers: &headers,
    };
    let keys = plan
        .config
        .providers
        .iter()
        .map(|p| match &p.jwks {
            JwksSource::Local(jwks) => Some(jwks),
            JwksSource::Remote(_) => None,
        })
        .collect();
    let mut env = JwtEnv {
        keys,
        cache: HashSet::new(),
        now: if input.rfc_clock {
            fixtures::RFC_NOW
        } else {
            1_800_000_000
        },
    };
    // Twice: the second run answers from the verified-token cache.
    let first = plan.evaluate(&request, &mut env);
    let second = plan.evaluate(&request, &mut env);
    assert_eq!(first, second, "the cache changed the decision");
    match first {
        Outcome::Allow(mutations) => {
            let needs_token = matches!(
                input.path,
                Path::Root | Path::Api | Path::Admin | Path::Partners | Path::Both
            );
            assert!(
                verifiable || !needs_token || input.options,
                "allowed without a token that verifies"
            );
            for (name, value) in &mutations.add {
                filter_common::validate_header_name(name).expect("added header name");
                filter_common::validate_header_value(value).expect("added header value");
            }
            let mut after = headers.clone();
            mutations.apply(&mut after);
        }
        Outcome::Deny(status) => {
            let realm = status::original_uri(
                request.header("x-forwarded-proto").unwrap_or(b"http"),
                request.header(":authority").unwrap_or(b"example.com"),
                &path,
            );
            let value = status::www_authenticate(&realm, status);
            filter_common::validate_header_value(&value).expect("WWW-Authenticate value");
            let _ = (status.message(), status.http_code());
        }
        Outcome::Wait => panic!("local key sets never make a request wait"),
    }
});
