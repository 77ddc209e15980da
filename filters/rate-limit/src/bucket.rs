//! The token bucket and its shared-data encoding: pure integer arithmetic on
//! host-clock nanoseconds, no proxy-wasm import.
//!
//! Semantics follow Envoy's `local_ratelimit` token bucket: a bucket starts
//! full with `max_tokens`, gains `tokens_per_fill` every `fill_interval`
//! (never above `max_tokens`), and each admitted request takes one token.
//! Envoy refills from a timer; here the refill is computed when the bucket is
//! read, from the time of the last fill, which gives the same token counts
//! at the same instants without a timer per bucket.
//!
//! A full bucket carries no history (a new bucket is full too), so reading a
//! full bucket re-anchors it at "now": its next fill is one interval after
//! the request that finds it full, as for a bucket created by that request.
//! Re-anchoring only ever postpones fills, so it never admits more.

use crate::config::TokenBucket;

/// A bucket's parameters in integer nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    /// Bucket size, > 0.
    pub max_tokens: u32,
    /// Tokens per fill, 1..=max_tokens.
    pub tokens_per_fill: u32,
    /// Fill interval in ns, > 0.
    pub interval_ns: u64,
}

impl From<TokenBucket> for BucketSpec {
    fn from(bucket: TokenBucket) -> Self {
        Self {
            max_tokens: bucket.max_tokens,
            tokens_per_fill: bucket.tokens_per_fill,
            // Validation refuses zero; 584 years saturate harmlessly.
            interval_ns: u64::try_from(bucket.fill_interval.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }
}

/// A bucket's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    /// Tokens left.
    pub tokens: u32,
    /// Host time (ns) of the last fill, or of creation/re-anchoring.
    pub last_fill_ns: u64,
}

impl BucketSpec {
    /// A new, full bucket anchored at `now_ns`.
    pub fn fresh(&self, now_ns: u64) -> BucketState {
        BucketState {
            tokens: self.max_tokens,
            last_fill_ns: now_ns,
        }
    }

    /// `state` with the fills due by `now_ns` applied; a full result is
    /// re-anchored at `now_ns` (see the module doc). Tokens above
    /// `max_tokens` (a config that shrank the bucket) are clamped.
    ///
    /// # Examples
    /// ```
    /// use rate_limit::bucket::{BucketSpec, BucketState};
    /// let spec = BucketSpec { max_tokens: 10, tokens_per_fill: 3, interval_ns: 100 };
    /// let drained = BucketState { tokens: 0, last_fill_ns: 1000 };
    /// assert_eq!(spec.refill(drained, 1250), BucketState { tokens: 6, last_fill_ns: 1200 });
    /// assert_eq!(spec.refill(drained, 1500).tokens, 10);
    /// ```
    pub fn refill(&self, state: BucketState, now_ns: u64) -> BucketState {
        let elapsed = now_ns.saturating_sub(state.last_fill_ns);
        let fills = elapsed / self.interval_ns;
        let added = fills.saturating_mul(u64::from(self.tokens_per_fill));
        let tokens = u64::from(state.tokens)
            .saturating_add(added)
            .min(u64::from(self.max_tokens));
        if tokens >= u64::from(self.max_tokens) {
            return BucketState {
                tokens: self.max_tokens,
                // Never move the anchor back (clocks of different workers
                // may disagree slightly): that would bring a fill forward.
                last_fill_ns: now_ns.max(state.last_fill_ns),
            };
        }
        BucketState {
            // tokens < max_tokens, a u32.
            tokens: u32::try_from(tokens).unwrap_or(self.max_tokens),
            last_fill_ns: state
                .last_fill_ns
                .saturating_add(fills.saturating_mul(self.interval_ns)),
        }
    }

    /// Nanoseconds from `now_ns` to the next fill of `state` (already
    /// refilled to `now_ns`): at least 1.
    pub fn next_fill_in_ns(&self, state: BucketState, now_ns: u64) -> u64 {
        state
            .last_fill_ns
            .saturating_add(self.interval_ns)
            .saturating_sub(now_ns)
            .max(1)
    }
}

/// Whole seconds, rounded up: what `Retry-After` and the reset headers carry.
///
/// # Examples
/// ```
/// assert_eq!(rate_limit::bucket::ceil_secs(1), 1);
/// assert_eq!(rate_limit::bucket::ceil_secs(60_000_000_000), 60);
/// assert_eq!(rate_limit::bucket::ceil_secs(60_000_000_001), 61);
/// ```
pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// What one shared-data slot holds: the fingerprint of the key that owns the
/// bucket, and the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Fingerprint (a second 64-bit hash) of the owning key.
    pub fingerprint: u64,
    /// The bucket.
    pub state: BucketState,
}

/// Encoded size of a [`Slot`].
pub const SLOT_LEN: usize = 20;

