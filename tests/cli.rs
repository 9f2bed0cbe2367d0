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
            "misspelt log level",
            "[maas]\n",
            &["--log-level", "inf0"],
            &[],
            "log.level",
        ),
        c(
            "log level that is not one",
            "[maas]\n",
            &["--log-level", "verbose"],
            &[],
            "log.level",
        ),
        c(
            "bare word inside a filter",
            "[maas]\n",
            &["--log-level", "maas_flow=debug,verbose"],
            &[],
            "log.level",
        ),
        c(
            "log level from the environment",
            "[maas]\n",
            &[],
            &[("MAAS_FLOW_LOG__LEVEL", "warnings")],
            "log.level",
        ),
        c(
            "period of a millisecond",
            "[maas]\n",
            &["--period", "1ms"],
            &[],
            "maas.period",
        ),
        c(
            "bad JSON list from the environment",
            "[maas]\n",
            &[],
            &[("MAAS_FLOW_FILTER__HOSTS__INCLUDE", "[\"a\",")],
            "filter.hosts.include",
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
fn output_within(cmd: Command, name: &str) -> std::process::Output {
    output_within_for(cmd, name, std::time::Duration::from_secs(10))
}

/// Run `cmd` with its output read as it comes (a full pipe never blocks it), killing it
/// (and failing) if it has not exited within `limit`.
#[allow(unsafe_code)] // kill(2) on our own child: see the SAFETY comment.
fn output_within_for(
    mut cmd: Command,
    name: &str,
    limit: std::time::Duration,
) -> std::process::Output {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "{name}: still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
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

/// `maas-flow check-config` with a clean environment plus `env`; (exit code, stdout, stderr).
fn check_config(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--api-key", "ck:tk:ts"])
        .args(args)
        .arg("check-config")
        .env_remove("PROVISION_URL")
        .env_remove("PROVISION_TTL");
    for (k, _) in std::env::vars() {
        if k.starts_with("MAAS_FLOW_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output_within(cmd, "check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn log_levels_accept_names_and_directives_and_reject_bare_words() {
    // (given, what the service runs with); None = rejected with exit 2 naming log.level.
    let table: &[(&str, Option<&str>)] = &[
        ("info", Some("info")),
        ("warning", Some("warn")),
        ("WARN", Some("warn")),
        ("error", Some("error")),
        ("debug", Some("debug")),
        ("trace", Some("trace")),
        ("off", Some("off")),
        ("maas_flow=debug", Some("maas_flow=debug")),
        ("maas_flow=debug,warning", Some("maas_flow=debug,warn")),
        ("actix_server=warn,info", Some("actix_server=warn,info")),
        ("inf0", None),
        ("verbose", None),
        ("warnings", None),
        ("maas_flow", None),
        ("info,", None),
        ("maas_flow=loud", None),
    ];
    for (given, want) in table {
        let (code, stdout, stderr) = check_config(&["--log-level", given], &[]);
        match want {
            Some(level) => {
                assert_eq!(code, Some(0), "{given}: {stderr}");
                assert!(
                    stdout.contains(&format!("level = \"{level}\"")),
                    "{given} runs as {level}: {stdout}"
                );
            }
            None => {
                assert_eq!(code, Some(2), "{given} must be refused: {stdout}");
                assert!(stderr.contains("`log.level`"), "{given}: {stderr}");
                assert_eq!(stderr.trim().lines().count(), 1, "{given}: {stderr}");
            }
        }
    }
}

/// A closed loopback port: MAAS is "not answering", which the controller logs as a
/// warning every retry.
fn dead_maas_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/MAAS", l.local_addr().unwrap());
    drop(l);
    url
}

/// Start the controller against a dead MAAS and collect stderr lines until `enough`
/// says so (or 30 s pass), then kill it.
fn controller_lines(
    args: &[&str],
    env: &[(&str, &str)],
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut cmd = Command::new(BIN);
    cmd.args(["--maas", &dead_maas_url(), "--api-key", "ck:tk:ts"])
        .args(["--listen", "127.0.0.1:0", "--period", "1s"])
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("PROVISION_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut lines = Vec::new();
    while !enough(&lines) && std::time::Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            lines.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn warning_level_keeps_warnings() {
    let lines = controller_lines(&["--log-level", "warning"], &[], |l| {
        l.iter().any(|x| x.contains("WARN"))
    });
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("not answering")),
        "`warning` must log warnings, got: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(" INFO ")),
        "and nothing below: {lines:?}"
    );
}

#[test]
fn logs_through_a_pipe_carry_no_colour_codes() {
    let lines = controller_lines(&["--log-level", "debug"], &[], |l| {
        l.iter().any(|x| x.contains("not answering"))
    });
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.contains('\x1b')),
        "ESC in piped logs: {lines:?}"
    );

    // The simulator too.
    let mut sim = Command::new(env!("CARGO_BIN_EXE_maas-sim"))
        .args(["--listen", "127.0.0.1:0", "--machines", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .env_remove("NO_COLOR")
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let _ = sim.kill();
    let out = sim.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("INFO"), "the simulator logs: {err}");
    assert!(
        !err.contains('\x1b'),
        "ESC in the simulator's piped logs: {err}"
    );
}

/// On a terminal (a pseudo-terminal from util-linux `script`) colour is on, unless
/// NO_COLOR is set.
#[test]
fn colour_on_a_terminal_only_without_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("NOTE: `script` (util-linux) is missing; terminal colour not checked");
        return;
    }
    let run = |no_color: Option<&str>| {
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL", "3", "script", "-qec"])
            .arg(format!(
                "{} --listen 127.0.0.1:0 --machines 1",
                env!("CARGO_BIN_EXE_maas-sim")
            ))
            .arg("/dev/null")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = output_within(cmd, "script");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tty = run(None);
    assert!(tty.contains("INFO"), "{tty}");
    assert!(tty.contains('\x1b'), "colour on a terminal: {tty}");
    let plain = run(Some("1"));
    assert!(plain.contains("INFO"), "{plain}");
    assert!(!plain.contains('\x1b'), "NO_COLOR honoured: {plain}");
}

#[test]
fn json_start_up_line_has_each_key_once() {
    let lines = controller_lines(&["--log-format", "json"], &[], |l| {
        l.iter().any(|x| x.contains("maas-flow starting"))
    });
    let line = lines
        .iter()
        .find(|l| l.contains("maas-flow starting"))
        .unwrap_or_else(|| panic!("no start-up line: {lines:?}"));
    // serde_json keeps the last of duplicate keys silently, so count them in the text.
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
    for key in v.keys() {
        assert_eq!(
            line.matches(&format!("\"{key}\":")).count(),
            1,
            "key {key} repeated: {line}"
        );
    }
    assert_eq!(v["lifecycle_target"], "Deployed", "{line}");
}

#[test]
fn errors_name_the_environment_variable_or_flag_that_set_the_value() {
    let (code, _, err) = check_config(&[], &[("MAAS_FLOW_MAAS__PERIOD", "later")]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("`maas.period`") && err.contains("MAAS_FLOW_MAAS__PERIOD"),
        "{err}"
    );
    let (code, _, err) = check_config(&[], &[("MAAS_FLOW_LIMITS__MAX_OPS_IN_FLIGHT", "0")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("MAAS_FLOW_LIMITS__MAX_OPS_IN_FLIGHT"), "{err}");
    // A flag wins over the environment, and is what the message names.
    let (code, _, err) = check_config(&["--period", "1ms"], &[("MAAS_FLOW_MAAS__PERIOD", "10s")]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("flag") && !err.contains("MAAS_FLOW_MAAS__PERIOD"),
        "{err}"
    );
    // From the file, neither is named.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[maas]\nperiod = \"1ms\"\n").unwrap();
    let (code, _, err) = check_config(&["--config", f.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("at least 100ms") && !err.contains("set by"),
        "{err}"
    );
}

#[test]
fn list_keys_can_be_set_from_the_environment() {
    let (code, out, err) = check_config(
        &[],
        &[
            ("MAAS_FLOW_FILTER__HOSTS__INCLUDE", "rack1-.*, rack2-.*"),
            (
                "MAAS_FLOW_FILTER__ZONES__INCLUDE",
                r#"["row-a","node{1,3}"]"#,
            ),
            ("MAAS_FLOW_FILTER__ZONES__EXCLUDE", ""),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let t: toml::Table = out.parse().unwrap();
    let f = &t["filter"];
    assert_eq!(
        f["hosts"]["include"],
        toml::Value::Array(vec!["rack1-.*".into(), "rack2-.*".into()])
    );
    assert_eq!(
        f["zones"]["include"],
        toml::Value::Array(vec!["row-a".into(), "node{1,3}".into()])
    );
    assert_eq!(f["zones"]["exclude"], toml::Value::Array(vec![]));
}

#[test]
fn check_config_shows_the_filter_that_filter_json_defines() {
    let (code, out, err) = check_config(
        &[
            "--filter",
            r#"{"hosts":{"include":["rack1-.*"]},"zones":{"include":["z1"]}}"#,
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    let t: toml::Table = out.parse().unwrap();
    assert_eq!(
        t["filter"]["hosts"]["include"],
        toml::Value::Array(vec!["rack1-.*".into()]),
        "{out}"
    );
    assert_eq!(
        t["filter"]["zones"]["include"],
        toml::Value::Array(vec!["z1".into()]),
        "{out}"
    );
}

#[test]
fn demo_refuses_controller_flags() {
    for args in [
        &["--maas", "http://elsewhere:5240/MAAS"][..],
        &["--api-key", "a:b:c"],
        &["--period", "5s"],
        &["--preview"],
        &["-maas", "http://elsewhere:5240/MAAS"],
    ] {
        let mut cmd = Command::new(BIN);
        cmd.arg("demo").args(args);
        let out = output_within(cmd, "demo");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("controller flag"), "{args:?}: {err}");
    }
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--log-level", "verbose"]);
    let out = output_within(cmd, "demo");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`log.level`"));
}

#[test]
fn demo_honours_its_timeout() {
    let started = std::time::Instant::now();
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--machines", "200", "--timeout", "1s"]);
    let out = output_within_for(cmd, "demo", std::time::Duration::from_secs(60));
    println!("demo --timeout 1s exited after {:?}", started.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("within 1s"), "{err}");
}

/// The README's dry run must never point at port 5240, where a real MAAS region listens:
/// a copy-pasted command would drive real machines.
#[test]
fn readme_dry_run_stays_off_the_real_maas_port() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Dry runs with `maas-sim`")
        .nth(1)
        .expect("the README has a dry-run section");
    let block = section.split("```").nth(1).expect("with a command block");
    assert!(block.contains("maas-sim"), "{block}");
    assert!(
        !block.contains(":5240"),
        "dry run uses MAAS's port: {block}"
    );
    let sim = Command::new(env!("CARGO_BIN_EXE_maas-sim"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&sim.stdout);
    assert!(!help.contains(":5240"), "maas-sim's default port: {help}");
}

#[test]
fn completions_and_man_page_come_from_the_flags() {
    for (shell, marker) in [
        ("bash", "_maas__flow()"),
        ("zsh", "#compdef maas-flow"),
        ("fish", "complete -c maas-flow"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: {text}");
        for word in ["check-config", "status", "log-level", "provision-url"] {
            assert!(text.contains(word), "{shell} completes {word}");
        }
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "unknown shell refused");

    let out = Command::new(BIN).arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let roff = String::from_utf8_lossy(&out.stdout);
    assert!(
        roff.starts_with(".ie") || roff.contains(".TH maas-flow"),
        "{roff}"
    );
    assert!(roff.contains(".TH maas-flow"), "{roff}");
    assert!(roff.contains("log\\-level"), "flags documented: {roff}");
    assert!(
        roff.contains("check\\-config"),
        "subcommands listed: {roff}"
    );
}

#[test]
fn status_without_a_listener_says_so() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    for args in [vec![], vec!["--health"], vec!["node-1"]] {
        let mut cmd = Command::new(BIN);
        cmd.args(["status", "--url", &format!("http://{addr}")])
            .args(&args);
        let out = output_within(cmd, "status");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("cannot reach the maas-flow status listener"),
            "{err}"
        );
    }
}
