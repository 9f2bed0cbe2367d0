//! `maas-sim`: a MAAS region simulator on loopback, for dry runs and tests.

use std::path::PathBuf;
use std::time::Duration;

// mimalloc: list parsing allocates per machine; it is ~10% faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use maas_flow::maas::ApiKey;
use maas_flow::sim::{
    scenario, BootImages, Faults, ProvisionerConfig, Sim, SimConfig, Timings, DEFAULT_API_KEY,
};

#[derive(Parser, Debug)]
#[command(
    name = "maas-sim",
    version,
    about = "A simulated MAAS region (API 2.0 and 1.0) and HTTP provisioner."
)]
struct Args {
    /// Address to listen on; only loopback unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1:5250")]
    listen: std::net::SocketAddr,
    #[arg(long)]
    allow_remote: bool,
    /// Generated machines in New (ignored with --scenario or --demo-rack).
    #[arg(long, default_value_t = 100)]
    machines: usize,
    /// TOML file listing machines (`[[machine]]` hostname, count, zone, pool, status, power_state, power_type, macs, ips, owner, tags, locked, fail_commission, fail_deploy, annotations) and controllers that log events (`[[controller]]` hostname, kind, event_every).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Serve the demo's mixed rack.
    #[arg(long)]
    demo_rack: bool,
    #[arg(long, default_value = DEFAULT_API_KEY)]
    api_key: String,
    /// The MAAS user the key belongs to.
    #[arg(long, default_value = "maas-flow")]
    username: String,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    commission_time: Duration,
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    deploy_time: Duration,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    release_time: Duration,
    /// Probability that commissioning fails.
    #[arg(long, default_value_t = 0.0)]
    fail_commission: f64,
    /// Probability that deployment fails.
    #[arg(long, default_value_t = 0.0)]
    fail_deploy: f64,
    /// Probability of an HTTP 500 per API request.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Probability of a 503 with Retry-After per API request.
    #[arg(long, default_value_t = 0.0)]
    unavailable_rate: f64,
    /// Probability of a dropped connection per API request.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Worker threads serving HTTP.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Serve the legacy API 1.0 ("on") or answer 410 like MAAS 2.0+ ("off").
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    api1: String,
    /// Serve users/?op=whoami on API 1.0 ("on"), or answer 400 like MAAS 1.9 ("off").
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    api1_whoami: String,
    /// Serve the simulated HTTP provisioner at /provisioner.
    #[arg(long)]
    provisioner: bool,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    provision_time: Duration,
    #[arg(long, default_value_t = 0.0)]
    provision_fail_rate: f64,
    /// System ids whose provisioning jobs never finish (repeatable).
    #[arg(long)]
    provision_hang: Vec<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Ubuntu series with synced boot images (comma-separated); deploying another one
    /// answers MAAS's 400 `{"distro_series": [...]}`.
    #[arg(long, value_delimiter = ',', default_value = "focal,jammy,noble")]
    series: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    if !a.listen.ip().is_loopback() && !a.allow_remote {
        eprintln!(
            "maas-sim: refusing to listen on {} (not loopback); pass --allow-remote to mean it",
            a.listen
        );
        return std::process::ExitCode::from(2);
    }
    let key = match ApiKey::parse(&a.api_key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("maas-sim: --api-key: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut controllers = Vec::new();
    let machines = if let Some(p) = &a.scenario {
        match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| scenario::parse_scenario_file(&t))
        {
            Ok(s) => {
                controllers = s.controllers;
                s.machines
            }
            Err(e) => {
                eprintln!("maas-sim: --scenario {}: {e}", p.display());
                return std::process::ExitCode::from(2);
            }
        }
    } else if a.demo_rack {
        scenario::demo_rack(&a.username)
    } else {
        scenario::rack(a.machines)
    };
    maas_flow::logging::init("info", maas_flow::logging::Format::Text);
    actix_rt::System::new().block_on(async move {
        let cfg = SimConfig {
            api_key: key.clone(),
            username: a.username.clone(),
            api1: a.api1 == "on",
            api1_whoami: a.api1_whoami == "on",
            seed: a.seed,
            listen: a.listen,
            workers: a.workers,
            tls: None,
            boot_images: BootImages::only(&a.series.iter().map(String::as_str).collect::<Vec<_>>()),
        };
        let timings = Timings {
            commission: a.commission_time,
            deploy: a.deploy_time,
            release: a.release_time,
            fail_commission: a.fail_commission,
            fail_deploy: a.fail_deploy,
        };
        let prov = ProvisionerConfig {
            duration: a.provision_time,
            fail_rate: a.provision_fail_rate,
            hang: a.provision_hang.iter().cloned().collect(),
            ..ProvisionerConfig::default()
        };
        let n = machines.len();
        let sim = match Sim::start(cfg, machines, timings, prov) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("maas-sim: cannot listen on {}: {e}", a.listen);
                return std::process::ExitCode::from(1);
            }
        };
        sim.with_world(|w| controllers.into_iter().for_each(|c| w.add_controller(c)));
        sim.set_faults(Faults {
            error_rate: a.error_rate,
            unavailable_rate: a.unavailable_rate,
            drop_rate: a.drop_rate,
            retry_after_secs: 2,
            ..Faults::default()
        });
        println!("maas-sim: {n} machines");
        println!("MAAS URL:  {}", sim.base_url);
        println!("API key:   {}", key.expose());
        if a.provisioner {
            println!("provisioner: {}", sim.provisioner_url());
        }
        println!(
            "inspect:   http://{}/_sim/machines  http://{}/_sim/ops",
            sim.addr, sim.addr
        );
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        sim.stop().await;
        std::process::ExitCode::SUCCESS
    })
}
