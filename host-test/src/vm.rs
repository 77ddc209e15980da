//! One proxy-wasm VM: a wasmtime store and instance for one filter on one
//! simulated Envoy worker, with the typed exports the host calls and the
//! per-VM state host calls reach through `Caller::data_mut()`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use wasmtime::{
    InstancePre, Memory, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc, WasmParams,
    WasmResults,
};

use crate::abi::types::{BufferType, LogLevel, MapType};
use crate::error::{CallbackFailure, FailureKind, HostError};
use crate::shared::{Pairs, Shared, StreamId};

/// What a filter is: its name, ids and configuration, shared by its VMs.
#[derive(Debug, Clone)]
pub struct FilterInfo {
    /// Position in the chain.
    pub index: usize,
    /// Display name.
    pub name: String,
    /// `root_id` handed to `on_context_create` of the root context.
    pub root_id: String,
    /// `vm_id`: VMs with the same id share shared data and queues.
    pub vm_id: String,
    /// Plugin configuration bytes (JSON), read in `on_configure`.
    pub configuration: Vec<u8>,
    /// VM configuration bytes, read in `on_vm_start`.
    pub vm_configuration: Vec<u8>,
}

/// Data that exists only while one callback runs (the callout's answer, the
/// configuration during `on_configure`, ...).
#[derive(Debug, Default)]
pub struct Scratch {
    /// Buffers by type.
    pub buffers: HashMap<BufferType, Vec<u8>>,
    /// Header maps by type.
    pub maps: HashMap<MapType, Pairs>,
}

/// Error type carried out of a `proc_exit` host call.
#[derive(Debug)]
pub struct ProcExit(pub i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proc_exit({})", self.0)
    }
}

impl std::error::Error for ProcExit {}

/// The store data of one VM.
pub struct VmState {
    /// Process-wide state shared with the other VMs.
    pub shared: Rc<RefCell<Shared>>,
    /// The filter this VM runs.
    pub filter: Rc<FilterInfo>,
    /// Worker index.
    pub worker: u32,
    /// Memory limit.
    pub limits: StoreLimits,
    /// The guest's exported memory.
    pub memory: Option<Memory>,
    /// The guest's allocator export.
    pub allocate: Option<TypedFunc<u32, u32>>,
    /// Root context id of this VM.
    pub root_context_id: u32,
    /// Live contexts: root (no stream) or HTTP (its stream).
    pub contexts: HashMap<u32, Option<StreamId>>,
    /// The context host calls act on (`proxy_set_effective_context`).
    pub effective_context: u32,
    /// Per-callback data.
    pub scratch: Scratch,
    /// Next context id / callout token.
    pub next_id: u32,
    /// Tick period set by the root context; `None` = no ticks.
    pub tick_period_ms: Option<u32>,
    /// Virtual time of the next tick.
    pub next_tick_ns: u64,
    /// Status of the last gRPC close, for `proxy_get_status`.
    pub last_grpc_status: (u32, Vec<u8>),
    /// Open gRPC streams: token → (cluster, context).
    pub grpc_streams: HashMap<u32, (String, u32)>,
}

impl VmState {
    /// A fresh id for a context or callout token (ids start at 1).
    pub fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// The stream of the effective context, or `NotFound` in a root context.
    pub fn effective_stream(&self) -> Option<StreamId> {
        self.contexts
            .get(&self.effective_context)
            .copied()
            .flatten()
    }
}

/// `proxy_on_http_call_response(context, token, headers, body, trailers)`.
type HttpCallResponseFn = TypedFunc<(u32, u32, u32, u32, u32), ()>;

