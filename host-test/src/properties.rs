//! Property paths (`request.path`, `source.address`, `plugin_name`, ...) with
//! Envoy's attribute names and wire encodings: strings as raw bytes, integers
//! and timestamps (nanoseconds) as 8-byte little-endian, booleans as one byte,
//! maps in the header-map format.

use std::collections::HashMap;

use crate::abi::memory::serialize_pairs;
use crate::shared::{Pairs, StreamData};
use crate::vm::FilterInfo;

/// A property value before encoding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum PropertyValue {
    /// Encoded as 1 byte.
    Bool(bool),
    /// Encoded as 8-byte little-endian.
    Int(i64),
    /// Encoded as its bytes.
    String(String),
}

impl PropertyValue {
    /// Envoy's wire encoding of the value.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Bool(b) => vec![u8::from(*b)],
            Self::Int(i) => i.to_le_bytes().to_vec(),
            Self::String(s) => s.as_bytes().to_vec(),
        }
    }
}

/// Defaults for host-level properties, describing the simulated sidecar.
pub fn defaults() -> HashMap<String, PropertyValue> {
    let s = |v: &str| PropertyValue::String(v.to_owned());
    HashMap::from([
        ("source.address".to_owned(), s("10.0.0.1:45000")),
        ("source.port".to_owned(), PropertyValue::Int(45000)),
        ("destination.address".to_owned(), s("10.0.0.2:8080")),
        ("destination.port".to_owned(), PropertyValue::Int(8080)),
        ("connection.mtls".to_owned(), PropertyValue::Bool(false)),
        (
            "node.id".to_owned(),
            s("sidecar~10.0.0.2~app-0.default~default.svc.cluster.local"),
        ),
        ("node.cluster".to_owned(), s("app.default")),
        ("listener_direction".to_owned(), PropertyValue::Int(1)),
    ])
}

fn header_value(pairs: &Pairs, name: &str) -> Option<Vec<u8>> {
    let name = name.to_ascii_lowercase();
    pairs
        .iter()
        .find(|(k, _)| k.as_slice() == name.as_bytes())
        .map(|(_, v)| v.clone())
}

fn int(value: i64) -> Option<Vec<u8>> {
    Some(value.to_le_bytes().to_vec())
}

/// Resolves a dotted property path. Order: values a filter set on the stream,
/// then what the stream and plugin define, then host-level properties.
pub fn resolve(
    path: &str,
    filter: &FilterInfo,
    stream: Option<&StreamData>,
    host: &HashMap<String, PropertyValue>,
    now_ns: u64,
) -> Option<Vec<u8>> {
    if let Some(value) = stream.and_then(|s| s.set_properties.get(path)) {
        return Some(value.clone());
    }
    let plugin = match path {
        "plugin_name" => Some(filter.name.as_bytes().to_vec()),
        "plugin_root_id" => Some(filter.root_id.as_bytes().to_vec()),
        "plugin_vm_id" => Some(filter.vm_id.as_bytes().to_vec()),
        _ => None,
    };
    if plugin.is_some() {
        return plugin;
    }
    if let Some(stream) = stream {
        if let Some(value) = stream_property(path, stream, now_ns) {
            return Some(value);
        }
    }
    host.get(path).map(PropertyValue::encode)
}

fn stream_property(path: &str, stream: &StreamData, now_ns: u64) -> Option<Vec<u8>> {
    let request = &stream.request_headers;
    let response = &stream.response_headers;
    let full_path = || header_value(request, ":path");
    if let Some(name) = path.strip_prefix("request.headers.") {
        return header_value(request, name);
    }
    if let Some(name) = path.strip_prefix("response.headers.") {
        return header_value(response, name);
    }
    if let Some(name) = path.strip_prefix("response.trailers.") {
        return header_value(&stream.response_trailers, name);
    }
    match path {
        "request.path" => full_path(),
        "request.url_path" => {
            full_path().map(|p| p.split(|&b| b == b'?').next().unwrap_or_default().to_vec())
        }
        "request.query" => full_path().map(|p| {
            p.splitn(2, |&b| b == b'?')
                .nth(1)
                .unwrap_or_default()
                .to_vec()
        }),
        "request.host" => header_value(request, ":authority"),
        "request.scheme" => header_value(request, ":scheme"),
        "request.method" => header_value(request, ":method"),
        "request.referer" => header_value(request, "referer"),
        "request.useragent" => header_value(request, "user-agent"),
        "request.id" => header_value(request, "x-request-id"),
        "request.protocol" => Some(b"HTTP/1.1".to_vec()),
        "request.headers" => Some(serialize_pairs(request)),
        "request.time" => int(stream.start_ns as i64),
        "request.duration" => int(now_ns.saturating_sub(stream.start_ns) as i64),
        "request.size" | "request.total_size" => int(stream.request_body.len() as i64),
        "response.code" if stream.has_response => header_value(response, ":status")
            .and_then(|s| String::from_utf8_lossy(&s).parse::<i64>().ok())
            .and_then(int),
        "response.code_details" if stream.has_response => {
            Some(stream.response_details.as_bytes().to_vec())
        }
        "response.headers" if stream.has_response => Some(serialize_pairs(response)),
        "response.size" | "response.total_size" if stream.has_response => {
            int(stream.response_body.len() as i64)
        }
        "xds.cluster_name" | "cluster_name" if !stream.cluster.is_empty() => {
            Some(stream.cluster.as_bytes().to_vec())
        }
        _ => None,
    }
}
