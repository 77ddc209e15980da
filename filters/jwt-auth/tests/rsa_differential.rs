//! Differential test of `jwt_auth::rsa_verify` against the `rsa` crate:
//! for random keys of several sizes, random messages and valid or
//! corrupted signatures, both verifiers give the same answer for
//! RS256/384/512 (PKCS#1 v1.5) and PS256/384/512 (PSS).
//!
//! One deliberate difference is excluded: `rsa` 0.9's PSS verification
//! does not refuse a signature value >= n (it reduces it), RFC 8017
//! §5.2.2 and BoringSSL do; `rsa_verify`'s own tests pin that case.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use jwt_auth::rsa_verify::{Hash, RsaKey};
use proptest::prelude::*;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Key sizes: the usual three, plus 1025 and 2049 bits, where PSS's
/// encoding is one byte shorter than the modulus (emBits a multiple of 8),
/// and a 1025-bit key is too short for PSS with SHA-512.
const BITS: [usize; 5] = [1025, 2048, 2049, 3072, 4096];

/// Keys generated once per test binary (4096-bit generation is slow).
fn keys() -> &'static Vec<(RsaPrivateKey, RsaKey)> {
    static KEYS: OnceLock<Vec<(RsaPrivateKey, RsaKey)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::thread_rng();
        BITS.iter()
            .map(|&bits| {
                let private = RsaPrivateKey::new(&mut rng, bits).unwrap();
                let public = private.to_public_key();
                let ours =
                    RsaKey::new(&public.n().to_bytes_be(), &public.e().to_bytes_be()).unwrap();
                assert_eq!(ours.bits(), bits);
                (private, ours)
            })
            .collect()
    })
}

#[derive(Debug, Clone, Copy)]
enum Scheme {
    Pkcs1v15,
    Pss,
}

#[derive(Debug, Clone)]
enum Corruption {
    None,
    FlipBit(usize),
    OtherMessage,
    Random(Vec<u8>),
    Truncate,
    LeadingZero,
}

fn sign(key: &RsaPrivateKey, scheme: Scheme, hash: Hash, msg: &[u8]) -> Option<Vec<u8>> {
    use rsa::pkcs1v15::SigningKey;
    use rsa::pss::BlindedSigningKey;
    let key = key.clone();
    let mut rng = rand::thread_rng();
    // A key too short for the encoding makes the signer fail; try_sign
    // reports it instead of panicking.
    let sig = match (scheme, hash) {
        (Scheme::Pkcs1v15, Hash::Sha256) => {
            SigningKey::<Sha256>::new(key).try_sign(msg).ok()?.to_vec()
        }
        (Scheme::Pkcs1v15, Hash::Sha384) => {
            SigningKey::<Sha384>::new(key).try_sign(msg).ok()?.to_vec()
        }
        (Scheme::Pkcs1v15, Hash::Sha512) => {
            SigningKey::<Sha512>::new(key).try_sign(msg).ok()?.to_vec()
        }
        (Scheme::Pss, Hash::Sha256) => BlindedSigningKey::<Sha256>::new(key)
            .try_sign_with_rng(&mut rng, msg)
            .ok()?
            .to_vec(),
        (Scheme::Pss, Hash::Sha384) => BlindedSigningKey::<Sha384>::new(key)
            .try_sign_with_rng(&mut rng, msg)
            .ok()?
            .to_vec(),
        (Scheme::Pss, Hash::Sha512) => BlindedSigningKey::<Sha512>::new(key)
            .try_sign_with_rng(&mut rng, msg)
            .ok()?
            .to_vec(),
    };
    Some(sig)
}

fn reference(key: &RsaPublicKey, scheme: Scheme, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
    match (scheme, hash) {
        (Scheme::Pkcs1v15, Hash::Sha256) => key
            .verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg), sig)
            .is_ok(),
        (Scheme::Pkcs1v15, Hash::Sha384) => key
            .verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(msg), sig)
            .is_ok(),
        (Scheme::Pkcs1v15, Hash::Sha512) => key
            .verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(msg), sig)
            .is_ok(),
        (Scheme::Pss, Hash::Sha256) => key
            .verify(Pss::new::<Sha256>(), &Sha256::digest(msg), sig)
            .is_ok(),
        (Scheme::Pss, Hash::Sha384) => key
            .verify(Pss::new::<Sha384>(), &Sha384::digest(msg), sig)
            .is_ok(),
        (Scheme::Pss, Hash::Sha512) => key
            .verify(Pss::new::<Sha512>(), &Sha512::digest(msg), sig)
            .is_ok(),
    }
}

fn ours(key: &RsaKey, scheme: Scheme, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
    match scheme {
        Scheme::Pkcs1v15 => key.verify_pkcs1v15(hash, msg, sig),
        Scheme::Pss => key.verify_pss(hash, msg, sig),
    }
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        2 => Just(Corruption::None),
        3 => any::<usize>().prop_map(Corruption::FlipBit),
        1 => Just(Corruption::OtherMessage),
        1 => proptest::collection::vec(any::<u8>(), 0..600).prop_map(Corruption::Random),
        1 => Just(Corruption::Truncate),
        1 => Just(Corruption::LeadingZero),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn rsa_verify_agrees_with_the_rsa_crate(
        key_index in 0..BITS.len(),
        pss in any::<bool>(),
        hash in prop_oneof![Just(Hash::Sha256), Just(Hash::Sha384), Just(Hash::Sha512)],
        msg in proptest::collection::vec(any::<u8>(), 0..300),
        corruption in corruption(),
    ) {
        let (private, key) = &keys()[key_index];
        let public = private.to_public_key();
        let scheme = if pss { Scheme::Pss } else { Scheme::Pkcs1v15 };
        let Some(mut sig) = sign(private, scheme, hash, &msg) else {
            // The key is too short for this hash and scheme: ours must
            // refuse whatever it is given as well.
            let junk = vec![0x5a; public.size()];
            prop_assert!(!ours(key, scheme, hash, &msg, &junk));
            return Ok(());
        };
        let mut msg = msg;
        match &corruption {
            Corruption::None => {}
            Corruption::FlipBit(at) => {
                let bit = at % (sig.len() * 8);
                sig[bit / 8] ^= 1 << (bit % 8);
            }
            Corruption::OtherMessage => msg.push(0),
            Corruption::Random(bytes) => {
                sig = bytes.clone();
                // Also as long as the modulus, where the arithmetic runs.
                sig.resize(public.size(), 0x33);
            }
            Corruption::Truncate => {
                sig.pop();
            }
            Corruption::LeadingZero => sig.insert(0, 0),
        }
        let want = reference(&public, scheme, hash, &msg, &sig);
        let got = ours(key, scheme, hash, &msg, &sig);
        let not_below_n = rsa::BigUint::from_bytes_be(&sig) >= *public.n();
        if !(pss && not_below_n) {
            prop_assert_eq!(got, want, "{:?} {:?} {:?}", scheme, hash, corruption);
        } else {
            prop_assert!(!got);
        }
        if matches!(corruption, Corruption::None) {
            prop_assert!(got, "a valid signature must verify");
        }
    }
}
