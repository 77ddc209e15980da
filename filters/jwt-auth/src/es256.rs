//! ES256 (ECDSA over P-256 with SHA-256) verification with fixed-base comb
//! tables, on field and point arithmetic of our own ([`field`], [`point`]).
//!
//! Why: `p256`'s own `verify` computes `u1 G + u2 Q` as a radix-16 double
//! product, about 250 point doublings and 140 additions per signature,
//! which took 500 µs in V8 (node 20, 2026-11-25) and 350 µs in Envoy.
//! Here the multiples `d 32^i P` (d = 1..31, i = 0..51) of G and of each
//! key's Q are computed once, at JWKS load (about 3.5 ms per key in V8),
//! and kept in affine form. A verification is then at most 104 mixed
//! additions and no doublings. On `p256`'s arithmetic that took 144 µs in
//! V8 (complete formulas, about 75 ns per field product); on ours, 59 µs
//! (2026-12-07). `p256` still builds the tables and does the scalar
//! arithmetic mod n, which is a few µs per signature. The price is
//! memory, 1612 affine points (about 103 KB) per P-256 key and once for G
//! in each worker VM; so at most [`MAX_KEY_TABLES`] keys per VM get a
//! table, and the others are verified by `p256` itself. Measured windows
//! on `p256`'s arithmetic, in V8: 4 bits 179 µs (70 KB), 5 bits 144 µs, 6
//! bits 126 µs (195 KB, 5.7 ms to build). Only public values pass
//! through, so variable time is fine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use p256_014::elliptic_curve::group::Group;
use p256_014::elliptic_curve::ops::Reduce;
use p256_014::elliptic_curve::BatchNormalize;
use p256_014::{FieldBytes, ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};

use field::Fe;
use point::{Affine, Jacobian};

mod field;
mod point;

/// Bits per window of a key's table: 43 windows of 32 points, about
/// 88 KB per key (see the module doc for the measured choice).
const KEY_WINDOW_BITS: usize = 6;
/// Bits per window of G's table, which each VM builds once: 33 windows of
/// 128 points, about 270 KB.
const GENERATOR_WINDOW_BITS: usize = 8;

/// Most P-256 keys with a table alive in one VM: 16 tables are about
/// 1.4 MB. A JWKS can hold hundreds of keys, and each table costs memory
/// and milliseconds to build.
pub const MAX_KEY_TABLES: usize = 16;

/// Key tables alive in this VM.
static KEY_TABLES: AtomicUsize = AtomicUsize::new(0);

/// A fixed-base comb with `W`-bit windows and signed digits: the points
/// `d 2^(W i) P` for every window `i` and `d = 1..=2^(W-1)`, in affine
/// form. A scalar is recoded into digits in `-2^(W-1)..=2^(W-1)`, and a
/// negative digit adds the negated point, so a window needs half the
/// points an unsigned one would.
struct Comb<const W: usize> {
    /// [`Self::HALF`] points per window, window 0 first; digit `d` at
    /// `d - 1`.
    multiples: Vec<Affine>,
}

impl<const W: usize> Comb<W> {
    /// Points per window: the largest digit's magnitude.
    const HALF: usize = 1 << (W - 1);
    /// Windows for a 256-bit scalar and the carry out of its top window.
    const WINDOWS: usize = 256 / W + 1;

    fn new(point: ProjectivePoint) -> Self {
        let mut projective = Vec::with_capacity(Self::WINDOWS * Self::HALF);
        let mut base = point;
        for _ in 0..Self::WINDOWS {
            let mut multiple = base;
            projective.push(multiple);
            for _ in 1..Self::HALF {
                multiple += base;
                projective.push(multiple);
            }
            // 2^(W-1) base, doubled: the next window's base.
            base = multiple.double();
        }
        // None of them is the identity: P is not, the group order n is
        // prime, and neither d nor 2^(W i) is a multiple of n.
        let affine =
            <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize(&projective);
        Self {
            multiples: affine.iter().map(Affine::from).collect(),
        }
    }

    /// `acc += k P`, `k` (below 2^256) given as its big-endian bytes.
    fn add_product(&self, acc: &mut Jacobian, k: &FieldBytes) {
        let mut carry = 0;
        for (i, window) in self.multiples.chunks_exact(Self::HALF).enumerate() {
            // 0..=2^W; above 2^(W-1) it is the digit value - 2^W, and
            // the window above gets 1 more.
            let value = window_bits::<W>(k, i) + carry;
            carry = usize::from(value > Self::HALF);
            if carry == 0 {
                if let Some(multiple) = value.checked_sub(1).and_then(|at| window.get(at)) {
                    acc.add_affine(multiple);
                }
            } else if let Some(multiple) = ((1 << W) - value)
                .checked_sub(1)
                .and_then(|at| window.get(at))
            {
                acc.add_affine(&multiple.negate());
            }
        }
    }
}

