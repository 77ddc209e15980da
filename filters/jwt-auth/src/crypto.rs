//! Signature verification of a parsed token against a parsed key set, with
//! jwt_verify_lib's key selection: a key is a candidate when its `kid`
//! (if both sides have one) and its declared `alg` (if any) match the
//! token; the token verifies if any candidate key of a fitting type
//! verifies it.

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

use crate::jwks::{Jwks, KeyMaterial};
use crate::jwt::{Alg, Jwt};
use crate::rsa_verify::Hash;
use crate::status::Status;

/// Checks `jwt`'s signature against `jwks`.
///
/// Returns [`Status::Ok`], [`Status::JwksKidAlgMismatch`] when no key has a
/// matching `kid`/`alg` (the trigger for an unknown-kid JWKS re-fetch),
/// [`Status::JwtEd25519SignatureWrongLength`], or
/// [`Status::JwtVerificationFail`].
#[must_use]
pub fn verify_jwt(jwt: &Jwt, jwks: &Jwks) -> Status {
    let mut kid_alg_matched = false;
    for key in &jwks.keys {
        if let (Some(want), Some(have)) = (&jwt.kid, &key.kid) {
            if want != have {
                continue;
            }
        }
        if key.alg.is_some_and(|alg| alg != jwt.alg) {
            continue;
        }
        kid_alg_matched = true;
        if !key.material.fits(jwt.alg) {
            continue;
        }
        if jwt.alg == Alg::EdDsa && jwt.signature.len() != 64 {
            return Status::JwtEd25519SignatureWrongLength;
        }
        if verify(
            jwt.alg,
            &key.material,
            jwt.signing_input.as_bytes(),
            &jwt.signature,
        ) {
            return Status::Ok;
        }
    }
    if kid_alg_matched {
        Status::JwtVerificationFail
    } else {
        Status::JwksKidAlgMismatch
    }
}

/// Verifies one signature. False for any failure, including a key that
/// does not fit the algorithm.
#[must_use]
pub fn verify(alg: Alg, key: &KeyMaterial, input: &[u8], signature: &[u8]) -> bool {
    use Alg::*;
    match (alg, key) {
        (Rs256, KeyMaterial::Rsa(k)) => k.verify_pkcs1v15(Hash::Sha256, input, signature),
        (Rs384, KeyMaterial::Rsa(k)) => k.verify_pkcs1v15(Hash::Sha384, input, signature),
        (Rs512, KeyMaterial::Rsa(k)) => k.verify_pkcs1v15(Hash::Sha512, input, signature),
        (Ps256, KeyMaterial::Rsa(k)) => k.verify_pss(Hash::Sha256, input, signature),
        (Ps384, KeyMaterial::Rsa(k)) => k.verify_pss(Hash::Sha384, input, signature),
        (Ps512, KeyMaterial::Rsa(k)) => k.verify_pss(Hash::Sha512, input, signature),
        (Es256, KeyMaterial::P256(k)) => k.verify(input, signature),
        (Es384, KeyMaterial::P384(k)) => k.verify(input, signature),
        (Es512, KeyMaterial::P521(k)) => k.verify(input, signature),
        (EdDsa, KeyMaterial::Ed25519(k)) => ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|sig| k.verify_strict(input, &sig).is_ok()),
        (Hs256, KeyMaterial::Hmac(secret)) => hmac_ok::<Hmac<Sha256>>(secret, input, signature),
        (Hs384, KeyMaterial::Hmac(secret)) => hmac_ok::<Hmac<Sha384>>(secret, input, signature),
        (Hs512, KeyMaterial::Hmac(secret)) => hmac_ok::<Hmac<Sha512>>(secret, input, signature),
        _ => false,
    }
}

fn hmac_ok<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8], signature: &[u8]) -> bool {
    match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(input);
            // Constant-time comparison.
            mac.verify_slice(signature).is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks;
    use crate::jwt;
    use base64::Engine;

    /// RFC 7515 Appendix A.2.1: the RSA public key.
    const RFC7515_RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    /// RFC 7515 Appendix A.2.1: the complete RS256 JWS.
    pub const RFC7515_A2_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    /// RFC 7515 Appendix A.3.1: the complete ES256 JWS (ECDSA signatures are
    /// randomised, but this published one verifies with the A.3 key).
    pub const RFC7515_A3_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    /// RFC 7515 Appendix A.3.1: the P-256 public key.
    pub const RFC7515_A3_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    pub fn rfc7515_a2_jwk() -> String {
        format!(r#"{{"kty":"RSA","n":"{RFC7515_RSA_N}","e":"AQAB"}}"#)
    }

    fn keys(jwk: &str) -> Jwks {
        jwks::parse(format!(r#"{{"keys":[{jwk}]}}"#).as_bytes()).unwrap()
    }

    #[test]
    fn rfc7515_a2_rs256_token_verifies_and_a_flipped_bit_does_not() {
        let jwks = keys(&rfc7515_a2_jwk());
        let jwt = jwt::parse(RFC7515_A2_TOKEN.as_bytes(), 8192).unwrap();
        assert_eq!(jwt.exp, Some(1_300_819_380));
        assert_eq!(verify_jwt(&jwt, &jwks), Status::Ok);
        let mut bad = jwt.clone();
        bad.signature[10] ^= 1;
        assert_eq!(verify_jwt(&bad, &jwks), Status::JwtVerificationFail);
    }

    #[test]
    fn rfc7515_a3_es256_token_verifies() {
        let jwt = jwt::parse(RFC7515_A3_TOKEN.as_bytes(), 8192).unwrap();
        assert_eq!(verify_jwt(&jwt, &keys(RFC7515_A3_JWK)), Status::Ok);
    }

    #[test]
    fn rfc8037_a4_ed25519_signature_verifies() {
        // RFC 8037 A.4: the payload is plain text, so check the signature
        // directly rather than through the JWT parser.
        let jwks = keys(
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        );
        let input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = jwt::B64URL
            .decode("hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
            .unwrap();
        assert!(verify(Alg::EdDsa, &jwks.keys[0].material, input, &sig));
        assert!(!verify(Alg::EdDsa, &jwks.keys[0].material, b"other", &sig));
    }

    #[test]
    fn hs256_keyed_with_an_rsa_public_key_is_not_confused() {
        // The classic alg-confusion attack: HMAC over the token with the
        // RSA key's bytes as secret. The RSA key never fits HS256.
        let jwks = keys(&rfc7515_a2_jwk());
        let header = jwt::B64URL.encode(r#"{"alg":"HS256"}"#);
        let payload = jwt::B64URL.encode(r#"{"iss":"joe"}"#);
        let input = format!("{header}.{payload}");
        let mut mac =
            <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(RFC7515_RSA_N.as_bytes())
                .unwrap();
        mac.update(input.as_bytes());
        let token = format!(
            "{input}.{}",
            jwt::B64URL.encode(mac.finalize().into_bytes())
        );
        let jwt = jwt::parse(token.as_bytes(), 8192).unwrap();
        assert_eq!(verify_jwt(&jwt, &jwks), Status::JwtVerificationFail);
    }

    #[test]
    fn kid_mismatch_is_reported_as_such() {
        let jwks = keys(r#"{"kty":"oct","k":"c2VjcmV0","kid":"a"}"#);
        let header = jwt::B64URL.encode(r#"{"alg":"HS256","kid":"b"}"#);
        let token = format!("{header}.e30.AAAA");
        let jwt = jwt::parse(token.as_bytes(), 8192).unwrap();
        assert_eq!(verify_jwt(&jwt, &jwks), Status::JwksKidAlgMismatch);
    }
}
