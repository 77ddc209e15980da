//! The shipped Istio WasmPlugins (manifests/istio/wasmplugins/): loading
//! them, checking them against the WasmPlugin spec's rules, and the filter
//! chain Istio builds from their phases and priorities. The full-chain e2e
//! test and the standalone Envoy config (manifests/envoy/full-chain.yaml)
//! take their plugin configs and order from here, so the manifests are what
//! the tests run.
// serde_yaml_ng's `value["key"]` yields Null for a missing key or a
// non-mapping; it does not panic, which is what the lint fears.
#![allow(clippy::indexing_slicing)]

use std::path::PathBuf;

use serde_yaml_ng::Value;

use crate::paths;

/// Every filter with a WasmPlugin, by manifest file stem (= plugin name).
pub const SHIPPED: [&str; 5] = [
    "jwt-auth",
    "rate-limit",
    "canary-router",
    "security-headers",
    "metrics",
];

/// `manifests/istio/wasmplugins/<name>.yaml`.
pub fn wasmplugin_path(name: &str) -> PathBuf {
    paths::repo_root().join(format!("manifests/istio/wasmplugins/{name}.yaml"))
}

/// Parses a shipped WasmPlugin.
///
/// # Panics
///
/// If the file is missing or not YAML.
pub fn load_wasmplugin(name: &str) -> Value {
    let path = wasmplugin_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One plugin of the chain, as Envoy will run it.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// Plugin (and manifest) name, e.g. `jwt-auth`.
    pub name: String,
    /// The module, `dist/filters/<crate_name>.wasm`.
    pub wasm: PathBuf,
    /// `spec.pluginConfig` as the JSON text the module receives.
    pub config: String,
    /// `spec.phase`.
    pub phase: String,
    /// `spec.priority` (0 when unset).
    pub priority: i64,
    /// `failStrategy: FAIL_OPEN`.
    pub fail_open: bool,
}

/// The shipped plugins in the order Istio inserts them into one sidecar's
/// HTTP filter chain: by phase (AUTHN, then AUTHZ, then STATS, then
/// UNSPECIFIED_PHASE, just before the router), and within a phase by
/// descending priority. Each plugin's `match` (CLIENT or SERVER traffic) is
/// ignored here: the chain shows every plugin on one path.
///
/// # Panics
///
/// If a manifest is missing or malformed.
pub fn chain() -> Vec<Plugin> {
    let mut plugins: Vec<Plugin> = SHIPPED
        .iter()
        .map(|name| {
            let doc = load_wasmplugin(name);
            let spec = &doc["spec"];
            Plugin {
                name: (*name).to_owned(),
                wasm: paths::filter_wasm(&name.replace('-', "_")),
                config: serde_json::to_string(&spec["pluginConfig"])
                    .unwrap_or_else(|e| panic!("{name}: pluginConfig: {e}")),
                phase: spec["phase"]
                    .as_str()
                    .unwrap_or("UNSPECIFIED_PHASE")
                    .to_owned(),
                priority: spec["priority"].as_i64().unwrap_or(0),
                fail_open: spec["failStrategy"].as_str() == Some("FAIL_OPEN"),
            }
        })
        .collect();
    let phase_rank = |phase: &str| match phase {
        "AUTHN" => 0,
        "AUTHZ" => 1,
        "STATS" => 2,
        _ => 3,
    };
    plugins.sort_by(|a, b| {
        phase_rank(&a.phase)
            .cmp(&phase_rank(&b.phase))
            .then(b.priority.cmp(&a.priority))
            .then(a.name.cmp(&b.name))
    });
    plugins
}

/// What a WasmPlugin (extensions.istio.io/v1alpha1) breaks of the spec's
/// rules, one message per violation naming the field; empty when valid.
///
/// Checked: top-level shape; every `spec` field name and type; the enums
/// (`phase`, `failStrategy`, `imagePullPolicy`, `type`, `match[].mode`,
/// `vmConfig.env[].valueFrom`); `url` present with scheme oci, http, https
/// or file; `sha256` empty or 64 lower-case hex digits; `priority` an int32;
/// at most one of `selector`, `targetRef`, `targetRefs`.
pub fn wasmplugin_rule_violations(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if doc["apiVersion"].as_str() != Some("extensions.istio.io/v1alpha1") {
        out.push("apiVersion: must be extensions.istio.io/v1alpha1".to_owned());
    }
    if doc["kind"].as_str() != Some("WasmPlugin") {
        out.push("kind: must be WasmPlugin".to_owned());
    }
    if doc["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        out.push("metadata.name: missing".to_owned());
    }
    let Some(spec) = doc["spec"].as_mapping() else {
        out.push("spec: must be an object".to_owned());
        return out;
    };
    for (key, value) in spec {
        let key = key.as_str().unwrap_or_default();
        let field = format!("spec.{key}");
        match key {
            "url" => check_url(value, &field, &mut out),
            "sha256" => {
                let ok = value.as_str().is_some_and(|s| {
                    s.is_empty()
                        || (s.len() == 64
                            && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                });
                if !ok {
                    out.push(format!("{field}: must match ^$|^[a-f0-9]{{64}}$"));
                }
            }
            "imagePullPolicy" => check_enum(
                value,
                &field,
                &["UNSPECIFIED_POLICY", "IfNotPresent", "Always"],
                &mut out,
            ),
            "phase" => check_enum(
                value,
                &field,
                &["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"],
                &mut out,
            ),
            "failStrategy" => check_enum(
                value,
                &field,
                &["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"],
                &mut out,
            ),
            "type" => check_enum(
                value,
                &field,
                &["UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"],
                &mut out,
            ),
            "priority" => {
                if value.as_i64().and_then(|p| i32::try_from(p).ok()).is_none() && !value.is_null()
                {
                    out.push(format!("{field}: must be an int32"));
                }
            }
            "imagePullSecret" | "pluginName" | "verificationKey" => {
                if !value.is_string() {
                    out.push(format!("{field}: must be a string"));
                }
            }
            "pluginConfig" => {
                if !value.is_mapping() {
                    out.push(format!("{field}: must be an object"));
                }
            }
            "selector" => check_selector(value, &field, &mut out),
            "targetRef" => check_target_ref(value, &field, &mut out),
            "targetRefs" => match value.as_sequence() {
                Some(refs) => {
                    for (i, r) in refs.iter().enumerate() {
                        check_target_ref(r, &format!("{field}[{i}]"), &mut out);
                    }
                }
                None => out.push(format!("{field}: must be a list")),
            },
            "match" => check_match(value, &field, &mut out),
            "vmConfig" => check_vm_config(value, &field, &mut out),
            _ => out.push(format!("{field}: unknown field")),
        }
    }
    if spec.get("url").is_none() {
        out.push("spec.url: required".to_owned());
    }
    let targets = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|k| spec.get(**k).is_some())
        .count();
    if targets > 1 {
        out.push("spec: only one of selector, targetRef, targetRefs can be set".to_owned());
    }
    out
}

