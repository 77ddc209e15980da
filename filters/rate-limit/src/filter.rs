//! Thin proxy-wasm glue: the root context parses the config once and owns
//! the limiter; each HTTP context reads what the rules need from the request
//! headers, asks the limiter, and applies the decision (a local reply when
//! denied, rate-limit headers on the response when admitted). Global rules
//! (see [`crate::global`]) add a paused path: the request waits for one
//! gRPC call per applicable global rule and is decided in
//! `on_grpc_call_response` when the last answer is in.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use filter_common::header_map;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::bucket::BucketSpec;
use crate::config::{self, Config, FailureMode, HeaderFormat};
use crate::global::{self, Answer, Call, GlobalPlan, Resolution, RuleResolution};
use crate::headers::{self, RuleMeta};
use crate::limiter::{Decision, Hit, Limiter, LocalLimiter, SetError, SharedStore, Verdict};
use crate::rules::{Plan, RequestView};
use crate::stats;

fn log(level: LogLevel, message: &str) {
    // A failing log call is not worth failing a request over.
    let _ = hostcalls::log(level, message);
}

/// A request header's value; `None` when absent or empty. Through
/// `header_map::value`, which the bundle answers from one shared read.
fn request_header(name: &str) -> Option<Vec<u8>> {
    header_map::value(MapType::HttpRequestHeaders, name)
}

/// The host clock (`proxy_get_current_time_nanoseconds`), which host-test
/// drives virtually; 0 if the host cannot tell (every bucket then looks
/// fresh-anchored at 0 and never refills, which fails closed).
fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// Shared data through the host.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((None, None)) | Err(_) => None,
            // Hosts never hand out stamp 0; if one did, the write would be
            // unconditional, which is the best that can be done.
            Ok((value, cas)) => Some((value.unwrap_or_default(), cas.unwrap_or(0))),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        match hostcalls::set_shared_data(key, Some(value), Some(cas)) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(_) => Err(SetError::Failed),
        }
    }
}

/// The request as the rules see it, read lazily through host calls.
struct HostRequest {
    trusted_hops: u32,
    client_ip: Option<Option<IpAddr>>,
}

impl RequestView for HostRequest {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        request_header(name)
    }

    fn client_ip(&mut self) -> Option<IpAddr> {
        if let Some(ip) = self.client_ip {
            return ip;
        }
        let xff = (self.trusted_hops > 0)
            .then(|| request_header("x-forwarded-for"))
            .flatten();
        let source = hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten();
        let ip = filter_common::xff::client_address(
            xff.as_deref(),
            source.as_deref(),
            self.trusted_hops,
        );
        self.client_ip = Some(ip);
        ip
    }
}

/// Per-VM state: built in `on_configure`, used by every stream of the VM.
/// A VM runs one thread, so `Rc<RefCell<_>>` is enough.
struct Core {
    plan: Plan,
    limiter: LocalLimiter<HostStore>,
    rules: Vec<RuleMeta>,
    /// Counter ids per rule, in [`stats::COUNTERS`] order.
    counters: Vec<[Option<u32>; 5]>,
    format: HeaderFormat,
    status: u32,
    body: Vec<u8>,
    retry_after: bool,
    trusted_hops: u32,
    shadow_mode: bool,
    global_plan: GlobalPlan,
    global_rules: Vec<GlobalMeta>,
    /// Scratch, reused by every request.
    hits: Vec<Hit>,
    decision: Decision,
    calls: Vec<Call>,
    /// Emptied [`Pending`]s of concluded requests, whose lists are reused
    /// by the next paused requests instead of allocated for each.
    spare: Vec<Pending>,
}

/// At most this many emptied [`Pending`]s are kept: enough for the
/// requests a worker has paused at once, without holding memory after a
/// burst.
const MAX_SPARE: usize = 64;

/// What the filter needs of one global rule at request time.
struct GlobalMeta {
    name: String,
    cluster: String,
    timeout: std::time::Duration,
    failure_mode: FailureMode,
    /// Position of the fallback bucket in the config's `rules`.
    fallback: Option<u16>,
    /// Counter ids, in [`stats::GLOBAL_COUNTERS`] order.
    counters: [Option<u32>; 4],
}

