//! filters/common's request-data helpers over request headers in the text
//! form ([`mesh_wasm_fuzz::text`]): cookie lookup across several `Cookie`
//! headers, query lookup in `:path`, X-Forwarded-For hop selection and
//! address parsing, header name/value validation, lenient decoding, and
//! protobuf durations (`@duration` directives and every value).
//!
//! Findings besides a panic: a cookie value holding `;`, a query value
//! holding `&` or `#`, a path without query that still has one, an XFF hop
//! holding `,`, zero trusted hops not meaning the peer, a valid header value
//! with CR/LF/NUL, and a duration that does not survive a round trip.
#![no_main]

use filter_common::{cookie, query, xff};
use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::text;

/// Names the filters look up, plus one from the input (`@name`).
const COOKIES: [&str; 5] = ["session", "canary", "canary-version", "session-jwt", ""];
const PARAMS: [&str; 6] = ["version", "uid", "api_key", "access_token", "jwt", ""];

fuzz_target!(|data: &[u8]| {
    for request in text::parse(data) {
        let extra = request
            .directive("name")
            .map(|n| String::from_utf8_lossy(n).into_owned());
        let cookies = COOKIES.iter().map(|s| (*s).to_owned()).chain(extra.clone());
        for name in cookies {
            if let Some(value) = cookie::find(request.header_values("cookie"), &name) {
                assert!(!value.contains(&b';'), "cookie {name:?} value {value:?}");
            }
        }
        for path in request.header_values(":path") {
            for name in PARAMS.iter().map(|s| (*s).to_owned()).chain(extra.clone()) {
                if let Some(value) = query::find(path, &name) {
                    assert!(!value.contains(&b'&') && !value.contains(&b'#'));
                }
            }
            let bare = query::path_only(path);
            assert!(path.starts_with(bare) && !bare.contains(&b'?') && !bare.contains(&b'#'));
        }
        let peer = request.directive("peer").unwrap_or(b"10.0.0.1:45000");
        for chain in request.header_values("x-forwarded-for") {
            for hops in 0..=4 {
                if let Some(hop) = xff::nth_from_right(chain, hops) {
                    assert!(!hop.contains(&b','));
                    let _ = xff::parse_addr(hop);
                }
                let ip = xff::client_address(Some(chain), Some(peer), hops);
                if hops == 0 {
                    assert_eq!(ip, xff::parse_addr(peer), "zero hops must mean the peer");
                }
            }
        }
        let durations = request.directives.iter().filter(|(n, _)| n == "duration");
        for (name, value) in request.headers.iter().chain(durations) {
            let _ = filter_common::validate_header_name(name);
            let decoded = filter_common::decode_lossy(value);
            if let Ok(text) = std::str::from_utf8(value) {
                assert_eq!(decoded, text);
            }
            if filter_common::validate_header_value(&decoded).is_ok() {
                assert!(!decoded.contains(['\r', '\n', '\0']));
            }
            if let Ok(d) = filter_common::parse_duration(&decoded) {
                let again = format!("{}.{:09}s", d.as_secs(), d.subsec_nanos());
                assert_eq!(filter_common::parse_duration(&again), Ok(d), "{decoded:?}");
            }
        }
    }
});
