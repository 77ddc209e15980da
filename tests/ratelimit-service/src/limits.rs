//! The limits file: Limitador's own format (a YAML list of
//! `limitador::limit::Limit`), so a file written for a Limitador deployment
//! loads here unchanged, and the conditions this service evaluates before
//! Limitador does (see [`Limits::check_conditions`]).

use std::collections::BTreeSet;
use std::path::Path;

use limitador::limit::{Context, Expression, Limit, Predicate};

/// Why a limits file was refused. Messages name the file and the limit.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The file could not be read.
    #[error("limits file {path}: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is not a list of Limitador limits (this includes a condition
    /// or variable that is not valid CEL: Limitador parses them while
    /// deserializing).
    #[error("limits file {path}: {message}")]
    Parse {
        /// The path as given.
        path: String,
        /// serde_yaml_ng's message, on one line.
        message: String,
    },
    /// The file holds no limits: every domain would be unknown.
    #[error("limits file {path}: no limits (expected a YAML list of limits)")]
    Empty {
        /// The path as given.
        path: String,
    },
    /// A limit has `seconds: 0`, a window Limitador's storages cannot expire.
    #[error("limits file {path}: limit #{index} (namespace {namespace:?}): seconds must be > 0")]
    ZeroWindow {
        /// The path as given.
        path: String,
        /// Position of the limit in the file, from 0.
        index: usize,
        /// The limit's namespace.
        namespace: String,
    },
}

/// One condition of a loaded limit, kept parsed so each request can be
/// checked against it without re-parsing.
#[derive(Debug, Clone)]
struct Guard {
    namespace: String,
    limit: String,
    source: String,
    predicate: Predicate,
}

/// The loaded limits and what the service derives from them once.
#[derive(Debug, Clone)]
pub struct Limits {
    limits: Vec<Limit>,
    namespaces: BTreeSet<String>,
    guards: Vec<Guard>,
}

impl Limits {
    /// Reads and parses a limits file.
    ///
    /// # Errors
    ///
    /// [`LimitsError`] naming the file, and the limit where one is at fault.
    pub fn load(path: &Path) -> Result<Self, LimitsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LimitsError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&shown, &text)
    }

    /// Parses the text of a limits file; `path` only names it in errors.
    ///
    /// # Errors
    ///
    /// [`LimitsError::Parse`], [`LimitsError::Empty`] or
    /// [`LimitsError::ZeroWindow`].
    pub fn parse(path: &str, text: &str) -> Result<Self, LimitsError> {
        let limits: Vec<Limit> =
            serde_yaml_ng::from_str(text).map_err(|err| LimitsError::Parse {
                path: path.to_owned(),
                message: clip(&err.to_string().replace('\n', " ")),
            })?;
        if limits.is_empty() {
            return Err(LimitsError::Empty {
                path: path.to_owned(),
            });
        }
        let mut guards = Vec::new();
        for (index, limit) in limits.iter().enumerate() {
            let namespace = limit.namespace().as_ref().to_owned();
            if limit.seconds() == 0 {
                return Err(LimitsError::ZeroWindow {
                    path: path.to_owned(),
                    index,
                    namespace,
                });
            }
            let label = limit
                .name()
                .map_or_else(|| format!("#{index}"), |name| format!("{name:?}"));
            // Sorted so the first failing condition reported is stable.
            let mut sources: Vec<String> = limit.conditions().into_iter().collect();
            sources.sort();
            for source in sources {
                // A condition on `limit.name`/`limit.id` needs the binding
                // Limitador adds itself; it cannot fail on request data.
                let uses_limit = Expression::parse(&source)
                    .map(|e| e.variables().iter().any(|v| v == "limit"))
                    .unwrap_or(true);
                if uses_limit {
                    continue;
                }
                // Already parsed once by Limitador's deserializer, so this
                // does not fail; a failure would only skip the pre-check.
                if let Ok(predicate) = Predicate::parse(&source) {
                    guards.push(Guard {
                        namespace: namespace.clone(),
                        limit: label.clone(),
                        source,
                        predicate,
                    });
                }
            }
        }
        let namespaces = limits
            .iter()
            .map(|limit| limit.namespace().as_ref().to_owned())
            .collect();
        Ok(Self {
            limits,
            namespaces,
            guards,
        })
    }

    /// The limits, for `AsyncRateLimiter::add_limit`/`RateLimiter::add_limit`.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The namespaces that have limits (the domains the service knows).
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(String::as_str)
    }

    /// Evaluates every condition of `namespace`'s limits against `ctx` and
    /// reports the first that cannot be evaluated (for example
    /// `descriptors[1].path == "/x"` on a request with one descriptor, an
    /// index out of bounds).
    ///
    /// Why: Limitador 0.14 unwraps a condition's evaluation result
    /// (`Limit::applies`), so such a request would panic inside it. Checked
    /// here first, it becomes an `INVALID_ARGUMENT` naming the condition. A
    /// condition that merely does not hold, or reads a key the descriptor
    /// does not have, is fine: Limitador treats both as "does not apply".
    ///
    /// # Errors
    ///
    /// A one-line message naming the limit and the condition.
    pub fn check_conditions(&self, namespace: &str, ctx: &Context) -> Result<(), String> {
        for guard in self.guards.iter().filter(|g| g.namespace == namespace) {
            if let Err(err) = guard.predicate.test(ctx) {
                return Err(format!(
                    "limit {} condition {:?} cannot be evaluated for this request: {err}",
                    guard.limit, guard.source
                ));
            }
        }
        Ok(())
    }
}

