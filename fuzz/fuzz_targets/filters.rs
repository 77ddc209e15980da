//! Whole filters in host-test: the shipped `dist/filters/*.wasm` modules,
//! each alone, all five chained, and the bundle
//! ([`mesh_wasm_fuzz::chains`]), get a realistic request (one of a few
//! templates) with fuzzed method, path, extra headers (values of raw bytes;
//! names as Envoy passes them, see [`raw_names`]), a minted or mangled
//! token, a body (never a content-length unless a fuzzed header adds one)
//! and a fuzzed upstream answer; then the host clock moves on.
//!
//! The modules are loaded once per process (one host per chain, kept for
//! the whole run, so state such as rate-limit buckets, the JWT cache and
//! metric series carries over between inputs as it does in a sidecar).
//!
//! Findings besides a panic in the host: any callback failure (a trap, fuel
//! or memory exhaustion, `proc_exit`), a stalled or reset stream, and a 5xx
//! the upstream did not send (no filter here is configured to answer 5xx;
//! a failed VM's streams get 503). Coverage guidance comes from host-test's
//! native code only: the guest code is compiled by wasmtime, not
//! instrumented, so this target relies on the native-core targets for
//! depth and on volume here.
#![no_main]

use std::cell::RefCell;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use host_test::{Host, MockResponse, Request};
use libfuzzer_sys::fuzz_target;
use mesh_wasm_fuzz::chains::{self, Chain};
use mesh_wasm_fuzz::fixtures;
use mesh_wasm_fuzz::mint::{self, TokenSpec};

/// Header names the filters read, write or that Envoy treats specially.
const NAMES: [&str; 26] = [
    "authorization",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    ":scheme",
    ":authority",
    ":path",
    ":method",
    "content-type",
    "content-length",
    "transfer-encoding",
    "x-canary-version",
    "x-canary",
    "x-user-id",
    "x-jwt-sub",
    "x-jwt",
    "x-jwt-payload",
    "user-agent",
    "origin",
    "access-control-request-method",
    "x-request-id",
    "x-beta",
    "x-tenant",
    "te",
    "connection",
    "strict-transport-security",
];

#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Raw(Vec<u8>),
}

/// Whether fuzzed header names go to the filters byte for byte. Off by
/// default: Envoy's codecs answer 400 to a name that is not an RFC 9110
/// token (measured with Envoy 1.40 over HTTP/1.1: `x-\xed\xed`, `X\xff`
/// and `x val` all get 400) and lower-case the rest, so filters only ever
/// see lower-case token names. `FUZZ_RAW_HEADER_NAMES=1` sends raw names
/// anyway; the proxy-wasm SDK's whole-map getters trap on a name that is
/// not UTF-8 (see fuzz/README.md).
fn raw_names() -> bool {
    static RAW: OnceLock<bool> = OnceLock::new();
    *RAW.get_or_init(|| std::env::var_os("FUZZ_RAW_HEADER_NAMES").is_some_and(|v| v == "1"))
}

