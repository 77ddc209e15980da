//! Which rules a request hits and which bucket slot each one charges: rule
//! matching, the key (first present source) and key hashing into one of the
//! rule's `max_keys` slots.
//!
//! Slot scheme (bounded memory): a key is hashed (FNV-1a 64, then a
//! splitmix64 finaliser) into slot `hash % max_keys`; a second finaliser
//! gives a 64-bit fingerprint stored in the slot. A rule therefore never
//! uses more than `max_keys` shared-data keys, whatever the number of
//! distinct clients. What happens when two keys meet in one slot is decided
//! by the limiter (see [`crate::limiter`]).

use std::net::IpAddr;

use crate::config::{Config, KeySource, PathMatch};
use crate::limiter::Hit;

/// What the rules need from a request, beyond `:path` and `:method`.
/// The filter implements it with host calls; tests with a map.
pub trait RequestView {
    /// The first value of request header `name`; `None` when absent or empty.
    fn header(&mut self, name: &str) -> Option<Vec<u8>>;
    /// The trusted client address (see `client_ip` in the config).
    fn client_ip(&mut self) -> Option<IpAddr>;
}

/// One rule, ready to match and key requests.
#[derive(Debug, Clone)]
struct PlannedRule {
    path: PathMatch,
    method: Option<Vec<u8>>,
    key: Vec<KeySource>,
    slots: u32,
    /// A global rule's fallback bucket: see [`Plan::fallback_hit`].
    fallback_only: bool,
}

/// The rules of a config, ready for requests.
#[derive(Debug, Clone)]
pub struct Plan {
    rules: Vec<PlannedRule>,
    needs_method: bool,
    needs_path: bool,
}

/// Tags keep sources apart in the hash: header `a: 1.2.3.4` and client IP
/// 1.2.3.4 are different keys. The tag is the source's position plus this
/// type byte, so two headers in one list are different keys too.
const TAG_IP: u8 = 0x40;
/// All sources absent: one shared bucket for such requests, rather than
/// exempting them (omitting a header must not bypass the limit).
const TAG_ABSENT: u8 = 0xFF;

impl Plan {
    /// The plan for a validated config.
    pub fn new(config: &Config) -> Self {
        let rules = config
            .rules
            .iter()
            .map(|rule| PlannedRule {
                path: rule.path.clone(),
                method: rule.method.as_ref().map(|m| m.clone().into_bytes()),
                key: rule.key.clone(),
                // An empty key list is one bucket for the rule.
                fallback_only: rule.fallback_only,
                slots: if rule.key.is_empty() {
                    1
                } else {
                    config.max_keys
                },
            })
            .collect::<Vec<_>>();
        let needs_method = rules.iter().any(|r| r.method.is_some());
        let needs_path = rules.iter().any(|r| {
            r.path != PathMatch::Any
                || r.key
                    .iter()
                    .any(|k| matches!(k, KeySource::Path | KeySource::QueryParam(_)))
        });
        Self {
            rules,
            needs_method,
            needs_path,
        }
    }

    /// Whether any rule matches on `:method` (saves a host call otherwise).
    pub fn needs_method(&self) -> bool {
        self.needs_method
    }

    /// Whether any rule matches on the path or keys by the path or a query
    /// parameter (saves a host call otherwise).
    pub fn needs_path(&self) -> bool {
        self.needs_path
    }

    /// Appends a [`Hit`] for every rule that applies to the request, in rule
    /// order. `path` is `:path` with its query.
    pub fn hits(
        &self,
        path: Option<&[u8]>,
        method: Option<&[u8]>,
        view: &mut impl RequestView,
        out: &mut Vec<Hit>,
    ) {
        let path_only = path.map(filter_common::query::path_only);
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.fallback_only || !rule.matches(path_only, method) {
                continue;
            }
            let hasher = rule.key_hash(path, path_only, view);
            let (slot_hash, fingerprint) = hasher.finish();
            out.push(Hit {
                rule: u16::try_from(index).unwrap_or(u16::MAX),
                slot: u32::try_from(slot_hash % u64::from(rule.slots)).unwrap_or(0),
                fingerprint,
            });
        }
    }
}

