//! Shared helpers for integration tests: a simulator on an ephemeral loopback port and
//! a controller pointed at it, with fast timings.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use maas_flow::config::{self, Config, Sources};
use maas_flow::run::Controller;
use maas_flow::sim::{ProvisionerConfig, Sim, SimConfig, SimMachine, Timings};

pub fn fast_timings() -> Timings {
    Timings {
        commission: Duration::from_millis(300),
        deploy: Duration::from_millis(400),
        release: Duration::from_millis(200),
        ..Timings::default()
    }
}

pub fn start_sim(machines: Vec<SimMachine>, timings: Timings) -> Sim {
    Sim::start(
        SimConfig {
            workers: 1,
            ..SimConfig::default()
        },
        machines,
        timings,
        ProvisionerConfig::default(),
    )
    .expect("simulator starts")
}

/// A validated config for `sim`, with test-speed defaults and `extra` on top.
pub fn config_for(sim: &Sim, extra: &[(&str, &str)]) -> Config {
    let mut o: Vec<(String, String)> = vec![
        ("maas.url".into(), sim.base_url.clone()),
        ("maas.api_key".into(), sim.api_key()),
        ("maas.period".into(), "250ms".into()),
        ("http.listen".into(), "127.0.0.1:0".into()),
        ("limits.retry_base".into(), "100ms".into()),
        ("limits.retry_cap".into(), "1s".into()),
        ("provision.retry_base".into(), "100ms".into()),
        ("provision.retry_cap".into(), "400ms".into()),
        ("provision.poll_interval".into(), "100ms".into()),
    ];
    // The provisioning journal goes to a fresh directory of this controller's own,
    // under cargo's scratch directory for tests (never the user's state directory).
    let state = tempfile::Builder::new()
        .prefix("state-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    o.push(("state_dir".into(), state.display().to_string()));
    o.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    config::load(&Sources {
        file: None,
        env: Vec::new(),
        overrides: o,
    })
    .expect("test config is valid")
}

pub async fn start(sim: &Sim, extra: &[(&str, &str)]) -> Controller {
    let cfg = config_for(sim, extra);
    maas_flow::run::start(&cfg)
        .await
        .expect("controller starts")
}

/// Poll `cond` every 20 ms until it holds, or panic after `limit` naming `what`.
pub async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn settle(ctrl: &Controller, limit: Duration) -> Duration {
    wait_for("every machine to settle", limit, || {
        ctrl.board.all_settled() && !ctrl.board.is_empty()
    })
    .await
}

/// Stop a controller's actors and listener (what a SIGTERM does).
pub async fn stop(ctrl: Controller) {
    maas_flow::shutdown::drain(&ctrl, Duration::from_secs(2)).await;
    ctrl.stop_http().await;
}

/// Mutating requests MAAS accepted, as (system_id, op).
pub fn accepted_ops(sim: &Sim) -> Vec<(String, String)> {
    sim.ops()
        .into_iter()
        .filter(|o| o.method != "GET" && (200..300).contains(&o.http_status))
        .map(|o| {
            (
                o.system_id.unwrap_or_default(),
                if o.op.is_empty() { o.method } else { o.op },
            )
        })
        .collect()
}

pub fn ops_for(sim: &Sim, system_id: &str) -> Vec<String> {
    accepted_ops(sim)
        .into_iter()
        .filter(|(s, _)| s == system_id)
        .map(|(_, o)| o)
        .collect()
}

pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/maas")
}
