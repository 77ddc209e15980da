//! Table tests of the decision with a fake host: HS256 tokens minted here
//! from a secret made here.

use std::collections::HashMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::*;
use crate::config::validate;
use crate::jwks;

const SECRET: &[u8] = b"a test secret made for these tests";
const NOW: u64 = 1_800_000_000;

fn mint(header: Value, claims: Value) -> String {
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", B64URL.encode(mac.finalize().into_bytes()))
}

fn token(claims: Value) -> String {
    mint(json!({"alg": "HS256", "kid": "k1"}), claims)
}

fn jwks_json() -> String {
    format!(
        r#"{{"keys":[{{"kty":"oct","kid":"k1","alg":"HS256","k":"{}"}}]}}"#,
        B64URL.encode(SECRET)
    )
}

/// A fake host: keys per provider, a map cache, a fixed clock.
struct Fake {
    keys: Vec<Option<Jwks>>,
    pending: bool,
    refetch: bool,
    cache: HashMap<(usize, Vec<u8>), Option<u64>>,
    kept: HashMap<(usize, Vec<u8>), Rc<Jwt>>,
    now: u64,
}

impl Fake {
    fn new(providers: usize) -> Self {
        Self {
            keys: (0..providers)
                .map(|_| Some(jwks::parse(jwks_json().as_bytes()).unwrap()))
                .collect(),
            pending: false,
            refetch: false,
            cache: HashMap::new(),
            kept: HashMap::new(),
            now: NOW,
        }
    }
}

impl Env for Fake {
    fn keys(&self, provider: usize) -> Keys<'_> {
        if self.pending {
            return Keys::Pending;
        }
        match self.keys.get(provider) {
            Some(Some(jwks)) => Keys::Ready(jwks),
            _ => Keys::FetchFailed,
        }
    }
    fn unknown_kid(&mut self, _provider: usize) -> bool {
        self.refetch
    }
    fn cache_lookup(&mut self, provider: usize, token: &[u8]) -> bool {
        self.cache.contains_key(&(provider, token.to_vec()))
    }
    fn cache_insert(&mut self, provider: usize, token: &[u8], exp: Option<u64>) {
        self.cache.insert((provider, token.to_vec()), exp);
    }
    fn parsed(&mut self, provider: usize, token: &[u8]) -> Option<Rc<Jwt>> {
        self.kept.get(&(provider, token.to_vec())).cloned()
    }
    fn keep_parsed(&mut self, provider: usize, token: &[u8], jwt: &Rc<Jwt>) {
        self.kept.insert((provider, token.to_vec()), Rc::clone(jwt));
    }
    fn now(&self) -> u64 {
        self.now
    }
}

fn plan(provider_extra: &str, top_extra: &str) -> Plan {
    let jwks = serde_json::to_string(&jwks_json()).unwrap();
    let json = format!(
        r#"{{"providers": {{
              "a": {{"issuer": "https://a", "audiences": ["api"], "local_jwks": {{"inline_string": {jwks}}}{provider_extra}}},
              "b": {{"issuer": "https://b", "from_headers": [{{"name": "x-b-token"}}], "local_jwks": {{"inline_string": {jwks}}}}}
            }}{top_extra}}}"#
    );
    Plan::new(validate(json.as_bytes()).unwrap())
}

fn rules(requires: &str) -> String {
    format!(
        r#","rules": [{{"match": {{"prefix": "/open"}}}}, {{"match": {{"prefix": "/"}}, "requires": {requires}}}]"#
    )
}

fn request<'a>(method: &'a [u8], path: &'a [u8], headers: &'a [(String, Vec<u8>)]) -> Request<'a> {
    Request {
        method,
        path,
        headers,
    }
}

fn bearer(token: &str) -> Vec<(String, Vec<u8>)> {
    vec![(
        "authorization".into(),
        format!("Bearer {token}").into_bytes(),
    )]
}

fn good_a() -> String {
    token(json!({"iss": "https://a", "aud": "api", "sub": "alice", "exp": NOW + 600}))
}

fn decide(plan: &Plan, path: &str, headers: &[(String, Vec<u8>)]) -> Outcome {
    plan.evaluate(
        &request(b"GET", path.as_bytes(), headers),
        &mut Fake::new(2),
    )
}

fn denied(outcome: &Outcome) -> Option<Status> {
    match outcome {
        Outcome::Deny(status) => Some(*status),
        _ => None,
    }
}

