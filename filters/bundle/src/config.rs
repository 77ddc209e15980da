//! The bundle's config: a JSON object with one optional section per filter,
//! each validated by that filter's own `config::validate`.
//!
//! A section's value reaches its filter exactly as a separate filter's
//! plugin configuration would: an object (or any other JSON value) as its
//! JSON text, a string as its contents (Envoy's `StringValue`
//! configuration), and `null` as no configuration at all (the filter's
//! defaults). A section left out means the stage is absent: not run at all.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Section name of jwt-auth.
pub const JWT_AUTH: &str = "jwt_auth";
/// Section name of rate-limit.
pub const RATE_LIMIT: &str = "rate_limit";
/// Section name of canary-router.
pub const CANARY_ROUTER: &str = "canary_router";
/// Section name of security-headers.
pub const SECURITY_HEADERS: &str = "security_headers";
/// Section name of metrics.
pub const METRICS: &str = "metrics";

/// Every section, in chain (request) order, the shipped WasmPlugins' order:
/// harden first, so the local replies of every later stage (401, 403, 429)
/// pass through it on their way back; then authenticate, limit
/// authenticated clients, route, and measure last so the counts see every
/// other stage's local replies.
pub const SECTIONS: [&str; 5] = [
    SECURITY_HEADERS,
    JWT_AUTH,
    RATE_LIMIT,
    CANARY_ROUTER,
    METRICS,
];

/// The sections as a message lists them.
const SECTION_LIST: &str = "security_headers, jwt_auth, rate_limit, canary_router, metrics";

/// A validated bundle config: each present section's validated filter config.
#[derive(Debug, Clone)]
pub struct Config {
    /// jwt-auth's config; `None`: no jwt-auth stage.
    pub jwt_auth: Option<jwt_auth::config::Config>,
    /// rate-limit's config; `None`: no rate-limit stage.
    pub rate_limit: Option<rate_limit::config::Config>,
    /// canary-router's config; `None`: no canary-router stage.
    pub canary_router: Option<canary_router::config::Config>,
    /// security-headers' config; `None`: no security-headers stage.
    pub security_headers: Option<security_headers::config::Config>,
    /// metrics' config; `None`: no metrics stage.
    pub metrics: Option<metrics::config::Config>,
}

impl Config {
    /// The present stages' section names, in chain order.
    #[must_use]
    pub fn stages(&self) -> Vec<&'static str> {
        let present = [
            self.security_headers.is_some(),
            self.jwt_auth.is_some(),
            self.rate_limit.is_some(),
            self.canary_router.is_some(),
            self.metrics.is_some(),
        ];
        SECTIONS
            .into_iter()
            .zip(present)
            .filter_map(|(name, present)| present.then_some(name))
            .collect()
    }
}

