//! The filter's JSON config: serde structs with documented defaults, and
//! `validate`, which turns raw JSON into a checked [`Config`] or a
//! [`ConfigError`] naming the field.

use std::time::Duration;

use serde::Deserialize;

pub use crate::global::config::{FailureMode, Global, RawGlobal};

/// Most rules one config may hold: every applicable rule costs one shared-data
/// read and write per request.
pub const MAX_RULES: usize = 16;
/// Most key sources one rule may list.
pub const MAX_KEY_SOURCES: usize = 8;
/// Longest rule name: it appears in counter names, shared-data keys and
/// response headers.
pub const MAX_RULE_NAME_LEN: usize = 64;
/// Default `max_keys`.
pub const DEFAULT_MAX_KEYS: u32 = 65_536;
/// Largest `max_keys`: about 100 bytes of shared data per slot in Envoy, so
/// this bounds one rule at roughly 400 MB.
pub const MAX_KEYS_LIMIT: u32 = 4_194_304;
/// Default `response.status`, as Envoy's `local_ratelimit`.
pub const DEFAULT_STATUS: u16 = 429;
/// Default `response.body`.
pub const DEFAULT_BODY: &str = "rate limited\n";
/// Longest `response.body`.
pub const MAX_BODY_LEN: usize = 4096;

/// The config as written by the user, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The rules, 1..=16. Required.
    pub rules: Vec<RawRule>,
    /// How `client_ip` key sources find the client. Default: 0 trusted hops.
    #[serde(default)]
    pub client_ip: RawClientIp,
    /// The answer to a limited request and the headers on every answer.
    #[serde(default)]
    pub response: RawResponse,
    /// Count would-be denials without enforcing them. Default `false`.
    #[serde(default)]
    pub shadow_mode: bool,
    /// Most buckets (shared-data slots) per rule, 1..=4194304. Default 65536.
    #[serde(default = "default_max_keys")]
    pub max_keys: u32,
    /// What to do when compare-and-swap retries run out. Default `allow`.
    #[serde(default)]
    pub on_contention: OnContention,
}

/// One rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Name, 1..=64 characters of `[A-Za-z0-9_-]`, unique. Required.
    pub name: String,
    /// Which requests the rule applies to. Default: every request.
    #[serde(default, rename = "match")]
    pub matcher: Option<RawMatch>,
    /// Key sources in order; the first one present names the bucket. Default
    /// `[]`: one bucket for the whole rule.
    #[serde(default)]
    pub key: Vec<RawKeySource>,
    /// The bucket every key of this rule gets. Required for a local rule;
    /// for a global rule, only with `global.local_fallback`.
    #[serde(default)]
    pub token_bucket: Option<RawTokenBucket>,
    /// Ask a rate-limit service (Envoy's RLS protocol) instead of, or when
    /// it fails, besides a local bucket. Default: a local rule.
    #[serde(default)]
    pub global: Option<RawGlobal>,
}

/// `match`: every condition given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// `:path` (query excluded) starts with this. Not with `path`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// `:path` (query excluded) equals this. Not with `prefix`.
    #[serde(default)]
    pub path: Option<String>,
    /// `:method` equals this, case-sensitively (`GET`).
    #[serde(default)]
    pub method: Option<String>,
}

/// An empty JSON object, `{}`: the `client_ip` and `path` sources take no
/// options yet but are objects so options can be added later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// One key source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawKeySource {
    /// `{"header": "x-jwt-sub"}`: a request header's value (lower-case name).
    Header(String),
    /// `{"cookie": "session"}`: a cookie's value.
    Cookie(String),
    /// `{"query_param": "api_key"}`: a query parameter's raw value.
    QueryParam(String),
    /// `{"client_ip": {}}`: the client address (see `client_ip`).
    ClientIp(Empty),
    /// `{"path": {}}`: `:path` without its query.
    Path(Empty),
}

/// `token_bucket`, with the fields of Envoy's `envoy.type.v3.TokenBucket`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenBucket {
    /// Bucket size, > 0; the bucket starts full. Required.
    pub max_tokens: u32,
    /// Tokens added each `fill_interval`, 1..=max_tokens. Default 1, as in Envoy.
    #[serde(default = "one")]
    pub tokens_per_fill: u32,
    /// Protobuf JSON duration such as `"60s"` or `"0.5s"`, > 0. Required.
    pub fill_interval: String,
}

