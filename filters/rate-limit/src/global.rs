//! Global mode: rules decided by a rate-limit service that speaks Envoy's
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`
//! (envoyproxy/ratelimit, Limitador, or `tests/ratelimit-service`), so one
//! limit holds across every sidecar of a service.
//!
//! The pure part lives here: [`GlobalPlan::calls`] turns a request into one
//! encoded `RateLimitRequest` per applicable global rule, [`interpret`]
//! turns a gRPC answer into an [`Answer`], and [`resolve`] folds every
//! rule's answer into one [`Resolution`]. The filter sends the calls,
//! pauses the request, and applies the resolution when the last answer is
//! in.
//!
//! Order, chosen to keep the service's load and the added latency down:
//! local rules decide first, and only a request they admit is sent to the
//! service. A request then denied by the service has still taken its local
//! tokens, as when Envoy's `local_ratelimit` runs before its `ratelimit`
//! filter.
//!
//! Descriptors follow Envoy's `rate_limits` actions: a descriptor is sent
//! only if every entry has a value (a missing header drops that descriptor,
//! not the request), and a rule with no descriptor left makes no call.
//! Empty header, cookie and query values count as missing. Values that are
//! not UTF-8 (a protobuf `string` must be) are sent with U+FFFD in place
//! of the bad bytes, so they still count, against a shared value, instead of
//! escaping the limit.

pub mod config;

use std::fmt::Write as _;

use prost::Message;
use ratelimit_proto::{
    Code, DescriptorStatus, Entry as ProtoEntry, RateLimitDescriptor, RateLimitRequest,
    RateLimitResponse, Unit,
};

use crate::config::{Config, GlobalRule, PathMatch};
use crate::global::config::{Entry, FailureMode, Source};
use crate::rules::{request_matches, RequestView};

/// Largest answer decoded; a bigger one is a failed call. The answers this
/// filter needs are a few hundred bytes.
pub const MAX_ANSWER_LEN: usize = 64 * 1024;

/// One global rule, ready for requests.
#[derive(Debug, Clone)]
struct PlannedGlobal {
    path: PathMatch,
    method: Option<Vec<u8>>,
    descriptors: Vec<Vec<Entry>>,
    /// The request sent for this rule: its domain and `hits_addend` are
    /// set once; [`GlobalPlan::calls`] rewrites the descriptors.
    request: RateLimitRequest,
}

/// The global rules of a config.
#[derive(Debug, Clone, Default)]
pub struct GlobalPlan {
    rules: Vec<PlannedGlobal>,
    needs_method: bool,
    needs_path: bool,
}

/// A call to make: rule `rule` (a position in [`Config::global`]) asks its
/// service with `message`, an encoded `RateLimitRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Global rule position.
    pub rule: u16,
    /// The encoded request.
    pub message: Vec<u8>,
}

impl GlobalPlan {
    /// The plan for a validated config.
    pub fn new(config: &Config) -> Self {
        let rules: Vec<PlannedGlobal> = config
            .global
            .iter()
            .map(|rule: &GlobalRule| PlannedGlobal {
                path: rule.path.clone(),
                method: rule.method.as_ref().map(|m| m.clone().into_bytes()),
                request: RateLimitRequest {
                    domain: rule.global.domain.clone(),
                    descriptors: Vec::new(),
                    hits_addend: 1,
                },
                descriptors: rule.global.descriptors.clone(),
            })
            .collect();
        let needs_method = rules.iter().any(|r| r.method.is_some());
        let needs_path = rules.iter().any(|r| {
            r.path != PathMatch::Any
                || r.descriptors
                    .iter()
                    .flatten()
                    .any(|e| matches!(e.from, Source::Path | Source::QueryParam(_)))
        });
        Self {
            rules,
            needs_method,
            needs_path,
        }
    }

    /// No global rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any global rule matches on `:method`.
    pub fn needs_method(&self) -> bool {
        self.needs_method
    }

    /// Whether any rule matches on the path or has a `path` or
    /// `query_param` descriptor entry (saves a host call otherwise).
    pub fn needs_path(&self) -> bool {
        self.needs_path
    }

