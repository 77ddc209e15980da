//! The filter's counters, as one const list (like Envoy's jwt_authn `stats.h`).

/// Requests let through (verified, not required, or bypassed).
pub const ALLOWED: &str = "jwt_auth.allowed";
/// Requests answered 401/403.
pub const DENIED: &str = "jwt_auth.denied";
/// Remote JWKS fetches that produced a usable key set.
pub const JWKS_FETCH_SUCCESS: &str = "jwt_auth.jwks_fetch_success";
/// Remote JWKS fetches that failed (error, non-200, timeout, oversize, garbage).
pub const JWKS_FETCH_FAILED: &str = "jwt_auth.jwks_fetch_failed";
/// Tokens found in the verified-token cache.
pub const JWT_CACHE_HIT: &str = "jwt_auth.jwt_cache_hit";
/// Tokens looked up in the cache and not found.
pub const JWT_CACHE_MISS: &str = "jwt_auth.jwt_cache_miss";

/// Every counter the filter defines, in definition order.
pub const COUNTERS: &[&str] = &[
    ALLOWED,
    DENIED,
    JWKS_FETCH_SUCCESS,
    JWKS_FETCH_FAILED,
    JWT_CACHE_HIT,
    JWT_CACHE_MISS,
];
