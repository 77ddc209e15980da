//! RSA signature verification for RS256/384/512 (RSASSA-PKCS1-v1_5) and
//! PS256/384/512 (RSASSA-PSS, MGF1 with the same hash, salt length = hash
//! length as RFC 7518 §3.5 fixes it), RFC 8017 §8.
//!
//! Why our own code and not the `rsa` crate: inside Wasm the public
//! operation `s^e mod n` dominated the filter's cost. `rsa` 0.9
//! (num-bigint-dig) spends ~490 us per 2048-bit verification in V8 on
//! allocating generic arithmetic; `rsa` 0.10 and `crypto-bigint` 0.7's
//! Montgomery form (precomputed per key, 16 squarings + 1 multiply) take
//! ~270 us and ~115 us for the public operation, this module ~52 us (~56 us
//! for a whole RS256 check, hashing included; crate README, "Speed"). It
//! does only the public operation, so no secret is involved and constant
//! time does not matter. What makes it fast in Wasm:
//! - 32-bit limbs with 64-bit products: Wasm has a 64-bit multiply but no
//!   64x64->128 one, so 64-bit limbs cost four multiplies each.
//! - Montgomery multiplication (CIOS with two carry chains), two rows of
//!   the multiplier per pass over the accumulator, so each loaded limb
//!   serves two rows; iterators rather than indexing, so there are no
//!   bounds checks in the inner loop.
//! - Per key, at JWKS load: the limbs of `n`, `-n^-1 mod 2^32` and
//!   `R^2 mod n`, so a verification allocates three small buffers and does
//!   18 Montgomery products for e = 65537.
//!
//! The `rsa` crate stays as the reference of a differential property test
//! (tests/rsa_differential.rs) and mints the test tokens.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// Largest accepted modulus, in bits. BoringSSL's limit is 16384; 8192
/// keeps a hostile JWKS from making each verification very slow.
pub const MAX_BITS: usize = 8192;

/// Largest accepted public exponent, as the `rsa` crate has it (2^33 - 1).
const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// Why a JWK's `n`/`e` were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RsaKeyError {
    /// `n` is zero, even (no RSA modulus is), or larger than [`MAX_BITS`].
    #[error("RSA modulus [n] is zero, even or larger than 8192 bits")]
    Modulus,
    /// `e` is even, below 3, above 2^33 - 1, or not below `n`.
    #[error("RSA exponent [e] is out of range")]
    Exponent,
}

/// The hash of an RS*/PS* algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256 (RS256, PS256).
    Sha256,
    /// SHA-384 (RS384, PS384).
    Sha384,
    /// SHA-512 (RS512, PS512).
    Sha512,
}

impl Hash {
    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for part in parts {
                d.update(part);
            }
            d.finalize().to_vec()
        }
        match self {
            Self::Sha256 => run::<Sha256>(parts),
            Self::Sha384 => run::<Sha384>(parts),
            Self::Sha512 => run::<Sha512>(parts),
        }
    }

    /// The DER `DigestInfo` header that precedes the hash in an
    /// EMSA-PKCS1-v1_5 encoding (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Self::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Self::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Self::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// An RSA public key prepared for fast verification.
#[derive(Clone)]
pub struct RsaKey {
    /// `n`, little-endian 32-bit limbs.
    n: Vec<u32>,
    /// `-n^-1 mod 2^32`.
    n_inv: u32,
    /// `R^2 mod n` with `R = 2^(32 * limbs)`: multiplying by it enters
    /// Montgomery form.
    r2: Vec<u32>,
    e: u64,
    /// Modulus length in bytes (`k` in RFC 8017) and in bits.
    len: usize,
    bits: usize,
}

