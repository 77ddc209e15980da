//! Label derivation and name encoding, the pure core: turns request and
//! response facts into a bounded label set, and a label set into the
//! Istio-style stat name Envoy's `stats_tags` regexes take apart again.
//!
//! Cardinality is bounded by construction: every label value is an index into
//! a finite table (standard methods + `OTHER`, codes 100–599 + `0`, configured
//! route prefixes + default, admitted versions + default), so no request can
//! create a label value the config did not allow for.

use std::collections::HashMap;

use crate::config::{Config, VersionPolicy};

/// Methods that keep their own `method` label value (RFC 9110 §9 plus PATCH,
/// RFC 5789). Matched case-sensitively, as methods are case-sensitive.
pub const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
/// `method` label for any other method.
pub const OTHER_METHOD: &str = "OTHER";
/// `response_code` label when there is no valid status (reset before a
/// response, or a status outside 100–599). Istio uses `0` for the same case.
pub const NO_RESPONSE_CODE: &str = "0";
/// `response_code_class` label when there is no valid status.
pub const NO_RESPONSE_CODE_CLASS: &str = "none";

/// Separates a tag name from its value inside a stat name (Istio's encoding).
pub const VALUE_SEPARATOR: &str = "=.=";
/// Ends each `name=.=value` field inside a stat name (Istio's encoding).
pub const FIELD_SEPARATOR: &str = ";.;";

/// Label names, in the order they are encoded into stat names.
pub mod names {
    /// `method` label.
    pub const METHOD: &str = "method";
    /// `response_code` label.
    pub const RESPONSE_CODE: &str = "response_code";
    /// `response_code_class` label.
    pub const RESPONSE_CODE_CLASS: &str = "response_code_class";
    /// `version` label.
    pub const VERSION: &str = "version";
    /// `route` label.
    pub const ROUTE: &str = "route";
    /// All of them, in encoding order.
    pub const ALL: [&str; 5] = [METHOD, RESPONSE_CODE, RESPONSE_CODE_CLASS, VERSION, ROUTE];
}

const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Whether a byte may appear in a label value: ASCII letters, digits and
/// `._~/-`. Excludes `=` and `;` (so a value can never contain a separator),
/// `"`, `\` and newlines (which old Envoy versions do not escape in
/// Prometheus output), and spaces.
pub fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'/' | b'-')
}

/// Whether `value` is a valid label value: non-empty, label bytes only, and
/// no `..`. Envoy's symbol table splits stat names at `.`, and `..` would make
/// an empty name element.
///
/// # Examples
/// ```
/// use metrics::labels::is_label_value;
/// assert!(is_label_value(b"v1.2-rc"));
/// assert!(!is_label_value(b"a..b"));
/// assert!(!is_label_value(b"x;y"));
/// ```
pub fn is_label_value(value: &[u8]) -> bool {
    !value.is_empty()
        && value.iter().copied().all(is_label_byte)
        && !value.windows(2).any(|w| w == b"..")
}

/// Index of `method` in [`STANDARD_METHODS`], or its length for `OTHER`.
pub fn method_index(method: Option<&[u8]>) -> usize {
    method
        .and_then(|m| STANDARD_METHODS.iter().position(|s| s.as_bytes() == m))
        .unwrap_or(STANDARD_METHODS.len())
}

/// The `method` label value for an index from [`method_index`].
pub fn method_label(index: usize) -> &'static str {
    STANDARD_METHODS.get(index).copied().unwrap_or(OTHER_METHOD)
}

/// Parses a `:status` value: exactly three digits in 100..=599, else 0.
///
/// # Examples
/// ```
/// assert_eq!(metrics::labels::status_code(Some(b"429")), 429);
/// assert_eq!(metrics::labels::status_code(Some(b"99")), 0);
/// assert_eq!(metrics::labels::status_code(None), 0);
/// ```
pub fn status_code(status: Option<&[u8]>) -> u16 {
    let Some([a, b, c]) = status else { return 0 };
    if ![a, b, c].iter().all(|d| d.is_ascii_digit()) {
        return 0;
    }
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    if (100..=599).contains(&code) {
        code
    } else {
        0
    }
}

/// The `response_code_class` label value for a code from [`status_code`].
pub fn code_class(code: u16) -> &'static str {
    CODE_CLASSES
        .get(usize::from(code / 100).wrapping_sub(1))
        .copied()
        .unwrap_or(NO_RESPONSE_CODE_CLASS)
}

