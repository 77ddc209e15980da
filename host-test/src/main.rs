//! `host-test`: runs proxy-wasm filters offline from scenario files.
//!
//! Exit codes: 0 when every expectation holds, 1 when one fails, 2 for input
//! that cannot be used (a missing file, bad YAML, a bad stats config).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use host_test::{report, scenario};

#[derive(Parser)]
#[command(
    name = "host-test",
    version,
    about = "Run proxy-wasm filters offline, the way Envoy runs them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files and report each expectation that fails.
    Run {
        /// Scenario YAML files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// List every step, not only failures.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Run a scenario and print the Prometheus exposition its metrics make.
    Metrics {
        /// The scenario file.
        file: PathBuf,
        /// YAML with Envoy's `stats_config` (tag regexes, buckets); overrides
        /// the scenario's own.
        #[arg(long)]
        stats_config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            files,
            json,
            verbose,
        } => run(&files, json, verbose),
        Command::Metrics { file, stats_config } => metrics(&file, stats_config),
    }
}

fn run(files: &[PathBuf], json: bool, verbose: bool) -> ExitCode {
    let mut outcomes = Vec::new();
    for file in files {
        match scenario::run_file(file) {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                eprintln!("host-test: {error}");
                return ExitCode::from(2);
            }
        }
    }
    if json {
        match report::json(&outcomes) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("host-test: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report::human(&outcomes, verbose));
    }
    if outcomes.iter().all(scenario::ScenarioOutcome::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn metrics(file: &std::path::Path, stats_config: Option<PathBuf>) -> ExitCode {
    let outcome = match scenario::run_file(file) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("host-test: {error}");
            return ExitCode::from(2);
        }
    };
    let text = match stats_config {
        None => outcome.prometheus.clone(),
        Some(path) => {
            // Re-run with the given config: the exposition depends on it.
            let config = match scenario::read_stats_config(&path) {
                Ok(config) => config,
                Err(message) => {
                    eprintln!("host-test: --stats-config: {message}");
                    return ExitCode::from(2);
                }
            };
            match scenario::metrics_with(file, &config) {
                Ok(text) => text,
                Err(error) => {
                    eprintln!("host-test: {error}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    print!("{text}");
    if !outcome.passed() {
        eprintln!(
            "host-test: {file:?}: some expectations failed; run `host-test run` for details",
            file = outcome.file
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
