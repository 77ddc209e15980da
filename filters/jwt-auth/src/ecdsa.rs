//! ECDSA verification for ES256 (P-256, SHA-256), ES384 (P-384, SHA-384)
//! and ES512 (P-521, SHA-512) with fixed-base comb tables, on field and
//! point arithmetic of our own ([`field`], [`point`], [`comb`]).
//!
//! Why: the `p256`/`p384`/`p521` crates' own `verify` computes
//! `u1 G + u2 Q` as a radix-16 double product (for P-256 about 250
//! doublings and 140 additions) on Montgomery field arithmetic with carry
//! chains, which Wasm, lacking a 64x64->128 multiply, runs slowly. Here the
//! multiples `d 2^(W i) P` of G and of each key's Q are computed once (at
//! JWKS load for Q, with the first key of a curve for G) and kept in affine
//! form, so a verification is a sum of table points with no doublings,
//! and the sum's x is checked without an inversion.
//!
//! Measured in V8 (node 20, `--no-liftoff`, 2026-12-07), then in Envoy
//! (CPU added per request over no filter, against `jwt_authn`, the same
//! day; the crate README's "Speed" has the runs):
//!
//! | alg | the crate's verify, V8 | here, V8 | here, Envoy | `jwt_authn` |
//! |---|---|---|---|---|
//! | ES256 | 575 µs | 46 µs | +50 to +55 µs | +45 µs |
//! | ES384 | 2,393 µs | 151 to 230 µs | +165 to +174 µs | +356 to +379 µs |
//! | ES512 | 2,440 µs (2026-11-24) | 420 to 480 µs | +460 µs | +859 µs |
//!
//! Windows and memory (affine points of 64, 96 and 136 bytes), chosen by
//! measurement in V8; wider windows mean fewer additions and more memory:
//!
//! | table | window | additions at most | bytes |
//! |---|---|---|---|
//! | P-256 key | 6 bits, 43 windows of 32 points | 43 | 88 KB |
//! | P-256 G | 8 bits, 33 windows of 128 points | 33 | 270 KB, once per VM |
//! | P-384 key | 5 bits, 77 windows of 16 points | 77 | 118 KB |
//! | P-384 G | 7 bits, 55 windows of 64 points | 55 | 338 KB, once per VM |
//! | P-521 key | 4 bits, 131 windows of 8 points | 131 | 142 KB |
//! | P-521 G | 6 bits, 87 windows of 32 points | 87 | 378 KB, once per VM |
//!
//! A key's table takes about 2 ms (P-256), 3 ms (P-384) or 5 ms (P-521)
//! to build in V8, G's several times that. Key tables share a budget of
//! [`KEY_TABLE_BUDGET`] per VM (a JWKS can hold hundreds of keys); keys
//! past it are verified by the crates' own code. The crates still parse
//! keys and signatures and do the scalar arithmetic mod n (the inversion
//! of s is about 3 µs of a P-256 verification). Only public values pass
//! through, so variable time is fine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use p256_014::elliptic_curve::group::Group;
use p256_014::elliptic_curve::ops::Reduce;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::live::{self, Live};

use comb::Comb;
use field::{Fe, Params, P256, P384, P521};
use point::{Affine, Jacobian};

mod comb;
mod field;
mod point;

/// Most bytes of key tables alive in one VM: 2 MiB, about 23 P-256, 17
/// P-384 or 14 P-521 keys.
pub const KEY_TABLE_BUDGET: usize = 2 << 20;

/// Bytes of key tables alive in this VM.
static KEY_TABLE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// A key's comb, its bytes counted in [`KEY_TABLE_BYTES`] while it lives.
struct KeyComb<C: Params<N>, const N: usize, const W: usize>(Comb<C, N, W>);

impl<C: Params<N>, const N: usize, const W: usize> KeyComb<C, N, W> {
    /// The key's table, unless it would pass [`KEY_TABLE_BUDGET`].
    fn new(point: &Affine<C, N>) -> Option<Self> {
        let bytes = Comb::<C, N, W>::BYTES;
        if KEY_TABLE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes > KEY_TABLE_BUDGET {
            KEY_TABLE_BYTES.fetch_sub(bytes, Ordering::Relaxed);
            return None;
        }
        let comb = Comb::new(point);
        if comb.is_none() {
            KEY_TABLE_BYTES.fetch_sub(bytes, Ordering::Relaxed);
        }
        comb.map(Self)
    }
}

impl<C: Params<N>, const N: usize, const W: usize> Drop for KeyComb<C, N, W> {
    fn drop(&mut self) {
        KEY_TABLE_BYTES.fetch_sub(Comb::<C, N, W>::BYTES, Ordering::Relaxed);
    }
}

