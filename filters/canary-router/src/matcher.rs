//! Request conditions on headers, cookies and query parameters (`exact`,
//! `prefix`, `regex`, `present`), compiled once from config and evaluated
//! against any [`RequestView`]. Nothing here is canary-specific, so the
//! module can move to `filters/common` when a second filter needs it.

use std::borrow::Cow;

use filter_common::{cookie, query};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

/// Largest compiled size of one regex. The `regex` crate's default is 10 MiB;
/// a Wasm VM per worker per plugin makes that too generous, and no sensible
/// routing pattern comes near 1 MiB.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Read access to the parts of a request a condition can test. The filter
/// implements it over proxy-wasm host calls; tests implement it over a list.
///
/// Values are raw bytes, never decoded, so non-UTF-8 input cannot fail a
/// lookup. `Cow` lets an implementation lend from a map it already holds or
/// hand over a freshly fetched value.
pub trait RequestView {
    /// The first value of request header `name` (lower-case), as Envoy's
    /// `getHeaderMapValue` returns it.
    fn header(&mut self, name: &str) -> Option<Cow<'_, [u8]>>;
    /// The value of cookie `name` across every `Cookie` header, quotes
    /// removed ([`filter_common::cookie::find`]).
    fn cookie(&mut self, name: &str) -> Option<Cow<'_, [u8]>>;
    /// The raw (not percent-decoded) value of query parameter `name` in
    /// `:path` ([`filter_common::query::find`]).
    fn query(&mut self, name: &str) -> Option<Cow<'_, [u8]>>;
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A request header, name lower-cased.
    Header(String),
    /// A cookie, name case-sensitive (RFC 6265).
    Cookie(String),
    /// A query parameter, name case-sensitive.
    Query(String),
}

impl Field {
    /// Reads this field from the request.
    pub fn read<'a, R: RequestView>(&self, request: &'a mut R) -> Option<Cow<'a, [u8]>> {
        match self {
            Self::Header(name) => request.header(name),
            Self::Cookie(name) => request.cookie(name),
            Self::Query(name) => request.query(name),
        }
    }
}

/// How a value is tested.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// Byte-for-byte equal, case-sensitive (Envoy's `exact`).
    Exact(Vec<u8>),
    /// Starts with these bytes, case-sensitive.
    Prefix(Vec<u8>),
    /// The whole value matches the pattern (Envoy's `safe_regex` semantics:
    /// the pattern is anchored at both ends). Matched on the raw bytes with
    /// Unicode mode off: see [`compile_full_match`].
    Regex(Regex),
    /// `true`: the field is present (any value, even empty); `false`: absent.
    Present(bool),
}

/// One compiled condition: a field and a test.
#[derive(Debug, Clone)]
pub struct Condition {
    /// What is read.
    pub field: Field,
    /// How it is tested.
    pub test: ValueMatch,
}

impl Condition {
    /// Whether the request satisfies the condition. An absent field fails
    /// every test except `present: false`.
    pub fn matches<R: RequestView>(&self, request: &mut R) -> bool {
        let value = self.field.read(request);
        match (&self.test, value.as_deref()) {
            (ValueMatch::Present(wanted), value) => value.is_some() == *wanted,
            (_, None) => false,
            (ValueMatch::Exact(exact), Some(value)) => value == exact.as_slice(),
            (ValueMatch::Prefix(prefix), Some(value)) => value.starts_with(prefix),
            (ValueMatch::Regex(regex), Some(value)) => regex.is_match(value),
        }
    }
}

/// Every condition holds (an empty list holds).
pub fn all_match<R: RequestView>(conditions: &[Condition], request: &mut R) -> bool {
    conditions.iter().all(|c| c.matches(request))
}

/// A condition as written in config: `name` plus exactly one of `exact`,
/// `prefix`, `regex`, `present`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    /// Header (any case; stored lower-cased), cookie or parameter name.
    pub name: String,
    /// Equal to this value.
    #[serde(default)]
    pub exact: Option<String>,
    /// Starts with this value.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Fully matches this pattern (`regex` crate syntax, RE2-like).
    #[serde(default)]
    pub regex: Option<String>,
    /// Present (`true`) or absent (`false`).
    #[serde(default)]
    pub present: Option<bool>,
}

