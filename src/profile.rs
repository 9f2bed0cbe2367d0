//! Deploy profiles: per-class deployment choices, picked per machine by the first
//! `[[profile]]` whose `match` holds.
//!
//! Operators run different machine classes differently (a `gpu` tag gets another
//! series, kernel, storage layout and provisioning step; a `storage` pool is only
//! commissioned). A profile names the class by hostname, zone and pool patterns (the
//! filter's matching rules) and exact MAAS tags; all given criteria must hold. Fields a
//! profile leaves unset come from `[lifecycle]`, `[commission]` and `[provision]`, so a
//! machine no profile matches is handled exactly as before profiles existed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::filter::{Filter, FilterError, FilterSpec, IncludeExclude};
use crate::lifecycle::Target;
use crate::maas::{CommissionParams, DeployParams, Machine};

/// A storage layout `op=set_storage_layout` accepts (MAAS 3.4,
/// `src/maasserver/storage_layouts.py`). MAAS allows it only while the machine is
/// Ready, and commissioning resets it, so it is set after each commissioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageLayout {
    Flat,
    Lvm,
    Bcache,
    Vmfs6,
    Vmfs7,
    Custom,
    Blank,
}

impl StorageLayout {
    pub const ALL: [StorageLayout; 7] = [
        StorageLayout::Flat,
        StorageLayout::Lvm,
        StorageLayout::Bcache,
        StorageLayout::Vmfs6,
        StorageLayout::Vmfs7,
        StorageLayout::Custom,
        StorageLayout::Blank,
    ];

    /// MAAS's name for the layout (the `storage_layout` form value).
    pub fn as_str(self) -> &'static str {
        match self {
            StorageLayout::Flat => "flat",
            StorageLayout::Lvm => "lvm",
            StorageLayout::Bcache => "bcache",
            StorageLayout::Vmfs6 => "vmfs6",
            StorageLayout::Vmfs7 => "vmfs7",
            StorageLayout::Custom => "custom",
            StorageLayout::Blank => "blank",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s.trim())
    }
}

/// Which machines a profile is for; every criterion given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchSpec {
    /// Hostname patterns (any may match).
    pub hosts: Vec<String>,
    /// Zone name patterns.
    pub zones: Vec<String>,
    /// Resource pool name patterns.
    pub pools: Vec<String>,
    /// MAAS tag names (the machine needs any of them).
    pub tags: Vec<String>,
}

/// One `[[profile]]` table as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileSpec {
    pub name: String,
    #[serde(rename = "match")]
    pub matches: MatchSpec,
    /// `deployed` or `ready`.
    pub target: Option<String>,
    pub distro_series: Option<String>,
    pub hwe_kernel: Option<String>,
    /// Inline cloud-init user data, or `@file`.
    pub user_data: Option<String>,
    pub storage_layout: Option<String>,
    pub enable_hw_sync: Option<bool>,
    pub ephemeral_deploy: Option<bool>,
    pub commissioning_scripts: Option<Vec<String>>,
    pub testing_scripts: Option<Vec<String>>,
    pub skip_bmc_config: Option<bool>,
    pub provision_script: Option<String>,
    pub provision_url: Option<String>,
}

/// Where a profile's post-deploy step goes (resolved; `None` = no step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionTarget {
    None,
    Script(std::path::PathBuf),
    Http(String),
}

/// A profile with every field resolved against the global settings.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile's name; empty for the global settings (no profile matched).
    pub name: String,
    /// `None` for the global settings.
    matcher: Option<Filter>,
    pub target: Target,
    pub deploy: DeployParams,
    pub commission: CommissionParams,
    pub storage_layout: Option<StorageLayout>,
    pub provision: ProvisionTarget,
    /// The profile sets its own provisioning step (else the global one applies).
    pub own_provisioner: bool,
}

impl Profile {
    /// The global settings as a profile: what machines no profile matches get.
    pub fn global(
        target: Target,
        deploy: DeployParams,
        commission: CommissionParams,
        provision: ProvisionTarget,
    ) -> Self {
        Profile {
            name: String::new(),
            matcher: None,
            target,
            deploy,
            commission,
            storage_layout: None,
            provision,
            own_provisioner: false,
        }
    }

    /// Whether this profile's `match` holds for a machine with these facts.
    pub fn matches(&self, hostname: &str, zone: &str, pool: &str, tags: &[String]) -> bool {
        match &self.matcher {
            None => true,
            Some(f) => f.matches(hostname, zone) && f.pool_and_tags(pool, tags),
        }
    }

