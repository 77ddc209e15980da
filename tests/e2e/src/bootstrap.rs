//! Envoy bootstrap generation: one plain-HTTP loopback listener →
//! `http_connection_manager` → the given HTTP filters → router → either the
//! echo upstream cluster or a `direct_response`, plus optional stats settings
//! and HTTP/2 clusters for gRPC services (the rate-limit service).
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
        /// Root id (`""` by default).
        root_id: String,
        /// VM configuration: JSON text, or `None` for none.
        vm_config: Option<String>,
        /// `failure_policy: FAIL_OPEN` instead of Envoy's default, fail closed.
        fail_open: bool,
    },
    /// Native `envoy.filters.http.header_mutation` on responses: add each
    /// header if absent, remove each name.
    HeaderMutation {
        /// Headers added when absent (`ADD_IF_ABSENT`).
        add: Vec<(String, String)>,
        /// Headers removed.
        remove: Vec<String>,
    },
    /// Native `envoy.filters.http.local_ratelimit` with one token bucket
    /// per value of a request header: the filter-level `rate_limits` action
    /// `request_headers` makes the descriptor `[(descriptor_key, value)]`,
    /// and a wildcard descriptor (entry without a value) gives each distinct
    /// value its own bucket (`max_dynamic_descriptors`, Envoy 1.35+). The
    /// filter-level `rate_limits` rather than a route's: a `direct_response`
    /// route has no `RouteAction` to carry them.
    LocalRateLimitPerHeader {
        /// Request header whose value names the bucket.
        header: String,
        /// Bucket size; the bucket starts full.
        max_tokens: u32,
        /// Tokens added each `fill_interval`.
        tokens_per_fill: u32,
        /// Protobuf duration, e.g. `"3600s"`.
        fill_interval: String,
        /// `enable_x_ratelimit_headers: DRAFT_VERSION_03` (`x-ratelimit-*`
        /// on every answer), the closest native match to the Wasm filter's
        /// rate-limit headers.
        x_ratelimit_headers: bool,
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
            root_id: String::new(),
            vm_config: None,
            fail_open: false,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Wasm {
                name,
                wasm,
                config,
                root_id,
                vm_config,
                fail_open,
            } => {
                let string_value = |text: &str| json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": text});
                let mut vm = json!({
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm.display().to_string()}},
                });
                if let (Some(text), Some(vm)) = (vm_config, vm.as_object_mut()) {
                    vm.insert("configuration".into(), string_value(text));
                }
                let mut plugin = json!({
                    "name": name,
                    "root_id": root_id,
                    "vm_config": vm,
                    "configuration": string_value(config),
                });
                if let (true, Some(plugin)) = (*fail_open, plugin.as_object_mut()) {
                    plugin.insert("failure_policy".into(), "FAIL_OPEN".into());
                }
                json!({
                    "name": format!("wasm.{name}"),
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                        "config": plugin,
                    },
                })
            }
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
            Self::LocalRateLimitPerHeader {
                header,
                max_tokens,
                tokens_per_fill,
                fill_interval,
                x_ratelimit_headers,
            } => {
                let percent_100 = |key: &str| {
                    json!({"runtime_key": key,
                           "default_value": {"numerator": 100, "denominator": "HUNDRED"}})
                };
                let mut config = json!({
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                    "stat_prefix": "local_rate_limit",
                    // Envoy wants a filter-wide bucket; it is never charged
                    // (always_consume_default_token_bucket: false) while a
                    // descriptor matches. u32::MAX tokens: it can never deny.
                    "token_bucket": {"max_tokens": u32::MAX, "tokens_per_fill": u32::MAX,
                                     "fill_interval": "3600s"},
                    "always_consume_default_token_bucket": false,
                    "filter_enabled": percent_100("local_rate_limit.enabled"),
                    "filter_enforced": percent_100("local_rate_limit.enforced"),
                    "max_dynamic_descriptors": 65536,
                    "descriptors": [{
                        "entries": [{"key": header}],
                        "token_bucket": {"max_tokens": max_tokens,
                                         "tokens_per_fill": tokens_per_fill,
                                         "fill_interval": fill_interval},
                    }],
                    "rate_limits": [{"actions": [{"request_headers":
                        {"header_name": header, "descriptor_key": header}}]}],
                });
                if *x_ratelimit_headers {
                    if let Some(object) = config.as_object_mut() {
                        object.insert(
                            "enable_x_ratelimit_headers".into(),
                            "DRAFT_VERSION_03".into(),
                        );
                    }
                }
                json!({"name": "envoy.filters.http.local_ratelimit", "typed_config": config})
            }
            Self::Raw(value) => value.clone(),
        }
    }
}

