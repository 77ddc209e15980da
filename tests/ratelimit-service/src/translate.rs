//! The protocol translation as pure functions: an Envoy `RateLimitRequest`
//! into what Limitador takes (namespace, descriptor maps, hits), and
//! Limitador's verdict and counters back into a `RateLimitResponse`.
//!
//! Nothing here does I/O or touches Limitador's storage, so every rule of
//! the mapping is unit-tested below.

use std::collections::HashMap;
use std::time::Duration;

use ratelimit_proto::{
    Code, DescriptorStatus, Duration as ProtoDuration, RateLimit, RateLimitRequest,
    RateLimitResponse, Unit,
};

/// Why a request is refused before Limitador sees it; each maps to one
/// gRPC status (see [`crate::service`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No limits are loaded for the request's domain (gRPC `NOT_FOUND`).
    #[error("unknown domain {0:?}: no limits are loaded for this namespace")]
    UnknownDomain(String),
    /// The request has no descriptors (gRPC `INVALID_ARGUMENT`).
    #[error("descriptors: the list is empty")]
    NoDescriptors,
    /// A descriptor has no entries (gRPC `INVALID_ARGUMENT`).
    #[error("descriptors[{0}]: no entries")]
    EmptyDescriptor(usize),
    /// An entry's key is empty (gRPC `INVALID_ARGUMENT`).
    #[error("descriptors[{descriptor}].entries[{entry}].key: empty")]
    EmptyKey {
        /// Index of the descriptor in the request.
        descriptor: usize,
        /// Index of the entry in the descriptor.
        entry: usize,
    },
    /// An entry's value is empty (gRPC `INVALID_ARGUMENT`).
    #[error("descriptors[{descriptor}].entries[{entry}].value: empty (key {key:?})")]
    EmptyValue {
        /// Index of the descriptor in the request.
        descriptor: usize,
        /// Index of the entry in the descriptor.
        entry: usize,
        /// The entry's key, for the log line.
        key: String,
    },
}

/// Checks the request's shape; the domain is checked against the loaded
/// namespaces by the caller, which knows them (see [`check_domain`]).
///
/// An empty descriptor (no entries) is refused too: Envoy never sends one,
/// and Limitador would see a map with nothing to match.
///
/// # Errors
///
/// The first [`RequestError`] found, in request order.
pub fn validate(request: &RateLimitRequest) -> Result<(), RequestError> {
    if request.descriptors.is_empty() {
        return Err(RequestError::NoDescriptors);
    }
    for (d, descriptor) in request.descriptors.iter().enumerate() {
        if descriptor.entries.is_empty() {
            return Err(RequestError::EmptyDescriptor(d));
        }
        for (e, entry) in descriptor.entries.iter().enumerate() {
            if entry.key.is_empty() {
                return Err(RequestError::EmptyKey {
                    descriptor: d,
                    entry: e,
                });
            }
            if entry.value.is_empty() {
                return Err(RequestError::EmptyValue {
                    descriptor: d,
                    entry: e,
                    key: entry.key.clone(),
                });
            }
        }
    }
    Ok(())
}

/// `Ok` when `domain` is one of the namespaces the limits file defines.
///
/// Limitador's own server answers `OK` for a namespace without limits; this
/// service says `NOT_FOUND`, because a domain typo in a filter config would
/// otherwise silently admit everything (the filter's `failure_mode` then
/// decides, and the error is logged on both sides).
///
/// # Errors
///
/// [`RequestError::UnknownDomain`].
pub fn check_domain<'a>(
    domain: &str,
    mut namespaces: impl Iterator<Item = &'a str>,
) -> Result<(), RequestError> {
    if namespaces.any(|namespace| namespace == domain) {
        Ok(())
    } else {
        Err(RequestError::UnknownDomain(domain.to_owned()))
    }
}

