//! Packs built filters as OCI image layouts in the Wasm artifact format that
//! Istio's `WasmPlugin` pulls (`oci://…` URLs).
//!
//! Istio's image fetcher (`pkg/wasm/imagefetcher.go`) accepts an image as the
//! *oci* variant of the solo-io Wasm image spec when it has exactly two layers
//! and one of them has media type [`WASM_LAYER_MEDIA_TYPE`]; that layer is the
//! raw, uncompressed module. The other layer is the runtime config, which is
//! also the manifest's config blob ([`WASM_CONFIG_MEDIA_TYPE`]), as `wasme`
//! wrote these images. Nothing here is compressed or tarred.
//!
//! The same layout also holds the *compat* variant ([`crate::compat`]),
//! tagged `<TAG>-compat`: the module in a tar.gz layer, for registries that
//! refuse custom media types. `index.json` lists the artifact first.
//!
//! The layout is reproducible: no timestamps, fixed JSON field order, so the
//! same `.wasm` always gives the same manifest digest, and a WasmPlugin can pin
//! `sha256` to it.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::compat;

/// Media type of the manifest (OCI image manifest v1).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the runtime config blob (solo-io Wasm spec, *oci* variant).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// Media type of the layer that holds the raw `.wasm` module.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The tag written into `index.json`, the workspace version, so that
/// `skopeo copy oci:DIR:<TAG>` finds the image.
pub const TAG: &str = env!("CARGO_PKG_VERSION");

/// The OCI annotation naming a layer's file ([`Annotations::Title`]).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The OCI annotation carrying the tag in `index.json` ([`Annotations::RefName`]).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The runtime config: `type` and `abiVersions` per the spec's property table,
/// `config.root_ids` per its Envoy section. Envoy and Istio do not read it;
/// it documents the module. Our filters create their root context for any
/// `root_id`, so the list is empty.
const RUNTIME_CONFIG: &str =
    r#"{"type":"envoy_proxy","abiVersions":["proxy_abi_version_0_2_1"],"config":{"root_ids":[]}}"#;

/// A failure while packing, naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// DIST_DIR could not be listed.
    #[error("{}: cannot list: {source}", dir.display())]
    ListDist {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// DIST_DIR holds no `.wasm` file.
    #[error("{}: no .wasm files (run `make build` first)", dir.display())]
    NoFilters {
        /// The directory.
        dir: PathBuf,
    },
    /// A `.wasm` file name is not a usable image name.
    #[error("{}: file name is not lower-case ASCII letters, digits and `_`", path.display())]
    BadName {
        /// The file.
        path: PathBuf,
    },
    /// A `.wasm` file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The compat variant's tar.gz could not be built in memory.
    #[error("{}: cannot pack the compat layer: {source}", path.display())]
    Pack {
        /// The `.wasm` file.
        path: PathBuf,
        /// The I/O error from the tar or gzip writer.
        source: std::io::Error,
    },
    /// A layout file could not be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One content-addressed blob reference, as it appears in a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    /// The blob's media type.
    #[serde(rename = "mediaType")]
    pub media_type: &'static str,
    /// `sha256:<hex>` of the blob's bytes.
    pub digest: String,
    /// The blob's length in bytes.
    pub size: u64,
    /// Optional annotations (file title, tag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
}

/// The single annotation each descriptor here carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Annotations {
    /// `org.opencontainers.image.title`: the layer's file name.
    #[serde(rename = "org.opencontainers.image.title")]
    Title(String),
    /// `org.opencontainers.image.ref.name`: the tag in `index.json`.
    #[serde(rename = "org.opencontainers.image.ref.name")]
    RefName(String),
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: &'a Descriptor,
    layers: [&'a Descriptor; 2],
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    manifests: [&'a Descriptor; 2],
}

/// One image in memory, both variants: every blob plus `index.json`.
#[derive(Debug, Clone)]
pub struct Image {
    /// `(digest, bytes)` of the artifact's config, module and manifest, then
    /// the compat variant's config, layer and manifest.
    pub blobs: Vec<(String, Vec<u8>)>,
    /// The artifact manifest's descriptor, as written into `index.json`.
    pub manifest: Descriptor,
    /// The compat manifest's descriptor, as written into `index.json`.
    pub compat_manifest: Descriptor,
    /// `index.json`'s bytes.
    pub index_json: Vec<u8>,
}

/// What [`write_filter`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The image name: the file stem with `_` turned into `-`
    /// (`security_headers.wasm` → `security-headers`), as in the WasmPlugin URLs.
    pub name: String,
    /// The layout directory, `OUT_DIR/<name>`.
    pub dir: PathBuf,
    /// `sha256:<hex>` of the manifest: what a registry returns as
    /// `Docker-Content-Digest` and what a WasmPlugin's `sha256` pins.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the compat variant's manifest (tag `<TAG>-compat`).
    pub compat_manifest_digest: String,
    /// `sha256:<hex>` of the `.wasm` file: the content layer's digest.
    pub wasm_digest: String,
}