impl RsaKey {
    /// Prepares the key with modulus `n` and exponent `e` (big-endian,
    /// leading zero bytes allowed, as JWKs carry them).
    ///
    /// # Errors
    /// [`RsaKeyError`] for a modulus or exponent no RSA key has, with the
    /// `rsa` crate's limits.
    pub fn new(n: &[u8], e: &[u8]) -> Result<Self, RsaKeyError> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let Some(&top) = n.first() else {
            return Err(RsaKeyError::Modulus);
        };
        let len = n.len();
        let bits = len * 8 - top.leading_zeros() as usize;
        if bits > MAX_BITS || n.last().is_none_or(|last| last & 1 == 0) {
            return Err(RsaKeyError::Modulus);
        }
        if e.len() > 8 {
            return Err(RsaKeyError::Exponent);
        }
        let exponent = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let limbs = from_be(n, len.div_ceil(4));
        if exponent < 3
            || exponent & 1 == 0
            || exponent > MAX_EXPONENT
            || !less_than(&from_be(e, limbs.len()), &limbs)
        {
            return Err(RsaKeyError::Exponent);
        }
        let n0 = limbs.first().copied().unwrap_or(1);
        Ok(Self {
            n_inv: neg_inverse(n0),
            r2: r_squared(&limbs),
            n: limbs,
            e: exponent,
            len,
            bits,
        })
    }

    /// The modulus length in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// RSASSA-PKCS1-v1_5 verification (RFC 8017 §8.2.2) of `signature`
    /// over `message`.
    #[must_use]
    pub fn verify_pkcs1v15(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public(signature) else {
            return false;
        };
        // Encode what the signature must be and compare (step 3 of §8.2.2):
        // 00 01 FF..FF 00 DigestInfo H, with at least 8 bytes of FF.
        let prefix = hash.digest_info_prefix();
        let digest = hash.digest(&[message]);
        let t_len = prefix.len() + digest.len();
        let Some(ps_len) = self.len.checked_sub(t_len + 3).filter(|&l| l >= 8) else {
            return false;
        };
        let mut expected = Vec::with_capacity(self.len);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + ps_len, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&digest);
        em == expected
    }

    /// RSASSA-PSS verification (RFC 8017 §8.1.2, EMSA-PSS-VERIFY §9.1.2)
    /// with MGF1 over `hash` and a salt as long as the hash.
    #[must_use]
    pub fn verify_pss(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(m) = self.public(signature) else {
            return false;
        };
        // emBits = modBits - 1; when that is a multiple of 8 the encoding is
        // one byte shorter than the modulus and that leading byte must be 0.
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        let Some((lead, em)) = m.split_at_checked(m.len() - em_len) else {
            return false;
        };
        if lead.iter().any(|&b| b != 0) {
            return false;
        }
        let m_hash = hash.digest(&[message]);
        let h_len = m_hash.len();
        let s_len = h_len;
        if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
            return false;
        }
        let db_len = em_len - h_len - 1;
        let (Some(masked_db), Some(h)) = (em.get(..db_len), em.get(db_len..em_len - 1)) else {
            return false;
        };
        // The bits above emBits in the first byte must be zero.
        let top_mask = 0xffu8 >> (8 * em_len - em_bits);
        if masked_db.first().is_some_and(|&b| b & !top_mask != 0) {
            return false;
        }
        let mut db = mgf1(hash, h, db_len);
        for (d, m) in db.iter_mut().zip(masked_db) {
            *d ^= m;
        }
        if let Some(first) = db.first_mut() {
            *first &= top_mask;
        }
        // DB = PS (zeros) || 0x01 || salt.
        let zeros = db_len - s_len - 1;
        let (Some(ps), Some(&one), Some(salt)) =
            (db.get(..zeros), db.get(zeros), db.get(zeros + 1..))
        else {
            return false;
        };
        if one != 0x01 || ps.iter().any(|&b| b != 0) {
            return false;
        }
        hash.digest(&[&[0u8; 8], &m_hash, salt]) == h
    }

    /// RSAVP1 and I2OSP (RFC 8017 §5.2.2, §4.1): `s^e mod n` as `k` bytes,
    /// or `None` when the signature is not `k` bytes or not below `n`.
    fn public(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.len {
            return None;
        }
        let limbs = self.n.len();
        let base = from_be(signature, limbs);
        if !less_than(&base, &self.n) {
            return None;
        }
        let mut acc = vec![0u32; limbs];
        let mut tmp = vec![0u32; limbs];
        // Into Montgomery form: base * R^2 / R.
        mont_mul(&mut acc, &base, &self.r2, &self.n, self.n_inv);
        let base_m = acc.clone();
        // Left to right over the exponent's bits below the top one; the
        // last bit is done by the final product below.
        let bits = u64::BITS - self.e.leading_zeros();
        for i in (1..bits.saturating_sub(1)).rev() {
            mont_mul(&mut tmp, &acc, &acc, &self.n, self.n_inv);
            std::mem::swap(&mut acc, &mut tmp);
            if (self.e >> i) & 1 == 1 {
                mont_mul(&mut tmp, &acc, &base_m, &self.n, self.n_inv);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        // e is odd and at least 3: square once more, then multiply by the
        // plain base, which also leaves Montgomery form (x*R * s / R).
        mont_mul(&mut tmp, &acc, &acc, &self.n, self.n_inv);
        mont_mul(&mut acc, &tmp, &base, &self.n, self.n_inv);
        Some(to_be(&acc, self.len))
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// Big-endian bytes to `limbs` little-endian 32-bit limbs (the bytes must fit).
fn from_be(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks(4)) {
        *limb = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    }
    out
}

/// Limbs to `len` big-endian bytes (the value must fit).
fn to_be(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (chunk, limb) in out.rchunks_mut(4).zip(limbs) {
        let bytes = limb.to_be_bytes();
        let skip = bytes.len() - chunk.len();
        for (dst, src) in chunk.iter_mut().zip(bytes.iter().skip(skip)) {
            *dst = *src;
        }
    }
    out
}

/// `a < b` for equally long limb slices.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` modulo `2^(32 * len)`.
fn sub_assign(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = d as u32;
        borrow = d >> 63;
    }
}

/// `-n0^-1 mod 2^32` for odd `n0`, by Newton's iteration (each step
/// doubles the correct low bits; `n0` is its own inverse mod 8).
fn neg_inverse(n0: u32) -> u32 {
    let mut x = n0;
    for _ in 0..4 {
        x = x.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(x)));
    }
    x.wrapping_neg()
}

