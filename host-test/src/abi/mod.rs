//! The host side of the proxy-wasm ABI v0.2.1: one small module per family
//! of host calls, each with an `add_to_linker`, plus the WASI subset.
//!
//! Every function the proxy-wasm Rust SDK 0.2.5 imports is here. Where the
//! spec is loose the behaviour follows Envoy / proxy-wasm-cpp-host; each such
//! choice is noted where it is made.

pub mod buffers;
pub mod foreign;
pub mod grpc;
pub mod headers;
pub mod http_call;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod properties;
pub mod queues;
pub mod shared_data;
pub mod stream;
pub mod timers;
pub mod types;
pub mod wasi;

use std::cell::{RefCell, RefMut};
use std::rc::Rc;

use wasmtime::{Caller, Linker};

use crate::shared::Shared;
use crate::vm::VmState;
use types::{HostResult, Status};

/// Adds every host function to `linker`.
///
/// # Errors
/// Only if a name is defined twice, which would be a bug here.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    log::add_to_linker(linker)?;
    headers::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    properties::add_to_linker(linker)?;
    shared_data::add_to_linker(linker)?;
    queues::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    http_call::add_to_linker(linker)?;
    grpc::add_to_linker(linker)?;
    timers::add_to_linker(linker)?;
    stream::add_to_linker(linker)?;
    foreign::add_to_linker(linker)?;
    wasi::add_to_linker(linker)?;
    Ok(())
}

/// The shared state, from inside a host call. A re-entrant borrow (a guest
/// allocator calling back into the host mid-call) is `InternalFailure`,
/// never a panic.
pub fn shared_of(caller: &Caller<'_, VmState>) -> Rc<RefCell<Shared>> {
    caller.data().shared.clone()
}

/// Borrows the shared state mutably or fails the host call.
pub fn borrow(shared: &RefCell<Shared>) -> HostResult<RefMut<'_, Shared>> {
    shared.try_borrow_mut().map_err(|_| Status::InternalFailure)
}
