//! The JSON config contract: jwt_authn's `JwtAuthentication` in its proto3
//! JSON mapping (the supported subset, field for field), plus two
//! extensions (`claim_rules`, `max_jwt_bytes`), and its validation into the
//! compiled [`Config`]. Local JWKS are parsed here, once.
//!
//! Every struct denies unknown fields. jwt_authn fields this filter does not
//! implement are declared too, so that setting one fails with a message that
//! names it as unsupported instead of "unknown field" — and is never
//! silently ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::jwks::{self, Jwks, JwksError};
use crate::matcher::PathMatch;

/// jwt_authn's default `clock_skew_seconds`.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// jwt_authn's default `jwt_cache_config.jwt_cache_size`.
pub const DEFAULT_JWT_CACHE_SIZE: u32 = 100;
/// jwt_authn's default `remote_jwks.cache_duration`: 10 minutes.
pub const DEFAULT_CACHE_DURATION: Duration = Duration::from_secs(600);
/// jwt_authn's default `async_fetch.failed_refetch_duration`: 1 s.
pub const DEFAULT_FAILED_REFETCH: Duration = Duration::from_secs(1);
/// Default `http_uri.timeout` when none is given (Envoy requires one).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `max_jwt_bytes`: 8 KiB.
pub const DEFAULT_MAX_JWT_BYTES: usize = 8 * 1024;

// ---------------------------------------------------------------- raw JSON

/// `JwtAuthentication` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Provider name to provider.
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    /// Route rules; the first match wins.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Let CORS preflights through. Default false.
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    /// Send failures with an empty body and no `WWW-Authenticate`. Default false.
    #[serde(default)]
    pub strip_failure_response: bool,
    /// Unsupported jwt_authn field.
    pub filter_state_rules: Option<IgnoredAny>,
    /// Unsupported jwt_authn field.
    pub requirement_map: Option<IgnoredAny>,
    /// Extension: claim checks after verification. Default none.
    #[serde(default)]
    pub claim_rules: Vec<RawClaimRule>,
    /// Extension: longest token accepted, in bytes. Default 8192.
    pub max_jwt_bytes: Option<usize>,
}

/// `JwtProvider` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Expected `iss`; empty means any.
    #[serde(default)]
    pub issuer: String,
    /// Accepted `aud` values; empty means any.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The token must carry `exp`.
    #[serde(default)]
    pub require_expiration: bool,
    /// Longest remaining lifetime (`exp - now`) accepted.
    pub max_lifetime: Option<Value>,
    /// Clock skew in seconds; 0 or absent means 60.
    pub clock_skew_seconds: Option<u32>,
    /// Inline JWKS.
    pub local_jwks: Option<RawDataSource>,
    /// Fetched JWKS.
    pub remote_jwks: Option<RawRemoteJwks>,
    /// Keep the token in the request. Default false.
    #[serde(default)]
    pub forward: bool,
    /// Headers to read the token from.
    #[serde(default)]
    pub from_headers: Vec<RawJwtHeader>,
    /// Query parameters to read the token from.
    #[serde(default)]
    pub from_params: Vec<String>,
    /// Cookies to read the token from.
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Header for the base64url payload of a verified token.
    #[serde(default)]
    pub forward_payload_header: String,
    /// Pad that header's base64. Default false.
    #[serde(default)]
    pub pad_forward_payload_header: bool,
    /// Claims to copy into request headers.
    #[serde(default)]
    pub claim_to_headers: Vec<RawClaimToHeader>,
    /// Enables the verified-token cache.
    pub jwt_cache_config: Option<RawJwtCacheConfig>,
    /// Ask Envoy to recompute the route after adding claim headers.
    #[serde(default)]
    pub clear_route_cache: bool,
    /// Unsupported jwt_authn field.
    pub subjects: Option<IgnoredAny>,
    /// Unsupported jwt_authn field.
    pub payload_in_metadata: Option<IgnoredAny>,
    /// Unsupported jwt_authn field.
    pub normalize_payload_in_metadata: Option<IgnoredAny>,
    /// Unsupported jwt_authn field.
    pub header_in_metadata: Option<IgnoredAny>,
    /// Unsupported jwt_authn field.
    pub failed_status_in_metadata: Option<IgnoredAny>,
}

/// `config.core.v3.DataSource` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataSource {
    /// The JWKS text.
    pub inline_string: Option<String>,
    /// Unsupported DataSource field.
    pub filename: Option<IgnoredAny>,
    /// Unsupported DataSource field.
    pub inline_bytes: Option<IgnoredAny>,
    /// Unsupported DataSource field.
    pub environment_variable: Option<IgnoredAny>,
    /// Unsupported DataSource field.
    pub watched_directory: Option<IgnoredAny>,
}

/// `RemoteJwks` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    /// Where to fetch.
    pub http_uri: RawHttpUri,
    /// Refresh period. Default 600 s.
    pub cache_duration: Option<Value>,
    /// Accepted: this filter always fetches at start.
    pub async_fetch: Option<RawAsyncFetch>,
    /// Unsupported jwt_authn field.
    pub retry_policy: Option<IgnoredAny>,
}

