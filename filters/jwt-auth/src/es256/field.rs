//! Arithmetic modulo the P-256 prime p = 2^256 - 2^224 + 2^192 + 2^96 - 1,
//! shaped for Wasm.
//!
//! Why not `p256`'s own field: it is Montgomery arithmetic on 32-bit words
//! with a carry chain after every product (Wasm has no 64x64->128
//! multiply), about 75 ns per product in V8. Here a product is 64
//! `32x32->64` multiplies whose low and high halves are summed into
//! columns of at most 36 bits, with no carries at all, then NIST's fast
//! reduction (FIPS 186-4, D.2.3): p's form turns each column above 2^256
//! into signed sums of lower columns, with no multiplies. One pass of
//! signed carries ends it.
//!
//! Elements are kept *weakly* reduced: eight 32-bit words of a value below
//! 2^256, not necessarily below p. Only [`Fe::is_zero`] and
//! [`Fe::to_canonical`] reduce fully. Variable time: only public values
//! (keys, signatures, messages) ever pass through here.

/// The low 32 bits of a word.
const LOW: u64 = 0xffff_ffff;

/// p's words, least significant first.
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

/// An element of GF(p): eight 32-bit words, least significant first, of a
/// value below 2^256.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fe([u32; 8]);

impl Fe {
    pub const ZERO: Self = Self([0; 8]);
    pub const ONE: Self = Self([1, 0, 0, 0, 0, 0, 0, 0]);

    /// The element of a 32-byte big-endian integer; any value below 2^256
    /// is a valid (weakly reduced) element.
    #[must_use]
    pub fn from_be_bytes(bytes: &[u8; 32]) -> Self {
        let mut words = [0u32; 8];
        for (word, chunk) in words.iter_mut().rev().zip(bytes.chunks_exact(4)) {
            let mut be = [0u8; 4];
            be.copy_from_slice(chunk);
            *word = u32::from_be_bytes(be);
        }
        Self(words)
    }

    /// The element of eight words, least significant first; any words
    /// are a valid (weakly reduced) element.
    #[must_use]
    pub const fn from_words(words: [u32; 8]) -> Self {
        Self(words)
    }

    /// The fully reduced value as 32 big-endian bytes.
    #[cfg(test)]
    #[must_use]
    pub fn to_be_bytes(self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        for (chunk, word) in bytes
            .chunks_exact_mut(4)
            .zip(self.to_canonical().iter().rev())
        {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        bytes
    }

    /// The fully reduced value's words (below p), least significant first.
    #[must_use]
    pub fn to_canonical(self) -> [u32; 8] {
        // Below 2^256 < 2p, so one subtraction of p at most.
        if !below_p(&self.0) {
            let mut words = [0u32; 8];
            let mut borrow = 0i64;
            for ((out, &a), &p) in words.iter_mut().zip(&self.0).zip(&P) {
                let v = i64::from(a) - i64::from(p) + borrow;
                *out = (v & LOW as i64) as u32;
                borrow = v >> 32;
            }
            return words;
        }
        self.0
    }

    /// Whether the element is 0 mod p: its words are 0 or p.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 8] || self.0 == P
    }

    /// Whether both are the same element of GF(p).
    #[must_use]
    pub fn equals(&self, other: &Self) -> bool {
        self.to_canonical() == other.to_canonical()
    }

    #[must_use]
    pub fn add(&self, other: &Self) -> Self {
        let mut sum = [0i64; 8];
        for ((s, &a), &b) in sum.iter_mut().zip(&self.0).zip(&other.0) {
            *s = i64::from(a) + i64::from(b);
        }
        normalize(sum)
    }

    #[must_use]
    pub fn sub(&self, other: &Self) -> Self {
        let mut difference = [0i64; 8];
        for ((d, &a), &b) in difference.iter_mut().zip(&self.0).zip(&other.0) {
            *d = i64::from(a) - i64::from(b);
        }
        normalize(difference)
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
        let a = self.0.map(u64::from);
        let b = other.0.map(u64::from);
        // Column k holds the low halves of the products a_i b_j with
        // i + j = k and the high halves of those with i + j = k - 1: at
        // most 16 terms below 2^32 each.
        let mut columns = [0u64; 17];
        for (i, &a) in a.iter().enumerate() {
            let mut high = 0;
            for (column, &b) in columns.iter_mut().skip(i).zip(&b) {
                let product = a * b;
                *column += (product & LOW) + high;
                high = product >> 32;
            }
            if let Some(column) = columns.get_mut(i + 8) {
                *column += high;
            }
        }
        reduce(columns)
    }

