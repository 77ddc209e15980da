//! The `xtask` command line: `xtask oci DIST_DIR OUT_DIR`,
//! `xtask manifests OCI_DIR SRC_DIR OUT_DIR` and
//! `xtask push OCI_DIR REGISTRY [--plain-http]`.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: xtask oci DIST_DIR OUT_DIR | xtask manifests OCI_DIR SRC_DIR OUT_DIR \
                     | xtask push OCI_DIR REGISTRY [--plain-http]";

fn push(oci: &str, registry: &str, plain_http: bool) -> ExitCode {
    let target = xtask::push::Target::from_env(registry, plain_http);
    match xtask::push::push_all(&target, Path::new(oci)) {
        Ok(pushed) => {
            for image in pushed {
                println!("{} ({})", image.reference, image.digest);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask push: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    match refs.as_slice() {
        ["oci", dist, out] => match xtask::oci::write_all(Path::new(dist), Path::new(out)) {
            Ok(images) => {
                for image in images {
                    println!(
                        "{}: {} (manifest {}, compat {})",
                        image.name,
                        image.dir.display(),
                        image.manifest_digest,
                        image.compat_manifest_digest
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask oci: {e}");
                ExitCode::from(2)
            }
        },
        ["manifests", oci, src, out] => {
            match xtask::manifests::render_all(Path::new(oci), Path::new(src), Path::new(out)) {
                Ok(written) => {
                    for (file, hex) in written {
                        println!("{}: sha256 {hex}", file.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("xtask manifests: {e}");
                    ExitCode::from(2)
                }
            }
        }
        ["push", oci, registry] => push(oci, registry, false),
        ["push", oci, registry, "--plain-http"] => push(oci, registry, true),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
