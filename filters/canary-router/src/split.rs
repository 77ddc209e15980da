//! The weighted split: a fixed, seedless hash places each key at a point on
//! `[0, total)`, and cumulative weight ranges turn the point into a version.

/// FNV-1a 64-bit offset basis (the published constant).
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime (the published constant).
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hashes a routing key: FNV-1a 64 over the bytes, then MurmurHash3's 64-bit
/// finaliser `fmix64`.
///
/// Why this function:
/// - **Fixed and seedless.** Every sidecar, every worker VM, every restart and
///   every release of this filter computes the same value for the same key,
///   so a user lands on the same version everywhere. Rust's `RandomState` /
///   `DefaultHasher` are seeded per process (and `DefaultHasher`'s algorithm
///   may change between Rust releases), so they cannot be used.
/// - **Specified in full here**, so another implementation (a dashboard, a
///   script computing who is in the canary) can reproduce it:
///   `h = 0xcbf29ce484222325; for b in key { h ^= b; h *= 0x100000001b3 }`,
///   then `h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 33;
///   h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33` (all arithmetic wrapping mod 2^64).
/// - **FNV-1a alone mixes its high bits poorly** for short keys that differ in
///   the last byte (`user-1`, `user-2`): the last byte reaches the top bits
///   through a single multiplication. The split uses the high bits (see
///   [`Split::point`]), so `fmix64`, a bijection with full avalanche, is
///   applied on top. Both steps are a few cycles per byte and allocate
///   nothing.
///
/// Not a cryptographic hash: a client that controls its key (a header it
/// sends) can pick its version anyway by trying keys. Keys should be
/// identities the client cannot choose freely (a JWT `sub` forwarded by the
/// jwt-auth filter, a session cookie issued by the application).
///
/// # Examples
/// ```
/// // Pinned values: changing the function would move users between versions.
/// assert_eq!(canary_router::split::key_hash(b""), 0xefd0_1f60_ba99_2926);
/// assert_eq!(canary_router::split::key_hash(b"alice"), 0x3507_d047_a67c_08f4);
/// ```
#[must_use]
pub fn key_hash(key: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    fmix64(hash)
}

/// MurmurHash3's 64-bit finaliser (Appleby, public domain constants).
const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Versions laid out as consecutive ranges on `[0, total)`, in config order:
/// with weights 80, 20 the first version owns `[0, 80)` and the second
/// `[80, 100)`.
///
/// Why cumulative ranges: a key's point, as a fraction of the total, never
/// changes. Growing the last version's share lowers the boundary in front of
/// it, so the only keys that change version are those the boundary passes
/// over, and they move *onto* the growing version; none leave it. (The same
/// holds for the first version growing upward.) Put the stable version first
/// and the canary last, and a progressive rollout 5 → 25 → 50 → 100 never
/// sends a canary user back to stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Exclusive upper bound of each version's range; non-decreasing, the
    /// last equals `total`.
    bounds: Vec<u64>,
    total: u64,
}

impl Split {
    /// Builds the ranges; `None` when the weights sum to 0.
    ///
    /// # Examples
    /// ```
    /// use canary_router::split::Split;
    /// let split = Split::new(&[80, 20]).unwrap();
    /// assert_eq!(split.pick(0), 0);
    /// assert_eq!(split.pick(u64::MAX), 1);
    /// assert!(Split::new(&[0, 0]).is_none());
    /// ```
    #[must_use]
    pub fn new(weights: &[u32]) -> Option<Self> {
        let mut total = 0_u64;
        let bounds = weights
            .iter()
            .map(|&w| {
                total += u64::from(w);
                total
            })
            .collect();
        (total > 0).then_some(Self { bounds, total })
    }

    /// The sum of the weights.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether version `index` has a non-empty range (weight > 0).
    #[must_use]
    pub fn is_live(&self, index: usize) -> bool {
        let start = match index.checked_sub(1) {
            Some(before) => self.bounds.get(before).copied().unwrap_or(self.total),
            None => 0,
        };
        self.bounds.get(index).is_some_and(|&end| end > start)
    }

    /// The point of a 64-bit hash on `[0, total)`: `floor(hash * total / 2^64)`.
    /// Multiply-high instead of `hash % total`: no modulo bias, no division,
    /// and the point as a fraction of the total stays put when the total
    /// changes, which the monotonic-rollout promise relies on.
    #[must_use]
    pub fn point(&self, hash: u64) -> u64 {
        ((u128::from(hash) * u128::from(self.total)) >> 64) as u64
    }