    #[must_use]
    pub fn square(&self) -> Self {
        let a = self.0.map(u64::from);
        // The cross products a_i a_j (i < j) once, then every column
        // doubled, then the squares a_i^2: 36 multiplies, not 64.
        let mut columns = [0u64; 17];
        for (i, &a_i) in a.iter().enumerate() {
            let mut high = 0;
            let row = columns.iter_mut().skip(2 * i + 1);
            for (column, &a_j) in row.zip(a.iter().skip(i + 1)) {
                let product = a_i * a_j;
                *column += (product & LOW) + high;
                high = product >> 32;
            }
            if let Some(column) = columns.get_mut(i + 8) {
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
        reduce(columns)
    }
}

/// Whether the words are below p.
fn below_p(words: &[u32; 8]) -> bool {
    for (&a, &p) in words.iter().zip(&P).rev() {
        if a != p {
            return a < p;
        }
    }
    false
}

/// The element of `sum c_k 2^(32k)`, every `c_k` below 2^37.
fn reduce(columns: [u64; 17]) -> Fe {
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16] =
        columns.map(|c| c as i64);
    // 2^512 = 2^256 2^256 = 2^480 - 2^448 - 2^352 + 2^256 (mod p), so
    // column 16 moves onto columns 15, 14, 11 and 8.
    let (c8, c11, c14, c15) = (c8 + c16, c11 - c16, c14 - c16, c15 + c16);
    // FIPS 186-4 D.2.3: T + 2 S1 + 2 S2 + S3 + S4 - D1 - D2 - D3 - D4,
    // gathered by word. It is linear in the columns, so it holds for
    // columns wider than a word, and they stay below 2^40 in magnitude.
    normalize([
        c0 + c8 + c9 - c11 - c12 - c13 - c14,
        c1 + c9 + c10 - c12 - c13 - c14 - c15,
        c2 + c10 + c11 - c13 - c14 - c15,
        c3 + 2 * (c11 + c12) + c13 - c15 - c8 - c9,
        c4 + 2 * (c12 + c13) + c14 - c9 - c10,
        c5 + 2 * (c13 + c14) + c15 - c10 - c11,
        c6 + 3 * c14 + 2 * c15 + c13 - c8 - c9,
        c7 + 3 * c15 + c8 - c10 - c11 - c12 - c13,
    ])
}

/// The element of `sum r_j 2^(32j)` for signed `r_j` below 2^60 in
/// magnitude: carries word to word, and folds what passes 2^256 back in
/// with 2^256 = 2^224 - 2^192 - 2^96 + 1 (mod p) until nothing does
/// (at most three rounds).
fn normalize(mut words: [i64; 8]) -> Fe {
    loop {
        let mut carry = 0i64;
        for word in &mut words {
            let value = *word + carry;
            *word = value & LOW as i64;
            // Arithmetic shift: the floor, so the word stays in 0..2^32.
            carry = value >> 32;
        }
        if carry == 0 {
            return Fe(words.map(|w| w as u32));
        }
        let [w0, _, _, w3, _, _, w6, w7] = &mut words;
        *w0 += carry;
        *w3 -= carry;
        *w6 -= carry;
        *w7 += carry;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;
    use proptest::prelude::*;

    fn p() -> BigUint {
        BigUint::from_slice(&P)
    }

    fn big(fe: &Fe) -> BigUint {
        BigUint::from_slice(&fe.0)
    }

    fn fe(words: [u32; 8]) -> Fe {
        Fe(words)
    }

    /// Any 256-bit value, with the edges (0, p - 1, p, 2^256 - 1 and
    /// words of all ones) drawn often.
    fn element() -> impl Strategy<Value = Fe> {
        let p_minus_one = {
            let mut words = P;
            words[0] -= 1;
            words
        };
        prop_oneof![
            4 => proptest::array::uniform8(any::<u32>()).prop_map(fe),
            1 => proptest::array::uniform8(prop_oneof![Just(0u32), Just(u32::MAX), Just(1)]).prop_map(fe),
            1 => prop_oneof![Just(fe([0; 8])), Just(fe(P)), Just(fe(p_minus_one)), Just(fe([u32::MAX; 8]))],
        ]
    }

    fn check(result: Fe, expected: BigUint) -> Result<(), TestCaseError> {
        // Weakly reduced: below 2^256 (true of any eight words), and the
        // right residue.
        prop_assert_eq!(big(&result) % p(), expected % p());
        prop_assert_eq!(
            BigUint::from_slice(&result.to_canonical()),
            big(&result) % p()
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn products_match_big_integers(a in element(), b in element()) {
            check(a.mul(&b), big(&a) * big(&b))?;
        }

        #[test]
        fn squares_match_products(a in element()) {
            check(a.square(), big(&a) * big(&a))?;
        }

        #[test]
        fn sums_and_differences_match_big_integers(a in element(), b in element()) {
            check(a.add(&b), big(&a) + big(&b))?;
            check(a.sub(&b), big(&a) + p() * 2u32 - big(&b))?;
            check(a.negate(), p() * 2u32 - big(&a))?;
        }

        #[test]
        fn zero_is_recognised_in_both_forms(a in element()) {
            prop_assert_eq!(a.is_zero(), big(&a) % p() == BigUint::ZERO);
            prop_assert!(a.sub(&a).is_zero());
        }
    }

    #[test]
    fn the_largest_products_reduce() {
        let max = fe([u32::MAX; 8]);
        assert_eq!(big(&max.mul(&max)) % p(), (big(&max) * big(&max)) % p());
        assert!(fe(P).is_zero());
        assert!(fe(P).mul(&max).is_zero());
        assert!(fe(P).equals(&Fe::ZERO));
        assert!(Fe::ONE.equals(&fe(P).add(&Fe::ONE)));
    }

    #[test]
    fn big_endian_bytes_read_most_significant_word_first() {
        let mut bytes = [0u8; 32];
        bytes[31] = 1;
        bytes[0] = 0x80;
        let fe = Fe::from_be_bytes(&bytes);
        assert_eq!(fe.0[0], 1);
        assert_eq!(fe.0[7], 0x8000_0000);
    }
}
