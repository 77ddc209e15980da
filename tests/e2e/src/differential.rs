//! Differential runs: one host-test scenario file, run once in host-test and
//! once in a real Envoy built from the same filters, configs, routes and
//! mocked answers. Any difference in status, response headers, body, or in
//! what the upstream received (cluster, method, path, headers, body) is a
//! [`Difference`]; where Envoy and host-test differ, host-test is wrong.
//!
//! What a real Envoy cannot reproduce is reported, never dropped silently:
//! a scenario that depends on host-test-only controls is
//! [`Verdict::HostOnly`] with the reason, and the steps from the first
//! `advance` on (host-test's virtual clock; Envoy runs in real time) are
//! counted in [`Report::not_compared`].
//!
//! Translation decisions:
//! - Envoy runs with one worker. A scenario's `workers` and
//!   `request.worker` spread requests over VMs in host-test; in Envoy they
//!   all share one VM. A filter whose answers depend on the VM would show
//!   up as a difference, which is what we want to know.
//! - No TLS listener: a step's `:scheme: https` is sent as
//!   `x-forwarded-proto: https` (which Envoy keeps from a client when
//!   `use_remote_address` is off, as a TLS-terminating edge would send it),
//!   and `:authority` as `host`.
//! - Callout clusters become loopback servers that answer as mocked; a
//!   `reset` cluster points at a closed port, a `hang` one never answers.
//! - Headers that only a real network adds or that carry no filter
//!   behaviour are left out of the comparison on both sides: `date`,
//!   `server` (Envoy overwrites it after the filters), framing headers
//!   (`content-length`, `transfer-encoding`, `connection`),
//!   `x-envoy-upstream-service-time`, `x-envoy-expected-rq-timeout-ms`.
//!   `x-request-id` is compared by presence only (Envoy's is random).
//! - Counters and gauges are compared at the end of a scenario whose steps
//!   all ran in Envoy (`wasmcustom.<name>` in Envoy's `/stats`), both ways;
//!   histograms are not (Envoy only exposes their summaries), nor are the
//!   metrics of a scenario with callout clusters (Envoy retries on real-time
//!   timers, in each of its three VMs per filter).
//! - A scenario's `expect_load_error` must make Envoy refuse to start, and
//!   Envoy's log must carry the same message.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use host_test::abi::types::MetricKind;
use host_test::metrics::Metric;
use host_test::scenario::{self, Scenario};
use host_test::{Exchange, MockResponse};

use crate::client::{encode_request, Connection, Response};
use crate::envoy::{Envoy, EnvoyOptions};
use crate::upstream::{EchoUpstream, Reply, SeenRequest, UpstreamConfig};
use crate::{paths, Bootstrap, HttpFilter, Route};

/// The cluster host-test routes to when no route matches.
const DEFAULT_CLUSTER: &str = "upstream";

/// Longest mocked delay reproduced in real time.
const MAX_REAL_DELAY: Duration = Duration::from_secs(2);

/// Response headers left out of the comparison (see the module doc).
const IGNORED_RESPONSE: &[&str] = &[
    "date",
    "server",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "x-envoy-upstream-service-time",
];

/// Upstream-received headers left out of the comparison.
const IGNORED_UPSTREAM: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "x-envoy-expected-rq-timeout-ms",
];

/// The methods Envoy's HTTP/1.1 codec accepts (the http-parser list).
const HTTP1_METHODS: &[&str] = &[
    "DELETE",
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "COPY",
    "LOCK",
    "MKCOL",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "SEARCH",
    "UNLOCK",
    "BIND",
    "REBIND",
    "UNBIND",
    "ACL",
    "REPORT",
    "MKACTIVITY",
    "CHECKOUT",
    "MERGE",
    "M-SEARCH",
    "NOTIFY",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "PATCH",
    "PURGE",
    "MKCALENDAR",
    "LINK",
    "UNLINK",
    "SOURCE",
];

