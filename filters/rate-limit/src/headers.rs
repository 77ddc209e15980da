//! The rate-limit response headers, built from a [`Decision`]: the IETF
//! draft's `RateLimit-Policy` and `RateLimit`, Envoy's `X-RateLimit-*`, and
//! `Retry-After`.
//!
//! Draft syntax follows draft-ietf-httpapi-ratelimit-headers-10 (the
//! current httpapi WG revision, 2025): both fields are Structured Field
//! lists with one item per policy, the policy name as an sf-string.
//! `RateLimit-Policy: "per_user";q=100;w=60` gives the quota `q` over the
//! window `w` seconds; `RateLimit: "per_user";r=99;t=60` gives the
//! remaining quota `r` and the seconds `t` until it is replenished. For a
//! token bucket, `q` is `max_tokens` and `w` is the time a drained bucket
//! takes to refill (`ceil(max_tokens / tokens_per_fill) * fill_interval`);
//! `w` is left out when that is not a whole number of seconds (the draft
//! makes it optional and allows only integers). `t` is the time to the
//! bucket's next fill, rounded up to whole seconds.

use crate::bucket::{ceil_secs, BucketSpec};
use crate::config::HeaderFormat;
use crate::global::ServiceQuota;
use crate::limiter::{Decision, RuleOutcome};

/// `RateLimit-Policy` (names are lower-case, as in HTTP/2 header maps).
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// `RateLimit`.
pub const RATELIMIT: &str = "ratelimit";
/// Envoy's `X-RateLimit-Limit`: the bucket size.
pub const X_RATELIMIT_LIMIT: &str = "x-ratelimit-limit";
/// Envoy's `X-RateLimit-Remaining`: tokens left.
pub const X_RATELIMIT_REMAINING: &str = "x-ratelimit-remaining";
/// Envoy's `X-RateLimit-Reset`: seconds to the next fill.
pub const X_RATELIMIT_RESET: &str = "x-ratelimit-reset";
/// `Retry-After` (RFC 9110 §10.2.3), delay-seconds form.
pub const RETRY_AFTER: &str = "retry-after";

/// What the headers need to know about one rule, built once per config.
#[derive(Debug, Clone)]
pub struct RuleMeta {
    /// Rule name (validated `[A-Za-z0-9_-]`, so it needs no sf-string escaping).
    pub name: String,
    /// The bucket.
    pub spec: BucketSpec,
    /// This rule's `RateLimit-Policy` list item, precomputed.
    pub policy_item: String,
}

impl RuleMeta {
    /// The meta of rule `name` with bucket `spec`.
    ///
    /// # Examples
    /// ```
    /// use rate_limit::bucket::BucketSpec;
    /// let spec = BucketSpec { max_tokens: 100, tokens_per_fill: 10, interval_ns: 1_000_000_000 };
    /// let meta = rate_limit::headers::RuleMeta::new("api", spec);
    /// assert_eq!(meta.policy_item, r#""api";q=100;w=10"#);
    /// ```
    pub fn new(name: &str, spec: BucketSpec) -> Self {
        let fills = u64::from(spec.max_tokens.div_ceil(spec.tokens_per_fill.max(1)));
        let window_ns = fills.saturating_mul(spec.interval_ns);
        let mut policy_item = String::new();
        let window_secs = (window_ns % 1_000_000_000 == 0).then_some(window_ns / 1_000_000_000);
        push_policy_item(&mut policy_item, name, spec.max_tokens, window_secs);
        Self {
            name: name.to_owned(),
            spec,
            policy_item,
        }
    }
}

/// One policy in the headers: a local rule's bucket, or the limit a
/// rate-limit service reported for a global rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota<'a> {
    /// Rule name.
    pub name: &'a str,
    /// The `RateLimit-Policy` list item.
    pub policy: PolicyItem<'a>,
    /// The limit (`X-RateLimit-Limit`).
    pub limit: u32,
    /// What is left.
    pub remaining: u32,
    /// Nanoseconds until it is replenished.
    pub reset_ns: u64,
    /// This policy denied (or would have, in shadow mode) the request.
    pub denying: bool,
}

/// A `RateLimit-Policy` list item: a local rule's, built with the config,
/// or the numbers a rate-limit service reported, written out only into the
/// header (no string of its own per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyItem<'a> {
    /// The item as written.
    Text(&'a str),
    /// `"name";q=limit;w=window` (`w` left out when unknown).
    Limit {
        /// `q`.
        limit: u32,
        /// `w`.
        window_secs: Option<u64>,
    },
}

impl PolicyItem<'_> {
    fn write(&self, name: &str, out: &mut String) {
        match *self {
            PolicyItem::Text(text) => out.push_str(text),
            PolicyItem::Limit { limit, window_secs } => {
                push_policy_item(out, name, limit, window_secs);
            }
        }
    }
}

