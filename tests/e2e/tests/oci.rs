//! The OCI layout `xtask oci` writes is one a real registry accepts and serves
//! back in Istio's Wasm artifact format: a throwaway `docker-registry` on
//! loopback, `skopeo copy` of one filter's layout, then the manifest and the
//! module blob fetched over HTTP as Istio's fetcher would.
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
use xtask::oci;

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

#[test]
fn pushed_layout_is_served_back_in_istios_wasm_artifact_format() {
    let registry_bin = require_tool("docker-registry");
    let skopeo = require_tool("skopeo");
    let wasm_path = paths::filter_wasm(FILTER);
    let wasm = fs::read(&wasm_path).unwrap();

    let dir = scratch_dir();
    let written = oci::write_filter(&wasm_path, &dir.join("oci")).unwrap();
    let registry = Registry::start(&registry_bin, &dir);

    // Accept anything: the host's /etc/containers/policy.json may be absent
    // or strict, and the image is our own, just written.
    let policy = dir.join("policy.json");
    fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let repo = format!("mesh/{}", written.name);
    let push = Command::new(&skopeo)
        .arg("--policy")
        .arg(&policy)
        .arg("copy")
        .arg("--dest-tls-verify=false")
        .arg(format!("oci:{}:{}", written.dir.display(), oci::TAG))
        .arg(format!("docker://{}/{repo}:{}", registry.addr, oci::TAG))
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "skopeo copy failed: {}\n{}\nregistry log:\n{}",
        push.status,
        String::from_utf8_lossy(&push.stderr),
        registry.log_text()
    );

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
    assert_eq!(oci::sha256_digest(&response.body), written.manifest_digest);

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
    let module_digest = module_layers[0]["digest"].as_str().unwrap();
    assert_eq!(module_digest, written.wasm_digest);
    assert_eq!(module_digest, oci::sha256_digest(&wasm));

    // The blob Istio would load is the .wasm file itself, uncompressed.
    let blob = client::get(
        registry.addr,
        &format!("/v2/{repo}/blobs/{module_digest}"),
        &[],
    );
    assert_eq!(blob.status, 200);
    assert!(
        blob.body == wasm,
        "the module blob differs from {}",
        wasm_path.display()
    );

    drop(registry);
    fs::remove_dir_all(&dir).unwrap();
}
