//! Shared setup for the criterion benches and the `lifecycles` callgrind
//! driver: where the built `.wasm` files are, and the exact configs,
//! requests and upstream answers each measured case uses, so every tool
//! measures the same thing.
//!
//! Nothing here is timed. Setup failures (a missing `.wasm`, a filter that
//! refuses its config) end the process with one line saying what to do,
//! because a bench that silently measured an error path would be worse than
//! none.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use host_test::yaml_types::HeaderList;
use host_test::{FilterSpec, Host, MockResponse, Request};

/// `profile: owasp`, the security-headers default made explicit.
pub const SECURITY_HEADERS_CONFIG: &str = r#"{"profile":"owasp"}"#;

/// The complete example of `filters/metrics/README.md`, every dimension on.
pub const METRICS_CONFIG: &str = r#"{
  "prefix": "mesh",
  "dimensions": {
    "method": true,
    "response_code": true,
    "response_code_class": true,
    "version": {"header": "x-canary-version", "default": "unknown", "max_values": 16},
    "route": {"prefixes": ["/api", "/admin", "/health"], "default": "other"}
  },
  "histogram_buckets_ms": [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
  "max_label_value_len": 64
}"#;

/// rate-limit: one rule keyed on the `x-user` header, a bucket of 10^9
/// tokens that no bench run drains (every request takes the admit path: one
/// shared-data read and one CAS write), `draft` headers on every answer.
/// The same config as the Envoy side-by-side bench (`tests/e2e`).
pub const RATE_LIMIT_CONFIG: &str = r#"{"rules":[{"name":"per_client","key":[{"header":"x-user"}],
"token_bucket":{"max_tokens":1000000000,"tokens_per_fill":1,"fill_interval":"3600s"}}],
"response":{"headers":"draft"}}"#;

/// The complete example of `filters/canary-router/README.md` (the issue's
/// config): four rules (header, cookie, `user-agent` regex, query), an 80/20
/// split, `hash_on` `x-user-id` / cookie `session` / `x-jwt-sub`, a sticky
/// cookie and the response echo. It reads cookies, so the filter fetches the
/// request header map once. The Envoy side-by-side bench (`tests/e2e`) uses
/// the same config.
pub const CANARY_ROUTER_CONFIG: &str = r#"{
  "route_header": "x-canary-version",
  "rules": [
    {"match": {"headers": [{"name": "x-canary", "exact": "always"}]}, "version": "v2"},
    {"match": {"cookies": [{"name": "canary", "exact": "true"}]}, "version": "v2"},
    {"match": {"headers": [{"name": "user-agent", "regex": ".*Firefox.*"}]}, "version": "v2"},
    {"match": {"query_params": [{"name": "version", "exact": "stable"}]}, "version": "v1"}
  ],
  "split": [{"version": "v1", "weight": 80}, {"version": "v2", "weight": 20}],
  "hash_on": [{"header": "x-user-id"}, {"cookie": "session"}, {"header": "x-jwt-sub"}],
  "sticky_cookie": {"name": "canary-version", "max_age_seconds": 86400, "path": "/", "secure": false},
  "response_header": true,
  "clear_route_cache": true
}"#;

/// The canary-router bench request's headers beyond the pseudo-headers, as
/// the Envoy bench sends them: a user id to hash, a `user-agent` the regex
/// rule scans (no match), and a client-sent route header the filter must
/// overwrite.
pub const CANARY_ROUTER_HEADERS: [(&str, &str); 3] = [
    ("x-user-id", "user-42"),
    ("user-agent", "envoy-bench"),
    ("x-canary-version", "v2"),
];

/// A measured filter case: which module, which config, what traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// The `noop` fixture: host cost only, the baseline for ratios.
    Noop,
    /// security-headers, OWASP profile, https request, HTML answer with
    /// `server` and `x-powered-by` to strip.
    SecurityHeaders,
    /// metrics, README example config, every dimension on.
    Metrics,
    /// rate-limit, [`RATE_LIMIT_CONFIG`], one client.
    RateLimit,
    /// canary-router, [`CANARY_ROUTER_CONFIG`], a request with `x-user-id`
    /// (no rule matches; the key is hashed onto the split, the sticky cookie
    /// is set on the answer).
    CanaryRouter,
}

impl Case {
    /// Every case, baseline first.
    pub const ALL: [Case; 5] = [
        Case::Noop,
        Case::SecurityHeaders,
        Case::Metrics,
        Case::RateLimit,
        Case::CanaryRouter,
    ];

