//! `ratelimit-service`: parses the command line, loads the limits, binds,
//! prints `listening on ADDR` and serves until SIGTERM or SIGINT.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ratelimit_service::cli::{self, Command, USAGE};
use ratelimit_service::limits::Limits;
use ratelimit_service::service::{RateLimitService, Storage};
use tokio::sync::Notify;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

/// How long open connections get to finish after SIGTERM/SIGINT; Envoy
/// keeps its HTTP/2 connection open, so the wait must be bounded.
const GRACE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    // One line per panic, no backtrace: a panic is a bug, logged like any
    // other error (the request that hit it gets INTERNAL).
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "ratelimit-service: internal error: {}",
            info.to_string().replace('\n', " ")
        );
    }));
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => return fail(&err, 2),
    };
    let limits = match Limits::load(&args.limits) {
        Ok(limits) => limits,
        Err(err) => return fail(&err, 2),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the runtime: {err}"), 1),
    };
    runtime.block_on(serve(args, limits))
}

async fn serve(args: cli::Args, limits: Limits) -> ExitCode {
    // Handlers first: a launcher may signal as soon as it reads the
    // `listening on` line, and an unhandled SIGTERM would kill the process
    // with a signal status instead of a clean exit.
    let shutdown = shutdown_signal();
    let namespaces = limits.namespaces().collect::<Vec<_>>().join(", ");
    let count = limits.limits().len();
    let service = match RateLimitService::new(limits, &args.storage).await {
        Ok(service) => service,
        Err(err) => return fail(&err, 1),
    };
    let incoming = match TcpIncoming::bind(args.listen) {
        Ok(incoming) => incoming.with_nodelay(Some(true)),
        Err(err) => return fail(&format!("--listen {}: {err}", args.listen), 1),
    };
    let address = match incoming.local_addr() {
        Ok(address) => address,
        Err(err) => return fail(&format!("--listen {}: {err}", args.listen), 1),
    };
    // The one stdout line, flushed at once: tests and scripts read the port
    // from it when they pass port 0. A closed stdout is the launcher's
    // business: keep serving.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {address}").and_then(|()| stdout.flush());
    drop(stdout);
    let storage = match &args.storage {
        Storage::Memory => "memory (this process only)".to_owned(),
        Storage::Redis(url) => format!("redis {url}"),
    };
    eprintln!(
        "ratelimit-service: {count} limits, namespaces [{namespaces}], counters in {storage}"
    );

    let stop = Arc::new(Notify::new());
    let stopped = Arc::clone(&stop);
    let server = Server::builder().serve_with_incoming_shutdown(service, incoming, async move {
        stopped.notified().await;
    });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return finished(result),
        () = shutdown => {}
    }
    eprintln!("ratelimit-service: stopping");
    stop.notify_one();
    match tokio::time::timeout(GRACE, server).await {
        Ok(result) => finished(result),
        // Connections still open after the grace period are dropped with
        // the runtime.
        Err(_) => ExitCode::SUCCESS,
    }
}

fn finished(result: Result<(), tonic::transport::Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&format!("server: {err}"), 1),
    }
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that
/// resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    wait_for(term, int)
}

async fn wait_for(
    mut term: Option<tokio::signal::unix::Signal>,
    mut int: Option<tokio::signal::unix::Signal>,
) {
    tokio::select! {
        Some(_) = async { term.as_mut()?.recv().await } => {}
        Some(_) = async { int.as_mut()?.recv().await } => {}
        else => std::future::pending::<()>().await,
    }
}

fn fail(err: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("ratelimit-service: {err}");
    ExitCode::from(code)
}
