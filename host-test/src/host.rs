//! The host: filters in a chain, one VM per filter per worker, and HTTP
//! streams driven through them the way Envoy's HTTP connection manager does.
//!
//! Envoy behaviours this reproduces, and the choices made where the spec is
//! silent:
//! - Requests pass filters in order, responses in reverse. Headers pass the
//!   whole chain before the body starts (Envoy iterates headers first).
//! - A pause on any callback stops iteration until that filter calls
//!   `proxy_continue_stream`; proxy-wasm-cpp-host turns a pause on headers
//!   into StopAllIteration, so the body waits too.
//! - A local reply stops the request path at once, whatever the callback
//!   returned, and runs the response path from the filter that replied back
//!   to the first: the replier sees its own reply, the filters after it see
//!   neither its request nor its response headers, only `on_log` and
//!   `on_done` at the end (every filter's context exists from the start of
//!   the stream; measured on Envoy 1.40, `e2e::differential`).
//!   A local reply sent on the response path replaces the response and goes
//!   on through the filters not yet run.
//! - Routing happens when the request leaves the last filter, so a header a
//!   filter changed re-routes (as measured on Envoy 1.40 with Wasm filters).
//! - Header values from the network (client, upstream, callout clusters)
//!   lose leading and trailing whitespace, as in Envoy's codecs.
//! - A failed VM (trap, budget, memory, proc_exit) is never called again.
//!   Under `FailClosed` (Envoy's default failure policy) its streams get a
//!   503 `wasm_fail_stream`; under `FailOpen` the filter is skipped.
//! - Stream end runs `on_log`, `on_done`, `on_delete` for each filter in
//!   order (Envoy: access log at completion, then filter destruction).
//! - A stream that is paused with nothing left to resume it is answered 504
//!   `host_test_stalled` after `stream_timeout` of virtual time, and the
//!   exchange says which filter held it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use wasmtime::InstancePre;

use crate::abi::types::{Direction, LogLevel};
use crate::error::{CallbackFailure, HostError};
use crate::metrics::Metric;
use crate::properties::{self, PropertyValue};
use crate::request::{Exchange, LocalReplyInfo, Request, UpstreamRequest};
use crate::runtime::Runtime;
use crate::shared::{
    CalloutKind, CalloutRecord, ClusterMock, Effect, ForeignCall, LocalReply, LogRecord,
    MockResponse, Pairs, PendingCallout, Shared, StreamData, StreamId,
};
use crate::vm::{Action, FilterInfo, StreamCallback, Vm, VmLimits, VmState};
use crate::yaml_types::HeaderList;

/// What Envoy does with a filter whose VM failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Answer 503 (Envoy's default).
    #[default]
    FailClosed,
    /// Skip the filter.
    FailOpen,
}

/// Where a filter's module comes from.
#[derive(Debug, Clone)]
pub enum WasmSource {
    /// A `.wasm` file.
    File(PathBuf),
    /// Module bytes.
    Bytes(Vec<u8>),
}

/// One filter of the chain.
#[derive(Debug, Clone)]
pub struct FilterSpec {
    /// Display name (Envoy's plugin name).
    pub name: String,
    /// The module.
    pub wasm: WasmSource,
    /// Root id.
    pub root_id: String,
    /// VM id; VMs with the same id share data and queues.
    pub vm_id: String,
    /// Plugin configuration (JSON bytes).
    pub configuration: Vec<u8>,
    /// VM configuration.
    pub vm_configuration: Vec<u8>,
    /// What to do once the VM failed.
    pub failure_policy: FailurePolicy,
}

impl FilterSpec {
    /// A filter from a `.wasm` file, with an empty configuration.
    pub fn file(name: &str, path: impl AsRef<Path>) -> Self {
        Self::new(name, WasmSource::File(path.as_ref().to_path_buf()))
    }

    /// A filter from module bytes.
    pub fn bytes(name: &str, bytes: Vec<u8>) -> Self {
        Self::new(name, WasmSource::Bytes(bytes))
    }

    fn new(name: &str, wasm: WasmSource) -> Self {
        Self {
            name: name.to_owned(),
            wasm,
            root_id: String::new(),
            vm_id: String::new(),
            configuration: Vec::new(),
            vm_configuration: Vec::new(),
            failure_policy: FailurePolicy::default(),
        }
    }

    /// Sets the plugin configuration.
    #[must_use]
    pub fn config(mut self, configuration: impl Into<Vec<u8>>) -> Self {
        self.configuration = configuration.into();
        self
    }

    /// Sets the VM configuration, read in `on_vm_start`.
    #[must_use]
    pub fn vm_config(mut self, configuration: impl Into<Vec<u8>>) -> Self {
        self.vm_configuration = configuration.into();
        self
    }

    /// Sets the root id.
    #[must_use]
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_owned();
        self
    }

    /// Sets the failure policy.
    #[must_use]
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }
}

struct FilterSlot {
    info: Rc<FilterInfo>,
    vms: Vec<Vm>,
    policy: FailurePolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Headers,
    Body,
    Trailers,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Request,
    /// The request left the chain; the upstream answers after its delay.
    Upstream,
    Response,
    Complete,
}

enum Step {
    Paused,
    Finished,
    Restart,
}

