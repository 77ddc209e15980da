//! The filter's JSON config: serde structs with documented defaults, and
//! `validate`, which turns raw JSON into a checked [`Config`] or a
//! [`ConfigError`] naming the field.

use serde::Deserialize;

use crate::labels::{is_label_value, STANDARD_METHODS};

/// Default metric name prefix: metrics are `mesh_requests_total`, ...
pub const DEFAULT_PREFIX: &str = "mesh";
/// Default longest label value, in bytes; longer values are truncated.
pub const DEFAULT_MAX_LABEL_VALUE_LEN: usize = 64;
/// Upper limit for `max_label_value_len`.
pub const MAX_LABEL_VALUE_LEN_LIMIT: usize = 256;
/// Default `version.default` and `route.default` values.
pub const DEFAULT_VERSION_VALUE: &str = "unknown";
/// Default label for paths no configured route prefix matches.
pub const DEFAULT_ROUTE_VALUE: &str = "other";
/// Default per-VM cap on distinct `version` values when no `values`
/// allow-list is configured.
pub const DEFAULT_VERSION_MAX_VALUES: usize = 16;
/// Upper limit for `version.max_values` and the `values` list length.
pub const VERSION_MAX_VALUES_LIMIT: usize = 1000;
/// Upper limit for `route.prefixes` entries.
pub const ROUTE_PREFIXES_LIMIT: usize = 1000;
/// Upper limit for `histogram_buckets_ms` entries.
pub const BUCKETS_LIMIT: usize = 64;
/// Longest `prefix`.
pub const PREFIX_LEN_LIMIT: usize = 64;
/// Default histogram buckets in milliseconds: Envoy's own default buckets up to
/// 10 s, so a bootstrap without `histogram_bucket_settings` already agrees
/// with them below 10 s.
pub const DEFAULT_BUCKETS_MS: [f64; 13] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// The config as written by the user, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Metric name prefix, a Prometheus name part `[a-zA-Z_][a-zA-Z0-9_]*`.
    /// Default `"mesh"`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Which labels the metrics carry. Default: `method` and `response_code`.
    #[serde(default)]
    pub dimensions: RawDimensions,
    /// Histogram bucket upper bounds in ms, strictly ascending, > 0. Envoy
    /// takes buckets from its bootstrap; this list documents and checks them
    /// (see the README). Default: [`DEFAULT_BUCKETS_MS`].
    #[serde(default = "default_buckets")]
    pub histogram_buckets_ms: Vec<f64>,
    /// Longest label value in bytes, 1..=256. Default 64.
    #[serde(default = "default_max_label_value_len")]
    pub max_label_value_len: usize,
}

/// `dimensions`: each enabled dimension becomes one label.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDimensions {
    /// `method` label from `:method`; default `true`.
    #[serde(default = "yes")]
    pub method: bool,
    /// `response_code` label from `:status`; default `true`.
    #[serde(default = "yes")]
    pub response_code: bool,
    /// `response_code_class` label (`2xx`, ...); default `false`.
    #[serde(default)]
    pub response_code_class: bool,
    /// `version` label from a request header; default off.
    #[serde(default)]
    pub version: Option<RawVersion>,
    /// `route` label from `:path` prefixes; default off.
    #[serde(default)]
    pub route: Option<RawRoute>,
}

impl Default for RawDimensions {
    fn default() -> Self {
        Self {
            method: true,
            response_code: true,
            response_code_class: false,
            version: None,
            route: None,
        }
    }
}

/// `dimensions.version`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVersion {
    /// Request header carrying the version, e.g. `x-canary-version`. Required.
    pub header: String,
    /// Label value when the header is absent or not admitted. Default `"unknown"`.
    #[serde(default = "default_version_value")]
    pub default: String,
    /// Optional allow-list: only these values become labels. Without it, any
    /// value in the label charset is admitted, up to `max_values` per VM.
    #[serde(default)]
    pub values: Option<Vec<String>>,
    /// Per-VM cap on distinct admitted values when `values` is absent.
    /// Default 16. Not allowed together with `values`.
    #[serde(default)]
    pub max_values: Option<usize>,
}

