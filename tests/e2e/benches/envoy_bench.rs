//! Side-by-side cost of the filters inside a real Envoy.
//!
//! Envoy runs with one worker, answering a `direct_response` route (no
//! upstream), so the filter chain is most of the per-request work. The
//! configurations run in interleaved rounds (A B C ..., A B C ..., ...) so
//! drift in the machine's speed spreads over all of them; `--only` picks a
//! subset (by the ids in brackets) to keep a run short:
//!
//! - `none`: no HTTP filter but the router;
//! - `noop`: the `noop` fixture Wasm filter (the Wasm per-stream floor);
//! - `security-headers`: the shipped filter, `{"profile":"owasp"}`;
//! - `header-mutation`: native `envoy.filters.http.header_mutation` adding the
//!   owasp profile's headers (if absent) and removing its leak list: the
//!   native twin of the line above;
//! - `metrics`: the shipped filter with the README's complete example config;
//! - `rate-limit`: the shipped filter, one rule keyed on the request's
//!   `x-user` header, a bucket of 10^9 tokens (never empty during a run, so
//!   every request takes the admit path: one shared-data get and one CAS
//!   set), `draft` headers on every answer;
//! - `local-ratelimit`: native `envoy.filters.http.local_ratelimit` with the
//!   same per-`x-user` bucket (a wildcard descriptor fed by a
//!   `request_headers` action) and `x-ratelimit-*` headers on every answer:
//!   the native twin of the line above;
//! - `canary-router`: the shipped filter with its README's complete example
//!   config (four rules, 80/20 split, `hash_on` `x-user-id`, sticky cookie,
//!   response echo, `clear_route_cache`). The request's `x-user-id: user-42`
//!   hashes to `v1` (point 63 of 100), so no rule matches, the client's
//!   spoofed `x-canary-version: v2` is overwritten with `v1`, Envoy's
//!   `clear_route_cache` foreign function is called (the `direct_response`
//!   route is matched again), and the answer gets the echo and a
//!   `Set-Cookie`. The bench checks that before it measures.
//! - `jwt-auth`: the shipped filter verifying the request's RS256 token
//!   (tests/e2e/data's test key, inline JWKS) with its token cache on, the
//!   subject copied to `x-jwt-sub`; after the first request every one is a
//!   cache hit;
//! - `jwt-authn`: native `envoy.filters.http.jwt_authn` with the same config
//!   (the same JSON, which is the point of jwt-auth) and its cache: the
//!   native twin of the line above;
//! - `jwt-auth-uncached` and `jwt-authn-uncached`: the same two without the
//!   token cache, so every request's RS256 signature is verified; and
//!   `jwt-auth-<alg>` and `jwt-authn-<alg>` the same for each other
//!   algorithm jwt-auth supports (`rs384`, `rs512`, `ps256`, `ps384`,
//!   `ps512`, `es256`, `es384`, `es512`, `hs256`, `hs384`, `hs512`,
//!   `eddsa`), each with a key and token of its own (`alg_keys`);
//! - `wasm-chain`: security-headers, jwt-auth, rate-limit, canary-router and
//!   metrics as five separate Wasm filters, each with its config above, in
//!   the bundle's (and the shipped WasmPlugins') order;
//! - `bundle`: the same five configs as sections of one `bundle.wasm`
//!   filter: one VM and one HTTP context per request instead of five;
//! - `native-chain`: `jwt_authn`, `local_ratelimit` and `header_mutation` as
//!   above, the native filters that do the work of three of the five
//!   (native Envoy has no canary router or labelled-metrics filter).
//!   The bench checks that the chains answer with the same security headers
//!   and canary header, and that both JWT filters refuse a request without
//!   a token, before it measures.
//! - `global-floor`: the conformance fixture's `forward_grpc` making the
//!   same `ShouldRateLimit` call as `global-wasm`, then continuing: no
//!   header reads, decoding or response headers. Its cost over `none` is
//!   what Envoy charges any Wasm filter for one gRPC callout per request;
//!   `global-wasm` minus it is the rate-limit filter's own work.
//! - `global-baseline`, `global-wasm`, `global-native` (issue #11): mesh-wide
//!   rate limiting through the workspace's rate-limit service
//!   (`dist/bin/ratelimit-service`, from `make ratelimit-service`) on a
//!   throwaway Redis, both started once for the whole bench (and only when
//!   one of these is selected), with a limit of 10^9 per minute per `user`
//!   so nothing is ever denied. `global-wasm` is the rate-limit filter with
//!   one global rule (descriptor `[[user = x-user]]`) and no `match`, so it
//!   applies to every request without reading `:path`, as the native
//!   filter's route-level `rate_limits` apply to the whole route (with
//!   `match: {prefix: "/"}` the filter reads `:path`, one more header read
//!   per request); `global-native` is
//!   Envoy's `envoy.filters.http.ratelimit` with the route-level
//!   `request_headers` action giving the same descriptor: one
//!   `ShouldRateLimit` call per request each. The native filter skips a
//!   `direct_response` route (it has no route entry), so these three use a
//!   proxied route instead, answered before the router by the native fault
//!   filter's 200 abort (no upstream); `global-baseline` is that route and
//!   fault filter alone, and the summary compares the two limiters' CPU
//!   over it (the issue's goal: Wasm at most 1.2x native). The RPC's p99 is
//!   Envoy's own `cluster.ratelimit.upstream_rq_time` histogram (whole
//!   milliseconds, Envoy's unit for it, so 0 means every call took under
//!   1 ms; the added client latency over the baseline is the finer figure),
//!   read from the admin API after the run; the service's and Redis's CPU per request is shown beside it and
//!   kept out of the `other load` figure. The service and Redis are spawned
//!   after the bench pins itself, so they share Envoy's CPU: the RPC round
//!   trip then costs no cross-CPU wake-up (see below), and their CPU is not
//!   in Envoy's figure either way. The bench checks before it measures that
//!   both limiters call the service once per request and that the
//!   service's remaining count drops by one per request.
//!
//! Load: one keep-alive HTTP/1.1 connection from this process (or
//! `--connections N`, one client thread each), one request in flight on
//! each, for `--seconds` (default 3) or `--max-requests` in all, whichever
//! comes first, after a warm-up. The request carries `x-forwarded-proto: https` and
//! the route answers `content-type: text/html`, so security-headers adds all
//! twelve headers (HSTS and CSP included) like header_mutation does; the route
//! also adds `x-powered-by` for both to strip. The bench checks that the two
//! produce the same security headers before it measures.
//!
//! Headline: Envoy CPU time per request = delta of utime+stime of the Envoy
//! process (`/proc/<pid>/stat`, ticks of `getconf CLK_TCK`) over the requests
//! completed. Also the worker thread's own CPU (`/proc/<pid>/task/*/stat`,
//! thread `wrk:worker_0`) and the client's p50/p99 round-trip latency.
//! Results: medians over rounds per configuration, and added cost over `none`.
//!
//! Envoy (all threads) and the client are pinned to one CPU (`taskset`,
//! util-linux) unless `--no-pin`. Measured on this 2-core VM: with the two on
//! different CPUs and the machine otherwise idle, every request pays a
//! cross-CPU wake-up, and Envoy's CPU per request rises about 2.5x (13 → 32 µs
//! with no filter) and swings by several µs between runs, burying the filter
//! costs; when another process keeps the second CPU busy the figures drop back.
//! Sharing one CPU removes that machine-dependent term: CPU time is accounted
//! per thread, so the client's share is not in Envoy's figure. Latency then
//! includes the client's own turn on the CPU. A per-run `other load` column
//! shows how much CPU the rest of the machine used, and the summary warns
//! when it was not quiet.
//!
//! A client in this process rather than `wrk`: a fixed, exactly known count of
//! completed requests for the denominator, per-request latencies for the
//! percentiles, and no Debian package to install. The client's own cost is
//! not in the headline, which counts Envoy's CPU only.
//!
//! Usage: `cargo bench -p e2e --bench envoy-bench -- [--rounds N] [--seconds S]
//! [--warmup N] [--max-requests N] [--no-pin] [--service-cpu N] [--connections N]
//! [--only id,id,...]` (`--service-cpu`: move the global cases' service and
//! Redis to CPU N; `--connections`: N connections with a request in flight
//! on each, default 1, so Envoy's worker has several requests at once as a
//! busy sidecar does)
//! (`make bench-envoy` runs them all).
//!
//! `--callgrind [--requests N]` counts instructions per request instead,
//! with each Envoy under callgrind (see `envoy_bench/callgrind.rs`;
//! `make bench-envoy-callgrind`).

use std::collections::BTreeMap;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use alg_keys::{Alg, CaseLabels, ALGS};
use e2e::chain::Idp;
use e2e::envoy::kill_envoys_on_panic;
use e2e::global::{self, FailureMode, GlobalRule, RateLimitService, Redis};
use e2e::{paths, Bootstrap, Connection, Envoy, EnvoyOptions, HttpFilter, Route};
use security_headers::profiles::{OWASP_ADD, OWASP_REMOVE};

#[path = "envoy_bench/alg_keys.rs"]
mod alg_keys;
#[path = "envoy_bench/callgrind.rs"]
mod callgrind;

/// The metrics filter's README example.
const METRICS_CONFIG: &str = r#"{"prefix":"mesh","dimensions":{"method":true,"response_code":true,
"response_code_class":true,"version":{"header":"x-canary-version","default":"unknown","max_values":16},
"route":{"prefixes":["/api","/admin","/health"],"default":"other"}},
"histogram_buckets_ms":[0.5,1,5,10,25,50,100,250,500,1000,2500,5000,10000],"max_label_value_len":64}"#;

