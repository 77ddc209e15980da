//! The pure core: merges a precomputed rule list into one response's headers.
//! No proxy-wasm import, so it is tested natively.
//!
//! Everything that does not depend on the response is worked out once, in
//! [`Plan::new`] (called from `on_configure`): the final header list, the
//! lower-cased names, and one sorted lookup table covering both the managed
//! and the removed names. Per response the work is one pass over the
//! upstream's headers (a binary search each) plus appending what is missing.

use crate::config::Config;

/// How a configured header treats one the upstream already set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Keep the upstream's header; add ours only when it has none.
    IfAbsent,
    /// Replace every upstream instance with ours.
    Overwrite,
}

/// When a header rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Every response.
    Always,
    /// Only when the request was made over https (HSTS with `https_only`).
    HttpsOnly,
    /// Only on responses a browser renders as a document (CSP with `html_only`).
    DocumentOnly,
}

/// One header the filter sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Lower-case header name.
    pub name: String,
    /// The value, as bytes ready for the host call.
    pub value: Vec<u8>,
    /// What to do when the upstream already set it.
    pub mode: Mode,
    /// Which responses it goes on.
    pub when: When,
}

/// What the lookup table says about a response header name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Strip it.
    Remove,
    /// Managed by the rule at this index of [`Plan::rules`].
    Rule(usize),
}

/// The per-response work list, built once from a validated [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    rules: Vec<Rule>,
    /// Sorted by name for binary search; names are unique (config validation
    /// guarantees a name is never both set and removed).
    lookup: Vec<(String, Action)>,
    needs_scheme: bool,
}

/// What one response needs, as the host calls that make it: the result of
/// [`harden`]. Everything borrows from the [`Plan`], so building it copies
/// no header name or value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edits<'p> {
    /// Lower-case names to strip, every instance, each name once
    /// (`proxy_remove_header_map_value`). Applied first.
    pub remove: Vec<&'p str>,
    /// Headers to append, in plan order (`proxy_add_header_map_value`).
    /// Applied after `remove`.
    pub add: Vec<&'p Rule>,
}

impl Edits<'_> {
    /// Nothing to do: the adapter makes no write host call at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// The whole header map after the edits, borrowing from `headers` and
    /// the plan: what a whole-map write (`proxy_set_header_map_pairs`)
    /// sends. Same result as [`Edits::apply_to`].
    #[must_use]
    pub fn merged<'a>(&'a self, headers: &'a [(String, Vec<u8>)]) -> Vec<(&'a str, &'a [u8])> {
        let mut out = Vec::with_capacity(headers.len() + self.add.len());
        out.extend(
            headers
                .iter()
                .filter(|(name, _)| {
                    !self
                        .remove
                        .iter()
                        .any(|removed| name.eq_ignore_ascii_case(removed))
                })
                .map(|(name, value)| (name.as_str(), value.as_slice())),
        );
        out.extend(
            self.add
                .iter()
                .map(|rule| (rule.name.as_str(), rule.value.as_slice())),
        );
        out
    }

    /// Applies the edits to a header list the way a proxy-wasm host does:
    /// removal drops every instance whose name matches case-insensitively,
    /// additions go to the end. The filter lets the host do this; tests and
    /// benches use it to see the resulting map.
    pub fn apply_to(&self, headers: &mut Vec<(String, Vec<u8>)>) {
        headers.retain(|(name, _)| {
            !self
                .remove
                .iter()
                .any(|removed| name.eq_ignore_ascii_case(removed))
        });
        headers.extend(
            self.add
                .iter()
                .map(|rule| (rule.name.clone(), rule.value.clone())),
        );
    }
}

/// Upstream instances of one managed header seen so far.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    count: u32,
    differs: bool,
}

