//! filters/common's `header_map::parse`, the reader of the serialized
//! header map a host hands over (`proxy_get_header_map_pairs`), over raw
//! bytes: what a broken or hostile host could write.
//!
//! Findings besides a panic: a parsed map holding more name and value bytes
//! than the buffer had, a parsed map that does not survive
//! `serialize` then `parse` unchanged, and `split_utf8` losing a header or
//! putting a UTF-8 name on the wrong side.
#![no_main]

use filter_common::header_map::{parse, serialize, split_utf8};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = parse(data) else {
        return;
    };
    let used: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
    assert!(
        used <= data.len(),
        "{used} bytes parsed out of {}",
        data.len()
    );
    let borrowed: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    let again = serialize(&borrowed);
    assert_eq!(parse(&again).as_ref(), Ok(&pairs), "round trip");
    // The canonical form is never longer than the input, except for the
    // final NUL a host may leave out (the SDK's reader allows it) and the
    // empty buffer, which is an empty map without even a count.
    assert!(again.len() <= data.len() + 1 || data.is_empty());
    let split = split_utf8(pairs.clone());
    assert_eq!(split.utf8.len() + split.non_utf8.len(), pairs.len());
    assert!(split
        .non_utf8
        .iter()
        .all(|(name, _)| std::str::from_utf8(name).is_err()));
    for (name, value) in &split.utf8 {
        assert!(pairs
            .iter()
            .any(|(n, v)| n == name.as_bytes() && v == value));
    }
});
