//! Command-line parsing, by hand: four flags do not justify an argument
//! parser crate in the build.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::service::Storage;

/// The usage text `--help` prints.
pub const USAGE: &str = "\
usage: ratelimit-service --listen ADDR --limits FILE [--redis URL | --memory]

  --listen ADDR   address to serve gRPC (plain HTTP/2) on, e.g. 127.0.0.1:8081;
                  port 0 picks a free port. The bound address is printed to
                  stdout as the single line `listening on ADDR`.
  --limits FILE   Limitador limits file (YAML list of limits)
  --redis URL     keep counters in Redis (redis://HOST:PORT[/DB]); every
                  service process on the same Redis shares them
  --memory        keep counters in this process (the default)
  --help          print this text

exit status: 0 after SIGTERM/SIGINT, 2 for bad arguments or limits file,
1 when the listener or Redis cannot be set up";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve.
    Run(Args),
    /// Print [`USAGE`] and exit 0.
    Help,
}

/// The service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `--listen`.
    pub listen: SocketAddr,
    /// `--limits`.
    pub limits: PathBuf,
    /// `--redis URL` or `--memory` (default).
    pub storage: Storage,
}

/// A command-line mistake; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// An argument that is not a known flag.
    #[error("unknown argument {0:?} (see --help)")]
    Unknown(String),
    /// A flag without its value.
    #[error("{0}: missing value")]
    MissingValue(&'static str),
    /// A flag given twice.
    #[error("{0}: given more than once")]
    Repeated(&'static str),
    /// A required flag is absent.
    #[error("{0} is required (see --help)")]
    Required(&'static str),
    /// `--listen` is not `IP:PORT`.
    #[error("--listen: {0:?} is not an IP:PORT address")]
    BadAddress(String),
    /// `--redis` is not a Redis URL.
    #[error(
        "--redis: {0:?} is not a redis://, redis+unix:// or unix:// URL (TLS is not built in)"
    )]
    BadRedisUrl(String),
    /// Both storages asked for.
    #[error("--redis and --memory exclude each other")]
    BothStorages,
    /// An argument that is not valid UTF-8.
    #[error("an argument is not valid UTF-8")]
    NotUtf8,
}

/// Parses the arguments after the program name. `--flag value` and
/// `--flag=value` are both accepted.
///
/// # Errors
///
/// The first [`UsageError`] found.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let mut listen = None;
    let mut limits = None;
    let mut redis = None;
    let mut memory = false;
    while let Some(arg) = args.next() {
        let arg = arg.into_string().map_err(|_| UsageError::NotUtf8)?;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &'static str| -> Result<String, UsageError> {
            match inline.clone() {
                Some(value) => Ok(value),
                None => args
                    .next()
                    .ok_or(UsageError::MissingValue(name))?
                    .into_string()
                    .map_err(|_| UsageError::NotUtf8),
            }
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--listen" => set(&mut listen, "--listen", value("--listen")?)?,
            "--limits" => set(&mut limits, "--limits", value("--limits")?)?,
            "--redis" => set(&mut redis, "--redis", value("--redis")?)?,
            "--memory" if inline.is_none() => {
                if memory {
                    return Err(UsageError::Repeated("--memory"));
                }
                memory = true;
            }
            _ => return Err(UsageError::Unknown(arg)),
        }
    }
    let listen = listen.ok_or(UsageError::Required("--listen"))?;
    let listen = listen
        .parse::<SocketAddr>()
        .map_err(|_| UsageError::BadAddress(listen))?;
    let limits = PathBuf::from(limits.ok_or(UsageError::Required("--limits"))?);
    let storage = match (redis, memory) {
        (Some(_), true) => return Err(UsageError::BothStorages),
        (Some(url), false) => {
            // No rediss://: the vendored limitador leaves the redis crate's
            // TLS out (third_party/limitador/PATCHED.md).
            let known = ["redis://", "redis+unix://", "unix://"];
            if !known.iter().any(|scheme| url.starts_with(scheme)) {
                return Err(UsageError::BadRedisUrl(url));
            }
            Storage::Redis(url)
        }
        (None, _) => Storage::Memory,
    };
    Ok(Command::Run(Args {
        listen,
        limits,
        storage,
    }))
}

fn set(slot: &mut Option<String>, name: &'static str, value: String) -> Result<(), UsageError> {
    if slot.replace(value).is_some() {
        return Err(UsageError::Repeated(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn run(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn redis_run_is_parsed() {
        assert_eq!(
            run(&[
                "--listen",
                "127.0.0.1:0",
                "--limits",
                "l.yaml",
                "--redis",
                "redis://127.0.0.1:7000"
            ]),
            Ok(Command::Run(Args {
                listen: "127.0.0.1:0".parse().unwrap(),
                limits: "l.yaml".into(),
                storage: Storage::Redis("redis://127.0.0.1:7000".into()),
            }))
        );
    }

    #[test]
    fn equals_form_and_memory_default() {
        let Ok(Command::Run(args)) = run(&["--listen=[::1]:8081", "--limits=l.yaml"]) else {
            panic!("not parsed");
        };
        assert_eq!(args.storage, Storage::Memory);
        assert_eq!(args.listen.port(), 8081);
        assert_eq!(
            run(&["--listen=127.0.0.1:1", "--limits=l", "--memory"]).map(|_| ()),
            Ok(())
        );
    }

    #[test]
    fn help_wins() {
        assert_eq!(run(&["--listen", "x", "--help"]), Ok(Command::Help));
    }

    #[test]
    fn mistakes_name_the_flag() {
        assert_eq!(
            run(&["--limits", "l"]),
            Err(UsageError::Required("--listen"))
        );
        assert_eq!(
            run(&["--listen", "127.0.0.1:1"]),
            Err(UsageError::Required("--limits"))
        );
        assert_eq!(
            run(&["--listen"]),
            Err(UsageError::MissingValue("--listen"))
        );
        assert_eq!(
            run(&["--listen", "localhost:80", "--limits", "l"]),
            Err(UsageError::BadAddress("localhost:80".into()))
        );
        assert_eq!(
            run(&[
                "--listen",
                "127.0.0.1:1",
                "--limits",
                "l",
                "--redis",
                "127.0.0.1:6"
            ]),
            Err(UsageError::BadRedisUrl("127.0.0.1:6".into()))
        );
        assert_eq!(
            run(&[
                "--listen",
                "127.0.0.1:1",
                "--limits",
                "l",
                "--redis",
                "redis://h",
                "--memory"
            ]),
            Err(UsageError::BothStorages)
        );
        assert_eq!(
            run(&["--limits", "a", "--limits", "b"]),
            Err(UsageError::Repeated("--limits"))
        );
        assert_eq!(
            run(&["--verbose"]),
            Err(UsageError::Unknown("--verbose".into()))
        );
        assert_eq!(
            run(&["--memory=yes"]),
            Err(UsageError::Unknown("--memory=yes".into()))
        );
    }
}
