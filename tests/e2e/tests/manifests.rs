//! The shipped WasmPlugins (manifests/istio/wasmplugins/*.yaml) parse, are
//! WasmPlugins with an `oci://` URL, and carry a pluginConfig that the
//! filter's own `config::validate` accepts, exactly as `on_configure` would
//! receive it (Istio hands pluginConfig to the module as JSON).
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::PathBuf;

use e2e::paths;
use serde_yaml_ng::Value;

/// Every filter that ships a WasmPlugin here, by manifest file stem.
const SHIPPED: [&str; 3] = ["security-headers", "metrics", "rate-limit"];

fn manifest_path(name: &str) -> PathBuf {
    paths::repo_root().join(format!("manifests/istio/wasmplugins/{name}.yaml"))
}

fn load(name: &str) -> Value {
    let path = manifest_path(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// pluginConfig as the JSON bytes the module's `on_configure` receives.
fn plugin_config_json(doc: &Value) -> Vec<u8> {
    let config = &doc["spec"]["pluginConfig"];
    assert!(config.is_mapping(), "spec.pluginConfig must be an object");
    serde_json::to_vec(config).unwrap()
}

#[test]
fn every_manifest_in_the_directory_is_a_shipped_filter() {
    let dir = paths::repo_root().join("manifests/istio/wasmplugins");
    let mut found: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut expected: Vec<String> = SHIPPED.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn every_manifest_is_a_wasmplugin_pulled_from_oci() {
    for name in SHIPPED {
        let doc = load(name);
        assert_eq!(
            doc["apiVersion"].as_str(),
            Some("extensions.istio.io/v1alpha1"),
            "{name}"
        );
        assert_eq!(doc["kind"].as_str(), Some("WasmPlugin"), "{name}");
        assert_eq!(doc["metadata"]["name"].as_str(), Some(name), "{name}");
        let url = doc["spec"]["url"].as_str().unwrap_or_default();
        assert!(
            url.starts_with("oci://"),
            "{name}: url {url:?} is not oci://"
        );
        assert!(
            url.contains(&format!("/{name}:")),
            "{name}: url {url:?} does not name the image after the filter"
        );
        assert!(doc["spec"]["phase"].as_str().is_some(), "{name}: no phase");
    }
}

#[test]
fn security_headers_plugin_config_passes_the_filters_validation() {
    let raw = plugin_config_json(&load("security-headers"));
    if let Err(e) = security_headers::config::validate(&raw) {
        panic!("{e}");
    }
}

#[test]
fn metrics_plugin_config_passes_the_filters_validation() {
    let raw = plugin_config_json(&load("metrics"));
    if let Err(e) = metrics::config::validate(&raw) {
        panic!("{e}");
    }
}

#[test]
fn rate_limit_plugin_config_passes_the_filters_validation() {
    let raw = plugin_config_json(&load("rate-limit"));
    if let Err(e) = rate_limit::config::validate(&raw) {
        panic!("{e}");
    }
}

#[test]
fn a_broken_plugin_config_is_caught() {
    // Guards the three tests above against a validate that accepts anything.
    let mut doc = load("rate-limit");
    doc["spec"]["pluginConfig"]["unknown_field"] = Value::Bool(true);
    assert!(rate_limit::config::validate(&plugin_config_json(&doc)).is_err());
}
