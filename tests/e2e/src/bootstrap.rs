//! Envoy bootstrap generation: one plain-HTTP loopback listener →
//! `http_connection_manager` → the given HTTP filters → router → either the
//! echo upstream cluster or a `direct_response`, plus optional stats settings.
//!
//! Addresses use port 0: Envoy binds free ports itself and the launcher reads
//! them back from the admin API, so parallel tests never race for a port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// One HTTP filter placed before the router.
#[derive(Debug, Clone)]
pub enum HttpFilter {
    /// `envoy.filters.http.wasm` on the V8 runtime (the only one in the PyPI
    /// build), with its own VM (`vm_id` = `name`).
    Wasm {
        /// Plugin name and VM id.
        name: String,
        /// The `.wasm` file.
        wasm: PathBuf,
        /// Plugin configuration: JSON text, passed as a `google.protobuf.StringValue`.
        config: String,
    },
    /// Native `envoy.filters.http.header_mutation` on responses: add each
    /// header if absent, remove each name.
    HeaderMutation {
        /// Headers added when absent (`ADD_IF_ABSENT`).
        add: Vec<(String, String)>,
        /// Headers removed.
        remove: Vec<String>,
    },
    /// Any filter, as its JSON `{name, typed_config}`.
    Raw(Value),
}

impl HttpFilter {
    /// A Wasm filter named `name` from `wasm` with `config` (JSON text).
    pub fn wasm(name: &str, wasm: &Path, config: &str) -> Self {
        Self::Wasm {
            name: name.to_owned(),
            wasm: wasm.to_owned(),
            config: config.to_owned(),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Wasm { name, wasm, config } => json!({
                "name": format!("wasm.{name}"),
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {
                        "name": name,
                        "root_id": "",
                        "vm_config": {
                            "vm_id": name,
                            "runtime": "envoy.wasm.runtime.v8",
                            "code": {"local": {"filename": wasm.display().to_string()}},
                        },
                        "configuration": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": config,
                        },
                    },
                },
            }),
            Self::HeaderMutation { add, remove } => {
                let mut mutations: Vec<Value> = add
                    .iter()
                    .map(|(k, v)| {
                        json!({"append": {"header": {"key": k, "value": v},
                                          "append_action": "ADD_IF_ABSENT"}})
                    })
                    .collect();
                mutations.extend(remove.iter().map(|name| json!({"remove": name})));
                json!({
                    "name": "envoy.filters.http.header_mutation",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                        "mutations": {"response_mutations": mutations},
                    },
                })
            }
            Self::Raw(value) => value.clone(),
        }
    }
}

/// What a route prefix leads to.
#[derive(Debug, Clone)]
pub enum Route {
    /// Proxy to the echo upstream at this address.
    Upstream(SocketAddr),
    /// Answer from Envoy itself (`direct_response`), with extra response
    /// headers added by the route (`response_headers_to_add`, overwriting).
    Direct {
        /// Status code.
        status: u16,
        /// Body (`inline_string`).
        body: String,
        /// Route-level response headers, e.g. a `content-type`.
        headers: Vec<(String, String)>,
    },
}

/// A bootstrap under construction; [`Bootstrap::to_json`] renders it.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    filters: Vec<HttpFilter>,
    routes: Vec<(String, Route)>,
    stats_config: Option<Value>,
    stats_flush_interval: Option<Duration>,
}

impl Bootstrap {
    /// An empty chain with no routes (every request gets Envoy's 404).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an HTTP filter (chain order = call order; the router comes last).
    pub fn filter(mut self, filter: HttpFilter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Adds a route for paths starting with `prefix` (first match wins).
    pub fn route(mut self, prefix: &str, route: Route) -> Self {
        self.routes.push((prefix.to_owned(), route));
        self
    }

    /// Merges `stats_config` from a bootstrap snippet file such as
    /// `manifests/envoy/metrics-stats-tags.yaml`.
    ///
    /// # Panics
    ///
    /// If the file is unreadable, not YAML, or has no `stats_config`.
    pub fn stats_config_from(mut self, snippet: &Path) -> Self {
        let text = std::fs::read_to_string(snippet)
            .unwrap_or_else(|e| panic!("read {}: {e}", snippet.display()));
        let doc: Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", snippet.display()));
        let stats = doc
            .get("stats_config")
            .unwrap_or_else(|| panic!("{} has no stats_config", snippet.display()))
            .clone();
        self.stats_config = Some(stats);
        self
    }

    /// Sets `stats_flush_interval`: histograms reach `/stats/prometheus` only at a flush.
    pub fn stats_flush_interval(mut self, interval: Duration) -> Self {
        self.stats_flush_interval = Some(interval);
        self
    }

    /// The bootstrap as JSON (written out as YAML by the launcher).
    pub fn to_json(&self) -> Value {
        let loopback0 = json!({"socket_address": {"address": "127.0.0.1", "port_value": 0}});
        let mut clusters = Vec::new();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|(prefix, route)| match route {
                Route::Upstream(addr) => {
                    let cluster = format!("upstream_{}", addr.port());
                    if !clusters
                        .iter()
                        .any(|c: &Value| c.get("name") == Some(&Value::from(cluster.as_str())))
                    {
                        clusters.push(json!({
                            "name": cluster,
                            "type": "STATIC",
                            "connect_timeout": "1s",
                            "load_assignment": {
                                "cluster_name": cluster,
                                "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
                                    {"socket_address": {"address": addr.ip().to_string(),
                                                        "port_value": addr.port()}}}}]}],
                            },
                        }));
                    }
                    json!({"match": {"prefix": prefix}, "route": {"cluster": cluster}})
                }
                Route::Direct {
                    status,
                    body,
                    headers,
                } => json!({
                    "match": {"prefix": prefix},
                    "direct_response": {"status": status, "body": {"inline_string": body}},
                    "response_headers_to_add": headers.iter().map(|(k, v)| json!({
                        "header": {"key": k, "value": v},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    })).collect::<Vec<_>>(),
                }),
            })
            .collect();
        let mut http_filters: Vec<Value> = self.filters.iter().map(HttpFilter::to_json).collect();
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }));
        let mut bootstrap = json!({
            "admin": {"address": loopback0},
            "static_resources": {
                "listeners": [{
                    "name": "main",
                    "address": loopback0,
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "main",
                            "codec_type": "AUTO",
                            "route_config": {
                                "name": "main",
                                "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
                            },
                            "http_filters": http_filters,
                        },
                    }]}],
                }],
                "clusters": clusters,
            },
        });
        if let Some(top) = bootstrap.as_object_mut() {
            if let Some(stats) = &self.stats_config {
                top.insert("stats_config".into(), stats.clone());
            }
            if let Some(interval) = self.stats_flush_interval {
                let text = format!("{}s", interval.as_secs_f64());
                top.insert("stats_flush_interval".into(), text.into());
            }
        }
        bootstrap
    }
}
