//! The real binary as a process: SIGKILL in the middle of everything and a restart
//! lose nothing and repeat nothing; SIGTERM lets work in flight finish and exits 0.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use maas_flow::sim::{scenario, Sim};

const BIN: &str = env!("CARGO_BIN_EXE_maas-flow");

fn write_script(dir: &Path, body: &str) -> String {
    let p = dir.join("prov.sh");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

fn spawn(sim: &Sim, dir: &Path, script: &str, period: &str) -> Child {
    let cfg = dir.join("maas-flow.toml");
    std::fs::write(
        &cfg,
        format!(
            "shutdown_grace = \"10s\"\nstate_dir = \"{}/state\"\n[maas]\nurl = \"{}\"\napi_key = \"{}\"\nperiod = \"{period}\"\n[provision]\nscript = \"{script}\"\nretry_base = \"200ms\"\nretry_cap = \"1s\"\n[limits]\nretry_base = \"100ms\"\nretry_cap = \"1s\"\n[http]\nlisten = \"\"\n[log]\nlevel = \"warn\"\n",
            dir.display(),
            sim.base_url,
            sim.api_key()
        ),
    )
    .unwrap();
    Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[allow(unsafe_code)] // kill(2) on our own child: see the SAFETY comment.
fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
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

fn runs(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect()
}

#[actix_rt::test]
async fn sigkill_mid_run_then_restart_repeats_nothing_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let script = write_script(
        dir.path(),
        &format!("echo \"$1 start\" >> '{out}/runs'\nsleep 0.4\necho \"$1 done\" >> '{out}/runs'"),
    );
    let sim = start_sim(scenario::rack(30), fast_timings());
    let mut first = spawn(&sim, dir.path(), &script, "250ms");
    // Outcomes reach the local journal first and MAAS's annotations a moment later; on a
    // loaded machine five finished runs can precede the first annotation, so wait for both.
    wait_for(
        "some provisioning to finish and reach MAAS",
        Duration::from_secs(30),
        || {
            runs(dir.path()).iter().filter(|(_, e)| e == "done").count() >= 5
                && sim
                    .machines()
                    .iter()
                    .any(|m| m.annotations.contains_key("maas_flow_provisioned"))
        },
    )
    .await;
    signal(&first, libc::SIGKILL);
    first.wait().unwrap();
    let durable: Vec<String> = sim
        .machines()
        .into_iter()
        .filter(|m| m.annotations.contains_key("maas_flow_provisioned"))
        .map(|m| m.system_id)
        .collect();
    assert!(!durable.is_empty());
    let mut second = spawn(&sim, dir.path(), &script, "250ms");
    wait_for("every machine provisioned", Duration::from_secs(60), || {
        sim.machines()
            .iter()
            .all(|m| m.annotations.contains_key("maas_flow_provisioned"))
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    signal(&second, libc::SIGTERM);
    let status = wait_exit(&mut second, Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");

    let runs = runs(dir.path());
    for m in sim.machines() {
        let starts = runs
            .iter()
            .filter(|(id, e)| *id == m.system_id && e == "start")
            .count();
        if durable.contains(&m.system_id) {
            assert_eq!(
                starts, 1,
                "{}: provisioned before the kill, never run again",
                m.system_id
            );
        } else {
            assert!(
                (1..=2).contains(&starts),
                "{}: {starts} runs (once, or again once if interrupted)",
                m.system_id
            );
        }
    }
    let dups = sim.duplicate_ops();
    assert!(
        dups.is_empty(),
        "nothing sent twice across the kill: {dups:?}"
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn sigterm_lets_provisioning_in_flight_finish_and_record_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let script = write_script(
        dir.path(),
        &format!("echo \"$1 start\" >> '{out}/runs'\nsleep 1.5\necho \"$1 done\" >> '{out}/runs'"),
    );
    let mut text = String::new();
    text.push_str("[[machine]]\nhostname = \"d1\"\nstatus = \"deployed\"\nowner = \"maas-flow\"\nips = [\"10.0.0.1\"]\n");
    let sim = start_sim(scenario::parse_scenario(&text).unwrap(), fast_timings());
    let mut child = spawn(&sim, dir.path(), &script, "250ms");
    wait_for("the script to start", Duration::from_secs(20), || {
        !runs(dir.path()).is_empty()
    })
    .await;
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        runs(dir.path()).iter().any(|(_, e)| e == "done"),
        "the run finished"
    );
    assert!(
        sim.machines()[0]
            .annotations
            .contains_key("maas_flow_provisioned"),
        "and its outcome was recorded"
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn the_api_key_never_appears_in_logs_or_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let script = write_script(
        dir.path(),
        &format!("echo \"$1 start\" >> '{out}/runs'\nenv > '{out}/env.$1'\nexit 1"),
    );
    let sim = start_sim(scenario::rack(3), fast_timings());
    let secret = sim.api_key();
    for format in ["text", "json"] {
        let cfg = dir.path().join(format!("{format}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "state_dir = \"{}/state\"\n[maas]\nurl = \"{}\"\napi_key = \"{secret}\"\nperiod = \"200ms\"\n[provision]\nscript = \"{script}\"\nmax_attempts = 2\nretry_base = \"100ms\"\nretry_cap = \"200ms\"\n[http]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"trace\"\nformat = \"{format}\"\n",
                dir.path().display(),
                sim.base_url
            ),
        )
        .unwrap();
        // Files, not pipes: trace-level logs would fill a pipe nobody reads.
        let log_path = dir.path().join(format!("{format}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        actix_rt::time::sleep(Duration::from_secs(3)).await;
        signal(&child, libc::SIGTERM);
        let status = wait_exit(&mut child, Duration::from_secs(15));
        let logs = std::fs::read_to_string(&log_path).unwrap();
        let tail: Vec<&str> = logs.lines().rev().take(15).collect();
        assert!(
            status.is_some_and(|s| s.success()),
            "did not exit cleanly: {status:?}; log tail: {tail:#?}"
        );
        // The second run finds the rack done; the first one did the work.
        assert!(
            format == "json" || logs.contains("sending commission"),
            "the run did work: {}",
            &logs[..logs.len().min(2000)]
        );
        let token_secret = secret.rsplit(':').next().unwrap();
        assert!(
            !logs.contains(&secret) && !logs.contains(token_secret),
            "{format} logs leak the key"
        );
        let check = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("check-config")
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&check.stdout).contains(token_secret));
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("env.") {
            let env = std::fs::read_to_string(&p).unwrap();
            assert!(
                !env.contains(secret.rsplit(':').next().unwrap()),
                "scripts never see the key"
            );
        }
    }
    sim.stop().await;
}