    /// Short name used as the bench id and on the driver's command line.
    pub fn name(self) -> &'static str {
        match self {
            Case::Noop => "noop",
            Case::SecurityHeaders => "security_headers",
            Case::Metrics => "metrics",
            Case::RateLimit => "rate_limit",
            Case::CanaryRouter => "canary_router",
        }
    }

    /// Parses [`Case::name`].
    pub fn from_name(name: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|case| case.name() == name)
    }

    /// The module under `dist/`, as `make build fixtures` writes it.
    pub fn dist_file(self) -> &'static str {
        match self {
            Case::Noop => "fixtures/noop.wasm",
            Case::SecurityHeaders => "filters/security_headers.wasm",
            Case::Metrics => "filters/metrics.wasm",
            Case::RateLimit => "filters/rate_limit.wasm",
            Case::CanaryRouter => "filters/canary_router.wasm",
        }
    }

    /// The plugin configuration.
    pub fn config(self) -> &'static str {
        match self {
            Case::Noop => "",
            Case::SecurityHeaders => SECURITY_HEADERS_CONFIG,
            Case::Metrics => METRICS_CONFIG,
            Case::RateLimit => RATE_LIMIT_CONFIG,
            Case::CanaryRouter => CANARY_ROUTER_CONFIG,
        }
    }

    /// The request sent once per measured lifecycle.
    pub fn request(self) -> Request {
        match self {
            Case::Noop => Request::get("/"),
            Case::SecurityHeaders => Request::get("/").header(":scheme", "https"),
            Case::Metrics => Request::get("/api/users/42").header("x-canary-version", "v2"),
            Case::RateLimit => Request::get("/api/users/42").header("x-user", "bench-client"),
            Case::CanaryRouter => CANARY_ROUTER_HEADERS
                .into_iter()
                .fold(Request::get("/api/users/42"), |request, (name, value)| {
                    request.header(name, value)
                }),
        }
    }

    /// The upstream's answer.
    pub fn upstream(self) -> MockResponse {
        let headers = match self {
            Case::Noop | Case::Metrics | Case::RateLimit | Case::CanaryRouter => {
                vec![("content-type", "text/plain")]
            }
            Case::SecurityHeaders => vec![
                ("content-type", "text/html; charset=utf-8"),
                ("server", "nginx/1.25.3"),
                ("x-powered-by", "PHP/8.3.1"),
            ],
        };
        MockResponse {
            status: Some(200),
            headers: HeaderList(
                headers
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            body: "<!doctype html><title>ok</title>".to_owned(),
            ..MockResponse::default()
        }
    }

    /// A one-worker host with this case's filter loaded and its upstream
    /// set, after one checked warm-up request.
    pub fn host(self) -> Host {
        self.host_with(1, 1, &wasm(self.dist_file()))
    }

    /// A host with `workers` workers and `chain` copies of the filter from
    /// `path`, after one checked warm-up request. Ends the process on error.
    pub fn host_with(self, workers: u32, chain: usize, path: &Path) -> Host {
        let mut host = or_exit(Host::with_workers(workers), "creating the host");
        for index in 0..chain {
            let name = format!("{}-{index}", self.name());
            or_exit(
                host.add_filter(FilterSpec::file(&name, path).config(self.config())),
                "loading the filter",
            );
        }
        host.set_upstream(self.upstream());
        for _ in 0..workers {
            let exchange = host.send(self.request());
            let header_ok = match self {
                Case::SecurityHeaders => {
                    exchange.header("x-content-type-options").is_some()
                        && exchange.header("server").is_none()
                }
                // Admitted, and the draft headers say a token was taken.
                Case::RateLimit => exchange
                    .header("ratelimit")
                    .is_some_and(|v| v.contains(";r=99999999")),
                // Routed by the key's hash (the spoofed `v2` overwritten),
                // echoed, and the sticky cookie set.
                Case::CanaryRouter => {
                    let want = canary_router_version();
                    let want = want.as_str();
                    exchange
                        .upstream
                        .as_ref()
                        .and_then(|upstream| upstream.header("x-canary-version"))
                        .as_deref()
                        == Some(want)
                        && exchange.header("x-canary-version").as_deref() == Some(want)
                        && exchange
                            .header("set-cookie")
                            .is_some_and(|v| v.starts_with(&format!("canary-version={want};")))
                }
                Case::Noop | Case::Metrics => true,
            };
            if exchange.status != 200 || !exchange.failures.is_empty() || !header_ok {
                fail(&format!(
                    "{}: the warm-up request did not behave as expected (status {}, failures {:?}); the bench would measure an error path",
                    self.name(),
                    exchange.status,
                    exchange.failures
                ));
            }
        }
        host
    }
}

/// The version the canary-router bench request's `x-user-id` hashes to,
/// from the crate's own documented hash, so the warm-up check cannot agree
/// with a filter that ignored the key.
pub fn canary_router_version() -> String {
    let config = or_exit(
        canary_router::config::validate(CANARY_ROUTER_CONFIG.as_bytes()),
        "canary-router config",
    );
    let key = CANARY_ROUTER_HEADERS
        .iter()
        .find(|(name, _)| *name == "x-user-id")
        .map_or("", |(_, value)| value);
    let index = config
        .split
        .pick(canary_router::split::key_hash(key.as_bytes()));
    config
        .versions
        .get(index)
        .cloned()
        .unwrap_or_else(|| fail("canary-router: the split picked no version"))
}

/// The path of a built module, `dist/<relative>` at the repository root.
/// Ends the process with a hint to build it when it is missing.
pub fn wasm(relative: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(relative);
    if !path.is_file() {
        fail(&format!(
            "{} is missing: run `make build fixtures` at the repository root first",
            path.display()
        ));
    }
    path
}

/// Unwraps a setup result, or ends the process naming the step.
pub fn or_exit<T, E: std::fmt::Display>(result: Result<T, E>, step: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => fail(&format!("{step}: {error}")),
    }
}

/// Prints one line and exits with status 2 (the house CLI convention).
pub fn fail(message: &str) -> ! {
    eprintln!("benches: {message}");
    std::process::exit(2)
}
