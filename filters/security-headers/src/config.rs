//! The JSON config contract, its defaults, and its validation into the final
//! rule list. Everything that can be decided before traffic is decided here.
//!
//! `headers` values take one of three shapes (see the crate README):
//! a string (set with the global `mode`), `null` (drop this header from the
//! profile), or `{"value": "...", "mode": "overwrite" | "if_absent"}`.

use std::collections::BTreeMap;

use filter_common::{validate_header_name, validate_header_value, HeaderError};
use serde::Deserialize;

use crate::harden::{Mode, Rule, When};
use crate::profiles::{self, ProfileData};

const HSTS: &str = "strict-transport-security";
const CSP: &str = "content-security-policy";
const CSP_REPORT_ONLY: &str = "content-security-policy-report-only";
/// hstspreload.org's minimum `max-age` for preloading: one year.
const PRELOAD_MIN_MAX_AGE: u64 = 31_536_000;

/// Which base header set `profile` selects. Default: `owasp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// The OWASP Secure Headers Project's add and remove lists.
    #[default]
    Owasp,
    /// helmet's 13 defaults.
    Helmet,
    /// MDN's recommendation for APIs.
    Api,
    /// No base set.
    None,
}

impl Profile {
    /// The profile's data tables.
    #[must_use]
    pub fn data(self) -> ProfileData {
        match self {
            Self::Owasp => profiles::OWASP,
            Self::Helmet => profiles::HELMET,
            Self::Api => profiles::API,
            Self::None => profiles::NONE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Owasp => "owasp",
            Self::Helmet => "helmet",
            Self::Api => "api",
            Self::None => "none",
        }
    }
}

/// The config as written. Every field is optional; `{}` is the `owasp`
/// profile with its remove list, HSTS on https only and CSP on documents only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Base header set. Default `owasp`.
    #[serde(default)]
    pub profile: Profile,
    /// Per-header additions, overrides (string or object) and drops (null).
    /// Kept as JSON values so each shape error can name its header.
    #[serde(default)]
    pub headers: BTreeMap<String, serde_json::Value>,
    /// Default mode for every added header. Default `if_absent`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Response headers to strip. Default empty.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Also strip the profile's remove list. Default true.
    #[serde(default)]
    pub remove_profile_defaults: Option<bool>,
    /// HSTS settings. Default: the profile's value, https only.
    #[serde(default)]
    pub hsts: Option<RawHsts>,
    /// CSP settings. Default: the profile's value, documents only (except `api`).
    #[serde(default)]
    pub csp: Option<RawCsp>,
}

/// The object form of a `headers` value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderSpec {
    /// The header value.
    pub value: String,
    /// This header's mode; default the top-level `mode`.
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// `hsts`. Giving any of `max_age`, `include_subdomains`, `preload` builds
/// the HSTS value from these fields (defaults 31536000, true, false);
/// otherwise the profile's or `headers`' value is kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHsts {
    /// `max-age` seconds. Default 31536000 (one year).
    pub max_age: Option<u64>,
    /// Append `includeSubDomains`. Default true.
    pub include_subdomains: Option<bool>,
    /// Append `preload`. Default false.
    pub preload: Option<bool>,
    /// Send HSTS only on https requests. Default true.
    pub https_only: Option<bool>,
}

/// `csp`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCsp {
    /// Send the CSP only on document responses. Default true (`api`: false).
    pub html_only: Option<bool>,
    /// Send it as `Content-Security-Policy-Report-Only`. Default false.
    pub report_only: Option<bool>,
    /// Append a `report-uri` directive. Default none.
    pub report_uri: Option<String>,
}

/// A validated config: the final, ordered rule list and the remove set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The selected profile.
    pub profile: Profile,
    /// Headers to set, in append order, names lower-cased and unique.
    pub rules: Vec<Rule>,
    /// Lower-case names to strip, sorted and unique; disjoint from `rules`.
    pub remove: Vec<String>,
}

