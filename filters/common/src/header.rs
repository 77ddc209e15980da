//! Header bytes as Envoy hands them over, and the checks a config's header
//! names and values must pass.
//!
//! Envoy passes header values containing bytes 0x80–0xFF through to filters.
//! The SDK's string getters `unwrap()` a UTF-8 conversion and so trap the VM on
//! such a value; filters therefore read headers as bytes and decode here.

use std::borrow::Cow;

/// Decodes header bytes as UTF-8, replacing invalid sequences with U+FFFD.
/// Never fails: a request must not be able to trap a filter.
///
/// # Examples
/// ```
/// assert_eq!(filter_common::decode_lossy(b"ok"), "ok");
/// assert_eq!(filter_common::decode_lossy(b"caf\xe9"), "caf\u{fffd}");
/// ```
pub fn decode_lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Why a configured header name or value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Empty header name.
    #[error("header name is empty")]
    EmptyName,
    /// A byte outside RFC 9110's `token` set, or an upper-case letter (HTTP/2
    /// and Envoy's header maps use lower-case names).
    #[error("header name {name:?} has an invalid character {byte:?}; names are lower-case RFC 9110 tokens")]
    InvalidName {
        /// The name as configured.
        name: String,
        /// The first offending character.
        byte: char,
    },
    /// CR, LF or NUL in a value: header injection.
    #[error("header value {value:?} contains CR, LF or NUL")]
    InvalidValue {
        /// The value as configured.
        value: String,
    },
}

/// Checks a header name from config: a lower-case RFC 9110 token.
/// Pseudo-headers (`:path`) are allowed, since Envoy exposes them to filters.
///
/// # Errors
/// [`HeaderError`] naming the offending character.
pub fn validate_header_name(name: &str) -> Result<(), HeaderError> {
    let bare = name.strip_prefix(':').unwrap_or(name);
    if bare.is_empty() {
        return Err(HeaderError::EmptyName);
    }
    let is_token =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$%&'*+-.^_`|~".contains(c);
    match bare.chars().find(|&c| !is_token(c)) {
        Some(byte) => Err(HeaderError::InvalidName {
            name: name.to_owned(),
            byte,
        }),
        None => Ok(()),
    }
}

/// Checks a header value from config: no CR, LF or NUL (RFC 9110 §5.5).
///
/// # Errors
/// [`HeaderError::InvalidValue`].
pub fn validate_header_value(value: &str) -> Result<(), HeaderError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(HeaderError::InvalidValue {
            value: value.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_case_tokens_and_pseudo_headers_are_valid_names() {
        for name in ["x-frame-options", ":path", "x_1~"] {
            assert_eq!(validate_header_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn upper_case_spaces_and_colons_are_invalid_names() {
        for name in ["X-Frame", "a b", "a:b", "", ":", "a\r\n"] {
            assert!(validate_header_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn crlf_in_a_value_is_injection() {
        assert!(validate_header_value("a\r\nset-cookie: x").is_err());
        assert!(validate_header_value("nul\0").is_err());
        assert_eq!(
            validate_header_value("max-age=1; includeSubDomains"),
            Ok(())
        );
    }
}
