//! State that every VM of a [`Host`](crate::Host) shares, as the workers of one
//! Envoy process do: the virtual clock, shared data, shared queues, metrics,
//! logs, mocked clusters, pending callouts and the HTTP streams in flight.
//!
//! One `Shared` lives behind an `Rc<RefCell<_>>` owned by the host and cloned
//! into each VM's store: a host runs on one thread, deterministically, and
//! nothing here is global, so tests run in parallel.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::abi::types::{Direction, LogLevel};
use crate::metrics::MetricRegistry;
use crate::properties::PropertyValue;
use crate::yaml_types::{DurationText, HeaderList};

/// Header or trailer pairs, in order, names lower-cased.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Identifies an HTTP stream inside one host.
pub type StreamId = u64;

/// The virtual clock. Wall time starts at a fixed instant so runs repeat.
#[derive(Debug, Clone)]
pub struct Clock {
    /// Nanoseconds since the Unix epoch.
    pub now_ns: u64,
    /// Wall time at host start, so the monotonic clock starts at zero.
    pub start_ns: u64,
}

impl Clock {
    /// 2026-01-01T00:00:00Z: a fixed start keeps token `exp` checks and
    /// histograms repeatable.
    pub const DEFAULT_START_NS: u64 = 1_767_225_600 * 1_000_000_000;

    /// Monotonic nanoseconds since the host started.
    pub fn monotonic_ns(&self) -> u64 {
        self.now_ns.saturating_sub(self.start_ns)
    }
}

/// SplitMix64: a tiny, seeded generator for WASI `random_get`, so "random"
/// choices inside a filter repeat from run to run.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Fills `out` with the next bytes of the sequence.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let bytes = z.to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(bytes.get(..n).unwrap_or(&bytes));
        }
    }
}

/// One line a filter logged (or wrote to stdout/stderr through WASI).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogRecord {
    /// Display name of the filter.
    pub filter: String,
    /// Worker (VM) index.
    pub worker: u32,
    /// Level; WASI stdout logs at info and stderr at error, as Envoy does.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// A value in shared data with its compare-and-swap stamp.
#[derive(Debug, Clone)]
pub struct SharedValue {
    /// The bytes.
    pub value: Vec<u8>,
    /// Non-zero stamp; changes on every write.
    pub cas: u32,
}

/// A shared queue, owned by the VM whose root context registered it.
#[derive(Debug, Clone)]
pub struct Queue {
    /// `vm_id` of the registering VM.
    pub vm_id: String,
    /// Queue name.
    pub name: String,
    /// The registering VM: (filter index, worker, root context id).
    pub owner: (usize, u32, u32),
    /// Items not yet dequeued.
    pub items: VecDeque<Vec<u8>>,
}

/// A mocked HTTP response, for the upstream or for a callout cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockResponse {
    /// `:status`; 200 when omitted.
    pub status: Option<u16>,
    /// Response headers.
    pub headers: HeaderList,
    /// More response headers, as raw bytes, after `headers` and exactly as
    /// given (not lower-cased, not trimmed). Rust API only: the scenario
    /// format is text. For what a codec refuses but another filter in an
    /// Envoy chain can still add, such as a name that is not UTF-8.
    #[serde(skip)]
    pub raw_headers: Pairs,
    /// Response body.
    pub body: String,
    /// Response trailers.
    pub trailers: HeaderList,
    /// Virtual time the upstream takes to answer (upstream only).
    pub delay: DurationText,
}