/// `client_ip`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    /// Envoy's `xff_num_trusted_hops`: 0 takes the peer address
    /// (`source.address`); N takes the Nth `X-Forwarded-For` entry from the
    /// right. Default 0.
    #[serde(default)]
    pub xff_num_trusted_hops: u32,
}

/// `response`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponse {
    /// Status of a limited request's answer, 400..=599. Default 429.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Body of that answer, at most 4096 bytes. Default `"rate limited\n"`.
    #[serde(default = "default_body")]
    pub body: String,
    /// Rate-limit header format on every answer. Default `draft`.
    #[serde(default)]
    pub headers: HeaderFormat,
    /// Add `Retry-After` to a limited request's answer. Default `true`.
    #[serde(default = "yes")]
    pub retry_after: bool,
}

impl Default for RawResponse {
    fn default() -> Self {
        Self {
            status: DEFAULT_STATUS,
            body: DEFAULT_BODY.to_owned(),
            headers: HeaderFormat::default(),
            retry_after: true,
        }
    }
}

/// Which rate-limit headers answers carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderFormat {
    /// `RateLimit-Policy` and `RateLimit`, IETF draft-ietf-httpapi-ratelimit-headers-10.
    #[default]
    Draft,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`, as Envoy's
    /// `enable_x_ratelimit_headers: DRAFT_VERSION_03`.
    #[serde(rename = "x-ratelimit")]
    XRateLimit,
    /// No rate-limit headers (`Retry-After` is governed by `retry_after`).
    None,
}

/// What a request gets when compare-and-swap retries run out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnContention {
    /// Admit it without charging the contended rule (fail open).
    #[default]
    Allow,
    /// Deny it (fail closed).
    Deny,
}

fn default_max_keys() -> u32 {
    DEFAULT_MAX_KEYS
}
fn default_status() -> u16 {
    DEFAULT_STATUS
}
fn default_body() -> String {
    DEFAULT_BODY.to_owned()
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// Which requests a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Every path.
    Any,
    /// Paths starting with this.
    Prefix(String),
    /// Exactly this path.
    Exact(String),
}

/// A validated key source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Request header, lower-case name.
    Header(String),
    /// Cookie name.
    Cookie(String),
    /// Query parameter name.
    QueryParam(String),
    /// The client address.
    ClientIp,
    /// The path without query.
    Path,
}

/// A validated token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Bucket size, > 0.
    pub max_tokens: u32,
    /// Tokens per fill, 1..=max_tokens.
    pub tokens_per_fill: u32,
    /// Fill interval, > 0.
    pub fill_interval: Duration,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Path condition.
    pub path: PathMatch,
    /// Method condition, if any.
    pub method: Option<String>,
    /// Key sources in order; empty = one bucket.
    pub key: Vec<KeySource>,
    /// The bucket.
    pub bucket: TokenBucket,
    /// The local fallback bucket of a global rule: charged only while its
    /// rate-limit service cannot answer, never by [`crate::rules::Plan::hits`].
    pub fallback_only: bool,
}

/// A validated global rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalRule {
    /// Unique name (shared with its fallback bucket rule, if any).
    pub name: String,
    /// Path condition.
    pub path: PathMatch,
    /// Method condition, if any.
    pub method: Option<String>,
    /// The service and descriptors.
    pub global: Global,
    /// Position in [`Config::rules`] of the fallback bucket, when
    /// `local_fallback` is on.
    pub fallback: Option<u16>,
}

/// A validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Rules with a token bucket, in config order: the local rules and the
    /// fallback buckets of global rules.
    pub rules: Vec<Rule>,
    /// Global rules, in config order.
    pub global: Vec<GlobalRule>,
    /// Envoy's `xff_num_trusted_hops`.
    pub xff_num_trusted_hops: u32,
    /// Status of a limited request's answer.
    pub status: u16,
    /// Body of that answer.
    pub body: String,
    /// Header format.
    pub headers: HeaderFormat,
    /// Add `Retry-After` to limited answers.
    pub retry_after: bool,
    /// Count, do not enforce.
    pub shadow_mode: bool,
    /// Slots per rule.
    pub max_keys: u32,
    /// Contention policy.
    pub on_contention: OnContention,
}

/// Why a config was refused. Messages name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, an unknown field, a missing required field, or a wrong type.
    #[error("rate-limit: invalid config: {0}")]
    Json(String),
    /// `rules` is empty.
    #[error("rate-limit: rules: must list at least one rule")]
    NoRules,
    /// Too many rules.
    #[error("rate-limit: rules: at most {MAX_RULES} rules, got {0}")]
    TooManyRules(usize),
    /// A rule name is empty, too long or has other characters.
    #[error("rate-limit: rules[{index}].name: must be 1..={MAX_RULE_NAME_LEN} characters of [A-Za-z0-9_-], got {name:?}")]
    BadRuleName {
        /// Rule position.
        index: usize,
        /// The name.
        name: String,
    },
    /// Two rules share a name.
    #[error("rate-limit: rules[{index}].name: {name:?} is already used by an earlier rule")]
    DuplicateRuleName {
        /// Rule position.
        index: usize,
        /// The name.
        name: String,
    },
    /// Both `prefix` and `path` in one `match`.
    #[error("rate-limit: rules[{index}].match: give prefix or path, not both")]
    PrefixAndPath {
        /// Rule position.
        index: usize,
    },
    /// `prefix` or `path` does not start with `/`.
    #[error("rate-limit: rules[{index}].match.{field}: must start with \"/\", got {value:?}")]
    NotAbsolute {
        /// Rule position.
        index: usize,
        /// `prefix` or `path`.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// `method` is not an HTTP token.
    #[error("rate-limit: rules[{index}].match.method: must be a non-empty HTTP token like \"GET\", got {value:?}")]
    BadMethod {
        /// Rule position.
        index: usize,
        /// The value.
        value: String,
    },
    /// Too many key sources.
    #[error("rate-limit: rules[{index}].key: at most {MAX_KEY_SOURCES} sources, got {count}")]
    TooManyKeySources {
        /// Rule position.
        index: usize,
        /// How many were given.
        count: usize,
    },
    /// A `header` key source names an invalid header.
    #[error("rate-limit: rules[{index}].key[{source_index}].header: {error}")]
    BadKeyHeader {
        /// Rule position.
        index: usize,
        /// Source position.
        source_index: usize,
        /// What is wrong.
        error: filter_common::HeaderError,
    },
    /// A `cookie` or `query_param` name is empty or has separators.
    #[error("rate-limit: rules[{index}].key[{source_index}].{kind}: must be a non-empty name without ';', '=', '&', '#' or whitespace, got {name:?}")]
    BadKeyName {
        /// Rule position.
        index: usize,
        /// Source position.
        source_index: usize,
        /// `cookie` or `query_param`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// `max_tokens` is 0.
    #[error("rate-limit: rules[{index}].token_bucket.max_tokens: must be > 0, got 0")]
    ZeroMaxTokens {
        /// Rule position.
        index: usize,
    },
    /// `tokens_per_fill` is 0.
    #[error("rate-limit: rules[{index}].token_bucket.tokens_per_fill: must be > 0, got 0")]
    ZeroTokensPerFill {
        /// Rule position.
        index: usize,
    },
    /// `tokens_per_fill` > `max_tokens`.
    #[error("rate-limit: rules[{index}].token_bucket.tokens_per_fill: must be <= max_tokens ({max_tokens}), got {tokens_per_fill}")]
    TokensPerFillAboveMax {
        /// Rule position.
        index: usize,
        /// The value.
        tokens_per_fill: u32,
        /// `max_tokens`.
        max_tokens: u32,
    },
    /// `fill_interval` does not parse.
    #[error("rate-limit: rules[{index}].token_bucket.fill_interval: {error}")]
    BadFillInterval {
        /// Rule position.
        index: usize,
        /// What is wrong.
        error: filter_common::DurationError,
    },
    /// `fill_interval` is zero.
    #[error("rate-limit: rules[{index}].token_bucket.fill_interval: must be > 0, got {value:?}")]
    ZeroFillInterval {
        /// Rule position.
        index: usize,
        /// The value.
        value: String,
    },
    /// `response.status` out of range.
    #[error("rate-limit: response.status: must be 400..=599, got {0}")]
    BadStatus(u16),
    /// `response.body` too long.
    #[error("rate-limit: response.body: at most {MAX_BODY_LEN} bytes, got {0}")]
    BodyTooLong(usize),
    /// `max_keys` out of range.
    #[error("rate-limit: max_keys: must be 1..={MAX_KEYS_LIMIT}, got {0}")]
    BadMaxKeys(u32),
    /// A local rule without `token_bucket`.
    #[error("rate-limit: rules[{index}].token_bucket: required (a rule without global is local)")]
    MissingTokenBucket {
        /// Rule position.
        index: usize,
    },
    /// `global.local_fallback` without `token_bucket`.
    #[error("rate-limit: rules[{index}].token_bucket: required by global.local_fallback: true")]
    FallbackNeedsBucket {
        /// Rule position.
        index: usize,
    },
    /// A global rule has a `token_bucket` or `key` but no fallback to use them.
    #[error("rate-limit: rules[{index}].{field}: only used by the local fallback; set global.local_fallback: true or remove it")]
    UnusedWithoutFallback {
        /// Rule position.
        index: usize,
        /// `token_bucket` or `key`.
        field: &'static str,
    },
    /// A field of `global` is invalid.
    #[error("rate-limit: rules[{index}].global.{field}: {message}")]
    Global {
        /// Rule position.
        index: usize,
        /// The field, such as `descriptors[0][1].from`.
        field: String,
        /// What is wrong.
        message: String,
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
/// let config = rate_limit::config::validate(br#"{"rules": [{"name": "all",
///     "token_bucket": {"max_tokens": 10, "tokens_per_fill": 10, "fill_interval": "1s"}}]}"#).unwrap();
/// assert_eq!(config.rules[0].bucket.max_tokens, 10);
/// assert!(rate_limit::config::validate(br#"{"rules": []}"#).is_err());
/// ```
pub fn validate(raw: &[u8]) -> Result<Config, ConfigError> {
    let raw: RawConfig =
        serde_json::from_slice(raw).map_err(|e| ConfigError::Json(e.to_string()))?;
    check(raw)
}