    /// Appends a [`Call`] for every global rule that applies to the request
    /// and has at least one complete descriptor. `path` is `:path` with its
    /// query.
    ///
    /// Each rule keeps its `RateLimitRequest` between requests and only
    /// rewrites the values, so building the message allocates nothing once
    /// the strings have grown to fit; prost then encodes it.
    pub fn calls(
        &mut self,
        path: Option<&[u8]>,
        method: Option<&[u8]>,
        view: &mut impl RequestView,
        out: &mut Vec<Call>,
    ) {
        let path_only = path.map(filter_common::query::path_only);
        for (index, rule) in self.rules.iter_mut().enumerate() {
            if !request_matches(&rule.path, rule.method.as_deref(), path_only, method) {
                continue;
            }
            let request = &mut rule.request;
            let mut complete = 0;
            for entries in &rule.descriptors {
                if request.descriptors.len() <= complete {
                    request.descriptors.push(RateLimitDescriptor::default());
                }
                let Some(descriptor) = request.descriptors.get_mut(complete) else {
                    continue;
                };
                if fill(descriptor, entries, path, path_only, method, view).is_some() {
                    complete += 1;
                }
            }
            // Slots past `complete` hold dropped descriptors: not sent.
            request.descriptors.truncate(complete);
            if complete == 0 {
                continue;
            }
            out.push(Call {
                rule: u16::try_from(index).unwrap_or(u16::MAX),
                message: request.encode_to_vec(),
            });
        }
    }
}

/// Writes `entries`' keys and values into `descriptor`, reusing its
/// strings; `None` (the descriptor left half-written) if an entry has no
/// value.
fn fill(
    descriptor: &mut RateLimitDescriptor,
    entries: &[Entry],
    path: Option<&[u8]>,
    path_only: Option<&[u8]>,
    method: Option<&[u8]>,
    view: &mut impl RequestView,
) -> Option<()> {
    descriptor
        .entries
        .resize_with(entries.len(), ProtoEntry::default);
    for (entry, slot) in entries.iter().zip(descriptor.entries.iter_mut()) {
        slot.value.clear();
        match &entry.from {
            Source::Value(value) => slot.value.push_str(value),
            Source::Header(name) => push_text(&mut slot.value, &view.header(name)?),
            Source::Cookie(name) => {
                let header = view.header("cookie")?;
                let value =
                    filter_common::cookie::find_in(&header, name).filter(|v| !v.is_empty())?;
                push_text(&mut slot.value, value);
            }
            Source::QueryParam(name) => push_text(
                &mut slot.value,
                filter_common::query::find(path?, name).filter(|v| !v.is_empty())?,
            ),
            Source::Path => push_text(&mut slot.value, path_only.filter(|p| !p.is_empty())?),
            Source::Method => match method {
                Some(method) => push_text(&mut slot.value, method),
                None => push_text(&mut slot.value, &view.header(":method")?),
            },
            Source::Authority => push_text(&mut slot.value, &view.header(":authority")?),
            Source::ClientIp => {
                // Writing to a String cannot fail.
                let _ = write!(slot.value, "{}", view.client_ip()?);
            }
        }
        slot.key.clone_from(&entry.key);
    }
    Some(())
}

/// Appends `bytes` as text, with U+FFFD for bytes that are not UTF-8.
fn push_text(out: &mut String, bytes: &[u8]) {
    out.push_str(&String::from_utf8_lossy(bytes));
}

/// Why a call gave no verdict. Each is a service failure: `failure_mode`
/// and `local_fallback` decide the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The host refused the call (an unknown cluster, for one).
    Dispatch,
    /// A gRPC status other than OK: 4 is the deadline, 14 an unreachable
    /// service; 5 (NOT_FOUND) and 3 (INVALID_ARGUMENT) are what the test
    /// service answers for an unknown domain or an empty value.
    Grpc(u32),
    /// The answer is missing, too large or not a `RateLimitResponse`.
    Undecodable,
    /// The answer decoded but its `overall_code` is neither OK nor
    /// OVER_LIMIT.
    NoVerdict,
}

/// What one call answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Under the limit.
    Ok(RateLimitResponse),
    /// Over the limit.
    OverLimit(RateLimitResponse),
    /// No verdict.
    Failed(Failure),
}

