//! A rule's `global` section: which rate-limit service to ask, with which
//! descriptors, and what to do when it cannot answer.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, Empty};

/// Default `global.timeout`, Envoy's `ratelimit` filter default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(20);
/// Longest `global.timeout`: a paused request must not wait longer.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10);
/// Most descriptors per rule, and most entries per descriptor.
pub const MAX_DESCRIPTORS: usize = 8;
/// Longest `domain`, descriptor key or literal value.
pub const MAX_TEXT_LEN: usize = 256;
/// Status of the answer when the service fails and `failure_mode` is
/// `deny`: Envoy's `ratelimit` filter default (`status_on_error`).
pub const STATUS_ON_ERROR: u16 = 500;

/// `global`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    /// The Envoy cluster of the rate-limit service (HTTP/2). Required.
    pub cluster: String,
    /// The `RateLimitRequest.domain`. Required.
    pub domain: String,
    /// gRPC deadline: a protobuf duration (`"0.02s"`) or whole milliseconds
    /// (`"20ms"`), 1 ms to 10 s. Default 20 ms.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Descriptors: lists of `{key, from}` entries. Required, 1..=8.
    pub descriptors: Vec<Vec<RawEntry>>,
    /// What a request gets when the service fails. Default `allow`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Let the rule's own `token_bucket` decide while the service fails.
    /// Default `false`.
    #[serde(default)]
    pub local_fallback: bool,
}

/// One descriptor entry, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntry {
    /// The entry key. Required.
    pub key: String,
    /// Where the value comes from. Required.
    pub from: RawFrom,
}

/// `from`: a bare name (`"path"`) or an object (`{"header": "x-user"}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawFrom {
    /// `"path"`, `"method"`, `"authority"` or `"client_ip"`.
    Named(String),
    /// An object source.
    Object(RawFromObject),
}

/// The object forms of `from`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawFromObject {
    /// A request header (lower-case name).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A query parameter's raw value.
    QueryParam(String),
    /// A fixed value, as Envoy's `generic_key` action.
    Value(String),
    /// `{"path": {}}`, the object spelling of `"path"`.
    Path(Empty),
    /// `{"client_ip": {}}`.
    ClientIp(Empty),
}

/// What a request gets when the service cannot answer (timeout, reset,
/// gRPC error, or an answer that does not decode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Admit it, as Envoy's `failure_mode_deny: false`.
    #[default]
    Allow,
    /// Answer 500, as Envoy's `failure_mode_deny: true`.
    Deny,
}

/// A validated descriptor entry source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Request header, lower-case name.
    Header(String),
    /// Cookie name.
    Cookie(String),
    /// Query parameter name.
    QueryParam(String),
    /// A literal value.
    Value(String),
    /// `:path` without its query.
    Path,
    /// `:method`.
    Method,
    /// `:authority`.
    Authority,
    /// The trusted client address, as text.
    ClientIp,
}

/// A validated descriptor entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value's source.
    pub from: Source,
}

/// A validated `global` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Cluster name.
    pub cluster: String,
    /// Domain.
    pub domain: String,
    /// Deadline.
    pub timeout: Duration,
    /// Descriptors, each 1..=8 entries.
    pub descriptors: Vec<Vec<Entry>>,
    /// Failure behaviour without (or besides) the fallback bucket.
    pub failure_mode: FailureMode,
    /// The rule's bucket decides while the service fails.
    pub local_fallback: bool,
}

