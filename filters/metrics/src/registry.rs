//! The metric-id cache and the recording of one finished request, behind a
//! [`MetricSink`] trait so it runs natively against a fake host.
//!
//! proxy-wasm metrics have no labels, so each label set is its own metric,
//! named by [`crate::labels::encode_name`]. Defining one costs a host call and
//! a name build; the registry does it once per label set, lazily, and keeps
//! the ids in a `HashMap` keyed by the compact [`LabelKey`]. The map is
//! bounded because label keys are ([`crate::config::Config::series_bound`]).

use std::collections::HashMap;

use crate::labels::{encode_name, LabelKey, Labeler, RequestLabels};
use crate::stats::{
    metric_name, MetricFamily, MetricKind, REQUESTS_ACTIVE, REQUESTS_TOTAL, REQUEST_BYTES,
    REQUEST_DURATION_MS, RESPONSE_BYTES,
};

/// The host's metric calls. Failures are swallowed by the implementation: a
/// metric that cannot be recorded must not fail the request.
pub trait MetricSink {
    /// `proxy_define_metric`; `None` when the host refuses.
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32>;
    /// `proxy_increment_metric`.
    fn increment(&mut self, id: u32, delta: i64);
    /// `proxy_record_metric`.
    fn record(&mut self, id: u32, value: u64);
}

/// What one finished request contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Its full label set.
    pub key: LabelKey,
    /// Request headers to end of stream, whole ms rounded up.
    pub duration_ms: u64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
}