impl Plan {
    /// Builds the lookup table from a validated config.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        let rules = config.rules.clone();
        let mut lookup: Vec<(String, Action)> = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| (rule.name.clone(), Action::Rule(index)))
            .chain(
                config
                    .remove
                    .iter()
                    .map(|name| (name.clone(), Action::Remove)),
            )
            .collect();
        lookup.sort_by(|a, b| a.0.cmp(&b.0));
        // Validation already refuses a name that is both set and removed;
        // keeping the first makes a stray duplicate harmless anyway.
        lookup.dedup_by(|later, earlier| later.0 == earlier.0);
        let needs_scheme = rules.iter().any(|rule| rule.when == When::HttpsOnly);
        Self {
            rules,
            lookup,
            needs_scheme,
        }
    }

    /// Whether any rule depends on the request's scheme, i.e. whether the
    /// adapter must read `:scheme`/`x-forwarded-proto` at all.
    #[must_use]
    pub fn needs_scheme(&self) -> bool {
        self.needs_scheme
    }

    /// The rules in the order missing headers are appended.
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The table entry for a response header name: its lower-case name as
    /// the plan stores it, and what to do with it.
    fn action(&self, name: &str) -> Option<(&str, Action)> {
        let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            // Envoy hands names over lower-cased; only other hosts reach here.
            let lower = name.to_ascii_lowercase();
            self.lookup
                .binary_search_by(|(n, _)| n.as_str().cmp(lower.as_str()))
        } else {
            self.lookup.binary_search_by(|(n, _)| n.as_str().cmp(name))
        };
        found
            .ok()
            .and_then(|index| self.lookup.get(index))
            .map(|(name, action)| (name.as_str(), *action))
    }
}

/// Whether the client-facing request was https.
///
/// `x-forwarded-proto` wins when present, because behind a TLS-terminating
/// load balancer or an Istio mTLS hop `:scheme` describes the last hop, not
/// the browser's; its first comma-separated entry is the client-facing one.
/// Without it, `:scheme` decides. Comparison is ASCII case-insensitive.
#[must_use]
pub fn is_https(scheme: Option<&[u8]>, forwarded_proto: Option<&[u8]>) -> bool {
    let chosen = match forwarded_proto {
        Some(xfp) => xfp.split(|&b| b == b',').next().unwrap_or_default(),
        None => scheme.unwrap_or_default(),
    };
    chosen.trim_ascii().eq_ignore_ascii_case(b"https")
}

/// Whether a browser may render a response with this `content-type` as a
/// document, which is when a CSP matters: HTML, XHTML, SVG (it runs
/// scripts), and a missing or empty type (browsers sniff it).
#[must_use]
pub fn is_document(content_type: Option<&[u8]>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let media_type = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    media_type.is_empty()
        || [
            b"text/html".as_slice(),
            b"application/xhtml+xml",
            b"image/svg+xml",
        ]
        .iter()
        .any(|known| media_type.eq_ignore_ascii_case(known))
}

