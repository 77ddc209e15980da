//! What a test sends and what it gets back: [`Request`], the upstream's
//! view of it ([`UpstreamRequest`]) and the finished [`Exchange`].

use crate::error::CallbackFailure;
use crate::shared::{MockResponse, Pairs};

/// A request to send through the filter chain.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Headers, including pseudo-headers; `:method`, `:path`, `:scheme` and
    /// `:authority` are filled in when missing.
    pub headers: Pairs,
    /// Body; empty means headers-only (end of stream on the headers).
    pub body: Vec<u8>,
    /// Trailers; none when empty.
    pub trailers: Pairs,
    /// What the upstream answers for this request only.
    pub upstream: Option<MockResponse>,
    /// Worker to run on; round-robin when `None`.
    pub worker: Option<u32>,
}

impl Request {
    /// A request with this method and path.
    ///
    /// # Examples
    /// ```
    /// let request = host_test::Request::new("GET", "/api").header("x-user", "alice");
    /// assert_eq!(request.headers.len(), 3);
    /// ```
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            headers: vec![
                (b":method".to_vec(), method.as_bytes().to_vec()),
                (b":path".to_vec(), path.as_bytes().to_vec()),
            ],
            ..Self::default()
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// Adds a header (name lower-cased).
    #[must_use]
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((
            name.to_ascii_lowercase().into_bytes(),
            value.as_ref().to_vec(),
        ));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self
    }

    /// Adds a trailer.
    #[must_use]
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.push((
            name.to_ascii_lowercase().into_bytes(),
            value.as_bytes().to_vec(),
        ));
        self
    }

    /// Sets what the upstream answers to this request.
    #[must_use]
    pub fn upstream(mut self, response: MockResponse) -> Self {
        self.upstream = Some(response);
        self
    }

    /// Runs the request on this worker.
    #[must_use]
    pub fn on_worker(mut self, worker: u32) -> Self {
        self.worker = Some(worker);
        self
    }
}

/// What the upstream received.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamRequest {
    /// Cluster the request was routed to.
    pub cluster: String,
    /// Headers after every filter ran.
    pub headers: Pairs,
    /// Body after every filter ran.
    pub body: Vec<u8>,
    /// Trailers after every filter ran.
    pub trailers: Pairs,
}

impl UpstreamRequest {
    /// First value of a header, lossily decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        first(&self.headers, name)
    }
}

/// Which filter answered locally, and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocalReplyInfo {
    /// Filter display name.
    pub filter: String,
    /// Status it sent.
    pub status: u16,
    /// Response code details.
    pub details: String,
}

/// The outcome of one request.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Exchange {
    /// Response status the client got (0 if the stream was reset).
    pub status: u16,
    /// Response headers the client got.
    pub headers: Pairs,
    /// Response body the client got.
    pub body: Vec<u8>,
    /// Response trailers.
    pub trailers: Pairs,
    /// What the upstream received; `None` if a filter answered first.
    pub upstream: Option<UpstreamRequest>,
    /// Set when a filter (or a failing filter) answered locally.
    pub local_reply: Option<LocalReplyInfo>,
    /// A filter closed (reset) the stream.
    pub reset: bool,
    /// Set when the stream stopped making progress: which filter held it.
    pub stalled: Option<String>,
    /// Callbacks that failed while this stream ran.
    pub failures: Vec<CallbackFailure>,
    /// Worker the stream ran on.
    pub worker: u32,
}

impl Exchange {
    /// First value of a response header, lossily decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        first(&self.headers, name)
    }

    /// Every value of a response header.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The body, lossily decoded.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// First value of header `name` (any case) in `pairs`, lossily decoded.
pub(crate) fn first(pairs: &Pairs, name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    pairs
        .iter()
        .find(|(k, _)| k.as_slice() == name.as_bytes())
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}
