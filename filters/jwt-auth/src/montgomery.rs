//! Montgomery arithmetic modulo an RSA modulus, for the public operation
//! `s^e mod n` (rsa_verify). Only public values pass through here, so
//! nothing needs constant time. This is the integer code, which runs
//! everywhere; [`float`] is faster where a fused multiply-add is available
//! and rsa_verify picks it then.
//!
//! Why this shape: inside Wasm the 32x32->64 multiply is the widest there
//! is, and a carry chain costs as much as the multiply it follows. So the
//! limbs are 27 bits wide, held in `u32`s, and products are summed into
//! 64-bit columns without propagating carries (operand scanning with lazy
//! carries): each row adds `a * b_i + n * m_i` to the columns it covers and
//! moves one carry on. A column takes at most `2 * limbs` products below
//! 2^54 plus a carry, which stays below 2^64 for up to 511 limbs (13797
//! bits; [`crate::rsa_verify::MAX_BITS`] is 8192). Without carries, a row
//! is independent multiply-adds, which [`lanes`] runs on Wasm SIMD: two
//! `u32` products per `i64x2.extmul` instruction. A squaring adds each
//! cross product once, doubled, so its rows multiply about 3/4 as much.
//!
//! Measured in V8 (node 20.20, `--no-liftoff`, 2026-11-25) on the RFC 7515
//! A.2 key, the public operation took 52 µs with 32-bit limbs and carry
//! chains (two CIOS rows per pass, this module's predecessor) and 27 µs
//! here. Natively the same code runs in 22 µs, against 42 µs before; LLVM
//! vectorises the portable lanes there. The rows' own scalar work counts:
//! zeroing the spent doubled limb instead of a limb-by-limb mixed block
//! took the public operation from 31 to 27 µs in V8.

pub mod float;
mod lanes;
mod limbs;

use limbs::less_than;

/// Bits per limb.
const LIMB_BITS: u32 = 27;
const LIMB_MASK: u32 = (1 << LIMB_BITS) - 1;

/// Limb counts are padded to a multiple of this, so rows are whole SIMD
/// blocks.
const BLOCK: usize = 4;

/// A modulus `n` prepared for Montgomery products with `R = 2^(27 * limbs)`.
#[derive(Clone)]
pub struct Modulus {
    /// `n`, little-endian 27-bit limbs, zero-padded to a whole block, with
    /// at least one bit to spare so that `2n < R`.
    n: Vec<u32>,
    /// `-n^-1 mod 2^27`.
    n_inv: u32,
    /// `R^2 mod n`: a product with it enters Montgomery form.
    r2: Vec<u32>,
}

impl Modulus {
    /// Prepares `n` (big-endian, no leading zero bytes needed). `None` when
    /// `n` is even or zero: Montgomery reduction needs an odd modulus.
    #[must_use]
    pub fn new(n_be: &[u8]) -> Option<Self> {
        let limbs = (n_be.len() * 8 + 1).div_ceil(LIMB_BITS as usize);
        let limbs = limbs.div_ceil(BLOCK) * BLOCK;
        let n = from_be(n_be, limbs);
        let n0 = *n.first()?;
        if n0 & 1 == 0 {
            return None;
        }
        let mut modulus = Self {
            n_inv: neg_inverse(n0),
            r2: Vec::new(),
            n,
        };
        modulus.r2 = modulus.r_squared();
        Some(modulus)
    }