/// Which kind of field a [`RawCondition`] names; decides name validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A request header.
    Header,
    /// A cookie.
    Cookie,
    /// A query parameter.
    Query,
}

/// Why a condition was refused. The caller adds the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// A header name that is not a token.
    #[error("name: {0}")]
    HeaderName(filter_common::HeaderError),
    /// An empty cookie or parameter name, or one with separators.
    #[error("name: {0:?} is not a valid {1} name (non-empty, no whitespace, ';', '=', '&', '#' or control characters)")]
    Name(String, &'static str),
    /// None or several of `exact`, `prefix`, `regex`, `present`.
    #[error("give exactly one of exact, prefix, regex, present (got {0})")]
    Tests(usize),
    /// A pattern the `regex` crate refused.
    #[error("regex: {0}")]
    Regex(String),
}

impl RawCondition {
    /// Validates and compiles the condition. Regexes are compiled here, once.
    ///
    /// # Errors
    /// [`ConditionError`] for a bad name, a missing or duplicated test, or a
    /// bad regex.
    ///
    /// # Examples
    /// ```
    /// use canary_router::matcher::{FieldKind, RawCondition};
    /// let raw = RawCondition { name: "User-Agent".into(), regex: Some(".*Firefox.*".into()), ..Default::default() };
    /// assert!(raw.compile(FieldKind::Header).is_ok());
    /// let raw = RawCondition { name: "x".into(), regex: Some("(".into()), ..Default::default() };
    /// assert!(raw.compile(FieldKind::Header).is_err());
    /// ```
    pub fn compile(&self, kind: FieldKind) -> Result<Condition, ConditionError> {
        let field = match kind {
            FieldKind::Header => {
                let lower = self.name.to_ascii_lowercase();
                filter_common::validate_header_name(&lower).map_err(ConditionError::HeaderName)?;
                Field::Header(lower)
            }
            FieldKind::Cookie => Field::Cookie(plain_name(&self.name, "cookie")?),
            FieldKind::Query => Field::Query(plain_name(&self.name, "query parameter")?),
        };
        let given = [
            self.exact.is_some(),
            self.prefix.is_some(),
            self.regex.is_some(),
            self.present.is_some(),
        ]
        .into_iter()
        .filter(|given| *given)
        .count();
        let test = match (&self.exact, &self.prefix, &self.regex, self.present) {
            _ if given != 1 => return Err(ConditionError::Tests(given)),
            (Some(exact), ..) => ValueMatch::Exact(exact.as_bytes().to_vec()),
            (_, Some(prefix), ..) => ValueMatch::Prefix(prefix.as_bytes().to_vec()),
            (_, _, Some(pattern), _) => ValueMatch::Regex(
                compile_full_match(pattern).map_err(|e| ConditionError::Regex(e.to_string()))?,
            ),
            (_, _, _, Some(present)) => ValueMatch::Present(present),
            (None, None, None, None) => return Err(ConditionError::Tests(0)),
        };
        Ok(Condition { field, test })
    }
}

/// Compiles `pattern` so it must match the whole value, as Envoy's
/// `safe_regex` matchers do (`.*Firefox.*`, not `Firefox`, finds a substring).
///
/// # Errors
/// The `regex` crate's error for a bad or oversized pattern, or one that
/// needs Unicode tables (`\p{Greek}`).
pub fn compile_full_match(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Checks a cookie or query parameter name: what `cookie::find` and
/// `query::find` could ever return a value for.
fn plain_name(name: &str, what: &'static str) -> Result<String, ConditionError> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || ";=&#,\"".contains(c);
    if name.is_empty() || name.chars().any(bad) {
        return Err(ConditionError::Name(name.to_owned(), what));
    }
    Ok(name.to_owned())
}

/// A [`RequestView`] over an owned header list, for tests and for hosts that
/// hand over the whole map at once.
#[derive(Debug, Clone, Default)]
pub struct HeaderList {
    /// `(lower-case name, value)` pairs in arrival order; repeats allowed.
    pub pairs: Vec<(String, Vec<u8>)>,
}

impl HeaderList {
    /// Builds a list from `(name, value)` pairs.
    ///
    /// # Examples
    /// ```
    /// use canary_router::matcher::{HeaderList, RequestView};
    /// let mut request = HeaderList::new([(":path", "/?a=1"), ("cookie", "x=1"), ("cookie", "y=\"2\"")]);
    /// assert_eq!(request.cookie("y").as_deref(), Some(&b"2"[..]));
    /// assert_eq!(request.query("a").as_deref(), Some(&b"1"[..]));
    /// ```
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            pairs: pairs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
                .collect(),
        }
    }
}

