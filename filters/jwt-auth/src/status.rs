//! Why a request was or was not authenticated: jwt_verify_lib's `Status`
//! codes with their exact messages (Envoy's jwt_authn puts the message in the
//! 401/403 body), plus the few this filter adds.

/// The outcome of checking one token or one requirement.
///
/// The messages are jwt_verify_lib's `getStatusString` texts, which Envoy's
/// jwt_authn sends as the local-reply body; clients and tests match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Verified (or not required).
    Ok,
    /// No token where the provider looks for one.
    JwtMissed,
    /// `nbf` is later than now plus the clock skew.
    JwtNotYetValid,
    /// `exp` is earlier than now minus the clock skew, or the remaining
    /// lifetime exceeds `max_lifetime`, or `exp` is missing but required.
    JwtExpired,
    /// Not three dot-separated sections.
    JwtBadFormat,
    /// Header section is not base64url.
    JwtHeaderParseErrorBadBase64,
    /// Header section is not a JSON object.
    JwtHeaderParseErrorBadJson,
    /// `alg` missing or not a string.
    JwtHeaderBadAlg,
    /// `alg` is not one this filter verifies (including `none`).
    JwtHeaderNotImplementedAlg,
    /// `kid` is not a string.
    JwtHeaderBadKid,
    /// Payload section is not base64url.
    JwtPayloadParseErrorBadBase64,
    /// Payload section is not a JSON object.
    JwtPayloadParseErrorBadJson,
    /// `iss` is not a string.
    JwtPayloadParseErrorIssNotString,
    /// `sub` is not a string.
    JwtPayloadParseErrorSubNotString,
    /// `iat` is not a number.
    JwtPayloadParseErrorIatNotInteger,
    /// `iat` is negative or too large.
    JwtPayloadParseErrorIatOutOfRange,
    /// `nbf` is not a number.
    JwtPayloadParseErrorNbfNotInteger,
    /// `nbf` is negative or too large.
    JwtPayloadParseErrorNbfOutOfRange,
    /// `exp` is not a number.
    JwtPayloadParseErrorExpNotInteger,
    /// `exp` is negative or too large.
    JwtPayloadParseErrorExpOutOfRange,
    /// `jti` is not a string.
    JwtPayloadParseErrorJtiNotString,
    /// `aud` is neither a string nor a list of strings.
    JwtPayloadParseErrorAudNotString,
    /// Signature section is not base64url.
    JwtSignatureParseErrorBadBase64,
    /// An EdDSA signature that is not 64 bytes.
    JwtEd25519SignatureWrongLength,
    /// `iss` is not the provider's issuer.
    JwtUnknownIssuer,
    /// No `aud` value is in the allowed audiences (403).
    JwtAudienceNotAllowed,
    /// The signature does not verify with any candidate key.
    JwtVerificationFail,
    /// No key in the JWKS matches the token's `kid` and `alg`.
    JwksKidAlgMismatch,
    /// The provider has no usable key.
    JwksNoValidKeys,
    /// The remote JWKS could not be fetched and no earlier copy exists.
    JwksFetchFail,
    /// Extension: the token is longer than `max_jwt_bytes`.
    JwtTooLarge,
    /// Extension: the header's `crit` names an extension this filter does
    /// not implement (RFC 7515 §4.1.11 requires rejecting it).
    JwtHeaderUnknownCrit,
    /// Extension: a verified token fails the matching `claim_rules` entry (403).
    JwtClaimsNotAllowed,
}

