//! The messages of Envoy's rate-limit service protocol,
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, as prost
//! structs written from the field numbers in Envoy's protos
//! (`envoy/service/ratelimit/v3/rls.proto`,
//! `envoy/extensions/common/ratelimit/v3/ratelimit.proto`,
//! `envoy/config/core/v3/base.proto`).
//!
//! Hand-written rather than generated: generation needs `protoc` and the
//! whole Envoy API tree (validate, udpa annotations) for seven small
//! messages. Only the fields the filter and the test service use are
//! declared; prost skips unknown fields when decoding, as protobuf requires,
//! so a service that sends `raw_body`, `dynamic_metadata` or `quota` is
//! still understood.
//!
//! The crate has no I/O and builds for `wasm32-wasip1` (the rate-limit
//! filter) and natively (the tonic service in `tests/ratelimit-service`).

use prost::Message;

/// The gRPC service name, as passed to `proxy_grpc_call`.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// The gRPC method name.
pub const METHOD: &str = "ShouldRateLimit";
/// The HTTP/2 path of the method, for servers and raw clients.
pub const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    /// The limits' namespace (Limitador: the limit's `namespace`).
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Every descriptor is checked; the request is over limit if any is.
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// Hits this request adds; 0 means 1.
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

impl RateLimitRequest {
    /// A request for `domain` whose descriptors are given as lists of
    /// `(key, value)` entries: the shape tests, tools and benches write.
    #[must_use]
    pub fn from_entries(domain: &str, descriptors: &[&[(&str, &str)]], hits_addend: u32) -> Self {
        Self {
            domain: domain.into(),
            descriptors: descriptors
                .iter()
                .map(|entries| RateLimitDescriptor {
                    entries: entries
                        .iter()
                        .map(|(key, value)| Entry {
                            key: (*key).into(),
                            value: (*value).into(),
                        })
                        .collect(),
                })
                .collect(),
            hits_addend,
        }
    }
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor` (without the
/// `limit` override and per-descriptor `hits_addend`, which the filter does
/// not send).
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    /// Ordered key/value pairs.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
}

/// `RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    /// Descriptor key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Descriptor value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    /// The verdict over all descriptors.
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    /// One status per request descriptor, in request order.
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
    /// Headers for the response to the client.
    #[prost(message, repeated, tag = "3")]
    pub response_headers_to_add: Vec<HeaderValue>,
    /// Headers for the request sent upstream (when admitted).
    #[prost(message, repeated, tag = "4")]
    pub request_headers_to_add: Vec<HeaderValue>,
    /// Body for the client when the code is not OK.
    #[prost(bytes = "vec", tag = "5")]
    pub raw_body: Vec<u8>,
}

/// `RateLimitResponse.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    /// Not known: the filter treats it as a service error.
    Unknown = 0,
    /// Under the limit.
    Ok = 1,
    /// Over the limit.
    OverLimit = 2,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    /// This descriptor's verdict.
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    /// The limit that applied, if any.
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    /// Hits left in the current window.
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    /// Time until the window resets.
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimit {
    /// Hits allowed per unit.
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    /// The window.
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
    /// The limit's name.
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `RateLimitResponse.RateLimit.Unit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    /// Not known.
    Unknown = 0,
    /// One second.
    Second = 1,
    /// One minute.
    Minute = 2,
    /// One hour.
    Hour = 3,
    /// One day.
    Day = 4,
    /// One month (Envoy counts 30 days).
    Month = 5,
    /// One year (365 days).
    Year = 6,
}

impl Unit {
    /// The unit's length in seconds; `None` for `Unknown`.
    pub fn seconds(self) -> Option<u64> {
        match self {
            Self::Unknown => None,
            Self::Second => Some(1),
            Self::Minute => Some(60),
            Self::Hour => Some(3_600),
            Self::Day => Some(86_400),
            Self::Month => Some(30 * 86_400),
            Self::Year => Some(365 * 86_400),
        }
    }

    /// The largest unit that divides `seconds` exactly, with the count of
    /// it: how a service reports a window such as Limitador's `seconds`.
    /// `None` for 0.
    pub fn from_seconds(seconds: u64) -> Option<(Self, u64)> {
        [
            Self::Year,
            Self::Month,
            Self::Day,
            Self::Hour,
            Self::Minute,
            Self::Second,
        ]
        .into_iter()
        .find_map(|unit| {
            let length = unit.seconds()?;
            (seconds > 0 && seconds.is_multiple_of(length)).then_some((unit, seconds / length))
        })
    }
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct Duration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds, 0..1e9 (same sign as `seconds`).
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, Message)]
pub struct HeaderValue {
    /// Header name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Header value as text.
    #[prost(string, tag = "2")]
    pub value: String,
    /// Header value as bytes; Envoy uses it instead of `value` when set.
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

impl HeaderValue {
    /// The value Envoy would use: `raw_value` if set, else `value`.
    pub fn effective_value(&self) -> &[u8] {
        if self.raw_value.is_empty() {
            self.value.as_bytes()
        } else {
            &self.raw_value
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    /// Bytes a reference encoder produces for a two-entry descriptor, worked
    /// out by hand from the wire format: field 1 (domain), field 2
    /// (descriptor → field 1 entries → key 1, value 2), field 3 varint.
    #[test]
    fn request_encodes_to_the_wire_format() {
        let request = RateLimitRequest::from_entries("mesh", &[&[("user", "ann")]], 1);
        let expected: Vec<u8> = [
            &[0x0a, 4][..],
            b"mesh",
            &[0x12, 13, 0x0a, 11, 0x0a, 4],
            b"user",
            &[0x12, 3],
            b"ann",
            &[0x18, 1],
        ]
        .concat();
        assert_eq!(request.encode_to_vec(), expected);
        assert_eq!(RateLimitRequest::decode(&expected[..]).unwrap(), request);
    }

    #[test]
    fn response_skips_unknown_fields() {
        let response = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![DescriptorStatus {
                code: Code::OverLimit as i32,
                current_limit: Some(RateLimit {
                    requests_per_unit: 10,
                    unit: Unit::Minute as i32,
                    name: "per-user".into(),
                }),
                limit_remaining: 0,
                duration_until_reset: Some(Duration {
                    seconds: 42,
                    nanos: 0,
                }),
            }],
            ..Default::default()
        };
        let mut bytes = response.encode_to_vec();
        // Field 6 (dynamic_metadata, an empty Struct) and field 7 (quota),
        // which this crate does not declare.
        bytes.extend_from_slice(&[0x32, 0, 0x3a, 2, 0x08, 5]);
        assert_eq!(RateLimitResponse::decode(&bytes[..]).unwrap(), response);
    }

    #[test]
    fn unit_from_seconds_takes_the_largest_exact_unit() {
        assert_eq!(Unit::from_seconds(60), Some((Unit::Minute, 1)));
        assert_eq!(Unit::from_seconds(90), Some((Unit::Second, 90)));
        assert_eq!(Unit::from_seconds(7_200), Some((Unit::Hour, 2)));
        assert_eq!(Unit::from_seconds(0), None);
    }

    #[test]
    fn raw_value_wins_over_value() {
        let header = HeaderValue {
            key: "x".into(),
            value: "text".into(),
            raw_value: b"raw".to_vec(),
        };
        assert_eq!(header.effective_value(), b"raw");
    }
}