impl MockResponse {
    /// A response with this status and nothing else.
    ///
    /// # Examples
    /// ```
    /// let response = host_test::MockResponse::with_status(200).header("content-type", "text/html").body("<p>hi</p>");
    /// assert_eq!(response.status, Some(200));
    /// ```
    pub fn with_status(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.0.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a header as raw bytes (see [`MockResponse::raw_headers`]).
    ///
    /// # Examples
    /// ```
    /// let response = host_test::MockResponse::with_status(200).header_bytes(b"x-\xff", b"v");
    /// assert_eq!(response.raw_headers, vec![(b"x-\xff".to_vec(), b"v".to_vec())]);
    /// ```
    #[must_use]
    pub fn header_bytes(mut self, name: &[u8], value: &[u8]) -> Self {
        self.raw_headers.push((name.to_vec(), value.to_vec()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }
}

/// How a mocked callout cluster answers (by default: 200, empty, at once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMock {
    /// The HTTP answer (also used for gRPC: `body` is the message bytes).
    pub response: MockResponse,
    /// gRPC status of a gRPC call; 0 (OK) by default.
    pub grpc_status: u32,
    /// A gRPC call's answer message as bytes, used instead of
    /// `response.body` when set: protobuf is binary, the body is text.
    pub message: Option<Vec<u8>>,
    /// Virtual time before the answer arrives.
    pub delay: Duration,
    /// The cluster accepts the call but never answers: it fails at the
    /// call's timeout, as an unreachable upstream does in Envoy.
    pub hang: bool,
    /// The connection fails at once (Envoy: on_http_call_response with no
    /// headers; gRPC: close with status 14 UNAVAILABLE).
    pub reset: bool,
}

/// What kind of callout is pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutKind {
    /// `proxy_http_call`.
    Http,
    /// `proxy_grpc_call` (unary).
    GrpcCall,
    /// `proxy_grpc_stream`: answers every message sent on it.
    GrpcStream,
    /// The close of a gRPC stream after the filter ended its side.
    GrpcStreamClose,
}

/// A callout waiting for its virtual due time.
#[derive(Debug, Clone)]
pub struct PendingCallout {
    /// Filter index and worker of the calling VM.
    pub vm: (usize, u32),
    /// Context that made the call; the answer goes to it.
    pub context_id: u32,
    /// Token returned to the guest.
    pub token: u32,
    /// Kind of call.
    pub kind: CalloutKind,
    /// When the answer (or the timeout) is delivered.
    pub due_ns: u64,
    /// `None` means failure: timeout or reset.
    pub answer: Option<ClusterMock>,
}

/// A callout the filter made, kept for assertions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CalloutRecord {
    /// Filter display name.
    pub filter: String,
    /// Target cluster.
    pub cluster: String,
    /// HTTP headers, or gRPC initial metadata.
    pub headers: Pairs,
    /// Body or gRPC message.
    pub body: Vec<u8>,
    /// gRPC `service/method`, empty for HTTP.
    pub grpc_method: String,
    /// Timeout in milliseconds.
    pub timeout_ms: u32,
}

/// A call of a foreign function, such as `clear_route_cache`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForeignCall {
    /// Filter display name.
    pub filter: String,
    /// Function name.
    pub function: String,
    /// The stream it was called for, if any.
    pub stream: Option<StreamId>,
}

/// Something a filter asked for during a callback that the chain acts on
/// after the callback returns (as Envoy defers them too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `proxy_continue_stream`.
    Continue {
        /// Stream.
        stream: StreamId,
        /// Filter index.
        filter: usize,
        /// Direction.
        direction: Direction,
    },
    /// `proxy_close_stream`: Envoy resets the stream.
    Close {
        /// Stream.
        stream: StreamId,
    },
    /// `proxy_send_local_response`.
    LocalResponse {
        /// Stream.
        stream: StreamId,
        /// Filter index.
        filter: usize,
        /// The reply.
        reply: LocalReply,
    },
    /// `proxy_done` from a root context.
    Done {
        /// Filter index.
        filter: usize,
        /// Worker.
        worker: u32,
    },
    /// A queue got an item: its owner's `on_queue_ready` is due.
    QueueReady {
        /// Owner (filter index, worker, root context id).
        owner: (usize, u32, u32),
        /// Queue token.
        token: u32,
    },
}

/// A response a filter generated itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// Response code details, as Envoy records them.
    pub details: String,
    /// Body.
    pub body: Vec<u8>,
    /// Extra headers.
    pub headers: Pairs,
    /// gRPC status, if the filter gave one.
    pub grpc_status: Option<u32>,
}

/// The per-stream data every filter of the chain sees.
#[derive(Debug, Clone, Default)]
pub struct StreamData {
    /// Worker the stream runs on.
    pub worker: u32,
    /// Request headers, pseudo-headers first.
    pub request_headers: Pairs,
    /// Request body received so far.
    pub request_body: Vec<u8>,
    /// Request trailers.
    pub request_trailers: Pairs,
    /// Response headers (from the upstream or a local reply).
    pub response_headers: Pairs,
    /// Response body.
    pub response_body: Vec<u8>,
    /// Response trailers.
    pub response_trailers: Pairs,
    /// Whether response headers exist yet.
    pub has_response: bool,
    /// Values filters set with `proxy_set_property` on this stream.
    pub set_properties: HashMap<String, Vec<u8>>,
    /// Stream start on the wall clock.
    pub start_ns: u64,
    /// Response code details (`via_upstream` or a local reply's).
    pub response_details: String,
    /// Upstream cluster the router picked.
    pub cluster: String,
}

/// How many log lines, callouts and foreign calls a host keeps: the most
/// recent `RECORD_KEEP` to `2 * RECORD_KEEP`, so a long run (a benchmark of a
/// million requests) keeps flat memory while tests see everything recent.
pub const RECORD_KEEP: usize = 4096;

/// Appends `item`, dropping the oldest `RECORD_KEEP` entries once the list
/// holds twice that (amortised O(1)).
pub fn keep_recent<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= 2 * RECORD_KEEP {
        list.drain(..RECORD_KEEP);
    }
    list.push(item);
}

/// One `proxy_get_shared_data` that found a value, as a [`SharedDataHook`]
/// sees it.
#[derive(Debug, Clone, Copy)]
pub struct SharedRead<'a> {
    /// Display name of the reading filter.
    pub filter: &'a str,
    /// Worker (VM) index of the reader.
    pub worker: u32,
    /// The key.
    pub key: &'a [u8],
    /// The value the guest just received.
    pub value: &'a [u8],
}

