//! The shipped Grafana dashboard is valid JSON in Grafana's import format and
//! queries the metrics this filter emits.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use serde_json::Value;

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/grafana/mesh-dashboard.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn exprs(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn dashboard_declares_a_prometheus_datasource_input_used_by_every_panel() {
    let d = dashboard();
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    for panel in d["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{}",
            panel["title"]
        );
    }
    assert!(d["uid"].is_string() && d["title"].is_string() && d["schemaVersion"].is_number());
}

#[test]
fn dashboard_covers_rate_errors_latency_quantiles_and_versions() {
    let exprs = exprs(&dashboard());
    for q in ["0.5", "0.95", "0.99"] {
        assert!(
            exprs
                .iter()
                .any(|e| e.starts_with(&format!("histogram_quantile({q},"))
                    && e.contains("mesh_request_duration_milliseconds_bucket")),
            "p{q}"
        );
    }
    assert!(exprs.iter().any(|e| e.contains("response_code=~\"5..\"")));
    assert!(exprs.iter().any(|e| e.contains("sum by (version)")));
    assert!(exprs.iter().any(|e| e.contains("mesh_requests_active")));
}
