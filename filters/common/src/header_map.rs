//! Whole header maps read without ever trapping: names and values stay raw
//! bytes.
//!
//! The proxy-wasm SDK's whole-map getters (`hostcalls::get_map_bytes` and
//! the `get_http_*_headers_bytes` methods on top of it) turn every header
//! *name* into a `String` with `unwrap()`, so one name holding a byte
//! 0x80-0xFF traps the VM. Envoy's codecs refuse such names (HTTP/1.1 answers
//! 400 before any filter runs), but another filter in the chain (Lua,
//! ext_proc, header_mutation) can still add one. [`get`] asks the host for
//! the serialized map itself (`proxy_get_header_map_pairs`, in the small
//! `abi` submodule that holds this crate's only `unsafe` code) and [`parse`]
//! reads it with bounds-checked safe code.
//!
//! What a filter does with a name that is not UTF-8 (decided here once for
//! all of them):
//! - **Matching ignores it.** Every header name a filter looks for comes from
//!   its config, where [`crate::validate_header_name`] admits only ASCII
//!   tokens, or is a fixed ASCII name; a name that is not UTF-8 cannot equal
//!   any of them. [`split_utf8`] hands the filters' cores, which take
//!   `(String, Vec<u8>)` pairs, only the UTF-8 names.
//! - **Writing keeps it, byte for byte.** The SDK's whole-map setter takes
//!   names as `&str` and so cannot write such a header back. A filter that
//!   would rewrite the whole map (security-headers on the response,
//!   jwt-auth on the request) makes its edits one header at a time instead
//!   when [`Split::non_utf8`] is not empty: the host then never drops or
//!   changes the foreign header.
//!
//! # Wire format (proxy-wasm ABI v0.2.1)
//! A little-endian `u32` entry count `n`; then `n` pairs of little-endian
//! `u32` sizes (name size, value size); then, per entry, the name bytes, a
//! NUL, the value bytes, a NUL. An empty buffer is an empty map.

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // The host import and taking over its buffer; see the SAFETY notes there.
mod abi;

mod shared;

pub use shared::{add, map, replace, set_all, share_request_headers, value, Snapshot};

/// One header as the host holds it: name and value, raw bytes.
pub type RawHeader = (Vec<u8>, Vec<u8>);

/// Why a serialized header map could not be read. Only a host that breaks
/// the ABI produces one; the filters treat it like a map they cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not empty, yet too short for the 4-byte entry count.
    #[error("header map: {len} bytes cannot hold the 4-byte entry count")]
    NoCount {
        /// Buffer size.
        len: usize,
    },
    /// The count's size table (8 bytes an entry) runs past the end.
    #[error("header map: {count} entries need an {count}x8-byte size table, but the buffer has {len} bytes")]
    SizeTable {
        /// The entry count the buffer claims.
        count: u32,
        /// Buffer size.
        len: usize,
    },
    /// An entry's name or value runs past the end.
    #[error("header map: entry {index}: its {part} ({size} bytes at offset {offset}) runs past the end of the {len}-byte buffer")]
    Entry {
        /// Zero-based entry number.
        index: usize,
        /// `"name"` or `"value"`.
        part: &'static str,
        /// Where the part starts.
        offset: usize,
        /// The size the table gives it.
        size: u32,
        /// Buffer size.
        len: usize,
    },
}

