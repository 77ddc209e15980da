//! Compiling filters: one wasmtime `Engine` and `Linker` per [`Runtime`],
//! modules compiled once per runtime (and cached on disk across runs), and
//! the checks that turn a wrong file into a message a user can act on.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use wasmtime::{Config, Engine, InstancePre, Linker, Module, OptLevel};

use crate::abi;
use crate::error::HostError;
use crate::vm::VmState;

/// ABI markers this host accepts; 0.2.0 differs from 0.2.1 only in calls
/// the SDKs no longer make.
const SUPPORTED_ABIS: &[&str] = &["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"];

struct Inner {
    engine: Engine,
    linker: Linker<VmState>,
    defined: HashSet<(String, String)>,
    modules: Mutex<HashMap<Vec<u8>, Module>>,
}

/// A compiler and module cache, cheap to clone and share between hosts.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl Runtime {
    /// A runtime with the on-disk compile cache in `$HOST_TEST_CACHE_DIR`,
    /// or `$XDG_CACHE_HOME/host-test`, or `~/.cache/host-test`.
    ///
    /// # Errors
    /// If wasmtime rejects the engine configuration (a bug here).
    pub fn new() -> Result<Self, HostError> {
        let mut config = Config::new();
        // Fuel bounds every callback, so a filter stuck in a loop is reported
        // instead of hanging the run; it is deterministic, unlike epochs.
        config.consume_fuel(true);
        config.cranelift_opt_level(OptLevel::Speed);
        if let Some(cache) = disk_cache() {
            config.cache(Some(cache));
        }
        let engine = Engine::new(&config).map_err(|e| runtime_error(&e))?;
        let mut linker = Linker::new(&engine);
        abi::add_to_linker(&mut linker).map_err(|e| runtime_error(&e))?;
        let defined = defined_names();
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                defined,
                modules: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The process-wide default runtime, so every host in a test binary or a
    /// bench shares one engine and its compiled modules.
    ///
    /// # Errors
    /// As [`Runtime::new`].
    pub fn shared() -> Result<Self, HostError> {
        static SHARED: OnceLock<Result<Runtime, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::new().map_err(|e| e.to_string()))
            .clone()
            .map_err(|message| HostError::Instantiate {
                filter: String::new(),
                message,
            })
    }

    /// Checks and compiles `bytes` for the filter named `filter`, and links it.
    ///
    /// # Errors
    /// [`HostError::NotWasm`], [`HostError::WrongAbi`] or
    /// [`HostError::MissingImport`], each naming the filter.
    pub fn prepare(&self, filter: &str, bytes: &[u8]) -> Result<InstancePre<VmState>, HostError> {
        check_header(filter, bytes)?;
        let module = self.compile(filter, bytes)?;
        check_abi(filter, &module)?;
        let mut linker = self.inner.linker.clone();
        let defined = |module: &str, name: &str| {
            self.inner
                .defined
                .contains(&(module.to_owned(), name.to_owned()))
        };
        abi::wasi::define_fallbacks(&mut linker, &module, &defined).map_err(|e| {
            HostError::Instantiate {
                filter: filter.to_owned(),
                message: format!("{e:#}"),
            }
        })?;
        for import in module.imports() {
            if import.module() != abi::wasi::MODULE && !defined(import.module(), import.name()) {
                return Err(HostError::MissingImport {
                    filter: filter.to_owned(),
                    module: import.module().to_owned(),
                    name: import.name().to_owned(),
                });
            }
        }
        linker
            .instantiate_pre(&module)
            .map_err(|e| HostError::Instantiate {
                filter: filter.to_owned(),
                message: format!("{e:#}"),
            })
    }

    fn compile(&self, filter: &str, bytes: &[u8]) -> Result<Module, HostError> {
        let mut modules = self
            .inner
            .modules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(module) = modules.get(bytes) {
            return Ok(module.clone());
        }
        let module = Module::new(&self.inner.engine, bytes).map_err(|e| HostError::NotWasm {
            filter: filter.to_owned(),
            reason: format!("{e:#}"),
        })?;
        modules.insert(bytes.to_vec(), module.clone());
        Ok(module)
    }
}

fn runtime_error(error: &wasmtime::Error) -> HostError {
    HostError::Instantiate {
        filter: String::new(),
        message: format!("{error:#}"),
    }
}

fn disk_cache() -> Option<wasmtime::Cache> {
    let directory = std::env::var_os("HOST_TEST_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("host-test")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/host-test")))?;
    let mut config = wasmtime::CacheConfig::new();
    config.with_directory(directory);
    // A cache that cannot be set up only costs compile time.
    wasmtime::Cache::new(config).ok()
}

