//! The *compat* variant of the Wasm image spec: an ordinary OCI image whose
//! last (here: only) layer is a gzip-compressed tar holding `plugin.wasm`.
//!
//! Istio's fetcher accepts it as well as the *oci* artifact variant; it is
//! for registries and mirrors that refuse custom layer media types. Both are
//! written into the same layout, the compat one tagged [`compat_tag`].
//!
//! Reproducible like the artifact: the tar entry has mode 0644, owner 0 and
//! mtime 0; the gzip header has no name and mtime 0. The compressed bytes
//! depend on the `flate2` version in `Cargo.lock`, so a lockfile bump can
//! change the compat digest (never the artifact's).

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use serde::Serialize;

use crate::oci::{describe, sha256_digest, Annotations, Descriptor, MANIFEST_MEDIA_TYPE};

/// Media type of an image config (OCI image spec).
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed tar layer (OCI image spec); Istio's
/// fetcher looks for it on the last layer.
pub const TAR_GZIP_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Manifest annotation key that marks the compat variant (optional in the
/// spec; tools use it to tell the variants apart).
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// The file name inside the tar that Istio's fetcher looks for.
pub const PLUGIN_FILE: &str = "plugin.wasm";

/// The compat image's tag for a given artifact tag: `<tag>-compat`.
pub fn compat_tag(tag: &str) -> String {
    format!("{tag}-compat")
}

/// The three blobs of one compat image: config, layer and manifest.
#[derive(Debug, Clone)]
pub struct CompatImage {
    /// `(digest, bytes)` of the config, the tar.gz layer and the manifest.
    pub blobs: Vec<(String, Vec<u8>)>,
    /// The manifest's descriptor, annotated with its tag for `index.json`.
    pub manifest: Descriptor,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: [String; 1],
}

/// A minimal, valid OCI image config. `wasip1`/`wasm` is the platform Go
/// and container runtimes use for WASI preview-1 modules; Istio ignores it.
#[derive(Serialize)]
struct ImageConfig {
    architecture: &'static str,
    os: &'static str,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct VariantAnnotation {
    #[serde(rename = "module.wasm.image/variant")]
    variant: &'static str,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: &'a Descriptor,
    layers: [&'a Descriptor; 1],
    annotations: VariantAnnotation,
}

/// A ustar archive with the single entry [`PLUGIN_FILE`].
fn plugin_tar(wasm: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(PLUGIN_FILE)?;
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, wasm)?;
    builder.into_inner()
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    // GzBuilder writes mtime 0 and no file name unless told otherwise.
    let mut encoder: GzEncoder<Vec<u8>> = GzBuilder::new().write(Vec::new(), Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Builds the compat image for one module, its manifest tagged `tag`.
///
/// # Errors
///
/// Only if the in-memory tar or gzip writer fails, which a `Vec` sink does
/// not do in practice.
pub fn build_compat_image(wasm: &[u8], tag: &str) -> std::io::Result<CompatImage> {
    let tar = plugin_tar(wasm)?;
    let layer_bytes = gzip(&tar)?;
    let config_bytes = serde_json::to_vec(&ImageConfig {
        architecture: "wasm",
        os: "wasip1",
        // diff_ids are digests of the *uncompressed* layers.
        rootfs: RootFs {
            kind: "layers",
            diff_ids: [sha256_digest(&tar)],
        },
    })?;
    let config = describe(IMAGE_CONFIG_MEDIA_TYPE, &config_bytes, None);
    let layer = describe(TAR_GZIP_LAYER_MEDIA_TYPE, &layer_bytes, None);
    let manifest_bytes = serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        config: &config,
        layers: [&layer],
        annotations: VariantAnnotation { variant: "compat" },
    })?;
    let manifest = describe(
        MANIFEST_MEDIA_TYPE,
        &manifest_bytes,
        Some(Annotations::RefName(tag.to_owned())),
    );
    Ok(CompatImage {
        blobs: vec![
            (config.digest, config_bytes),
            (layer.digest, layer_bytes),
            (manifest.digest.clone(), manifest_bytes),
        ],
        manifest,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::io::Read;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn layer_is_a_tar_gz_with_only_plugin_wasm() {
        let image = build_compat_image(MODULE, "1.0.0-compat").unwrap();
        let layer = &image.blobs[1].1;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            names.push(entry.path().unwrap().display().to_string());
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            assert_eq!(content, MODULE);
            assert_eq!(entry.header().mtime().unwrap(), 0);
            assert_eq!(entry.header().mode().unwrap(), 0o644);
        }
        assert_eq!(names, [PLUGIN_FILE]);
    }

    #[test]
    fn manifest_is_an_annotated_oci_image_with_one_tar_gzip_layer() {
        let image = build_compat_image(MODULE, "1.0.0-compat").unwrap();
        let manifest: Value = serde_json::from_slice(&image.blobs[2].1).unwrap();
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], IMAGE_CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            TAR_GZIP_LAYER_MEDIA_TYPE
        );
        assert_eq!(manifest["annotations"][VARIANT_ANNOTATION], "compat");
        let config: Value = serde_json::from_slice(&image.blobs[0].1).unwrap();
        let tar = plugin_tar(MODULE).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256_digest(&tar));
    }

    #[test]
    fn same_module_gives_the_same_compat_digest() {
        let a = build_compat_image(MODULE, "t").unwrap();
        let b = build_compat_image(MODULE, "t").unwrap();
        assert_eq!(a.manifest.digest, b.manifest.digest);
        assert_eq!(a.blobs[1].1, b.blobs[1].1, "gzip output is stable");
    }
}