/// What a route leads to.
#[derive(Debug, Clone)]
pub enum Route {
    /// Proxy to the echo upstream at this address.
    Upstream(SocketAddr),
    /// Proxy to a cluster declared with [`Bootstrap::cluster`].
    Cluster(String),
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
    routes: Vec<RouteEntry>,
    clusters: Vec<(String, SocketAddr)>,
    grpc_clusters: Vec<(String, SocketAddr)>,
    stats_config: Option<Value>,
    stats_flush_interval: Option<Duration>,
    stats_flush_on_admin: bool,
    exact_balance: bool,
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
        self.routes.push(RouteEntry {
            prefix: prefix.to_owned(),
            header: None,
            route,
            rate_limits: None,
        });
        self
    }

    /// Adds a route for paths starting with `prefix` whose `RouteAction`
    /// carries `rate_limits` (a JSON list of Envoy's `config.route.v3.RateLimit`),
    /// which Envoy's native `envoy.filters.http.ratelimit` turns into
    /// descriptors.
    ///
    /// # Panics
    ///
    /// If `route` is a [`Route::Direct`]: a `direct_response` route has no
    /// `RouteAction`, and the native filter skips requests on it.
    pub fn rate_limited_route(mut self, prefix: &str, route: Route, rate_limits: Value) -> Self {
        if matches!(route, Route::Direct { .. }) {
            panic!("rate_limited_route: a direct_response route cannot carry rate_limits");
        }
        self.routes.push(RouteEntry {
            prefix: prefix.to_owned(),
            header: None,
            route,
            rate_limits: Some(rate_limits),
        });
        self
    }

    /// Adds a route for requests whose header `name` is exactly `value`
    /// (first match wins), as an Istio VirtualService `headers` match.
    pub fn header_route(mut self, name: &str, value: &str, route: Route) -> Self {
        self.routes.push(RouteEntry {
            prefix: "/".to_owned(),
            header: Some((name.to_owned(), value.to_owned())),
            route,
            rate_limits: None,
        });
        self
    }

    /// Declares a static cluster `name` with one endpoint, for
    /// [`Route::Cluster`] and for filters' callouts (a JWKS fetch names its
    /// cluster).
    pub fn cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.push((name.to_owned(), addr));
        self
    }

    /// Declares a static HTTP/2 cluster `name` with one endpoint, for gRPC
    /// callouts: Envoy's gRPC client (the native ratelimit filter's, and
    /// `proxy_grpc_call` from Wasm) needs HTTP/2 to the service
    /// (`explicit_http_config.http2_protocol_options` in the cluster's
    /// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`).
    pub fn grpc_cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.grpc_clusters.push((name.to_owned(), addr));
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

    /// Sets `stats_flush_on_admin`: no periodic flush at all (no stats work
    /// during a measurement); each admin `/stats` request merges the
    /// histograms instead, so their quantiles are current from the next one.
    pub fn stats_flush_on_admin(mut self) -> Self {
        self.stats_flush_on_admin = true;
        self
    }

    /// Sets the listener's `connection_balance_config` to `exact_balance`:
    /// each new connection goes to the worker with the fewest, so with
    /// `--concurrency N` and N connections held open every worker gets one.
    /// (By default the kernel's `SO_REUSEPORT` hash decides, and a test could
    /// find all its connections on one worker.)
    pub fn exact_balance(mut self) -> Self {
        self.exact_balance = true;
        self
    }

    /// The bootstrap as JSON (written out as YAML by the launcher).
    pub fn to_json(&self) -> Value {
        let loopback0 = json!({"socket_address": {"address": "127.0.0.1", "port_value": 0}});
        let mut clusters: Vec<Value> = self
            .clusters
            .iter()
            .map(|(name, addr)| static_cluster(name, *addr))
            .chain(
                self.grpc_clusters
                    .iter()
                    .map(|(name, addr)| http2_cluster(name, *addr)),
            )
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|entry| {
                let mut rendered = entry.render(&mut clusters);
                if let (Some(limits), Some(action)) = (
                    &entry.rate_limits,
                    rendered.get_mut("route").and_then(Value::as_object_mut),
                ) {
                    action.insert("rate_limits".into(), limits.clone());
                }
                rendered
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
            if self.stats_flush_on_admin {
                top.insert("stats_flush_on_admin".into(), true.into());
            }
        }
        if self.exact_balance {
            if let Some(listener) = bootstrap.pointer_mut("/static_resources/listeners/0") {
                if let Some(listener) = listener.as_object_mut() {
                    listener.insert(
                        "connection_balance_config".into(),
                        json!({"exact_balance": {}}),
                    );
                }
            }
        }
        bootstrap
    }
}