    /// The version whose range holds the hash's point.
    #[must_use]
    pub fn pick(&self, hash: u64) -> usize {
        let point = self.point(hash);
        // point < total = the last bound, so the search always succeeds; the
        // fallback only keeps the function total.
        self.bounds
            .iter()
            .position(|&bound| point < bound)
            .unwrap_or(self.bounds.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published FNV-1a 64 test vectors (Fowler/Noll/Vo reference
    /// `test_fnv.c`), checked before the finaliser.
    #[test]
    fn fnv1a_core_matches_the_published_vectors() {
        let fnv = |key: &[u8]| {
            key.iter().fold(FNV_OFFSET_BASIS, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
            })
        };
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn key_hash_is_pinned_so_releases_agree() {
        // If this fails, the function changed and users would move between
        // versions on upgrade: do not update the constants casually.
        // Values computed independently (Python, arbitrary-precision ints).
        assert_eq!(key_hash(b"a"), 0x82a2_a958_a9be_ce5b);
        assert_eq!(key_hash(b"foobar"), 0x2c22_1949_22d1_672b);
        assert_eq!(key_hash(b"user-1"), 0x41a2_fca5_c684_01c5);
    }

    #[test]
    fn eighty_twenty_over_ten_thousand_ids_is_within_one_and_a_half_points() {
        let split = Split::new(&[80, 20]).unwrap();
        let canary = (0..10_000)
            .filter(|i| split.pick(key_hash(format!("user-{i}").as_bytes())) == 1)
            .count();
        let percent = canary as f64 / 100.0;
        assert!((18.5..=21.5).contains(&percent), "canary share {percent}%");
    }

    #[test]
    fn one_decimal_percentages_work_with_weights_in_thousandths() {
        // 2.5% as 25 of 1000.
        let split = Split::new(&[975, 25]).unwrap();
        let canary = (0..100_000)
            .filter(|i| split.pick(key_hash(format!("{i}").as_bytes())) == 1)
            .count();
        let percent = canary as f64 / 1000.0;
        assert!((2.2..=2.8).contains(&percent), "canary share {percent}%");
    }

    #[test]
    fn zero_weight_versions_are_never_picked() {
        let split = Split::new(&[0, 100, 0]).unwrap();
        assert!(!split.is_live(0) && split.is_live(1) && !split.is_live(2));
        for hash in [0, 1, u64::MAX / 2, u64::MAX] {
            assert_eq!(split.pick(hash), 1);
        }
    }

    #[test]
    fn range_ends_belong_to_the_expected_versions() {
        let split = Split::new(&[1, 1]).unwrap();
        assert_eq!(split.pick(u64::MAX / 2), 0);
        assert_eq!(split.pick(u64::MAX / 2 + 1), 1);
    }

    proptest::proptest! {
        #[test]
        fn the_same_key_always_gets_the_same_version(key in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                                                     weights in proptest::collection::vec(0_u32..2000, 1..5)) {
            if let Some(split) = Split::new(&weights) {
                let first = split.pick(key_hash(&key));
                proptest::prop_assert_eq!(first, split.pick(key_hash(&key)));
                proptest::prop_assert!(split.is_live(first));
            }
        }

        #[test]
        fn raising_the_canary_weight_never_moves_a_user_back_to_stable(
            key in "[a-z0-9-]{1,24}",
            mut steps in proptest::collection::vec(0_u32..=1000, 1..8),
        ) {
            steps.sort_unstable();
            // The issue's ladder, then arbitrary increasing ones, out of 100 or 1000.
            for ladder in [vec![5, 25, 50, 100], steps.iter().map(|s| s / 10).collect(), steps.clone()] {
                let scale = if ladder == steps { 1000 } else { 100 };
                let mut in_canary = false;
                for canary in ladder {
                    let split = Split::new(&[scale - canary, canary]).unwrap();
                    let now = split.pick(key_hash(key.as_bytes())) == 1;
                    proptest::prop_assert!(now || !in_canary, "{key} left the canary at weight {canary}");
                    in_canary = now;
                }
            }
        }

        #[test]
        fn growing_the_canary_while_stable_keeps_its_weight_only_adds_canary_users(
            key in "[a-z0-9-]{1,24}",
            stable in 1_u32..1000,
            mut canary in proptest::collection::vec(0_u32..=5000, 2..6),
        ) {
            // 80/20 -> 80/40: the total changes too; points are fractions.
            canary.sort_unstable();
            let mut in_canary = false;
            for weight in canary {
                let now = Split::new(&[stable, weight]).unwrap().pick(key_hash(key.as_bytes())) == 1;
                proptest::prop_assert!(now || !in_canary);
                in_canary = now;
            }
        }
    }
}
