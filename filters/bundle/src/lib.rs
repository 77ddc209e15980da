//! bundle: the five filters as stages of one proxy-wasm module, run in one
//! VM with one HTTP context per request, in chain order security_headers →
//! jwt_auth → rate_limit → canary_router → metrics (responses in reverse;
//! the shipped WasmPlugins' order, so later stages' local replies are
//! hardened), behaving exactly as the five separate filters chained in that
//! order. Why: Envoy pays a fixed cost per Wasm filter per request (entering
//! V8, creating the context, every callback; ~1.4 µs and up); five filters
//! pay it five times, the bundle once.
//!
//! Config ([`config`]): `{"jwt_auth": {...}, "rate_limit": {...},
//! "canary_router": {...}, "security_headers": {...}, "metrics": {...}}`.
//! A section left out is a stage that does not exist; each present section
//! is validated by that filter's own `config::validate` and an error is
//! reported behind the section name (`bundle: rate_limit: rate-limit:
//! rules[0]...`); an unknown key is refused by name. Any error makes
//! `on_configure` return false, so Envoy rejects the plugin.
//!
//! How the stages run (`filter`), each rule chosen to match what Envoy (and
//! host-test, which reproduces it) does with separate filters:
//! - Each filter crate's `filter` module is public and its root has a
//!   `configure(Config)`; the bundle builds each present stage's root and
//!   HTTP context from them. The filter crates are dependencies without
//!   their `entry` feature, so their own Wasm entry points are not linked.
//! - A callback runs on the stages in path order and stops at the first
//!   stage that returns `Pause`; the bundle then returns `Pause`. A stage
//!   that sends a local reply returns `Pause` too (every filter here does),
//!   so the request path stops at it, as a host stops at a replying filter.
//!   The host then runs the bundle's response callbacks, which run the
//!   replying stage and the stages before it, in reverse order; the stages
//!   after it never see the response, as Envoy 1.40 does with separate
//!   filters (measured by `e2e::differential`; host-test reproduces it).
//!   The replying stage is taken to be the one that stopped the request
//!   path; every stage here replies only from a callback of its own stream,
//!   or (jwt-auth) for a stream it paused itself.
//! - A stage that paused later resumes through
//!   `filter_common::stream::resume_request`, which in this module only
//!   records the wish. The bundle then runs the rest of the paused callback
//!   on the stages after the paused one, and resumes the stream at the host
//!   only if none of them paused or replied. jwt-auth does this from a root
//!   callback (JWKS arrived); the paused streams are kept in a small map
//!   (`Parked`) so a root callback can find their stages.
//! - HTTP callouts go through `filter_common::stream::dispatch_http_call`,
//!   which records the token; the SDK delivers the answer to the bundle
//!   context that was active (root or stream), and the bundle hands it to
//!   the stage that dispatched it. Ticks go to every stage root (only
//!   jwt-auth sets a tick period; one period serves the VM, so two stages
//!   with different periods would need a scheduler here). No stage uses
//!   queues, gRPC calls or `on_vm_start`, so the bundle does not route them.
//! - `on_log` and `on_done` run on every stage in chain order. Metric names
//!   and shared-data keys are each filter's own, so counters and caches are
//!   the same as with separate filters (they share the VM-wide host state
//!   as before).
//!
//! Differences that remain, by construction: a local reply is attributed
//! to the plugin "bundle", not to the stage; one VM failure (a trap) takes
//! every stage down at once under one failure policy; canary-router's
//! random choice for key-less clients draws from a VM-wide random stream,
//! so with jwt-auth in the same VM the sequence differs from a separate
//! canary-router VM (the distribution does not); and stages see the
//! `num_headers` count the host gave the bundle (no stage reads it).
//!
//! Build: `cargo build --release --target wasm32-wasip1 -p bundle` in an
//! invocation of its own (cargo unifies features per invocation; built
//! together with the filters, their `entry` feature would be on and the
//! entry points would collide).
#![forbid(unsafe_code)]

// The walk is used by the Wasm glue and tested natively.
#[cfg(any(target_arch = "wasm32", test))]
mod chain;
pub mod config;

#[cfg(target_arch = "wasm32")]
pub mod filter;

filter_common::filter_entry!("bundle", crate::filter::BundleRoot::new);
