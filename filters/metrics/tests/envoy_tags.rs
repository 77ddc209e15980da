//! Checks that the shipped Envoy `stats_tags` regexes turn the filter's stat
//! names into the Prometheus lines users expect, by emulating Envoy's tag
//! extraction: every regex is searched in the full name (`wasmcustom.` +
//! name); group 1 is removed, group 2 is the tag value; removals are unioned;
//! the `wasmcustom.` namespace is stripped from what remains.
// Test helpers: a failing unwrap here is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use metrics::config::validate;
use metrics::labels::{encode_name, envoy_stats_tag_regex, names, Labeler, RequestFacts};
use regex::Regex;

/// (tag-extracted Prometheus name, tags in regex order).
fn extract(regexes: &[(&str, String)], stat_name: &str) -> (String, Vec<(String, String)>) {
    let full = format!("wasmcustom.{stat_name}");
    let mut tags = Vec::new();
    let mut removed = vec![false; full.len()];
    for (tag, regex) in regexes {
        let regex = Regex::new(regex).unwrap();
        if let Some(caps) = regex.captures(&full) {
            let field = caps.get(1).unwrap();
            let value = caps.get(2).unwrap_or(field);
            tags.push(((*tag).to_owned(), value.as_str().to_owned()));
            removed[field.range()].iter_mut().for_each(|r| *r = true);
        }
    }
    let rest: String = full
        .char_indices()
        .filter(|(i, _)| !removed[*i])
        .map(|(_, c)| c)
        .collect();
    let name = rest
        .strip_prefix("wasmcustom.")
        .expect("namespace kept")
        .to_owned();
    (name, tags)
}

fn prometheus_line(name: &str, tags: &[(String, String)], value: u64) -> String {
    let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}} {value}", tags.join(","))
}

fn shipped_regexes() -> Vec<(&'static str, String)> {
    names::ALL
        .iter()
        .map(|n| (*n, envoy_stats_tag_regex(n)))
        .collect()
}

/// Istio's extraStatTags generate `(<tag>=\.=(.*?);\.;)`.
fn istio_regexes() -> Vec<(&'static str, String)> {
    names::ALL
        .iter()
        .map(|n| (*n, format!(r"({n}=\.=(.*?);\.;)")))
        .collect()
}

fn issue_stat_name(metric: &str) -> String {
    let config = validate(
        br#"{"prefix": "mesh", "dimensions": {"method": true, "response_code": true,
        "response_code_class": true, "version": {"header": "x-canary-version", "default": "unknown"},
        "route": {"prefixes": ["/api", "/admin", "/health"], "default": "other"}}}"#,
    )
    .unwrap();
    let mut labeler = Labeler::new(&config);
    let request = labeler.request_labels(&RequestFacts {
        method: Some(b"GET"),
        path: Some(b"/api/users"),
        version: Some(b"v2.1"),
    });
    encode_name(&labeler.pairs(&labeler.key(request, Some(b"200"))), metric)
}

#[test]
fn the_bootstrap_snippet_ships_exactly_these_regexes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/envoy/metrics-stats-tags.yaml"
    );
    let yaml = std::fs::read_to_string(path).unwrap();
    for (tag, regex) in shipped_regexes() {
        assert!(
            yaml.contains(&format!("- tag_name: {tag}\n      regex: '{regex}'")),
            "{tag}: {regex}"
        );
    }
}

#[test]
fn envoy_regexes_turn_the_stat_name_into_the_expected_prometheus_line() {
    let stat = issue_stat_name("mesh_requests_total");
    assert_eq!(
        stat,
        "method=.=GET;.;response_code=.=200;.;response_code_class=.=2xx;.;version=.=v2.1;.;\
         route=.=/api;.;mesh_requests_total"
    );
    let (name, tags) = extract(&shipped_regexes(), &stat);
    assert_eq!(
        prometheus_line(&name, &tags, 3),
        r#"mesh_requests_total{method="GET",response_code="200",response_code_class="2xx",version="v2.1",route="/api"} 3"#
    );
}

#[test]
fn istio_extra_stat_tags_give_the_same_result() {
    let stat = issue_stat_name("mesh_request_duration_milliseconds");
    assert_eq!(
        extract(&istio_regexes(), &stat),
        extract(&shipped_regexes(), &stat)
    );
}

#[test]
fn gauge_without_response_labels_is_extracted_cleanly() {
    let (name, tags) = extract(
        &shipped_regexes(),
        "method=.=POST;.;version=.=unknown;.;route=.=other;.;mesh_requests_active",
    );
    assert_eq!(
        prometheus_line(&name, &tags, 0),
        r#"mesh_requests_active{method="POST",version="unknown",route="other"} 0"#
    );
}

#[test]
fn anchored_regexes_ignore_suffix_lookalikes_in_other_plugins_names() {
    // Another Wasm plugin's Istio-style field `source_version` must not yield
    // a `version` tag (Istio's unanchored regexes would).
    let other = "source_version=.=v1;.;other_total";
    let (name, tags) = extract(&shipped_regexes(), other);
    assert!(tags.is_empty(), "{tags:?}");
    assert_eq!(name, other);
    let (_, istio_tags) = extract(&istio_regexes(), other);
    assert_eq!(istio_tags, [("version".to_owned(), "v1".to_owned())]);
}
