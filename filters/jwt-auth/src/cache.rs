//! The verified-token cache's storage scheme, shared by every worker VM
//! through proxy-wasm shared data (so a token is verified once per sidecar,
//! not once per worker).
//!
//! Scheme: a direct-mapped table of `jwt_cache_size` slots per provider.
//! Key `jwt_auth.cache.<provider fingerprint, hex>.<slot>`, where `slot` is
//! SipHash-1-3 (fixed keys, so every VM agrees) of the token's last 32
//! bytes (see [`slot`]) modulo the size. Value: `exp` as 8 bytes
//! little-endian (`u64::MAX` for none), then the whole token. A lookup
//! hits only when the stored token is byte-equal, so a hash collision (even
//! a crafted one) can only evict, never admit. The table never grows past
//! `size` entries per provider; a new token overwrites its slot. Time claims are re-checked on every hit, so an
//! entry is only ever used until `exp` (plus clock skew). Like jwt_authn's
//! cache, entries outlive a JWKS rotation until they expire.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;

use crate::jwt::Jwt;

/// How many bytes at the end of a token choose its slot.
pub const SLOT_BYTES: usize = 32;

/// `token`'s slot in a table of `size` slots: SipHash of its last
/// [`SLOT_BYTES`] bytes. They are the signature's, which no one but the key
/// holder controls and which is uniformly distributed for every algorithm,
/// so they spread tokens as well as the whole token would. For a 720-byte
/// token this takes 9 ns instead of 110 ns, natively and in V8 alike
/// (2026-11-24): small, but every cache lookup pays it. Choosing the slot
/// decides nothing: a hit needs the whole stored token to be byte-equal.
#[must_use]
pub fn slot(size: u32, token: &[u8]) -> u64 {
    let tail = token
        .get(token.len().saturating_sub(SLOT_BYTES)..)
        .unwrap_or(token);
    let mut hasher = DefaultHasher::new();
    tail.hash(&mut hasher);
    hasher.finish() % u64::from(size.max(1))
}

/// The shared-data key of `slot` in the table of the provider with this
/// fingerprint.
#[must_use]
pub fn key(fingerprint: u64, slot: u64) -> String {
    format!("jwt_auth.cache.{fingerprint:016x}.{slot}")
}

/// The shared-data key of `token`'s slot.
#[must_use]
pub fn slot_key(fingerprint: u64, size: u32, token: &[u8]) -> String {
    key(fingerprint, slot(size, token))
}

/// Whether an entry with this `exp` (`None`: the token has none) may still
/// be used at `now`, with `skew` seconds of grace as for `exp` itself.
#[must_use]
pub fn fresh(exp: Option<u64>, now: u64, skew: u64) -> bool {
    now <= exp.unwrap_or(u64::MAX).saturating_add(skew)
}

/// One VM's parsed copies of verified tokens, in front of the shared
/// table: a token found here (byte-equal, not expired) is a cache hit with
/// no host call and no decoding (base64 and JSON, most of a hit's own
/// work), as in jwt_authn's per-worker cache. A token verified by this VM,
/// or found in the shared table, is kept here. Per provider it is
/// direct-mapped on the shared table's slots, so it holds at most
/// `jwt_cache_size` tokens per provider and VM, and only slots that were
/// used take memory.
#[derive(Debug, Default)]
pub struct ParsedTokens {
    providers: Vec<HashMap<u64, KeptToken>>,
}

/// A token's bytes and its parsed form.
type KeptToken = (Box<[u8]>, Rc<Jwt>);

impl ParsedTokens {
    /// The parsed copy of `token` in `slot` of `provider`'s table, if it is
    /// the same token.
    #[must_use]
    pub fn get(&self, provider: usize, slot: u64, token: &[u8]) -> Option<Rc<Jwt>> {
        let (kept, jwt) = self.providers.get(provider)?.get(&slot)?;
        same_token(kept, token).then(|| Rc::clone(jwt))
    }

    /// Keeps `jwt`, parsed from `token`, in `slot` of `provider`'s table,
    /// replacing whatever that slot held.
    pub fn keep(&mut self, provider: usize, slot: u64, token: &[u8], jwt: &Rc<Jwt>) {
        if self.providers.len() <= provider {
            self.providers.resize_with(provider + 1, HashMap::new);
        }
        if let Some(table) = self.providers.get_mut(provider) {
            table.insert(slot, (token.into(), Rc::clone(jwt)));
        }
    }
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
    same_token(stored, token) && fresh(Some(exp), now, skew)
}

/// Whether a kept token is `token`, compared eight bytes at a time and
/// always to the end.
///
/// Slice `==` calls `memcmp`, which the wasm32 target implements a byte at
/// a time: for the bench's 550-byte token that was most of a cache hit's
/// cost (perf on host-test's perf map, 2026-11-25). And it stops at the
/// first difference, so its time would tell a client how much of its token
/// matches the one kept in the slot; this takes the same time for every
/// token of a length.
fn same_token(kept: &[u8], token: &[u8]) -> bool {
    if kept.len() != token.len() {
        return false;
    }
    let (kept_words, kept_tail) = kept.as_chunks::<8>();
    let (token_words, token_tail) = token.as_chunks::<8>();
    let words = kept_words
        .iter()
        .zip(token_words)
        .fold(0u64, |diff, (a, b)| {
            diff | (u64::from_ne_bytes(*a) ^ u64::from_ne_bytes(*b))
        });
    let tail = kept_tail
        .iter()
        .zip(token_tail)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b));
    words == 0 && tail == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    proptest::proptest! {
        /// Equal exactly when `==` says so, for every length around the
        /// eight-byte words and a difference in any one byte.
        #[test]
        fn same_token_is_slice_equality(
            token in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            flip in proptest::option::of((0usize..40, 1u8..=255)),
            shorter in proptest::bool::ANY,
        ) {
            let mut other = token.clone();
            if let Some((at, bits)) = flip {
                if let Some(byte) = other.get_mut(at) {
                    *byte ^= bits;
                }
            }
            if shorter {
                other.pop();
            }
            proptest::prop_assert_eq!(same_token(&token, &other), token == other);
        }
    }

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
    fn parsed_tokens_answer_only_the_same_bytes_and_one_per_slot() {
        let token = |exp: u64| {
            let claims = serde_json::json!({"iss": "i", "exp": exp});
            let header = crate::jwt::B64URL.encode(r#"{"alg":"HS256"}"#);
            format!(
                "{header}.{}.c2ln",
                crate::jwt::B64URL.encode(claims.to_string())
            )
        };
        let (a, b) = (token(1), token(2));
        let parsed = |t: &str| Rc::new(crate::jwt::parse(t.as_bytes(), 8192).unwrap());
        let mut kept = ParsedTokens::default();
        assert!(kept.get(0, 0, a.as_bytes()).is_none());
        kept.keep(1, 0, a.as_bytes(), &parsed(&a));
        assert_eq!(kept.get(1, 0, a.as_bytes()).unwrap().exp, Some(1));
        // Another provider, another slot, other bytes: no answer.
        assert!(kept.get(0, 0, a.as_bytes()).is_none());
        assert!(kept.get(1, 1, a.as_bytes()).is_none());
        assert!(kept.get(1, 0, b.as_bytes()).is_none());
        // A new token in the slot replaces the old one.
        kept.keep(1, 0, b.as_bytes(), &parsed(&b));
        assert!(kept.get(1, 0, a.as_bytes()).is_none());
        assert_eq!(kept.get(1, 0, b.as_bytes()).unwrap().exp, Some(2));
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