/// Why a config was refused. Messages name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, an unknown field, or a wrong type.
    #[error("security-headers: invalid config: {0}")]
    Json(String),
    /// A header name that is not an RFC 9110 token.
    #[error("security-headers: {field}: {source}")]
    InvalidName {
        /// Where, e.g. `remove[2]`.
        field: String,
        /// The check that failed.
        source: HeaderError,
    },
    /// A pseudo-header such as `:status`.
    #[error(
        "security-headers: {field}: {name:?} is a pseudo-header; this filter does not touch those"
    )]
    PseudoHeader {
        /// Where.
        field: String,
        /// The name.
        name: String,
    },
    /// `content-type` in `headers` or `remove`: the filter reads it to decide
    /// on the CSP, so changing it would make the result depend on itself.
    #[error("security-headers: {field}: content-type cannot be set or removed by this filter (it decides where the CSP goes)")]
    ContentType {
        /// Where.
        field: String,
    },
    /// The same name twice after lower-casing.
    #[error(
        "security-headers: {field}: {name:?} is given more than once (names are case-insensitive)"
    )]
    Duplicate {
        /// Where.
        field: String,
        /// The lower-cased name.
        name: String,
    },
    /// A value with CR, LF or NUL: header injection.
    #[error("security-headers: {field}: value contains CR, LF or NUL")]
    InvalidValue {
        /// Where.
        field: String,
    },
    /// An empty value.
    #[error("security-headers: {field}: value is empty; use null to drop the header")]
    EmptyValue {
        /// Where.
        field: String,
    },
    /// A `headers` value that is not a string, null or `{"value", "mode"}`.
    #[error("security-headers: headers[{name:?}]: expected a string, null, or {{\"value\": \"...\", \"mode\": \"if_absent\"|\"overwrite\"}}: {reason}")]
    HeaderShape {
        /// The header.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// `null` for a header the profile does not add: likely a typo.
    #[error("security-headers: headers[{name:?}]: null drops a profile header, but profile {profile} does not add {name:?}")]
    DropsNothing {
        /// The header.
        name: String,
        /// The profile.
        profile: &'static str,
    },
    /// A header both set in `headers` and listed in `remove`.
    #[error("security-headers: remove[{index}]: {name:?} is also set in headers; a header cannot be both set and removed")]
    SetAndRemoved {
        /// Position in `remove`.
        index: usize,
        /// The header.
        name: String,
    },
    /// A header added by the profile and listed in `remove`.
    #[error("security-headers: remove[{index}]: {name:?} is added by profile {profile}; set headers[{name:?}] to null to stop adding it (or use mode \"overwrite\" to replace the upstream's)")]
    ProfileHeaderRemoved {
        /// Position in `remove`.
        index: usize,
        /// The header.
        name: String,
        /// The profile.
        profile: &'static str,
    },
    /// `hsts` given but no HSTS header would be sent.
    #[error("security-headers: hsts: {0}")]
    HstsWithoutHeader(&'static str),
    /// HSTS value from both `hsts` fields and `headers`.
    #[error("security-headers: hsts: max_age/include_subdomains/preload and headers[\"strict-transport-security\"] both set the HSTS value; use one")]
    HstsTwoSources,
    /// `preload` without what the preload list requires.
    #[error("security-headers: hsts.preload: needs include_subdomains true and max_age >= 31536000 (hstspreload.org), got include_subdomains {include_subdomains}, max_age {max_age}")]
    HstsPreload {
        /// The resolved `include_subdomains`.
        include_subdomains: bool,
        /// The resolved `max_age`.
        max_age: u64,
    },
    /// `csp` given but no CSP header would be sent.
    #[error("security-headers: csp: {0}")]
    CspWithoutHeader(&'static str),
    /// `csp.report_uri` that is empty or could inject directives.
    #[error("security-headers: csp.report_uri: must be a non-empty URI without whitespace, ';', ',' or control characters, got {0:?}")]
    ReportUri(String),
    /// `csp.report_uri` while the CSP already has one.
    #[error("security-headers: csp.report_uri: the Content-Security-Policy value already has a report-uri directive")]
    ReportUriTwice,
    /// `csp.report_only` while `headers` also sets the report-only header.
    #[error("security-headers: csp.report_only: headers[\"content-security-policy-report-only\"] is also set; use one")]
    ReportOnlyTwice,
}

/// One configured header before profile merging.
enum Setting {
    Drop,
    Set { value: String, mode: Option<Mode> },
}

/// Parses and validates config bytes. Empty bytes mean `{}`.
///
/// # Errors
/// [`ConfigError`], one variant per failure, naming the field.
///
/// # Examples
/// ```
/// let config = security_headers::config::validate(br#"{"profile": "api"}"#).unwrap();
/// assert!(config.rules.iter().any(|r| r.name == "x-content-type-options"));
/// assert!(security_headers::config::validate(br#"{"profil": "api"}"#).is_err());
/// ```
pub fn validate(raw: &[u8]) -> Result<Config, ConfigError> {
    let raw: RawConfig = if raw.trim_ascii().is_empty() {
        RawConfig::default()
    } else {
        serde_json::from_slice(raw).map_err(|e| ConfigError::Json(e.to_string()))?
    };
    resolve(raw)
}

fn check_name(field: &str, name: &str) -> Result<String, ConfigError> {
    if name.starts_with(':') {
        return Err(ConfigError::PseudoHeader {
            field: field.to_owned(),
            name: name.to_owned(),
        });
    }
    // HTTP names are case-insensitive and people paste `X-Frame-Options` from
    // the OWASP list; store them lower-cased, as Envoy's maps hold them.
    let lower = name.to_ascii_lowercase();
    validate_header_name(&lower).map_err(|source| ConfigError::InvalidName {
        field: field.to_owned(),
        source,
    })?;
    if lower == "content-type" {
        return Err(ConfigError::ContentType {
            field: field.to_owned(),
        });
    }
    Ok(lower)
}

fn check_value(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::EmptyValue {
            field: field.to_owned(),
        });
    }
    validate_header_value(value).map_err(|_| ConfigError::InvalidValue {
        field: field.to_owned(),
    })
}