/// Headers compared by presence only.
const PRESENCE_ONLY: &[&str] = &["x-request-id"];

/// What happened to one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Compared; see the report's counts and differences.
    Compared,
    /// Needs a host-test-only control; not run in Envoy.
    HostOnly(String),
}

/// One difference between host-test and Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// 1-based step number (0 for loading).
    pub step: usize,
    /// What differs, e.g. `status` or `upstream headers`.
    pub field: String,
    /// host-test's side.
    pub host_test: String,
    /// Envoy's side.
    pub envoy: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {}: {}: host-test {} / Envoy {}",
            self.step, self.field, self.host_test, self.envoy
        )
    }
}

/// The result of one scenario file.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario file.
    pub file: String,
    /// Whether it ran in Envoy.
    pub verdict: Verdict,
    /// Request steps compared.
    pub compared: usize,
    /// What was not compared, and why (e.g. `2 steps: host-test's virtual clock`).
    pub not_compared: Vec<String>,
    /// Whether the final counters and gauges were compared.
    pub metrics_compared: bool,
    /// The differences found.
    pub differences: Vec<Difference>,
    /// The tail of Envoy's log, when there were differences.
    pub envoy_log_tail: String,
}

/// Runs `file` in host-test and in Envoy and compares them.
///
/// # Panics
///
/// If the scenario cannot be loaded or run in host-test (a broken scenario,
/// not a difference), or Envoy cannot be started where it should.
pub fn run(file: &Path) -> Report {
    let loaded = scenario::load(file).unwrap_or_else(|e| panic!("{e}"));
    let mut report = Report {
        file: file.display().to_string(),
        verdict: Verdict::Compared,
        compared: 0,
        not_compared: Vec::new(),
        metrics_compared: false,
        differences: Vec::new(),
        envoy_log_tail: String::new(),
    };
    if let Some(reason) = host_only(&loaded) {
        report.verdict = Verdict::HostOnly(reason);
        return report;
    }
    let outcome = scenario::run_file(file).unwrap_or_else(|e| panic!("{e}"));
    let world = World::start(&loaded);
    let bootstrap = world.bootstrap(file, &loaded);
    let options = EnvoyOptions::default();

    if let Some(expected) = &loaded.expect_load_error {
        match Envoy::try_start_with(&bootstrap, &options) {
            Ok(envoy) => {
                report.differences.push(Difference {
                    step: 0,
                    field: "load".into(),
                    host_test: format!("refused: {expected}"),
                    envoy: "started".into(),
                });
                report.envoy_log_tail = envoy.log_tail();
            }
            Err(failure) if !failure.log.contains(expected.as_str()) => {
                report.differences.push(Difference {
                    step: 0,
                    field: "load error message".into(),
                    host_test: expected.clone(),
                    envoy: failure.reason.clone(),
                });
                report.envoy_log_tail = failure.to_string();
            }
            Err(_) => report.compared += 1,
        }
        return report;
    }

    let mut sent: u64 = 0;
    let envoy = Envoy::try_start_with(&bootstrap, &options)
        .unwrap_or_else(|f| panic!("{}: Envoy did not start: {f}", report.file));
    for (index, step) in loaded.steps.iter().enumerate() {
        if step.advance.is_some() {
            report.not_compared.push(format!(
                "{} step(s): host-test's virtual clock (advance)",
                loaded.steps.len() - index
            ));
            break;
        }
        let Some(request) = &step.request else {
            continue;
        };
        if !HTTP1_METHODS.contains(&request.method.as_str()) {
            report.not_compared.push(format!(
                "step {}: method {:?}, refused by Envoy's HTTP/1.1 codec",
                index + 1,
                request.method
            ));
            continue;
        }
        let Some(host_exchange) = outcome.steps.get(index).and_then(|s| s.exchange.as_ref()) else {
            panic!(
                "{}: host-test has no exchange for step {}",
                report.file,
                index + 1
            );
        };
        world.script(&loaded, step.upstream.as_ref());
        let mut envoy_side = None;
        for _ in 0..request.repeat.max(1) {
            world.clear_seen();
            envoy_side = Some(send(&envoy, request));
            sent += 1;
        }
        let Some(response) = envoy_side else { continue };
        let host_side = Observation::from_host(host_exchange);
        let envoy_side = Observation::from_envoy(&response, world.seen());
        report
            .differences
            .extend(host_side.differences(&envoy_side, index + 1));
        report.compared += 1;
    }
    if !report.not_compared.is_empty() {
        report
            .not_compared
            .push("metrics: not every step ran in Envoy".into());
    } else if !loaded.clusters.is_empty() {
        report.not_compared.push(
            "metrics: callout retries run on Envoy's real-time timers, in each of its VMs".into(),
        );
    } else {
        report.metrics_compared = true;
        report.differences.extend(metric_differences(
            &envoy,
            &outcome.metrics,
            loaded.steps.len(),
            sent,
        ));
    }
    if !report.differences.is_empty() {
        report.envoy_log_tail = envoy.log_tail();
    }
    report
}

