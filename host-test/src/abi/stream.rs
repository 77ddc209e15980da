//! Stream control: `proxy_continue_stream`, `proxy_close_stream`,
//! `proxy_send_local_response`, `proxy_set_effective_context`, `proxy_done`.
//!
//! Each is recorded as an [`Effect`] and applied by the chain after the
//! callback returns, as Envoy defers them. A local response stops the stream
//! whatever the callback returns.

use wasmtime::{Caller, Linker};

use super::types::{status_of, Direction, HostResult, Status};
use super::{borrow, memory, shared_of};
use crate::shared::{Effect, LocalReply};
use crate::vm::VmState;

fn push(caller: &Caller<'_, VmState>, effect: Effect) -> HostResult {
    let shared = shared_of(caller);
    borrow(&shared)?.effects.push(effect);
    Ok(())
}

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |caller: Caller<'_, VmState>, kind: u32| {
            status_of((|| {
                let direction = Direction::from_raw(kind)?;
                let stream = caller.data().effective_stream().ok_or(Status::NotFound)?;
                let filter = caller.data().filter.index;
                push(
                    &caller,
                    Effect::Continue {
                        stream,
                        filter,
                        direction,
                    },
                )
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |caller: Caller<'_, VmState>, kind: u32| {
            status_of((|| {
                Direction::from_raw(kind)?;
                let stream = caller.data().effective_stream().ok_or(Status::NotFound)?;
                push(&caller, Effect::Close { stream })
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: Caller<'_, VmState>,
         status: u32,
         details_ptr: u32,
         details_len: u32,
         body_ptr: u32,
         body_len: u32,
         headers_ptr: u32,
         headers_len: u32,
         grpc_status: i32| {
            status_of((|| {
                let details = memory::read_string(&mut caller, details_ptr, details_len)?;
                let body = memory::read(&mut caller, body_ptr, body_len)?;
                let headers = memory::deserialize_pairs(&memory::read(
                    &mut caller,
                    headers_ptr,
                    headers_len,
                )?)
                .ok_or(Status::BadArgument)?
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
                let status = u16::try_from(status)
                    .ok()
                    .filter(|s| (100..=999).contains(s))
                    .ok_or(Status::BadArgument)?;
                let stream = caller.data().effective_stream().ok_or(Status::NotFound)?;
                let filter = caller.data().filter.index;
                let grpc_status = u32::try_from(grpc_status).ok();
                let reply = LocalReply {
                    status,
                    details,
                    body,
                    headers,
                    grpc_status,
                };
                push(
                    &caller,
                    Effect::LocalResponse {
                        stream,
                        filter,
                        reply,
                    },
                )
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut caller: Caller<'_, VmState>, context: u32| {
            let state = caller.data_mut();
            if state.contexts.contains_key(&context) {
                state.effective_context = context;
                status_of(Ok(()))
            } else {
                status_of(Err(Status::BadArgument))
            }
        },
    )?;
    linker.func_wrap("env", "proxy_done", |caller: Caller<'_, VmState>| {
        let filter = caller.data().filter.index;
        let worker = caller.data().worker;
        status_of(push(&caller, Effect::Done { filter, worker }))
    })?;
    Ok(())
}
