//! The verified-token cache's storage scheme, shared by every worker VM
//! through proxy-wasm shared data (so a token is verified once per sidecar,
//! not once per worker).
//!
//! Scheme: a direct-mapped table of `jwt_cache_size` slots per provider.
//! Key `jwt_auth.cache.<provider fingerprint, hex>.<slot>`, where `slot` is
//! SipHash-1-3 (fixed keys, so every VM agrees) of the token modulo the
//! size. Value: `exp` as 8 bytes little-endian (`u64::MAX` for none), then
//! the whole token. A lookup hits only when the stored token is byte-equal,
//! so a hash collision (even a crafted one) can only evict, never admit.
//! The table never grows past `size` entries per provider; a new token
//! overwrites its slot. Time claims are re-checked on every hit, so an
//! entry is only ever used until `exp` (plus clock skew). Like jwt_authn's
//! cache, entries outlive a JWKS rotation until they expire.

use std::hash::{DefaultHasher, Hash, Hasher};

/// The shared-data key of `token`'s slot.
#[must_use]
pub fn slot_key(fingerprint: u64, size: u32, token: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    token.hash(&mut hasher);
    let slot = hasher.finish() % u64::from(size.max(1));
    format!("jwt_auth.cache.{fingerprint:016x}.{slot}")
}

/// The stored value for `token`.
#[must_use]
pub fn encode(token: &[u8], exp: Option<u64>) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + token.len());
    value.extend_from_slice(&exp.unwrap_or(u64::MAX).to_le_bytes());
    value.extend_from_slice(token);
    value
}

/// Whether a stored value is an entry for exactly `token` that has not
/// expired at `now` (`skew` seconds of grace, as for `exp` itself).
#[must_use]
pub fn hit(value: &[u8], token: &[u8], now: u64, skew: u64) -> bool {
    let (Some(exp), Some(stored)) = (value.get(..8), value.get(8..)) else {
        return false;
    };
    let exp = u64::from_le_bytes(exp.try_into().unwrap_or([0; 8]));
    stored == token && now <= exp.saturating_add(skew)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_hit_only_the_same_token_until_exp() {
        let value = encode(b"a.b.c", Some(100));
        assert!(hit(&value, b"a.b.c", 100, 0));
        assert!(hit(&value, b"a.b.c", 160, 60));
        assert!(!hit(&value, b"a.b.c", 161, 60));
        assert!(!hit(&value, b"a.b.d", 0, 0));
        assert!(hit(&encode(b"t", None), b"t", u64::MAX, 0));
        assert!(!hit(b"short", b"t", 0, 0));
    }

    #[test]
    fn slots_are_bounded_by_the_size_and_stable() {
        let key = slot_key(1, 3, b"token");
        assert_eq!(key, slot_key(1, 3, b"token"));
        let slot: u64 = key.rsplit('.').next().unwrap().parse().unwrap();
        assert!(slot < 3);
        assert!(key.starts_with("jwt_auth.cache.0000000000000001."));
    }
}
