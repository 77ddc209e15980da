//! The pure decision: which rule applies, which tokens a requirement needs,
//! whether each verifies (issuer, time, lifetime, audience, signature), and
//! what the request looks like afterwards. jwt_authn's verifier tree and
//! authenticator, made synchronous: when keys are not there yet the answer
//! is [`Outcome::Wait`] and the caller runs [`Plan::evaluate`] again once
//! they are.

use std::rc::Rc;

use crate::claims;
use crate::config::{Config, JwksSource, Location, Requirement};
use crate::crypto;
use crate::extract::{remove_param, Extractor, Found, Request};
use crate::jwks::Jwks;
use crate::jwt::{self, Jwt, B64URL};
use crate::matcher::PathMatch;
use crate::status::Status;
use base64::Engine;

/// What the host side knows about a provider's keys right now.
#[derive(Debug, Clone, Copy)]
pub enum Keys<'a> {
    /// A key set is loaded.
    Ready(&'a Jwks),
    /// The first fetch (or a re-fetch the caller asked for) is in flight.
    Pending,
    /// Fetching failed and no earlier key set exists.
    FetchFailed,
}

/// The host side of a decision: keys, the verified-token cache, the clock.
pub trait Env {
    /// The keys of provider `provider`.
    fn keys(&self, provider: usize) -> Keys<'_>;
    /// A token named a `kid` the keys lack. Return true when a re-fetch was
    /// started (the request then waits), false when rate-limited or local.
    fn unknown_kid(&mut self, provider: usize) -> bool;
    /// Whether the cache holds `token` as verified for `provider`.
    fn cache_lookup(&mut self, provider: usize, token: &[u8]) -> bool;
    /// Records `token` as verified for `provider` until `exp`.
    fn cache_insert(&mut self, provider: usize, token: &[u8], exp: Option<u64>);
    /// A parsed copy of `token` kept by [`Env::keep_parsed`], asked only
    /// after [`Env::cache_lookup`] hit for the same token. Parsing is
    /// deterministic, so the copy stands for parsing again; hosts without
    /// one return `None`.
    fn parsed(&mut self, _provider: usize, _token: &[u8]) -> Option<Rc<Jwt>> {
        None
    }
    /// Keeps `jwt`, parsed from `token` and verified for `provider`, for
    /// [`Env::parsed`].
    fn keep_parsed(&mut self, _provider: usize, _token: &[u8], _jwt: &Rc<Jwt>) {}
    /// Now, Unix seconds.
    fn now(&self) -> u64;
}

/// Changes to make to an allowed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutations {
    /// Header names to remove (before adding).
    pub remove: Vec<String>,
    /// Headers to set.
    pub add: Vec<(String, String)>,
    /// A new `:path` (a query-parameter token removed).
    pub path: Option<Vec<u8>>,
    /// Ask Envoy to recompute the route (`clear_route_cache`).
    pub clear_route_cache: bool,
}

impl Mutations {
    /// Whether anything changes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty() && self.path.is_none()
    }

    /// The host calls that make these changes one header at a time: a
    /// removal per removed or added name, an addition per added header,
    /// and one `:path` write.
    #[must_use]
    pub fn single_writes(&self) -> usize {
        self.remove.len() + 2 * self.add.len() + usize::from(self.path.is_some())
    }

    /// Applies the changes to a header list (including `:path`).
    pub fn apply(&self, headers: &mut Vec<(String, Vec<u8>)>) {
        let added: Vec<&str> = self.add.iter().map(|(n, _)| n.as_str()).collect();
        headers.retain(|(n, _)| !self.remove.contains(n) && !added.contains(&n.as_str()));
        for (name, value) in &self.add {
            headers.push((name.clone(), value.clone().into_bytes()));
        }
        if let Some(path) = &self.path {
            match headers.iter_mut().find(|(n, _)| n == ":path") {
                Some(slot) => slot.1.clone_from(path),
                None => headers.push((":path".into(), path.clone())),
            }
        }
    }
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Let the request through with these changes.
    Allow(Mutations),
    /// Reply with `status`'s code and message.
    Deny(Status),
    /// Keys are on their way: pause and evaluate again.
    Wait,
}

