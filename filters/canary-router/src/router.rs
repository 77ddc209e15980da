//! The pure core: given a validated [`Config`] and a view of the request,
//! decide the version, say why, and say whether the sticky cookie must be
//! (re)set. No proxy-wasm import; the filter applies the decision.
//!
//! Order of precedence, first that applies wins:
//! 1. `rules`, in order (a tester's header or cookie always wins);
//! 2. the first present `hash_on` key, hashed onto the split: the same key
//!    gets the same version in every sidecar, and weight changes move keys
//!    only onto a growing version;
//! 3. the `sticky_cookie`, if it names a version that still has weight (a
//!    rolled-back version's cookie is ignored, so rollback is immediate);
//! 4. a random point on the split.
//!
//! The hash key beats the cookie on purpose: a key is the stronger identity,
//! and a cookie from an anonymous visit must not pin a signed-in user to a
//! version their id does not map to (or freeze them out of a rollout).

use crate::config::Config;
use crate::matcher::{all_match, RequestView};
use crate::split::key_hash;

/// Why a version was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `rules[i]` matched.
    Rule(usize),
    /// A `hash_on` key was hashed onto the split.
    Hash,
    /// The sticky cookie named a live version.
    Cookie,
    /// No key and no valid cookie: a random point on the split.
    Random,
}

/// What the filter should do for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index into [`Config::versions`].
    pub version: usize,
    /// Why.
    pub reason: Reason,
    /// Send `Set-Cookie` with the sticky cookie for `version`: the decision
    /// came from the split and the request did not already carry that value.
    /// Rule matches never set it, since rules are re-evaluated on every
    /// request and a one-off override must not pin the user.
    pub set_cookie: bool,
}

