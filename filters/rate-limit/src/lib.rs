//! rate-limit: per-client token buckets, exact across all Envoy worker VMs,
//! with standard rate-limit response headers.
//!
//! Config (JSON; the crate README is the reference): `rules`, each with a
//! `match` (`prefix`, `path`, `method`), a `key` (the first present of a
//! header, cookie, query parameter, `client_ip` or `path`; empty = one bucket
//! per rule) and a `token_bucket` with Envoy's `local_ratelimit` semantics;
//! `client_ip.xff_num_trusted_hops` as in Envoy's connection manager;
//! `response` (status, body, header format `draft`/`x-ratelimit`/`none`,
//! `retry_after`); `shadow_mode`; `max_keys` slots per rule; `on_contention`.
//! A request is admitted only if every applicable rule has a token, and a
//! denied request takes no token from any rule. A rule with `global` is
//! decided by a rate-limit service over Envoy's RLS gRPC protocol instead
//! ([`global`]), after the local rules admit the request, with
//! `failure_mode` and an optional local fallback bucket for when the
//! service fails.
//!
//! Counters, per rule: `rate_limit.<rule>.allowed`, `.limited`,
//! `.shadow_limited`, `.contention`, `.slot_shared`; global rules also
//! `.global_ok`, `.global_over_limit`, `.global_error`, `.global_fallback`.
//!
//! Layout: [`config`] validates, [`rules`] matches requests and hashes keys
//! into slots, [`global`] builds and reads the service calls, [`bucket`] is
//! the token-bucket arithmetic, [`limiter`] makes the two-phase CAS decision
//! over shared data, [`headers`] formats the answers, [`stats`] names the
//! counters, and `filter` is the proxy-wasm glue.
#![forbid(unsafe_code)]

pub mod bucket;
pub mod config;
pub mod global;
pub mod headers;
pub mod limiter;
pub mod rules;
pub mod stats;

#[cfg(target_arch = "wasm32")]
pub mod filter;

#[cfg(feature = "entry")]
filter_common::filter_entry!("rate-limit", |_| crate::filter::RateLimitRoot::default());
