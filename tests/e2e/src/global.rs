//! Mesh-wide (global) rate limiting in real Envoy: a throwaway Redis and the
//! workspace's rate-limit service (`tests/ratelimit-service`) on loopback,
//! both killed on drop, and the two filter setups that call the service: our
//! Wasm rate-limit filter's `global` mode and Envoy's native
//! `envoy.filters.http.ratelimit`, configured with the same descriptors so a
//! test can compare them request by request.
//!
//! Redis runs with `--save "" --appendonly no` in its own temp dir: nothing
//! is written to disk and every instance starts empty, so counts in one test
//! never leak into another.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::bootstrap::HttpFilter;
use crate::paths;
use crate::process::Process;

/// How long Redis may take to answer `PING` after it is spawned.
const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the service may take to print `listening on <addr>`.
const SERVICE_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Start attempts for Redis: the free port is picked by binding port 0 and
/// closing it, so another process may take it before Redis binds it.
const REDIS_START_ATTEMPTS: usize = 5;

/// The Envoy cluster name both filter setups call (an HTTP/2 cluster, see
/// [`crate::Bootstrap::grpc_cluster`]).
pub const CLUSTER: &str = "ratelimit";
/// The rate-limit domain (Limitador namespace) of the sample limits file.
pub const DOMAIN: &str = "mesh";
/// The request header whose value is the descriptor entry `user`.
pub const USER_HEADER: &str = "x-user";
/// The descriptor entry key the sample limits count per value.
pub const USER_KEY: &str = "user";
/// The sample limits file's limit per `user` value, per [`WINDOW_SECS`].
pub const USER_LIMIT: usize = 10;
/// The sample limits file's window.
pub const WINDOW_SECS: u64 = 60;

/// A `redis-server` on a free loopback port, killed on drop.
pub struct Redis {
    process: Process,
    port: u16,
}

impl Redis {
    /// Starts Redis (no persistence) and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` is missing (the message names `make redis`) or does
    /// not come up within 10 s (the message carries its log tail).
    pub fn start() -> Self {
        let bin = paths::redis_server_bin();
        let mut last_failure = String::new();
        for _ in 0..REDIS_START_ATTEMPTS {
            let port = free_port();
            let (dir, log) = Process::prepare("redis");
            let mut command = Command::new(&bin);
            command
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--daemonize", "no"])
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut process = Process::spawn("redis", command, dir, log);
            match wait_for_pong(&mut process, port) {
                Ok(()) => return Self { process, port },
                Err(reason) => {
                    last_failure = format!("{reason}; log tail:\n{}", process.log_tail())
                }
            }
        }
        panic!(
            "redis-server ({}) did not start after {REDIS_START_ATTEMPTS} attempts: {last_failure}",
            bin.display()
        )
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`, the service's `--redis` argument.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills Redis now (SIGKILL), as a crash mid-run. Idempotent.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Whether it answers `PING` right now.
    pub fn answers_ping(&self) -> bool {
        ping(self.port).is_ok()
    }
}

/// Polls `PING` until Redis answers `+PONG`, it exits, or the deadline passes.
fn wait_for_pong(process: &mut Process, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + REDIS_READY_TIMEOUT;
    loop {
        if let Some(status) = process.exited() {
            return Err(format!("redis-server exited during start-up ({status})"));
        }
        if ping(port).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no PONG on port {port} after {REDIS_READY_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One inline `PING` on a fresh connection.
fn ping(port: u16) -> std::io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(b"PING\r\n")?;
    let mut answer = [0_u8; 7];
    stream.read_exact(&mut answer)?;
    if &answer == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "PING answered {:?}",
            String::from_utf8_lossy(&answer)
        )))
    }
}

/// A port that was free a moment ago (bind port 0, read it, close).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("bind a free loopback port: {e}"))
}

/// Where the service keeps its counters.
#[derive(Debug, Clone)]
pub enum Storage {
    /// `--redis <url>`.
    Redis(String),
    /// `--memory`: counters in the service process.
    Memory,
}

/// The rate-limit service binary (`dist/bin/ratelimit-service`) listening on
/// a free loopback port, killed on drop.
pub struct RateLimitService {
    process: Process,
    addr: SocketAddr,
}

impl RateLimitService {
    /// Starts the service on `limits` backed by `redis`.
    ///
    /// # Panics
    ///
    /// As [`RateLimitService::start_with`].
    pub fn start(limits: &Path, redis: &Redis) -> Self {
        Self::start_with(limits, &Storage::Redis(redis.url()))
    }

    /// Starts `ratelimit-service --listen 127.0.0.1:0 --limits <limits>
    /// <storage>` and waits for its `listening on <addr>` line on stdout.
    ///
    /// # Panics
    ///
    /// If the binary is missing (the message names `make ratelimit-service`),
    /// exits, or prints no `listening on` line within 30 s (the message
    /// carries its stderr).
    pub fn start_with(limits: &Path, storage: &Storage) -> Self {
        let bin = paths::ratelimit_service_bin();
        let (dir, log) = Process::prepare("ratelimit-service");
        let stderr =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut command = Command::new(&bin);
        command
            .args(["--listen", "127.0.0.1:0"])
            .arg("--limits")
            .arg(limits);
        match storage {
            Storage::Redis(url) => command.args(["--redis", url]),
            Storage::Memory => command.arg("--memory"),
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut process = Process::spawn("ratelimit-service", command, dir, log.clone());
        let stdout = process
            .child_mut()
            .and_then(|c| c.stdout.take())
            .expect("piped stdout");
        // A thread reads stdout for the whole life of the service, so the
        // pipe never fills; the first `listening on` line is handed back,
        // every line is appended to the log.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(&log) {
                    let _ = writeln!(file, "[stdout] {line}");
                }
                if let Some(addr) = line.trim().strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let deadline = Instant::now() + SERVICE_READY_TIMEOUT;
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(text) => match text.parse::<SocketAddr>() {
                    Ok(addr) => break addr,
                    Err(e) => panic!(
                        "ratelimit-service printed `listening on {text}`, not an address ({e})"
                    ),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout closed: the service has exited or is exiting.
                    std::thread::sleep(Duration::from_millis(100));
                    let status = process.exited();
                    panic!(
                        "ratelimit-service ({}) closed stdout before `listening on` \
                         (exit status {status:?}); log:\n{}",
                        bin.display(),
                        process.log_tail()
                    );
                }
            }
            if let Some(status) = process.exited() {
                panic!(
                    "ratelimit-service exited during start-up ({status}); log:\n{}",
                    process.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "ratelimit-service printed no `listening on <addr>` line within \
                     {SERVICE_READY_TIMEOUT:?}; log:\n{}",
                    process.log_tail()
                );
            }
        };
        Self { process, addr }
    }

    /// Its gRPC address, for [`crate::Bootstrap::grpc_cluster`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills the service now (SIGKILL), as a crash mid-run. Idempotent.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Its stderr and stdout so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// What a global rule does when the service fails (timeout, gRPC error,
