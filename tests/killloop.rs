//! The real binary under SIGKILL, and what its children see: a kill loop over a rack
//! going New to provisioned repeats no MAAS operation and no successful provisioning;
//! a success is durable before MAAS has it; a SIGKILLed maas-flow leaves no script
//! running; children never see the API key, in any spelling.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use maas_flow::sim::{scenario, Faults, Sim};
use rand::Rng;

const BIN: &str = env!("CARGO_BIN_EXE_maas-flow");

fn write_exe(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// Start the binary with a config file in `dir` (journal under `dir/state`), the key
/// given by environment in `key_var`, and `extra` TOML lines in `[provision]`.
fn spawn(sim: &Sim, dir: &Path, key_var: &str, provision: &str, env: &[(&str, &str)]) -> Child {
    let cfg = dir.join("maas-flow.toml");
    std::fs::write(
        &cfg,
        format!(
            "shutdown_grace = \"10s\"\nstate_dir = \"{}/state\"\n[maas]\nurl = \"{}\"\nperiod = \"250ms\"\n[provision]\nretry_base = \"200ms\"\nretry_cap = \"1s\"\n{provision}\n[limits]\nretry_base = \"100ms\"\nretry_cap = \"1s\"\n[http]\nlisten = \"\"\n[log]\nlevel = \"warn\"\n",
            dir.display(),
            sim.base_url,
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(&cfg)
        .env(key_var, sim.api_key())
        .env_remove("PROVISION_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("maas-flow.log"))
                .unwrap(),
        ));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

#[allow(unsafe_code)] // kill(2) on our own child: see the SAFETY comment.
fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) on a pid this test started (or 0 to probe it).
    unsafe { libc::kill(pid as i32, sig) == 0 }
}

/// Whether `pid` is gone (or a zombie nobody reaped yet, which runs nothing).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn provisioned(sim: &Sim) -> usize {
    sim.machines()
        .iter()
        .filter(|m| m.annotations.contains_key("maas_flow_provisioned"))
        .count()
}

const KEY_VAR: &str = "MAAS_FLOW_MAAS__API_KEY";

/// The window README documents: between a script's success and the journal append
/// reaching the disk (script exit, reaping, one `fdatasync`), generously bounded.
const JOURNAL_WINDOW: Duration = Duration::from_millis(100);

