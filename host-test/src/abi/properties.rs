//! `proxy_get_property` and `proxy_set_property`. Paths arrive as
//! NUL-separated segments (`request\0path\0`) and are resolved by
//! [`crate::properties`].

use wasmtime::{Caller, Linker};

use super::types::{status_of, Status};
use super::{borrow, memory, shared_of};
use crate::properties::resolve;
use crate::vm::VmState;

/// Joins NUL-separated path segments with dots (trailing NULs ignored).
pub fn dotted_path(raw: &[u8]) -> String {
    raw.split(|&b| b == 0)
        .filter(|segment| !segment.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(".")
}

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: Caller<'_, VmState>,
         path_ptr: u32,
         path_len: u32,
         ptr_ptr: u32,
         size_ptr: u32| {
            status_of((|| {
                let path = dotted_path(&memory::read(&mut caller, path_ptr, path_len)?);
                let value = {
                    let shared = shared_of(&caller);
                    let shared = borrow(&shared)?;
                    let stream = caller
                        .data()
                        .effective_stream()
                        .and_then(|id| shared.streams.get(&id));
                    resolve(
                        &path,
                        &caller.data().filter,
                        stream,
                        &shared.properties,
                        shared.clock.now_ns,
                    )
                };
                let value = value.ok_or(Status::NotFound)?;
                memory::return_bytes(&mut caller, &value, ptr_ptr, size_ptr)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: Caller<'_, VmState>,
         path_ptr: u32,
         path_len: u32,
         value_ptr: u32,
         value_len: u32| {
            status_of((|| {
                let path = dotted_path(&memory::read(&mut caller, path_ptr, path_len)?);
                let value = memory::read(&mut caller, value_ptr, value_len)?;
                let shared = shared_of(&caller);
                let mut shared = borrow(&shared)?;
                // Envoy stores these as filter state on the stream; from a
                // root context there is no stream to hold them.
                let stream = caller.data().effective_stream().ok_or(Status::NotFound)?;
                let data = shared.streams.get_mut(&stream).ok_or(Status::NotFound)?;
                data.set_properties.insert(path, value);
                Ok(())
            })())
        },
    )?;
    Ok(())
}
