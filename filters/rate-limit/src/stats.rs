//! The filter's counters, as one const list (like Envoy's `stats.h`). Every
//! rule gets each counter as `rate_limit.<rule>.<suffix>`.

use crate::limiter::RuleOutcome;

/// A token was taken: the rule admitted the request.
pub const ALLOWED: &str = "allowed";
/// The rule had no token and the request was denied.
pub const LIMITED: &str = "limited";
/// The rule had no token; shadow mode let the request through.
pub const SHADOW_LIMITED: &str = "shadow_limited";
/// Compare-and-swap retries ran out; `on_contention` decided.
pub const CONTENTION: &str = "contention";
/// The request's key shared a slot with another key's partly used bucket
/// (raise `max_keys` if this grows).
pub const SLOT_SHARED: &str = "slot_shared";

/// Every per-rule counter suffix, in definition order.
pub const COUNTERS: [&str; 5] = [ALLOWED, LIMITED, SHADOW_LIMITED, CONTENTION, SLOT_SHARED];

/// The full counter name.
///
/// # Examples
/// ```
/// assert_eq!(rate_limit::stats::counter_name("per_user", "limited"), "rate_limit.per_user.limited");
/// ```
pub fn counter_name(rule: &str, suffix: &str) -> String {
    format!("rate_limit.{rule}.{suffix}")
}

/// Position in [`COUNTERS`] of the counter an outcome bumps, if any.
pub fn outcome_counter(outcome: RuleOutcome) -> Option<usize> {
    match outcome {
        RuleOutcome::Allowed => Some(0),
        RuleOutcome::Limited => Some(1),
        RuleOutcome::ShadowLimited => Some(2),
        RuleOutcome::Contention => Some(3),
        RuleOutcome::NotCharged => None,
    }
}

/// Position of [`SLOT_SHARED`] in [`COUNTERS`].
pub const SLOT_SHARED_INDEX: usize = 4;

/// Global rules: the rate-limit service answered OK.
pub const GLOBAL_OK: &str = "global_ok";
/// Global rules: the service answered OVER_LIMIT (counted in shadow mode
/// too).
pub const GLOBAL_OVER_LIMIT: &str = "global_over_limit";
/// Global rules: the service failed (timeout, gRPC error, garbage, unknown
/// cluster) and `failure_mode` decided.
pub const GLOBAL_ERROR: &str = "global_error";
/// Global rules: the service failed and the rule's local fallback bucket
/// decided (its own `allowed`/`limited` counters say how).
pub const GLOBAL_FALLBACK: &str = "global_fallback";

/// Every global-rule counter suffix, in definition order.
pub const GLOBAL_COUNTERS: [&str; 4] =
    [GLOBAL_OK, GLOBAL_OVER_LIMIT, GLOBAL_ERROR, GLOBAL_FALLBACK];

/// Position in [`GLOBAL_COUNTERS`] of the counter a global rule's answer
/// bumps.
pub fn global_counter(resolution: crate::global::RuleResolution) -> usize {
    use crate::global::RuleResolution;
    match resolution {
        RuleResolution::Ok => 0,
        RuleResolution::OverLimit => 1,
        RuleResolution::Error => 2,
        RuleResolution::Fallback => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_their_counter() {
        assert_eq!(
            COUNTERS[outcome_counter(RuleOutcome::Allowed).unwrap()],
            ALLOWED
        );
        assert_eq!(
            COUNTERS[outcome_counter(RuleOutcome::Limited).unwrap()],
            LIMITED
        );
        assert_eq!(
            COUNTERS[outcome_counter(RuleOutcome::ShadowLimited).unwrap()],
            SHADOW_LIMITED
        );
        assert_eq!(
            COUNTERS[outcome_counter(RuleOutcome::Contention).unwrap()],
            CONTENTION
        );
        assert_eq!(outcome_counter(RuleOutcome::NotCharged), None);
        assert_eq!(COUNTERS[SLOT_SHARED_INDEX], SLOT_SHARED);
    }
}