/// Index of the longest configured prefix matching `path`, or
/// `prefixes.len()` for the default. The query and fragment are ignored and a
/// prefix matches only whole segments: `/api` matches `/api`, `/api/x` and
/// `/api?q`, not `/apix` (a prefix ending in `/` matches anything below it).
pub fn route_index(prefixes: &[String], path: Option<&[u8]>) -> usize {
    let Some(path) = path else {
        return prefixes.len();
    };
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let path = path.get(..end).unwrap_or(path);
    let mut best: Option<(usize, usize)> = None;
    for (index, prefix) in prefixes.iter().enumerate() {
        let prefix = prefix.as_bytes();
        let Some(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        let whole_segment =
            rest.is_empty() || rest.first() == Some(&b'/') || prefix.ends_with(b"/");
        if whole_segment && best.is_none_or(|(_, len)| prefix.len() > len) {
            best = Some((index, prefix.len()));
        }
    }
    best.map_or(prefixes.len(), |(index, _)| index)
}

/// Cuts `value` to at most `max_len` bytes. Label values are ASCII, so any cut
/// is a character boundary.
pub fn truncate(value: &[u8], max_len: usize) -> &[u8] {
    value.get(..max_len).unwrap_or(value)
}

/// Version values seen in this VM: index 0 is the default, the rest are the
/// allow-list, or values admitted so far under the cap.
#[derive(Debug, Clone)]
struct VersionTable {
    values: Vec<String>,
    index: HashMap<String, usize>,
    /// Admit new values until `values.len() == 1 + cap`; `None` = allow-list.
    cap: Option<usize>,
    max_len: usize,
}

impl VersionTable {
    fn new(default: &str, policy: &VersionPolicy, max_len: usize) -> Self {
        let mut table = Self {
            values: vec![default.to_owned()],
            index: HashMap::new(),
            cap: None,
            max_len,
        };
        table.index.insert(default.to_owned(), 0);
        match policy {
            VersionPolicy::AllowList(values) => {
                for value in values {
                    table.insert(value);
                }
            }
            VersionPolicy::Capped(cap) => table.cap = Some(*cap),
        }
        table
    }

    fn insert(&mut self, value: &str) -> usize {
        if let Some(&index) = self.index.get(value) {
            return index;
        }
        let index = self.values.len();
        self.values.push(value.to_owned());
        self.index.insert(value.to_owned(), index);
        index
    }

    fn lookup(&mut self, raw: Option<&[u8]>) -> usize {
        let Some(raw) = raw else { return 0 };
        let value = match self.cap {
            // An allow-list value must match exactly, untruncated.
            None => raw,
            Some(_) => truncate(raw, self.max_len),
        };
        if !is_label_value(value) {
            return 0;
        }
        // Label bytes are ASCII, so this cannot fail; fall back to default anyway.
        let Ok(value) = std::str::from_utf8(value) else {
            return 0;
        };
        if let Some(&index) = self.index.get(value) {
            return index;
        }
        match self.cap {
            Some(cap) if self.values.len() <= cap => self.insert(value),
            _ => 0,
        }
    }

    fn label(&self, index: usize) -> &str {
        self.values
            .get(index)
            .or_else(|| self.values.first())
            .map_or("", String::as_str)
    }
}

/// The request-side facts labels are derived from, as raw header bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// `:method`.
    pub method: Option<&'a [u8]>,
    /// `:path`.
    pub path: Option<&'a [u8]>,
    /// The configured version header.
    pub version: Option<&'a [u8]>,
}

/// Request-side labels as table indices: known at request headers, used for
/// the `requests_active` gauge. Disabled dimensions are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RequestLabels {
    method: u16,
    version: u16,
    route: u16,
}

/// A full label set as table indices: the key of the metric-id cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LabelKey {
    request: RequestLabels,
    /// The response code, 0 for none (and when neither code label is on).
    code: u16,
}

impl LabelKey {
    /// The request-side part.
    pub fn request(&self) -> RequestLabels {
        self.request
    }
}

/// Derives bounded label sets from request facts, per the config. Holds the
/// per-VM version table, so it lives in the root context.
#[derive(Debug, Clone)]
pub struct Labeler {
    version_header: Option<String>,
    method: bool,
    response_code: bool,
    response_code_class: bool,
    version: Option<VersionTable>,
    routes: Option<(Vec<String>, String)>,
}