/// Host-side progress of one stream through the chain.
struct Progress {
    worker: u32,
    contexts: Vec<Option<u32>>,
    phase: Phase,
    stage: Stage,
    position: usize,
    paused_at: Option<usize>,
    upstream_override: Option<MockResponse>,
    upstream: Option<UpstreamRequest>,
    local_reply: Option<LocalReplyInfo>,
    pending_local: Option<(usize, LocalReply)>,
    pending_continue: Vec<(usize, Direction)>,
    reset: bool,
    stalled: Option<String>,
    failures: Vec<CallbackFailure>,
    upstream_due: Option<(u64, MockResponse)>,
}

impl Progress {
    fn direction(&self) -> Direction {
        if self.phase == Phase::Response {
            Direction::Response
        } else {
            Direction::Request
        }
    }
}

/// A route: requests whose header matches go to `cluster`, answered by `response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Header name to match (lower case).
    pub header: String,
    /// Exact value to match.
    pub value: String,
    /// Cluster name, visible as `xds.cluster_name`.
    pub cluster: String,
    /// What that cluster answers.
    pub response: MockResponse,
}

/// A simulated Envoy: filters, workers, mocked clusters and a virtual clock.
///
/// # Examples
/// ```no_run
/// use host_test::{FilterSpec, Host, Request};
/// let mut host = Host::new().unwrap();
/// host.add_filter(FilterSpec::file("headers", "dist/filters/security_headers.wasm").config(r#"{"profile":"owasp"}"#)).unwrap();
/// let exchange = host.send(Request::get("/"));
/// assert_eq!(exchange.status, 200);
/// assert!(exchange.header("x-content-type-options").is_some());
/// ```
pub struct Host {
    runtime: Runtime,
    shared: Rc<RefCell<Shared>>,
    filters: Vec<FilterSlot>,
    workers: u32,
    limits: VmLimits,
    streams: BTreeMap<StreamId, Progress>,
    finished: HashMap<StreamId, Exchange>,
    next_stream: StreamId,
    next_worker: u32,
    upstream: MockResponse,
    default_cluster: String,
    routes: Vec<Route>,
    host_events: VecDeque<Effect>,
    failures: Vec<CallbackFailure>,
    roots_done: HashSet<(usize, u32)>,
    stream_timeout: Duration,
}

impl Host {
    /// A host with one worker and the shared runtime.
    ///
    /// # Errors
    /// If the runtime cannot be created.
    pub fn new() -> Result<Self, HostError> {
        Self::with_workers(1)
    }

    /// A host with `workers` VMs per filter (Envoy's `--concurrency`).
    ///
    /// # Errors
    /// If the runtime cannot be created.
    pub fn with_workers(workers: u32) -> Result<Self, HostError> {
        let shared = Shared {
            properties: properties::defaults(),
            ..Shared::new()
        };
        Ok(Self {
            runtime: Runtime::shared()?,
            shared: Rc::new(RefCell::new(shared)),
            filters: Vec::new(),
            workers: workers.max(1),
            limits: VmLimits::default(),
            streams: BTreeMap::new(),
            finished: HashMap::new(),
            next_stream: 0,
            next_worker: 0,
            upstream: MockResponse {
                status: Some(200),
                ..MockResponse::default()
            },
            default_cluster: "upstream".to_owned(),
            routes: Vec::new(),
            host_events: VecDeque::new(),
            failures: Vec::new(),
            roots_done: HashSet::new(),
            stream_timeout: Duration::from_secs(60),
        })
    }

    /// Sets the virtual wall clock (nanoseconds since the Unix epoch), e.g. to
    /// replay a published token whose `exp` lies in the past. The monotonic
    /// clock keeps running from where it was.
    pub fn set_wall_clock(&mut self, unix_ns: u64) {
        let mut shared = self.shared.borrow_mut();
        let monotonic = shared.clock.monotonic_ns();
        shared.clock.now_ns = unix_ns;
        shared.clock.start_ns = unix_ns.saturating_sub(monotonic);
    }

    /// Sets the limits for VMs started after this call.
    pub fn set_limits(&mut self, limits: VmLimits) {
        self.limits = limits;
    }

    /// Seeds WASI `random_get`.
    pub fn set_seed(&mut self, seed: u64) {
        self.shared.borrow_mut().rng = crate::shared::SeededRng::new(seed);
    }

    /// Sets the level below which guest logs are dropped.
    pub fn set_log_level(&mut self, level: LogLevel) {
        self.shared.borrow_mut().log_level = level;
    }