/// `dimensions.route`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Path prefixes that become route labels, each starting with `/`. Required,
    /// non-empty.
    pub prefixes: Vec<String>,
    /// Label for paths no prefix matches. Default `"other"`.
    #[serde(default = "default_route_value")]
    pub default: String,
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.to_owned()
}
fn default_buckets() -> Vec<f64> {
    DEFAULT_BUCKETS_MS.to_vec()
}
fn default_max_label_value_len() -> usize {
    DEFAULT_MAX_LABEL_VALUE_LEN
}
fn default_version_value() -> String {
    DEFAULT_VERSION_VALUE.to_owned()
}
fn default_route_value() -> String {
    DEFAULT_ROUTE_VALUE.to_owned()
}
fn yes() -> bool {
    true
}

/// How `version` header values become labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// Only these values; anything else is the default.
    AllowList(Vec<String>),
    /// Any label-safe value, until this many distinct values were seen in the
    /// VM; later new values are the default.
    Capped(usize),
}

/// The validated `version` dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDimension {
    /// Header name, lower-case.
    pub header: String,
    /// Fallback label value.
    pub default: String,
    /// Admission policy.
    pub policy: VersionPolicy,
}

/// The validated `route` dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDimension {
    /// Configured prefixes, in config order.
    pub prefixes: Vec<String>,
    /// Fallback label value.
    pub default: String,
}

/// A validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Metric name prefix.
    pub prefix: String,
    /// `method` label on.
    pub method: bool,
    /// `response_code` label on.
    pub response_code: bool,
    /// `response_code_class` label on.
    pub response_code_class: bool,
    /// `version` label, if on.
    pub version: Option<VersionDimension>,
    /// `route` label, if on.
    pub route: Option<RouteDimension>,
    /// Histogram bucket bounds in ms.
    pub histogram_buckets_ms: Vec<f64>,
    /// Longest label value in bytes.
    pub max_label_value_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            method: true,
            response_code: true,
            response_code_class: false,
            version: None,
            route: None,
            histogram_buckets_ms: DEFAULT_BUCKETS_MS.to_vec(),
            max_label_value_len: DEFAULT_MAX_LABEL_VALUE_LEN,
        }
    }
}

impl Config {
    /// The most label sets (time series per metric) this config can produce
    /// in one VM: the product of each enabled dimension's value count.
    ///
    /// # Examples
    /// ```
    /// let config = metrics::config::Config::default();
    /// // 10 methods (9 standard + OTHER) x 501 codes (100..=599 + "0").
    /// assert_eq!(config.series_bound(), 10 * 501);
    /// ```
    pub fn series_bound(&self) -> usize {
        let mut bound = 1usize;
        if self.method {
            bound = bound.saturating_mul(STANDARD_METHODS.len() + 1);
        }
        if self.response_code {
            bound = bound.saturating_mul(501);
        }
        if self.response_code_class {
            bound = bound.saturating_mul(6);
        }
        if let Some(version) = &self.version {
            let values = match &version.policy {
                VersionPolicy::AllowList(values) => values.len(),
                VersionPolicy::Capped(cap) => *cap,
            };
            bound = bound.saturating_mul(values + 1);
        }
        if let Some(route) = &self.route {
            bound = bound.saturating_mul(route.prefixes.len() + 1);
        }
        bound
    }
}