/// One route: a path prefix, optionally an exact header match, where it
/// leads, and optionally the `RouteAction`'s `rate_limits`.
#[derive(Debug, Clone)]
struct RouteEntry {
    prefix: String,
    header: Option<(String, String)>,
    route: Route,
    rate_limits: Option<Value>,
}

impl RouteEntry {
    /// The route's JSON; an [`Route::Upstream`] adds its cluster to
    /// `clusters` (once per address).
    fn render(&self, clusters: &mut Vec<Value>) -> Value {
        let route_match = self.to_match();
        match &self.route {
            Route::Upstream(addr) => {
                let cluster = format!("upstream_{}", addr.port());
                if !clusters
                    .iter()
                    .any(|c: &Value| c.get("name") == Some(&Value::from(cluster.as_str())))
                {
                    clusters.push(static_cluster(&cluster, *addr));
                }
                json!({"match": route_match, "route": {"cluster": cluster}})
            }
            Route::Cluster(cluster) => {
                json!({"match": route_match, "route": {"cluster": cluster}})
            }
            Route::Direct {
                status,
                body,
                headers,
            } => json!({
                "match": route_match,
                "direct_response": {"status": status, "body": {"inline_string": body}},
                "response_headers_to_add": headers.iter().map(|(k, v)| json!({
                    "header": {"key": k, "value": v},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                })).collect::<Vec<_>>(),
            }),
        }
    }

    /// The route's `match` (RouteMatch JSON).
    fn to_match(&self) -> Value {
        match &self.header {
            None => json!({"prefix": self.prefix}),
            Some((name, value)) => json!({
                "prefix": self.prefix,
                "headers": [{"name": name, "string_match": {"exact": value}}],
            }),
        }
    }
}

/// A `STATIC` cluster with one loopback endpoint.
fn static_cluster(name: &str, addr: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
                {"socket_address": {"address": addr.ip().to_string(),
                                    "port_value": addr.port()}}}}]}],
        },
    })
}

/// A `STATIC` cluster with one loopback endpoint speaking HTTP/2 (prior
/// knowledge, no TLS), for gRPC services.
fn http2_cluster(name: &str, addr: SocketAddr) -> Value {
    let mut cluster = static_cluster(name, addr);
    if let Some(object) = cluster.as_object_mut() {
        object.insert(
            "typed_extension_protocol_options".into(),
            json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }}),
        );
    }
    cluster
}
