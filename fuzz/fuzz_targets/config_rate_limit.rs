//! rate-limit's config parser, then the rule plan, the limiter and the
//! header metadata it builds, deciding one typical request.
//!
//! Finding besides a panic: an error message not prefixed with the filter
//! name.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::fakes::MemStore;
use rate_limit::bucket::BucketSpec;
use rate_limit::headers::{rate_limit_headers, retry_after, RuleMeta};
use rate_limit::limiter::{Decision, Limiter, LocalLimiter};
use rate_limit::rules::{Plan, RequestView};

struct Typical;

impl RequestView for Typical {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        match name {
            "x-jwt-sub" => Some(b"alice".to_vec()),
            "cookie" => Some(b"session=abc; theme=dark".to_vec()),
            _ => None,
        }
    }

    fn client_ip(&mut self) -> Option<IpAddr> {
        Some(IpAddr::from([203, 0, 113, 7]))
    }
}

fuzz_target!(|data: &[u8]| {
    let config = match rate_limit::config::validate(data) {
        Ok(config) => config,
        Err(e) => {
            assert!(e.to_string().starts_with("rate-limit: "), "{e}");
            return;
        }
    };
    let specs: Vec<BucketSpec> = config
        .rules
        .iter()
        .map(|r| BucketSpec::from(r.bucket))
        .collect();
    let plan = Plan::new(&config);
    let mut limiter = LocalLimiter::new(
        config
            .rules
            .iter()
            .zip(&specs)
            .map(|(r, s)| (r.name.clone(), *s)),
        config.shadow_mode,
        config.on_contention,
        MemStore::default(),
    );
    let meta: Vec<RuleMeta> = config
        .rules
        .iter()
        .zip(&specs)
        .map(|(r, s)| RuleMeta::new(&r.name, *s))
        .collect();
    let mut hits = Vec::new();
    plan.hits(
        Some(b"/api/x?api_key=k"),
        Some(b"POST"),
        &mut Typical,
        &mut hits,
    );
    let mut decision = Decision::default();
    for now in [0, 1, u64::MAX / 2, u64::MAX] {
        limiter.decide(&hits, now, &mut decision);
        let mut out = Vec::new();
        rate_limit_headers(config.headers, &meta, &decision, &mut out);
        let _ = retry_after(&decision);
    }
});
