//! `proxy_http_call`: HTTP callouts to mocked clusters.
//!
//! As in Envoy: an unknown cluster or a request without `:method`, `:path`
//! and `:authority` is `BadArgument`; a call that fails (reset, or no answer
//! within its timeout) reaches `on_http_call_response` with no headers, no
//! body and no trailers. Answers arrive after the current callback, at their
//! virtual due time.

use wasmtime::{Caller, Linker};

use super::types::{status_of, HostResult, Status};
use super::{borrow, memory, shared_of};
use crate::shared::{CalloutKind, CalloutRecord, Pairs, PendingCallout, Shared};
use crate::vm::VmState;

/// Schedules a callout's answer: the mock's answer after its delay, or a
/// failure at the timeout (hang, or a delay longer than the timeout), or a
/// failure at once (reset: delivered with the mock, whose `reset` is set).
/// Returns the token.
pub fn schedule(
    caller: &mut Caller<'_, VmState>,
    shared: &mut Shared,
    kind: CalloutKind,
    record: &CalloutRecord,
    timeout_ms: u32,
) -> HostResult<u32> {
    let cluster = record.cluster.as_str();
    let mock = match shared.responders.0.get_mut(cluster) {
        Some(responder) => responder(record),
        // Envoy: an unknown cluster is BadArgument for an HTTP call and
        // ParseFailure for a gRPC call (its grpcCall first tries to read the
        // name as a serialised GrpcService).
        None => shared.clusters.get(cluster).cloned().ok_or(match kind {
            CalloutKind::Http => Status::BadArgument,
            _ => Status::ParseFailure,
        })?,
    };
    let now = shared.clock.now_ns;
    let timeout_ns = u64::from(timeout_ms) * 1_000_000;
    let delay_ns = u64::try_from(mock.delay.as_nanos()).unwrap_or(u64::MAX);
    let (due_ns, answer) = if mock.reset {
        (now, Some(mock))
    } else if mock.hang || (timeout_ms > 0 && delay_ns > timeout_ns) {
        (now + timeout_ns, None)
    } else {
        (now + delay_ns, Some(mock))
    };
    let state = caller.data_mut();
    let token = state.next_id();
    let context_id = state.effective_context;
    shared.pending.push(PendingCallout {
        vm: (state.filter.index, state.worker),
        context_id,
        token,
        kind,
        due_ns,
        answer,
    });
    Ok(token)
}

fn has(headers: &Pairs, name: &[u8]) -> bool {
    headers.iter().any(|(k, v)| k == name && !v.is_empty())
}

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: Caller<'_, VmState>,
         upstream_ptr: u32,
         upstream_len: u32,
         headers_ptr: u32,
         headers_len: u32,
         body_ptr: u32,
         body_len: u32,
         trailers_ptr: u32,
         trailers_len: u32,
         timeout_ms: u32,
         token_ptr: u32| {
            status_of((|| {
                let cluster = memory::read_string(&mut caller, upstream_ptr, upstream_len)?;
                let headers = memory::deserialize_pairs(&memory::read(
                    &mut caller,
                    headers_ptr,
                    headers_len,
                )?)
                .ok_or(Status::BadArgument)?;
                let body = memory::read(&mut caller, body_ptr, body_len)?;
                memory::deserialize_pairs(&memory::read(&mut caller, trailers_ptr, trailers_len)?)
                    .ok_or(Status::BadArgument)?;
                if !(has(&headers, b":method")
                    && has(&headers, b":path")
                    && has(&headers, b":authority"))
                {
                    return Err(Status::BadArgument);
                }
                let token = {
                    let shared = shared_of(&caller);
                    let mut shared = borrow(&shared)?;
                    let record = CalloutRecord {
                        filter: caller.data().filter.name.clone(),
                        cluster,
                        headers,
                        body,
                        grpc_method: String::new(),
                        timeout_ms,
                    };
                    let token = schedule(
                        &mut caller,
                        &mut shared,
                        CalloutKind::Http,
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
    Ok(())
}