impl Labeler {
    /// A labeler for `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            version_header: config.version.as_ref().map(|v| v.header.clone()),
            method: config.method,
            response_code: config.response_code,
            response_code_class: config.response_code_class,
            version: config
                .version
                .as_ref()
                .map(|v| VersionTable::new(&v.default, &v.policy, config.max_label_value_len)),
            routes: config
                .route
                .as_ref()
                .map(|r| (r.prefixes.clone(), r.default.clone())),
        }
    }

    /// Whether `:method` is needed.
    pub fn wants_method(&self) -> bool {
        self.method
    }

    /// Whether `:path` is needed.
    pub fn wants_path(&self) -> bool {
        self.routes.is_some()
    }

    /// Whether the response status is needed.
    pub fn wants_status(&self) -> bool {
        self.response_code || self.response_code_class
    }

    /// The version header to read, if the `version` dimension is on.
    pub fn version_header(&self) -> Option<&str> {
        self.version_header.as_deref()
    }

    /// The request-side labels. May admit a new version value (under the cap).
    pub fn request_labels(&mut self, facts: &RequestFacts<'_>) -> RequestLabels {
        let method = if self.method {
            method_index(facts.method)
        } else {
            0
        };
        let version = self
            .version
            .as_mut()
            .map_or(0, |table| table.lookup(facts.version));
        let route = self
            .routes
            .as_ref()
            .map_or(0, |(prefixes, _)| route_index(prefixes, facts.path));
        // Table sizes are capped well below u16::MAX by config validation.
        let narrow = |i: usize| u16::try_from(i).unwrap_or(u16::MAX);
        RequestLabels {
            method: narrow(method),
            version: narrow(version),
            route: narrow(route),
        }
    }

    /// The full label key once the response status is known.
    pub fn key(&self, request: RequestLabels, status: Option<&[u8]>) -> LabelKey {
        let code = if self.response_code || self.response_code_class {
            status_code(status)
        } else {
            0
        };
        LabelKey { request, code }
    }

    /// `(label name, value)` pairs of the request-side labels, in encoding order.
    pub fn request_pairs(&self, labels: &RequestLabels) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::with_capacity(3);
        if self.method {
            pairs.push((
                names::METHOD,
                method_label(usize::from(labels.method)).to_owned(),
            ));
        }
        self.push_version_and_route(labels, &mut pairs);
        pairs
    }

    /// `(label name, value)` pairs of a full label set, in encoding order.
    pub fn pairs(&self, key: &LabelKey) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::with_capacity(5);
        if self.method {
            pairs.push((
                names::METHOD,
                method_label(usize::from(key.request.method)).to_owned(),
            ));
        }
        if self.response_code {
            let code = if key.code == 0 {
                NO_RESPONSE_CODE.to_owned()
            } else {
                key.code.to_string()
            };
            pairs.push((names::RESPONSE_CODE, code));
        }
        if self.response_code_class {
            pairs.push((names::RESPONSE_CODE_CLASS, code_class(key.code).to_owned()));
        }
        self.push_version_and_route(&key.request, &mut pairs);
        pairs
    }

    fn push_version_and_route(
        &self,
        labels: &RequestLabels,
        pairs: &mut Vec<(&'static str, String)>,
    ) {
        if let Some(table) = &self.version {
            pairs.push((
                names::VERSION,
                table.label(usize::from(labels.version)).to_owned(),
            ));
        }
        if let Some((prefixes, default)) = &self.routes {
            let route = prefixes.get(usize::from(labels.route)).unwrap_or(default);
            pairs.push((names::ROUTE, route.clone()));
        }
    }
}

/// The custom stat namespace Envoy puts in front of every Wasm-defined metric
/// (`wasmcustom`, Envoy `source/extensions/common/wasm/stats_handler.h`); its
/// Prometheus exporter strips it again and adds no `envoy_` prefix.
pub const ENVOY_WASM_NAMESPACE: &str = "wasmcustom";