/// serde's messages quote the offending value, which for a file that is
/// not YAML at all is the whole file: keep the error to one short line.
fn clip(message: &str) -> String {
    const MAX: usize = 200;
    match message.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", message.get(..cut).unwrap_or(message)),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use std::collections::HashMap;

    const MESH: &str = include_str!("../limits/mesh.yaml");

    fn ctx(descriptors: &[&[(&str, &str)]]) -> Context<'static> {
        let mut ctx = Context::default();
        ctx.list_binding(
            "descriptors".into(),
            descriptors
                .iter()
                .map(|d| {
                    d.iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect::<HashMap<_, _>>()
                })
                .collect(),
        );
        ctx
    }

    #[test]
    fn sample_mesh_file_loads() {
        let limits = Limits::parse("mesh.yaml", MESH).unwrap();
        assert_eq!(limits.namespaces().collect::<Vec<_>>(), ["mesh"]);
        assert_eq!(limits.limits().len(), 2);
        let mut windows: Vec<_> = limits
            .limits()
            .iter()
            .map(|l| (l.max_value(), l.seconds()))
            .collect();
        windows.sort_unstable();
        assert_eq!(windows, [(5, 60), (10, 60)]);
    }

    #[test]
    fn missing_file_is_a_read_error_naming_it() {
        let err = Limits::load(Path::new("/nonexistent/limits.yaml")).unwrap_err();
        assert!(matches!(err, LimitsError::Read { .. }));
        assert!(err
            .to_string()
            .starts_with("limits file /nonexistent/limits.yaml: "));
    }

    #[test]
    fn invalid_cel_is_refused_on_one_line() {
        let text = "- namespace: a\n  max_value: 1\n  seconds: 1\n  conditions: [\"descriptors[0].x ==\"]\n  variables: []\n";
        let err = Limits::parse("f.yaml", text).unwrap_err();
        assert!(matches!(err, LimitsError::Parse { .. }), "{err}");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn not_a_list_is_refused() {
        let err = Limits::parse("f.yaml", "namespace: a\n").unwrap_err();
        assert!(matches!(err, LimitsError::Parse { .. }));
    }

    #[test]
    fn long_parse_errors_are_clipped() {
        let text = format!("just text {}", "x".repeat(1_000));
        let err = Limits::parse("f.yaml", &text).unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
        assert!(err.ends_with("..."), "{err}");
    }

    #[test]
    fn empty_list_is_refused() {
        assert!(matches!(
            Limits::parse("f.yaml", "[]").unwrap_err(),
            LimitsError::Empty { .. }
        ));
    }

    #[test]
    fn zero_window_is_refused() {
        let text = "- {namespace: a, max_value: 1, seconds: 0, conditions: [], variables: []}";
        assert!(matches!(
            Limits::parse("f.yaml", text).unwrap_err(),
            LimitsError::ZeroWindow { index: 0, .. }
        ));
    }

    #[test]
    fn condition_past_the_last_descriptor_is_reported_not_panicked() {
        let text = "- {namespace: a, max_value: 1, seconds: 1, name: second, conditions: [\"descriptors[1].x == '1'\"], variables: []}";
        let limits = Limits::parse("f.yaml", text).unwrap();
        let err = limits
            .check_conditions("a", &ctx(&[&[("x", "1")]]))
            .unwrap_err();
        assert!(err.contains("\"second\""), "{err}");
        assert!(err.contains("descriptors[1].x"), "{err}");
        assert_eq!(
            limits.check_conditions("a", &ctx(&[&[("x", "1")], &[("x", "1")]])),
            Ok(())
        );
    }

    #[test]
    fn condition_on_a_missing_key_is_not_an_error() {
        let limits = Limits::parse("mesh.yaml", MESH).unwrap();
        assert_eq!(
            limits.check_conditions("mesh", &ctx(&[&[("user", "ann")]])),
            Ok(())
        );
    }

    #[test]
    fn conditions_on_the_limit_binding_are_not_prechecked() {
        let text = "- {namespace: a, max_value: 1, seconds: 1, name: n, conditions: [\"limit.name == 'n'\"], variables: []}";
        let limits = Limits::parse("f.yaml", text).unwrap();
        assert_eq!(limits.check_conditions("a", &ctx(&[&[("x", "1")]])), Ok(()));
    }
}