    /// Sets an environment variable the guests see through WASI.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.shared
            .borrow_mut()
            .env
            .push((key.to_owned(), value.to_owned()));
    }

    /// Sets a host-level property (`source.address`, `node.id`, ...).
    pub fn set_property(&mut self, path: &str, value: PropertyValue) {
        self.shared
            .borrow_mut()
            .properties
            .insert(path.to_owned(), value);
    }

    /// Sets a mocked cluster for callouts.
    pub fn set_cluster(&mut self, name: &str, mock: ClusterMock) {
        self.shared
            .borrow_mut()
            .clusters
            .insert(name.to_owned(), mock);
    }

    /// Makes cluster `name` answer each callout with what `responder`
    /// computes from it (a [`crate::shared::Responder`]); it wins over a
    /// [`Host::set_cluster`] mock of the same name. The answer's `delay`,
    /// `hang` and `reset` apply as for a fixed mock.
    pub fn set_cluster_responder(&mut self, name: &str, responder: crate::shared::Responder) {
        self.shared
            .borrow_mut()
            .responders
            .0
            .insert(name.to_owned(), responder);
    }

    /// Sets the default upstream answer.
    pub fn set_upstream(&mut self, response: MockResponse) {
        self.upstream = response;
    }

    /// Installs (or with `None` removes) a hook that may write shared data
    /// between a guest's `proxy_get_shared_data` and its next host call, so
    /// tests can race a filter's compare-and-swap; see
    /// [`SharedDataHook`](crate::shared::SharedDataHook).
    pub fn set_shared_data_hook(&mut self, hook: Option<crate::shared::SharedDataHook>) {
        self.shared.borrow_mut().shared_data_hook.0 = hook;
    }

    /// Adds a route by request header to a named cluster.
    pub fn add_route(&mut self, route: Route) {
        self.routes.push(route);
    }

    /// Virtual time after which a stream that stopped progressing is answered 504.
    pub fn set_stream_timeout(&mut self, timeout: Duration) {
        self.stream_timeout = timeout;
    }

    /// Loads a filter at the end of the chain and starts its VMs.
    ///
    /// # Errors
    /// A [`HostError`] naming the filter: unreadable file, not Wasm, wrong
    /// ABI, missing import, a rejected configuration or a failing start.
    pub fn add_filter(&mut self, spec: FilterSpec) -> Result<(), HostError> {
        let bytes = match &spec.wasm {
            WasmSource::Bytes(bytes) => bytes.clone(),
            WasmSource::File(path) => std::fs::read(path).map_err(|source| HostError::Read {
                filter: spec.name.clone(),
                path: path.clone(),
                source,
            })?,
        };
        let pre: InstancePre<VmState> = self.runtime.prepare(&spec.name, &bytes)?;
        let info = Rc::new(FilterInfo {
            index: self.filters.len(),
            name: spec.name.clone(),
            root_id: spec.root_id.clone(),
            vm_id: spec.vm_id.clone(),
            configuration: spec.configuration.clone(),
            vm_configuration: spec.vm_configuration.clone(),
        });
        let mut vms = Vec::with_capacity(self.workers as usize);
        for worker in 0..self.workers {
            vms.push(Vm::start(
                &pre,
                self.shared.clone(),
                info.clone(),
                worker,
                self.limits,
            )?);
        }
        self.filters.push(FilterSlot {
            info,
            vms,
            policy: spec.failure_policy,
        });
        self.collect_effects();
        self.settle();
        Ok(())
    }

    /// Sends a request, runs it to completion (advancing virtual time to
    /// deliver callouts and ticks while it waits), and returns the outcome.
    pub fn send(&mut self, request: Request) -> Exchange {
        let id = self.start(request);
        self.wait(id)
    }

    /// Starts a request and runs it until it completes or waits; collect it
    /// with [`Host::wait`] or [`Host::take`].
    pub fn start(&mut self, request: Request) -> StreamId {
        let id = self.next_stream;
        self.next_stream += 1;
        let worker = match request.worker {
            Some(worker) => worker % self.workers,
            None => {
                let worker = self.next_worker;
                self.next_worker = (self.next_worker + 1) % self.workers;
                worker
            }
        };
        let now = self.shared.borrow().clock.now_ns;
        let data = StreamData {
            worker,
            request_headers: normalize_request_headers(request.headers, id),
            request_body: request.body,
            request_trailers: request.trailers,
            start_ns: now,
            ..StreamData::default()
        };
        self.shared.borrow_mut().streams.insert(id, data);
        let mut progress = Progress {
            worker,
            contexts: Vec::with_capacity(self.filters.len()),
            phase: Phase::Request,
            stage: Stage::Headers,
            position: 0,
            paused_at: None,
            upstream_override: request.upstream,
            upstream: None,
            local_reply: None,
            pending_local: None,
            pending_continue: Vec::new(),
            reset: false,
            stalled: None,
            failures: Vec::new(),
            upstream_due: None,
        };
        for slot in &mut self.filters {
            let Some(vm) = slot.vms.get_mut(worker as usize) else {
                continue;
            };
            let context = if vm.failure.is_some() {
                None
            } else {
                match vm.create_http_context(id) {
                    Ok(context) => Some(context),
                    Err(failure) => {
                        progress.failures.push(failure);
                        None
                    }
                }
            };
            progress.contexts.push(context);
        }
        self.streams.insert(id, progress);
        self.collect_effects();
        self.drive(id);
        self.settle();
        id
    }

    /// Waits for stream `id`: runs due events, advancing virtual time, until
    /// it completes; a stream nothing will resume is answered 504 after the
    /// stream timeout.
    pub fn wait(&mut self, id: StreamId) -> Exchange {
        let deadline =
            self.now_ns() + u64::try_from(self.stream_timeout.as_nanos()).unwrap_or(u64::MAX);
        loop {
            if let Some(exchange) = self.finished.remove(&id) {
                return exchange;
            }
            if !self.streams.contains_key(&id) {
                return Exchange::default();
            }
            match self.next_timed_event() {
                Some((due, event)) if due <= deadline => self.run_timed_event(due, event),
                _ => {
                    self.set_clock(deadline);
                    self.stall(id);
                }
            }
        }
    }

    /// The outcome of a finished stream started with [`Host::start`].
    pub fn take(&mut self, id: StreamId) -> Option<Exchange> {
        self.finished.remove(&id)
    }

    /// Moves the virtual clock forward, delivering callouts and ticks that
    /// fall due on the way, in time order.
    pub fn advance(&mut self, by: Duration) {
        let target = self
            .now_ns()
            .saturating_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX));
        while let Some((due, event)) = self.next_timed_event().filter(|(due, _)| *due <= target) {
            self.run_timed_event(due, event);
        }
        self.set_clock(target);
    }

    /// Current virtual wall time, in nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.shared.borrow().clock.now_ns
    }

    /// Every metric the filters defined.
    pub fn metrics(&self) -> Vec<Metric> {
        self.shared.borrow().metrics.all().to_vec()
    }

    /// A counter or gauge's value, by name.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.shared.borrow().metrics.by_name(name).map(|m| m.value)
    }

    /// Everything the filters logged.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.shared.borrow().logs.clone()
    }

    /// Every callout made.
    pub fn callouts(&self) -> Vec<CalloutRecord> {
        self.shared.borrow().callouts.clone()
    }

    /// Every foreign-function call made.
    pub fn foreign_calls(&self) -> Vec<ForeignCall> {
        self.shared.borrow().foreign_calls.clone()
    }

    /// A shared-data value and its CAS, for `vm_id` "".
    pub fn shared_data(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        let shared = self.shared.borrow();
        shared
            .shared_data
            .get(&(String::new(), key.to_vec()))
            .map(|v| (v.value.clone(), v.cas))
    }

    /// Failures outside any stream (ticks, queues, callouts of root contexts).
    pub fn failures(&self) -> &[CallbackFailure] {
        &self.failures
    }

    /// The first failure of filter `index` on `worker`, if its VM is dead.
    pub fn vm_failure(&self, index: usize, worker: u32) -> Option<&CallbackFailure> {
        self.filters
            .get(index)?
            .vms
            .get(worker as usize)?
            .failure
            .as_ref()
    }

    /// Shuts the root contexts down (`on_done`, waiting for `proxy_done` where
    /// a root asks for time) and returns the filters, by name, that were done.
    pub fn shutdown(&mut self) -> Vec<String> {
        for filter in 0..self.filters.len() {
            for worker in 0..self.workers {
                let Some(vm) = self.vm_mut(filter, worker) else {
                    continue;
                };
                match vm.root_done() {
                    Ok(true) => {
                        self.roots_done.insert((filter, worker));
                    }
                    Ok(false) => {}
                    Err(failure) => self.failures.push(failure),
                }
                self.collect_effects();
            }
        }
        self.settle();
        let mut done: Vec<String> = self
            .filters
            .iter()
            .filter(|slot| {
                (0..self.workers).all(|w| self.roots_done.contains(&(slot.info.index, w)))
            })
            .map(|slot| slot.info.name.clone())
            .collect();
        done.dedup();
        done
    }

    fn vm_mut(&mut self, filter: usize, worker: u32) -> Option<&mut Vm> {
        self.filters.get_mut(filter)?.vms.get_mut(worker as usize)
    }

    fn set_clock(&mut self, ns: u64) {
        let mut shared = self.shared.borrow_mut();
        shared.clock.now_ns = shared.clock.now_ns.max(ns);
    }

    // ---- effects and wake-ups -------------------------------------------

    /// Moves what the last callback asked for to where it is acted on.
    fn collect_effects(&mut self) {
        let effects = std::mem::take(&mut self.shared.borrow_mut().effects);
        for effect in effects {
            match effect {
                Effect::Continue {
                    stream,
                    filter,
                    direction,
                } => {
                    if let Some(p) = self.streams.get_mut(&stream) {
                        p.pending_continue.push((filter, direction));
                    }
                }
                Effect::Close { stream } => {
                    if let Some(p) = self.streams.get_mut(&stream) {
                        p.reset = true;
                    }
                }
                Effect::LocalResponse {
                    stream,
                    filter,
                    reply,
                } => {
                    if let Some(p) = self.streams.get_mut(&stream) {
                        // The first reply wins, as Envoy ignores a second one.
                        if p.pending_local.is_none() && p.local_reply.is_none() {
                            p.pending_local = Some((filter, reply));
                        }
                    }
                }
                other @ (Effect::QueueReady { .. } | Effect::Done { .. }) => {
                    self.host_events.push_back(other)
                }
            }
        }
    }

    /// Runs immediate host events and wakes streams until nothing is left.
    fn settle(&mut self) {
        loop {
            if let Some(event) = self.host_events.pop_front() {
                self.run_host_event(event);
                continue;
            }
            let ready: Vec<StreamId> = self
                .streams
                .iter()
                .filter(|(_, p)| {
                    p.reset
                        || p.pending_local.is_some()
                        || p.paused_at.is_some_and(|_| !p.pending_continue.is_empty())
                })
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                return;
            }
            for id in ready {
                self.wake(id);
            }
        }
    }

    fn run_host_event(&mut self, event: Effect) {
        match event {
            Effect::QueueReady {
                owner: (filter, worker, _root),
                token,
            } => {
                if let Some(vm) = self.vm_mut(filter, worker) {
                    if let Err(failure) = vm.queue_ready(token) {
                        self.record_failure(filter, worker, failure);
                    }
                }
                self.collect_effects();
            }
            Effect::Done { filter, worker } => {
                self.roots_done.insert((filter, worker));
            }
            _ => {}
        }
    }

    fn wake(&mut self, id: StreamId) {
        let n = self.filters.len();
        let Some(p) = self.streams.get_mut(&id) else {
            return;
        };
        if p.reset {
            self.complete(id);
            return;
        }
        if let Some((filter, reply)) = p.pending_local.take() {
            let position = p.paused_at.unwrap_or(p.position);
            let direction = p.direction();
            self.apply_local_reply(id, filter, reply, direction, position);
            self.drive(id);
            return;
        }
        let direction = p.direction();
        let continues = std::mem::take(&mut p.pending_continue);
        if let Some(position) = p.paused_at {
            let filter = filter_at(direction, position, n);
            if continues
                .iter()
                .any(|(f, d)| *f == filter && *d == direction)
            {
                p.paused_at = None;
                p.position = position + 1;
                self.drive(id);
            }
        }
    }

    // ---- the chain ------------------------------------------------------

    fn drive(&mut self, id: StreamId) {
        loop {
            let Some(phase) = self.streams.get(&id).map(|p| p.phase) else {
                return;
            };
            let step = match phase {
                Phase::Complete => Step::Finished,
                Phase::Upstream => Step::Paused,
                _ => self.run_direction(id),
            };
            match (phase, step) {
                (_, Step::Paused) => return,
                (_, Step::Restart) => continue,
                (Phase::Request, Step::Finished) => self.call_upstream(id),
                (Phase::Upstream, Step::Finished) => return,
                (_, Step::Finished) => {
                    self.complete(id);
                    return;
                }
            }
        }
    }

    fn run_direction(&mut self, id: StreamId) -> Step {
        let n = self.filters.len();
        loop {
            let Some(p) = self.streams.get_mut(&id) else {
                return Step::Finished;
            };
            if p.reset {
                p.phase = Phase::Complete;
                return Step::Restart;
            }
            let direction = p.direction();
            let (stage, position, worker) = (p.stage, p.position, p.worker);
            if stage == Stage::Done {
                return Step::Finished;
            }
            let (count, has_body, has_trailers) = self.stage_sizes(id, direction, stage);
            let Some(p) = self.streams.get_mut(&id) else {
                return Step::Finished;
            };
            let applies = match stage {
                Stage::Headers => true,
                Stage::Body => has_body,
                Stage::Trailers => has_trailers,
                Stage::Done => false,
            };
            if position >= n || !applies {
                p.stage = next_stage(stage);
                p.position = 0;
                continue;
            }
            let filter = filter_at(direction, position, n);
            let context = p.contexts.get(filter).copied().flatten();
            let Some(slot) = self.filters.get_mut(filter) else {
                return Step::Finished;
            };
            let policy = slot.policy;
            let Some(vm) = slot.vms.get_mut(worker as usize) else {
                return Step::Finished;
            };
            if vm.failure.is_some() {
                // A dead VM is never called again (Envoy marks it failed).
                if policy == FailurePolicy::FailClosed && direction == Direction::Request {
                    self.apply_local_reply(id, filter, fail_stream_reply(), direction, position);
                    return Step::Restart;
                }
                if let Some(p) = self.streams.get_mut(&id) {
                    p.position += 1;
                }
                continue;
            }
            let Some(context) = context else {
                if let Some(p) = self.streams.get_mut(&id) {
                    p.position += 1;
                }
                continue;
            };
            let callback = callback_for(direction, stage);
            let end_of_stream = match stage {
                Stage::Headers => !has_body && !has_trailers,
                Stage::Body => !has_trailers,
                _ => true,
            };
            let result = vm.stream_callback(callback, context, count, end_of_stream);
            self.collect_effects();
            let action = match result {
                Ok(action) => action,
                Err(failure) => {
                    self.record_failure(filter, worker, failure);
                    Action::Continue
                }
            };
            let Some(p) = self.streams.get_mut(&id) else {
                return Step::Finished;
            };
            if p.reset {
                p.phase = Phase::Complete;
                return Step::Restart;
            }
            if let Some((from, reply)) = p.pending_local.take() {
                self.apply_local_reply(id, from, reply, direction, position);
                return Step::Restart;
            }
            let resumed = p
                .pending_continue
                .iter()
                .any(|(f, d)| *f == filter && *d == direction);
            p.pending_continue
                .retain(|(f, d)| !(*f == filter && *d == direction));
            if action == Action::Pause && !resumed {
                p.paused_at = Some(position);
                return Step::Paused;
            }
            p.position = position + 1;
        }
    }

    /// (count for the callback, has body, has trailers) of a direction.
    fn stage_sizes(&self, id: StreamId, direction: Direction, stage: Stage) -> (u32, bool, bool) {
        let shared = self.shared.borrow();
        let Some(data) = shared.streams.get(&id) else {
            return (0, false, false);
        };
        let (headers, body, trailers) = match direction {
            Direction::Request => (
                &data.request_headers,
                &data.request_body,
                &data.request_trailers,
            ),
            Direction::Response => (
                &data.response_headers,
                &data.response_body,
                &data.response_trailers,
            ),
        };
        let count = match stage {
            Stage::Headers => headers.len(),
            Stage::Body => body.len(),
            Stage::Trailers => trailers.len(),
            Stage::Done => 0,
        };
        (count as u32, !body.is_empty(), !trailers.is_empty())
    }

    fn apply_local_reply(
        &mut self,
        id: StreamId,
        filter: usize,
        reply: LocalReply,
        from: Direction,
        position: usize,
    ) {
        let filter_name = self
            .filters
            .get(filter)
            .map(|s| s.info.name.clone())
            .unwrap_or_default();
        {
            let mut shared = self.shared.borrow_mut();
            if let Some(data) = shared.streams.get_mut(&id) {
                let mut headers: Pairs =
                    vec![(b":status".to_vec(), reply.status.to_string().into_bytes())];
                let has = |name: &[u8]| reply.headers.iter().any(|(k, _)| k == name);
                if !reply.body.is_empty() {
                    headers.push((
                        b"content-length".to_vec(),
                        reply.body.len().to_string().into_bytes(),
                    ));
                    if !has(b"content-type") {
                        headers.push((b"content-type".to_vec(), b"text/plain".to_vec()));
                    }
                }
                headers.extend(reply.headers.iter().cloned());
                data.response_headers = headers;
                data.response_body = reply.body.clone();
                data.response_trailers = Vec::new();
                data.has_response = true;
                data.response_details = reply.details.clone();
            }
        }
        let Some(p) = self.streams.get_mut(&id) else {
            return;
        };
        p.local_reply = Some(LocalReplyInfo {
            filter: filter_name,
            status: reply.status,
            details: reply.details,
        });
        p.paused_at = None;
        p.pending_continue.clear();
        p.upstream_due = None;
        p.stage = Stage::Headers;
        match from {
            Direction::Request => {
                // Response positions count from the last filter: start at
                // the replier, so the filters after it are skipped.
                p.phase = Phase::Response;
                p.position = self.filters.len().saturating_sub(1).saturating_sub(filter);
            }
            Direction::Response => p.position = position + 1,
        }
    }

    /// The router: picks the cluster by the request as the chain left it,
    /// records what the upstream receives, and schedules its answer.
    fn call_upstream(&mut self, id: StreamId) {
        let Some(p) = self.streams.get_mut(&id) else {
            return;
        };
        let override_response = p.upstream_override.take();
        let now = {
            let mut shared = self.shared.borrow_mut();
            let now = shared.clock.now_ns;
            let Some(data) = shared.streams.get_mut(&id) else {
                return;
            };
            let header = |name: &str| {
                data.request_headers
                    .iter()
                    .find(|(k, _)| k.as_slice() == name.as_bytes())
                    .map(|(_, v)| v.clone())
            };
            let route = self
                .routes
                .iter()
                .find(|r| header(&r.header).is_some_and(|v| v == r.value.as_bytes()));
            let cluster = route.map_or_else(|| self.default_cluster.clone(), |r| r.cluster.clone());
            let response = override_response
                .or_else(|| route.map(|r| r.response.clone()))
                .unwrap_or_else(|| self.upstream.clone());
            data.cluster = cluster.clone();
            p.upstream = Some(UpstreamRequest {
                cluster,
                headers: data.request_headers.clone(),
                body: data.request_body.clone(),
                trailers: data.request_trailers.clone(),
            });
            let due =
                now.saturating_add(u64::try_from(response.delay.0.as_nanos()).unwrap_or(u64::MAX));
            p.upstream_due = Some((due, response));
            now
        };
        p.phase = Phase::Upstream;
        if p.upstream_due.as_ref().is_some_and(|(due, _)| *due <= now) {
            self.upstream_answers(id);
        }
    }

    /// The upstream's answer arrives: the response path starts.
    fn upstream_answers(&mut self, id: StreamId) {
        let Some(p) = self.streams.get_mut(&id) else {
            return;
        };
        let Some((_, response)) = p.upstream_due.take() else {
            return;
        };
        let mut shared = self.shared.borrow_mut();
        let Some(data) = shared.streams.get_mut(&id) else {
            return;
        };
        let mut headers: Pairs = vec![(
            b":status".to_vec(),
            response.status.unwrap_or(200).to_string().into_bytes(),
        )];
        headers.extend(to_pairs(&response.headers));
        headers.extend(response.raw_headers);
        data.response_headers = headers;
        data.response_body = response.body.into_bytes();
        data.response_trailers = to_pairs(&response.trailers);
        data.has_response = true;
        data.response_details = "via_upstream".to_owned();
        p.phase = Phase::Response;
        p.stage = Stage::Headers;
        p.position = 0;
    }

    fn complete(&mut self, id: StreamId) {
        let Some(mut p) = self.streams.remove(&id) else {
            return;
        };
        for (filter, context) in p.contexts.iter().enumerate() {
            let Some(context) = *context else { continue };
            let Some(vm) = self.vm_mut(filter, p.worker) else {
                continue;
            };
            if vm.failure.is_some() {
                continue;
            }
            if let Err(failure) = vm.finish_http_context(context) {
                p.failures.push(failure.clone());
                self.record_failure(filter, p.worker, failure);
            }
        }
        // Envoy cancels a stream's callouts when the stream goes away.
        let owned: HashSet<(usize, u32)> = p
            .contexts
            .iter()
            .enumerate()
            .filter_map(|(f, c)| c.map(|c| (f, c)))
            .collect();
        let data = {
            let mut shared = self.shared.borrow_mut();
            shared
                .pending
                .retain(|c| !(c.vm.1 == p.worker && owned.contains(&(c.vm.0, c.context_id))));
            shared.streams.remove(&id).unwrap_or_default()
        };
        self.collect_effects();
        let status = if p.reset {
            0
        } else {
            data.response_headers
                .iter()
                .find(|(k, _)| k == b":status")
                .and_then(|(_, v)| String::from_utf8_lossy(v).parse().ok())
                .unwrap_or(0)
        };
        let exchange = Exchange {
            status,
            headers: if p.reset {
                Vec::new()
            } else {
                data.response_headers
            },
            body: if p.reset {
                Vec::new()
            } else {
                data.response_body
            },
            trailers: data.response_trailers,
            upstream: p.upstream,
            local_reply: p.local_reply,
            reset: p.reset,
            stalled: p.stalled,
            failures: p.failures,
            worker: p.worker,
        };
        self.finished.insert(id, exchange);
    }

    fn stall(&mut self, id: StreamId) {
        let n = self.filters.len();
        let Some(p) = self.streams.get_mut(&id) else {
            return;
        };
        let direction = p.direction();
        let position = p.paused_at.unwrap_or(p.position);
        let filter = filter_at(direction, position, n);
        let name = self
            .filters
            .get(filter)
            .map(|s| s.info.name.clone())
            .unwrap_or_default();
        let what = match direction {
            Direction::Request => "request",
            Direction::Response => "response",
        };
        let Some(p) = self.streams.get_mut(&id) else {
            return;
        };
        p.stalled = Some(format!(
            "filter {name:?} paused the {what} and nothing resumed it within {:?} of virtual time",
            self.stream_timeout
        ));
        let reply = LocalReply {
            status: 504,
            details: "host_test_stalled".to_owned(),
            body: b"stream stalled\n".to_vec(),
            headers: Vec::new(),
            grpc_status: None,
        };
        p.pending_local = None;
        if p.phase == Phase::Response {
            // Nothing sensible can be sent once the response is under way.
            p.reset = true;
            self.complete(id);
            return;
        }
        self.apply_local_reply(id, filter, reply, direction, position);
        if let Some(p) = self.streams.get_mut(&id) {
            p.local_reply = None;
        }
        self.drive(id);
        self.settle();
        if self.streams.contains_key(&id) {
            // The response path stalled as well: give up on the stream.
            if let Some(p) = self.streams.get_mut(&id) {
                p.reset = true;
            }
            self.complete(id);
        }
    }

    /// Records a failed callback. A dead VM's in-flight streams get Envoy's
    /// fail-closed 503 (or carry on without it under fail-open).
    fn record_failure(&mut self, filter: usize, worker: u32, failure: CallbackFailure) {
        let policy = self
            .filters
            .get(filter)
            .map(|s| s.policy)
            .unwrap_or_default();
        let mut attached = false;
        for p in self.streams.values_mut() {
            if p.worker != worker || p.contexts.get(filter).copied().flatten().is_none() {
                continue;
            }
            p.failures.push(failure.clone());
            attached = true;
            if policy == FailurePolicy::FailClosed
                && p.pending_local.is_none()
                && p.local_reply.is_none()
            {
                p.pending_local = Some((filter, fail_stream_reply()));
            }
            if policy == FailurePolicy::FailOpen && p.paused_at.is_some() {
                // The dead filter will never resume: move on past it.
                let direction = p.direction();
                p.pending_continue.push((filter, direction));
            }
        }
        if !attached {
            self.failures.push(failure);
        }
    }

    // ---- timed events ---------------------------------------------------

    fn next_timed_event(&self) -> Option<(u64, TimedEvent)> {
        let mut best: Option<(u64, TimedEvent)> = None;
        let mut consider = |due: u64, event: TimedEvent| {
            if best.as_ref().is_none_or(|(d, _)| due < *d) {
                best = Some((due, event));
            }
        };
        for (index, callout) in self.shared.borrow().pending.iter().enumerate() {
            consider(callout.due_ns, TimedEvent::Callout(index));
        }
        for (id, p) in &self.streams {
            if let Some((due, _)) = &p.upstream_due {
                consider(*due, TimedEvent::Upstream(*id));
            }
        }
        for slot in &self.filters {
            for (worker, vm) in slot.vms.iter().enumerate() {
                if vm.failure.is_none() && vm.state().tick_period_ms.is_some() {
                    consider(
                        vm.state().next_tick_ns,
                        TimedEvent::Tick(slot.info.index, worker as u32),
                    );
                }
            }
        }
        best
    }

    fn run_timed_event(&mut self, due: u64, event: TimedEvent) {
        self.set_clock(due);
        match event {
            TimedEvent::Callout(index) => {
                let callout = {
                    let mut shared = self.shared.borrow_mut();
                    if index < shared.pending.len() {
                        Some(shared.pending.remove(index))
                    } else {
                        None
                    }
                };
                if let Some(callout) = callout {
                    self.deliver(callout);
                }
            }
            TimedEvent::Upstream(id) => {
                self.upstream_answers(id);
                self.drive(id);
            }
            TimedEvent::Tick(filter, worker) => {
                if let Some(vm) = self.vm_mut(filter, worker) {
                    let period = u64::from(vm.state().tick_period_ms.unwrap_or(0)) * 1_000_000;
                    vm.state_mut().next_tick_ns = due + period.max(1);
                    if let Err(failure) = vm.tick() {
                        self.record_failure(filter, worker, failure);
                    }
                }
            }
        }
        self.collect_effects();
        self.settle();
    }

    fn deliver(&mut self, callout: PendingCallout) {
        let PendingCallout {
            vm: (filter, worker),
            context_id,
            token,
            kind,
            answer,
            ..
        } = callout;
        let Some(vm) = self.vm_mut(filter, worker) else {
            return;
        };
        if vm.failure.is_some() || !vm.state().contexts.contains_key(&context_id) {
            return;
        }
        let failed = answer.as_ref().is_none_or(|mock| mock.reset);
        let result = match kind {
            CalloutKind::Http => {
                let answer = answer.filter(|mock| !mock.reset).map(|mock| {
                    let response = mock.response;
                    let mut headers: Pairs = vec![(
                        b":status".to_vec(),
                        response.status.unwrap_or(200).to_string().into_bytes(),
                    )];
                    headers.extend(response.headers.iter().map(|(k, v)| {
                        (k.to_ascii_lowercase().into_bytes(), v.as_bytes().to_vec())
                    }));
                    headers.extend(response.raw_headers);
                    let trailers = response
                        .trailers
                        .iter()
                        .map(|(k, v)| (k.to_ascii_lowercase().into_bytes(), v.as_bytes().to_vec()))
                        .collect();
                    (headers, response.body.into_bytes(), trailers)
                });
                vm.http_call_response(context_id, token, answer)
            }
            CalloutKind::GrpcCall | CalloutKind::GrpcStream if failed => {
                let status = if answer.is_some() { 14 } else { 4 };
                vm.grpc_close(
                    context_id,
                    token,
                    status,
                    if status == 14 {
                        "upstream reset"
                    } else {
                        "deadline exceeded"
                    },
                )
            }
            CalloutKind::GrpcCall => {
                let mock = answer.unwrap_or_default();
                if mock.grpc_status == 0 {
                    let metadata = mock
                        .response
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                        .collect();
                    let trailing = mock
                        .response
                        .trailers
                        .iter()
                        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                        .collect();
                    let message = mock
                        .message
                        .unwrap_or_else(|| mock.response.body.into_bytes());
                    vm.grpc_receive(context_id, token, metadata, message, trailing)
                } else {
                    vm.grpc_close(context_id, token, mock.grpc_status, &mock.response.body)
                }
            }
            CalloutKind::GrpcStream => {
                let mock = answer.unwrap_or_default();
                vm.grpc_receive(
                    context_id,
                    token,
                    Vec::new(),
                    mock.response.body.into_bytes(),
                    Vec::new(),
                )
            }
            CalloutKind::GrpcStreamClose => {
                let mock = answer.unwrap_or_default();
                vm.state_mut().grpc_streams.remove(&token);
                vm.grpc_close(context_id, token, mock.grpc_status, "")
            }
        };
        if let Err(failure) = result {
            self.record_failure(filter, worker, failure);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum TimedEvent {
    Callout(usize),
    Upstream(StreamId),
    Tick(usize, u32),
}

/// Header pairs from a scenario list, names lower-cased.
/// Headers as they arrive from the network: names lower-cased, values
/// without surrounding whitespace (see [`trim_ows`]).
fn to_pairs(list: &HeaderList) -> Pairs {
    list.iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase().into_bytes(),
                trim_ows(v.as_bytes()).to_vec(),
            )
        })
        .collect()
}

