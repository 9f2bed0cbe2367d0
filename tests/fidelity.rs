//! Behaving like the original Go tool (opencord/maas `automation/`): its filter
//! semantics, its command line, API 1.0 against a MAAS without whoami, and its
//! environment variables, each driven through the real binary or the real controller
//! against the simulator over HTTP, and checked on the simulator's operation log.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use maas_flow::maas::NodeStatus;
use maas_flow::sim::{scenario, Faults, ProvisionerConfig, Sim, SimConfig, SimMachine};

const BIN: &str = env!("CARGO_BIN_EXE_maas-flow");

/// The filter both convergence tests run with: searched-for host patterns, an exclude
/// that must protect `skip-` hosts, one that matches nothing, and the original's
/// default zone include `default` (a search, so `default-2` is in too).
const FILTER: &str = r#"{"hosts":{"include":["cord","^node-0[1-4]$","-me-"],"exclude":["^skip-","^retired-"]},"zones":{"include":["default"]}}"#;

/// A rack with selected machines, `skip-` hosts, other zones, other users' machines
/// and odd statuses. `me` owns `node-02`.
fn rack(me: &str) -> Vec<SimMachine> {
    let rows: &[(&str, &str, NodeStatus, Option<&str>)] = &[
        ("cord-01", "default", NodeStatus::New, None),
        ("cord-02", "default-2", NodeStatus::Ready, None),
        ("node-01", "default", NodeStatus::New, None),
        ("node-02", "default", NodeStatus::Allocated, Some(me)),
        ("node-05", "default", NodeStatus::New, None),
        ("skip-cord-03", "default", NodeStatus::New, None),
        ("skip-me-01", "default", NodeStatus::Ready, None),
        ("cord-lab-01", "lab", NodeStatus::New, None),
        (
            "cord-alice-01",
            "default",
            NodeStatus::Allocated,
            Some("alice"),
        ),
        (
            "cord-alice-02",
            "default",
            NodeStatus::Deployed,
            Some("alice"),
        ),
        ("cord-broken-01", "default", NodeStatus::Broken, None),
        (
            "cord-rescue-01",
            "default",
            NodeStatus::RescueMode,
            Some(me),
        ),
        ("node-03", "default", NodeStatus::FailedCommissioning, None),
    ];
    rows.iter()
        .enumerate()
        .map(|(i, (host, zone, status, owner))| {
            let mut m = SimMachine::new(&scenario::system_id(i), host, i);
            m.zone = zone.to_string();
            m.status = *status;
            m.commissioned = *status != NodeStatus::New;
            m.owner = owner.map(str::to_string);
            m
        })
        .collect()
}

/// The machines the filter selects and can move, and the operations each must get.
fn wanted(api1: bool) -> Vec<(&'static str, Vec<&'static str>)> {
    let (allocate, deploy) = if api1 {
        ("acquire", "start")
    } else {
        ("allocate", "deploy")
    };
    vec![
        ("cord-01", vec!["commission", allocate, deploy]),
        ("cord-02", vec![allocate, deploy]),
        ("node-01", vec!["commission", allocate, deploy]),
        ("node-02", vec![deploy]),
    ]
}

fn start_sim_with(cfg: SimConfig, machines: Vec<SimMachine>) -> Sim {
    Sim::start(
        SimConfig { workers: 1, ..cfg },
        machines,
        fast_timings(),
        ProvisionerConfig::default(),
    )
    .expect("simulator starts")
}

/// The real binary with the original's single-dash flags; only the variables given
/// reach it, and its log goes to `dir/stderr`.
fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(dir.join("stderr")).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--log-format", "text"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("maas-flow starts")
}

/// SIGTERM, then wait (bounded) for the exit; returns the log.
#[allow(unsafe_code)] // kill(2) on our own child: see the SAFETY comment.
fn stop_child(mut child: Child, dir: &Path) -> String {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
}

