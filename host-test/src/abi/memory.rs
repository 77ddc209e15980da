//! The one way host calls touch guest memory: bounds-checked reads and writes,
//! and "allocate in the guest and return (ptr, len)".
//!
//! A bad guest pointer never reaches unchecked code: it becomes
//! `InvalidMemoryAccess`, the status the ABI and Envoy return for it.

use wasmtime::Caller;

use super::types::{HostResult, Status};
use crate::vm::VmState;

/// Copies `len` bytes at `ptr` out of the guest.
pub fn read(caller: &mut Caller<'_, VmState>, ptr: u32, len: u32) -> HostResult<Vec<u8>> {
    let memory = caller.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or(Status::InvalidMemoryAccess)?;
    memory
        .data(&caller)
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess)
}

/// Reads a guest string leniently (invalid UTF-8 becomes U+FFFD).
pub fn read_string(caller: &mut Caller<'_, VmState>, ptr: u32, len: u32) -> HostResult<String> {
    read(caller, ptr, len).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes `bytes` at `ptr` in the guest.
pub fn write(caller: &mut Caller<'_, VmState>, ptr: u32, bytes: &[u8]) -> HostResult {
    let memory = caller.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    memory
        .write(caller, ptr as usize, bytes)
        .map_err(|_| Status::InvalidMemoryAccess)
}

/// Writes a little-endian `u32` (a guest `usize` or pointer) at `ptr`.
pub fn write_u32(caller: &mut Caller<'_, VmState>, ptr: u32, value: u32) -> HostResult {
    write(caller, ptr, &value.to_le_bytes())
}

/// Writes a little-endian `u64` at `ptr`.
pub fn write_u64(caller: &mut Caller<'_, VmState>, ptr: u32, value: u64) -> HostResult {
    write(caller, ptr, &value.to_le_bytes())
}

/// Allocates `bytes.len()` in the guest through its `proxy_on_memory_allocate`
/// (or `malloc`), copies `bytes` there, and stores the pointer and length at
/// `ptr_ptr` and `size_ptr`.
///
/// Empty data is returned as a null pointer with size 0, as
/// proxy-wasm-cpp-host does; the Rust SDK reads that as "no value".
pub fn return_bytes(
    caller: &mut Caller<'_, VmState>,
    bytes: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let size = u32::try_from(bytes.len()).map_err(|_| Status::BadArgument)?;
    let mut address = 0;
    if size > 0 {
        let allocate = caller
            .data()
            .allocate
            .clone()
            .ok_or(Status::InternalFailure)?;
        // A trap inside the guest's allocator is reported by the VM when the
        // callback returns; here it simply fails the host call.
        address = allocate
            .call(&mut *caller, size)
            .map_err(|_| Status::InternalFailure)?;
        if address == 0 {
            return Err(Status::InternalFailure);
        }
        write(caller, address, bytes)?;
    }
    write_u32(caller, ptr_ptr, address)?;
    write_u32(caller, size_ptr, size)
}

/// Serialises header pairs in the ABI's map format: a `u32` count, then a
/// (`u32` key length, `u32` value length) per pair, then each key and value
/// followed by a NUL byte.
pub fn serialize_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let data_len: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data_len);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (key, value) in pairs {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// Parses the ABI's map format; `None` if it is truncated or inconsistent.
pub fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(raw) as usize)
    };
    let count = word(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for index in 0..count {
        let at = 4 + index * 8;
        sizes.push((word(at)?, word(at + 4)?));
    }
    let mut cursor = 4 + count * 8;
    let mut pairs = Vec::with_capacity(sizes.len());
    for (key_len, value_len) in sizes {
        let key = bytes.get(cursor..cursor + key_len)?.to_vec();
        cursor += key_len + 1;
        let value = bytes.get(cursor..cursor + value_len)?.to_vec();
        cursor += value_len + 1;
        pairs.push((key, value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_including_empty_values() {
        let pairs = vec![
            (b":path".to_vec(), b"/".to_vec()),
            (b"x".to_vec(), Vec::new()),
        ];
        assert_eq!(deserialize_pairs(&serialize_pairs(&pairs)), Some(pairs));
    }

    #[test]
    fn truncated_maps_are_refused_not_panicked_on() {
        let full = serialize_pairs(&[(b"key".to_vec(), b"value".to_vec())]);
        for cut in 1..full.len() - 1 {
            assert_eq!(deserialize_pairs(&full[..cut]), None, "cut at {cut}");
        }
    }

    proptest::proptest! {
        #[test]
        fn deserialize_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = deserialize_pairs(&bytes);
        }
    }
}
