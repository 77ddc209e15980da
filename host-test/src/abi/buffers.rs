//! `proxy_get_buffer_bytes` and `proxy_set_buffer_bytes`.

use wasmtime::{Caller, Linker};

use super::types::{status_of, BufferType, HostResult, Status};
use super::{borrow, memory, shared_of};
use crate::vm::VmState;

/// Copies `[start, start + max)` of a buffer, clipped to its length.
fn read_buffer(
    caller: &mut Caller<'_, VmState>,
    kind: BufferType,
    start: usize,
    max: usize,
) -> HostResult<Vec<u8>> {
    let clip = |bytes: &[u8]| -> HostResult<Vec<u8>> {
        if start > bytes.len() {
            return Err(Status::BadArgument);
        }
        let end = start.saturating_add(max).min(bytes.len());
        Ok(bytes.get(start..end).unwrap_or_default().to_vec())
    };
    match kind {
        BufferType::RequestBody | BufferType::ResponseBody => {
            let stream = caller.data().effective_stream().ok_or(Status::NotFound)?;
            let shared = shared_of(caller);
            let shared = borrow(&shared)?;
            let data = shared.streams.get(&stream).ok_or(Status::NotFound)?;
            let body = if kind == BufferType::RequestBody {
                &data.request_body
            } else {
                &data.response_body
            };
            clip(body)
        }
        BufferType::DownstreamData | BufferType::UpstreamData => Err(Status::NotFound),
        _ => clip(
            caller
                .data()
                .scratch
                .buffers
                .get(&kind)
                .ok_or(Status::NotFound)?,
        ),
    }
}

/// Replaces `[start, start + size)` of `buffer` with `data`; `start` past the
/// end is `BadArgument`. Covers Envoy's prepend (0, 0), replace (0, len) and
/// append (len, 0).
pub fn splice(buffer: &mut Vec<u8>, start: usize, size: usize, data: &[u8]) -> HostResult {
    if start > buffer.len() {
        return Err(Status::BadArgument);
    }
    let end = start.saturating_add(size).min(buffer.len());
    buffer.splice(start..end, data.iter().copied());
    Ok(())
}

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, VmState>,
         kind: u32,
         start: u32,
         max: u32,
         ptr_ptr: u32,
         size_ptr: u32| {
            status_of((|| {
                let kind = BufferType::from_raw(kind)?;
                let bytes = read_buffer(&mut caller, kind, start as usize, max as usize)?;
                memory::return_bytes(&mut caller, &bytes, ptr_ptr, size_ptr)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, VmState>, kind: u32, start: u32, size: u32, ptr: u32, len: u32| {
            status_of((|| {
                let kind = BufferType::from_raw(kind)?;
                let data = memory::read(&mut caller, ptr, len)?;
                if !matches!(kind, BufferType::RequestBody | BufferType::ResponseBody) {
                    return Err(Status::BadArgument);
                }
                let stream = caller.data().effective_stream().ok_or(Status::NotFound)?;
                let shared = shared_of(&caller);
                let mut shared = borrow(&shared)?;
                let stream = shared.streams.get_mut(&stream).ok_or(Status::NotFound)?;
                let body = if kind == BufferType::RequestBody {
                    &mut stream.request_body
                } else {
                    &mut stream.response_body
                };
                splice(body, start as usize, size as usize, &data)
            })())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_prepends_replaces_and_appends() {
        let mut body = b"body".to_vec();
        splice(&mut body, 0, 0, b">").unwrap();
        assert_eq!(body, b">body");
        splice(&mut body, 5, 0, b"<").unwrap();
        assert_eq!(body, b">body<");
        splice(&mut body, 0, usize::MAX, b"new").unwrap();
        assert_eq!(body, b"new");
        assert_eq!(splice(&mut body, 4, 0, b"x"), Err(Status::BadArgument));
    }
}
