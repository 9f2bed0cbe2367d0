//! The real binary with bad configurations and flags: each exits 2 with one message
//! naming the key, and makes no request to MAAS.

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_maas-flow");

struct Case {
    name: &'static str,
    toml: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    key: &'static str,
}

const GOOD_KEY: &str = "api_key = \"ck:tk:s3cr3tz\"\n";

fn cases() -> Vec<Case> {
    let c = |name, toml, args, env, key| Case {
        name,
        toml,
        args,
        env,
        key,
    };
    vec![
        c("unparsable TOML", "[maas\nurl=", &[], &[], "--config"),
        c(
            "unknown top-level key",
            "bogus = 1\n[maas]\n",
            &[],
            &[],
            "bogus",
        ),
        c(
            "unknown key in a section",
            "[maas]\nperiodd = \"15s\"\n",
            &[],
            &[],
            "maas.periodd",
        ),
        c("unknown section", "[mass]\nurl = \"x\"\n", &[], &[], "mass"),
        c(
            "wrong type for a duration",
            "[maas]\nperiod = 15\n",
            &[],
            &[],
            "maas.period",
        ),
        c(
            "bad duration",
            "[maas]\nperiod = \"soon\"\n",
            &[],
            &[],
            "maas.period",
        ),
        c(
            "zero period",
            "[maas]\nperiod = \"0s\"\n",
            &[],
            &[],
            "maas.period",
        ),
        c(
            "wrong type for a bool",
            "preview = \"maybe\"\n[maas]\n",
            &[],
            &[],
            "preview",
        ),
        c(
            "bad host regex",
            "[filter.hosts]\ninclude = [\"(\"]\n[maas]\n",
            &[],
            &[],
            "filter.hosts.include",
        ),
        c(
            "bad zone exclude regex",
            "[filter.zones]\nexclude = [\"[z\"]\n[maas]\n",
            &[],
            &[],
            "filter.zones.exclude",
        ),
        c(
            "filter flag not JSON",
            "[maas]\n",
            &["--filter", "{hosts"],
            &[],
            "filter.json",
        ),
        c(
            "filter file missing",
            "[maas]\n",
            &["--filter", "@/nonexistent/filter.json"],
            &[],
            "filter.json",
        ),
        c(
            "filter with unknown field",
            "[maas]\n",
            &["-filter", "{\"host\":{}}"],
            &[],
            "filter.json",
        ),
        c(
            "URL not a URL",
            "[maas]\nurl = \"not a url\"\n",
            &[],
            &[],
            "maas.url",
        ),
        c(
            "URL with a bad scheme",
            "[maas]\nurl = \"ftp://maas/MAAS\"\n",
            &[],
            &[],
            "maas.url",
        ),
        c(
            "URL of the API path",
            "[maas]\nurl = \"http://maas/MAAS/api/2.0\"\n",
            &[],
            &[],
            "maas.url",
        ),
        c(
            "malformed key",
            "[maas]\napi_key = \"a:b\"\n",
            &[],
            &[],
            "maas.api_key",
        ),
        c(
            "malformed key flag",
            "[maas]\n",
            &["-apiKey", "a:b:c:d"],
            &[],
            "maas.api_key",
        ),
        c(
            "key file missing",
            "[maas]\napi_key_file = \"/nonexistent/key\"\n",
            &[],
            &[],
            "maas.api_key_file",
        ),
        c(
            "unsupported api_version",
            "[maas]\napi_version = \"3.0\"\n",
            &[],
            &[],
            "maas.api_version",
        ),
        c(
            "unsupported api_version flag",
            "[maas]\n",
            &["-apiVersion", "9"],
            &[],
            "maas.api_version",
        ),
        c(
            "zero ops in flight",
            "[limits]\nmax_ops_in_flight = 0\n[maas]\n",
            &[],
            &[],
            "limits.max_ops_in_flight",
        ),
        c(
            "negative ops in flight",
            "[limits]\nmax_ops_in_flight = -1\n[maas]\n",
            &[],
            &[],
            "limits.max_ops_in_flight",
        ),
        c(
            "zero concurrent provisioning",
            "[provision]\nmax_concurrent = 0\n[maas]\n",
            &[],
            &[],
            "provision.max_concurrent",
        ),
        c(
            "zero attempts",
            "[provision]\nmax_attempts = 0\n[maas]\n",
            &[],
            &[],
            "provision.max_attempts",
        ),
        c(
            "retry cap below base",
            "[provision]\nretry_base = \"1m\"\nretry_cap = \"1s\"\n[maas]\n",
            &[],
            &[],
            "provision.retry_cap",
        ),
        c(
            "both script and URL",
            "[provision]\nscript = \"/bin/true\"\nurl = \"http://p/x\"\n[maas]\n",
            &[],
            &[],
            "provision",
        ),
        c(
            "provision URL bad",
            "[provision]\nurl = \"nope\"\n[maas]\n",
            &[],
            &[],
            "provision.url",
        ),
        c(
            "provision script missing",
            "[provision]\nscript = \"/nonexistent/p.sh\"\n[maas]\n",
            &[],
            &[],
            "provision.script",
        ),
        c(
            "legacy PROVISION_URL to a missing file",
            "[maas]\n",
            &[],
            &[("PROVISION_URL", "file:///nonexistent/p.sh")],
            "provision.script",
        ),
        c(
            "bad target",
            "[lifecycle]\ntarget = \"rescued\"\n[maas]\n",
            &[],
            &[],
            "lifecycle.target",
        ),
        c(
            "empty distro series",
            "[lifecycle]\ndistro_series = \"\"\n[maas]\n",
            &[],
            &[],
            "lifecycle.distro_series",
        ),
        c(
            "mappings not JSON",
            "[lifecycle]\nmappings = \"{oops\"\n[maas]\n",
            &[],
            &[],
            "lifecycle.mappings",
        ),
        c(
            "bad log format",
            "[log]\nformat = \"xml\"\n[maas]\n",
            &[],
            &[],
            "log.format",
        ),
        c(
            "bad listen address",
            "[http]\nlisten = \"nowhere\"\n[maas]\n",
            &[],
            &[],
            "http.listen",
        ),
        c(
            "bad env override",
            "[maas]\n",
            &[],
            &[("MAAS_FLOW_MAAS__PERIOD", "later")],
            "maas.period",
        ),
        c(
            "bad flag override",
            "[maas]\n",
            &["--period=-5s"],
            &[],
            "maas.period",
        ),
        c(
            "zero body limit",
            "[maas]\nmax_body_mib = 0\n",
            &[],
            &[],
            "maas.max_body_mib",
        ),
    ]
}