impl Status {
    /// The message jwt_authn sends as the body (jwt_verify_lib's text).
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::JwtMissed => "Jwt is missing",
            Self::JwtNotYetValid => "Jwt not yet valid",
            Self::JwtExpired => "Jwt is expired",
            Self::JwtBadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            Self::JwtHeaderParseErrorBadBase64 => "Jwt header is an invalid Base64url encoded",
            Self::JwtHeaderParseErrorBadJson => "Jwt header is an invalid JSON",
            Self::JwtHeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            Self::JwtHeaderNotImplementedAlg => "Jwt header [alg] is not supported",
            Self::JwtHeaderBadKid => "Jwt header [kid] field is not a string",
            Self::JwtPayloadParseErrorBadBase64 => "Jwt payload is an invalid Base64url encoded",
            Self::JwtPayloadParseErrorBadJson => "Jwt payload is an invalid JSON",
            Self::JwtPayloadParseErrorIssNotString => "Jwt payload [iss] field is not a string",
            Self::JwtPayloadParseErrorSubNotString => "Jwt payload [sub] field is not a string",
            Self::JwtPayloadParseErrorIatNotInteger => "Jwt payload [iat] field is not an integer",
            Self::JwtPayloadParseErrorIatOutOfRange => {
                "Jwt payload [iat] field is not a positive 64 bit integer"
            }
            Self::JwtPayloadParseErrorNbfNotInteger => "Jwt payload [nbf] field is not an integer",
            Self::JwtPayloadParseErrorNbfOutOfRange => {
                "Jwt payload [nbf] field is not a positive 64 bit integer"
            }
            Self::JwtPayloadParseErrorExpNotInteger => "Jwt payload [exp] field is not an integer",
            Self::JwtPayloadParseErrorExpOutOfRange => {
                "Jwt payload [exp] field is not a positive 64 bit integer"
            }
            Self::JwtPayloadParseErrorJtiNotString => "Jwt payload [jti] field is not a string",
            Self::JwtPayloadParseErrorAudNotString => {
                "Jwt payload [aud] field is not a string or string list"
            }
            Self::JwtSignatureParseErrorBadBase64 => {
                "Jwt signature is an invalid Base64url encoded"
            }
            Self::JwtEd25519SignatureWrongLength => "Jwt ED25519 signature is wrong length",
            Self::JwtUnknownIssuer => "Jwt issuer is not configured",
            Self::JwtAudienceNotAllowed => "Audiences in Jwt are not allowed",
            Self::JwtVerificationFail => "Jwt verification fails",
            Self::JwksKidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
            Self::JwksNoValidKeys => "Jwks doesn't have any valid public key",
            Self::JwksFetchFail => "Jwks remote fetch is failed",
            Self::JwtTooLarge => "Jwt is too large",
            Self::JwtHeaderUnknownCrit => "Jwt header [crit] lists an unsupported extension",
            Self::JwtClaimsNotAllowed => "Claims in Jwt are not allowed",
        }
    }

    /// The HTTP status of the local reply: 403 for a disallowed audience (as
    /// jwt_authn) and for a failed claim rule; 401 for everything else.
    #[must_use]
    pub fn http_code(self) -> u32 {
        match self {
            Self::JwtAudienceNotAllowed | Self::JwtClaimsNotAllowed => 403,
            _ => 401,
        }
    }

    /// Whether this is a success.
    #[must_use]
    pub fn is_ok(self) -> bool {
        self == Self::Ok
    }
}

/// The `WWW-Authenticate` value jwt_authn sends with a failure:
/// `Bearer realm="<original uri>"`, plus `, error="invalid_token"` unless the
/// token was simply missing.
#[must_use]
pub fn www_authenticate(realm: &str, status: Status) -> String {
    let mut value = format!("Bearer realm=\"{realm}\"");
    if status != Status::JwtMissed {
        value.push_str(", error=\"invalid_token\"");
    }
    value
}

/// Envoy's `buildOriginalUri`: `<x-forwarded-proto>://<host><path>` with the
/// path cut to 256 bytes (jwt_authn's `MaximumUriLength`). Non-UTF-8 and
/// characters that would break the quoted realm are replaced.
#[must_use]
pub fn original_uri(forwarded_proto: &[u8], host: &[u8], path: &[u8]) -> String {
    const MAX_PATH: usize = 256;
    let path = path.get(..MAX_PATH).unwrap_or(path);
    let clean = |bytes: &[u8]| -> String {
        filter_common::decode_lossy(bytes)
            .chars()
            .map(|c| {
                if c == '"' || c == '\\' || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect()
    };
    format!(
        "{}://{}{}",
        clean(forwarded_proto),
        clean(host),
        clean(path)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_and_claim_failures_are_forbidden_everything_else_unauthorized() {
        assert_eq!(Status::JwtAudienceNotAllowed.http_code(), 403);
        assert_eq!(Status::JwtClaimsNotAllowed.http_code(), 403);
        assert_eq!(Status::JwtExpired.http_code(), 401);
        assert_eq!(Status::JwtMissed.http_code(), 401);
    }

    #[test]
    fn missing_token_gets_no_error_attribute() {
        assert_eq!(
            www_authenticate("http://a/b", Status::JwtMissed),
            "Bearer realm=\"http://a/b\""
        );
        assert_eq!(
            www_authenticate("http://a/b", Status::JwtExpired),
            "Bearer realm=\"http://a/b\", error=\"invalid_token\""
        );
    }

    #[test]
    fn original_uri_cuts_long_paths_and_neutralises_quotes() {
        let long = vec![b'a'; 300];
        let uri = original_uri(b"https", b"h", &long);
        assert_eq!(uri.len(), "https://h".len() + 256);
        assert_eq!(original_uri(b"http", b"h\"x", b"/p"), "http://h_x/p");
    }
}
