//! `xtask push OCI_DIR REGISTRY`: uploads every image layout `xtask oci`
//! wrote, each tag in its `index.json`, to `REGISTRY/mesh/<name>:<tag>`, with
//! the `oci-client` crate (the OCI distribution client the Rust Wasm
//! ecosystem maintains).
//!
//! Blobs and manifests are uploaded byte for byte from the layout: the
//! manifest goes through `push_manifest_raw`, never re-serialised, so the
//! registry's digest is the one the rendered WasmPlugins pin. `oci-client`'s
//! own Wasm media-type constants (`application/vnd.wasm.…`) are *not* the ones
//! Istio's fetcher looks for (`application/vnd.module.wasm.…`); they are not
//! used here.
//!
//! Transport: plain HTTP for a loopback registry or with `--plain-http`,
//! HTTPS otherwise. Credentials come from `OCI_USERNAME` and `OCI_PASSWORD`
//! (HTTP basic, exchanged for a bearer token where the registry asks);
//! anonymous without them.

use std::fs;
use std::path::{Path, PathBuf};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

/// The repository namespace images are pushed under: `REGISTRY/mesh/<name>`,
/// as in the WasmPlugin URLs.
pub const NAMESPACE: &str = "mesh";

/// A push or pull failure, naming the file or image involved.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A layout file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A layout file is not the JSON `xtask oci` writes.
    #[error("{}: not an OCI layout file: {source}", path.display())]
    Layout {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// OCI_DIR has no image layouts.
    #[error("{}: no image layouts (run `make oci` first)", dir.display())]
    NoLayouts {
        /// The directory.
        dir: PathBuf,
    },
    /// The registry refused or failed a request.
    #[error("{reference}: {source}")]
    Registry {
        /// The image reference.
        reference: String,
        /// The client's error.
        source: OciDistributionError,
    },
    /// After the push the registry reports another digest than the layout's.
    #[error("{reference}: registry reports digest {actual}, the layout has {expected}")]
    DigestMismatch {
        /// The image reference.
        reference: String,
        /// The layout's manifest digest.
        expected: String,
        /// What the registry reports.
        actual: String,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Where and how to push.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host[:port]` of the registry.
    pub registry: String,
    /// Use HTTP instead of HTTPS (always the case for a loopback registry).
    pub plain_http: bool,
    /// The credentials.
    pub auth: RegistryAuth,
}

impl Target {
    /// A target for `registry`, with credentials from `OCI_USERNAME` and
    /// `OCI_PASSWORD` if both are set.
    pub fn from_env(registry: &str, plain_http: bool) -> Self {
        let auth = match (std::env::var("OCI_USERNAME"), std::env::var("OCI_PASSWORD")) {
            (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
            _ => RegistryAuth::Anonymous,
        };
        Target {
            registry: registry.to_owned(),
            plain_http: plain_http || is_loopback(registry),
            auth,
        }
    }

    fn client(&self) -> Client {
        Client::new(ClientConfig {
            protocol: if self.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            ..ClientConfig::default()
        })
    }

    /// The reference `REGISTRY/mesh/<name>:<tag>`.
    pub fn reference(&self, name: &str, tag: &str) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            format!("{NAMESPACE}/{name}"),
            tag.to_owned(),
        )
    }
}

fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

/// One pushed tag.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `REGISTRY/mesh/<name>:<tag>`.
    pub reference: String,
    /// The manifest digest the registry reports, equal to the layout's.
    pub digest: String,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct BlobRef {
    digest: String,
}

#[derive(Deserialize)]
struct ManifestRefs {
    config: BlobRef,
    layers: Vec<BlobRef>,
}

fn read(path: &Path) -> Result<Vec<u8>, PushError> {
    fs::read(path).map_err(|source| PushError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse<T: for<'de> Deserialize<'de>>(path: &Path, bytes: &[u8]) -> Result<T, PushError> {
    serde_json::from_slice(bytes).map_err(|source| PushError::Layout {
        path: path.to_owned(),
        source,
    })
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn runtime() -> Result<tokio::runtime::Runtime, PushError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PushError::Runtime)
}

async fn push_layout_async(
    client: &Client,
    target: &Target,
    layout: &Path,
    name: &str,
) -> Result<Vec<Pushed>, PushError> {
    let index_path = layout.join("index.json");
    let index: Index = parse(&index_path, &read(&index_path)?)?;
    let mut pushed = Vec::new();
    for entry in index.manifests {
        let Some(tag) = entry.annotations.get(crate::oci::REF_NAME_ANNOTATION) else {
            continue;
        };
        let reference = target.reference(name, tag);
        let registry_err = |source| PushError::Registry {
            reference: reference.whole(),
            source,
        };
        let manifest_path = blob_path(layout, &entry.digest);
        let manifest_bytes = read(&manifest_path)?;
        let refs: ManifestRefs = parse(&manifest_path, &manifest_bytes)?;
        client
            .store_auth_if_needed(reference.resolve_registry(), &target.auth)
            .await;
        for digest in
            std::iter::once(&refs.config.digest).chain(refs.layers.iter().map(|l| &l.digest))
        {
            if client
                .blob_exists(&reference, digest)
                .await
                .map_err(registry_err)?
            {
                continue;
            }
            let bytes = read(&blob_path(layout, digest))?;
            client
                .push_blob(&reference, bytes, digest)
                .await
                .map_err(registry_err)?;
        }
        let content_type = entry.media_type.parse().map_err(|_| PushError::Layout {
            path: index_path.clone(),
            source: serde::de::Error::custom("mediaType is not a header value"),
        })?;
        client
            .push_manifest_raw(&reference, manifest_bytes, content_type)
            .await
            .map_err(registry_err)?;
        let actual = client
            .fetch_manifest_digest(&reference, &target.auth)
            .await
            .map_err(registry_err)?;
        if actual != entry.digest {
            return Err(PushError::DigestMismatch {
                reference: reference.whole(),
                expected: entry.digest,
                actual,
            });
        }
        pushed.push(Pushed {
            reference: reference.whole(),
            digest: actual,
        });
    }
    Ok(pushed)
}

/// Pushes every tag of the layout `layout` as `REGISTRY/mesh/<name>`.
///
/// # Errors
///
/// [`PushError`] naming the file or reference that failed.
pub fn push_layout(target: &Target, layout: &Path, name: &str) -> Result<Vec<Pushed>, PushError> {
    let client = target.client();
    runtime()?.block_on(push_layout_async(&client, target, layout, name))
}

/// Pushes every layout under `oci_dir` (each subdirectory with an
/// `index.json`), named after its directory, in name order.
///
/// # Errors
///
/// [`PushError::NoLayouts`], or the first failure.
pub fn push_all(target: &Target, oci_dir: &Path) -> Result<Vec<Pushed>, PushError> {
    let list_err = |source| PushError::Read {
        path: oci_dir.to_owned(),
        source,
    };
    let mut layouts = Vec::new();
    for entry in fs::read_dir(oci_dir).map_err(list_err)? {
        let path = entry.map_err(list_err)?.path();
        if path.join("index.json").is_file() {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                layouts.push((name.to_owned(), path.clone()));
            }
        }
    }
    if layouts.is_empty() {
        return Err(PushError::NoLayouts {
            dir: oci_dir.to_owned(),
        });
    }
    layouts.sort();
    let client = target.client();
    let rt = runtime()?;
    let mut pushed = Vec::new();
    for (name, layout) in layouts {
        pushed.extend(rt.block_on(push_layout_async(&client, target, &layout, &name))?);
    }
    Ok(pushed)
}

/// A manifest pulled back from a registry.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The manifest's bytes as served.
    pub manifest: Vec<u8>,
    /// The digest the registry reports for it.
    pub digest: String,
}

/// One image in a registry, read back the way a fetcher would.
pub struct Remote {
    runtime: tokio::runtime::Runtime,
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
}

impl Remote {
    /// `REGISTRY/mesh/<name>:<tag>` at `target`.
    ///
    /// # Errors
    ///
    /// [`PushError::Runtime`].
    pub fn new(target: &Target, name: &str, tag: &str) -> Result<Self, PushError> {
        Ok(Remote {
            runtime: runtime()?,
            client: target.client(),
            reference: target.reference(name, tag),
            auth: target.auth.clone(),
        })
    }

    /// The manifest, accepting only the OCI manifest media type.
    ///
    /// # Errors
    ///
    /// [`PushError::Registry`].
    pub fn manifest(&self) -> Result<Pulled, PushError> {
        let (manifest, digest) = self
            .runtime
            .block_on(self.client.pull_manifest_raw(
                &self.reference,
                &self.auth,
                &[crate::oci::MANIFEST_MEDIA_TYPE],
            ))
            .map_err(|source| PushError::Registry {
                reference: self.reference.whole(),
                source,
            })?;
        Ok(Pulled {
            manifest: manifest.to_vec(),
            digest,
        })
    }

    /// One blob by digest (the client checks it against the digest), in the
    /// shape [`crate::fetch::extract_wasm`] takes.
    ///
    /// # Errors
    ///
    /// The client's error, as text.
    pub fn blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.runtime
            .block_on(self.client.pull_blob(&self.reference, digest, &mut out))
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_use_plain_http() {
        for registry in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
        ] {
            assert!(is_loopback(registry), "{registry}");
        }
        for registry in ["ghcr.io", "registry.example:443", "10.0.0.1:5000"] {
            assert!(!is_loopback(registry), "{registry}");
        }
    }
}
