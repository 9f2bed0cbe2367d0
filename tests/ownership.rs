//! Who acts on a machine, and when (issue 12 items 3 and 6), against the simulator over
//! HTTP with real provisioning scripts:
//!
//! - one actor's work per system_id across actor lifetimes: an empty or short full list,
//!   or a machine leaving the filter and coming back, never runs a second provisioning
//!   beside the first;
//! - ownership fails closed: locked machines, `owner: null` where MAAS always names
//!   an owner, and an owned Ready machine are held, never acted on.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use maas_flow::sim::{scenario, Faults, Sim, SimMachine};

/// A provisioning script that appends its system_id to `runs`, then takes `secs`.
fn slow_script(dir: &Path, secs: u32) -> PathBuf {
    let p = dir.join("prov.sh");
    let runs = dir.join("runs");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nsleep {secs}\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(v: &[String], id: &str) -> usize {
    v.iter().filter(|s| *s == id).count()
}

fn annotations_for(sim: &Sim, id: &str) -> usize {
    ops_for(sim, id)
        .iter()
        .filter(|o| o.starts_with("set_workload_annotations"))
        .count()
}

fn deployed_rack(n: usize) -> Vec<SimMachine> {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "[[machine]]\nhostname = \"node-{i}\"\nstatus = \"deployed\"\nowner = \"maas-flow\"\nips = [\"10.9.0.{}\"]\n",
            i + 1
        ));
    }
    scenario::parse_scenario(&text).unwrap()
}

/// Every machine provisioned exactly once and annotated exactly once.
fn assert_once_each(sim: &Sim, dir: &Path) {
    let r = runs(dir);
    for m in sim.machines() {
        assert_eq!(
            count(&r, &m.system_id),
            1,
            "{} provisioned {} times: {r:?}",
            m.system_id,
            count(&r, &m.system_id)
        );
        assert_eq!(
            annotations_for(sim, &m.system_id),
            1,
            "{} annotated more than once: {:?}",
            m.system_id,
            ops_for(sim, &m.system_id)
        );
    }
}

/// Run a Deployed rack with slow provisioning, serve one faulty full list mid-run, and
/// check each machine is provisioned and annotated once; returns the controller's
/// count of suspect lists.
async fn run_with_list_fault(fault: Faults, machines: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let script = slow_script(dir.path(), 3);
    let sim = start_sim(deployed_rack(machines), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("provision.script", &script.display().to_string()),
            ("events.enabled", "false"),
        ],
    )
    .await;
    wait_for(
        "every provisioning run to start",
        Duration::from_secs(30),
        || runs(dir.path()).len() >= machines,
    )
    .await;
    // Mid-provisioning, one full list comes back empty or short.
    sim.set_faults(fault);
    wait_for(
        "the faulty list to be served",
        Duration::from_secs(30),
        || {
            let f = &sim.state.faults.lock().0;
            !f.empty_list_once && f.short_list_once == 0
        },
    )
    .await;
    wait_for("every machine provisioned", Duration::from_secs(40), || {
        sim.machines()
            .iter()
            .all(|m| annotations_for(&sim, &m.system_id) > 0)
    })
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    // Several more lists: a duplicate would have started by now.
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    assert_once_each(&sim, dir.path());
    assert!(sim.duplicate_ops().is_empty(), "{:?}", sim.duplicate_ops());
    let suspect = suspect_lists(&ctrl);
    stop(ctrl).await;
    sim.stop().await;
    suspect
}

