//! Parsing a compact JWS (RFC 7515 §7.1) into its header fields, claims and
//! signature, with jwt_verify_lib's checks and error codes. No signature or
//! time checking here: see [`crate::crypto`] and [`crate::auth`].

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};

use crate::status::Status;

/// base64url as JWTs use it: no padding written; padding tolerated on input
/// (jwt_verify_lib accepts both).
pub const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The JWS algorithms this filter verifies (the set Envoy's jwt_authn has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 (salt = hash length, RFC 7518 §3.5).
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// ECDSA P-521 with SHA-512.
    Es512,
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl Alg {
    /// The algorithm named by a JOSE `alg` value. `none` and anything
    /// unknown are `None`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "ES512" => Self::Es512,
            "HS256" => Self::Hs256,
            "HS384" => Self::Hs384,
            "HS512" => Self::Hs512,
            "EdDSA" => Self::EdDsa,
            _ => return None,
        })
    }

    /// The JOSE name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// A parsed, not yet verified, token.
#[derive(Debug, Clone)]
pub struct Jwt {
    /// The header's `alg`.
    pub alg: Alg,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// `iss`, empty when absent (jwt_verify_lib's convention).
    pub iss: String,
    /// `sub`, empty when absent.
    pub sub: String,
    /// `aud` as a list (a string becomes one element).
    pub audiences: Vec<String>,
    /// `exp` in Unix seconds.
    pub exp: Option<u64>,
    /// `nbf` in Unix seconds.
    pub nbf: Option<u64>,
    /// `iat` in Unix seconds (parsed and type-checked, not compared to now,
    /// as in jwt_verify_lib).
    pub iat: Option<u64>,
    /// Every claim, for `claim_to_headers` and `claim_rules`.
    pub claims: Map<String, Value>,
    /// The payload section exactly as sent (for `forward_payload_header`).
    pub payload_b64: String,
    /// `<header>.<payload>`, the bytes the signature covers.
    pub signing_input: String,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Parses a compact JWS of at most `max_bytes` bytes.
///
/// # Errors
/// The jwt_verify_lib [`Status`] for the first problem found, in its order:
/// format, header base64/JSON/alg/kid, payload base64/JSON/claims,
/// signature base64; plus [`Status::JwtTooLarge`] and
/// [`Status::JwtHeaderUnknownCrit`].
pub fn parse(token: &[u8], max_bytes: usize) -> Result<Jwt, Status> {
    if token.len() > max_bytes {
        return Err(Status::JwtTooLarge);
    }
    let token = std::str::from_utf8(token).map_err(|_| Status::JwtBadFormat)?;
    let mut sections = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        sections.next(),
        sections.next(),
        sections.next(),
        sections.next(),
    ) else {
        return Err(Status::JwtBadFormat);
    };

    let header_bytes = B64URL
        .decode(header_b64)
        .map_err(|_| Status::JwtHeaderParseErrorBadBase64)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| Status::JwtHeaderParseErrorBadJson)?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Status::JwtHeaderBadAlg)?;
    let alg = Alg::from_name(alg_name).ok_or(Status::JwtHeaderNotImplementedAlg)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(Status::JwtHeaderBadKid),
    };
    // RFC 7515 §4.1.11: a recipient must reject a token whose `crit` names
    // an extension it does not process; this filter processes none.
    // (jwt_verify_lib ignores `crit`; rejecting is the safe reading.)
    if header.contains_key("crit") {
        return Err(Status::JwtHeaderUnknownCrit);
    }

    let payload_bytes = B64URL
        .decode(payload_b64)
        .map_err(|_| Status::JwtPayloadParseErrorBadBase64)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload_bytes).map_err(|_| Status::JwtPayloadParseErrorBadJson)?;
    let iss = optional_string(&claims, "iss", Status::JwtPayloadParseErrorIssNotString)?;
    let sub = optional_string(&claims, "sub", Status::JwtPayloadParseErrorSubNotString)?;
    let iat = optional_time(
        &claims,
        "iat",
        Status::JwtPayloadParseErrorIatNotInteger,
        Status::JwtPayloadParseErrorIatOutOfRange,
    )?;
    let nbf = optional_time(
        &claims,
        "nbf",
        Status::JwtPayloadParseErrorNbfNotInteger,
        Status::JwtPayloadParseErrorNbfOutOfRange,
    )?;
    let exp = optional_time(
        &claims,
        "exp",
        Status::JwtPayloadParseErrorExpNotInteger,
        Status::JwtPayloadParseErrorExpOutOfRange,
    )?;
    optional_string(&claims, "jti", Status::JwtPayloadParseErrorJtiNotString)?;
    let audiences = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(Status::JwtPayloadParseErrorAudNotString)?,
        Some(_) => return Err(Status::JwtPayloadParseErrorAudNotString),
    };

    let signature = B64URL
        .decode(signature_b64)
        .map_err(|_| Status::JwtSignatureParseErrorBadBase64)?;
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token
        .get(..signing_input_len)
        .ok_or(Status::JwtBadFormat)?
        .to_owned();

    Ok(Jwt {
        alg,
        kid,
        iss: iss.unwrap_or_default(),
        sub: sub.unwrap_or_default(),
        audiences,
        exp,
        nbf,
        iat,
        claims,
        payload_b64: payload_b64.to_owned(),
        signing_input,
        signature,
    })
}

