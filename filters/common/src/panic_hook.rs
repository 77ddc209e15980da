//! A panic hook that logs the panic at `critical` before the VM traps.
//!
//! Filters must not panic on request data (the crates deny `unwrap`, `expect`,
//! `panic` and indexing). If one still does, Envoy (and host-test) report a bare
//! trap; this hook puts the reason in the proxy log first.

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

/// Installs the hook. Call once from the filter's `proxy_wasm::main!` block,
/// after `proxy_wasm::set_log_level` (which installs the SDK's own hook).
pub fn install(filter_name: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let message = format!("{filter_name}: panic: {info}");
        // Nothing more can be done if logging itself fails while panicking.
        let _ = hostcalls::log(LogLevel::Critical, &message);
    }));
}
