//! The `on_configure` every filter has: read the plugin configuration,
//! validate it into the filter's typed config, apply it, or log the error
//! (which names the field) and refuse, so Envoy rejects the plugin.

use std::fmt::Display;

use proxy_wasm::hostcalls;
use proxy_wasm::types::BufferType;

/// Reads the plugin configuration (empty when there is none), runs
/// `validate` on it and hands the result to `apply`. Returns what
/// `on_configure` must return: `true` when applied, `false` (after logging
/// the error at error level) when `validate` refused it.
pub fn from_plugin_configuration<C, E: Display>(
    validate: impl FnOnce(&[u8]) -> Result<C, E>,
    apply: impl FnOnce(C),
) -> bool {
    let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default();
    match validate(&raw) {
        Ok(config) => {
            apply(config);
            true
        }
        Err(error) => {
            log::error!("{error}");
            false
        }
    }
}
