//! `proxy_log`, `proxy_get_log_level`, `proxy_get_current_time_nanoseconds`.

use wasmtime::{Caller, Linker};

use super::types::{status_of, LogLevel};
use super::{borrow, memory, shared_of};
use crate::shared::LogRecord;
use crate::vm::VmState;

/// Appends a log line for the calling VM, if `level` passes the host's level.
pub fn record(caller: &Caller<'_, VmState>, level: LogLevel, message: String) {
    let shared = shared_of(caller);
    let Ok(mut shared) = borrow(&shared) else {
        return;
    };
    if level < shared.log_level {
        return;
    }
    let record = LogRecord {
        filter: caller.data().filter.name.clone(),
        worker: caller.data().worker,
        level,
        message,
    };
    crate::shared::keep_recent(&mut shared.logs, record);
}

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: Caller<'_, VmState>, level: u32, ptr: u32, len: u32| {
            status_of((|| {
                let level = LogLevel::from_raw(level)?;
                let message = memory::read_string(&mut caller, ptr, len)?;
                record(&caller, level, message);
                Ok(())
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: Caller<'_, VmState>, level_ptr: u32| {
            let level = caller.data().shared.borrow().log_level as u32;
            status_of(memory::write_u32(&mut caller, level_ptr, level))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, VmState>, time_ptr: u32| {
            let now = caller.data().shared.borrow().clock.now_ns;
            status_of(memory::write_u64(&mut caller, time_ptr, now))
        },
    )?;
    Ok(())
}
