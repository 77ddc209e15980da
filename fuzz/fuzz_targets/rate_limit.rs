//! rate-limit's rule matching, key extraction (headers, cookie, query
//! parameter, client IP from X-Forwarded-For and the peer, path) and
//! limiter over a sequence of requests in the text form
//! ([`mesh_wasm_fuzz::text`]), with the README's config (small `max_keys`
//! so keys collide). Directives: `@advance: <ms>` moves the clock,
//! `@now: <ns>` sets it (even backwards), `@peer: <addr>` is
//! `source.address`, `@garbage: <bytes>` makes shared data hand back those
//! bytes for every existing key (another plugin writing there).
//!
//! Findings besides a panic: a report per hit missing, more tokens left
//! than the bucket holds, a denial no rule asked for, and, while the clock
//! only moves forward and shared data is intact, a keyless 2-token bucket
//! admitting more than its arithmetic allows.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::fakes::MemStore;
use mesh_wasm_fuzz::{fixtures, text};
use rate_limit::bucket::BucketSpec;
use rate_limit::config::Config;
use rate_limit::headers::{rate_limit_headers, retry_after, RuleMeta};
use rate_limit::limiter::{Decision, Limiter, LocalLimiter, RuleOutcome, Verdict};
use rate_limit::rules::{Plan, RequestView};

const TINY: &str = r#"{"rules": [{"name": "tiny", "key": [],
    "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "1s"}}]}"#;

struct View<'a> {
    request: &'a text::TextRequest,
    hops: u32,
}

impl RequestView for View<'_> {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.request
            .header(name)
            .filter(|v| !v.is_empty())
            .map(<[u8]>::to_vec)
    }

    fn client_ip(&mut self) -> Option<IpAddr> {
        let xff = (self.hops > 0)
            .then(|| self.request.header("x-forwarded-for"))
            .flatten();
        let peer = self.request.directive("peer").unwrap_or(b"10.0.0.1:45000");
        filter_common::xff::client_address(xff, Some(peer), self.hops)
    }
}

struct Setup {
    config: Config,
    specs: Vec<BucketSpec>,
    plan: Plan,
    limiter: LocalLimiter<MemStore>,
    meta: Vec<RuleMeta>,
}

fn setup(json: &str) -> Setup {
    let config = rate_limit::config::validate(json.as_bytes()).expect("fixture config is valid");
    let specs: Vec<BucketSpec> = config
        .rules
        .iter()
        .map(|r| BucketSpec::from(r.bucket))
        .collect();
    let limiter = LocalLimiter::new(
        config
            .rules
            .iter()
            .zip(&specs)
            .map(|(r, s)| (r.name.clone(), *s)),
        config.shadow_mode,
        config.on_contention,
        MemStore::default(),
    );
    let meta = config
        .rules
        .iter()
        .zip(&specs)
        .map(|(r, s)| RuleMeta::new(&r.name, *s))
        .collect();
    Setup {
        plan: Plan::new(&config),
        config,
        specs,
        limiter,
        meta,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut main = setup(fixtures::RATE_LIMIT_CONFIG);
    let mut tiny = setup(TINY);
    let start: u64 = 1_767_225_600 * 1_000_000_000;
    let mut now = start;
    let mut orderly = true;
    let mut tiny_admitted = 0u64;
    let mut hits = Vec::new();
    let mut decision = Decision::default();
    for request in text::parse(data) {
        if let Some(ms) = request.directive_number("advance") {
            now = now.saturating_add(ms.saturating_mul(1_000_000));
        }
        if let Some(ns) = request.directive_number("now") {
            orderly &= ns >= now;
            now = ns;
        }
        if let Some(garbage) = request.directive("garbage") {
            orderly = false;
            main.limiter = LocalLimiter::new(
                main.config
                    .rules
                    .iter()
                    .zip(&main.specs)
                    .map(|(r, s)| (r.name.clone(), *s)),
                main.config.shadow_mode,
                main.config.on_contention,
                MemStore::corrupted(garbage.to_vec()),
            );
        }
        let path = request.header(":path");
        let method = request.header(":method");
        for setup in [&mut main, &mut tiny] {
            let mut view = View {
                request: &request,
                hops: setup.config.xff_num_trusted_hops,
            };
            hits.clear();
            setup.plan.hits(path, method, &mut view, &mut hits);
            setup.limiter.decide(&hits, now, &mut decision);
            assert_eq!(decision.reports.len(), hits.len());
            for report in &decision.reports {
                let spec = setup.specs[usize::from(report.rule)];
                assert!(report.remaining <= spec.max_tokens, "{report:?} {spec:?}");
            }
            if decision.verdict == Verdict::Deny {
                assert!(decision
                    .reports
                    .iter()
                    .any(|r| matches!(r.outcome, RuleOutcome::Limited | RuleOutcome::Contention)));
            }
            let mut out = Vec::new();
            rate_limit_headers(setup.config.headers, &setup.meta, &decision, &mut out);
            let _ = retry_after(&decision);
        }
        if decision.verdict == Verdict::Admit {
            tiny_admitted += 1;
        }
        if orderly {
            let fills = (now - start) / 1_000_000_000;
            assert!(
                tiny_admitted <= 2 + fills,
                "admitted {tiny_admitted} with 2 tokens and {fills} fills"
            );
        }
    }
});