/// `JwksAsyncFetch` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsyncFetch {
    /// Accepted and meaningless here: requests that arrive before the first
    /// fetch wait for it.
    #[serde(default)]
    pub fast_listener: bool,
    /// Retry period after a failed fetch. Default 1 s.
    pub failed_refetch_duration: Option<Value>,
}

/// `config.core.v3.HttpUri` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpUri {
    /// `http(s)://host[:port]/path`.
    pub uri: String,
    /// Envoy cluster the callout goes to.
    pub cluster: String,
    /// Callout timeout. Default 1 s.
    pub timeout: Option<Value>,
}

/// `JwtHeader` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtHeader {
    /// Header name.
    pub name: String,
    /// Text before the token, e.g. `"Bearer "`.
    #[serde(default)]
    pub value_prefix: String,
}

/// `JwtClaimToHeader` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimToHeader {
    /// Header to set.
    pub header_name: String,
    /// Claim, dotted for nested claims.
    pub claim_name: String,
}

/// `JwtCacheConfig` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtCacheConfig {
    /// Entries; 0 or absent means 100.
    pub jwt_cache_size: Option<u32>,
}

/// `RequirementRule` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Route match.
    #[serde(rename = "match")]
    pub route: RawRouteMatch,
    /// The requirement; absent means none.
    pub requires: Option<RawRequirement>,
    /// Unsupported jwt_authn field.
    pub requirement_name: Option<IgnoredAny>,
}

/// The supported subset of `config.route.v3.RouteMatch`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteMatch {
    /// Path prefix.
    pub prefix: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Whole-path regex.
    pub safe_regex: Option<RawRegex>,
    /// Default true.
    pub case_sensitive: Option<bool>,
    /// Unsupported RouteMatch field.
    pub path_separated_prefix: Option<IgnoredAny>,
    /// Unsupported RouteMatch field.
    pub path_match_policy: Option<IgnoredAny>,
    /// Unsupported RouteMatch field.
    pub connect_matcher: Option<IgnoredAny>,
    /// Unsupported RouteMatch field.
    pub headers: Option<IgnoredAny>,
    /// Unsupported RouteMatch field.
    pub query_parameters: Option<IgnoredAny>,
    /// Unsupported RouteMatch field.
    pub grpc: Option<IgnoredAny>,
    /// Unsupported RouteMatch field.
    pub runtime_fraction: Option<IgnoredAny>,
    /// Unsupported RouteMatch field.
    pub tls_context: Option<IgnoredAny>,
    /// Unsupported RouteMatch field.
    pub dynamic_metadata: Option<IgnoredAny>,
    /// Unsupported RouteMatch field.
    pub filter_state: Option<IgnoredAny>,
    /// Unsupported RouteMatch field.
    pub cel_expression: Option<IgnoredAny>,
}

/// `type.matcher.v3.RegexMatcher` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegex {
    /// The pattern (RE2 syntax).
    pub regex: String,
    /// Deprecated engine selector; accepted and ignored (RE2 is the only engine).
    pub google_re2: Option<IgnoredAny>,
}

/// `JwtRequirement` as written: a oneof, so at most one field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequirement {
    /// One provider.
    pub provider_name: Option<String>,
    /// One provider with its audiences replaced.
    pub provider_and_audiences: Option<RawProviderAndAudiences>,
    /// Any of at least two.
    pub requires_any: Option<RawRequirementList>,
    /// All of at least two.
    pub requires_all: Option<RawRequirementList>,
    /// Missing token is fine; a bad one is not.
    pub allow_missing: Option<RawEmpty>,
    /// Anything is fine; only verified tokens produce headers.
    pub allow_missing_or_failed: Option<RawEmpty>,
}

/// `ProviderWithAudiences` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProviderAndAudiences {
    /// The provider.
    pub provider_name: String,
    /// Replaces the provider's `audiences`.
    #[serde(default)]
    pub audiences: Vec<String>,
}

/// `JwtRequirementOrList` / `JwtRequirementAndList` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequirementList {
    /// At least two.
    pub requirements: Vec<RawRequirement>,
}

/// `google.protobuf.Empty`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmpty {}

/// Extension: a claim rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimRule {
    /// Route match, as in `rules`.
    #[serde(rename = "match")]
    pub route: RawRouteMatch,
    /// Claim name (dotted for nested) to allowed values.
    pub claims: BTreeMap<String, Vec<String>>,
}

// ---------------------------------------------------------------- compiled

/// Where a provider looks for its token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    /// A header (lower-case name) with a value prefix (may be empty).
    Header {
        /// Lower-case name.
        name: String,
        /// Prefix before the token.
        prefix: String,
    },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

/// Where a provider's keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// Parsed at configure time.
    Local(Jwks),
    /// Fetched by callout.
    Remote(Remote),
}

