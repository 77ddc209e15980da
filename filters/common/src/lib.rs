//! What every filter in this workspace shares, and nothing filter-specific:
//! lenient header decoding, header name/value validation, cookie and query
//! lookup, protobuf-JSON durations, the panic hook that logs before a VM
//! traps, and a whole-header-map reader that cannot trap.
// `deny`, not `forbid`: `header_map::abi` (wasm32 only) must take over the
// buffer the host allocates for a whole header map, which needs `unsafe`;
// it alone is allowed, with a SAFETY note per block. The SDK's safe wrapper
// for the same call panics on a header name that is not UTF-8.
#![deny(unsafe_code)]

pub mod configure;
pub mod cookie;
pub mod duration;
pub mod entry;
pub mod header;
pub mod header_map;
pub mod panic_hook;
pub mod query;
pub mod stream;
pub mod xff;

pub use duration::{parse_duration, DurationError};
pub use header::{decode_lossy, validate_header_name, validate_header_value, HeaderError};