/// Window `i`'s bits of `k` (big-endian bytes): `W` bits from bit `W i`,
/// with zeros above bit 255. `W` is at most 9, so a window spans at most
/// two bytes.
fn window_bits<const W: usize>(k: &FieldBytes, i: usize) -> usize {
    let low_bit = W * i;
    let byte_at = |from_lsb: usize| {
        k.len()
            .checked_sub(1 + from_lsb)
            .and_then(|at| k.get(at))
            .map_or(0, |&b| usize::from(b))
    };
    let pair = byte_at(low_bit / 8) | (byte_at(low_bit / 8 + 1) << 8);
    (pair >> (low_bit % 8)) & ((1 << W) - 1)
}

/// A key's comb, counted in [`KEY_TABLES`] while it lives.
struct KeyComb(Comb<KEY_WINDOW_BITS>);

impl KeyComb {
    /// The key's table, unless [`MAX_KEY_TABLES`] are alive.
    fn new(point: ProjectivePoint) -> Option<Self> {
        if KEY_TABLES.fetch_add(1, Ordering::Relaxed) >= MAX_KEY_TABLES {
            KEY_TABLES.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Self(Comb::new(point)))
    }
}

impl Drop for KeyComb {
    fn drop(&mut self) {
        KEY_TABLES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The generator's comb, built on first use in this VM.
fn generator_comb() -> &'static Comb<GENERATOR_WINDOW_BITS> {
    static COMB: OnceLock<Comb<GENERATOR_WINDOW_BITS>> = OnceLock::new();
    COMB.get_or_init(|| Comb::new(ProjectivePoint::generator()))
}

/// A P-256 public key prepared for ES256 verification.
#[derive(Clone)]
pub struct P256Key {
    key: p256_014::ecdsa::VerifyingKey,
    comb: Option<Arc<KeyComb>>,
}

impl P256Key {
    /// Prepares the key from its SEC1 encoding.
    ///
    /// # Errors
    /// When the bytes are not a point on the curve (or the identity).
    pub fn from_sec1_bytes(sec1: &[u8]) -> Result<Self, p256_014::ecdsa::Error> {
        let key = p256_014::ecdsa::VerifyingKey::from_sec1_bytes(sec1)?;
        let comb = KeyComb::new(ProjectivePoint::from(*key.as_affine())).map(Arc::new);
        if comb.is_some() {
            // Build G's table now too, not on the first request.
            generator_comb();
        }
        Ok(Self { key, comb })
    }

    /// Whether this key got a table (see [`MAX_KEY_TABLES`]).
    #[must_use]
    pub fn has_table(&self) -> bool {
        self.comb.is_some()
    }