/// Whether a rule's `match` holds: `path_only` is `:path` without its
/// query. Shared by local and global rules.
pub(crate) fn request_matches(
    rule_path: &PathMatch,
    rule_method: Option<&[u8]>,
    path_only: Option<&[u8]>,
    method: Option<&[u8]>,
) -> bool {
    let path_ok = match rule_path {
        PathMatch::Any => true,
        PathMatch::Prefix(prefix) => path_only.is_some_and(|p| p.starts_with(prefix.as_bytes())),
        PathMatch::Exact(exact) => path_only == Some(exact.as_bytes()),
    };
    path_ok && rule_method.is_none_or(|m| method == Some(m))
}

impl Plan {
    /// The [`Hit`] of fallback bucket `rule` (a position in the config's
    /// `rules`) for this request, whose global rule already matched; `None`
    /// if `rule` is not a fallback bucket.
    pub fn fallback_hit(
        &self,
        rule: u16,
        path: Option<&[u8]>,
        view: &mut impl RequestView,
    ) -> Option<Hit> {
        let planned = self.rules.get(usize::from(rule))?;
        if !planned.fallback_only {
            return None;
        }
        let path_only = path.map(filter_common::query::path_only);
        let (slot_hash, fingerprint) = planned.key_hash(path, path_only, view).finish();
        Some(Hit {
            rule,
            slot: u32::try_from(slot_hash % u64::from(planned.slots)).unwrap_or(0),
            fingerprint,
        })
    }
}

impl PlannedRule {
    fn matches(&self, path_only: Option<&[u8]>, method: Option<&[u8]>) -> bool {
        request_matches(&self.path, self.method.as_deref(), path_only, method)
    }

    /// Hashes the first present source; see [`TAG_ABSENT`] when none is.
    fn key_hash(
        &self,
        path: Option<&[u8]>,
        path_only: Option<&[u8]>,
        view: &mut impl RequestView,
    ) -> KeyHasher {
        if self.key.is_empty() {
            return KeyHasher::new(0);
        }
        for (position, source) in self.key.iter().enumerate() {
            let tag = u8::try_from(position).unwrap_or(0x3F);
            let found = match source {
                KeySource::Header(name) => view.header(name).map(|v| KeyHasher::bytes(tag, &v)),
                KeySource::Cookie(name) => view.header("cookie").and_then(|header| {
                    filter_common::cookie::find_in(&header, name)
                        .filter(|v| !v.is_empty())
                        .map(|v| KeyHasher::bytes(tag, v))
                }),
                KeySource::QueryParam(name) => path
                    .and_then(|p| filter_common::query::find(p, name))
                    .filter(|v| !v.is_empty())
                    .map(|v| KeyHasher::bytes(tag, v)),
                KeySource::ClientIp => view.client_ip().map(|ip| match ip {
                    IpAddr::V4(v4) => KeyHasher::bytes(tag | TAG_IP, &v4.octets()),
                    IpAddr::V6(v6) => KeyHasher::bytes(tag | TAG_IP, &v6.octets()),
                }),
                KeySource::Path => path_only
                    .filter(|p| !p.is_empty())
                    .map(|p| KeyHasher::bytes(tag, p)),
            };
            if let Some(hasher) = found {
                return hasher;
            }
        }
        KeyHasher::new(TAG_ABSENT)
    }
}

