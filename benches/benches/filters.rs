//! The shipped filters: one request lifecycle each in host-test, beside the
//! `noop` baseline in the same group (so ratios come from one run), and
//! their pure cores natively, which is what the filter logic itself costs
//! without the Wasm boundary.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use benches::{
    or_exit, Case, CANARY_ROUTER_CONFIG, CANARY_ROUTER_HEADERS, METRICS_CONFIG, RATE_LIMIT_CONFIG,
    SECURITY_HEADERS_CONFIG,
};
use canary_router::matcher::HeaderList;
use canary_router::router::{decide, Reason};
use canary_router::split::key_hash;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use metrics::labels::{Labeler, RequestFacts};
use metrics::registry::{MetricSink, Observation, Registry};
use metrics::stats::MetricKind;
use rate_limit::bucket::{BucketSpec, BucketState};
use rate_limit::headers::{rate_limit_headers, RuleMeta};
use rate_limit::limiter::{Decision, Limiter, LocalLimiter, SetError, SharedStore, Verdict};
use rate_limit::rules::RequestView;
use security_headers::harden::{harden, is_https, Plan};

/// Each case's full lifecycle through host-test.
fn lifecycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("filters_lifecycle");
    group.measurement_time(Duration::from_secs(5));
    for case in Case::ALL {
        let mut host = case.host();
        let request = case.request();
        group.bench_function(case.name(), |b| {
            b.iter_batched(
                || request.clone(),
                |request| black_box(host.send(request)),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// A metric sink that only counts, standing in for the host's metric calls.
#[derive(Default)]
struct CountingSink {
    defined: u32,
    calls: u64,
}

impl MetricSink for CountingSink {
    fn define(&mut self, _kind: MetricKind, name: &str) -> Option<u32> {
        black_box(name);
        self.defined += 1;
        Some(self.defined)
    }
    fn increment(&mut self, id: u32, delta: i64) {
        black_box((id, delta));
        self.calls += 1;
    }
    fn record(&mut self, id: u32, value: u64) {
        black_box((id, value));
        self.calls += 1;
    }
}

/// Shared data as a map with CAS stamps, standing in for the host's
/// `proxy_get_shared_data` / `proxy_set_shared_data` (the values are copied
/// out and in, as across the Wasm boundary).
#[derive(Default)]
struct MapStore {
    map: HashMap<String, (Vec<u8>, u32)>,
}

impl SharedStore for MapStore {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.get(key).cloned()
    }
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        match self.map.get_mut(key) {
            Some((_, stamp)) if cas != 0 && cas != *stamp => Err(SetError::CasMismatch),
            Some((stored, stamp)) => {
                stored.clear();
                stored.extend_from_slice(value);
                *stamp += 1;
                Ok(())
            }
            None => {
                self.map.insert(key.to_owned(), (value.to_vec(), 1));
                Ok(())
            }
        }
    }
}

/// The bench request as the rules see it: an `x-user` header, a peer address.
struct BenchRequest;

impl RequestView for BenchRequest {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        (name == "x-user").then(|| b"bench-client".to_vec())
    }
    fn client_ip(&mut self) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, 1]))
    }
}