/// A requirement with its extractors built once.
#[derive(Debug, Clone)]
enum Node {
    None,
    Provider {
        provider: usize,
        audiences: Option<Vec<String>>,
        extractor: Extractor,
    },
    Any(Vec<Node>),
    All(Vec<Node>),
    AllowMissing(Extractor),
    AllowMissingOrFailed(Extractor),
}

/// The config compiled for evaluation.
#[derive(Debug)]
pub struct Plan {
    /// The validated config.
    pub config: Config,
    rules: Vec<(PathMatch, Node)>,
}

/// Marker: keys are pending.
struct Pending;

/// One evaluation's running state.
struct Run<'p, 'r, E: Env> {
    plan: &'p Plan,
    env: &'r mut E,
    request: &'r Request<'r>,
    mutations: Mutations,
    verified: Vec<Rc<Jwt>>,
}

impl Plan {
    /// Builds the extractors of every rule's requirement tree.
    #[must_use]
    pub fn new(config: Config) -> Self {
        let rules = config
            .rules
            .iter()
            .map(|rule| (rule.route.clone(), build(&config, &rule.requires)))
            .collect();
        Self { config, rules }
    }

    /// Indices of providers whose keys are fetched remotely.
    pub fn remote_providers(&self) -> impl Iterator<Item = usize> + '_ {
        self.config
            .providers
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.jwks, JwksSource::Remote(_)))
            .map(|(i, _)| i)
    }

    /// Decides on one request.
    pub fn evaluate<E: Env>(&self, request: &Request<'_>, env: &mut E) -> Outcome {
        if self.config.bypass_cors_preflight && is_cors_preflight(request) {
            return Outcome::Allow(Mutations::default());
        }
        let Some((_, node)) = self.rules.iter().find(|(m, _)| m.matches(request.path)) else {
            return self.claim_check(request.path, &[], Mutations::default());
        };
        let mut run = Run {
            plan: self,
            env,
            request,
            mutations: Mutations::default(),
            verified: Vec::new(),
        };
        match run.node(node) {
            Err(Pending) => Outcome::Wait,
            Ok(Status::Ok) => {
                let Run {
                    mutations,
                    verified,
                    ..
                } = run;
                self.claim_check(request.path, &verified, mutations)
            }
            Ok(status) => Outcome::Deny(status),
        }
    }

    /// The `claim_rules` extension: the first matching rule must be
    /// satisfied by one verified token (403 otherwise; 401 "Jwt is
    /// missing" when no token was verified at all).
    fn claim_check(&self, path: &[u8], verified: &[Rc<Jwt>], mutations: Mutations) -> Outcome {
        let Some(rule) = self
            .config
            .claim_rules
            .iter()
            .find(|r| r.route.matches(path))
        else {
            return Outcome::Allow(mutations);
        };
        if verified.is_empty() {
            return Outcome::Deny(Status::JwtMissed);
        }
        if verified
            .iter()
            .any(|jwt| claims::satisfies(&jwt.claims, rule))
        {
            Outcome::Allow(mutations)
        } else {
            Outcome::Deny(Status::JwtClaimsNotAllowed)
        }
    }
}

fn build(config: &Config, requirement: &Requirement) -> Node {
    let providers = |ids: &[usize]| -> Extractor {
        Extractor::new(ids.iter().filter_map(|&i| config.providers.get(i)))
    };
    match requirement {
        Requirement::None => Node::None,
        Requirement::Provider {
            provider,
            audiences,
        } => Node::Provider {
            provider: *provider,
            audiences: audiences.clone(),
            extractor: providers(&[*provider]),
        },
        Requirement::Any(children) => {
            Node::Any(children.iter().map(|c| build(config, c)).collect())
        }
        Requirement::All(children) => {
            Node::All(children.iter().map(|c| build(config, c)).collect())
        }
        Requirement::AllowMissing(ids) => Node::AllowMissing(providers(ids)),
        Requirement::AllowMissingOrFailed(ids) => Node::AllowMissingOrFailed(providers(ids)),
    }
}