    /// Whether post-deploy provisioning runs for machines of this profile.
    pub fn provisioning(&self) -> bool {
        self.provision != ProvisionTarget::None
    }

    /// The name shown on the status board; `None` without a profile.
    pub fn label(&self) -> Option<&str> {
        (!self.name.is_empty()).then_some(self.name.as_str())
    }
}

/// A problem in one profile: which key (`match.hosts`, `storage_layout`...) and why.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ProfileError {
    /// The key under the profile's table, e.g. `match.hosts`.
    pub key: String,
    pub problem: String,
}

fn bad(key: &str, problem: impl Into<String>) -> ProfileError {
    ProfileError {
        key: key.into(),
        problem: problem.into(),
    }
}

/// Compile a `match`: empty criteria place no constraint, so empty host and zone lists
/// become "everything" (the filter's include lists would otherwise decide).
fn matcher(m: &MatchSpec) -> Result<Filter, ProfileError> {
    let all = |v: &Vec<String>| {
        if v.is_empty() {
            vec![".*".to_string()]
        } else {
            v.clone()
        }
    };
    let spec = FilterSpec {
        hosts: IncludeExclude {
            include: all(&m.hosts),
            exclude: vec![],
        },
        zones: IncludeExclude {
            include: all(&m.zones),
            exclude: vec![],
        },
        pools: IncludeExclude {
            include: m.pools.clone(),
            exclude: vec![],
        },
        tags: IncludeExclude {
            include: m.tags.clone(),
            exclude: vec![],
        },
    };
    Filter::new(spec).map_err(|e| match &e {
        FilterError::Regex { list, .. } => {
            let key = list.split('.').next().unwrap_or(list);
            bad(&format!("match.{key}"), e.to_string())
        }
        _ => bad("match", e.to_string()),
    })
}

/// Read `user_data` given inline or as `@file` (environment variables expanded).
pub fn load_user_data(v: &str) -> Result<String, String> {
    match v.trim().strip_prefix('@') {
        Some(p) => {
            let p = crate::filter::expand_env(p);
            std::fs::read_to_string(&p).map_err(|e| format!("cannot read {p}: {e}"))
        }
        None => Ok(v.to_string()),
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Resolve one profile against the global settings.
pub fn resolve(spec: &ProfileSpec, global: &Profile) -> Result<Profile, ProfileError> {
    if spec.name.trim().is_empty() {
        return Err(bad("name", "every profile needs a name"));
    }
    let matcher = matcher(&spec.matches)?;
    let target = match non_empty(&spec.target) {
        None => global.target,
        Some("deployed") => Target::Deployed,
        Some("ready") => Target::Ready,
        Some(other) => {
            return Err(bad(
                "target",
                format!("`{other}` is not a target; use \"deployed\" or \"ready\""),
            ))
        }
    };
    let mut deploy = global.deploy.clone();
    if let Some(s) = non_empty(&spec.distro_series) {
        if s.contains(char::is_whitespace) {
            return Err(bad("distro_series", "must not contain spaces"));
        }
        deploy.distro_series = s.to_string();
    }
    if let Some(k) = non_empty(&spec.hwe_kernel) {
        deploy.hwe_kernel = Some(k.to_string());
    }
    if let Some(u) = non_empty(&spec.user_data) {
        deploy.user_data = Some(load_user_data(u).map_err(|e| bad("user_data", e))?);
    }
    if spec.enable_hw_sync.is_some() {
        deploy.enable_hw_sync = spec.enable_hw_sync;
    }
    if spec.ephemeral_deploy.is_some() {
        deploy.ephemeral_deploy = spec.ephemeral_deploy;
    }
    let storage_layout = match non_empty(&spec.storage_layout) {
        None => None,
        Some(l) => Some(StorageLayout::parse(l).ok_or_else(|| {
            let names: Vec<&str> = StorageLayout::ALL.iter().map(|l| l.as_str()).collect();
            bad(
                "storage_layout",
                format!("`{l}` is not a MAAS storage layout ({})", names.join(", ")),
            )
        })?),
    };
    let mut commission = global.commission.clone();
    if let Some(s) = &spec.commissioning_scripts {
        commission.commissioning_scripts = Some(s.clone());
    }
    if let Some(s) = &spec.testing_scripts {
        commission.testing_scripts = Some(s.clone());
    }
    if spec.skip_bmc_config.is_some() {
        commission.skip_bmc_config = spec.skip_bmc_config;
    }
    let (provision, own) = match (
        non_empty(&spec.provision_script),
        non_empty(&spec.provision_url),
    ) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "provision_script",
                "set either provision_script or provision_url, not both",
            ))
        }
        (Some(p), None) => {
            let path = std::path::PathBuf::from(p);
            if !path.is_file() {
                return Err(bad(
                    "provision_script",
                    format!("{p} does not exist or is not a file"),
                ));
            }
            (ProvisionTarget::Script(path), true)
        }
        (None, Some(u)) => {
            let parsed = url::Url::parse(u)
                .map_err(|e| bad("provision_url", format!("`{u}` is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(bad(
                    "provision_url",
                    format!("`{u}` must be an http:// or https:// URL with a host"),
                ));
            }
            (
                ProvisionTarget::Http(u.trim_end_matches('/').to_string()),
                true,
            )
        }
        (None, None) => (global.provision.clone(), false),
    };
    Ok(Profile {
        name: spec.name.trim().to_string(),
        matcher: Some(matcher),
        target,
        deploy,
        commission,
        storage_layout,
        provision,
        own_provisioner: own,
    })
}