/// `R^2 mod n`, `R = 2^(32 * limbs)`. Once per key at JWKS load.
///
/// Write `32 * limbs = a * 2^t` with `a` odd. Doubling 1 modulo `n`
/// `32 * limbs + a` times gives `R * 2^a`; each Montgomery squaring maps
/// `R * 2^k` to `R * 2^(2k)`, so `t` of them give `R * 2^(32 * limbs)`,
/// which is `R^2`. About half the work of doubling all the way.
fn r_squared(n: &[u32]) -> Vec<u32> {
    let bits = 32 * n.len();
    let t = bits.trailing_zeros();
    let mut x = doubled(n, bits + (bits >> t));
    let mut tmp = vec![0u32; n.len()];
    let n_inv = neg_inverse(n.first().copied().unwrap_or(1));
    for _ in 0..t {
        mont_mul(&mut tmp, &x, &x, n, n_inv);
        std::mem::swap(&mut x, &mut tmp);
    }
    x
}

/// `2^count mod n`, by doubling.
fn doubled(n: &[u32], count: usize) -> Vec<u32> {
    let mut x = vec![0u32; n.len()];
    if let Some(first) = x.first_mut() {
        *first = 1;
    }
    for _ in 0..count {
        let mut carry = 0u32;
        for limb in &mut x {
            let next = *limb >> 31;
            *limb = (*limb << 1) | carry;
            carry = next;
        }
        if carry != 0 || !less_than(&x, n) {
            sub_assign(&mut x, n);
        }
    }
    x
}

/// The low 32 bits of a 64-bit word, as a 64-bit word.
fn lo(x: u64) -> u64 {
    x & 0xffff_ffff
}

/// `t = a * b / R mod n` (Montgomery product; `a`, `b` below `n`, all
/// slices as long as `n`).
fn mont_mul(t: &mut [u32], a: &[u32], b: &[u32], n: &[u32], n_inv: u32) {
    t.fill(0);
    let mut top = 0u64;
    let pairs = b.chunks_exact(2);
    let rest = pairs.remainder();
    for pair in pairs {
        if let [b0, b1] = pair {
            top = two_rows(t, top, a, *b0, *b1, n, n_inv);
        }
    }
    if let [b0] = rest {
        top = one_row(t, top, a, *b0, n, n_inv);
    }
    // The result is below 2n: one conditional subtraction.
    if top != 0 || !less_than(t, n) {
        sub_assign(t, n);
    }
}