/// A remote JWKS endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The uri as configured (for logs).
    pub uri: String,
    /// Cluster for the callout.
    pub cluster: String,
    /// `:authority` of the callout (the uri's host).
    pub authority: String,
    /// `:path` of the callout.
    pub path: String,
    /// Callout timeout.
    pub timeout: Duration,
    /// Refresh period after a good fetch.
    pub cache_duration: Duration,
    /// Retry period after a failed fetch.
    pub failed_refetch: Duration,
}

/// A validated provider.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Its name in `providers`.
    pub name: String,
    /// Expected `iss`; empty means any.
    pub issuer: String,
    /// Accepted audiences; empty means any.
    pub audiences: Vec<String>,
    /// `exp` required (also implied by `max_lifetime`).
    pub require_expiration: bool,
    /// Longest remaining lifetime.
    pub max_lifetime: Option<Duration>,
    /// Clock skew, seconds.
    pub clock_skew: u64,
    /// Key source.
    pub jwks: JwksSource,
    /// Token locations (the defaults when none configured).
    pub locations: Vec<Location>,
    /// Keep the token.
    pub forward: bool,
    /// Payload header.
    pub forward_payload_header: Option<String>,
    /// Pad the payload header.
    pub pad_forward_payload_header: bool,
    /// (header, claim path).
    pub claim_to_headers: Vec<(String, Vec<String>)>,
    /// Verified-token cache size; `None` when the cache is off.
    pub jwt_cache_size: Option<u32>,
    /// Clear the route cache after changing headers.
    pub clear_route_cache: bool,
    /// Hash of name, issuer and key source: verified-token cache entries
    /// are keyed by it, so a changed provider never trusts old entries.
    pub fingerprint: u64,
}

/// A compiled requirement tree (jwt_authn's verifier tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// No requirement.
    None,
    /// One provider, optionally with replaced audiences.
    Provider {
        /// Index into [`Config::providers`].
        provider: usize,
        /// `provider_and_audiences.audiences`.
        audiences: Option<Vec<String>>,
    },
    /// OR.
    Any(Vec<Requirement>),
    /// AND.
    All(Vec<Requirement>),
    /// Missing is fine; tokens of these providers must verify.
    AllowMissing(Vec<usize>),
    /// Anything is fine.
    AllowMissingOrFailed(Vec<usize>),
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The route match.
    pub route: PathMatch,
    /// The requirement.
    pub requires: Requirement,
}

/// A compiled claim rule.
#[derive(Debug, Clone)]
pub struct ClaimRule {
    /// The route match.
    pub route: PathMatch,
    /// (claim path, allowed values); every claim must have an allowed value.
    pub claims: Vec<(Vec<String>, Vec<String>)>,
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Providers, sorted by name.
    pub providers: Vec<Provider>,
    /// Rules in order.
    pub rules: Vec<Rule>,
    /// Claim rules in order.
    pub claim_rules: Vec<ClaimRule>,
    /// CORS preflight bypass.
    pub bypass_cors_preflight: bool,
    /// Empty failure bodies.
    pub strip_failure_response: bool,
    /// Token size limit.
    pub max_jwt_bytes: usize,
}

/// Why a config was refused. Messages name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, an unknown field, or a wrong type.
    #[error("jwt-auth: {path}: {message}")]
    Json {
        /// JSON path of the problem.
        path: String,
        /// serde's message.
        message: String,
    },
    /// A jwt_authn field this filter does not implement.
    #[error("jwt-auth: {field}: jwt_authn field is not supported by this filter{hint}")]
    Unsupported {
        /// JSON path.
        field: String,
        /// Why, or what to use instead.
        hint: &'static str,
    },
    /// Neither `local_jwks` nor `remote_jwks`.
    #[error("jwt-auth: providers.{provider}: one of local_jwks or remote_jwks is required")]
    NoJwksSource {
        /// Provider name.
        provider: String,
    },
    /// Both `local_jwks` and `remote_jwks`.
    #[error("jwt-auth: providers.{provider}: local_jwks and remote_jwks are exclusive (a oneof)")]
    TwoJwksSources {
        /// Provider name.
        provider: String,
    },
    /// `local_jwks` without `inline_string`.
    #[error("jwt-auth: providers.{provider}.local_jwks: inline_string is required")]
    NoInlineString {
        /// Provider name.
        provider: String,
    },
    /// An inline JWKS that does not parse.
    #[error("jwt-auth: providers.{provider}.local_jwks.inline_string: {source}")]
    InvalidJwks {
        /// Provider name.
        provider: String,
        /// The parse failure.
        source: JwksError,
    },
    /// A bad `http_uri.uri`.
    #[error("jwt-auth: {field}: must be an http:// or https:// URI with a host, got {uri:?}")]
    BadUri {
        /// JSON path.
        field: String,
        /// The value.
        uri: String,
    },
    /// A bad duration.
    #[error("jwt-auth: {field}: {reason}")]
    BadDuration {
        /// JSON path.
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// A bad header name.
    #[error("jwt-auth: {field}: {source}")]
    BadHeaderName {
        /// JSON path.
        field: String,
        /// The check that failed.
        source: filter_common::HeaderError,
    },
    /// A required string that is empty.
    #[error("jwt-auth: {field}: must not be empty")]
    Empty {
        /// JSON path.
        field: String,
    },
    /// A match with not exactly one of prefix/path/safe_regex.
    #[error("jwt-auth: {field}: exactly one of prefix, path or safe_regex is required")]
    MatchNotOneOf {
        /// JSON path.
        field: String,
    },
    /// A regex that does not compile.
    #[error("jwt-auth: {field}: invalid regex: {reason}")]
    BadRegex {
        /// JSON path.
        field: String,
        /// The compiler's message.
        reason: String,
    },
    /// A requirement with more than one oneof member.
    #[error("jwt-auth: {field}: a requirement takes at most one of provider_name, provider_and_audiences, requires_any, requires_all, allow_missing, allow_missing_or_failed")]
    RequirementNotOneOf {
        /// JSON path.
        field: String,
    },
    /// requires_any / requires_all with fewer than two entries.
    #[error("jwt-auth: {field}: needs at least 2 requirements, got {got}")]
    TooFewRequirements {
        /// JSON path.
        field: String,
        /// How many.
        got: usize,
    },
    /// A requirement naming a provider that does not exist (jwt_authn's
    /// "Required provider ['x'] is not configured.").
    #[error("jwt-auth: {field}: Required provider ['{name}'] is not configured.")]
    UnknownProvider {
        /// JSON path.
        field: String,
        /// The name.
        name: String,
    },
    /// A size that must be positive.
    #[error("jwt-auth: {field}: must be greater than 0")]
    Zero {
        /// JSON path.
        field: String,
    },
}