fn check_enum(value: &Value, field: &str, allowed: &[&str], out: &mut Vec<String>) {
    if !value.as_str().is_some_and(|v| allowed.contains(&v)) {
        out.push(format!("{field}: must be one of {allowed:?}"));
    }
}

fn check_url(value: &Value, field: &str, out: &mut Vec<String>) {
    let Some(url) = value.as_str().filter(|u| !u.is_empty()) else {
        out.push(format!("{field}: must be a non-empty string"));
        return;
    };
    let scheme = url.split_once("://").map(|(s, _)| s);
    if !scheme.is_some_and(|s| ["oci", "http", "https", "file"].contains(&s)) {
        out.push(format!(
            "{field}: scheme must be one of oci, http, https, file"
        ));
    }
}

fn check_fields(value: &Value, field: &str, allowed: &[&str], out: &mut Vec<String>) -> bool {
    let Some(map) = value.as_mapping() else {
        out.push(format!("{field}: must be an object"));
        return false;
    };
    for key in map.keys() {
        let key = key.as_str().unwrap_or_default();
        if !allowed.contains(&key) {
            out.push(format!("{field}.{key}: unknown field"));
        }
    }
    true
}

fn check_selector(value: &Value, field: &str, out: &mut Vec<String>) {
    if !check_fields(value, field, &["matchLabels"], out) {
        return;
    }
    let labels = &value["matchLabels"];
    match labels.as_mapping() {
        Some(labels) => {
            for (k, v) in labels {
                let key = k.as_str().unwrap_or_default();
                if key.is_empty() || key.contains('*') {
                    out.push(format!(
                        "{field}.matchLabels: key {key:?} must be non-empty, no wildcard"
                    ));
                }
                if !v
                    .as_str()
                    .is_some_and(|v| v.len() <= 63 && !v.contains('*'))
                {
                    out.push(format!("{field}.matchLabels.{key}: must be a string of at most 63 characters, no wildcard"));
                }
            }
        }
        None if labels.is_null() => {}
        None => out.push(format!("{field}.matchLabels: must be a map")),
    }
}

fn check_target_ref(value: &Value, field: &str, out: &mut Vec<String>) {
    if !check_fields(value, field, &["group", "kind", "name", "namespace"], out) {
        return;
    }
    for required in ["kind", "name"] {
        if value[required].as_str().is_none_or(str::is_empty) {
            out.push(format!("{field}.{required}: required"));
        }
    }
    if value["namespace"].as_str().is_some_and(|n| !n.is_empty()) {
        out.push(format!(
            "{field}.namespace: cross namespace referencing is not supported"
        ));
    }
}

fn check_match(value: &Value, field: &str, out: &mut Vec<String>) {
    let Some(items) = value.as_sequence() else {
        out.push(format!("{field}: must be a list"));
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if !check_fields(item, &at, &["mode", "ports"], out) {
            continue;
        }
        if !item["mode"].is_null() {
            check_enum(
                &item["mode"],
                &format!("{at}.mode"),
                &["UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"],
                out,
            );
        }
        if let Some(ports) = item["ports"].as_sequence() {
            for (j, port) in ports.iter().enumerate() {
                if !port["number"]
                    .as_u64()
                    .is_some_and(|n| (1..=65535).contains(&n))
                {
                    out.push(format!("{at}.ports[{j}].number: must be 1-65535"));
                }
            }
        }
    }
}

fn check_vm_config(value: &Value, field: &str, out: &mut Vec<String>) {
    if !check_fields(value, field, &["env"], out) {
        return;
    }
    for (i, env) in value["env"].as_sequence().into_iter().flatten().enumerate() {
        let at = format!("{field}.env[{i}]");
        if !check_fields(env, &at, &["name", "value", "valueFrom"], out) {
            continue;
        }
        if env["name"].as_str().is_none_or(str::is_empty) {
            out.push(format!("{at}.name: required"));
        }
        if !env["valueFrom"].is_null() {
            check_enum(
                &env["valueFrom"],
                &format!("{at}.valueFrom"),
                &["INLINE", "HOST"],
                out,
            );
        }
    }
}
