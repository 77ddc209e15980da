//! host-test's scenario loader (`host_test::scenario::load`) over YAML
//! text, and its duration syntax (`advance: 61s`). The loader reads a path,
//! so each input is written to one scratch file per process first. Loading
//! does not open the `.wasm` files or a `stats_config` file it names, so
//! no input reaches the file system beyond that scratch file; an inline
//! `stats_config` is also compiled and rendered.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use host_test::scenario::StatsConfigSource;
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!(
            "host-test-scenario-fuzz-{}.yaml",
            std::process::id()
        ))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("scratch file is writable");
    if let Ok(scenario) = host_test::scenario::load(path) {
        // Only an inline stats config: a file one would open any path.
        if matches!(scenario.stats_config, Some(StatsConfigSource::Inline(_))) {
            if let Ok(stats) = host_test::scenario::stats_config(path, &scenario) {
                let _ = host_test::prometheus::render(&[], &stats);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for word in text.split_whitespace().take(64) {
            let _ = host_test::yaml_types::parse_duration(word);
        }
    }
});