/// Why a bundle config was refused. A section's own error keeps its
/// filter's message (which names the field) behind the section name.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not a JSON object.
    #[error("bundle: the config must be a JSON object of sections ({SECTION_LIST}): {0}")]
    NotAnObject(serde_json::Error),
    /// No section at all: a bundle that runs nothing is a mistake (a
    /// misspelt nesting, say), not a pass-through.
    #[error("bundle: the config has no sections; give at least one of {SECTION_LIST}")]
    NoSections,
    /// A key that is not a section name.
    #[error("bundle: unknown section {key:?}; the sections are {SECTION_LIST}")]
    UnknownSection {
        /// The key as written.
        key: String,
    },
    /// A section given twice (JSON allows it; the second would silently win).
    #[error("bundle: section {key:?} is given twice")]
    DuplicateSection {
        /// The section name.
        key: String,
    },
    /// A string section whose JSON string cannot be decoded.
    #[error("bundle: {section}: {source}")]
    SectionString {
        /// The section name.
        section: &'static str,
        /// serde_json's reason.
        source: serde_json::Error,
    },
    /// jwt-auth refused its section.
    #[error("bundle: jwt_auth: {0}")]
    JwtAuth(#[source] jwt_auth::config::ConfigError),
    /// rate-limit refused its section.
    #[error("bundle: rate_limit: {0}")]
    RateLimit(#[source] rate_limit::config::ConfigError),
    /// canary-router refused its section.
    #[error("bundle: canary_router: {0}")]
    CanaryRouter(#[source] canary_router::config::ConfigError),
    /// security-headers refused its section.
    #[error("bundle: security_headers: {0}")]
    SecurityHeaders(#[source] security_headers::config::ConfigError),
    /// metrics refused its section.
    #[error("bundle: metrics: {0}")]
    Metrics(#[source] metrics::config::ConfigError),
}

/// The top-level object as written: keys in order, values untouched.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;

        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of sections")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// The bytes a section hands to its filter's validate: what a separate
/// filter's plugin configuration would be (see the module doc).
fn section_bytes<'a>(
    section: &'static str,
    raw: &'a RawValue,
) -> Result<Cow<'a, [u8]>, ConfigError> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'n') => Ok(Cow::Borrowed(&[])),
        Some(b'"') => serde_json::from_str::<String>(text)
            .map(|s| Cow::Owned(s.into_bytes()))
            .map_err(|source| ConfigError::SectionString { section, source }),
        _ => Ok(Cow::Borrowed(text.as_bytes())),
    }
}

/// [`section_bytes`] of a section that may be absent.
fn bytes<'a>(
    section: &'static str,
    raw: Option<&'a RawValue>,
) -> Result<Option<Cow<'a, [u8]>>, ConfigError> {
    raw.map(|r| section_bytes(section, r)).transpose()
}

