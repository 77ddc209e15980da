//! Shared queues: `proxy_register_shared_queue`, `proxy_resolve_shared_queue`,
//! `proxy_enqueue_shared_queue`, `proxy_dequeue_shared_queue`.
//!
//! A queue belongs to the root context of the VM that registered it last (as
//! in proxy-wasm-cpp-host); enqueueing schedules `on_queue_ready` on that VM
//! after the current callback, as Envoy posts it to the owner's worker.

use wasmtime::{Caller, Linker};

use super::types::{status_of, Status};
use super::{borrow, memory, shared_of};
use crate::shared::{Effect, Queue};
use crate::vm::VmState;

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut caller: Caller<'_, VmState>, name_ptr: u32, name_len: u32, token_ptr: u32| {
            status_of((|| {
                let name = memory::read_string(&mut caller, name_ptr, name_len)?;
                let state = caller.data();
                let vm_id = state.filter.vm_id.clone();
                let owner = (state.filter.index, state.worker, state.root_context_id);
                let token = {
                    let shared = shared_of(&caller);
                    let mut shared = borrow(&shared)?;
                    match shared
                        .queues
                        .iter()
                        .position(|q| q.vm_id == vm_id && q.name == name)
                    {
                        Some(index) => {
                            if let Some(queue) = shared.queues.get_mut(index) {
                                queue.owner = owner;
                            }
                            index + 1
                        }
                        None => {
                            shared.queues.push(Queue {
                                vm_id,
                                name,
                                owner,
                                items: Default::default(),
                            });
                            shared.queues.len()
                        }
                    }
                };
                memory::write_u32(&mut caller, token_ptr, token as u32)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut caller: Caller<'_, VmState>,
         vm_id_ptr: u32,
         vm_id_len: u32,
         name_ptr: u32,
         name_len: u32,
         token_ptr: u32| {
            status_of((|| {
                let mut vm_id = memory::read_string(&mut caller, vm_id_ptr, vm_id_len)?;
                let name = memory::read_string(&mut caller, name_ptr, name_len)?;
                if vm_id.is_empty() {
                    vm_id = caller.data().filter.vm_id.clone();
                }
                let token = {
                    let shared = shared_of(&caller);
                    let shared = borrow(&shared)?;
                    shared
                        .queues
                        .iter()
                        .position(|q| q.vm_id == vm_id && q.name == name)
                        .ok_or(Status::NotFound)?
                        + 1
                };
                memory::write_u32(&mut caller, token_ptr, token as u32)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut caller: Caller<'_, VmState>, token: u32, ptr: u32, len: u32| {
            status_of((|| {
                let item = memory::read(&mut caller, ptr, len)?;
                let shared = shared_of(&caller);
                let mut shared = borrow(&shared)?;
                let index = (token as usize).checked_sub(1).ok_or(Status::NotFound)?;
                let queue = shared.queues.get_mut(index).ok_or(Status::NotFound)?;
                queue.items.push_back(item);
                let owner = queue.owner;
                shared.effects.push(Effect::QueueReady { owner, token });
                Ok(())
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut caller: Caller<'_, VmState>, token: u32, ptr_ptr: u32, size_ptr: u32| {
            status_of((|| {
                let item = {
                    let shared = shared_of(&caller);
                    let mut shared = borrow(&shared)?;
                    let index = (token as usize).checked_sub(1).ok_or(Status::NotFound)?;
                    let queue = shared.queues.get_mut(index).ok_or(Status::NotFound)?;
                    queue.items.pop_front().ok_or(Status::Empty)?
                };
                memory::return_bytes(&mut caller, &item, ptr_ptr, size_ptr)
            })())
        },
    )?;
    Ok(())
}