/// Run `cmd`, killing it (and failing) if it has not exited within 10 s.
fn output_within(mut cmd: Command, name: &str) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{name}: still running after 10 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Write `toml` with the given MAAS URL and a valid key (unless the case sets its own).
fn write_config(dir: &std::path::Path, toml: &str, url: &str) -> std::path::PathBuf {
    let mut text = toml.to_string();
    if let Some(pos) = text.find("[maas]\n") {
        let mut extra = format!("url = \"{url}\"\n");
        if !toml.contains("api_key") {
            extra.push_str(GOOD_KEY);
        }
        if toml.contains("url =")
            && toml
                .find("[maas]")
                .is_some_and(|p| toml[p..].contains("url ="))
        {
            extra = if toml.contains("api_key") {
                String::new()
            } else {
                GOOD_KEY.to_string()
            };
        }
        text.insert_str(pos + 7, &extra);
    }
    let p = dir.join("maas-flow.toml");
    std::fs::File::create(&p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    p
}

#[test]
fn bad_configurations_exit_2_naming_the_key_and_touch_nothing() {
    let maas = TcpListener::bind("127.0.0.1:0").unwrap();
    maas.set_nonblocking(true).unwrap();
    let url = format!("http://{}/MAAS", maas.local_addr().unwrap());
    let cases = cases();
    assert!(cases.len() >= 25);
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), case.toml, &url);
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&cfg)
            .args(case.args)
            .env_remove("PROVISION_URL");
        for (k, _) in std::env::vars() {
            if k.starts_with("MAAS_FLOW_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in case.env {
            cmd.env(k, v);
        }
        let out = output_within(cmd, case.name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: exit {:?}, stderr: {stderr}",
            case.name,
            out.status
        );
        assert!(
            stderr.contains(&format!("`{}`", case.key)),
            "{}: stderr does not name `{}`: {stderr}",
            case.name,
            case.key
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{}: one clear message: {stderr}",
            case.name
        );
        assert!(!stderr.contains("s3cr3tz"), "{}: key leaked", case.name);
    }
    assert!(maas.accept().is_err(), "no request reached MAAS");
}

#[test]
fn missing_config_file_is_named() {
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/maas-flow.toml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`--config`"));
}

#[test]
fn check_config_prints_the_effective_config_with_the_key_masked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[maas]\napi_key = \"ck:tk:sup3rsecret\"\nperiod = \"20s\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["-period", "25s", "check-config"])
        .env("MAAS_FLOW_LIMITS__MAX_OPS_IN_FLIGHT", "7")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("period = \"25s\""), "flag wins: {stdout}");
    assert!(
        stdout.contains("max_ops_in_flight = 7"),
        "env applies: {stdout}"
    );
    assert!(stdout.contains("api_key = \"***:***:***\""));
    assert!(
        !stdout.contains("sup3rsecret")
            && !String::from_utf8_lossy(&out.stderr).contains("sup3rsecret")
    );
}

#[test]
fn world_readable_key_file_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "ck:tk:ts\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(BIN)
        .args(["--api-key-file", key.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("world-readable"));
}