fn epoch_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// Issue 12, done means: 20 SIGKILLs at random moments over a rack of 20 machines
/// going New to provisioned, then a clean run: 0 duplicate MAAS operations and 0
/// successful provisionings run again.
#[actix_rt::test]
async fn twenty_sigkills_repeat_no_operation_and_no_successful_provisioning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    // The success line is the script's last act before exit 0.
    let script = write_exe(
        dir.path(),
        "prov.sh",
        &format!("echo \"$1 start\" >> '{out}/runs'\nsleep 0.3\necho \"$1 done $(date +%s%N)\" >> '{out}/runs'"),
    );
    // Slow enough that the kills land in every phase: commissioning, deploying,
    // provisioning (two at a time), and the outcome writes.
    let timings = maas_flow::sim::Timings {
        commission: Duration::from_secs(2),
        deploy: Duration::from_secs(3),
        ..fast_timings()
    };
    let sim = start_sim(scenario::rack(20), timings);
    let prov = format!("script = \"{script}\"\nmax_concurrent = 2");
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let mut kills: Vec<u128> = Vec::new();
    for _ in 0..20 {
        let mut child = spawn(&sim, dir.path(), KEY_VAR, &prov, &[]);
        actix_rt::time::sleep(Duration::from_millis(rng.gen_range(150..1000))).await;
        kills.push(epoch_ns());
        signal(child.id(), libc::SIGKILL);
        child.wait().unwrap();
    }
    let kills_n = kills.len();
    let mid = provisioned(&sim);
    let mut clean = spawn(&sim, dir.path(), KEY_VAR, &prov, &[]);
    wait_for("every machine provisioned", Duration::from_secs(60), || {
        provisioned(&sim) == 20
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    signal(clean.id(), libc::SIGTERM);
    let status = wait_exit(&mut clean, Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");

    let runs = lines(&dir.path().join("runs"));
    // Success lines per machine, with the time the script wrote them.
    let mut rerun = Vec::new();
    let mut in_window = Vec::new();
    for m in sim.machines() {
        let prefix = format!("{} done ", m.system_id);
        let done: Vec<u128> = runs
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).and_then(|t| t.parse().ok()))
            .collect();
        match done.first() {
            None => rerun.push((m.system_id.clone(), 0)),
            Some(_) if done.len() == 1 => {}
            Some(first) => {
                // The documented window: the script wrote its success line, and
                // maas-flow died before the journal append reached the disk.
                if kills
                    .iter()
                    .any(|k| *k >= *first && *k - *first <= JOURNAL_WINDOW.as_nanos())
                {
                    in_window.push(m.system_id.clone());
                } else {
                    rerun.push((m.system_id.clone(), done.len()));
                }
            }
        }
    }
    let starts = runs.iter().filter(|l| l.ends_with(" start")).count();
    let dups = sim.duplicate_ops();
    println!(
        "kill loop: {kills_n} SIGKILLs in {:.1}s, {mid}/20 provisioned at the last kill, {starts} runs started for 20 machines, {} duplicate operations, {} successful provisionings run again ({} more killed within {JOURNAL_WINDOW:?} of their success line: the documented window)",
        started.elapsed().as_secs_f64(),
        dups.len(),
        rerun.len(),
        in_window.len()
    );
    assert!(dups.is_empty(), "duplicate MAAS operations: {dups:?}");
    assert!(rerun.is_empty(), "(system_id, success lines): {rerun:?}");
    sim.stop().await;
}

/// Issue 12.9: the success is in the local journal before MAAS has it. MAAS refuses
/// every operation (so no annotation can be written); the script succeeds; maas-flow
/// is SIGKILLed; the next start does not run it again and records it in MAAS.
#[actix_rt::test]
async fn a_success_maas_never_heard_of_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let script = write_exe(
        dir.path(),
        "prov.sh",
        &format!("echo \"$1 done\" >> '{out}/runs'"),
    );
    let mut text = String::new();
    for i in 1..=3 {
        text.push_str(&format!(
            "[[machine]]\nhostname = \"d{i}\"\nstatus = \"deployed\"\nowner = \"maas-flow\"\nips = [\"10.0.0.{i}\"]\n"
        ));
    }
    let sim = start_sim(scenario::parse_scenario(&text).unwrap(), fast_timings());
    sim.set_faults(Faults {
        error_rate: 1.0,
        scope: Some("ops".into()),
        ..Faults::default()
    });
    let prov = format!("script = \"{script}\"");
    let mut first = spawn(&sim, dir.path(), KEY_VAR, &prov, &[]);
    wait_for("three runs", Duration::from_secs(30), || {
        lines(&dir.path().join("runs")).len() == 3
    })
    .await;
    // Give the journal its few milliseconds, then kill.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    signal(first.id(), libc::SIGKILL);
    first.wait().unwrap();
    assert_eq!(provisioned(&sim), 0, "MAAS has no outcome yet");
    sim.set_faults(Faults::default());
    let mut second = spawn(&sim, dir.path(), KEY_VAR, &prov, &[]);
    wait_for("outcomes recorded in MAAS", Duration::from_secs(30), || {
        provisioned(&sim) == 3
    })
    .await;
    signal(second.id(), libc::SIGTERM);
    wait_exit(&mut second, Duration::from_secs(15)).expect("exits");
    assert_eq!(
        lines(&dir.path().join("runs")).len(),
        3,
        "no success ran again"
    );
    sim.stop().await;
}