/// The filters' per-request logic natively, on the same traffic as
/// [`lifecycle`]: what the Wasm lifecycle adds on top is the host, the ABI
/// crossings and the SDK.
fn native_cores(c: &mut Criterion) {
    let mut group = c.benchmark_group("filters_native");
    group.measurement_time(Duration::from_secs(3));

    let config = or_exit(
        security_headers::config::validate(SECURITY_HEADERS_CONFIG.as_bytes()),
        "security-headers config",
    );
    let plan = Plan::new(&config);
    let response: Vec<(String, Vec<u8>)> = [
        (":status", "200"),
        ("content-type", "text/html; charset=utf-8"),
        ("server", "nginx/1.25.3"),
        ("x-powered-by", "PHP/8.3.1"),
        ("content-length", "32"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
    .collect();
    // `harden` borrows the header map as the SDK returns it and answers
    // with edits that borrow from the plan, so this is the merge alone.
    group.bench_function("security_headers_harden", |b| {
        b.iter(|| {
            let https = is_https(black_box(Some(b"https".as_slice())), None);
            black_box(harden(&plan, https, black_box(&response)))
        });
    });

    let config = or_exit(
        metrics::config::validate(METRICS_CONFIG.as_bytes()),
        "metrics config",
    );
    let mut labeler = Labeler::new(&config);
    let mut registry = Registry::new(&config.prefix);
    let mut sink = CountingSink::default();
    let facts = RequestFacts {
        method: Some(b"GET"),
        path: Some(b"/api/users/42"),
        version: Some(b"v2"),
    };
    // Steady state: the label set's metrics are defined on the first request
    // of a VM, then only looked up.
    group.bench_function("metrics_label_and_record", |b| {
        b.iter(|| {
            let labels = labeler.request_labels(black_box(&facts));
            let gauge = registry.request_started(&labeler, &mut sink, labels);
            let key = labeler.key(labels, black_box(Some(b"200".as_slice())));
            let observation = Observation {
                key,
                duration_ms: 3,
                request_bytes: 0,
                response_bytes: 32,
            };
            registry.record(&labeler, &mut sink, &observation);
            Registry::request_ended(&mut sink, gauge);
        });
    });
    black_box(sink.calls);

    // rate-limit's request path without the host: match and key the rule,
    // the two-phase decision against the map (one get, one CAS set), and the
    // draft headers, with the filter's reused scratch buffers.
    let config = or_exit(
        rate_limit::config::validate(RATE_LIMIT_CONFIG.as_bytes()),
        "rate-limit config",
    );
    let plan = rate_limit::rules::Plan::new(&config);
    let specs: Vec<(String, BucketSpec)> = config
        .rules
        .iter()
        .map(|rule| (rule.name.clone(), BucketSpec::from(rule.bucket)))
        .collect();
    let metas: Vec<RuleMeta> = specs
        .iter()
        .map(|(name, spec)| RuleMeta::new(name, *spec))
        .collect();
    let mut limiter = LocalLimiter::new(
        specs.iter().cloned(),
        config.shadow_mode,
        config.on_contention,
        MapStore::default(),
    );
    let mut hits = Vec::with_capacity(1);
    let mut decision = Decision::default();
    let mut now_ns: u64 = 1_000_000_000;
    group.bench_function("rate_limit_decide", |b| {
        b.iter(|| {
            hits.clear();
            let mut view = BenchRequest;
            plan.hits(
                black_box(Some(b"/api/users/42".as_slice())),
                None,
                &mut view,
                &mut hits,
            );
            now_ns += 1000;
            limiter.decide(&hits, now_ns, &mut decision);
            let mut headers = Vec::with_capacity(2);
            rate_limit_headers(config.headers, &metas, &decision, &mut headers);
            black_box(headers)
        });
    });
    if decision.verdict != Verdict::Admit {
        benches::fail("rate_limit_decide: the bucket ran dry; the bench measured the deny path");
    }
    // The bucket arithmetic alone: refill a partly used bucket to "now".
    let spec = BucketSpec::from(config.rules.first().map_or_else(
        || benches::fail("rate-limit config has no rule"),
        |rule| rule.bucket,
    ));
    let state = BucketState {
        tokens: 5,
        last_fill_ns: 1_000,
    };
    group.bench_function("rate_limit_bucket_refill", |b| {
        b.iter(|| black_box(spec.refill(black_box(state), black_box(7_200_000_001_000))));
    });

    // canary-router's decision on the request the filter sees: the header
    // map as it fetches it (the config reads cookies), walked by all four
    // rules (two header tests, a cookie lookup, the user-agent regex, a
    // query lookup on `:path`), then `x-user-id` hashed onto the split.
    let config = or_exit(
        canary_router::config::validate(CANARY_ROUTER_CONFIG.as_bytes()),
        "canary-router config",
    );
    let mut request = HeaderList::new(
        [
            (":method", "GET"),
            (":path", "/api/users/42"),
            (":authority", "example.com"),
            (":scheme", "http"),
        ]
        .into_iter()
        .chain(CANARY_ROUTER_HEADERS),
    );
    let decision = decide(&config, &mut request, || 0);
    if decision.reason != Reason::Hash || !decision.set_cookie {
        benches::fail(&format!(
            "canary_router_decide: expected a hashed, cookie-setting decision, got {decision:?}"
        ));
    }
    group.bench_function("canary_router_decide", |b| {
        b.iter(|| black_box(decide(&config, black_box(&mut request), || 0)));
    });
    // The documented hash alone (FNV-1a 64 + fmix64) and the range lookup.
    group.bench_function("canary_router_key_hash_pick", |b| {
        b.iter(|| black_box(config.split.pick(key_hash(black_box(b"user-42")))));
    });

    // on_configure's work, paid once per VM.
    group.bench_function("security_headers_configure", |b| {
        b.iter(|| {
            let config =
                security_headers::config::validate(black_box(SECURITY_HEADERS_CONFIG.as_bytes()));
            black_box(config.map(|c| Plan::new(&c)))
        });
    });
    group.bench_function("metrics_configure", |b| {
        b.iter(|| {
            let config = metrics::config::validate(black_box(METRICS_CONFIG.as_bytes()));
            black_box(config.map(|c| Labeler::new(&c)))
        });
    });
    group.bench_function("rate_limit_configure", |b| {
        b.iter(|| {
            let config = rate_limit::config::validate(black_box(RATE_LIMIT_CONFIG.as_bytes()));
            black_box(config.map(|c| rate_limit::rules::Plan::new(&c)))
        });
    });
    // validate compiles the regex and builds the Set-Cookie values.
    group.bench_function("canary_router_configure", |b| {
        b.iter(|| {
            black_box(canary_router::config::validate(black_box(
                CANARY_ROUTER_CONFIG.as_bytes(),
            )))
        });
    });
    group.finish();
}

criterion_group!(benches, lifecycle, native_cores);
criterion_main!(benches);
