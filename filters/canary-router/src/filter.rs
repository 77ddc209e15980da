//! Thin proxy-wasm glue: the root context validates the config once and
//! defines the counters; each HTTP context reads only the request fields the
//! config needs, asks [`router::decide`], rewrites the route header, asks
//! Envoy to recompute the route, and on the response echoes the version and
//! sets the sticky cookie.
//!
//! Host calls go through `hostcalls` with their errors handled: the SDK's
//! trait helpers `unwrap()` host results, and a filter must not trap on a
//! host that answers unexpectedly.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use filter_common::{cookie, header_map, query};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType, MetricType, Status};

use crate::config::{self, Config};
use crate::matcher::{find_cookie, find_header, find_query, RequestView};
use crate::router::{self, Decision, Reason};
use crate::stats;

/// Envoy's foreign function that drops the cached route so the next filter
/// (the router) matches the route table again with our header.
const CLEAR_ROUTE_CACHE: &str = "clear_route_cache";

/// Everything the request path needs, built once in `on_configure`.
struct Plan {
    config: Config,
    /// Version names as bytes, for header writes without conversion.
    version_values: Vec<Vec<u8>>,
    /// `canary_router.requests_<version>` ids, indexed like the versions.
    request_counters: Vec<Option<u32>>,
    rule_matches_counter: Option<u32>,
    /// Read the whole header map once instead of single headers: needed when
    /// cookies are read, since a request may carry several `Cookie` headers.
    reads_cookies: bool,
    /// Cleared after the host answers `NotFound`, so a host without the
    /// function costs one failed call per VM, not one per request.
    route_cache_callable: Cell<bool>,
}

impl Plan {
    fn new(config: Config) -> Self {
        let define = |name: &str| match hostcalls::define_metric(MetricType::Counter, name) {
            Ok(id) => Some(id),
            Err(status) => {
                // A host without metrics leaves the counter off rather than
                // failing the config.
                log::warn!("canary-router: cannot define metric {name}: {status:?}");
                None
            }
        };
        let request_counters = config
            .versions
            .iter()
            .map(|v| define(&stats::requests(v)))
            .collect();
        let mut rule_matches_counter = None;
        for name in stats::COUNTERS {
            let id = define(name);
            if name == stats::RULE_MATCHES {
                rule_matches_counter = id;
            }
        }
        Self {
            version_values: config
                .versions
                .iter()
                .map(|v| v.as_bytes().to_vec())
                .collect(),
            request_counters,
            rule_matches_counter,
            reads_cookies: config.reads_cookies(),
            route_cache_callable: Cell::new(config.clear_route_cache),
            config,
        }
    }
}

/// A uniformly random `u64` from the host's entropy, for key-less requests.
///
/// std seeds `RandomState` from WASI `random_get` once per VM thread and then
/// bumps the seed on every `new()`, so each call yields a fresh SipHash
/// output under a random key: unpredictable on Envoy, reproducible under
/// host-test's seeded `random_get`. No extra crate, no unsafe. (Hashing the
/// proxy clock and a counter would be predictable, and a client could aim
/// for a version.)
fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// The request as the host holds it.
enum HostRequest {
    /// The whole header map, fetched in one call with
    /// [`filter_common::header_map::get`] (the SDK's getter traps on a header
    /// name that is not UTF-8, which another filter can add). Only the UTF-8
    /// names are kept: the names rules and `hash_on` look up are validated
    /// ASCII tokens, so no other name can match. A map the host cannot give
    /// counts as empty, as a request without those headers.
    Map(Vec<(String, Vec<u8>)>),
    /// Single headers on demand; `:path` fetched at most once for queries.
    OnDemand { path: Option<Option<Vec<u8>>> },
}

/// Through `header_map::value`, which the bundle answers from one shared
/// read of the request map.
fn request_header(name: &str) -> Option<Vec<u8>> {
    header_map::value(MapType::HttpRequestHeaders, name)
}

impl RequestView for HostRequest {
    fn header(&mut self, name: &str) -> Option<Cow<'_, [u8]>> {
        match self {
            Self::Map(pairs) => find_header(pairs, name).map(Cow::Borrowed),
            Self::OnDemand { .. } => request_header(name).map(Cow::Owned),
        }
    }

    fn cookie(&mut self, name: &str) -> Option<Cow<'_, [u8]>> {
        match self {
            Self::Map(pairs) => find_cookie(pairs, name).map(Cow::Borrowed),
            // Unreached when the config reads cookies (the map is used then);
            // kept total: the first Cookie header only.
            Self::OnDemand { .. } => {
                let header = request_header("cookie")?;
                cookie::find_in(&header, name).map(|v| Cow::Owned(v.to_vec()))
            }
        }
    }

    fn query(&mut self, name: &str) -> Option<Cow<'_, [u8]>> {
        match self {
            Self::Map(pairs) => find_query(pairs, name).map(Cow::Borrowed),
            Self::OnDemand { path } => {
                let path = path.get_or_insert_with(|| request_header(":path"));
                query::find(path.as_deref()?, name).map(Cow::Borrowed)
            }
        }
    }
}

