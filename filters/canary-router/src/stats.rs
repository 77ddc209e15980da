//! The filter's counters as one const list, like Envoy's `stats.h`, and the
//! per-version counter names.

/// Requests whose version came from a rule.
pub const RULE_MATCHES: &str = "canary_router.rule_matches";

/// Prefix of the per-version request counter: `canary_router.requests_<version>`.
pub const REQUESTS_PREFIX: &str = "canary_router.requests_";

/// Every fixed-name counter. Per-version counters are named by [`requests`].
pub const COUNTERS: [&str; 1] = [RULE_MATCHES];

/// The request counter of one version; version names are validated to
/// `[A-Za-z0-9._-]`, so the name needs no escaping.
///
/// # Examples
/// ```
/// assert_eq!(canary_router::stats::requests("v2"), "canary_router.requests_v2");
/// ```
#[must_use]
pub fn requests(version: &str) -> String {
    format!("{REQUESTS_PREFIX}{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_share_the_filter_prefix() {
        for name in COUNTERS.iter().copied().chain([REQUESTS_PREFIX]) {
            assert!(name.starts_with("canary_router."), "{name}");
        }
        assert_eq!(requests("canary"), "canary_router.requests_canary");
    }
}
