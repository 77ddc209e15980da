//! canary-router's request matcher and router with the README's complete
//! config (plus a weight-0 version reached only by a rule), over requests
//! in the text form ([`mesh_wasm_fuzz::text`]). An `@regex` directive also
//! compiles a pattern as config would and matches it against every value.
//!
//! Findings besides a panic: a version outside `split`, a rule decision
//! whose rule does not match, a hash decision that changes with the random
//! number, and a split decision onto a version without weight.
#![no_main]

use std::sync::OnceLock;

use canary_router::config::Config;
use canary_router::matcher::{all_match, compile_full_match, HeaderList};
use canary_router::router::{decide, Reason};
use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::{fixtures, text};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        canary_router::config::validate(fixtures::CANARY_ROUTER_CONFIG.as_bytes())
            .expect("the fixture config is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let config = config();
    for request in text::parse(data) {
        let mut view = HeaderList {
            pairs: request.headers.clone(),
        };
        let decision = decide(config, &mut view, || 0);
        assert!(decision.version < config.versions.len());
        match decision.reason {
            Reason::Rule(index) => {
                let rule = &config.rules[index];
                assert_eq!(rule.version, decision.version);
                assert!(all_match(&rule.conditions, &mut view));
            }
            Reason::Hash => {
                let again = decide(config, &mut view, || u64::MAX);
                assert_eq!(again.version, decision.version, "hash decisions are sticky");
                assert!(config.split.is_live(decision.version));
            }
            Reason::Cookie | Reason::Random => {
                assert!(config.split.is_live(decision.version));
            }
        }
        if let Some(pattern) = request.directive("regex") {
            if let Ok(regex) = compile_full_match(&String::from_utf8_lossy(pattern)) {
                for (_, value) in &request.headers {
                    let _ = regex.is_match(value);
                }
            }
        }
    }
});