/// The exports the host calls, looked up once per instance.
#[derive(Default)]
struct Exports {
    on_context_create: Option<TypedFunc<(u32, u32), ()>>,
    on_vm_start: Option<TypedFunc<(u32, u32), u32>>,
    on_configure: Option<TypedFunc<(u32, u32), u32>>,
    on_tick: Option<TypedFunc<u32, ()>>,
    on_queue_ready: Option<TypedFunc<(u32, u32), ()>>,
    on_done: Option<TypedFunc<u32, u32>>,
    on_log: Option<TypedFunc<u32, ()>>,
    on_delete: Option<TypedFunc<u32, ()>>,
    on_request_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_request_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_request_trailers: Option<TypedFunc<(u32, u32), u32>>,
    on_response_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_response_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_response_trailers: Option<TypedFunc<(u32, u32), u32>>,
    on_http_call_response: Option<HttpCallResponseFn>,
    on_grpc_receive_initial_metadata: Option<TypedFunc<(u32, u32, u32), ()>>,
    on_grpc_receive: Option<TypedFunc<(u32, u32, u32), ()>>,
    on_grpc_receive_trailing_metadata: Option<TypedFunc<(u32, u32, u32), ()>>,
    on_grpc_close: Option<TypedFunc<(u32, u32, u32), ()>>,
    on_foreign_function: Option<TypedFunc<(u32, u32, u32), ()>>,
}

/// Which HTTP callback of a stream to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCallback {
    /// `proxy_on_request_headers`.
    RequestHeaders,
    /// `proxy_on_request_body`.
    RequestBody,
    /// `proxy_on_request_trailers`.
    RequestTrailers,
    /// `proxy_on_response_headers`.
    ResponseHeaders,
    /// `proxy_on_response_body`.
    ResponseBody,
    /// `proxy_on_response_trailers`.
    ResponseTrailers,
}

impl StreamCallback {
    /// The export's name, for messages.
    pub fn export_name(self) -> &'static str {
        match self {
            Self::RequestHeaders => "proxy_on_request_headers",
            Self::RequestBody => "proxy_on_request_body",
            Self::RequestTrailers => "proxy_on_request_trailers",
            Self::ResponseHeaders => "proxy_on_response_headers",
            Self::ResponseBody => "proxy_on_response_body",
            Self::ResponseTrailers => "proxy_on_response_trailers",
        }
    }
}

/// A callback's `proxy_action_t`: 0 continues; anything else stops
/// iteration (proxy-wasm-cpp-host turns a pause on headers into
/// StopAllIterationAndWatermark, so the body waits too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Continue to the next filter.
    Continue,
    /// Stop until the filter calls `proxy_continue_stream`.
    Pause,
}

/// One running VM.
pub struct Vm {
    store: Store<VmState>,
    exports: Exports,
    fuel_per_callback: u64,
    /// Set once a callback failed: the VM must not run again (Envoy marks a
    /// crashed VM failed and stops calling into it).
    pub failure: Option<CallbackFailure>,
}

/// Limits a VM runs under.
#[derive(Debug, Clone, Copy)]
pub struct VmLimits {
    /// Fuel (≈ Wasm instructions) one callback may use before it is stopped.
    pub fuel_per_callback: u64,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
}

impl Default for VmLimits {
    fn default() -> Self {
        Self {
            fuel_per_callback: 1_000_000_000,
            memory_bytes: 256 << 20,
        }
    }
}

