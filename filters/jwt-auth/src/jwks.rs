//! JWKS parsing (RFC 7517), done once when a key set is loaded, never per
//! request: every usable key becomes ready-to-verify key material. Keys that
//! cannot be used (unknown `kty`, `use` other than `sig`, an `alg` that does
//! not fit the `kty`, bad coordinates) are skipped, as jwt_verify_lib does,
//! and reported so the operator can see why.

use serde_json::{Map, Value};

use crate::jwt::{Alg, B64URL};
use crate::rsa_verify::RsaKey;
use base64::Engine;

/// Ready-to-use public (or, for `oct`, shared) key material.
#[derive(Clone)]
pub enum KeyMaterial {
    /// `kty: RSA` (RS* and PS*), prepared for verification once here.
    Rsa(RsaKey),
    /// `kty: EC`, `crv: P-256` (ES256).
    P256(crate::ecdsa::P256Key),
    /// `kty: EC`, `crv: P-384` (ES384).
    P384(crate::ecdsa::P384Key),
    /// `kty: EC`, `crv: P-521` (ES512). Boxed: the key is large.
    P521(Box<crate::ecdsa::P521Key>),
    /// `kty: OKP`, `crv: Ed25519` (EdDSA).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// `kty: oct` (HS*).
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for KeyMaterial {
    // Names the kind only: key bytes (an HMAC secret above all) stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Self::Rsa(_) => "RSA",
            Self::P256(_) => "EC P-256",
            Self::P384(_) => "EC P-384",
            Self::P521(_) => "EC P-521",
            Self::Ed25519(_) => "OKP Ed25519",
            Self::Hmac(_) => "oct",
        };
        f.write_str(kind)
    }
}

impl KeyMaterial {
    /// Whether `alg` may be verified with this kind of key. This is what
    /// stops algorithm confusion (e.g. HS256 keyed with an RSA public key).
    #[must_use]
    pub fn fits(&self, alg: Alg) -> bool {
        use Alg::*;
        matches!(
            (self, alg),
            (Self::Rsa(_), Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512)
                | (Self::P256(_), Es256)
                | (Self::P384(_), Es384)
                | (Self::P521(_), Es512)
                | (Self::Ed25519(_), EdDsa)
                | (Self::Hmac(_), Hs256 | Hs384 | Hs512)
        )
    }
}

/// One usable key.
#[derive(Debug, Clone)]
pub struct Jwk {
    /// `kid`, if given.
    pub kid: Option<String>,
    /// The declared `alg`, if given; a token must then use exactly it.
    pub alg: Option<Alg>,
    /// The key.
    pub material: KeyMaterial,
}

/// A parsed key set: only usable keys, in document order.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    /// The usable keys.
    pub keys: Vec<Jwk>,
    /// Why each skipped key was skipped (`keys[i]: reason`), for logs.
    pub skipped: Vec<String>,
}

/// Why a whole key set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON.
    #[error("Jwks is an invalid JSON")]
    InvalidJson,
    /// No `keys` member.
    #[error("Jwks does not have [keys] field")]
    NoKeys,
    /// `keys` is not an array.
    #[error("[keys] in Jwks is not an array")]
    BadKeys,
    /// Not one usable key; the reasons are listed.
    #[error("Jwks doesn't have any valid public key ({})", .0.join("; "))]
    NoValidKeys(Vec<String>),
}

/// Parses a JWKS document.
///
/// # Errors
/// [`JwksError`] when the document is not a JWKS or has no usable key.
pub fn parse(text: &[u8]) -> Result<Jwks, JwksError> {
    let doc: Value = serde_json::from_slice(text).map_err(|_| JwksError::InvalidJson)?;
    let keys = doc
        .as_object()
        .ok_or(JwksError::InvalidJson)?
        .get("keys")
        .ok_or(JwksError::NoKeys)?
        .as_array()
        .ok_or(JwksError::BadKeys)?;
    let mut jwks = Jwks::default();
    for (i, key) in keys.iter().enumerate() {
        match key.as_object().ok_or("not an object").and_then(parse_key) {
            Ok(jwk) => jwks.keys.push(jwk),
            Err(reason) => jwks.skipped.push(format!("keys[{i}]: {reason}")),
        }
    }
    if jwks.keys.is_empty() {
        return Err(JwksError::NoValidKeys(jwks.skipped));
    }
    Ok(jwks)
}

fn string<'a>(key: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, &'static str> {
    match key.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err("a member that must be a string is not"),
    }
}

fn b64(
    key: &Map<String, Value>,
    name: &str,
    missing: &'static str,
) -> Result<Vec<u8>, &'static str> {
    let text = string(key, name)?.ok_or(missing)?;
    B64URL
        .decode(text)
        .map_err(|_| "a key member is not base64url")
}

