//! `maas-flow demo`: the whole product in one command, against the built-in simulator.
//!
//! It starts a simulated region with a mixed rack and a simulated HTTP provisioner,
//! runs the real controller against it with fast timings, shows progress, and exits 0
//! with a summary once every selected machine is at its target or held for a person.

#![warn(missing_docs)]

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::config::{self, Sources};
use crate::sim::{scenario, ProvisionerConfig, Sim, SimConfig, Timings};

/// What `maas-flow demo` was asked for on its command line.
pub struct DemoOptions {
    /// Extra New machines on top of the mixed sample rack.
    pub extra_machines: usize,
    /// Give up (exit non-zero) if not every machine is done by then.
    pub timeout: Duration,
    /// Flag overrides (`key.path`, value) applied over the demo's defaults.
    pub overrides: Vec<(String, String)>,
}

/// Run the demo; returns the process exit code.
pub async fn run(opts: DemoOptions) -> i32 {
    let sim_cfg = SimConfig::default();
    let me = sim_cfg.username.clone();
    let mut rack = scenario::demo_rack(&me);
    let base = rack.len();
    for (k, mut m) in scenario::rack(base + opts.extra_machines)
        .into_iter()
        .skip(base)
        .enumerate()
    {
        m.hostname = format!("rack2-node-{:04}", k + 1);
        rack.push(m);
    }
    let timings = Timings {
        commission: Duration::from_secs(2),
        deploy: Duration::from_secs(3),
        release: Duration::from_secs(1),
        ..Timings::default()
    };
    let prov = ProvisionerConfig {
        duration: Duration::from_secs(1),
        ..ProvisionerConfig::default()
    };
    let sim = match Sim::start(sim_cfg, rack, timings, prov) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("maas-flow demo: cannot start the simulator: {e}");
            return 1;
        }
    };
    let state_dir = std::env::temp_dir().join(format!("maas-flow-demo-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(state_dir.clone());
    let mut overrides = vec![
        ("maas.url".to_string(), sim.base_url.clone()),
        ("maas.api_key".to_string(), sim.api_key()),
        ("maas.period".to_string(), "1s".to_string()),
        ("provision.url".to_string(), sim.provisioner_url()),
        ("provision.poll_interval".to_string(), "500ms".to_string()),
        ("provision.retry_base".to_string(), "1s".to_string()),
        ("http.listen".to_string(), "127.0.0.1:0".to_string()),
        ("limits.retry_base".to_string(), "500ms".to_string()),
        // The demo's region lives only as long as the demo: so does its journal.
        ("state_dir".to_string(), state_dir.display().to_string()),
    ];
    overrides.extend(opts.overrides);
    let cfg = match config::load(&Sources {
        file: None,
        env: Vec::new(),
        overrides,
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("maas-flow demo: {e}");
            return 2;
        }
    };
    println!(
        "maas-flow demo: simulated MAAS at {} with {} machines",
        sim.base_url,
        sim.machines().len()
    );
    let started = Instant::now();
    // The timeout bounds the whole run, start-up included.
    let ctrl = match actix_rt::time::timeout(opts.timeout, crate::run::start(&cfg)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            eprintln!("maas-flow demo: {e}");
            sim.stop().await;
            return 1;
        }
        Err(_) => {
            eprintln!(
                "maas-flow demo: the controller did not start within {:?}",
                opts.timeout
            );
            sim.stop().await;
            return 1;
        }
    };
    if let Some(a) = ctrl.http_addr {
        println!("dashboard: http://{a}/   metrics: http://{a}/metrics");
    }
    let live = std::io::stdout().is_terminal();
    // On a terminal one live line (indicatif: redrawn in place, cut to the terminal's
    // width); otherwise a plain line whenever the counts change.
    let bar = if live {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stdout());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed:>4}] {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        Some(bar)
    } else {
        None
    };
    let mut last_line = String::new();
    let done = loop {
        actix_rt::time::sleep(Duration::from_millis(if live { 250 } else { 1000 })).await;
        let line = ctrl.board.progress_line();
        let elapsed = started.elapsed().as_secs_f64();
        match &bar {
            Some(b) => {
                b.set_message(line.clone());
                b.tick();
            }
            None if line != last_line => println!("[{elapsed:6.1}s] {line}"),
            None => {}
        }
        last_line = line;
        if ctrl.board.all_settled() && !ctrl.board.is_empty() {
            break true;
        }
        if started.elapsed() > opts.timeout {
            break false;
        }
    };
    if let Some(b) = bar {
        b.finish_with_message(last_line.clone());
    }
    let _ = crate::shutdown::drain(&ctrl, Duration::from_secs(5)).await;
    let mut ms = ctrl.board.all();
    ms.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    println!("\n{}", machine_table(&ms));
    let summary = ctrl.board.summary();
    let ops = sim.ops();
    let mutating = ops
        .iter()
        .filter(|o| o.method != "GET" && (200..300).contains(&o.http_status))
        .count();
    let dups = sim.duplicate_ops();
    let at_target = summary.at_target;
    println!(
        "\n{} managed machines ({} not selected by the filter); {} at target, {} held for an operator; provisioning: {} running, {} queued, {} provisioned, {} failed; {} MAAS operations, {} duplicates; {:.1}s",
        ms.len(),
        sim.machines().len() - ms.len(),
        at_target,
        ms.len() - at_target,
        summary.provisioning.get("running").copied().unwrap_or(0),
        summary.queued,
        summary.provisioning.get("provisioned").copied().unwrap_or(0),
        summary.provisioning.get("failed").copied().unwrap_or(0)
            + summary.provisioning.get("gave_up").copied().unwrap_or(0),
        mutating,
        dups.len(),
        started.elapsed().as_secs_f64()
    );
    ctrl.stop_http().await;
    sim.stop().await;
    if done && dups.is_empty() {
        0
    } else {
        if !done {
            eprintln!(
                "maas-flow demo: not every machine settled within {:?}",
                opts.timeout
            );
        }
        1
    }
}

/// Removes the demo's temporary state directory when the demo ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The final table: one row per managed machine (comfy-table: column widths from the
/// content, no hand-counted padding).
pub fn machine_table(ms: &[crate::status::MachineView]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_HORIZONTAL_ONLY)
        .set_header(["hostname", "zone", "MAAS status", "provisioning", "next"]);
    for m in ms {
        t.add_row([
            m.hostname.as_str(),
            m.zone.as_str(),
            m.status.as_str(),
            m.provisioning.as_str(),
            m.step.as_str(),
        ]);
    }
    t
}
