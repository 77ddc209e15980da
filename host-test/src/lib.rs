//! host-test: a wasmtime-based proxy-wasm host that runs HTTP filters
//! offline, deterministically, the way Envoy runs them.
//!
//! A [`Host`] loads filters into a chain (one VM per filter per simulated
//! worker), sends [`Request`]s through it, and reports each [`Exchange`]: the
//! response the client got, what the upstream received, local replies,
//! failures. Time is virtual: callouts, ticks and `exp` checks follow
//! [`Host::advance`], not the wall clock. Scenario files ([`scenario`]) drive
//! the same host from YAML, and the `host-test` CLI runs them.
//!
//! ```no_run
//! use host_test::{FilterSpec, Host, Request};
//!
//! let mut host = Host::new()?;
//! host.add_filter(FilterSpec::file("sec", "dist/filters/security_headers.wasm").config("{}"))?;
//! let exchange = host.send(Request::get("/").header(":scheme", "https"));
//! assert_eq!(exchange.header("x-frame-options").as_deref(), Some("DENY"));
//! # Ok::<(), host_test::HostError>(())
//! ```

pub mod abi;
pub mod error;
pub mod expect;
pub mod host;
pub mod metrics;
pub mod prometheus;
pub mod properties;
pub mod report;
pub mod request;
pub mod runtime;
pub mod scenario;
pub mod shared;
pub mod vm;
pub mod yaml_types;

pub use abi::types::LogLevel;
pub use error::{CallbackFailure, FailureKind, HostError};
pub use host::{FailurePolicy, FilterSpec, Host, Route, WasmSource};
pub use request::{Exchange, LocalReplyInfo, Request, UpstreamRequest};
pub use runtime::Runtime;
pub use shared::{ClusterMock, MockResponse, SharedDataHook, SharedRead};
pub use vm::VmLimits;
