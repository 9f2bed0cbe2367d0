//! A MAAS region simulator and a simulated HTTP provisioner.
//!
//! It serves MAAS API 2.0 (and 1.9's 1.0) on a loopback port with MAAS's own answers,
//! including its refusals, checks OAuth like MAAS, moves machines through timed
//! transitions, logs every operation and status event, and injects faults on demand.
//! Tests, benchmarks, `maas-flow demo` and operators' dry runs all use it.
//!
//! # Layers
//!
//! Modules import in one direction only (`tests/layers.rs` checks there is no cycle):
//!
//! - [`world`]: state and MAAS's rules. Machines, timed transitions, the operation and
//!   event logs. Every operation answers a [`Reply`]: a machine, an interface, JSON, or a
//!   [`Refusal`] in MAAS's classes (`Forbidden`, `Conflict`, `Invalid { field, .. }`...).
//!   No HTTP and no rendering here.
//! - [`render`]: MAAS's JSON for the state (API 2.0 machines, 1.0 nodes, zones...);
//!   depends on [`world`] only.
//! - [`server`]: the HTTP face. Routing, OAuth, faults (an `InjectedFault` enum, drawn
//!   from [`Faults`]), the one mapping from a [`Refusal`] to a status and body, and the
//!   one place an op-log entry is written for a request (`Call::log`).
//! - [`inspect`]: `/_sim/`, mounted by [`Sim::start`] beside the API handler; it uses
//!   [`server`]'s state, never the reverse.
//! - [`images`], [`controllers`], [`scenario`], [`provisioner`]: boot images, region and
//!   rack controllers, scenario files, the simulated HTTP provisioner.
//!
//! The whole module (and `maas-flow demo`) is behind the default-on cargo feature `sim`.

#![warn(missing_docs)]

pub mod controllers;
pub mod images;
pub mod inspect;
pub mod provisioner;
pub mod render;
pub mod scenario;
pub mod server;
pub mod world;

use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, App, HttpServer};

pub use controllers::{ControllerKind, SimController};
pub use images::{BootImages, SeriesImage};
pub use provisioner::{ProvisionerConfig, ProvisionerRequest};
pub use server::{Faults, RedirectFault, SimConfig, SimState};
pub use world::{OpRecord, Refusal, Reply, SimMachine, Timings, World};

use crate::maas::NodeStatus;

/// The simulator's default API key (`consumer:token:secret`).
pub const DEFAULT_API_KEY: &str = "maasflowsim:simtoken:simsecret";

/// A running simulator.
pub struct Sim {
    /// `http://127.0.0.1:<port>/MAAS`, the value for `maas.url`.
    pub base_url: String,
    /// The address the simulator listens on.
    pub addr: std::net::SocketAddr,
    /// The state its handlers share, for tests that reach into the world.
    pub state: Arc<SimState>,
    server: actix_web::dev::ServerHandle,
}

impl Sim {
    /// Start serving on `cfg.listen` (an ephemeral loopback port by default). Must run
    /// inside an actix system.
    pub fn start(
        cfg: SimConfig,
        machines: Vec<SimMachine>,
        timings: Timings,
        provisioner: ProvisionerConfig,
    ) -> std::io::Result<Sim> {
        let workers = cfg.workers.max(1);
        let listen = cfg.listen;
        let mut world = World::new(machines, timings, cfg.seed);
        world.boot_images = cfg.boot_images.clone();
        let state = Arc::new(SimState::new(
            cfg.clone(),
            world,
            provisioner::ProvisionerState::new(provisioner, cfg.seed),
        ));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .service(web::scope("/_sim").default_service(web::to(inspect::route)))
                .default_service(web::to(server::handle))
        })
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(1);
        let (server, scheme) = match &cfg.tls {
            Some(tls) => (server.bind_rustls_0_23(listen, (**tls).clone())?, "https"),
            None => (server.bind(listen)?, "http"),
        };
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        // TLS certificates name `localhost`, not the address.
        let host = if cfg.tls.is_some() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        Ok(Sim {
            base_url: format!("{scheme}://{host}/MAAS"),
            addr,
            state,
            server: handle,
        })
    }

    /// Start with default settings on an ephemeral port.
    pub fn start_default(machines: Vec<SimMachine>, timings: Timings) -> std::io::Result<Sim> {
        Self::start(
            SimConfig::default(),
            machines,
            timings,
            ProvisionerConfig::default(),
        )
    }

    /// The API key (`consumer:token:secret`) the simulator accepts.
    pub fn api_key(&self) -> String {
        self.state.cfg.api_key.expose()
    }

    /// The simulated HTTP provisioner's URL, the value for `provision.url`.
    pub fn provisioner_url(&self) -> String {
        format!("http://{}/provisioner", self.addr)
    }

    /// The operation log so far.
    pub fn ops(&self) -> Vec<OpRecord> {
        self.state.world.lock().ops.clone()
    }

    /// Current machines, with due transitions applied.
    pub fn machines(&self) -> Vec<SimMachine> {
        let mut w = self.state.world.lock();
        w.advance(Instant::now());
        w.machines.clone()
    }

    /// A machine's status now (pending transitions applied), if it exists.
    pub fn status_of(&self, system_id: &str) -> Option<NodeStatus> {
        let mut w = self.state.world.lock();
        w.advance(Instant::now());
        w.find(system_id).map(|i| w.machines[i].status)
    }

    /// Change the world under the lock (tests: release a machine, add a tag...).
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let mut w = self.state.world.lock();
        w.advance(Instant::now());
        f(&mut w)
    }

    /// Replace the injected faults (as `PUT /_sim/faults` does).
    pub fn set_faults(&self, f: Faults) {
        self.state.faults.lock().0 = f;
    }

    /// Replace the simulated provisioner's behaviour.
    pub fn set_provisioner(&self, cfg: ProvisionerConfig) {
        self.state.provisioner.set_config(cfg);
    }

    /// Every request the simulated provisioner received, oldest first.
    pub fn provisioner_requests(&self) -> Vec<ProvisionerRequest> {
        self.state.provisioner.requests()
    }

    /// Successful mutating operations per (system_id, op, status before): more than one
    /// in any entry is a duplicate.
    pub fn duplicate_ops(&self) -> Vec<(String, String, String, usize)> {
        let mut counts: std::collections::BTreeMap<(String, String, String), usize> =
            Default::default();
        for o in self.ops() {
            if o.method != "GET" && (200..300).contains(&o.http_status) {
                let mut op = if o.op.is_empty() {
                    o.method.clone()
                } else {
                    o.op.clone()
                };
                if op.starts_with("set_") || o.method == "PUT" {
                    // Different annotations or fields are different operations.
                    op = format!("{op} {:?}", o.params);
                }
                let key = (
                    o.system_id.clone().unwrap_or_default(),
                    op,
                    o.status_before.clone().unwrap_or_default(),
                );
                *counts.entry(key).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|((a, b, c), n)| (a, b, c, n))
            .collect()
    }

    /// Stop serving and wait for the server to close.
    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}