// ---------------------------------------------------------------- validation

/// Parses and validates the plugin configuration.
///
/// # Errors
/// [`ConfigError`] naming the first offending field.
///
/// # Examples
/// ```
/// let config = jwt_auth::config::validate(br#"{
///   "providers": {"p": {"issuer": "me", "local_jwks": {"inline_string": "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}"}}},
///   "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]
/// }"#).unwrap();
/// assert_eq!(config.providers[0].clock_skew, 60);
/// assert!(jwt_auth::config::validate(br#"{"providers": {}, "requirement_map": {}}"#).is_err());
/// ```
pub fn validate(raw: &[u8]) -> Result<Config, ConfigError> {
    let text = if raw.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        raw
    };
    let de = &mut serde_json::Deserializer::from_slice(text);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Json {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    compile(raw)
}

fn unsupported(field: String, present: bool, hint: &'static str) -> Result<(), ConfigError> {
    if present {
        return Err(ConfigError::Unsupported { field, hint });
    }
    Ok(())
}

const NO_METADATA: &str = " (proxy-wasm filters cannot write dynamic metadata)";

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    unsupported(
        "filter_state_rules".into(),
        raw.filter_state_rules.is_some(),
        "",
    )?;
    unsupported(
        "requirement_map".into(),
        raw.requirement_map.is_some(),
        " (per-route config is not available to proxy-wasm filters; use rules)",
    )?;
    let names: Vec<String> = raw.providers.keys().cloned().collect();
    let mut providers = Vec::with_capacity(raw.providers.len());
    for (name, provider) in raw.providers {
        providers.push(compile_provider(name, provider)?);
    }
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, rule) in raw.rules.into_iter().enumerate() {
        let field = format!("rules[{i}]");
        unsupported(
            format!("{field}.requirement_name"),
            rule.requirement_name.is_some(),
            " (requirement_map is not supported)",
        )?;
        let route = compile_match(&format!("{field}.match"), rule.route)?;
        let requires = match rule.requires {
            Some(req) => compile_requirement(&format!("{field}.requires"), req, &names, true)?,
            None => Requirement::None,
        };
        rules.push(Rule { route, requires });
    }
    let mut claim_rules = Vec::with_capacity(raw.claim_rules.len());
    for (i, rule) in raw.claim_rules.into_iter().enumerate() {
        let field = format!("claim_rules[{i}]");
        let route = compile_match(&format!("{field}.match"), rule.route)?;
        let mut claims = Vec::with_capacity(rule.claims.len());
        for (claim, values) in rule.claims {
            if claim.is_empty() {
                return Err(ConfigError::Empty {
                    field: format!("{field}.claims"),
                });
            }
            claims.push((claim.split('.').map(str::to_owned).collect(), values));
        }
        claim_rules.push(ClaimRule { route, claims });
    }
    let max_jwt_bytes = raw.max_jwt_bytes.unwrap_or(DEFAULT_MAX_JWT_BYTES);
    if max_jwt_bytes == 0 {
        return Err(ConfigError::Zero {
            field: "max_jwt_bytes".into(),
        });
    }
    Ok(Config {
        providers,
        rules,
        claim_rules,
        bypass_cors_preflight: raw.bypass_cors_preflight,
        strip_failure_response: raw.strip_failure_response,
        max_jwt_bytes,
    })
}