fn check(raw: RawConfig) -> Result<Config, ConfigError> {
    if raw.rules.is_empty() {
        return Err(ConfigError::NoRules);
    }
    if raw.rules.len() > MAX_RULES {
        return Err(ConfigError::TooManyRules(raw.rules.len()));
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
    let mut global: Vec<GlobalRule> = Vec::new();
    for (index, rule) in raw.rules.into_iter().enumerate() {
        let name_taken = |name: &str| {
            rules.iter().any(|r| r.name == name) || global.iter().any(|g| g.name == name)
        };
        if name_taken(&rule.name) {
            return Err(ConfigError::DuplicateRuleName {
                index,
                name: rule.name,
            });
        }
        match check_rule(index, rule)? {
            Checked::Local(rule) => rules.push(rule),
            Checked::Global(mut rule, fallback) => {
                if let Some(bucket_rule) = fallback {
                    rule.fallback = u16::try_from(rules.len()).ok();
                    rules.push(bucket_rule);
                }
                global.push(rule);
            }
        }
    }
    let response = raw.response;
    if !(400..=599).contains(&response.status) {
        return Err(ConfigError::BadStatus(response.status));
    }
    if response.body.len() > MAX_BODY_LEN {
        return Err(ConfigError::BodyTooLong(response.body.len()));
    }
    if raw.max_keys == 0 || raw.max_keys > MAX_KEYS_LIMIT {
        return Err(ConfigError::BadMaxKeys(raw.max_keys));
    }
    Ok(Config {
        rules,
        global,
        xff_num_trusted_hops: raw.client_ip.xff_num_trusted_hops,
        status: response.status,
        body: response.body,
        headers: response.headers,
        retry_after: response.retry_after,
        shadow_mode: raw.shadow_mode,
        max_keys: raw.max_keys,
        on_contention: raw.on_contention,
    })
}

fn is_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_RULE_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A checked rule: local, or global with its fallback bucket rule.
enum Checked {
    Local(Rule),
    Global(GlobalRule, Option<Rule>),
}

fn check_rule(index: usize, raw: RawRule) -> Result<Checked, ConfigError> {
    if !is_rule_name(&raw.name) {
        return Err(ConfigError::BadRuleName {
            index,
            name: raw.name,
        });
    }
    let matcher = raw.matcher.unwrap_or_default();
    let path = match (matcher.prefix, matcher.path) {
        (Some(_), Some(_)) => return Err(ConfigError::PrefixAndPath { index }),
        (Some(prefix), None) => PathMatch::Prefix(absolute(index, "prefix", prefix)?),
        (None, Some(path)) => PathMatch::Exact(absolute(index, "path", path)?),
        (None, None) => PathMatch::Any,
    };
    if let Some(method) = &matcher.method {
        if !is_token(method) {
            return Err(ConfigError::BadMethod {
                index,
                value: method.clone(),
            });
        }
    }
    if raw.key.len() > MAX_KEY_SOURCES {
        return Err(ConfigError::TooManyKeySources {
            index,
            count: raw.key.len(),
        });
    }
    let key = raw
        .key
        .into_iter()
        .enumerate()
        .map(|(source_index, source)| check_source(index, source_index, source))
        .collect::<Result<Vec<_>, _>>()?;
    let bucket = raw
        .token_bucket
        .map(|bucket| check_bucket(index, bucket))
        .transpose()?;
    let Some(raw_global) = raw.global else {
        return Ok(Checked::Local(Rule {
            name: raw.name,
            path,
            method: matcher.method,
            key,
            bucket: bucket.ok_or(ConfigError::MissingTokenBucket { index })?,
            fallback_only: false,
        }));
    };
    let global = crate::global::config::check(index, raw_global)?;
    let fallback = match (global.local_fallback, bucket) {
        (true, None) => return Err(ConfigError::FallbackNeedsBucket { index }),
        (false, Some(_)) => {
            return Err(ConfigError::UnusedWithoutFallback {
                index,
                field: "token_bucket",
            })
        }
        (false, None) if !key.is_empty() => {
            return Err(ConfigError::UnusedWithoutFallback {
                index,
                field: "key",
            })
        }
        (false, None) => None,
        (true, Some(bucket)) => Some(Rule {
            name: raw.name.clone(),
            path: path.clone(),
            method: matcher.method.clone(),
            key,
            bucket,
            fallback_only: true,
        }),
    };
    Ok(Checked::Global(
        GlobalRule {
            name: raw.name,
            path,
            method: matcher.method,
            global,
            fallback: None,
        },
        fallback,
    ))
}

fn absolute(index: usize, field: &'static str, value: String) -> Result<String, ConfigError> {
    if value.starts_with('/') {
        Ok(value)
    } else {
        Err(ConfigError::NotAbsolute {
            index,
            field,
            value,
        })
    }
}

fn check_source(
    index: usize,
    source_index: usize,
    source: RawKeySource,
) -> Result<KeySource, ConfigError> {
    let plain_name = |kind: &'static str, name: String| {
        let ok = !name.is_empty()
            && !name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b";=&#".contains(&b));
        if ok {
            Ok(name)
        } else {
            Err(ConfigError::BadKeyName {
                index,
                source_index,
                kind,
                name,
            })
        }
    };
    Ok(match source {
        RawKeySource::Header(name) => {
            filter_common::validate_header_name(&name).map_err(|error| {
                ConfigError::BadKeyHeader {
                    index,
                    source_index,
                    error,
                }
            })?;
            KeySource::Header(name)
        }
        RawKeySource::Cookie(name) => KeySource::Cookie(plain_name("cookie", name)?),
        RawKeySource::QueryParam(name) => KeySource::QueryParam(plain_name("query_param", name)?),
        RawKeySource::ClientIp(Empty {}) => KeySource::ClientIp,
        RawKeySource::Path(Empty {}) => KeySource::Path,
    })
}