/// The rate-limit filter's bench config: one per-client rule whose bucket
/// (10^9 tokens, one more per hour) cannot run dry within a run (at most
/// `--max-requests` + warm-up requests per Envoy), so every request is
/// admitted. One token per fill rather than a big refill: Envoy's
/// local_ratelimit refills continuously (tokens_per_fill / fill_interval per
/// second), so a big refill would keep its bucket at the brim and the
/// pre-run check could not see a token being taken.
const RATE_LIMIT_CONFIG: &str = r#"{"rules":[{"name":"per_client","key":[{"header":"x-user"}],
"token_bucket":{"max_tokens":1000000000,"tokens_per_fill":1,"fill_interval":"3600s"}}],
"response":{"headers":"draft"}}"#;
/// The bucket both rate limiters give each `x-user`.
const RATE_LIMIT_TOKENS: u32 = 1_000_000_000;

/// canary-router's README example (the config of the criterion bench's
/// `canary_router` case too).
const CANARY_ROUTER_CONFIG: &str = r#"{"route_header":"x-canary-version","rules":[
{"match":{"headers":[{"name":"x-canary","exact":"always"}]},"version":"v2"},
{"match":{"cookies":[{"name":"canary","exact":"true"}]},"version":"v2"},
{"match":{"headers":[{"name":"user-agent","regex":".*Firefox.*"}]},"version":"v2"},
{"match":{"query_params":[{"name":"version","exact":"stable"}]},"version":"v1"}],
"split":[{"version":"v1","weight":80},{"version":"v2","weight":20}],
"hash_on":[{"header":"x-user-id"},{"cookie":"session"},{"header":"x-jwt-sub"}],
"sticky_cookie":{"name":"canary-version","max_age_seconds":86400,"path":"/","secure":false},
"response_header":true,"clear_route_cache":true}"#;

/// The first filter of `wasm-chain` and `bundle`, before jwt-auth, by crate
/// name (= bundle section name) with its config.
const CHAIN_HEAD: (&str, &str) = ("security_headers", r#"{"profile":"owasp"}"#);
/// The filters of `wasm-chain` and `bundle` after jwt-auth (whose config is
/// built at run time, [`jwt_config`]), in the bundle's stage order.
const CHAIN: [(&str, &str); 3] = [
    ("rate_limit", RATE_LIMIT_CONFIG),
    ("canary_router", CANARY_ROUTER_CONFIG),
    ("metrics", METRICS_CONFIG),
];
/// The version [`REQUEST`]'s `x-user-id: user-42` hashes to under that
/// split (FNV-1a 64 + fmix64, point 63 of 100: `v1`'s range is `[0, 80)`).
const CANARY_ROUTER_VERSION: &str = "v1";

/// The global cases' limit per `x-user` and minute: never reached in a run.
const GLOBAL_LIMIT: u64 = 1_000_000_000;
/// The global cases' gRPC deadline, both limiters: generous, because
/// `failure_mode: deny` turns a missed deadline into a 500 that stops the
/// bench rather than into an unmeasured, unlimited request.
const GLOBAL_TIMEOUT: Duration = Duration::from_secs(1);
/// The cluster the global cases' route names; the fault filter answers
/// before the router, so nothing ever connects to it.
const UNUSED_CLUSTER: &str = "unused";
/// The global cases' rule name (Wasm).
const GLOBAL_RULE: &str = "per_client";

/// The rate-limit service's address once [`start_global`] ran.
static GLOBAL_SERVICE: OnceLock<std::net::SocketAddr> = OnceLock::new();

/// Above this much other CPU (% of one core) during a run, the summary warns.
const NOISY_LOAD_PCT: f64 = 10.0;

/// Every configuration gets the same request; the token is verified (once,
/// then cached) by the JWT configurations and ignored by the others.
const REQUEST_HEAD: &str = "GET /api/users HTTP/1.1\r\nhost: example.com\r\n\
x-forwarded-proto: https\r\nx-canary-version: v2\r\nx-user: bench-client\r\n\
x-user-id: user-42\r\nuser-agent: envoy-bench\r\n";

/// [`REQUEST_HEAD`] plus `authorization: Bearer <RS256 token>` from the
/// e2e test identity provider (tests/e2e/data), valid for a day.
fn request() -> &'static [u8] {
    static REQUEST: OnceLock<Vec<u8>> = OnceLock::new();
    REQUEST.get_or_init(|| {
        let token = idp().token("bench-user", 24 * 3600);
        format!("{REQUEST_HEAD}authorization: Bearer {token}\r\n\r\n").into_bytes()
    })
}

/// [`request`] with a token of `alg` instead.
fn alg_request(alg: Alg) -> &'static [u8] {
    static REQUESTS: OnceLock<Vec<(Alg, Vec<u8>)>> = OnceLock::new();
    let requests = REQUESTS.get_or_init(|| {
        ALGS.into_iter()
            .map(|alg| {
                let token = alg_keys::token(alg, "bench-user", 24 * 3600);
                let request = format!("{REQUEST_HEAD}authorization: Bearer {token}\r\n\r\n");
                (alg, request.into_bytes())
            })
            .collect()
    });
    requests
        .iter()
        .find(|(known, _)| *known == alg)
        .map_or(&[][..], |(_, request)| request.as_slice())
}

/// The per-algorithm cases' config: [`jwt_config`] with the key of `alg`
/// as its JWKS and no token cache, so each request is verified.
fn alg_config(alg: Alg) -> serde_json::Value {
    alg_keys::config(uncached(jwt_config()), alg)
}

/// The same request without a token, which the JWT configurations refuse.
fn request_without_token() -> Vec<u8> {
    format!("{REQUEST_HEAD}\r\n").into_bytes()
}

fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(Idp::load)
}

/// jwt_authn's `JwtAuthentication` for the test IdP, RS256 from an inline
/// JWKS, the subject to `x-jwt-sub`, a 100-token cache: the native filter's
/// config and, as JSON, jwt-auth's (it takes the same shape).
fn jwt_config() -> serde_json::Value {
    serde_json::json!({
        "providers": {"idp": {
            "issuer": e2e::chain::ISSUER,
            "audiences": [e2e::chain::AUDIENCE],
            "local_jwks": {"inline_string": idp().jwks()},
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
            "jwt_cache_config": {"jwt_cache_size": 100},
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    })
}

/// Native `envoy.filters.http.fault` aborting every request with 200: a
/// local answer after the rate limiters on a route that has a route entry
/// (which the native ratelimit filter needs and `direct_response` lacks).
fn fault_abort_200() -> HttpFilter {
    HttpFilter::Raw(serde_json::json!({
        "name": "envoy.filters.http.fault",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "abort": {"http_status": 200,
                      "percentage": {"numerator": 100, "denominator": "HUNDRED"}},
        },
    }))
}

/// Redis and the rate-limit service for the global cases, with their
/// limits file; all removed on drop.
struct GlobalService {
    redis: Redis,
    service: RateLimitService,
    limits: std::path::PathBuf,
}

impl Drop for GlobalService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.limits);
    }
}

/// Starts Redis and the service on a limits file of [`GLOBAL_LIMIT`] per
/// minute per `user` in domain `mesh` (Limitador's format, as the
/// service's sample `mesh.yaml`), and records the service's address.
fn start_global() -> Result<GlobalService, String> {
    let limits =
        std::env::temp_dir().join(format!("envoy-bench-limits-{}.yaml", std::process::id()));
    let text = format!(
        "- namespace: {}\n  name: bench-per-user\n  max_value: {GLOBAL_LIMIT}\n  seconds: 60\n  \
         conditions: []\n  variables:\n    - descriptors[0].{}\n",
        global::DOMAIN,
        global::USER_KEY
    );
    std::fs::write(&limits, text).map_err(|e| format!("{}: {e}", limits.display()))?;
    let redis = Redis::start();
    let service = RateLimitService::start(&limits, &redis);
    GLOBAL_SERVICE
        .set(service.addr())
        .map_err(|_| "the rate-limit service was started twice")?;
    Ok(GlobalService {
        redis,
        service,
        limits,
    })
}

/// `config` without its providers' `jwt_cache_config`: both filters then
/// verify the signature on every request (jwt_authn caches only when the
/// field is set, and jwt-auth follows it).
fn uncached(mut config: serde_json::Value) -> serde_json::Value {
    if let Some(providers) = config
        .get_mut("providers")
        .and_then(serde_json::Value::as_object_mut)
    {
        for provider in providers.values_mut() {
            if let Some(provider) = provider.as_object_mut() {
                provider.remove("jwt_cache_config");
            }
        }
    }
    config
}

/// Envoy's jwt_authn with `config` (a `JwtAuthentication` in JSON).
fn native_jwt_authn(mut config: serde_json::Value) -> HttpFilter {
    if let Some(object) = config.as_object_mut() {
        object.insert(
            "@type".into(),
            "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
                .into(),
        );
    }
    HttpFilter::Raw(
        serde_json::json!({"name": "envoy.filters.http.jwt_authn", "typed_config": config}),
    )
}

struct Settings {
    rounds: usize,
    seconds: f64,
    warmup: usize,
    max_requests: usize,
    /// CPU that Envoy and the client share, or `None` to let them float.
    pin: Option<usize>,
    /// `--service-cpu`: the CPU the rate-limit service and Redis are moved
    /// to (all their threads), or `None` to leave them on the bench's CPU.
    service_cpu: Option<usize>,
    /// `--connections`: keep-alive connections, each with one request in
    /// flight, driven by as many client threads.
    connections: usize,
    /// The configurations to run, in [`all_cases`] order.
    cases: Vec<Case>,
    /// `--callgrind`: count instructions per request under callgrind
    /// instead of timing rounds.
    callgrind: bool,
    /// `--requests`: the requests counted per configuration with
    /// `--callgrind`.
    requests: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    None,
    Noop,
    SecurityHeaders,
    HeaderMutation,
    Metrics,
    RateLimit,
    LocalRateLimit,
    CanaryRouter,
    JwtAuth,
    JwtAuthn,
    JwtAuthUncached,
    JwtAuthnUncached,
    /// jwt-auth verifying every request, with a token and key of this
    /// algorithm.
    JwtAuthAlg(Alg),
    /// jwt_authn, the same.
    JwtAuthnAlg(Alg),
    WasmChain,
    Bundle,
    NativeChain,
    GlobalBaseline,
    GlobalWasm,
    GlobalNative,
    GlobalFloor,
    FloorSecurityHeaders,
    FloorMetrics,
    FloorRateLimit,
    FloorCanaryRouter,
    FloorBundle,
    FloorJwtAuth,
    FloorNone,
    FloorGlobal,
}

