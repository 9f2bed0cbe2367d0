//! The fault matrix: MAAS misbehaving in every way the fact sheet lists, and the
//! process itself killed. In every case: no panic, no operation MAAS accepted twice,
//! errors visible, and convergence once the fault ends.

mod common;

use std::time::{Duration, Instant};

use common::*;
use maas_flow::maas::NodeStatus;
use maas_flow::sim::{scenario, Faults};

async fn converge_under(faults: Faults, name: &str) {
    let sim = start_sim(scenario::rack(12), fast_timings());
    sim.set_faults(faults);
    let ctrl = start(
        &sim,
        &[
            ("maas.username", "maas-flow"),
            ("limits.retry_cap", "500ms"),
        ],
    )
    .await;
    wait_for(
        &format!("convergence under {name}"),
        Duration::from_secs(60),
        || {
            sim.machines()
                .iter()
                .all(|m| m.status == NodeStatus::Deployed)
        },
    )
    .await;
    let dups = sim.duplicate_ops();
    assert!(dups.is_empty(), "{name}: duplicates {dups:?}");
    let refused = sim.ops().iter().filter(|o| o.http_status >= 400).count();
    println!("{name}: converged; {refused} requests refused or failed on the way");
    sim.set_faults(Faults::default());
    settle(&ctrl, Duration::from_secs(10)).await;
    stop(ctrl).await;
    sim.stop().await;
}

fn f() -> Faults {
    Faults {
        retry_after_secs: 1,
        ..Faults::default()
    }
}

#[actix_rt::test]
async fn http_500s() {
    converge_under(
        Faults {
            error_rate: 0.3,
            ..f()
        },
        "500 at 30%",
    )
    .await;
}

#[actix_rt::test]
async fn unavailable_with_retry_after() {
    converge_under(
        Faults {
            unavailable_rate: 0.3,
            ..f()
        },
        "503 + Retry-After at 30%",
    )
    .await;
}

#[actix_rt::test]
async fn unavailable_without_hint() {
    converge_under(
        Faults {
            unavailable_no_hint_rate: 0.3,
            ..f()
        },
        "503 without Retry-After at 30%",
    )
    .await;
}

#[actix_rt::test]
async fn conflict_with_retry_after() {
    converge_under(
        Faults {
            conflict_retry_rate: 0.3,
            scope: Some("ops".into()),
            ..f()
        },
        "409 + Retry-After on ops at 30%",
    )
    .await;
}

#[actix_rt::test]
async fn dropped_connections() {
    converge_under(
        Faults {
            drop_rate: 0.3,
            ..f()
        },
        "dropped connections at 30%",
    )
    .await;
}

#[actix_rt::test]
async fn truncated_and_garbage_lists() {
    converge_under(
        Faults {
            truncate_list_rate: 0.3,
            garbage_list_rate: 0.2,
            ..f()
        },
        "truncated/garbage lists",
    )
    .await;
}

#[actix_rt::test]
async fn slow_answers_longer_than_the_period() {
    converge_under(
        Faults {
            slow_rate: 0.3,
            slow_ms: 700,
            ..f()
        },
        "answers slower than the period",
    )
    .await;
}

#[actix_rt::test]
async fn wrong_state_refusal_rereads_instead_of_resending() {
    let sim = start_sim(scenario::rack(1), fast_timings());
    let id = sim.machines()[0].system_id.clone();
    // Someone else commissions it between our list and our operation.
    let ctrl = start(
        &sim,
        &[
            ("maas.username", "maas-flow"),
            ("maas.period", "2s"),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    wait_for("commission", Duration::from_secs(10), || {
        sim.status_of(&id) != Some(NodeStatus::New)
    })
    .await;
    sim.with_world(|w| {
        let i = w.find(&id).unwrap();
        w.machines[i].status = NodeStatus::New;
        w.machines[i].invalidate();
        // A manual commission, racing ours.
        let _ = w.commission(i);
    });
    settle(&ctrl, Duration::from_secs(10)).await;
    assert!(sim.duplicate_ops().is_empty());
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn maas_down_for_several_periods_then_recovery_within_two_periods() {
    let sim = start_sim(scenario::rack(5), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("maas.username", "maas-flow"),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(10)).await;
    sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    wait_for("failures", Duration::from_secs(10), || {
        ctrl.board.global().consecutive_failures >= 4
    })
    .await;
    let g = ctrl.board.global();
    assert!(
        g.last_poll_error.as_deref().unwrap().contains("500"),
        "{g:?}"
    );
    // New work arrives while MAAS is down.
    sim.with_world(|w| w.add(maas_flow::sim::SimMachine::new("late01", "node-late", 99)));
    let ended = Instant::now();
    sim.set_faults(Faults::default());
    wait_for("recovery", Duration::from_secs(5), || {
        ctrl.board.global().consecutive_failures == 0
    })
    .await;
    let took = ended.elapsed();
    assert!(
        took <= Duration::from_millis(750),
        "recovered in {took:?}: within two periods (250 ms) plus a request"
    );
    wait_for("the late machine", Duration::from_secs(10), || {
        sim.status_of("late01") == Some(NodeStatus::Ready)
    })
    .await;
    assert!(sim.duplicate_ops().is_empty());
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn a_bad_key_is_a_clear_error_without_hammering() {
    let sim = start_sim(scenario::rack(2), fast_timings());
    let mut cfg = config_for(&sim, &[("maas.username", "maas-flow")]);
    cfg.api_key = maas_flow::maas::ApiKey::parse("wrong:key:here").unwrap();
    let ctrl = maas_flow::run::start(&cfg).await.unwrap();
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let g = ctrl.board.global();
    assert!(
        g.last_poll_error.as_deref().unwrap().contains("401"),
        "{g:?}"
    );
    let requests = sim.ops().len();
    assert!(
        requests <= 2_000 / 250 + 2,
        "{requests} requests in 2 s at a 250 ms period"
    );
    assert!(sim.ops().iter().all(|o| o.http_status == 401));
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn machine_json_with_surprises_skips_that_machine_only() {
    // A machine whose status is not a number is skipped with a warning; the rest proceed.
    let sim = start_sim(scenario::rack(3), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("maas.username", "maas-flow"),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(10)).await;
    stop(ctrl).await;
    let body = br#"[{"system_id":"ok1","hostname":"a","status":4,"zone":{"name":"default"}},
        {"system_id":"bad1","hostname":"b","status":"Ready","zone":{"name":"default"}},
        {"system_id":"bad2","hostname":null,"status":4,"interface_set":"eth0"},
        {"system_id":"ok2","hostname":"c","status":4,"interface_set":[{"id":1,"links":null,"mac_address":null}],"ip_addresses":[]}]"#;
    let parsed =
        maas_flow::maas::parse_machine_list(body, maas_flow::maas::ApiVersion::V2).unwrap();
    let ids: Vec<&str> = parsed
        .machines
        .iter()
        .map(|m| m.system_id.as_str())
        .collect();
    assert_eq!(ids, ["ok1", "ok2"]);
    assert_eq!(parsed.skipped.len(), 2);
    sim.stop().await;
}
