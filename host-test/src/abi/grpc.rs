//! gRPC callouts: `proxy_grpc_call`, `proxy_grpc_stream`, `proxy_grpc_send`,
//! `proxy_grpc_cancel`, `proxy_grpc_close`, `proxy_get_status`.
//!
//! The upstream argument is taken as a cluster name. (Envoy also accepts a
//! serialised `GrpcService`; filters here name clusters.) A unary call's
//! answer arrives as `on_grpc_receive` (status 0) or `on_grpc_close` (any
//! other status, or 14 UNAVAILABLE on reset, 4 DEADLINE_EXCEEDED on timeout).
//! A stream answers each message sent with the mock's body, and closes with
//! the mock's status once the filter ends its side.

use wasmtime::{Caller, Linker};

use super::http_call::schedule;
use super::types::{status_of, Status};
use super::{borrow, memory, shared_of};
use crate::shared::{CalloutKind, CalloutRecord};
use crate::vm::VmState;

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut caller: Caller<'_, VmState>,
         upstream_ptr: u32,
         upstream_len: u32,
         service_ptr: u32,
         service_len: u32,
         method_ptr: u32,
         method_len: u32,
         metadata_ptr: u32,
         metadata_len: u32,
         message_ptr: u32,
         message_len: u32,
         timeout_ms: u32,
         token_ptr: u32| {
            status_of((|| {
                let cluster = memory::read_string(&mut caller, upstream_ptr, upstream_len)?;
                let service = memory::read_string(&mut caller, service_ptr, service_len)?;
                let method = memory::read_string(&mut caller, method_ptr, method_len)?;
                let metadata = memory::deserialize_pairs(&memory::read(
                    &mut caller,
                    metadata_ptr,
                    metadata_len,
                )?)
                .ok_or(Status::BadArgument)?;
                let message = memory::read(&mut caller, message_ptr, message_len)?;
                let token = {
                    let shared = shared_of(&caller);
                    let mut shared = borrow(&shared)?;
                    let record = CalloutRecord {
                        filter: caller.data().filter.name.clone(),
                        cluster,
                        headers: metadata,
                        body: message,
                        grpc_method: format!("{service}/{method}"),
                        timeout_ms,
                    };
                    let token = schedule(
                        &mut caller,
                        &mut shared,
                        CalloutKind::GrpcCall,
                        &record,
                        timeout_ms,
                    )?;
                    crate::shared::keep_recent(&mut shared.callouts, record);
                    token
                };
                memory::write_u32(&mut caller, token_ptr, token)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut caller: Caller<'_, VmState>,
         upstream_ptr: u32,
         upstream_len: u32,
         service_ptr: u32,
         service_len: u32,
         method_ptr: u32,
         method_len: u32,
         metadata_ptr: u32,
         metadata_len: u32,
         token_ptr: u32| {
            status_of((|| {
                let cluster = memory::read_string(&mut caller, upstream_ptr, upstream_len)?;
                let service = memory::read_string(&mut caller, service_ptr, service_len)?;
                let method = memory::read_string(&mut caller, method_ptr, method_len)?;
                memory::deserialize_pairs(&memory::read(&mut caller, metadata_ptr, metadata_len)?)
                    .ok_or(Status::BadArgument)?;
                if !caller
                    .data()
                    .shared
                    .borrow()
                    .clusters
                    .contains_key(&cluster)
                {
                    return Err(Status::BadArgument);
                }
                let state = caller.data_mut();
                let token = state.next_id();
                let context = state.effective_context;
                state
                    .grpc_streams
                    .insert(token, (format!("{cluster}\n{service}/{method}"), context));
                memory::write_u32(&mut caller, token_ptr, token)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut caller: Caller<'_, VmState>,
         token: u32,
         message_ptr: u32,
         message_len: u32,
         end_stream: u32| {
            status_of((|| {
                let message = memory::read(&mut caller, message_ptr, message_len)?;
                let (target, context) = caller
                    .data()
                    .grpc_streams
                    .get(&token)
                    .cloned()
                    .ok_or(Status::NotFound)?;
                let (cluster, grpc_method) = target.split_once('\n').unwrap_or((&target, ""));
                let shared = shared_of(&caller);
                let mut shared = borrow(&shared)?;
                let mock = shared
                    .clusters
                    .get(cluster)
                    .cloned()
                    .ok_or(Status::BadArgument)?;
                let filter = caller.data().filter.name.clone();
                crate::shared::keep_recent(
                    &mut shared.callouts,
                    CalloutRecord {
                        filter,
                        cluster: cluster.to_owned(),
                        headers: Vec::new(),
                        body: message,
                        grpc_method: grpc_method.to_owned(),
                        timeout_ms: 0,
                    },
                );
                let due_ns =
                    shared.clock.now_ns + u64::try_from(mock.delay.as_nanos()).unwrap_or(u64::MAX);
                let state = caller.data();
                let pending = crate::shared::PendingCallout {
                    vm: (state.filter.index, state.worker),
                    context_id: context,
                    token,
                    kind: CalloutKind::GrpcStream,
                    due_ns,
                    answer: Some(mock),
                };
                shared.pending.push(pending.clone());
                if end_stream != 0 {
                    // The close follows the last answer.
                    shared.pending.push(crate::shared::PendingCallout {
                        kind: CalloutKind::GrpcStreamClose,
                        ..pending
                    });
                }
                Ok(())
            })())
        },
    )?;
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        linker.func_wrap(
            "env",
            name,
            |mut caller: Caller<'_, VmState>, token: u32| {
                status_of((|| {
                    let stream = caller.data_mut().grpc_streams.remove(&token);
                    let shared = shared_of(&caller);
                    let mut shared = borrow(&shared)?;
                    let state = caller.data();
                    let vm = (state.filter.index, state.worker);
                    let before = shared.pending.len();
                    shared.pending.retain(|p| !(p.vm == vm && p.token == token));
                    // Cancelled calls get no callback, as in Envoy.
                    if stream.is_none() && shared.pending.len() == before {
                        return Err(Status::NotFound);
                    }
                    Ok(())
                })())
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut caller: Caller<'_, VmState>,
         code_ptr: u32,
         message_ptr_ptr: u32,
         message_size_ptr: u32| {
            status_of((|| {
                let (code, message) = caller.data().last_grpc_status.clone();
                memory::write_u32(&mut caller, code_ptr, code)?;
                memory::return_bytes(&mut caller, &message, message_ptr_ptr, message_size_ptr)
            })())
        },
    )?;
    Ok(())
}
