//! Cookie lookup in `Cookie` request headers (RFC 6265 §5.4), lenient the way
//! browsers and Envoy are: several `Cookie` headers, spaces around `;` and
//! `=`, and double-quoted values all work. The first cookie with the name
//! wins, as in Envoy's `Http::Utility::parseCookieValue`.

/// The value of cookie `name` in any of the `Cookie` header values, quotes
/// removed. Names are case-sensitive.
///
/// # Examples
/// ```
/// let headers: [&[u8]; 2] = [b"a=1; session=\"abc\"", b"session=ignored"];
/// assert_eq!(filter_common::cookie::find(headers, "session"), Some(&b"abc"[..]));
/// assert_eq!(filter_common::cookie::find(headers, "missing"), None);
/// ```
pub fn find<'a>(
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    name: &str,
) -> Option<&'a [u8]> {
    cookie_headers
        .into_iter()
        .find_map(|header| find_in(header, name))
}

/// The value of cookie `name` in one `Cookie` header value.
pub fn find_in<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let at = pair.iter().position(|&b| b == b'=')?;
        let (key, value) = (pair.get(..at)?, pair.get(at + 1..)?);
        (trim(key) == name.as_bytes()).then(|| unquote(trim(value)))
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_quotes_are_tolerated() {
        assert_eq!(find_in(b" a = 1 ;b=\"two\" ", "a"), Some(&b"1"[..]));
        assert_eq!(find_in(b"a=1;b=\"two\"", "b"), Some(&b"two"[..]));
        assert_eq!(find_in(b"a=", "a"), Some(&b""[..]));
    }

    #[test]
    fn names_must_match_exactly() {
        assert_eq!(find_in(b"session_id=1; Session=2", "session"), None);
        assert_eq!(find_in(b"novalue; x=1", "novalue"), None);
    }

    #[test]
    fn the_first_header_with_the_cookie_wins() {
        let headers: [&[u8]; 3] = [b"x=1", b"canary=true", b"canary=false"];
        assert_eq!(find(headers, "canary"), Some(&b"true"[..]));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(header in proptest::collection::vec(proptest::num::u8::ANY, 0..64), name in "[a-z]{0,4}") {
            let _ = find_in(&header, &name);
        }
    }
}