/// The ordered profiles and the global fallback.
#[derive(Debug, Clone)]
pub struct Profiles {
    pub list: Vec<Arc<Profile>>,
    pub global: Arc<Profile>,
}

impl Profiles {
    /// The first profile whose `match` holds, else the global settings.
    pub fn pick(&self, hostname: &str, zone: &str, pool: &str, tags: &[String]) -> &Arc<Profile> {
        self.list
            .iter()
            .find(|p| p.matches(hostname, zone, pool, tags))
            .unwrap_or(&self.global)
    }

    pub fn for_machine(&self, m: &Machine) -> &Arc<Profile> {
        self.pick(&m.hostname, m.zone_name(), m.pool_name(), &m.tag_names)
    }

    /// Any profile (or the global settings) runs a post-deploy step.
    pub fn any_provisioning(&self) -> bool {
        self.global.provisioning() || self.list.iter().any(|p| p.provisioning())
    }
}

/// `check-config --explain`'s argument: `HOSTNAME[,TAG...]`, where an item written
/// `zone=NAME` or `pool=NAME` gives the machine's zone or pool instead of a tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Example {
    pub hostname: String,
    pub zone: String,
    pub pool: String,
    pub tags: Vec<String>,
}

impl Example {
    pub fn parse(s: &str) -> Example {
        let mut items = s.split(',').map(str::trim);
        let mut e = Example {
            hostname: items.next().unwrap_or_default().to_string(),
            zone: "default".into(),
            pool: "default".into(),
            tags: Vec::new(),
        };
        for item in items.filter(|i| !i.is_empty()) {
            if let Some(z) = item.strip_prefix("zone=") {
                e.zone = z.to_string();
            } else if let Some(p) = item.strip_prefix("pool=") {
                e.pool = p.to_string();
            } else {
                e.tags.push(item.to_string());
            }
        }
        e
    }
}

impl Profiles {
    /// What `check-config --explain` prints for one example machine.
    pub fn explain(&self, e: &Example) -> String {
        let p = self.pick(&e.hostname, &e.zone, &e.pool, &e.tags);
        let who = format!(
            "{} (zone {}, pool {}, tags [{}])",
            e.hostname,
            e.zone,
            e.pool,
            e.tags.join(", ")
        );
        let mut out = match p.label() {
            Some(n) => format!("{who}: profile {n}\n"),
            None => format!("{who}: no profile matches; global settings\n"),
        };
        let t = match p.target {
            Target::Deployed => "deployed",
            Target::Ready => "ready",
        };
        out.push_str(&format!("  target = {t}\n"));
        if p.target == Target::Deployed {
            out.push_str(&format!("  distro_series = {}\n", p.deploy.distro_series));
            if let Some(k) = &p.deploy.hwe_kernel {
                out.push_str(&format!("  hwe_kernel = {k}\n"));
            }
            if let Some(u) = &p.deploy.user_data {
                out.push_str(&format!("  user_data = {} bytes\n", u.len()));
            }
        }
        if let Some(l) = p.storage_layout {
            out.push_str(&format!("  storage_layout = {}\n", l.as_str()));
        }
        match &p.provision {
            ProvisionTarget::None => {}
            ProvisionTarget::Script(s) => {
                out.push_str(&format!("  provision_script = {}\n", s.display()))
            }
            ProvisionTarget::Http(u) => out.push_str(&format!("  provision_url = {u}\n")),
        }
        out
    }
}