/// The value bound to `descriptors` in Limitador's CEL context: one map per
/// request descriptor, in request order, entry key to entry value. When a
/// descriptor repeats a key, the last entry wins (a map holds one value per
/// key), as in Limitador's own server.
pub fn descriptor_maps(request: &RateLimitRequest) -> Vec<HashMap<String, String>> {
    request
        .descriptors
        .iter()
        .map(|descriptor| {
            descriptor
                .entries
                .iter()
                .map(|entry| (entry.key.clone(), entry.value.clone()))
                .collect()
        })
        .collect()
}

/// The hits this request adds: `hits_addend`, where 0 (the proto3 default,
/// i.e. not set) means 1 as Envoy's protocol says.
pub fn hits(request: &RateLimitRequest) -> u64 {
    u64::from(request.hits_addend.max(1))
}

/// What the response needs from one Limitador counter; taken out of
/// `limitador::counter::Counter` so the response rules are testable without
/// building counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterView {
    /// The limit's `max_value`.
    pub max_value: u64,
    /// The limit's window, `seconds`.
    pub seconds: u64,
    /// The limit's `name`, if it has one.
    pub name: Option<String>,
    /// Hits left in the window, as Limitador loaded it from storage.
    pub remaining: Option<u64>,
    /// Time until the counter's window resets, as Limitador loaded it.
    pub expires_in: Option<Duration>,
}

impl CounterView {
    /// Hits left; a counter Limitador did not load counts as untouched.
    fn remaining_or_max(&self) -> u64 {
        self.remaining.unwrap_or(self.max_value)
    }
}

impl From<&limitador::counter::Counter> for CounterView {
    fn from(counter: &limitador::counter::Counter) -> Self {
        Self {
            max_value: counter.max_value(),
            seconds: counter.limit().seconds(),
            name: counter.limit().name().map(str::to_owned),
            remaining: counter.remaining(),
            expires_in: counter.expires_in(),
        }
    }
}

/// The counter the response reports: the one with the fewest hits left;
/// among equals, the one that resets last (the client waits longest for
/// it), then the smallest limit. `None` when no limit applied.
pub fn tightest(counters: &[CounterView]) -> Option<&CounterView> {
    counters.iter().min_by(|a, b| {
        a.remaining_or_max()
            .cmp(&b.remaining_or_max())
            .then_with(|| b.expires_in.cmp(&a.expires_in))
            .then_with(|| a.max_value.cmp(&b.max_value))
    })
}

/// `RateLimit` for a limit of `max_value` hits per `seconds`.
///
/// The protocol has one unit and no multiplier. A window that is exactly
/// one unit (1 s, 60 s, 3600 s, 86400 s, 30 days, 365 days) is reported as
/// that unit with `requests_per_unit = max_value`. Any other window (90 s,
/// 120 s, ...) cannot be written without either changing the rate or the
/// window, so it is reported with unit `UNKNOWN` and
/// `requests_per_unit = max_value` (the count is exact; the window is in
/// `duration_until_reset`'s horizon and in the limits file). `max_value`
/// above `u32::MAX` saturates.
pub fn current_limit(max_value: u64, seconds: u64, name: Option<&str>) -> RateLimit {
    let unit = match Unit::from_seconds(seconds) {
        Some((unit, 1)) => unit,
        _ => Unit::Unknown,
    };
    RateLimit {
        requests_per_unit: saturate_u32(max_value),
        unit: unit as i32,
        name: name.unwrap_or_default().to_owned(),
    }
}