fn parse_setting(name: &str, value: serde_json::Value) -> Result<Setting, ConfigError> {
    let field = format!("headers[{name:?}]");
    let setting = match value {
        serde_json::Value::Null => Setting::Drop,
        serde_json::Value::String(value) => Setting::Set { value, mode: None },
        object @ serde_json::Value::Object(_) => {
            let spec: RawHeaderSpec =
                serde_json::from_value(object).map_err(|e| ConfigError::HeaderShape {
                    name: name.to_owned(),
                    reason: e.to_string(),
                })?;
            Setting::Set {
                value: spec.value,
                mode: spec.mode,
            }
        }
        other => {
            return Err(ConfigError::HeaderShape {
                name: name.to_owned(),
                reason: format!("got {other}"),
            });
        }
    };
    if let Setting::Set { value, .. } = &setting {
        check_value(&field, value)?;
    }
    Ok(setting)
}

fn hsts_value(max_age: u64, include_subdomains: bool, preload: bool) -> String {
    let mut value = format!("max-age={max_age}");
    if include_subdomains {
        value.push_str("; includeSubDomains");
    }
    if preload {
        value.push_str("; preload");
    }
    value
}

fn has_directive(policy: &str, directive: &str) -> bool {
    policy.split(';').any(|part| {
        part.split_ascii_whitespace()
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case(directive))
    })
}

/// A rule under construction: `(name, value, per-header mode)`.
type Draft = (String, String, Option<Mode>);

