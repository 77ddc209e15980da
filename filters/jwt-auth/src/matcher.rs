//! Route matching for `rules[].match` and `claim_rules[].match`: the
//! `prefix` / `path` / `safe_regex` subset of Envoy's `RouteMatch`, applied
//! to the path without its query and fragment (as jwt_authn's matchers do).

/// One compiled `match`.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// `prefix`.
    Prefix {
        /// The prefix (lower-cased when `case_sensitive` is false).
        prefix: String,
        /// `case_sensitive`, default true.
        case_sensitive: bool,
    },
    /// `path`: the whole path.
    Exact {
        /// The path (lower-cased when `case_sensitive` is false).
        path: String,
        /// `case_sensitive`, default true.
        case_sensitive: bool,
    },
    /// `safe_regex.regex`: must match the whole path.
    Regex(regex::Regex),
}

impl PathMatch {
    /// Whether the request `:path` (query and fragment included or not)
    /// matches.
    #[must_use]
    pub fn matches(&self, raw_path: &[u8]) -> bool {
        let path = filter_common::query::path_only(raw_path);
        match self {
            Self::Prefix {
                prefix,
                case_sensitive: true,
            } => path.starts_with(prefix.as_bytes()),
            Self::Prefix { prefix, .. } => path
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes())),
            Self::Exact {
                path: want,
                case_sensitive: true,
            } => path == want.as_bytes(),
            Self::Exact { path: want, .. } => path.eq_ignore_ascii_case(want.as_bytes()),
            Self::Regex(re) => {
                let text = filter_common::decode_lossy(path);
                re.find(&text)
                    .is_some_and(|m| m.start() == 0 && m.end() == text.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_path_ignore_the_query() {
        let prefix = PathMatch::Prefix {
            prefix: "/api".into(),
            case_sensitive: true,
        };
        assert!(prefix.matches(b"/api/x?y=1"));
        assert!(!prefix.matches(b"/ap?api"));
        assert!(!prefix.matches(b"/API"));
        let exact = PathMatch::Exact {
            path: "/a".into(),
            case_sensitive: true,
        };
        assert!(exact.matches(b"/a?x"));
        assert!(!exact.matches(b"/a/"));
    }

    #[test]
    fn case_insensitive_matching_folds_ascii() {
        let prefix = PathMatch::Prefix {
            prefix: "/api".into(),
            case_sensitive: false,
        };
        assert!(prefix.matches(b"/API/v1"));
        let exact = PathMatch::Exact {
            path: "/a".into(),
            case_sensitive: false,
        };
        assert!(exact.matches(b"/A"));
    }

    #[test]
    fn regex_must_match_the_whole_path() {
        let re = PathMatch::Regex(regex::Regex::new("/v[0-9]+/.*").unwrap());
        assert!(re.matches(b"/v1/x?q"));
        assert!(!re.matches(b"/x/v1/x"));
    }
}