/// Reads a call's answer: `grpc_status` from `on_grpc_call_response`, and
/// the message when the status is OK.
pub fn interpret(grpc_status: u32, message: Option<&[u8]>) -> Answer {
    if grpc_status != 0 {
        return Answer::Failed(Failure::Grpc(grpc_status));
    }
    // An empty message is a valid, all-default RateLimitResponse, which
    // has no verdict.
    let message = message.unwrap_or_default();
    if message.len() > MAX_ANSWER_LEN {
        return Answer::Failed(Failure::Undecodable);
    }
    let Ok(response) = RateLimitResponse::decode(message) else {
        return Answer::Failed(Failure::Undecodable);
    };
    match Code::try_from(response.overall_code) {
        Ok(Code::Ok) => Answer::Ok(response),
        Ok(Code::OverLimit) => Answer::OverLimit(response),
        Ok(Code::Unknown) | Err(_) => Answer::Failed(Failure::NoVerdict),
    }
}

/// What the filter does once every call is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Let the request through.
    Admit,
    /// A service said OVER_LIMIT (and shadow mode is off).
    OverLimit,
    /// A service failed and its rule's `failure_mode` is `deny`, without a
    /// fallback bucket.
    FailClosed,
    /// Services failed and their rules have fallback buckets: those decide.
    Fallback,
}

/// How one rule's answer counts, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleResolution {
    /// OK.
    Ok,
    /// OVER_LIMIT (enforced, or counted only in shadow mode).
    OverLimit,
    /// Failed; `failure_mode` decided.
    Error,
    /// Failed; the fallback bucket decides.
    Fallback,
}

/// How one rule's answer counts.
pub fn resolve_rule(answer: &Answer, has_fallback: bool) -> RuleResolution {
    match answer {
        Answer::Ok(_) => RuleResolution::Ok,
        Answer::OverLimit(_) => RuleResolution::OverLimit,
        Answer::Failed(_) if has_fallback => RuleResolution::Fallback,
        Answer::Failed(_) => RuleResolution::Error,
    }
}

/// Folds every answered rule into one [`Resolution`]: OVER_LIMIT wins over
/// a failure (it is the more informative answer), then a fail-closed
/// failure, then the fallback buckets.
pub fn resolve(
    rules: impl IntoIterator<Item = (RuleResolution, FailureMode)>,
    shadow_mode: bool,
) -> Resolution {
    let (mut over, mut closed, mut fallback) = (false, false, false);
    for (resolution, failure_mode) in rules {
        match resolution {
            RuleResolution::Ok => {}
            RuleResolution::OverLimit => over = true,
            RuleResolution::Error => closed |= failure_mode == FailureMode::Deny,
            RuleResolution::Fallback => fallback = true,
        }
    }
    if over && !shadow_mode {
        Resolution::OverLimit
    } else if closed {
        Resolution::FailClosed
    } else if fallback {
        Resolution::Fallback
    } else {
        Resolution::Admit
    }
}

/// The numbers a service reported for one rule, for the rate-limit
/// headers: the tightest of its descriptor statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceQuota {
    /// `requests_per_unit`.
    pub limit: u32,
    /// The unit in seconds, when known.
    pub window_secs: Option<u64>,
    /// `limit_remaining`.
    pub remaining: u32,
    /// `duration_until_reset` in nanoseconds (0 when absent).
    pub reset_ns: u64,
    /// The status was OVER_LIMIT.
    pub over_limit: bool,
}

/// The tightest status of `response` that names its limit: OVER_LIMIT
/// first, then the fewest remaining, then the longest reset. `None` when no
/// status carries `current_limit` (the service does not report limits).
pub fn service_quota(response: &RateLimitResponse) -> Option<ServiceQuota> {
    response
        .statuses
        .iter()
        .filter_map(quota_of)
        .min_by_key(|q| (!q.over_limit, q.remaining, std::cmp::Reverse(q.reset_ns)))
}

fn quota_of(status: &DescriptorStatus) -> Option<ServiceQuota> {
    let limit = status.current_limit.as_ref()?;
    let reset_ns = status.duration_until_reset.map_or(0, |d| {
        let secs = u64::try_from(d.seconds).unwrap_or(0);
        let nanos = u64::try_from(d.nanos).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    });
    Some(ServiceQuota {
        limit: limit.requests_per_unit,
        window_secs: Unit::try_from(limit.unit).ok().and_then(Unit::seconds),
        remaining: status.limit_remaining,
        reset_ns,
        over_limit: status.code == Code::OverLimit as i32,
    })
}

#[cfg(test)]
mod tests;
