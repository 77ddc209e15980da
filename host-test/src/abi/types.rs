//! The ABI's enumerations and status codes (proxy-wasm ABI v0.2.1), with the
//! numeric values the spec and Envoy's proxy-wasm-cpp-host use.

/// `proxy_result_t`: what every host call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The key, context, token or cluster does not exist.
    NotFound = 1,
    /// An argument is out of range or malformed.
    BadArgument = 2,
    /// A value could not be serialised.
    SerializationFailure = 3,
    /// A value could not be parsed.
    ParseFailure = 4,
    /// A guest pointer/length pair is outside the guest's memory.
    InvalidMemoryAccess = 6,
    /// A queue is empty.
    Empty = 7,
    /// A compare-and-swap on shared data lost.
    CasMismatch = 8,
    /// The host failed internally (here: an unexpected re-entrant call).
    InternalFailure = 10,
    /// The function exists in the ABI but this host does not implement it.
    Unimplemented = 12,
}

/// Result of a host call before it is handed back to the guest as a `u32`.
pub type HostResult<T = ()> = Result<T, Status>;

/// Converts a host-call outcome into the guest's `proxy_result_t`.
pub fn status_of(result: HostResult) -> u32 {
    match result {
        Ok(()) => Status::Ok as u32,
        Err(status) => status as u32,
    }
}

/// `proxy_map_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapType {
    /// Request headers of the current stream.
    RequestHeaders,
    /// Request trailers of the current stream.
    RequestTrailers,
    /// Response headers of the current stream.
    ResponseHeaders,
    /// Response trailers of the current stream.
    ResponseTrailers,
    /// Initial metadata of a gRPC callout, during its callback.
    GrpcReceiveInitialMetadata,
    /// Trailing metadata of a gRPC callout, during its callback.
    GrpcReceiveTrailingMetadata,
    /// Headers of an HTTP callout's response, during `on_http_call_response`.
    HttpCallResponseHeaders,
    /// Trailers of an HTTP callout's response, during `on_http_call_response`.
    HttpCallResponseTrailers,
}

impl MapType {
    /// Decodes the guest's map type, or `BadArgument`.
    pub fn from_raw(raw: u32) -> HostResult<Self> {
        Ok(match raw {
            0 => Self::RequestHeaders,
            1 => Self::RequestTrailers,
            2 => Self::ResponseHeaders,
            3 => Self::ResponseTrailers,
            4 => Self::GrpcReceiveInitialMetadata,
            5 => Self::GrpcReceiveTrailingMetadata,
            6 => Self::HttpCallResponseHeaders,
            7 => Self::HttpCallResponseTrailers,
            _ => return Err(Status::BadArgument),
        })
    }
}

/// `proxy_buffer_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufferType {
    /// The request body received so far.
    RequestBody,
    /// The response body received so far.
    ResponseBody,
    /// TCP downstream data (network filters; always empty here).
    DownstreamData,
    /// TCP upstream data (network filters; always empty here).
    UpstreamData,
    /// Body of an HTTP callout's response, during `on_http_call_response`.
    HttpCallResponseBody,
    /// A gRPC callout's message, during `on_grpc_receive`.
    GrpcReceiveBuffer,
    /// The VM configuration, during `on_vm_start`.
    VmConfiguration,
    /// The plugin configuration, during `on_configure`.
    PluginConfiguration,
    /// Arguments of a foreign-function call, during `on_foreign_function`.
    CallData,
}

impl BufferType {
    /// Decodes the guest's buffer type, or `BadArgument`.
    pub fn from_raw(raw: u32) -> HostResult<Self> {
        Ok(match raw {
            0 => Self::RequestBody,
            1 => Self::ResponseBody,
            2 => Self::DownstreamData,
            3 => Self::UpstreamData,
            4 => Self::HttpCallResponseBody,
            5 => Self::GrpcReceiveBuffer,
            6 => Self::VmConfiguration,
            7 => Self::PluginConfiguration,
            8 => Self::CallData,
            _ => return Err(Status::BadArgument),
        })
    }
}

/// `proxy_stream_type_t`, for `continue_stream`/`close_stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The request (decoder) path.
    Request,
    /// The response (encoder) path.
    Response,
}

impl Direction {
    /// Decodes an HTTP stream type; the TCP ones (2, 3) are not HTTP streams.
    pub fn from_raw(raw: u32) -> HostResult<Self> {
        match raw {
            0 => Ok(Self::Request),
            1 => Ok(Self::Response),
            _ => Err(Status::BadArgument),
        }
    }
}

/// `proxy_log_level_t`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// trace
    Trace = 0,
    /// debug
    Debug = 1,
    /// info
    Info = 2,
    /// warn
    Warn = 3,
    /// error
    Error = 4,
    /// critical
    Critical = 5,
}

impl LogLevel {
    /// Decodes the guest's level, or `BadArgument`.
    pub fn from_raw(raw: u32) -> HostResult<Self> {
        Ok(match raw {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Critical,
            _ => return Err(Status::BadArgument),
        })
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Critical => "critical",
        };
        f.write_str(name)
    }
}

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// Monotonic counter.
    Counter = 0,
    /// Gauge.
    Gauge = 1,
    /// Histogram.
    Histogram = 2,
}

impl MetricKind {
    /// Decodes the guest's metric type, or `BadArgument`.
    pub fn from_raw(raw: u32) -> HostResult<Self> {
        Ok(match raw {
            0 => Self::Counter,
            1 => Self::Gauge,
            2 => Self::Histogram,
            _ => return Err(Status::BadArgument),
        })
    }
}
