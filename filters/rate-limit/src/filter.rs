//! Thin proxy-wasm glue: the root context parses the config once and owns
//! the limiter; each HTTP context reads what the rules need from the request
//! headers, asks the limiter, and applies the decision (a local reply when
//! denied, rate-limit headers on the response when admitted).

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType, Status};

use crate::bucket::BucketSpec;
use crate::config::{self, Config, HeaderFormat};
use crate::headers::{self, RuleMeta};
use crate::limiter::{Decision, Hit, Limiter, LocalLimiter, SetError, SharedStore, Verdict};
use crate::rules::{Plan, RequestView};
use crate::stats;

fn log(level: LogLevel, message: &str) {
    // A failing log call is not worth failing a request over.
    let _ = hostcalls::log(level, message);
}

fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
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
    /// Scratch, reused by every request.
    hits: Vec<Hit>,
    decision: Decision,
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
                stats::COUNTERS.map(|suffix| {
                    let name = stats::counter_name(&rule.name, suffix);
                    match hostcalls::define_metric(MetricType::Counter, &name) {
                        Ok(id) => Some(id),
                        Err(status) => {
                            log(
                                LogLevel::Warn,
                                &format!("rate-limit: cannot define metric {name}: {status:?}"),
                            );
                            None
                        }
                    }
                })
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
            hits: Vec::with_capacity(config.rules.len()),
            decision: Decision::default(),
        }
    }

    fn count(&self) {
        for report in &self.decision.reports {
            let Some(ids) = self.counters.get(usize::from(report.rule)) else {
                continue;
            };
            let bump = |index: usize| {
                if let Some(Some(id)) = ids.get(index) {
                    let _ = hostcalls::increment_metric(*id, 1);
                }
            };
            if let Some(index) = stats::outcome_counter(report.outcome) {
                bump(index);
            }
            if report.collision {
                bump(stats::SLOT_SHARED_INDEX);
            }
        }
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

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RateLimitStream {
            core: self.core.clone(),
            response_headers: Vec::new(),
            replied: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP stream.
pub struct RateLimitStream {
    core: Option<Rc<RefCell<Core>>>,
    /// Headers for the upstream's response when the request was admitted.
    response_headers: Vec<(&'static str, String)>,
    /// We sent the local reply (it already carries our headers).
    replied: bool,
}

impl RateLimitStream {
    /// Applies a decision. Kept apart from deciding so a later global mode
    /// (a paused request, decided in `on_grpc_call_response`) reuses it.
    fn apply(&mut self, core: &Core) -> Action {
        let mut headers = Vec::new();
        headers::rate_limit_headers(core.format, &core.rules, &core.decision, &mut headers);
        match core.decision.verdict {
            Verdict::Admit => {
                self.response_headers = headers;
                Action::Continue
            }
            Verdict::Deny => {
                if core.retry_after {
                    headers.push((headers::RETRY_AFTER, headers::retry_after(&core.decision)));
                }
                let pairs: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                if let Err(status) =
                    hostcalls::send_http_response(core.status, pairs, Some(&core.body))
                {
                    log(
                        LogLevel::Warn,
                        &format!("rate-limit: cannot send the local reply: {status:?}"),
                    );
                    return Action::Continue;
                }
                self.replied = true;
                Action::Pause
            }
        }
    }
}

impl Context for RateLimitStream {}

impl HttpContext for RateLimitStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(core) = self.core.clone() else {
            return Action::Continue;
        };
        let Ok(mut core) = core.try_borrow_mut() else {
            return Action::Continue;
        };
        let path = request_header(":path");
        let method = core
            .plan
            .needs_method()
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
            return Action::Continue;
        }
        limiter.decide(hits, now_ns(), decision);
        core.count();
        self.apply(&core)
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
        }
        Action::Continue
    }
}