/// Builds the response from Limitador's verdict and the counters it
/// loaded for the whole request.
///
/// Limitador checks every limit of the namespace against the whole request
/// context (all descriptors at once) and does not say which descriptor a
/// counter came from. So each of the `descriptors` statuses carries the
/// same thing: the overall code, and the tightest counter ([`tightest`]):
/// its limit, hits left and time to reset. With no counter (no limit
/// applied), each status is `OK` with no `current_limit`, 0 remaining and
/// no reset, as Envoy's reference service reports a descriptor without a
/// limit.
pub fn response(limited: bool, descriptors: usize, counters: &[CounterView]) -> RateLimitResponse {
    let code = if limited { Code::OverLimit } else { Code::Ok };
    let status = match tightest(counters) {
        Some(counter) => DescriptorStatus {
            code: code as i32,
            current_limit: Some(current_limit(
                counter.max_value,
                counter.seconds,
                counter.name.as_deref(),
            )),
            limit_remaining: saturate_u32(counter.remaining_or_max()),
            duration_until_reset: Some(proto_duration(
                counter
                    .expires_in
                    .unwrap_or(Duration::from_secs(counter.seconds)),
            )),
        },
        None => DescriptorStatus {
            code: code as i32,
            current_limit: None,
            limit_remaining: 0,
            duration_until_reset: None,
        },
    };
    RateLimitResponse {
        overall_code: code as i32,
        statuses: vec![status; descriptors],
        ..Default::default()
    }
}

