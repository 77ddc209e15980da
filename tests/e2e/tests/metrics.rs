//! metrics in a real Envoy with the shipped `stats_tags` snippet: counters,
//! the gauge and the duration histogram appear in `/stats/prometheus` with
//! real labels, parsed by a Prometheus text parser.
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::{paths, Bootstrap, EchoUpstream, Envoy, HttpFilter, Route, UpstreamConfig};
use prometheus_parse::{Sample, Scrape, Value};

/// The README's complete example config.
const README_CONFIG: &str = r#"{
  "prefix": "mesh",
  "dimensions": {
    "method": true,
    "response_code": true,
    "response_code_class": true,
    "version": {"header": "x-canary-version", "default": "unknown", "max_values": 16},
    "route": {"prefixes": ["/api", "/admin", "/health"], "default": "other"}
  },
  "histogram_buckets_ms": [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
  "max_label_value_len": 64
}"#;
const BUCKETS: [f64; 13] = [
    0.5, 1., 5., 10., 25., 50., 100., 250., 500., 1000., 2500., 5000., 10000.,
];

fn metrics_envoy(upstream: &EchoUpstream) -> Envoy {
    let bootstrap = Bootstrap::new()
        .filter(HttpFilter::wasm(
            "metrics",
            &paths::filter_wasm("metrics"),
            README_CONFIG,
        ))
        .route("/api", Route::Upstream(upstream.addr()))
        .stats_config_from(&paths::metrics_stats_tags_manifest())
        // Histograms reach the admin output only at a flush; counters are live.
        .stats_flush_interval(Duration::from_secs(1));
    Envoy::start(&bootstrap)
}

fn scrape(envoy: &Envoy) -> Scrape {
    let text = envoy.admin_get("/stats/prometheus").text();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn find<'a>(
    scrape: &'a Scrape,
    metric: &str,
    want: &HashMap<String, String>,
) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && *s.labels == *want)
}

/// Polls until `check` passes on a scrape (stats land at `on_log`, after the
/// client already has its response; histograms only at a flush).
fn eventually(envoy: &Envoy, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = scrape(envoy);
        if check(&scrape) {
            return scrape;
        }
        if Instant::now() > deadline {
            let mesh: Vec<_> = scrape
                .samples
                .iter()
                .filter(|s| s.metric.starts_with("mesh_"))
                .collect();
            panic!("{what}: not seen within 10 s; mesh samples: {mesh:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn counter(sample: Option<&Sample>) -> Option<f64> {
    match sample?.value {
        Value::Counter(v) | Value::Untyped(v) => Some(v),
        _ => None,
    }
}

#[test]
fn requests_total_counts_each_request_under_its_labels_and_local_replies_too() {
    const N: usize = 7;
    const MISSES: usize = 3;
    let upstream = EchoUpstream::start(UpstreamConfig::default());
    let envoy = metrics_envoy(&upstream);

    let mut conn = envoy.connect();
    for _ in 0..N {
        let r = conn
            .request("GET", "/api/users", &[("x-canary-version", "v2")])
            .unwrap();
        assert_eq!(r.status, 200);
    }
    // No route for /admin: Envoy's router answers 404 itself.
    for _ in 0..MISSES {
        let r = conn.request("GET", "/admin/panel", &[]).unwrap();
        assert_eq!(r.status, 404);
    }

    let ok = labels(&[
        ("method", "GET"),
        ("response_code", "200"),
        ("response_code_class", "2xx"),
        ("version", "v2"),
        ("route", "/api"),
    ]);
    let not_found = labels(&[
        ("method", "GET"),
        ("response_code", "404"),
        ("response_code_class", "4xx"),
        ("version", "unknown"),
        ("route", "/admin"),
    ]);
    let scrape = eventually(&envoy, "requests_total", |s| {
        counter(find(s, "mesh_requests_total", &ok)) == Some(N as f64)
            && counter(find(s, "mesh_requests_total", &not_found)) == Some(MISSES as f64)
    });

    let totals: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "mesh_requests_total")
        .collect();
    assert_eq!(totals.len(), 2, "exactly the two label sets: {totals:#?}");
    assert!(matches!(
        find(&scrape, "mesh_requests_total", &ok).unwrap().value,
        Value::Counter(_)
    ));
    // The gauge carries request-side labels only and is back to zero.
    let active = labels(&[("method", "GET"), ("version", "v2"), ("route", "/api")]);
    let gauge = find(&scrape, "mesh_requests_active", &active).expect("requests_active");
    assert!(
        matches!(gauge.value, Value::Gauge(v) if v == 0.0),
        "{gauge:?}"
    );
    // No label is left encoded in a metric name.
    assert!(
        scrape.samples.iter().all(|s| !s.metric.contains("___")),
        "unextracted label field in a name"
    );
    assert_eq!(upstream.seen().len(), N);
}

#[test]
fn duration_histogram_uses_the_configured_buckets_after_a_flush() {
    const N: usize = 5;
    let upstream = EchoUpstream::start(UpstreamConfig::default());
    let envoy = metrics_envoy(&upstream);

    let mut conn = envoy.connect();
    for _ in 0..N {
        let r = conn
            .request("GET", "/api/items", &[("x-canary-version", "v2")])
            .unwrap();
        assert_eq!(r.status, 200);
    }

    let ok = labels(&[
        ("method", "GET"),
        ("response_code", "200"),
        ("response_code_class", "2xx"),
        ("version", "v2"),
        ("route", "/api"),
    ]);
    let total =
        |s: &Scrape| match find(s, "mesh_request_duration_milliseconds", &ok).map(|s| &s.value) {
            Some(Value::Histogram(buckets)) => buckets.last().map(|b| b.count),
            _ => None,
        };
    let scrape = eventually(&envoy, "duration histogram", |s| total(s) == Some(N as f64));

    let Value::Histogram(buckets) = &find(&scrape, "mesh_request_duration_milliseconds", &ok)
        .unwrap()
        .value
    else {
        unreachable!()
    };
    let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
    let mut expected = BUCKETS.to_vec();
    expected.push(f64::INFINITY);
    assert_eq!(
        bounds, expected,
        "histogram_bucket_settings suffix match applied"
    );
    // Loopback requests take well under a second: all land by le="1000".
    let le_1000 = buckets.iter().find(|b| b.less_than == 1000.0).unwrap();
    assert_eq!(le_1000.count, N as f64);
    // Empty GETs and the echo bodies: byte histograms carry every request too.
    for name in ["mesh_request_bytes", "mesh_response_bytes"] {
        let Some(Value::Histogram(b)) = find(&scrape, name, &ok).map(|s| &s.value) else {
            panic!("{name} missing")
        };
        assert_eq!(b.last().unwrap().count, N as f64, "{name}");
    }
}