/// Whether `u1 G + u2 Q` has an affine x that is `r` mod n (all three
/// scalars as big-endian bytes), the last step of ECDSA verification.
fn sum_has_x<C: Params<N>, const N: usize, const WG: usize, const WQ: usize>(
    generator: &Comb<C, N, WG>,
    key: &Comb<C, N, WQ>,
    u1: &[u8],
    u2: &[u8],
    r: &[u8],
) -> bool {
    let mut sum = Jacobian::IDENTITY;
    generator.add_product(&mut sum, u1);
    key.add_product(&mut sum, u2);
    Fe::from_be_bytes(r).is_some_and(|r| sum.x_reduced_is(&r))
}

/// A public key type of one curve: the crate's key, and its table when
/// the budget allowed one.
macro_rules! ecdsa_key {
    (
        $(#[$doc:meta])*
        $key:ident: $krate:ident, $digest:ty, $params:ty, words $words:literal,
        key window $key_window:literal, generator window $generator_window:literal
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $key {
            key: $krate::ecdsa::VerifyingKey,
            comb: Option<Arc<KeyComb<$params, $words, $key_window>>>,
        }

        impl $key {
            /// G's comb, built on first use in this VM.
            fn generator_comb() -> Option<&'static Comb<$params, $words, $generator_window>> {
                static COMB: OnceLock<Option<Comb<$params, $words, $generator_window>>> =
                    OnceLock::new();
                COMB.get_or_init(|| {
                    Affine::from_point(&$krate::ProjectivePoint::generator().to_affine())
                        .and_then(|g| Comb::new(&g))
                })
                .as_ref()
            }

            /// Prepares the key from its SEC1 encoding, with its table
            /// (and G's, on the first key) unless the budget is spent.
            ///
            /// # Errors
            /// When the bytes are not a point on the curve (or the
            /// identity).
            pub fn from_sec1_bytes(sec1: &[u8]) -> Result<Self, $krate::ecdsa::Error> {
                let key = $krate::ecdsa::VerifyingKey::from_sec1_bytes(sec1)?;
                let comb = Self::generator_comb().and_then(|_| Self::key_comb(key.as_affine()));
                Ok(Self { key, comb })
            }

            /// The table of `point`: the one a live key of this VM already
            /// has, or a new one (see [`crate::live`]; an EC table takes
            /// milliseconds to build and counts against the budget).
            fn key_comb(
                point: &$krate::AffinePoint,
            ) -> Option<Arc<KeyComb<$params, $words, $key_window>>> {
                static LIVE: Live<$krate::AffinePoint, KeyComb<$params, $words, $key_window>> =
                    Mutex::new(Vec::new());
                live::share(&LIVE, point, || KeyComb::new(&Affine::from_point(point)?))
            }

            /// Whether this key got a table (see [`KEY_TABLE_BUDGET`]).
            #[must_use]
            pub fn has_table(&self) -> bool {
                self.comb.is_some()
            }

            /// ECDSA verification (FIPS 186-5 §6.4.2) of `signature`
            /// (`r || s`, as JWS carries it) over the digest of `message`.
            #[must_use]
            pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
                // from_slice refuses r or s that are zero or not below n.
                let Ok(signature) = $krate::ecdsa::Signature::from_slice(signature) else {
                    return false;
                };
                let (Some(comb), Some(generator)) = (&self.comb, Self::generator_comb()) else {
                    use $krate::ecdsa::signature::Verifier;
                    return self.key.verify(message, &signature).is_ok();
                };
                let (r, s) = signature.split_scalars();
                // bits2int: a digest no longer than n is the integer itself
                // (SHA-512's 64 bytes in P-521's 66); reduced mod n.
                let digest = <$digest>::digest(message);
                let mut z = $krate::FieldBytes::default();
                let Some(low) = z.len().checked_sub(digest.len()).and_then(|at| z.get_mut(at..))
                else {
                    return false;
                };
                low.copy_from_slice(&digest);
                let z = <$krate::Scalar as Reduce<$krate::FieldBytes>>::reduce(&z);
                let Some(s_inv) = Option::<$krate::Scalar>::from(s.invert_vartime()) else {
                    return false;
                };
                let (u1, u2) = (z * s_inv, *r * s_inv);
                sum_has_x(generator, &comb.0, &u1.to_bytes(), &u2.to_bytes(), &r.to_bytes())
            }
        }
    };
}

ecdsa_key! {
    /// A P-256 public key prepared for ES256 verification.
    P256Key: p256_014, Sha256, P256, words 8, key window 6, generator window 8
}