#[allow(clippy::too_many_lines)] // one linear pass over the contract reads best in one place
fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
    let profile = raw.profile;
    let data = profile.data();
    let global_mode = raw.mode.unwrap_or(Mode::IfAbsent);

    // 1. Parse `headers`, lower-casing names and refusing case duplicates.
    let mut settings: BTreeMap<String, Setting> = BTreeMap::new();
    for (name, value) in raw.headers {
        let field = format!("headers[{name:?}]");
        let lower = check_name(&field, &name)?;
        let setting = parse_setting(&name, value)?;
        if settings.insert(lower.clone(), setting).is_some() {
            return Err(ConfigError::Duplicate { field, name: lower });
        }
    }

    // 2. Profile rules, then `headers` overrides in place, drops, additions.
    let mut drafts: Vec<Draft> = data
        .add
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned(), None))
        .collect();
    let mut explicit_hsts: Option<bool> = None; // Some(true): set, Some(false): dropped
    let mut explicit_report_only_header = false;
    for (name, setting) in settings {
        let position = drafts.iter().position(|(n, _, _)| *n == name);
        if name == HSTS {
            explicit_hsts = Some(matches!(setting, Setting::Set { .. }));
        }
        if name == CSP_REPORT_ONLY && matches!(setting, Setting::Set { .. }) {
            explicit_report_only_header = true;
        }
        match (setting, position) {
            (Setting::Drop, Some(index)) => {
                drafts.remove(index);
            }
            (Setting::Drop, None) => {
                return Err(ConfigError::DropsNothing {
                    name,
                    profile: profile.name(),
                });
            }
            (Setting::Set { value, mode }, Some(index)) => {
                if let Some(slot) = drafts.get_mut(index) {
                    *slot = (name, value, mode);
                }
            }
            (Setting::Set { value, mode }, None) => drafts.push((name, value, mode)),
        }
    }

    // 3. HSTS.
    let hsts = raw.hsts.unwrap_or_default();
    let builds_hsts =
        hsts.max_age.is_some() || hsts.include_subdomains.is_some() || hsts.preload.is_some();
    if builds_hsts {
        match explicit_hsts {
            Some(true) => return Err(ConfigError::HstsTwoSources),
            Some(false) => {
                return Err(ConfigError::HstsWithoutHeader(
                    "fields are set, but headers[\"strict-transport-security\"] is null (the HSTS header is dropped)",
                ))
            }
            None => {}
        }
        let max_age = hsts.max_age.unwrap_or(PRELOAD_MIN_MAX_AGE);
        let include_subdomains = hsts.include_subdomains.unwrap_or(true);
        let preload = hsts.preload.unwrap_or(false);
        if preload && (!include_subdomains || max_age < PRELOAD_MIN_MAX_AGE) {
            return Err(ConfigError::HstsPreload {
                include_subdomains,
                max_age,
            });
        }
        let value = hsts_value(max_age, include_subdomains, preload);
        match drafts.iter_mut().find(|(n, _, _)| n == HSTS) {
            Some(slot) => slot.1 = value,
            None => drafts.push((HSTS.to_owned(), value, None)),
        }
    } else if hsts.https_only.is_some() && !drafts.iter().any(|(n, _, _)| n == HSTS) {
        return Err(ConfigError::HstsWithoutHeader(
            "https_only is set, but no Strict-Transport-Security header is configured (profile, headers or hsts.max_age)",
        ));
    }
    let hsts_https_only = hsts.https_only.unwrap_or(true);

    // 4. CSP.
    let csp = raw.csp.unwrap_or_default();
    let csp_given =
        csp.html_only.is_some() || csp.report_only.is_some() || csp.report_uri.is_some();
    let csp_index = drafts.iter().position(|(n, _, _)| n == CSP);
    if csp_given && csp_index.is_none() {
        return Err(ConfigError::CspWithoutHeader(
            "is set, but no Content-Security-Policy header is configured (profile none, or headers[\"content-security-policy\"] is null)",
        ));
    }
    if let (Some(uri), Some(index)) = (&csp.report_uri, csp_index) {
        let bad = |c: char| c.is_whitespace() || c.is_control() || c == ';' || c == ',';
        if uri.is_empty() || uri.contains(bad) {
            return Err(ConfigError::ReportUri(uri.clone()));
        }
        if let Some(slot) = drafts.get_mut(index) {
            if has_directive(&slot.1, "report-uri") {
                return Err(ConfigError::ReportUriTwice);
            }
            let trimmed = slot
                .1
                .trim_end()
                .trim_end_matches(';')
                .trim_end()
                .to_owned();
            slot.1 = format!("{trimmed}; report-uri {uri}");
        }
    }
    if csp.report_only == Some(true) {
        if explicit_report_only_header {
            return Err(ConfigError::ReportOnlyTwice);
        }
        if let Some(slot) = csp_index.and_then(|index| drafts.get_mut(index)) {
            CSP_REPORT_ONLY.clone_into(&mut slot.0);
        }
    }
    let csp_html_only = csp.html_only.unwrap_or(data.csp_html_only);

    // 5. Removal: `remove` must not touch what we set; the profile's list
    // yields to an explicit `headers` entry (setting `server` replaces it).
    let mut remove: Vec<String> = Vec::new();
    for (index, name) in raw.remove.iter().enumerate() {
        let field = format!("remove[{index}]");
        let lower = check_name(&field, name)?;
        if let Some(draft) = drafts.iter().find(|(n, _, _)| *n == lower) {
            let from_profile = data.add.iter().any(|(n, v)| *n == lower && *v == draft.1);
            return Err(if from_profile {
                ConfigError::ProfileHeaderRemoved {
                    index,
                    name: lower,
                    profile: profile.name(),
                }
            } else {
                ConfigError::SetAndRemoved { index, name: lower }
            });
        }
        if remove.contains(&lower) {
            return Err(ConfigError::Duplicate { field, name: lower });
        }
        remove.push(lower);
    }
    if raw.remove_profile_defaults.unwrap_or(true) {
        for name in data.remove {
            if !drafts.iter().any(|(n, _, _)| n == name) && !remove.iter().any(|r| r == name) {
                remove.push((*name).to_owned());
            }
        }
    }
    remove.sort_unstable();

    let rules = drafts
        .into_iter()
        .map(|(name, value, mode)| {
            let when = if name == HSTS && hsts_https_only {
                When::HttpsOnly
            } else if (name == CSP || name == CSP_REPORT_ONLY) && csp_html_only {
                When::DocumentOnly
            } else {
                When::Always
            };
            Rule {
                name,
                value: value.into_bytes(),
                mode: mode.unwrap_or(global_mode),
                when,
            }
        })
        .collect();
    Ok(Config {
        profile,
        rules,
        remove,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(json: &str) -> Config {
        validate(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn err(json: &str) -> String {
        match validate(json.as_bytes()) {
            Ok(config) => panic!("{json} was accepted: {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn rule<'a>(config: &'a Config, name: &str) -> Option<&'a Rule> {
        config.rules.iter().find(|r| r.name == name)
    }

    #[test]
    fn empty_config_is_the_owasp_profile_with_its_remove_list() {
        for raw in ["", "{}", "  "] {
            let config = ok(raw);
            assert_eq!(config.profile, Profile::Owasp);
            assert_eq!(config.rules.len(), profiles::OWASP_ADD.len());
            assert!(config.rules.iter().all(|r| r.mode == Mode::IfAbsent));
            assert_eq!(config.remove.len(), profiles::OWASP_REMOVE.len());
            assert_eq!(rule(&config, HSTS).map(|r| r.when), Some(When::HttpsOnly));
            assert_eq!(rule(&config, CSP).map(|r| r.when), Some(When::DocumentOnly));
            assert_eq!(
                rule(&config, "x-frame-options").map(|r| r.when),
                Some(When::Always)
            );
        }
    }

    #[test]
    fn the_issue_example_config_is_accepted() {
        let config = ok(
            r#"{"profile": "owasp", "headers": {"content-security-policy": "default-src 'self'", "x-frame-options": null},
            "mode": "if_absent", "remove": ["server", "x-powered-by"], "remove_profile_defaults": true,
            "hsts": {"max_age": 31536000, "include_subdomains": true, "preload": false, "https_only": true},
            "csp": {"html_only": true, "report_only": false, "report_uri": null}}"#,
        );
        assert!(rule(&config, "x-frame-options").is_none());
        assert_eq!(
            rule(&config, CSP).map(|r| r.value.as_slice()),
            Some(b"default-src 'self'".as_slice())
        );
        assert_eq!(
            rule(&config, HSTS).map(|r| r.value.as_slice()),
            Some(b"max-age=31536000; includeSubDomains".as_slice())
        );
        assert!(config.remove.iter().any(|r| r == "server"));
    }

    #[test]
    fn api_profile_sends_its_csp_on_every_content_type() {
        let config = ok(r#"{"profile": "api"}"#);
        assert_eq!(rule(&config, CSP).map(|r| r.when), Some(When::Always));
        let config = ok(r#"{"profile": "api", "csp": {"html_only": true}}"#);
        assert_eq!(rule(&config, CSP).map(|r| r.when), Some(When::DocumentOnly));
    }

    #[test]
    fn header_values_take_string_null_or_object_forms_with_per_header_mode() {
        let config = ok(r#"{"mode": "overwrite", "headers": {
            "X-Custom": "a", "referrer-policy": {"value": "strict-origin", "mode": "if_absent"},
            "cache-control": null}}"#);
        let custom = rule(&config, "x-custom").unwrap();
        assert_eq!(
            (custom.value.as_slice(), custom.mode),
            (b"a".as_slice(), Mode::Overwrite)
        );
        let referrer = rule(&config, "referrer-policy").unwrap();
        assert_eq!(
            (referrer.value.as_slice(), referrer.mode),
            (b"strict-origin".as_slice(), Mode::IfAbsent)
        );
        assert!(rule(&config, "cache-control").is_none());
        // Overrides keep the profile's position; additions go last.
        assert_eq!(
            config.rules.last().map(|r| r.name.as_str()),
            Some("x-custom")
        );
    }

    #[test]
    fn hsts_fields_build_the_value_and_https_only_can_be_turned_off() {
        let config = ok(r#"{"hsts": {"max_age": 63072000, "preload": true, "https_only": false}}"#);
        let hsts = rule(&config, HSTS).unwrap();
        assert_eq!(hsts.value, b"max-age=63072000; includeSubDomains; preload");
        assert_eq!(hsts.when, When::Always);
        let config =
            ok(r#"{"profile": "none", "hsts": {"max_age": 600, "include_subdomains": false}}"#);
        assert_eq!(rule(&config, HSTS).unwrap().value, b"max-age=600");
        assert!(config.remove.is_empty());
    }

    #[test]
    fn csp_report_only_and_report_uri_rewrite_the_profile_csp() {
        let config = ok(
            r#"{"profile": "api", "csp": {"report_only": true, "report_uri": "https://r.example/csp"}}"#,
        );
        assert!(rule(&config, CSP).is_none());
        let csp = rule(&config, CSP_REPORT_ONLY).unwrap();
        assert_eq!(
            csp.value,
            b"default-src 'none'; frame-ancestors 'none'; report-uri https://r.example/csp"
        );
        let config = ok(
            r#"{"headers": {"content-security-policy": "default-src 'self';"}, "csp": {"report_uri": "/r"}}"#,
        );
        assert_eq!(
            rule(&config, CSP).unwrap().value,
            b"default-src 'self'; report-uri /r"
        );
    }

    #[test]
    fn setting_a_header_from_the_profile_remove_list_exempts_it_from_removal() {
        let config = ok(r#"{"headers": {"server": "edge"}}"#);
        assert!(!config.remove.iter().any(|r| r == "server"));
        assert_eq!(rule(&config, "server").unwrap().value, b"edge");
    }

    #[test]
    fn remove_profile_defaults_false_keeps_only_explicit_removals() {
        let config = ok(r#"{"remove_profile_defaults": false, "remove": ["X-Debug"]}"#);
        assert_eq!(config.remove, vec!["x-debug".to_owned()]);
        let config = ok(r#"{"profile": "helmet"}"#);
        assert_eq!(config.remove, vec!["x-powered-by".to_owned()]);
    }

    #[test]
    fn bad_configs_are_refused_with_a_message_naming_the_field() {
        let cases: &[(&str, &str)] = &[
            (r#"{"profil": "owasp"}"#, "unknown field `profil`"),
            (r#"{"profile": "strict"}"#, "unknown variant `strict`"),
            (r#"{"mode": "always"}"#, "unknown variant `always`"),
            (r#"{"hsts": {"maxage": 1}}"#, "unknown field `maxage`"),
            (
                r#"{"csp": {"reportonly": true}}"#,
                "unknown field `reportonly`",
            ),
            ("not json", "invalid config"),
            (
                r#"{"headers": {"x a": "1"}}"#,
                r#"headers["x a"]: header name"#,
            ),
            (
                r#"{"headers": {"x-a": "1\r\nset-cookie: s=1"}}"#,
                r#"headers["x-a"]: value contains CR, LF or NUL"#,
            ),
            (
                r#"{"headers": {"x-a": ""}}"#,
                r#"headers["x-a"]: value is empty"#,
            ),
            (
                r#"{"headers": {"x-a": 1}}"#,
                r#"headers["x-a"]: expected a string, null"#,
            ),
            (
                r#"{"headers": {"x-a": {"value": "1", "mod": "overwrite"}}}"#,
                "unknown field `mod`",
            ),
            (
                r#"{"headers": {"x-a": {"mode": "overwrite"}}}"#,
                "missing field `value`",
            ),
            (r#"{"headers": {"X-A": "1", "x-a": "2"}}"#, "more than once"),
            (r#"{"headers": {":status": "200"}}"#, "pseudo-header"),
            (
                r#"{"headers": {"content-type": "text/html"}}"#,
                "content-type cannot",
            ),
            (
                r#"{"remove": ["content-type"]}"#,
                "remove[0]: content-type cannot",
            ),
            (r#"{"remove": ["bad name"]}"#, "remove[0]: header name"),
            (r#"{"remove": ["x-a", "X-A"]}"#, "remove[1]"),
            (
                r#"{"headers": {"x-frame-option": null}}"#,
                "profile owasp does not add",
            ),
            (
                r#"{"headers": {"x-a": "1"}, "remove": ["x-a"]}"#,
                "remove[0]: \"x-a\" is also set in headers",
            ),
            (
                r#"{"remove": ["x-frame-options"]}"#,
                "added by profile owasp",
            ),
            (
                r#"{"headers": {"strict-transport-security": null}, "hsts": {"max_age": 1}}"#,
                "HSTS header is dropped",
            ),
            (
                r#"{"headers": {"strict-transport-security": "max-age=1"}, "hsts": {"preload": false}}"#,
                "both set the HSTS value",
            ),
            (
                r#"{"profile": "none", "hsts": {"https_only": false}}"#,
                "hsts: https_only is set",
            ),
            (
                r#"{"hsts": {"preload": true, "max_age": 600}}"#,
                "hsts.preload",
            ),
            (
                r#"{"hsts": {"preload": true, "include_subdomains": false}}"#,
                "hsts.preload",
            ),
            (
                r#"{"profile": "none", "csp": {"report_only": true}}"#,
                "csp: is set, but no Content-Security-Policy",
            ),
            (
                r#"{"headers": {"content-security-policy": null}, "csp": {"html_only": false}}"#,
                "csp: is set",
            ),
            (
                r#"{"csp": {"report_uri": "https://a; script-src *"}}"#,
                "csp.report_uri: must be",
            ),
            (r#"{"csp": {"report_uri": ""}}"#, "csp.report_uri: must be"),
            (
                r#"{"headers": {"content-security-policy": "default-src 'self'; report-uri /a"}, "csp": {"report_uri": "/b"}}"#,
                "already has a report-uri",
            ),
            (
                r#"{"headers": {"content-security-policy-report-only": "default-src 'self'"}, "csp": {"report_only": true}}"#,
                "csp.report_only",
            ),
        ];
        for (json, expected) in cases {
            let message = err(json);
            assert!(
                message.starts_with("security-headers: "),
                "{json}: {message}"
            );
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
        let config = ok(example);
        assert!(rule(&config, "clear-site-data").is_none());
        assert_eq!(rule(&config, "x-served-by").unwrap().value, b"mesh");
    }
}