#[test]
fn provider_requirement_table() {
    let plan = plan("", &rules(r#"{"provider_name": "a"}"#));
    let cases: Vec<(Value, Option<Status>)> = vec![
        (
            json!({"iss": "https://a", "aud": "api", "exp": NOW + 10}),
            None,
        ),
        (
            json!({"iss": "https://a", "aud": ["x", "https://api/"], "exp": NOW + 10}),
            None,
        ),
        (
            json!({"iss": "https://evil", "aud": "api"}),
            Some(Status::JwtUnknownIssuer),
        ),
        (
            json!({"iss": "https://a", "aud": "other"}),
            Some(Status::JwtAudienceNotAllowed),
        ),
        (
            json!({"iss": "https://a", "aud": "api", "exp": NOW - 61}),
            Some(Status::JwtExpired),
        ),
        (
            json!({"iss": "https://a", "aud": "api", "exp": NOW - 60}),
            None,
        ),
        (
            json!({"iss": "https://a", "aud": "api", "nbf": NOW + 61}),
            Some(Status::JwtNotYetValid),
        ),
        (
            json!({"iss": "https://a", "aud": "api", "nbf": NOW + 60}),
            None,
        ),
    ];
    for (claims, want) in cases {
        let headers = bearer(&token(claims.clone()));
        assert_eq!(denied(&decide(&plan, "/x", &headers)), want, "{claims}");
    }
    assert_eq!(denied(&decide(&plan, "/x", &[])), Some(Status::JwtMissed));
    assert_eq!(denied(&decide(&plan, "/open", &[])), None);
    let forged = format!("{}x", good_a());
    assert_eq!(
        denied(&decide(&plan, "/x", &bearer(&forged))),
        Some(Status::JwtVerificationFail)
    );
}

#[test]
fn verified_token_is_removed_and_claims_become_headers() {
    let plan = plan(
        r#","forward_payload_header": "x-payload", "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]"#,
        &rules(r#"{"provider_name": "a"}"#),
    );
    let mut headers = bearer(&good_a());
    headers.push(("x-sub".into(), b"spoofed".to_vec()));
    let Outcome::Allow(m) = decide(&plan, "/x", &headers) else {
        panic!()
    };
    assert!(m.remove.contains(&"authorization".to_owned()));
    assert!(m.add.contains(&("x-sub".to_owned(), "alice".to_owned())));
    let payload = good_a().split('.').nth(1).unwrap().to_owned();
    assert!(m.add.contains(&("x-payload".to_owned(), payload)));
    m.apply(&mut headers);
    assert_eq!(
        headers,
        vec![
            ("x-payload".into(), headers[0].1.clone()),
            ("x-sub".into(), b"alice".to_vec())
        ]
    );
}

#[test]
fn single_writes_count_the_host_calls_of_a_header_by_header_apply() {
    let mut m = Mutations::default();
    assert_eq!(m.single_writes(), 0);
    m.remove.push("authorization".into());
    m.add.push(("x-sub".into(), "alice".into()));
    assert_eq!(m.single_writes(), 3);
    m.path = Some(b"/x".to_vec());
    assert_eq!(m.single_writes(), 4);
}

#[test]
fn query_token_is_stripped_from_the_path_unless_forwarded() {
    let plan_strip = plan("", &rules(r#"{"provider_name": "a"}"#));
    let path = format!("/x?access_token={}&y=1", good_a());
    let Outcome::Allow(m) = decide(&plan_strip, &path, &[]) else {
        panic!()
    };
    assert_eq!(m.path.as_deref(), Some(&b"/x?y=1"[..]));
    let plan_keep = plan(r#","forward": true"#, &rules(r#"{"provider_name": "a"}"#));
    let Outcome::Allow(m) = decide(&plan_keep, &path, &[]) else {
        panic!()
    };
    assert!(m.path.is_none() && m.remove.is_empty());
}

#[test]
fn requires_any_all_and_allow_missing_follow_jwt_authn() {
    let b_token = token(json!({"iss": "https://b"}));
    let b_header = vec![("x-b-token".to_owned(), b_token.clone().into_bytes())];
    let any = plan(
        "",
        &rules(
            r#"{"requires_any": {"requirements": [{"provider_name": "a"}, {"provider_name": "b"}]}}"#,
        ),
    );
    assert_eq!(denied(&decide(&any, "/x", &b_header)), None);
    assert_eq!(denied(&decide(&any, "/x", &[])), Some(Status::JwtMissed));
    let expired = bearer(&token(json!({"iss": "https://a", "aud": "api", "exp": 1})));
    assert_eq!(
        denied(&decide(&any, "/x", &expired)),
        Some(Status::JwtExpired)
    );

    let all = plan(
        "",
        &rules(
            r#"{"requires_all": {"requirements": [{"provider_name": "a"}, {"provider_name": "b"}]}}"#,
        ),
    );
    assert_eq!(
        denied(&decide(&all, "/x", &b_header)),
        Some(Status::JwtMissed)
    );
    let mut both = bearer(&good_a());
    both.extend(b_header.clone());
    assert_eq!(denied(&decide(&all, "/x", &both)), None);

    let optional = plan("", &rules(r#"{"allow_missing": {}}"#));
    assert_eq!(denied(&decide(&optional, "/x", &[])), None);
    assert_eq!(
        denied(&decide(&optional, "/x", &expired)),
        Some(Status::JwtExpired)
    );
    assert_eq!(denied(&decide(&optional, "/x", &b_header)), None);

    let anything = plan(
        r#","claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]"#,
        &rules(r#"{"allow_missing_or_failed": {}}"#),
    );
    let Outcome::Allow(m) = decide(&anything, "/x", &expired) else {
        panic!()
    };
    assert!(
        m.add.is_empty(),
        "a failed token must not produce claim headers"
    );
    assert!(m.remove.contains(&"x-sub".to_owned()));
    let Outcome::Allow(m) = decide(&anything, "/x", &bearer(&good_a())) else {
        panic!()
    };
    assert!(m.add.contains(&("x-sub".to_owned(), "alice".to_owned())));
}

#[test]
fn provider_and_audiences_replaces_the_audiences() {
    let plan = plan(
        "",
        &rules(r#"{"provider_and_audiences": {"provider_name": "a", "audiences": ["other"]}}"#),
    );
    assert_eq!(
        denied(&decide(&plan, "/x", &bearer(&good_a()))),
        Some(Status::JwtAudienceNotAllowed)
    );
}

#[test]
fn lifetime_limits() {
    let plan = plan(
        r#","max_lifetime": "3600s""#,
        &rules(r#"{"provider_name": "a"}"#),
    );
    let long = bearer(&token(
        json!({"iss": "https://a", "aud": "api", "exp": NOW + 3600}),
    ));
    assert_eq!(
        denied(&decide(&plan, "/x", &long)),
        Some(Status::JwtExpired)
    );
    let short = bearer(&token(
        json!({"iss": "https://a", "aud": "api", "exp": NOW + 3599}),
    ));
    assert_eq!(denied(&decide(&plan, "/x", &short)), None);
    let required = plan_with_exp_required();
    let no_exp = bearer(&token(json!({"iss": "https://a", "aud": "api"})));
    assert_eq!(
        denied(&decide(&required, "/x", &no_exp)),
        Some(Status::JwtExpired)
    );
}

fn plan_with_exp_required() -> Plan {
    plan(
        r#","require_expiration": true"#,
        &rules(r#"{"provider_name": "a"}"#),
    )
}

#[test]
fn claim_rules_give_403_when_claims_do_not_match() {
    let plan = plan(
        "",
        &format!(
            "{},\"claim_rules\": [{{\"match\": {{\"prefix\": \"/admin\"}}, \"claims\": {{\"scope\": [\"admin\"]}}}}]",
            rules(r#"{"provider_name": "a"}"#)
        ),
    );
    assert_eq!(
        denied(&decide(&plan, "/admin", &bearer(&good_a()))),
        Some(Status::JwtClaimsNotAllowed)
    );
    let admin = token(json!({"iss": "https://a", "aud": "api", "scope": "read admin"}));
    assert_eq!(denied(&decide(&plan, "/admin", &bearer(&admin))), None);
    assert_eq!(denied(&decide(&plan, "/user", &bearer(&good_a()))), None);
}

#[test]
fn cors_preflight_bypasses_when_enabled() {
    let plan = plan(
        "",
        &format!(
            "{},\"bypass_cors_preflight\": true",
            rules(r#"{"provider_name": "a"}"#)
        ),
    );
    let headers = vec![
        ("origin".to_owned(), b"https://site".to_vec()),
        ("access-control-request-method".to_owned(), b"POST".to_vec()),
    ];
    let outcome = plan.evaluate(&request(b"OPTIONS", b"/x", &headers), &mut Fake::new(2));
    assert_eq!(denied(&outcome), None);
    let outcome = plan.evaluate(
        &request(b"OPTIONS", b"/x", &headers[..1]),
        &mut Fake::new(2),
    );
    assert_eq!(denied(&outcome), Some(Status::JwtMissed));
}

#[test]
fn keys_pending_waits_and_unknown_kid_can_wait_for_a_refetch() {
    let plan = plan("", &rules(r#"{"provider_name": "a"}"#));
    let mut env = Fake::new(2);
    env.pending = true;
    let headers = bearer(&good_a());
    assert_eq!(
        plan.evaluate(&request(b"GET", b"/x", &headers), &mut env),
        Outcome::Wait
    );
    let other_kid = bearer(&mint(
        json!({"alg": "HS256", "kid": "k2"}),
        json!({"iss": "https://a", "aud": "api"}),
    ));
    let mut env = Fake::new(2);
    env.refetch = true;
    assert_eq!(
        plan.evaluate(&request(b"GET", b"/x", &other_kid), &mut env),
        Outcome::Wait
    );
    env.refetch = false;
    assert_eq!(
        denied(&plan.evaluate(&request(b"GET", b"/x", &other_kid), &mut env)),
        Some(Status::JwksKidAlgMismatch)
    );
    let mut env = Fake::new(2);
    env.keys[0] = None;
    assert_eq!(
        denied(&plan.evaluate(&request(b"GET", b"/x", &headers), &mut env)),
        Some(Status::JwksFetchFail)
    );
}

#[test]
fn cache_is_used_only_when_configured_and_still_checks_time() {
    let plan = plan(
        r#","jwt_cache_config": {}"#,
        &rules(r#"{"provider_name": "a"}"#),
    );
    let mut env = Fake::new(2);
    let headers = bearer(&good_a());
    assert_eq!(
        denied(&plan.evaluate(&request(b"GET", b"/x", &headers), &mut env)),
        None
    );
    assert_eq!(env.cache.len(), 1);
    // Keys gone: the cached verification still answers.
    env.keys[0] = None;
    assert_eq!(
        denied(&plan.evaluate(&request(b"GET", b"/x", &headers), &mut env)),
        None
    );
    // But time claims are re-checked on a hit.
    env.now = NOW + 600 + 61;
    assert_eq!(
        denied(&plan.evaluate(&request(b"GET", b"/x", &headers), &mut env)),
        Some(Status::JwtExpired)
    );
}

#[test]
fn a_cache_hit_uses_the_kept_parse_and_a_miss_parses_again() {
    let plan = plan(
        r#","jwt_cache_config": {}, "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]"#,
        &rules(r#"{"provider_name": "a"}"#),
    );
    let mut env = Fake::new(2);
    let headers = bearer(&good_a());
    let sub = |outcome: &Outcome| match outcome {
        Outcome::Allow(m) => m
            .add
            .iter()
            .find(|(n, _)| n == "x-sub")
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    // A miss parses, verifies, then keeps the parse.
    let first = plan.evaluate(&request(b"GET", b"/x", &headers), &mut env);
    assert_eq!(sub(&first).as_deref(), Some("alice"));
    assert_eq!(env.kept.len(), 1);
    // Mark the kept copy, so its use shows in the claim header.
    for jwt in env.kept.values_mut() {
        let mut marked = (**jwt).clone();
        marked.claims.insert("sub".into(), json!("kept-copy"));
        *jwt = Rc::new(marked);
    }
    let hit = plan.evaluate(&request(b"GET", b"/x", &headers), &mut env);
    assert_eq!(sub(&hit).as_deref(), Some("kept-copy"));
    // Time is still checked against the kept copy.
    env.now = NOW + 600 + 61;
    assert_eq!(
        denied(&plan.evaluate(&request(b"GET", b"/x", &headers), &mut env)),
        Some(Status::JwtExpired)
    );
    env.now = NOW;
    // Without a cache hit the kept copy is never consulted: the token is
    // parsed (and verified) again, and the fresh parse is kept.
    env.cache.clear();
    let miss = plan.evaluate(&request(b"GET", b"/x", &headers), &mut env);
    assert_eq!(sub(&miss).as_deref(), Some("alice"));
    let hit = plan.evaluate(&request(b"GET", b"/x", &headers), &mut env);
    assert_eq!(sub(&hit).as_deref(), Some("alice"));
}

proptest::proptest! {
    #[test]
    fn random_authorization_headers_never_panic_and_are_denied(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let plan = plan("", &rules(r#"{"provider_name": "a"}"#));
        let headers = vec![("authorization".to_owned(), bytes)];
        let outcome = plan.evaluate(&request(b"GET", b"/x", &headers), &mut Fake::new(2));
        proptest::prop_assert!(matches!(outcome, Outcome::Deny(s) if s.http_code() == 401));
    }
}
