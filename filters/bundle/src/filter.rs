//! The proxy-wasm glue: one root context that owns every stage's root
//! context, one HTTP context per request that owns every stage's HTTP
//! context, and the walk along the stages (request path in chain order,
//! response path in reverse), with pauses, resumes and callouts routed to
//! the stage they belong to. The walk itself is [`crate::chain`]; the crate
//! doc explains the semantics.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use filter_common::header_map;
use filter_common::stream::{self, Direction, Resume};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};

use crate::chain::{Callback, Pipeline, Stage};
use crate::config::{self, Config};

fn log(level: LogLevel, message: &str) {
    // A failing log call is not worth failing a request over.
    let _ = hostcalls::log(level, message);
}

/// The host's own resume, once no stage is left to run.
fn host_resume(direction: Direction) {
    let _ = match direction {
        Direction::Request => hostcalls::resume_http_request(),
        Direction::Response => hostcalls::resume_http_response(),
    };
}

impl Stage for Box<dyn HttpContext> {
    fn run(&mut self, callback: Callback) -> Action {
        match callback {
            Callback::RequestHeaders(n, end) => self.on_http_request_headers(n, end),
            Callback::RequestBody(n, end) => self.on_http_request_body(n, end),
            Callback::RequestTrailers(n) => self.on_http_request_trailers(n),
            Callback::ResponseHeaders(n, end) => self.on_http_response_headers(n, end),
            Callback::ResponseBody(n, end) => self.on_http_response_body(n, end),
            Callback::ResponseTrailers(n) => self.on_http_response_trailers(n),
        }
    }
}

/// A stream's stages as the SDK hands them out.
type Stages = Pipeline<Box<dyn HttpContext>>;

/// One stage's root context.
struct StageRoot {
    name: &'static str,
    root: Box<dyn RootContext>,
}

/// Streams a stage paused, by context id: where a resume asked for in a
/// root callback (jwt-auth's JWKS arrival) finds the stream's stages. Only
/// paused streams are here, so the common request never touches it.
type Parked = Rc<RefCell<BTreeMap<u32, Rc<RefCell<Stages>>>>>;

/// The root context: owns the stages' roots, in chain order.
pub struct BundleRoot {
    context_id: u32,
    stages: Vec<StageRoot>,
    /// Callouts a stage root dispatched: token to stage index.
    callouts: BTreeMap<u32, usize>,
    parked: Parked,
}

impl BundleRoot {
    /// The root context with id `context_id`. Switches the VM's
    /// `filter_common::stream` calls to recording: in this module every
    /// stage runs inside a bundle callback, and the bundle acts on what
    /// they asked for.
    #[must_use]
    pub fn new(context_id: u32) -> Self {
        stream::record();
        Self {
            context_id,
            stages: Vec::new(),
            callouts: BTreeMap::new(),
            parked: Rc::default(),
        }
    }

    /// Configures each present stage in chain order. jwt-auth gets this
    /// root's context id: it resets the effective context to it after
    /// resuming streams, as it would in its own module.
    fn configure(&mut self, config: Config) {
        self.stages.clear();
        self.callouts.clear();
        let Config {
            jwt_auth,
            rate_limit,
            canary_router,
            security_headers,
            metrics,
        } = config;
        let context_id = self.context_id;
        self.add_stage(
            config::SECURITY_HEADERS,
            security_headers,
            security_headers::filter::SecurityHeadersRoot::default,
            security_headers::filter::SecurityHeadersRoot::configure,
        );
        self.add_stage(
            config::JWT_AUTH,
            jwt_auth,
            || jwt_auth::filter::JwtAuthRoot::new(context_id),
            jwt_auth::filter::JwtAuthRoot::configure,
        );
        self.add_stage(
            config::RATE_LIMIT,
            rate_limit,
            rate_limit::filter::RateLimitRoot::default,
            rate_limit::filter::RateLimitRoot::configure,
        );
        self.add_stage(
            config::CANARY_ROUTER,
            canary_router,
            canary_router::filter::CanaryRoot::default,
            canary_router::filter::CanaryRoot::configure,
        );
        self.add_stage(
            config::METRICS,
            metrics,
            metrics::filter::MetricsRoot::default,
            metrics::filter::MetricsRoot::configure,
        );
    }

