//! The Wasm entry point every filter declares the same way.

/// Declares a filter's Wasm entry point (`_initialize`): the SDK log level
/// (Info), this crate's panic hook (after the SDK's own, which
/// `set_log_level` installs on first use), and the root context, built by
/// `$make(context_id)`.
///
/// Expands to a private, Wasm-only module, so native builds (tests, benches)
/// get no stray exported functions.
///
/// ```ignore
/// filter_common::filter_entry!("rate-limit", |_| crate::filter::RateLimitRoot::default());
/// ```
#[macro_export]
macro_rules! filter_entry {
    ($name:literal, $make:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(missing_docs)] // the SDK macro's exported function carries no doc
        mod entry {
            proxy_wasm::main! {{
                proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
                $crate::panic_hook::install($name);
                proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
                    Box::new(($make)(context_id))
                });
            }}
        }
    };
}