/// jwt_authn's CORS preflight test: OPTIONS with non-empty `origin` and
/// `access-control-request-method`.
fn is_cors_preflight(request: &Request<'_>) -> bool {
    request.method == b"OPTIONS"
        && request.header("origin").is_some_and(|v| !v.is_empty())
        && request
            .header("access-control-request-method")
            .is_some_and(|v| !v.is_empty())
}

/// jwt_verify_lib's audience normalisation: scheme and trailing slash do
/// not count.
fn normalize_audience(aud: &str) -> &str {
    let aud = aud
        .strip_prefix("http://")
        .or_else(|| aud.strip_prefix("https://"))
        .unwrap_or(aud);
    aud.strip_suffix('/').unwrap_or(aud)
}

impl<E: Env> Run<'_, '_, E> {
    fn sanitize(&mut self, extractor: &Extractor) {
        for name in extractor.sanitize() {
            if !self.mutations.remove.contains(name) {
                self.mutations.remove.push(name.clone());
            }
        }
    }

    fn node(&mut self, node: &Node) -> Result<Status, Pending> {
        match node {
            Node::None => Ok(Status::Ok),
            Node::Provider {
                provider,
                audiences,
                extractor,
            } => {
                self.sanitize(extractor);
                let found = extractor.extract(self.request);
                if found.is_empty() {
                    return Ok(Status::JwtMissed);
                }
                // jwt_authn takes tokens from the back; every one must verify.
                for token in found.iter().rev() {
                    let status = self.token(token, Some(*provider), audiences.as_deref())?;
                    if !status.is_ok() {
                        return Ok(status);
                    }
                }
                Ok(Status::Ok)
            }
            Node::AllowMissingOrFailed(extractor) => {
                self.sanitize(extractor);
                for token in extractor.extract(self.request).iter().rev() {
                    self.token(token, None, None)?;
                }
                Ok(Status::Ok)
            }
            Node::AllowMissing(extractor) => {
                self.sanitize(extractor);
                // Stricter than jwt_authn with several tokens (which keeps
                // only the last token's status): any bad token fails.
                for token in extractor.extract(self.request).iter().rev() {
                    let status = self.token(token, None, None)?;
                    if !status.is_ok() {
                        return Ok(status);
                    }
                }
                Ok(Status::Ok)
            }
            Node::All(children) => {
                for child in children {
                    let status = self.node(child)?;
                    if !status.is_ok() {
                        return Ok(status);
                    }
                }
                Ok(Status::Ok)
            }
            Node::Any(children) => {
                // jwt_authn: the first success wins; otherwise the last
                // failure that is not "missing"/"unknown issuer" (a token
                // meant for another provider), else "missing".
                let mut result = Status::JwtMissed;
                for child in children {
                    let status = self.node(child)?;
                    if status.is_ok() {
                        return Ok(status);
                    }
                    if !matches!(status, Status::JwtMissed | Status::JwtUnknownIssuer) {
                        result = status;
                    }
                }
                Ok(result)
            }
        }
    }

