//! The controller against the simulator over HTTP: convergence, exactly-once
//! operations, filters, preview, ownership, exotic statuses, and the API 1.0 adapter.

mod common;

use std::time::Duration;

use common::*;
use maas_flow::maas::NodeStatus;
use maas_flow::sim::{scenario, ProvisionerConfig, Sim, SimConfig};

#[actix_rt::test]
async fn mixed_rack_converges_to_deployed_with_each_operation_once() {
    let sim = start_sim(scenario::demo_rack("maas-flow"), fast_timings());
    let ctrl = start(&sim, &[]).await;
    settle(&ctrl, Duration::from_secs(30)).await;
    // Let a few more polls pass: nothing may be sent again.
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    let machines = sim.machines();
    for m in &machines {
        let ops = ops_for(&sim, &m.system_id);
        match m.hostname.as_str() {
            "lab-node-01" => assert!(ops.is_empty(), "other zone touched: {ops:?}"),
            "rack1-alice-01" => assert!(ops.is_empty(), "another user's machine touched: {ops:?}"),
            "rack1-broken-01" | "rack1-rescue-01" => {
                assert!(ops.is_empty(), "{}: {ops:?}", m.hostname)
            }
            "rack1-flaky-01" => {
                assert_eq!(ops, ["commission"]);
                assert_eq!(m.status, NodeStatus::FailedCommissioning);
            }
            h if h.starts_with("rack1-new-") => {
                let mut want = vec!["commission", "allocate", "deploy"];
                if ["rack1-new-04", "rack1-new-08", "rack1-new-12"].contains(&h) {
                    want.insert(0, "power_off");
                }
                assert_eq!(ops, want, "{h}");
                assert_eq!(m.status, NodeStatus::Deployed, "{h}");
                assert_eq!(m.owner.as_deref(), Some("maas-flow"));
                assert_eq!(m.distro_series, "jammy");
            }
            h if h.starts_with("rack1-ready-") => {
                assert_eq!(ops, ["allocate", "deploy"], "{h}");
                assert_eq!(m.status, NodeStatus::Deployed);
            }
            h if h.starts_with("rack1-alloc-") => assert_eq!(ops, ["deploy"], "{h}"),
            h if h.starts_with("rack1-deployed-") => assert!(ops.is_empty(), "{h}: {ops:?}"),
            other => panic!("unexpected machine {other}"),
        }
    }
    assert!(sim.duplicate_ops().is_empty(), "{:?}", sim.duplicate_ops());
    // The board shows why the held machines are held.
    let views = ctrl.board.all();
    let step = |h: &str| views.iter().find(|v| v.hostname == h).unwrap().step.clone();
    assert_eq!(step("rack1-alice-01"), "owned by alice");
    assert_eq!(step("rack1-broken-01"), "left alone (Broken)");
    assert!(views.iter().all(|v| v.hostname != "lab-node-01"));
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn regex_filters_include_then_exclude_and_zone_regex() {
    let mut rack = scenario::rack(6);
    rack[5].zone = "rack-07".into();
    let sim = start_sim(rack, fast_timings());
    let filter = r#"{"hosts":{"include":["node-.*"],"exclude":["node-0000[12]"]},"zones":{"include":["default","rack-0[0-9]"],"exclude":[]}}"#;
    let ctrl = start(&sim, &[("filter.json", filter)]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    for m in sim.machines() {
        let ops = ops_for(&sim, &m.system_id);
        if m.hostname == "node-00001" || m.hostname == "node-00002" {
            assert!(ops.is_empty(), "{} excluded but got {ops:?}", m.hostname);
            assert_eq!(m.status, NodeStatus::New);
        } else {
            assert_eq!(m.status, NodeStatus::Deployed, "{}", m.hostname);
        }
    }
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn plain_zone_include_is_filtered_by_maas() {
    let mut rack = scenario::rack(4);
    rack[0].zone = "lab".into();
    let sim = start_sim(rack, fast_timings());
    let ctrl = start(&sim, &[]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    assert_eq!(ctrl.board.len(), 3);
    assert_eq!(
        ctrl.board.global().machines_in_list,
        3,
        "MAAS filtered the list by zone=default"
    );
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn preview_sends_nothing_that_changes_maas() {
    let sim = start_sim(scenario::demo_rack("maas-flow"), fast_timings());
    let before: Vec<_> = sim
        .machines()
        .iter()
        .map(|m| (m.system_id.clone(), m.status))
        .collect();
    let ctrl = start(&sim, &[("preview", "true")]).await;
    wait_for("several polls", Duration::from_secs(10), || {
        ctrl.board.global().polls_ok >= 4
    })
    .await;
    let mutating: Vec<_> = sim
        .ops()
        .into_iter()
        .filter(|o| o.method != "GET")
        .collect();
    assert!(mutating.is_empty(), "preview sent {mutating:?}");
    let after: Vec<_> = sim
        .machines()
        .iter()
        .map(|m| (m.system_id.clone(), m.status))
        .collect();
    assert_eq!(before, after);
    let v = ctrl.board.all();
    assert!(
        v.iter().any(|m| m.step == "waiting after commission"),
        "preview records what it would do"
    );
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn statuses_16_to_22_and_unknown_numbers_are_left_alone() {
    let mut text = String::new();
    for code in 16..=22 {
        text.push_str(&format!(
            "[[machine]]\nhostname = \"exotic-{code}\"\nstatus = {code}\nowner = \"maas-flow\"\n"
        ));
    }
    text.push_str("[[machine]]\nhostname = \"future-99\"\nstatus = 99\n");
    text.push_str("[[machine]]\nhostname = \"plain\"\n");
    let sim = start_sim(scenario::parse_scenario(&text).unwrap(), fast_timings());
    let ctrl = start(&sim, &[]).await;
    // 17 and 19 wait for MAAS to move them, so the rack never fully settles here.
    let plain = sim
        .machines()
        .iter()
        .find(|m| m.hostname == "plain")
        .unwrap()
        .system_id
        .clone();
    wait_for(
        "the plain machine to deploy",
        Duration::from_secs(20),
        || sim.status_of(&plain) == Some(NodeStatus::Deployed),
    )
    .await;
    let polls = ctrl.board.global().polls_ok;
    wait_for("more polls", Duration::from_secs(5), || {
        ctrl.board.global().polls_ok >= polls + 3
    })
    .await;
    for m in sim.machines() {
        let ops = ops_for(&sim, &m.system_id);
        if m.hostname == "plain" {
            assert_eq!(m.status, NodeStatus::Deployed);
        } else {
            assert!(ops.is_empty(), "{} got {ops:?}", m.hostname);
        }
    }
    let v = ctrl.board.all();
    let future = v.iter().find(|m| m.hostname == "future-99").unwrap();
    assert_eq!(future.step, "left alone (unknown status 99)");
    assert_eq!(future.status_code, 99);
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn slow_transitions_and_fast_polls_send_each_operation_once() {
    let timings = maas_flow::sim::Timings {
        commission: Duration::from_millis(1500),
        deploy: Duration::from_millis(1500),
        ..fast_timings()
    };
    let sim = start_sim(scenario::rack(10), timings);
    let ctrl = start(&sim, &[("maas.period", "100ms")]).await;
    settle(&ctrl, Duration::from_secs(30)).await;
    assert!(
        ctrl.board.global().polls_ok >= 20,
        "many polls passed during the transitions"
    );
    for m in sim.machines() {
        assert_eq!(
            ops_for(&sim, &m.system_id),
            ["commission", "allocate", "deploy"]
        );
    }
    assert!(sim.duplicate_ops().is_empty());
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn target_ready_commissions_only() {
    let sim = start_sim(scenario::rack(3), fast_timings());
    let ctrl = start(&sim, &[("lifecycle.target", "ready")]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    for m in sim.machines() {
        assert_eq!(m.status, NodeStatus::Ready);
        assert_eq!(ops_for(&sim, &m.system_id), ["commission"]);
    }
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn api_v1_adapter_drives_the_rack_through_1_0_endpoints() {
    let sim = start_sim(scenario::rack(4), fast_timings());
    let ctrl = start(&sim, &[("maas.api_version", "1.0")]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    for m in sim.machines() {
        assert_eq!(m.status, NodeStatus::Deployed, "{}", m.hostname);
        assert_eq!(
            ops_for(&sim, &m.system_id),
            ["commission", "acquire", "start"]
        );
    }
    let ops = sim.ops();
    assert!(
        ops.iter().all(|o| o.path.starts_with("/MAAS/api/1.0/")),
        "only 1.0 paths"
    );
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn api_v1_against_a_modern_maas_fails_clearly() {
    let sim = Sim::start(
        SimConfig {
            api1: false,
            workers: 1,
            ..SimConfig::default()
        },
        scenario::rack(1),
        fast_timings(),
        ProvisionerConfig::default(),
    )
    .unwrap();
    let cfg = config_for(&sim, &[("maas.api_version", "1.0")]);
    let err = maas_flow::run::start(&cfg)
        .await
        .err()
        .expect("start fails");
    assert!(err.to_string().contains("410"), "{err}");
    sim.stop().await;
}

#[actix_rt::test]
async fn vanished_machine_is_dropped_and_new_machine_is_picked_up() {
    let sim = start_sim(scenario::rack(2), fast_timings());
    let ctrl = start(&sim, &[("lifecycle.target", "ready")]).await;
    settle(&ctrl, Duration::from_secs(20)).await;
    let gone = sim.machines()[0].system_id.clone();
    sim.with_world(|w| {
        w.machines[0].zone = "elsewhere".into();
        w.machines[0].invalidate();
        w.zones.push("elsewhere".into());
        let mut m = maas_flow::sim::SimMachine::new("newone", "node-new", 77);
        m.status = NodeStatus::New;
        w.add(m);
    });
    wait_for(
        "the moved machine to leave the board",
        Duration::from_secs(10),
        || ctrl.board.get(&gone).is_none(),
    )
    .await;
    wait_for(
        "the new machine to be commissioned",
        Duration::from_secs(10),
        || sim.status_of("newone") == Some(NodeStatus::Ready),
    )
    .await;
    stop(ctrl).await;
    sim.stop().await;
}
