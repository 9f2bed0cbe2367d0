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

use crate::maas::Machine;

/// Annotation recording a successful provisioning (RFC 3339 time).
pub const ANNOTATION_PROVISIONED: &str = "maas_flow_provisioned";
/// Annotation recording failed attempts since the last success.
pub const ANNOTATION_ATTEMPTS: &str = "maas_flow_attempts";

/// The facts a provisioner receives about one machine. The first four are the
/// original tool's job (`id`, `name`, `ip`, `mac`); the rest were added for fleet
/// policies and are ignored by provisioners that do not know them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Job {
    #[serde(rename = "id")]
    pub system_id: String,
    #[serde(rename = "name")]
    pub hostname: String,
    pub ip: String,
    pub mac: String,
    pub fqdn: String,
    pub zone: String,
    pub pool: String,
    pub tags: Vec<String>,
    /// Every address MAAS reports, `ip` first.
    pub ips: Vec<String>,
    /// Every MAC address, boot interface first (`mac`).
    pub macs: Vec<String>,
    pub distro_series: String,
    /// The deploy profile's name; `null` when no profile matched.
    pub profile: Option<String>,
}

impl Job {
    /// The job for a deployed machine whose address is `ip`.
    pub fn for_machine(m: &Machine, ip: String, distro_series: &str, profile: Option<&str>) -> Job {
        let macs: Vec<String> = m.macs().iter().map(|s| s.to_string()).collect();
        let mut ips = vec![ip.clone()];
        let known = m.ip_addresses.iter().map(String::as_str).chain(
            m.interface_set
                .iter()
                .flat_map(|i| i.links.iter())
                .filter_map(|l| l.ip_address.as_deref()),
        );
        for a in known {
            if !ips.iter().any(|i| i == a) {
                ips.push(a.to_string());
            }
        }
        Job {
            system_id: m.system_id.clone(),
            hostname: m.hostname.clone(),
            mac: macs.first().cloned().unwrap_or_default(),
            ip,
            fqdn: m.fqdn.clone().unwrap_or_else(|| m.hostname.clone()),
            zone: m.zone_name().to_string(),
            pool: m.pool_name().to_string(),
            tags: m.tag_names.clone(),
            ips,
            macs,
            distro_series: m
                .distro_series
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(distro_series)
                .to_string(),
            profile: profile.map(str::to_string),
        }
    }

    /// The same facts as `MAAS_*` environment variables for a script; lists are
    /// comma-separated. Values are data, never interpreted by a shell; a NUL (which
    /// no environment can hold) is dropped.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let clean = |s: &str| s.replace('\0', "");
        vec![
            ("MAAS_SYSTEM_ID", clean(&self.system_id)),
            ("MAAS_HOSTNAME", clean(&self.hostname)),
            ("MAAS_IP", clean(&self.ip)),
            ("MAAS_MAC", clean(&self.mac)),
            ("MAAS_FQDN", clean(&self.fqdn)),
            ("MAAS_ZONE", clean(&self.zone)),
            ("MAAS_POOL", clean(&self.pool)),
            ("MAAS_TAGS", clean(&self.tags.join(","))),
            ("MAAS_IPS", clean(&self.ips.join(","))),
            ("MAAS_MACS", clean(&self.macs.join(","))),
            ("MAAS_DISTRO_SERIES", clean(&self.distro_series)),
            ("MAAS_PROFILE", clean(self.profile.as_deref().unwrap_or(""))),
        ]
    }
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