    /// With its section present, makes the stage's root, configures it
    /// (which may dispatch callouts: jwt-auth's first JWKS fetch) and keeps
    /// it; an absent section adds no stage.
    fn add_stage<R: RootContext + 'static, C>(
        &mut self,
        name: &'static str,
        section: Option<C>,
        make: impl FnOnce() -> R,
        configure: fn(&mut R, C),
    ) {
        let Some(section) = section else { return };
        let mut root = make();
        configure(&mut root, section);
        let index = self.stages.len();
        self.stages.push(StageRoot {
            name,
            root: Box::new(root),
        });
        self.absorb(index);
    }

    /// Acts on what stage `index`'s root asked for in the callback that
    /// just returned: its callouts are routed back to it, its resumes run
    /// the stages after the paused one.
    fn absorb(&mut self, index: usize) {
        let recorded = stream::take();
        for token in recorded.callouts {
            self.callouts.insert(token, index);
        }
        if !recorded.resumes.is_empty() {
            resume_parked(&self.parked, recorded.resumes, self.context_id);
        }
    }
}

impl Context for BundleRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        let Some(index) = self.callouts.remove(&token_id) else {
            log(
                LogLevel::Warn,
                &format!("bundle: callout answer {token_id} belongs to no stage; dropped"),
            );
            return;
        };
        if let Some(stage) = self.stages.get_mut(index) {
            stage
                .root
                .on_http_call_response(token_id, num_headers, body_size, num_trailers);
        }
        self.absorb(index);
    }

    fn on_done(&mut self) -> bool {
        let mut done = true;
        for index in 0..self.stages.len() {
            if let Some(stage) = self.stages.get_mut(index) {
                done &= stage.root.on_done();
            }
            self.absorb(index);
        }
        done
    }
}

