//! What host-test itself costs: one request lifecycle through the `noop`
//! fixture (the headline figure), the per-filter cost of a 5-filter chain,
//! starting a filter from an already compiled module, and a cold compile.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Duration;

use benches::{or_exit, wasm, Case};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use host_test::{FilterSpec, Host, Request, Runtime};

/// (a) One full lifecycle of a headers-only GET through `noop`: context
/// create, request and response callbacks, `on_log`, `on_done`, `on_delete`.
fn lifecycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("host_lifecycle");
    group.measurement_time(Duration::from_secs(5));

    let mut host = Case::Noop.host();
    group.bench_function("noop_request", |b| {
        b.iter(|| black_box(host.send(Request::get("/"))));
    });

    // (b) The same request through five chained noop filters: the slope over
    // (a) is the fixed cost each extra filter adds to a stream.
    let mut chained = Case::Noop.host_with(1, 5, &wasm(Case::Noop.dist_file()));
    group.bench_function("noop_request_chain_of_5", |b| {
        b.iter(|| black_box(chained.send(Request::get("/"))));
    });
    group.finish();
}

/// (c) `Host::new` + `add_filter(noop)` with the module compiled already
/// (the process-wide runtime caches it): VM instantiation, `_initialize`,
/// `on_vm_start`, `on_configure`.
fn instantiate(c: &mut Criterion) {
    let path = wasm(Case::Noop.dist_file());
    // Compile once so every measured iteration hits the in-process cache.
    drop(Case::Noop.host());
    let mut group = c.benchmark_group("host_instantiate");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("noop_warm_module", |b| {
        b.iter(|| {
            let mut host = or_exit(Host::new(), "creating the host");
            or_exit(
                host.add_filter(FilterSpec::file("noop", &path)),
                "loading noop",
            );
            black_box(host)
        });
    });
    group.finish();
}

/// (d) Compiling the conformance module with nothing cached: a fresh
/// `Runtime` whose disk cache (`HOST_TEST_CACHE_DIR`) is a new, empty
/// directory for every iteration. Slow, so few flat samples.
fn cold_compile(c: &mut Criterion) {
    let bytes = or_exit(
        std::fs::read(wasm("fixtures/conformance.wasm")),
        "reading conformance.wasm",
    );
    let root = std::env::temp_dir().join(format!("host-test-bench-cold-{}", std::process::id()));
    let mut iteration = 0u64;
    let mut group = c.benchmark_group("host_compile");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("conformance_cold", |b| {
        b.iter_batched(
            || {
                iteration += 1;
                let dir = root.join(iteration.to_string());
                or_exit(std::fs::create_dir_all(&dir), "creating the cache dir");
                // Runtime::new reads the variable; the bench is single-threaded
                // here, so nothing else reads the environment meanwhile.
                std::env::set_var("HOST_TEST_CACHE_DIR", &dir);
                or_exit(Runtime::new(), "creating a runtime")
            },
            |runtime| black_box(or_exit(runtime.prepare("conformance", &bytes), "compiling")),
            BatchSize::PerIteration,
        );
    });
    group.finish();
    std::env::remove_var("HOST_TEST_CACHE_DIR");
    // Best effort: a leftover temp dir only costs disk space.
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group!(benches, lifecycle, instantiate, cold_compile);
criterion_main!(benches);