    /// ECDSA verification (FIPS 186-5 §6.4.2) of `signature` (`r || s`,
    /// 64 bytes, as JWS carries it) over SHA-256 of `message`.
    #[must_use]
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        // from_slice refuses r or s that are zero or not below the order.
        let Ok(signature) = p256_014::ecdsa::Signature::from_slice(signature) else {
            return false;
        };
        let Some(comb) = &self.comb else {
            use p256_014::ecdsa::signature::Verifier;
            return self.key.verify(message, &signature).is_ok();
        };
        let (r, s) = signature.split_scalars();
        let digest: [u8; 32] = Sha256::digest(message).into();
        let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(digest));
        let Some(s_inv) = Option::<Scalar>::from(s.invert_vartime()) else {
            return false;
        };
        let (u1, u2) = (z * s_inv, *r * s_inv);
        let mut sum = Jacobian::IDENTITY;
        generator_comb().add_product(&mut sum, &u1.to_bytes());
        comb.0.add_product(&mut sum, &u2.to_bytes());
        sum.x_reduced_is(&Fe::from_be_bytes(&r.to_bytes().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        /// Agrees with p256's own verification, for valid signatures and
        /// corrupted ones, with keys and messages drawn at random.
        #[test]
        fn agrees_with_p256(
            secret in proptest::array::uniform32(1u8..),
            message in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            flip in proptest::option::of(0usize..512),
            other_message in proptest::bool::ANY,
        ) {
            use p256_014::ecdsa::signature::{Signer, Verifier};
            let Ok(signing) = p256_014::ecdsa::SigningKey::from_slice(&secret) else {
                return Ok(());
            };
            let signature: p256_014::ecdsa::Signature = signing.sign(&message);
            let mut bytes = signature.to_bytes().to_vec();
            if let Some(bit) = flip {
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            let mut checked = message.clone();
            if other_message {
                checked.push(1);
            }
            let verifying = signing.verifying_key();
            let sec1 = verifying.to_sec1_point(false);
            let ours = P256Key::from_sec1_bytes(sec1.as_bytes()).unwrap();
            let theirs = p256_014::ecdsa::Signature::from_slice(&bytes)
                .is_ok_and(|sig| verifying.verify(&checked, &sig).is_ok());
            proptest::prop_assert_eq!(ours.verify(&checked, &bytes), theirs);
            if flip.is_none() && !other_message {
                proptest::prop_assert!(theirs);
            }
        }
    }

    #[test]
    fn keys_past_the_table_limit_verify_without_one() {
        use p256_014::ecdsa::signature::Signer;
        let signing = p256_014::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let signature: p256_014::ecdsa::Signature = signing.sign(b"message");
        let sec1 = signing.verifying_key().to_sec1_point(false);
        // Other tests may hold tables too, so the limit comes at the
        // latest after MAX_KEY_TABLES keys.
        let mut keys = Vec::new();
        while keys.len() <= MAX_KEY_TABLES {
            keys.push(P256Key::from_sec1_bytes(sec1.as_bytes()).unwrap());
        }
        let plain = keys.iter().find(|key| !key.has_table()).unwrap();
        assert!(plain.verify(b"message", &signature.to_bytes()));
        assert!(!plain.verify(b"massage", &signature.to_bytes()));
        assert!(keys.iter().filter(|key| key.has_table()).count() <= MAX_KEY_TABLES);
    }

    /// Whether the comb's product `k P` is `p256`'s.
    fn comb_agrees<const W: usize>(comb: &Comb<W>, point: ProjectivePoint, k: &Scalar) -> bool {
        let mut sum = Jacobian::IDENTITY;
        comb.add_product(&mut sum, &k.to_bytes());
        let expected = point * k;
        if bool::from(expected.is_identity()) {
            return sum.is_identity();
        }
        // Equal points sum to the identity with the expected one's
        // negative; a wrong point or its negative does not.
        sum.add_affine(&Affine::from(&expected.to_affine()).negate());
        sum.is_identity()
    }

    /// Scalars whose digits sit at the recoding's edges for every width:
    /// each window's bits at 0, 2^(W-1) - 1, 2^(W-1), 2^(W-1) + 1 and all
    /// ones, carries running through every window (n - 1, -2^k), and 0.
    fn edge_scalars() -> Vec<Scalar> {
        let mut scalars: Vec<Scalar> = [0u64, 1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128]
            .into_iter()
            .chain([129, 255, 256, 0xdead_beef, u64::MAX])
            .map(Scalar::from)
            .collect();
        let mut power = Scalar::ONE;
        for _ in 0..256 {
            scalars.push(power);
            scalars.push(-power);
            power = power.double();
        }
        scalars
    }

    #[test]
    fn combs_of_every_width_compute_products() {
        let g = ProjectivePoint::generator();
        let q = g * Scalar::from(0x1234_5678_9abc_def0u64);
        for k in edge_scalars() {
            assert!(comb_agrees(generator_comb(), g, &k), "G, {k:?}");
            assert!(comb_agrees(&Comb::<5>::new(q), q, &k), "5 bits, {k:?}");
        }
        let key = Comb::<KEY_WINDOW_BITS>::new(q);
        let seven = Comb::<7>::new(g);
        for k in edge_scalars() {
            assert!(comb_agrees(&key, q, &k), "key, {k:?}");
            assert!(comb_agrees(&seven, g, &k), "7 bits, {k:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// Random scalars, through G's comb and a key's.
        #[test]
        fn combs_compute_products_of_random_scalars(bytes in proptest::array::uniform32(proptest::num::u8::ANY)) {
            let k = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(bytes));
            let g = ProjectivePoint::generator();
            proptest::prop_assert!(comb_agrees(generator_comb(), g, &k));
            let q = g * Scalar::from(99u64);
            let key = test_key_comb(q);
            proptest::prop_assert!(comb_agrees(key, q, &k));
        }
    }

    /// One key comb for the random-scalar test, built once.
    fn test_key_comb(q: ProjectivePoint) -> &'static Comb<KEY_WINDOW_BITS> {
        static COMB: OnceLock<Comb<KEY_WINDOW_BITS>> = OnceLock::new();
        COMB.get_or_init(|| Comb::new(q))
    }
}
