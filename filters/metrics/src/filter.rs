//! Thin proxy-wasm glue: the root context parses the config once and owns the
//! label tables and metric-id cache; each HTTP context notes when the request
//! started and how many body bytes passed, and records everything at the end
//! of the stream (`on_log`), which Envoy also calls for local replies.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use filter_common::header_map;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

use crate::config::{validate, Config};
use crate::labels::{Labeler, RequestFacts, RequestLabels};
use crate::registry::{millis_rounded_up, MetricSink, Observation, Registry};
use crate::stats::{metric_name, MetricKind, REQUEST_DURATION_MS};

fn log(level: LogLevel, message: &str) {
    // A failing log call is not worth failing a request over.
    let _ = hostcalls::log(level, message);
}

/// Through `header_map::value`, which the bundle answers from one shared
/// read of the request map.
fn header(map: MapType, name: &str) -> Option<Vec<u8>> {
    header_map::value(map, name)
}

/// The host clock (`proxy_get_current_time_nanoseconds`), which host-test
/// drives virtually.
fn now() -> Option<SystemTime> {
    hostcalls::get_current_time().ok()
}

/// The response status: `:status` from the response headers, else Envoy's
/// `response.code` property (an 8-byte little-endian integer in Envoy; ASCII
/// digits accepted too), rendered as ASCII digits.
fn response_status() -> Option<Vec<u8>> {
    if let Some(status) = header(MapType::HttpResponseHeaders, ":status") {
        return Some(status);
    }
    let raw = hostcalls::get_property(vec!["response", "code"])
        .ok()
        .flatten()?;
    match <[u8; 8]>::try_from(raw.as_slice()) {
        Ok(le) => Some(i64::from_le_bytes(le).to_string().into_bytes()),
        Err(_) => Some(raw),
    }
}

/// The proxy-wasm host's metric calls.
struct HostSink;