/// The Envoy `stats_tags` regex that extracts `label` from our stat names.
///
/// Anchored at `^wasmcustom\.` so Envoy only tries it on Wasm metrics (its
/// tag producer indexes regexes by a literal first name element), and it
/// matches a field only at a field boundary, so `version` never matches inside
/// another plugin's `source_version=.=` field. Group 1 (the whole field) is
/// removed from the name, group 2 is the tag value.
///
/// # Examples
/// ```
/// assert_eq!(
///     metrics::labels::envoy_stats_tag_regex("method"),
///     r"^wasmcustom\.(?:[^;]*;\.;)*?(method=\.=([^;]*);\.;)"
/// );
/// ```
pub fn envoy_stats_tag_regex(label: &str) -> String {
    format!(r"^{ENVOY_WASM_NAMESPACE}\.(?:[^;]*;\.;)*?({label}=\.=([^;]*);\.;)")
}

/// Encodes labels into a stat name the Istio way: one `name=.=value;.;` field
/// per label, then the metric name. Envoy's `stats_tags` regexes (see
/// `manifests/envoy/metrics-stats-tags.yaml`) remove each field and turn it
/// into a tag, leaving the bare metric name.
///
/// # Examples
/// ```
/// let name = metrics::labels::encode_name(
///     &[("method", "GET".to_owned()), ("response_code", "200".to_owned())],
///     "mesh_requests_total",
/// );
/// assert_eq!(name, "method=.=GET;.;response_code=.=200;.;mesh_requests_total");
/// ```
pub fn encode_name(pairs: &[(&str, String)], metric: &str) -> String {
    let mut name = String::with_capacity(metric.len() + pairs.len() * 24);
    for (label, value) in pairs {
        name.push_str(label);
        name.push_str(VALUE_SEPARATOR);
        name.push_str(value);
        name.push_str(FIELD_SEPARATOR);
    }
    name.push_str(metric);
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate;

    fn issue_config(version: &str) -> Config {
        let json = format!(
            r#"{{"dimensions": {{"method": true, "response_code": true, "response_code_class": true,
            "version": {version}, "route": {{"prefixes": ["/api", "/admin", "/health"]}}}}}}"#
        );
        validate(json.as_bytes()).unwrap()
    }

    fn facts<'a>(method: &'a str, path: &'a str, version: Option<&'a str>) -> RequestFacts<'a> {
        RequestFacts {
            method: Some(method.as_bytes()),
            path: Some(path.as_bytes()),
            version: version.map(str::as_bytes),
        }
    }

    #[test]
    fn standard_methods_keep_their_name_and_others_become_other() {
        for (method, label) in [
            ("GET", "GET"),
            ("PATCH", "PATCH"),
            ("CONNECT", "CONNECT"),
            ("get", "OTHER"),
            ("PROPFIND", "OTHER"),
            ("", "OTHER"),
            ("GET ", "OTHER"),
        ] {
            assert_eq!(
                method_label(method_index(Some(method.as_bytes()))),
                label,
                "{method:?}"
            );
        }
        assert_eq!(method_label(method_index(None)), "OTHER");
    }

    #[test]
    fn status_codes_outside_100_to_599_are_zero() {
        for (raw, code) in [
            ("200", 200),
            ("100", 100),
            ("599", 599),
            ("600", 0),
            ("099", 0),
            ("20", 0),
            ("2000", 0),
            ("2a0", 0),
            ("", 0),
        ] {
            assert_eq!(status_code(Some(raw.as_bytes())), code, "{raw:?}");
        }
    }

    #[test]
    fn code_classes_follow_the_first_digit() {
        assert_eq!(code_class(101), "1xx");
        assert_eq!(code_class(204), "2xx");
        assert_eq!(code_class(429), "4xx");
        assert_eq!(code_class(503), "5xx");
        assert_eq!(code_class(0), "none");
    }

    #[test]
    fn routes_match_whole_segments_and_the_longest_prefix_wins() {
        let prefixes: Vec<String> = ["/api", "/api/v2", "/static/"].map(String::from).to_vec();
        for (path, index) in [
            ("/api", 0),
            ("/api/users", 0),
            ("/api?x=1", 0),
            ("/api#top", 0),
            ("/api/v2/items", 1),
            ("/api/v2", 1),
            ("/api/v20", 0),
            ("/apix", 3),
            ("/static/app.js", 2),
            ("/static", 3),
            ("/", 3),
            ("", 3),
        ] {
            assert_eq!(
                route_index(&prefixes, Some(path.as_bytes())),
                index,
                "{path:?}"
            );
        }
        assert_eq!(route_index(&prefixes, None), 3);
    }

    #[test]
    fn label_values_exclude_separators_quotes_and_double_dots() {
        for good in ["v1", "1.2.3", "canary-2", "/api", "a_b~c"] {
            assert!(is_label_value(good.as_bytes()), "{good}");
        }
        for bad in ["", "a b", "a;b", "a=b", "a\"b", "a\\b", "a\nb", "a..b", "é"] {
            assert!(!is_label_value(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn full_label_set_is_encoded_in_fixed_order() {
        let config = issue_config(r#"{"header": "x-canary-version"}"#);
        let mut labeler = Labeler::new(&config);
        let request = labeler.request_labels(&facts("GET", "/api/users?id=7", Some("v2")));
        let key = labeler.key(request, Some(b"200"));
        assert_eq!(
            encode_name(&labeler.pairs(&key), "mesh_requests_total"),
            "method=.=GET;.;response_code=.=200;.;response_code_class=.=2xx;.;\
             version=.=v2;.;route=.=/api;.;mesh_requests_total"
        );
        assert_eq!(
            encode_name(&labeler.request_pairs(&request), "mesh_requests_active"),
            "method=.=GET;.;version=.=v2;.;route=.=/api;.;mesh_requests_active"
        );
    }

    #[test]
    fn missing_facts_fall_back_to_defaults() {
        let config = issue_config(r#"{"header": "x-canary-version", "default": "stable"}"#);
        let mut labeler = Labeler::new(&config);
        let request = labeler.request_labels(&RequestFacts::default());
        let key = labeler.key(request, None);
        assert_eq!(
            encode_name(&labeler.pairs(&key), "m"),
            "method=.=OTHER;.;response_code=.=0;.;response_code_class=.=none;.;\
             version=.=stable;.;route=.=other;.;m"
        );
    }

    #[test]
    fn disabled_dimensions_are_not_encoded() {
        let config =
            validate(br#"{"dimensions": {"method": false, "response_code": false}}"#).unwrap();
        let mut labeler = Labeler::new(&config);
        let request = labeler.request_labels(&facts("GET", "/", None));
        let key = labeler.key(request, Some(b"200"));
        assert!(labeler.pairs(&key).is_empty());
        assert_eq!(
            encode_name(&labeler.pairs(&key), "mesh_requests_total"),
            "mesh_requests_total"
        );
    }

    #[test]
    fn version_cap_admits_new_values_until_full_then_uses_the_default() {
        let config = issue_config(r#"{"header": "x-v", "max_values": 2}"#);
        let mut labeler = Labeler::new(&config);
        let version_of = |labeler: &mut Labeler, v: &str| {
            let request = labeler.request_labels(&facts("GET", "/", Some(v)));
            labeler.request_pairs(&request)[1].1.clone()
        };
        assert_eq!(version_of(&mut labeler, "v1"), "v1");
        assert_eq!(version_of(&mut labeler, "v2"), "v2");
        assert_eq!(version_of(&mut labeler, "v3"), "unknown");
        assert_eq!(version_of(&mut labeler, "v1"), "v1");
        // The default itself never uses up a slot.
        assert_eq!(version_of(&mut labeler, "unknown"), "unknown");
        // Values outside the charset are the default, and never admitted.
        assert_eq!(version_of(&mut labeler, "v 4"), "unknown");
    }

    #[test]
    fn version_values_are_truncated_before_admission() {
        let config = validate(
            br#"{"max_label_value_len": 4, "dimensions": {"version": {"header": "x-v", "default": "none"}}}"#,
        )
        .unwrap();
        let mut labeler = Labeler::new(&config);
        let request = labeler.request_labels(&facts("GET", "/", Some("canary-7")));
        assert_eq!(labeler.request_pairs(&request)[1].1, "cana");
    }

    fn cardinality_config() -> Config {
        validate(
            br#"{"dimensions": {"method": true, "response_code": true, "response_code_class": true,
            "version": {"header": "x-v", "max_values": 3},
            "route": {"prefixes": ["/api", "/admin", "/health"]}}}"#,
        )
        .unwrap()
    }

    /// Arbitrary request bytes, biased towards the interesting cases.
    fn any_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            "[A-Za-z0-9./;=_~-]{0,20}".prop_map(String::into_bytes),
            prop::sample::select(vec![
                "GET", "POST", "/api", "/api/x", "/admin?y", "v1", "v2", "200", "503"
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
        ]
    }

    proptest::proptest! {
        #[test]
        fn any_request_yields_label_values_that_encode_and_parse_back(
            method in any_bytes(), path in any_bytes(), version in any_bytes(), status in any_bytes(),
        ) {
            let config = cardinality_config();
            let mut labeler = Labeler::new(&config);
            let request = labeler.request_labels(&RequestFacts {
                method: Some(&method), path: Some(&path), version: Some(&version),
            });
            let key = labeler.key(request, Some(&status));
            let pairs = labeler.pairs(&key);
            proptest::prop_assert_eq!(pairs.len(), 5);
            for (_, value) in &pairs {
                proptest::prop_assert!(is_label_value(value.as_bytes()), "{value:?}");
                proptest::prop_assert!(value.len() <= config.max_label_value_len);
            }
            // Splitting at the separators gives back exactly the pairs.
            let name = encode_name(&pairs, "mesh_requests_total");
            let fields: Vec<&str> = name.split(FIELD_SEPARATOR).collect();
            proptest::prop_assert_eq!(fields.last().copied(), Some("mesh_requests_total"));
            for ((label, value), field) in pairs.iter().zip(&fields) {
                proptest::prop_assert_eq!(field.split_once(VALUE_SEPARATOR), Some((*label, value.as_str())));
            }
        }
    }

    #[test]
    fn hundred_thousand_random_requests_stay_within_the_series_bound() {
        use proptest::strategy::{Strategy, ValueTree};
        use proptest::test_runner::TestRunner;
        use std::collections::HashSet;

        let config = cardinality_config();
        let mut labeler = Labeler::new(&config);
        let mut runner = TestRunner::deterministic();
        let strategy = (any_bytes(), any_bytes(), any_bytes(), any_bytes());
        let mut keys = HashSet::new();
        let mut names = HashSet::new();
        for _ in 0..100_000 {
            let (method, path, version, status) = strategy.new_tree(&mut runner).unwrap().current();
            let request = labeler.request_labels(&RequestFacts {
                method: Some(&method),
                path: Some(&path),
                version: Some(&version),
            });
            let key = labeler.key(request, Some(&status));
            if keys.insert(key) {
                names.insert(encode_name(&labeler.pairs(&key), "mesh_requests_total"));
            }
        }
        // Distinct keys are distinct series: the cache cannot outgrow the names.
        assert_eq!(keys.len(), names.len());
        assert!(
            keys.len() <= config.series_bound(),
            "{} > {}",
            keys.len(),
            config.series_bound()
        );

        // Methods x routes alone, with everything else fixed, reach their bound exactly.
        let config = validate(
            br#"{"dimensions": {"response_code": false, "route": {"prefixes": ["/api", "/admin", "/health"]}}}"#,
        )
        .unwrap();
        let mut labeler = Labeler::new(&config);
        let methods = STANDARD_METHODS
            .iter()
            .map(|m| m.as_bytes().to_vec())
            .chain([b"BREW".to_vec()]);
        let mut seen = HashSet::new();
        for method in methods {
            for _ in 0..10_000 {
                let (path, _, _, _) = strategy.new_tree(&mut runner).unwrap().current();
                for path in [
                    path.clone(),
                    [b"/api/".as_slice(), &path].concat(),
                    b"/admin".to_vec(),
                    b"/health?x".to_vec(),
                ] {
                    seen.insert(labeler.request_labels(&RequestFacts {
                        method: Some(&method),
                        path: Some(&path),
                        version: None,
                    }));
                }
            }
        }
        assert_eq!(seen.len(), config.series_bound());
        assert_eq!(config.series_bound(), 10 * 4);
    }

    #[test]
    fn version_allow_list_admits_only_listed_values_exactly() {
        let config = issue_config(r#"{"header": "x-v", "values": ["v1", "v2"]}"#);
        let mut labeler = Labeler::new(&config);
        for (raw, label) in [
            ("v1", "v1"),
            ("v2", "v2"),
            ("v3", "unknown"),
            ("V1", "unknown"),
            ("v1x", "unknown"),
        ] {
            let request = labeler.request_labels(&facts("GET", "/", Some(raw)));
            assert_eq!(labeler.request_pairs(&request)[1].1, label, "{raw}");
        }
    }
}