/// A duration in whole milliseconds, rounded up, so a histogram never reports
/// a request as faster than it was (Envoy's own `_ms` stats truncate; with
/// integer samples, truncation would put a 0.7 ms request in the 0.5 bucket).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use metrics::registry::millis_rounded_up;
/// assert_eq!(millis_rounded_up(Duration::from_micros(700)), 1);
/// assert_eq!(millis_rounded_up(Duration::from_millis(25)), 25);
/// assert_eq!(millis_rounded_up(Duration::ZERO), 0);
/// ```
pub fn millis_rounded_up(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Ids of the four per-label-set metrics; `None` where the host refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeriesIds {
    requests_total: Option<u32>,
    duration: Option<u32>,
    request_bytes: Option<u32>,
    response_bytes: Option<u32>,
}

/// Metric ids per label set, defined on first use.
#[derive(Debug, Clone)]
pub struct Registry {
    names: [String; 5],
    series: HashMap<LabelKey, SeriesIds>,
    active: HashMap<RequestLabels, Option<u32>>,
}

impl Registry {
    /// A registry for metrics named `<prefix>_...`.
    pub fn new(prefix: &str) -> Self {
        Self {
            names: [
                metric_name(prefix, &REQUESTS_TOTAL),
                metric_name(prefix, &REQUEST_DURATION_MS),
                metric_name(prefix, &REQUEST_BYTES),
                metric_name(prefix, &RESPONSE_BYTES),
                metric_name(prefix, &REQUESTS_ACTIVE),
            ],
            series: HashMap::new(),
            active: HashMap::new(),
        }
    }

    /// Distinct full label sets defined so far.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Distinct request-side label sets (gauges) defined so far.
    pub fn active_series_count(&self) -> usize {
        self.active.len()
    }

    /// A request reached request headers: `requests_active` +1. Returns the
    /// gauge id to hand back to [`Registry::request_ended`].
    pub fn request_started(
        &mut self,
        labeler: &Labeler,
        sink: &mut impl MetricSink,
        labels: RequestLabels,
    ) -> Option<u32> {
        let name = &self.names[4];
        let id = *self.active.entry(labels).or_insert_with(|| {
            sink.define(
                REQUESTS_ACTIVE.kind,
                &encode_name(&labeler.request_pairs(&labels), name),
            )
        });
        if let Some(id) = id {
            sink.increment(id, 1);
        }
        id
    }

    /// The request that [`Registry::request_started`] counted has ended.
    pub fn request_ended(sink: &mut impl MetricSink, gauge: Option<u32>) {
        if let Some(id) = gauge {
            sink.increment(id, -1);
        }
    }

    /// Records a finished request into its label set's metrics.
    pub fn record(&mut self, labeler: &Labeler, sink: &mut impl MetricSink, obs: &Observation) {
        let names = &self.names;
        let ids = *self.series.entry(obs.key).or_insert_with(|| {
            let pairs = labeler.pairs(&obs.key);
            let mut define = |family: &MetricFamily, name: &str| {
                sink.define(family.kind, &encode_name(&pairs, name))
            };
            SeriesIds {
                requests_total: define(&REQUESTS_TOTAL, &names[0]),
                duration: define(&REQUEST_DURATION_MS, &names[1]),
                request_bytes: define(&REQUEST_BYTES, &names[2]),
                response_bytes: define(&RESPONSE_BYTES, &names[3]),
            }
        });
        if let Some(id) = ids.requests_total {
            sink.increment(id, 1);
        }
        for (id, value) in [
            (ids.duration, obs.duration_ms),
            (ids.request_bytes, obs.request_bytes),
            (ids.response_bytes, obs.response_bytes),
        ] {
            if let Some(id) = id {
                sink.record(id, value);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake host metric store for native tests.
    use super::*;

    /// Metrics by name, as a host would store them.
    #[derive(Debug, Default)]
    pub struct FakeSink {
        pub defined: Vec<(MetricKind, String)>,
        pub values: HashMap<u32, i64>,
        pub samples: HashMap<u32, Vec<u64>>,
        pub refuse: bool,
    }

    impl FakeSink {
        pub fn id(&self, name: &str) -> Option<u32> {
            let index = self.defined.iter().position(|(_, n)| n == name)?;
            u32::try_from(index + 1).ok()
        }
        pub fn value(&self, name: &str) -> i64 {
            self.id(name)
                .and_then(|id| self.values.get(&id).copied())
                .unwrap_or(0)
        }
        pub fn samples(&self, name: &str) -> Vec<u64> {
            self.id(name)
                .and_then(|id| self.samples.get(&id).cloned())
                .unwrap_or_default()
        }
    }

    impl MetricSink for FakeSink {
        fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
            if self.refuse {
                return None;
            }
            if let Some(id) = self.id(name) {
                return Some(id);
            }
            self.defined.push((kind, name.to_owned()));
            u32::try_from(self.defined.len()).ok()
        }
        fn increment(&mut self, id: u32, delta: i64) {
            *self.values.entry(id).or_default() += delta;
        }
        fn record(&mut self, id: u32, value: u64) {
            self.samples.entry(id).or_default().push(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeSink;
    use super::*;
    use crate::config::validate;
    use crate::labels::RequestFacts;

    fn setup() -> (Labeler, Registry, FakeSink) {
        let config = validate(br#"{"dimensions": {"route": {"prefixes": ["/api"]}}}"#).unwrap();
        (
            Labeler::new(&config),
            Registry::new(&config.prefix),
            FakeSink::default(),
        )
    }

    fn request(labeler: &mut Labeler, method: &str, path: &str) -> RequestLabels {
        labeler.request_labels(&RequestFacts {
            method: Some(method.as_bytes()),
            path: Some(path.as_bytes()),
            version: None,
        })
    }

    #[test]
    fn metrics_are_defined_once_per_label_set_and_counted() {
        let (mut labeler, mut registry, mut sink) = setup();
        for (method, status) in [("GET", "200"), ("GET", "200"), ("POST", "503")] {
            let labels = request(&mut labeler, method, "/api/x");
            let key = labeler.key(labels, Some(status.as_bytes()));
            let obs = Observation {
                key,
                duration_ms: 7,
                request_bytes: 3,
                response_bytes: 11,
            };
            registry.record(&labeler, &mut sink, &obs);
        }
        assert_eq!(registry.series_count(), 2);
        assert_eq!(
            sink.defined.len(),
            8,
            "4 metrics x 2 label sets: {:?}",
            sink.defined
        );
        let get = "method=.=GET;.;response_code=.=200;.;route=.=/api;.;mesh_requests_total";
        assert_eq!(sink.value(get), 2);
        assert_eq!(
            sink.value("method=.=POST;.;response_code=.=503;.;route=.=/api;.;mesh_requests_total"),
            1
        );
        assert_eq!(
            sink.samples("method=.=GET;.;response_code=.=200;.;route=.=/api;.;mesh_request_duration_milliseconds"),
            vec![7, 7]
        );
        assert_eq!(
            sink.samples("method=.=GET;.;response_code=.=200;.;route=.=/api;.;mesh_response_bytes"),
            vec![11, 11]
        );
        let kinds: Vec<_> = sink.defined.iter().take(4).map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                MetricKind::Counter,
                MetricKind::Histogram,
                MetricKind::Histogram,
                MetricKind::Histogram
            ]
        );
    }

    #[test]
    fn active_gauge_goes_up_and_back_down() {
        let (mut labeler, mut registry, mut sink) = setup();
        let labels = request(&mut labeler, "GET", "/api");
        let a = registry.request_started(&labeler, &mut sink, labels);
        let b = registry.request_started(&labeler, &mut sink, labels);
        let name = "method=.=GET;.;route=.=/api;.;mesh_requests_active";
        assert_eq!(sink.value(name), 2);
        Registry::request_ended(&mut sink, a);
        Registry::request_ended(&mut sink, b);
        assert_eq!(sink.value(name), 0);
        assert_eq!(registry.active_series_count(), 1);
    }

    #[test]
    fn a_host_that_refuses_definitions_is_asked_once_per_label_set() {
        let (mut labeler, mut registry, mut sink) = setup();
        sink.refuse = true;
        let labels = request(&mut labeler, "GET", "/");
        let key = labeler.key(labels, Some(b"200"));
        let obs = Observation {
            key,
            duration_ms: 1,
            request_bytes: 0,
            response_bytes: 0,
        };
        registry.record(&labeler, &mut sink, &obs);
        sink.refuse = false;
        registry.record(&labeler, &mut sink, &obs);
        assert!(
            sink.defined.is_empty(),
            "no retry storm: {:?}",
            sink.defined
        );
    }
}