impl RequestView for HeaderList {
    fn header(&mut self, name: &str) -> Option<Cow<'_, [u8]>> {
        find_header(&self.pairs, name).map(Cow::Borrowed)
    }

    fn cookie(&mut self, name: &str) -> Option<Cow<'_, [u8]>> {
        find_cookie(&self.pairs, name).map(Cow::Borrowed)
    }

    fn query(&mut self, name: &str) -> Option<Cow<'_, [u8]>> {
        find_query(&self.pairs, name).map(Cow::Borrowed)
    }
}

/// The first value of header `name` in a pair list.
pub fn find_header<'a>(pairs: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_slice())
}

/// Cookie `name` across every `cookie` header in a pair list.
pub fn find_cookie<'a>(pairs: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    let headers = pairs
        .iter()
        .filter(|(key, _)| key == "cookie")
        .map(|(_, value)| value.as_slice());
    cookie::find(headers, name)
}

/// Query parameter `name` of `:path` in a pair list.
pub fn find_query<'a>(pairs: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    query::find(find_header(pairs, ":path")?, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(kind: FieldKind, json: &str) -> Condition {
        let raw: RawCondition = serde_json::from_str(json).unwrap();
        raw.compile(kind).unwrap()
    }

    fn request(pairs: &[(&str, &str)]) -> HeaderList {
        HeaderList::new(pairs.iter().copied())
    }

    #[test]
    fn each_test_kind_matches_headers_as_documented() {
        let mut req = request(&[("user-agent", "Mozilla/5.0 Firefox/128.0"), ("x-empty", "")]);
        let cases = [
            (r#"{"name": "User-Agent", "prefix": "Mozilla/"}"#, true),
            (
                r#"{"name": "user-agent", "exact": "Mozilla/5.0 Firefox/128.0"}"#,
                true,
            ),
            (
                r#"{"name": "user-agent", "exact": "mozilla/5.0 firefox/128.0"}"#,
                false,
            ),
            (r#"{"name": "user-agent", "regex": ".*Firefox.*"}"#, true),
            // Anchored: a bare word does not find a substring.
            (r#"{"name": "user-agent", "regex": "Firefox"}"#, false),
            (
                r#"{"name": "user-agent", "regex": "(?i).*firefox.*"}"#,
                true,
            ),
            (r#"{"name": "user-agent", "present": true}"#, true),
            (r#"{"name": "x-missing", "present": false}"#, true),
            (r#"{"name": "x-missing", "present": true}"#, false),
            (r#"{"name": "x-missing", "prefix": ""}"#, false),
            (r#"{"name": "x-empty", "present": true}"#, true),
            (r#"{"name": "x-empty", "exact": ""}"#, true),
        ];
        for (json, expected) in cases {
            assert_eq!(
                condition(FieldKind::Header, json).matches(&mut req),
                expected,
                "{json}"
            );
        }
    }

    #[test]
    fn regex_alternation_is_anchored_as_a_whole() {
        let mut req = request(&[("x-tier", "gold-plus")]);
        // Without the group, `^gold|silver$` would match "gold-plus".
        let c = condition(
            FieldKind::Header,
            r#"{"name": "x-tier", "regex": "gold|silver"}"#,
        );
        assert!(!c.matches(&mut req));
    }

    #[test]
    fn regex_classes_are_ascii_as_in_re2_and_property_classes_are_refused() {
        let digits = compile_full_match(r"\d+").unwrap();
        assert!(digits.is_match(b"123"));
        assert!(
            !digits.is_match("١٢٣".as_bytes()),
            "Arabic-Indic digits are not \\d in RE2"
        );
        let word = compile_full_match(r"\w+").unwrap();
        assert!(!word.is_match("café".as_bytes()));
        assert!(compile_full_match("café")
            .unwrap()
            .is_match("café".as_bytes()));
        assert!(compile_full_match(r"\p{Greek}").is_err());
    }

    #[test]
    fn regex_matches_non_utf8_values_without_decoding() {
        let mut req = HeaderList {
            pairs: vec![("x-a".into(), b"caf\xe9 ok".to_vec())],
        };
        let c = condition(
            FieldKind::Header,
            r#"{"name": "x-a", "regex": "(?-u:caf.) ok"}"#,
        );
        assert!(c.matches(&mut req));
    }

    #[test]
    fn cookies_are_found_across_several_headers_quoted_and_spaced() {
        let mut req = request(&[
            ("cookie", "theme=dark"),
            ("cookie", "  canary =  \"true\" ; session=abc"),
            ("cookie", "canary=false"),
        ]);
        let exact = condition(FieldKind::Cookie, r#"{"name": "canary", "exact": "true"}"#);
        assert!(exact.matches(&mut req));
        let session = condition(
            FieldKind::Cookie,
            r#"{"name": "session", "regex": "[a-c]+"}"#,
        );
        assert!(session.matches(&mut req));
        // Cookie names are case-sensitive.
        let upper = condition(FieldKind::Cookie, r#"{"name": "Canary", "present": true}"#);
        assert!(!upper.matches(&mut req));
    }

    #[test]
    fn query_params_are_matched_raw() {
        let mut req = request(&[(":path", "/p?beta=1&name=a%20b#frag")]);
        assert!(condition(FieldKind::Query, r#"{"name": "beta", "exact": "1"}"#).matches(&mut req));
        assert!(
            condition(FieldKind::Query, r#"{"name": "name", "exact": "a%20b"}"#).matches(&mut req)
        );
        assert!(
            condition(FieldKind::Query, r#"{"name": "other", "present": false}"#).matches(&mut req)
        );
    }

    #[test]
    fn conditions_need_exactly_one_test_and_valid_names() {
        let cases: &[(FieldKind, &str, &str)] = &[
            (FieldKind::Header, r#"{"name": "x"}"#, "exactly one"),
            (
                FieldKind::Header,
                r#"{"name": "x", "exact": "a", "prefix": "a"}"#,
                "got 2",
            ),
            (
                FieldKind::Header,
                r#"{"name": "x y", "present": true}"#,
                "name:",
            ),
            (
                FieldKind::Cookie,
                r#"{"name": "a;b", "present": true}"#,
                "cookie name",
            ),
            (
                FieldKind::Query,
                r#"{"name": "", "present": true}"#,
                "query parameter name",
            ),
            (
                FieldKind::Header,
                r#"{"name": "x", "regex": "(unclosed"}"#,
                "regex:",
            ),
        ];
        for (kind, json, expected) in cases {
            let raw: RawCondition = serde_json::from_str(json).unwrap();
            let message = raw.compile(*kind).unwrap_err().to_string();
            assert!(message.contains(expected), "{json}: {message}");
        }
        assert!(serde_json::from_str::<RawCondition>(r#"{"name": "x", "exactly": "a"}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn matching_never_panics_on_any_bytes(value in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut req = HeaderList { pairs: vec![
                ("x".into(), value.clone()), ("cookie".into(), value.clone()), (":path".into(), value),
            ] };
            for (kind, json) in [
                (FieldKind::Header, r#"{"name": "x", "regex": ".*a.*"}"#),
                (FieldKind::Cookie, r#"{"name": "a", "prefix": "b"}"#),
                (FieldKind::Query, r#"{"name": "a", "exact": "b"}"#),
            ] {
                let _ = condition(kind, json).matches(&mut req);
            }
        }
    }
}
