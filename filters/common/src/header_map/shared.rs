//! Request-header reads shared by the stages of one bundle walk.
//!
//! In the bundle, several stages read the same request headers in one
//! callback: security-headers `x-forwarded-proto`, jwt-auth the whole map,
//! rate-limit its key header, canary-router and metrics the whole map again.
//! In Envoy's V8 each read that returns data costs about 0.5–0.9 µs, mostly
//! the host calling back into the VM to allocate the result. Inside
//! [`share_request_headers`], the first read takes the whole request map
//! once, and later reads are answered from that copy.
//!
//! The copy stays true because every request-header write the stages make
//! goes through this module's writers, which update it the way Envoy
//! updates its map: a replace drops every earlier value of the name and
//! adds one, a remove drops them all, and a whole-map write replaces the
//! copy. An add to a name already present drops the copy instead, to be
//! read again on the next read, because Envoy joins some headers' values
//! into one entry (its "inline" headers) and keeps the others apart. A write
//! the host refuses drops the copy too.
//!
//! Outside [`share_request_headers`] (every filter on its own, and the
//! bundle's other callbacks), each function is exactly the host call it
//! names.

use std::cell::RefCell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

use super::RawHeader;

/// The copy of the request map, as far as the stages have seen it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    headers: Vec<RawHeader>,
}

impl Snapshot {
    /// A copy of `headers`, in the host's order.
    #[must_use]
    pub fn new(headers: Vec<RawHeader>) -> Self {
        Self { headers }
    }

    /// The headers.
    #[must_use]
    pub fn headers(&self) -> &[RawHeader] {
        &self.headers
    }

    /// What `proxy_get_header_map_value` answers on Envoy: the first value
    /// of `name`, or `None` when it is absent or empty (Envoy hands an empty
    /// value back as a null pointer, which the SDK reads as `None`).
    #[must_use]
    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
            .filter(|v| !v.is_empty())
    }

    /// After `proxy_replace_header_map_value` (Envoy's `setCopy`): every
    /// earlier value of `name` is gone and one is added.
    pub fn replaced(&mut self, name: &str, value: &[u8]) {
        self.removed(name);
        self.headers
            .push((name.as_bytes().to_vec(), value.to_vec()));
    }

    /// After `proxy_remove_header_map_value`: every value of `name` is gone.
    pub fn removed(&mut self, name: &str) {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_bytes()));
    }

    /// After `proxy_add_header_map_value`; `false` when `name` was already
    /// present, where the copy cannot know whether Envoy joined the values,
    /// so the caller drops it.
    #[must_use]
    pub fn added(&mut self, name: &str, value: &[u8]) -> bool {
        if self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        {
            return false;
        }
        self.headers
            .push((name.as_bytes().to_vec(), value.to_vec()));
        true
    }
}

/// Whether reads are shared, and what has been read.
enum Share {
    /// Not inside [`share_request_headers`].
    Off,
    /// Inside, nothing read yet (or the copy was dropped).
    Unread,
    /// Inside, with the copy.
    Read(Snapshot),
}

thread_local! {
    // One VM is one thread; callbacks never overlap.
    static SHARE: RefCell<Share> = const { RefCell::new(Share::Off) };
}

/// Runs `walk` with request-header reads shared (see the module doc), and
/// forgets the copy afterwards: other filters may change the map before the
/// next callback.
pub fn share_request_headers<T>(walk: impl FnOnce() -> T) -> T {
    set(Share::Unread);
    let result = walk();
    set(Share::Off);
    result
}

fn set(share: Share) {
    SHARE.with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = share;
        }
    });
}

/// The copy, read from the host first if sharing and not yet read; `None`
/// when not sharing or the host refused.
fn with_snapshot<T>(f: impl FnOnce(&mut Snapshot) -> T) -> Option<T> {
    SHARE.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if matches!(*slot, Share::Unread) {
            *slot = Share::Read(Snapshot::new(super::get(MapType::HttpRequestHeaders).ok()?));
        }
        match &mut *slot {
            Share::Read(snapshot) => Some(f(snapshot)),
            Share::Off | Share::Unread => None,
        }
    })
}