    /// `base^e mod n` for odd `e >= 3`, as `len` big-endian bytes; `None`
    /// when `base` (big-endian) is not below `n`.
    #[must_use]
    pub fn pow_be(&self, base_be: &[u8], e: u64, len: usize) -> Option<Vec<u8>> {
        let limbs = self.n.len();
        if base_be.len() * 8 > limbs * LIMB_BITS as usize {
            return None;
        }
        let base = from_be(base_be, limbs);
        if !less_than(&base, &self.n) {
            return None;
        }
        let mut scratch = Scratch::new(limbs);
        let mut acc = vec![0u32; limbs];
        // Into Montgomery form: base * R^2 / R.
        self.mul(&mut acc, &base, &self.r2, &mut scratch);
        let base_m = acc.clone();
        let mut tmp = vec![0u32; limbs];
        // Left to right over the exponent's bits below the top one; the
        // last bit is done by the final product below.
        let bits = u64::BITS - e.leading_zeros();
        for i in (1..bits.saturating_sub(1)).rev() {
            self.square(&mut tmp, &acc, &mut scratch);
            std::mem::swap(&mut acc, &mut tmp);
            if (e >> i) & 1 == 1 {
                self.mul(&mut tmp, &acc, &base_m, &mut scratch);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        // e is odd and at least 3: square once more, then multiply by the
        // plain base, which also leaves Montgomery form (x*R * s / R).
        self.square(&mut tmp, &acc, &mut scratch);
        self.mul(&mut acc, &tmp, &base, &mut scratch);
        Some(to_be(&acc, len))
    }

    /// `out = a * b / R mod n`, for `a`, `b` below `n`.
    fn mul(&self, out: &mut [u32], a: &[u32], b: &[u32], scratch: &mut Scratch) {
        scratch.columns.fill(0);
        product_rows(&mut scratch.columns, a, b, &self.n, self.n_inv);
        self.reduce_columns(out, &scratch.columns);
    }

    /// `out = a * a / R mod n`, for `a` below `n`.
    fn square(&self, out: &mut [u32], a: &[u32], scratch: &mut Scratch) {
        scratch.columns.fill(0);
        for (twice, &limb) in scratch.doubled.iter_mut().zip(a) {
            *twice = limb << 1;
        }
        square_rows(
            &mut scratch.columns,
            a,
            &mut scratch.doubled,
            &self.n,
            self.n_inv,
        );
        self.reduce_columns(out, &scratch.columns);
    }

    /// Carries the upper half of the columns into limbs (`t / R`, below
    /// `2n`) and subtracts `n` once if needed.
    fn reduce_columns(&self, out: &mut [u32], columns: &[u64]) {
        let upper = columns.get(self.n.len()..).unwrap_or_default();
        let mut carry = 0u64;
        for (limb, &column) in out.iter_mut().zip(upper) {
            let sum = column + carry;
            *limb = (sum as u32) & LIMB_MASK;
            carry = sum >> LIMB_BITS;
        }
        // With 2n < R the sum fits the limbs; the carry test is for safety.
        if carry != 0 || !less_than(out, &self.n) {
            sub_assign(out, &self.n);
        }
    }

    /// `R^2 mod n`. Once per key at JWKS load.
    ///
    /// Write `27 * limbs = a * 2^t` with `a` odd. Doubling 1 modulo `n`
    /// `27 * limbs + a` times gives `R * 2^a`; each Montgomery squaring maps
    /// `R * 2^k` to `R * 2^(2k)`, so `t` of them give `R * 2^(27 * limbs)`,
    /// which is `R^2`.
    fn r_squared(&self) -> Vec<u32> {
        let bits = LIMB_BITS as usize * self.n.len();
        let t = bits.trailing_zeros();
        let mut x = limbs::doubled(&self.n, bits + (bits >> t), LIMB_BITS);
        let mut tmp = vec![0u32; self.n.len()];
        let mut scratch = Scratch::new(self.n.len());
        for _ in 0..t {
            self.square(&mut tmp, &x, &mut scratch);
            std::mem::swap(&mut x, &mut tmp);
        }
        x
    }
}

/// A product's working memory, allocated once per exponentiation.
struct Scratch {
    /// `2 * limbs` 64-bit columns.
    columns: Vec<u64>,
    /// The squared operand's limbs, doubled.
    doubled: Vec<u32>,
}

impl Scratch {
    fn new(limbs: usize) -> Self {
        Self {
            columns: vec![0; 2 * limbs],
            doubled: vec![0; limbs],
        }
    }
}

/// Adds `a * b / R`'s rows to the columns `t` (operand scanning): row `i`
/// adds `a * b_i + n * m_i`, with `m_i` chosen to clear column `i`, then
/// carries column `i` into `i + 1`.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn product_rows(t: &mut [u64], a: &[u32], b: &[u32], n: &[u32], n_inv: u32) {
    let limbs = n.len();
    let a0 = a.first().copied().map_or(0, u64::from);
    for (i, &b_i) in b.iter().enumerate() {
        let Some(row) = t.get_mut(i..i + limbs) else {
            return;
        };
        let m = row_multiplier(row, a0 * u64::from(b_i), n_inv);
        lanes::mul_add(row, a, b_i, n, m);
        carry_column(t, i);
    }
}

/// [`product_rows`] for `a * a`, given `doubled = 2a`. Row `i` adds
/// `a_i^2` to column `2i` and `doubled_j * a_i` for `j > i` to column
/// `i + j`, beside the reduction `n * m_i`. Column `i` is complete when
/// row `i` picks `m_i`: the products that reach it come from rows up to
/// `i / 2`. `doubled` is spent: each row zeroes its own limb, so that the
/// block where the doubled products start needs no special case.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn square_rows(t: &mut [u64], a: &[u32], doubled: &mut [u32], n: &[u32], n_inv: u32) {
    let limbs = n.len();
    for (i, &a_i) in a.iter().enumerate() {
        if let Some(column) = t.get_mut(2 * i) {
            *column += u64::from(a_i) * u64::from(a_i);
        }
        if let Some(limb) = doubled.get_mut(i) {
            *limb = 0;
        }
        let Some(row) = t.get_mut(i..i + limbs) else {
            return;
        };
        let m = row_multiplier(row, 0, n_inv);
        // Whole blocks of limbs up to i take only the reduction.
        let split = (i + 1) / BLOCK * BLOCK;
        let (Some((head, tail)), Some((n_head, n_tail)), Some(doubled_tail)) = (
            row.split_at_mut_checked(split),
            n.split_at_checked(split),
            doubled.get(split..),
        ) else {
            return;
        };
        lanes::mul_add_one(head, n_head, m);
        lanes::mul_add(tail, doubled_tail, a_i, n_tail, m);
        carry_column(t, i);
    }
}