/// Parses a serialized header map (see the module doc for the format).
///
/// Accepts every buffer the SDK's own reader accepts, with the same result,
/// so moving a filter to this reader cannot break a host that worked: the
/// NUL after each name and value is skipped without being checked, and bytes
/// after the last entry are ignored. Where the SDK would panic (a short
/// buffer, sizes past the end, a count it cannot allocate, a name that is
/// not UTF-8) this returns an error, or the raw name.
///
/// # Errors
/// [`ParseError`] when the count, the size table or an entry runs past the
/// end of `bytes`. Nothing is allocated for a count the buffer cannot hold.
///
/// # Examples
/// ```
/// use filter_common::header_map::{parse, serialize};
/// let wire = serialize(&[(b"x-\xff".as_slice(), b"v".as_slice())]);
/// assert_eq!(parse(&wire), Ok(vec![(b"x-\xff".to_vec(), b"v".to_vec())]));
/// assert!(parse(&wire[..wire.len() - 3]).is_err());
/// assert_eq!(parse(b""), Ok(vec![]));
/// ```
pub fn parse(bytes: &[u8]) -> Result<Vec<RawHeader>, ParseError> {
    let len = bytes.len();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (count, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(ParseError::NoCount { len })?;
    let count = u32::from_le_bytes(*count);
    let table_err = ParseError::SizeTable { count, len };
    let table_len = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(8))
        .ok_or_else(|| table_err.clone())?;
    let table = rest.get(..table_len).ok_or(table_err)?;
    let (sizes, _) = table.as_chunks::<8>();
    // Bounded by the buffer: each entry took 8 bytes of it.
    let mut pairs = Vec::with_capacity(sizes.len());
    // 4 + table_len <= len, so no overflow.
    let mut offset = 4 + table_len;
    for (index, &[n0, n1, n2, n3, v0, v1, v2, v3]) in sizes.iter().enumerate() {
        let mut take = |part: &'static str, size: u32| {
            let err = ParseError::Entry {
                index,
                part,
                offset,
                size,
                len,
            };
            let end = usize::try_from(size)
                .ok()
                .and_then(|size| offset.checked_add(size))
                .ok_or_else(|| err.clone())?;
            let slice = bytes.get(offset..end).ok_or(err)?;
            // Skip the NUL; `end <= len <= isize::MAX`, so this cannot
            // overflow, and the next `get` checks the bound.
            offset = end.saturating_add(1);
            Ok(slice.to_vec())
        };
        let name = take("name", u32::from_le_bytes([n0, n1, n2, n3]))?;
        let value = take("value", u32::from_le_bytes([v0, v1, v2, v3]))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// Serializes headers in the host's format: the inverse of [`parse`].
/// The filters do not write maps with it (see the module doc); tests and the
/// fuzz target use it to build host buffers.
///
/// A name or value over `u32::MAX` bytes, or more than `u32::MAX` headers,
/// cannot be represented; their sizes are saturated, so [`parse`] rejects the
/// result. Only a 64-bit caller can hold that much.
#[must_use]
pub fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let data: usize = pairs
        .iter()
        .map(|(name, value)| name.len().saturating_add(value.len()).saturating_add(2))
        .fold(0, usize::saturating_add);
    let mut out = Vec::with_capacity(
        pairs
            .len()
            .saturating_mul(8)
            .saturating_add(4)
            .saturating_add(data),
    );
    out.extend_from_slice(&size(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&size(name.len()));
        out.extend_from_slice(&size(value.len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// A header map split by whether each name is UTF-8; order is kept within
/// each half.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// Headers whose name is UTF-8: what the filters' cores match on.
    pub utf8: Vec<(String, Vec<u8>)>,
    /// Headers whose name is not UTF-8. No configured name can match them;
    /// a filter that writes the map must leave them as they are.
    pub non_utf8: Vec<RawHeader>,
}

/// Splits `pairs` by name (see [`Split`]). Moves the bytes; nothing is
/// copied.
///
/// # Examples
/// ```
/// use filter_common::header_map::split_utf8;
/// let split = split_utf8(vec![(b"a".to_vec(), b"1".to_vec()), (b"\xff".to_vec(), b"2".to_vec())]);
/// assert_eq!(split.utf8, vec![("a".to_owned(), b"1".to_vec())]);
/// assert_eq!(split.non_utf8, vec![(b"\xff".to_vec(), b"2".to_vec())]);
/// ```
#[must_use]
pub fn split_utf8(pairs: Vec<RawHeader>) -> Split {
    let mut split = Split {
        utf8: Vec::with_capacity(pairs.len()),
        non_utf8: Vec::new(),
    };
    for (name, value) in pairs {
        match String::from_utf8(name) {
            Ok(name) => split.utf8.push((name, value)),
            Err(err) => split.non_utf8.push((err.into_bytes(), value)),
        }
    }
    split
}

/// Why [`get`] returned no map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The host answered with a status other than `Ok` (ABI status code).
    #[error("host returned status {0} for proxy_get_header_map_pairs")]
    Host(u32),
    /// The host's buffer does not follow the ABI.
    #[error(transparent)]
    Malformed(#[from] ParseError),
    /// Not built for wasm32, so there is no proxy-wasm host to ask. Native
    /// builds compile some filters' glue (for their tests and benches) but
    /// never call it.
    #[error("no proxy-wasm host: not built for wasm32")]
    NoHost,
}

/// The map types, as the ABI numbers them (proxy-wasm's `MapType`).
pub use proxy_wasm::types::MapType;

/// Reads a whole header map from the host, names and values as raw bytes.
/// Never panics; this is what filters use instead of the SDK's
/// `get_map_bytes` / `get_http_*_headers_bytes`.
///
/// # Errors
/// [`ReadError::Host`] for a status other than `Ok` (the SDK panics on those),
/// [`ReadError::Malformed`] for a buffer [`parse`] rejects.
#[cfg(target_arch = "wasm32")]
pub fn get(map_type: MapType) -> Result<Vec<RawHeader>, ReadError> {
    // `MapType` is `repr(u32)` with the ABI's numbers.
    let buffer = abi::get_header_map_pairs(map_type as u32).map_err(ReadError::Host)?;
    Ok(parse(&buffer)?)
}

/// Off wasm32 there is no host: always [`ReadError::NoHost`]. The host
/// import is declared for wasm32 only, so a native build has no unresolved
/// symbol and no `unsafe` at all.
///
/// # Errors
/// Always [`ReadError::NoHost`].
#[cfg(not(target_arch = "wasm32"))]
pub fn get(_map_type: MapType) -> Result<Vec<RawHeader>, ReadError> {
    Err(ReadError::NoHost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A map laid out by hand from the ABI text, independent of
    /// [`serialize`]: `:method: GET`, `x-\xff: \x00v`.
    const HAND_MADE: &[u8] = &[
        2, 0, 0, 0, // two entries
        7, 0, 0, 0, 3, 0, 0, 0, // ":method", "GET"
        3, 0, 0, 0, 2, 0, 0, 0, // "x-\xff", "\0v"
        b':', b'm', b'e', b't', b'h', b'o', b'd', 0, b'G', b'E', b'T', 0, //
        b'x', b'-', 0xff, 0, 0, b'v', 0,
    ];

    fn owned(pairs: &[(&[u8], &[u8])]) -> Vec<RawHeader> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    }

    #[test]
    fn hand_made_map_parses_with_a_non_utf8_name_and_a_nul_in_a_value() {
        let expected: &[(&[u8], &[u8])] = &[(b":method", b"GET"), (b"x-\xff", b"\0v")];
        assert_eq!(parse(HAND_MADE), Ok(owned(expected)));
    }

    #[test]
    fn serialize_writes_the_abi_layout() {
        let pairs: &[(&[u8], &[u8])] = &[(b":method", b"GET"), (b"x-\xff", b"\0v")];
        assert_eq!(serialize(pairs), HAND_MADE);
    }

    #[test]
    fn empty_buffer_and_zero_count_are_empty_maps() {
        assert_eq!(parse(b""), Ok(vec![]));
        assert_eq!(parse(&[0, 0, 0, 0]), Ok(vec![]));
        assert_eq!(serialize(&[]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn empty_names_and_values_are_kept() {
        let pairs: &[(&[u8], &[u8])] = &[(b"", b""), (b"", b"v"), (b"n", b"")];
        assert_eq!(parse(&serialize(pairs)), Ok(owned(pairs)));
    }

    #[test]
    fn a_buffer_shorter_than_the_count_is_refused() {
        for len in 1..4 {
            assert_eq!(parse(&HAND_MADE[..len]), Err(ParseError::NoCount { len }));
        }
    }

    #[test]
    fn every_truncation_of_a_map_is_refused_or_a_prefix_of_it() {
        let full = parse(HAND_MADE).unwrap();
        // Only dropping the final NUL keeps the map whole, as in the SDK.
        for len in 0..HAND_MADE.len() {
            match parse(&HAND_MADE[..len]) {
                Ok(pairs) => assert!(len == 0 || len == HAND_MADE.len() - 1, "{len}: {pairs:?}"),
                Err(_) => assert!(len > 0),
            }
        }
        assert_eq!(parse(&HAND_MADE[..HAND_MADE.len() - 1]), Ok(full));
    }

    #[test]
    fn a_count_the_buffer_cannot_hold_is_refused_without_allocating() {
        // 12 bytes after the count hold one entry's sizes, not two.
        for count in [2u32, 3, 0x1000_0000, 0x2000_0000, u32::MAX] {
            let mut wire = count.to_le_bytes().to_vec();
            wire.extend_from_slice(&[0; 12]);
            assert_eq!(
                parse(&wire),
                Err(ParseError::SizeTable { count, len: 16 }),
                "{count}"
            );
        }
    }

    #[test]
    fn sizes_that_overflow_or_run_past_the_end_are_refused() {
        for (name_size, value_size, part) in [
            (u32::MAX, 0, "name"),
            (0, u32::MAX, "value"),
            (u32::MAX - 12, 0, "name"),
            (3, 0, "name"),
            (2, 0, "value"),
            (1, 1, "value"),
        ] {
            let mut wire = vec![1, 0, 0, 0];
            wire.extend_from_slice(&name_size.to_le_bytes());
            wire.extend_from_slice(&value_size.to_le_bytes());
            wire.extend_from_slice(b"a\0");
            let err = parse(&wire).unwrap_err();
            assert!(
                matches!(err, ParseError::Entry { index: 0, part: p, .. } if p == part),
                "{name_size} {value_size}: {err}"
            );
        }
    }

    #[test]
    fn trailing_bytes_and_unchecked_terminators_are_tolerated_as_the_sdk_does() {
        let mut wire = serialize(&[(b"a", b"b")]);
        // Terminators are not checked...
        let value_end = wire.len() - 1;
        wire[value_end] = b'!';
        // ...and bytes after the last entry are ignored.
        wire.extend_from_slice(b"junk");
        assert_eq!(parse(&wire), Ok(owned(&[(b"a", b"b")])));
    }

    #[test]
    fn split_keeps_order_within_each_half() {
        let split = split_utf8(owned(&[
            (b"a", b"1"),
            (b"\xc3", b"2"),
            (b"b", b"3"),
            (b"\xed\xa0\x80", b"4"),
        ]));
        assert_eq!(
            split.utf8,
            vec![
                ("a".to_owned(), b"1".to_vec()),
                ("b".to_owned(), b"3".to_vec())
            ]
        );
        assert_eq!(
            split.non_utf8,
            owned(&[(b"\xc3", b"2"), (b"\xed\xa0\x80", b"4")])
        );
    }

    fn raw_headers() -> impl Strategy<Value = Vec<RawHeader>> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..12);
        proptest::collection::vec((bytes.clone(), bytes), 0..8)
    }

    proptest! {
        #[test]
        fn serialize_then_parse_is_the_identity(pairs in raw_headers()) {
            let borrowed: Vec<(&[u8], &[u8])> =
                pairs.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
            prop_assert_eq!(parse(&serialize(&borrowed)), Ok(pairs));
        }

        #[test]
        fn parse_never_panics_and_stays_within_the_buffer(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(pairs) = parse(&bytes) {
                let used: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
                prop_assert!(used <= bytes.len());
            }
        }

        #[test]
        fn split_loses_nothing(pairs in raw_headers()) {
            let split = split_utf8(pairs.clone());
            prop_assert_eq!(split.utf8.len() + split.non_utf8.len(), pairs.len());
            prop_assert!(split.non_utf8.iter().all(|(n, _)| std::str::from_utf8(n).is_err()));
        }
    }
}