fn optional_string(
    claims: &Map<String, Value>,
    name: &str,
    not_string: Status,
) -> Result<Option<String>, Status> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(not_string),
    }
}

/// A NumericDate (RFC 7519 §2): a non-negative number of seconds; a
/// fractional value is truncated.
fn optional_time(
    claims: &Map<String, Value>,
    name: &str,
    not_integer: Status,
    out_of_range: Status,
) -> Result<Option<u64>, Status> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                return Ok(Some(v));
            }
            match n.as_f64() {
                // 2^64 as f64; the cast truncates the fraction.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some(f) if (0.0..18_446_744_073_709_551_616.0).contains(&f) => Ok(Some(f as u64)),
                _ => Err(out_of_range),
            }
        }
        Some(_) => Err(not_integer),
    }
}

/// Follows a dotted claim path (`"a.b.c"`, as `claim_to_headers` names
/// nested claims) through nested objects.
#[must_use]
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for key in rest {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            B64URL.encode(header),
            B64URL.encode(payload),
            B64URL.encode(sig)
        )
    }

    #[test]
    fn well_formed_token_yields_its_claims() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1"}"#,
            r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10,"nbf":1.9,"iat":1,"x":{"y":"z"}}"#,
            b"sig",
        );
        let jwt = parse(t.as_bytes(), 8192).unwrap();
        assert_eq!(jwt.alg, Alg::Rs256);
        assert_eq!(jwt.kid.as_deref(), Some("k1"));
        assert_eq!((jwt.iss.as_str(), jwt.sub.as_str()), ("i", "s"));
        assert_eq!(jwt.audiences, ["a", "b"]);
        assert_eq!((jwt.exp, jwt.nbf, jwt.iat), (Some(10), Some(1), Some(1)));
        assert_eq!(jwt.signature, b"sig");
        assert!(t.starts_with(&jwt.signing_input));
        let path = ["x".to_owned(), "y".to_owned()];
        assert_eq!(claim_at(&jwt.claims, &path), Some(&Value::from("z")));
    }

    #[test]
    fn each_defect_gets_jwt_verify_lib_status() {
        let ok_header = r#"{"alg":"HS256"}"#;
        let cases: Vec<(String, Status)> = vec![
            ("a.b".into(), Status::JwtBadFormat),
            ("a.b.c.d".into(), Status::JwtBadFormat),
            ("!!.e30.e30".into(), Status::JwtHeaderParseErrorBadBase64),
            (token("[1]", "{}", b""), Status::JwtHeaderParseErrorBadJson),
            (token("{}", "{}", b""), Status::JwtHeaderBadAlg),
            (token(r#"{"alg":5}"#, "{}", b""), Status::JwtHeaderBadAlg),
            (
                token(r#"{"alg":"none"}"#, "{}", b""),
                Status::JwtHeaderNotImplementedAlg,
            ),
            (
                token(r#"{"alg":"HS256","kid":1}"#, "{}", b""),
                Status::JwtHeaderBadKid,
            ),
            (
                token(r#"{"alg":"HS256","crit":["exp"]}"#, "{}", b""),
                Status::JwtHeaderUnknownCrit,
            ),
            (
                format!("{}.!!.x", B64URL.encode(ok_header)),
                Status::JwtPayloadParseErrorBadBase64,
            ),
            (
                token(ok_header, "nope", b""),
                Status::JwtPayloadParseErrorBadJson,
            ),
            (
                token(ok_header, r#"{"iss":1}"#, b""),
                Status::JwtPayloadParseErrorIssNotString,
            ),
            (
                token(ok_header, r#"{"sub":[]}"#, b""),
                Status::JwtPayloadParseErrorSubNotString,
            ),
            (
                token(ok_header, r#"{"exp":"1"}"#, b""),
                Status::JwtPayloadParseErrorExpNotInteger,
            ),
            (
                token(ok_header, r#"{"exp":-1}"#, b""),
                Status::JwtPayloadParseErrorExpOutOfRange,
            ),
            (
                token(ok_header, r#"{"nbf":true}"#, b""),
                Status::JwtPayloadParseErrorNbfNotInteger,
            ),
            (
                token(ok_header, r#"{"iat":1e30}"#, b""),
                Status::JwtPayloadParseErrorIatOutOfRange,
            ),
            (
                token(ok_header, r#"{"jti":2}"#, b""),
                Status::JwtPayloadParseErrorJtiNotString,
            ),
            (
                token(ok_header, r#"{"aud":[1]}"#, b""),
                Status::JwtPayloadParseErrorAudNotString,
            ),
            (
                format!("{}.e30.!!", B64URL.encode(ok_header)),
                Status::JwtSignatureParseErrorBadBase64,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(parse(t.as_bytes(), 8192).unwrap_err(), want, "{t}");
        }
    }

    #[test]
    fn oversize_and_non_utf8_tokens_are_refused_before_decoding() {
        assert_eq!(parse(&[b'a'; 9000], 8192).unwrap_err(), Status::JwtTooLarge);
        assert_eq!(parse(b"\xff.a.b", 8192).unwrap_err(), Status::JwtBadFormat);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&bytes, 8192);
        }
    }
}
