//! jwt-auth's config parser (jwt_authn's JSON, local key sets parsed with
//! it), then the evaluation plan it builds, deciding an empty and a
//! typical request.
//!
//! Finding besides a panic: an error message not prefixed with the filter
//! name.
#![no_main]

use std::collections::HashSet;

use jwt_auth::auth::Plan;
use jwt_auth::config::JwksSource;
use jwt_auth::extract::Request;
use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::fakes::JwtEnv;
use mesh_wasm_fuzz::fixtures;

fuzz_target!(|data: &[u8]| {
    let config = match jwt_auth::config::validate(data) {
        Ok(config) => config,
        Err(e) => {
            assert!(e.to_string().starts_with("jwt-auth: "), "{e}");
            return;
        }
    };
    let plan = Plan::new(config);
    let _ = plan.remote_providers().count();
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
        now: fixtures::RFC_NOW,
    };
    let headers = [
        (":authority".to_owned(), b"example.com".to_vec()),
        (
            "authorization".to_owned(),
            format!("Bearer {}", fixtures::RFC7515_A2_TOKEN).into_bytes(),
        ),
        ("cookie".to_owned(), b"session=abc".to_vec()),
    ];
    for (method, path, headers) in [
        (&b"GET"[..], &b"/"[..], &[][..]),
        (b"POST", b"/api/orders?access_token=x", &headers[..]),
    ] {
        let _ = plan.evaluate(
            &Request {
                method,
                path,
                headers,
            },
            &mut env,
        );
    }
});