/// Every configuration, in the order the bench runs them.
fn all_cases() -> Vec<Case> {
    let before = [
        Case::None,
        Case::Noop,
        Case::SecurityHeaders,
        Case::HeaderMutation,
        Case::Metrics,
        Case::RateLimit,
        Case::LocalRateLimit,
        Case::CanaryRouter,
        Case::JwtAuth,
        Case::JwtAuthn,
        Case::JwtAuthUncached,
        Case::JwtAuthnUncached,
    ];
    let per_alg = ALGS
        .into_iter()
        .flat_map(|alg| [Case::JwtAuthAlg(alg), Case::JwtAuthnAlg(alg)]);
    let after = [
        Case::WasmChain,
        Case::Bundle,
        Case::NativeChain,
        Case::GlobalBaseline,
        Case::GlobalWasm,
        Case::GlobalNative,
        Case::GlobalFloor,
        Case::FloorSecurityHeaders,
        Case::FloorMetrics,
        Case::FloorRateLimit,
        Case::FloorCanaryRouter,
        Case::FloorBundle,
        Case::FloorJwtAuth,
        Case::FloorNone,
        Case::FloorGlobal,
    ];
    before.into_iter().chain(per_alg).chain(after).collect()
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::None => "none",
            Case::Noop => "noop (Wasm)",
            Case::SecurityHeaders => "security-headers (Wasm)",
            Case::HeaderMutation => "header_mutation (native)",
            Case::Metrics => "metrics (Wasm)",
            Case::RateLimit => "rate-limit (Wasm)",
            Case::LocalRateLimit => "local_ratelimit (native)",
            Case::CanaryRouter => "canary-router (Wasm)",
            Case::JwtAuth => "jwt-auth, RS256 cached (Wasm)",
            Case::JwtAuthn => "jwt_authn, RS256 cached (native)",
            Case::JwtAuthUncached => "jwt-auth, RS256 verified every request (Wasm)",
            Case::JwtAuthnUncached => "jwt_authn, RS256 verified every request (native)",
            Case::JwtAuthAlg(alg) => alg.labels().wasm_name,
            Case::JwtAuthnAlg(alg) => alg.labels().native_name,
            Case::WasmChain => "5 filters, separate (Wasm)",
            Case::Bundle => "5 filters, bundle (Wasm)",
            Case::NativeChain => "jwt_authn + local_ratelimit + header_mutation (native)",
            Case::GlobalBaseline => "proxied route + fault abort 200 (global baseline)",
            Case::GlobalWasm => "rate-limit global, RLS over gRPC (Wasm)",
            Case::GlobalNative => "ratelimit, RLS over gRPC (native)",
            Case::GlobalFloor => "bare Wasm gRPC callout: dispatch, pause, resume (fixture)",
            Case::FloorSecurityHeaders => "security-headers' host calls alone (probe)",
            Case::FloorMetrics => "metrics' host calls alone (probe)",
            Case::FloorRateLimit => "rate-limit's host calls alone (probe)",
            Case::FloorCanaryRouter => "canary-router's host calls alone (probe)",
            Case::FloorBundle => "the bundle's host calls alone (probe)",
            Case::FloorJwtAuth => "jwt-auth's cached-path host calls alone (probe)",
            Case::FloorNone => "probe with no calls (control for the floor-* cases)",
            Case::FloorGlobal => "rate-limit global's host calls alone, RLS over gRPC (probe)",
        }
    }

    /// The id `--only` takes.
    fn id(self) -> &'static str {
        match self {
            Case::None => "none",
            Case::Noop => "noop",
            Case::SecurityHeaders => "security-headers",
            Case::HeaderMutation => "header-mutation",
            Case::Metrics => "metrics",
            Case::RateLimit => "rate-limit",
            Case::LocalRateLimit => "local-ratelimit",
            Case::CanaryRouter => "canary-router",
            Case::JwtAuth => "jwt-auth",
            Case::JwtAuthn => "jwt-authn",
            Case::JwtAuthUncached => "jwt-auth-uncached",
            Case::JwtAuthnUncached => "jwt-authn-uncached",
            Case::JwtAuthAlg(alg) => alg.labels().wasm_id,
            Case::JwtAuthnAlg(alg) => alg.labels().native_id,
            Case::WasmChain => "wasm-chain",
            Case::Bundle => "bundle",
            Case::NativeChain => "native-chain",
            Case::GlobalBaseline => "global-baseline",
            Case::GlobalWasm => "global-wasm",
            Case::GlobalNative => "global-native",
            Case::GlobalFloor => "global-floor",
            Case::FloorSecurityHeaders => "floor-security-headers",
            Case::FloorMetrics => "floor-metrics",
            Case::FloorRateLimit => "floor-rate-limit",
            Case::FloorCanaryRouter => "floor-canary-router",
            Case::FloorBundle => "floor-bundle",
            Case::FloorJwtAuth => "floor-jwt-auth",
            Case::FloorNone => "floor-none",
            Case::FloorGlobal => "floor-global",
        }
    }

    fn is_wasm(self) -> bool {
        matches!(
            self,
            Case::Noop
                | Case::SecurityHeaders
                | Case::Metrics
                | Case::RateLimit
                | Case::CanaryRouter
                | Case::JwtAuth
                | Case::JwtAuthUncached
                | Case::JwtAuthAlg(_)
                | Case::WasmChain
                | Case::Bundle
                | Case::GlobalWasm
                | Case::GlobalFloor
                | Case::FloorSecurityHeaders
                | Case::FloorMetrics
                | Case::FloorRateLimit
                | Case::FloorCanaryRouter
                | Case::FloorBundle
                | Case::FloorJwtAuth
                | Case::FloorNone
                | Case::FloorGlobal
        )
    }

    /// The request this case is sent: every case gets [`request`] but the
    /// per-algorithm ones, whose token is of their algorithm.
    fn request(self) -> &'static [u8] {
        match self {
            Case::JwtAuthAlg(alg) | Case::JwtAuthnAlg(alg) => alg_request(alg),
            _ => request(),
        }
    }

    /// The cases that need the rate-limit service and Redis.
    fn is_global(self) -> bool {
        matches!(
            self,
            Case::GlobalBaseline
                | Case::GlobalWasm
                | Case::GlobalNative
                | Case::GlobalFloor
                | Case::FloorGlobal
        )
    }

    fn bootstrap(self) -> Bootstrap {
        let route = Route::Direct {
            status: 200,
            body: "ok".into(),
            headers: vec![
                ("content-type".into(), "text/html".into()),
                ("x-powered-by".into(), "PHP/8.3".into()),
            ],
        };
        let base = Bootstrap::new().route("/", route);
        match self {
            Case::None => base,
            Case::Noop => base.filter(HttpFilter::wasm("noop", &paths::fixture_wasm("noop"), "")),
            Case::SecurityHeaders => base.filter(HttpFilter::wasm(
                "security_headers",
                &paths::filter_wasm("security_headers"),
                r#"{"profile":"owasp"}"#,
            )),
            Case::HeaderMutation => base.filter(self.native_filter()),
            Case::Metrics => base
                .filter(HttpFilter::wasm(
                    "metrics",
                    &paths::filter_wasm("metrics"),
                    METRICS_CONFIG,
                ))
                .stats_config_from(&paths::metrics_stats_tags_manifest()),
            Case::RateLimit => base.filter(HttpFilter::wasm(
                "rate_limit",
                &paths::filter_wasm("rate_limit"),
                RATE_LIMIT_CONFIG,
            )),
            Case::LocalRateLimit => base.filter(self.native_rate_limit()),
            Case::CanaryRouter => base.filter(HttpFilter::wasm(
                "canary_router",
                &paths::filter_wasm("canary_router"),
                CANARY_ROUTER_CONFIG,
            )),
            Case::WasmChain => CHAIN
                .iter()
                .fold(
                    base.filter(HttpFilter::wasm(
                        CHAIN_HEAD.0,
                        &paths::filter_wasm(CHAIN_HEAD.0),
                        CHAIN_HEAD.1,
                    ))
                    .filter(HttpFilter::wasm(
                        "jwt_auth",
                        &paths::filter_wasm("jwt_auth"),
                        &jwt_config().to_string(),
                    )),
                    |b, (name, config)| {
                        b.filter(HttpFilter::wasm(name, &paths::filter_wasm(name), config))
                    },
                )
                .stats_config_from(&paths::metrics_stats_tags_manifest()),
            Case::Bundle => {
                let jwt = format!("\"jwt_auth\": {}", jwt_config());
                let sections: Vec<String> = std::iter::once(CHAIN_HEAD)
                    .map(|(name, config)| format!("{name:?}: {config}"))
                    .chain(std::iter::once(jwt))
                    .chain(
                        CHAIN
                            .iter()
                            .map(|(name, config)| format!("{name:?}: {config}")),
                    )
                    .collect();
                let config = format!("{{{}}}", sections.join(", "));
                base.filter(HttpFilter::wasm(
                    "bundle",
                    &paths::filter_wasm("bundle"),
                    &config,
                ))
                .stats_config_from(&paths::metrics_stats_tags_manifest())
            }
            Case::NativeChain => base
                .filter(native_jwt_authn(jwt_config()))
                .filter(Case::LocalRateLimit.native_rate_limit())
                .filter(Case::HeaderMutation.native_filter()),
            Case::JwtAuth => base.filter(HttpFilter::wasm(
                "jwt_auth",
                &paths::filter_wasm("jwt_auth"),
                &jwt_config().to_string(),
            )),
            Case::JwtAuthn => base.filter(native_jwt_authn(jwt_config())),
            Case::JwtAuthUncached => base.filter(HttpFilter::wasm(
                "jwt_auth",
                &paths::filter_wasm("jwt_auth"),
                &uncached(jwt_config()).to_string(),
            )),
            Case::JwtAuthnUncached => base.filter(native_jwt_authn(uncached(jwt_config()))),
            Case::JwtAuthAlg(alg) => base.filter(HttpFilter::wasm(
                "jwt_auth",
                &paths::filter_wasm("jwt_auth"),
                &alg_config(alg).to_string(),
            )),
            Case::JwtAuthnAlg(alg) => base.filter(native_jwt_authn(alg_config(alg))),
            Case::GlobalBaseline
            | Case::GlobalWasm
            | Case::GlobalNative
            | Case::GlobalFloor
            | Case::FloorGlobal => self.global_bootstrap(),
            Case::FloorSecurityHeaders
            | Case::FloorMetrics
            | Case::FloorRateLimit
            | Case::FloorCanaryRouter
            | Case::FloorBundle
            | Case::FloorJwtAuth
            | Case::FloorNone => base
                .filter(HttpFilter::wasm(
                    "probe",
                    &paths::fixture_wasm("probe"),
                    &self.probe_script().to_string(),
                ))
                .stats_config_from(&paths::metrics_stats_tags_manifest()),
        }
    }

    /// For the floor cases: the host calls the filter makes per request
    /// with its bench config on the bench's request and `direct_response`
    /// answer (read from its adapter, `filters/<name>/src/filter.rs`), as a
    /// script for the probe fixture, which makes them with no filter logic.
    fn probe_script(self) -> serde_json::Value {
        use serde_json::json;
        // security-headers' one whole-map write for owasp's many edits.
        let owasp_rewrite = || {
            let add: Vec<[&str; 2]> = OWASP_ADD.iter().map(|(n, v)| [*n, *v]).collect();
            json!(["rewrite", "response", OWASP_REMOVE, add])
        };
        // metrics at the end of the stream: `:status`, the clock, the
        // counter, three histograms, the gauge back down.
        let metrics_log = json!([
            ["get", "response", ":status"],
            ["time"],
            ["counter", "probe.requests"],
            ["histogram", "probe.duration", 1],
            ["histogram", "probe.request_bytes", 0],
            ["histogram", "probe.response_bytes", 2],
            ["gauge", "probe.active", -1],
        ]);
        // rate-limit's two draft headers for the bench's rule.
        let rate_limit_headers = [
            json!([
                "replace",
                "response",
                "ratelimit-policy",
                "\"per_client\";q=1000000000;w=3600"
            ]),
            json!([
                "replace",
                "response",
                "ratelimit",
                "\"per_client\";r=999999999;t=3600"
            ]),
        ];
        match self {
            // x-forwarded-proto for HSTS; then the counter, the response map
            // and, for owasp's many edits, one whole-map write.
            Case::FloorSecurityHeaders => json!({
                "request_headers": [["get", "request", "x-forwarded-proto"]],
                "response_headers": [
                    ["counter", "probe.responses"],
                    ["map", "response"],
                    owasp_rewrite(),
                ],
            }),
            // Three labels wanted at request start: one map read; `:status`,
            // the clock, a counter, three histograms and the gauge at the end.
            Case::FloorMetrics => json!({
                "request_headers": [["time"], ["map", "request"], ["gauge", "probe.active", 1]],
                "log": metrics_log,
            }),
            // The key header, the clock, the bucket's read and CAS write, the
            // allowed counter; the two draft headers on the response.
            Case::FloorRateLimit => json!({
                "request_headers": [
                    ["get", "request", "x-user"], ["time"],
                    ["shared_cas", "probe.bucket.bench-client", "0123456789abcdef"],
                    ["counter", "probe.allowed"],
                ],
                "response_headers": [
                    rate_limit_headers[0], rate_limit_headers[1],
                ],
            }),
            // The request map (cookie rules), the route header, the route
            // re-match, the version counter; the version on the response.
            Case::FloorCanaryRouter => json!({
                "request_headers": [
                    ["map", "request"], ["replace", "request", "x-canary-version", "v1"],
                    ["clear_route_cache"], ["counter", "probe.v1"],
                ],
                "response_headers": [["replace", "response", "x-canary-version", "v1"]],
            }),
            // The five stages in one module with one shared request-map
            // read: jwt-auth's cached hit (drop the token, add x-jwt-sub,
            // two counters), rate-limit, canary-router, metrics' start; on
            // the way back canary-router's and rate-limit's headers and
            // security-headers' rewrite; metrics at the end.
            Case::FloorBundle => json!({
                "request_headers": [
                    ["map", "request"],
                    ["remove", "request", "authorization"],
                    ["add", "request", "x-jwt-sub", "bench-user"],
                    ["counter", "probe.jwt_allowed"], ["counter", "probe.jwt_cache_hit"],
                    ["time"],
                    ["shared_cas", "probe.bucket.bench-client", "0123456789abcdef"],
                    ["counter", "probe.allowed"],
                    ["replace", "request", "x-canary-version", "v1"],
                    ["clear_route_cache"], ["counter", "probe.v1"],
                    ["time"], ["gauge", "probe.active", 1],
                ],
                "response_headers": [
                    ["replace", "response", "x-canary-version", "v1"],
                    rate_limit_headers[0], rate_limit_headers[1],
                    ["counter", "probe.responses"],
                    ["map", "response"],
                    owasp_rewrite(),
                ],
                "log": metrics_log,
            }),
            // A hit in the per-VM parsed-token cache: the clock, the
            // request map, the token dropped and x-jwt-sub added, the
            // allowed and cache-hit counters.
            Case::FloorJwtAuth => json!({
                "request_headers": [
                    ["time"], ["map", "request"],
                    ["remove", "request", "authorization"],
                    ["add", "request", "x-jwt-sub", "bench-user"],
                    ["counter", "probe.jwt_allowed"], ["counter", "probe.jwt_cache_hit"],
                ],
            }),
            // Global mode: the descriptor's header, the call, the answer's
            // buffer and the ok counter, then the two draft headers.
            Case::FloorGlobal => json!({
                "request_headers": [
                    ["get", "request", global::USER_HEADER],
                    ["grpc", global::CLUSTER, ratelimit_proto::SERVICE, ratelimit_proto::METHOD,
                     global_request_hex(), GLOBAL_TIMEOUT.as_millis()],
                ],
                "grpc_response": [["grpc_body"], ["counter", "probe.global_ok"]],
                "response_headers": [
                    ["replace", "response", "ratelimit-policy", "\"per_client\";q=1000000000;w=60"],
                    ["replace", "response", "ratelimit", "\"per_client\";r=999999998;t=60"],
                ],
            }),
            _ => json!({}),
        }
    }

    /// The global cases: the limiter (none for the baseline), the fault
    /// filter answering 200, a proxied route carrying the native filter's
    /// `rate_limits`, and the service's HTTP/2 cluster. Stats are flushed
    /// only on admin requests, so no flush runs during a measurement.
    fn global_bootstrap(self) -> Bootstrap {
        // `main` starts the service before any global case runs; were it
        // missing, the discard port makes every call fail, and the global
        // check before measuring reports the 500s.
        let service = GLOBAL_SERVICE
            .get()
            .copied()
            .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 9)));
        let limiter = match self {
            Case::GlobalWasm => Some(global::wasm_filter(&[GlobalRule {
                timeout: GLOBAL_TIMEOUT,
                failure_mode: FailureMode::Deny,
                ..GlobalRule::new(GLOBAL_RULE)
            }])),
            Case::GlobalNative => Some(global::native_filter(GLOBAL_TIMEOUT, FailureMode::Deny)),
            Case::GlobalFloor => Some(HttpFilter::wasm(
                "conformance",
                &paths::fixture_wasm("conformance"),
                &global_floor_config(),
            )),
            Case::FloorGlobal => Some(HttpFilter::wasm(
                "probe",
                &paths::fixture_wasm("probe"),
                &self.probe_script().to_string(),
            )),
            _ => None,
        };
        let base = match limiter {
            Some(filter) => Bootstrap::new().filter(filter),
            None => Bootstrap::new(),
        };
        base.filter(fault_abort_200())
            .rate_limited_route(
                "/",
                Route::Cluster(UNUSED_CLUSTER.into()),
                global::native_route_rate_limits(),
            )
            .cluster(
                UNUSED_CLUSTER,
                std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
            )
            .grpc_cluster(global::CLUSTER, service)
            .stats_flush_on_admin()
    }

    /// The native local_ratelimit filter of [`Case::LocalRateLimit`].
    fn native_rate_limit(self) -> HttpFilter {
        HttpFilter::LocalRateLimitPerHeader {
            header: "x-user".into(),
            max_tokens: RATE_LIMIT_TOKENS,
            tokens_per_fill: 1,
            fill_interval: "3600s".into(),
            x_ratelimit_headers: true,
        }
    }

    /// The native header_mutation filter of [`Case::HeaderMutation`].
    fn native_filter(self) -> HttpFilter {
        HttpFilter::HeaderMutation {
            add: OWASP_ADD
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            remove: OWASP_REMOVE.iter().map(|n| (*n).to_owned()).collect(),
        }
    }
}

