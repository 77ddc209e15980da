//! Prepared keys shared while they live. Parsing a key prepares it for
//! fast verification (an RSA modulus's `R^2 mod n`, an EC key's tables),
//! and a refreshed JWKS is parsed while the old set still lives: without
//! sharing, every refresh would prepare each key again, on the worker,
//! while requests wait, and hold two of each. A key parsed again while a
//! key with the same public value lives takes that key's prepared form.

use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The prepared forms of this VM's live keys, by public value.
pub type Live<K, V> = Mutex<Vec<(K, Weak<V>)>>;

/// The prepared form of `key`: a live one, or a new one from `prepare`
/// (`None` when it refuses).
pub fn share<K: PartialEq + Clone, V>(
    live: &Live<K, V>,
    key: &K,
    prepare: impl FnOnce() -> Option<V>,
) -> Option<Arc<V>> {
    let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
    live.retain(|(_, prepared)| prepared.strong_count() > 0);
    if let Some(prepared) = live
        .iter()
        .find(|(known, _)| known == key)
        .and_then(|(_, prepared)| prepared.upgrade())
    {
        return Some(prepared);
    }
    let prepared = Arc::new(prepare()?);
    live.push((key.clone(), Arc::downgrade(&prepared)));
    Some(prepared)
}