/// `google.protobuf.Duration` for a std duration (seconds saturate at
/// `i64::MAX`, which no window reaches).
pub fn proto_duration(duration: Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        // subsec_nanos is below 1e9, so it always fits.
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

fn saturate_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn request(descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
        RateLimitRequest::from_entries("mesh", descriptors, 0)
    }

    fn counter(max_value: u64, remaining: Option<u64>, expires: Option<u64>) -> CounterView {
        CounterView {
            max_value,
            seconds: 60,
            name: None,
            remaining,
            expires_in: expires.map(Duration::from_secs),
        }
    }

    #[test]
    fn well_formed_request_is_valid() {
        assert_eq!(
            validate(&request(&[
                &[("user", "ann"), ("path", "/")],
                &[("x", "1")]
            ])),
            Ok(())
        );
    }

    #[test]
    fn empty_descriptor_list_is_invalid() {
        assert_eq!(validate(&request(&[])), Err(RequestError::NoDescriptors));
    }

    #[test]
    fn descriptor_without_entries_is_invalid() {
        assert_eq!(
            validate(&request(&[&[("user", "ann")], &[]])),
            Err(RequestError::EmptyDescriptor(1))
        );
    }

    #[test]
    fn empty_key_is_invalid_and_named_by_position() {
        assert_eq!(
            validate(&request(&[&[("user", "ann"), ("", "x")]])),
            Err(RequestError::EmptyKey {
                descriptor: 0,
                entry: 1
            })
        );
    }

    #[test]
    fn empty_value_is_invalid_and_names_the_key() {
        let err = validate(&request(&[&[("user", "")]])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "descriptors[0].entries[0].value: empty (key \"user\")"
        );
    }

    #[test]
    fn domain_must_be_a_loaded_namespace() {
        assert_eq!(check_domain("mesh", ["a", "mesh"].into_iter()), Ok(()));
        assert_eq!(
            check_domain("other", ["mesh"].into_iter()),
            Err(RequestError::UnknownDomain("other".into()))
        );
        assert_eq!(
            check_domain("", ["mesh"].into_iter()),
            Err(RequestError::UnknownDomain(String::new()))
        );
    }

    #[test]
    fn descriptors_become_one_map_each_in_order() {
        let maps = descriptor_maps(&request(&[
            &[("user", "ann"), ("path", "/a")],
            &[("user", "bob")],
        ]));
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0]["user"], "ann");
        assert_eq!(maps[0]["path"], "/a");
        assert_eq!(maps[1]["user"], "bob");
        assert!(!maps[1].contains_key("path"));
    }

    #[test]
    fn repeated_key_keeps_the_last_value() {
        let maps = descriptor_maps(&request(&[&[("k", "first"), ("k", "last")]]));
        assert_eq!(maps[0]["k"], "last");
    }

    #[test]
    fn zero_hits_addend_means_one() {
        let mut req = request(&[&[("user", "ann")]]);
        assert_eq!(hits(&req), 1);
        req.hits_addend = 7;
        assert_eq!(hits(&req), 7);
    }

    #[test]
    fn tightest_is_the_counter_with_fewest_remaining() {
        let counters = [
            counter(10, Some(9), Some(50)),
            counter(5, Some(2), Some(10)),
            counter(100, None, None),
        ];
        assert_eq!(tightest(&counters), Some(&counters[1]));
        assert_eq!(tightest(&[]), None);
    }

    #[test]
    fn tightest_tie_goes_to_the_later_reset() {
        let counters = [
            counter(10, Some(0), Some(5)),
            counter(10, Some(0), Some(40)),
        ];
        assert_eq!(tightest(&counters), Some(&counters[1]));
    }

    #[test]
    fn unloaded_counter_counts_as_untouched() {
        let counters = [counter(3, None, None), counter(10, Some(4), Some(1))];
        assert_eq!(tightest(&counters), Some(&counters[0]));
    }

    #[test]
    fn one_unit_window_is_reported_in_that_unit() {
        let limit = current_limit(10, 60, Some("per-user"));
        assert_eq!(limit.requests_per_unit, 10);
        assert_eq!(limit.unit, Unit::Minute as i32);
        assert_eq!(limit.name, "per-user");
        assert_eq!(current_limit(5, 1, None).unit, Unit::Second as i32);
        assert_eq!(current_limit(5, 86_400, None).unit, Unit::Day as i32);
    }

    #[test]
    fn multi_unit_window_is_reported_with_unknown_unit() {
        for seconds in [90, 120, 7_200, 0] {
            let limit = current_limit(10, seconds, None);
            assert_eq!(limit.unit, Unit::Unknown as i32, "{seconds}");
            assert_eq!(limit.requests_per_unit, 10);
        }
    }

    #[test]
    fn huge_limit_saturates() {
        assert_eq!(
            current_limit(u64::MAX, 60, None).requests_per_unit,
            u32::MAX
        );
    }

    #[test]
    fn admitted_response_carries_the_tightest_counter_on_every_status() {
        let counters = [counter(10, Some(7), Some(42)), counter(5, Some(4), Some(3))];
        let resp = response(false, 2, &counters);
        assert_eq!(resp.overall_code, Code::Ok as i32);
        assert_eq!(resp.statuses.len(), 2);
        for status in &resp.statuses {
            assert_eq!(status.code, Code::Ok as i32);
            assert_eq!(status.limit_remaining, 4);
            assert_eq!(status.current_limit.as_ref().unwrap().requests_per_unit, 5);
            assert_eq!(
                status.duration_until_reset,
                Some(ProtoDuration {
                    seconds: 3,
                    nanos: 0
                })
            );
        }
    }

    #[test]
    fn over_limit_response_marks_every_status_over_limit() {
        let resp = response(true, 1, &[counter(10, Some(0), Some(30))]);
        assert_eq!(resp.overall_code, Code::OverLimit as i32);
        assert_eq!(resp.statuses[0].code, Code::OverLimit as i32);
        assert_eq!(resp.statuses[0].limit_remaining, 0);
    }

    #[test]
    fn no_applicable_limit_is_ok_without_current_limit() {
        let resp = response(false, 3, &[]);
        assert_eq!(resp.overall_code, Code::Ok as i32);
        assert_eq!(resp.statuses.len(), 3);
        assert!(resp
            .statuses
            .iter()
            .all(|s| s.current_limit.is_none() && s.duration_until_reset.is_none()));
    }

    #[test]
    fn counter_without_ttl_resets_after_a_full_window() {
        let resp = response(false, 1, &[counter(10, Some(9), None)]);
        assert_eq!(
            resp.statuses[0].duration_until_reset,
            Some(ProtoDuration {
                seconds: 60,
                nanos: 0
            })
        );
    }

    #[test]
    fn durations_keep_sub_second_precision() {
        assert_eq!(
            proto_duration(Duration::from_millis(1_500)),
            ProtoDuration {
                seconds: 1,
                nanos: 500_000_000
            }
        );
    }
}