/// Why a config was refused. Messages name the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, an unknown field, or a wrong type.
    #[error("metrics: invalid config: {0}")]
    Json(String),
    /// `prefix` is not a Prometheus name part.
    #[error("metrics: prefix: must match [a-zA-Z_][a-zA-Z0-9_]* and be at most {PREFIX_LEN_LIMIT} bytes, got {0:?}")]
    BadPrefix(String),
    /// `histogram_buckets_ms` is empty.
    #[error("metrics: histogram_buckets_ms: must list at least one bucket")]
    EmptyBuckets,
    /// Too many buckets.
    #[error("metrics: histogram_buckets_ms: at most {BUCKETS_LIMIT} buckets, got {0}")]
    TooManyBuckets(usize),
    /// A bucket is not a finite number > 0.
    #[error("metrics: histogram_buckets_ms[{index}]: must be a finite number > 0, got {value}")]
    BadBucket {
        /// Position in the list.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Buckets not strictly ascending.
    #[error("metrics: histogram_buckets_ms[{index}]: must be greater than the bucket before it ({previous}), got {value}")]
    BucketsNotAscending {
        /// Position in the list.
        index: usize,
        /// The bucket before it.
        previous: f64,
        /// The value.
        value: f64,
    },
    /// `max_label_value_len` out of range.
    #[error("metrics: max_label_value_len: must be 1..={MAX_LABEL_VALUE_LEN_LIMIT}, got {0}")]
    BadMaxLabelValueLen(usize),
    /// `dimensions.version.header` is not a valid header name.
    #[error("metrics: dimensions.version.header: {0}")]
    BadVersionHeader(filter_common::HeaderError),
    /// A configured label value is not label-safe.
    #[error("metrics: {field}: {value:?} is not a valid label value: 1..={max_len} bytes of [A-Za-z0-9._~/-], no \"..\"")]
    BadLabelValue {
        /// Field path, e.g. `dimensions.route.prefixes[2]`.
        field: String,
        /// The value.
        value: String,
        /// `max_label_value_len` in force.
        max_len: usize,
    },
    /// A value listed twice.
    #[error("metrics: {field}: {value:?} is listed twice")]
    Duplicate {
        /// Field path.
        field: String,
        /// The value.
        value: String,
    },
    /// Both `values` and `max_values` given.
    #[error("metrics: dimensions.version: give either values (an allow-list) or max_values (a cap), not both")]
    VersionValuesAndCap,
    /// `values` empty or too long.
    #[error("metrics: dimensions.version.values: must list 1..={VERSION_MAX_VALUES_LIMIT} values, got {0}")]
    BadVersionValuesCount(usize),
    /// `max_values` out of range.
    #[error(
        "metrics: dimensions.version.max_values: must be 1..={VERSION_MAX_VALUES_LIMIT}, got {0}"
    )]
    BadVersionCap(usize),
    /// `route.prefixes` empty or too long.
    #[error("metrics: dimensions.route.prefixes: must list 1..={ROUTE_PREFIXES_LIMIT} prefixes, got {0}")]
    BadRouteCount(usize),
    /// A route prefix does not start with `/`.
    #[error("metrics: dimensions.route.prefixes[{index}]: must start with \"/\", got {value:?}")]
    RouteNotAbsolute {
        /// Position in the list.
        index: usize,
        /// The value.
        value: String,
    },
}

/// Parses and validates the plugin configuration bytes.
///
/// # Errors
/// [`ConfigError`] for malformed JSON, unknown fields, or any rule in
/// [`ConfigError`]'s variants.
///
/// # Examples
/// ```
/// let config = metrics::config::validate(br#"{"prefix": "shop"}"#).unwrap();
/// assert_eq!(config.prefix, "shop");
/// assert!(metrics::config::validate(br#"{"histogram_buckets_ms": []}"#).is_err());
/// ```
pub fn validate(raw: &[u8]) -> Result<Config, ConfigError> {
    // An absent or empty plugin configuration means "all defaults".
    let raw_config: RawConfig = if raw.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice(b"{}")
    } else {
        serde_json::from_slice(raw)
    }
    .map_err(|e| ConfigError::Json(e.to_string()))?;
    check(raw_config)
}

fn check(raw: RawConfig) -> Result<Config, ConfigError> {
    if !is_metric_name_part(&raw.prefix) {
        return Err(ConfigError::BadPrefix(raw.prefix));
    }
    check_buckets(&raw.histogram_buckets_ms)?;
    let max_len = raw.max_label_value_len;
    if max_len == 0 || max_len > MAX_LABEL_VALUE_LEN_LIMIT {
        return Err(ConfigError::BadMaxLabelValueLen(max_len));
    }
    let dims = raw.dimensions;
    let version = dims
        .version
        .map(|v| check_version(v, max_len))
        .transpose()?;
    let route = dims.route.map(|r| check_route(r, max_len)).transpose()?;
    Ok(Config {
        prefix: raw.prefix,
        method: dims.method,
        response_code: dims.response_code,
        response_code_class: dims.response_code_class,
        version,
        route,
        histogram_buckets_ms: raw.histogram_buckets_ms,
        max_label_value_len: max_len,
    })
}