/// garbage answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Admit the request.
    Allow,
    /// Deny it with 500, as Envoy's native `failure_mode_deny`.
    Deny,
}

impl FailureMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// One rule of the Wasm filter's config in global mode, descriptor
/// `[[user = x-user]]` as [`native_filter`] builds it.
#[derive(Debug, Clone)]
pub struct GlobalRule {
    /// Rule name (counters are `rate_limit.<name>.*`).
    pub name: String,
    /// `match.prefix`; `None` leaves `match` out, so the rule applies to
    /// every request without reading `:path` (a `prefix: "/"` reads it,
    /// which costs a header read per request).
    pub prefix: Option<String>,
    /// `global.domain` ([`DOMAIN`] unless a test wants one the service
    /// does not know).
    pub domain: String,
    /// `global.timeout`.
    pub timeout: Duration,
    /// `global.failure_mode`.
    pub failure_mode: FailureMode,
    /// `global.local_fallback` with this many tokens in the rule's local
    /// `token_bucket`, one bucket per `x-user` (refilled once an hour, so
    /// not during a test); `None`: no fallback and no local bucket.
    pub local_fallback_tokens: Option<u32>,
}

impl GlobalRule {
    /// A rule on every request, 1 s timeout, `failure_mode: allow`, no
    /// fallback.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            prefix: None,
            domain: DOMAIN.to_owned(),
            timeout: Duration::from_secs(1),
            failure_mode: FailureMode::Allow,
            local_fallback_tokens: None,
        }
    }

    /// The rule as the filter's JSON.
    pub fn to_json(&self) -> Value {
        let mut global = json!({
            "cluster": CLUSTER,
            "domain": self.domain,
            "timeout": format!("{}ms", self.timeout.as_millis()),
            "descriptors": [[{"key": USER_KEY, "from": {"header": USER_HEADER}}]],
            "failure_mode": self.failure_mode.as_str(),
            "local_fallback": self.local_fallback_tokens.is_some(),
        });
        let mut rule = json!({"name": self.name});
        if let (Some(rule), Some(global)) = (rule.as_object_mut(), global.as_object_mut()) {
            if let Some(prefix) = &self.prefix {
                rule.insert("match".into(), json!({"prefix": prefix}));
            }
            if let Some(tokens) = self.local_fallback_tokens {
                // One fallback bucket per user, as the service counts per
                // `user` entry.
                rule.insert("key".into(), json!([{"header": USER_HEADER}]));
                rule.insert(
                    "token_bucket".into(),
                    json!({"max_tokens": tokens, "tokens_per_fill": tokens,
                           "fill_interval": "3600s"}),
                );
            }
            rule.insert("global".into(), Value::Object(std::mem::take(global)));
        }
        rule
    }
}

/// Our Wasm rate-limit filter (`dist/filters/rate_limit.wasm`) with these
/// global rules.
pub fn wasm_filter(rules: &[GlobalRule]) -> HttpFilter {
    let config = json!({"rules": rules.iter().map(GlobalRule::to_json).collect::<Vec<_>>()});
    HttpFilter::wasm(
        "rate_limit",
        &paths::filter_wasm("rate_limit"),
        &config.to_string(),
    )
}

/// Envoy's native `envoy.filters.http.ratelimit` calling [`CLUSTER`] for
/// [`DOMAIN`], with `x-ratelimit-*` headers from the service's answer. It
/// only calls the service for a route whose `rate_limits` produce a
/// descriptor: pair it with [`native_route_rate_limits`] on a proxied route
/// (a `direct_response` route has no route entry, and the native filter
/// skips such requests).
pub fn native_filter(timeout: Duration, failure_mode: FailureMode) -> HttpFilter {
    HttpFilter::Raw(json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": DOMAIN,
            "timeout": format!("{}s", timeout.as_secs_f64()),
            "failure_mode_deny": failure_mode == FailureMode::Deny,
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "rate_limit_service": {
                "grpc_service": {"envoy_grpc": {"cluster_name": CLUSTER}},
                "transport_api_version": "V3",
            },
        },
    }))
}

/// The route-level `rate_limits` giving the native filter the same
/// descriptor as the Wasm rule: `[(user, <x-user>)]` (none when the header
/// is absent, as the Wasm filter skips a descriptor whose source is missing).
pub fn native_route_rate_limits() -> Value {
    json!([{"actions": [{"request_headers":
        {"header_name": USER_HEADER, "descriptor_key": USER_KEY}}]}])
}
