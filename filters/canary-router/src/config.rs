//! The JSON config contract, its defaults, and its validation into a
//! [`Config`] with regexes compiled, versions indexed and cookie strings
//! prebuilt, so the request path only reads.

use filter_common::validate_header_name;
use serde::Deserialize;

use crate::matcher::{Condition, ConditionError, Field, FieldKind, RawCondition};
use crate::split::Split;

/// Default `route_header`: what the shipped VirtualService matches on.
pub const DEFAULT_ROUTE_HEADER: &str = "x-canary-version";
/// Default `sticky_cookie.max_age_seconds`: one day.
pub const DEFAULT_COOKIE_MAX_AGE: u64 = 86_400;
/// Longest version name: a Kubernetes label value / DestinationRule subset
/// name is at most 63 characters.
const MAX_VERSION_LEN: usize = 63;

/// The config as written. Only `split` is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Request header the decision is written to (and that the route table
    /// matches). Default `x-canary-version`.
    #[serde(default = "default_route_header")]
    pub route_header: String,
    /// Tried in order; the first whose match holds sets the version.
    /// Default none.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// The versions and their integer weights, stable first. Required.
    pub split: Vec<RawSplit>,
    /// Key sources for the sticky hash, first present wins. Default none
    /// (every split decision is random, kept only by `sticky_cookie`).
    #[serde(default)]
    pub hash_on: Vec<HashSource>,
    /// Cookie that keeps a split decision. Default none.
    #[serde(default)]
    pub sticky_cookie: Option<RawStickyCookie>,
    /// Echo the chosen version in a response header named `route_header`.
    /// Default false.
    #[serde(default)]
    pub response_header: bool,
    /// Call Envoy's `clear_route_cache` foreign function after setting the
    /// route header. Default true.
    #[serde(default = "default_true")]
    pub clear_route_cache: bool,
}

fn default_route_header() -> String {
    DEFAULT_ROUTE_HEADER.to_owned()
}

fn default_true() -> bool {
    true
}

fn default_max_age() -> u64 {
    DEFAULT_COOKIE_MAX_AGE
}

fn default_path() -> String {
    "/".to_owned()
}

/// One entry of `rules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// The conditions; all must hold.
    #[serde(rename = "match")]
    pub matches: RawMatch,
    /// The version to route to; must appear in `split`.
    pub version: String,
}

/// A rule's `match`: at least one condition in total.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Header conditions. Default none.
    #[serde(default)]
    pub headers: Vec<RawCondition>,
    /// Cookie conditions. Default none.
    #[serde(default)]
    pub cookies: Vec<RawCondition>,
    /// Query parameter conditions. Default none.
    #[serde(default)]
    pub query_params: Vec<RawCondition>,
}

/// One entry of `split`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplit {
    /// Version name: the route header value, the DestinationRule subset the
    /// route sends it to, and the counter suffix.
    pub version: String,
    /// Relative weight. Any integers: `80`/`20`, or `975`/`25` for 2.5%.
    pub weight: u32,
}

/// One entry of `hash_on`: `{"header": "x-user-id"}`, `{"cookie": "session"}`
/// or `{"query": "uid"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HashSource {
    /// A request header (any case).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

/// `sticky_cookie`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStickyCookie {
    /// Cookie name. Required.
    pub name: String,
    /// `Max-Age` in seconds. Default 86400.
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u64,
    /// `Path`. Default `/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// Add `Secure`. Default false (the sidecar often sees plain http).
    #[serde(default)]
    pub secure: bool,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// Index into [`Config::versions`].
    pub version: usize,
}

/// A validated sticky cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyCookie {
    /// Cookie name.
    pub name: String,
    /// The full `Set-Cookie` value for each version, prebuilt, indexed like
    /// [`Config::versions`].
    pub set_cookie: Vec<Vec<u8>>,
}

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Lower-case route header name.
    pub route_header: String,
    /// Version names in `split` order.
    pub versions: Vec<String>,
    /// Cumulative ranges over the weights.
    pub split: Split,
    /// Rules in order.
    pub rules: Vec<Rule>,
    /// Hash key sources in order.
    pub hash_on: Vec<Field>,
    /// The sticky cookie, if configured.
    pub sticky_cookie: Option<StickyCookie>,
    /// Echo the version on the response.
    pub response_header: bool,
    /// Call `clear_route_cache` after setting the header.
    pub clear_route_cache: bool,
}

