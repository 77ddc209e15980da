//! metrics filter: labelled, Istio-style request metrics that show up in
//! Prometheus with real labels, at bounded cardinality.
//!
//! proxy-wasm metrics have names only. The filter therefore encodes each
//! label set into the stat name the way Istio's stats plugin did
//! (`method=.=GET;.;response_code=.=200;.;mesh_requests_total`), and Envoy's
//! `stats_tags` regexes (shipped in `manifests/envoy/metrics-stats-tags.yaml`,
//! Istio equivalent in `manifests/istio/metrics-proxyconfig.yaml`) turn the
//! fields back into tags, so `/stats/prometheus` shows
//! `mesh_requests_total{method="GET",response_code="200"} 1`.
//!
//! Metrics, for `prefix` `mesh`: `mesh_requests_total` (counter),
//! `mesh_request_duration_milliseconds`, `mesh_request_bytes`,
//! `mesh_response_bytes` (histograms), `mesh_requests_active` (gauge,
//! request-side labels only). See [`stats::FAMILIES`].
//!
//! Config ([`config::RawConfig`]): `prefix`, `dimensions` (`method`,
//! `response_code`, `response_code_class`, `version`, `route`),
//! `histogram_buckets_ms`, `max_label_value_len`. Every label value comes from
//! a finite table ([`labels`]), so the series count never exceeds
//! [`config::Config::series_bound`]: unknown methods become `OTHER`, routes
//! come only from configured prefixes, and `version` header values are either
//! an allow-list or capped per VM.
//!
//! Timing runs from request headers to the end of the stream (`on_log`) on the
//! host clock. Local replies are counted with their status.
#![forbid(unsafe_code)]

pub mod config;
pub mod filter;
pub mod labels;
pub mod registry;
pub mod stats;

#[cfg(feature = "entry")]
filter_common::filter_entry!("metrics", |_| crate::filter::MetricsRoot::default());