impl MetricSink for HostSink {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        let metric_type = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        match hostcalls::define_metric(metric_type, name) {
            Ok(id) => Some(id),
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!("metrics: define_metric {name:?} failed: {status:?}"),
                );
                None
            }
        }
    }

    fn increment(&mut self, id: u32, delta: i64) {
        let _ = hostcalls::increment_metric(id, delta);
    }

    fn record(&mut self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// Per-VM state shared by the root context and its HTTP contexts. A VM runs
/// one thread, so `Rc<RefCell<_>>` is enough.
struct Shared {
    labeler: Labeler,
    registry: Registry,
}

/// The root context: parses config in `on_configure`.
#[derive(Default)]
pub struct MetricsRoot {
    shared: Option<Rc<RefCell<Shared>>>,
}

impl MetricsRoot {
    /// Applies a validated config: builds the label tables and the metric
    /// registry. `on_configure` is [`validate`] then this; the bundle
    /// (`filters/bundle`) validates its `metrics` section itself and calls
    /// this.
    pub fn configure(&mut self, config: Config) {
        Self::configured(&config);
        self.shared = Some(Rc::new(RefCell::new(Shared {
            labeler: Labeler::new(&config),
            registry: Registry::new(&config.prefix),
        })));
    }

    fn configured(config: &Config) {
        let duration = metric_name(&config.prefix, &REQUEST_DURATION_MS);
        log(
            LogLevel::Info,
            &format!(
                "metrics: configured, prefix {:?}, at most {} label sets per metric; Envoy's \
                 bootstrap must set stats_config.histogram_bucket_settings \
                 {{match: {{suffix: {duration:?}}}, buckets: {:?}}}",
                config.prefix,
                config.series_bound(),
                config.histogram_buckets_ms
            ),
        );
    }
}

impl Context for MetricsRoot {}

impl RootContext for MetricsRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        filter_common::configure::from_plugin_configuration(validate, |config| {
            self.configure(config);
        })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(MetricsStream {
            shared: self.shared.clone(),
            started: None,
            request_bytes: 0,
            response_bytes: 0,
            finished: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// What request headers established.
struct Started {
    at: Option<SystemTime>,
    labels: RequestLabels,
    gauge: Option<u32>,
}

/// One HTTP stream.
pub struct MetricsStream {
    shared: Option<Rc<RefCell<Shared>>>,
    started: Option<Started>,
    request_bytes: u64,
    response_bytes: u64,
    finished: bool,
}

/// Reads only the request headers the enabled dimensions need.
///
/// Speed: in Envoy's V8 a header read that finds a value costs about 0.5 µs,
/// most of it the host calling back into the VM to allocate the value. One
/// read of the whole map (`proxy_get_header_map_pairs`, one allocation) costs
/// about as much as two single reads, so with two or more headers wanted the
/// map is read once and searched here.
///
/// The map comes from [`filter_common::header_map::get`], not the SDK's
/// `get_map_bytes`, which traps on a header name that is not UTF-8 (another
/// filter can add one). Names are compared as bytes: such a name never equals
/// one of ours (ASCII), so it is ignored. A map the host cannot give counts
/// as empty: the labels fall back to their defaults.
fn request_labels(labeler: &mut Labeler) -> RequestLabels {
    let version_header = labeler.version_header();
    let wanted = usize::from(labeler.wants_method())
        + usize::from(labeler.wants_path())
        + usize::from(version_header.is_some());
    let (method, path, version) = if wanted >= 2 {
        let map = header_map::map(MapType::HttpRequestHeaders).unwrap_or_default();
        let find = |wanted: bool, name: &str| {
            wanted
                .then(|| {
                    map.iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                        .map(|(_, v)| v.clone())
                })
                .flatten()
        };
        (
            find(labeler.wants_method(), ":method"),
            find(labeler.wants_path(), ":path"),
            version_header.and_then(|name| find(true, name)),
        )
    } else {
        (
            labeler
                .wants_method()
                .then(|| header(MapType::HttpRequestHeaders, ":method"))
                .flatten(),
            labeler
                .wants_path()
                .then(|| header(MapType::HttpRequestHeaders, ":path"))
                .flatten(),
            version_header.and_then(|name| header(MapType::HttpRequestHeaders, name)),
        )
    };
    labeler.request_labels(&RequestFacts {
        method: method.as_deref(),
        path: path.as_deref(),
        version: version.as_deref(),
    })
}

impl MetricsStream {
    /// Records the request once, at `on_log` (or `on_done` if the host never
    /// called `on_log`).
    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let Some(shared) = &self.shared else { return };
        let Ok(mut shared) = shared.try_borrow_mut() else {
            return;
        };
        let Shared { labeler, registry } = &mut *shared;
        // A local reply from a filter before this one skips our request
        // headers callback; the headers are still readable at log time.
        let (labels, start, gauge) = match &self.started {
            Some(started) => (started.labels, started.at, started.gauge),
            None => (request_labels(labeler), None, None),
        };
        let status = labeler.wants_status().then(response_status).flatten();
        let key = labeler.key(labels, status.as_deref());
        let duration = match (start, now()) {
            (Some(start), Some(end)) => end.duration_since(start).unwrap_or(Duration::ZERO),
            _ => Duration::ZERO,
        };
        let obs = Observation {
            key,
            duration_ms: millis_rounded_up(duration),
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
        };
        registry.record(labeler, &mut HostSink, &obs);
        Registry::request_ended(&mut HostSink, gauge);
    }
}

impl Context for MetricsStream {
    fn on_done(&mut self) -> bool {
        self.finish();
        true
    }
}

impl HttpContext for MetricsStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.started.is_some() {
            return Action::Continue;
        }
        let Some(shared) = &self.shared else {
            return Action::Continue;
        };
        let Ok(mut shared) = shared.try_borrow_mut() else {
            return Action::Continue;
        };
        let Shared { labeler, registry } = &mut *shared;
        let at = now();
        let labels = request_labels(labeler);
        let gauge = registry.request_started(labeler, &mut HostSink, labels);
        self.started = Some(Started { at, labels, gauge });
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        // We never buffer, so each call reports only the new chunk.
        self.request_bytes = self.request_bytes.saturating_add(body_size as u64);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.response_bytes = self.response_bytes.saturating_add(body_size as u64);
        Action::Continue
    }

    fn on_log(&mut self) {
        self.finish();
    }
}
