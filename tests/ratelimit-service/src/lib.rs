//! A small Envoy rate-limit service for the rate-limit filter's global mode:
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` over gRPC
//! (plain HTTP/2), with Kuadrant's Limitador engine doing the counting, the
//! windows and the storage (Redis, or memory for a single process).
//!
//! The service only translates the protocol: the request's domain is
//! Limitador's namespace and its descriptors are bound to `descriptors` in
//! Limitador's CEL context (one map per descriptor), as Limitador's own
//! server does, so a Limitador limits file works unchanged. README.md has
//! the CLI, the file format, the mapping and how to use envoyproxy/ratelimit
//! or a Limitador deployment instead.
//!
//! Modules: [`translate`] (pure request/response mapping), [`limits`] (the
//! limits file), [`service`] (the gRPC service over Limitador), [`cli`]
//! (argument parsing).

pub mod cli;
pub mod limits;
pub mod service;
pub mod translate;
