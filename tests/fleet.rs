//! Fleet policies against the simulator: selection by MAAS tags and resource pools
//! (client-side and, when it cannot change the selection, server-side).

mod common;

use std::time::Duration;

use common::*;
use maas_flow::config::{self, Sources};
use maas_flow::sim::{scenario, SimMachine};

/// A controller from a TOML file plus the usual test overrides.
async fn start_toml(sim: &maas_flow::sim::Sim, toml: &str) -> maas_flow::run::Controller {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maas-flow.toml");
    std::fs::write(&path, toml).unwrap();
    let o: Vec<(String, String)> = [
        ("maas.url", sim.base_url.clone()),
        ("maas.api_key", sim.api_key()),
        ("maas.period", "250ms".into()),
        ("http.listen", "127.0.0.1:0".into()),
        ("limits.retry_base", "100ms".into()),
        ("limits.retry_cap", "1s".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let cfg = config::load(&Sources {
        file: Some(path),
        env: Vec::new(),
        overrides: o,
    })
    .expect("test config is valid");
    maas_flow::run::start(&cfg)
        .await
        .expect("controller starts")
}

/// Eight machines, each probing one rule of the tag and pool filter.
fn tagged_rack() -> Vec<SimMachine> {
    let mut rack = scenario::rack(8);
    let set = |m: &mut SimMachine, pool: &str, tags: &[&str]| {
        m.pool = pool.into();
        m.tags = tags.iter().map(|t| t.to_string()).collect();
    };
    set(&mut rack[0], "prod-a", &["gpu"]); // selected
    set(&mut rack[1], "prod-b", &["fast"]); // selected: any included tag
    set(&mut rack[2], "prod-a", &["gpu", "broken"]); // excluded tag
    set(&mut rack[3], "prod-old", &["gpu"]); // excluded pool
    set(&mut rack[4], "dev", &["gpu"]); // pool not included
    set(&mut rack[5], "prod-a", &[]); // no included tag
    set(&mut rack[6], "prod-a", &["gpu-2"]); // tags are exact names
    set(&mut rack[7], "prod-a", &["gpu"]);
    rack[7].zone = "other".into(); // zone not included
    rack
}

fn commissioned(sim: &maas_flow::sim::Sim) -> Vec<String> {
    let mut v: Vec<String> = accepted_ops(sim)
        .into_iter()
        .filter(|(_, op)| op == "commission")
        .map(|(id, _)| id)
        .collect();
    v.sort();
    v
}

async fn exactly_selected_move(sim: maas_flow::sim::Sim, ctrl: maas_flow::run::Controller) {
    let ids: Vec<String> = sim.machines().iter().map(|m| m.system_id.clone()).collect();
    settle(&ctrl, Duration::from_secs(30)).await;
    wait_for("two machines Ready", Duration::from_secs(30), || {
        sim.machines()
            .iter()
            .filter(|m| m.status == maas_flow::maas::NodeStatus::Ready)
            .count()
            == 2
    })
    .await;
    // A few more periods: nothing else may move.
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(commissioned(&sim), vec![ids[0].clone(), ids[1].clone()]);
    assert_eq!(accepted_ops(&sim).len(), 2, "{:?}", accepted_ops(&sim));
    let mut on_board: Vec<String> = ctrl.board.all().into_iter().map(|v| v.system_id).collect();
    on_board.sort();
    assert_eq!(on_board, vec![ids[0].clone(), ids[1].clone()]);
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn toml_tags_and_pools_select_exactly_the_matching_machines() {
    let sim = start_sim(tagged_rack(), fast_timings());
    let ctrl = start_toml(
        &sim,
        r#"
[lifecycle]
target = "ready"
[filter.hosts]
include = [".*"]
[filter.zones]
include = ["default"]
[filter.tags]
include = ["gpu", "fast"]
exclude = ["broken"]
[filter.pools]
include = ["prod-.*"]
exclude = ["prod-old"]
"#,
    )
    .await;
    exactly_selected_move(sim, ctrl).await;
}

#[actix_rt::test]
async fn json_filter_takes_tags_and_pools_too() {
    let sim = start_sim(tagged_rack(), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("lifecycle.target", "ready"),
            (
                "filter.json",
                r#"{"hosts":{"include":[".*"]},"zones":{"include":["default"]},
                    "tags":{"include":["gpu","fast"],"exclude":["broken"]},
                    "pools":{"include":["prod-.*"],"exclude":["prod-old"]}}"#,
            ),
        ],
    )
    .await;
    exactly_selected_move(sim, ctrl).await;
}

/// One included tag and exact pool names cannot change the selection when MAAS filters:
/// the list asks for them (`tags=`, `pool=`), and the selection is the same.
#[actix_rt::test]
async fn a_single_tag_and_exact_pools_are_filtered_by_maas() {
    let sim = start_sim(tagged_rack(), fast_timings());
    let ids: Vec<String> = sim.machines().iter().map(|m| m.system_id.clone()).collect();
    let ctrl = start(
        &sim,
        &[
            ("lifecycle.target", "ready"),
            (
                "filter.json",
                r#"{"hosts":{"include":[".*"]},"zones":{"include":["default"]},
                    "tags":{"include":["gpu"],"exclude":["broken"]},
                    "pools":{"include":["^prod-a$","^dev$"]}}"#,
            ),
        ],
    )
    .await;
    wait_for("two machines Ready", Duration::from_secs(30), || {
        sim.machines()
            .iter()
            .filter(|m| m.status == maas_flow::maas::NodeStatus::Ready)
            .count()
            == 2
    })
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    // rack[0] (prod-a, gpu) and rack[4] (dev, gpu); rack[7] is in another zone.
    assert_eq!(commissioned(&sim), vec![ids[0].clone(), ids[4].clone()]);
    let queries = sim.with_world(|w| w.list_queries.clone());
    let last = queries.back().expect("lists were read").clone();
    let has = |k: &str, v: &str| last.iter().any(|(a, b)| a == k && b == v);
    assert!(has("tags", "gpu"), "{last:?}");
    assert!(has("pool", "prod-a") && has("pool", "dev"), "{last:?}");
    assert!(!last.iter().any(|(k, _)| k == "not_tags"), "{last:?}");
    stop(ctrl).await;
    sim.stop().await;
}