/// The root context: owns the plan.
#[derive(Default)]
pub struct CanaryRoot {
    plan: Option<Rc<Plan>>,
}

impl CanaryRoot {
    /// Applies a validated config: builds the plan and defines the
    /// counters. `on_configure` is [`config::validate`] then this; the
    /// bundle (`filters/bundle`) validates its `canary_router` section
    /// itself and calls this.
    pub fn configure(&mut self, config: Config) {
        log::info!(
            "canary-router: configured: route header {:?}, {} rules, split {}",
            config.route_header,
            config.rules.len(),
            config.versions.join("/")
        );
        self.plan = Some(Rc::new(Plan::new(config)));
    }
}

impl Context for CanaryRoot {}

impl RootContext for CanaryRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        filter_common::configure::from_plugin_configuration(config::validate, |config| {
            self.configure(config);
        })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let plan = Rc::clone(self.plan.as_ref()?);
        Some(Box::new(CanaryStream {
            plan,
            decision: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP stream.
pub struct CanaryStream {
    plan: Rc<Plan>,
    /// Set on the request path; `None` when an earlier filter replied locally.
    decision: Option<Decision>,
}

impl Context for CanaryStream {}

impl CanaryStream {
    fn count(id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn clear_route_cache(&self) {
        if !self.plan.route_cache_callable.get() {
            return;
        }
        match hostcalls::call_foreign_function(CLEAR_ROUTE_CACHE, None) {
            Ok(_) => {}
            Err(Status::NotFound) => {
                // Older Envoys and other hosts lack it; they recompute the
                // route after header changes on their own (Envoy < 1.33).
                self.plan.route_cache_callable.set(false);
                log::info!(
                    "canary-router: host has no clear_route_cache; relying on its own route refresh"
                );
            }
            Err(status) => log::warn!("canary-router: clear_route_cache failed: {status:?}"),
        }
    }
}

impl HttpContext for CanaryStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let plan = Rc::clone(&self.plan);
        let route_header = plan.config.route_header.as_str();
        let mut request = if plan.reads_cookies {
            HostRequest::Map(
                header_map::map(MapType::HttpRequestHeaders)
                    .map(|pairs| header_map::split_utf8(pairs).utf8)
                    .unwrap_or_default(),
            )
        } else {
            HostRequest::OnDemand { path: None }
        };
        let decision = router::decide(&plan.config, &mut request, random_u64);
        drop(request);

        // One replace both strips a client-sent route header and writes
        // ours: Envoy's replaceHeaderMapValue is HeaderMap::setCopy, which
        // drops every earlier value (since the runtime feature
        // `http_set_copy_replace_all_headers`; before it, only the first of a
        // repeated header was overwritten), and host-test does the same. One
        // host call instead of remove + add keeps the request path short.
        if let Some(value) = plan.version_values.get(decision.version) {
            let _ = header_map::replace(MapType::HttpRequestHeaders, route_header, Some(value));
        }
        if plan.config.clear_route_cache {
            self.clear_route_cache();
        }
        Self::count(
            plan.request_counters
                .get(decision.version)
                .copied()
                .flatten(),
        );
        if matches!(decision.reason, Reason::Rule(_)) {
            Self::count(plan.rule_matches_counter);
        }
        self.decision = Some(decision);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(decision) = self.decision else {
            return Action::Continue;
        };
        let plan = &self.plan;
        if plan.config.response_header {
            if let Some(value) = plan.version_values.get(decision.version) {
                // Replace: an upstream's own header must not contradict ours.
                let _ = hostcalls::set_map_value_bytes(
                    MapType::HttpResponseHeaders,
                    &plan.config.route_header,
                    Some(value),
                );
            }
        }
        if decision.set_cookie {
            if let Some(set_cookie) = plan
                .config
                .sticky_cookie
                .as_ref()
                .and_then(|c| c.set_cookie.get(decision.version))
            {
                // Add, never replace: the application's own cookies stay.
                let _ = hostcalls::add_map_value_bytes(
                    MapType::HttpResponseHeaders,
                    "set-cookie",
                    set_cookie,
                );
            }
        }
        Action::Continue
    }
}
