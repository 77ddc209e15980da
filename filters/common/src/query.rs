//! Query parameters of a request path (`/p?a=1&b=2`). Values are returned
//! raw, without percent-decoding, so a match compares what the client sent;
//! the first parameter with the name wins.

/// The raw value of query parameter `name` in `path`; `Some(b"")` for a
/// parameter present without `=`.
///
/// # Examples
/// ```
/// assert_eq!(filter_common::query::find(b"/x?a=1&token=abc#frag", "token"), Some(&b"abc"[..]));
/// assert_eq!(filter_common::query::find(b"/x?flag", "flag"), Some(&b""[..]));
/// assert_eq!(filter_common::query::find(b"/x", "a"), None);
/// ```
pub fn find<'a>(path: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let query = path.split(|&b| b == b'#').next()?;
    let at = query.iter().position(|&b| b == b'?')?;
    query.get(at + 1..)?.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (pair.get(..eq)?, pair.get(eq + 1..)?),
            None => (pair, &b""[..]),
        };
        (key == name.as_bytes()).then_some(value)
    })
}

/// The path without its query and fragment.
///
/// # Examples
/// ```
/// assert_eq!(filter_common::query::path_only(b"/api/x?y=1"), b"/api/x");
/// ```
pub fn path_only(path: &[u8]) -> &[u8] {
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_parameter_wins_and_empty_values_count() {
        assert_eq!(find(b"/?a=1&a=2", "a"), Some(&b"1"[..]));
        assert_eq!(find(b"/?a=&b", "a"), Some(&b""[..]));
        assert_eq!(find(b"/?ab=1", "a"), None);
        assert_eq!(find(b"/#?a=1", "a"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(path in proptest::collection::vec(proptest::num::u8::ANY, 0..64), name in "[a-z]{0,3}") {
            let _ = find(&path, &name);
            let _ = path_only(&path);
        }
    }
}