impl Slot {
    /// Little-endian `fingerprint u64 | tokens u32 | last_fill_ns u64`.
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        let parts = self
            .fingerprint
            .to_le_bytes()
            .into_iter()
            .chain(self.state.tokens.to_le_bytes())
            .chain(self.state.last_fill_ns.to_le_bytes());
        for (byte, value) in out.iter_mut().zip(parts) {
            *byte = value;
        }
        out
    }

    /// The inverse of [`Slot::encode`]; `None` for any other length.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; SLOT_LEN] = bytes.try_into().ok()?;
        let (fingerprint, rest) = bytes.split_first_chunk::<8>()?;
        let (tokens, rest) = rest.split_first_chunk::<4>()?;
        let last_fill: &[u8; 8] = rest.try_into().ok()?;
        Some(Self {
            fingerprint: u64::from_le_bytes(*fingerprint),
            state: BucketState {
                tokens: u32::from_le_bytes(*tokens),
                last_fill_ns: u64::from_le_bytes(*last_fill),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    fn spec(max: u32, per_fill: u32, interval_ns: u64) -> BucketSpec {
        BucketSpec {
            max_tokens: max,
            tokens_per_fill: per_fill,
            interval_ns,
        }
    }

    #[test]
    fn fills_arrive_whole_intervals_after_the_anchor() {
        let spec = spec(10, 2, 60 * SEC);
        let empty = BucketState {
            tokens: 0,
            last_fill_ns: 0,
        };
        for (now, tokens, last) in [
            (59 * SEC, 0, 0),
            (60 * SEC, 2, 60 * SEC),
            (119 * SEC, 2, 60 * SEC),
            (120 * SEC, 4, 120 * SEC),
            (299 * SEC, 8, 240 * SEC),
        ] {
            assert_eq!(
                spec.refill(empty, now),
                BucketState {
                    tokens,
                    last_fill_ns: last
                },
                "at {now}"
            );
        }
    }

    #[test]
    fn a_full_bucket_is_re_anchored_at_now() {
        let spec = spec(10, 5, 60 * SEC);
        let half = BucketState {
            tokens: 5,
            last_fill_ns: 0,
        };
        assert_eq!(
            spec.refill(half, 90 * SEC),
            BucketState {
                tokens: 10,
                last_fill_ns: 90 * SEC
            }
        );
        assert_eq!(
            spec.next_fill_in_ns(spec.refill(half, 90 * SEC), 90 * SEC),
            60 * SEC
        );
    }

    #[test]
    fn a_clock_behind_the_anchor_adds_nothing_and_keeps_the_anchor() {
        let spec = spec(10, 5, 60 * SEC);
        let state = BucketState {
            tokens: 3,
            last_fill_ns: 100 * SEC,
        };
        assert_eq!(spec.refill(state, 99 * SEC), state);
        let full = spec.fresh(100 * SEC);
        assert_eq!(spec.refill(full, 99 * SEC), full);
    }

    #[test]
    fn a_shrunk_bucket_is_clamped() {
        let spec = spec(3, 1, SEC);
        let state = BucketState {
            tokens: 50,
            last_fill_ns: 0,
        };
        assert_eq!(spec.refill(state, 0).tokens, 3);
    }

    #[test]
    fn next_fill_is_counted_from_the_last_fill() {
        let spec = spec(10, 1, 60 * SEC);
        let state = BucketState {
            tokens: 0,
            last_fill_ns: 60 * SEC,
        };
        assert_eq!(spec.next_fill_in_ns(state, 61 * SEC), 59 * SEC);
        assert_eq!(ceil_secs(spec.next_fill_in_ns(state, 61 * SEC + 1)), 59);
    }

    #[test]
    fn huge_intervals_and_times_saturate_instead_of_overflowing() {
        let spec = spec(u32::MAX, u32::MAX, 1);
        let state = BucketState {
            tokens: 0,
            last_fill_ns: 0,
        };
        assert_eq!(spec.refill(state, u64::MAX).tokens, u32::MAX);
        let slow = BucketSpec::from(TokenBucket {
            max_tokens: 1,
            tokens_per_fill: 1,
            fill_interval: std::time::Duration::MAX,
        });
        assert_eq!(slow.interval_ns, u64::MAX);
        assert_eq!(slow.refill(state, u64::MAX - 1).tokens, 0);
    }

    #[test]
    fn slots_round_trip_and_other_lengths_are_refused() {
        let slot = Slot {
            fingerprint: 0x0102_0304_0506_0708,
            state: BucketState {
                tokens: 7,
                last_fill_ns: 99,
            },
        };
        assert_eq!(Slot::decode(&slot.encode()), Some(slot));
        assert_eq!(Slot::decode(&[0; 19]), None);
        assert_eq!(Slot::decode(&[0; 21]), None);
    }

    proptest! {
        #[test]
        fn refill_never_exceeds_max_and_never_moves_the_anchor_back(
            max in 1u32..1000, per_fill_frac in 0.0f64..1.0, interval in 1u64..1_000_000,
            tokens in 0u32..2000, last in 0u64..1_000_000_000, now in 0u64..2_000_000_000,
        ) {
            let per_fill = ((f64::from(max) * per_fill_frac) as u32).clamp(1, max);
            let spec = spec(max, per_fill, interval);
            let state = BucketState { tokens, last_fill_ns: last };
            let after = spec.refill(state, now);
            prop_assert!(after.tokens <= max);
            prop_assert!(after.last_fill_ns >= last);
            prop_assert!(spec.next_fill_in_ns(after, now) >= 1);
        }
    }
}