impl RootContext for BundleRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match config::validate(&raw) {
            Ok(config) => {
                let stages = config.stages().join(" -> ");
                self.configure(config);
                log(LogLevel::Info, &format!("bundle: configured: {stages}"));
                true
            }
            Err(error) => {
                log(LogLevel::Error, &error.to_string());
                false
            }
        }
    }

    fn on_tick(&mut self) {
        // Only jwt-auth sets a tick period today; one period serves the VM,
        // so a stage without ticks simply ignores them (the default).
        for index in 0..self.stages.len() {
            if let Some(stage) = self.stages.get_mut(index) {
                stage.root.on_tick();
            }
            self.absorb(index);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stages = self
            .stages
            .iter()
            .filter_map(|stage| {
                let context = stage.root.create_http_context(context_id);
                if context.is_none() {
                    log(
                        LogLevel::Warn,
                        &format!("bundle: {}: no HTTP context; stage skipped", stage.name),
                    );
                }
                context
            })
            .collect();
        // Always a context: the SDK traps on None.
        Some(Box::new(BundleStream {
            context_id,
            pipeline: Rc::new(RefCell::new(Pipeline::new(stages))),
            parked: Rc::clone(&self.parked),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Runs the resumes stages asked for: for a parked stream paused on that
/// path, the stages after the paused one, then the host's resume if none of
/// them paused or replied; anything else goes to the host as asked. The
/// effective context is set to each stream and back to `restore`.
fn resume_parked(parked: &Parked, resumes: Vec<Resume>, restore: u32) {
    let mut queue = resumes;
    let mut next = 0;
    while let Some(resume) = queue.get(next).copied() {
        next += 1;
        let pipeline = parked.borrow_mut().remove(&resume.context_id);
        if hostcalls::set_effective_context(resume.context_id).is_err() {
            continue; // the stream is gone
        }
        let Some(pipeline) = pipeline else {
            host_resume(resume.direction);
            continue;
        };
        let Ok(mut p) = pipeline.try_borrow_mut() else {
            // Its own callback is running (cannot happen: the walk handles
            // a stream's resumes of itself); leave it to that callback.
            parked
                .borrow_mut()
                .insert(resume.context_id, Rc::clone(&pipeline));
            continue;
        };
        let Some((callback, from)) = p.resume_point(resume.direction) else {
            // Paused on the other path: it stays parked, and the host gets
            // the resume as the stage asked.
            drop(p);
            parked.borrow_mut().insert(resume.context_id, pipeline);
            host_resume(resume.direction);
            continue;
        };
        let mut more = Vec::new();
        let action = p.walk(
            resume.context_id,
            callback,
            from,
            &mut more,
            &mut stream::take,
        );
        drop(p);
        if action == Action::Pause {
            parked.borrow_mut().insert(resume.context_id, pipeline);
        } else {
            host_resume(resume.direction);
        }
        queue.extend(more);
    }
    let _ = hostcalls::set_effective_context(restore);
}

/// One HTTP stream: every stage's HTTP context.
pub struct BundleStream {
    context_id: u32,
    pipeline: Rc<RefCell<Stages>>,
    parked: Parked,
}

impl BundleStream {
    /// Walks `callback` along the stages and parks or unparks the stream.
    fn dispatch(&mut self, callback: Callback) -> Action {
        let mut others = Vec::new();
        let action = {
            let Ok(mut p) = self.pipeline.try_borrow_mut() else {
                // Cannot happen (one thread, no re-entry); a stage that never
                // ran is better than a trap.
                return Action::Continue;
            };
            let from = p.start(callback);
            // The stages read the request headers once between them.
            header_map::share_request_headers(|| {
                p.walk(
                    self.context_id,
                    callback,
                    from,
                    &mut others,
                    &mut stream::take,
                )
            })
        };
        self.park(action == Action::Pause);
        self.resume_others(others);
        action
    }

    fn park(&self, paused: bool) {
        let mut parked = self.parked.borrow_mut();
        if paused {
            parked.insert(self.context_id, Rc::clone(&self.pipeline));
        } else if !parked.is_empty() {
            parked.remove(&self.context_id);
        }
    }

    fn resume_others(&self, others: Vec<Resume>) {
        if !others.is_empty() {
            resume_parked(&self.parked, others, self.context_id);
        }
    }
}

impl Context for BundleStream {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        let mut others = Vec::new();
        {
            let Ok(mut p) = self.pipeline.try_borrow_mut() else {
                return;
            };
            let delivered = p.deliver(token_id, &mut others, &mut stream::take, |stage| {
                stage.on_http_call_response(token_id, num_headers, body_size, num_trailers);
            });
            if !delivered {
                log(
                    LogLevel::Warn,
                    &format!("bundle: callout answer {token_id} belongs to no stage; dropped"),
                );
                return;
            }
        }
        // A resume of this stream finds it parked, like one from a root.
        self.resume_others(others);
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        // rate-limit's global mode: routed like an HTTP callout's answer.
        let mut others = Vec::new();
        {
            let Ok(mut p) = self.pipeline.try_borrow_mut() else {
                return;
            };
            let delivered = p.deliver(token_id, &mut others, &mut stream::take, |stage| {
                stage.on_grpc_call_response(token_id, status_code, response_size);
            });
            if !delivered {
                log(
                    LogLevel::Warn,
                    &format!("bundle: gRPC answer {token_id} belongs to no stage; dropped"),
                );
                return;
            }
        }
        self.resume_others(others);
    }

    fn on_done(&mut self) -> bool {
        let mut others = Vec::new();
        let mut done = true;
        if let Ok(mut p) = self.pipeline.try_borrow_mut() {
            p.each(&mut others, &mut stream::take, |stage| {
                done &= stage.on_done();
            });
            p.finish();
        }
        self.park(false);
        self.resume_others(others);
        done
    }
}

impl HttpContext for BundleStream {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.dispatch(Callback::RequestHeaders(num_headers, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.dispatch(Callback::RequestBody(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        self.dispatch(Callback::RequestTrailers(num_trailers))
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.dispatch(Callback::ResponseHeaders(num_headers, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.dispatch(Callback::ResponseBody(body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        self.dispatch(Callback::ResponseTrailers(num_trailers))
    }

    fn on_log(&mut self) {
        let mut others = Vec::new();
        if let Ok(mut p) = self.pipeline.try_borrow_mut() {
            p.each(&mut others, &mut stream::take, |stage| stage.on_log());
        }
        self.resume_others(others);
    }
}
