//! Developer automation for the workspace, run as `cargo run -p xtask -- <command>`.
//!
//! Commands live in their own modules; `main.rs` only parses arguments and turns
//! errors into one line on stderr and exit code 2.
#![forbid(unsafe_code)]

pub mod compat;
pub mod fetch;
pub mod manifests;
pub mod oci;
pub mod push;