/// One CIOS step: `(t + a*b + m*n) / 2^32` with `m` chosen to make the
/// division exact. `top` is the word above `t`; returns the new one.
fn one_row(t: &mut [u32], top: u64, a: &[u32], b: u32, n: &[u32], n_inv: u32) -> u64 {
    let (Some((t0, t_rest)), Some((&a0, a_rest)), Some((&n0, n_rest))) =
        (t.split_first_mut(), a.split_first(), n.split_first())
    else {
        return top;
    };
    let b = u64::from(b);
    let x = u64::from(*t0) + u64::from(a0) * b;
    let m = u64::from((x as u32).wrapping_mul(n_inv));
    let y = lo(x) + m * u64::from(n0);
    // Two carry chains: c1 for a*b, c2 for m*n. Each sum stays below 2^64:
    // (2^32-1) + (2^32-1)^2 + (2^32-1) = 2^64 - 1.
    let (mut c1, mut c2) = (x >> 32, y >> 32);
    let mut out = t0;
    for ((tj, &aj), &nj) in t_rest.iter_mut().zip(a_rest).zip(n_rest) {
        let x = u64::from(*tj) + u64::from(aj) * b + c1;
        c1 = x >> 32;
        let y = lo(x) + m * u64::from(nj) + c2;
        c2 = y >> 32;
        *out = y as u32;
        out = tj;
    }
    let z = top + c1 + c2;
    *out = z as u32;
    z >> 32
}

/// Two CIOS steps (multiplier limbs `b0` then `b1`) in one pass: the
/// second row runs one limb behind the first and consumes its output
/// while it is still in a register, so `t`, `a` and `n` are read once for
/// two rows. About 15% faster than [`one_row`] twice in V8.
fn two_rows(t: &mut [u32], top: u64, a: &[u32], b0: u32, b1: u32, n: &[u32], n_inv: u32) -> u64 {
    let ([t0, t1, t_rest @ ..], [a0, a1, a_rest @ ..], [n0, n1, n_rest @ ..]) = (&mut *t, a, n)
    else {
        // Fewer than two limbs: no real key, but stay correct.
        let top = one_row(t, top, a, b0, n, n_inv);
        return one_row(t, top, a, b1, n, n_inv);
    };
    let (ba, bb) = (u64::from(b0), u64::from(b1));
    let (a0, a1, n0, n1) = (
        u64::from(*a0),
        u64::from(*a1),
        u64::from(*n0),
        u64::from(*n1),
    );
    // Row A, limbs 0 and 1; limb 1 yields u0, row A's first output.
    let x = u64::from(*t0) + a0 * ba;
    let ma = u64::from((x as u32).wrapping_mul(n_inv));
    let y = lo(x) + ma * n0;
    let (mut c1a, mut c2a) = (x >> 32, y >> 32);
    let x = u64::from(*t1) + a1 * ba + c1a;
    c1a = x >> 32;
    let y = lo(x) + ma * n1 + c2a;
    c2a = y >> 32;
    // Row B, limb 0, on u0.
    let x = lo(y) + a0 * bb;
    let mb = u64::from((x as u32).wrapping_mul(n_inv));
    let y = lo(x) + mb * n0;
    let (mut c1b, mut c2b) = (x >> 32, y >> 32);
    let (mut a_prev, mut n_prev) = (a1, n1);
    // Row A reads t[j]; row B writes t[j-2], which row A has read already.
    let (mut out2, mut out1) = (t0, t1);
    for ((tj, &aj), &nj) in t_rest.iter_mut().zip(a_rest).zip(n_rest) {
        let (aj, nj) = (u64::from(aj), u64::from(nj));
        let x = u64::from(*tj) + aj * ba + c1a;
        c1a = x >> 32;
        let y = lo(x) + ma * nj + c2a;
        c2a = y >> 32;
        let x = lo(y) + a_prev * bb + c1b;
        c1b = x >> 32;
        let y = lo(x) + mb * n_prev + c2b;
        c2b = y >> 32;
        *out2 = y as u32;
        out2 = out1;
        out1 = tj;
        a_prev = aj;
        n_prev = nj;
    }
    // Row A's top word is its last output limb; row B consumes it.
    let z = top + c1a + c2a;
    let top_a = z >> 32;
    let x = lo(z) + a_prev * bb + c1b;
    c1b = x >> 32;
    let y = lo(x) + mb * n_prev + c2b;
    c2b = y >> 32;
    *out2 = y as u32;
    let z = top_a + c1b + c2b;
    *out1 = z as u32;
    z >> 32
}

