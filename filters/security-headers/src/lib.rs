//! security-headers: adds OWASP-grade security headers to every response
//! (upstream answers and local replies alike) and strips headers that leak
//! the stack.
//!
//! Config (JSON, all optional; see the crate README for the reference):
//! `profile` picks the base set (`owasp`, the default; `helmet`; `api`;
//! `none`), `headers` adds, overrides (string or `{"value", "mode"}`) or
//! drops (`null`) headers, `mode` says whether an upstream's own header wins
//! (`if_absent`, the default) or ours does (`overwrite`), `remove` and
//! `remove_profile_defaults` strip leaky headers, `hsts` shapes HSTS and
//! keeps it to https requests, `csp` keeps the CSP to documents, switches it
//! to report-only and appends `report-uri`. Invalid or contradictory configs
//! are refused in `on_configure` with a message naming the field.
//!
//! Counter: `security_headers.responses`, one per response processed.
//!
//! Layout: [`config`] validates into a final rule list, [`profiles`] holds
//! the published header sets as data, [`harden`] is the pure merge, and
//! `filter` is the proxy-wasm glue (one header-map read and at most one
//! write per response).
#![forbid(unsafe_code)]

pub mod config;
pub mod harden;
pub mod profiles;
pub mod stats;

#[cfg(target_arch = "wasm32")]
pub mod filter;

#[cfg(feature = "entry")]
filter_common::filter_entry!("security-headers", |_| {
    crate::filter::SecurityHeadersRoot::default()
});
