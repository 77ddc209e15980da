//! End-to-end tests of the `ratelimit-service` binary: a real `redis-server`
//! on a free loopback port, the binary started as a child process, and
//! calls over gRPC with tonic's client, exactly as Envoy or the filter
//! make them.
//!
//! `redis-server` must be on PATH (`make redis` installs Debian's); the
//! Redis tests fail, naming that target, when it is missing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ratelimit_proto::{Code, RateLimitRequest, RateLimitResponse, Unit};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

const BIN: &str = env!("CARGO_BIN_EXE_ratelimit-service");
const MESH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/limits/mesh.yaml");
/// A call that takes longer than this counts as a hang.
const CALL_BOUND: Duration = Duration::from_secs(3);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private redis-server, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start redis-server ({err}): these tests need it on PATH; \
                     run `make redis` (installs Debian's redis-server)"
                )
            });
        let mut redis = Self { child, port };
        redis.wait_ready();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                let mut reply = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server exited at start: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running service process, killed on drop; its stderr is collected.
struct Service {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Service {
    fn start(storage: &[&str]) -> Self {
        Self::start_with(MESH, storage)
    }

    fn start_with(limits: &str, storage: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--limits", limits])
            .args(storage)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(addr) = line.trim_end().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "service did not print `listening on ADDR` (got {line:?}); stderr: {}",
                stderr.lock().unwrap()
            );
        };
        Self {
            addr: addr.parse().unwrap(),
            child,
            stderr,
        }
    }

    async fn client(&self) -> Client {
        let channel = Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(CALL_BOUND)
            .connect()
            .await
            .unwrap();
        Client(tonic::client::Grpc::new(channel))
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether stderr shows `needle` within a second: the log line is
    /// written before the answer is sent, but read here by another thread.
    fn logged(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !self.stderr().contains(needle) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

struct Client(tonic::client::Grpc<Channel>);

impl Client {
    /// One ShouldRateLimit call; panics if it takes longer than CALL_BOUND.
    async fn call(
        &mut self,
        request: RateLimitRequest,
    ) -> Result<RateLimitResponse, tonic::Status> {
        let started = Instant::now();
        let result = tokio::time::timeout(CALL_BOUND, async {
            self.0.ready().await.unwrap();
            self.0
                .unary(
                    tonic::Request::new(request),
                    PathAndQuery::from_static(ratelimit_proto::PATH),
                    tonic_prost::ProstCodec::<RateLimitRequest, RateLimitResponse>::default(),
                )
                .await
                .map(tonic::Response::into_inner)
        })
        .await;
        result.unwrap_or_else(|_| panic!("call hung for {:?}", started.elapsed()))
    }
}

fn request(domain: &str, descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
    RateLimitRequest::from_entries(domain, descriptors, 1)
}

fn user(name: &str) -> RateLimitRequest {
    request("mesh", &[&[("user", name)]])
}

/// Asserts a response's verdict and its (single) status's counter.
fn assert_verdict(resp: &RateLimitResponse, code: Code, remaining: u32, limit: u32) {
    assert_eq!(resp.overall_code, code as i32, "{resp:?}");
    assert_eq!(resp.statuses.len(), 1, "{resp:?}");
    let status = &resp.statuses[0];
    assert_eq!(status.code, code as i32, "{resp:?}");
    assert_eq!(status.limit_remaining, remaining, "{resp:?}");
    let current = status.current_limit.as_ref().expect("current_limit");
    assert_eq!(current.requests_per_unit, limit, "{resp:?}");
    assert_eq!(current.unit, Unit::Minute as i32, "{resp:?}");
    let reset = status.duration_until_reset.expect("duration_until_reset");
    let reset = reset.seconds as f64 + f64::from(reset.nanos) / 1e9;
    assert!(
        reset > 0.0 && reset <= 60.0,
        "reset {reset} outside the 60 s window"
    );
}

fn write_limits(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rls-test-{}-{name}.yaml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn redis_admits_exactly_n_counting_down_then_over_limit() {
    let redis = Redis::start();
    let service = Service::start(&["--redis", &redis.url()]);
    let mut client = service.client().await;
    for i in 1..=10u32 {
        let resp = client.call(user("ann")).await.unwrap();
        assert_verdict(&resp, Code::Ok, 10 - i, 10);
        assert_eq!(
            resp.statuses[0].current_limit.as_ref().unwrap().name,
            "per-user"
        );
    }
    for _ in 0..3 {
        let resp = client.call(user("ann")).await.unwrap();
        assert_verdict(&resp, Code::OverLimit, 0, 10);
    }
    // One counter per user: another user starts at the full limit.
    let resp = client.call(user("bob")).await.unwrap();
    assert_verdict(&resp, Code::Ok, 9, 10);
}

#[tokio::test]
async fn two_services_on_one_redis_share_the_count() {
    let redis = Redis::start();
    let a = Service::start(&["--redis", &redis.url()]);
    let b = Service::start(&["--redis", &redis.url()]);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    for i in 1..=10u32 {
        let client = if i % 2 == 0 { &mut ca } else { &mut cb };
        let resp = client.call(user("carol")).await.unwrap();
        assert_verdict(&resp, Code::Ok, 10 - i, 10);
    }
    assert_verdict(
        &ca.call(user("carol")).await.unwrap(),
        Code::OverLimit,
        0,
        10,
    );
    assert_verdict(
        &cb.call(user("carol")).await.unwrap(),
        Code::OverLimit,
        0,
        10,
    );

    // The /expensive limit has one counter for everyone: 5 across both
    // processes and five different users.
    for i in 1..=5u32 {
        let client = if i % 2 == 0 { &mut ca } else { &mut cb };
        let name = format!("u{i}");
        let resp = client
            .call(request(
                "mesh",
                &[&[("user", &name), ("path", "/expensive")]],
            ))
            .await
            .unwrap();
        assert_verdict(&resp, Code::Ok, 5 - i, 5);
    }
    let resp = ca
        .call(request(
            "mesh",
            &[&[("user", "u6"), ("path", "/expensive")]],
        ))
        .await
        .unwrap();
    assert_verdict(&resp, Code::OverLimit, 0, 5);
    // Other paths are not under the /expensive limit.
    let resp = cb
        .call(request("mesh", &[&[("user", "u7"), ("path", "/cheap")]]))
        .await
        .unwrap();
    assert_verdict(&resp, Code::Ok, 9, 10);
}

#[tokio::test]
async fn mesh_limits_read_path_from_either_descriptor_layout() {
    let service = Service::start(&["--memory"]);
    let mut client = service.client().await;
    // Portable layout: [[user], [path]]. Two statuses, both carrying the
    // tightest counter (the shared /expensive one).
    for i in 1..=3u32 {
        let name = format!("two-{i}");
        let resp = client
            .call(request(
                "mesh",
                &[&[("user", &name)], &[("path", "/expensive")]],
            ))
            .await
            .unwrap();
        assert_eq!(resp.statuses.len(), 2);
        assert_eq!(resp.statuses[0], resp.statuses[1]);
        assert_eq!(resp.statuses[1].limit_remaining, 5 - i, "{resp:?}");
    }
    // One descriptor with both entries: the same shared counter.
    for i in 4..=5u32 {
        let name = format!("one-{i}");
        let resp = client
            .call(request(
                "mesh",
                &[&[("user", &name), ("path", "/expensive")]],
            ))
            .await
            .unwrap();
        assert_verdict(&resp, Code::Ok, 5 - i, 5);
    }
    let resp = client
        .call(request(
            "mesh",
            &[&[("user", "x")], &[("path", "/expensive")]],
        ))
        .await
        .unwrap();
    assert_eq!(resp.overall_code, Code::OverLimit as i32);
    // A path descriptor alone is limited too; a path elsewhere is not.
    let resp = client
        .call(request("mesh", &[&[("path", "/expensive")]]))
        .await
        .unwrap();
    assert_eq!(resp.overall_code, Code::OverLimit as i32);
    let resp = client
        .call(request("mesh", &[&[("user", "y")], &[("path", "/cheap")]]))
        .await
        .unwrap();
    assert_eq!(resp.overall_code, Code::Ok as i32);
    assert_eq!(resp.statuses[0].limit_remaining, 9);
}

#[tokio::test]
async fn unknown_domain_is_not_found() {
    let service = Service::start(&["--memory"]);
    let mut client = service.client().await;
    let err = client
        .call(request("nope", &[&[("user", "ann")]]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("\"nope\""), "{err:?}");
    assert!(service.logged("NotFound"), "{}", service.stderr());
}

#[tokio::test]
async fn malformed_descriptors_are_invalid_argument() {
    let service = Service::start(&["--memory"]);
    let mut client = service.client().await;
    for (req, needle) in [
        (request("mesh", &[&[("user", "")]]), "value: empty"),
        (request("mesh", &[&[("", "ann")]]), "key: empty"),
        (request("mesh", &[]), "descriptors: the list is empty"),
        (request("mesh", &[&[]]), "no entries"),
    ] {
        let err = client.call(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(needle), "{err:?}");
    }
    // Refused requests count nothing.
    assert_verdict(&client.call(user("ann")).await.unwrap(), Code::Ok, 9, 10);
}

#[tokio::test]
async fn condition_on_a_missing_descriptor_is_invalid_argument_not_a_crash() {
    let limits = write_limits(
        "second-descriptor",
        "- namespace: mesh\n  name: second\n  max_value: 2\n  seconds: 60\n  conditions: [\"descriptors[1].tier == 'free'\"]\n  variables: []\n",
    );
    let service = Service::start_with(limits.to_str().unwrap(), &["--memory"]);
    let mut client = service.client().await;
    let err = client.call(user("ann")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("descriptors[1].tier"), "{err:?}");
    // The service is still up and counts requests that fit.
    let fits = request("mesh", &[&[("user", "ann")], &[("tier", "free")]]);
    let resp = client.call(fits).await.unwrap();
    assert_eq!(resp.overall_code, Code::Ok as i32);
    assert_eq!(resp.statuses.len(), 2);
    assert_eq!(resp.statuses[1].limit_remaining, 1);
    let _ = std::fs::remove_file(limits);
}

#[tokio::test]
async fn redis_killed_mid_run_gives_unavailable_promptly() {
    let mut redis = Redis::start();
    let service = Service::start(&["--redis", &redis.url()]);
    let mut client = service.client().await;
    assert_verdict(&client.call(user("dan")).await.unwrap(), Code::Ok, 9, 10);
    redis.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = client.call(user("dan")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(
            started.elapsed() < Duration::from_millis(2_500),
            "took {:?}",
            started.elapsed()
        );
    }
    assert!(service.logged("Unavailable"), "{}", service.stderr());
}

#[tokio::test]
async fn service_recovers_when_redis_comes_back() {
    let mut redis = Redis::start();
    let port = redis.port;
    let service = Service::start(&["--redis", &redis.url()]);
    let mut client = service.client().await;
    assert_verdict(&client.call(user("gus")).await.unwrap(), Code::Ok, 9, 10);
    redis.kill();
    let err = client.call(user("gus")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    // A fresh Redis on the same port: the counters are gone with the old
    // one, so counting restarts at the full limit.
    let _redis = Redis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    let resp = loop {
        match client.call(user("gus")).await {
            Ok(resp) => break resp,
            Err(err) => {
                assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
                assert!(Instant::now() < deadline, "no recovery: {err:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_verdict(&resp, Code::Ok, 9, 10);
}

#[tokio::test]
async fn memory_mode_works_without_redis() {
    let service = Service::start(&["--memory"]);
    let mut client = service.client().await;
    for i in 1..=10u32 {
        assert_verdict(
            &client.call(user("erin")).await.unwrap(),
            Code::Ok,
            10 - i,
            10,
        );
    }
    assert_verdict(
        &client.call(user("erin")).await.unwrap(),
        Code::OverLimit,
        0,
        10,
    );
}

#[tokio::test]
async fn hits_addend_counts_several_hits() {
    let service = Service::start(&["--memory"]);
    let mut client = service.client().await;
    let mut req = user("fay");
    req.hits_addend = 4;
    assert_verdict(&client.call(req.clone()).await.unwrap(), Code::Ok, 6, 10);
    assert_verdict(&client.call(req.clone()).await.unwrap(), Code::Ok, 2, 10);
    // 4 more would pass 10: refused, and nothing is added.
    assert_verdict(&client.call(req).await.unwrap(), Code::OverLimit, 2, 10);
    assert_verdict(&client.call(user("fay")).await.unwrap(), Code::Ok, 1, 10);
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        &["--limits", MESH][..],
        &["--listen", "127.0.0.1:0", "--limits", MESH, "--bogus"],
        &["--listen", "nowhere", "--limits", MESH],
        &[
            "--listen",
            "127.0.0.1:0",
            "--limits",
            MESH,
            "--redis",
            "localhost",
        ],
        &[
            "--listen",
            "127.0.0.1:0",
            "--limits",
            "/nonexistent/limits.yaml",
        ],
    ] {
        let (status, stdout, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("ratelimit-service: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn invalid_limits_file_exits_2_naming_it() {
    let path = write_limits("bad", "- namespace: mesh\n  max_value: ten\n");
    let (status, _, stderr) = run_to_exit(&[
        "--listen",
        "127.0.0.1:0",
        "--limits",
        path.to_str().unwrap(),
    ]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn unreachable_redis_exits_1_quickly() {
    let port = free_port();
    let started = Instant::now();
    let (status, stdout, stderr) = run_to_exit(&[
        "--listen",
        "127.0.0.1:0",
        "--limits",
        MESH,
        "--redis",
        &format!("redis://127.0.0.1:{port}"),
    ]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("redis"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn help_prints_usage_and_exits_0() {
    let (status, stdout, _) = run_to_exit(&["--help"]);
    assert!(status.success());
    assert!(stdout.starts_with("usage: ratelimit-service --listen ADDR"));
}

#[test]
fn sigterm_and_sigint_exit_cleanly() {
    for signal in ["-TERM", "-INT"] {
        let mut service = Service::start(&["--memory"]);
        let killed = Command::new("kill")
            .args([signal, &service.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = service.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit after {signal}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{signal}: {status}; {}", service.stderr());
    }
}