/// Validates rule `index`'s `global`.
///
/// # Errors
/// [`ConfigError::Global`], naming the field.
pub fn check(index: usize, raw: RawGlobal) -> Result<Global, ConfigError> {
    let error = |field: String, message: String| ConfigError::Global {
        index,
        field,
        message,
    };
    let text = |field: &str, value: &str| {
        if value.is_empty()
            || value.len() > MAX_TEXT_LEN
            || value.bytes().any(|b| b.is_ascii_control())
        {
            Err(error(
                field.to_owned(),
                format!(
                    "must be 1..={MAX_TEXT_LEN} bytes without control characters, got {value:?}"
                ),
            ))
        } else {
            Ok(())
        }
    };
    text("cluster", &raw.cluster)?;
    text("domain", &raw.domain)?;
    let timeout = match &raw.timeout {
        None => DEFAULT_TIMEOUT,
        Some(value) => {
            let timeout =
                parse_timeout(value).map_err(|e| error("timeout".into(), e.to_string()))?;
            if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
                return Err(error(
                    "timeout".into(),
                    format!("must be 1ms..=10s, got {value:?}"),
                ));
            }
            timeout
        }
    };
    if raw.descriptors.is_empty() || raw.descriptors.len() > MAX_DESCRIPTORS {
        return Err(error(
            "descriptors".into(),
            format!(
                "must list 1..={MAX_DESCRIPTORS} descriptors, got {}",
                raw.descriptors.len()
            ),
        ));
    }
    let mut descriptors = Vec::with_capacity(raw.descriptors.len());
    for (d, entries) in raw.descriptors.into_iter().enumerate() {
        if entries.is_empty() || entries.len() > MAX_DESCRIPTORS {
            return Err(error(
                format!("descriptors[{d}]"),
                format!(
                    "must list 1..={MAX_DESCRIPTORS} entries, got {}",
                    entries.len()
                ),
            ));
        }
        let mut checked = Vec::with_capacity(entries.len());
        for (e, entry) in entries.into_iter().enumerate() {
            let at = format!("descriptors[{d}][{e}]");
            text(&format!("{at}.key"), &entry.key)?;
            let from =
                check_source(entry.from).map_err(|message| error(format!("{at}.from"), message))?;
            checked.push(Entry {
                key: entry.key,
                from,
            });
        }
        descriptors.push(checked);
    }
    Ok(Global {
        cluster: raw.cluster,
        domain: raw.domain,
        timeout,
        descriptors,
        failure_mode: raw.failure_mode,
        local_fallback: raw.local_fallback,
    })
}

/// A protobuf JSON duration (`"0.02s"`), or whole milliseconds (`"20ms"`),
/// the spelling Envoy's docs and Istio's `Duration` fields use for
/// deadlines.
fn parse_timeout(text: &str) -> Result<Duration, filter_common::DurationError> {
    match text.strip_suffix("ms") {
        Some(millis) if !millis.is_empty() && millis.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(millis
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_millis))
        }
        _ => filter_common::parse_duration(text),
    }
}

fn check_source(raw: RawFrom) -> Result<Source, String> {
    let plain = |kind: &str, name: String| {
        if name.is_empty()
            || name.len() > MAX_TEXT_LEN
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b";=&#".contains(&b))
        {
            Err(format!(
                "{kind}: must be a non-empty name without ';', '=', '&', '#' or whitespace, got {name:?}"
            ))
        } else {
            Ok(name)
        }
    };
    Ok(match raw {
        RawFrom::Named(name) => match name.as_str() {
            "path" => Source::Path,
            "method" => Source::Method,
            "authority" => Source::Authority,
            "client_ip" => Source::ClientIp,
            _ => {
                return Err(format!(
                    "must be \"path\", \"method\", \"authority\", \"client_ip\" or an object \
                     (header, cookie, query_param, value), got {name:?}"
                ))
            }
        },
        RawFrom::Object(RawFromObject::Header(name)) => {
            filter_common::validate_header_name(&name).map_err(|e| format!("header: {e}"))?;
            Source::Header(name)
        }
        RawFrom::Object(RawFromObject::Cookie(name)) => Source::Cookie(plain("cookie", name)?),
        RawFrom::Object(RawFromObject::QueryParam(name)) => {
            Source::QueryParam(plain("query_param", name)?)
        }
        RawFrom::Object(RawFromObject::Value(value)) => {
            if value.is_empty() || value.len() > MAX_TEXT_LEN {
                return Err(format!(
                    "value: must be 1..={MAX_TEXT_LEN} bytes, got {value:?}"
                ));
            }
            Source::Value(value)
        }
        RawFrom::Object(RawFromObject::Path(Empty {})) => Source::Path,
        RawFrom::Object(RawFromObject::ClientIp(Empty {})) => Source::ClientIp,
    })
}
