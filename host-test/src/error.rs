//! The errors a user can act on: each names the filter, and for callback
//! failures the callback, with the guest's own last words where it logged any.

use std::path::PathBuf;

/// Why loading or running a filter failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The `.wasm` file could not be read.
    #[error("filter {filter:?}: cannot read {path}: {source}")]
    Read {
        /// Filter display name.
        filter: String,
        /// Path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly core module.
    #[error("filter {filter:?}: not a WebAssembly core module: {reason}")]
    NotWasm {
        /// Filter display name.
        filter: String,
        /// What is wrong.
        reason: String,
    },
    /// The module does not export a supported `proxy_abi_version_*` marker.
    #[error("filter {filter:?}: not a proxy-wasm module: {reason}")]
    WrongAbi {
        /// Filter display name.
        filter: String,
        /// What is wrong.
        reason: String,
    },
    /// The module imports a function this host does not provide.
    #[error("filter {filter:?}: imports {module}.{name}, which this host does not provide")]
    MissingImport {
        /// Filter display name.
        filter: String,
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// Compiling or instantiating failed.
    #[error("filter {filter:?}: {message}")]
    Instantiate {
        /// Filter display name.
        filter: String,
        /// wasmtime's message.
        message: String,
    },
    /// `on_vm_start` or `on_configure` returned false.
    #[error("filter {filter:?} (root_id {root_id:?}): {callback} returned false, rejecting its configuration{}", guest_said(.guest_log))]
    Rejected {
        /// Filter display name.
        filter: String,
        /// Root id.
        root_id: String,
        /// `on_vm_start` or `on_configure`.
        callback: &'static str,
        /// What the filter logged at warn or above while deciding.
        guest_log: Vec<String>,
    },
    /// A callback failed while loading the filter.
    #[error("{0}")]
    Callback(#[from] CallbackFailure),
}

/// How a callback failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The guest trapped (panic, unreachable, out-of-bounds access...).
    Trap,
    /// The callback used up its fuel budget: a filter stuck in a loop.
    Budget,
    /// The guest grew memory past the VM's limit.
    Memory,
    /// The guest called WASI `proc_exit`.
    Exit,
}

/// A callback that trapped, looped or exited. The VM is unusable afterwards,
/// as it is in Envoy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("filter {filter:?} worker {worker}: {callback} {}: {message}{}", kind_text(.kind), guest_said(.guest_log))]
pub struct CallbackFailure {
    /// Filter display name.
    pub filter: String,
    /// Worker (VM) index.
    pub worker: u32,
    /// The export that failed, e.g. `proxy_on_request_headers`.
    pub callback: &'static str,
    /// What happened.
    pub kind: FailureKind,
    /// wasmtime's description.
    pub message: String,
    /// What the guest logged at error or above (its panic message, usually)
    /// during the failing callback.
    pub guest_log: Vec<String>,
}

fn kind_text(kind: &FailureKind) -> &'static str {
    match kind {
        FailureKind::Trap => "trapped",
        FailureKind::Budget => "exceeded its fuel budget (stuck in a loop?)",
        FailureKind::Memory => "exceeded the VM memory limit",
        FailureKind::Exit => "called proc_exit",
    }
}

fn guest_said(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; the filter logged: {}", lines.join(" | "))
    }
}
