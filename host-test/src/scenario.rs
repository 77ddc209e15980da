//! Scenario files: a YAML description of a filter chain, mocked clusters and
//! upstream, and steps (requests with expectations, clock advances), run on a
//! [`Host`]. The format is documented in host-test's README.
//!
//! Paths in a scenario (`wasm`, `stats_config` files) are tried relative to
//! the working directory first, then relative to the scenario's directory and
//! each of its parents, so the files run from the repo root or from anywhere
//! inside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::host::{FailurePolicy, FilterSpec, Host, Route};
use crate::prometheus::StatsConfig;
use crate::properties::PropertyValue;
use crate::request::{Exchange, Request};
use crate::shared::{ClusterMock, MockResponse};
use crate::yaml_types::{DurationText, HeaderList};

fn one() -> u32 {
    1
}

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The chain, in request order.
    pub filters: Vec<FilterDef>,
    /// VMs per filter (Envoy workers).
    #[serde(default = "one")]
    pub workers: u32,
    /// Mocked callout clusters.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterDef>,
    /// The default upstream answer.
    #[serde(default)]
    pub upstream: Option<MockResponse>,
    /// Routes by request header to other clusters.
    #[serde(default)]
    pub routes: Vec<RouteDef>,
    /// Host-level properties (`source.address`, `node.id`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
    /// Environment variables the filters see through WASI.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Virtual wall-clock start, in seconds since the Unix epoch
    /// (default 2026-01-01T00:00:00Z).
    #[serde(default)]
    pub start_time: Option<u64>,
    /// Seed of WASI `random_get`.
    #[serde(default)]
    pub seed: u64,
    /// Envoy `stats_config` (inline, or a path to a YAML file holding one)
    /// for `host-test metrics` and `prometheus_contains`.
    #[serde(default)]
    pub stats_config: Option<StatsConfigSource>,
    /// Fuel per callback and memory per VM.
    #[serde(default)]
    pub limits: Option<LimitsDef>,
    /// Expect loading the filters to fail with a message containing this.
    #[serde(default)]
    pub expect_load_error: Option<String>,
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// VM limits in a scenario.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDef {
    /// Fuel (about one per Wasm instruction) a callback may use.
    pub fuel_per_callback: Option<u64>,
    /// Largest linear memory of a VM, in bytes.
    pub memory_bytes: Option<usize>,
}

/// A filter of the chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterDef {
    /// Display name.
    pub name: String,
    /// Path to the `.wasm` file.
    pub wasm: String,
    /// Root id.
    #[serde(default)]
    pub root_id: String,
    /// VM id.
    #[serde(default)]
    pub vm_id: String,
    /// Plugin configuration: any YAML value, handed over as JSON (a string
    /// is handed over as it is).
    #[serde(default)]
    pub config: serde_yaml_ng::Value,
    /// VM configuration, as `config`.
    #[serde(default)]
    pub vm_config: serde_yaml_ng::Value,
    /// `fail_closed` (Envoy's default) or `fail_open`.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
}

/// A mocked callout cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterDef {
    /// `:status` (HTTP); 200 when omitted.
    pub status: Option<u16>,
    /// Response headers, or gRPC initial metadata.
    pub headers: HeaderList,
    /// Body, or the gRPC message.
    pub body: String,
    /// Trailers, or gRPC trailing metadata.
    pub trailers: HeaderList,
    /// gRPC status (0 = OK).
    pub grpc_status: u32,
    /// Answer after this much virtual time.
    pub delay: DurationText,
    /// Never answer: the call fails at its timeout.
    pub hang: bool,
    /// Fail at once, as a reset connection.
    pub reset: bool,
}

/// A route by request header.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDef {
    /// Header name.
    pub header: String,
    /// Exact value.
    pub value: String,
    /// Cluster name (`xds.cluster_name`).
    pub cluster: String,
    /// What that cluster answers.
    #[serde(default)]
    pub response: MockResponse,
}

/// A stats config given inline or as a file path.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatsConfigSource {
    /// A path to YAML holding `stats_config:` (or the config itself).
    File(String),
    /// Inline.
    Inline(StatsConfig),
}

