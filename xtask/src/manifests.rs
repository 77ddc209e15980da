//! `xtask manifests OCI_DIR SRC_DIR OUT_DIR`: renders the WasmPlugins with
//! the digests of the images `xtask oci` wrote, so a user applies manifests
//! that pin exactly the modules built.
//!
//! `spec.sha256` is the image's *manifest* digest, the one a registry
//! reports and Istio's fetcher checks, not the `.wasm` file's own hash (a
//! common mistake, istio#37565). The source files are edited as text, one
//! line inserted after `url:` (or an existing `sha256:` replaced), so their
//! comments survive.

use std::fs;
use std::path::{Path, PathBuf};

/// A rendering failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A layout's index.json has no manifest digest.
    #[error("{path}: no manifests[0].digest of the form sha256:<64 hex> (run `make oci`)")]
    NoDigest {
        /// The index.json.
        path: PathBuf,
    },
    /// A WasmPlugin has no `url:` line under `spec:`.
    #[error("{path}: no `  url:` line to pin")]
    NoUrl {
        /// The manifest.
        path: PathBuf,
    },
}

/// The manifest digest's hex (no `sha256:`) of the layout `OCI_DIR/<name>`.
///
/// # Errors
///
/// [`RenderError::Io`] or [`RenderError::NoDigest`].
pub fn manifest_digest_hex(layout: &Path) -> Result<String, RenderError> {
    let path = layout.join("index.json");
    let text = fs::read_to_string(&path).map_err(|source| RenderError::Io {
        path: path.clone(),
        source,
    })?;
    let index: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| RenderError::NoDigest { path: path.clone() })?;
    index
        .pointer("/manifests/0/digest")
        .and_then(serde_json::Value::as_str)
        .and_then(|d| d.strip_prefix("sha256:"))
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .ok_or(RenderError::NoDigest { path })
}

/// `text` with `spec.sha256` set to `hex`: an existing `  sha256:` line is
/// replaced, else one is inserted after the `  url:` line. `None` if there
/// is no `  url:` line.
pub fn pin(text: &str, hex: &str) -> Option<String> {
    let line = format!("  sha256: {hex}");
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 1);
    let mut pinned = false;
    for l in &lines {
        if l.starts_with("  sha256:") {
            continue;
        }
        out.push((*l).to_owned());
        if l.starts_with("  url:") {
            out.push(line.clone());
            pinned = true;
        }
    }
    pinned.then(|| out.join("\n") + "\n")
}

/// Renders every `SRC_DIR/<name>.yaml` whose image `OCI_DIR/<name>` exists
/// into `OUT_DIR/<name>.yaml`; returns the written files with their digests.
///
/// # Errors
///
/// The first [`RenderError`].
pub fn render_all(
    oci_dir: &Path,
    src_dir: &Path,
    out_dir: &Path,
) -> Result<Vec<(PathBuf, String)>, RenderError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RenderError::Io { path, source }
    };
    let mut sources: Vec<PathBuf> = fs::read_dir(src_dir)
        .map_err(io(src_dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    sources.sort();
    fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let mut written = Vec::new();
    for source in sources {
        let Some(name) = source.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let hex = manifest_digest_hex(&oci_dir.join(&name))?;
        let text = fs::read_to_string(&source).map_err(io(&source))?;
        let rendered = pin(&text, &hex).ok_or_else(|| RenderError::NoUrl {
            path: source.clone(),
        })?;
        let target = out_dir.join(format!("{name}.yaml"));
        fs::write(&target, rendered).map_err(io(&target))?;
        written.push((target, hex));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLUGIN: &str = "# comment\nspec:\n  url: oci://r/x:1\n  phase: STATS\n";

    #[test]
    fn pin_inserts_after_url_and_keeps_comments() {
        let out = pin(PLUGIN, &"a".repeat(64)).unwrap();
        assert_eq!(
            out,
            format!(
                "# comment\nspec:\n  url: oci://r/x:1\n  sha256: {}\n  phase: STATS\n",
                "a".repeat(64)
            )
        );
    }

    #[test]
    fn pin_replaces_an_existing_digest() {
        let once = pin(PLUGIN, &"a".repeat(64)).unwrap();
        let twice = pin(&once, &"b".repeat(64)).unwrap();
        assert_eq!(twice.matches("sha256:").count(), 1);
        assert!(twice.contains(&"b".repeat(64)));
    }

    #[test]
    fn pin_without_url_is_refused() {
        assert_eq!(pin("spec:\n  phase: STATS\n", "ab"), None);
    }
}
