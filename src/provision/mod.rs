//! Post-deploy provisioning: the operator's own step, run once per deployment.
//!
//! One [`Provisioner`] with two forms: a script (argv, never a shell) and an HTTP
//! provisioner (POST a job, poll it). Each run happens inside the machine's own node
//! actor under a global concurrency cap, with a TTL; outcomes are made durable by the
//! node actor (MAAS workload annotations) and optionally by [`store::FileStore`].

pub mod http;
pub mod script;
pub mod store;

use std::time::Duration;

/// Annotation recording a successful provisioning (RFC 3339 time).
pub const ANNOTATION_PROVISIONED: &str = "maas_flow_provisioned";
/// Annotation recording failed attempts since the last success.
pub const ANNOTATION_ATTEMPTS: &str = "maas_flow_attempts";

/// The facts a provisioner receives about one machine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Job {
    #[serde(rename = "id")]
    pub system_id: String,
    #[serde(rename = "name")]
    pub hostname: String,
    pub ip: String,
    pub mac: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProvisionError {
    #[error("no IP address: MAAS lists none and `{0}` does not resolve")]
    NoIp(String),
    #[error("cannot start {path}: {reason}")]
    Spawn { path: String, reason: String },
    #[error("script exited with {status}; output tail: {tail}")]
    Exit { status: String, tail: String },
    #[error("still running after the TTL of {0:?}; killed")]
    Ttl(Duration),
    #[error("provisioner {url}: {reason}")]
    Http { url: String, reason: String },
    /// Not started: this replica is not (or no longer) the HA leader.
    #[error("not started: {0}")]
    Fenced(#[source] crate::ha::FenceError),
}

/// The configured post-deploy step.
pub enum Provisioner {
    Script(script::ScriptProvisioner),
    Http(http::HttpProvisioner),
}

impl Provisioner {
    pub async fn run(&self, job: &Job) -> Result<(), ProvisionError> {
        match self {
            Provisioner::Script(s) => s.run(job).await,
            Provisioner::Http(h) => h.run(job).await,
        }
    }

    /// Forget a machine's job when it leaves Deployed (HTTP: `DELETE {url}/{id}`).
    pub async fn clear(&self, system_id: &str) {
        if let Provisioner::Http(h) = self {
            h.clear(system_id).await;
        }
    }
}

/// The IP to hand to the provisioner: MAAS's first address, else the hostname resolved.
pub async fn choose_ip(maas_ip: Option<&str>, fqdn: &str) -> Result<String, ProvisionError> {
    if let Some(ip) = maas_ip {
        return Ok(ip.to_string());
    }
    match tokio::net::lookup_host((fqdn, 0)).await {
        Ok(mut addrs) => addrs
            .next()
            .map(|a| a.ip().to_string())
            .ok_or_else(|| ProvisionError::NoIp(crate::maas::escape::escape(fqdn))),
        Err(_) => Err(ProvisionError::NoIp(crate::maas::escape::escape(fqdn))),
    }
}
