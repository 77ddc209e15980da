//! What every filter in this workspace shares, and nothing filter-specific:
//! lenient header decoding, header name/value validation, cookie and query
//! lookup, protobuf-JSON durations, and the panic hook that logs before a VM
//! traps.
#![forbid(unsafe_code)]

pub mod configure;
pub mod cookie;
pub mod duration;
pub mod entry;
pub mod header;
pub mod panic_hook;
pub mod query;
pub mod stream;
pub mod xff;

pub use duration::{parse_duration, DurationError};
pub use header::{decode_lossy, validate_header_name, validate_header_value, HeaderError};
