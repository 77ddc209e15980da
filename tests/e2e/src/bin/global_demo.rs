//! `global-demo`: mesh-wide rate limits in real Envoy, the last part of
//! `make demo`. Redis, the test rate-limit service (Limitador's engine) and
//! two Envoy "pods" with the rate-limit filter's global mode; a limit of 10
//! per minute per user holds across both pods; then Redis is stopped and
//! the local fallback bucket keeps limiting each pod.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use e2e::global::{self, FailureMode, GlobalRule, RateLimitService, Redis, USER_HEADER};
use e2e::{paths, Bootstrap, EchoUpstream, Envoy, EnvoyOptions, Route, UpstreamConfig};

/// The fallback bucket of each pod while the service cannot answer.
const FALLBACK_TOKENS: u32 = 3;

fn main() -> ExitCode {
    // A failure is one line, not a backtrace; the hook after it kills the
    // children (Envoy, Redis, the service) before the process ends.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown failure");
        eprintln!("global-demo: {message}");
    }));
    e2e::envoy::kill_envoys_on_panic();
    match std::panic::catch_unwind(demo) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("global-demo: {e}");
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(1),
    }
}

fn demo() -> Result<(), String> {
    let mut redis = Redis::start();
    let service = RateLimitService::start(&paths::ratelimit_service_limits(), &redis);
    let upstream = EchoUpstream::start(UpstreamConfig::default());
    println!(
        "== Mesh-wide rate limit: Redis on {}, the rate-limit service on {} (Limitador, \
         tests/ratelimit-service/limits/mesh.yaml: {} per {} s per user)",
        redis.url(),
        service.addr(),
        global::USER_LIMIT,
        global::WINDOW_SECS,
    );
    let rule = GlobalRule {
        timeout: Duration::from_millis(250),
        failure_mode: FailureMode::Allow,
        local_fallback_tokens: Some(FALLBACK_TOKENS),
        ..GlobalRule::new("per_user")
    };
    println!(
        "   filter config of both pods: {}",
        serde_json::json!({"rules": [rule.to_json()]})
    );
    let pod = || {
        Envoy::start_with(
            &Bootstrap::new()
                .filter(global::wasm_filter(std::slice::from_ref(&rule)))
                .route("/", Route::Upstream(upstream.addr()))
                .grpc_cluster(global::CLUSTER, service.addr()),
            &EnvoyOptions {
                concurrency: 1,
                ..EnvoyOptions::default()
            },
        )
    };
    let pods = [pod(), pod()];
    let mut conns: Vec<_> = pods.iter().map(Envoy::connect).collect();
    let mut send = |i: usize| -> Result<(u16, Duration, String), String> {
        let start = Instant::now();
        let conn = conns
            .get_mut(i % 2)
            .ok_or_else(|| format!("no connection for request {i}"))?;
        let response = conn
            .request("GET", "/api/items", &[(USER_HEADER, "alice")])
            .map_err(|e| format!("request {i}: {e}"))?;
        let state = response.header("ratelimit").unwrap_or("-").to_owned();
        Ok((response.status, start.elapsed(), state))
    };
    println!("-- 14 requests as alice, alternating between pod A and pod B:");
    let mut admitted = 0;
    for i in 0..14 {
        let (status, took, state) = send(i)?;
        admitted += usize::from(status == 200);
        println!(
            "   #{:<2} pod {}  {status}  {:>6.2} ms  RateLimit: {state}",
            i + 1,
            pod_name(i),
            took.as_secs_f64() * 1e3
        );
    }
    if admitted != global::USER_LIMIT {
        return Err(format!(
            "expected exactly {} admitted across both pods, got {admitted}",
            global::USER_LIMIT
        ));
    }
    println!(
        "   {admitted} admitted across both pods: one limit for the mesh, not {} per pod.",
        global::USER_LIMIT
    );
    redis.stop();
    println!(
        "-- Redis stopped: the service fails, and each pod's fallback bucket ({FALLBACK_TOKENS} per user) decides:"
    );
    let mut fallback = Vec::new();
    for i in 0..8 {
        let (status, took, _) = send(i)?;
        fallback.push(status);
        println!(
            "   #{:<2} pod {}  {status}  {:>6.2} ms",
            i + 1,
            pod_name(i),
            took.as_secs_f64() * 1e3
        );
    }
    let fallback_admitted = fallback.iter().filter(|s| **s == 200).count();
    let per_pod = usize::try_from(FALLBACK_TOKENS).unwrap_or(usize::MAX);
    if fallback_admitted != 2 * per_pod {
        return Err(format!(
            "expected {} admitted by the two fallback buckets, got {fallback_admitted}",
            2 * per_pod
        ));
    }
    println!(
        "   {fallback_admitted} admitted ({FALLBACK_TOKENS} per pod), the rest 429; \
         Envoy's native ratelimit filter could only fail open or closed here."
    );
    Ok(())
}

/// The pod a request went to: requests alternate between A and B.
fn pod_name(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "A"
    } else {
        "B"
    }
}