/// `m_i = (t_i + extra) * -n^-1 mod 2^27`, where `row` starts at column
/// `i` and `extra` is the part of column `i` that this row adds itself.
fn row_multiplier(row: &[u64], extra: u64, n_inv: u32) -> u32 {
    let column = row.first().copied().unwrap_or(0) + extra;
    (column as u32).wrapping_mul(n_inv) & LIMB_MASK
}

/// Moves column `i`'s bits above the limb (its low bits are zero after
/// its row) into column `i + 1`.
fn carry_column(t: &mut [u64], i: usize) {
    if let Some([low, high, ..]) = t.get_mut(i..) {
        *high += *low >> LIMB_BITS;
    }
}

/// Big-endian bytes to `limbs` little-endian 27-bit limbs (the bytes must
/// fit).
fn from_be(bytes: &[u8], limbs: usize) -> Vec<u32> {
    limbs::from_be(bytes, limbs, LIMB_BITS)
}

/// 27-bit limbs to `len` big-endian bytes (the value must fit).
fn to_be(limbs: &[u32], len: usize) -> Vec<u8> {
    limbs::to_be(limbs, len, LIMB_BITS)
}

/// `a -= b` modulo `2^(27 * len)`.
fn sub_assign(a: &mut [u32], b: &[u32]) {
    limbs::sub_assign(a, b, LIMB_BITS);
}

