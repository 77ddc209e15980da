//! The WASI preview1 subset the proxy-wasm spec lists, implemented against
//! the host's virtual clock, seeded RNG and log:
//! `fd_write` (stdout → info log, stderr → error log, as Envoy),
//! `clock_time_get`/`clock_res_get`, `random_get`, `environ_get`,
//! `environ_sizes_get`, `args_get`/`args_sizes_get` (no arguments),
//! `proc_exit`, `sched_yield`, and `fd_fdstat_get`/`fd_prestat_get` so std's
//! start-up sees three character devices and no preopened directories.
//!
//! Any other WASI call a module imports answers `ENOSYS` (see
//! [`define_fallbacks`]); none traps.

use wasmtime::{Caller, Linker, Module, Val, ValType};

use super::memory;
use super::types::LogLevel;
use crate::vm::{ProcExit, VmState};

/// The module name of WASI preview1 imports.
pub const MODULE: &str = "wasi_snapshot_preview1";

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;

fn errno(result: Result<(), i32>) -> i32 {
    match result {
        Ok(()) => ESUCCESS,
        Err(code) => code,
    }
}

fn fault<T>(_: T) -> i32 {
    EFAULT
}

/// The environment as `KEY=VALUE\0` strings.
fn environ(caller: &Caller<'_, VmState>) -> Vec<Vec<u8>> {
    let shared = caller.data().shared.borrow();
    shared
        .env
        .iter()
        .map(|(k, v)| {
            let mut entry = format!("{k}={v}").into_bytes();
            entry.push(0);
            entry
        })
        .collect()
}

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, VmState>, fd: i32, iovs: i32, iovs_len: i32, written_ptr: i32| {
            errno((|| {
                let level = match fd {
                    1 => LogLevel::Info,
                    2 => LogLevel::Error,
                    _ => return Err(EBADF),
                };
                let mut text = Vec::new();
                for index in 0..iovs_len as u32 {
                    let entry = memory::read(&mut caller, (iovs as u32).wrapping_add(index * 8), 8)
                        .map_err(fault)?;
                    let word = |at: usize| {
                        entry
                            .get(at..at + 4)
                            .and_then(|b| b.try_into().ok())
                            .map(u32::from_le_bytes)
                    };
                    let (ptr, len) = word(0).zip(word(4)).ok_or(EFAULT)?;
                    text.extend(memory::read(&mut caller, ptr, len).map_err(fault)?);
                }
                let count = text.len() as u32;
                let message = String::from_utf8_lossy(&text)
                    .trim_end_matches('\n')
                    .to_owned();
                if !message.is_empty() {
                    super::log::record(&caller, level, message);
                }
                memory::write_u32(&mut caller, written_ptr as u32, count).map_err(fault)
            })())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut caller: Caller<'_, VmState>, id: i32, _precision: i64, time_ptr: i32| {
            errno((|| {
                let clock = caller.data().shared.borrow().clock.clone();
                let now = match id {
                    0 => clock.now_ns,             // realtime
                    1..=3 => clock.monotonic_ns(), // monotonic, process and thread CPU time
                    _ => return Err(EINVAL),
                };
                memory::write_u64(&mut caller, time_ptr as u32, now).map_err(fault)
            })())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut caller: Caller<'_, VmState>, id: i32, res_ptr: i32| {
            errno((|| {
                if !(0..=3).contains(&id) {
                    return Err(EINVAL);
                }
                memory::write_u64(&mut caller, res_ptr as u32, 1).map_err(fault)
            })())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut caller: Caller<'_, VmState>, buf: i32, len: i32| {
            let mut bytes = vec![0; len as u32 as usize];
            caller.data().shared.borrow_mut().rng.fill(&mut bytes);
            errno(memory::write(&mut caller, buf as u32, &bytes).map_err(fault))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut caller: Caller<'_, VmState>, count_ptr: i32, size_ptr: i32| {
            errno((|| {
                let entries = environ(&caller);
                let size: usize = entries.iter().map(Vec::len).sum();
                memory::write_u32(&mut caller, count_ptr as u32, entries.len() as u32)
                    .map_err(fault)?;
                memory::write_u32(&mut caller, size_ptr as u32, size as u32).map_err(fault)
            })())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_get",
        |mut caller: Caller<'_, VmState>, pointers: i32, buffer: i32| {
            errno((|| {
                let mut cursor = buffer as u32;
                for (index, entry) in environ(&caller).iter().enumerate() {
                    memory::write_u32(&mut caller, pointers as u32 + index as u32 * 4, cursor)
                        .map_err(fault)?;
                    memory::write(&mut caller, cursor, entry).map_err(fault)?;
                    cursor += entry.len() as u32;
                }
                Ok(())
            })())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut caller: Caller<'_, VmState>, count_ptr: i32, size_ptr: i32| {
            errno((|| {
                memory::write_u32(&mut caller, count_ptr as u32, 0).map_err(fault)?;
                memory::write_u32(&mut caller, size_ptr as u32, 0).map_err(fault)
            })())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "args_get",
        |_: Caller<'_, VmState>, _argv: i32, _buf: i32| ESUCCESS,
    )?;
    linker.func_wrap(MODULE, "sched_yield", |_: Caller<'_, VmState>| ESUCCESS)?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_: Caller<'_, VmState>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(ProcExit(code)))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut caller: Caller<'_, VmState>, fd: i32, stat_ptr: i32| {
            errno((|| {
                if !(0..=2).contains(&fd) {
                    return Err(EBADF);
                }
                // filetype 2 = character device; no flags; no rights needed.
                let mut stat = [0u8; 24];
                stat[0] = 2;
                memory::write(&mut caller, stat_ptr as u32, &stat).map_err(fault)
            })())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_get",
        |_: Caller<'_, VmState>, _fd: i32, _ptr: i32| EBADF,
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |_: Caller<'_, VmState>, _fd: i32, _ptr: i32, _len: i32| EBADF,
    )?;
    Ok(())
}

/// Defines every WASI function `module` imports that [`add_to_linker`] did
/// not, as a function that returns `ENOSYS` (or zeroes for other result
/// shapes), so an unexpected WASI call fails softly instead of trapping.
///
/// # Errors
/// Only if wasmtime rejects a definition.
pub fn define_fallbacks(
    linker: &mut Linker<VmState>,
    module: &Module,
    defined: &dyn Fn(&str, &str) -> bool,
) -> wasmtime::Result<()> {
    for import in module.imports() {
        if import.module() != MODULE || defined(MODULE, import.name()) {
            continue;
        }
        let Some(ty) = import.ty().func().cloned() else {
            continue;
        };
        linker.func_new(
            MODULE,
            import.name(),
            ty.clone(),
            move |_caller, _params, results| {
                for (slot, result_ty) in results.iter_mut().zip(ty.results()) {
                    *slot = match result_ty {
                        ValType::I32 => Val::I32(ENOSYS),
                        ValType::I64 => Val::I64(i64::from(ENOSYS)),
                        ValType::F32 => Val::F32(0),
                        ValType::F64 => Val::F64(0),
                        _ => Val::null_extern_ref(),
                    };
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}
