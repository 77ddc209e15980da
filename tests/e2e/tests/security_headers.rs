//! security-headers in a real Envoy: the owasp profile on upstream answers and
//! on Envoy's own local replies, HSTS only on https, CSP only on documents.
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e::{paths, Bootstrap, EchoUpstream, Envoy, EnvoyOptions, HttpFilter, Route, UpstreamConfig};
use security_headers::profiles::{OWASP_ADD, OWASP_REMOVE};

fn php_upstream(content_type: &str) -> EchoUpstream {
    EchoUpstream::start(UpstreamConfig {
        content_type: content_type.to_owned(),
        headers: vec![
            ("server".into(), "app".into()),
            ("x-powered-by".into(), "PHP/8.3".into()),
            ("x-aspnet-version".into(), "4.0.30319".into()),
        ],
    })
}

fn owasp_envoy(upstream: &EchoUpstream) -> Envoy {
    let bootstrap = Bootstrap::new()
        .filter(HttpFilter::wasm(
            "security_headers",
            &paths::filter_wasm("security_headers"),
            r#"{"profile":"owasp"}"#,
        ))
        .route("/app", Route::Upstream(upstream.addr()))
        .route(
            "/unavailable",
            Route::Direct {
                status: 503,
                body: "down".into(),
                headers: vec![],
            },
        );
    Envoy::start(&bootstrap)
}

#[test]
fn https_html_response_gets_every_owasp_header_and_loses_the_leak_headers() {
    let upstream = php_upstream("text/html; charset=utf-8");
    let envoy = owasp_envoy(&upstream);

    let response = envoy.get("/app/index.html", &[("x-forwarded-proto", "https")]);

    assert_eq!(response.status, 200, "{response:?}");
    for (name, value) in OWASP_ADD {
        assert_eq!(
            response.headers_named(name),
            vec![*value],
            "{name} in {:#?}",
            response.headers
        );
    }
    assert_eq!(response.header("x-powered-by"), None);
    assert_eq!(response.header("x-aspnet-version"), None);
    // The filter strips the app's `server: app`; Envoy's connection manager then
    // writes its own after the filter chain (server_header_transformation OVERWRITE).
    assert_eq!(response.headers_named("server"), vec!["envoy"]);
    // x-envoy-upstream-service-time is on the OWASP remove list and is added by
    // the router before the encoder filters run, so the filter removes it too.
    assert_eq!(response.header("x-envoy-upstream-service-time"), None);
    // The application saw the request, scheme hint included, and answered it.
    let seen = response.json();
    assert_eq!(seen["path"], "/app/index.html");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(upstream.seen().len(), 1);
}

#[test]
fn plain_http_json_response_gets_neither_hsts_nor_csp() {
    let upstream = php_upstream("application/json");
    let envoy = owasp_envoy(&upstream);

    let response = envoy.get("/app/api", &[]);

    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("strict-transport-security"),
        None,
        "{:#?}",
        response.headers
    );
    assert_eq!(response.header("content-security-policy"), None);
    assert_eq!(response.header("x-frame-options"), Some("deny"));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(response.header("x-powered-by"), None);
    // Envoy adds x-forwarded-proto itself when the client sent none: the
    // application (and the filter) see "http".
    assert_eq!(response.json()["headers"]["x-forwarded-proto"], "http");
}

#[test]
fn envoy_local_replies_are_hardened_too() {
    let upstream = php_upstream("text/html");
    let envoy = owasp_envoy(&upstream);

    // No route matches: the router's own 404. A direct_response 503.
    let not_found = envoy.get("/nowhere", &[("x-forwarded-proto", "https")]);
    let unavailable = envoy.get("/unavailable", &[("x-forwarded-proto", "https")]);

    assert_eq!(not_found.status, 404);
    assert_eq!(unavailable.status, 503);
    for response in [&not_found, &unavailable] {
        assert_eq!(
            response.header("x-frame-options"),
            Some("deny"),
            "{:#?}",
            response.headers
        );
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            response.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains")
        );
    }
    assert!(upstream.seen().is_empty());
}

#[test]
fn owasp_remove_list_is_what_the_test_upstream_leaks_from() {
    // Guards the test itself: the leak headers the upstream sends are on the list.
    for leak in [
        "server",
        "x-powered-by",
        "x-aspnet-version",
        "x-envoy-upstream-service-time",
    ] {
        assert!(OWASP_REMOVE.contains(&leak), "{leak}");
    }
}

#[test]
fn envoy_refuses_an_invalid_config_and_logs_the_field() {
    let upstream = php_upstream("text/html");
    let bootstrap = Bootstrap::new()
        .filter(HttpFilter::wasm(
            "security_headers",
            &paths::filter_wasm("security_headers"),
            r#"{"profile":"owasp","headers":{"x-a":"bad\u0000value"}}"#,
        ))
        .route("/", Route::Upstream(upstream.addr()));

    let failure = match Envoy::try_start_with(&bootstrap, &EnvoyOptions::default()) {
        Ok(envoy) => panic!("Envoy started on an invalid config; log:\n{}", envoy.log()),
        Err(failure) => failure,
    };

    assert!(
        failure.log.contains(r#"security-headers: headers["x-a"]"#),
        "{failure}"
    );
}
