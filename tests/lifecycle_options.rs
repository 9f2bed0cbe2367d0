//! The original tool's optional steps against the simulator: renames from MAC
//! mappings, relinking `auto` links as DHCP before allocating, and the AMT power helper.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use maas_flow::maas::NodeStatus;
use maas_flow::sim::scenario;

#[actix_rt::test]
async fn mappings_rename_new_machines_before_commissioning() {
    let sim = start_sim(scenario::rack(2), fast_timings());
    let m0 = sim.machines()[0].clone();
    let mappings = format!(
        r#"{{"{}": {{"hostname": "rack9-n1"}}}}"#,
        m0.interfaces[0].mac.to_ascii_uppercase()
    );
    let ctrl = start(
        &sim,
        &[
            ("lifecycle.mappings", &mappings),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(20)).await;
    let now = sim
        .machines()
        .into_iter()
        .find(|m| m.system_id == m0.system_id)
        .unwrap();
    assert_eq!(now.hostname, "rack9-n1");
    assert_eq!(ops_for(&sim, &m0.system_id), ["PUT", "commission"]);
    assert_eq!(
        ops_for(&sim, &sim.machines()[1].system_id),
        ["commission"],
        "unmapped machines keep their name"
    );
    assert_eq!(ctrl.board.get(&m0.system_id).unwrap().hostname, "rack9-n1");
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn auto_links_are_relinked_as_dhcp_before_allocating() {
    let sim = start_sim(scenario::rack(1), fast_timings());
    let id = sim.machines()[0].system_id.clone();
    let ctrl = start(&sim, &[("lifecycle.relink_dhcp", "true")]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    assert_eq!(
        ops_for(&sim, &id),
        [
            "commission",
            "unlink_subnet",
            "link_subnet",
            "allocate",
            "deploy"
        ]
    );
    let m = sim.machines()[0].clone();
    assert_eq!(m.status, NodeStatus::Deployed);
    let modes: Vec<&str> = m.interfaces[0]
        .links
        .iter()
        .map(|l| l.mode.as_str())
        .collect();
    assert_eq!(modes, ["dhcp"]);
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn the_power_helper_sets_amt_power_for_machines_without_a_power_type() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let helper = dir.path().join("power-helper");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{out}/args'\necho '{{\"name\":\"x\",\"mac_address\":\"'$3'\",\"power_password\":\"pw\",\"power_address\":\"10.9.9.9\"}}'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut rack = scenario::rack(1);
    rack[0].power_type = String::new();
    let sim = start_sim(rack, fast_timings());
    let m = sim.machines()[0].clone();
    let ctrl = start(
        &sim,
        &[
            ("lifecycle.power_helper_script", helper.to_str().unwrap()),
            ("lifecycle.power_helper_user", "admin"),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(20)).await;
    let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(
        args[..3],
        ["admin", m.hostname.as_str(), m.interfaces[0].mac.as_str()]
    );
    let now = sim.machines()[0].clone();
    assert_eq!(now.power_type, "amt");
    assert_eq!(
        now.power_parameters
            .get("power_address")
            .map(String::as_str),
        Some("10.9.9.9")
    );
    assert_eq!(now.status, NodeStatus::Ready);
    assert_eq!(ops_for(&sim, &m.system_id), ["PUT", "commission"]);
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn without_a_power_type_or_helper_the_machine_is_held_and_reported() {
    let mut rack = scenario::rack(1);
    rack[0].power_type = String::new();
    let sim = start_sim(rack, fast_timings());
    let id = sim.machines()[0].system_id.clone();
    let ctrl = start(&sim, &[]).await;
    settle(&ctrl, Duration::from_secs(10)).await;
    assert!(ops_for(&sim, &id).is_empty());
    assert_eq!(ctrl.board.get(&id).unwrap().step, "no power type");
    stop(ctrl).await;
    sim.stop().await;
}
