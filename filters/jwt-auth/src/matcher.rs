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
    /// `safe_regex.regex`, compiled anchored at both ends so it must match
    /// the whole path (RE2's full match; a leftmost-first search that
    /// happens to stop short, as `a|ab` on `ab` does, would miss it).
    Regex(regex::bytes::Regex),
}

/// Largest compiled size of one `safe_regex`: a compiled program lives in
/// every worker's VM, and no sensible path pattern comes near 1 MiB.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl PathMatch {
    /// A `safe_regex` match: `pattern` anchored at both ends, `(?i)` when
    /// not `case_sensitive`.
    ///
    /// Matched against the raw path bytes with Unicode mode off, so `\d`,
    /// `\w` and `\s` are ASCII as in RE2 and no Unicode tables are linked;
    /// unlike RE2, `.` matches one byte rather than one UTF-8 character.
    ///
    /// # Errors
    /// The `regex` crate's error for a bad or oversized pattern, or one that
    /// needs Unicode tables (`\p{Greek}`).
    pub fn regex(pattern: &str, case_sensitive: bool) -> Result<Self, regex::Error> {
        let flags = if case_sensitive { "" } else { "(?i)" };
        regex::bytes::RegexBuilder::new(&format!("^{flags}(?:{pattern})$"))
            .unicode(false)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(Self::Regex)
    }

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
            Self::Regex(re) => re.is_match(path),
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
        let re = PathMatch::regex("/v[0-9]+/.*", true).unwrap();
        assert!(re.matches(b"/v1/x?q"));
        assert!(!re.matches(b"/x/v1/x"));
        // A full match exists even where a leftmost-first search stops short.
        let alternation = PathMatch::regex("/a|/ab", true).unwrap();
        assert!(alternation.matches(b"/ab"));
        assert!(!alternation.matches(b"/abc"));
        let insensitive = PathMatch::regex("/admin/.*", false).unwrap();
        assert!(insensitive.matches(b"/ADMIN/x"));
        assert!(!PathMatch::regex("/admin/.*", true)
            .unwrap()
            .matches(b"/ADMIN/x"));
    }

    #[test]
    fn classes_are_ascii_as_in_re2() {
        let digits = PathMatch::regex(r"/\d+", true).unwrap();
        assert!(digits.matches(b"/123"));
        assert!(
            !digits.matches("/١٢٣".as_bytes()),
            "Arabic-Indic digits are not \\d in RE2"
        );
    }
}
