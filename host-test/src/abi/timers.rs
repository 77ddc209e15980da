//! `proxy_set_tick_period_milliseconds`: ticks follow the virtual clock.

use wasmtime::{Caller, Linker};

use super::types::status_of;
use crate::vm::VmState;

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: Caller<'_, VmState>, period: u32| {
            let now = caller.data().shared.borrow().clock.now_ns;
            let state = caller.data_mut();
            // The tick belongs to the VM's root context whichever context asks,
            // as in Envoy; 0 turns ticks off.
            if period == 0 {
                state.tick_period_ms = None;
            } else {
                state.tick_period_ms = Some(period);
                state.next_tick_ns = now + u64::from(period) * 1_000_000;
            }
            status_of(Ok(()))
        },
    )?;
    Ok(())
}