    /// One token: jwt_authn's authenticator steps, in its order.
    fn token(
        &mut self,
        found: &Found<'_>,
        provider: Option<usize>,
        audiences: Option<&[String]>,
    ) -> Result<Status, Pending> {
        let config = &self.plan.config;
        let cache_on = provider
            .and_then(|p| config.providers.get(p))
            .is_some_and(|p| p.jwt_cache_size.is_some());
        let cache_hit = match provider {
            Some(p) if cache_on => self.env.cache_lookup(p, &found.token),
            _ => false,
        };
        let kept = provider
            .filter(|_| cache_hit)
            .and_then(|p| self.env.parsed(p, &found.token));
        let was_kept = kept.is_some();
        let jwt = match kept {
            Some(jwt) => jwt,
            None => match jwt::parse(&found.token, config.max_jwt_bytes) {
                Ok(jwt) => Rc::new(jwt),
                Err(status) => return Ok(status),
            },
        };
        if !found.issuers.allows(&jwt.iss) {
            return Ok(Status::JwtUnknownIssuer);
        }
        let index = match provider {
            Some(p) => p,
            None => match find_by_issuer(config, &jwt.iss) {
                Some(p) => p,
                None => return Ok(Status::JwtUnknownIssuer),
            },
        };
        let Some(p) = config.providers.get(index) else {
            return Ok(Status::JwtUnknownIssuer);
        };
        let now = self.env.now();
        if jwt
            .nbf
            .is_some_and(|nbf| now.saturating_add(p.clock_skew) < nbf)
        {
            return Ok(Status::JwtNotYetValid);
        }
        if jwt
            .exp
            .is_some_and(|exp| now > exp.saturating_add(p.clock_skew))
        {
            return Ok(Status::JwtExpired);
        }
        if p.require_expiration || p.max_lifetime.is_some() {
            let Some(exp) = jwt.exp else {
                return Ok(Status::JwtExpired);
            };
            // jwt_authn: the remaining lifetime (exp - now) must be below
            // max_lifetime.
            if let Some(max) = p.max_lifetime {
                if std::time::Duration::from_secs(exp.saturating_sub(now)) >= max {
                    return Ok(Status::JwtExpired);
                }
            }
        }
        let allowed = audiences.unwrap_or(&p.audiences);
        if !allowed.is_empty()
            && !jwt.audiences.iter().any(|a| {
                allowed
                    .iter()
                    .any(|b| normalize_audience(a) == normalize_audience(b))
            })
        {
            return Ok(Status::JwtAudienceNotAllowed);
        }
        if !cache_hit {
            let status = match self.env.keys(index) {
                Keys::Pending => return Err(Pending),
                Keys::FetchFailed => Status::JwksFetchFail,
                Keys::Ready(jwks) => crypto::verify_jwt(&jwt, jwks),
            };
            if status == Status::JwksKidAlgMismatch
                && jwt.kid.is_some()
                && self.env.unknown_kid(index)
            {
                return Err(Pending);
            }
            if !status.is_ok() {
                return Ok(status);
            }
            if cache_on {
                self.env.cache_insert(index, &found.token, jwt.exp);
            }
        }
        if cache_on && !was_kept {
            self.env.keep_parsed(index, &found.token, &jwt);
        }
        self.good(index, found, jwt);
        Ok(Status::Ok)
    }

    /// jwt_authn's `handleGoodJwt`: payload header, claim headers, token
    /// removal.
    fn good(&mut self, index: usize, found: &Found<'_>, jwt: Rc<Jwt>) {
        let Some(p) = self.plan.config.providers.get(index) else {
            return;
        };
        if let Some(header) = &p.forward_payload_header {
            let mut payload = jwt.payload_b64.clone();
            if p.pad_forward_payload_header {
                // Re-encode with padding from the decoded bytes.
                if let Ok(bytes) = B64URL.decode(&jwt.payload_b64) {
                    payload = base64::engine::general_purpose::URL_SAFE.encode(bytes);
                }
            }
            self.mutations.add.push((header.clone(), payload));
        }
        let mut added = false;
        for (header, path) in &p.claim_to_headers {
            if let Some(value) = jwt::claim_at(&jwt.claims, path).and_then(claims::header_value) {
                self.mutations.add.push((header.clone(), value));
                added = true;
            }
        }
        // jwt_authn clears the route cache only when asked to and a claim
        // header was actually added.
        if p.clear_route_cache && added {
            self.mutations.clear_route_cache = true;
        }
        if !p.forward {
            match found.location {
                Location::Header { name, .. } => {
                    if !self.mutations.remove.contains(name) {
                        self.mutations.remove.push(name.clone());
                    }
                }
                Location::Param(name) => {
                    let current = self.mutations.path.as_deref().unwrap_or(self.request.path);
                    self.mutations.path = Some(remove_param(current, name));
                }
                // jwt_authn does not remove cookie tokens either.
                Location::Cookie(_) => {}
            }
        }
        self.verified.push(jwt);
    }
}

/// jwt_authn's `findByIssuer`: the first provider with this issuer, else
/// the first with none.
fn find_by_issuer(config: &Config, iss: &str) -> Option<usize> {
    let providers = &config.providers;
    providers
        .iter()
        .position(|p| p.issuer == iss)
        .or_else(|| providers.iter().position(|p| p.issuer.is_empty()))
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
