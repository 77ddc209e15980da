//! The shipped chain as a running system: the five filters with their
//! WasmPlugins' configs in Istio's order (see [`crate::manifests::chain`]),
//! two versions of an upstream selected by canary-router's route header,
//! and a stand-in identity provider whose JWKS jwt-auth fetches by callout.
//!
//! Used by the full-chain e2e test, by `make demo` (`chain-demo`), and to
//! render `manifests/envoy/full-chain.yaml`, the standalone config of
//! `make up`, so all three run the same chain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::upstream::Reply;
use crate::{
    manifests, paths, Bootstrap, EchoUpstream, Envoy, EnvoyOptions, HttpFilter, Route,
    UpstreamConfig,
};

/// The `kid` of the test key in the JWKS and the tokens.
pub const KID: &str = "e2e-key";
/// Issuer and audience the jwt-auth WasmPlugin expects.
pub const ISSUER: &str = "https://idp.example.com";
/// Audience the jwt-auth WasmPlugin expects.
pub const AUDIENCE: &str = "shop";
/// Clusters of the two versions; `x-canary-version: v2` selects the second.
pub const CLUSTERS: [&str; 2] = ["reviews-v1", "reviews-v2"];

/// The stand-in identity provider: the committed test-only RSA key
/// (tests/e2e/data/test-rs256-key.pem).
pub struct Idp {
    key: RsaPrivateKey,
}

impl Idp {
    /// Loads the test key.
    ///
    /// # Panics
    ///
    /// If the key file is missing or not a PKCS#8 RSA key.
    pub fn load() -> Self {
        let path = paths::repo_root().join("tests/e2e/data/test-rs256-key.pem");
        let pem =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { key }
    }

    /// The private key, for tokens of other RSA algorithms (the bench's
    /// RS384, RS512 and PS* cases).
    pub fn key(&self) -> &RsaPrivateKey {
        &self.key
    }

