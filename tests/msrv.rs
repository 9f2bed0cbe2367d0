//! The declared `rust-version` is honest: no dependency in the lock file declares a
//! newer one. (Clippy's `incompatible_msrv` lint checks our own code against it; only
//! one toolchain exists where CI runs, so an older compiler cannot be tried.)

use std::process::Command;

/// `1.89`, `1.89.0` -> (1, 89, 0).
fn version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[test]
fn rust_version_is_at_least_every_dependencys() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == "maas-flow")
        .and_then(|p| p["rust_version"].as_str())
        .expect("maas-flow declares rust-version");
    let newer: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let rv = p["rust_version"].as_str()?;
            (version(rv) > version(ours))
                .then(|| format!("{} {} needs {rv}", p["name"], p["version"]))
        })
        .collect();
    assert!(
        newer.is_empty(),
        "rust-version {ours} is older than dependencies need: {newer:?}"
    );
}