/// A header value without leading or trailing spaces and tabs: RFC 9110
/// section 5.5 excludes them from the field value, and Envoy's codecs strip
/// them before any filter runs (seen in the differential runs against Envoy
/// 1.40: `cookie:  a=1` reaches filters and the upstream as `a=1`).
fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

fn filter_at(direction: Direction, position: usize, n: usize) -> usize {
    match direction {
        Direction::Request => position,
        Direction::Response => n.saturating_sub(1).saturating_sub(position),
    }
}

fn next_stage(stage: Stage) -> Stage {
    match stage {
        Stage::Headers => Stage::Body,
        Stage::Body => Stage::Trailers,
        Stage::Trailers | Stage::Done => Stage::Done,
    }
}

fn callback_for(direction: Direction, stage: Stage) -> StreamCallback {
    match (direction, stage) {
        (Direction::Request, Stage::Headers) => StreamCallback::RequestHeaders,
        (Direction::Request, Stage::Body) => StreamCallback::RequestBody,
        (Direction::Request, _) => StreamCallback::RequestTrailers,
        (Direction::Response, Stage::Headers) => StreamCallback::ResponseHeaders,
        (Direction::Response, Stage::Body) => StreamCallback::ResponseBody,
        (Direction::Response, _) => StreamCallback::ResponseTrailers,
    }
}

