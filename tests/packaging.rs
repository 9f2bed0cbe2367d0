//! Packaging: the Dockerfile, the systemd unit and sysusers entry, and the Kubernetes
//! manifests, checked with the real binary and, where installed, `systemd-analyze`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_maas-flow");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn dockerfile_has_init_volume_and_a_curl_free_health_check() {
    let d = read("Dockerfile");
    assert!(d.contains(r#"ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/maas-flow"]"#));
    assert!(d.contains("tini"), "an init reaps scripts' orphans");
    assert!(d.contains(r#"VOLUME ["/var/lib/maas-flow"]"#));
    assert!(d.contains(r#"CMD ["/usr/local/bin/maas-flow", "status", "--health"]"#));
    assert!(
        !d.lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("curl")),
        "no curl in the image"
    );
    assert!(d.contains("--stop-timeout 45"), "stop timeout documented");
    assert!(
        d.contains("uid 10001") && d.contains("USER 10001"),
        "key owner documented"
    );
    // Every COPY source of the build context exists and is not ignored.
    let ignore = read(".dockerignore");
    for line in d
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(Path::new(ROOT).join(src).exists(), "{line}: {src} missing");
            let top = src.split('/').next().unwrap();
            assert!(
                !ignore.lines().any(|l| l.trim_end_matches('/') == top),
                "{src} is in .dockerignore"
            );
        }
    }
    for ignored in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l == ignored),
            "{ignored} not sent to docker"
        );
    }
}

/// The image's health check, as the image runs it: `maas-flow status --health` finds
/// the listener from `MAAS_FLOW_HTTP__LISTEN=0.0.0.0:PORT` and the image's config file.
#[actix_rt::test]
async fn image_health_check_finds_the_listener_from_the_environment() {
    let board = Arc::new(maas_flow::status::Board::default());
    let (addr, handle) = maas_flow::http::start(
        "127.0.0.1:0",
        board,
        Arc::new(maas_flow::metrics::Metrics::new()),
        Duration::from_secs(15),
    )
    .unwrap();
    let check = move || {
        Command::new(BIN)
            .args(["status", "--health"])
            .env(
                "MAAS_FLOW_CONFIG",
                Path::new(ROOT).join("config/maas-flow.toml"),
            )
            .env("MAAS_FLOW_HTTP__LISTEN", format!("0.0.0.0:{}", addr.port()))
            .output()
            .unwrap()
    };
    let out = actix_rt::task::spawn_blocking(check).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    handle.stop(true).await;
    let out = actix_rt::task::spawn_blocking(check).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "unhealthy once the listener is gone"
    );
}

/// `systemd-analyze security` exposure of the unit, if systemd-analyze is installed.
fn exposure(unit: &Path) -> Option<f64> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    line.split(':')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let unit = read("config/maas-flow.service");
    for directive in [
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "UMask=0077",
        "CapabilityBoundingSet=\n",
        "LoadCredential=maas_api_key:",
        "StateDirectory=maas-flow",
        "Environment=MAAS_FLOW_MAAS__API_KEY_FILE=%d/maas_api_key",
    ] {
        assert!(unit.contains(directive), "missing {directive:?}");
    }
    let sysusers = read("config/maas-flow.sysusers.conf");
    assert!(
        sysusers
            .lines()
            .any(|l| l.starts_with("u ") && l.contains(" maas-flow ")),
        "{sysusers}"
    );

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("NOTE: systemd-analyze is not installed; unit not verified");
        return;
    }
    // Verify a copy whose ExecStart is this build's binary.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("maas-flow.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/maas-flow", BIN).replace(
            "LoadCredential=maas_api_key:/etc/maas-flow/maas_api_key",
            "",
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("maas-flow.service"))
        .collect();
    assert!(problems.is_empty(), "systemd-analyze verify: {err}");
    match exposure(&Path::new(ROOT).join("config/maas-flow.service")) {
        Some(x) => {
            println!("systemd-analyze security exposure: {x}");
            assert!(x <= 3.0, "exposure {x} above 3.0");
        }
        None => eprintln!("NOTE: this systemd-analyze cannot rate units offline"),
    }
}

/// The TOML inside the ConfigMap passes `maas-flow check-config`; the Deployment probes
/// /healthz and /readyz, mounts the Secret as the key file, and gives more than
/// shutdown_grace to stop; the ServiceMonitor scrapes the Service's metrics port.
#[test]
fn kubernetes_manifests_fit_together() {
    let cm = read("deploy/kubernetes/configmap.yaml");
    let toml: String = cm
        .split("maas-flow.toml: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or("")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("maas-flow.toml");
    std::fs::write(&file, &toml).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .args(["--api-key", "ck:tk:ts", "check-config"])
        .env_remove("MAAS_FLOW_CONFIG")
        .env_remove("PROVISION_URL")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "ConfigMap TOML: {}\n{toml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("listen = \"0.0.0.0:9090\""), "{shown}");
    assert!(shown.contains("api_key_file = \"/secrets/maas_api_key\""));
    let grace: u64 = shown
        .lines()
        .find_map(|l| l.strip_prefix("shutdown_grace = \""))
        .and_then(|v| v.trim_end_matches("s\"").parse().ok())
        .unwrap();

    let d = read("deploy/kubernetes/deployment.yaml");
    assert!(d.contains("replicas: 2"));
    assert!(d.contains("path: /healthz") && d.contains("path: /readyz"));
    let tgps: u64 = d
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        tgps > grace,
        "terminationGracePeriodSeconds {tgps} <= shutdown_grace {grace}"
    );
    assert!(d.contains("secretName: maas-flow-api-key") && d.contains("mountPath: /secrets"));
    assert!(d.contains("runAsUser: 10001") && d.contains("readOnlyRootFilesystem: true"));
    assert!(d.contains("MAAS_FLOW_HA__BACKEND") && d.contains("MAAS_FLOW_HA__ETCD_ENDPOINTS"));
    let secret = read("deploy/kubernetes/secret.yaml");
    assert!(secret.contains("name: maas-flow-api-key") && secret.contains("maas_api_key:"));
    let sm = read("deploy/kubernetes/servicemonitor.yaml");
    assert!(sm.contains("kind: ServiceMonitor") && sm.contains("port: metrics"));
    assert!(read("deploy/kubernetes/service.yaml").contains("name: metrics"));
}
