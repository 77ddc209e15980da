//! `proxy_get_shared_data` and `proxy_set_shared_data`: key-value data shared
//! by every VM with the same `vm_id`, with compare-and-swap.
//!
//! As in proxy-wasm-cpp-host: CAS stamps start at 1 and change on every write;
//! a write with `cas == 0` is unconditional; a write with a stale non-zero
//! `cas` on an existing key fails with `CasMismatch`. A test may install a
//! [`SharedDataHook`](crate::shared::SharedDataHook) that writes between a
//! read and the reader's next call, to race compare-and-swap loops.

use wasmtime::{Caller, Linker};

use super::types::{status_of, HostResult, Status};
use super::{borrow, memory, shared_of};
use crate::shared::{SharedRead, SharedValue};
use crate::vm::VmState;

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut caller: Caller<'_, VmState>,
         key_ptr: u32,
         key_len: u32,
         ptr_ptr: u32,
         size_ptr: u32,
         cas_ptr: u32| {
            status_of((|| {
                let key = memory::read(&mut caller, key_ptr, key_len)?;
                let vm_id = caller.data().filter.vm_id.clone();
                let slot = (vm_id, key);
                let (value, cas) = {
                    let shared = shared_of(&caller);
                    let shared = borrow(&shared)?;
                    let entry = shared.shared_data.get(&slot).ok_or(Status::NotFound)?;
                    (entry.value.clone(), entry.cas)
                };
                memory::return_bytes(&mut caller, &value, ptr_ptr, size_ptr)?;
                memory::write_u32(&mut caller, cas_ptr, cas)?;
                interleave_write(&caller, &value, slot)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut caller: Caller<'_, VmState>,
         key_ptr: u32,
         key_len: u32,
         value_ptr: u32,
         value_len: u32,
         cas: u32| {
            status_of((|| {
                let key = memory::read(&mut caller, key_ptr, key_len)?;
                let value = memory::read(&mut caller, value_ptr, value_len)?;
                let vm_id = caller.data().filter.vm_id.clone();
                let shared = shared_of(&caller);
                let mut shared = borrow(&shared)?;
                let slot = (vm_id, key);
                if let Some(existing) = shared.shared_data.get(&slot) {
                    if cas != 0 && cas != existing.cas {
                        return Err(Status::CasMismatch);
                    }
                }
                let cas = shared.next_cas();
                shared.shared_data.insert(slot, SharedValue { value, cas });
                Ok(())
            })())
        },
    )?;
    Ok(())
}

/// Runs the host's [`SharedDataHook`](crate::shared::SharedDataHook), if
/// any, after a read, and stores what it returns under a new stamp. The hook
/// is taken out while it runs so it never sees the state borrowed.
fn interleave_write(
    caller: &Caller<'_, VmState>,
    value: &[u8],
    slot: (String, Vec<u8>),
) -> HostResult<()> {
    let shared = shared_of(caller);
    let Some(mut hook) = borrow(&shared)?.shared_data_hook.0.take() else {
        return Ok(());
    };
    let write = hook(&SharedRead {
        filter: &caller.data().filter.name,
        worker: caller.data().worker,
        key: &slot.1,
        value,
    });
    let mut shared = borrow(&shared)?;
    if let Some(value) = write {
        let cas = shared.next_cas();
        shared.shared_data.insert(slot, SharedValue { value, cas });
    }
    shared.shared_data_hook.0 = Some(hook);
    Ok(())
}
