//! Thin proxy-wasm glue: parse the config once, then per stream note the
//! scheme on the request path and merge the plan into the response headers.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MetricType};

use crate::config;
use crate::harden::{self, Outcome, Plan};
use crate::stats;

/// The root context: owns the plan built in `on_configure`.
#[derive(Default)]
pub struct SecurityHeadersRoot {
    plan: Option<Rc<Plan>>,
    responses_counter: Option<u32>,
}

impl Context for SecurityHeadersRoot {}

impl RootContext for SecurityHeadersRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match config::validate(&raw) {
            Ok(config) => {
                self.plan = Some(Rc::new(Plan::new(&config)));
            }
            Err(error) => {
                log::error!("{error}");
                return false;
            }
        }
        // Defining an existing metric again returns its id, so a reconfigure
        // is harmless. A host without metrics leaves the counter off rather
        // than failing the config.
        for name in stats::COUNTERS {
            match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) if *name == stats::RESPONSES => self.responses_counter = Some(id),
                Ok(_) => {}
                Err(status) => {
                    log::warn!("security-headers: cannot define metric {name}: {status:?}")
                }
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let plan = Rc::clone(self.plan.as_ref()?);
        Some(Box::new(SecurityHeadersStream {
            plan,
            https: false,
            responses_counter: self.responses_counter,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP stream.
pub struct SecurityHeadersStream {
    plan: Rc<Plan>,
    https: bool,
    responses_counter: Option<u32>,
}

impl Context for SecurityHeadersStream {}

impl HttpContext for SecurityHeadersStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Only HSTS with https_only needs the scheme; skip both host calls
        // otherwise. Byte getters: the string ones trap on non-UTF-8 values.
        if self.plan.needs_scheme() {
            let scheme = self.get_http_request_header_bytes(":scheme");
            let forwarded_proto = self.get_http_request_header_bytes("x-forwarded-proto");
            self.https = harden::is_https(scheme.as_deref(), forwarded_proto.as_deref());
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(id) = self.responses_counter {
            let _ = hostcalls::increment_metric(id, 1);
        }
        // Speed: setting a dozen headers one host call at a time costs a
        // dozen boundary crossings (and Envoy header-map lookups) per
        // response, which alone would miss the budget of 1.5x native
        // header_mutation's added cost. Instead the whole map is read once
        // (proxy_get_header_map_pairs), merged in Wasm against the plan
        // precomputed in on_configure, and written back once
        // (proxy_set_header_map_pairs) only if something changed: at most
        // two host calls per response, whatever the number of headers.
        let headers = self.get_http_response_headers_bytes();
        if let Outcome::Changed(new_headers) = harden::harden(&self.plan, self.https, headers) {
            let pairs: Vec<(&str, &[u8])> = new_headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_slice()))
                .collect();
            self.set_http_response_headers_bytes(pairs);
        }
        Action::Continue
    }
}