/// Envoy's answer for a stream whose Wasm VM failed (`failStream`).
fn fail_stream_reply() -> LocalReply {
    LocalReply {
        status: 503,
        details: "wasm_fail_stream".to_owned(),
        body: Vec::new(),
        headers: Vec::new(),
        grpc_status: None,
    }
}

/// Pseudo-headers first (filled in when missing), then the rest; adds the
/// `x-forwarded-proto` and `x-request-id` Envoy's connection manager adds.
fn normalize_request_headers(headers: Pairs, stream: StreamId) -> Pairs {
    let lower: Pairs = headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), trim_ows(&v).to_vec()))
        .collect();
    let get = |name: &[u8]| {
        lower
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let scheme = get(b":scheme").unwrap_or_else(|| b"http".to_vec());
    let mut out: Pairs = vec![
        (
            b":authority".to_vec(),
            get(b":authority")
                .or_else(|| get(b"host"))
                .unwrap_or_else(|| b"example.com".to_vec()),
        ),
        (
            b":path".to_vec(),
            get(b":path").unwrap_or_else(|| b"/".to_vec()),
        ),
        (
            b":method".to_vec(),
            get(b":method").unwrap_or_else(|| b"GET".to_vec()),
        ),
        (b":scheme".to_vec(), scheme.clone()),
    ];
    out.extend(
        lower
            .iter()
            .filter(|(k, _)| !k.starts_with(b":") && k != b"host")
            .cloned(),
    );
    if get(b"x-forwarded-proto").is_none() {
        out.push((b"x-forwarded-proto".to_vec(), scheme));
    }
    if get(b"x-request-id").is_none() {
        out.push((
            b"x-request-id".to_vec(),
            format!("00000000-0000-4000-8000-{stream:012x}").into_bytes(),
        ));
    }
    out
}