fn compile_provider(name: String, raw: RawProvider) -> Result<Provider, ConfigError> {
    let field = format!("providers.{name}");
    for (member, present) in [
        ("payload_in_metadata", raw.payload_in_metadata.is_some()),
        (
            "normalize_payload_in_metadata",
            raw.normalize_payload_in_metadata.is_some(),
        ),
        ("header_in_metadata", raw.header_in_metadata.is_some()),
        (
            "failed_status_in_metadata",
            raw.failed_status_in_metadata.is_some(),
        ),
    ] {
        unsupported(format!("{field}.{member}"), present, NO_METADATA)?;
    }
    unsupported(format!("{field}.subjects"), raw.subjects.is_some(), "")?;

    let mut fingerprint = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&(&name, &raw.issuer), &mut fingerprint);
    let jwks = match (raw.local_jwks, raw.remote_jwks) {
        (None, None) => return Err(ConfigError::NoJwksSource { provider: name }),
        (Some(_), Some(_)) => return Err(ConfigError::TwoJwksSources { provider: name }),
        (Some(local), None) => {
            let at = format!("{field}.local_jwks");
            for (member, present) in [
                ("filename", local.filename.is_some()),
                ("inline_bytes", local.inline_bytes.is_some()),
                ("environment_variable", local.environment_variable.is_some()),
                ("watched_directory", local.watched_directory.is_some()),
            ] {
                unsupported(format!("{at}.{member}"), present, " (use inline_string)")?;
            }
            let text = local
                .inline_string
                .ok_or_else(|| ConfigError::NoInlineString {
                    provider: name.clone(),
                })?;
            std::hash::Hash::hash(&text, &mut fingerprint);
            let parsed =
                jwks::parse(text.as_bytes()).map_err(|source| ConfigError::InvalidJwks {
                    provider: name.clone(),
                    source,
                })?;
            JwksSource::Local(parsed)
        }
        (None, Some(remote)) => {
            std::hash::Hash::hash(&remote.http_uri.uri, &mut fingerprint);
            JwksSource::Remote(compile_remote(&format!("{field}.remote_jwks"), remote)?)
        }
    };

    let mut locations = Vec::new();
    for (i, header) in raw.from_headers.into_iter().enumerate() {
        let at = format!("{field}.from_headers[{i}].name");
        let lower = header.name.to_ascii_lowercase();
        check_header_name(&at, &lower)?;
        filter_common::validate_header_value(&header.value_prefix).map_err(|source| {
            ConfigError::BadHeaderName {
                field: format!("{field}.from_headers[{i}].value_prefix"),
                source,
            }
        })?;
        locations.push(Location::Header {
            name: lower,
            prefix: header.value_prefix,
        });
    }
    for (i, param) in raw.from_params.into_iter().enumerate() {
        if param.is_empty() {
            return Err(ConfigError::Empty {
                field: format!("{field}.from_params[{i}]"),
            });
        }
        locations.push(Location::Param(param));
    }
    for (i, cookie) in raw.from_cookies.into_iter().enumerate() {
        if cookie.is_empty() {
            return Err(ConfigError::Empty {
                field: format!("{field}.from_cookies[{i}]"),
            });
        }
        locations.push(Location::Cookie(cookie));
    }
    if locations.is_empty() {
        // jwt_authn's defaults (RFC 6750 §2.1 and §2.3).
        locations.push(Location::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        });
        locations.push(Location::Param("access_token".into()));
    }

    let forward_payload_header = if raw.forward_payload_header.is_empty() {
        None
    } else {
        let lower = raw.forward_payload_header.to_ascii_lowercase();
        check_header_name(&format!("{field}.forward_payload_header"), &lower)?;
        Some(lower)
    };
    let mut claim_to_headers = Vec::with_capacity(raw.claim_to_headers.len());
    for (i, c) in raw.claim_to_headers.into_iter().enumerate() {
        let lower = c.header_name.to_ascii_lowercase();
        check_header_name(
            &format!("{field}.claim_to_headers[{i}].header_name"),
            &lower,
        )?;
        if c.claim_name.is_empty() {
            return Err(ConfigError::Empty {
                field: format!("{field}.claim_to_headers[{i}].claim_name"),
            });
        }
        claim_to_headers.push((lower, c.claim_name.split('.').map(str::to_owned).collect()));
    }
    let max_lifetime = raw
        .max_lifetime
        .as_ref()
        .map(|v| duration(&format!("{field}.max_lifetime"), v))
        .transpose()?;
    let clock_skew = match raw.clock_skew_seconds {
        None | Some(0) => DEFAULT_CLOCK_SKEW_SECONDS,
        Some(s) => u64::from(s),
    };
    let jwt_cache_size = raw.jwt_cache_config.map(|c| match c.jwt_cache_size {
        None | Some(0) => DEFAULT_JWT_CACHE_SIZE,
        Some(n) => n,
    });
    Ok(Provider {
        name,
        issuer: raw.issuer,
        audiences: raw.audiences,
        require_expiration: raw.require_expiration,
        max_lifetime,
        clock_skew,
        jwks,
        locations,
        forward: raw.forward,
        forward_payload_header,
        pad_forward_payload_header: raw.pad_forward_payload_header,
        claim_to_headers,
        jwt_cache_size,
        clear_route_cache: raw.clear_route_cache,
        fingerprint: std::hash::Hasher::finish(&fingerprint),
    })
}

