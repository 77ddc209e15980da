//! The shipped WasmPlugins (manifests/istio/wasmplugins/*.yaml): each one
//! follows the WasmPlugin spec's rules (extensions.istio.io/v1alpha1: field
//! names and types, the enums, `sha256`'s pattern, the `url` scheme, at most
//! one of selector/targetRef/targetRefs), is pulled from OCI, and carries a
//! pluginConfig that the filter's own `config::validate` accepts, exactly as
//! `on_configure` would receive it (Istio hands pluginConfig over as JSON).
//! The rendered copies in dist/manifests (`make manifests`) are checked by
//! the same rules in tests/oci.rs, where their digests are known.
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;

use e2e::manifests::{self, wasmplugin_rule_violations};
use e2e::paths;
use serde_yaml_ng::Value;

/// pluginConfig as the JSON bytes the module's `on_configure` receives.
fn plugin_config_json(doc: &Value) -> Vec<u8> {
    let config = &doc["spec"]["pluginConfig"];
    assert!(config.is_mapping(), "spec.pluginConfig must be an object");
    serde_json::to_vec(config).unwrap()
}

#[test]
fn every_shipped_filter_has_a_wasmplugin_and_nothing_else_is_there() {
    let dir = paths::repo_root().join("manifests/istio/wasmplugins");
    let mut found: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut expected: Vec<String> = manifests::SHIPPED.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn every_wasmplugin_follows_the_spec_rules_and_is_pulled_from_oci() {
    for name in manifests::SHIPPED {
        let doc = manifests::load_wasmplugin(name);
        let violations = wasmplugin_rule_violations(&doc);
        assert!(violations.is_empty(), "{name}: {violations:#?}");
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
        for key in ["phase", "failStrategy", "imagePullPolicy", "selector"] {
            assert!(!doc["spec"][key].is_null(), "{name}: spec.{key} is not set");
        }
    }
}

#[test]
fn the_rules_catch_what_the_spec_forbids() {
    // Guards the test above against a checker that accepts anything.
    let good = manifests::load_wasmplugin("metrics");
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut doc = good.clone();
        edit(&mut doc);
        wasmplugin_rule_violations(&doc)
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "unknown field",
            broken(&|d| d["spec"]["phases"] = "AUTHN".into()),
        ),
        (
            "bad enum",
            broken(&|d| d["spec"]["phase"] = "AUTHENTICATION".into()),
        ),
        (
            "wrong type",
            broken(&|d| d["spec"]["priority"] = "high".into()),
        ),
        (
            "bad sha256",
            broken(&|d| d["spec"]["sha256"] = "sha256:abc".into()),
        ),
        (
            "bad url scheme",
            broken(&|d| d["spec"]["url"] = "ftp://x/y".into()),
        ),
        (
            "selector and targetRef",
            broken(&|d| {
                d["spec"]["targetRef"] = serde_yaml_ng::from_str(
                    "{kind: Gateway, group: gateway.networking.k8s.io, name: gw}",
                )
                .unwrap();
            }),
        ),
        (
            "bad match mode",
            broken(&|d| d["spec"]["match"] = serde_yaml_ng::from_str("[{mode: INBOUND}]").unwrap()),
        ),
    ];
    for (what, violations) in cases {
        assert!(!violations.is_empty(), "{what} was not caught");
    }
    let mut with_digest = good.clone();
    with_digest["spec"]["sha256"] = "ab".repeat(32).into();
    assert!(wasmplugin_rule_violations(&with_digest).is_empty());
}

