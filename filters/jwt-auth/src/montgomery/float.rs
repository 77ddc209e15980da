//! Montgomery arithmetic on 52-bit limbs held in `f64`s, for the public
//! operation where a fused multiply-add is available: Wasm relaxed SIMD's
//! `f64x2.relaxed_madd` on a CPU with FMA (V8 and wasmtime emit the
//! hardware instruction), or `f64::mul_add` natively.
//!
//! Why: the integer code of [`super::Modulus`] multiplies 27-bit limbs with
//! `i64x2.extmul`, which V8 turns into two lane shuffles and a multiply per
//! two products, so its pace is one shuffle per product. A fused
//! multiply-add splits the 104-bit product of two 52-bit limbs exactly into
//! a high and a low part with two FMAs and no shuffle, and a 2048-bit
//! operand is 40 such limbs instead of 76. Measured in V8 (node 20.20,
//! `--no-liftoff`, 2026-12-07, a Zen 5 EPYC), the public operation on the
//! RFC 7515 A.2 key took 21 µs here against 29 µs on the integer code. A
//! square with half the cross products took 20.7 µs: too little for its
//! code, so squares are products here.
//!
//! The split, for limbs `a, b < 2^52` (so `a * b < 2^104`):
//! - `high = fma(a, b, 2^104)` lies in `[2^104, 2^105]`, where doubles are
//!   2^52 apart, so it is `2^104 + k * 2^52` with `k` the product's top
//!   bits, rounded; its bit pattern minus that of 2^104 is `k` (the
//!   pattern grows by one per step of 2^52, across the binade too);
//! - `(2^104 - high) + 1.5 * 2^52` is exact (a multiple of 2^51 below
//!   2^104), so `low = fma(a, b, that)` is `a * b - k * 2^52 + 1.5 * 2^52`,
//!   exact because the rounding left `|a * b - k * 2^52| <= 2^51`, which
//!   puts `low` in `[2^52, 2^53]` where doubles are integers; its bit
//!   pattern minus that of `1.5 * 2^52` is `a * b - k * 2^52`, signed.
//!
//! So `a * b = k * 2^52 + low`, and each row adds the low parts to the
//! columns of the limbs and the high parts to the next ones, in `i64`
//! columns without carries: a column takes at most four parts per row, of
//! magnitude at most 2^52, so it stays below 2^63 for up to 512 limbs
//! (26,624 bits; [`crate::rsa_verify::MAX_BITS`] is 8192).
//!
//! Without a fused multiply-add the split is wrong, so [`available`]
//! checks that `relaxed_madd` fuses before any key uses this code; where it
//! does not, keys use [`super::Modulus`].

use super::lanes;
use super::limbs::{self, less_than};

/// Bits per limb.
const LIMB_BITS: u32 = 52;
const LIMB_MASK: u64 = (1 << LIMB_BITS) - 1;

/// 2^104: added to a product, it leaves the product's top bits, rounded,
/// in the mantissa.
pub(super) const HIGH_BIAS: f64 = 20_282_409_603_651_670_423_947_251_286_016.0;
/// 1.5 * 2^52: added to a small signed integer, it leaves the integer in
/// the low bits of the mantissa.
pub(super) const LOW_BIAS: f64 = 6_755_399_441_055_744.0;

/// Whether this code gives exact products here (see the module doc).
/// Checked once per VM.
#[must_use]
pub fn available() -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        static FUSED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FUSED.get_or_init(lanes::relaxed_madd_is_fused)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        // f64::mul_add is always fused (std falls back to a correctly
        // rounded software fma).
        true
    }
}

/// A modulus `n` prepared for Montgomery products with
/// `R = 2^(52 * limbs)`, the counterpart of [`super::Modulus`].
pub struct FloatModulus {
    /// `n`, little-endian 52-bit limbs, an even number of them, with at
    /// least one bit to spare so that `2n < R`.
    n: Vec<f64>,
    /// The same limbs as integers, for the final comparison.
    n_int: Vec<u64>,
    /// `-n^-1 mod 2^52`.
    n_inv: u64,
    /// `R^2 mod n`.
    r2: Vec<f64>,
}

