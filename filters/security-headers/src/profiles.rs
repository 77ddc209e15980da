//! The header sets each `profile` starts from: published facts typed in as
//! data, with names lower-cased the way Envoy's header maps hold them.

/// A profile: the headers it adds and the response headers it strips when
/// `remove_profile_defaults` is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileData {
    /// `(name, value)` pairs added to responses, in the order they are appended.
    pub add: &'static [(&'static str, &'static str)],
    /// Response headers stripped when `remove_profile_defaults` is true.
    pub remove: &'static [&'static str],
    /// Default of `csp.html_only`: an API's CSP is meant for every response.
    pub csp_html_only: bool,
}

/// OWASP Secure Headers Project, `ci/headers_add.json` in
/// OWASP/www-project-secure-headers, `last_update_utc` "2024-09-02 21:54:45"
/// (commit 213b0f1476d2242e7c497b9ab6f81fcc991e40e7). Values verbatim.
///
/// `clear-site-data` is on the list and wipes cookies and storage on every
/// response it is sent with; apps with sessions should set it to `null`.
pub const OWASP_ADD: &[(&str, &str)] = &[
    ("cache-control", "no-store, max-age=0"),
    ("clear-site-data", "\"cache\",\"cookies\",\"storage\""),
    (
        "content-security-policy",
        "default-src 'self'; form-action 'self'; object-src 'none'; frame-ancestors 'none'; \
         upgrade-insecure-requests; block-all-mixed-content",
    ),
    ("cross-origin-embedder-policy", "require-corp"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "accelerometer=(), autoplay=(), camera=(), cross-origin-isolated=(), display-capture=(), \
         encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), keyboard-map=(), \
         magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), \
         publickey-credentials-get=(), screen-wake-lock=(), sync-xhr=(self), usb=(), web-share=(), \
         xr-spatial-tracking=(), clipboard-read=(), clipboard-write=(), gamepad=(), hid=(), \
         idle-detection=(), interest-cohort=(), serial=(), unload=()",
    ),
    ("referrer-policy", "no-referrer"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "deny"),
    ("x-permitted-cross-domain-policies", "none"),
];

/// OWASP Secure Headers Project, `ci/headers_remove.json` in
/// OWASP/www-project-secure-headers, `last_update_utc` "2024-09-02 21:54:45"
/// (commit 213b0f1476d2242e7c497b9ab6f81fcc991e40e7), lower-cased.
pub const OWASP_REMOVE: &[&str] = &[
    "$wsep",
    "host-header",
    "k-proxy-request",
    "liferay-portal",
    "oraclecommercecloud-version",
    "pega-host",
    "powered-by",
    "product",
    "server",
    "sourcemap",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-atmosphere-error",
    "x-atmosphere-first-request",
    "x-atmosphere-tracking-id",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-spanid",
    "x-b3-traceid",
    "x-beserver",
    "x-cf-powered-by",
    "x-cms",
    "x-calculatedbetarget",
    "x-cocoon-version",
    "x-content-encoded-by",
    "x-diaginfo",
    "x-envoy-attempt-count",
    "x-envoy-external-address",
    "x-envoy-internal",
    "x-envoy-original-dst-host",
    "x-envoy-upstream-service-time",
    "x-feserver",
    "x-framework",
    "x-generated-by",
    "x-generator",
    "x-jitsi-release",
    "x-joomla-version",
    "x-kubernetes-pf-flowschema-ui",
    "x-kubernetes-pf-prioritylevel-uid",
    "x-litespeed-cache",
    "x-litespeed-purge",
    "x-litespeed-tag",
    "x-litespeed-vary",
    "x-litespeed-cache-control",
    "x-mod-pagespeed",
    "x-nextjs-cache",
    "x-nextjs-matched-path",
    "x-nextjs-page",
    "x-nextjs-redirect",
    "x-owa-version",
    "x-old-content-length",
    "x-oneagent-js-injection",
    "x-page-speed",
    "x-php-version",
    "x-powered-by",
    "x-powered-by-plesk",
    "x-powered-cms",
    "x-redirect-by",
    "x-server-powered-by",
    "x-sourcefiles",
    "x-sourcemap",
    "x-turbo-charged-by",
    "x-umbraco-version",
    "x-varnish-backend",
    "x-varnish-server",
    "x-dtagentid",
    "x-dthealthcheck",
    "x-dtinjectedservlet",
    "x-ruxit-js-agent",
];

/// helmet 8.x defaults (helmet's README, "HTTP header reference", as of
/// helmet 8.1.0/8.2.0, 2025): 12 headers set; the 13th default is removing
/// `X-Powered-By`. HSTS is one year since helmet 8 (helmetjs/helmet#457).
pub const HELMET_ADD: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';\
         frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';\
         script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
    ),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("origin-agent-cluster", "?1"),
    ("referrer-policy", "no-referrer"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-dns-prefetch-control", "off"),
    ("x-download-options", "noopen"),
    ("x-frame-options", "SAMEORIGIN"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
];

/// helmet's removal default.
pub const HELMET_REMOVE: &[&str] = &["x-powered-by"];

/// MDN/Mozilla web security guidelines for API endpoints: a CSP that lets
/// nothing load or frame the response, HSTS (Mozilla recommends two years)
/// and nosniff. The remove list is OWASP's: leak stripping suits APIs too.
pub const API_ADD: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
];

/// `owasp`: the OWASP add and remove lists.
pub const OWASP: ProfileData = ProfileData {
    add: OWASP_ADD,
    remove: OWASP_REMOVE,
    csp_html_only: true,
};
/// `helmet`: helmet's defaults.
pub const HELMET: ProfileData = ProfileData {
    add: HELMET_ADD,
    remove: HELMET_REMOVE,
    csp_html_only: true,
};
/// `api`: MDN's API recommendation plus OWASP's remove list.
pub const API: ProfileData = ProfileData {
    add: API_ADD,
    remove: OWASP_REMOVE,
    csp_html_only: false,
};
/// `none`: nothing; everything comes from `headers`, `remove` and `hsts`.
pub const NONE: ProfileData = ProfileData {
    add: &[],
    remove: &[],
    csp_html_only: true,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_name_is_a_valid_lower_case_header_name_without_duplicates() {
        for profile in [OWASP, HELMET, API, NONE] {
            let mut names: Vec<&str> = profile
                .add
                .iter()
                .map(|(n, _)| *n)
                .chain(profile.remove.iter().copied())
                .collect();
            for name in &names {
                assert_eq!(filter_common::validate_header_name(name), Ok(()), "{name}");
            }
            for (name, value) in profile.add {
                assert_eq!(
                    filter_common::validate_header_value(value),
                    Ok(()),
                    "{name}"
                );
            }
            let before = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), before, "duplicate name in a profile");
        }
    }

    #[test]
    fn helmet_sets_twelve_headers_and_removes_one_as_its_thirteen_defaults() {
        assert_eq!(HELMET_ADD.len() + HELMET_REMOVE.len(), 13);
    }
}