/// Decides the version for a request. `random` is called only when the
/// split must pick without a key or valid cookie; it should return a
/// uniformly random `u64`.
///
/// The request view must not contain the client's route header; the config
/// already refuses rules and hash sources that read it, and the filter
/// removes it from the request in any case.
///
/// # Examples
/// ```
/// use canary_router::{config::validate, matcher::HeaderList, router::{decide, Reason}};
/// let config = validate(br#"{"split": [{"version": "v1", "weight": 80}, {"version": "v2", "weight": 20}],
///     "rules": [{"match": {"headers": [{"name": "x-canary", "exact": "always"}]}, "version": "v2"}],
///     "hash_on": [{"header": "x-user-id"}]}"#).unwrap();
/// let decision = decide(&config, &mut HeaderList::new([("x-canary", "always")]), || 0);
/// assert_eq!((decision.version, decision.reason), (1, Reason::Rule(0)));
/// let decision = decide(&config, &mut HeaderList::new([("x-user-id", "alice")]), || 0);
/// assert_eq!(decision.reason, Reason::Hash);
/// ```
pub fn decide<R: RequestView>(
    config: &Config,
    request: &mut R,
    random: impl FnOnce() -> u64,
) -> Decision {
    if let Some((index, rule)) = config
        .rules
        .iter()
        .enumerate()
        .find(|(_, rule)| all_match(&rule.conditions, request))
    {
        return Decision {
            version: rule.version,
            reason: Reason::Rule(index),
            set_cookie: false,
        };
    }

    let keyed = config.hash_on.iter().find_map(|source| {
        // An empty value is no identity: hashing it would put every such
        // request in one bucket.
        let value = source.read(request).filter(|v| !v.is_empty())?;
        Some(config.split.pick(key_hash(&value)))
    });

    let cookie_version = config.sticky_cookie.as_ref().and_then(|sticky| {
        let value = request.cookie(&sticky.name)?;
        config.version_index(&value)
    });

    let (version, reason) = match (keyed, cookie_version) {
        (Some(version), _) => (version, Reason::Hash),
        (None, Some(version)) if config.split.is_live(version) => (version, Reason::Cookie),
        (None, _) => (config.split.pick(random()), Reason::Random),
    };
    Decision {
        version,
        reason,
        set_cookie: config.sticky_cookie.is_some() && cookie_version != Some(version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate;
    use crate::matcher::HeaderList;

    use crate::config::tests::ISSUE_EXAMPLE as ISSUE;

    fn config(json: &str) -> Config {
        validate(json.as_bytes()).unwrap()
    }

    fn decide_for(config: &Config, pairs: &[(&str, &str)]) -> Decision {
        decide(config, &mut HeaderList::new(pairs.iter().copied()), || {
            panic!("random must not be needed")
        })
    }

    fn version_of(config: &Config, pairs: &[(&str, &str)]) -> &'static str {
        match decide_for(config, pairs).version {
            0 => "v1",
            _ => "v2",
        }
    }

    /// A user id the 80/20 split sends to `want`.
    fn user_on(config: &Config, want: &str) -> String {
        (0..)
            .map(|i| format!("user-{i}"))
            .find(|id| version_of(config, &[("x-user-id", id)]) == want)
            .unwrap()
    }

    #[test]
    fn ten_thousand_distinct_ids_split_eighty_twenty_within_one_and_a_half_points() {
        let config = config(ISSUE);
        let canary = (0..10_000)
            .filter(|i| version_of(&config, &[("x-user-id", &format!("{i:08x}-user"))]) == "v2")
            .count();
        let share = canary as f64 / 100.0;
        assert!((18.5..=21.5).contains(&share), "canary share {share}%");
    }

    #[test]
    fn the_same_id_gets_the_same_version_from_any_source_and_config_instance() {
        let a = config(ISSUE);
        let b = config(ISSUE);
        for i in 0..500 {
            let id = format!("id-{i}");
            let by_header = version_of(&a, &[("x-user-id", &id)]);
            assert_eq!(by_header, version_of(&b, &[("x-user-id", &id)]));
            let cookie = format!("session={id}");
            assert_eq!(by_header, version_of(&b, &[("cookie", &cookie)]));
            assert_eq!(by_header, version_of(&a, &[("x-jwt-sub", &id)]));
        }
    }

    #[test]
    fn rules_are_tried_in_order_and_beat_the_hash_and_the_cookie() {
        let config = config(
            r#"{"split": [{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}],
                "rules": [
                  {"match": {"headers": [{"name": "x-pin", "exact": "stable"}]}, "version": "v1"},
                  {"match": {"headers": [{"name": "x-beta", "present": true}], "query_params": [{"name": "beta", "exact": "1"}]}, "version": "v2"},
                  {"match": {"headers": [{"name": "x-beta", "present": true}]}, "version": "v1"}
                ],
                "hash_on": [{"header": "x-user-id"}], "sticky_cookie": {"name": "cv"}}"#,
        );
        let canary_user = user_on(&config, "v2");
        let both = decide_for(
            &config,
            &[
                ("x-pin", "stable"),
                ("x-beta", "1"),
                (":path", "/?beta=1"),
                ("x-user-id", &canary_user),
            ],
        );
        assert_eq!(
            (both.version, both.reason, both.set_cookie),
            (0, Reason::Rule(0), false)
        );
        // All conditions of rule 1 must hold; without the query param rule 2 applies.
        let beta = decide_for(&config, &[("x-beta", ""), (":path", "/?beta=1")]);
        assert_eq!((beta.version, beta.reason), (1, Reason::Rule(1)));
        let partial = decide_for(&config, &[("x-beta", ""), (":path", "/?beta=2")]);
        assert_eq!((partial.version, partial.reason), (0, Reason::Rule(2)));
        let cookie = decide_for(&config, &[("x-pin", "stable"), ("cookie", "cv=v2")]);
        assert_eq!(cookie.reason, Reason::Rule(0));
    }

    #[test]
    fn issue_rules_route_firefox_and_the_canary_cookie_to_v2() {
        let config = config(ISSUE);
        let stable_user = user_on(&config, "v1");
        let firefox = [
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ),
            ("x-user-id", &stable_user),
        ];
        assert_eq!(decide_for(&config, &firefox).reason, Reason::Rule(2));
        let chrome = [
            ("user-agent", "Mozilla/5.0 Chrome/126.0"),
            ("x-user-id", &stable_user),
        ];
        assert_eq!(decide_for(&config, &chrome).reason, Reason::Hash);
        let cookie = [
            ("cookie", "a=1"),
            ("cookie", " canary = \"true\" "),
            ("x-user-id", &stable_user),
        ];
        assert_eq!(decide_for(&config, &cookie).reason, Reason::Rule(1));
        let not_quite = [("cookie", "canary=truex"), ("x-user-id", &stable_user)];
        assert_eq!(decide_for(&config, &not_quite).reason, Reason::Hash);
    }

    #[test]
    fn a_spoofed_route_header_does_not_choose_the_version() {
        let config = config(ISSUE);
        let stable_user = user_on(&config, "v1");
        let spoofed = decide_for(
            &config,
            &[("x-canary-version", "v2"), ("x-user-id", &stable_user)],
        );
        assert_eq!((spoofed.version, spoofed.reason), (0, Reason::Hash));
        // Without any key, the spoofed header is not a cookie either: random decides.
        let decision = decide(
            &config,
            &mut HeaderList::new([("x-canary-version", "v2")]),
            || 0,
        );
        assert_eq!((decision.version, decision.reason), (0, Reason::Random));
    }

    #[test]
    fn the_first_present_hash_source_is_the_key_and_empty_values_are_skipped() {
        let config = config(ISSUE);
        let v1 = user_on(&config, "v1");
        let v2 = user_on(&config, "v2");
        assert_eq!(
            version_of(&config, &[("x-user-id", &v1), ("x-jwt-sub", &v2)]),
            "v1"
        );
        assert_eq!(
            version_of(&config, &[("x-user-id", ""), ("x-jwt-sub", &v2)]),
            "v2"
        );
        let session = format!("session={v2}");
        assert_eq!(
            version_of(&config, &[("cookie", &session), ("x-jwt-sub", &v1)]),
            "v2"
        );
    }

    #[test]
    fn random_choice_is_kept_by_the_sticky_cookie() {
        let config = config(ISSUE);
        // No key, no cookie: random; u64::MAX lands at the top, in v2.
        let first = decide(
            &config,
            &mut HeaderList::new([("user-agent", "curl/8")]),
            || u64::MAX,
        );
        assert_eq!(
            (first.version, first.reason, first.set_cookie),
            (1, Reason::Random, true)
        );
        // The next request carries the cookie (quoted, among others): kept, not reset.
        let mut next = HeaderList::new([
            ("cookie", "theme=dark"),
            ("cookie", "canary-version=\"v2\""),
        ]);
        let second = decide(&config, &mut next, || panic!("the cookie decides"));
        assert_eq!(
            (second.version, second.reason, second.set_cookie),
            (1, Reason::Cookie, false)
        );
    }

    #[test]
    fn a_cookie_for_an_unknown_or_rolled_back_version_is_replaced() {
        let rolled_back = config(
            r#"{"split": [{"version": "v1", "weight": 100}, {"version": "v2", "weight": 0}],
                "sticky_cookie": {"name": "cv"}}"#,
        );
        for cookie in ["cv=v2", "cv=v9", "cv="] {
            let d = decide(
                &rolled_back,
                &mut HeaderList::new([("cookie", cookie)]),
                || u64::MAX,
            );
            assert_eq!(
                (d.version, d.reason, d.set_cookie),
                (0, Reason::Random, true),
                "{cookie}"
            );
        }
    }

    #[test]
    fn a_hashed_decision_sets_the_cookie_only_when_it_differs() {
        let config = config(ISSUE);
        let v2 = user_on(&config, "v2");
        let fresh = decide_for(&config, &[("x-user-id", &v2)]);
        assert_eq!((fresh.version, fresh.set_cookie), (1, true));
        let kept = decide_for(
            &config,
            &[("x-user-id", &v2), ("cookie", "canary-version=v2")],
        );
        assert!(!kept.set_cookie);
        // The id beats a stale cookie, and the cookie is corrected.
        let stale = decide_for(
            &config,
            &[("x-user-id", &v2), ("cookie", "canary-version=v1")],
        );
        assert_eq!(
            (stale.version, stale.reason, stale.set_cookie),
            (1, Reason::Hash, true)
        );
    }

    #[test]
    fn without_sticky_cookie_nothing_is_set() {
        let config =
            config(r#"{"split": [{"version": "a", "weight": 1}, {"version": "b", "weight": 1}]}"#);
        let d = decide(&config, &mut HeaderList::default(), || 0);
        assert_eq!(
            (d.version, d.reason, d.set_cookie),
            (0, Reason::Random, false)
        );
    }

    proptest::proptest! {
        #[test]
        fn weights_five_twenty_five_fifty_hundred_never_move_a_user_back_to_stable(id in "[ -~]{1,40}") {
            let mut was_canary = false;
            for canary in [5, 25, 50, 100] {
                let config = config(&format!(
                    r#"{{"split": [{{"version": "v1", "weight": {}}}, {{"version": "v2", "weight": {canary}}}],
                        "hash_on": [{{"header": "x-user-id"}}]}}"#, 100 - canary));
                let now = decide_for(&config, &[("x-user-id", &id)]).version == 1;
                proptest::prop_assert!(now || !was_canary, "{id:?} went back to v1 at {canary}%");
                was_canary = now;
            }
            proptest::prop_assert!(was_canary, "at 100% everyone is on v2");
        }

        #[test]
        fn deciding_never_panics_on_arbitrary_request_bytes(
            headers in proptest::collection::vec(
                (proptest::sample::select(vec!["cookie", "x-user-id", "user-agent", ":path", "x-canary"]),
                 proptest::collection::vec(proptest::num::u8::ANY, 0..48)), 0..8),
            random in proptest::num::u64::ANY,
        ) {
            let config = config(ISSUE);
            let mut request = HeaderList { pairs: headers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() };
            let d = decide(&config, &mut request, || random);
            proptest::prop_assert!(d.version < 2);
        }
    }
}