fn is_token(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl Name {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Known(i) => NAMES[usize::from(*i) % NAMES.len()].as_bytes().to_vec(),
            Self::Raw(raw) if raw_names() => raw.to_ascii_lowercase(),
            // What Envoy would pass: lower-case, non-token bytes dropped.
            Self::Raw(raw) => {
                let name: Vec<u8> = raw
                    .to_ascii_lowercase()
                    .into_iter()
                    .filter(|b| is_token(*b))
                    .collect();
                if name.is_empty() {
                    b"x-empty".to_vec()
                } else {
                    name
                }
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Place {
    Bearer,
    Query,
    Cookie,
    XJwt,
}

#[derive(Debug, Arbitrary)]
struct Upstream {
    status: u16,
    headers: Vec<(Name, String)>,
    body: String,
}

#[derive(Debug, Arbitrary)]
struct Input {
    template: u8,
    chain: Chain,
    method: Option<Method>,
    path: Option<Vec<u8>>,
    token: Option<(TokenSpec, Place)>,
    headers: Vec<(Name, Vec<u8>)>,
    body: Vec<u8>,
    upstream: Option<Upstream>,
    advance_ms: u16,
}

/// A token the fixture jwt-auth config accepts for `/admin`.
fn good_token() -> String {
    mint::sign(
        format!(r#"{{"alg":"HS256","kid":"{}"}}"#, fixtures::MINT_KID).as_bytes(),
        br#"{"iss":"https://idp.example.com","sub":"alice","aud":"bookstore","exp":4000000000,"scope":"read admin","org":{"tenant":"acme"}}"#,
    )
}

/// Realistic starting points; the input picks one and changes it.
fn template(
    index: u8,
) -> (
    &'static str,
    &'static str,
    Vec<(&'static str, String)>,
    &'static [u8],
) {
    let bearer = format!("Bearer {}", good_token());
    match index % 7 {
        0 => (
            "GET",
            "/api/orders?id=7",
            vec![
                ("x-forwarded-proto", "https".into()),
                (
                    "user-agent",
                    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0".into(),
                ),
                ("x-user-id", "u-1842".into()),
                ("authorization", bearer),
            ],
            b"",
        ),
        1 => (
            "POST",
            "/login?api_key=k-77",
            vec![
                ("cookie", "session=3f9a; theme=dark".into()),
                ("content-type", "application/x-www-form-urlencoded".into()),
                ("x-forwarded-for", "198.51.100.23, 10.0.0.2".into()),
            ],
            b"user=alice&password=hunter2",
        ),
        2 => (
            "GET",
            "/partners/acme",
            vec![(
                "cookie",
                format!("session-jwt={}", fixtures::RFC7515_A2_TOKEN),
            )],
            b"",
        ),
        3 => (
            "GET",
            "/",
            vec![("authorization", bearer), ("x-canary", "always".into())],
            b"",
        ),
        4 => (
            "OPTIONS",
            "/api/orders",
            vec![
                ("origin", "https://shop.example.com".into()),
                ("access-control-request-method", "POST".into()),
            ],
            b"",
        ),
        5 => (
            "GET",
            "/static/app.js",
            vec![
                ("cookie", "canary=true".into()),
                ("cookie", "canary-version=v2".into()),
                ("authorization", bearer),
            ],
            b"",
        ),
        _ => (
            "PUT",
            "/admin/users/7",
            vec![
                ("authorization", bearer),
                ("content-type", "application/json".into()),
                ("x-canary-version", "v9".into()),
            ],
            br#"{"role":"admin"}"#,
        ),
    }
}

thread_local! {
    static HOSTS: RefCell<Vec<Option<Host>>> = RefCell::new((0..Chain::ALL.len()).map(|_| None).collect());
}

fn with_host<R>(chain: Chain, f: impl FnOnce(&mut Host) -> R) -> R {
    HOSTS.with(|hosts| {
        let mut hosts = hosts.borrow_mut();
        let slot = &mut hosts[chain.index()];
        let host = slot.get_or_insert_with(|| match chains::build(chain) {
            Ok(host) => host,
            Err(message) => {
                // Not a finding: the setup is wrong. Stop with one clear line.
                eprintln!("filters fuzz target: cannot load {chain:?}: {message}");
                std::process::exit(2);
            }
        });
        f(host)
    })
}

fuzz_target!(|input: Input| {
    let (method, path, headers, body) = template(input.template);
    let method = match &input.method {
        None => method.as_bytes().to_vec(),
        Some(Method::Get) => b"GET".to_vec(),
        Some(Method::Head) => b"HEAD".to_vec(),
        Some(Method::Post) => b"POST".to_vec(),
        Some(Method::Put) => b"PUT".to_vec(),
        Some(Method::Delete) => b"DELETE".to_vec(),
        Some(Method::Connect) => b"CONNECT".to_vec(),
        Some(Method::Options) => b"OPTIONS".to_vec(),
        Some(Method::Trace) => b"TRACE".to_vec(),
        Some(Method::Patch) => b"PATCH".to_vec(),
        Some(Method::Raw(raw)) => raw.clone(),
    };
    let mut path = input
        .path
        .clone()
        .unwrap_or_else(|| path.as_bytes().to_vec());
    let mut request = Request {
        headers: vec![
            (b":method".to_vec(), method),
            (b":path".to_vec(), Vec::new()),
        ],
        body: if input.body.is_empty() {
            body.to_vec()
        } else {
            input.body.clone()
        },
        ..Request::default()
    };
    for (name, value) in headers {
        request
            .headers
            .push((name.as_bytes().to_vec(), value.into_bytes()));
    }
    if let Some((spec, place)) = &input.token {
        let token = spec.mint();
        match place {
            Place::Bearer => request.headers.push((
                b"authorization".to_vec(),
                format!("Bearer {token}").into_bytes(),
            )),
            Place::Cookie => request.headers.push((
                b"cookie".to_vec(),
                format!("session-jwt={token}").into_bytes(),
            )),
            Place::XJwt => request
                .headers
                .push((b"x-jwt".to_vec(), token.into_bytes())),
            Place::Query => {
                path.extend_from_slice(if path.contains(&b'?') {
                    b"&jwt="
                } else {
                    b"?jwt="
                });
                path.extend_from_slice(token.as_bytes());
            }
        }
    }
    for (name, value) in input.headers.iter().take(256) {
        request.headers.push((name.bytes(), value.clone()));
    }
    request.headers[1].1 = path;
    let upstream_status = input
        .upstream
        .as_ref()
        .map_or(200, |u| 200 + u.status % 400);
    let mut upstream = MockResponse::with_status(upstream_status)
        .header("content-type", "text/html; charset=utf-8")
        .header("server", "nginx/1.25");
    if let Some(u) = &input.upstream {
        upstream.body.clone_from(&u.body);
        for (name, value) in u.headers.iter().take(256) {
            let name = String::from_utf8_lossy(&name.bytes()).into_owned();
            upstream.headers.0.push((name, value.clone()));
        }
    }
    request.upstream = Some(upstream);
    with_host(input.chain, |host| {
        let exchange = host.send(request);
        if let Err(problem) = chains::check(&exchange, upstream_status) {
            panic!("{:?} chain: {problem}", input.chain);
        }
        host.advance(chains::step(input.advance_ms));
    });
});