fn is_metric_name_part(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.len() <= PREFIX_LEN_LIMIT
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_buckets(buckets: &[f64]) -> Result<(), ConfigError> {
    if buckets.is_empty() {
        return Err(ConfigError::EmptyBuckets);
    }
    if buckets.len() > BUCKETS_LIMIT {
        return Err(ConfigError::TooManyBuckets(buckets.len()));
    }
    let mut previous: Option<f64> = None;
    for (index, &value) in buckets.iter().enumerate() {
        if !value.is_finite() || value <= 0.0 {
            return Err(ConfigError::BadBucket { index, value });
        }
        if let Some(previous) = previous {
            if value <= previous {
                return Err(ConfigError::BucketsNotAscending {
                    index,
                    previous,
                    value,
                });
            }
        }
        previous = Some(value);
    }
    Ok(())
}

fn label_value(field: String, value: &str, max_len: usize) -> Result<(), ConfigError> {
    if is_label_value(value.as_bytes()) && value.len() <= max_len {
        Ok(())
    } else {
        Err(ConfigError::BadLabelValue {
            field,
            value: value.to_owned(),
            max_len,
        })
    }
}

fn no_duplicates(field: &str, values: &[String]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for value in values {
        if !seen.insert(value.as_str()) {
            return Err(ConfigError::Duplicate {
                field: field.to_owned(),
                value: value.clone(),
            });
        }
    }
    Ok(())
}

fn check_version(raw: RawVersion, max_len: usize) -> Result<VersionDimension, ConfigError> {
    filter_common::validate_header_name(&raw.header).map_err(ConfigError::BadVersionHeader)?;
    label_value(
        "dimensions.version.default".to_owned(),
        &raw.default,
        max_len,
    )?;
    let policy = match (raw.values, raw.max_values) {
        (Some(_), Some(_)) => return Err(ConfigError::VersionValuesAndCap),
        (Some(values), None) => {
            if values.is_empty() || values.len() > VERSION_MAX_VALUES_LIMIT {
                return Err(ConfigError::BadVersionValuesCount(values.len()));
            }
            for (i, value) in values.iter().enumerate() {
                label_value(format!("dimensions.version.values[{i}]"), value, max_len)?;
            }
            no_duplicates("dimensions.version.values", &values)?;
            VersionPolicy::AllowList(values)
        }
        (None, cap) => {
            let cap = cap.unwrap_or(DEFAULT_VERSION_MAX_VALUES);
            if cap == 0 || cap > VERSION_MAX_VALUES_LIMIT {
                return Err(ConfigError::BadVersionCap(cap));
            }
            VersionPolicy::Capped(cap)
        }
    };
    Ok(VersionDimension {
        header: raw.header,
        default: raw.default,
        policy,
    })
}

fn check_route(raw: RawRoute, max_len: usize) -> Result<RouteDimension, ConfigError> {
    if raw.prefixes.is_empty() || raw.prefixes.len() > ROUTE_PREFIXES_LIMIT {
        return Err(ConfigError::BadRouteCount(raw.prefixes.len()));
    }
    for (index, prefix) in raw.prefixes.iter().enumerate() {
        if !prefix.starts_with('/') {
            return Err(ConfigError::RouteNotAbsolute {
                index,
                value: prefix.clone(),
            });
        }
        label_value(
            format!("dimensions.route.prefixes[{index}]"),
            prefix,
            max_len,
        )?;
    }
    no_duplicates("dimensions.route.prefixes", &raw.prefixes)?;
    label_value("dimensions.route.default".to_owned(), &raw.default, max_len)?;
    Ok(RouteDimension {
        prefixes: raw.prefixes,
        default: raw.default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"{"prefix": "mesh", "dimensions": {"method": true, "response_code": true,
        "response_code_class": true, "version": {"header": "x-canary-version", "default": "unknown"},
        "route": {"prefixes": ["/api", "/admin", "/health"], "default": "other"}},
        "histogram_buckets_ms": [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
        "max_label_value_len": 64}"#;

    fn err(json: &str) -> ConfigError {
        validate(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn issue_example_is_accepted_with_a_capped_version() {
        let config = validate(ISSUE_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(config.prefix, "mesh");
        assert!(config.method && config.response_code && config.response_code_class);
        let version = config.version.as_ref().unwrap();
        assert_eq!(version.header, "x-canary-version");
        assert_eq!(
            version.policy,
            VersionPolicy::Capped(DEFAULT_VERSION_MAX_VALUES)
        );
        assert_eq!(
            config.route.as_ref().unwrap().prefixes,
            ["/api", "/admin", "/health"]
        );
        assert_eq!(config.histogram_buckets_ms, DEFAULT_BUCKETS_MS.to_vec());
        // 10 methods x 501 codes x 6 classes x 17 versions x 4 routes.
        assert_eq!(config.series_bound(), 10 * 501 * 6 * 17 * 4);
    }

    #[test]
    fn empty_config_means_defaults() {
        assert_eq!(validate(b"").unwrap(), Config::default());
        assert_eq!(validate(b"{}").unwrap(), Config::default());
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        for json in [
            r#"{"prefx": "mesh"}"#,
            r#"{"dimensions": {"path": true}}"#,
            r#"{"dimensions": {"version": {"header": "x-v", "regex": ".*"}}}"#,
            r#"{"dimensions": {"route": {"prefixes": ["/a"], "exact": true}}}"#,
        ] {
            let e = err(json);
            assert!(matches!(e, ConfigError::Json(_)), "{json}: {e}");
            assert!(e.to_string().contains("unknown field"), "{e}");
        }
    }

    #[test]
    fn empty_bucket_list_gets_a_clear_error() {
        let e = err(r#"{"histogram_buckets_ms": []}"#);
        assert_eq!(e, ConfigError::EmptyBuckets);
        assert_eq!(
            e.to_string(),
            "metrics: histogram_buckets_ms: must list at least one bucket"
        );
    }

    #[test]
    fn buckets_must_be_positive_and_ascending() {
        assert_eq!(
            err(r#"{"histogram_buckets_ms": [1, 0]}"#),
            ConfigError::BadBucket {
                index: 1,
                value: 0.0
            }
        );
        assert_eq!(
            err(r#"{"histogram_buckets_ms": [1, 5, 5]}"#),
            ConfigError::BucketsNotAscending {
                index: 2,
                previous: 5.0,
                value: 5.0
            }
        );
    }

    #[test]
    fn prefix_must_be_a_prometheus_name_part() {
        for bad in ["", "1mesh", "me.sh", "me-sh", "mesh;"] {
            let json = format!(r#"{{"prefix": "{bad}"}}"#);
            assert_eq!(err(&json), ConfigError::BadPrefix(bad.to_owned()), "{bad}");
        }
        assert!(validate(br#"{"prefix": "_a1"}"#).is_ok());
    }

    #[test]
    fn route_prefixes_are_checked() {
        assert_eq!(
            err(r#"{"dimensions": {"route": {"prefixes": []}}}"#),
            ConfigError::BadRouteCount(0)
        );
        assert!(matches!(
            err(r#"{"dimensions": {"route": {"prefixes": ["api"]}}}"#),
            ConfigError::RouteNotAbsolute { index: 0, .. }
        ));
        let e = err(r#"{"dimensions": {"route": {"prefixes": ["/a", "/b;c"]}}}"#);
        assert!(
            e.to_string().contains("dimensions.route.prefixes[1]"),
            "{e}"
        );
        assert!(matches!(
            err(r#"{"dimensions": {"route": {"prefixes": ["/a", "/a"]}}}"#),
            ConfigError::Duplicate { .. }
        ));
        let e =
            err(r#"{"max_label_value_len": 3, "dimensions": {"route": {"prefixes": ["/long"]}}}"#);
        assert!(matches!(e, ConfigError::BadLabelValue { .. }), "{e}");
    }

    #[test]
    fn version_needs_a_valid_header_and_one_policy() {
        assert!(matches!(
            err(r#"{"dimensions": {"version": {"header": "X-Version"}}}"#),
            ConfigError::BadVersionHeader(_)
        ));
        assert_eq!(
            err(
                r#"{"dimensions": {"version": {"header": "x-v", "values": ["a"], "max_values": 3}}}"#
            ),
            ConfigError::VersionValuesAndCap
        );
        assert_eq!(
            err(r#"{"dimensions": {"version": {"header": "x-v", "values": []}}}"#),
            ConfigError::BadVersionValuesCount(0)
        );
        assert_eq!(
            err(r#"{"dimensions": {"version": {"header": "x-v", "max_values": 0}}}"#),
            ConfigError::BadVersionCap(0)
        );
        let e = err(r#"{"dimensions": {"version": {"header": "x-v", "values": ["v1", "v 2"]}}}"#);
        assert!(
            e.to_string().contains("dimensions.version.values[1]"),
            "{e}"
        );
        let ok = validate(
            br#"{"dimensions": {"version": {"header": "x-v", "values": ["v1", "1.2.3"]}}}"#,
        )
        .unwrap();
        assert_eq!(
            ok.version.unwrap().policy,
            VersionPolicy::AllowList(vec!["v1".to_owned(), "1.2.3".to_owned()])
        );
    }

    #[test]
    fn max_label_value_len_has_bounds() {
        assert_eq!(
            err(r#"{"max_label_value_len": 0}"#),
            ConfigError::BadMaxLabelValueLen(0)
        );
        assert_eq!(
            err(r#"{"max_label_value_len": 257}"#),
            ConfigError::BadMaxLabelValueLen(257)
        );
    }
}