impl FloatModulus {
    /// Prepares `n` (big-endian). `None` when `n` is even or zero.
    #[must_use]
    pub fn new(n_be: &[u8]) -> Option<Self> {
        let limbs = (n_be.len() * 8 + 1).div_ceil(LIMB_BITS as usize);
        let limbs = limbs.div_ceil(2) * 2;
        let n_int = from_be(n_be, limbs);
        let n0 = *n_int.first()?;
        if n0 & 1 == 0 {
            return None;
        }
        let mut modulus = Self {
            n: to_floats(&n_int),
            n_inv: limbs::neg_inverse(n0, LIMB_BITS),
            r2: Vec::new(),
            n_int,
        };
        modulus.r2 = modulus.r_squared();
        Some(modulus)
    }

    /// `base^e mod n` for odd `e >= 3`, as `len` big-endian bytes; `None`
    /// when `base` is not below `n`. Same contract as
    /// [`super::Modulus::pow_be`].
    #[must_use]
    pub fn pow_be(&self, base_be: &[u8], e: u64, len: usize) -> Option<Vec<u8>> {
        let limbs = self.n.len();
        if base_be.len() * 8 > limbs * LIMB_BITS as usize {
            return None;
        }
        let base_int = from_be(base_be, limbs);
        if !less_than(&base_int, &self.n_int) {
            return None;
        }
        let base = to_floats(&base_int);
        let mut scratch = Scratch::new(limbs);
        let mut acc = vec![0.0; limbs];
        self.mul(&mut acc, &base, &self.r2, &mut scratch);
        let base_m = acc.clone();
        let mut tmp = vec![0.0; limbs];
        let bits = u64::BITS - e.leading_zeros();
        for i in (1..bits.saturating_sub(1)).rev() {
            self.mul(&mut tmp, &acc, &acc, &mut scratch);
            std::mem::swap(&mut acc, &mut tmp);
            if (e >> i) & 1 == 1 {
                self.mul(&mut tmp, &acc, &base_m, &mut scratch);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        // As in the integer code: square once more, then multiply by the
        // plain base, which also leaves Montgomery form.
        self.mul(&mut tmp, &acc, &acc, &mut scratch);
        self.mul(&mut acc, &tmp, &base, &mut scratch);
        Some(limbs::to_be(&to_ints(&acc), len, LIMB_BITS))
    }

    /// `out = a * b / R mod n`, for `a`, `b` below `n` (operand
    /// scanning): row `i` adds `a * b_i + n * m_i`, with `m_i` chosen to
    /// clear column `i`, then carries column `i` into `i + 1`.
    fn mul(&self, out: &mut [f64], a: &[f64], b: &[f64], scratch: &mut Scratch) {
        let limbs = self.n.len();
        let t = &mut scratch.columns;
        t.fill(0);
        let a0 = a.first().map_or(0, |&limb| limb as u64);
        for (i, &b_i) in b.iter().enumerate() {
            // Column i's low limb, with this row's a_0 * b_i, picks m_i;
            // both wrap modulo 2^64, which keeps them right modulo 2^52.
            let column = t.get(i).map_or(0, |&c| c as u64);
            let m = column
                .wrapping_add(a0.wrapping_mul(b_i as u64))
                .wrapping_mul(self.n_inv)
                & LIMB_MASK;
            let Some(row) = t.get_mut(i..=i + limbs) else {
                return;
            };
            lanes::float_row(row, a, b_i, &self.n, m as f64);
            if let Some([low, high, ..]) = t.get_mut(i..) {
                *high += *low >> LIMB_BITS;
            }
        }
        // t / R: the upper columns, carried into limbs (the carries may be
        // negative: low parts are signed), below 2n.
        let result = &mut scratch.limbs;
        let mut carry = 0i64;
        for (limb, &column) in result.iter_mut().zip(t.get(limbs..).unwrap_or_default()) {
            let sum = column + carry;
            *limb = (sum as u64) & LIMB_MASK;
            carry = sum >> LIMB_BITS;
        }
        // With 2n < R the sum fits the limbs; the carry test is for safety.
        if carry != 0 || !less_than(result, &self.n_int) {
            sub_assign(result, &self.n_int);
        }
        for (out, &limb) in out.iter_mut().zip(result.iter()) {
            *out = limb as f64;
        }
    }

    /// `R^2 mod n`, once per key: doublings to `R * 2^a`, then Montgomery
    /// squarings, as [`super::Modulus`] does it.
    fn r_squared(&self) -> Vec<f64> {
        let limbs = self.n.len();
        let bits = LIMB_BITS as usize * limbs;
        let t = bits.trailing_zeros();
        let mut x = to_floats(&limbs::doubled(&self.n_int, bits + (bits >> t), LIMB_BITS));
        let mut tmp = vec![0.0; limbs];
        let mut scratch = Scratch::new(limbs);
        for _ in 0..t {
            self.mul(&mut tmp, &x, &x, &mut scratch);
            std::mem::swap(&mut x, &mut tmp);
        }
        x
    }
}

/// A product's working memory, allocated once per exponentiation.
struct Scratch {
    /// `2 * limbs` columns, and one more that row `limbs - 1` reaches.
    columns: Vec<i64>,
    /// The result's limbs, before the final subtraction.
    limbs: Vec<u64>,
}

impl Scratch {
    fn new(limbs: usize) -> Self {
        Self {
            columns: vec![0; 2 * limbs + 1],
            limbs: vec![0; limbs],
        }
    }
}

/// The exact split of `x * y` for limbs below 2^52: `(k, low)` with
/// `x * y = k * 2^52 + low` (see the module doc). The reference of the
/// SIMD rows, and what runs natively.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(super) fn split(x: f64, y: f64) -> (i64, i64) {
    let high = x.mul_add(y, HIGH_BIAS);
    let low = x.mul_add(y, (HIGH_BIAS - high) + LOW_BIAS);
    let k = high.to_bits().wrapping_sub(HIGH_BIAS.to_bits()) as i64;
    let low = low.to_bits().wrapping_sub(LOW_BIAS.to_bits()) as i64;
    (k, low)
}

fn to_floats(limbs: &[u64]) -> Vec<f64> {
    limbs.iter().map(|&limb| limb as f64).collect()
}

fn to_ints(limbs: &[f64]) -> Vec<u64> {
    limbs.iter().map(|&limb| limb as u64).collect()
}

/// Big-endian bytes to `limbs` little-endian 52-bit limbs.
fn from_be(bytes: &[u8], limbs: usize) -> Vec<u64> {
    limbs::from_be(bytes, limbs, LIMB_BITS)
}

/// `a -= b` modulo `2^(52 * len)`.
fn sub_assign(a: &mut [u64], b: &[u64]) {
    limbs::sub_assign(a, b, LIMB_BITS);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::montgomery::Modulus;
    use proptest::prelude::*;

    #[test]
    fn split_is_exact_at_the_edges() {
        let top = (1u64 << 52) - 1;
        for (x, y) in [
            (0, 0),
            (1, 1),
            (top, top),
            (top, 1),
            (1 << 51, 3),
            (12345, 1 << 40),
        ] {
            let (k, low) = split(x as f64, y as f64);
            let product = u128::from(x) * u128::from(y);
            let rebuilt = (i128::from(k) << 52) + i128::from(low);
            assert_eq!(rebuilt, product as i128, "{x} * {y}");
            assert!(low.unsigned_abs() <= 1 << 51, "{x} * {y}: low {low}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn split_is_exact(x in 0u64..1 << 52, y in 0u64..1 << 52) {
            let (k, low) = split(x as f64, y as f64);
            let rebuilt = (i128::from(k) << 52) + i128::from(low);
            prop_assert_eq!(rebuilt, (u128::from(x) * u128::from(y)) as i128);
        }

        /// The float code agrees with the integer code on odd moduli of
        /// 64 to 2,100 bits, bases below them and several exponents.
        #[test]
        fn pow_matches_the_integer_code(
            mut n in proptest::collection::vec(any::<u8>(), 8..263),
            seed in any::<u64>(),
            e in prop::sample::select(vec![3u64, 17, 65_537, (1 << 33) - 1]),
        ) {
            if let Some(first) = n.first_mut() {
                *first |= 0x80;
            }
            if let Some(last) = n.last_mut() {
                *last |= 1;
            }
            let mut base = n.clone();
            // Below n: a smaller top byte, the rest from the seed.
            if let Some(first) = base.first_mut() {
                *first = (seed as u8) & 0x7f;
            }
            for (i, byte) in base.iter_mut().enumerate().skip(1) {
                *byte ^= seed.rotate_left(i as u32) as u8;
            }
            let float = FloatModulus::new(&n).unwrap();
            let int = Modulus::new(&n).unwrap();
            prop_assert_eq!(float.pow_be(&base, e, n.len()), int.pow_be(&base, e, n.len()));
            prop_assert_eq!(float.pow_be(&n, e, n.len()), None);
        }
    }

    #[test]
    fn even_or_zero_moduli_are_refused() {
        assert!(FloatModulus::new(&[]).is_none());
        assert!(FloatModulus::new(&[0, 0]).is_none());
        assert!(FloatModulus::new(&[1, 2]).is_none());
        assert!(FloatModulus::new(&[1, 3]).is_some());
    }
}