/// Wait until every wanted machine is Deployed, then two more periods, and check that
/// exactly the wanted operations reached exactly the wanted machines, once each.
async fn converge_and_check(sim: &Sim, child: &mut Child, dir: &Path, api1: bool) {
    let wanted = wanted(api1);
    let by_host = |h: &str| {
        sim.machines()
            .into_iter()
            .find(|m| m.hostname == h)
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if wanted
            .iter()
            .all(|(h, _)| by_host(h).status == NodeStatus::Deployed)
        {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "maas-flow exited ({status}): {}",
                std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "not converged in 60 s: {:?}\nops: {:?}\nlog: {}",
            sim.machines()
                .iter()
                .map(|m| (m.hostname.clone(), m.status))
                .collect::<Vec<_>>(),
            accepted_ops(sim),
            std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Two more 1 s periods: a duplicate or a late touch would show now.
    actix_rt::time::sleep(Duration::from_millis(2500)).await;
    assert!(child.try_wait().unwrap().is_none(), "maas-flow stays up");
    for m in sim.machines() {
        let ops = ops_for(sim, &m.system_id);
        match wanted.iter().find(|(h, _)| *h == m.hostname) {
            Some((_, want)) => assert_eq!(&ops, want, "{}", m.hostname),
            None => assert!(
                ops.is_empty(),
                "{} must not be touched: {ops:?}",
                m.hostname
            ),
        }
    }
    assert!(sim.duplicate_ops().is_empty(), "{:?}", sim.duplicate_ops());
}

/// opencord/maas `automation/state.go`, `buildFilter` (`regexp.Compile`) and
/// `matchedFilter` (`MatchString`, an unanchored search), applied in `ProcessAll`;
/// flags as `automation/README.md` documents them (`-maas -apiKey -apiVersion -period
/// -filter`). `cord` selects `cord-01`, `^node-0[1-4]$` is a whole name, `^skip-`
/// protects `skip-` hosts (exclude wins here; the original ignored exclude), the zone
/// include `default` is also found in `default-2`, and other zones, other users'
/// machines and odd statuses are never touched. The start-up log counts each pattern.
#[actix_rt::test]
async fn original_flags_and_filter_converge_touching_exactly_the_selected_machines() {
    let sim = start_sim_with(SimConfig::default(), rack("maas-flow"));
    let dir = tempfile::tempdir().unwrap();
    let key = sim.api_key();
    let mut child = spawn(
        dir.path(),
        &[
            "-maas",
            &sim.base_url,
            "-apiKey",
            &key,
            "-apiVersion",
            "2.0",
            "-period",
            "1s",
            "-filter",
            FILTER,
        ],
        &[],
    );
    converge_and_check(&sim, &mut child, dir.path(), false).await;
    let log = stop_child(child, dir.path());
    let secret = key.rsplit(':').next().unwrap();
    assert!(!log.contains(secret), "the key stays secret");
    assert!(
        log.contains(r#"hosts.include "cord"=8"#)
            && log.contains(r#"hosts.exclude "^skip-"=2"#)
            && log.contains(r#"zones.include "default"=12"#),
        "start-up line counts each pattern: {log}"
    );
    assert!(
        log.contains("WARN")
            && log.contains(r#"filter pattern "^retired-" in hosts.exclude matches none"#),
        "a pattern matching nothing is warned about: {log}"
    );
    sim.stop().await;
}

/// The same rack with `-apiVersion 1.0` against a MAAS 1.9 without `users/?op=whoami`
/// (canonical/maas tag 1.9.5 `src/maasserver/api/users.py`; gomaasapi's 1.0 TestServer
/// has none either). The original never asked who it was; maas-flow learns its
/// machines from `nodes/?op=list_allocated` (1.9.5 `api/nodes.py`) and does not exit.
/// `node-02` is ours (allocated to this key) and is deployed; `cord-noowner-01`, an
/// Allocated node that names no owner and is not in `list_allocated`, is left alone.
#[actix_rt::test]
async fn api_1_0_without_whoami_converges_with_ownership_from_list_allocated() {
    let mut machines = rack("maas-flow");
    let mut orphan = SimMachine::new("orphan", "cord-noowner-01", 40);
    orphan.status = NodeStatus::Allocated;
    orphan.commissioned = true;
    machines.push(orphan);
    let sim = start_sim_with(
        SimConfig {
            api1_whoami: false,
            ..SimConfig::default()
        },
        machines,
    );
    let dir = tempfile::tempdir().unwrap();
    let key = sim.api_key();
    let mut child = spawn(
        dir.path(),
        &[
            "-maas",
            &sim.base_url,
            "-apiKey",
            &key,
            "-apiVersion",
            "1.0",
            "-period",
            "1s",
            "-filter",
            FILTER,
        ],
        &[],
    );
    converge_and_check(&sim, &mut child, dir.path(), true).await;
    let log = stop_child(child, dir.path());
    assert!(
        !log.contains("cannot learn our MAAS username"),
        "no start-up failure: {log}"
    );
    assert!(log.contains("list_allocated"), "{log}");
    sim.stop().await;
}

/// Fail closed: while `nodes/?op=list_allocated` fails, no machine that needs an owner
/// is acted on (ours included), New and Ready machines still move; once the read works
/// again, our machines are deployed.
#[actix_rt::test]
async fn a_failing_list_allocated_leaves_owned_machines_alone_until_it_answers() {
    let mut machines = scenario::rack(2);
    machines[1].status = NodeStatus::Allocated;
    machines[1].commissioned = true;
    machines[1].owner = Some("maas-flow".into());
    let sim = start_sim_with(
        SimConfig {
            api1_whoami: false,
            ..SimConfig::default()
        },
        machines,
    );
    sim.set_faults(Faults {
        error_rate: 1.0,
        scope: Some("list_allocated".into()),
        ..Faults::default()
    });
    let ctrl = start(&sim, &[("maas.api_version", "1.0")]).await;
    let ids: Vec<String> = sim.machines().iter().map(|m| m.system_id.clone()).collect();
    wait_for("node-00001 acquired", Duration::from_secs(30), || {
        sim.status_of(&ids[0]) == Some(NodeStatus::Allocated)
    })
    .await;
    let polls = ctrl.board.global().polls_ok;
    wait_for("four more lists", Duration::from_secs(30), || {
        ctrl.board.global().polls_ok >= polls + 4
    })
    .await;
    assert_eq!(ops_for(&sim, &ids[0]), ["commission", "acquire"]);
    assert!(
        ops_for(&sim, &ids[1]).is_empty(),
        "{:?}",
        ops_for(&sim, &ids[1])
    );
    let step = ctrl
        .board
        .get(&ids[1])
        .map(|v| v.step.clone())
        .unwrap_or_default();
    assert!(step.contains("owner unknown"), "{step}");

    sim.set_faults(Faults::default());
    wait_for("both deployed", Duration::from_secs(30), || {
        ids.iter()
            .all(|id| sim.status_of(id) == Some(NodeStatus::Deployed))
    })
    .await;
    assert_eq!(ops_for(&sim, &ids[0]), ["commission", "acquire", "start"]);
    assert_eq!(ops_for(&sim, &ids[1]), ["start"]);
    stop(ctrl).await;
    sim.stop().await;
}

/// `maas.username` stays an override on API 1.0: no `list_allocated` is read.
#[actix_rt::test]
async fn maas_username_overrides_list_allocated() {
    let mut machines = scenario::rack(1);
    machines[0].status = NodeStatus::Allocated;
    machines[0].commissioned = true;
    machines[0].owner = Some("maas-flow".into());
    let sim = start_sim_with(
        SimConfig {
            api1_whoami: false,
            ..SimConfig::default()
        },
        machines,
    );
    let ctrl = start(
        &sim,
        &[("maas.api_version", "1.0"), ("maas.username", "maas-flow")],
    )
    .await;
    let id = sim.machines()[0].system_id.clone();
    wait_for("deployed", Duration::from_secs(30), || {
        sim.status_of(&id) == Some(NodeStatus::Deployed)
    })
    .await;
    let reads = ctrl
        .metrics
        .render("")
        .lines()
        .filter(|l| l.contains("op=\"list_allocated\""))
        .count();
    assert_eq!(reads, 0, "no list_allocated with maas.username");
    stop(ctrl).await;
    sim.stop().await;
}

/// Run the real binary's `check-config` with only `env` (and a key file), returning
/// (exit code, stdout, stderr).
fn check_config(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "ck:tk:filesecret\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("MAAS_FLOW_MAAS__API_KEY_FILE", &key)
        .env("STATE_DIRECTORY", dir.path())
        .arg("check-config")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// opencord/maas `automation/maas-flow.go`, `Config` and `main`: each of the original's
/// variables, in its own value format (envconfig; Go `strconv.ParseBool`,
/// `time.ParseDuration`, logrus `ParseLevel`, JSON or `@file`), lands on the maas-flow
/// setting with the same meaning; `AUTOMATION_<NAME>` wins over `<NAME>` as in
/// envconfig.
#[test]
fn the_originals_environment_variables_configure_maas_flow() {
    let dir = tempfile::tempdir().unwrap();
    let filter = dir.path().join("filter.json");
    std::fs::write(
        &filter,
        r#"{"hosts":{"include":["cord"]},"zones":{"include":["x"]}}"#,
    )
    .unwrap();
    let script = dir.path().join("prov.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let at_filter = format!("@{}", filter.display());
    let at_filter_toml = format!("json = \"{at_filter}\"");
    let script_url = format!("file://{}", script.display());
    let script_path = format!("script = \"{}\"", script.display());
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "MAAS_URL",
            "http://region:5240/MAAS",
            r#"url = "http://region:5240/MAAS""#,
        ),
        (
            "MAAS_API_KEY",
            "ck:tk:envsecret",
            r#"api_key = "***:***:***""#,
        ),
        ("MAAS_API_VERSION", "1.0", r#"api_version = "1.0""#),
        ("MAAS_QUERY_INTERVAL", "1m30s", r#"period = "1m 30s""#),
        ("MAAS_QUERY_INTERVAL", "1.5h", r#"period = "1h 30m""#),
        (
            "HOST_FILTER_SPEC",
            r#"{"hosts":{"include":["cord"]}}"#,
            r#"json = '{"hosts":{"include":["cord"]}}'"#,
        ),
        ("HOST_FILTER_SPEC", &at_filter, &at_filter_toml),
        (
            "PROVISION_URL",
            "http://prov:4243/provision/",
            r#"url = "http://prov:4243/provision/""#,
        ),
        ("PROVISION_URL", &script_url, &script_path),
        ("PROVISION_TTL", "90m", r#"ttl = "1h 30m""#),
        (
            "MAC_TO_NAME_MAPPINGS",
            r#"{"aa:bb:cc:dd:ee:01":"cord-01"}"#,
            r#"mappings = '{"aa:bb:cc:dd:ee:01":"cord-01"}'"#,
        ),
        ("PREVIEW_ONLY", "T", "preview = true"),
        ("PREVIEW_ONLY", "0", "preview = false"),
        ("LOG_LEVEL", "Warning", r#"level = "warn""#),
        ("LOG_LEVEL", "debug", r#"level = "debug""#),
        (
            "AUTOMATION_MAAS_URL",
            "http://prefixed/MAAS",
            r#"url = "http://prefixed/MAAS""#,
        ),
    ];
    for (var, value, want) in &cases {
        let (code, out, err) = check_config(&[(var, value)], &[]);
        assert_eq!(code, Some(0), "{var}={value}: {err}");
        assert!(out.contains(want), "{var}={value}: want {want} in:\n{out}");
        assert!(!out.contains("envsecret") && !err.contains("envsecret"));
    }
    // AUTOMATION_ first, as envconfig looks it up.
    let (_, out, _) = check_config(
        &[
            ("MAAS_URL", "http://plain/MAAS"),
            ("AUTOMATION_MAAS_URL", "http://prefixed/MAAS"),
        ],
        &[],
    );
    assert!(out.contains("http://prefixed/MAAS") && !out.contains("http://plain/MAAS"));
}

/// Our own `MAAS_FLOW_*` variables and flags win over the original's variables.
#[test]
fn maas_flow_variables_and_flags_win_over_the_originals() {
    let (_, out, _) = check_config(
        &[
            ("MAAS_QUERY_INTERVAL", "1m"),
            ("MAAS_FLOW_MAAS__PERIOD", "30s"),
            ("PREVIEW_ONLY", "true"),
            ("MAAS_URL", "http://env/MAAS"),
        ],
        &["-maas", "http://flag/MAAS"],
    );
    assert!(out.contains(r#"period = "30s""#), "{out}");
    assert!(out.contains(r#"url = "http://flag/MAAS""#), "{out}");
    assert!(out.contains("preview = true"), "{out}");
    let (_, out, _) = check_config(&[("MAAS_QUERY_INTERVAL", "1m")], &["-period", "5s"]);
    assert!(out.contains(r#"period = "5s""#), "{out}");
}

/// A bad value in one of the original's variables stops start-up with exit 2 and one
/// message naming that variable (the original `log.Fatalf`ed on the same values).
#[test]
fn bad_original_variables_exit_2_naming_the_variable() {
    let cases: &[(&str, &str)] = &[
        ("MAAS_URL", "not a url"),
        ("MAAS_URL", ""),
        ("MAAS_API_KEY", "only:two"),
        ("MAAS_API_VERSION", "3.0"),
        ("MAAS_QUERY_INTERVAL", "15"),
        ("MAAS_QUERY_INTERVAL", "0"),
        ("HOST_FILTER_SPEC", "{hosts"),
        ("HOST_FILTER_SPEC", r#"{"hosts":{"include":["("]}}"#),
        ("HOST_FILTER_SPEC", "@/nonexistent/filter.json"),
        ("HOST_FILTER_SPEC", ""),
        ("PROVISION_URL", "/nonexistent/provision.sh"),
        ("PROVISION_TTL", "1d"),
        ("MAC_TO_NAME_MAPPINGS", "[]"),
        ("PREVIEW_ONLY", "yes"),
        ("LOG_LEVEL", "verbose"),
        ("AUTOMATION_PREVIEW_ONLY", "maybe"),
    ];
    for (var, value) in cases {
        let (code, _, err) = check_config(&[(var, value)], &[]);
        assert_eq!(code, Some(2), "{var}={value:?}: {err}");
        assert!(
            err.contains(&format!("`{var}`")),
            "{var}={value:?} not named: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{var}: one message: {err}");
        assert!(!err.contains("only:two"), "key leaked: {err}");
    }
}

/// `check-config --list`: one read-only list, and how many machines each pattern
/// matches, with a warning for a pattern that matches nothing.
#[actix_rt::test]
async fn check_config_list_counts_machines_per_pattern() {
    let sim = start_sim_with(SimConfig::default(), rack("maas-flow"));
    let url = sim.base_url.clone();
    let key = sim.api_key();
    let (code, out, err) = actix_rt::task::spawn_blocking(move || {
        check_config(
            &[],
            &["--list", "-maas", &url, "-apiKey", &key, "-filter", FILTER],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("# filter selects 9 of the 13 machines MAAS lists now"),
        "{out}"
    );
    assert!(
        out.contains(r#"hosts.exclude "^skip-": 2 machines"#),
        "{out}"
    );
    assert!(
        err.contains(
            r#"filter pattern "^retired-" in hosts.exclude matches none of the 13 machines"#
        ),
        "{err}"
    );
    let mutating: Vec<_> = sim
        .ops()
        .into_iter()
        .filter(|o| o.method != "GET")
        .collect();
    assert!(mutating.is_empty(), "read-only: {mutating:?}");
    sim.stop().await;
}

/// A Docker deployment of the original, unchanged: everything from its variables
/// (opencord/maas `automation/maas-flow.go`, `Config`), `PROVISION_URL` a script. The
/// machine is deployed and provisioned, `AUTOMATION_MAAS_API_KEY` wins over
/// `MAAS_API_KEY` (envconfig's order), and neither key reaches the script's environment.
#[actix_rt::test]
async fn the_originals_environment_alone_drives_a_deployment() {
    use std::os::unix::fs::PermissionsExt;
    let sim = start_sim_with(SimConfig::default(), rack("maas-flow"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("provisioned");
    let script = dir.path().join("provision.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"$1 $2\"; env; }} > '{}.tmp' && mv '{0}.tmp' '{0}'\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = sim.api_key();
    let script_s = script.display().to_string();
    let state_dir = dir.path().display().to_string();
    let mut child = spawn(
        dir.path(),
        &[],
        &[
            ("MAAS_URL", &sim.base_url),
            ("AUTOMATION_MAAS_API_KEY", &key),
            ("MAAS_API_KEY", "decoy:decoy:decoysecret"),
            ("MAAS_API_VERSION", "2.0"),
            ("MAAS_QUERY_INTERVAL", "1s"),
            (
                "HOST_FILTER_SPEC",
                r#"{"hosts":{"include":["^cord-01$"]},"zones":{"include":["^default$"]}}"#,
            ),
            ("STATE_DIRECTORY", &state_dir),
            ("PROVISION_URL", &script_s),
            ("PROVISION_TTL", "1m"),
            ("PREVIEW_ONLY", "false"),
            ("LOG_LEVEL", "info"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "maas-flow exited ({status}): {}",
                std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "not provisioned in 60 s");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_child(child, dir.path());
    let env = std::fs::read_to_string(&out).unwrap();
    let id = scenario::system_id(0);
    assert!(env.starts_with(&format!("{id} cord-01")), "{env}");
    assert!(
        !env.contains("simsecret") && !env.contains("decoysecret"),
        "key leaked to the script"
    );
    assert_eq!(
        ops_for(&sim, &id),
        [
            "commission",
            "allocate",
            "deploy",
            "set_workload_annotations"
        ]
    );
    for m in sim.machines().iter().filter(|m| m.system_id != id) {
        assert!(
            ops_for(&sim, &m.system_id).is_empty(),
            "{} touched",
            m.hostname
        );
    }
    sim.stop().await;
}

/// The Go tool's flags as Go's `flag` package parsed them (opencord/maas
/// `automation/maas-flow.go` up to df9df63: `flag.String("apikey", ...)`,
/// `flag.Bool("always-rename", true, ...)`, `flag.Bool("verbose", ...)`): the real
/// spelling `-apikey`, `--name`, `-name=value`, and booleans with `=false`.
#[test]
fn go_flag_spellings_are_accepted() {
    let (code, out, err) = check_config(
        &[],
        &[
            "-apikey",
            "ck:tk:flagsecret",
            "--apiVersion=1.0",
            "--period",
            "20s",
            "-preview=t",
            "-always-rename=false",
            "-verbose",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(r#"api_key = "***:***:***""#), "{out}");
    assert!(out.contains(r#"api_version = "1.0""#), "{out}");
    assert!(out.contains(r#"period = "20s""#), "{out}");
    assert!(out.contains("preview = true"), "{out}");
    assert!(out.contains("always_rename = false"), "{out}");
    assert!(out.contains(r#"level = "debug""#), "{out}");
    let (_, out, _) = check_config(&[], &["-always-rename=1", "-preview=false"]);
    assert!(
        out.contains("always_rename = true") && out.contains("preview = false"),
        "{out}"
    );
    let (code, _, err) = check_config(&[], &["-preview=maybe"]);
    assert_eq!(code, Some(2), "{err}");
}
