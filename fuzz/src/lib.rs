//! What the fuzz targets share: fixed configs and keys ([`fixtures`]), a
//! readable text form of requests for the native-core targets ([`text`]),
//! HS256 minting with fuzzed claims ([`mint`]), native stand-ins for host
//! calls ([`fakes`]), and the host-test chains of the `filters` target
//! ([`chains`]).
//!
//! A fuzz target signals a finding by panicking; each target's top comment
//! says which outcomes it treats as findings besides a panic in the code
//! under test (an invariant that must hold for every input).

pub mod chains;
pub mod fakes;
pub mod fixtures;
pub mod mint;
pub mod text;
