//! High availability: several replicas, exactly one of them acting.
//!
//! One maas-flow is a single point of failure, and two that both act send every
//! operation twice. Like controller-runtime and metal3's baremetal-operator, maas-flow
//! runs several replicas that campaign in an election held by a coordination service
//! (etcd); only the winner runs the poller, the supervisor and the node actors. The
//! others keep their status listener up and wait.
//!
//! - [`Election`]: the small trait a coordination backend implements (a lease that is
//!   renewed, a campaign that resolves when this replica leads, the current leader's
//!   name, a resignation). [`etcd::EtcdElection`] is the one implemented; a Kubernetes
//!   `Lease` (coordination.k8s.io/v1) is the natural second one (see the README).
//! - [`campaign`]: drives any [`Election`] on its own thread and runtime, so lease
//!   renewals never wait behind the actors, and keeps the [`Fence`] up to date.
//! - [`Fence`]: the deadline checked immediately before every MAAS request and every
//!   provisioning start.
//! - [`replica`]: the actor side: start the actors on winning, stop them at once when
//!   the fence lapses, resign on SIGTERM.

pub mod campaign;
pub mod etcd;
pub mod fence;
pub mod replica;

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;

pub use fence::{Fence, FenceError};

use crate::config::{bad, non_empty, ConfigError, HaSettings};

/// What this replica is doing in the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Acting: polling MAAS and moving machines. A replica without HA is always leader.
    #[default]
    Leader,
    /// Waiting to take over: holds no machine state, sends nothing.
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// The coordination backends `ha.backend` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Etcd,
}

/// etcd credentials: the password never prints.
#[derive(Clone)]
pub struct EtcdUser {
    pub name: String,
    pub password: String,
}

impl fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EtcdUser({}, ***)", self.name)
    }
}

/// PEM material for https:// etcd endpoints.
#[derive(Clone)]
pub struct EtcdTls {
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key, for etcd's `--client-cert-auth`.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EtcdTls(ca: {}, client certificate: {})",
            self.ca_pem.is_some(),
            self.client.is_some()
        )
    }
}

/// The validated `[ha]` section, when an election is configured.
#[derive(Debug, Clone)]
pub struct HaConfig {
    pub backend: Backend,
    pub endpoints: Vec<String>,
    pub election: String,
    pub lease_ttl: Duration,
    pub identity: String,
    pub user: Option<EtcdUser>,
    pub tls: Option<EtcdTls>,
}

/// `hostname-pid`: unique per process, readable in the status of every replica.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "maas-flow".into());
    format!("{host}-{}", std::process::id())
}

