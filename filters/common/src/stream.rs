//! Resuming a paused stream and dispatching an HTTP or gRPC callout in a way that
//! works both in a filter's own module and inside the single-module bundle
//! (`filters/bundle`), which runs several filters as stages of one HTTP
//! context.
//!
//! In a filter's own module these are the plain host calls. The bundle calls
//! [`record`] once, and from then on:
//! - a resume only notes which stream asked ([`Resume`]): the bundle must
//!   first run the stages after the one that paused, and resumes the stream
//!   itself only if none of them pauses or replies (as Envoy would run the
//!   filters after a resumed one);
//! - a dispatched callout still goes to the host (and the SDK registers its
//!   token with the bundle's context), and the token is noted so the bundle
//!   can hand the answer to the stage that dispatched it.
//!
//! The bundle collects the notes with [`take`] after every stage callback.
//! A Wasm VM runs one thread, so thread-local state is the VM's state.
//! Filters that pause streams or make callouts must use these functions, not
//! the SDK's `resume_http_request` / `dispatch_http_call` directly, or the
//! bundle cannot see them.

use std::cell::RefCell;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// Which half of a stream a resume is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The request path (`proxy_continue_stream(HttpRequest)`).
    Request,
    /// The response path (`proxy_continue_stream(HttpResponse)`).
    Response,
}

/// A resume a stage asked for while the bundle was recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The stream (HTTP context id) to resume.
    pub context_id: u32,
    /// Which path to resume.
    pub direction: Direction,
}

/// What stages asked for since the last [`take`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Resumes, in the order asked.
    pub resumes: Vec<Resume>,
    /// Tokens of HTTP and gRPC callouts dispatched, in order.
    pub callouts: Vec<u32>,
}

impl Recorded {
    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.resumes.is_empty() && self.callouts.is_empty()
    }
}

thread_local! {
    /// `None`: a filter's own module (pass through). `Some`: the bundle.
    static RECORDER: RefCell<Option<Recorded>> = const { RefCell::new(None) };
}

/// Switches this VM to recording. The bundle calls it before it creates any
/// stage; a filter's own module never does.
pub fn record() {
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        if r.is_none() {
            *r = Some(Recorded::default());
        }
    });
}

/// Whether this VM records (runs inside the bundle).
#[must_use]
pub fn is_recording() -> bool {
    RECORDER.with(|r| r.borrow().is_some())
}

/// Takes what was recorded since the last call; empty when not recording.
/// Allocates nothing when nothing was recorded.
#[must_use]
pub fn take() -> Recorded {
    RECORDER.with(|r| match r.borrow_mut().as_mut() {
        Some(recorded) if !recorded.is_empty() => std::mem::take(recorded),
        _ => Recorded::default(),
    })
}

/// Notes `resume` if recording; `false` means "not recording, call the host".
fn note_resume(resume: Resume) -> bool {
    RECORDER.with(|r| match r.borrow_mut().as_mut() {
        Some(recorded) => {
            recorded.resumes.push(resume);
            true
        }
        None => false,
    })
}

fn note_callout(token: u32) {
    RECORDER.with(|r| {
        if let Some(recorded) = r.borrow_mut().as_mut() {
            recorded.callouts.push(token);
        }
    });
}

/// Resumes the request path of stream `context_id`, which must be the
/// effective context (the stream's own callback, or after
/// `set_effective_context`), as for the host call.
///
/// # Errors
/// The host's status (a filter's own module only; recording never fails).
pub fn resume_request(context_id: u32) -> Result<(), Status> {
    if note_resume(Resume {
        context_id,
        direction: Direction::Request,
    }) {
        return Ok(());
    }
    hostcalls::resume_http_request()
}

/// Resumes the response path of stream `context_id`; see [`resume_request`].
///
/// # Errors
/// The host's status (a filter's own module only).
pub fn resume_response(context_id: u32) -> Result<(), Status> {
    if note_resume(Resume {
        context_id,
        direction: Direction::Response,
    }) {
        return Ok(());
    }
    hostcalls::resume_http_response()
}

/// Dispatches an HTTP callout (the SDK's `hostcalls::dispatch_http_call`,
/// which registers the token with the active context) and, when recording,
/// notes its token.
///
/// # Errors
/// The host's status: `BadArgument` for an unknown cluster, for example.
pub fn dispatch_http_call(
    upstream: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    trailers: Vec<(&str, &str)>,
    timeout: Duration,
) -> Result<u32, Status> {
    let token = hostcalls::dispatch_http_call(upstream, headers, body, trailers, timeout)?;
    note_callout(token);
    Ok(token)
}

/// Dispatches a unary gRPC callout (the SDK's
/// `hostcalls::dispatch_grpc_call`, which registers the token with the
/// active context) and, when recording, notes its token like an HTTP
/// callout's: the bundle hands the answer to the stage that dispatched it.
///
/// # Errors
/// The host's status: Envoy answers `ParseFailure` for an unknown cluster.
pub fn dispatch_grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<u32, Status> {
    let token = hostcalls::dispatch_grpc_call(
        cluster,
        service,
        method,
        Vec::new(),
        Some(message),
        timeout,
    )?;
    note_callout(token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The recorder is thread-local and the test harness runs each test on
    // its own thread, so tests do not see each other's notes. Natively the
    // host calls do not link, so the tests use the recording half only.

    fn request(context_id: u32) -> Resume {
        Resume {
            context_id,
            direction: Direction::Request,
        }
    }

    #[test]
    fn recorded_resumes_are_taken_once_in_order() {
        record();
        assert!(is_recording());
        assert!(note_resume(request(7)));
        let response = Resume {
            context_id: 9,
            direction: Direction::Response,
        };
        assert!(note_resume(response));
        note_callout(3);
        let recorded = take();
        assert_eq!(recorded.resumes, vec![request(7), response]);
        assert_eq!(recorded.callouts, vec![3]);
        assert!(take().is_empty());
    }

    #[test]
    fn not_recording_notes_nothing() {
        assert!(!is_recording());
        assert!(!note_resume(request(1)), "must fall through to the host");
        note_callout(1);
        assert!(take().is_empty());
    }

    #[test]
    fn record_twice_keeps_pending_notes() {
        record();
        assert!(note_resume(request(1)));
        record();
        assert_eq!(take().resumes.len(), 1);
    }
}
