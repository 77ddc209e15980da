//! `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`,
//! `proxy_get_metric`, on the host's shared [`MetricRegistry`].
//!
//! Envoy's rules: defining an existing name returns the same id; a counter
//! increment must be > 0; record on a counter adds; record on a gauge sets;
//! a histogram can only be recorded, not read.
//!
//! [`MetricRegistry`]: crate::metrics::MetricRegistry

use wasmtime::{Caller, Linker};

use super::types::{status_of, MetricKind};
use super::{borrow, memory, shared_of};
use crate::vm::VmState;

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: Caller<'_, VmState>, kind: u32, name_ptr: u32, name_len: u32, id_ptr: u32| {
            status_of((|| {
                let kind = MetricKind::from_raw(kind)?;
                let name = memory::read_string(&mut caller, name_ptr, name_len)?;
                let id = {
                    let shared = shared_of(&caller);
                    let mut shared = borrow(&shared)?;
                    shared.metrics.define(kind, &name)?
                };
                memory::write_u32(&mut caller, id_ptr, id)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |caller: Caller<'_, VmState>, id: u32, offset: i64| {
            status_of((|| {
                let shared = shared_of(&caller);
                let mut shared = borrow(&shared)?;
                shared.metrics.increment(id, offset)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |caller: Caller<'_, VmState>, id: u32, value: u64| {
            status_of((|| {
                let shared = shared_of(&caller);
                let mut shared = borrow(&shared)?;
                shared.metrics.record(id, value)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: Caller<'_, VmState>, id: u32, value_ptr: u32| {
            status_of((|| {
                let value = {
                    let shared = shared_of(&caller);
                    let mut shared = borrow(&shared)?;
                    shared.metrics.get(id)?
                };
                memory::write_u64(&mut caller, value_ptr, value)
            })())
        },
    )?;
    Ok(())
}