/// The quotas of a local decision, in hit order.
pub fn local_quotas<'a>(
    rules: &'a [RuleMeta],
    decision: &'a Decision,
) -> impl Iterator<Item = Quota<'a>> + 'a {
    decision.reports.iter().filter_map(|report| {
        let meta = rules.get(usize::from(report.rule))?;
        Some(Quota {
            name: &meta.name,
            policy: PolicyItem::Text(&meta.policy_item),
            limit: meta.spec.max_tokens,
            remaining: report.remaining,
            reset_ns: report.reset_ns,
            denying: matches!(
                report.outcome,
                RuleOutcome::Limited | RuleOutcome::ShadowLimited | RuleOutcome::Contention
            ),
        })
    })
}

/// The quota of global rule `name` from what its service reported: `q` is
/// `requests_per_unit` and `w` the unit, left out when the unit is unknown.
pub fn service_quota<'a>(name: &'a str, quota: &ServiceQuota) -> Quota<'a> {
    Quota {
        name,
        policy: PolicyItem::Limit {
            limit: quota.limit,
            window_secs: quota.window_secs,
        },
        limit: quota.limit,
        remaining: quota.remaining,
        reset_ns: quota.reset_ns,
        denying: quota.over_limit,
    }
}

/// Appends `"name";q=limit` and, when known, `;w=window`.
fn push_policy_item(out: &mut String, name: &str, limit: u32, window_secs: Option<u64>) {
    out.push('"');
    out.push_str(name);
    out.push_str("\";q=");
    push_decimal(out, limit);
    if let Some(window) = window_secs {
        out.push_str(";w=");
        push_decimal(out, window);
    }
}

