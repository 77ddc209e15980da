//! HS256 tokens minted from fuzzed claims with [`crate::fixtures::MINT_SECRET`].
//!
//! A fuzzer cannot forge signatures, so without minting it would never get
//! past verification: the claim checks, `claim_to_headers`, claim rules and
//! the payload header would go unfuzzed. [`TokenSpec`] lets the input choose
//! the claims (including hostile values: CR/LF, huge numbers, deep nesting)
//! and how the token is mangled and where it is placed.

use arbitrary::{Arbitrary, Unstructured};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::fixtures::{MINT_KID, MINT_SECRET};

/// A JSON value of bounded depth, chosen by the fuzzer.
#[derive(Debug, Clone)]
pub struct Json(pub Value);

impl<'a> Arbitrary<'a> for Json {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        json(u, 3).map(Json)
    }
}

fn json(u: &mut Unstructured<'_>, depth: u8) -> arbitrary::Result<Value> {
    let kind: u8 = u.arbitrary()?;
    Ok(match kind % if depth == 0 { 6 } else { 8 } {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        5 => Value::String(u.arbitrary()?),
        6 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array(
                (0..n)
                    .map(|_| json(u, depth - 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => {
            let n = u.int_in_range(0..=4)?;
            let mut map = Map::new();
            for _ in 0..n {
                map.insert(u.arbitrary()?, json(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// Which issuer a minted token names.
#[derive(Debug, Clone, Arbitrary)]
pub enum Issuer {
    /// The minting key's provider (`idp` in the jwt-auth fixture config).
    Idp,
    /// The RFC keys' provider: signature fails (wrong key), issuer known.
    Joe,
    /// Any string.
    Other(String),
    /// No `iss`.
    Absent,
}

/// How the signed token is damaged, if at all.
#[derive(Debug, Clone, Arbitrary)]
pub enum Mangle {
    /// Sent as minted.
    None,
    /// One byte of the token flipped at this position (mod length).
    FlipByte(u16, u8),
    /// Cut to this length (mod length).
    Truncate(u16),
    /// Base64 padding added to each section.
    Padded,
    /// Standard base64 alphabet instead of base64url.
    StandardAlphabet,
    /// Repeated: a token of about `n` KiB (64 KiB at most).
    Repeated(u8),
}

/// The header and claims of a token to mint, and what to do with it.
#[derive(Debug, Clone, Arbitrary)]
pub struct TokenSpec {
    /// `alg` written in the header; anything but HS256 cannot verify.
    pub alg: Alg,
    /// Send the minting `kid`.
    pub with_kid: bool,
    /// Extra header members (`crit`, `typ`, junk).
    pub header_extra: Vec<(String, Json)>,
    /// `iss`.
    pub iss: Issuer,
    /// `sub`.
    pub sub: Option<Json>,
    /// `aud`: a string, a list, or anything.
    pub aud: Option<Json>,
    /// `exp` (`None`: far future, so the token is valid).
    pub exp: Option<Json>,
    /// `nbf`.
    pub nbf: Option<Json>,
    /// `iat`.
    pub iat: Option<Json>,
    /// `scope`.
    pub scope: Option<String>,
    /// `org` (the fixture's nested `org.tenant` claim header).
    pub org: Option<Json>,
    /// Other claims.
    pub extra: Vec<(String, Json)>,
    /// Damage after signing.
    pub mangle: Mangle,
}

/// The `alg` a minted token's header names.
#[derive(Debug, Clone, Arbitrary)]
pub enum Alg {
    /// HS256, the only one that verifies with the minting key.
    Hs256,
    /// `none`, always refused.
    None,
    /// RS256: algorithm confusion against the HMAC key.
    Rs256,
    /// Any string.
    Other(String),
}

/// Far enough in the future for every clock the targets use.
const FAR_FUTURE: u64 = 4_000_000_000;

impl TokenSpec {
    /// The compact token.
    #[must_use]
    pub fn mint(&self) -> String {
        let mut header = Map::new();
        let alg = match &self.alg {
            Alg::Hs256 => "HS256".to_owned(),
            Alg::None => "none".to_owned(),
            Alg::Rs256 => "RS256".to_owned(),
            Alg::Other(other) => other.clone(),
        };
        header.insert("alg".into(), Value::String(alg));
        if self.with_kid {
            header.insert("kid".into(), Value::String(MINT_KID.into()));
        }
        for (name, value) in &self.header_extra {
            header.insert(name.clone(), value.0.clone());
        }
        let mut claims = Map::new();
        match &self.iss {
            Issuer::Idp => {
                claims.insert("iss".into(), "https://idp.example.com".into());
            }
            Issuer::Joe => {
                claims.insert("iss".into(), "joe".into());
            }
            Issuer::Other(iss) => {
                claims.insert("iss".into(), Value::String(iss.clone()));
            }
            Issuer::Absent => {}
        }
        let mut put = |name: &str, value: &Option<Json>| {
            if let Some(value) = value {
                claims.insert(name.into(), value.0.clone());
            }
        };
        put("sub", &self.sub);
        put("aud", &self.aud);
        put("nbf", &self.nbf);
        put("iat", &self.iat);
        put("org", &self.org);
        match &self.exp {
            Some(exp) => {
                claims.insert("exp".into(), exp.0.clone());
            }
            None => {
                claims.insert("exp".into(), FAR_FUTURE.into());
            }
        }
        if let Some(scope) = &self.scope {
            claims.insert("scope".into(), Value::String(scope.clone()));
        }
        for (name, value) in &self.extra {
            claims.insert(name.clone(), value.0.clone());
        }
        let token = sign(
            Value::Object(header).to_string().as_bytes(),
            Value::Object(claims).to_string().as_bytes(),
        );
        self.mangle.apply(token)
    }
}

/// `header.payload.signature` with HS256 over the given JSON texts.
#[must_use]
pub fn sign(header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = sign_input(&input);
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The HS256 signature of a signing input with [`MINT_SECRET`].
#[must_use]
pub fn sign_input(input: &str) -> Vec<u8> {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(MINT_SECRET) else {
        return Vec::new();
    };
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

impl Mangle {
    fn apply(&self, token: String) -> String {
        let len = token.len().max(1);
        match *self {
            Self::None => token,
            Self::FlipByte(at, xor) => {
                let mut bytes = token.into_bytes();
                if let Some(b) = bytes.get_mut(usize::from(at) % len) {
                    // Keep it ASCII so the token stays a string.
                    *b = (*b ^ (xor | 1)) & 0x7f;
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Self::Truncate(to) => token.chars().take(usize::from(to) % len).collect(),
            Self::Padded => token
                .split('.')
                .map(|s| {
                    let bytes = URL_SAFE_NO_PAD.decode(s).unwrap_or_default();
                    URL_SAFE.encode(bytes)
                })
                .collect::<Vec<_>>()
                .join("."),
            Self::StandardAlphabet => token.replace('-', "+").replace('_', "/"),
            Self::Repeated(kib) => {
                let target = usize::from(kib.min(64)) * 1024;
                let mut out = token.clone();
                while out.len() < target {
                    out.push_str(&token);
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unmangled_default_token_verifies_with_the_fixture_keys() {
        let spec = TokenSpec {
            alg: Alg::Hs256,
            with_kid: true,
            header_extra: vec![],
            iss: Issuer::Idp,
            sub: Some(Json("alice".into())),
            aud: Some(Json("bookstore".into())),
            exp: None,
            nbf: None,
            iat: None,
            scope: Some("read admin".into()),
            org: None,
            extra: vec![],
            mangle: Mangle::None,
        };
        let token = spec.mint();
        let jwt = jwt_auth::jwt::parse(token.as_bytes(), 8192).unwrap();
        let jwks = jwt_auth::jwks::parse(crate::fixtures::all_keys_jwks().as_bytes()).unwrap();
        assert!(jwt_auth::crypto::verify_jwt(&jwt, &jwks).is_ok());
    }
}