/// `sha256:<lower-case hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The descriptor of `bytes` as a blob of `media_type`.
pub(crate) fn describe(
    media_type: &'static str,
    bytes: &[u8],
    annotations: Option<Annotations>,
) -> Descriptor {
    Descriptor {
        media_type,
        digest: sha256_digest(bytes),
        // usize → u64 never truncates on the platforms Rust supports.
        size: bytes.len() as u64,
        annotations,
    }
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    // Serializing these plain structs (strings, integers, fixed arrays) cannot
    // fail; an empty blob would show up as a digest mismatch in the tests.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Builds both variants for one module: the artifact tagged `tag`, the
/// compat image tagged [`compat::compat_tag`]`(tag)`.
///
/// # Errors
///
/// The compat variant's in-memory tar or gzip writer failed.
pub fn build_image(wasm: &[u8], tag: &str) -> std::io::Result<Image> {
    let config_bytes = RUNTIME_CONFIG.as_bytes().to_vec();
    let config = describe(WASM_CONFIG_MEDIA_TYPE, &config_bytes, None);
    let config_layer = Descriptor {
        annotations: Some(Annotations::Title("runtime-config.json".to_owned())),
        ..config.clone()
    };
    let module = describe(
        WASM_LAYER_MEDIA_TYPE,
        wasm,
        Some(Annotations::Title("plugin.wasm".to_owned())),
    );
    let manifest_bytes = to_json(&Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        config: &config,
        layers: [&config_layer, &module],
    });
    let manifest = describe(
        MANIFEST_MEDIA_TYPE,
        &manifest_bytes,
        Some(Annotations::RefName(tag.to_owned())),
    );
    let compat = compat::build_compat_image(wasm, &compat::compat_tag(tag))?;
    let index_json = to_json(&Index {
        schema_version: 2,
        manifests: [&manifest, &compat.manifest],
    });
    let mut blobs = vec![
        (config.digest, config_bytes),
        (module.digest, wasm.to_vec()),
        (manifest.digest.clone(), manifest_bytes),
    ];
    blobs.extend(compat.blobs);
    Ok(Image {
        blobs,
        manifest,
        compat_manifest: compat.manifest,
        index_json,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    fs::write(path, bytes).map_err(|source| OciError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes `image` as an OCI image layout at `dir`: `oci-layout`, `index.json`
/// and `blobs/sha256/<hex>`. An existing layout there is replaced, so stale
/// blobs from an older build do not linger.
///
/// # Errors
///
/// [`OciError::Write`] naming the path that failed.
pub fn write_layout(dir: &Path, image: &Image) -> Result<(), OciError> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|source| OciError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    let blob_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).map_err(|source| OciError::Write {
        path: blob_dir.clone(),
        source,
    })?;
    write(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    write(&dir.join("index.json"), &image.index_json)?;
    for (digest, bytes) in &image.blobs {
        let hex = digest.trim_start_matches("sha256:");
        write(&blob_dir.join(hex), bytes)?;
    }
    Ok(())
}

/// The image name for a `.wasm` path, or `None` if its stem is not
/// `[a-z0-9_]+` (a valid OCI repository path component once `_` becomes `-`).
fn image_name(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let valid = !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    valid.then(|| stem.replace('_', "-"))
}

/// Packs one `.wasm` file into `out_dir/<name>`, tagged [`TAG`].
///
/// # Errors
///
/// [`OciError::BadName`], [`OciError::Read`] or [`OciError::Write`].
pub fn write_filter(wasm_path: &Path, out_dir: &Path) -> Result<Written, OciError> {
    let name = image_name(wasm_path).ok_or_else(|| OciError::BadName {
        path: wasm_path.to_owned(),
    })?;
    let wasm = fs::read(wasm_path).map_err(|source| OciError::Read {
        path: wasm_path.to_owned(),
        source,
    })?;
    let image = build_image(&wasm, TAG).map_err(|source| OciError::Pack {
        path: wasm_path.to_owned(),
        source,
    })?;
    let dir = out_dir.join(&name);
    write_layout(&dir, &image)?;
    Ok(Written {
        name,
        dir,
        manifest_digest: image.manifest.digest,
        compat_manifest_digest: image.compat_manifest.digest,
        wasm_digest: sha256_digest(&wasm),
    })
}

/// Packs every `DIST_DIR/*.wasm`, in file-name order.
///
/// # Errors
///
/// [`OciError::ListDist`], [`OciError::NoFilters`], or the first failure of
/// [`write_filter`].
pub fn write_all(dist_dir: &Path, out_dir: &Path) -> Result<Vec<Written>, OciError> {
    let list_err = |source| OciError::ListDist {
        dir: dist_dir.to_owned(),
        source,
    };
    let mut wasm_files = Vec::new();
    for entry in fs::read_dir(dist_dir).map_err(list_err)? {
        let path = entry.map_err(list_err)?.path();
        if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
            wasm_files.push(path);
        }
    }
    if wasm_files.is_empty() {
        return Err(OciError::NoFilters {
            dir: dist_dir.to_owned(),
        });
    }
    wasm_files.sort();
    wasm_files
        .iter()
        .map(|path| write_filter(path, out_dir))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// A tiny but real module header: `\0asm` version 1.
    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-oci-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn blob(dir: &Path, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        fs::read(dir.join("blobs/sha256").join(hex)).unwrap()
    }

    /// Checks that `descriptor` names a blob in `dir` with that size and digest.
    fn assert_descriptor_matches_blob(dir: &Path, descriptor: &Value) -> Vec<u8> {
        let digest = descriptor["digest"].as_str().unwrap();
        let bytes = blob(dir, digest);
        assert_eq!(sha256_digest(&bytes), digest);
        assert_eq!(descriptor["size"].as_u64().unwrap(), bytes.len() as u64);
        bytes
    }

    #[test]
    fn sha256_digest_matches_the_known_empty_string_hash() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_descriptor_matches_its_blob_on_disk() {
        let dir = scratch("descriptors");
        let image = build_image(MODULE, "1.2.3").unwrap();
        write_layout(&dir, &image).unwrap();

        let index: Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
        let manifest_desc = &index["manifests"][0];
        let manifest_bytes = assert_descriptor_matches_blob(&dir, manifest_desc);
        let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();

        assert_descriptor_matches_blob(&dir, &manifest["config"]);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2, "Istio requires exactly two layers");
        for layer in layers {
            assert_descriptor_matches_blob(&dir, layer);
        }
        let module = assert_descriptor_matches_blob(&dir, &layers[1]);
        assert_eq!(module, MODULE, "the content layer is the raw module");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn media_types_follow_the_wasm_artifact_spec() {
        let image = build_image(MODULE, "1.2.3").unwrap();
        let manifest_bytes = &image.blobs[2].1;
        let manifest: Value = serde_json::from_slice(manifest_bytes).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["mediaType"], WASM_CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["layers"][1]["mediaType"], WASM_LAYER_MEDIA_TYPE);
        assert_eq!(
            manifest["layers"][1]["annotations"][TITLE_ANNOTATION],
            "plugin.wasm"
        );
        let index: Value = serde_json::from_slice(&image.index_json).unwrap();
        assert_eq!(index["manifests"][0]["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(
            index["manifests"][0]["annotations"][REF_NAME_ANNOTATION],
            "1.2.3"
        );
    }

    #[test]
    fn runtime_config_names_envoy_as_the_runtime() {
        let config: Value = serde_json::from_str(RUNTIME_CONFIG).unwrap();
        assert_eq!(config["type"], "envoy_proxy");
        assert!(config["config"]["root_ids"].is_array());
    }

    #[test]
    fn same_module_gives_the_same_manifest_digest() {
        let a = build_image(MODULE, "1.2.3").unwrap();
        let b = build_image(MODULE, "1.2.3").unwrap();
        assert_eq!(a.manifest.digest, b.manifest.digest);
        let c = build_image(b"\0asm\x01\0\0\0\0", "1.2.3").unwrap();
        assert_ne!(a.manifest.digest, c.manifest.digest);
    }

    #[test]
    fn write_all_names_images_after_the_file_with_dashes() {
        let root = scratch("write-all");
        let dist = root.join("dist");
        fs::create_dir_all(&dist).unwrap();
        fs::write(dist.join("rate_limit.wasm"), MODULE).unwrap();
        fs::write(dist.join("notes.txt"), "ignored").unwrap();
        let written = write_all(&dist, &root.join("oci")).unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].name, "rate-limit");
        assert_eq!(written[0].wasm_digest, sha256_digest(MODULE));
        assert!(root.join("oci/rate-limit/oci-layout").is_file());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn write_all_refuses_a_dist_dir_without_wasm_files() {
        let root = scratch("empty");
        let err = write_all(&root, &root.join("oci")).unwrap_err();
        assert!(matches!(err, OciError::NoFilters { .. }));
        assert!(err.to_string().contains("make build"));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn image_name_rejects_names_a_registry_would_refuse() {
        assert_eq!(
            image_name(Path::new("a/jwt_auth.wasm")).as_deref(),
            Some("jwt-auth")
        );
        assert_eq!(image_name(Path::new("a/Bad.wasm")), None);
        assert_eq!(image_name(Path::new("a/has space.wasm")), None);
    }
}
