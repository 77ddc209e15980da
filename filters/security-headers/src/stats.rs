//! The filter's counters, as one const list (like Envoy's `stats.h`).

/// Responses whose headers the filter processed (upstream and local replies).
pub const RESPONSES: &str = "security_headers.responses";

/// Every counter the filter defines, in definition order.
pub const COUNTERS: &[&str] = &[RESPONSES];
