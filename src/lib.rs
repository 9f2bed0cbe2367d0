//! maas-flow: drives Canonical MAAS machines from power-on to deployed and provisioned.
//!
//! MAAS moves a machine forward only when asked. maas-flow asks: a [`actors::Poller`]
//! reads the machine list every period and publishes a snapshot; the
//! [`actors::Supervisor`] filters it and keeps one [`actors::NodeActor`] per machine;
//! each node actor asks the pure [`lifecycle::decide`] what to do next, performs that one
//! operation, and records the outcome. Post-deploy provisioning ([`provision`]) runs
//! inside the machine's own actor, so a slow host blocks only itself.
//!
//! Start with `lifecycle.rs` (the decision table), then `actors/`.
//!
//! The MAAS simulator ([`sim`]) and `maas-flow demo` are compiled only with the default
//! cargo feature `sim`; `--no-default-features` builds the controller alone.

pub mod actors;
pub mod backoff;
pub mod child;
pub mod config;
pub mod dashboard;
#[cfg(feature = "sim")]
pub mod demo;
pub mod filter;
pub mod ha;
pub mod http;
pub mod legacy_env;
pub mod lifecycle;
pub mod logging;
pub mod maas;
pub mod metrics;
pub mod process_metrics;
pub mod profile;
pub mod provision;
pub mod run;
pub mod shutdown;
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
pub mod status_cli;
pub mod tls;