/// Works out the edits that merge the plan into one response's headers.
///
/// Removed names are stripped; an `if_absent` rule is added only when the
/// upstream has no such header; an `overwrite` rule leaves exactly one
/// instance, ours: if the upstream sent anything else (another value, or
/// more than one instance) every instance is removed and ours appended, and
/// if it sent exactly ours nothing happens, so a second pass yields no edits.
/// Added headers go after the upstream's, which keep their order.
///
/// Speed: the result only borrows from the plan (no name or value is copied
/// per response) and lists just the changes, so the host is asked to touch
/// only the headers that change, not to rebuild the whole map.
#[must_use]
pub fn harden<'p>(plan: &'p Plan, https: bool, headers: &[(String, Vec<u8>)]) -> Edits<'p> {
    let content_type = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.as_slice());
    let document = is_document(content_type);
    let applies = |rule: &Rule| match rule.when {
        When::Always => true,
        When::HttpsOnly => https,
        When::DocumentOnly => document,
    };

    // Rules are few (a dozen for the biggest profile); a Vec is cheaper than
    // any set here.
    let mut seen = vec![Seen::default(); plan.rules.len()];
    let mut edits = Edits {
        remove: Vec::new(),
        add: Vec::with_capacity(plan.rules.len()),
    };
    for (name, value) in headers {
        match plan.action(name) {
            // Each name once: one host call removes every instance.
            Some((removed, Action::Remove)) if !edits.remove.contains(&removed) => {
                edits.remove.push(removed);
            }
            Some((_, Action::Remove)) => {}
            Some((_, Action::Rule(index))) => {
                if let (Some(rule), Some(seen)) = (plan.rules.get(index), seen.get_mut(index)) {
                    seen.count = seen.count.saturating_add(1);
                    seen.differs |= *value != rule.value;
                }
            }
            None => {}
        }
    }
    for (rule, seen) in plan.rules.iter().zip(&seen) {
        if !applies(rule) {
            continue;
        }
        if seen.count == 0 {
            edits.add.push(rule);
        } else if rule.mode == Mode::Overwrite && (seen.count > 1 || seen.differs) {
            edits.remove.push(&rule.name);
            edits.add.push(rule);
        }
    }
    edits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate;

    type Headers = Vec<(String, Vec<u8>)>;

    fn plan(json: &str) -> Plan {
        Plan::new(&validate(json.as_bytes()).unwrap())
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    /// The map after the host applied the edits.
    fn run(plan: &Plan, https: bool, input: &Headers) -> Headers {
        let mut out = input.clone();
        harden(plan, https, input).apply_to(&mut out);
        out
    }

    fn values<'a>(out: &'a Headers, name: &str) -> Vec<&'a [u8]> {
        out.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    fn one<'a>(out: &'a Headers, name: &str) -> Option<&'a str> {
        match values(out, name).as_slice() {
            [] => None,
            [value] => std::str::from_utf8(value).ok(),
            many => panic!("{name} appears {} times", many.len()),
        }
    }

    #[test]
    fn scheme_comes_from_forwarded_proto_first_then_scheme() {
        let cases: &[(Option<&str>, Option<&str>, bool)] = &[
            (Some("https"), None, true),
            (Some("http"), None, false),
            (None, None, false),
            (Some("http"), Some("https"), true),
            (Some("https"), Some("http"), false),
            (Some("http"), Some(" HTTPS , http"), true),
            (Some("HTTPS"), None, true),
            (Some("http"), Some(""), false),
        ];
        for (scheme, xfp, expected) in cases {
            let got = is_https(scheme.map(str::as_bytes), xfp.map(str::as_bytes));
            assert_eq!(got, *expected, "{scheme:?} {xfp:?}");
        }
    }

    #[test]
    fn documents_are_html_xhtml_svg_and_untyped_responses() {
        for document in [
            None,
            Some(""),
            Some("text/html"),
            Some("Text/HTML; charset=utf-8"),
            Some("image/svg+xml"),
            Some("application/xhtml+xml"),
        ] {
            assert!(is_document(document.map(str::as_bytes)), "{document:?}");
        }
        for other in ["application/json", "text/plain", "text/htmlx", "image/png"] {
            assert!(!is_document(Some(other.as_bytes())), "{other}");
        }
    }

    #[test]
    fn owasp_adds_all_headers_to_an_https_html_response_and_strips_leaks() {
        let out = run(
            &plan("{}"),
            true,
            &headers(&[
                ("content-type", "text/html"),
                ("server", "nginx"),
                ("x-powered-by", "PHP"),
            ]),
        );
        for (name, value) in crate::profiles::OWASP_ADD {
            assert_eq!(one(&out, name), Some(*value), "{name}");
        }
        assert_eq!(one(&out, "server"), None);
        assert_eq!(one(&out, "x-powered-by"), None);
        assert_eq!(one(&out, "content-type"), Some("text/html"));
    }

    #[test]
    fn hsts_is_only_sent_on_https_requests() {
        let plan = plan("{}");
        let input = headers(&[("content-type", "text/html")]);
        assert!(one(&run(&plan, true, &input), "strict-transport-security").is_some());
        assert_eq!(
            one(&run(&plan, false, &input), "strict-transport-security"),
            None
        );
        assert!(!plan.rules().is_empty() && plan.needs_scheme());
        let always = super::tests::plan(r#"{"hsts": {"https_only": false}}"#);
        assert!(!always.needs_scheme());
        assert!(one(&run(&always, false, &input), "strict-transport-security").is_some());
    }

    #[test]
    fn csp_is_only_sent_on_documents_when_html_only() {
        let plan = plan("{}");
        for (content_type, expected) in [
            (Some("text/html; charset=utf-8"), true),
            (Some("application/json"), false),
            (None, true),
        ] {
            let input = match content_type {
                Some(ct) => headers(&[("content-type", ct)]),
                None => Vec::new(),
            };
            let out = run(&plan, true, &input);
            assert_eq!(
                one(&out, "content-security-policy").is_some(),
                expected,
                "{content_type:?}"
            );
            // The rest of the set does not depend on the content type.
            assert_eq!(one(&out, "x-content-type-options"), Some("nosniff"));
        }
    }

    #[test]
    fn if_absent_keeps_the_upstream_value_and_overwrite_replaces_every_instance() {
        let input = headers(&[
            ("content-type", "text/html"),
            ("x-frame-options", "SAMEORIGIN"),
            ("referrer-policy", "origin"),
            ("referrer-policy", "unsafe-url"),
        ]);
        let out = run(&plan(r#"{"mode": "if_absent"}"#), true, &input);
        assert_eq!(one(&out, "x-frame-options"), Some("SAMEORIGIN"));
        assert_eq!(
            values(&out, "referrer-policy"),
            vec![b"origin".as_slice(), b"unsafe-url"]
        );
        let out = run(&plan(r#"{"mode": "overwrite"}"#), true, &input);
        assert_eq!(one(&out, "x-frame-options"), Some("deny"));
        assert_eq!(one(&out, "referrer-policy"), Some("no-referrer"));
    }

    #[test]
    fn overwrite_leaves_exactly_one_instance_even_when_one_upstream_copy_matches() {
        let plan = plan(r#"{"mode": "overwrite"}"#);
        let input = headers(&[
            ("x-frame-options", "deny"),
            ("content-type", "text/html"),
            ("x-frame-options", "sameorigin"),
        ]);
        assert_eq!(
            one(&run(&plan, true, &input), "x-frame-options"),
            Some("deny")
        );
        // Exactly ours, once: nothing to write for that header.
        let ours = headers(&[("x-frame-options", "deny")]);
        let edits = harden(&plan, true, &ours);
        assert!(!edits.remove.contains(&"x-frame-options"));
        assert!(edits.add.iter().all(|rule| rule.name != "x-frame-options"));
    }

    #[test]
    fn edits_name_each_leak_once_and_add_in_plan_order() {
        let plan = plan("{}");
        let input = headers(&[
            ("content-type", "text/html"),
            ("server", "a"),
            ("x-powered-by", "b"),
            ("server", "c"),
        ]);
        let edits = harden(&plan, true, &input);
        assert_eq!(edits.remove, vec!["server", "x-powered-by"]);
        let added: Vec<&str> = edits.add.iter().map(|rule| rule.name.as_str()).collect();
        let planned: Vec<&str> = plan.rules().iter().map(|rule| rule.name.as_str()).collect();
        assert_eq!(added, planned);
    }

    #[test]
    fn per_header_mode_beats_the_global_mode() {
        let plan = plan(
            r#"{"mode": "if_absent", "headers": {"x-frame-options": {"value": "DENY", "mode": "overwrite"}}}"#,
        );
        let out = run(
            &plan,
            true,
            &headers(&[
                ("x-frame-options", "ALLOWALL"),
                ("referrer-policy", "origin"),
            ]),
        );
        assert_eq!(one(&out, "x-frame-options"), Some("DENY"));
        assert_eq!(one(&out, "referrer-policy"), Some("origin"));
    }

    #[test]
    fn overwrite_does_not_strip_an_upstream_header_its_rule_does_not_apply_to() {
        // HSTS on http and CSP on JSON: ours would not be sent, so the
        // upstream's stays rather than leaving the response without one.
        let plan = plan(r#"{"mode": "overwrite"}"#);
        let input = headers(&[
            ("content-type", "application/json"),
            ("strict-transport-security", "max-age=5"),
            ("content-security-policy", "sandbox"),
        ]);
        let out = run(&plan, false, &input);
        assert_eq!(one(&out, "strict-transport-security"), Some("max-age=5"));
        assert_eq!(one(&out, "content-security-policy"), Some("sandbox"));
    }

    #[test]
    fn each_profile_in_each_mode_against_an_upstream_with_some_headers() {
        let upstream = headers(&[
            ("content-type", "text/html"),
            ("x-content-type-options", "upstream"),
            ("content-security-policy", "upstream"),
            ("x-powered-by", "Express"),
            ("server", "gunicorn"),
        ]);
        let tables = [
            ("owasp", crate::profiles::OWASP_ADD),
            ("helmet", crate::profiles::HELMET_ADD),
            ("api", crate::profiles::API_ADD),
            ("none", &[][..]),
        ];
        for (profile, table) in tables {
            for mode in ["if_absent", "overwrite"] {
                let plan = plan(&format!(r#"{{"profile": "{profile}", "mode": "{mode}"}}"#));
                let out = run(&plan, true, &upstream);
                for (name, value) in table {
                    let upstream_has = upstream.iter().any(|(n, _)| n == name);
                    let expected = if upstream_has && mode == "if_absent" {
                        "upstream"
                    } else {
                        value
                    };
                    assert_eq!(one(&out, name), Some(expected), "{profile}/{mode}: {name}");
                }
                assert_eq!(
                    one(&out, "x-powered-by").is_some(),
                    profile == "none",
                    "{profile}/{mode}"
                );
                let server_kept = matches!(profile, "none" | "helmet");
                assert_eq!(
                    one(&out, "server").is_some(),
                    server_kept,
                    "{profile}/{mode}"
                );
                if profile == "none" {
                    assert!(harden(&plan, true, &upstream).is_empty());
                }
            }
        }
    }

    #[test]
    fn explicit_remove_strips_every_instance_in_any_case() {
        let plan = plan(r#"{"profile": "none", "remove": ["x-debug"]}"#);
        let out = run(
            &plan,
            false,
            &headers(&[("x-debug", "1"), ("X-Debug", "2"), ("x-keep", "3")]),
        );
        assert_eq!(out, headers(&[("x-keep", "3")]));
    }

    #[test]
    fn a_second_pass_changes_nothing() {
        for json in ["{}", r#"{"mode": "overwrite"}"#, r#"{"profile": "api"}"#] {
            let plan = plan(json);
            let once = run(
                &plan,
                true,
                &headers(&[("server", "x"), ("x-frame-options", "allow")]),
            );
            assert!(harden(&plan, true, &once).is_empty(), "{json}");
        }
    }

    fn arbitrary_headers() -> impl proptest::strategy::Strategy<Value = Headers> {
        use proptest::prelude::*;
        let known = prop::sample::select(vec![
            "content-type",
            "server",
            "x-frame-options",
            "X-Frame-Options",
            "strict-transport-security",
            "content-security-policy",
            "referrer-policy",
            "x-powered-by",
            "cache-control",
            "x-other",
        ]);
        let name = prop_oneof![known.prop_map(str::to_owned), "[ -~]{0,12}", ".{0,8}"];
        let value = prop_oneof![
            prop::sample::select(vec![
                b"text/html".to_vec(),
                b"application/json".to_vec(),
                b"deny".to_vec()
            ]),
            prop::collection::vec(any::<u8>(), 0..24),
        ];
        prop::collection::vec((name, value), 0..12)
    }

    fn arbitrary_config() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        (
            prop::sample::select(vec!["owasp", "helmet", "api", "none"]),
            prop::sample::select(vec!["if_absent", "overwrite"]),
            any::<bool>(),
        )
            .prop_map(|(profile, mode, html_only)| {
                let csp = if profile == "none" {
                    String::new()
                } else {
                    format!(r#", "csp": {{"html_only": {html_only}}}"#)
                };
                format!(r#"{{"profile": "{profile}", "mode": "{mode}"{csp}}}"#)
            })
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_is_idempotent(config in arbitrary_config(), https: bool, input in arbitrary_headers()) {
            let plan = plan(&config);
            let once = run(&plan, https, &input);
            let twice = harden(&plan, https, &once);
            proptest::prop_assert_eq!(twice, Edits::default());
        }

        #[test]
        fn the_whole_map_write_equals_the_per_header_edits(
            config in arbitrary_config(), https: bool, input in arbitrary_headers()
        ) {
            let plan = plan(&config);
            let edits = harden(&plan, https, &input);
            let merged: Headers = edits
                .merged(&input)
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_vec()))
                .collect();
            proptest::prop_assert_eq!(merged, run(&plan, https, &input));
        }

        #[test]
        fn nothing_on_the_remove_list_survives_and_every_applicable_rule_is_present(
            config in arbitrary_config(), https: bool, input in arbitrary_headers()
        ) {
            let validated = validate(config.as_bytes()).unwrap();
            let plan = Plan::new(&validated);
            let out = run(&plan, https, &input);
            for (name, _) in &out {
                let lower = name.to_ascii_lowercase();
                proptest::prop_assert!(!validated.remove.contains(&lower), "{} survived", name);
            }
            let document = is_document(input.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.as_slice()));
            for rule in plan.rules() {
                let applies = match rule.when { When::Always => true, When::HttpsOnly => https, When::DocumentOnly => document };
                let present = out.iter().any(|(n, _)| n.eq_ignore_ascii_case(&rule.name));
                proptest::prop_assert!(!applies || present, "{} missing", rule.name);
                if applies && rule.mode == Mode::Overwrite {
                    let got: Vec<&[u8]> = out.iter().filter(|(n, _)| n.eq_ignore_ascii_case(&rule.name)).map(|(_, v)| v.as_slice()).collect();
                    proptest::prop_assert_eq!(got, vec![rule.value.as_slice()]);
                }
            }
        }
    }
}
