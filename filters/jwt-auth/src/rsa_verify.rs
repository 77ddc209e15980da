//! RSA signature verification for RS256/384/512 (RSASSA-PKCS1-v1_5) and
//! PS256/384/512 (RSASSA-PSS, MGF1 with the same hash, salt length = hash
//! length as RFC 7518 §3.5 fixes it), RFC 8017 §8.
//!
//! Why our own code and not the `rsa` crate: inside Wasm the public
//! operation `s^e mod n` dominated the filter's cost. `rsa` 0.9
//! (num-bigint-dig) spends ~490 µs per 2048-bit verification in V8 on
//! allocating generic arithmetic; `rsa` 0.10 and `crypto-bigint` 0.7's
//! Montgomery form (precomputed per key, 16 squarings + 1 multiply) take
//! ~270 µs and ~115 µs for the public operation, [`crate::montgomery`]
//! ~27 µs on 27-bit integer limbs, and [`crate::montgomery::float`] ~21 µs
//! on 52-bit limbs where Wasm relaxed SIMD's multiply-add is fused, which
//! each VM checks once (crate README, "Speed"). It does only the public
//! operation, so
//! no secret is involved and constant time does not matter. The modulus
//! is prepared once per key at JWKS load (`R^2 mod n`, about 75 µs for
//! 2048 bits in V8), and a key parsed again while the old one lives, as
//! on every JWKS refresh, shares its prepared modulus.
//!
//! The `rsa` crate stays as the reference of a differential property test
//! (tests/rsa_differential.rs, natively; tests/rsa_in_wasm.rs through the
//! Wasm module) and mints the test tokens.

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::live::{self, Live};
use crate::montgomery::float::{self, FloatModulus};
use crate::montgomery::Modulus;

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
    modulus: Arc<Prepared>,
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
        // e below n: n has at least as many bytes, and more, or a larger
        // value in as many.
        let below_n = e.len() < n.len() || (e.len() == n.len() && e < n);
        if exponent < 3 || exponent & 1 == 0 || exponent > MAX_EXPONENT || !below_n {
            return Err(RsaKeyError::Exponent);
        }
        let modulus = prepared(n).ok_or(RsaKeyError::Modulus)?;
        Ok(Self {
            modulus,
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
        self.modulus.pow_be(signature, self.e, self.len)
    }
}

/// A modulus prepared for the public operation: on 52-bit float limbs
/// where a fused multiply-add is available ([`float::available`]), else on
/// the integer code.
enum Prepared {
    Float(FloatModulus),
    Int(Modulus),
}

impl Prepared {
    fn new(n: &[u8]) -> Option<Self> {
        if float::available() {
            FloatModulus::new(n).map(Self::Float)
        } else {
            Modulus::new(n).map(Self::Int)
        }
    }

    fn pow_be(&self, base_be: &[u8], e: u64, len: usize) -> Option<Vec<u8>> {
        match self {
            Self::Float(modulus) => modulus.pow_be(base_be, e, len),
            Self::Int(modulus) => modulus.pow_be(base_be, e, len),
        }
    }
}

/// `n` prepared: the modulus a live key of this VM already has, or a new
/// one (see [`crate::live`]).
fn prepared(n: &[u8]) -> Option<Arc<Prepared>> {
    static LIVE: Live<Vec<u8>, Prepared> = Mutex::new(Vec::new());
    live::share(&LIVE, &n.to_vec(), || Prepared::new(n))
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
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
    fn a_key_parsed_again_shares_its_live_modulus() {
        // A modulus no other test uses, so that the tests running beside
        // this one hold no key of it.
        let mut n = B64URL.decode(RFC7515_N).unwrap();
        n[100] ^= 0x10;
        let first = RsaKey::new(&n, &[1, 0, 1]).unwrap();
        // Leading zeros do not make another modulus; another e shares it too.
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        let again = RsaKey::new(&padded, &[3]).unwrap();
        assert!(Arc::ptr_eq(&first.modulus, &again.modulus));
        let other = key(RFC7520_N);
        assert!(!Arc::ptr_eq(&first.modulus, &other.modulus));
        // Once no key holds it, it is prepared anew, with the same results.
        let (_, sig) = split(RFC7515_RS256);
        let before = first.public(&sig).unwrap();
        let old = Arc::downgrade(&first.modulus);
        drop((first, again));
        assert!(old.upgrade().is_none());
        let fresh = RsaKey::new(&n, &[1, 0, 1]).unwrap();
        assert_eq!(fresh.public(&sig).unwrap(), before);
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
        let mut sum = vec![0u8; n.len()];
        let mut carry = 0u16;
        for ((out, &x), &y) in sum.iter_mut().zip(&sig).zip(&n).rev() {
            let v = u16::from(x) + u16::from(y) + carry;
            *out = v as u8;
            carry = v >> 8;
        }
        if carry == 0 {
            assert!(!key.verify_pkcs1v15(Hash::Sha256, input.as_bytes(), &sum));
        }
        // n itself, and all ones, are not below n either.
        assert!(!key.verify_pkcs1v15(Hash::Sha256, input.as_bytes(), &n));
        let ones = vec![0xff; n.len()];
        assert!(!key.verify_pkcs1v15(Hash::Sha256, input.as_bytes(), &ones));
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
