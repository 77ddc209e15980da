//! security-headers' hardening of upstream responses in the text form
//! ([`mesh_wasm_fuzz::text`]): response headers are the `< ` lines; the
//! request's `:scheme` and `x-forwarded-proto` decide https. Plans: the
//! README's complete example, helmet in overwrite mode, and api.
//!
//! Findings besides a panic: a second pass that still changes the
//! response, and a whole-map write (`Edits::merged`) that differs from the
//! edits applied one by one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::{fixtures, text};
use security_headers::harden::{self, Plan};

fn plans() -> Vec<Plan> {
    [
        fixtures::SECURITY_HEADERS_CONFIG,
        r#"{"profile": "helmet", "mode": "overwrite", "remove": ["server"]}"#,
        r#"{"profile": "api", "hsts": {"https_only": false}}"#,
    ]
    .iter()
    .map(|json| {
        Plan::new(&security_headers::config::validate(json.as_bytes()).expect("valid fixture"))
    })
    .collect()
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static PLANS: Vec<Plan> = plans();
    }
    PLANS.with(|plans| {
        for request in text::parse(data) {
            let https = harden::is_https(
                request.header(":scheme"),
                request.header("x-forwarded-proto"),
            );
            for plan in plans {
                let mut headers = request.response.clone();
                let edits = harden::harden(plan, https, &headers);
                let merged: Vec<(String, Vec<u8>)> = edits
                    .merged(&headers)
                    .into_iter()
                    .map(|(n, v)| (n.to_owned(), v.to_vec()))
                    .collect();
                edits.apply_to(&mut headers);
                assert_eq!(merged, headers, "merged and applied edits differ");
                assert!(
                    harden::harden(plan, https, &headers).is_empty(),
                    "a second pass changed the response again"
                );
            }
        }
    });
});
