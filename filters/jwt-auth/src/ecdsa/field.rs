//! Arithmetic modulo the NIST primes of P-256, P-384 and P-521, shaped for
//! Wasm.
//!
//! Why not the `p256`/`p384`/`p521` crates' own fields: theirs is
//! Montgomery arithmetic on 32-bit words with a carry chain after every
//! product (Wasm has no 64x64->128 multiply), about 75 ns per P-256 product
//! in V8. Here a product is `N^2` `32x32->64` multiplies whose low and high
//! halves are summed into columns of at most 38 bits, with no carries at
//! all. The primes are Solinas primes: `2^B` (B the bits of p) is a sum of
//! a few signed powers of 2^32 mod p ([`Params::FOLD`]), so each column
//! above the top word folds onto lower ones with shifts and additions only
//! (the idea behind NIST's fast reduction, FIPS 186-4 D.2), and one pass
//! of signed carries ends it.
//!
//! Elements are kept *weakly* reduced: `N` 32-bit words of a value below
//! `2^B`, not necessarily below p. Only [`Fe::is_zero`], [`Fe::equals`]
//! and [`Fe::to_canonical`] reduce fully. Variable time: only public
//! values (keys, signatures, messages) ever pass through here.

use core::marker::PhantomData;

/// The low 32 bits of a word.
const LOW: u64 = 0xffff_ffff;

/// Columns of a product, for up to 17 words (P-521): `2N + 1` of them.
pub const COLUMNS: usize = 35;

/// What defines a curve's field and group for this module.
pub trait Params<const N: usize>: Copy + core::fmt::Debug {
    /// p's words, least significant first.
    const P: [u32; N];
    /// Bits of p and of n (the same for these curves): B.
    const BITS: usize;
    /// Bytes of a coordinate or scalar: B / 8, rounded up.
    const BYTES: usize = Self::BITS.div_ceil(8);
    /// Bits the top word may use in a weakly reduced element: p is above
    /// `2^(B - 1)`, so a value below `2^B` is below 2p.
    const TOP_BITS: usize = Self::BITS - 32 * (N - 1);
    /// `2^B mod p` as `(word, coefficient)` terms.
    const FOLD: &'static [(usize, i64)];
    /// `sum c_k 2^(32k)` (k = 0..=2N) as `N` signed words: every column
    /// from N up folded onto lower ones with [`Self::FOLD`]. Written out
    /// per curve (the test `reductions_fold_every_column` checks each): a
    /// generic loop over the columns made P-256 verification 1.5x slower
    /// in V8.
    fn reduce(columns: [i64; COLUMNS]) -> [i64; N];
    /// The group order n's words, least significant first.
    const ORDER: [u32; N];
}

/// P-256: p = 2^256 - 2^224 + 2^192 + 2^96 - 1.
#[derive(Clone, Copy, Debug)]
pub struct P256;

impl Params<8> for P256 {
    const P: [u32; 8] = [
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0,
        0,
        1,
        0xffff_ffff,
    ];
    const BITS: usize = 256;
    /// 2^256 = 2^224 - 2^192 - 2^96 + 1.
    const FOLD: &'static [(usize, i64)] = &[(0, 1), (3, -1), (6, -1), (7, 1)];

    /// FIPS 186-4 D.2.3's T + 2 S1 + 2 S2 + S3 + S4 - D1 - D2 - D3 - D4,
    /// plus column 16.
    fn reduce(columns: [i64; COLUMNS]) -> [i64; 8] {
        let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, ..] =
            columns;
        [
            c0 + c8 + c9 - c11 - c12 - c13 - c14 + 3 * c16,
            c1 + c9 + c10 - c12 - c13 - c14 - c15,
            c2 + c10 + c11 - c13 - c14 - c15 - c16,
            c3 - c8 - c9 + 2 * (c11 + c12) + c13 - c15 - 4 * c16,
            c4 - c9 - c10 + 2 * (c12 + c13) + c14 - c16,
            c5 - c10 - c11 + 2 * (c13 + c14) + c15,
            c6 - c8 - c9 + c13 + 3 * c14 + 2 * (c15 - c16),
            c7 + c8 - c10 - c11 - c12 - c13 + 3 * c15 + 5 * c16,
        ]
    }
    const ORDER: [u32; 8] = [
        0xfc63_2551,
        0xf3b9_cac2,
        0xa717_9e84,
        0xbce6_faad,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0xffff_ffff,
    ];
}

