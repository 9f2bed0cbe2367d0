//! The actor system: [`Poller`] → [`Supervisor`] → one [`NodeActor`] per machine.
//!
//! Data flows one way. The poller publishes immutable snapshots (machines shared by
//! `Arc`, never copied per node); the supervisor filters and routes; each node actor
//! owns its machine, performs at most one operation at a time, and writes its row of
//! the status board. All actors live on one arbiter; heavy parsing runs on the blocking
//! pool so no actor is stalled by a large list.

pub mod node;
pub mod poller;
pub mod supervisor;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Message;
use tokio::sync::Semaphore;

pub use node::NodeActor;
pub use poller::Poller;
pub use supervisor::Supervisor;

use crate::lifecycle::Policy;
use crate::maas::{DeployParams, MaasClient, Machine};
use crate::metrics::Metrics;
use crate::profile::{Profile, Profiles};
use crate::provision::store::FileStore;
use crate::provision::Provisioner;
use crate::status::Board;

/// A set of machines read from MAAS at one moment.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Snapshot {
    pub machines: Arc<Vec<Arc<Machine>>>,
    /// When the request that produced it was sent: older than any write after it.
    pub fetched_at: Instant,
    /// A full list (machines absent from it are gone) or a delta (only these changed).
    pub full: bool,
}

/// One machine's latest observation, routed to its node actor.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Observed {
    pub machine: Arc<Machine>,
    pub fetched_at: Instant,
}

/// Stop once the operation in flight (if any) has finished.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// Stop at once, without waiting for anything in flight: this replica's HA leadership
/// lapsed and another may already act. Timers die with the actor; a running
/// provisioning is killed (its process group) and counted as interrupted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StandDown;

/// Stop polling (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopPolling;

/// Provisioning settings the node actors share.
pub struct ProvisionDeps {
    /// The global step (`[provision]`); `None` when only profiles provision.
    pub provisioner: Option<Provisioner>,
    /// Profiles with their own step, by profile name.
    pub by_profile: std::collections::HashMap<String, Provisioner>,
    pub permits: Arc<Semaphore>,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub max_attempts: u32,
    pub store: Option<Arc<FileStore>>,
}

/// Everything a node actor needs besides its machine; shared by all of them.
pub struct Deps {
    pub client: MaasClient,
    pub policy: Policy,
    pub deploy: DeployParams,
    /// Deploy profiles; each node actor picks its machine's.
    pub profiles: Arc<Profiles>,
    pub preview: bool,
    /// Caps mutating MAAS operations in flight across all machines (FIFO).
    pub op_permits: Arc<Semaphore>,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub provision: Option<ProvisionDeps>,
    /// Record outcomes as MAAS workload annotations (API 2.0).
    pub annotations: bool,
    pub power_helper: Option<PowerHelper>,
    pub board: Arc<Board>,
    pub metrics: Arc<Metrics>,
}

/// The original tool's power helper: `script user host mac...` printing
/// `{"name","mac_address","power_password","power_address"}`; sets AMT power.
#[derive(Debug, Clone)]
pub struct PowerHelper {
    pub script: std::path::PathBuf,
    pub user: String,
    pub timeout: Duration,
    /// What the helper's environment must not carry (the API key).
    pub scrub: crate::child::Scrub,
}

pub type SharedDeps = Rc<Deps>;

impl Deps {
    /// A controller that decides but never sends anything (preview mode against an
    /// unreachable address): what benchmarks and memory probes drive.
    pub fn offline(me: &str, board: Arc<Board>, metrics: Arc<Metrics>) -> Self {
        let client = MaasClient::new(
            crate::maas::ClientSettings {
                base: "http://127.0.0.1:9/MAAS/".into(),
                version: crate::maas::ApiVersion::V2,
                key: crate::maas::ApiKey::parse("offline:offline:offline").expect("literal key"),
                timeout: Duration::from_secs(1),
                list_timeout: Duration::from_secs(1),
                max_body: 1 << 20,
                hinted_retries: 0,
                max_retry_after: Duration::from_secs(1),
                tls: None,
            },
            metrics.clone(),
        );
        Deps {
            client,
            policy: Policy {
                me: me.into(),
                ..Policy::default()
            },
            deploy: DeployParams::default(),
            profiles: Arc::new(Profiles {
                list: Vec::new(),
                global: Arc::new(Profile::global(
                    crate::lifecycle::Target::Deployed,
                    DeployParams::default(),
                    Default::default(),
                    crate::profile::ProvisionTarget::None,
                )),
            }),
            preview: true,
            op_permits: Arc::new(Semaphore::new(1)),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(1),
            provision: None,
            annotations: true,
            power_helper: None,
            board,
            metrics,
        }
    }
}