/// Applies a write to the copy, if there is one; a refused write or an
/// edit the copy cannot follow drops it.
fn after_write(result: &Result<(), Status>, edit: impl FnOnce(&mut Snapshot) -> bool) {
    SHARE.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return;
        };
        if let Share::Read(snapshot) = &mut *slot {
            if result.is_err() || !edit(snapshot) {
                *slot = Share::Unread;
            }
        }
    });
}

fn shared(map: MapType) -> bool {
    map == MapType::HttpRequestHeaders
        && SHARE.with(|cell| cell.try_borrow().is_ok_and(|s| !matches!(*s, Share::Off)))
}

/// The whole map (see [`super::get`]); from the copy when shared.
///
/// # Errors
/// As [`super::get`].
pub fn map(map_type: MapType) -> Result<Vec<RawHeader>, super::ReadError> {
    if shared(map_type) {
        if let Some(headers) = with_snapshot(|s| s.headers().to_vec()) {
            return Ok(headers);
        }
    }
    super::get(map_type)
}

/// One header's first value (`proxy_get_header_map_value`); `None` when it
/// is absent, empty or the host refused. From the copy when shared.
#[must_use]
pub fn value(map: MapType, name: &str) -> Option<Vec<u8>> {
    if shared(map) {
        if let Some(value) = with_snapshot(|s| s.value(name).map(<[u8]>::to_vec)) {
            return value;
        }
    }
    hostcalls::get_map_value_bytes(map, name)
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
}

/// `proxy_replace_header_map_value`, or with `None`
/// `proxy_remove_header_map_value`.
///
/// # Errors
/// The host's status.
pub fn replace(map: MapType, name: &str, value: Option<&[u8]>) -> Result<(), Status> {
    let result = hostcalls::set_map_value_bytes(map, name, value);
    if map == MapType::HttpRequestHeaders {
        after_write(&result, |s| {
            match value {
                Some(value) => s.replaced(name, value),
                None => s.removed(name),
            }
            true
        });
    }
    result
}

/// `proxy_add_header_map_value`.
///
/// # Errors
/// The host's status.
pub fn add(map: MapType, name: &str, value: &[u8]) -> Result<(), Status> {
    let result = hostcalls::add_map_value_bytes(map, name, value);
    if map == MapType::HttpRequestHeaders {
        after_write(&result, |s| s.added(name, value));
    }
    result
}

/// `proxy_set_header_map_pairs`: the map becomes `pairs`.
///
/// # Errors
/// The host's status.
pub fn set_all(map: MapType, pairs: &[(&str, &[u8])]) -> Result<(), Status> {
    let result = hostcalls::set_map_bytes(map, pairs.to_vec());
    if map == MapType::HttpRequestHeaders {
        after_write(&result, |s| {
            *s = Snapshot::new(
                pairs
                    .iter()
                    .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
                    .collect(),
            );
            true
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(pairs: &[(&str, &str)]) -> Snapshot {
        Snapshot::new(
            pairs
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn a_read_gives_the_first_value_and_none_for_absent_or_empty() {
        let s = snapshot(&[("cookie", "a=1"), ("x-empty", ""), ("cookie", "b=2")]);
        assert_eq!(s.value("cookie"), Some(&b"a=1"[..]));
        assert_eq!(s.value("Cookie"), Some(&b"a=1"[..]));
        assert_eq!(s.value("x-empty"), None);
        assert_eq!(s.value("x-absent"), None);
    }

    #[test]
    fn writes_change_the_copy_as_envoy_changes_its_map() {
        let mut s = snapshot(&[("a", "1"), ("x-claim", "spoofed"), ("x-claim", "again")]);
        s.replaced("x-claim", b"real");
        assert_eq!(s, snapshot(&[("a", "1"), ("x-claim", "real")]));
        s.removed("A");
        assert_eq!(s, snapshot(&[("x-claim", "real")]));
        assert!(s.added("x-new", b"n"));
        assert_eq!(s.value("x-new"), Some(&b"n"[..]));
        // A second value of a present name: the copy cannot follow.
        assert!(!s.added("x-new", b"m"));
    }

    #[test]
    fn outside_a_shared_walk_nothing_is_shared() {
        assert!(!shared(MapType::HttpRequestHeaders));
        share_request_headers(|| {
            assert!(shared(MapType::HttpRequestHeaders));
            assert!(!shared(MapType::HttpResponseHeaders));
        });
        assert!(!shared(MapType::HttpRequestHeaders));
    }
}
