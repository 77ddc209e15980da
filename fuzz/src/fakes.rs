//! Native stand-ins for the host calls the pure cores reach through traits:
//! rate-limit's shared data, metrics' metric calls, jwt-auth's key and cache
//! environment. Each keeps only what the targets check.

use std::collections::{HashMap, HashSet};

use jwt_auth::auth::{Env, Keys};
use jwt_auth::jwks::Jwks;
use metrics::registry::MetricSink;
use metrics::stats::MetricKind;
use rate_limit::limiter::{SetError, SharedStore};

/// Shared data as proxy-wasm hosts keep it (CAS stamps from 1, a stale
/// stamp refused), optionally corrupted: `garbage` is what a get returns for
/// every key instead of the stored value, as if another plugin in the same
/// `vm_id` wrote there.
#[derive(Debug, Default)]
pub struct MemStore {
    map: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// Returned by every get instead of the stored value, when set.
    pub garbage: Option<Vec<u8>>,
}

impl MemStore {
    /// A store whose every get returns `garbage` for keys that exist.
    #[must_use]
    pub fn corrupted(garbage: Vec<u8>) -> Self {
        Self {
            garbage: Some(garbage),
            ..Self::default()
        }
    }

    /// Keys written so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing was written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl SharedStore for MemStore {
    fn get(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        let (value, cas) = self.map.get(key)?;
        Some((self.garbage.clone().unwrap_or_else(|| value.clone()), *cas))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let current = self.map.get(key).map(|(_, c)| *c);
        if cas != 0 && current.is_some_and(|c| c != cas) {
            return Err(SetError::CasMismatch);
        }
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.map
            .insert(key.to_owned(), (value.to_vec(), self.next_cas));
        Ok(())
    }
}

/// Metric calls: ids by name, every defined name kept.
#[derive(Debug, Default)]
pub struct Sink {
    ids: HashMap<String, u32>,
    /// Every metric name defined.
    pub names: HashSet<String>,
}

impl MetricSink for Sink {
    fn define(&mut self, _kind: MetricKind, name: &str) -> Option<u32> {
        let next = u32::try_from(self.ids.len()).ok()?;
        self.names.insert(name.to_owned());
        Some(*self.ids.entry(name.to_owned()).or_insert(next))
    }

    fn increment(&mut self, _id: u32, _delta: i64) {}

    fn record(&mut self, _id: u32, _value: u64) {}
}

/// jwt-auth's environment: every provider's keys ready (local key sets), a
/// map cache, a fixed clock.
pub struct JwtEnv<'k> {
    /// Keys per provider index; `None` is a provider whose fetch failed.
    pub keys: Vec<Option<&'k Jwks>>,
    /// Verified tokens per provider.
    pub cache: HashSet<(usize, Vec<u8>)>,
    /// Unix seconds.
    pub now: u64,
}

impl Env for JwtEnv<'_> {
    fn keys(&self, provider: usize) -> Keys<'_> {
        match self.keys.get(provider) {
            Some(Some(jwks)) => Keys::Ready(jwks),
            _ => Keys::FetchFailed,
        }
    }

    fn unknown_kid(&mut self, _provider: usize) -> bool {
        false
    }

    fn cache_lookup(&mut self, provider: usize, token: &[u8]) -> bool {
        self.cache.contains(&(provider, token.to_vec()))
    }

    fn cache_insert(&mut self, provider: usize, token: &[u8], _exp: Option<u64>) {
        // Bounded like the real cache: a fuzz run must not grow without end.
        if self.cache.len() > 256 {
            self.cache.clear();
        }
        self.cache.insert((provider, token.to_vec()));
    }

    fn now(&self) -> u64 {
        self.now
    }
}
