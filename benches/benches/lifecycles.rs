//! `lifecycles CASE N [WASM]`: sets up one bench case (`noop`,
//! `security_headers`, `metrics`) and sends N requests through it, for
//! instruction counts under `valgrind --tool=callgrind`, which are far
//! steadier than wall-clock time on a shared 2-core machine. Build it with
//! `cargo bench -p benches --bench lifecycles --no-run` and run the printed
//! executable directly.
//!
//! The measured loop is the one function [`send_all`], so
//! `--collect-atstart=no --toggle-collect='lifecycles::send_all'` counts
//! only the requests, not compiling the module or starting the VM; divide by
//! N. `WASM` overrides the module path, to compare two builds of a filter.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::path::PathBuf;

use benches::{fail, wasm, Case};
use host_test::{Host, Request};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: lifecycles noop|security_headers|metrics N [WASM]";
    let (Some(case), Some(count)) = (args.first(), args.get(1)) else {
        fail(usage)
    };
    let Some(case) = Case::from_name(case) else {
        fail(usage)
    };
    let Ok(count) = count.parse::<u64>() else {
        fail(usage)
    };
    let path = args
        .get(2)
        .map_or_else(|| wasm(case.dist_file()), PathBuf::from);
    let mut host = case.host_with(1, 1, &path);
    let requests: Vec<Request> = (0..count).map(|_| case.request()).collect();
    let ok = send_all(&mut host, requests);
    println!("{} x{count}: {ok} answered 200", case.name());
}

/// Sends every request; returns how many were answered 200. Never inlined,
/// so callgrind can toggle collection on it by name.
#[inline(never)]
fn send_all(host: &mut Host, requests: Vec<Request>) -> u64 {
    let mut ok = 0u64;
    for request in requests {
        let exchange = host.send(black_box(request));
        ok += u64::from(exchange.status == 200);
    }
    ok
}