impl Config {
    /// Whether any rule, hash source or the sticky cookie reads cookies; the
    /// filter then reads the whole header map once, because a request may
    /// carry several `Cookie` headers and Envoy's single-header getter
    /// returns only the first.
    #[must_use]
    pub fn reads_cookies(&self) -> bool {
        self.sticky_cookie.is_some()
            || self.hash_on.iter().any(|f| matches!(f, Field::Cookie(_)))
            || self
                .rules
                .iter()
                .flat_map(|r| &r.conditions)
                .any(|c| matches!(c.field, Field::Cookie(_)))
    }

    /// The index of a version by name.
    #[must_use]
    pub fn version_index(&self, name: &[u8]) -> Option<usize> {
        self.versions.iter().position(|v| v.as_bytes() == name)
    }
}

/// Why a config was refused. Messages start with `canary-router:` and name
/// the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, an unknown field, a missing `split`, or a wrong type.
    #[error("canary-router: invalid config: {0}")]
    Json(String),
    /// `route_header` is not a lower-case token, or is a pseudo-header.
    #[error("canary-router: route_header: {0}")]
    RouteHeader(String),
    /// `split` is empty.
    #[error("canary-router: split: needs at least one version")]
    EmptySplit,
    /// A version name that cannot be a header value, cookie value, subset
    /// name and counter suffix all at once.
    #[error("canary-router: split[{index}].version: {name:?} must be 1 to 63 characters of A-Z a-z 0-9 . _ -")]
    VersionName {
        /// Position in `split`.
        index: usize,
        /// The name.
        name: String,
    },
    /// The same version twice in `split`.
    #[error("canary-router: split[{index}].version: {name:?} is listed twice")]
    DuplicateVersion {
        /// Position of the repeat.
        index: usize,
        /// The name.
        name: String,
    },
    /// Every weight is 0.
    #[error("canary-router: split: weights sum to 0; at least one version needs a weight > 0")]
    ZeroWeights,
    /// A rule naming a version that `split` does not list.
    #[error(
        "canary-router: rules[{index}].version: unknown version {name:?}; split lists {known}"
    )]
    UnknownVersion {
        /// Position in `rules`.
        index: usize,
        /// The name.
        name: String,
        /// The known versions, comma-separated.
        known: String,
    },
    /// A rule without conditions.
    #[error("canary-router: rules[{index}].match: has no conditions; give headers, cookies or query_params (to send everyone to one version, give it all the split weight)")]
    EmptyMatch {
        /// Position in `rules`.
        index: usize,
    },
    /// A bad condition (name, test count, regex).
    #[error("canary-router: {field}: {source}")]
    Condition {
        /// Where, e.g. `rules[2].match.headers[0]`.
        field: String,
        /// What was wrong.
        source: ConditionError,
    },
    /// A condition or hash source reading `route_header`, which the filter
    /// strips before deciding, so it would never be present.
    #[error("canary-router: {field}: reads the route header {name:?}, which is removed from the request before any rule runs (clients must not pick their version by sending it)")]
    ReadsRouteHeader {
        /// Where.
        field: String,
        /// The header.
        name: String,
    },
    /// A bad `hash_on` name.
    #[error("canary-router: hash_on[{index}]: {source}")]
    HashSource {
        /// Position in `hash_on`.
        index: usize,
        /// What was wrong.
        source: ConditionError,
    },
    /// A bad `sticky_cookie.name`.
    #[error("canary-router: sticky_cookie.name: {0:?} is not an RFC 6265 cookie name (a token: no whitespace, separators or control characters)")]
    CookieName(String),
    /// A bad `sticky_cookie.path`.
    #[error("canary-router: sticky_cookie.path: {0:?} must start with '/' and contain no ';', whitespace or control characters")]
    CookiePath(String),
}

/// Parses and validates config bytes.
///
/// # Errors
/// [`ConfigError`], one variant per failure, naming the field.
///
/// # Examples
/// ```
/// let config = canary_router::config::validate(
///     br#"{"split": [{"version": "v1", "weight": 80}, {"version": "v2", "weight": 20}]}"#,
/// ).unwrap();
/// assert_eq!(config.route_header, "x-canary-version");
/// assert!(canary_router::config::validate(br#"{"split": [{"version": "v1", "weight": 0}]}"#).is_err());
/// ```
pub fn validate(raw: &[u8]) -> Result<Config, ConfigError> {
    let raw: RawConfig =
        serde_json::from_slice(raw).map_err(|e| ConfigError::Json(e.to_string()))?;
    resolve(raw)
}

fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
    let route_header = check_route_header(&raw.route_header)?;
    if raw.split.is_empty() {
        return Err(ConfigError::EmptySplit);
    }
    let mut versions: Vec<String> = Vec::with_capacity(raw.split.len());
    for (index, entry) in raw.split.iter().enumerate() {
        let name = &entry.version;
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if name.is_empty() || name.len() > MAX_VERSION_LEN || !name.chars().all(ok_char) {
            return Err(ConfigError::VersionName {
                index,
                name: name.clone(),
            });
        }
        if versions.contains(name) {
            return Err(ConfigError::DuplicateVersion {
                index,
                name: name.clone(),
            });
        }
        versions.push(name.clone());
    }
    let weights: Vec<u32> = raw.split.iter().map(|s| s.weight).collect();
    let split = Split::new(&weights).ok_or(ConfigError::ZeroWeights)?;

    let mut rules = Vec::with_capacity(raw.rules.len());
    for (index, rule) in raw.rules.iter().enumerate() {
        let version = versions
            .iter()
            .position(|v| *v == rule.version)
            .ok_or_else(|| ConfigError::UnknownVersion {
                index,
                name: rule.version.clone(),
                known: versions.join(", "),
            })?;
        let groups = [
            ("headers", FieldKind::Header, &rule.matches.headers),
            ("cookies", FieldKind::Cookie, &rule.matches.cookies),
            ("query_params", FieldKind::Query, &rule.matches.query_params),
        ];
        let mut conditions = Vec::new();
        for (group, kind, raws) in groups {
            for (at, raw) in raws.iter().enumerate() {
                let field = format!("rules[{index}].match.{group}[{at}]");
                let condition = raw.compile(kind).map_err(|source| ConfigError::Condition {
                    field: field.clone(),
                    source,
                })?;
                reject_route_header(&condition.field, &route_header, field)?;
                conditions.push(condition);
            }
        }
        if conditions.is_empty() {
            return Err(ConfigError::EmptyMatch { index });
        }
        rules.push(Rule {
            conditions,
            version,
        });
    }

    let mut hash_on = Vec::with_capacity(raw.hash_on.len());
    for (index, source) in raw.hash_on.iter().enumerate() {
        let (kind, name) = match source {
            HashSource::Header(name) => (FieldKind::Header, name),
            HashSource::Cookie(name) => (FieldKind::Cookie, name),
            HashSource::Query(name) => (FieldKind::Query, name),
        };
        // Reuse the condition name checks; `present` is only a placeholder test.
        let probe = RawCondition {
            name: name.clone(),
            present: Some(true),
            ..RawCondition::default()
        };
        let field = probe
            .compile(kind)
            .map_err(|source| ConfigError::HashSource { index, source })?
            .field;
        reject_route_header(&field, &route_header, format!("hash_on[{index}]"))?;
        hash_on.push(field);
    }

    let sticky_cookie = raw
        .sticky_cookie
        .map(|cookie| sticky_cookie(cookie, &versions))
        .transpose()?;

    Ok(Config {
        route_header,
        versions,
        split,
        rules,
        hash_on,
        sticky_cookie,
        response_header: raw.response_header,
        clear_route_cache: raw.clear_route_cache,
    })
}

fn check_route_header(name: &str) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with(':') {
        return Err(ConfigError::RouteHeader(format!(
            "{name:?} is a pseudo-header; use a regular header the route table can match"
        )));
    }
    validate_header_name(&lower).map_err(|e| ConfigError::RouteHeader(e.to_string()))?;
    Ok(lower)
}

fn reject_route_header(field: &Field, route_header: &str, at: String) -> Result<(), ConfigError> {
    match field {
        Field::Header(name) if name == route_header => Err(ConfigError::ReadsRouteHeader {
            field: at,
            name: name.clone(),
        }),
        _ => Ok(()),
    }
}

/// RFC 6265 `cookie-name` is an RFC 2616 token.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