/// Issue 13.3: a SIGKILLed maas-flow leaves no provisioning script running.
#[actix_rt::test]
async fn a_sigkilled_maas_flow_leaves_no_script_running() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let script = write_exe(
        dir.path(),
        "prov.sh",
        &format!("echo $$ > '{out}/pid.tmp'\nmv '{out}/pid.tmp' '{out}/pid'\nsleep 60"),
    );
    let text = "[[machine]]\nhostname = \"d1\"\nstatus = \"deployed\"\nowner = \"maas-flow\"\nips = [\"10.0.0.1\"]\n";
    let sim = start_sim(scenario::parse_scenario(text).unwrap(), fast_timings());
    let mut child = spawn(
        &sim,
        dir.path(),
        KEY_VAR,
        &format!("script = \"{script}\""),
        &[],
    );
    wait_for("the script to start", Duration::from_secs(30), || {
        dir.path().join("pid").exists()
    })
    .await;
    let pid: u32 = lines(&dir.path().join("pid"))[0].parse().unwrap();
    assert!(!gone(pid), "the script runs");
    signal(child.id(), libc::SIGKILL);
    child.wait().unwrap();
    let after = wait_for("the script to die", Duration::from_secs(5), || gone(pid)).await;
    println!("script gone {after:?} after maas-flow was killed");
    sim.stop().await;
}

/// Issue 12.13: children (the provisioning script and the power helper) never see the
/// API key, whatever spelling carried it to maas-flow, nor a variable holding it.
#[actix_rt::test]
async fn children_get_no_variable_that_can_carry_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let script = write_exe(dir.path(), "prov.sh", &format!("env > '{out}/env.script'"));
    let helper = write_exe(
        dir.path(),
        "power-helper",
        &format!("env > '{out}/env.helper'\necho '{{\"name\":\"x\",\"mac_address\":\"'$3'\",\"power_password\":\"pw\",\"power_address\":\"10.9.9.9\"}}'"),
    );
    let mut text = String::from("[[machine]]\nhostname = \"d1\"\nstatus = \"deployed\"\nowner = \"maas-flow\"\nips = [\"10.0.0.1\"]\n");
    text.push_str("[[machine]]\nhostname = \"n1\"\nstatus = \"new\"\npower_type = \"\"\n");
    let sim = start_sim(scenario::parse_scenario(&text).unwrap(), fast_timings());
    let key = sim.api_key();
    let secret = key.rsplit(':').next().unwrap().to_string();
    let prov = format!("script = \"{script}\"");
    let cfg_extra = format!(
        "{prov}\n[lifecycle]\npower_helper_script = \"{helper}\"\npower_helper_user = \"admin\""
    );
    // The key arrives in a lower-case spelling the configuration loader accepts, and
    // two unrelated-looking variables carry it.
    let bearer = format!("Bearer {secret}");
    let mut child = spawn(
        &sim,
        dir.path(),
        "MAAS_FLOW_maas__api_key",
        &cfg_extra,
        &[
            ("MAAS_API_KEY", key.as_str()),
            ("SOME_TOKEN", bearer.as_str()),
            ("HARMLESS_MARKER", "still-here"),
        ],
    );
    wait_for("both children ran", Duration::from_secs(30), || {
        dir.path().join("env.script").exists() && dir.path().join("env.helper").exists()
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    signal(child.id(), libc::SIGTERM);
    wait_exit(&mut child, Duration::from_secs(15)).expect("exits");
    for who in ["script", "helper"] {
        let env = std::fs::read_to_string(dir.path().join(format!("env.{who}"))).unwrap();
        assert!(!env.contains(&secret), "{who} saw the key's secret:\n{env}");
        assert!(
            !env.to_ascii_uppercase().contains("API_KEY"),
            "{who} saw a key variable:\n{env}"
        );
        assert!(
            env.contains("HARMLESS_MARKER=still-here"),
            "{who} keeps the rest of the environment"
        );
    }
    sim.stop().await;
}