/// One measured run of one configuration.
#[derive(Clone, Copy)]
struct Run {
    requests: usize,
    cpu_us_per_req: f64,
    worker_us_per_req: f64,
    p50_us: f64,
    p99_us: f64,
    rps: f64,
    /// CPU used by everything but Envoy, this client and (global cases)
    /// the rate-limit service and Redis during the run, in % of one core:
    /// other work on a 2-core machine skews the figures.
    other_load_pct: f64,
    /// Global cases: p99 of Envoy's `cluster.ratelimit.upstream_rq_time`
    /// (ms, cumulative over the Envoy's life: warm-up and run). NaN otherwise.
    rpc_p99_ms: f64,
    /// Global cases: the service's and Redis's CPU per request (µs). NaN
    /// otherwise.
    service_us_per_req: f64,
}

fn main() -> ExitCode {
    kill_envoys_on_panic();
    let settings = match parse_args() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("envoy-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let tick_hz = clock_ticks_per_second();
    if let Some(cpu) = settings.pin {
        if let Err(e) = pin_self(cpu) {
            eprintln!("envoy-bench: {e}");
            return ExitCode::FAILURE;
        }
    }
    // After pinning: the service and Redis inherit this thread's CPU.
    let global_service = if settings.cases.iter().any(|case| case.is_global()) {
        match start_global().and_then(|service| {
            if let Some(cpu) = settings.service_cpu {
                for pid in [service.service.pid(), service.redis.pid()] {
                    pin_process(pid, cpu)?;
                }
            }
            Ok(service)
        }) {
            Ok(service) => Some(service),
            Err(e) => {
                eprintln!("envoy-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    if let Err(e) = check_header_parity(&settings)
        .and_then(|()| check_global(&settings))
        .and_then(|()| check_rate_limiting(&settings))
        .and_then(|()| check_canary_routing(&settings))
        .and_then(|()| check_chain_parity(&settings))
        .and_then(|()| check_jwt(&settings))
    {
        eprintln!("envoy-bench: {e}");
        return ExitCode::FAILURE;
    }
    if settings.callgrind {
        let result = callgrind::run(&settings);
        drop(global_service);
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("envoy-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    println!(
        "envoy-bench: {} rounds x {} configs, {}s each (max {} requests) after {} warm-up requests; \
         CLK_TCK {tick_hz}; Envoy and client {}",

        settings.rounds,
        settings.cases.len(),
        settings.seconds,
        settings.max_requests,
        settings.warmup,
        settings
            .pin
            .map_or("not pinned".to_owned(), |cpu| format!("pinned to CPU {cpu}"))
    );
    let mut runs: BTreeMap<Case, Vec<Run>> = BTreeMap::new();
    for round in 1..=settings.rounds {
        for &case in &settings.cases {
            let run = match measure(case, &settings, tick_hz, global_service.as_ref()) {
                Ok(run) => run,
                Err(e) => {
                    eprintln!("envoy-bench: {}: {e}", case.name());
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "round {round} {:<26} {:>7} req  {:>6.1} us CPU/req  worker {:>6.1}  p50 {:>6.1} us  p99 {:>6.1} us  {:>7.0} req/s  other load {:>4.0}%{}",
                case.name(),
                run.requests,
                run.cpu_us_per_req,
                run.worker_us_per_req,
                run.p50_us,
                run.p99_us,
                run.rps,
                run.other_load_pct,
                if case.is_global() && case != Case::GlobalBaseline {
                    format!(
                        "  RPC p99 (Envoy, whole ms) {:.1} ms  service+redis {:.1} us/req",
                        run.rpc_p99_ms, run.service_us_per_req
                    )
                } else {
                    String::new()
                }
            );
            runs.entry(case).or_default().push(run);
        }
    }
    print_summary(&settings.cases, &runs, settings.connections);
    drop(global_service);
    ExitCode::SUCCESS
}

fn parse_args() -> Result<Settings, String> {
    let mut settings = Settings {
        rounds: 5,
        seconds: 3.0,
        warmup: 2000,
        max_requests: 500_000,
        pin: Some(0),
        service_cpu: None,
        connections: 1,
        cases: all_cases(),
        callgrind: false,
        requests: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        // `cargo bench` passes `--bench` to harness-less bench targets.
        if flag == "--bench" {
            continue;
        }
        if flag == "--no-pin" {
            settings.pin = None;
            continue;
        }
        if flag == "--callgrind" {
            settings.callgrind = true;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--rounds" => settings.rounds = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => settings.seconds = value.parse().map_err(|e| bad(&e))?,
            "--warmup" => settings.warmup = value.parse().map_err(|e| bad(&e))?,
            "--max-requests" => settings.max_requests = value.parse().map_err(|e| bad(&e))?,
            "--only" => settings.cases = parse_only(&value)?,
            "--service-cpu" => settings.service_cpu = Some(value.parse().map_err(|e| bad(&e))?),
            "--connections" => settings.connections = value.parse().map_err(|e| bad(&e))?,
            "--requests" => settings.requests = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    // Bounded load: at most a minute per run.
    if !(settings.seconds > 0.0 && settings.seconds <= 60.0) || settings.rounds == 0 {
        return Err("--seconds must be in (0, 60] and --rounds >= 1".into());
    }
    if !(1..=64).contains(&settings.connections) {
        return Err("--connections must be in 1..=64".into());
    }
    if !(1..=100_000).contains(&settings.requests) {
        return Err("--requests must be in 1..=100000".into());
    }
    Ok(settings)
}

/// `--only none,noop,...`: the named configurations, in [`all_cases`]
/// order.
fn parse_only(list: &str) -> Result<Vec<Case>, String> {
    let ids: Vec<&str> = list.split(',').map(str::trim).collect();
    let cases = all_cases();
    if let Some(unknown) = ids
        .iter()
        .find(|id| !cases.iter().any(|case| case.id() == **id))
    {
        let known: Vec<&str> = cases.iter().map(|case| case.id()).collect();
        return Err(format!(
            "--only: unknown configuration {unknown:?} (known: {})",
            known.join(",")
        ));
    }
    Ok(cases
        .into_iter()
        .filter(|case| ids.contains(&case.id()))
        .collect())
}

fn options(settings: &Settings) -> EnvoyOptions {
    EnvoyOptions {
        concurrency: 1,
        log_level: "warning".into(),
        cpu: settings.pin,
        ..EnvoyOptions::default()
    }
}

/// Moves every thread of process `pid` to `cpu` (`taskset -a`).
fn pin_process(pid: u32, cpu: usize) -> Result<(), String> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("taskset (util-linux): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset -a -p -c {cpu} {pid}: {status}"))
    }
}

/// Pins this process's main thread (the client) to `cpu`.
fn pin_self(cpu: usize) -> Result<(), String> {
    let status = Command::new("taskset")
        .args([
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("taskset (util-linux) is needed to pin; or pass --no-pin: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset -p -c {cpu}: {status}"))
    }
}

/// Both header-setting configurations must send the same security headers,
/// or the comparison would not be like for like.
fn check_header_parity(settings: &Settings) -> Result<(), String> {
    let pair = [Case::SecurityHeaders, Case::HeaderMutation];
    if !pair.iter().all(|case| settings.cases.contains(case)) {
        return Ok(());
    }
    let mut seen = Vec::new();
    for case in [Case::SecurityHeaders, Case::HeaderMutation] {
        let envoy = Envoy::start_with(&case.bootstrap(), &options(settings));
        let mut conn = envoy.connect();
        let response = conn
            .send_raw(case.request(), false)
            .map_err(|e| e.to_string())?;
        if response.header("x-powered-by").is_some() {
            return Err(format!("{}: x-powered-by not removed", case.name()));
        }
        let mut headers: Vec<(String, String)> = response
            .headers
            .into_iter()
            .filter(|(n, _)| OWASP_ADD.iter().any(|(a, _)| a == n))
            .collect();
        headers.sort();
        if headers.len() != OWASP_ADD.len() {
            return Err(format!(
                "{}: {} of {} owasp headers: {headers:?}",
                case.name(),
                headers.len(),
                OWASP_ADD.len()
            ));
        }
        seen.push(headers);
    }
    match seen.as_slice() {
        [a, b] if a == b => Ok(()),
        _ => Err(format!(
            "security-headers and header_mutation differ: {seen:?}"
        )),
    }
}

/// `global-floor`'s fixture config: the same `ShouldRateLimit` call as
/// `global-wasm` makes for the bench request (domain, `[[user =
/// bench-client]]`, one hit), sent with no parsing, no decoding of the
/// answer and no headers: what any Wasm filter pays for one gRPC callout
/// per request, against which `global-wasm`'s own work shows.
fn global_floor_config() -> String {
    serde_json::json!({"forward_grpc": {
        "cluster": global::CLUSTER,
        "service": ratelimit_proto::SERVICE,
        "method": ratelimit_proto::METHOD,
        "message_hex": global_request_hex(),
    }})
    .to_string()
}

/// The `RateLimitRequest` the rate-limit filter sends for the bench's
/// request, in hex, for the fixtures that send it without the filter.
fn global_request_hex() -> String {
    use prost::Message;
    ratelimit_proto::RateLimitRequest::from_entries(
        global::DOMAIN,
        &[&[(global::USER_KEY, "bench-client")]],
        1,
    )
    .encode_to_vec()
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect()
}

/// The global cases must do what they claim: every request answered 200,
/// one `ShouldRateLimit` call per request for the two limiters (none for the
/// baseline), and the service's remaining count for this client one lower
/// on the second request (the descriptor really hits the 10^9 limit, not an
/// unmatched descriptor that is never counted).
fn check_global(settings: &Settings) -> Result<(), String> {
    let rpc_stat = format!("cluster.{}.upstream_rq_total", global::CLUSTER);
    for case in [
        Case::GlobalBaseline,
        Case::GlobalWasm,
        Case::GlobalNative,
        Case::GlobalFloor,
        Case::FloorGlobal,
    ] {
        if !settings.cases.contains(&case) {
            continue;
        }
        let envoy = Envoy::start_with(&case.bootstrap(), &options(settings));
        let mut conn = envoy.connect();
        let mut remaining = Vec::new();
        for _ in 0..2 {
            let response = conn
                .send_raw(case.request(), false)
                .map_err(|e| e.to_string())?;
            if response.status != 200 {
                return Err(format!(
                    "{}: status {}: {}",
                    case.name(),
                    response.status,
                    response.text()
                ));
            }
            // Wasm: `"per_client";r=<remaining>;t=<s>`; native: a number.
            let (limit, left) = match case {
                Case::GlobalWasm => ("ratelimit-policy", "ratelimit"),
                _ => ("x-ratelimit-limit", "x-ratelimit-remaining"),
            };
            if matches!(
                case,
                Case::GlobalBaseline | Case::GlobalFloor | Case::FloorGlobal
            ) {
                continue;
            }
            let limit_value = response.header(limit).unwrap_or_default();
            if !limit_value.contains(&GLOBAL_LIMIT.to_string()) {
                return Err(format!(
                    "{}: {limit}: {limit_value:?}, want the service's limit {GLOBAL_LIMIT}",
                    case.name()
                ));
            }
            let left_value = response.header(left).unwrap_or_default();
            let count: u64 = left_value
                .split(';')
                .find_map(|part| part.strip_prefix("r="))
                .unwrap_or(left_value)
                .parse()
                .map_err(|e| format!("{}: {left}: {left_value:?}: {e}", case.name()))?;
            remaining.push(count);
        }
        if let [first, second] = remaining.as_slice() {
            if second + 1 != *first {
                return Err(format!(
                    "{}: remaining {first} then {second}: the service did not count",
                    case.name()
                ));
            }
        }
        let want_calls = if case == Case::GlobalBaseline { 0 } else { 2 };
        let calls = counter_value(&envoy, &rpc_stat);
        if calls != want_calls {
            return Err(format!(
                "{}: {rpc_stat} = {calls}, want {want_calls}",
                case.name()
            ));
        }
    }
    Ok(())
}

/// A counter from `/stats?filter=` (0 when absent).
fn counter_value(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .admin_get(&format!("/stats?filter=^{name}$"))
        .text()
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Both rate limiters must really charge the per-client bucket (not, say, an
/// unmatched descriptor falling through to no limit): two requests must
/// report that bucket's size and a remaining count one lower the second time.
fn check_rate_limiting(settings: &Settings) -> Result<(), String> {
    let checks = [
        (Case::RateLimit, "ratelimit-policy", "ratelimit"),
        (
            Case::LocalRateLimit,
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
        ),
    ];
    for (case, limit_header, remaining_header) in checks {
        if !settings.cases.contains(&case) {
            continue;
        }
        let envoy = Envoy::start_with(&case.bootstrap(), &options(settings));
        let mut conn = envoy.connect();
        let mut remaining = Vec::new();
        for _ in 0..2 {
            let response = conn
                .send_raw(case.request(), false)
                .map_err(|e| e.to_string())?;
            let limit = response.header(limit_header).unwrap_or_default();
            let left = response.header(remaining_header).unwrap_or_default();
            if response.status != 200 || !limit.contains(&RATE_LIMIT_TOKENS.to_string()) {
                return Err(format!(
                    "{}: status {}, {limit_header}: {limit:?}",
                    case.name(),
                    response.status
                ));
            }
            // `"per_client";r=999999999;t=3600` or `999999999`.
            let count: u64 = left
                .split(';')
                .find_map(|part| part.strip_prefix("r="))
                .unwrap_or(left)
                .parse()
                .map_err(|e| format!("{}: {remaining_header}: {left:?}: {e}", case.name()))?;
            remaining.push(count);
        }
        let want = u64::from(RATE_LIMIT_TOKENS);
        if remaining != [want - 1, want - 2] {
            return Err(format!(
                "{}: remaining tokens {remaining:?}, want [{}, {}]",
                case.name(),
                want - 1,
                want - 2
            ));
        }
    }
    Ok(())
}

/// Both JWT filters must admit the token and refuse its absence, or the
/// comparison would measure a filter that checks nothing.
fn check_jwt(settings: &Settings) -> Result<(), String> {
    let named = [
        Case::JwtAuth,
        Case::JwtAuthn,
        Case::JwtAuthUncached,
        Case::JwtAuthnUncached,
        Case::WasmChain,
        Case::Bundle,
        Case::NativeChain,
    ];
    let per_alg = ALGS
        .into_iter()
        .flat_map(|alg| [Case::JwtAuthAlg(alg), Case::JwtAuthnAlg(alg)]);
    let cases = named.into_iter().chain(per_alg);
    for case in cases {
        if !settings.cases.contains(&case) {
            continue;
        }
        let envoy = Envoy::start_with(&case.bootstrap(), &options(settings));
        let mut conn = envoy.connect();
        let ok = conn
            .send_raw(case.request(), false)
            .map_err(|e| e.to_string())?;
        let denied = conn
            .send_raw(&request_without_token(), false)
            .map_err(|e| e.to_string())?;
        if (ok.status, denied.status) != (200, 401) {
            return Err(format!(
                "{}: with token {}, without {} (want 200, 401)",
                case.name(),
                ok.status,
                denied.status
            ));
        }
    }
    Ok(())
}

/// The chains must do the same work: the owasp headers on every answer,
/// and the two Wasm chains the same canary decision and rate-limit headers.
fn check_chain_parity(settings: &Settings) -> Result<(), String> {
    let mut seen = Vec::new();
    for case in [Case::WasmChain, Case::Bundle, Case::NativeChain] {
        if !settings.cases.contains(&case) {
            continue;
        }
        let envoy = Envoy::start_with(&case.bootstrap(), &options(settings));
        let mut conn = envoy.connect();
        let response = conn
            .send_raw(case.request(), false)
            .map_err(|e| e.to_string())?;
        if response.status != 200 {
            return Err(format!("{}: status {}", case.name(), response.status));
        }
        let mut owasp: Vec<(String, String)> = response
            .headers
            .iter()
            .filter(|(n, _)| OWASP_ADD.iter().any(|(a, _)| a == n))
            .cloned()
            .collect();
        owasp.sort();
        if owasp.len() != OWASP_ADD.len() {
            return Err(format!("{}: {} owasp headers", case.name(), owasp.len()));
        }
        let wasm_only = case.is_wasm().then(|| {
            (
                response.header("x-canary-version").map(str::to_owned),
                response.header("ratelimit-policy").map(str::to_owned),
            )
        });
        if let Some((None, _) | (_, None)) = &wasm_only {
            return Err(format!("{}: no canary or rate-limit headers", case.name()));
        }
        seen.push((case, owasp, wasm_only));
    }
    for pair in seen.windows(2) {
        if let [(a, a_owasp, a_wasm), (b, b_owasp, b_wasm)] = pair {
            let wasm_differ = a_wasm.is_some() && b_wasm.is_some() && a_wasm != b_wasm;
            if a_owasp != b_owasp || wasm_differ {
                return Err(format!("{} and {} answer differently", a.name(), b.name()));
            }
        }
    }
    Ok(())
}

/// canary-router must really decide on every request: the hashed version
/// (not the client's spoofed `v2`) echoed, and the sticky cookie set, twice
/// on one connection (the second request carries no cookie either, so it
/// takes the same path as every measured one).
fn check_canary_routing(settings: &Settings) -> Result<(), String> {
    if !settings.cases.contains(&Case::CanaryRouter) {
        return Ok(());
    }
    let envoy = Envoy::start_with(&Case::CanaryRouter.bootstrap(), &options(settings));
    let mut conn = envoy.connect();
    let cookie = format!("canary-version={CANARY_ROUTER_VERSION};");
    for _ in 0..2 {
        let response = conn.send_raw(request(), false).map_err(|e| e.to_string())?;
        let echo = response.header("x-canary-version");
        let set_cookie = response.header("set-cookie").unwrap_or_default();
        if response.status != 200
            || echo != Some(CANARY_ROUTER_VERSION)
            || !set_cookie.starts_with(&cookie)
        {
            return Err(format!(
                "{}: status {}, x-canary-version {echo:?}, set-cookie {set_cookie:?}; want {CANARY_ROUTER_VERSION}",
                Case::CanaryRouter.name(),
                response.status
            ));
        }
    }
    Ok(())
}

fn measure(
    case: Case,
    settings: &Settings,
    tick_hz: f64,
    global_service: Option<&GlobalService>,
) -> Result<Run, String> {
    let envoy = Envoy::start_with(&case.bootstrap(), &options(settings));
    let pid = envoy.pid();
    // Guard against measuring the wrong thing: the Wasm cases must have live
    // V8 VMs, the native ones none.
    let vms = active_wasm_vms(&envoy);
    if case.is_wasm() != (vms > 0) {
        return Err(format!("{vms} active V8 VMs"));
    }
    let mut conns: Vec<Connection> = (0..settings.connections).map(|_| envoy.connect()).collect();
    for conn in &mut conns {
        for _ in 0..settings.warmup.div_ceil(settings.connections) {
            let r = conn
                .send_raw(case.request(), false)
                .map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!("status {}", r.status));
            }
        }
    }
    let worker = worker_tid(pid).ok_or("no wrk:worker_0 thread")?;
    // The service and Redis work for the global cases' requests: their CPU
    // is reported apart and kept out of `other load`.
    let helpers: Vec<u32> = match global_service {
        Some(g) if case.is_global() => vec![g.service.pid(), g.redis.pid()],
        _ => Vec::new(),
    };
    let helpers_before = helpers_ticks(&helpers)?;
    let machine_before = machine_busy_ticks()?;
    let self_before = cpu_ticks("/proc/self/stat")?;
    let cpu_before = cpu_ticks(&format!("/proc/{pid}/stat"))?;
    let worker_before = cpu_ticks(&format!("/proc/{pid}/task/{worker}/stat"))?;
    let limit = Duration::from_secs_f64(settings.seconds);
    let start = Instant::now();
    let mut latencies_ns = drive(
        &mut conns,
        case.request(),
        settings.max_requests,
        start + limit,
    )?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = cpu_ticks(&format!("/proc/{pid}/stat"))?;
    let worker_after = cpu_ticks(&format!("/proc/{pid}/task/{worker}/stat"))?;
    let self_after = cpu_ticks("/proc/self/stat")?;
    let machine_after = machine_busy_ticks()?;
    let helpers_used = helpers_ticks(&helpers)?.saturating_sub(helpers_before);
    let others = machine_after.saturating_sub(machine_before) as f64
        - cpu_after.saturating_sub(cpu_before) as f64
        - self_after.saturating_sub(self_before) as f64
        - helpers_used as f64;
    let rpc_p99_ms = if case.is_global() && case != Case::GlobalBaseline {
        rpc_p99_ms(&envoy)?
    } else {
        f64::NAN
    };
    drop(conns);
    drop(envoy);

    let requests = latencies_ns.len();
    latencies_ns.sort_unstable();
    let per_req = |ticks: u64| ticks as f64 / tick_hz * 1e6 / requests as f64;
    Ok(Run {
        requests,
        cpu_us_per_req: per_req(cpu_after.saturating_sub(cpu_before)),
        worker_us_per_req: per_req(worker_after.saturating_sub(worker_before)),
        p50_us: percentile(&latencies_ns, 0.50) / 1e3,
        p99_us: percentile(&latencies_ns, 0.99) / 1e3,
        rps: requests as f64 / elapsed,
        other_load_pct: (others.max(0.0) / tick_hz / elapsed) * 100.0,
        rpc_p99_ms,
        service_us_per_req: if helpers.is_empty() {
            f64::NAN
        } else {
            per_req(helpers_used)
        },
    })
}

/// Sends requests on every connection, one thread per connection and one
/// request in flight on each, until `deadline` or `max_requests` in all;
/// returns every request's round-trip time. The threads inherit the bench's
/// CPU pinning.
fn drive(
    conns: &mut [Connection],
    request: &[u8],
    max_requests: usize,
    deadline: Instant,
) -> Result<Vec<u64>, String> {
    let sent_total = AtomicUsize::new(0);
    let per_thread: Vec<Result<Vec<u64>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = conns
            .iter_mut()
            .map(|conn| {
                let sent_total = &sent_total;
                scope.spawn(move || {
                    let mut latencies = Vec::with_capacity(max_requests.min(1 << 20));
                    while sent_total.fetch_add(1, Ordering::Relaxed) < max_requests
                        && Instant::now() < deadline
                    {
                        let sent = Instant::now();
                        let r = conn.send_raw(request, false).map_err(|e| e.to_string())?;
                        latencies
                            .push(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX));
                        if r.status != 200 {
                            return Err(format!("status {}", r.status));
                        }
                    }
                    Ok(latencies)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("client thread panicked".into()))
            })
            .collect()
    });
    let mut all = Vec::new();
    for latencies in per_thread {
        all.extend(latencies?);
    }
    Ok(all)
}

/// utime + stime of these processes, summed.
fn helpers_ticks(pids: &[u32]) -> Result<u64, String> {
    pids.iter()
        .map(|pid| cpu_ticks(&format!("/proc/{pid}/stat")))
        .sum()
}

/// The p99 of `cluster.ratelimit.upstream_rq_time` (ms), cumulative. With
/// `stats_flush_on_admin`, a `/stats` request starts the histogram merge
/// and a later one sees its result, hence the poll.
fn rpc_p99_ms(envoy: &Envoy) -> Result<f64, String> {
    let name = format!("cluster.{}.upstream_rq_time", global::CLUSTER);
    let path = format!("/stats?format=json&filter=^{name}$");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let json = envoy.admin_get(&path).json();
        let p99 = histogram_quantile(&json, &name, 99.0);
        match p99 {
            Some(value) => return Ok(value),
            None if Instant::now() > deadline => {
                return Err(format!("no p99 of {name} in the admin stats: {json}"))
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The cumulative value at `quantile` (percent) of histogram `name` in a
/// `/stats?format=json` answer: `{"stats": [.., {"histograms":
/// {"supported_quantiles": [..], "computed_quantiles": [{"name", "values":
/// [{"interval", "cumulative"}]}]}}]}`; `None` before the first merge
/// (Envoy leaves `cumulative` out while the histogram has no samples).
fn histogram_quantile(json: &serde_json::Value, name: &str, quantile: f64) -> Option<f64> {
    let histograms = json
        .get("stats")?
        .as_array()?
        .iter()
        .find_map(|stat| stat.get("histograms"))?;
    let index = histograms
        .get("supported_quantiles")?
        .as_array()?
        .iter()
        .position(|q| q.as_f64().is_some_and(|q| (q - quantile).abs() < 1e-9))?;
    histograms
        .get("computed_quantiles")?
        .as_array()?
        .iter()
        .find(|h| h.get("name").and_then(|n| n.as_str()) == Some(name))?
        .get("values")?
        .as_array()?
        .get(index)?
        .get("cumulative")?
        .as_f64()
}

/// Envoy's `wasm.envoy.wasm.runtime.v8.active` gauge (0 when absent).
fn active_wasm_vms(envoy: &Envoy) -> u64 {
    let stat = "wasm.envoy.wasm.runtime.v8.active";
    envoy
        .admin_get(&format!("/stats?filter={stat}"))
        .text()
        .lines()
        .find_map(|l| {
            l.strip_prefix(stat)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Busy ticks of the whole machine (all CPUs) from `/proc/stat`: user, nice,
/// system, irq, softirq and steal.
fn machine_busy_ticks() -> Result<u64, String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let cpu = stat.lines().next().ok_or("/proc/stat: empty")?;
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    Ok([0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| fields.get(*i))
        .sum())
}

/// utime + stime from a `/proc/.../stat` line. Fields are counted after the
/// `)` that closes the command name, which may itself contain spaces.
fn cpu_ticks(path: &str) -> Result<u64, String> {
    let stat = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or(format!("{path}: no comm"))?;
    // After ")": state(3) ppid(4) ... utime(14) stime(15); index 0 is field 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or(format!("{path}: field {}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// The thread id of Envoy's first worker (`wrk:worker_0`).
fn worker_tid(pid: u32) -> Option<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|task| {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        (comm.trim() == "wrk:worker_0").then(|| task.file_name().to_string_lossy().into_owned())
    })
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).map_or(f64::NAN, |v| *v as f64)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match (values.get(n / 2), n % 2) {
        (Some(mid), 1) => *mid,
        (Some(hi), _) => values.get(n / 2 - 1).map_or(*hi, |lo| (lo + hi) / 2.0),
        (None, _) => f64::NAN,
    }
}

/// Writes `envoy-bench.json` (every configuration's medians and rounds),
/// `envoy-bench.md` (the table) and `envoy-bench.svg` (Envoy CPU per
/// request, one bar per configuration, native ones in grey) to
/// `<target dir>/bench-report/`.
fn write_report(table: &str, rows: &[serde_json::Value]) -> Result<std::path::PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| paths::repo_root().join("target"));
    let dir = target.join("bench-report");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_default();
    // Not available_parallelism(): the bench pins itself to one CPU.
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| info.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let report = serde_json::json!({
        "unix_time": when,
    "machine": {"cpu": cpu_model, "cpus": cpus},
        "configurations": rows,
    });
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("envoy-bench.json", format!("{report:#}\n"))?;
    write("envoy-bench.md", table.to_owned())?;
    write("envoy-bench.svg", svg_chart(rows))?;
    Ok(dir)
}

/// A horizontal bar chart of Envoy CPU per request.
fn svg_chart(rows: &[serde_json::Value]) -> String {
    let value = |row: &serde_json::Value| {
        row.get("envoy_cpu_us_per_request")
            .and_then(serde_json::Value::as_f64)
            .filter(|v| v.is_finite())
            .unwrap_or(0.0)
    };
    let max = rows.iter().map(value).fold(1.0_f64, f64::max);
    let (label_w, bar_w, row_h) = (380.0, 420.0, 28.0);
    let height = 50.0 + row_h * rows.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <text x=\"10\" y=\"22\" font-size=\"15\">Envoy CPU per request (µs, median), lower is better</text>\n",
        w = label_w + bar_w + 80.0
    );
    for (i, row) in rows.iter().enumerate() {
        let y = 40.0 + row_h * i as f64;
        let v = value(row);
        let name = row
            .get("name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        let wasm = row
            .get("wasm")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let colour = if wasm { "#4c78a8" } else { "#9d9d9d" };
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{ty}\">{name}</text>\n\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{bw:.1}\" height=\"{bh}\" fill=\"{colour}\"/>\n\
             <text x=\"{tx:.1}\" y=\"{ty}\">{v:.1}</text>\n",
            ty = y + 15.0,
            bw = bar_w * v / max,
            bh = row_h - 8.0,
            tx = label_w + bar_w * v / max + 6.0,
            name = name.replace('&', "&amp;").replace('<', "&lt;"),
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn print_summary(cases: &[Case], runs: &BTreeMap<Case, Vec<Run>>, connections: usize) {
    let med = |case: Case, f: fn(&Run) -> f64| -> f64 {
        runs.get(&case)
            .map_or(f64::NAN, |r| median(r.iter().map(f).collect()))
    };
    let cpu = |case| med(case, |r| r.cpu_us_per_req);
    // The lowest and highest round, so a reader sees the noise next to
    // each median (the machine is shared; see the README).
    let range = |case: Case| -> (f64, f64) {
        runs.get(&case).map_or((f64::NAN, f64::NAN), |r| {
            r.iter()
                .map(|run| run.cpu_us_per_req)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                })
        })
    };
    // Without `none` in the run, "added" columns are NaN.
    let base_cpu = cpu(Case::None);
    let base_worker = med(Case::None, |r| r.worker_us_per_req);
    let rounds = runs.values().map(Vec::len).max().unwrap_or(0);
    println!();
    let mut table = format!(
        "Medians over {rounds} rounds (Envoy 1 worker, HTTP/1.1 keep-alive, {connections} connection(s) with one request in flight each, direct_response):\n\n\
         | configuration | Envoy CPU/req (µs), median (lowest–highest round) | added vs none (µs) | worker CPU/req (µs) | worker added (µs) | p50 (µs) | p99 (µs) | req/s |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    let mut rows = Vec::new();
    for &case in cases {
        let worker = med(case, |r| r.worker_us_per_req);
        let (lowest, highest) = range(case);
        table.push_str(&format!(
            "| {} | {:.1} ({lowest:.1}–{highest:.1}) | {:+.1} | {:.1} | {:+.1} | {:.1} | {:.1} | {:.0} |\n",
            case.name(),
            cpu(case),
            cpu(case) - base_cpu,
            worker,
            worker - base_worker,
            med(case, |r| r.p50_us),
            med(case, |r| r.p99_us),
            med(case, |r| r.rps)
        ));
        rows.push(serde_json::json!({
            "id": case.id(),
            "name": case.name(),
            "wasm": case.is_wasm(),
            "envoy_cpu_us_per_request": cpu(case),
            "added_vs_none_us": cpu(case) - base_cpu,
            "worker_cpu_us_per_request": worker,
            "p50_us": med(case, |r| r.p50_us),
            "p99_us": med(case, |r| r.p99_us),
            "requests_per_second": med(case, |r| r.rps),
            "rpc_p99_ms": finite(med(case, |r| r.rpc_p99_ms)),
            "service_cpu_us_per_request": finite(med(case, |r| r.service_us_per_req)),
            "rounds": runs.get(&case).map(|rs| rs.iter().map(|r| serde_json::json!({
                "requests": r.requests,
                "envoy_cpu_us_per_request": r.cpu_us_per_req,
                "p50_us": r.p50_us,
                "p99_us": r.p99_us,
                "other_load_pct": r.other_load_pct,
                "rpc_p99_ms": finite(r.rpc_p99_ms),
                "service_cpu_us_per_request": finite(r.service_us_per_req),
            })).collect::<Vec<_>>()),
        }));
    }
    print!("{table}");
    match write_report(&table, &rows) {
        Ok(dir) => println!("\nReport: {0}/envoy-bench.{{json,md,svg}}", dir.display()),
        Err(e) => eprintln!("envoy-bench: cannot write the report: {e}"),
    }
    let noisiest = runs
        .values()
        .flatten()
        .map(|r| r.other_load_pct)
        .fold(0.0_f64, f64::max);
    println!();
    println!("Other processes' CPU during runs: at most {noisiest:.0}% of one core.");
    if noisiest > NOISY_LOAD_PCT {
        println!(
            "WARNING: other work ran during the bench (> {NOISY_LOAD_PCT}% of a core); \
             on this 2-core machine that inflates Envoy's CPU per request. Re-run on a quiet machine."
        );
    }
    let has = |wanted: &[Case]| wanted.iter().all(|case| cases.contains(case));
    let added = |case| cpu(case) - base_cpu;
    println!();
    if has(&[Case::None, Case::SecurityHeaders, Case::HeaderMutation]) {
        println!(
            "security-headers added / header_mutation added: {:.1} / {:.1} µs = {:.2}x",
            added(Case::SecurityHeaders),
            added(Case::HeaderMutation),
            added(Case::SecurityHeaders) / added(Case::HeaderMutation)
        );
    }
    if has(&[Case::None, Case::Noop, Case::Metrics]) {
        println!(
            "metrics added / noop added: {:.1} / {:.1} µs = {:.2}x",
            added(Case::Metrics),
            added(Case::Noop),
            added(Case::Metrics) / added(Case::Noop)
        );
    }
    if has(&[Case::Noop, Case::SecurityHeaders]) {
        println!(
            "security-headers minus noop (the filter's own work over the Wasm floor): {:.1} µs",
            cpu(Case::SecurityHeaders) - cpu(Case::Noop)
        );
    }
    if has(&[Case::Noop, Case::FloorNone]) {
        println!(
            "probe with no calls minus noop (what the probe itself costs): {:+.1} µs",
            cpu(Case::FloorNone) - cpu(Case::Noop)
        );
    }
    for (floor, filter) in [
        (Case::FloorSecurityHeaders, Case::SecurityHeaders),
        (Case::FloorMetrics, Case::Metrics),
        (Case::FloorRateLimit, Case::RateLimit),
        (Case::FloorCanaryRouter, Case::CanaryRouter),
        (Case::FloorBundle, Case::Bundle),
        (Case::FloorJwtAuth, Case::JwtAuth),
    ] {
        if has(&[Case::Noop, floor]) {
            let own = if has(&[filter]) {
                format!("{:.1} µs", cpu(filter) - cpu(Case::Noop))
            } else {
                "not run".to_owned()
            };
            println!(
                "{}: its host calls alone (probe) {:.1} µs over noop; the filter's own work {own}",
                filter.id(),
                cpu(floor) - cpu(Case::Noop)
            );
        }
    }
    if has(&[Case::Noop, Case::Metrics]) {
        println!(
            "metrics minus noop: {:.1} µs",
            cpu(Case::Metrics) - cpu(Case::Noop)
        );
    }
    if has(&[Case::Noop, Case::CanaryRouter]) {
        println!(
            "canary-router minus noop (its own work over the Wasm floor): {:.1} µs (goal <= 1.0 µs)",
            cpu(Case::CanaryRouter) - cpu(Case::Noop)
        );
    }
    if has(&[
        Case::None,
        Case::Noop,
        Case::RateLimit,
        Case::LocalRateLimit,
    ]) {
        let own = cpu(Case::RateLimit) - cpu(Case::Noop);
        let native = added(Case::LocalRateLimit);
        println!(
            "rate-limit minus noop (its own work over the Wasm floor): {own:.1} µs; \
             local_ratelimit added vs none: {native:.1} µs; ratio {:.2}x (goal <= 1.5x); \
             rate-limit added vs none: {:.1} µs",
            own / native,
            added(Case::RateLimit)
        );
    }
    if has(&[Case::GlobalFloor, Case::GlobalWasm, Case::GlobalNative]) {
        let floor = added(Case::GlobalFloor);
        println!(
            "global: a bare Wasm gRPC callout (fixture) adds {floor:.1} µs, native ratelimit {:.1} µs \
             ({:+.1} µs); rate-limit global's own work over the bare callout {:+.1} µs",
            added(Case::GlobalNative),
            floor - added(Case::GlobalNative),
            added(Case::GlobalWasm) - floor,
        );
    }
    if has(&[Case::FloorGlobal, Case::GlobalNative]) {
        let floor = added(Case::FloorGlobal);
        let native = added(Case::GlobalNative);
        println!(
            "global: its host calls alone (probe) add {floor:.1} µs, {:.2}x native ratelimit's {native:.1} µs{}",
            floor / native,
            if has(&[Case::GlobalWasm]) {
                format!(
                    "; rate-limit global's code over them {:+.1} µs",
                    added(Case::GlobalWasm) - floor
                )
            } else {
                String::new()
            }
        );
    }
    if has(&[Case::GlobalBaseline, Case::GlobalWasm, Case::GlobalNative]) {
        let over = |case| cpu(case) - cpu(Case::GlobalBaseline);
        let p = |case, f: fn(&Run) -> f64| med(case, f) - med(Case::GlobalBaseline, f);
        println!(
            "global: rate-limit (Wasm) over the baseline {:.1} µs, ratelimit (native) {:.1} µs: \
             ratio {:.2}x (goal <= 1.2x); added latency p50/p99 Wasm {:+.0}/{:+.0} µs, native \
             {:+.0}/{:+.0} µs; RPC p99 (Envoy's upstream_rq_time) Wasm {:.0} ms, native {:.0} ms; \
             service+Redis CPU/req Wasm {:.1} µs, native {:.1} µs",
            over(Case::GlobalWasm),
            over(Case::GlobalNative),
            over(Case::GlobalWasm) / over(Case::GlobalNative),
            p(Case::GlobalWasm, |r| r.p50_us),
            p(Case::GlobalWasm, |r| r.p99_us),
            p(Case::GlobalNative, |r| r.p50_us),
            p(Case::GlobalNative, |r| r.p99_us),
            med(Case::GlobalWasm, |r| r.rpc_p99_ms),
            med(Case::GlobalNative, |r| r.rpc_p99_ms),
            med(Case::GlobalWasm, |r| r.service_us_per_req),
            med(Case::GlobalNative, |r| r.service_us_per_req),
        );
    } else if has(&[Case::None, Case::GlobalWasm, Case::GlobalNative]) {
        println!(
            "global: rate-limit (Wasm) added vs none {:.1} µs, ratelimit (native) {:.1} µs: \
             ratio {:.2}x (goal <= 1.2x; both include the proxied route and fault filter: \
             add global-baseline to take them out); RPC p99 Wasm {:.0} ms, native {:.0} ms",
            added(Case::GlobalWasm),
            added(Case::GlobalNative),
            added(Case::GlobalWasm) / added(Case::GlobalNative),
            med(Case::GlobalWasm, |r| r.rpc_p99_ms),
            med(Case::GlobalNative, |r| r.rpc_p99_ms),
        );
    }
}

/// `Some(v)` for a finite figure, `None` (JSON `null`) for NaN.
fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}