/// MGF1 (RFC 8017 §B.2.1): `len` bytes of `Hash(seed || counter)`.
fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut counter = 0u32;
    while out.len() < len {
        out.extend_from_slice(&hash.digest(&[seed, &counter.to_be_bytes()]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::B64URL;
    use base64::Engine;

    /// RFC 7520 §3.4 (RSA key of "bilbo.baggins@hobbiton.example") and the
    /// §4.2 PS384 JWS over the §4 payload (not JSON, so checked here
    /// rather than through the JWT parser).
    const RFC7520_N: &str = "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw";
    const RFC7520_PS384: &str = "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2IpN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw";
    /// RFC 7515 Appendix A.2.1: RSA key and RS256 JWS.
    const RFC7515_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const RFC7515_RS256: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

    fn key(n: &str) -> RsaKey {
        RsaKey::new(&B64URL.decode(n).unwrap(), &[1, 0, 1]).unwrap()
    }

    fn split(jws: &str) -> (&str, Vec<u8>) {
        let (input, sig) = jws.rsplit_once('.').unwrap();
        (input, B64URL.decode(sig).unwrap())
    }

    #[test]
    fn rfc7520_ps384_verifies_and_other_hashes_or_bits_do_not() {
        let key = key(RFC7520_N);
        let (input, sig) = split(RFC7520_PS384);
        assert!(key.verify_pss(Hash::Sha384, input.as_bytes(), &sig));
        assert!(!key.verify_pss(Hash::Sha256, input.as_bytes(), &sig));
        assert!(!key.verify_pkcs1v15(Hash::Sha384, input.as_bytes(), &sig));
        assert!(!key.verify_pss(Hash::Sha384, b"other", &sig));
        let mut bad = sig.clone();
        bad[100] ^= 0x40;
        assert!(!key.verify_pss(Hash::Sha384, input.as_bytes(), &bad));
    }

    #[test]
    fn rfc7515_rs256_verifies_and_pss_does_not_accept_it() {
        let key = key(RFC7515_N);
        let (input, sig) = split(RFC7515_RS256);
        assert_eq!(key.bits(), 2048);
        assert!(key.verify_pkcs1v15(Hash::Sha256, input.as_bytes(), &sig));
        assert!(!key.verify_pkcs1v15(Hash::Sha512, input.as_bytes(), &sig));
        assert!(!key.verify_pss(Hash::Sha256, input.as_bytes(), &sig));
    }

    #[test]
    fn signatures_of_the_wrong_length_or_not_below_n_are_refused() {
        let key = key(RFC7515_N);
        let (input, sig) = split(RFC7515_RS256);
        // With a leading zero byte the value is the same, the length is not.
        let mut longer = vec![0u8];
        longer.extend_from_slice(&sig);
        assert!(!key.verify_pkcs1v15(Hash::Sha256, input.as_bytes(), &longer));
        assert!(!key.verify_pkcs1v15(Hash::Sha256, input.as_bytes(), &sig[1..]));
        assert!(!key.verify_pkcs1v15(Hash::Sha256, input.as_bytes(), &[]));
        // s + n (when it still fits in k bytes) is the same residue, and
        // RFC 8017 §5.2.2 step 1 refuses it.
        let n = B64URL.decode(RFC7515_N).unwrap();
        let limbs = n.len() / 4;
        let mut sum = from_be(&sig, limbs + 1);
        let n_limbs = from_be(&n, limbs + 1);
        let mut carry = 0u64;
        for (s, &m) in sum.iter_mut().zip(&n_limbs) {
            let v = u64::from(*s) + u64::from(m) + carry;
            *s = v as u32;
            carry = v >> 32;
        }
        if sum[limbs] == 0 {
            let wrapped = to_be(&sum[..limbs], n.len());
            assert!(!key.verify_pkcs1v15(Hash::Sha256, input.as_bytes(), &wrapped));
        }
    }

    #[test]
    fn keys_outside_the_rsa_limits_are_refused() {
        let n = B64URL.decode(RFC7515_N).unwrap();
        assert_eq!(RsaKey::new(&[], &[3]).err(), Some(RsaKeyError::Modulus));
        assert_eq!(RsaKey::new(&[0, 0], &[3]).err(), Some(RsaKeyError::Modulus));
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert_eq!(RsaKey::new(&even, &[3]).err(), Some(RsaKeyError::Modulus));
        let mut huge = vec![0xffu8; MAX_BITS / 8 + 1];
        huge[0] = 1;
        assert_eq!(RsaKey::new(&huge, &[3]).err(), Some(RsaKeyError::Modulus));
        for e in [&[][..], &[1], &[2], &[1, 0], &[2, 0, 0, 0, 1]] {
            assert_eq!(
                RsaKey::new(&n, e).err(),
                Some(RsaKeyError::Exponent),
                "{e:?}"
            );
        }
        assert!(RsaKey::new(&n, &[3]).is_ok());
        let mut padded = vec![0u8, 0];
        padded.extend_from_slice(&n);
        assert_eq!(RsaKey::new(&padded, &[0, 1, 0, 1]).unwrap().bits(), 2048);
    }

    #[test]
    fn r_squared_by_squarings_equals_r_squared_by_doubling() {
        let rfc = B64URL.decode(RFC7515_N).unwrap();
        for bytes in [&rfc[..], &rfc[..100], &rfc[..13], &rfc[..5]] {
            let mut n = bytes.to_vec();
            *n.last_mut().unwrap() |= 1;
            let limbs = from_be(&n, n.len().div_ceil(4));
            assert_eq!(r_squared(&limbs), doubled(&limbs, 64 * limbs.len()));
        }
    }

    #[test]
    fn neg_inverse_inverts_odd_words() {
        for n0 in [1u32, 3, 0xffff_ffff, 0x1234_5677, 0x8000_0001] {
            assert_eq!(n0.wrapping_mul(neg_inverse(n0)), u32::MAX, "{n0:#x}");
        }
    }

    #[test]
    fn montgomery_product_matches_schoolbook_for_small_moduli() {
        // n = 2^64 - 59 (prime), R = 2^64: check a*b/R mod n via u128.
        let n: u64 = u64::MAX - 58;
        let limbs = [n as u32, (n >> 32) as u32];
        let n_inv = neg_inverse(limbs[0]);
        let r_inv = {
            // R^-1 mod n by Fermat: R^(n-2) mod n.
            let r = (1u128 << 64) % u128::from(n);
            let mut result = 1u128;
            let (mut base, mut exp) = (r, u128::from(n - 2));
            while exp > 0 {
                if exp & 1 == 1 {
                    result = result * base % u128::from(n);
                }
                base = base * base % u128::from(n);
                exp >>= 1;
            }
            result
        };
        for (a, b) in [
            (0u64, 5u64),
            (1, 1),
            (n - 1, n - 1),
            (123_456_789, 987_654_321_012),
        ] {
            let mut t = [0u32; 2];
            let al = [a as u32, (a >> 32) as u32];
            let bl = [b as u32, (b >> 32) as u32];
            mont_mul(&mut t, &al, &bl, &limbs, n_inv);
            let got = u64::from(t[0]) | (u64::from(t[1]) << 32);
            let want = u128::from(a) * u128::from(b) % u128::from(n) * r_inv % u128::from(n);
            assert_eq!(u128::from(got), want, "{a} * {b}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_key_or_signature(
            n in proptest::collection::vec(proptest::num::u8::ANY, 0..70),
            e in proptest::collection::vec(proptest::num::u8::ANY, 0..6),
            sig in proptest::collection::vec(proptest::num::u8::ANY, 0..70),
        ) {
            if let Ok(key) = RsaKey::new(&n, &e) {
                for hash in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
                    let _ = key.verify_pkcs1v15(hash, b"m", &sig);
                    let _ = key.verify_pss(hash, b"m", &sig);
                }
            }
        }
    }
}
