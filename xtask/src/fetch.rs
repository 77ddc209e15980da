//! The module an Istio sidecar would load from an image: a re-implementation
//! of the rules of Istio's image fetcher (`pkg/wasm/imagefetcher.go`), so the
//! tests can hold both of our variants to them after a registry round trip.
//!
//! The rules, in the fetcher's order:
//! 1. A Docker schema-2 manifest: the last layer must be
//!    `application/vnd.docker.image.rootfs.diff.tar.gzip`; the module is the
//!    tar entry whose base name is `plugin.wasm`.
//! 2. Otherwise, the *compat* variant: the last layer must be
//!    `application/vnd.oci.image.layer.v1.tar+gzip`, read the same way.
//! 3. Otherwise, the *oci* artifact variant: exactly two layers, one of them
//!    `application/vnd.module.wasm.content.layer.v1+wasm`, whose blob is the
//!    raw module.
//!
//! Every blob is checked against its descriptor's digest, as a registry
//! client must.

use std::io::Read;

use serde::Deserialize;

use crate::compat::{PLUGIN_FILE, TAR_GZIP_LAYER_MEDIA_TYPE};
use crate::oci::{sha256_digest, WASM_LAYER_MEDIA_TYPE};

/// Manifest media type of a Docker schema-2 image.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Layer media type of a Docker gzip-compressed tar layer.
pub const DOCKER_LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Why no module could be extracted.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The manifest is not JSON of the expected shape.
    #[error("manifest is not an image manifest: {0}")]
    Manifest(#[from] serde_json::Error),
    /// A blob could not be fetched.
    #[error("blob {digest}: {message}")]
    Blob {
        /// The blob's digest.
        digest: String,
        /// What the fetcher reported.
        message: String,
    },
    /// A fetched blob does not hash to its descriptor's digest.
    #[error("blob {digest}: content hashes to {actual}")]
    DigestMismatch {
        /// The descriptor's digest.
        digest: String,
        /// The digest of what was fetched.
        actual: String,
    },
    /// Neither variant's rules match.
    #[error("not a Wasm image Istio accepts: compat variant: {compat}; oci variant: {oci}")]
    Unrecognised {
        /// Why the compat rules did not match.
        compat: String,
        /// Why the artifact rules did not match.
        oci: String,
    },
    /// A Docker image whose last layer is not a Docker tar.gz, or lacks
    /// `plugin.wasm`.
    #[error("docker image: {0}")]
    Docker(String),
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    layers: Vec<Layer>,
}

