//! Post-deploy provisioning with real child processes and the simulated HTTP
//! provisioner: argv, failures and backoff, TTL kills, durable outcomes, release,
//! restarts, and isolation of a hung run.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use maas_flow::actors::poller::TickLateness;
use maas_flow::maas::NodeStatus;
use maas_flow::sim::{scenario, ProvisionerConfig};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn deployed_rack(names: &[&str]) -> Vec<maas_flow::sim::SimMachine> {
    let mut text = String::new();
    for (i, n) in names.iter().enumerate() {
        text.push_str(&format!(
            "[[machine]]\nhostname = {n:?}\nstatus = \"deployed\"\nowner = \"maas-flow\"\nips = [\"10.9.0.{}\"]\n",
            i + 1
        ));
    }
    scenario::parse_scenario(&text).unwrap()
}

#[actix_rt::test]
async fn script_gets_exact_argv_and_env_even_for_a_hostile_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let s = script(
        dir.path(),
        "prov.sh",
        &format!(
            "printf '%s\\n' \"$@\" > '{out}/args'\nenv | grep '^MAAS_FLOW_' | sort > '{out}/env'"
        ),
    );
    let sim = start_sim(deployed_rack(&["a;rm -rf /"]), fast_timings());
    let ctrl = start(&sim, &[("provision.script", &s.display().to_string())]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    let m = sim.machines()[0].clone();
    let args = lines(&dir.path().join("args"));
    assert_eq!(
        args,
        vec![
            m.system_id.clone(),
            "a;rm -rf /".into(),
            "10.9.0.1".into(),
            m.interfaces[0].mac.clone()
        ]
    );
    let env = lines(&dir.path().join("env"));
    assert!(
        env.contains(&"MAAS_FLOW_HOSTNAME=a;rm -rf /".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&format!("MAAS_FLOW_SYSTEM_ID={}", m.system_id)));
    assert!(
        !env.iter().any(|l| l.contains("API_KEY")),
        "the key is not handed to scripts"
    );
    // The outcome is recorded on the machine in MAAS.
    assert!(
        m.annotations.contains_key("maas_flow_provisioned"),
        "{:?}",
        m.annotations
    );
    assert_eq!(ctrl.board.all()[0].provisioning, "provisioned");
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn failures_back_off_and_stop_at_the_attempt_cap() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let s = script(
        dir.path(),
        "fail.sh",
        &format!("date +%s.%N >> '{out}/runs'\necho 'boom: disk on fire' >&2\nexit 3"),
    );
    let sim = start_sim(deployed_rack(&["node-1"]), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("provision.script", &s.display().to_string()),
            ("provision.max_attempts", "3"),
            ("provision.retry_base", "200ms"),
            ("provision.retry_cap", "2s"),
        ],
    )
    .await;
    wait_for("provisioning to give up", Duration::from_secs(20), || {
        ctrl.board
            .all()
            .first()
            .is_some_and(|v| v.provisioning == "gave_up")
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(1000)).await;
    let runs: Vec<f64> = lines(&dir.path().join("runs"))
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(runs.len(), 3, "exactly max_attempts runs");
    // Backoff grows: base 200 ms with jitter in [ceiling/2, ceiling].
    assert!(runs[1] - runs[0] >= 0.09, "{runs:?}");
    assert!(runs[2] - runs[1] >= 0.19, "{runs:?}");
    let v = ctrl.board.all()[0].clone();
    assert!(
        v.last_error
            .as_deref()
            .unwrap_or("")
            .contains("exit status: 3"),
        "{v:?}"
    );
    assert!(
        v.last_error
            .as_deref()
            .unwrap_or("")
            .contains("boom: disk on fire"),
        "{v:?}"
    );
    assert!(v.problem && v.settled);
    let m = &sim.machines()[0];
    assert_eq!(
        m.annotations.get("maas_flow_attempts").map(String::as_str),
        Some("3")
    );
    stop(ctrl).await;
    sim.stop().await;
}

fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