/// P-384: p = 2^384 - 2^128 - 2^96 + 2^32 - 1.
#[derive(Clone, Copy, Debug)]
pub struct P384;

impl Params<12> for P384 {
    const P: [u32; 12] = [
        0xffff_ffff,
        0,
        0,
        0xffff_ffff,
        0xffff_fffe,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
    ];
    const BITS: usize = 384;
    /// 2^384 = 2^128 + 2^96 - 2^32 + 1.
    const FOLD: &'static [(usize, i64)] = &[(0, 1), (1, -1), (3, 1), (4, 1)];

    /// FIPS 186-4 D.2.4's T + 2 S1 + S2 + S3 + S4 + S5 + S6 - D1 - D2 -
    /// D3, plus column 24.
    fn reduce(columns: [i64; COLUMNS]) -> [i64; 12] {
        let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23, c24, ..] =
            columns;
        [
            c0 + c12 + c20 + c21 - c23 + c24,
            c1 - c12 + c13 - c20 + c22 + c23 - 2 * c24,
            c2 - c13 + c14 - c21 + c23 + c24,
            c3 + c12 - c14 + c15 + c20 + c21 - c22 - c23 + 2 * c24,
            c4 + c12 + c13 - c15 + c16 + c20 + 2 * c21 + c22 - 2 * c23,
            c5 + c13 + c14 - c16 + c17 + c21 + 2 * c22 + c23 - 2 * c24,
            c6 + c14 + c15 - c17 + c18 + c22 + 2 * c23 + c24,
            c7 + c15 + c16 - c18 + c19 + c23 + 2 * c24,
            c8 + c16 + c17 - c19 + c20 + c24,
            c9 + c17 + c18 - c20 + c21,
            c10 + c18 + c19 - c21 + c22,
            c11 + c19 + c20 - c22 + c23,
        ]
    }
    const ORDER: [u32; 12] = [
        0xccc5_2973,
        0xecec_196a,
        0x48b0_a77a,
        0x581a_0db2,
        0xf437_2ddf,
        0xc763_4d81,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
    ];
}

/// P-521: p = 2^521 - 1, 17 words, the top one of 9 bits.
#[derive(Clone, Copy, Debug)]
pub struct P521;

impl Params<17> for P521 {
    const P: [u32; 17] = {
        let mut words = [u32::MAX; 17];
        words[16] = 0x1ff;
        words
    };
    const BITS: usize = 521;
    /// 2^521 = 1.
    const FOLD: &'static [(usize, i64)] = &[(0, 1)];

    /// Column 17 + j is `2^(32j) 2^544 = 2^(32j) 2^23`: its low 9 bits
    /// times 2^23 go onto word j and the rest onto word j + 1 (for j = 16,
    /// word 17 is 2^544 again: onto word 0, times 2^23). Column 34 is
    /// `2^1088 = 2^46`: onto word 1, times 2^14. Words stay below 2^53.
    fn reduce(columns: [i64; COLUMNS]) -> [i64; 17] {
        let mut words = [0i64; 17];
        for (word, &column) in words.iter_mut().zip(&columns) {
            *word = column;
        }
        let mut spill = 0;
        for (word, &column) in words.iter_mut().zip(columns.iter().skip(17)) {
            *word += ((column & 0x1ff) << 23) + spill;
            spill = column >> 9;
        }
        let [w0, w1, ..] = &mut words;
        *w0 += spill << 23;
        *w1 += columns.get(34).map_or(0, |&column| column << 14);
        words
    }

