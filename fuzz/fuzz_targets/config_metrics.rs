//! metrics' config parser, then the labeler and registry it builds, fed a
//! few typical requests.
//!
//! Findings besides a panic: an error message not prefixed with the filter
//! name, and more series than `Config::series_bound` promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::fakes::Sink;
use metrics::labels::{Labeler, RequestFacts};
use metrics::registry::{Observation, Registry};

/// `(method, path, version header, status)` of a typical request.
type Typical = (&'static [u8], &'static [u8], &'static [u8], &'static [u8]);

fuzz_target!(|data: &[u8]| {
    let config = match metrics::config::validate(data) {
        Ok(config) => config,
        Err(e) => {
            assert!(e.to_string().starts_with("metrics: "), "{e}");
            return;
        }
    };
    let bound = config.series_bound();
    let mut labeler = Labeler::new(&config);
    let mut registry = Registry::new(&config.prefix);
    let mut sink = Sink::default();
    let requests: [Typical; 3] = [
        (b"GET", b"/api/orders?id=1", b"v1", b"200"),
        (b"BREW", b"/", b"v2\xff", b"418"),
        (b"POST", b"", b"", b"999"),
    ];
    for (method, path, version, status) in requests {
        let labels = labeler.request_labels(&RequestFacts {
            method: Some(method),
            path: Some(path),
            version: Some(version),
        });
        let gauge = registry.request_started(&labeler, &mut sink, labels);
        let key = labeler.key(labels, Some(status));
        registry.record(
            &labeler,
            &mut sink,
            &Observation {
                key,
                duration_ms: 7,
                request_bytes: 0,
                response_bytes: 2,
            },
        );
        Registry::request_ended(&mut sink, gauge);
    }
    assert!(registry.series_count() <= bound, "series past the bound");
});