fn check_header_name(field: &str, name: &str) -> Result<(), ConfigError> {
    filter_common::validate_header_name(name).map_err(|source| ConfigError::BadHeaderName {
        field: field.to_owned(),
        source,
    })
}

fn compile_remote(field: &str, raw: RawRemoteJwks) -> Result<Remote, ConfigError> {
    unsupported(
        format!("{field}.retry_policy"),
        raw.retry_policy.is_some(),
        "",
    )?;
    let uri = raw.http_uri.uri;
    let bad_uri = || ConfigError::BadUri {
        field: format!("{field}.http_uri.uri"),
        uri: uri.clone(),
    };
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(bad_uri)?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    if authority.is_empty()
        || authority.contains(['\r', '\n', '\0', ' '])
        || path.contains(['\r', '\n', '\0', ' '])
    {
        return Err(bad_uri());
    }
    if raw.http_uri.cluster.is_empty() {
        return Err(ConfigError::Empty {
            field: format!("{field}.http_uri.cluster"),
        });
    }
    let timeout = match &raw.http_uri.timeout {
        Some(v) => duration(&format!("{field}.http_uri.timeout"), v)?,
        None => DEFAULT_FETCH_TIMEOUT,
    };
    let cache_duration = match &raw.cache_duration {
        Some(v) => duration(&format!("{field}.cache_duration"), v)?,
        None => DEFAULT_CACHE_DURATION,
    };
    // RemoteJwks.cache_duration: gte 1ms (jwt_authn's proto validation).
    if cache_duration < Duration::from_millis(1) {
        return Err(ConfigError::BadDuration {
            field: format!("{field}.cache_duration"),
            reason: "must be at least 0.001s".into(),
        });
    }
    let failed_refetch = match raw
        .async_fetch
        .as_ref()
        .and_then(|a| a.failed_refetch_duration.as_ref())
    {
        Some(v) => duration(&format!("{field}.async_fetch.failed_refetch_duration"), v)?,
        None => DEFAULT_FAILED_REFETCH,
    };
    Ok(Remote {
        authority: authority.to_owned(),
        path: path.to_owned(),
        uri: uri.clone(),
        cluster: raw.http_uri.cluster,
        timeout,
        cache_duration,
        failed_refetch,
    })
}

/// A protobuf Duration in either JSON form Envoy configs use: the canonical
/// string `"1.5s"`, or the YAML-ish object `{"seconds": 300, "nanos": 0}`.
fn duration(field: &str, value: &Value) -> Result<Duration, ConfigError> {
    let bad = |reason: String| ConfigError::BadDuration {
        field: field.to_owned(),
        reason,
    };
    match value {
        Value::String(text) => filter_common::parse_duration(text).map_err(|e| bad(e.to_string())),
        Value::Object(map) => {
            let mut secs = 0u64;
            let mut nanos = 0u32;
            for (key, v) in map {
                let n = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| bad(format!("{key} must be a non-negative integer")))?;
                match key.as_str() {
                    "seconds" => secs = n,
                    "nanos" => {
                        nanos = u32::try_from(n)
                            .ok()
                            .filter(|n| *n < 1_000_000_000)
                            .ok_or_else(|| bad("nanos must be below 1000000000".into()))?;
                    }
                    other => {
                        return Err(bad(format!(
                            "unknown field {other:?}; expected seconds, nanos"
                        )))
                    }
                }
            }
            Ok(Duration::new(secs, nanos))
        }
        _ => Err(bad(
            "expected a string like \"1.5s\" or {\"seconds\": N}".into()
        )),
    }
}

