//! Runs the project's security-headers and metrics filters as one chain and
//! prints what a client and the upstream saw. `make build` first, then
//! `cargo run -p host-test --example chain`.
//!
//! The same API tests any proxy-wasm filter, whatever language built it:
//! point `FilterSpec::file` at its `.wasm`.

use std::time::Duration;

use host_test::{FilterSpec, Host, MockResponse, Request};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/filters");
    let mut host = Host::with_workers(2)?;
    host.add_filter(
        FilterSpec::file("security-headers", dist.join("security_headers.wasm"))
            .config(r#"{"profile":"owasp"}"#),
    )?;
    host.add_filter(
        FilterSpec::file("metrics", dist.join("metrics.wasm")).config(r#"{"prefix":"mesh"}"#),
    )?;
    host.set_upstream(
        MockResponse::with_status(200)
            .header("content-type", "text/html")
            .header("server", "nginx")
            .body("<p>hello</p>"),
    );

    let exchange = host.send(Request::get("/index.html").header("x-forwarded-proto", "https"));
    println!("status {}", exchange.status);
    for (name, value) in &exchange.headers {
        println!(
            "  {}: {}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(value)
        );
    }
    if let Some(upstream) = &exchange.upstream {
        println!("upstream saw {} headers", upstream.headers.len());
    }
    host.advance(Duration::from_secs(1));
    for metric in host.metrics() {
        println!(
            "metric {} = {} ({} samples)",
            metric.name,
            metric.value,
            metric.samples.len()
        );
    }
    Ok(())
}