fn check_bucket(index: usize, raw: RawTokenBucket) -> Result<TokenBucket, ConfigError> {
    if raw.max_tokens == 0 {
        return Err(ConfigError::ZeroMaxTokens { index });
    }
    if raw.tokens_per_fill == 0 {
        return Err(ConfigError::ZeroTokensPerFill { index });
    }
    if raw.tokens_per_fill > raw.max_tokens {
        return Err(ConfigError::TokensPerFillAboveMax {
            index,
            tokens_per_fill: raw.tokens_per_fill,
            max_tokens: raw.max_tokens,
        });
    }
    let fill_interval = filter_common::parse_duration(&raw.fill_interval)
        .map_err(|error| ConfigError::BadFillInterval { index, error })?;
    if fill_interval.is_zero() {
        return Err(ConfigError::ZeroFillInterval {
            index,
            value: raw.fill_interval,
        });
    }
    Ok(TokenBucket {
        max_tokens: raw.max_tokens,
        tokens_per_fill: raw.tokens_per_fill,
        fill_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config from the issue, verbatim.
    const ISSUE_CONFIG: &str = r#"{
      "rules": [
        {"name": "per_user", "match": {"prefix": "/api"},
         "key": [{"header": "x-jwt-sub"}, {"client_ip": {}}],
         "token_bucket": {"max_tokens": 100, "tokens_per_fill": 100, "fill_interval": "60s"}},
        {"name": "everyone", "key": [],
         "token_bucket": {"max_tokens": 1000, "tokens_per_fill": 1000, "fill_interval": "1s"}}
      ],
      "client_ip": {"xff_num_trusted_hops": 0},
      "response": {"status": 429, "body": "rate limited\n", "headers": "draft", "retry_after": true},
      "shadow_mode": false,
      "max_keys": 65536,
      "on_contention": "allow"
    }"#;

    fn with_rule(rule: &str) -> String {
        format!(r#"{{"rules": [{rule}]}}"#)
    }

    fn bucket(max: u32, per_fill: u32, interval: &str) -> String {
        format!(
            r#"{{"name": "r", "token_bucket": {{"max_tokens": {max}, "tokens_per_fill": {per_fill}, "fill_interval": "{interval}"}}}}"#
        )
    }

    fn error(json: &str) -> String {
        match validate(json.as_bytes()) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_issue_config_is_accepted() {
        let config = validate(ISSUE_CONFIG.as_bytes()).unwrap();
        assert_eq!(config.rules.len(), 2);
        let per_user = &config.rules[0];
        assert_eq!(per_user.path, PathMatch::Prefix("/api".into()));
        assert_eq!(
            per_user.key,
            vec![KeySource::Header("x-jwt-sub".into()), KeySource::ClientIp]
        );
        assert_eq!(per_user.bucket.fill_interval, Duration::from_secs(60));
        assert_eq!(config.rules[1].path, PathMatch::Any);
        assert_eq!(config.headers, HeaderFormat::Draft);
        assert_eq!(config.on_contention, OnContention::Allow);
    }

    #[test]
    fn defaults_follow_the_documentation() {
        let config = validate(
            br#"{"rules": [{"name": "r", "token_bucket": {"max_tokens": 5, "fill_interval": "1s"}}]}"#,
        )
        .unwrap();
        assert_eq!(config.rules[0].bucket.tokens_per_fill, 1);
        assert_eq!(config.status, 429);
        assert_eq!(config.body, "rate limited\n");
        assert_eq!(config.headers, HeaderFormat::Draft);
        assert!(config.retry_after);
        assert!(!config.shadow_mode);
        assert_eq!(config.max_keys, 65_536);
        assert_eq!(config.xff_num_trusted_hops, 0);
        assert!(config.rules[0].key.is_empty());
    }

    #[test]
    fn every_key_source_and_header_format_parses() {
        let json = r#"{"rules": [{"name": "r", "key": [{"header": "x-api-key"}, {"cookie": "sid"},
            {"query_param": "key"}, {"client_ip": {}}, {"path": {}}],
            "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}],
            "response": {"headers": "x-ratelimit"}, "on_contention": "deny"}"#;
        let config = validate(json.as_bytes()).unwrap();
        assert_eq!(config.rules[0].key.len(), 5);
        assert_eq!(config.headers, HeaderFormat::XRateLimit);
        assert_eq!(config.on_contention, OnContention::Deny);
        let none = validate(
            br#"{"rules": [{"name": "r", "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}],
            "response": {"headers": "none"}}"#,
        )
        .unwrap();
        assert_eq!(none.headers, HeaderFormat::None);
    }

    #[test]
    fn bucket_errors_name_the_field() {
        assert_eq!(
            error(&with_rule(&bucket(5, 1, "0s"))),
            r#"rate-limit: rules[0].token_bucket.fill_interval: must be > 0, got "0s""#
        );
        assert_eq!(
            error(&with_rule(&bucket(5, 1, "0.000s"))),
            r#"rate-limit: rules[0].token_bucket.fill_interval: must be > 0, got "0.000s""#
        );
        assert_eq!(
            error(&with_rule(&bucket(5, 6, "1s"))),
            "rate-limit: rules[0].token_bucket.tokens_per_fill: must be <= max_tokens (5), got 6"
        );
        assert_eq!(
            error(&with_rule(&bucket(0, 0, "1s"))),
            "rate-limit: rules[0].token_bucket.max_tokens: must be > 0, got 0"
        );
        assert_eq!(
            error(&with_rule(&bucket(5, 0, "1s"))),
            "rate-limit: rules[0].token_bucket.tokens_per_fill: must be > 0, got 0"
        );
        assert!(error(&with_rule(&bucket(5, 1, "1m"))).contains("fill_interval"));
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        for json in [
            r#"{"rules": [], "burst": 1}"#.to_owned(),
            with_rule(
                r#"{"name": "r", "token_bucket": {"max_tokens": 1, "fill_interval": "1s", "x": 1}}"#,
            ),
            with_rule(
                r#"{"name": "r", "matcher": {}, "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}"#,
            ),
            with_rule(
                r#"{"name": "r", "match": {"regex": "x"}, "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}"#,
            ),
            with_rule(
                r#"{"name": "r", "key": [{"client_ip": {"v6_mask": 64}}], "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}"#,
            ),
            with_rule(
                r#"{"name": "r", "key": [{"jwt_claim": "sub"}], "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}"#,
            ),
        ] {
            assert!(
                error(&json).starts_with("rate-limit: invalid config:"),
                "{json}"
            );
        }
    }

    #[test]
    fn rule_shape_errors_name_the_rule() {
        let ok_bucket = r#""token_bucket": {"max_tokens": 1, "fill_interval": "1s"}"#;
        assert_eq!(
            error(r#"{"rules": []}"#),
            "rate-limit: rules: must list at least one rule"
        );
        assert!(
            error(&with_rule(&format!(r#"{{"name": "a b", {ok_bucket}}}"#)))
                .starts_with("rate-limit: rules[0].name:")
        );
        let twice =
            format!(r#"{{"rules": [{{"name": "a", {ok_bucket}}}, {{"name": "a", {ok_bucket}}}]}}"#);
        assert_eq!(
            error(&twice),
            r#"rate-limit: rules[1].name: "a" is already used by an earlier rule"#
        );
        assert_eq!(
            error(&with_rule(&format!(
                r#"{{"name": "a", "match": {{"prefix": "/a", "path": "/b"}}, {ok_bucket}}}"#
            ))),
            "rate-limit: rules[0].match: give prefix or path, not both"
        );
        assert_eq!(
            error(&with_rule(&format!(
                r#"{{"name": "a", "match": {{"prefix": "api"}}, {ok_bucket}}}"#
            ))),
            r#"rate-limit: rules[0].match.prefix: must start with "/", got "api""#
        );
        assert!(error(&with_rule(&format!(
            r#"{{"name": "a", "match": {{"method": "G T"}}, {ok_bucket}}}"#
        )))
        .starts_with("rate-limit: rules[0].match.method:"));
        assert!(error(&with_rule(&format!(
            r#"{{"name": "a", "key": [{{"header": "X-Key"}}], {ok_bucket}}}"#
        )))
        .starts_with("rate-limit: rules[0].key[0].header:"));
        assert!(error(&with_rule(&format!(
            r#"{{"name": "a", "key": [{{"path": {{}}}}, {{"cookie": "a;b"}}], {ok_bucket}}}"#
        )))
        .starts_with("rate-limit: rules[0].key[1].cookie:"));
    }

    #[test]
    fn response_and_limits_errors_name_the_field() {
        let rule = bucket(1, 1, "1s");
        assert_eq!(
            error(&format!(
                r#"{{"rules": [{rule}], "response": {{"status": 200}}}}"#
            )),
            "rate-limit: response.status: must be 400..=599, got 200"
        );
        assert_eq!(
            error(&format!(r#"{{"rules": [{rule}], "max_keys": 0}}"#)),
            "rate-limit: max_keys: must be 1..=4194304, got 0"
        );
        assert!(error(&format!(
            r#"{{"rules": [{rule}], "response": {{"headers": "draft-03"}}}}"#
        ))
        .starts_with("rate-limit: invalid config:"));
        assert!(error(&format!(
            r#"{{"rules": [{rule}], "on_contention": "retry"}}"#
        ))
        .starts_with("rate-limit: invalid config:"));
    }
}