    const ORDER: [u32; 17] = [
        0x9138_6409,
        0xbb6f_b71e,
        0x899c_47ae,
        0x3bb5_c9b8,
        0xf709_a5d0,
        0x7fcc_0148,
        0xbf2f_966b,
        0x5186_8783,
        0xffff_fffa,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0x1ff,
    ];
}

/// An element of GF(p): `N` 32-bit words, least significant first, of a
/// value below `2^(32N)`.
#[derive(Debug)]
pub struct Fe<C, const N: usize> {
    words: [u32; N],
    curve: PhantomData<C>,
}

impl<C, const N: usize> Clone for Fe<C, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, const N: usize> Copy for Fe<C, N> {}

impl<C: Params<N>, const N: usize> Fe<C, N> {
    pub const ZERO: Self = Self::from_words([0; N]);
    pub const ONE: Self = {
        let mut words = [0; N];
        words[0] = 1;
        Self::from_words(words)
    };

    /// The element of `N` words, least significant first; any words are
    /// a valid (weakly reduced) element.
    #[must_use]
    pub const fn from_words(words: [u32; N]) -> Self {
        Self {
            words,
            curve: PhantomData,
        }
    }

    /// The element of a [`Params::BYTES`]-byte big-endian integer below
    /// p (as the curve crates give coordinates and scalars). `None` for
    /// another length or a value of more than [`Params::BITS`] bits.
    #[must_use]
    pub fn from_be_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != C::BYTES {
            return None;
        }
        // Least significant byte first, then four at a time.
        let mut words = [0u32; N];
        for (i, &byte) in bytes.iter().rev().enumerate() {
            if let Some(word) = words.get_mut(i / 4) {
                *word |= u32::from(byte) << (8 * (i % 4));
            }
        }
        let top = words.last().copied().unwrap_or(0);
        (u64::from(top) >> C::TOP_BITS == 0).then(|| Self::from_words(words))
    }

    /// The fully reduced value as [`Params::BYTES`] big-endian bytes.
    #[cfg(test)]
    #[must_use]
    pub fn to_be_bytes(self) -> Vec<u8> {
        let bytes: Vec<u8> = self
            .to_canonical()
            .iter()
            .rev()
            .flat_map(|word| word.to_be_bytes())
            .collect();
        bytes[4 * N - C::BYTES..].to_vec()
    }

    /// The fully reduced value's words (below p), least significant first.
    #[must_use]
    pub fn to_canonical(self) -> [u32; N] {
        if below(&self.words, &C::P) {
            return self.words;
        }
        // Below 2^B < 2p: one subtraction of p at most.
        let mut words = [0u32; N];
        let mut borrow = 0i64;
        for ((out, &a), &p) in words.iter_mut().zip(&self.words).zip(&C::P) {
            let value = i64::from(a) - i64::from(p) + borrow;
            *out = (value & LOW as i64) as u32;
            borrow = value >> 32;
        }
        words
    }

    /// Whether the element is 0 mod p: its words are 0 or p.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.words == [0; N] || self.words == C::P
    }

    /// Whether both are the same element of GF(p).
    #[must_use]
    pub fn equals(&self, other: &Self) -> bool {
        self.to_canonical() == other.to_canonical()
    }

    #[must_use]
    pub fn add(&self, other: &Self) -> Self {
        let mut sum = [0i64; N];
        for ((s, &a), &b) in sum.iter_mut().zip(&self.words).zip(&other.words) {
            *s = i64::from(a) + i64::from(b);
        }
        normalize::<C, N>(sum)
    }

    #[must_use]
    pub fn sub(&self, other: &Self) -> Self {
        let mut difference = [0i64; N];
        for ((d, &a), &b) in difference.iter_mut().zip(&self.words).zip(&other.words) {
            *d = i64::from(a) - i64::from(b);
        }
        normalize::<C, N>(difference)
    }

    #[must_use]
    pub fn negate(&self) -> Self {
        Self::ZERO.sub(self)
    }

    #[must_use]
    pub fn double(&self) -> Self {
        self.add(self)
    }

    #[must_use]
    pub fn mul(&self, other: &Self) -> Self {
        let a = self.words.map(u64::from);
        let b = other.words.map(u64::from);
        // Column k holds the low halves of the products a_i b_j with
        // i + j = k and the high halves of those with i + j = k - 1: at
        // most 2N terms below 2^32 each.
        let mut columns = [0u64; COLUMNS];
        for (i, &a) in a.iter().enumerate() {
            let mut high = 0;
            for (column, &b) in columns.iter_mut().skip(i).zip(&b) {
                let product = a * b;
                *column += (product & LOW) + high;
                high = product >> 32;
            }
            if let Some(column) = columns.get_mut(i + N) {
                *column += high;
            }
        }
        reduce::<C, N>(columns)
    }

    /// The inverse, `self^(p - 2)` (Fermat); 0 for 0. Square and multiply
    /// over the exponent's bits: only table building inverts, twice per
    /// table.
    #[must_use]
    pub fn invert(&self) -> Self {
        let mut exponent = C::P;
        if let Some(low) = exponent.first_mut() {
            // p's low word is all ones for both curves: no borrow.
            *low -= 2;
        }
        let mut result = Self::ONE;
        for word in exponent.iter().rev() {
            for bit in (0..32).rev() {
                result = result.square();
                if (word >> bit) & 1 == 1 {
                    result = result.mul(self);
                }
            }
        }
        result
    }

    #[must_use]
    pub fn square(&self) -> Self {
        let a = self.words.map(u64::from);
        // The cross products a_i a_j (i < j) once, then every column
        // doubled, then the squares a_i^2: N(N+1)/2 multiplies, not N^2.
        let mut columns = [0u64; COLUMNS];
        for (i, &a_i) in a.iter().enumerate() {
            let mut high = 0;
            let row = columns.iter_mut().skip(2 * i + 1);
            for (column, &a_j) in row.zip(a.iter().skip(i + 1)) {
                let product = a_i * a_j;
                *column += (product & LOW) + high;
                high = product >> 32;
            }
            if let Some(column) = columns.get_mut(i + N) {
                *column += high;
            }
        }
        for column in &mut columns {
            *column <<= 1;
        }
        for (pair, &a) in columns.chunks_exact_mut(2).zip(&a) {
            if let [low, high] = pair {
                let product = a * a;
                *low += product & LOW;
                *high += product >> 32;
            }
        }
        reduce::<C, N>(columns)
    }
}

