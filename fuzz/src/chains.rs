//! The shipped `.wasm` filters in host-test, for the `filters` target: one
//! host per single filter, one with the five-filter chain and one with the
//! all-in-one bundle, each with its [`crate::fixtures`] config, and the check that an exchange ended the
//! way a filter meant it to.
//!
//! The modules come from `dist/filters` (`make build`), or from the
//! directory in `$FUZZ_DIST_DIR`.

use std::path::PathBuf;
use std::time::Duration;

use host_test::{Exchange, FilterSpec, Host};

use crate::fixtures;

/// Which filters a host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, arbitrary::Arbitrary)]
pub enum Chain {
    /// security_headers.wasm alone.
    SecurityHeaders,
    /// metrics.wasm alone.
    Metrics,
    /// rate_limit.wasm alone.
    RateLimit,
    /// canary_router.wasm alone.
    CanaryRouter,
    /// jwt_auth.wasm alone.
    JwtAuth,
    /// All five, in Istio's phase order: security-headers and jwt-auth
    /// (AUTHN), rate-limit and canary-router (AUTHZ), metrics (STATS).
    All,
    /// bundle.wasm: the five as stages of one module, one section each.
    Bundle,
}

impl Chain {
    /// Every chain, in [`Chain::index`] order.
    pub const ALL: [Chain; 7] = [
        Chain::SecurityHeaders,
        Chain::Metrics,
        Chain::RateLimit,
        Chain::CanaryRouter,
        Chain::JwtAuth,
        Chain::All,
        Chain::Bundle,
    ];

    /// Position in [`Chain::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// Where the shipped modules are.
#[must_use]
pub fn dist_dir() -> PathBuf {
    std::env::var_os("FUZZ_DIST_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/filters")),
        PathBuf::from,
    )
}

/// `(display name, module file stem, config)` of each filter, in chain order.
fn filters() -> [(&'static str, &'static str, String); 5] {
    [
        (
            "security-headers",
            "security_headers",
            fixtures::SECURITY_HEADERS_CONFIG.to_owned(),
        ),
        ("jwt-auth", "jwt_auth", fixtures::jwt_auth_config()),
        (
            "rate-limit",
            "rate_limit",
            fixtures::RATE_LIMIT_CONFIG.to_owned(),
        ),
        (
            "canary-router",
            "canary_router",
            fixtures::CANARY_ROUTER_CONFIG.to_owned(),
        ),
        ("metrics", "metrics", fixtures::METRICS_CONFIG.to_owned()),
    ]
}

/// `<dir>/<stem>.wasm`, which must exist.
fn module(dir: &std::path::Path, stem: &str) -> Result<PathBuf, String> {
    let path = dir.join(format!("{stem}.wasm"));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run `make build` first (or set FUZZ_DIST_DIR)",
            path.display()
        ))
    }
}

/// Builds the host for `chain` with two workers (requests alternate between
/// them, as between Envoy worker threads).
///
/// # Errors
/// A message naming the missing module or the filter that failed to load.
pub fn build(chain: Chain) -> Result<Host, String> {
    let dir = dist_dir();
    let mut host = Host::with_workers(2).map_err(|e| e.to_string())?;
    let stem = match chain {
        Chain::SecurityHeaders => Some("security_headers"),
        Chain::Metrics => Some("metrics"),
        Chain::RateLimit => Some("rate_limit"),
        Chain::CanaryRouter => Some("canary_router"),
        Chain::JwtAuth => Some("jwt_auth"),
        Chain::All => None,
        Chain::Bundle => {
            let path = module(&dir, "bundle")?;
            host.add_filter(FilterSpec::file("bundle", &path).config(fixtures::bundle_config()))
                .map_err(|e| e.to_string())?;
            return Ok(host);
        }
    };
    for (name, file, config) in filters() {
        if stem.is_some_and(|s| s != file) {
            continue;
        }
        let path = module(&dir, file)?;
        host.add_filter(FilterSpec::file(name, &path).config(config))
            .map_err(|e| e.to_string())?;
    }
    Ok(host)
}

/// Whether `exchange` ended as the filters meant it to: no callback failed
/// (trap, fuel, memory, exit), the stream neither stalled nor was reset,
/// and a 5xx reached the client only if the upstream sent it (no filter
/// here is configured to answer 5xx; a trapped filter's stream gets 503).
///
/// # Errors
/// What went wrong, for the crash report.
pub fn check(exchange: &Exchange, upstream_status: u16) -> Result<(), String> {
    if !exchange.failures.is_empty() {
        let failures: Vec<String> = exchange.failures.iter().map(|f| f.to_string()).collect();
        return Err(format!("filter failure: {}", failures.join("; ")));
    }
    if let Some(filter) = &exchange.stalled {
        return Err(format!("stream stalled in filter {filter:?}"));
    }
    if exchange.reset {
        return Err("stream reset".to_owned());
    }
    let passed_through = exchange.local_reply.is_none() && exchange.status == upstream_status;
    if exchange.status >= 500 && !passed_through {
        return Err(format!(
            "unintended {} (local reply: {:?})",
            exchange.status, exchange.local_reply
        ));
    }
    Ok(())
}

/// Host clock steps a target may take between requests: at most a minute,
/// so rate-limit buckets both drain and refill.
#[must_use]
pub fn step(millis: u16) -> Duration {
    Duration::from_millis(u64::from(millis) % 60_000)
}