/// Counters and gauges that differ between host-test's final state and
/// Envoy's (`wasmcustom.<name>` in `/stats`). Envoy runs `on_log` after the
/// response has left, so the comparison waits until Envoy has completed all
/// `sent` streams (`http.main.downstream_rq_completed`), and then polls for
/// a moment.
fn metric_differences(
    envoy: &Envoy,
    host: &[Metric],
    last_step: usize,
    sent: u64,
) -> Vec<Difference> {
    let completed_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < completed_deadline {
        let stats = envoy
            .admin_get("/stats?format=json&filter=downstream_rq_completed")
            .json();
        let completed = stats
            .get("stats")
            .and_then(serde_json::Value::as_array)
            .and_then(|all| {
                all.iter().find(|s| {
                    s.get("name").and_then(serde_json::Value::as_str)
                        == Some("http.main.downstream_rq_completed")
                })
            })
            .and_then(|s| s.get("value")?.as_u64())
            .unwrap_or(0);
        if completed >= sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wanted: Vec<(String, i64)> = host
        .iter()
        .filter(|m| m.kind != MetricKind::Histogram)
        .map(|m| (m.name.clone(), m.value))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let stats = envoy.admin_get("/stats?format=json").json();
        let envoy_values: BTreeMap<String, i64> = stats
            .get("stats")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| {
                let name = s.get("name")?.as_str()?.strip_prefix("wasmcustom.")?;
                Some((name.to_owned(), s.get("value")?.as_i64()?))
            })
            .collect();
        let mut differences: Vec<Difference> = wanted
            .iter()
            .filter(|(name, value)| envoy_values.get(name) != Some(value))
            .map(|(name, value)| Difference {
                step: last_step,
                field: format!("metric {name}"),
                host_test: value.to_string(),
                envoy: envoy_values
                    .get(name)
                    .map_or("missing".to_owned(), i64::to_string),
            })
            .collect();
        // And what only Envoy has (a zero is a defined, unused metric).
        differences.extend(
            envoy_values
                .iter()
                .filter(|(name, value)| **value != 0 && !wanted.iter().any(|(n, _)| n == *name))
                .map(|(name, value)| Difference {
                    step: last_step,
                    field: format!("metric {name}"),
                    host_test: "missing".to_owned(),
                    envoy: value.to_string(),
                }),
        );
        if differences.is_empty() || Instant::now() > deadline {
            return differences;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The reason a scenario cannot run in a real Envoy, if any.
fn host_only(s: &Scenario) -> Option<String> {
    let delay_too_long = |r: &MockResponse| r.delay.0 > MAX_REAL_DELAY;
    let reason = if s.start_time.is_some() {
        "pins the wall clock (start_time)"
    } else if s.limits.is_some() {
        "sets host-test's fuel/memory limits"
    } else if !s.properties.is_empty() {
        "sets properties Envoy derives from the connection"
    } else if !s.env.is_empty() {
        "sets VM environment variables"
    } else if s.filters.iter().any(|f| !f.vm_id.is_empty()) {
        "shares VMs by vm_id"
    } else if s
        .clusters
        .values()
        .any(|c| c.grpc_status != 0 || !c.trailers.0.is_empty() || c.delay.0 > MAX_REAL_DELAY)
    {
        "mocks a gRPC, trailer or slow callout cluster"
    } else if s
        .upstream
        .as_ref()
        .is_some_and(|u| delay_too_long(u) || !u.trailers.0.is_empty())
        || s.routes
            .iter()
            .any(|r| delay_too_long(&r.response) || !r.response.trailers.0.is_empty())
        || s.steps.iter().any(|step| {
            step.upstream
                .as_ref()
                .is_some_and(|u| delay_too_long(u) || !u.trailers.0.is_empty())
                || step
                    .request
                    .as_ref()
                    .is_some_and(|r| !r.trailers.0.is_empty())
        })
    {
        "uses trailers or a slow upstream"
    } else {
        return None;
    };
    Some(reason.to_owned())
}

/// The loopback servers standing in for the scenario's clusters.
struct World {
    /// By cluster name: the default upstream, the routes' clusters.
    upstreams: BTreeMap<String, EchoUpstream>,
    /// Callout clusters by name; `None` for a reset (closed port).
    callouts: BTreeMap<String, (Option<EchoUpstream>, SocketAddr)>,
}

impl World {
    fn start(s: &Scenario) -> Self {
        let mut upstreams = BTreeMap::new();
        upstreams.insert(
            DEFAULT_CLUSTER.to_owned(),
            EchoUpstream::start(UpstreamConfig::default()),
        );
        for route in &s.routes {
            upstreams
                .entry(route.cluster.clone())
                .or_insert_with(|| EchoUpstream::start(UpstreamConfig::default()));
        }
        let mut callouts = BTreeMap::new();
        for (name, def) in &s.clusters {
            if def.reset {
                callouts.insert(name.clone(), (None, closed_port()));
                continue;
            }
            let server = EchoUpstream::start(UpstreamConfig::default());
            server.set_reply(Some(Reply {
                status: def.status.unwrap_or(200),
                headers: def.headers.0.clone(),
                body: def.body.clone().into_bytes(),
                delay: def.delay.0,
                hang: def.hang,
            }));
            let addr = server.addr();
            callouts.insert(name.clone(), (Some(server), addr));
        }
        Self {
            upstreams,
            callouts,
        }
    }

    /// The Envoy config: the scenario's filters in order, its header routes,
    /// then everything else to the default upstream.
    fn bootstrap(&self, file: &Path, s: &Scenario) -> Bootstrap {
        let mut bootstrap = Bootstrap::new();
        for def in &s.filters {
            let wasm = scenario::resolve(file, &def.wasm);
            let wasm = if wasm.is_absolute() {
                wasm
            } else {
                paths::repo_root().join(wasm)
            };
            let text = |value: &serde_yaml_ng::Value, what: &str| {
                let bytes = scenario::config_bytes(value)
                    .unwrap_or_else(|e| panic!("{}: {what}: {e}", def.name));
                String::from_utf8(bytes)
                    .unwrap_or_else(|_| panic!("{}: {what} is not UTF-8", def.name))
            };
            let filter = HttpFilter::Wasm {
                name: def.name.clone(),
                wasm,
                config: text(&def.config, "config"),
                root_id: def.root_id.clone(),
                vm_config: match &def.vm_config {
                    serde_yaml_ng::Value::Null => None,
                    other => Some(text(other, "vm_config")),
                },
                fail_open: def.failure_policy == host_test::FailurePolicy::FailOpen,
            };
            bootstrap = bootstrap.filter(filter);
        }
        for (name, server) in &self.upstreams {
            bootstrap = bootstrap.cluster(name, server.addr());
        }
        for (name, (_, addr)) in &self.callouts {
            bootstrap = bootstrap.cluster(name, *addr);
        }
        for route in &s.routes {
            bootstrap = bootstrap.header_route(
                &route.header.to_ascii_lowercase(),
                &route.value,
                Route::Cluster(route.cluster.clone()),
            );
        }
        bootstrap.route("/", Route::Cluster(DEFAULT_CLUSTER.to_owned()))
    }

    /// Sets every upstream's answer for the next step, with host-test's
    /// precedence: the step's `upstream`, else the route's answer, else the
    /// scenario's `upstream`, else an empty 200.
    fn script(&self, s: &Scenario, step_upstream: Option<&MockResponse>) {
        for (name, server) in &self.upstreams {
            let route = s.routes.iter().find(|r| &r.cluster == name);
            let response = step_upstream
                .or(route.map(|r| &r.response))
                .or(if name == DEFAULT_CLUSTER {
                    s.upstream.as_ref()
                } else {
                    None
                })
                .cloned()
                .unwrap_or_default();
            server.set_reply(Some(Reply {
                status: response.status.unwrap_or(200),
                headers: response.headers.0.clone(),
                body: response.body.into_bytes(),
                delay: response.delay.0,
                hang: false,
            }));
        }
    }

    fn clear_seen(&self) {
        for server in self.upstreams.values() {
            server.clear_seen();
        }
    }

    /// Requests received since the last clear, with their cluster.
    fn seen(&self) -> Vec<(String, SeenRequest)> {
        self.upstreams
            .iter()
            .flat_map(|(name, server)| server.seen().into_iter().map(|r| (name.clone(), r)))
            .collect()
    }
}

/// A loopback address nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// Sends one scenario request to Envoy on a fresh connection.
fn send(envoy: &Envoy, request: &scenario::RequestDef) -> Response {
    let mut headers: Vec<(String, String)> = Vec::new();
    let has = |name: &str| {
        request
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    for (name, value) in request.headers.iter() {
        match name.to_ascii_lowercase().as_str() {
            ":authority" => headers.push(("host".into(), value.clone())),
            ":scheme" if !has("x-forwarded-proto") => {
                headers.push(("x-forwarded-proto".into(), value.clone()));
            }
            ":scheme" => {}
            other => headers.push((other.to_owned(), value.clone())),
        }
    }
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let raw = encode_request(
        &request.method,
        &request.path,
        &pairs,
        "example.com",
        request.body.as_bytes(),
    );
    Connection::open(envoy.listener())
        .and_then(|mut c| c.send_raw(&raw, request.method == "HEAD"))
        .unwrap_or_else(|e| {
            panic!(
                "{} {} through Envoy: {e}\n{}",
                request.method,
                request.path,
                envoy.log_tail()
            )
        })
}

/// One side's view of an exchange, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observation {
    status: u16,
    response_headers: Vec<(String, String)>,
    body: Vec<u8>,
    upstream: Option<UpstreamSide>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct UpstreamSide {
    cluster: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Observation {
    fn from_host(exchange: &Exchange) -> Self {
        let text = |pairs: &[(Vec<u8>, Vec<u8>)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).to_ascii_lowercase(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect()
        };
        let upstream = exchange.upstream.as_ref().map(|u| {
            let headers = text(&u.headers);
            let pseudo = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let renamed = headers.iter().filter_map(|(k, v)| match k.as_str() {
                ":authority" => Some(("host".to_owned(), v.clone())),
                k if k.starts_with(':') => None,
                _ => Some((k.clone(), v.clone())),
            });
            UpstreamSide {
                cluster: u.cluster.clone(),
                method: pseudo(":method"),
                path: pseudo(":path"),
                headers: normalise(renamed, IGNORED_UPSTREAM),
                body: u.body.clone(),
            }
        });
        Self {
            status: exchange.status,
            response_headers: normalise(
                text(&exchange.headers)
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with(':')),
                IGNORED_RESPONSE,
            ),
            body: exchange.body.clone(),
            upstream,
        }
    }

    fn from_envoy(response: &Response, seen: Vec<(String, SeenRequest)>) -> Self {
        let upstream = match seen.as_slice() {
            [] => None,
            [(cluster, request)] => Some(UpstreamSide {
                cluster: cluster.clone(),
                method: request.method.clone(),
                path: request.path.clone(),
                headers: normalise(request.headers.iter().cloned(), IGNORED_UPSTREAM),
                body: request.body.clone(),
            }),
            many => Some(UpstreamSide {
                cluster: format!(
                    "{} requests: {:?}",
                    many.len(),
                    many.iter().map(|(c, _)| c).collect::<Vec<_>>()
                ),
                method: String::new(),
                path: String::new(),
                headers: Vec::new(),
                body: Vec::new(),
            }),
        };
        Self {
            status: response.status,
            response_headers: normalise(response.headers.iter().cloned(), IGNORED_RESPONSE),
            body: response.body.clone(),
            upstream,
        }
    }

    fn differences(&self, envoy: &Self, step: usize) -> Vec<Difference> {
        let mut out = Vec::new();
        let mut differ = |field: &str, host_test: String, envoy: String| {
            if host_test != envoy {
                out.push(Difference {
                    step,
                    field: field.to_owned(),
                    host_test,
                    envoy,
                });
            }
        };
        differ("status", self.status.to_string(), envoy.status.to_string());
        let (only_host, only_envoy) =
            set_difference(&self.response_headers, &envoy.response_headers);
        differ("response headers", only_host, only_envoy);
        differ(
            "body",
            format!("{:?}", String::from_utf8_lossy(&self.body)),
            format!("{:?}", String::from_utf8_lossy(&envoy.body)),
        );
        match (&self.upstream, &envoy.upstream) {
            (Some(h), Some(e)) => {
                differ("upstream cluster", h.cluster.clone(), e.cluster.clone());
                differ("upstream method", h.method.clone(), e.method.clone());
                differ("upstream path", h.path.clone(), e.path.clone());
                let (only_host, only_envoy) = set_difference(&h.headers, &e.headers);
                differ("upstream headers", only_host, only_envoy);
                differ(
                    "upstream body",
                    format!("{:?}", String::from_utf8_lossy(&h.body)),
                    format!("{:?}", String::from_utf8_lossy(&e.body)),
                );
            }
            (h, e) => differ(
                "upstream called",
                h.as_ref().map(|u| u.cluster.clone()).unwrap_or("no".into()),
                e.as_ref().map(|u| u.cluster.clone()).unwrap_or("no".into()),
            ),
        }
        out
    }
}

/// Lower-cased, without the ignored names, presence-only values masked, sorted.
fn normalise(
    headers: impl Iterator<Item = (String, String)>,
    ignored: &[&str],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| !ignored.contains(&k.as_str()))
        .map(|(k, v)| {
            if PRESENCE_ONLY.contains(&k.as_str()) {
                (k, "<present>".to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    out.sort();
    out
}

/// The headers only in `a` and only in `b`, as text (empty when equal).
fn set_difference(a: &[(String, String)], b: &[(String, String)]) -> (String, String) {
    let show = |from: &[(String, String)], other: &[(String, String)]| {
        let mut rest = other.to_vec();
        let mut only = Vec::new();
        for pair in from {
            match rest.iter().position(|p| p == pair) {
                Some(at) => {
                    rest.remove(at);
                }
                None => only.push(format!("{}: {}", pair.0, pair.1)),
            }
        }
        if only.is_empty() {
            String::new()
        } else {
            format!("[{}]", only.join(", "))
        }
    };
    (show(a, b), show(b, a))
}