fn suspect_lists(ctrl: &maas_flow::run::Controller) -> f64 {
    ctrl.metrics
        .render("")
        .lines()
        .find_map(|l| l.strip_prefix("maas_flow_suspect_lists_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Issue 12 item 3: one empty full list used to retire every actor while their scripts
/// ran, and the next list started new actors that provisioned every machine again.
#[actix_rt::test]
async fn an_empty_list_mid_provisioning_provisions_and_annotates_each_machine_once() {
    let suspect = run_with_list_fault(
        Faults {
            empty_list_once: true,
            ..Faults::default()
        },
        4,
    )
    .await;
    assert_eq!(suspect, 1.0, "the empty list is counted as suspect");
}

/// A short list (the first 3 of 4 machines) drops one machine for one list: it is not
/// forgotten after one absence, and never provisioned twice.
#[actix_rt::test]
async fn a_short_list_mid_provisioning_provisions_each_machine_once() {
    let suspect = run_with_list_fault(
        Faults {
            short_list_once: 3,
            ..Faults::default()
        },
        4,
    )
    .await;
    assert_eq!(suspect, 0.0, "one machine of four missing is not suspect");
}

/// Machines really deleted in bulk (more than half at once) make a suspect list: they
/// are read one by one, and forgotten on MAAS's 404; the rest stay managed.
#[actix_rt::test]
async fn machines_deleted_in_bulk_are_forgotten_after_a_404() {
    let sim = start_sim(scenario::rack(3), fast_timings());
    let ctrl = start(
        &sim,
        &[("lifecycle.target", "ready"), ("events.enabled", "false")],
    )
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    let ids: Vec<String> = sim.machines().iter().map(|m| m.system_id.clone()).collect();
    sim.with_world(|w| {
        w.machines.truncate(1);
        w.index.retain(|_, i| *i < 1);
    });
    wait_for(
        "the deleted machines to be forgotten",
        Duration::from_secs(20),
        || ctrl.board.len() == 1,
    )
    .await;
    assert!(ctrl.board.get(&ids[0]).is_some());
    assert_eq!(suspect_lists(&ctrl), 1.0);
    let not_found: Vec<String> = sim
        .ops()
        .into_iter()
        .filter(|o| o.method == "GET" && o.http_status == 404)
        .filter_map(|o| o.system_id)
        .collect();
    for id in &ids[1..] {
        assert!(not_found.contains(id), "{id} read directly: {not_found:?}");
    }
    stop(ctrl).await;
    sim.stop().await;
}

/// A machine that leaves the filter (renamed) while its provisioning runs, and comes
/// back before the run ends, is not handed to a second actor while the first still runs.
#[actix_rt::test]
async fn leaving_the_filter_and_coming_back_does_not_provision_twice() {
    let dir = tempfile::tempdir().unwrap();
    let script = slow_script(dir.path(), 4);
    let sim = start_sim(deployed_rack(2), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("provision.script", &script.display().to_string()),
            ("events.enabled", "false"),
            (
                "filter.json",
                r#"{"hosts": {"include": ["^node-[0-9]+$"]}, "zones": {"include": ["default"]}}"#,
            ),
        ],
    )
    .await;
    wait_for("both runs to start", Duration::from_secs(30), || {
        runs(dir.path()).len() >= 2
    })
    .await;
    let id = sim.machines()[0].system_id.clone();
    let rename = |to: &str| {
        let to = to.to_string();
        sim.with_world(|w| {
            let i = w.find(&id).unwrap();
            w.machines[i].hostname = to;
            w.machines[i].invalidate();
        })
    };
    rename("away-0");
    wait_for(
        "the machine to leave the managed set",
        Duration::from_secs(20),
        || ctrl.board.get(&id).is_none(),
    )
    .await;
    rename("node-0");
    wait_for("both machines annotated", Duration::from_secs(40), || {
        sim.machines()
            .iter()
            .all(|m| annotations_for(&sim, &m.system_id) > 0)
    })
    .await;
    wait_for(
        "the machine to be managed again",
        Duration::from_secs(20),
        || ctrl.board.get(&id).is_some_and(|v| v.settled),
    )
    .await;
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    assert_once_each(&sim, dir.path());
    stop(ctrl).await;
    sim.stop().await;
}

/// The same when the operator's filter changes (a reload) to drop a machine and back
/// while its provisioning runs.
#[actix_rt::test]
async fn a_filter_reloaded_out_and_back_does_not_provision_twice() {
    let dir = tempfile::tempdir().unwrap();
    let script = slow_script(dir.path(), 4);
    let script = script.display().to_string();
    let sim = start_sim(deployed_rack(2), fast_timings());
    let cfg = |filter: &str| {
        config_for(
            &sim,
            &[
                ("provision.script", &script),
                ("events.enabled", "false"),
                ("filter.json", filter),
            ],
        )
    };
    // As in the original tool, a JSON filter selects nothing in a dimension it leaves out.
    let all =
        cfg(r#"{"hosts": {"include": ["^node-[0-9]+$"]}, "zones": {"include": ["^default$"]}}"#);
    let without_0 = cfg(
        r#"{"hosts": {"include": ["^node-[0-9]+$"], "exclude": ["^node-0$"]}, "zones": {"include": ["^default$"]}}"#,
    );
    let ctrl = maas_flow::run::start(&all).await.unwrap();
    wait_for("both runs to start", Duration::from_secs(30), || {
        runs(dir.path()).len() >= 2
    })
    .await;
    let id = sim
        .machines()
        .into_iter()
        .find(|m| m.hostname == "node-0")
        .unwrap()
        .system_id;
    assert!(ctrl.reload(&all, &without_0).is_empty());
    wait_for(
        "the machine to leave the managed set",
        Duration::from_secs(20),
        || ctrl.board.get(&id).is_none(),
    )
    .await;
    assert!(ctrl.reload(&without_0, &all).is_empty());
    wait_for("both machines annotated", Duration::from_secs(40), || {
        sim.machines()
            .iter()
            .all(|m| annotations_for(&sim, &m.system_id) > 0)
    })
    .await;
    wait_for(
        "the machine to be managed again",
        Duration::from_secs(20),
        || ctrl.board.get(&id).is_some_and(|v| v.settled),
    )
    .await;
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    assert_once_each(&sim, dir.path());
    stop(ctrl).await;
    sim.stop().await;
}

/// Issue 12 item 6: act only on machines positively ours. A locked machine is neither
/// provisioned nor annotated; `owner: null` on Allocated or Deployed is not ours; a
/// Ready machine with an owner (anyone's) is not allocated.
#[actix_rt::test]
async fn ownership_fails_closed_for_locked_ownerless_and_owned_ready_machines() {
    let dir = tempfile::tempdir().unwrap();
    let script = slow_script(dir.path(), 0);
    let text = r#"
[[machine]]
hostname = "ours"
status = "deployed"
owner = "maas-flow"
ips = ["10.9.0.1"]

[[machine]]
hostname = "locked"
status = "deployed"
owner = "maas-flow"
locked = true
ips = ["10.9.0.2"]

[[machine]]
hostname = "deployed-no-owner"
status = "deployed"
ips = ["10.9.0.3"]

[[machine]]
hostname = "allocated-no-owner"
status = "allocated"

[[machine]]
hostname = "ready-owned-by-alice"
status = "ready"
owner = "alice"

[[machine]]
hostname = "ready-owned-by-us"
status = "ready"
owner = "maas-flow"
"#;
    let sim = start_sim(scenario::parse_scenario(text).unwrap(), fast_timings());
    let ctrl = start(&sim, &[("provision.script", &script.display().to_string())]).await;
    settle(&ctrl, Duration::from_secs(30)).await;
    // More lists go by; nothing else may happen.
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let by_name = |h: &str| {
        sim.machines()
            .into_iter()
            .find(|m| m.hostname == h)
            .unwrap()
            .system_id
    };
    let ours = by_name("ours");
    assert_eq!(
        runs(dir.path()),
        vec![ours.clone()],
        "only ours is provisioned"
    );
    let touched: Vec<(String, String)> = accepted_ops(&sim)
        .into_iter()
        .filter(|(id, _)| *id != ours)
        .collect();
    assert!(
        touched.is_empty(),
        "held machines were touched: {touched:?}"
    );
    assert_eq!(annotations_for(&sim, &ours), 1);
    let step = |h: &str| ctrl.board.get(&by_name(h)).unwrap().step;
    assert_eq!(step("locked"), "locked");
    assert_eq!(step("deployed-no-owner"), "no owner in Deployed: not ours");
    assert_eq!(
        step("allocated-no-owner"),
        "no owner in Allocated: not ours"
    );
    assert_eq!(step("ready-owned-by-alice"), "Ready but owned by alice");
    assert_eq!(step("ready-owned-by-us"), "Ready but owned by maas-flow");
    for h in [
        "locked",
        "deployed-no-owner",
        "allocated-no-owner",
        "ready-owned-by-alice",
    ] {
        assert!(
            ctrl.board.get(&by_name(h)).unwrap().problem,
            "{h} is reported"
        );
    }
    stop(ctrl).await;
    sim.stop().await;
}
