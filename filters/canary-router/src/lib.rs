//! canary-router: decides a version for every request and writes it into a
//! route header (default `x-canary-version`) that the route table matches
//! (VirtualService `headers` match → DestinationRule subset). Unlike route
//! weights, the choice is sticky: the same user gets the same version in
//! every sidecar, across restarts, and raising the canary weight only moves
//! users onto the canary.
//!
//! Config ([`config::RawConfig`], reference in the crate README): `rules`
//! (ordered header/cookie/query matches with `exact`, `prefix`, `regex`,
//! `present`, first match wins), `split` (integer weights, stable first),
//! `hash_on` (key sources, first present wins), `sticky_cookie` (keeps a
//! random choice for key-less clients), `route_header`, `response_header`
//! (echo the version) and `clear_route_cache`. A client-sent route header is
//! always removed before deciding.
//!
//! Counters ([`stats`]): `canary_router.requests_<version>` and
//! `canary_router.rule_matches`.
//!
//! Layout: [`config`] validates and precompiles, [`matcher`] tests request
//! fields, [`split`] is the documented seedless hash and the cumulative
//! ranges, [`router`] is the pure decision, and `filter` is the proxy-wasm
//! glue.
#![forbid(unsafe_code)]

pub mod config;
pub mod matcher;
pub mod router;
pub mod split;
pub mod stats;

#[cfg(target_arch = "wasm32")]
pub mod filter;

#[cfg(feature = "entry")]
filter_common::filter_entry!("canary-router", |_| crate::filter::CanaryRoot::default());