impl HaConfig {
    /// Validate `[ha]`; `None` when `backend = "none"`. Errors name the key.
    pub fn from_settings(s: &HaSettings) -> Result<Option<HaConfig>, ConfigError> {
        let backend = match s.backend.trim().to_ascii_lowercase().as_str() {
            "none" | "" => return Ok(None),
            "etcd" => Backend::Etcd,
            other => {
                return Err(bad(
                    "ha.backend",
                    format!("`{other}` is not a backend; use \"none\" or \"etcd\""),
                ))
            }
        };
        if s.etcd_endpoints.is_empty() {
            return Err(bad(
                "ha.etcd_endpoints",
                "must name at least one etcd URL, e.g. http://127.0.0.1:2379",
            ));
        }
        let mut tls_wanted = false;
        for e in &s.etcd_endpoints {
            let u = url::Url::parse(e)
                .map_err(|err| bad("ha.etcd_endpoints", format!("`{e}` is not a URL: {err}")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(bad(
                    "ha.etcd_endpoints",
                    format!("`{e}` must be an http:// or https:// URL with a host"),
                ));
            }
            tls_wanted |= u.scheme() == "https";
        }
        let election = s.election.trim();
        if election.is_empty() || election.contains(char::is_whitespace) {
            return Err(bad(
                "ha.election",
                "must be a non-empty name without spaces (one per MAAS region)",
            ));
        }
        if s.lease_ttl < Duration::from_secs(2) || s.lease_ttl.subsec_nanos() != 0 {
            return Err(bad(
                "ha.lease_ttl",
                format!(
                    "{:?} is not allowed: etcd leases are whole seconds, at least 2s",
                    s.lease_ttl
                ),
            ));
        }
        let identity = match non_empty(&s.identity) {
            Some(i) => i.to_string(),
            None => default_identity(),
        };
        let read = |key: &str, path: &str| {
            std::fs::read(path).map_err(|e| bad(key, format!("cannot read {path}: {e}")))
        };
        let user = match (
            non_empty(&s.etcd_username),
            non_empty(&s.etcd_password_file),
        ) {
            (None, None) => None,
            (Some(name), Some(pf)) => {
                let pw = read("ha.etcd_password_file", pf)?;
                let pw = String::from_utf8(pw)
                    .map_err(|_| bad("ha.etcd_password_file", format!("{pf} is not UTF-8 text")))?;
                Some(EtcdUser {
                    name: name.to_string(),
                    password: pw.trim_end_matches(['\n', '\r']).to_string(),
                })
            }
            (Some(_), None) => {
                return Err(bad(
                    "ha.etcd_password_file",
                    "ha.etcd_username is set: give the file holding its password",
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "ha.etcd_username",
                    "ha.etcd_password_file is set: give the user it belongs to",
                ))
            }
        };
        let ca_pem = match non_empty(&s.etcd_ca_file) {
            Some(p) => Some(read("ha.etcd_ca_file", p)?),
            None => None,
        };
        let client = match (non_empty(&s.etcd_cert_file), non_empty(&s.etcd_key_file)) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                Some((read("ha.etcd_cert_file", c)?, read("ha.etcd_key_file", k)?))
            }
            (Some(_), None) => {
                return Err(bad("ha.etcd_key_file", "ha.etcd_cert_file needs its key"))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "ha.etcd_cert_file",
                    "ha.etcd_key_file needs its certificate",
                ))
            }
        };
        let tls = if tls_wanted || ca_pem.is_some() || client.is_some() {
            if !tls_wanted {
                return Err(bad(
                    "ha.etcd_endpoints",
                    "TLS files are set but no endpoint is https://",
                ));
            }
            Some(EtcdTls { ca_pem, client })
        } else {
            None
        };
        Ok(Some(HaConfig {
            backend,
            endpoints: s.etcd_endpoints.clone(),
            election: election.to_string(),
            lease_ttl: s.lease_ttl,
            identity,
            user,
            tls,
        }))
    }
}

/// What went wrong talking to the coordination service.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("{what}: {source}")]
    Service {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what}: no answer within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("the lease expired: the coordination service no longer knows it")]
    LeaseExpired,
}

/// A coordination backend: everything the [`campaign`] driver needs, nothing more.
///
/// Futures are `'static` and `Send` so the driver can race a campaign against lease
/// renewals on its own runtime. A backend must make the lease, not the caller, decide
/// who leads: once the lease expires the service itself lets another replica win.
pub trait Election: Send + Sync + 'static {
    /// One lease-holding session; a new one after every loss.
    type Session: Clone + Send + Sync + 'static;

    /// Take a new lease of the configured TTL; returns the session and the TTL granted.
    fn open(&self) -> BoxFuture<'static, Result<(Self::Session, Duration), HaError>>;
    /// Renew the lease once; returns the TTL the service now gives it.
    fn renew(&self, s: &Self::Session) -> BoxFuture<'static, Result<Duration, HaError>>;
    /// Resolves once this session leads the election (may wait as long as another leads).
    fn campaign(&self, s: &Self::Session) -> BoxFuture<'static, Result<(), HaError>>;
    /// The current leader's identity, if any.
    fn leader(&self) -> BoxFuture<'static, Result<Option<String>, HaError>>;
    /// Give up leadership and the lease, so another replica wins at once.
    fn resign(&self, s: &Self::Session) -> BoxFuture<'static, Result<(), HaError>>;
}