fn sticky_cookie(raw: RawStickyCookie, versions: &[String]) -> Result<StickyCookie, ConfigError> {
    if !is_token(&raw.name) {
        return Err(ConfigError::CookieName(raw.name));
    }
    let bad_path = |c: char| c == ';' || c.is_whitespace() || c.is_control();
    if !raw.path.starts_with('/') || raw.path.chars().any(bad_path) {
        return Err(ConfigError::CookiePath(raw.path));
    }
    // HttpOnly: scripts have no business reading the routing cookie.
    // SameSite=Lax: it is sent on top-level navigations, so a user following
    // a link stays on their version, but not on cross-site subrequests.
    let secure = if raw.secure { "; Secure" } else { "" };
    let set_cookie = versions
        .iter()
        .map(|version| {
            format!(
                "{}={version}; Max-Age={}; Path={}; HttpOnly; SameSite=Lax{secure}",
                raw.name, raw.max_age_seconds, raw.path
            )
            .into_bytes()
        })
        .collect();
    Ok(StickyCookie {
        name: raw.name,
        set_cookie,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The issue's config contract, verbatim.
    pub(crate) const ISSUE_EXAMPLE: &str = r#"{
      "route_header": "x-canary-version",
      "rules": [
        {"match": {"headers": [{"name": "x-canary", "exact": "always"}]}, "version": "v2"},
        {"match": {"cookies": [{"name": "canary", "exact": "true"}]}, "version": "v2"},
        {"match": {"headers": [{"name": "user-agent", "regex": ".*Firefox.*"}]}, "version": "v2"}
      ],
      "split": [{"version": "v1", "weight": 80}, {"version": "v2", "weight": 20}],
      "hash_on": [{"header": "x-user-id"}, {"cookie": "session"}, {"header": "x-jwt-sub"}],
      "sticky_cookie": {"name": "canary-version", "max_age_seconds": 86400},
      "response_header": true,
      "clear_route_cache": true
    }"#;

    fn err(json: &str) -> String {
        match validate(json.as_bytes()) {
            Ok(config) => panic!("{json} was accepted: {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn the_issue_example_is_accepted_and_compiled() {
        let config = validate(ISSUE_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(config.versions, ["v1", "v2"]);
        assert_eq!(config.split.total(), 100);
        assert_eq!(config.rules.len(), 3);
        assert!(config.rules.iter().all(|r| r.version == 1));
        assert_eq!(
            config.hash_on,
            [
                Field::Header("x-user-id".into()),
                Field::Cookie("session".into()),
                Field::Header("x-jwt-sub".into())
            ]
        );
        let cookie = config.sticky_cookie.as_ref().unwrap();
        assert_eq!(
            cookie.set_cookie[1],
            b"canary-version=v2; Max-Age=86400; Path=/; HttpOnly; SameSite=Lax"
        );
        assert!(config.response_header && config.clear_route_cache && config.reads_cookies());
    }

    #[test]
    fn defaults_apply_when_only_split_is_given() {
        let config = validate(br#"{"split": [{"version": "stable", "weight": 1}]}"#).unwrap();
        assert_eq!(config.route_header, DEFAULT_ROUTE_HEADER);
        assert!(config.rules.is_empty() && config.hash_on.is_empty());
        assert!(config.sticky_cookie.is_none() && !config.response_header);
        assert!(config.clear_route_cache);
        assert!(!config.reads_cookies());
    }

    #[test]
    fn header_names_are_lower_cased_and_weights_may_exceed_a_hundred() {
        let config = validate(
            br#"{"route_header": "X-Version", "split": [{"version": "v1", "weight": 975}, {"version": "v2", "weight": 25}],
                "hash_on": [{"header": "X-User-Id"}], "sticky_cookie": {"name": "cv", "max_age_seconds": 60, "path": "/app", "secure": true}}"#,
        )
        .unwrap();
        assert_eq!(config.route_header, "x-version");
        assert_eq!(config.hash_on, [Field::Header("x-user-id".into())]);
        assert_eq!(config.split.total(), 1000);
        assert_eq!(
            config.sticky_cookie.unwrap().set_cookie[0],
            b"cv=v1; Max-Age=60; Path=/app; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn bad_configs_are_refused_with_a_message_naming_the_field() {
        let split =
            r#""split": [{"version": "v1", "weight": 80}, {"version": "v2", "weight": 20}]"#;
        let cases: Vec<(String, &str)> = vec![
            ("{}".into(), "missing field `split`"),
            ("".into(), "invalid config"),
            (
                format!(r#"{{{split}, "route": "x"}}"#),
                "unknown field `route`",
            ),
            (
                format!(
                    r#"{{{split}, "rules": [{{"match": {{"header": []}}, "version": "v2"}}]}}"#
                ),
                "unknown field `header`",
            ),
            (
                format!(
                    r#"{{{split}, "rules": [{{"match": {{"headers": [{{"name": "a", "exact": "b", "regexp": "c"}}]}}, "version": "v2"}}]}}"#
                ),
                "unknown field `regexp`",
            ),
            (
                format!(r#"{{{split}, "hash_on": [{{"ip": "x"}}]}}"#),
                "unknown variant `ip`",
            ),
            (
                format!(r#"{{{split}, "sticky_cookie": {{"name": "c", "ttl": 1}}}}"#),
                "unknown field `ttl`",
            ),
            (
                r#"{"split": [{"version": "v1", "weight": 80, "subset": "a"}]}"#.into(),
                "unknown field `subset`",
            ),
            (
                r#"{"split": [{"version": "v1", "weight": -1}]}"#.into(),
                "invalid config",
            ),
            (
                r#"{"split": []}"#.into(),
                "split: needs at least one version",
            ),
            (
                r#"{"split": [{"version": "v1", "weight": 0}, {"version": "v2", "weight": 0}]}"#
                    .into(),
                "split: weights sum to 0",
            ),
            (
                r#"{"split": [{"version": "v 1", "weight": 1}]}"#.into(),
                "split[0].version",
            ),
            (
                r#"{"split": [{"version": "", "weight": 1}]}"#.into(),
                "split[0].version",
            ),
            (
                r#"{"split": [{"version": "v1", "weight": 1}, {"version": "v1", "weight": 1}]}"#
                    .into(),
                "split[1].version: \"v1\" is listed twice",
            ),
            (
                format!(
                    r#"{{{split}, "rules": [{{"match": {{"headers": [{{"name": "x", "present": true}}]}}, "version": "v3"}}]}}"#
                ),
                "rules[0].version: unknown version \"v3\"; split lists v1, v2",
            ),
            (
                format!(r#"{{{split}, "rules": [{{"match": {{}}, "version": "v2"}}]}}"#),
                "rules[0].match: has no conditions",
            ),
            (
                format!(
                    r#"{{{split}, "rules": [{{"match": {{"headers": [{{"name": "ok", "present": true}}], "query_params": [{{"name": "q", "regex": "a("}}]}}, "version": "v2"}}]}}"#
                ),
                "rules[0].match.query_params[0]: regex:",
            ),
            (
                format!(
                    r#"{{{split}, "rules": [{{"match": {{"cookies": [{{"name": "c"}}]}}, "version": "v2"}}]}}"#
                ),
                "rules[0].match.cookies[0]: give exactly one",
            ),
            (
                format!(
                    r#"{{{split}, "rules": [{{"match": {{"headers": [{{"name": "X-Canary-Version", "exact": "v2"}}]}}, "version": "v2"}}]}}"#
                ),
                "rules[0].match.headers[0]: reads the route header",
            ),
            (
                format!(r#"{{{split}, "hash_on": [{{"header": "x-canary-version"}}]}}"#),
                "hash_on[0]: reads the route header",
            ),
            (
                format!(r#"{{{split}, "hash_on": [{{"cookie": "a b"}}]}}"#),
                "hash_on[0]: name:",
            ),
            (
                format!(r#"{{{split}, "route_header": ":authority"}}"#),
                "route_header: \":authority\" is a pseudo-header",
            ),
            (
                format!(r#"{{{split}, "route_header": "x version"}}"#),
                "route_header: header name",
            ),
            (
                format!(r#"{{{split}, "sticky_cookie": {{"name": "a=b"}}}}"#),
                "sticky_cookie.name",
            ),
            (
                format!(
                    r#"{{{split}, "sticky_cookie": {{"name": "c", "path": "/a; Domain=evil"}}}}"#
                ),
                "sticky_cookie.path",
            ),
        ];
        for (json, expected) in cases {
            let message = err(&json);
            assert!(message.starts_with("canary-router: "), "{json}: {message}");
            assert!(
                message.contains(expected),
                "{json}: {message:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn the_readme_complete_example_is_valid() {
        let readme = include_str!("../README.md");
        let example = readme
            .split("## Complete example")
            .nth(1)
            .and_then(|rest| rest.split("```json").nth(1))
            .and_then(|block| block.split("```").next())
            .unwrap();
        let config = validate(example.as_bytes()).unwrap();
        assert_eq!(config.versions, ["v1", "v2"]);
    }
}