/// The (module, name) of every host function [`abi::add_to_linker`] defines.
fn defined_names() -> HashSet<(String, String)> {
    let env = [
        "proxy_log",
        "proxy_get_log_level",
        "proxy_get_current_time_nanoseconds",
        "proxy_set_tick_period_milliseconds",
        "proxy_get_buffer_bytes",
        "proxy_set_buffer_bytes",
        "proxy_get_header_map_pairs",
        "proxy_set_header_map_pairs",
        "proxy_get_header_map_value",
        "proxy_replace_header_map_value",
        "proxy_remove_header_map_value",
        "proxy_add_header_map_value",
        "proxy_get_property",
        "proxy_set_property",
        "proxy_get_shared_data",
        "proxy_set_shared_data",
        "proxy_register_shared_queue",
        "proxy_resolve_shared_queue",
        "proxy_dequeue_shared_queue",
        "proxy_enqueue_shared_queue",
        "proxy_continue_stream",
        "proxy_close_stream",
        "proxy_send_local_response",
        "proxy_http_call",
        "proxy_grpc_call",
        "proxy_grpc_stream",
        "proxy_grpc_send",
        "proxy_grpc_cancel",
        "proxy_grpc_close",
        "proxy_get_status",
        "proxy_set_effective_context",
        "proxy_call_foreign_function",
        "proxy_done",
        "proxy_define_metric",
        "proxy_get_metric",
        "proxy_record_metric",
        "proxy_increment_metric",
    ];
    let wasi = [
        "fd_write",
        "clock_time_get",
        "clock_res_get",
        "random_get",
        "environ_sizes_get",
        "environ_get",
        "args_sizes_get",
        "args_get",
        "sched_yield",
        "proc_exit",
        "fd_fdstat_get",
        "fd_prestat_get",
        "fd_prestat_dir_name",
    ];
    env.iter()
        .map(|name| ("env".to_owned(), (*name).to_owned()))
        .chain(
            wasi.iter()
                .map(|name| (abi::wasi::MODULE.to_owned(), (*name).to_owned())),
        )
        .collect()
}

fn check_header(filter: &str, bytes: &[u8]) -> Result<(), HostError> {
    let not_wasm = |reason: &str| HostError::NotWasm {
        filter: filter.to_owned(),
        reason: reason.to_owned(),
    };
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Err(not_wasm(
            "it is a WebAssembly component; Envoy loads proxy-wasm filters as core modules (build for wasm32-wasip1 without cargo-component)",
        )),
        Some([0, b'a', b's', b'm', ..]) => Err(not_wasm("unsupported WebAssembly version")),
        _ => Err(not_wasm("the file does not start with the \\0asm magic number")),
    }
}

fn check_abi(filter: &str, module: &Module) -> Result<(), HostError> {
    let markers: Vec<&str> = module
        .exports()
        .map(|e| e.name())
        .filter(|n| n.starts_with("proxy_abi_version_"))
        .collect();
    if markers.iter().any(|m| SUPPORTED_ABIS.contains(m)) {
        return Ok(());
    }
    let reason = match markers.first() {
        Some(other) => {
            format!("it exports {other}, but this host speaks proxy-wasm ABI 0.2.1 (and 0.2.0)")
        }
        None => "it has no proxy_abi_version_* export; build it with a proxy-wasm SDK".to_owned(),
    };
    Err(HostError::WrongAbi {
        filter: filter.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(wat: &str) -> Result<InstancePre<VmState>, HostError> {
        let bytes = wat::parse_str(wat).unwrap();
        Runtime::shared().unwrap().prepare("t", &bytes)
    }

    #[test]
    fn text_files_are_not_wasm() {
        let err = Runtime::shared()
            .unwrap()
            .prepare("t", b"hello")
            .err()
            .unwrap();
        assert!(err.to_string().contains("magic number"), "{err}");
    }

    #[test]
    fn components_are_refused_with_a_pointer_to_core_modules() {
        let err = Runtime::shared()
            .unwrap()
            .prepare("t", b"\0asm\x0d\0\x01\0")
            .err()
            .unwrap();
        assert!(err.to_string().contains("component"), "{err}");
    }

    #[test]
    fn a_module_without_the_abi_marker_is_refused() {
        let err = prepare(r#"(module (memory (export "memory") 1))"#)
            .err()
            .unwrap();
        assert!(matches!(err, HostError::WrongAbi { .. }), "{err}");
        assert!(err.to_string().contains("proxy_abi_version"), "{err}");
    }

    #[test]
    fn an_old_abi_is_named() {
        let err = prepare(r#"(module (func (export "proxy_abi_version_0_1_0")))"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("0_1_0"), "{err}");
    }

    #[test]
    fn an_unknown_host_import_is_named() {
        let err = prepare(
            r#"(module (import "env" "proxy_teleport" (func)) (func (export "proxy_abi_version_0_2_1")))"#,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("env.proxy_teleport"), "{err}");
    }

    #[test]
    fn unknown_wasi_imports_are_accepted() {
        prepare(
            r#"(module (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
                       (func (export "proxy_abi_version_0_2_1")))"#,
        )
        .unwrap();
    }
}