impl Vm {
    /// Instantiates the module and brings the root context up the way Envoy
    /// does: `_initialize`, `proxy_on_context_create(root, 0)`,
    /// `proxy_on_vm_start`, `proxy_on_configure`.
    ///
    /// # Errors
    /// [`HostError::Rejected`] if either start callback returns false,
    /// [`HostError::Callback`] if one traps, [`HostError::Instantiate`] if
    /// instantiation fails.
    pub fn start(
        pre: &InstancePre<VmState>,
        shared: Rc<RefCell<Shared>>,
        filter: Rc<FilterInfo>,
        worker: u32,
        limits: VmLimits,
    ) -> Result<Self, HostError> {
        let state = VmState {
            shared,
            filter: filter.clone(),
            worker,
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            memory: None,
            allocate: None,
            root_context_id: 0,
            contexts: HashMap::new(),
            effective_context: 0,
            scratch: Scratch::default(),
            next_id: 0,
            tick_period_ms: None,
            next_tick_ns: 0,
            last_grpc_status: (0, Vec::new()),
            grpc_streams: HashMap::new(),
        };
        let mut store = Store::new(pre.module().engine(), state);
        store.limiter(|state| &mut state.limits);
        let instantiate_error = |e: wasmtime::Error| HostError::Instantiate {
            filter: filter.name.clone(),
            message: format!("{e:#}"),
        };
        store
            .set_fuel(limits.fuel_per_callback)
            .map_err(instantiate_error)?;
        let instance = pre.instantiate(&mut store).map_err(instantiate_error)?;
        let memory = instance.get_memory(&mut store, "memory");
        let allocate = instance
            .get_typed_func::<u32, u32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<u32, u32>(&mut store, "malloc"))
            .ok();
        if memory.is_none() || allocate.is_none() {
            return Err(HostError::WrongAbi {
                filter: filter.name.clone(),
                reason: "it must export `memory` and `proxy_on_memory_allocate` (or `malloc`)"
                    .into(),
            });
        }
        store.data_mut().memory = memory;
        store.data_mut().allocate = allocate;

        macro_rules! export {
            ($name:literal) => {
                match instance.get_export(&mut store, $name) {
                    None => None,
                    Some(_) => Some(instance.get_typed_func(&mut store, $name).map_err(|e| {
                        HostError::WrongAbi {
                            filter: filter.name.clone(),
                            reason: format!("export {} has the wrong signature: {e}", $name),
                        }
                    })?),
                }
            };
        }
        let exports = Exports {
            on_context_create: export!("proxy_on_context_create"),
            on_vm_start: export!("proxy_on_vm_start"),
            on_configure: export!("proxy_on_configure"),
            on_tick: export!("proxy_on_tick"),
            on_queue_ready: export!("proxy_on_queue_ready"),
            on_done: export!("proxy_on_done"),
            on_log: export!("proxy_on_log"),
            on_delete: export!("proxy_on_delete"),
            on_request_headers: export!("proxy_on_request_headers"),
            on_request_body: export!("proxy_on_request_body"),
            on_request_trailers: export!("proxy_on_request_trailers"),
            on_response_headers: export!("proxy_on_response_headers"),
            on_response_body: export!("proxy_on_response_body"),
            on_response_trailers: export!("proxy_on_response_trailers"),
            on_http_call_response: export!("proxy_on_http_call_response"),
            on_grpc_receive_initial_metadata: export!("proxy_on_grpc_receive_initial_metadata"),
            on_grpc_receive: export!("proxy_on_grpc_receive"),
            on_grpc_receive_trailing_metadata: export!("proxy_on_grpc_receive_trailing_metadata"),
            on_grpc_close: export!("proxy_on_grpc_close"),
            on_foreign_function: export!("proxy_on_foreign_function"),
        };
        let initialize: Option<TypedFunc<(), ()>> = export!("_initialize");
        let start: Option<TypedFunc<(), ()>> = export!("_start");

        let mut vm = Self {
            store,
            exports,
            fuel_per_callback: limits.fuel_per_callback,
            failure: None,
        };
        // A reactor (`_initialize`) is what proxy-wasm SDKs build; `_start` is
        // run only when there is no `_initialize`, as proxy-wasm-cpp-host does.
        if let Some(init) = initialize.or(start) {
            vm.invoke("_initialize", Some(init), 0, ())?;
        }
        let root = vm.store.data_mut().next_id();
        vm.store.data_mut().root_context_id = root;
        vm.store.data_mut().contexts.insert(root, None);
        let create = vm.exports.on_context_create.clone();
        vm.invoke("proxy_on_context_create", create, root, (root, 0))?;

