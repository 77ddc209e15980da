//! security-headers' config parser, then the plan it builds and one
//! hardening pass over a typical upstream response.
//!
//! Findings besides a panic: an error message not prefixed with the filter
//! name, and a hardening pass that is not idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use security_headers::harden;

fuzz_target!(|data: &[u8]| {
    let config = match security_headers::config::validate(data) {
        Ok(config) => config,
        Err(e) => {
            assert!(e.to_string().starts_with("security-headers: "), "{e}");
            return;
        }
    };
    let plan = harden::Plan::new(&config);
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":status".into(), b"200".to_vec()),
        ("content-type".into(), b"text/html; charset=utf-8".to_vec()),
        ("server".into(), b"nginx".to_vec()),
        ("x-frame-options".into(), b"SAMEORIGIN".to_vec()),
    ];
    for https in [false, true] {
        let mut once = headers.clone();
        harden::harden(&plan, https, &once).apply_to(&mut once);
        assert!(
            harden::harden(&plan, https, &once).is_empty(),
            "a second pass changed the response again"
        );
    }
    harden::harden(&plan, true, &headers).apply_to(&mut headers);
});