#[actix_rt::test]
async fn ttl_kills_the_script_and_everything_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let s = script(
        dir.path(),
        "hang.sh",
        &format!("echo $$ > '{out}/pid'\nsleep 30 &\necho $! > '{out}/child'\nwait"),
    );
    let sim = start_sim(deployed_rack(&["node-1"]), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("provision.script", &s.display().to_string()),
            ("provision.ttl", "700ms"),
            ("provision.max_attempts", "1"),
        ],
    )
    .await;
    wait_for("the script to start", Duration::from_secs(10), || {
        dir.path().join("child").exists()
    })
    .await;
    let pid = std::fs::read_to_string(dir.path().join("pid"))
        .unwrap()
        .trim()
        .to_string();
    let child = std::fs::read_to_string(dir.path().join("child"))
        .unwrap()
        .trim()
        .to_string();
    assert!(alive(&pid) && alive(&child));
    wait_for("the TTL to fail the run", Duration::from_secs(10), || {
        ctrl.board
            .all()
            .first()
            .is_some_and(|v| v.provisioning == "gave_up")
    })
    .await;
    wait_for("the processes to be gone", Duration::from_secs(5), || {
        !alive(&pid) && !alive(&child)
    })
    .await;
    let v = ctrl.board.all()[0].clone();
    assert!(v.last_error.unwrap().contains("TTL"));
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn http_provisioner_protocol_202_then_200() {
    let sim = start_sim(deployed_rack(&["d1", "d2"]), fast_timings());
    sim.set_provisioner(ProvisionerConfig {
        duration: Duration::from_millis(300),
        ..ProvisionerConfig::default()
    });
    let ctrl = start(&sim, &[("provision.url", &sim.provisioner_url())]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    let reqs = sim.provisioner_requests();
    for m in sim.machines() {
        let mine: Vec<_> = reqs
            .iter()
            .filter(|r| {
                r.id == m.system_id || r.body.as_ref().is_some_and(|b| b["id"] == m.system_id)
            })
            .collect();
        let posts: Vec<_> = mine.iter().filter(|r| r.method == "POST").collect();
        assert_eq!(posts.len(), 1, "one job per machine");
        let body = posts[0].body.clone().unwrap();
        assert_eq!(body["id"], m.system_id.as_str());
        assert_eq!(body["name"], m.hostname.as_str());
        assert_eq!(body["ip"], m.ip_addresses()[0].as_str());
        assert_eq!(body["mac"], m.interfaces[0].mac.as_str());
        assert_eq!(posts[0].status, 202);
        let gets: Vec<u16> = mine
            .iter()
            .filter(|r| r.method == "GET")
            .map(|r| r.status)
            .collect();
        assert_eq!(gets.last(), Some(&200), "{gets:?}");
        assert!(gets[..gets.len() - 1].iter().all(|c| *c == 202), "{gets:?}");
        assert!(m.annotations.contains_key("maas_flow_provisioned"));
    }
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn http_provisioner_failures_are_errors_with_the_answer_logged() {
    let sim = start_sim(deployed_rack(&["ok1", "bad1"]), fast_timings());
    let bad = sim.machines()[1].system_id.clone();
    sim.set_provisioner(ProvisionerConfig {
        duration: Duration::from_millis(100),
        fail: [bad.clone()].into_iter().collect(),
        ..ProvisionerConfig::default()
    });
    let ctrl = start(
        &sim,
        &[
            ("provision.url", &sim.provisioner_url()),
            ("provision.max_attempts", "2"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(20)).await;
    let v = ctrl.board.get(&bad).unwrap();
    assert_eq!(v.provisioning, "gave_up");
    assert!(
        v.last_error.as_deref().unwrap().contains("answered 500"),
        "{v:?}"
    );
    let posts = sim
        .provisioner_requests()
        .iter()
        .filter(|r| r.method == "POST" && r.body.as_ref().is_some_and(|b| b["id"] == bad.as_str()))
        .count();
    assert_eq!(posts, 2);
    stop(ctrl).await;

    // A provisioner that refuses the POST.
    let sim2 = start_sim(deployed_rack(&["x"]), fast_timings());
    sim2.set_provisioner(ProvisionerConfig {
        force_status: 503,
        ..ProvisionerConfig::default()
    });
    let ctrl = start(
        &sim2,
        &[
            ("provision.url", &sim2.provisioner_url()),
            ("provision.max_attempts", "1"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(20)).await;
    let v = ctrl.board.all()[0].clone();
    assert!(
        v.last_error
            .as_deref()
            .unwrap()
            .contains("POST answered 503 (want 202)"),
        "{v:?}"
    );
    stop(ctrl).await;
    sim.stop().await;
    sim2.stop().await;
}

#[actix_rt::test]
async fn release_clears_state_and_the_next_deployment_provisions_again() {
    let sim = start_sim(deployed_rack(&["r1"]), fast_timings());
    sim.set_provisioner(ProvisionerConfig {
        duration: Duration::from_millis(100),
        ..ProvisionerConfig::default()
    });
    let ctrl = start(&sim, &[("provision.url", &sim.provisioner_url())]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    let id = sim.machines()[0].system_id.clone();
    sim.with_world(|w| {
        let i = w.find(&id).unwrap();
        w.machines[i].commissioned = true;
        assert_eq!(
            w.release(i, "maas-flow"),
            maas_flow::sim::world::Reply::Machine(i)
        );
    });
    assert!(
        sim.machines()[0].annotations.is_empty(),
        "MAAS clears annotations on release"
    );
    wait_for("a second provisioning", Duration::from_secs(20), || {
        sim.provisioner_requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
            == 2
            && ctrl
                .board
                .get(&id)
                .is_some_and(|v| v.provisioning == "provisioned")
    })
    .await;
    assert_eq!(
        ops_for(&sim, &id),
        [
            "set_workload_annotations",
            "allocate",
            "deploy",
            "set_workload_annotations"
        ]
    );
    assert!(
        sim.provisioner_requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.id == id),
        "job cleared on leaving Deployed"
    );
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn restart_after_success_runs_nothing_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let s = script(
        dir.path(),
        "count.sh",
        &format!("echo \"$1\" >> '{out}/runs'"),
    );
    let sim = start_sim(scenario::rack(4), fast_timings());
    let extra = [("provision.script", s.display().to_string())];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ctrl = start(&sim, &extra).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    stop(ctrl).await;
    let ops_before = accepted_ops(&sim).len();
    assert_eq!(lines(&dir.path().join("runs")).len(), 4);
    let ctrl = start(&sim, &extra).await;
    wait_for("several polls", Duration::from_secs(10), || {
        ctrl.board.global().polls_ok >= 4
    })
    .await;
    settle(&ctrl, Duration::from_secs(5)).await;
    assert_eq!(
        lines(&dir.path().join("runs")).len(),
        4,
        "no provisioning repeated"
    );
    assert_eq!(
        accepted_ops(&sim).len(),
        ops_before,
        "no MAAS operation repeated"
    );
    assert!(ctrl
        .board
        .all()
        .iter()
        .all(|v| v.provisioning == "provisioned"));
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn api_v1_keeps_outcomes_in_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let s = script(
        dir.path(),
        "count.sh",
        &format!("echo \"$1\" >> '{out}/runs'"),
    );
    let state = dir.path().join("state.json").display().to_string();
    let sim = start_sim(scenario::rack(2), fast_timings());
    let extra = [
        ("provision.script", s.display().to_string()),
        ("provision.state_file", state.clone()),
        ("maas.api_version", "1.0".to_string()),
    ];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ctrl = start(&sim, &extra).await;
    // Wait on the outcome itself: "every machine settled" can be seen for a moment
    // before the first run starts on a loaded machine.
    let ids: Vec<String> = sim.machines().into_iter().map(|m| m.system_id).collect();
    wait_for(
        "both outcomes in the state file",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&state).unwrap_or_default();
            ids.iter().all(|id| text.contains(id.as_str()))
        },
    )
    .await;
    settle(&ctrl, Duration::from_secs(20)).await;
    // The outcome is written off the actor thread, just after the board says done.
    wait_for(
        "both outcomes in the state file",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&state).unwrap_or_default();
            sim.machines().iter().all(|m| text.contains(&m.system_id))
        },
    )
    .await;
    stop(ctrl).await;
    let ctrl = start(&sim, &extra).await;
    wait_for("several polls", Duration::from_secs(10), || {
        ctrl.board.global().polls_ok >= 4
    })
    .await;
    assert_eq!(lines(&dir.path().join("runs")).len(), 2);
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn a_hung_run_delays_no_other_machine_and_no_poll() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(
        dir.path(),
        "maybe-hang.sh",
        "if [ \"$2\" = node-00001 ]; then exec sleep 120; fi\nsleep 0.2",
    );
    let s = s.display().to_string();
    let extra = [
        ("provision.script", s.as_str()),
        ("maas.period", "250ms"),
        ("provision.max_concurrent", "8"),
    ];

    // Clean run: the same 50 machines with nothing hung (node-00001 is excluded).
    let sim = start_sim(scenario::rack(50), fast_timings());
    let mut clean_extra = extra.to_vec();
    let cfg_filter = r#"{"hosts":{"include":[".*"],"exclude":["^node-00001$"]},"zones":{"include":["default"],"exclude":[]}}"#;
    clean_extra.push(("filter.json", cfg_filter));
    let ctrl = start(&sim, &clean_extra).await;
    let clean = settle(&ctrl, Duration::from_secs(30)).await;
    stop(ctrl).await;
    sim.stop().await;

    // The same rack with node-00001's script hanging far past the period.
    let sim = start_sim(scenario::rack(50), fast_timings());
    let ctrl = start(&sim, &extra).await;
    let hung_id = sim.machines()[0].system_id.clone();
    let others = wait_for("49 machines provisioned", Duration::from_secs(30), || {
        let v = ctrl.board.all();
        v.len() == 50
            && v.iter()
                .filter(|m| m.system_id != hung_id)
                .all(|m| m.provisioning == "provisioned")
    })
    .await;
    let lateness = ctrl.poller.send(TickLateness).await.unwrap();
    let hung = ctrl.board.get(&hung_id).unwrap();
    assert_eq!(hung.provisioning, "running");
    assert_eq!(sim.status_of(&hung_id), Some(NodeStatus::Deployed));
    let ratio = others.as_secs_f64() / clean.as_secs_f64();
    println!(
        "isolation: clean run {:.2}s, with one hung run {:.2}s (ratio {ratio:.3}), worst poll lateness {:?}",
        clean.as_secs_f64(),
        others.as_secs_f64(),
        lateness
    );
    assert!(ratio < 1.5, "others slowed down by the hung run: {ratio}");
    assert!(
        lateness < Duration::from_millis(100),
        "polls kept their schedule: {lateness:?}"
    );
    stop(ctrl).await;
    sim.stop().await;
}

/// Issue 12.10: a provisioner that answers and then drips its body forever must not
/// pin the machine in "running" nor hold the only provisioning slot.
#[actix_rt::test]
async fn a_dripping_provisioner_pins_neither_the_machine_nor_a_slot() {
    let sim = start_sim(deployed_rack(&["drip-1", "ok-1"]), fast_timings());
    let drip_id = sim.machines()[0].system_id.clone();
    let ok_id = sim.machines()[1].system_id.clone();
    sim.set_provisioner(ProvisionerConfig {
        duration: Duration::from_millis(200),
        drip: [drip_id.clone()].into_iter().collect(),
        ..ProvisionerConfig::default()
    });
    let url = sim.provisioner_url();
    let ctrl = start(
        &sim,
        &[
            ("provision.url", url.as_str()),
            ("provision.max_concurrent", "1"),
            ("provision.ttl", "4s"),
            ("provision.retry_base", "30s"),
            ("provision.retry_cap", "30s"),
            ("maas.request_timeout", "1s"),
        ],
    )
    .await;
    wait_for(
        "the dripping machine to fail and the other to be provisioned",
        Duration::from_secs(30),
        || {
            ctrl.board
                .get(&drip_id)
                .is_some_and(|v| v.provisioning == "failed")
                && ctrl
                    .board
                    .get(&ok_id)
                    .is_some_and(|v| v.provisioning == "provisioned")
        },
    )
    .await;
    let drip = ctrl.board.get(&drip_id).unwrap();
    let err = drip.last_error.unwrap_or_default();
    assert!(err.contains("no complete answer within"), "{err}");
    stop(ctrl).await;
    sim.stop().await;
}

/// Issue 12.11: completion is the script's exit, not the close of its output pipes.
#[actix_rt::test]
async fn a_script_that_leaves_a_background_process_completes_at_its_exit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    // The background sleep keeps the script's stdout and stderr open for 300 s.
    let s = script(
        dir.path(),
        "bg.sh",
        &format!("sleep 300 &\necho $! > '{out}/bg.$1'\necho \"$1\" >> '{out}/runs'\nexit 0"),
    );
    let sim = start_sim(deployed_rack(&["bg-1"]), fast_timings());
    let id = sim.machines()[0].system_id.clone();
    let ctrl = start(
        &sim,
        &[
            ("provision.script", &s.display().to_string()),
            ("provision.ttl", "5s"),
        ],
    )
    .await;
    let took = wait_for("provisioned", Duration::from_secs(20), || {
        ctrl.board
            .get(&id)
            .is_some_and(|v| v.provisioning == "provisioned")
    })
    .await;
    // Well inside the TTL: the output drain is 1 s.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(lines(&dir.path().join("runs")).len(), 1);
    let view = ctrl.board.get(&id).unwrap();
    assert!(view.last_error.is_none(), "{:?}", view.last_error);
    stop(ctrl).await;
    if let Some(pid) = lines(&dir.path().join(format!("bg.{id}")))
        .first()
        .and_then(|p| p.parse::<i32>().ok())
    {
        // SAFETY: kill(2) on the background sleep this test's script started.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    sim.stop().await;
}

/// Issue 12.9: journal entries belong to one deployment. A machine released and
/// deployed again while maas-flow was stopped is provisioned again, although the
/// journal holds a success for its previous deployment.
#[actix_rt::test]
async fn a_redeploy_while_stopped_does_not_borrow_the_journal_entry() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let s = script(
        dir.path(),
        "count.sh",
        &format!("echo \"$1\" >> '{out}/runs'"),
    );
    let state = dir.path().join("state").display().to_string();
    let sim = start_sim(deployed_rack(&["re-1"]), fast_timings());
    let id = sim.machines()[0].system_id.clone();
    let first_install = sim.machines()[0].installation_result_id;
    let extra = [
        ("provision.script", s.display().to_string()),
        ("state_dir", state.clone()),
    ];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ctrl = start(&sim, &extra).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    stop(ctrl).await;
    assert_eq!(lines(&dir.path().join("runs")).len(), 1);
    let journal = std::fs::read_to_string(
        dir.path()
            .join("state")
            .join(maas_flow::provision::store::JOURNAL_FILE),
    )
    .unwrap();
    assert!(
        journal.contains(&id) && journal.contains(&sim.base_url),
        "{journal}"
    );

    // Behind maas-flow's back: release, then deploy again (a new installation).
    sim.with_world(|w| {
        let i = w.find(&id).unwrap();
        w.release(i, "maas-flow");
    });
    wait_for("Ready", Duration::from_secs(10), || {
        sim.with_world(|w| w.advance(std::time::Instant::now()));
        sim.status_of(&id) == Some(NodeStatus::Ready)
    })
    .await;
    sim.with_world(|w| {
        let i = w.find(&id).unwrap();
        w.deploy(i, "maas-flow", &[]);
    });
    wait_for("Deployed again", Duration::from_secs(10), || {
        sim.with_world(|w| w.advance(std::time::Instant::now()));
        sim.status_of(&id) == Some(NodeStatus::Deployed)
    })
    .await;
    assert_ne!(sim.machines()[0].installation_result_id, first_install);

    let ctrl = start(&sim, &extra).await;
    wait_for("provisioned again", Duration::from_secs(20), || {
        lines(&dir.path().join("runs")).len() == 2
            && ctrl
                .board
                .get(&id)
                .is_some_and(|v| v.provisioning == "provisioned")
    })
    .await;
    stop(ctrl).await;
    sim.stop().await;
}

/// Issue 12.9: the outcome annotation does not queue behind new operations. MAAS takes
/// 500 ms per operation and `limits.max_ops_in_flight` is 1, with 20 commissionings
/// queued; the provisioned machine's annotation still arrives within a few seconds.
#[actix_rt::test]
async fn outcome_annotations_do_not_wait_behind_queued_operations() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let s = script(
        dir.path(),
        "stamp.sh",
        &format!("sleep 0.2\ndate +%s.%N > '{out}/done'"),
    );
    let mut text = String::from("[[machine]]\nhostname = \"d1\"\nstatus = \"deployed\"\nowner = \"maas-flow\"\nips = [\"10.9.0.1\"]\n");
    text.push_str("[[machine]]\nhostname = \"new\"\ncount = 20\n");
    let sim = start_sim(scenario::parse_scenario(&text).unwrap(), fast_timings());
    sim.set_faults(maas_flow::sim::Faults {
        slow_rate: 1.0,
        slow_ms: 500,
        scope: Some("ops".into()),
        ..maas_flow::sim::Faults::default()
    });
    let id = sim.machines()[0].system_id.clone();
    let ctrl = start(
        &sim,
        &[
            ("provision.script", &s.display().to_string()),
            ("limits.max_ops_in_flight", "1"),
        ],
    )
    .await;
    wait_for("the script to finish", Duration::from_secs(20), || {
        dir.path().join("done").exists()
    })
    .await;
    let waited = wait_for("the annotation", Duration::from_secs(30), || {
        sim.machines()
            .iter()
            .any(|m| m.system_id == id && m.annotations.contains_key("maas_flow_provisioned"))
    })
    .await;
    let queued = accepted_ops(&sim)
        .iter()
        .filter(|(_, op)| op == "commission")
        .count();
    println!(
        "annotation {waited:?} after the script finished; {queued} commissionings done by then"
    );
    assert!(
        waited < Duration::from_secs(4),
        "the annotation waited {waited:?} behind queued operations"
    );
    assert!(queued < 20, "operations were still queued: {queued}");
    stop(ctrl).await;
    sim.stop().await;
}