fn compile_match(field: &str, raw: RawRouteMatch) -> Result<PathMatch, ConfigError> {
    for (member, present) in [
        ("path_separated_prefix", raw.path_separated_prefix.is_some()),
        ("path_match_policy", raw.path_match_policy.is_some()),
        ("connect_matcher", raw.connect_matcher.is_some()),
        ("headers", raw.headers.is_some()),
        ("query_parameters", raw.query_parameters.is_some()),
        ("grpc", raw.grpc.is_some()),
        ("runtime_fraction", raw.runtime_fraction.is_some()),
        ("tls_context", raw.tls_context.is_some()),
        ("dynamic_metadata", raw.dynamic_metadata.is_some()),
        ("filter_state", raw.filter_state.is_some()),
        ("cel_expression", raw.cel_expression.is_some()),
    ] {
        unsupported(
            format!("{field}.{member}"),
            present,
            " (only prefix, path, safe_regex and case_sensitive)",
        )?;
    }
    let case_sensitive = raw.case_sensitive.unwrap_or(true);
    let fold = |s: String| {
        if case_sensitive {
            s
        } else {
            s.to_ascii_lowercase()
        }
    };
    match (raw.prefix, raw.path, raw.safe_regex) {
        (Some(prefix), None, None) => Ok(PathMatch::Prefix {
            prefix: fold(prefix),
            case_sensitive,
        }),
        (None, Some(path), None) => Ok(PathMatch::Exact {
            path: fold(path),
            case_sensitive,
        }),
        (None, None, Some(re)) => {
            PathMatch::regex(&re.regex, case_sensitive).map_err(|e| ConfigError::BadRegex {
                field: format!("{field}.safe_regex.regex"),
                reason: e.to_string(),
            })
        }
        _ => Err(ConfigError::MatchNotOneOf {
            field: field.to_owned(),
        }),
    }
}

fn provider_index(field: &str, names: &[String], name: &str) -> Result<usize, ConfigError> {
    names
        .iter()
        .position(|n| n == name)
        .ok_or_else(|| ConfigError::UnknownProvider {
            field: field.to_owned(),
            name: name.to_owned(),
        })
}