/// One step: a request (with optional expectations), a clock advance, or
/// expectations on the host's state alone.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Send this request.
    #[serde(default)]
    pub request: Option<RequestDef>,
    /// The upstream's answer for this request only.
    #[serde(default)]
    pub upstream: Option<MockResponse>,
    /// Move the virtual clock.
    #[serde(default)]
    pub advance: Option<DurationText>,
    /// What must hold afterwards.
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// A request in a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDef {
    /// Method; GET by default.
    #[serde(default = "get")]
    pub method: String,
    /// Path; `/` by default.
    #[serde(default = "slash")]
    pub path: String,
    /// Headers (`:scheme`, `:authority` may be given here).
    #[serde(default)]
    pub headers: HeaderList,
    /// Body.
    #[serde(default)]
    pub body: String,
    /// Trailers.
    #[serde(default)]
    pub trailers: HeaderList,
    /// Worker to run on; round-robin by default.
    #[serde(default)]
    pub worker: Option<u32>,
    /// Send the same request this many times; expectations apply to the last.
    #[serde(default = "one")]
    pub repeat: u32,
}

fn get() -> String {
    "GET".to_owned()
}

fn slash() -> String {
    "/".to_owned()
}

/// Expectations. Every field is optional; each one given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// Response status (0 for a reset stream).
    pub status: Option<u16>,
    /// Response headers that must have exactly these (first) values.
    pub response_headers: HeaderList,
    /// Response headers that must be absent.
    pub response_headers_absent: Vec<String>,
    /// Headers the upstream must have received.
    pub upstream_headers: HeaderList,
    /// Headers the upstream must not have received.
    pub upstream_headers_absent: Vec<String>,
    /// Whether the request reached the upstream.
    pub upstream_called: Option<bool>,
    /// Body the upstream received.
    pub upstream_body: Option<String>,
    /// Cluster the request was routed to.
    pub upstream_cluster: Option<String>,
    /// Exact response body.
    pub body: Option<String>,
    /// Text the response body contains.
    pub body_contains: Option<String>,
    /// Name of the filter that answered locally.
    pub local_reply_by: Option<String>,
    /// Counter or gauge values by metric name.
    pub metrics: BTreeMap<String, i64>,
    /// Every sample of a histogram, in order.
    pub histograms: BTreeMap<String, Vec<u64>>,
    /// Lines the Prometheus exposition contains.
    pub prometheus_contains: Vec<String>,
    /// Texts the filters' logs contain.
    pub logs_contain: Vec<String>,
    /// A filter failure (trap, budget, ...) whose message contains this.
    pub failure: Option<String>,
    /// The stream stalled (nothing resumed a paused filter).
    pub stalled: Option<bool>,
    /// Foreign functions called so far, in order (e.g. `clear_route_cache`).
    pub foreign_calls: Option<Vec<String>>,
    /// Number of callouts made so far.
    pub callouts: Option<usize>,
}

/// A scenario that cannot be run as written: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ScenarioError {
    /// The scenario file.
    pub file: String,
    /// What is wrong, with line and field where known.
    pub message: String,
}

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    /// The expectation, e.g. `response_headers["x-frame-options"]`.
    pub field: String,
    /// What was expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
}

/// The outcome of one step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepOutcome {
    /// 1-based step number.
    pub step: usize,
    /// What the step did, e.g. `GET /api` or `advance 61s`.
    pub label: String,
    /// Expectations that failed.
    pub mismatches: Vec<Mismatch>,
    /// The exchange, for request steps.
    pub exchange: Option<Exchange>,
}

/// The outcome of one scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioOutcome {
    /// The file.
    pub file: String,
    /// Loading the filters failed (unexpectedly, or not as expected).
    pub load_error: Option<Mismatch>,
    /// Per step.
    pub steps: Vec<StepOutcome>,
    /// The Prometheus exposition at the end.
    pub prometheus: String,
    /// Every metric at the end, as the filters defined them.
    pub metrics: Vec<crate::metrics::Metric>,
}

impl ScenarioOutcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.load_error.is_none() && self.steps.iter().all(|s| s.mismatches.is_empty())
    }
}

/// Reads and parses a scenario file.
///
/// # Errors
/// [`ScenarioError`] with the line and field of the problem.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        message: format!("cannot read: {e}"),
    })?;
    // serde_yaml_ng's message names the field path and the line and column.
    let scenario: Scenario = serde_yaml_ng::from_str(&text).map_err(|e| ScenarioError {
        file: file.clone(),
        message: e.to_string(),
    })?;
    for (index, step) in scenario.steps.iter().enumerate() {
        if step.request.is_some() && step.advance.is_some() {
            return Err(ScenarioError {
                file,
                message: format!(
                    "steps[{index}]: a step has either `request` or `advance`, not both"
                ),
            });
        }
        if step.request.is_none() && step.upstream.is_some() {
            return Err(ScenarioError {
                file,
                message: format!("steps[{index}].upstream: only a request step has an upstream"),
            });
        }
    }
    if scenario.filters.is_empty() {
        return Err(ScenarioError {
            file,
            message: "filters: list at least one filter".to_owned(),
        });
    }
    Ok(scenario)
}