/// `-n0^-1 mod 2^27` for odd `n0`.
fn neg_inverse(n0: u32) -> u32 {
    limbs::neg_inverse(u64::from(n0), LIMB_BITS) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x * y mod m` for `m < 2^64`.
    fn mul_mod(x: u128, y: u128, m: u128) -> u128 {
        x * y % m
    }

    fn pow_mod(mut base: u128, mut exp: u128, m: u128) -> u128 {
        let mut result = 1u128;
        while exp > 0 {
            if exp & 1 == 1 {
                result = mul_mod(result, base, m);
            }
            base = mul_mod(base, base, m);
            exp >>= 1;
        }
        result
    }

    fn value(limbs: &[u32]) -> u128 {
        limbs
            .iter()
            .rev()
            .fold(0u128, |acc, &l| (acc << LIMB_BITS) | u128::from(l))
    }

    /// Primes below 2^64 of several lengths, so that the limbs' padding
    /// differs.
    const PRIMES: [u64; 4] = [u64::MAX - 58, (1 << 61) - 1, 4_294_967_291, 1_000_000_007];

    #[test]
    fn products_and_squares_match_u128_arithmetic() {
        for p in PRIMES {
            let modulus = Modulus::new(&p.to_be_bytes()).unwrap();
            let limbs = modulus.n.len();
            let m = u128::from(p);
            let r = pow_mod(2, u128::from(LIMB_BITS) * limbs as u128, m);
            let r_inv = pow_mod(r, m - 2, m);
            assert_eq!(value(&modulus.r2), mul_mod(r, r, m), "{p}");
            let mut scratch = Scratch::new(limbs);
            for (a, b) in [(0u64, 5u64), (1, 1), (p - 1, p - 1), (123_456_789, 987_654)] {
                let (a, b) = (a % p, b % p);
                let al = from_be(&a.to_be_bytes(), limbs);
                let bl = from_be(&b.to_be_bytes(), limbs);
                let mut out = vec![0u32; limbs];
                modulus.mul(&mut out, &al, &bl, &mut scratch);
                let want = mul_mod(mul_mod(a.into(), b.into(), m), r_inv, m);
                assert_eq!(value(&out), want, "{a} * {b} mod {p}");
                modulus.square(&mut out, &al, &mut scratch);
                let want = mul_mod(mul_mod(a.into(), a.into(), m), r_inv, m);
                assert_eq!(value(&out), want, "{a}^2 mod {p}");
            }
        }
    }

    #[test]
    fn pow_matches_u128_arithmetic() {
        for p in PRIMES {
            let modulus = Modulus::new(&p.to_be_bytes()).unwrap();
            for (base, e) in [(2u64, 3u64), (p - 2, 65537), (77, (1 << 33) - 1)] {
                let got = modulus.pow_be(&base.to_be_bytes(), e, 8).unwrap();
                let want = pow_mod(base.into(), e.into(), p.into()) as u64;
                assert_eq!(got, want.to_be_bytes(), "{base}^{e} mod {p}");
            }
            assert_eq!(modulus.pow_be(&p.to_be_bytes(), 3, 8), None);
        }
    }

    #[test]
    fn limbs_round_trip_through_bytes() {
        let bytes: Vec<u8> = (0..=255u8).cycle().skip(7).take(300).collect();
        let limbs = from_be(&bytes, (300 * 8usize).div_ceil(27));
        assert!(limbs.iter().all(|&l| l <= LIMB_MASK));
        assert_eq!(to_be(&limbs, 300), bytes);
    }

    #[test]
    fn neg_inverse_inverts_odd_limbs() {
        for n0 in [1u32, 3, LIMB_MASK, 0x0234_5677, 0x0400_0001] {
            let product = n0.wrapping_mul(neg_inverse(n0)) & LIMB_MASK;
            assert_eq!(product, LIMB_MASK, "{n0:#x}");
        }
    }

    #[test]
    fn even_or_zero_moduli_are_refused() {
        assert!(Modulus::new(&[]).is_none());
        assert!(Modulus::new(&[0, 0]).is_none());
        assert!(Modulus::new(&[1, 2]).is_none());
        assert!(Modulus::new(&[1, 3]).is_some());
    }
}
