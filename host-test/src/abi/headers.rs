//! Header and trailer maps: `proxy_get_header_map_pairs`,
//! `proxy_set_header_map_pairs`, `proxy_get_header_map_value`,
//! `proxy_add_header_map_value`, `proxy_replace_header_map_value`,
//! `proxy_remove_header_map_value`.
//!
//! Names are lower-cased on the way in, as Envoy's `LowerCaseString` does;
//! lookups return the first value of a repeated header, as Envoy does.

use wasmtime::{Caller, Linker};

use super::types::{status_of, HostResult, MapType, Status};
use super::{borrow, memory, shared_of};
use crate::shared::{Pairs, StreamData};
use crate::vm::VmState;

fn stream_map(stream: &mut StreamData, map: MapType) -> HostResult<&mut Pairs> {
    match map {
        MapType::RequestHeaders => Ok(&mut stream.request_headers),
        MapType::RequestTrailers => Ok(&mut stream.request_trailers),
        MapType::ResponseHeaders if stream.has_response => Ok(&mut stream.response_headers),
        MapType::ResponseTrailers if stream.has_response => Ok(&mut stream.response_trailers),
        _ => Err(Status::NotFound),
    }
}

/// Runs `f` on the map `raw_map` names, for the effective context.
fn with_map<R>(
    caller: &mut Caller<'_, VmState>,
    raw_map: u32,
    f: impl FnOnce(&mut Pairs) -> R,
) -> HostResult<R> {
    let map = MapType::from_raw(raw_map)?;
    match map {
        MapType::RequestHeaders
        | MapType::RequestTrailers
        | MapType::ResponseHeaders
        | MapType::ResponseTrailers => {
            let stream = caller.data().effective_stream().ok_or(Status::NotFound)?;
            let shared = shared_of(caller);
            let mut shared = borrow(&shared)?;
            let data = shared.streams.get_mut(&stream).ok_or(Status::NotFound)?;
            Ok(f(stream_map(data, map)?))
        }
        _ => {
            let pairs = caller
                .data_mut()
                .scratch
                .maps
                .get_mut(&map)
                .ok_or(Status::NotFound)?;
            Ok(f(pairs))
        }
    }
}

fn writable(raw_map: u32) -> HostResult {
    match MapType::from_raw(raw_map)? {
        MapType::RequestHeaders
        | MapType::RequestTrailers
        | MapType::ResponseHeaders
        | MapType::ResponseTrailers => Ok(()),
        // Callout answers are read-only, as in Envoy.
        _ => Err(Status::BadArgument),
    }
}

fn lower(key: Vec<u8>) -> Vec<u8> {
    key.to_ascii_lowercase()
}

/// Replaces the first `key` in place and drops its repeats, or appends it.
pub fn replace(pairs: &mut Pairs, key: Vec<u8>, value: Vec<u8>) {
    match pairs.iter().position(|(k, _)| *k == key) {
        Some(first) => {
            if let Some(slot) = pairs.get_mut(first) {
                slot.1 = value;
            }
            let mut index = 0;
            pairs.retain(|(k, _)| {
                let keep = index <= first || *k != key;
                index += 1;
                keep
            });
        }
        None => pairs.push((key, value)),
    }
}

/// Adds the family to the linker.
///
/// # Errors
/// Duplicate definitions only.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, VmState>, map: u32, ptr_ptr: u32, size_ptr: u32| {
            status_of((|| {
                let bytes = with_map(&mut caller, map, |pairs| memory::serialize_pairs(pairs))?;
                memory::return_bytes(&mut caller, &bytes, ptr_ptr, size_ptr)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: Caller<'_, VmState>, map: u32, ptr: u32, len: u32| {
            status_of((|| {
                writable(map)?;
                let bytes = memory::read(&mut caller, ptr, len)?;
                let pairs = memory::deserialize_pairs(&bytes).ok_or(Status::BadArgument)?;
                let pairs: Pairs = pairs.into_iter().map(|(k, v)| (lower(k), v)).collect();
                with_map(&mut caller, map, |existing| *existing = pairs)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, VmState>,
         map: u32,
         key_ptr: u32,
         key_len: u32,
         ptr_ptr: u32,
         size_ptr: u32| {
            status_of((|| {
                let key = lower(memory::read(&mut caller, key_ptr, key_len)?);
                let value = with_map(&mut caller, map, |pairs| {
                    pairs
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.clone())
                })?
                .ok_or(Status::NotFound)?;
                memory::return_bytes(&mut caller, &value, ptr_ptr, size_ptr)
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut caller: Caller<'_, VmState>,
         map: u32,
         key_ptr: u32,
         key_len: u32,
         value_ptr: u32,
         value_len: u32| {
            status_of((|| {
                writable(map)?;
                let key = lower(memory::read(&mut caller, key_ptr, key_len)?);
                let value = memory::read(&mut caller, value_ptr, value_len)?;
                with_map(&mut caller, map, |pairs| pairs.push((key, value)))
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut caller: Caller<'_, VmState>,
         map: u32,
         key_ptr: u32,
         key_len: u32,
         value_ptr: u32,
         value_len: u32| {
            status_of((|| {
                writable(map)?;
                let key = lower(memory::read(&mut caller, key_ptr, key_len)?);
                let value = memory::read(&mut caller, value_ptr, value_len)?;
                with_map(&mut caller, map, |pairs| replace(pairs, key, value))
            })())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: Caller<'_, VmState>, map: u32, key_ptr: u32, key_len: u32| {
            status_of((|| {
                writable(map)?;
                let key = lower(memory::read(&mut caller, key_ptr, key_len)?);
                with_map(&mut caller, map, |pairs| pairs.retain(|(k, _)| *k != key))
            })())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Pairs {
        items
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn replace_keeps_the_first_position_and_drops_repeats() {
        let mut map = pairs(&[("a", "1"), ("x", "old"), ("b", "2"), ("x", "older")]);
        replace(&mut map, b"x".to_vec(), b"new".to_vec());
        assert_eq!(map, pairs(&[("a", "1"), ("x", "new"), ("b", "2")]));
    }

    #[test]
    fn replace_appends_a_missing_header() {
        let mut map = pairs(&[("a", "1")]);
        replace(&mut map, b"x".to_vec(), b"v".to_vec());
        assert_eq!(map, pairs(&[("a", "1"), ("x", "v")]));
    }
}