/// Finds a path a scenario names (a `.wasm` file, a stats config) from the
/// working directory, else from the scenario's directory or one of its
/// parents (scenarios name `dist/...` from the repository root).
pub fn resolve(scenario: &Path, relative: &str) -> PathBuf {
    let direct = PathBuf::from(relative);
    if direct.is_absolute() || direct.exists() {
        return direct;
    }
    scenario
        .ancestors()
        .skip(1)
        .map(|dir| dir.join(relative))
        .find(|candidate| candidate.exists())
        .unwrap_or(direct)
}

/// The bytes a filter's `config` or `vm_config` hands to the VM: nothing
/// for null, a string as it is, any other value as JSON.
///
/// # Errors
/// A value with no JSON form (a non-string map key, say).
pub fn config_bytes(value: &serde_yaml_ng::Value) -> Result<Vec<u8>, String> {
    match value {
        serde_yaml_ng::Value::Null => Ok(Vec::new()),
        serde_yaml_ng::Value::String(text) => Ok(text.clone().into_bytes()),
        other => serde_json::to_vec(other).map_err(|e| format!("cannot be turned into JSON: {e}")),
    }
}

/// Loads the scenario's stats config.
///
/// # Errors
/// [`ScenarioError`] if the file is missing or not a stats config.
pub fn stats_config(path: &Path, scenario: &Scenario) -> Result<StatsConfig, ScenarioError> {
    match &scenario.stats_config {
        None => Ok(StatsConfig::default()),
        Some(StatsConfigSource::Inline(config)) => Ok(config.clone()),
        Some(StatsConfigSource::File(file)) => {
            read_stats_config(&resolve(path, file)).map_err(|message| ScenarioError {
                file: path.display().to_string(),
                message: format!("stats_config: {message}"),
            })
        }
    }
}

/// Reads a YAML file holding `stats_config:` (an Envoy bootstrap or snippet)
/// or the stats config itself.
///
/// # Errors
/// A message naming the file.
pub fn read_stats_config(file: &Path) -> Result<StatsConfig, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let inner = value.get("stats_config").cloned().unwrap_or(value);
    serde_yaml_ng::from_value(inner).map_err(|e| format!("{}: {e}", file.display()))
}

/// Builds the host a scenario describes.
///
/// # Errors
/// `Err(Ok(message))` when a filter fails to load (an outcome the scenario
/// may expect); `Err(Err(ScenarioError))` for unusable input (a missing file).
fn build(path: &Path, scenario: &Scenario) -> Result<Host, Result<String, ScenarioError>> {
    let file = path.display().to_string();
    let unusable = |message: String| {
        Err(ScenarioError {
            file: file.clone(),
            message,
        })
    };
    let mut host = Host::with_workers(scenario.workers).map_err(|e| unusable(e.to_string()))?;
    host.set_seed(scenario.seed);
    if let Some(start) = scenario.start_time {
        host.set_wall_clock(start.saturating_mul(1_000_000_000));
    }
    if let Some(limits) = scenario.limits {
        let defaults = crate::vm::VmLimits::default();
        host.set_limits(crate::vm::VmLimits {
            fuel_per_callback: limits
                .fuel_per_callback
                .unwrap_or(defaults.fuel_per_callback),
            memory_bytes: limits.memory_bytes.unwrap_or(defaults.memory_bytes),
        });
    }
    for (key, value) in &scenario.env {
        host.set_env(key, value);
    }
    for (key, value) in &scenario.properties {
        host.set_property(key, value.clone());
    }
    for (name, def) in &scenario.clusters {
        let response = MockResponse {
            status: def.status,
            headers: def.headers.clone(),
            raw_headers: Vec::new(),
            body: def.body.clone(),
            trailers: def.trailers.clone(),
            delay: DurationText::default(),
        };
        let mock = ClusterMock {
            response,
            grpc_status: def.grpc_status,
            delay: def.delay.0,
            hang: def.hang,
            reset: def.reset,
            message: None,
        };
        host.set_cluster(name, mock);
    }
    if let Some(upstream) = &scenario.upstream {
        host.set_upstream(upstream.clone());
    }
    for route in &scenario.routes {
        host.add_route(Route {
            header: route.header.to_ascii_lowercase(),
            value: route.value.clone(),
            cluster: route.cluster.clone(),
            response: route.response.clone(),
        });
    }
    for (index, def) in scenario.filters.iter().enumerate() {
        let wasm = resolve(path, &def.wasm);
        if !wasm.exists() {
            return Err(unusable(format!(
                "filters[{index}].wasm: {} does not exist (run `make build fixtures` to build the filters)",
                def.wasm
            )));
        }
        let configuration = config_bytes(&def.config)
            .map_err(|e| unusable(format!("filters[{index}].config: {e}")))?;
        let vm_configuration = config_bytes(&def.vm_config)
            .map_err(|e| unusable(format!("filters[{index}].vm_config: {e}")))?;
        let spec = FilterSpec {
            root_id: def.root_id.clone(),
            vm_id: def.vm_id.clone(),
            configuration,
            vm_configuration,
            failure_policy: def.failure_policy,
            ..FilterSpec::file(&def.name, &wasm)
        };
        host.add_filter(spec).map_err(|e| Ok(e.to_string()))?;
    }
    Ok(host)
}