fn define_counter(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log(
                LogLevel::Warn,
                &format!("rate-limit: cannot define metric {name}: {status:?}"),
            );
            None
        }
    }
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Core {
    fn new(config: &Config) -> Self {
        let specs: Vec<BucketSpec> = config
            .rules
            .iter()
            .map(|r| BucketSpec::from(r.bucket))
            .collect();
        let counters = config
            .rules
            .iter()
            .map(|rule| {
                stats::COUNTERS
                    .map(|suffix| define_counter(&stats::counter_name(&rule.name, suffix)))
            })
            .collect();
        let global_rules = config
            .global
            .iter()
            .map(|rule| GlobalMeta {
                name: rule.name.clone(),
                cluster: rule.global.cluster.clone(),
                timeout: rule.global.timeout,
                failure_mode: rule.global.failure_mode,
                fallback: rule.fallback,
                counters: stats::GLOBAL_COUNTERS
                    .map(|suffix| define_counter(&stats::counter_name(&rule.name, suffix))),
            })
            .collect();
        Self {
            plan: Plan::new(config),
            limiter: LocalLimiter::new(
                config
                    .rules
                    .iter()
                    .zip(&specs)
                    .map(|(rule, spec)| (rule.name.clone(), *spec)),
                config.shadow_mode,
                config.on_contention,
                HostStore,
            ),
            rules: config
                .rules
                .iter()
                .zip(&specs)
                .map(|(rule, spec)| RuleMeta::new(&rule.name, *spec))
                .collect(),
            counters,
            format: config.headers,
            status: u32::from(config.status),
            body: config.body.clone().into_bytes(),
            retry_after: config.retry_after,
            trusted_hops: config.xff_num_trusted_hops,
            shadow_mode: config.shadow_mode,
            global_plan: GlobalPlan::new(config),
            global_rules,
            hits: Vec::with_capacity(config.rules.len()),
            decision: Decision::default(),
            calls: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// An empty [`Pending`] for the request whose local rules made
    /// `self.decision`.
    fn pending(&mut self) -> Pending {
        let mut pending = self.spare.pop().unwrap_or_default();
        pending.local.clone_from(&self.decision);
        pending
    }

    /// Takes back a concluded request's [`Pending`] for reuse.
    fn recycle(&mut self, mut pending: Pending) {
        if self.spare.len() < MAX_SPARE {
            pending.outstanding.clear();
            pending.answers.clear();
            pending.fallback_hits.clear();
            self.spare.push(pending);
        }
    }

    fn count(&self) {
        for report in &self.decision.reports {
            let Some(ids) = self.counters.get(usize::from(report.rule)) else {
                continue;
            };
            let bump_at = |index: usize| bump(ids.get(index).copied().flatten());
            if let Some(index) = stats::outcome_counter(report.outcome) {
                bump_at(index);
            }
            if report.collision {
                bump_at(stats::SLOT_SHARED_INDEX);
            }
        }
    }

    /// The rate-limit headers of `local` reports plus what the services
    /// reported in `answers`.
    fn headers(&self, local: &Decision, answers: &[(u16, Answer)]) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.format == HeaderFormat::None {
            return out;
        }
        let services = answers.iter().filter_map(|(rule, answer)| {
            let (Answer::Ok(response) | Answer::OverLimit(response)) = answer else {
                return None;
            };
            let meta = self.global_rules.get(usize::from(*rule))?;
            let quota = global::service_quota(response)?;
            Some(headers::service_quota(&meta.name, &quota))
        });
        let quotas = headers::local_quotas(&self.rules, local).chain(services);
        headers::format_quotas(self.format, quotas, &mut out);
        out
    }
}

/// The root context: parses the config in `on_configure`.
#[derive(Default)]
pub struct RateLimitRoot {
    core: Option<Rc<RefCell<Core>>>,
}

impl RateLimitRoot {
    /// Applies a validated config: builds the limiter and defines the
    /// counters. `on_configure` is [`config::validate`] then this; the
    /// bundle (`filters/bundle`) validates its `rate_limit` section itself
    /// and calls this.
    pub fn configure(&mut self, config: Config) {
        self.core = Some(Rc::new(RefCell::new(Core::new(&config))));
    }
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        filter_common::configure::from_plugin_configuration(config::validate, |config| {
            self.configure(config);
        })
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RateLimitStream {
            context_id,
            core: self.core.clone(),
            response_headers: Vec::new(),
            service_headers: Vec::new(),
            replied: false,
            pending: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP stream.
pub struct RateLimitStream {
    context_id: u32,
    core: Option<Rc<RefCell<Core>>>,
    /// Headers for the upstream's response when the request was admitted.
    response_headers: Vec<(&'static str, String)>,
    /// Headers a rate-limit service asked for on the response
    /// (`response_headers_to_add`), added as given.
    service_headers: Vec<(String, Vec<u8>)>,
    /// We sent the local reply (it already carries our headers).
    replied: bool,
    /// Global calls in flight, while the request is paused.
    pending: Option<Pending>,
}

/// A request waiting for its rate-limit services.
#[derive(Default)]
struct Pending {
    /// `(token, global rule)` of the calls not answered yet.
    outstanding: Vec<(u32, u16)>,
    /// `(global rule, answer)` of the calls answered (or never sent).
    answers: Vec<(u16, Answer)>,
    /// What the local rules decided (they admitted the request), for the
    /// headers.
    local: Decision,
    /// The fallback bucket hits of the global rules that have one, computed
    /// when the request was read: `(global rule, hit)`.
    fallback_hits: Vec<(u16, Hit)>,
}

/// Body of the answer when a service fails under `failure_mode: deny`:
/// empty, as Envoy's `ratelimit` filter sends.
const ERROR_BODY: &[u8] = b"";
/// Envoy's `ratelimit` filter marks its denials with this header; so do
/// global denials here, so clients and dashboards see no difference.
const X_ENVOY_RATELIMITED: &str = "x-envoy-ratelimited";

impl RateLimitStream {
    /// Sends the local reply; `Pause` when sent, `Continue` when the host
    /// refused (the request then goes on, which is the lesser harm).
    fn reply(&mut self, status: u32, headers: &[(&str, &[u8])], body: &[u8]) -> Action {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .filter_map(|(name, value)| Some((*name, std::str::from_utf8(value).ok()?)))
            .collect();
        if let Err(status) = hostcalls::send_http_response(status, pairs, Some(body)) {
            log(
                LogLevel::Warn,
                &format!("rate-limit: cannot send the local reply: {status:?}"),
            );
            return Action::Continue;
        }
        self.replied = true;
        Action::Pause
    }

    /// Applies a local decision (`core.decision`).
    fn apply(&mut self, core: &Core) -> Action {
        let mut headers = core.headers(&core.decision, &[]);
        match core.decision.verdict {
            Verdict::Admit => {
                self.response_headers = headers;
                Action::Continue
            }
            Verdict::Deny => {
                if core.retry_after {
                    headers.push((headers::RETRY_AFTER, headers::retry_after(&core.decision)));
                }
                let pairs: Vec<(&str, &[u8])> =
                    headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
                self.reply(core.status, &pairs, &core.body)
            }
        }
    }

    /// Sends one call per applicable global rule; returns the pending state,
    /// or `None` when no rule needs a call.
    fn dispatch(
        &self,
        core: &mut Core,
        path: Option<&[u8]>,
        method: Option<&[u8]>,
        view: &mut HostRequest,
    ) -> Option<Pending> {
        core.calls.clear();
        core.global_plan.calls(path, method, view, &mut core.calls);
        if core.calls.is_empty() {
            return None;
        }
        let mut pending = core.pending();
        let Core {
            plan,
            global_rules,
            calls,
            ..
        } = core;
        for call in calls.iter() {
            let Some(meta) = global_rules.get(usize::from(call.rule)) else {
                continue;
            };
            if let Some(hit) = meta
                .fallback
                .and_then(|fallback| plan.fallback_hit(fallback, path, view))
            {
                pending.fallback_hits.push((call.rule, hit));
            }
            match filter_common::stream::dispatch_grpc_call(
                &meta.cluster,
                ratelimit_proto::SERVICE,
                ratelimit_proto::METHOD,
                &call.message,
                meta.timeout,
            ) {
                Ok(token) => pending.outstanding.push((token, call.rule)),
                Err(status) => {
                    log(
                        LogLevel::Warn,
                        &format!(
                            "rate-limit: rule {}: cannot call cluster {:?}: {status:?}",
                            meta.name, meta.cluster
                        ),
                    );
                    pending
                        .answers
                        .push((call.rule, Answer::Failed(global::Failure::Dispatch)));
                }
            }
        }
        Some(pending)
    }

    /// Decides a request whose global calls are all answered.
    fn conclude(&mut self, core: &mut Core, pending: &Pending) -> Action {
        // Folded as they are read: no list of them is kept.
        let resolutions = pending.answers.iter().filter_map(|(rule, answer)| {
            let meta = core.global_rules.get(usize::from(*rule))?;
            let resolution = global::resolve_rule(answer, meta.fallback.is_some());
            bump(
                meta.counters
                    .get(stats::global_counter(resolution))
                    .copied()
                    .flatten(),
            );
            if let Answer::Failed(failure) = answer {
                log(
                    LogLevel::Warn,
                    &format!(
                        "rate-limit: rule {}: rate-limit service failed ({failure:?}); {}",
                        meta.name,
                        match resolution {
                            RuleResolution::Fallback => "the local fallback bucket decides",
                            _ if meta.failure_mode == FailureMode::Deny => "failure_mode deny",
                            _ => "failure_mode allow",
                        }
                    ),
                );
            }
            Some((resolution, meta.failure_mode))
        });
        let shadow_mode = core.shadow_mode;
        match global::resolve(resolutions, shadow_mode) {
            Resolution::Admit => self.admit(core, &pending.local, &pending.answers),
            Resolution::OverLimit => self.deny_over_limit(core, pending),
            Resolution::FailClosed => {
                self.reply(u32::from(global::config::STATUS_ON_ERROR), &[], ERROR_BODY)
            }
            Resolution::Fallback => {
                let Core {
                    limiter,
                    hits,
                    decision,
                    ..
                } = &mut *core;
                hits.clear();
                // The buckets of the rules whose service failed; rules that
                // answered keep their answer.
                hits.extend(pending.fallback_hits.iter().filter_map(|(rule, hit)| {
                    pending
                        .answers
                        .iter()
                        .any(|(r, a)| r == rule && matches!(a, Answer::Failed(_)))
                        .then_some(*hit)
                }));
                limiter.decide(hits, now_ns(), decision);
                core.count();
                // The headers list the local rules, the fallback buckets
                // and the services that did answer.
                let mut local = pending.local.clone();
                local.reports.extend(core.decision.reports.iter().copied());
                if core.decision.verdict == Verdict::Deny {
                    local.verdict = Verdict::Deny;
                    let mut headers = core.headers(&local, &pending.answers);
                    if core.retry_after {
                        headers.push((headers::RETRY_AFTER, headers::retry_after(&local)));
                    }
                    let pairs: Vec<(&str, &[u8])> =
                        headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
                    self.reply(core.status, &pairs, &core.body)
                } else {
                    self.admit(core, &local, &pending.answers)
                }
            }
        }
    }

    /// Admits the request: adds what the services asked for to the request,
    /// and keeps the headers for the response.
    fn admit(&mut self, core: &Core, local: &Decision, answers: &[(u16, Answer)]) -> Action {
        let mut service_headers = Vec::new();
        for (_, answer) in answers {
            let Answer::Ok(response) = answer else {
                continue;
            };
            for header in &response.request_headers_to_add {
                if let Some(name) = header_name(&header.key) {
                    let _ = header_map::replace(
                        MapType::HttpRequestHeaders,
                        &name,
                        Some(header.effective_value()),
                    );
                }
            }
            for header in &response.response_headers_to_add {
                if let Some(name) = header_name(&header.key) {
                    service_headers.push((name, header.effective_value().to_vec()));
                }
            }
        }
        self.response_headers = core.headers(local, answers);
        self.service_headers = service_headers;
        Action::Continue
    }

    /// Answers a request a service put over its limit: the service's
    /// `response_headers_to_add` and `raw_body` when it sent them, else
    /// this filter's rate-limit headers and configured body.
    fn deny_over_limit(&mut self, core: &Core, pending: &Pending) -> Action {
        let over = pending
            .answers
            .iter()
            .filter_map(|(_, answer)| match answer {
                Answer::OverLimit(response) => Some(response),
                _ => None,
            });
        let mut service_headers: Vec<(String, Vec<u8>)> = Vec::new();
        let mut body: Option<&[u8]> = None;
        for response in over {
            for header in &response.response_headers_to_add {
                if let Some(name) = header_name(&header.key) {
                    service_headers.push((name, header.effective_value().to_vec()));
                }
            }
            if body.is_none() && !response.raw_body.is_empty() {
                body = Some(&response.raw_body);
            }
        }
        let mut ours = Vec::new();
        if service_headers.is_empty() {
            ours = core.headers(&pending.local, &pending.answers);
            if core.retry_after {
                let denied = pending.answers.iter().filter_map(|(rule, answer)| {
                    let Answer::OverLimit(response) = answer else {
                        return None;
                    };
                    let meta = core.global_rules.get(usize::from(*rule))?;
                    let quota = global::service_quota(response)?;
                    Some(headers::service_quota(&meta.name, &quota))
                });
                ours.push((headers::RETRY_AFTER, headers::retry_after_quotas(denied)));
            }
        }
        let mut pairs: Vec<(&str, &[u8])> = ours.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        pairs.extend(
            service_headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice())),
        );
        pairs.push((X_ENVOY_RATELIMITED, b"true"));
        self.reply(core.status, &pairs, body.unwrap_or(&core.body))
    }
}

/// A header name a service sent, lower-cased, if it is a valid name; others
/// are dropped (an invalid name would make Envoy reject the whole reply).
fn header_name(name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    match filter_common::validate_header_name(&name) {
        Ok(()) => Some(name),
        Err(error) => {
            log(
                LogLevel::Warn,
                &format!("rate-limit: dropped a header from the rate-limit service: {error}"),
            );
            None
        }
    }
}

impl Context for RateLimitStream {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        let Some(at) = pending.outstanding.iter().position(|(t, _)| *t == token_id) else {
            return;
        };
        let (_, rule) = pending.outstanding.swap_remove(at);
        let message = (status_code == 0 && response_size <= global::MAX_ANSWER_LEN)
            .then(|| hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size).ok())
            .flatten()
            .flatten();
        let answer = if status_code == 0 && response_size > global::MAX_ANSWER_LEN {
            Answer::Failed(global::Failure::Undecodable)
        } else {
            global::interpret(status_code, message.as_deref())
        };
        pending.answers.push((rule, answer));
        if !pending.outstanding.is_empty() {
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        let Some(core) = self.core.clone() else {
            return;
        };
        let Ok(mut core) = core.try_borrow_mut() else {
            // Cannot happen (one thread, no re-entry); admitting beats a
            // request stuck until its timeout.
            let _ = filter_common::stream::resume_request(self.context_id);
            return;
        };
        let action = self.conclude(&mut core, &pending);
        core.recycle(pending);
        if action == Action::Continue {
            let _ = filter_common::stream::resume_request(self.context_id);
        }
    }
}

impl HttpContext for RateLimitStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(core) = self.core.clone() else {
            return Action::Continue;
        };
        let Ok(mut core) = core.try_borrow_mut() else {
            return Action::Continue;
        };
        let path = (core.plan.needs_path() || core.global_plan.needs_path())
            .then(|| request_header(":path"))
            .flatten();
        let method = (core.plan.needs_method() || core.global_plan.needs_method())
            .then(|| request_header(":method"))
            .flatten();
        let mut view = HostRequest {
            trusted_hops: core.trusted_hops,
            client_ip: None,
        };
        let Core {
            plan,
            limiter,
            hits,
            decision,
            ..
        } = &mut *core;
        hits.clear();
        plan.hits(path.as_deref(), method.as_deref(), &mut view, hits);
        if hits.is_empty() {
            decision.verdict = Verdict::Admit;
            decision.reports.clear();
        } else {
            limiter.decide(hits, now_ns(), decision);
            core.count();
            if core.decision.verdict == Verdict::Deny || core.global_plan.is_empty() {
                return self.apply(&core);
            }
        }
        if core.global_plan.is_empty() {
            return Action::Continue;
        }
        // The local rules admitted the request: now the services.
        let core = &mut *core;
        let Some(pending) = self.dispatch(core, path.as_deref(), method.as_deref(), &mut view)
        else {
            return self.apply(core);
        };
        if pending.outstanding.is_empty() {
            // No call could be sent: decide now.
            let action = self.conclude(core, &pending);
            core.recycle(pending);
            return action;
        }
        self.pending = Some(pending);
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Our own local reply passes here too; it already has the headers.
        if !self.replied {
            for (name, value) in &self.response_headers {
                let _ = hostcalls::set_map_value_bytes(
                    MapType::HttpResponseHeaders,
                    name,
                    Some(value.as_bytes()),
                );
            }
            for (name, value) in &self.service_headers {
                let _ = hostcalls::add_map_value_bytes(MapType::HttpResponseHeaders, name, value);
            }
        }
        Action::Continue
    }
}