fn parse_key(key: &Map<String, Value>) -> Result<Jwk, &'static str> {
    let kty = string(key, "kty")?.ok_or("[kty] is missing")?;
    if let Some(usage) = string(key, "use")? {
        if usage != "sig" {
            return Err("[use] is not \"sig\"");
        }
    }
    let kid = string(key, "kid")?.map(str::to_owned);
    let alg_name = string(key, "alg")?;
    let alg = match alg_name {
        None => None,
        Some(name) => Some(Alg::from_name(name).ok_or("[alg] is not a supported algorithm")?),
    };
    let material = match kty {
        "RSA" => {
            let n = b64(key, "n", "[n] field is missing for a RSA key")?;
            let e = b64(key, "e", "[e] field is missing for a RSA key")?;
            // Modulus and exponent limits as the `rsa` crate had them
            // (n odd and at most 8192 bits, 3 <= e < 2^33, e odd, e < n).
            KeyMaterial::Rsa(
                RsaKey::new(&n, &e).map_err(|_| "Jwks RSA [n] or [e] field has a parse error")?,
            )
        }
        "EC" => {
            let crv = match (string(key, "crv")?, alg) {
                (Some(crv), _) => crv,
                (None, Some(Alg::Es384)) => "P-384",
                (None, Some(Alg::Es512)) => "P-521",
                (None, _) => "P-256",
            };
            let x = b64(key, "x", "[x] field is missing for an EC key")?;
            let y = b64(key, "y", "[y] field is missing for an EC key")?;
            let mut sec1 = Vec::with_capacity(1 + x.len() + y.len());
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            const BAD_POINT: &str = "Jwks EC [x] and [y] fields have a parse error.";
            // from_sec1_bytes checks the lengths and that the point is on the curve.
            match crv {
                "P-256" => KeyMaterial::P256(
                    crate::ecdsa::P256Key::from_sec1_bytes(&sec1).map_err(|_| BAD_POINT)?,
                ),
                "P-384" => KeyMaterial::P384(
                    crate::ecdsa::P384Key::from_sec1_bytes(&sec1).map_err(|_| BAD_POINT)?,
                ),
                "P-521" => KeyMaterial::P521(Box::new(
                    crate::ecdsa::P521Key::from_sec1_bytes(&sec1).map_err(|_| BAD_POINT)?,
                )),
                _ => return Err("[crv] field is not supported for an EC key"),
            }
        }
        "OKP" => {
            match string(key, "crv")? {
                Some("Ed25519") => {}
                Some(_) => return Err("[crv] field is not supported for an OKP key"),
                None => return Err("[crv] field is missing for an OKP key"),
            }
            let x = b64(key, "x", "[x] field is missing for an OKP key")?;
            let x: [u8; 32] = x
                .try_into()
                .map_err(|_| "Jwks OKP [x] field is wrong length.")?;
            KeyMaterial::Ed25519(
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| "Jwks OKP [x] is not a valid Ed25519 point")?,
            )
        }
        "oct" => {
            let k = b64(key, "k", "[k] field is missing for an HMAC key")?;
            if k.is_empty() {
                return Err("[k] field is empty for an HMAC key");
            }
            KeyMaterial::Hmac(k)
        }
        _ => return Err("[kty] is not supported in [keys]"),
    };
    if let Some(alg) = alg {
        if !material.fits(alg) {
            return Err("[alg] does not fit the key's [kty]/[crv]");
        }
    }
    Ok(Jwk { kid, alg, material })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7515 Appendix A.3.1's P-256 public key.
    const EC_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    /// RFC 8037 Appendix A.2's Ed25519 public key.
    const OKP_JWK: &str =
        r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

    fn one(key: &str) -> Result<Jwks, JwksError> {
        parse(format!(r#"{{"keys":[{key}]}}"#).as_bytes())
    }

    #[test]
    fn published_ec_and_okp_keys_parse() {
        assert!(matches!(
            one(EC_JWK).unwrap().keys[0].material,
            KeyMaterial::P256(_)
        ));
        assert!(matches!(
            one(OKP_JWK).unwrap().keys[0].material,
            KeyMaterial::Ed25519(_)
        ));
        let oct = one(r#"{"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"h"}"#).unwrap();
        assert_eq!(oct.keys[0].kid.as_deref(), Some("h"));
        assert_eq!(oct.keys[0].alg, Some(Alg::Hs256));
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let doc = format!(
            r#"{{"keys":[{{"kty":"oct","k":"c2VjcmV0","use":"enc"}},{{"kty":"oct","k":"c2VjcmV0","alg":"RS256"}},{{"kty":"XYZ"}},{{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}},{OKP_JWK}]}}"#
        );
        let jwks = parse(doc.as_bytes()).unwrap();
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.skipped.len(), 4, "{:?}", jwks.skipped);
        assert!(jwks.skipped[0].contains("[use]"));
        assert!(jwks.skipped[1].contains("[alg]"));
    }

    #[test]
    fn documents_without_keys_are_refused() {
        assert_eq!(parse(b"nope").unwrap_err(), JwksError::InvalidJson);
        assert_eq!(parse(b"{}").unwrap_err(), JwksError::NoKeys);
        assert_eq!(parse(br#"{"keys":{}}"#).unwrap_err(), JwksError::BadKeys);
        assert!(matches!(
            parse(br#"{"keys":[]}"#),
            Err(JwksError::NoValidKeys(_))
        ));
    }

    #[test]
    fn ec_alg_must_match_curve() {
        let with_alg = EC_JWK.replace("\"kty\"", "\"alg\":\"ES384\",\"kty\"");
        assert!(one(&with_alg).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_jwk_shaped_input(kty in "(RSA|EC|OKP|oct|x)", a in "[A-Za-z0-9_-]{0,90}", b in "[A-Za-z0-9_-]{0,90}", crv in "(P-256|P-384|P-521|Ed25519|x)") {
            let doc = format!(r#"{{"keys":[{{"kty":"{kty}","crv":"{crv}","n":"{a}","e":"{b}","x":"{a}","y":"{b}","k":"{a}"}}]}}"#);
            let _ = parse(doc.as_bytes());
        }
    }
}
