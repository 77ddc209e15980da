//! `proxy_call_foreign_function`: the host extensions Envoy offers by name.
//!
//! `clear_route_cache` is recorded (the route table is re-evaluated after
//! the request path, as Envoy does when asked). Unknown names are `NotFound`,
//! Envoy's answer too.

use wasmtime::{Caller, Linker};

use super::types::{status_of, Status};
use super::{borrow, memory, shared_of};
use crate::shared::ForeignCall;
use crate::vm::VmState;

/// The foreign functions this host knows.
pub const KNOWN: &[&str] = &["clear_route_cache"];

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut caller: Caller<'_, VmState>,
         name_ptr: u32,
         name_len: u32,
         args_ptr: u32,
         args_len: u32,
         ret_ptr: u32,
         ret_size: u32| {
            status_of((|| {
                let function = memory::read_string(&mut caller, name_ptr, name_len)?;
                memory::read(&mut caller, args_ptr, args_len)?;
                if !KNOWN.contains(&function.as_str()) {
                    return Err(Status::NotFound);
                }
                {
                    let shared = shared_of(&caller);
                    let mut shared = borrow(&shared)?;
                    let filter = caller.data().filter.name.clone();
                    let stream = caller.data().effective_stream();
                    crate::shared::keep_recent(
                        &mut shared.foreign_calls,
                        ForeignCall {
                            filter,
                            function,
                            stream,
                        },
                    );
                }
                memory::return_bytes(&mut caller, &[], ret_ptr, ret_size)
            })())
        },
    )?;
    Ok(())
}