/// Whether `a < b`, both least significant word first.
fn below<const N: usize>(a: &[u32; N], b: &[u32; N]) -> bool {
    for (&a, &b) in a.iter().zip(b).rev() {
        if a != b {
            return a < b;
        }
    }
    false
}

/// The element of `sum c_k 2^(32k)` (k = 0..=2N), every `c_k` below 2^38.
/// The words of [`Params::reduce`] stay below 2^53 in magnitude (P-256's
/// sum at most 14 columns; P-521's take columns shifted by 23 bits).
fn reduce<C: Params<N>, const N: usize>(columns: [u64; COLUMNS]) -> Fe<C, N> {
    normalize::<C, N>(C::reduce(columns.map(|c| c as i64)))
}

/// The element of `sum r_j 2^(32j)` for signed `r_j` below 2^60 in
/// magnitude: carries word to word, and folds what passes `2^B` back in
/// with [`Params::FOLD`] until nothing does. The first round leaves a
/// carry below 2^51 in magnitude, the next one a small one, and then -1,
/// 0 or 1; a fold of 1 or -1 cannot carry twice in a row the same way,
/// so it ends within a few rounds.
fn normalize<C: Params<N>, const N: usize>(mut words: [i64; N]) -> Fe<C, N> {
    loop {
        let mut carry = 0i64;
        for (i, word) in words.iter_mut().enumerate() {
            let value = *word + carry;
            // Arithmetic shifts: the floor, so each word stays in range.
            let bits = if i + 1 == N { C::TOP_BITS } else { 32 };
            *word = value & ((1 << bits) - 1);
            carry = value >> bits;
        }
        if carry == 0 {
            return Fe::from_words(words.map(|w| w as u32));
        }
        for &(word, coefficient) in C::FOLD {
            if let Some(word) = words.get_mut(word) {
                *word += coefficient * carry;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;
    use proptest::prelude::*;

    fn p<C: Params<N>, const N: usize>() -> BigUint {
        BigUint::from_slice(&C::P)
    }

    fn big<C, const N: usize>(fe: &Fe<C, N>) -> BigUint {
        BigUint::from_slice(&fe.words)
    }

    /// Any value below 2^B, with the edges (0, p - 1, p, all ones, words
    /// of 0, 1 and all ones) drawn often.
    fn element<C: Params<N>, const N: usize>() -> impl Strategy<Value = Fe<C, N>> {
        let p_minus_one = {
            let mut words = C::P;
            words[0] -= 1;
            words
        };
        let word = prop_oneof![Just(0u32), Just(u32::MAX), Just(1)];
        prop_oneof![
            4 => proptest::array::uniform::<_, N>(any::<u32>()),
            1 => proptest::array::uniform::<_, N>(word),
            1 => prop_oneof![Just([0; N]), Just(C::P), Just(p_minus_one), Just([u32::MAX; N])],
        ]
        .prop_map(|mut words| {
            words[N - 1] = (u64::from(words[N - 1]) & ((1 << C::TOP_BITS) - 1)) as u32;
            Fe::from_words(words)
        })
    }

    fn check<C: Params<N>, const N: usize>(
        result: Fe<C, N>,
        expected: BigUint,
    ) -> Result<(), TestCaseError> {
        // Weakly reduced (below 2^(32N), true of any N words) and the
        // right residue, and the canonical form below p.
        let residue = big(&result) % p::<C, N>();
        prop_assert_eq!(&residue, &(expected % p::<C, N>()));
        prop_assert_eq!(BigUint::from_slice(&result.to_canonical()), residue);
        Ok(())
    }

    fn arithmetic_matches<C: Params<N>, const N: usize>(
        a: Fe<C, N>,
        b: Fe<C, N>,
    ) -> Result<(), TestCaseError> {
        let p = p::<C, N>();
        check(a.mul(&b), big(&a) * big(&b))?;
        check(a.square(), big(&a) * big(&a))?;
        check(a.add(&b), big(&a) + big(&b))?;
        check(a.sub(&b), big(&a) + &p * 2u32 - big(&b))?;
        check(a.negate(), &p * 2u32 - big(&a))?;
        prop_assert_eq!(a.is_zero(), big(&a) % &p == BigUint::ZERO);
        prop_assert!(a.sub(&a).is_zero());
        prop_assert_eq!(a.equals(&b), big(&a) % &p == big(&b) % &p);
        if !a.is_zero() {
            prop_assert!(a.mul(&a.invert()).equals(&Fe::ONE));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn p256_arithmetic_matches_big_integers(a in element::<P256, 8>(), b in element::<P256, 8>()) {
            arithmetic_matches(a, b)?;
        }

        #[test]
        fn p384_arithmetic_matches_big_integers(a in element::<P384, 12>(), b in element::<P384, 12>()) {
            arithmetic_matches(a, b)?;
        }

        #[test]
        fn p521_arithmetic_matches_big_integers(a in element::<P521, 17>(), b in element::<P521, 17>()) {
            arithmetic_matches(a, b)?;
        }
    }

    #[test]
    fn the_fold_terms_are_two_to_the_bits_of_p_mod_p() {
        fn fold<C: Params<N>, const N: usize>() -> BigUint {
            let mut sum = p::<C, N>() * 4u32;
            for &(word, coefficient) in C::FOLD {
                let power = BigUint::from(1u32) << (32 * word);
                if coefficient > 0 {
                    sum += power * coefficient.unsigned_abs();
                } else {
                    sum -= power * coefficient.unsigned_abs();
                }
            }
            sum % p::<C, N>()
        }
        let two_to = |bits: usize| BigUint::from(1u32) << bits;
        assert_eq!(fold::<P256, 8>(), two_to(256) % p::<P256, 8>());
        assert_eq!(fold::<P384, 12>(), two_to(384) % p::<P384, 12>());
        assert_eq!(fold::<P521, 17>(), two_to(521) % p::<P521, 17>());
    }

    /// Each curve's written-out reduction is FOLD applied top down: with
    /// column k set to 1 (all others 0), the words must be 2^(32k) mod p.
    #[test]
    fn reductions_fold_every_column() {
        fn check_curve<C: Params<N>, const N: usize>() {
            for k in 0..=2 * N {
                let mut columns = [0i64; COLUMNS];
                columns[k] = 1;
                let words = C::reduce(columns);
                let mut value = p::<C, N>() * 64u32;
                for (j, &word) in words.iter().enumerate() {
                    let term = BigUint::from(word.unsigned_abs()) << (32 * j);
                    if word >= 0 {
                        value += term;
                    } else {
                        value -= term;
                    }
                }
                let expected = (BigUint::from(1u32) << (32 * k)) % p::<C, N>();
                assert_eq!(value % p::<C, N>(), expected, "column {k}");
            }
        }
        check_curve::<P256, 8>();
        check_curve::<P384, 12>();
        check_curve::<P521, 17>();
    }

    #[test]
    fn the_largest_products_reduce() {
        let max = Fe::<P256, 8>::from_words([u32::MAX; 8]);
        let p_itself = Fe::<P256, 8>::from_words(P256::P);
        assert_eq!(
            big(&max.mul(&max)) % p::<P256, 8>(),
            (big(&max) * big(&max)) % p::<P256, 8>()
        );
        assert!(p_itself.is_zero());
        assert!(p_itself.mul(&max).is_zero());
        assert!(p_itself.equals(&Fe::ZERO));
        assert!(Fe::ONE.equals(&p_itself.add(&Fe::ONE)));
        let max = Fe::<P384, 12>::from_words([u32::MAX; 12]);
        assert_eq!(
            big(&max.square()) % p::<P384, 12>(),
            (big(&max) * big(&max)) % p::<P384, 12>()
        );
    }

    #[test]
    fn big_endian_bytes_read_most_significant_word_first() {
        let mut bytes = [0u8; 32];
        bytes[31] = 1;
        bytes[0] = 0x80;
        let fe = Fe::<P256, 8>::from_be_bytes(&bytes).unwrap();
        assert_eq!(fe.words[0], 1);
        assert_eq!(fe.words[7], 0x8000_0000);
        assert!(Fe::<P256, 8>::from_be_bytes(&[0; 48]).is_none());
        // 66 bytes for P-521, of which 521 bits may be set.
        let mut bytes = [0u8; 66];
        bytes[0] = 1;
        let fe = Fe::<P521, 17>::from_be_bytes(&bytes).unwrap();
        assert_eq!(fe.words[16], 0x100);
        bytes[0] = 2;
        assert!(Fe::<P521, 17>::from_be_bytes(&bytes).is_none());
        assert_eq!(fe.to_be_bytes(), [&[1u8][..], &[0; 65]].concat());
    }
}