/// Appends `n` in decimal. These headers are built on every request, and
/// `core::fmt` costs several times more than this in a Wasm VM (measured in
/// Envoy under callgrind; see the rate-limit README).
fn push_decimal(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

fn decimal(n: impl itoa::Integer) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

/// Appends the `format` headers for `decision` to `out`. Rules are listed in
/// hit (config) order. `Retry-After` is not included; see [`retry_after`].
pub fn rate_limit_headers(
    format: HeaderFormat,
    rules: &[RuleMeta],
    decision: &Decision,
    out: &mut Vec<(&'static str, String)>,
) {
    if format == HeaderFormat::None {
        return;
    }
    format_quotas(format, local_quotas(rules, decision), out);
}

/// Appends the `format` headers for `quotas` (in the order given) to `out`.
/// An iterator rather than a list, walked once: no list is allocated per
/// request, and a service's quota is worked out once.
pub fn format_quotas<'q>(
    format: HeaderFormat,
    quotas: impl Iterator<Item = Quota<'q>>,
    out: &mut Vec<(&'static str, String)>,
) {
    match format {
        HeaderFormat::None => {}
        HeaderFormat::Draft => {
            let mut quotas = quotas.peekable();
            if quotas.peek().is_none() {
                return;
            }
            // Room for one or two policies without growing.
            let mut policy = String::with_capacity(HEADER_CAPACITY);
            let mut state = String::with_capacity(HEADER_CAPACITY);
            for quota in quotas {
                if !policy.is_empty() {
                    policy.push_str(", ");
                    state.push_str(", ");
                }
                quota.policy.write(quota.name, &mut policy);
                state.push('"');
                state.push_str(quota.name);
                state.push_str("\";r=");
                push_decimal(&mut state, quota.remaining);
                state.push_str(";t=");
                push_decimal(&mut state, ceil_secs(quota.reset_ns));
            }
            if !policy.is_empty() {
                out.push((RATELIMIT_POLICY, policy));
                out.push((RATELIMIT, state));
            }
        }
        HeaderFormat::XRateLimit => {
            // One set of numbers: the policy closest to (or deepest in) its
            // limit, the one whose reset matters most on a tie.
            if let Some(quota) = quotas.min_by_key(most_restrictive) {
                out.push((X_RATELIMIT_LIMIT, decimal(quota.limit)));
                out.push((X_RATELIMIT_REMAINING, decimal(quota.remaining)));
                out.push((X_RATELIMIT_RESET, decimal(ceil_secs(quota.reset_ns))));
            }
        }
    }
}

/// Initial room in each draft header: a policy item is about 30 bytes
/// plus its name.
const HEADER_CAPACITY: usize = 64;

/// Sort key: denying policies first, then fewest left, then the longest
/// wait.
fn most_restrictive(quota: &Quota<'_>) -> (bool, u32, std::cmp::Reverse<u64>) {
    (
        !quota.denying,
        quota.remaining,
        std::cmp::Reverse(quota.reset_ns),
    )
}

/// The `Retry-After` value for a denied request: whole seconds until every
/// rule that denied it has a token again, at least 1.
pub fn retry_after(decision: &Decision) -> String {
    decimal(ceil_secs(decision.retry_after_ns()).max(1))
}

/// The `Retry-After` value for a request denied by rate-limit services:
/// whole seconds until every denying policy resets, at least 1.
pub fn retry_after_quotas<'q>(quotas: impl Iterator<Item = Quota<'q>>) -> String {
    let reset_ns = quotas
        .filter(|q| q.denying)
        .map(|q| q.reset_ns)
        .max()
        .unwrap_or(0);
    decimal(ceil_secs(reset_ns).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::{RuleReport, Verdict};

    const SEC: u64 = 1_000_000_000;

    fn metas() -> Vec<RuleMeta> {
        vec![
            RuleMeta::new(
                "per_user",
                BucketSpec {
                    max_tokens: 100,
                    tokens_per_fill: 100,
                    interval_ns: 60 * SEC,
                },
            ),
            RuleMeta::new(
                "everyone",
                BucketSpec {
                    max_tokens: 1000,
                    tokens_per_fill: 1000,
                    interval_ns: SEC,
                },
            ),
        ]
    }

    fn report(rule: u16, outcome: RuleOutcome, remaining: u32, reset_ns: u64) -> RuleReport {
        RuleReport {
            rule,
            outcome,
            collision: false,
            remaining,
            reset_ns,
        }
    }

    fn headers(format: HeaderFormat, decision: &Decision) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        rate_limit_headers(format, &metas(), decision, &mut out);
        out
    }

    fn admitted() -> Decision {
        Decision {
            verdict: Verdict::Admit,
            reports: vec![
                report(0, RuleOutcome::Allowed, 99, 60 * SEC),
                report(1, RuleOutcome::Allowed, 999, SEC / 2),
            ],
        }
    }

    fn denied() -> Decision {
        Decision {
            verdict: Verdict::Deny,
            reports: vec![
                report(0, RuleOutcome::Limited, 0, 42 * SEC + 1),
                report(1, RuleOutcome::NotCharged, 999, SEC / 2),
            ],
        }
    }

    #[test]
    fn draft_headers_list_every_applicable_rule() {
        assert_eq!(
            headers(HeaderFormat::Draft, &admitted()),
            [
                (
                    RATELIMIT_POLICY,
                    r#""per_user";q=100;w=60, "everyone";q=1000;w=1"#.to_owned()
                ),
                (
                    RATELIMIT,
                    r#""per_user";r=99;t=60, "everyone";r=999;t=1"#.to_owned()
                ),
            ]
        );
        assert_eq!(
            headers(HeaderFormat::Draft, &denied())[1].1,
            r#""per_user";r=0;t=43, "everyone";r=999;t=1"#
        );
    }

    #[test]
    fn draft_window_is_the_time_to_refill_a_drained_bucket() {
        let spec = |max, per_fill, interval_ns| BucketSpec {
            max_tokens: max,
            tokens_per_fill: per_fill,
            interval_ns,
        };
        assert_eq!(
            RuleMeta::new("a", spec(10, 3, SEC)).policy_item,
            r#""a";q=10;w=4"#
        );
        assert_eq!(
            RuleMeta::new("a", spec(5, 5, SEC / 2)).policy_item,
            r#""a";q=5"#
        );
        assert_eq!(
            RuleMeta::new("a", spec(4, 2, SEC / 2)).policy_item,
            r#""a";q=4;w=1"#
        );
    }

    #[test]
    fn x_ratelimit_headers_describe_the_most_restrictive_rule() {
        assert_eq!(
            headers(HeaderFormat::XRateLimit, &admitted()),
            [
                (X_RATELIMIT_LIMIT, "100".to_owned()),
                (X_RATELIMIT_REMAINING, "99".to_owned()),
                (X_RATELIMIT_RESET, "60".to_owned()),
            ]
        );
        assert_eq!(
            headers(HeaderFormat::XRateLimit, &denied()),
            [
                (X_RATELIMIT_LIMIT, "100".to_owned()),
                (X_RATELIMIT_REMAINING, "0".to_owned()),
                (X_RATELIMIT_RESET, "43".to_owned()),
            ]
        );
    }

    #[test]
    fn none_adds_nothing_and_no_hits_add_nothing() {
        assert!(headers(HeaderFormat::None, &denied()).is_empty());
        assert!(headers(HeaderFormat::Draft, &Decision::default()).is_empty());
        assert!(headers(HeaderFormat::XRateLimit, &Decision::default()).is_empty());
    }

    #[test]
    fn retry_after_waits_for_every_denying_rule() {
        let mut decision = denied();
        assert_eq!(retry_after(&decision), "43");
        decision
            .reports
            .push(report(1, RuleOutcome::Limited, 0, 90 * SEC));
        assert_eq!(retry_after(&decision), "90");
        decision.reports = vec![report(0, RuleOutcome::Limited, 0, 1)];
        assert_eq!(retry_after(&decision), "1");
    }

    #[test]
    fn shadow_limited_answers_report_zero_remaining() {
        let decision = Decision {
            verdict: Verdict::Admit,
            reports: vec![
                report(0, RuleOutcome::ShadowLimited, 0, 10 * SEC),
                report(1, RuleOutcome::Allowed, 5, SEC),
            ],
        };
        assert_eq!(
            headers(HeaderFormat::XRateLimit, &decision)[1],
            (X_RATELIMIT_REMAINING, "0".to_owned())
        );
    }
}
