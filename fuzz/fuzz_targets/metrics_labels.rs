//! metrics' label derivation and series registry over requests in the text
//! form ([`mesh_wasm_fuzz::text`]): `:method`, `:path`, the version header
//! and the response `:status` (`< :status: 503`), with the README's config
//! (capped versions) and an allow-list variant.
//!
//! Findings besides a panic: more series than `Config::series_bound`, more
//! version values than the cap, and a label value a client could use to
//! break the stat-name encoding or the Prometheus output.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::fakes::Sink;
use mesh_wasm_fuzz::{fixtures, text};
use metrics::labels::{is_label_value, Labeler, RequestFacts};
use metrics::registry::{Observation, Registry};

const ALLOW_LIST: &str = r#"{"prefix": "edge", "dimensions": {"response_code": false,
    "response_code_class": true,
    "version": {"header": "x-canary-version", "values": ["v1", "v2"]},
    "route": {"prefixes": ["/", "/api/"]}}, "max_label_value_len": 8}"#;

fuzz_target!(|data: &[u8]| {
    let requests = text::parse(data);
    for json in [fixtures::METRICS_CONFIG, ALLOW_LIST] {
        let config = metrics::config::validate(json.as_bytes()).expect("fixture config is valid");
        let mut labeler = Labeler::new(&config);
        let mut registry = Registry::new(&config.prefix);
        let mut sink = Sink::default();
        let mut versions = HashSet::new();
        for request in &requests {
            let header = labeler.version_header().map(str::to_owned);
            let labels = labeler.request_labels(&RequestFacts {
                method: request.header(":method"),
                path: request.header(":path"),
                version: header.as_deref().and_then(|h| request.header(h)),
            });
            let gauge = registry.request_started(&labeler, &mut sink, labels);
            let key = labeler.key(labels, request.response_header(":status"));
            for (label, value) in labeler.pairs(&key) {
                assert!(
                    is_label_value(value.as_bytes()) && value.len() <= config.max_label_value_len,
                    "label {label}={value:?}"
                );
                if label == "version" {
                    versions.insert(value);
                }
            }
            let _ = labeler.request_pairs(&key.request());
            registry.record(
                &labeler,
                &mut sink,
                &Observation {
                    key,
                    duration_ms: request.directive_number("ms").unwrap_or(3),
                    request_bytes: 0,
                    response_bytes: u64::MAX,
                },
            );
            Registry::request_ended(&mut sink, gauge);
        }
        assert!(registry.series_count() <= config.series_bound());
        // The default plus at most 16 admitted values (README config's cap).
        assert!(versions.len() <= 17, "{versions:?}");
    }
});