ecdsa_key! {
    /// A P-384 public key prepared for ES384 verification.
    P384Key: p384, Sha384, P384, words 12, key window 5, generator window 7
}

ecdsa_key! {
    /// A P-521 public key prepared for ES512 verification.
    P521Key: p521, Sha512, P521, words 17, key window 4, generator window 6
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by the tests that need a table for each key they make, and by
    /// the one that spends the budget, which is per process.
    static BUDGET: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn budget() -> std::sync::MutexGuard<'static, ()> {
        BUDGET
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The same tests for each curve, against its RustCrypto crate.
    macro_rules! key_tests {
        ($name:ident, $key:ident, $krate:ident, $scalar_bytes:literal) => {
            mod $name {
                use super::*;
                use $krate::ecdsa::signature::{Signer, Verifier};

                proptest::proptest! {
                    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

                    /// Agrees with the crate's own verification, for valid
                    /// signatures and corrupted ones, with keys and
                    /// messages drawn at random.
                    #[test]
                    fn agrees_with_the_crate(
                        secret in proptest::collection::vec(1u8.., $scalar_bytes),
                        message in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
                        flip in proptest::option::of(0usize..16 * $scalar_bytes),
                        other_message in proptest::bool::ANY,
                    ) {
                        let mut secret = secret;
                        if $scalar_bytes == 66 {
                            // A P-521 scalar has 521 bits: 1 in the top byte.
                            secret[0] &= 1;
                        }
                        let Ok(signing) = $krate::ecdsa::SigningKey::from_slice(&secret) else {
                            return Ok(());
                        };
                        let signature: $krate::ecdsa::Signature = signing.sign(&message);
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
                        let _budget = budget();
                        let ours = $key::from_sec1_bytes(sec1.as_bytes()).unwrap();
                        proptest::prop_assert!(ours.has_table());
                        let theirs = $krate::ecdsa::Signature::from_slice(&bytes)
                            .is_ok_and(|sig| verifying.verify(&checked, &sig).is_ok());
                        proptest::prop_assert_eq!(ours.verify(&checked, &bytes), theirs);
                        if flip.is_none() && !other_message {
                            proptest::prop_assert!(theirs);
                        }
                    }
                }

                #[test]
                fn a_key_parsed_again_shares_its_live_table() {
                    let mut secret = [5; $scalar_bytes];
                    secret[0] = 0;
                    let signing = $krate::ecdsa::SigningKey::from_slice(&secret).unwrap();
                    let sec1 = signing.verifying_key().to_sec1_point(false);
                    let _budget = budget();
                    let first = $key::from_sec1_bytes(sec1.as_bytes()).unwrap();
                    let again = $key::from_sec1_bytes(sec1.as_bytes()).unwrap();
                    let (Some(a), Some(b)) = (&first.comb, &again.comb) else {
                        panic!("both keys should have a table");
                    };
                    assert!(Arc::ptr_eq(a, b));
                    // Once no key holds it, it is freed.
                    let table = Arc::downgrade(a);
                    drop((first, again));
                    assert!(table.upgrade().is_none());
                    assert!($key::from_sec1_bytes(sec1.as_bytes()).unwrap().has_table());
                }

                #[test]
                fn keys_past_the_table_budget_verify_without_one() {
                    let signing = |n: u8| {
                        let mut secret = [7; $scalar_bytes];
                        secret[0] = 0;
                        secret[$scalar_bytes - 1] = n;
                        $krate::ecdsa::SigningKey::from_slice(&secret).unwrap()
                    };
                    let parse = |signing: &$krate::ecdsa::SigningKey| {
                        let sec1 = signing.verifying_key().to_sec1_point(false);
                        $key::from_sec1_bytes(sec1.as_bytes()).unwrap()
                    };
                    let _budget = budget();
                    // Other tests may hold tables too, so the budget runs
                    // out at the latest after this many distinct keys.
                    let mut keys = Vec::new();
                    for n in 0..=(KEY_TABLE_BUDGET / (64 << 10)) as u8 {
                        keys.push((n, parse(&signing(n))));
                    }
                    let (n, plain) = keys.iter().find(|(_, key)| !key.has_table()).unwrap();
                    let signature: $krate::ecdsa::Signature = signing(*n).sign(b"message");
                    assert!(plain.verify(b"message", &signature.to_bytes()));
                    assert!(!plain.verify(b"massage", &signature.to_bytes()));
                    drop(keys);
                    // Dropped tables give their bytes back.
                    assert!(parse(&signing(200)).has_table());
                }
            }
        };
    }

    key_tests!(on_p256, P256Key, p256_014, 32);
    key_tests!(on_p384, P384Key, p384, 48);
    key_tests!(on_p521, P521Key, p521, 66);
}