        let vm_config = filter.vm_configuration.clone();
        let vm_config_len = vm_config.len() as u32;
        vm.store
            .data_mut()
            .scratch
            .buffers
            .insert(BufferType::VmConfiguration, vm_config);
        let on_vm_start = vm.exports.on_vm_start.clone();
        let started = vm.invoke(
            "proxy_on_vm_start",
            on_vm_start,
            root,
            (root, vm_config_len),
        )?;
        if started == Some(0) {
            return Err(vm.rejected("proxy_on_vm_start"));
        }

        let config = filter.configuration.clone();
        let config_len = config.len() as u32;
        vm.store
            .data_mut()
            .scratch
            .buffers
            .insert(BufferType::PluginConfiguration, config);
        let on_configure = vm.exports.on_configure.clone();
        let configured = vm.invoke("proxy_on_configure", on_configure, root, (root, config_len))?;
        if configured == Some(0) {
            return Err(vm.rejected("proxy_on_configure"));
        }
        Ok(vm)
    }

    fn rejected(&self, callback: &'static str) -> HostError {
        let filter = &self.store.data().filter;
        let shared = self.store.data().shared.borrow();
        let guest_log = shared
            .logs
            .iter()
            .filter(|r| {
                r.filter == filter.name
                    && r.worker == self.store.data().worker
                    && r.level >= LogLevel::Warn
            })
            .map(|r| r.message.clone())
            .collect();
        HostError::Rejected {
            filter: filter.name.clone(),
            root_id: filter.root_id.clone(),
            callback,
            guest_log,
        }
    }

    /// Runs one export for `context` under a fresh fuel budget. `Ok(None)`
    /// when the module does not export it (a callback it does not need).
    ///
    /// # Errors
    /// A [`CallbackFailure`] for a trap, an exhausted budget, a memory limit or
    /// `proc_exit`; the VM is then marked failed.
    pub fn invoke<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &'static str,
        func: Option<TypedFunc<P, R>>,
        context: u32,
        params: P,
    ) -> Result<Option<R>, CallbackFailure> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let Some(func) = func else { return Ok(None) };
        let log_mark = self.store.data().shared.borrow().logs.len();
        self.store.data_mut().effective_context = context;
        // Fuel was enabled when the engine was built, so this cannot fail.
        let _ = self.store.set_fuel(self.fuel_per_callback);
        let result = func.call(&mut self.store, params);
        self.store.data_mut().scratch = Scratch::default();
        match result {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                let failure = self.classify(name, &error, log_mark);
                self.failure = Some(failure.clone());
                Err(failure)
            }
        }
    }

    fn classify(
        &self,
        callback: &'static str,
        error: &wasmtime::Error,
        log_mark: usize,
    ) -> CallbackFailure {
        let state = self.store.data();
        let kind = match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => FailureKind::Budget,
            Some(_) => FailureKind::Trap,
            None if error.downcast_ref::<ProcExit>().is_some() => FailureKind::Exit,
            None if format!("{error:#}").contains("memory") => FailureKind::Memory,
            None => FailureKind::Trap,
        };
        let shared = state.shared.borrow();
        let guest_log = shared
            .logs
            .get(log_mark..)
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                r.filter == state.filter.name
                    && r.worker == state.worker
                    && r.level >= LogLevel::Error
            })
            .map(|r| r.message.trim_end().to_owned())
            .collect();
        let message = if let Some(trap) = error.downcast_ref::<Trap>() {
            trap.to_string()
        } else if let Some(exit) = error.downcast_ref::<ProcExit>() {
            exit.to_string()
        } else {
            error.root_cause().to_string()
        };
        CallbackFailure {
            filter: state.filter.name.clone(),
            worker: state.worker,
            callback,
            kind,
            message,
            guest_log,
        }
    }

    /// The store's state.
    pub fn state(&self) -> &VmState {
        self.store.data()
    }

    /// The store's state, mutably.
    pub fn state_mut(&mut self) -> &mut VmState {
        self.store.data_mut()
    }

    /// Creates an HTTP context for `stream` and returns its id.
    ///
    /// # Errors
    /// The callback's failure.
    pub fn create_http_context(&mut self, stream: StreamId) -> Result<u32, CallbackFailure> {
        let id = self.state_mut().next_id();
        let root = self.state().root_context_id;
        self.state_mut().contexts.insert(id, Some(stream));
        let create = self.exports.on_context_create.clone();
        self.invoke("proxy_on_context_create", create, id, (id, root))?;
        Ok(id)
    }

    /// Runs one HTTP stream callback.
    ///
    /// # Errors
    /// The callback's failure.
    pub fn stream_callback(
        &mut self,
        callback: StreamCallback,
        context: u32,
        count: u32,
        end_of_stream: bool,
    ) -> Result<Action, CallbackFailure> {
        let eos = u32::from(end_of_stream);
        let name = callback.export_name();
        let raw = match callback {
            StreamCallback::RequestHeaders => {
                let f = self.exports.on_request_headers.clone();
                self.invoke(name, f, context, (context, count, eos))?
            }
            StreamCallback::RequestBody => {
                let f = self.exports.on_request_body.clone();
                self.invoke(name, f, context, (context, count, eos))?
            }
            StreamCallback::RequestTrailers => {
                let f = self.exports.on_request_trailers.clone();
                self.invoke(name, f, context, (context, count))?
            }
            StreamCallback::ResponseHeaders => {
                let f = self.exports.on_response_headers.clone();
                self.invoke(name, f, context, (context, count, eos))?
            }
            StreamCallback::ResponseBody => {
                let f = self.exports.on_response_body.clone();
                self.invoke(name, f, context, (context, count, eos))?
            }
            StreamCallback::ResponseTrailers => {
                let f = self.exports.on_response_trailers.clone();
                self.invoke(name, f, context, (context, count))?
            }
        };
        Ok(match raw {
            None | Some(0) => Action::Continue,
            Some(_) => Action::Pause,
        })
    }

    /// Ends an HTTP context: `on_log`, `on_done`, `on_delete`, in the order
    /// Envoy runs them (access log at stream completion, then filter destroy).
    ///
    /// # Errors
    /// The first callback failure.
    pub fn finish_http_context(&mut self, context: u32) -> Result<(), CallbackFailure> {
        let on_log = self.exports.on_log.clone();
        let on_done = self.exports.on_done.clone();
        let on_delete = self.exports.on_delete.clone();
        let result = self
            .invoke("proxy_on_log", on_log, context, context)
            .and_then(|_| self.invoke("proxy_on_done", on_done, context, context))
            .and_then(|_| self.invoke("proxy_on_delete", on_delete, context, context));
        self.state_mut().contexts.remove(&context);
        result.map(|_| ())
    }

    /// Fires the root context's `on_tick`.
    ///
    /// # Errors
    /// The callback's failure.
    pub fn tick(&mut self) -> Result<(), CallbackFailure> {
        let root = self.state().root_context_id;
        let f = self.exports.on_tick.clone();
        self.invoke("proxy_on_tick", f, root, root).map(|_| ())
    }

    /// Delivers `on_queue_ready` to the root context.
    ///
    /// # Errors
    /// The callback's failure.
    pub fn queue_ready(&mut self, token: u32) -> Result<(), CallbackFailure> {
        let root = self.state().root_context_id;
        let f = self.exports.on_queue_ready.clone();
        self.invoke("proxy_on_queue_ready", f, root, (root, token))
            .map(|_| ())
    }

    /// Delivers an HTTP callout's answer; `None` is a failure (no headers).
    ///
    /// # Errors
    /// The callback's failure.
    pub fn http_call_response(
        &mut self,
        context: u32,
        token: u32,
        answer: Option<(Pairs, Vec<u8>, Pairs)>,
    ) -> Result<(), CallbackFailure> {
        let (headers, body, trailers) = answer.unwrap_or_default();
        let counts = (
            headers.len() as u32,
            body.len() as u32,
            trailers.len() as u32,
        );
        let scratch = &mut self.state_mut().scratch;
        scratch
            .maps
            .insert(MapType::HttpCallResponseHeaders, headers);
        scratch
            .maps
            .insert(MapType::HttpCallResponseTrailers, trailers);
        scratch
            .buffers
            .insert(BufferType::HttpCallResponseBody, body);
        let f = self.exports.on_http_call_response.clone();
        self.invoke(
            "proxy_on_http_call_response",
            f,
            context,
            (context, token, counts.0, counts.1, counts.2),
        )
        .map(|_| ())
    }

    /// Delivers a gRPC answer: initial metadata (if any), the message
    /// (`on_grpc_receive`), trailing metadata (if any).
    ///
    /// # Errors
    /// The callback's failure.
    pub fn grpc_receive(
        &mut self,
        context: u32,
        token: u32,
        initial_metadata: Pairs,
        message: Vec<u8>,
        trailing_metadata: Pairs,
    ) -> Result<(), CallbackFailure> {
        if !initial_metadata.is_empty() {
            let count = initial_metadata.len() as u32;
            self.state_mut()
                .scratch
                .maps
                .insert(MapType::GrpcReceiveInitialMetadata, initial_metadata);
            let f = self.exports.on_grpc_receive_initial_metadata.clone();
            self.invoke(
                "proxy_on_grpc_receive_initial_metadata",
                f,
                context,
                (context, token, count),
            )?;
        }
        let size = message.len() as u32;
        self.state_mut()
            .scratch
            .buffers
            .insert(BufferType::GrpcReceiveBuffer, message);
        let f = self.exports.on_grpc_receive.clone();
        self.invoke("proxy_on_grpc_receive", f, context, (context, token, size))?;
        if !trailing_metadata.is_empty() {
            let count = trailing_metadata.len() as u32;
            self.state_mut()
                .scratch
                .maps
                .insert(MapType::GrpcReceiveTrailingMetadata, trailing_metadata);
            let f = self.exports.on_grpc_receive_trailing_metadata.clone();
            self.invoke(
                "proxy_on_grpc_receive_trailing_metadata",
                f,
                context,
                (context, token, count),
            )?;
        }
        Ok(())
    }

    /// Delivers a gRPC close with its status (`on_grpc_close`).
    ///
    /// # Errors
    /// The callback's failure.
    pub fn grpc_close(
        &mut self,
        context: u32,
        token: u32,
        status: u32,
        message: &str,
    ) -> Result<(), CallbackFailure> {
        self.state_mut().last_grpc_status = (status, message.as_bytes().to_vec());
        let f = self.exports.on_grpc_close.clone();
        self.invoke("proxy_on_grpc_close", f, context, (context, token, status))
            .map(|_| ())
    }

    /// Calls `on_foreign_function` on the root context with `args` as call data.
    ///
    /// # Errors
    /// The callback's failure.
    pub fn foreign_function(
        &mut self,
        function_id: u32,
        args: Vec<u8>,
    ) -> Result<(), CallbackFailure> {
        let root = self.state().root_context_id;
        let size = args.len() as u32;
        self.state_mut()
            .scratch
            .buffers
            .insert(BufferType::CallData, args);
        let f = self.exports.on_foreign_function.clone();
        self.invoke(
            "proxy_on_foreign_function",
            f,
            root,
            (root, function_id, size),
        )
        .map(|_| ())
    }

    /// Calls the root context's `on_done`; `Ok(true)` if it is done now,
    /// `Ok(false)` if it will call `proxy_done` later.
    ///
    /// # Errors
    /// The callback's failure.
    pub fn root_done(&mut self) -> Result<bool, CallbackFailure> {
        let root = self.state().root_context_id;
        let f = self.exports.on_done.clone();
        Ok(self
            .invoke("proxy_on_done", f, root, root)?
            .is_none_or(|done| done != 0))
    }
}
