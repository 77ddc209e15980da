//! The `owasp` profile's output checked against the OWASP Secure Headers
//! Project's published lists, typed in here separately from `profiles.rs` so
//! a slip in either copy fails the build.
//!
//! Source: OWASP/www-project-secure-headers, `ci/headers_add.json` and
//! `ci/headers_remove.json`, `last_update_utc` "2024-09-02 21:54:45"
//! (commit 213b0f1476d2242e7c497b9ab6f81fcc991e40e7). Names as published.

// A test crate: a failing unwrap or panic here is a failing test.
#![allow(clippy::unwrap_used, clippy::panic)]

use security_headers::config::validate;
use security_headers::harden::{harden, Plan};

/// `ci/headers_add.json`: every header rule, name and value.
const ADD: &[(&str, &str)] = &[
    ("Cache-Control", "no-store, max-age=0"),
    ("Clear-Site-Data", r#""cache","cookies","storage""#),
    ("Content-Security-Policy", "default-src 'self'; form-action 'self'; object-src 'none'; frame-ancestors 'none'; upgrade-insecure-requests; block-all-mixed-content"),
    ("Cross-Origin-Embedder-Policy", "require-corp"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Permissions-Policy", "accelerometer=(), autoplay=(), camera=(), cross-origin-isolated=(), display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), keyboard-map=(), magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), publickey-credentials-get=(), screen-wake-lock=(), sync-xhr=(self), usb=(), web-share=(), xr-spatial-tracking=(), clipboard-read=(), clipboard-write=(), gamepad=(), hid=(), idle-detection=(), interest-cohort=(), serial=(), unload=()"),
    ("Referrer-Policy", "no-referrer"),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "deny"),
    ("X-Permitted-Cross-Domain-Policies", "none"),
];

/// `ci/headers_remove.json`.
const REMOVE: &[&str] = &[
    "$wsep",
    "Host-Header",
    "K-Proxy-Request",
    "Liferay-Portal",
    "OracleCommerceCloud-Version",
    "Pega-Host",
    "Powered-By",
    "Product",
    "Server",
    "SourceMap",
    "X-AspNet-Version",
    "X-AspNetMvc-Version",
    "X-Atmosphere-error",
    "X-Atmosphere-first-request",
    "X-Atmosphere-tracking-id",
    "X-B3-ParentSpanId",
    "X-B3-Sampled",
    "X-B3-SpanId",
    "X-B3-TraceId",
    "X-BEServer",
    "X-CF-Powered-By",
    "X-CMS",
    "X-CalculatedBETarget",
    "X-Cocoon-Version",
    "X-Content-Encoded-By",
    "X-DiagInfo",
    "X-Envoy-Attempt-Count",
    "X-Envoy-External-Address",
    "X-Envoy-Internal",
    "X-Envoy-Original-Dst-Host",
    "X-Envoy-Upstream-Service-Time",
    "X-FEServer",
    "X-Framework",
    "X-Generated-By",
    "X-Generator",
    "X-Jitsi-Release",
    "X-Joomla-Version",
    "X-Kubernetes-PF-FlowSchema-UI",
    "X-Kubernetes-PF-PriorityLevel-UID",
    "X-LiteSpeed-Cache",
    "X-LiteSpeed-Purge",
    "X-LiteSpeed-Tag",
    "X-LiteSpeed-Vary",
    "X-Litespeed-Cache-Control",
    "X-Mod-Pagespeed",
    "X-Nextjs-Cache",
    "X-Nextjs-Matched-Path",
    "X-Nextjs-Page",
    "X-Nextjs-Redirect",
    "X-OWA-Version",
    "X-Old-Content-Length",
    "X-OneAgent-JS-Injection",
    "X-Page-Speed",
    "X-Php-Version",
    "X-Powered-By",
    "X-Powered-By-Plesk",
    "X-Powered-CMS",
    "X-Redirect-By",
    "X-Server-Powered-By",
    "X-SourceFiles",
    "X-SourceMap",
    "X-Turbo-Charged-By",
    "X-Umbraco-Version",
    "X-Varnish-Backend",
    "X-Varnish-Server",
    "X-dtAgentId",
    "X-dtHealthCheck",
    "X-dtInjectedServlet",
    "X-ruxit-JS-Agent",
];

/// An https HTML response from an upstream that leaks every listed header,
/// under Envoy's lower-cased names, through the one-line default config.
fn owasp_output() -> Vec<(String, Vec<u8>)> {
    let plan = Plan::new(&validate(br#"{"profile": "owasp"}"#).unwrap());
    let mut upstream = vec![(
        "content-type".to_owned(),
        b"text/html; charset=utf-8".to_vec(),
    )];
    upstream.extend(
        REMOVE
            .iter()
            .map(|name| (name.to_ascii_lowercase(), b"leak".to_vec())),
    );
    let edits = harden(&plan, true, &upstream);
    assert!(!edits.is_empty(), "the owasp profile changed nothing");
    edits.apply_to(&mut upstream);
    upstream
}

#[test]
fn owasp_profile_output_satisfies_every_rule_of_the_owasp_add_list() {
    let out = owasp_output();
    for (name, value) in ADD {
        let found: Vec<&[u8]> = out
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect();
        assert_eq!(found, vec![value.as_bytes()], "{name}");
    }
}

#[test]
fn no_header_on_the_owasp_remove_list_survives_the_owasp_profile() {
    let out = owasp_output();
    for name in REMOVE {
        assert!(
            !out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)),
            "{name} survived"
        );
    }
    assert_eq!(
        out.len(),
        1 + ADD.len(),
        "only content-type and the added headers remain"
    );
}