/// Validates a bundle config: the top-level keys, then each present section
/// with its filter's validate, in chain order (the first error is reported).
///
/// # Errors
/// [`ConfigError`]: not an object, no section, an unknown or repeated
/// section, or a section its filter refuses (the filter's message, prefixed
/// by the section name).
///
/// # Examples
/// ```
/// let config = bundle::config::validate(br#"{
///     "security_headers": {"profile": "owasp"},
///     "metrics": null
/// }"#).unwrap();
/// assert_eq!(config.stages(), ["security_headers", "metrics"]);
///
/// let error = bundle::config::validate(br#"{"jwt": {}}"#).unwrap_err();
/// assert!(error.to_string().contains(r#"unknown section "jwt""#));
/// ```
pub fn validate(raw: &[u8]) -> Result<Config, ConfigError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::NoSections);
    }
    let Entries(entries) = serde_json::from_slice(raw).map_err(ConfigError::NotAnObject)?;
    if entries.is_empty() {
        return Err(ConfigError::NoSections);
    }
    let mut found: [Option<&RawValue>; 5] = [None; 5];
    for (key, value) in entries {
        let Some(slot) = SECTIONS
            .iter()
            .position(|name| *name == key)
            .and_then(|index| found.get_mut(index))
        else {
            return Err(ConfigError::UnknownSection { key });
        };
        if slot.is_some() {
            return Err(ConfigError::DuplicateSection { key });
        }
        *slot = Some(value);
    }
    // Checked in chain order (struct fields are evaluated as written), so
    // the first error reported is the first stage's.
    let [headers, jwt, limit, canary, measure] = found;
    Ok(Config {
        security_headers: bytes(SECURITY_HEADERS, headers)?
            .map(|b| security_headers::config::validate(&b).map_err(ConfigError::SecurityHeaders))
            .transpose()?,
        jwt_auth: bytes(JWT_AUTH, jwt)?
            .map(|b| jwt_auth::config::validate(&b).map_err(ConfigError::JwtAuth))
            .transpose()?,
        rate_limit: bytes(RATE_LIMIT, limit)?
            .map(|b| rate_limit::config::validate(&b).map_err(ConfigError::RateLimit))
            .transpose()?,
        canary_router: bytes(CANARY_ROUTER, canary)?
            .map(|b| canary_router::config::validate(&b).map_err(ConfigError::CanaryRouter))
            .transpose()?,
        metrics: bytes(METRICS, measure)?
            .map(|b| metrics::config::validate(&b).map_err(ConfigError::Metrics))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(raw: &str) -> String {
        match validate(raw.as_bytes()) {
            Ok(config) => panic!("accepted {raw}: {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn sections_left_out_are_absent_and_stages_keep_chain_order() {
        let config = validate(
            br#"{"metrics": {"prefix": "mesh"}, "security_headers": {}, "jwt_auth": {"providers": {}}}"#,
        )
        .unwrap();
        assert_eq!(config.stages(), ["security_headers", "jwt_auth", "metrics"]);
        assert!(config.rate_limit.is_none() && config.canary_router.is_none());
    }

    #[test]
    fn null_section_is_the_filters_defaults_like_no_plugin_configuration() {
        let config = validate(br#"{"security_headers": null}"#).unwrap();
        assert_eq!(
            config.security_headers,
            Some(security_headers::config::validate(b"").unwrap())
        );
    }

    #[test]
    fn string_section_is_handed_over_as_its_contents() {
        let config = validate(br#"{"security_headers": "{\"profile\": \"api\"}"}"#).unwrap();
        assert_eq!(
            config.security_headers,
            Some(security_headers::config::validate(br#"{"profile": "api"}"#).unwrap())
        );
    }

    #[test]
    fn section_bytes_are_exactly_what_the_user_wrote() {
        let raw: &RawValue = serde_json::from_str(r#"{"b": 1.50, "a":[ 2 ]}"#).unwrap();
        assert_eq!(
            section_bytes(METRICS, raw).unwrap().as_ref(),
            br#"{"b": 1.50, "a":[ 2 ]}"#
        );
    }

    #[test]
    fn unknown_section_is_refused_by_name() {
        assert_eq!(
            error(r#"{"security_headers": {}, "jwt": {}}"#),
            r#"bundle: unknown section "jwt"; the sections are security_headers, jwt_auth, rate_limit, canary_router, metrics"#
        );
    }

    #[test]
    fn repeated_section_is_refused() {
        assert_eq!(
            error(r#"{"metrics": {}, "metrics": {"prefix": "x"}}"#),
            r#"bundle: section "metrics" is given twice"#
        );
    }

    #[test]
    fn empty_config_and_empty_object_are_refused() {
        for raw in ["", "  \n", "{}"] {
            assert!(error(raw).contains("no sections"), "{raw:?}");
        }
    }

    #[test]
    fn non_object_is_refused() {
        for raw in ["[]", r#""x""#, "null", "{", "7"] {
            assert!(error(raw).contains("must be a JSON object"), "{raw:?}");
        }
    }

    #[test]
    fn section_errors_keep_the_filters_message_behind_the_section_name() {
        let filter_message = security_headers::config::validate(br#"{"profile": "nope"}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error(r#"{"security_headers": {"profile": "nope"}}"#),
            format!("bundle: security_headers: {filter_message}")
        );
        let filter_message = rate_limit::config::validate(br#"{"rules": 1}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error(r#"{"rate_limit": {"rules": 1}}"#),
            format!("bundle: rate_limit: {filter_message}")
        );
    }

    #[test]
    fn every_section_reaches_its_own_filter() {
        // An unknown field is refused by each filter's deny_unknown_fields;
        // the message must come from the filter the section names.
        for (section, prefix) in [
            (JWT_AUTH, "jwt-auth"),
            (RATE_LIMIT, "rate-limit"),
            (CANARY_ROUTER, "canary-router"),
            (SECURITY_HEADERS, "security-headers"),
            (METRICS, "metrics"),
        ] {
            let message = error(&format!(r#"{{"{section}": {{"no_such_field": 1}}}}"#));
            assert!(
                message.starts_with(&format!("bundle: {section}: {prefix}")),
                "{message}"
            );
            assert!(message.contains("no_such_field"), "{message}");
        }
    }

    #[test]
    fn the_first_invalid_section_in_chain_order_is_reported() {
        let message = error(r#"{"metrics": {"bad": 1}, "rate_limit": {"bad": 1}}"#);
        assert!(message.starts_with("bundle: rate_limit:"), "{message}");
    }
}
