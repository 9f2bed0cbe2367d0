//! Recovery policies and operator controls: bounded recommission and redeploy with
//! backoff then quarantine, the skip tag, and the retry tag.

mod common;

use std::time::Duration;

use common::*;
use maas_flow::maas::NodeStatus;
use maas_flow::sim::{scenario, Timings};

#[actix_rt::test]
async fn failed_commissioning_is_retried_up_to_the_limit_then_quarantined() {
    let mut rack = scenario::rack(2);
    rack[0].fail_next_commission = true; // fails once, then works
    let timings = Timings {
        fail_commission: 0.0,
        ..fast_timings()
    };
    let sim = start_sim(rack, timings);
    let flaky = sim.machines()[0].system_id.clone();
    let ctrl = start(
        &sim,
        &[
            ("recovery.recommission_attempts", "2"),
            ("lifecycle.target", "ready"),
            ("limits.retry_base", "50ms"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(20)).await;
    assert_eq!(sim.status_of(&flaky), Some(NodeStatus::Ready));
    assert_eq!(ops_for(&sim, &flaky), ["commission", "commission"]);
    stop(ctrl).await;
    sim.stop().await;

    // A machine that always fails: two recoveries, then left alone and marked.
    let sim = start_sim(
        scenario::rack(1),
        Timings {
            fail_commission: 1.0,
            ..fast_timings()
        },
    );
    let id = sim.machines()[0].system_id.clone();
    let ctrl = start(
        &sim,
        &[
            ("recovery.recommission_attempts", "2"),
            ("lifecycle.target", "ready"),
            ("limits.retry_base", "50ms"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(20)).await;
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        ops_for(&sim, &id),
        ["commission", "commission", "commission", "update_nodes"],
        "1 + 2 recoveries, no more; then the quarantine tag"
    );
    let v = ctrl.board.get(&id).unwrap();
    assert_eq!(v.step, "quarantined (Failed commissioning)");
    assert!(v.problem);
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn failed_deployment_is_released_and_redeployed() {
    let mut rack = scenario::rack(1);
    rack[0].fail_next_deploy = true;
    let sim = start_sim(rack, fast_timings());
    let id = sim.machines()[0].system_id.clone();
    let ctrl = start(
        &sim,
        &[
            ("recovery.redeploy_attempts", "1"),
            ("limits.retry_base", "50ms"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(20)).await;
    assert_eq!(sim.status_of(&id), Some(NodeStatus::Deployed));
    assert_eq!(
        ops_for(&sim, &id),
        [
            "commission",
            "allocate",
            "deploy",
            "release",
            "allocate",
            "deploy"
        ]
    );
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn the_skip_tag_pauses_a_machine_and_removing_it_resumes() {
    let mut rack = scenario::rack(2);
    rack[0].tags = vec!["maas-flow-skip".into()];
    let sim = start_sim(rack, fast_timings());
    let id = sim.machines()[0].system_id.clone();
    let ctrl = start(&sim, &[("lifecycle.target", "ready")]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    assert!(ops_for(&sim, &id).is_empty());
    assert_eq!(ctrl.board.get(&id).unwrap().step, "skip tag");
    sim.with_world(|w| {
        let i = w.find(&id).unwrap();
        w.machines[i].tags.clear();
        w.machines[i].invalidate();
    });
    wait_for("the machine to resume", Duration::from_secs(10), || {
        sim.status_of(&id) == Some(NodeStatus::Ready)
    })
    .await;
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn the_retry_tag_restarts_a_machine_that_gave_up_provisioning() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ok");
    let script = dir.path().join("p.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntest -e '{}'\n", flag.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sim = start_sim(scenario::rack(1), fast_timings());
    let id = sim.machines()[0].system_id.clone();
    let ctrl = start(
        &sim,
        &[
            ("provision.script", script.to_str().unwrap()),
            ("provision.max_attempts", "2"),
        ],
    )
    .await;
    wait_for("give up", Duration::from_secs(20), || {
        ctrl.board
            .get(&id)
            .is_some_and(|v| v.provisioning == "gave_up")
    })
    .await;
    std::fs::write(&flag, "").unwrap();
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ctrl.board.get(&id).unwrap().provisioning,
        "gave_up",
        "nothing happens by itself"
    );
    sim.with_world(|w| {
        let i = w.find(&id).unwrap();
        w.machines[i].tags.push("maas-flow-retry".into());
        w.machines[i].invalidate();
    });
    wait_for(
        "provisioned after the retry tag",
        Duration::from_secs(10),
        || {
            ctrl.board
                .get(&id)
                .is_some_and(|v| v.provisioning == "provisioned")
        },
    )
    .await;
    let m = sim.machines()[0].clone();
    assert!(m.annotations.contains_key("maas_flow_provisioned"));
    assert!(
        !m.annotations.contains_key("maas_flow_attempts"),
        "{:?}",
        m.annotations
    );
    stop(ctrl).await;
    sim.stop().await;
}