/// Runs after a guest's `proxy_get_shared_data` found a value and before the
/// guest goes on. Returning `Some(bytes)` stores them under a new CAS stamp,
/// as another worker's write landing between this guest's read and its
/// compare-and-swap would; the guest still holds the old stamp, so its next
/// CAS write of that key fails with `CasMismatch`.
///
/// host-test runs each callback to completion on one thread, so without this
/// hook no other VM can write between a VM's get and its set. The hook
/// interleaves *writes* at that granularity (it cannot run another VM's code
/// there), which is what a filter's CAS retry loop has to survive.
pub type SharedDataHook = Box<dyn FnMut(&SharedRead<'_>) -> Option<Vec<u8>>>;

/// Holds the optional [`SharedDataHook`] (a closure has no `Debug`).
#[derive(Default)]
pub struct HookSlot(pub Option<SharedDataHook>);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "HookSlot(set)"
        } else {
            "HookSlot(none)"
        })
    }
}

/// Computes a cluster's answer from the call itself (the gRPC message or
/// HTTP request), so a test can run a model service in-process: a fake
/// rate-limit service that decodes the request and counts.
pub type Responder = Box<dyn FnMut(&CalloutRecord) -> ClusterMock>;

/// Holds the [`Responder`]s by cluster name (a closure has no `Debug`).
#[derive(Default)]
pub struct Responders(pub HashMap<String, Responder>);

impl std::fmt::Debug for Responders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// Everything the VMs of one host share.
#[derive(Debug)]
pub struct Shared {
    /// The virtual clock.
    pub clock: Clock,
    /// WASI randomness.
    pub rng: SeededRng,
    /// Shared data, per `vm_id` as in proxy-wasm-cpp-host.
    pub shared_data: HashMap<(String, Vec<u8>), SharedValue>,
    /// Last CAS stamp handed out; stamps start at 1 so 0 can mean "no CAS".
    pub last_cas: u32,
    /// Shared queues; token = index + 1.
    pub queues: Vec<Queue>,
    /// Metrics, shared process-wide as Envoy's stats are.
    pub metrics: MetricRegistry,
    /// What the filters logged (the most recent, see [`RECORD_KEEP`]).
    pub logs: Vec<LogRecord>,
    /// Level below which guest log calls are dropped (`proxy_get_log_level`).
    pub log_level: LogLevel,
    /// Streams in flight.
    pub streams: HashMap<StreamId, StreamData>,
    /// Effects of the callback that just ran.
    pub effects: Vec<Effect>,
    /// Callouts not yet answered.
    pub pending: Vec<PendingCallout>,
    /// Callouts made (the most recent, see [`RECORD_KEEP`]).
    pub callouts: Vec<CalloutRecord>,
    /// Foreign-function calls made (the most recent, see [`RECORD_KEEP`]).
    pub foreign_calls: Vec<ForeignCall>,
    /// Mocked callout clusters by name.
    pub clusters: HashMap<String, ClusterMock>,
    /// Clusters whose answer a closure computes; they win over `clusters`.
    pub responders: Responders,
    /// Host-level properties (`node.id`, `source.address`, ...).
    pub properties: HashMap<String, PropertyValue>,
    /// Environment variables WASI shows the guests.
    pub env: Vec<(String, String)>,
    /// Test hook run after each successful shared-data read.
    pub shared_data_hook: HookSlot,
}

impl Shared {
    /// Fresh state: clock at [`Clock::DEFAULT_START_NS`], RNG seeded with 0.
    pub fn new() -> Self {
        Self {
            clock: Clock {
                now_ns: Clock::DEFAULT_START_NS,
                start_ns: Clock::DEFAULT_START_NS,
            },
            rng: SeededRng::new(0),
            shared_data: HashMap::new(),
            last_cas: 0,
            queues: Vec::new(),
            metrics: MetricRegistry::default(),
            logs: Vec::new(),
            log_level: LogLevel::Trace,
            streams: HashMap::new(),
            effects: Vec::new(),
            pending: Vec::new(),
            callouts: Vec::new(),
            foreign_calls: Vec::new(),
            clusters: HashMap::new(),
            responders: Responders::default(),
            properties: HashMap::new(),
            env: Vec::new(),
            shared_data_hook: HookSlot(None),
        }
    }

    /// The next CAS stamp, never 0.
    pub fn next_cas(&mut self) -> u32 {
        self.last_cas = self.last_cas.wrapping_add(1).max(1);
        self.last_cas
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_the_recent_ones_and_stay_bounded() {
        let mut list = Vec::new();
        for i in 0..5 * RECORD_KEEP {
            keep_recent(&mut list, i);
        }
        assert!(list.len() <= 2 * RECORD_KEEP);
        assert_eq!(list.last(), Some(&(5 * RECORD_KEEP - 1)));
        assert!(list.len() >= RECORD_KEEP);
    }
}