#[test]
fn every_plugin_config_passes_its_filters_validation() {
    type Validate = fn(&[u8]) -> Result<(), String>;
    let validators: [(&str, Validate); 5] = [
        ("jwt-auth", |raw| {
            jwt_auth::config::validate(raw)
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("rate-limit", |raw| {
            rate_limit::config::validate(raw)
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("canary-router", |raw| {
            canary_router::config::validate(raw)
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("security-headers", |raw| {
            security_headers::config::validate(raw)
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("metrics", |raw| {
            metrics::config::validate(raw)
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    ];
    assert_eq!(validators.len(), manifests::SHIPPED.len());
    for (name, validate) in validators {
        let doc = manifests::load_wasmplugin(name);
        if let Err(e) = validate(&plugin_config_json(&doc)) {
            panic!("{name}: {e}");
        }
        // And the validation is not a formality: an unknown field is refused.
        let mut broken = doc.clone();
        broken["spec"]["pluginConfig"]["unknown_field"] = Value::Bool(true);
        assert!(
            validate(&plugin_config_json(&broken)).is_err(),
            "{name} accepted an unknown field"
        );
    }
}

#[test]
fn istio_phase_order_is_the_chain_the_e2e_tests_run() {
    let chain = manifests::chain();
    let order: Vec<&str> = chain.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        order,
        [
            "security-headers",
            "jwt-auth",
            "rate-limit",
            "canary-router",
            "metrics"
        ]
    );
}

#[test]
fn rendered_manifests_pin_each_images_manifest_digest() {
    let scratch = std::env::temp_dir().join(format!("e2e-render-{}", std::process::id()));
    let (oci, out) = (scratch.join("oci"), scratch.join("manifests"));
    let mut images = Vec::new();
    for name in manifests::SHIPPED {
        let wasm = paths::filter_wasm(&name.replace('-', "_"));
        images.push(xtask::oci::write_filter(&wasm, &oci).unwrap());
    }
    let src = paths::repo_root().join("manifests/istio/wasmplugins");
    let rendered = xtask::manifests::render_all(&oci, &src, &out).unwrap();
    assert_eq!(rendered.len(), manifests::SHIPPED.len());
    for image in images {
        let file = out.join(format!("{}.yaml", image.name));
        let doc: Value = serde_yaml_ng::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        let violations = wasmplugin_rule_violations(&doc);
        assert!(violations.is_empty(), "{}: {violations:#?}", file.display());
        // The manifest digest, never the module's own hash (istio#37565).
        let pinned = doc["spec"]["sha256"].as_str().unwrap();
        assert_eq!(Some(pinned), image.manifest_digest.strip_prefix("sha256:"));
        assert_ne!(Some(pinned), image.wasm_digest.strip_prefix("sha256:"));
    }
    let _ = fs::remove_dir_all(&scratch);
}

/// The global-mode example (manifests/istio/ratelimit): a valid WasmPlugin
/// whose pluginConfig the filter accepts, and whose global rule names the
/// cluster Istio builds from the ServiceEntry beside it, which must be a
/// gRPC (HTTP/2) port.
#[test]
fn the_global_rate_limit_example_names_its_serviceentry_cluster() {
    let dir = paths::repo_root().join("manifests/istio/ratelimit");
    let load = |file: &str| -> Value {
        serde_yaml_ng::from_str(&fs::read_to_string(dir.join(file)).unwrap()).unwrap()
    };
    let plugin = load("rate-limit-global.yaml");
    let violations = wasmplugin_rule_violations(&plugin);
    assert!(violations.is_empty(), "{violations:#?}");
    let config = rate_limit::config::validate(&plugin_config_json(&plugin)).unwrap();
    assert_eq!(config.global.len(), 1);
    let global = &config.global[0].global;
    assert!(global.local_fallback);

    let entry = load("serviceentry.yaml");
    assert_eq!(entry["apiVersion"].as_str(), Some("networking.istio.io/v1"));
    assert_eq!(entry["kind"].as_str(), Some("ServiceEntry"));
    let spec = &entry["spec"];
    let host = spec["hosts"][0].as_str().unwrap();
    let port = &spec["ports"][0];
    assert!(
        matches!(port["protocol"].as_str(), Some("GRPC" | "HTTP2")),
        "a gRPC callout needs an HTTP/2 cluster"
    );
    assert!(matches!(
        spec["resolution"].as_str(),
        Some("NONE" | "STATIC" | "DNS" | "DNS_ROUND_ROBIN")
    ));
    assert!(matches!(
        spec["location"].as_str(),
        Some("MESH_EXTERNAL" | "MESH_INTERNAL")
    ));
    assert_eq!(
        global.cluster,
        format!("outbound|{}||{host}", port["number"].as_u64().unwrap())
    );
    assert_eq!(
        plugin["metadata"]["namespace"], entry["metadata"]["namespace"],
        "the ServiceEntry must be visible to the plugin's workloads"
    );
}
