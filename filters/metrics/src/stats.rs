//! The metric families this filter defines, as one const list (like Envoy's
//! `stats.h`), and how their full names are built.

/// What kind of metric a family is; mirrors proxy-wasm's `MetricType` so the
/// core stays free of proxy-wasm imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Up-down gauge.
    Gauge,
    /// Histogram of recorded values.
    Histogram,
}

/// Which labels a family carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelScope {
    /// Every enabled dimension.
    All,
    /// Only request-side dimensions (`method`, `version`, `route`): the value
    /// is recorded before the response code exists.
    RequestOnly,
}

/// One metric family: `<prefix>_<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricFamily {
    /// Name after `<prefix>_`.
    pub suffix: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Which labels it carries.
    pub labels: LabelScope,
    /// One-line description (README, dashboard).
    pub help: &'static str,
}

/// Requests completed (counted at end of stream, local replies included).
pub const REQUESTS_TOTAL: MetricFamily = MetricFamily {
    suffix: "requests_total",
    kind: MetricKind::Counter,
    labels: LabelScope::All,
    help: "Requests completed, by label set",
};
/// Request headers to end of stream, in whole milliseconds rounded up.
pub const REQUEST_DURATION_MS: MetricFamily = MetricFamily {
    suffix: "request_duration_milliseconds",
    kind: MetricKind::Histogram,
    labels: LabelScope::All,
    help: "Time from request headers to end of stream, ms (rounded up)",
};
/// Request body bytes seen by the filter.
pub const REQUEST_BYTES: MetricFamily = MetricFamily {
    suffix: "request_bytes",
    kind: MetricKind::Histogram,
    labels: LabelScope::All,
    help: "Request body bytes",
};
/// Response body bytes seen by the filter.
pub const RESPONSE_BYTES: MetricFamily = MetricFamily {
    suffix: "response_bytes",
    kind: MetricKind::Histogram,
    labels: LabelScope::All,
    help: "Response body bytes",
};
/// Requests between request headers and end of stream.
pub const REQUESTS_ACTIVE: MetricFamily = MetricFamily {
    suffix: "requests_active",
    kind: MetricKind::Gauge,
    labels: LabelScope::RequestOnly,
    help: "Requests in flight (request-side labels only)",
};

/// Every family, in definition order.
pub const FAMILIES: [MetricFamily; 5] = [
    REQUESTS_TOTAL,
    REQUEST_DURATION_MS,
    REQUEST_BYTES,
    RESPONSE_BYTES,
    REQUESTS_ACTIVE,
];

/// `<prefix>_<suffix>`, the Prometheus metric name.
///
/// # Examples
/// ```
/// use metrics::stats::{metric_name, REQUESTS_TOTAL};
/// assert_eq!(metric_name("mesh", &REQUESTS_TOTAL), "mesh_requests_total");
/// ```
pub fn metric_name(prefix: &str, family: &MetricFamily) -> String {
    format!("{prefix}_{}", family.suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_are_distinct_and_prometheus_safe() {
        let names: std::collections::HashSet<_> = FAMILIES.iter().map(|f| f.suffix).collect();
        assert_eq!(names.len(), FAMILIES.len());
        for family in FAMILIES {
            assert!(family
                .suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