/// Extracts the module from `manifest` as Istio would, fetching blobs by
/// digest with `blob`.
///
/// # Errors
///
/// [`FetchError`] saying which rule failed.
pub fn extract_wasm(
    manifest: &[u8],
    mut blob: impl FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, FetchError> {
    let manifest: Manifest = serde_json::from_slice(manifest)?;
    let mut fetch = |digest: &str| -> Result<Vec<u8>, FetchError> {
        let bytes = blob(digest).map_err(|message| FetchError::Blob {
            digest: digest.to_owned(),
            message,
        })?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(FetchError::DigestMismatch {
                digest: digest.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    };
    if manifest.media_type == DOCKER_MANIFEST_MEDIA_TYPE {
        let last =
            last_layer_of_type(&manifest, DOCKER_LAYER_MEDIA_TYPE).map_err(FetchError::Docker)?;
        let bytes = fetch(&last.digest)?;
        return plugin_from_tar_gz(&bytes).map_err(FetchError::Docker);
    }
    let compat_error = match last_layer_of_type(&manifest, TAR_GZIP_LAYER_MEDIA_TYPE) {
        Ok(last) => match plugin_from_tar_gz(&fetch(&last.digest)?) {
            Ok(module) => return Ok(module),
            Err(e) => e,
        },
        Err(e) => e,
    };
    if manifest.layers.len() != 2 {
        return Err(FetchError::Unrecognised {
            compat: compat_error,
            oci: format!(
                "number of layers must be 2 but got {}",
                manifest.layers.len()
            ),
        });
    }
    match manifest
        .layers
        .iter()
        .find(|l| l.media_type == WASM_LAYER_MEDIA_TYPE)
    {
        Some(layer) => fetch(&layer.digest),
        None => Err(FetchError::Unrecognised {
            compat: compat_error,
            oci: format!("no layer of type {WASM_LAYER_MEDIA_TYPE}"),
        }),
    }
}

fn last_layer_of_type<'m>(manifest: &'m Manifest, media_type: &str) -> Result<&'m Layer, String> {
    let last = manifest
        .layers
        .last()
        .ok_or_else(|| "number of layers must be greater than zero".to_owned())?;
    if last.media_type == media_type {
        Ok(last)
    } else {
        Err(format!(
            "invalid media type {} (expect {media_type})",
            last.media_type
        ))
    }
}

/// The first tar entry whose base name is `plugin.wasm`.
fn plugin_from_tar_gz(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let entries = archive
        .entries()
        .map_err(|e| format!("failed to parse layer as tar.gz: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("failed to parse layer as tar.gz: {e}"))?;
        let is_plugin = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n == PLUGIN_FILE))
            .unwrap_or(false);
        if is_plugin {
            let mut module = Vec::new();
            entry
                .read_to_end(&mut module)
                .map_err(|e| format!("failed to read {PLUGIN_FILE}: {e}"))?;
            return Ok(module);
        }
    }
    Err(format!("{PLUGIN_FILE} not found in the archive"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::oci::build_image;
    use std::collections::HashMap;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 some bytes";

    fn store(image: &crate::oci::Image) -> HashMap<String, Vec<u8>> {
        image.blobs.iter().cloned().collect()
    }

    fn extract(
        manifest_digest: &str,
        blobs: &HashMap<String, Vec<u8>>,
    ) -> Result<Vec<u8>, FetchError> {
        extract_wasm(&blobs[manifest_digest], |d| {
            blobs.get(d).cloned().ok_or_else(|| "404".to_owned())
        })
    }

    #[test]
    fn both_variants_yield_the_module() {
        let image = build_image(MODULE, "1").unwrap();
        let blobs = store(&image);
        assert_eq!(extract(&image.manifest.digest, &blobs).unwrap(), MODULE);
        assert_eq!(
            extract(&image.compat_manifest.digest, &blobs).unwrap(),
            MODULE
        );
    }

    #[test]
    fn a_corrupted_blob_is_refused() {
        let image = build_image(MODULE, "1").unwrap();
        let mut blobs = store(&image);
        let module_digest = sha256_digest(MODULE);
        blobs.insert(module_digest, b"\0asm tampered".to_vec());
        let err = extract(&image.manifest.digest, &blobs).unwrap_err();
        assert!(matches!(err, FetchError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn an_artifact_with_the_module_under_the_wrong_media_type_is_refused() {
        // The mistake istio#37565's neighbours make: oci-client's default
        // layer type is not the one Istio looks for.
        let manifest = format!(
            r#"{{"schemaVersion":2,"layers":[
                {{"mediaType":"application/vnd.module.wasm.config.v1+json","digest":"sha256:a"}},
                {{"mediaType":"application/vnd.wasm.content.layer.v1+wasm","digest":"{}"}}]}}"#,
            sha256_digest(MODULE)
        );
        let err = extract_wasm(manifest.as_bytes(), |_| Ok(MODULE.to_vec())).unwrap_err();
        assert!(err.to_string().contains("no layer of type"), "{err}");
    }

    #[test]
    fn a_tar_gz_without_plugin_wasm_is_refused() {
        let mut header = tar::Header::new_ustar();
        header.set_path("other.wasm").unwrap();
        header.set_size(MODULE.len() as u64);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, MODULE).unwrap();
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let layer = gz.finish().unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"layers":[{{"mediaType":"{TAR_GZIP_LAYER_MEDIA_TYPE}","digest":"{}"}}]}}"#,
            sha256_digest(&layer)
        );
        let err = extract_wasm(manifest.as_bytes(), |_| Ok(layer.clone())).unwrap_err();
        assert!(err.to_string().contains("plugin.wasm not found"), "{err}");
    }
}
