//! canary-router's config parser, then one routing decision for an empty
//! and a typical request.
//!
//! Findings besides a panic: an error message not prefixed with the filter
//! name, and a decision naming a version outside `split`.
#![no_main]

use canary_router::matcher::HeaderList;
use canary_router::router::decide;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = match canary_router::config::validate(data) {
        Ok(config) => config,
        Err(e) => {
            assert!(e.to_string().starts_with("canary-router: "), "{e}");
            return;
        }
    };
    let _ = config.reads_cookies();
    let typical = HeaderList::new([
        (":path", "/api?version=stable&uid=42"),
        ("x-canary", "always"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        ),
        ("cookie", "session=abc; canary=true"),
        ("cookie", "canary-version=v2"),
    ]);
    for (mut request, random) in [(HeaderList::default(), 0), (typical, u64::MAX)] {
        let decision = decide(&config, &mut request, || random);
        assert!(decision.version < config.versions.len());
        if let Some(sticky) = &config.sticky_cookie {
            assert!(sticky.set_cookie.get(decision.version).is_some());
        }
    }
});