/// Runs a scenario file.
///
/// # Errors
/// [`ScenarioError`] for unusable input: unreadable or invalid YAML, a
/// missing `.wasm` file, a bad stats config.
pub fn run_file(path: &Path) -> Result<ScenarioOutcome, ScenarioError> {
    let scenario = load(path)?;
    run_loaded(path, &scenario)
}

fn run_loaded(path: &Path, scenario: &Scenario) -> Result<ScenarioOutcome, ScenarioError> {
    let stats = stats_config(path, scenario)?;
    let file = path.display().to_string();
    let mut outcome = ScenarioOutcome {
        file: file.clone(),
        load_error: None,
        steps: Vec::new(),
        prometheus: String::new(),
        metrics: Vec::new(),
    };
    let mut host = match build(path, scenario) {
        Ok(host) => host,
        Err(Err(unusable)) => return Err(unusable),
        Err(Ok(message)) => {
            let expected = scenario.expect_load_error.clone();
            if expected
                .as_ref()
                .is_none_or(|e| !message.contains(e.as_str()))
            {
                outcome.load_error = Some(Mismatch {
                    field: "expect_load_error".to_owned(),
                    expected: expected.unwrap_or_else(|| "the filters load".to_owned()),
                    actual: message,
                });
            }
            return Ok(outcome);
        }
    };
    if let Some(expected) = &scenario.expect_load_error {
        outcome.load_error = Some(Mismatch {
            field: "expect_load_error".to_owned(),
            expected: expected.clone(),
            actual: "the filters loaded".to_owned(),
        });
        return Ok(outcome);
    }
    for (index, step) in scenario.steps.iter().enumerate() {
        let mut step_outcome = StepOutcome {
            step: index + 1,
            label: String::new(),
            mismatches: Vec::new(),
            exchange: None,
        };
        if let Some(advance) = step.advance {
            host.advance(advance.0);
            step_outcome.label = format!("advance {:?}", advance.0);
        }
        if let Some(def) = &step.request {
            step_outcome.label = format!("{} {}", def.method, def.path);
            let mut exchange = Exchange::default();
            for _ in 0..def.repeat.max(1) {
                let mut request = Request::new(&def.method, &def.path).body(&def.body);
                for (name, value) in def.headers.iter() {
                    request = request.header(name, value);
                }
                for (name, value) in def.trailers.iter() {
                    request = request.trailer(name, value);
                }
                request.upstream = step.upstream.clone();
                request.worker = def.worker;
                exchange = host.send(request);
            }
            step_outcome.exchange = Some(exchange);
        }
        if step_outcome.label.is_empty() {
            step_outcome.label = "check".to_owned();
        }
        let expect = step.expect.clone().unwrap_or_default();
        step_outcome.mismatches =
            crate::expect::check(&expect, step_outcome.exchange.as_ref(), &host, &stats);
        outcome.steps.push(step_outcome);
    }
    outcome.metrics = host.metrics();
    outcome.prometheus =
        crate::prometheus::render(&outcome.metrics, &stats).map_err(|e| ScenarioError {
            file,
            message: format!("stats_config: {e}"),
        })?;
    Ok(outcome)
}

/// Runs a scenario and renders its metrics with `config` instead of its own.
///
/// # Errors
/// As [`run_file`], and for an invalid regex in `config`.
pub fn metrics_with(path: &Path, config: &StatsConfig) -> Result<String, ScenarioError> {
    let mut scenario = load(path)?;
    scenario.stats_config = Some(StatsConfigSource::Inline(config.clone()));
    let outcome = run_loaded(path, &scenario)?;
    Ok(outcome.prometheus)
}