    /// The public JWKS document.
    pub fn jwks(&self) -> String {
        let public = self.key.to_public_key();
        json!({"keys": [{
            "kty": "RSA", "kid": KID, "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        }]})
        .to_string()
    }

    /// An RS256 token for `sub` with the expected issuer and audience,
    /// valid for `ttl_secs` from now.
    pub fn token(&self, sub: &str, ttl_secs: u64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": KID});
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + ttl_secs,
        });
        self.token_with(&header, &claims)
    }

    /// An RS256 token with exactly this JOSE header and these claims, signed
    /// with the test key: the soak's expired, wrong-audience and unknown-`kid`
    /// tokens are real signatures over bad content, so jwt-auth rejects them
    /// for the content and not for the signature.
    pub fn token_with(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = SigningKey::<Sha256>::new(self.key.clone()).sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// The JWKS cluster the jwt-auth WasmPlugin names.
///
/// # Panics
///
/// If the manifest has no `providers.idp.remote_jwks.http_uri.cluster`.
pub fn jwks_cluster() -> String {
    let chain = manifests::chain();
    let jwt = chain
        .iter()
        .find(|p| p.name == "jwt-auth")
        .expect("jwt-auth in the chain");
    let config: Value = serde_json::from_str(&jwt.config).expect("jwt-auth config is JSON");
    config
        .pointer("/providers/idp/remote_jwks/http_uri/cluster")
        .and_then(Value::as_str)
        .expect("jwt-auth manifest: providers.idp.remote_jwks.http_uri.cluster")
        .to_owned()
}

/// The chain's bootstrap: the filters, `x-canary-version: v2` to
/// `reviews-v2`, everything else to `reviews-v1`, the JWKS cluster, and the
/// metrics stats tags. `wasm_dir` overrides where the modules are found.
pub fn bootstrap(
    idp: SocketAddr,
    v1: SocketAddr,
    v2: SocketAddr,
    wasm_dir: Option<&str>,
) -> Bootstrap {
    let [v1_cluster, v2_cluster] = CLUSTERS;
    let mut bootstrap = Bootstrap::new()
        .cluster(&jwks_cluster(), idp)
        .cluster(v1_cluster, v1)
        .cluster(v2_cluster, v2)
        .header_route("x-canary-version", "v2", Route::Cluster(v2_cluster.into()))
        .route("/", Route::Cluster(v1_cluster.into()))
        .stats_config_from(&paths::metrics_stats_tags_manifest());
    for plugin in manifests::chain() {
        let wasm = match (wasm_dir, plugin.wasm.file_name()) {
            (Some(dir), Some(file)) => PathBuf::from(dir).join(file),
            _ => plugin.wasm.clone(),
        };
        bootstrap = bootstrap.filter(HttpFilter::Wasm {
            name: plugin.name.clone(),
            wasm,
            config: plugin.config.clone(),
            root_id: String::new(),
            vm_config: None,
            fail_open: plugin.fail_open,
        });
    }
    bootstrap
}

/// The chain running in Envoy, with echo upstreams for both versions.
pub struct RunningChain {
    /// Envoy.
    pub envoy: Envoy,
    /// `reviews-v1`.
    pub v1: EchoUpstream,
    /// `reviews-v2`.
    pub v2: EchoUpstream,
    idp: EchoUpstream,
}

impl RunningChain {
    /// Starts the upstreams, the IdP stand-in and Envoy.
    ///
    /// # Panics
    ///
    /// If Envoy does not start.
    pub fn start(idp: &Idp) -> Self {
        Self::start_with(idp, &EnvoyOptions::default(), false)
    }

    /// As [`RunningChain::start`], with Envoy's command-line `options`
    /// (the soak runs `--concurrency 2`) and, if `exact_balance`, the
    /// listener's exact connection balancing, so a few client connections
    /// spread over every worker instead of where the kernel hashes them.
    ///
    /// # Panics
    ///
    /// If Envoy does not start.
    pub fn start_with(idp: &Idp, options: &EnvoyOptions, exact_balance: bool) -> Self {
        let idp_server = EchoUpstream::start(UpstreamConfig::default());
        idp_server.set_reply(Some(Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: idp.jwks().into_bytes(),
            ..Reply::default()
        }));
        let v1 = EchoUpstream::start(UpstreamConfig::default());
        let v2 = EchoUpstream::start(UpstreamConfig::default());
        let mut bootstrap = bootstrap(idp_server.addr(), v1.addr(), v2.addr(), None);
        if exact_balance {
            bootstrap = bootstrap.exact_balance();
        }
        Self {
            envoy: Envoy::start_with(&bootstrap, options),
            v1,
            v2,
            idp: idp_server,
        }
    }

    /// The IdP stand-in: every JWKS fetch jwt-auth made is in its
    /// [`EchoUpstream::seen`], which the soak reconciles with
    /// `jwt_auth.jwks_fetch_success + jwks_fetch_failed`.
    pub fn idp(&self) -> &EchoUpstream {
        &self.idp
    }
}

/// Ports of the standalone config (`make up`).
pub mod standalone {
    /// The chain's listener.
    pub const LISTENER: u16 = 10000;
    /// `reviews-v1`, answered by Envoy itself.
    pub const V1: u16 = 10001;
    /// `reviews-v2`, answered by Envoy itself.
    pub const V2: u16 = 10002;
    /// The IdP stand-in serving the JWKS.
    pub const IDP: u16 = 10003;
    /// Envoy's admin API (`/stats/prometheus`).
    pub const ADMIN: u16 = 9901;
}

/// The standalone Envoy config of `make up`, run from the repository root:
/// the chain on 127.0.0.1:10000, and, in the same Envoy, listeners that
/// stand in for `reviews-v1`, `reviews-v2` (answering with what they
/// received: the version, `x-jwt-sub`, whether a token arrived) and the
/// IdP's JWKS.
pub fn standalone_config(idp: &Idp) -> Value {
    use standalone::*;
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let mut config = bootstrap(at(IDP), at(V1), at(V2), Some("dist/filters")).to_json();
    if let Some(port) = config.pointer_mut("/admin/address/socket_address/port_value") {
        *port = ADMIN.into();
    }
    if let Some(port) =
        config.pointer_mut("/static_resources/listeners/0/address/socket_address/port_value")
    {
        *port = LISTENER.into();
    }
    let app = |name: &str, port: u16| {
        direct_listener(
            name,
            port,
            json!({
                "status": 200,
                "body": {"inline_string": format!("{name}: hello\n")},
            }),
            json!([
                {"header": {"key": "x-served-by", "value": name}},
                {"header": {"key": "x-app-saw-jwt-sub", "value": "%REQ(x-jwt-sub)%"}},
                {"header": {"key": "x-app-saw-authorization", "value": "%REQ(authorization)%"}},
            ]),
        )
    };
    let jwks = direct_listener(
        "idp",
        IDP,
        json!({"status": 200, "body": {"inline_string": idp.jwks()}}),
        json!([{"header": {"key": "content-type", "value": "application/json"}}]),
    );
    if let Some(listeners) = config
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
    {
        listeners.extend([app(CLUSTERS[0], V1), app(CLUSTERS[1], V2), jwks]);
    }
    config
}

/// A listener whose every request gets `direct_response` plus `headers`.
fn direct_listener(name: &str, port: u16, response: Value, headers: Value) -> Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{
                    "name": name,
                    "domains": ["*"],
                    "routes": [{
                        "match": {"prefix": "/"},
                        "direct_response": response,
                        "response_headers_to_add": headers,
                    }],
                }]},
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }],
            },
        }]}],
    })
}

/// `manifests/envoy/full-chain.yaml`.
pub fn standalone_config_path() -> PathBuf {
    paths::repo_root().join("manifests/envoy/full-chain.yaml")
}

/// The standalone config as the committed file's text: a header comment,
/// then the YAML.
///
/// # Panics
///
/// If the config cannot be turned into YAML.
pub fn standalone_config_text(idp: &Idp) -> String {
    let yaml = serde_yaml_ng::to_string(&standalone_config(idp)).expect("config to YAML");
    format!(
        "# The full chain on loopback, for `make up` (run from the repository root).\n\
         # GENERATED from manifests/istio/wasmplugins/ by\n\
         #   cargo run -q -p e2e --bin chain-demo -- --write-config\n\
         # (tests/e2e/tests/full_chain.rs fails when it is out of date). Do not edit.\n\
         #\n\
         # 127.0.0.1:{l}  the chain: security-headers, jwt-auth, rate-limit, canary-router, metrics\n\
         # 127.0.0.1:{v1}/{v2}  reviews-v1 / reviews-v2, answered by this Envoy with what they received\n\
         # 127.0.0.1:{i}  the identity provider's JWKS (tests/e2e/data/test-rs256-key.pem, test only)\n\
         # 127.0.0.1:{a}   admin: /stats/prometheus\n{yaml}",
        l = standalone::LISTENER,
        v1 = standalone::V1,
        v2 = standalone::V2,
        i = standalone::IDP,
        a = standalone::ADMIN,
    )
}