/// Compiles a requirement. Inside `requires_any`, jwt_authn moves an
/// `allow_missing`/`allow_missing_or_failed` member to the end and limits it
/// to the providers named by its siblings; at the top level (`top`), those
/// two cover every provider.
fn compile_requirement(
    field: &str,
    raw: RawRequirement,
    names: &[String],
    top: bool,
) -> Result<Requirement, ConfigError> {
    let set = [
        raw.provider_name.is_some(),
        raw.provider_and_audiences.is_some(),
        raw.requires_any.is_some(),
        raw.requires_all.is_some(),
        raw.allow_missing.is_some(),
        raw.allow_missing_or_failed.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if set > 1 {
        return Err(ConfigError::RequirementNotOneOf {
            field: field.to_owned(),
        });
    }
    let all: Vec<usize> = if top {
        (0..names.len()).collect()
    } else {
        Vec::new()
    };
    if let Some(name) = raw.provider_name {
        return Ok(Requirement::Provider {
            provider: provider_index(&format!("{field}.provider_name"), names, &name)?,
            audiences: None,
        });
    }
    if let Some(pa) = raw.provider_and_audiences {
        return Ok(Requirement::Provider {
            provider: provider_index(
                &format!("{field}.provider_and_audiences.provider_name"),
                names,
                &pa.provider_name,
            )?,
            audiences: Some(pa.audiences),
        });
    }
    if raw.allow_missing.is_some() {
        return Ok(Requirement::AllowMissing(all));
    }
    if raw.allow_missing_or_failed.is_some() {
        return Ok(Requirement::AllowMissingOrFailed(all));
    }
    if let Some(list) = raw.requires_all {
        let at = format!("{field}.requires_all.requirements");
        check_len(&at, list.requirements.len())?;
        let children = list
            .requirements
            .into_iter()
            .enumerate()
            .map(|(i, r)| compile_requirement(&format!("{at}[{i}]"), r, names, true))
            .collect::<Result<_, _>>()?;
        return Ok(Requirement::All(children));
    }
    if let Some(list) = raw.requires_any {
        let at = format!("{field}.requires_any.requirements");
        check_len(&at, list.requirements.len())?;
        let mut regular = Vec::new();
        let mut bypass: Option<Requirement> = None;
        let mut used = Vec::new();
        for (i, r) in list.requirements.into_iter().enumerate() {
            let child = compile_requirement(&format!("{at}[{i}]"), r, names, false)?;
            match child {
                Requirement::AllowMissingOrFailed(_) => bypass = Some(child),
                Requirement::AllowMissing(_) => {
                    // allow_missing_or_failed wins over allow_missing.
                    if !matches!(bypass, Some(Requirement::AllowMissingOrFailed(_))) {
                        bypass = Some(child);
                    }
                }
                Requirement::Provider { provider, .. } => {
                    used.push(provider);
                    regular.push(child);
                }
                other => regular.push(other),
            }
        }
        if let Some(bypass) = bypass {
            used.sort_unstable();
            used.dedup();
            regular.push(match bypass {
                Requirement::AllowMissing(_) => Requirement::AllowMissing(used),
                _ => Requirement::AllowMissingOrFailed(used),
            });
        }
        return Ok(Requirement::Any(regular));
    }
    Ok(Requirement::None)
}

fn check_len(field: &str, got: usize) -> Result<(), ConfigError> {
    if got < 2 {
        return Err(ConfigError::TooFewRequirements {
            field: field.to_owned(),
            got,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = r#"{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}"#;

    fn with_provider(extra_provider: &str, extra_top: &str) -> String {
        format!(
            r#"{{"providers": {{"p": {{"issuer": "i", "local_jwks": {{"inline_string": "{JWKS}"}}{extra_provider}}},
                 "q": {{"remote_jwks": {{"http_uri": {{"uri": "https://idp.example/jwks", "cluster": "idp", "timeout": "2s"}}, "cache_duration": {{"seconds": 300}}}}}}}}
                {extra_top}}}"#
        )
    }

    #[test]
    fn defaults_follow_jwt_authn() {
        let config = validate(with_provider("", "").as_bytes()).unwrap();
        let p = &config.providers[0];
        assert_eq!(p.clock_skew, 60);
        assert!(!p.forward);
        assert_eq!(p.jwt_cache_size, None);
        assert_eq!(
            p.locations,
            [
                Location::Header {
                    name: "authorization".into(),
                    prefix: "Bearer ".into()
                },
                Location::Param("access_token".into())
            ]
        );
        assert_eq!(config.max_jwt_bytes, 8192);
        let JwksSource::Remote(remote) = &config.providers[1].jwks else {
            panic!()
        };
        assert_eq!(
            (remote.authority.as_str(), remote.path.as_str()),
            ("idp.example", "/jwks")
        );
        assert_eq!(remote.cache_duration, Duration::from_secs(300));
        assert_eq!(remote.timeout, Duration::from_secs(2));
        assert!(validate(b"").unwrap().providers.is_empty());
    }

    #[test]
    fn unsupported_jwt_authn_fields_are_named() {
        for (provider, top, field) in [
            (
                r#","payload_in_metadata":"x""#,
                "",
                "providers.p.payload_in_metadata",
            ),
            (r#","subjects":{"prefix":"a"}"#, "", "providers.p.subjects"),
            ("", r#","requirement_map":{}"#, "requirement_map"),
            (
                "",
                r#","filter_state_rules":{"name":"x"}"#,
                "filter_state_rules",
            ),
            (
                "",
                r#","rules":[{"match":{"prefix":"/","headers":[]}}]"#,
                "rules[0].match.headers",
            ),
            (
                "",
                r#","rules":[{"match":{"prefix":"/"},"requirement_name":"r"}]"#,
                "rules[0].requirement_name",
            ),
        ] {
            let err = validate(with_provider(provider, top).as_bytes()).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Unsupported { field: f, .. } if f == field),
                "{err}"
            );
            assert!(err.to_string().contains("not supported"), "{err}");
        }
    }

    #[test]
    fn unknown_fields_name_their_path() {
        let err = validate(with_provider(r#","issuerr":"x""#, "").as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("providers.p") && text.contains("issuerr"),
            "{text}"
        );
    }

    #[test]
    fn structural_errors_are_specific() {
        let cases: Vec<(String, &str)> = vec![
            (r#"{"providers":{"p":{}}}"#.into(), "one of local_jwks or remote_jwks"),
            (r#"{"providers":{"p":{"local_jwks":{"inline_string":"{}"}}}}"#.into(), "[keys]"),
            (with_provider("", r#","rules":[{"match":{"prefix":"/"},"requires":{"provider_name":"zz"}}]"#), "Required provider ['zz'] is not configured."),
            (with_provider("", r#","rules":[{"match":{"prefix":"/","path":"/"}}]"#), "exactly one of prefix"),
            (with_provider("", r#","rules":[{"match":{"safe_regex":{"regex":"("}}}]"#), "invalid regex"),
            (with_provider("", r#","rules":[{"match":{"prefix":"/"},"requires":{"requires_any":{"requirements":[{"provider_name":"p"}]}}}]"#), "at least 2"),
            (with_provider("", r#","rules":[{"match":{"prefix":"/"},"requires":{"provider_name":"p","allow_missing":{}}}]"#), "at most one"),
            (with_provider(r#","from_headers":[{"name":"bad header"}]"#, ""), "from_headers[0].name"),
            (with_provider(r#","max_lifetime":"1h""#, ""), "max_lifetime"),
            (r#"{"providers":{"p":{"remote_jwks":{"http_uri":{"uri":"ftp://x","cluster":"c"}}}}}"#.into(), "http_uri.uri"),
        ];
        for (json, want) in cases {
            let err = validate(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{json}\n=> {err}");
        }
    }

    #[test]
    fn requires_any_moves_allow_missing_last_and_scopes_it_to_siblings() {
        let json = with_provider(
            "",
            r#","rules":[{"match":{"prefix":"/"},"requires":{"requires_any":{"requirements":[{"allow_missing":{}},{"provider_name":"q"}]}}},
                         {"match":{"prefix":"/"},"requires":{"allow_missing":{}}}]"#,
        );
        let config = validate(json.as_bytes()).unwrap();
        assert_eq!(
            config.rules[0].requires,
            Requirement::Any(vec![
                Requirement::Provider {
                    provider: 1,
                    audiences: None
                },
                Requirement::AllowMissing(vec![1])
            ])
        );
        assert_eq!(
            config.rules[1].requires,
            Requirement::AllowMissing(vec![0, 1])
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = validate(&bytes);
        }
    }
}
