//! jwt-auth: Envoy jwt_authn-compatible JWT validation as a proxy-wasm
//! filter. Takes jwt_authn's `JwtAuthentication` config (JSON mapping; the
//! supported subset is in the crate README), extracts tokens from headers,
//! query parameters or cookies, verifies RS/PS/ES/HS/EdDSA signatures
//! against local or remote JWKS, checks issuer, audiences, time and
//! lifetime, and answers failures with jwt_authn's status, body and
//! `WWW-Authenticate`. Extensions: `claim_rules` (403 unless claims match)
//! and `max_jwt_bytes`. Remote JWKS are fetched at start (requests wait),
//! refreshed after `cache_duration`, re-fetched on an unknown `kid` (at most
//! every 30 s), and the last good set is kept when a fetch fails.
//! Verified tokens are cached across worker VMs in shared data.
//!
//! Counters: see [`stats`].
//!
//! Layout (jwt_authn's split): [`config`] validates, [`extract`] finds
//! tokens, [`jwt`] parses them, [`jwks`] parses key sets once, [`crypto`]
//! verifies signatures ([`rsa_verify`] on [`montgomery`] for RS*/PS*,
//! [`ecdsa`] for ES256/ES384/ES512; `live` shares prepared keys across JWKS
//! refreshes), [`auth`] is the pure decision, [`claims`] renders
//! and checks claims, [`cache`] is the shared-data cache scheme,
//! [`status`] holds jwt_verify_lib's messages, and `filter` is the
//! proxy-wasm glue.
// One module may use `unsafe`: montgomery::lanes, for the Wasm SIMD loads
// and stores that core::arch only offers as unsafe functions (see there).
#![deny(unsafe_code)]

pub mod auth;
pub mod cache;
pub mod claims;
pub mod config;
pub mod crypto;
pub mod ecdsa;
pub mod extract;
pub mod jwks;
pub mod jwt;
mod live;
pub mod matcher;
pub mod montgomery;
pub mod rsa_verify;
pub mod stats;
pub mod status;

#[cfg(target_arch = "wasm32")]
pub mod filter;

#[cfg(feature = "entry")]
filter_common::filter_entry!("jwt-auth", crate::filter::JwtAuthRoot::new);
