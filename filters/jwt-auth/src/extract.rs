//! Token extraction, as jwt_authn's extractor: header locations (any value
//! of a repeated header; after `value_prefix`, the token starts at the next
//! base64url character), then query parameters (first value,
//! percent-decoded), then cookies. Each location remembers which issuers
//! configured it, so a token found where only provider A looks cannot be
//! accepted as provider B's.

use std::collections::BTreeMap;

use crate::config::{Location, Provider};

/// The request as the core sees it: lower-case header names, raw bytes.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `:method`.
    pub method: &'a [u8],
    /// `:path`, query included.
    pub path: &'a [u8],
    /// All headers, in order, names lower-case.
    pub headers: &'a [(String, Vec<u8>)],
}

impl<'a> Request<'a> {
    /// Every value of header `name` (lower-case).
    pub fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of header `name`.
    #[must_use]
    pub fn header(&self, name: &'a str) -> Option<&'a [u8]> {
        self.header_values(name).next()
    }
}

/// Which issuers may use a location (jwt_authn's `JwtIssuerChecker`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issuers {
    any: bool,
    names: Vec<String>,
}

impl Issuers {
    fn add(&mut self, issuer: &str) {
        if issuer.is_empty() {
            self.any = true;
        } else if !self.names.iter().any(|n| n == issuer) {
            self.names.push(issuer.to_owned());
        }
    }

    /// Whether a token with `iss` may come from this location.
    #[must_use]
    pub fn allows(&self, iss: &str) -> bool {
        self.any || self.names.iter().any(|n| n == iss)
    }
}

/// A token found in the request.
#[derive(Debug, Clone)]
pub struct Found<'e> {
    /// The token bytes.
    pub token: Vec<u8>,
    /// Where it was.
    pub location: &'e Location,
    /// Issuers that may use that location.
    pub issuers: &'e Issuers,
}

/// The extractor for one provider or a set of providers.
#[derive(Debug, Clone, Default)]
pub struct Extractor {
    specs: Vec<(Location, Issuers)>,
    sanitize: Vec<String>,
}

impl Extractor {
    /// The union of the providers' locations; also the headers to strip
    /// from every request before extraction (their `forward_payload_header`
    /// and `claim_to_headers`, which only a verified token may set).
    #[must_use]
    pub fn new<'p>(providers: impl IntoIterator<Item = &'p Provider>) -> Self {
        let mut specs: BTreeMap<Location, Issuers> = BTreeMap::new();
        let mut sanitize = Vec::new();
        for provider in providers {
            for location in &provider.locations {
                specs
                    .entry(location.clone())
                    .or_default()
                    .add(&provider.issuer);
            }
            sanitize.extend(provider.forward_payload_header.iter().cloned());
            sanitize.extend(provider.claim_to_headers.iter().map(|(h, _)| h.clone()));
        }
        sanitize.sort();
        sanitize.dedup();
        Self {
            specs: specs.into_iter().collect(),
            sanitize,
        }
    }

    /// Headers to remove from the request.
    #[must_use]
    pub fn sanitize(&self) -> &[String] {
        &self.sanitize
    }

    /// Every token in the request, in jwt_authn's order.
    #[must_use]
    pub fn extract(&self, request: &Request<'_>) -> Vec<Found<'_>> {
        let mut found = Vec::new();
        for (location, issuers) in &self.specs {
            match location {
                Location::Header { name, prefix } => {
                    for value in request.header_values(name) {
                        if let Some(token) = after_prefix(value, prefix.as_bytes()) {
                            found.push(Found {
                                token: token.to_vec(),
                                location,
                                issuers,
                            });
                        }
                    }
                }
                Location::Param(name) => {
                    if let Some(raw) = filter_common::query::find(request.path, name) {
                        found.push(Found {
                            token: percent_decode(raw),
                            location,
                            issuers,
                        });
                    }
                }
                Location::Cookie(name) => {
                    if let Some(value) =
                        filter_common::cookie::find(request.header_values("cookie"), name)
                    {
                        found.push(Found {
                            token: value.to_vec(),
                            location,
                            issuers,
                        });
                    }
                }
            }
        }
        found
    }
}

fn is_b64url_or_dot(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// jwt_authn's header rule: the prefix may appear anywhere; the token
/// starts at the first base64url-or-dot byte after it and runs to the end;
/// with no such byte, the whole value is the token.
fn after_prefix<'v>(value: &'v [u8], prefix: &[u8]) -> Option<&'v [u8]> {
    if prefix.is_empty() {
        return Some(value);
    }
    let at = value.windows(prefix.len()).position(|w| w == prefix)?;
    let rest = value.get(at + prefix.len()..)?;
    match rest.iter().position(|&b| is_b64url_or_dot(b)) {
        Some(start) => rest.get(start..),
        None => Some(value),
    }
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let hex = |j: usize| raw.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            #[allow(clippy::cast_possible_truncation)] // two hex digits fit a byte
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// `path` with every `name=` parameter removed from its query (the `?` is
/// dropped when nothing is left), as jwt_authn removes a query token.
#[must_use]
pub fn remove_param(path: &[u8], name: &str) -> Vec<u8> {
    let (before_fragment, fragment) = match path.iter().position(|&b| b == b'#') {
        Some(at) => path.split_at(at),
        None => (path, &b""[..]),
    };
    let Some(q) = before_fragment.iter().position(|&b| b == b'?') else {
        return path.to_vec();
    };
    let (base, query) = before_fragment.split_at(q);
    let query = query.get(1..).unwrap_or_default();
    let kept: Vec<&[u8]> = query
        .split(|&b| b == b'&')
        .filter(|pair| {
            let key = pair.split(|&b| b == b'=').next().unwrap_or_default();
            key != name.as_bytes()
        })
        .collect();
    let mut out = base.to_vec();
    if !kept.is_empty() {
        out.push(b'?');
        out.extend_from_slice(&kept.join(&b'&'));
    }
    out.extend_from_slice(fragment);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_prefix_may_be_followed_by_padding_and_found_mid_value() {
        assert_eq!(
            after_prefix(b"Bearer a.b.c", b"Bearer "),
            Some(&b"a.b.c"[..])
        );
        assert_eq!(
            after_prefix(b"Bearer   a.b.c", b"Bearer "),
            Some(&b"a.b.c"[..])
        );
        assert_eq!(after_prefix(b"x Bearer a.b", b"Bearer "), Some(&b"a.b"[..]));
        assert_eq!(after_prefix(b"Basic abc", b"Bearer "), None);
        assert_eq!(
            after_prefix(b"Bearer  ", b"Bearer "),
            Some(&b"Bearer  "[..])
        );
        assert_eq!(after_prefix(b"raw", b""), Some(&b"raw"[..]));
    }

    #[test]
    fn query_tokens_are_percent_decoded_and_removable() {
        assert_eq!(percent_decode(b"a%2Eb%zz"), b"a.b%zz");
        assert_eq!(
            remove_param(b"/p?access_token=x&y=1", "access_token"),
            b"/p?y=1"
        );
        assert_eq!(remove_param(b"/p?access_token=x", "access_token"), b"/p");
        assert_eq!(remove_param(b"/p?a=1#f", "b"), b"/p?a=1#f");
        assert_eq!(remove_param(b"/p", "b"), b"/p");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(value in proptest::collection::vec(proptest::num::u8::ANY, 0..64), prefix in "[A-Za-z ]{0,8}") {
            let _ = after_prefix(&value, prefix.as_bytes());
            let _ = percent_decode(&value);
            let _ = remove_param(&value, "a");
        }
    }
}
