//! The OCI layout `xtask oci` writes is one a real registry accepts and serves
//! back in both of Istio's Wasm image formats: skopeo reads the layout, a
//! throwaway `docker-registry` on loopback receives it from `xtask push`
//! (oci-client), and each tag pulled back yields the module under Istio's
//! fetcher rules (`xtask::fetch`).
//!
//! Needs `docker-registry` and `skopeo` on PATH (`make oci-tools`); without
//! them the test fails and says so, it never skips.
// Test helpers: a failed unwrap here is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{client, paths};
use xtask::{compat, fetch, oci, push};

/// The filter this test pushes; any one exercises the same layout code.
const FILTER: &str = "security_headers";

fn require_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH — run `make oci-tools` \
                 (apt-get install -y docker-registry skopeo)"
            )
        })
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("e2e-oci-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_loopback_port() -> u16 {
    // Bind port 0, read the port, release it for the registry. Another process
    // could grab it in between; on a test machine that is rare enough.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry serve` on loopback, killed on drop so a failing
/// assertion does not leave it running.
struct Registry {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Registry {
    fn start(bin: &Path, dir: &Path) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_loopback_port()).into();
        let config = dir.join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("registry.out")).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut registry = Registry { child, addr, log };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}:\n{}", self.log_text());
            }
            let up = client::Connection::open(self.addr)
                .and_then(|mut c| c.request("GET", "/v2/", &[]))
                .is_ok_and(|r| r.status == 200);
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "docker-registry not ready on {} after 15s:\n{}",
            self.addr,
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo inspect --raw` of one tag of the on-disk layout: an independent
/// OCI implementation reading what `xtask oci` wrote.
fn skopeo_manifest(skopeo: &Path, layout: &Path, tag: &str) -> Vec<u8> {
    let out = Command::new(skopeo)
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci:{}:{tag}", layout.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect oci:{}:{tag} failed: {}",
        layout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn both_variants_round_trip_through_a_registry_and_yield_the_module_as_istio_reads_it() {
    let registry_bin = require_tool("docker-registry");
    let skopeo = require_tool("skopeo");
    let wasm_path = paths::filter_wasm(FILTER);
    let wasm = fs::read(&wasm_path).unwrap();

    let dir = scratch_dir();
    let written = oci::write_filter(&wasm_path, &dir.join("oci")).unwrap();
    let compat_tag = compat::compat_tag(oci::TAG);

    // skopeo reads the layout and finds both tags, byte for byte.
    let artifact_manifest = skopeo_manifest(&skopeo, &written.dir, oci::TAG);
    assert_eq!(
        oci::sha256_digest(&artifact_manifest),
        written.manifest_digest
    );
    let compat_manifest = skopeo_manifest(&skopeo, &written.dir, &compat_tag);
    assert_eq!(
        oci::sha256_digest(&compat_manifest),
        written.compat_manifest_digest
    );

    let registry = Registry::start(&registry_bin, &dir);
    let target = push::Target::from_env(&registry.addr.to_string(), false);
    assert!(
        target.plain_http,
        "a loopback registry is spoken to in HTTP"
    );
    let pushed = push::push_layout(&target, &written.dir, &written.name)
        .unwrap_or_else(|e| panic!("push failed: {e}\nregistry log:\n{}", registry.log_text()));
    let pushed: Vec<(String, String)> = pushed
        .into_iter()
        .map(|p| (p.reference, p.digest))
        .collect();
    let repo = format!("{}/{}", push::NAMESPACE, written.name);
    assert_eq!(
        pushed,
        [
            (
                format!("{}/{repo}:{}", registry.addr, oci::TAG),
                written.manifest_digest.clone()
            ),
            (
                format!("{}/{repo}:{compat_tag}", registry.addr),
                written.compat_manifest_digest.clone()
            ),
        ]
    );
    // A second push is a no-op for blobs and keeps the digests.
    push::push_layout(&target, &written.dir, &written.name).unwrap();

    // Read back by the registry's own HTTP API, without oci-client: the
    // manifest is stored byte for byte, so its digest is the pinned one.
    let response = client::get(
        registry.addr,
        &format!("/v2/{repo}/manifests/{}", oci::TAG),
        &[("accept", oci::MANIFEST_MEDIA_TYPE)],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some(oci::MANIFEST_MEDIA_TYPE)
    );
    assert_eq!(
        response.header("docker-content-digest"),
        Some(written.manifest_digest.as_str()),
        "the registry must store the manifest byte for byte"
    );
    assert_eq!(response.body, artifact_manifest);
    let manifest = response.json();
    assert_eq!(manifest["config"]["mediaType"], oci::WASM_CONFIG_MEDIA_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        2,
        "Istio's oci variant needs exactly two layers"
    );
    let module_layers: Vec<_> = layers
        .iter()
        .filter(|l| l["mediaType"] == oci::WASM_LAYER_MEDIA_TYPE)
        .collect();
    assert_eq!(module_layers.len(), 1, "{manifest}");
    assert_eq!(module_layers[0]["digest"], oci::sha256_digest(&wasm));

    // Pulled back with oci-client, each tag yields the module under Istio's
    // fetcher rules: the artifact as the raw layer, the compat image from
    // plugin.wasm in its tar.gz.
    for (tag, digest, expected_manifest) in [
        (
            oci::TAG.to_owned(),
            &written.manifest_digest,
            &artifact_manifest,
        ),
        (
            compat_tag.clone(),
            &written.compat_manifest_digest,
            &compat_manifest,
        ),
    ] {
        let remote = push::Remote::new(&target, &written.name, &tag).unwrap();
        let pulled = remote.manifest().unwrap();
        assert_eq!(&pulled.digest, digest, "{tag}");
        assert_eq!(&pulled.manifest, expected_manifest, "{tag}");
        let module = fetch::extract_wasm(&pulled.manifest, |d| remote.blob(d))
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert!(
            module == wasm,
            "{tag}: the module Istio would load differs from {}",
            wasm_path.display()
        );
    }

    drop(registry);
    fs::remove_dir_all(&dir).unwrap();
}