/// FNV-1a 64 over a tag byte and the key bytes. Not keyed: all worker VMs
/// must agree on slots, and there is no atomic way to agree on a random seed
/// through shared data. Choosing colliding keys only lets a client share (and
/// so drain) another key's bucket, which the client could do by sending that
/// key; see the README.
#[derive(Debug, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new(tag: u8) -> Self {
        Self((Self::OFFSET ^ u64::from(tag)).wrapping_mul(Self::PRIME))
    }

    fn bytes(tag: u8, bytes: &[u8]) -> Self {
        let mut hash = Self::new(tag).0;
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
        Self(hash)
    }

    /// `(slot hash, fingerprint)`: two different finalisations.
    fn finish(self) -> (u64, u64) {
        (mix(self.0), mix(self.0 ^ 0x9e37_79b9_7f4a_7c15))
    }
}

/// splitmix64's finaliser: spreads FNV's weak low bits over the word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate;
    use std::collections::HashMap;

    /// A request for tests: headers by name, a client address.
    #[derive(Default)]
    struct FakeRequest {
        headers: HashMap<String, Vec<u8>>,
        ip: Option<IpAddr>,
    }

    impl RequestView for FakeRequest {
        fn header(&mut self, name: &str) -> Option<Vec<u8>> {
            self.headers.get(name).filter(|v| !v.is_empty()).cloned()
        }
        fn client_ip(&mut self) -> Option<IpAddr> {
            self.ip
        }
    }

    fn plan(rules: &str, max_keys: u32) -> Plan {
        let json = format!(r#"{{"rules": {rules}, "max_keys": {max_keys}}}"#);
        Plan::new(&validate(json.as_bytes()).unwrap())
    }

    fn hits(plan: &Plan, path: &str, method: &str, request: &mut FakeRequest) -> Vec<Hit> {
        let mut out = Vec::new();
        plan.hits(
            Some(path.as_bytes()),
            Some(method.as_bytes()),
            request,
            &mut out,
        );
        out
    }

    const BUCKET: &str = r#""token_bucket": {"max_tokens": 1, "fill_interval": "1s"}"#;

    #[test]
    fn rules_apply_by_prefix_path_and_method() {
        let plan = plan(
            &format!(
                r#"[{{"name": "api", "match": {{"prefix": "/api"}}, {BUCKET}}},
                   {{"name": "login", "match": {{"path": "/login", "method": "POST"}}, {BUCKET}}},
                   {{"name": "all", {BUCKET}}}]"#
            ),
            16,
        );
        let mut request = FakeRequest::default();
        let rules = |path: &str, method: &str, request: &mut FakeRequest| {
            hits(&plan, path, method, request)
                .iter()
                .map(|h| h.rule)
                .collect::<Vec<_>>()
        };
        assert_eq!(rules("/api/users?x=1", "GET", &mut request), [0, 2]);
        assert_eq!(rules("/apix", "GET", &mut request), [0, 2]);
        assert_eq!(rules("/login", "POST", &mut request), [1, 2]);
        assert_eq!(rules("/login?next=/", "POST", &mut request), [1, 2]);
        assert_eq!(rules("/login", "GET", &mut request), [2]);
        assert_eq!(rules("/login/x", "POST", &mut request), [2]);
    }

    #[test]
    fn the_path_is_needed_only_by_path_matches_and_path_or_query_keys() {
        let needs = |rules: &str| plan(rules, 16).needs_path();
        assert!(!needs(&format!(
            r#"[{{"name": "h", "key": [{{"header": "x-user"}}], {BUCKET}}}]"#
        )));
        assert!(!needs(&format!(
            r#"[{{"name": "ip", "key": [{{"client_ip": {{}}}}], {BUCKET}}}]"#
        )));
        assert!(needs(&format!(
            r#"[{{"name": "api", "match": {{"prefix": "/api"}}, {BUCKET}}}]"#
        )));
        assert!(needs(&format!(
            r#"[{{"name": "x", "match": {{"path": "/x"}}, {BUCKET}}}]"#
        )));
        assert!(needs(&format!(
            r#"[{{"name": "p", "key": [{{"path": {{}}}}], {BUCKET}}}]"#
        )));
        assert!(needs(&format!(
            r#"[{{"name": "q", "key": [{{"header": "x-user"}}, {{"query_param": "k"}}], {BUCKET}}}]"#
        )));
    }

    #[test]
    fn the_first_present_source_names_the_bucket() {
        let plan = plan(
            &format!(
                r#"[{{"name": "u", "key": [{{"header": "x-jwt-sub"}}, {{"cookie": "sid"}},
                   {{"query_param": "key"}}, {{"client_ip": {{}}}}], {BUCKET}}}]"#
            ),
            1 << 20,
        );
        let key = |headers: &[(&str, &str)], path: &str, ip: Option<&str>| {
            let mut request = FakeRequest {
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
                ip: ip.map(|i| i.parse().unwrap()),
            };
            let hit = hits(&plan, path, "GET", &mut request)[0];
            (hit.slot, hit.fingerprint)
        };
        let alice = key(&[("x-jwt-sub", "alice")], "/", Some("10.0.0.1"));
        assert_eq!(
            alice,
            key(&[("x-jwt-sub", "alice")], "/?key=k", Some("10.0.0.2"))
        );
        assert_ne!(alice, key(&[("x-jwt-sub", "bob")], "/", Some("10.0.0.1")));
        // The same bytes from different sources are different keys.
        let by_cookie = key(&[("cookie", "a=1; sid=alice")], "/", None);
        assert_ne!(alice, by_cookie);
        assert_eq!(
            by_cookie,
            key(&[("cookie", "sid=alice")], "/?key=zzz", None)
        );
        let by_query = key(&[("cookie", "other=1")], "/x?key=alice", None);
        assert_ne!(by_query, by_cookie);
        let by_ip = key(&[], "/", Some("10.0.0.1"));
        assert_eq!(by_ip, key(&[("x-jwt-sub", "")], "/?key=", Some("10.0.0.1")));
        assert_ne!(by_ip, key(&[], "/", Some("10.0.0.2")));
        // No source at all: one shared bucket, not an exemption.
        let absent = key(&[], "/", None);
        assert_eq!(absent, key(&[], "/other", None));
        assert_ne!(absent, by_ip);
    }

    #[test]
    fn an_empty_key_list_is_one_bucket() {
        let plan = plan(&format!(r#"[{{"name": "all", {BUCKET}}}]"#), 1000);
        let mut request = FakeRequest::default();
        let a = hits(&plan, "/a", "GET", &mut request)[0];
        request.ip = "10.9.9.9".parse().ok();
        let b = hits(&plan, "/b", "PUT", &mut request)[0];
        assert_eq!((a.slot, a.fingerprint), (b.slot, b.fingerprint));
        assert_eq!(a.slot, 0);
    }

    #[test]
    fn path_keys_ignore_the_query() {
        let plan = plan(
            &format!(r#"[{{"name": "p", "key": [{{"path": {{}}}}], {BUCKET}}}]"#),
            1 << 16,
        );
        let mut request = FakeRequest::default();
        let a = hits(&plan, "/a?x=1", "GET", &mut request)[0];
        let b = hits(&plan, "/a?x=2", "GET", &mut request)[0];
        let c = hits(&plan, "/b", "GET", &mut request)[0];
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }

    #[test]
    fn a_million_keys_use_at_most_max_keys_slots_and_spread_evenly() {
        let max_keys = 1024u32;
        let plan = plan(
            &format!(r#"[{{"name": "k", "key": [{{"header": "x-k"}}], {BUCKET}}}]"#),
            max_keys,
        );
        let mut counts = vec![0u32; max_keys as usize];
        let mut request = FakeRequest::default();
        let mut out = Vec::with_capacity(1);
        for i in 0..1_000_000u32 {
            request
                .headers
                .insert("x-k".into(), format!("client-{i}").into_bytes());
            out.clear();
            plan.hits(Some(b"/"), None, &mut request, &mut out);
            counts[out[0].slot as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        // 976.6 per slot on average; a decent hash stays well within ±20%.
        assert!(*min > 780 && *max < 1180, "min {min}, max {max}");
    }
}
