//! The shipped Istio manifests agree with the filter: the WasmPlugin's
//! `pluginConfig` passes the filter's own validation, and the VirtualService
//! routes every version the split can write, on the header it writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use canary_router::config::validate;
use serde_yaml_ng::Value;

/// `manifests/istio/<name>`.
fn manifest(name: &str) -> Value {
    let path = format!(
        "{}/../../manifests/istio/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap()
}

#[test]
fn the_wasmplugin_config_is_valid_and_routes_eighty_twenty() {
    let plugin = manifest("wasmplugins/canary-router.yaml");
    let json = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).unwrap();
    let config = validate(&json).unwrap();
    assert_eq!(config.versions, ["v1", "v2"]);
    assert_eq!(config.split.total(), 100);
    assert!(config.split.is_live(0) && config.split.is_live(1));
    assert!(
        !config.rules.is_empty(),
        "the manifest shows a header override"
    );
}

#[test]
fn the_virtualservice_routes_each_version_to_its_subset_on_the_route_header() {
    let plugin = manifest("wasmplugins/canary-router.yaml");
    let json = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).unwrap();
    let config = validate(&json).unwrap();
    let vs = manifest("canary/virtualservice.yaml");
    let subsets: Vec<String> = manifest("canary/destinationrule.yaml")["spec"]["subsets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    for version in &config.versions {
        let route = vs["spec"]["http"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|r| {
                r["match"][0]["headers"][config.route_header.as_str()]["exact"].as_str()
                    == Some(version)
            })
            .unwrap_or_else(|| panic!("no route matches {}: {version}", config.route_header));
        assert_eq!(
            route["route"][0]["destination"]["subset"].as_str(),
            Some(version.as_str())
        );
        assert!(
            subsets.contains(version),
            "DestinationRule lacks subset {version}"
        );
    }
}
