//! Settings: a TOML file, overridden by `MAAS_FLOW_*` environment variables, overridden
//! by flags; then validated into a [`Config`] before anything talks to MAAS.
//!
//! Every problem is reported as one [`ConfigError`] naming the key, and `main` exits 2.
//! The API key is held as an [`ApiKey`], which never prints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::filter::{Filter, FilterSpec, IncludeExclude};
use crate::lifecycle::{Policy, Target};
use crate::maas::{ApiKey, ApiVersion, CommissionParams, DeployParams};
use crate::profile::{Profile, ProfileSpec, Profiles, ProvisionTarget};

/// The default location of the API key in a container (a mounted secret).
pub const DEFAULT_KEY_FILE: &str = "/secrets/maas_api_key";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub maas: MaasSettings,
    pub filter: FilterSettings,
    pub lifecycle: LifecycleSettings,
    /// `op=commission` options for every machine (a profile may override the scripts
    /// and `skip_bmc_config`).
    pub commission: CommissionParams,
    /// Deploy profiles, in order: the first whose `match` holds applies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<ProfileSpec>,
    pub provision: ProvisionSettings,
    pub recovery: RecoverySettings,
    pub limits: LimitSettings,
    pub events: EventSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub tls: TlsSettings,
    pub ha: HaSettings,
    /// Log every action that would be taken; send no mutating request.
    pub preview: bool,
    /// How long in-flight operations may finish after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Where local durable state (the provisioning journal) lives. Unset: the
    /// platform's place, see [`default_state_dir`].
    pub state_dir: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaasSettings {
    /// Base URL of the region, ending in `/MAAS`.
    pub url: String,
    pub api_key: Option<String>,
    pub api_key_file: String,
    pub api_version: String,
    /// Our MAAS username; asked from MAAS (`whoami`) when unset.
    pub username: Option<String>,
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub list_timeout: Duration,
    /// Largest answer accepted, in MiB.
    pub max_body_mib: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSettings {
    pub hosts: FilterList,
    pub zones: FilterList,
    /// MAAS tag names (exact): any included tag selects, any excluded tag deselects.
    pub tags: IncludeExclude,
    /// Resource pool name patterns, searched for like zones.
    pub pools: IncludeExclude,
    /// The original tool's form: inline JSON or `@file`; replaces `hosts`/`zones`/`tags`/`pools`.
    pub json: Option<String>,
}

impl Default for FilterSettings {
    /// Every host in the zone named `default` ([`FilterSpec::default_zone`]).
    fn default() -> Self {
        let d = FilterSpec::default_zone();
        FilterSettings {
            hosts: FilterList {
                include: Some(d.hosts.include),
                exclude: d.hosts.exclude,
            },
            zones: FilterList {
                include: Some(d.zones.include),
                exclude: d.zones.exclude,
            },
            tags: d.tags,
            pools: d.pools,
            json: None,
        }
    }
}

/// One TOML filter list. A missing `include` takes the default (`[".*"]` for hosts,
/// `["^default$"]` for zones); an explicit `include = []` selects nothing, as an empty
/// include did in the original tool.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FilterList {
    pub include: Option<Vec<String>>,
    pub exclude: Vec<String>,
}

impl From<IncludeExclude> for FilterList {
    fn from(l: IncludeExclude) -> Self {
        FilterList {
            include: Some(l.include),
            exclude: l.exclude,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleSettings {
    /// `deployed` or `ready`.
    pub target: String,
    pub distro_series: String,
    pub user_data: Option<String>,
    pub hwe_kernel: Option<String>,
    /// MAC → hostname map, inline JSON or `@file` (`{"<mac>": {"hostname": "..."}}`).
    pub mappings: Option<String>,
    pub always_rename: bool,
    pub relink_dhcp: bool,
    pub power_helper_script: Option<String>,
    pub power_helper_user: Option<String>,
    pub skip_tag: Option<String>,
    /// Adding this MAAS tag to a machine that gave up provisioning or is quarantined
    /// starts it over; maas-flow removes the tag once it has acted on it.
    pub retry_tag: Option<String>,
    /// The MAAS tag maas-flow puts on a machine it quarantines (created if missing);
    /// removing it releases the quarantine. Empty disables it.
    pub quarantine_tag: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisionSettings {
    pub script: Option<String>,
    pub url: Option<String>,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// The first wait before asking about a new HTTP job; doubles up to `poll_interval`.
    #[serde(with = "humantime_serde")]
    pub first_poll: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    pub max_attempts: u32,
    pub max_concurrent: usize,
    /// The provisioning journal's file, instead of `journal.jsonl` under `state_dir`
    /// (kept from when this was the optional outcome file; an old file is migrated).
    pub state_file: Option<String>,
    /// Keep at most this many bytes of a script's output.
    pub output_limit: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RecoverySettings {
    pub recommission_attempts: u32,
    pub redeploy_attempts: u32,
    /// Erase disks when maas-flow releases a machine: `none`, `quick` or `secure`.
    pub erase: crate::maas::Erase,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Mutating MAAS operations in flight across all machines.
    pub max_ops_in_flight: usize,
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address of the status listener; empty disables it.
    pub listen: String,
    /// `/readyz` fails when no MAAS read (full list or event feed) has succeeded for
    /// this many periods (`maas.period`).
    pub unready_after_periods: u32,
}

/// HTTPS to MAAS and to the provisioner: system roots plus an optional CA file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Extra CA certificates (PEM) to trust, e.g. a private MAAS CA.
    pub ca_file: Option<String>,
}

/// High availability: several replicas, one leader elected on etcd (see `src/ha/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaSettings {
    /// `none` (one replica, today's behaviour) or `etcd`.
    pub backend: String,
    /// etcd client URLs; a list, or one string with commas (environment variables).
    #[serde(deserialize_with = "string_or_list")]
    pub etcd_endpoints: Vec<String>,
    /// The election's name in etcd: one election per MAAS region.
    pub election: String,
    /// The lease's time to live (whole seconds): how long a dead leader blocks failover.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// This replica's name in the election; hostname and pid when unset.
    pub identity: Option<String>,
    /// etcd user (role-based access control); the password is read from `etcd_password_file`.
    pub etcd_username: Option<String>,
    pub etcd_password_file: Option<String>,
    /// CA certificate (PEM) for https:// endpoints; the system roots when unset.
    pub etcd_ca_file: Option<String>,
    /// Client certificate and key (PEM) for etcd's `--client-cert-auth`.
    pub etcd_cert_file: Option<String>,
    pub etcd_key_file: Option<String>,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            backend: "none".into(),
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            election: "maas-flow".into(),
            lease_ttl: Duration::from_secs(15),
            identity: None,
            etcd_username: None,
            etcd_password_file: None,
            etcd_ca_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
        }
    }
}

/// A list of strings given either as a list (TOML) or as one comma-separated string
/// (an environment variable or a flag).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of URLs or one string of comma-separated URLs")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = a.next_element::<String>()? {
                out.push(s.trim().to_string());
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            maas: MaasSettings::default(),
            filter: FilterSettings::default(),
            lifecycle: LifecycleSettings::default(),
            commission: CommissionParams::default(),
            profile: Vec::new(),
            provision: ProvisionSettings::default(),
            recovery: RecoverySettings::default(),
            limits: LimitSettings::default(),
            events: EventSettings::default(),
            http: HttpSettings::default(),
            log: LogSettings::default(),
            tls: TlsSettings::default(),
            ha: HaSettings::default(),
            preview: false,
            shutdown_grace: Duration::from_secs(30),
            state_dir: None,
        }
    }
}

impl Default for MaasSettings {
    fn default() -> Self {
        MaasSettings {
            url: "http://localhost:5240/MAAS".into(),
            api_key: None,
            api_key_file: DEFAULT_KEY_FILE.into(),
            api_version: "2.0".into(),
            username: None,
            period: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            list_timeout: Duration::from_secs(120),
            max_body_mib: 512,
        }
    }
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        LifecycleSettings {
            target: "deployed".into(),
            distro_series: "jammy".into(),
            user_data: None,
            hwe_kernel: None,
            mappings: None,
            always_rename: false,
            relink_dhcp: false,
            power_helper_script: None,
            power_helper_user: None,
            skip_tag: Some("maas-flow-skip".into()),
            retry_tag: Some("maas-flow-retry".into()),
            quarantine_tag: Some("maas-flow-quarantine".into()),
        }
    }
}

impl Default for ProvisionSettings {
    fn default() -> Self {
        ProvisionSettings {
            script: None,
            url: None,
            ttl: Duration::from_secs(3600),
            poll_interval: None,
            first_poll: Duration::from_secs(1),
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(600),
            max_attempts: 5,
            max_concurrent: 32,
            state_file: None,
            output_limit: 64 * 1024,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_ops_in_flight: 16,
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(300),
        }
    }
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            enabled: true,
            interval: Duration::from_secs(2),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:9090".into(),
            unready_after_periods: 3,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// The shortest `maas.period` accepted. Shorter is a typo (`1ms` for `1m`): every
/// period costs the region a full list. The simulator tests run at 100 ms+.
pub const MIN_PERIOD: Duration = Duration::from_millis(100);

/// A configuration problem, naming the key.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("configuration error: `{key}`: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

/// One line per error, whatever the underlying library printed.
pub(crate) fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
    let problem: String = problem.into();
    ConfigError {
        key: key.to_string(),
        problem: problem.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Where the post-deploy step goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionerKind {
    None,
    Script(PathBuf),
    Http(String),
}

impl std::fmt::Display for ProvisionerKind {
    /// For the start-up line: a URL's user name and password are masked.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProvisionerKind::None => f.write_str("none"),
            ProvisionerKind::Script(p) => write!(f, "script {}", p.display()),
            ProvisionerKind::Http(u) => write!(f, "http {}", mask_userinfo(u)),
        }
    }
}

/// `scheme://user:password@host/...` shown as `scheme://***@host/...`. Works on text
/// that is not a valid URL too, since it also masks what error messages quote.
pub fn mask_userinfo(u: &str) -> String {
    let Some(scheme_end) = u.find("://").map(|i| i + 3) else {
        return u.to_string();
    };
    let rest = &u[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &u[..scheme_end], &rest[at + 1..]),
        None => u.to_string(),
    }
}

/// The validated configuration the controller runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    /// `.../MAAS/` with the trailing slash.
    pub maas_base: String,
    pub api_version: ApiVersion,
    pub api_key: ApiKey,
    pub filter: Filter,
    pub target: Target,
    pub deploy: DeployParams,
    pub mappings: Arc<HashMap<String, String>>,
    pub provisioner: ProvisionerKind,
    /// Deploy profiles resolved against the global settings.
    pub profiles: Profiles,
    /// Leader election, when `ha.backend` is not `none`.
    pub ha: Option<crate::ha::HaConfig>,
    /// The provisioning journal's file (`provision.state_file`, else under `state_dir`).
    pub journal: Option<PathBuf>,
    pub warnings: Vec<String>,
}

impl Config {
    /// The policy for `lifecycle::decide`, once our username is known.
    pub fn policy(&self, me: &str) -> Policy {
        let s = &self.settings;
        Policy {
            target: self.target,
            me: me.to_string(),
            provisioning: self.provisioner != ProvisionerKind::None,
            mappings: self.mappings.clone(),
            always_rename: s.lifecycle.always_rename,
            relink_dhcp: s.lifecycle.relink_dhcp,
            power_helper: s.lifecycle.power_helper_script.is_some(),
            skip_tag: s.lifecycle.skip_tag.clone().filter(|t| !t.is_empty()),
            retry_tag: s.lifecycle.retry_tag.clone().filter(|t| !t.is_empty()),
            recommission_attempts: s.recovery.recommission_attempts,
            redeploy_attempts: s.recovery.redeploy_attempts,
            erase: s.recovery.erase,
            quarantine_tag: s.lifecycle.quarantine_tag.clone().filter(|t| !t.is_empty()),
        }
    }

    /// The effective configuration as TOML, with the API key and any URL password masked.
    ///
    /// When `filter.json` is set it replaces `[filter.hosts]`/`[filter.zones]`; those
    /// tables are printed with the filter actually in force, so an empty include list
    /// never reads as "everything" while the JSON says otherwise.
    pub fn render(&self) -> String {
        let mut shown = self.settings.clone();
        shown.maas.url = mask_userinfo(&shown.maas.url);
        shown.provision.url = shown.provision.url.as_deref().map(mask_userinfo);
        let mut head = String::new();
        if non_empty(&shown.filter.json).is_some() {
            shown.filter.hosts = self.filter.spec().hosts.clone().into();
            shown.filter.zones = self.filter.spec().zones.clone().into();
            head.push_str(
                "# filter.json is set: [filter.hosts] and [filter.zones] below show the filter it defines.\n",
            );
        }
        match toml::to_string_pretty(&shown) {
            Ok(t) => head + &t,
            Err(e) => format!("# cannot render: {e}\n"),
        }
    }
}

/// Where settings come from, besides defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// Environment variables (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
    /// `key.path` → value, from flags.
    pub overrides: Vec<(String, String)>,
}

impl Sources {
    pub fn from_process(file: Option<PathBuf>, overrides: Vec<(String, String)>) -> Self {
        Sources {
            file,
            env: std::env::vars().collect(),
            overrides,
        }
    }
}

/// Load and validate. Reads the key file and filter/mapping files; makes no request.
/// An error in a value that came from one of the original tool's variables names that
/// variable; an error about a key that a flag or a `MAAS_FLOW_*` variable set names that
/// flag or variable too: the operator looking at the file would otherwise not find the
/// value.
pub fn load(src: &Sources) -> Result<Config, ConfigError> {
    let legacy = crate::legacy_env::collect(&src.env)?;
    let mut cfg = load_layers(src, &legacy)
        .and_then(|mut settings| {
            if non_empty(&settings.state_dir).is_none() {
                settings.state_dir = default_state_dir(&src.env).map(|d| d.display().to_string());
            }
            validate(settings)
        })
        .map_err(|e| match legacy.source_of(&e.key) {
            Some(s) if !overridden(src, s.key) => blame(e, s),
            _ => name_the_source(e, src),
        })?;
    cfg.warnings.extend(legacy.warnings);
    Ok(cfg)
}

/// The environment variable that sets `key` (`maas.period` → `MAAS_FLOW_MAAS__PERIOD`).
pub fn env_name(key: &str) -> String {
    format!("MAAS_FLOW_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// Append where a bad value came from when it was not the file: a flag wins over the
/// environment, which wins over the file.
fn name_the_source(mut e: ConfigError, src: &Sources) -> ConfigError {
    let under = |k: &str| k == e.key || k.starts_with(&format!("{}.", e.key));
    if let Some((k, _)) = src.overrides.iter().rev().find(|(k, _)| under(k)) {
        let flag = if k == &e.key {
            String::new()
        } else {
            format!(" ({k})")
        };
        e.problem
            .push_str(&format!(" (set by a command-line flag{flag})"));
        return e;
    }
    let vars: Vec<&str> = src
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("MAAS_FLOW_") && k.as_str() != "MAAS_FLOW_CONFIG")
        .filter(|(k, _)| {
            let key = k["MAAS_FLOW_".len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            under(&key)
        })
        .map(|(k, _)| k.as_str())
        .collect();
    // The original tool's variables (`PROVISION_URL`, ...) are named by `blame` instead.
    if !vars.is_empty() {
        e.problem.push_str(&format!(
            " (set by environment variable {})",
            vars.join(", ")
        ));
    }
    e
}

/// Keys whose value is a list (`filter.hosts.include`, ...), found from the defaults so
/// a list key added to [`Settings`] is covered without being named here. From the
/// environment they take a JSON array (`["rack1-.*","spare"]`) or comma-separated values
/// (`rack1-.*,spare`); use the JSON form for a pattern that itself holds a comma.
pub fn list_keys() -> Vec<String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Array(_) => out.push(prefix.to_string()),
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = toml::Value::try_from(Settings::default()) {
        walk("", &v, &mut out);
    }
    out
}

/// A list-valued key's value from the environment.
fn env_list(var: &str, key: &str, v: &str) -> Result<Vec<String>, ConfigError> {
    let t = v.trim();
    if t.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(t).map_err(|e| {
            bad(
                key,
                format!("{var}: not a JSON array of strings ({e}); or give comma-separated values"),
            )
        });
    }
    Ok(t.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect())
}

/// Rename an error's key to the original's variable that set it (when no `MAAS_FLOW_*`
/// variable or flag overrode it).
fn blame(e: ConfigError, s: &crate::legacy_env::Setting) -> ConfigError {
    ConfigError {
        key: s.var.clone(),
        problem: format!(
            "{} (the original tool's variable, for `{}`)",
            e.problem, e.key
        ),
    }
}

fn overridden(src: &Sources, key: &str) -> bool {
    let var = env_name(key);
    src.overrides.iter().any(|(k, _)| k == key) || src.env.iter().any(|(k, _)| *k == var)
}

/// The settings from every layer: defaults, the TOML file, the original tool's
/// variables, `MAAS_FLOW_*` variables, flags (each overriding the ones before).
pub fn load_settings(src: &Sources) -> Result<Settings, ConfigError> {
    let legacy = crate::legacy_env::collect(&src.env)?;
    load_layers(src, &legacy)
}

fn load_layers(src: &Sources, legacy: &crate::legacy_env::Legacy) -> Result<Settings, ConfigError> {
    use config::{Config as Cfg, Environment, File, FileFormat};
    let mut b = Cfg::builder();
    if let Some(path) = &src.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("--config", format!("cannot read {}: {e}", path.display())))?;
        // Parse once with the toml crate for a precise line/column on syntax errors.
        if let Err(e) = text.parse::<toml::Table>() {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                .unwrap_or(0);
            return Err(bad(
                "--config",
                format!(
                    "{} is not valid TOML (line {line}): {}",
                    path.display(),
                    e.message().replace('\n', " ")
                ),
            ));
        }
        b = b.add_source(File::from_str(&text, FileFormat::Toml));
    }
    // The original tool's names (`MAAS_URL`, `PROVISION_URL`, ...): above the file,
    // below our own variables and flags.
    let mut legacy = legacy.clone();
    if overridden(src, "provision.url") || overridden(src, "provision.script") {
        // Our own provisioner setting wins over PROVISION_URL as a whole: it must not
        // leave the variable's half behind to collide with it.
        legacy
            .settings
            .retain(|s| s.key != "provision.url" && s.key != "provision.script");
    }
    if !legacy.settings.is_empty() {
        b = b.add_source(File::from_str(&legacy.to_toml(), FileFormat::Toml));
    }
    let mut env: HashMap<String, String> = HashMap::new();
    let list_keys = list_keys();
    let mut lists: Vec<(&str, Vec<String>)> = Vec::new();
    for (k, v) in &src.env {
        // MAAS_FLOW_CONFIG names the file itself; it is not a setting.
        if k.starts_with("MAAS_FLOW_") && k != "MAAS_FLOW_CONFIG" {
            let key = k["MAAS_FLOW_".len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            if let Some(list_key) = list_keys.iter().find(|l| **l == key) {
                lists.push((list_key, env_list(k, list_key, v)?));
            } else {
                env.insert(k.clone(), v.clone());
            }
        }
    }
    b = b.add_source(
        Environment::with_prefix("MAAS_FLOW")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(env)),
    );
    for (k, v) in lists {
        b = b.set_override(k, v).map_err(|e| bad(k, e.to_string()))?;
    }
    for (k, v) in &src.overrides {
        b = b
            .set_override(k.as_str(), v.as_str())
            .map_err(|e| bad(k, e.to_string()))?;
    }
    let cfg = b.build().map_err(config_error)?;
    cfg.try_deserialize::<Settings>().map_err(config_error)
}

/// Turn the config crate's error into one naming the key.
fn config_error(e: config::ConfigError) -> ConfigError {
    let msg = e.to_string();
    // "... for key `maas.period` ..." is the config crate's way of naming the key.
    if let Some(start) = msg.find("for key `") {
        let rest = &msg[start + 9..];
        if let Some(end) = rest.find('`') {
            let raw = &rest[..end];
            let problem = msg.replace(&format!(" for key `{raw}`"), "");
            // The config crate writes a table inside an array as `profile[0]match`.
            let key = &dotted(raw);
            if let Some(field) = unknown_field(&problem) {
                return bad(
                    &format!("{key}.{field}"),
                    format!("unknown key ({problem})"),
                );
            }
            return bad(key, problem);
        }
    }
    if let Some(field) = unknown_field(&msg) {
        return bad(field, format!("unknown key ({msg})"));
    }
    bad("config", msg)
}

/// `profile[0]match` (how the config crate names a table inside an array) as
/// `profile[0].match`.
fn dotted(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']'
            && chars
                .peek()
                .is_some_and(|n| n.is_alphanumeric() || *n == '_')
        {
            out.push('.');
        }
    }
    out
}

fn unknown_field(msg: &str) -> Option<&str> {
    let start = msg.find("unknown field `")?;
    let rest = &msg[start + 15..];
    rest.find('`').map(|end| &rest[..end])
}

fn validate(mut s: Settings) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();

    // maas.url
    let shown = mask_userinfo(&s.maas.url);
    let mut url = url::Url::parse(s.maas.url.trim())
        .map_err(|e| bad("maas.url", format!("`{shown}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(
            "maas.url",
            format!("`{shown}` must be an http:// or https:// URL with a host"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // MAAS authenticates the OAuth signature only; a password here is never sent,
        // and never printed either.
        warnings.push(
            "maas.url carries a user name or password: they are ignored (maas-flow signs with the API key) and masked everywhere".into(),
        );
        let _ = url.set_username("");
        let _ = url.set_password(None);
        s.maas.url = shown.trim().to_string();
    }
    let mut base = url.as_str().trim_end_matches('/').to_string();
    if base.ends_with("/api/2.0") || base.ends_with("/api/1.0") {
        return Err(bad(
            "maas.url",
            "give the region's base URL ending in /MAAS, not the API path",
        ));
    }
    base.push('/');
    if !url.path().trim_end_matches('/').ends_with("/MAAS") {
        // Every API path hangs off /MAAS; without it the region answers 404 to everything.
        warnings.push(format!(
            "maas.url `{}` does not end in /MAAS: MAAS serves its API under /MAAS (e.g. http://maas:5240/MAAS) and answers 404 elsewhere",
            url.path()
        ));
    }

    let api_version = ApiVersion::parse(&s.maas.api_version).ok_or_else(|| {
        bad(
            "maas.api_version",
            format!(
                "`{}` is not supported; use \"2.0\" (or \"1.0\" for MAAS 1.9)",
                s.maas.api_version
            ),
        )
    })?;

    let api_key = resolve_key(&s, &mut warnings)?;
    // From here on the settings hold no secret, so they can be printed and logged.
    if s.maas.api_key.is_some() {
        s.maas.api_key = Some("***:***:***".into());
    }

    if s.maas.period < MIN_PERIOD {
        return Err(bad(
            "maas.period",
            format!(
                "{} is too short: a full list every period must be possible; use at least {} (15s is usual)",
                humantime::format_duration(s.maas.period),
                humantime::format_duration(MIN_PERIOD)
            ),
        ));
    }
    positive(&s.maas.request_timeout, "maas.request_timeout")?;
    positive(&s.maas.list_timeout, "maas.list_timeout")?;
    if s.maas.max_body_mib == 0 {
        return Err(bad("maas.max_body_mib", "must be at least 1"));
    }

    let spec = match &s.filter.json {
        Some(j) if !j.trim().is_empty() => {
            crate::filter::load_spec(j).map_err(|e| bad("filter.json", e.to_string()))?
        }
        _ => {
            let default = FilterSpec::default_zone();
            let list = |l: &mut FilterList, default: IncludeExclude| {
                // Written back so `check-config` prints the effective lists.
                let include = l.include.get_or_insert(default.include).clone();
                IncludeExclude {
                    include,
                    exclude: l.exclude.clone(),
                }
            };
            FilterSpec {
                hosts: list(&mut s.filter.hosts, default.hosts),
                zones: list(&mut s.filter.zones, default.zones),
                tags: s.filter.tags.clone(),
                pools: s.filter.pools.clone(),
            }
        }
    };
    let filter = Filter::new(spec).map_err(|e| match &e {
        crate::filter::FilterError::Regex { list, .. } => {
            bad(&format!("filter.{list}"), e.to_string())
        }
        _ => bad("filter", e.to_string()),
    })?;
    for list in filter.empty_includes() {
        warnings.push(format!(
            "filter {list} is empty, so no machine is selected (as in the original tool); write [\".*\"] to include every name"
        ));
    }

    let target = match s.lifecycle.target.trim().to_ascii_lowercase().as_str() {
        "deployed" => Target::Deployed,
        "ready" => Target::Ready,
        other => {
            return Err(bad(
                "lifecycle.target",
                format!("`{other}` is not a target; use \"deployed\" or \"ready\""),
            ))
        }
    };
    if s.lifecycle.distro_series.trim().is_empty() {
        return Err(bad(
            "lifecycle.distro_series",
            "must not be empty (e.g. \"jammy\")",
        ));
    }
    if s.lifecycle.distro_series.contains(char::is_whitespace) {
        return Err(bad("lifecycle.distro_series", "must not contain spaces"));
    }
    for (key, tag) in [
        ("lifecycle.skip_tag", &s.lifecycle.skip_tag),
        ("lifecycle.retry_tag", &s.lifecycle.retry_tag),
        ("lifecycle.quarantine_tag", &s.lifecycle.quarantine_tag),
    ] {
        // These names go into MAAS URLs (`tags/{name}/`): MAAS's own tag name rule.
        if let Some(t) = non_empty(tag) {
            if !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(
                    key,
                    format!("`{t}` is not a MAAS tag name (letters, digits, - and _)"),
                ));
            }
        }
    }
    let mappings = match &s.lifecycle.mappings {
        Some(m) if !m.trim().is_empty() => load_mappings(m)?,
        _ => HashMap::new(),
    };
    if let Some(p) = &s.lifecycle.power_helper_script {
        if !Path::new(p).is_file() {
            return Err(bad(
                "lifecycle.power_helper_script",
                format!("{p} is not a file"),
            ));
        }
    }

    let provisioner = match (non_empty(&s.provision.script), non_empty(&s.provision.url)) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "provision",
                "set either provision.script or provision.url, not both",
            ))
        }
        (Some(p), None) => {
            let path = PathBuf::from(p);
            if !path.is_file() {
                return Err(bad(
                    "provision.script",
                    format!("{p} does not exist or is not a file"),
                ));
            }
            ProvisionerKind::Script(path)
        }
        (None, Some(u)) => {
            let shown = mask_userinfo(u);
            let parsed = url::Url::parse(u)
                .map_err(|e| bad("provision.url", format!("`{shown}` is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(bad(
                    "provision.url",
                    format!("`{shown}` must be an http:// or https:// URL with a host"),
                ));
            }
            ProvisionerKind::Http(u.trim_end_matches('/').to_string())
        }
        (None, None) => ProvisionerKind::None,
    };
    positive(&s.provision.ttl, "provision.ttl")?;
    positive(&s.provision.retry_base, "provision.retry_base")?;
    if s.provision.retry_cap < s.provision.retry_base {
        return Err(bad(
            "provision.retry_cap",
            "must be at least provision.retry_base",
        ));
    }
    if let Some(p) = s.provision.poll_interval {
        positive(&p, "provision.poll_interval")?;
    }
    positive(&s.provision.first_poll, "provision.first_poll")?;
    if s.provision.max_attempts == 0 {
        return Err(bad("provision.max_attempts", "must be at least 1"));
    }
    if s.provision.max_concurrent == 0 {
        return Err(bad("provision.max_concurrent", "must be at least 1"));
    }
    if s.limits.max_ops_in_flight == 0 {
        return Err(bad("limits.max_ops_in_flight", "must be at least 1"));
    }
    positive(&s.limits.retry_base, "limits.retry_base")?;
    if s.limits.retry_cap < s.limits.retry_base {
        return Err(bad(
            "limits.retry_cap",
            "must be at least limits.retry_base",
        ));
    }
    positive(&s.events.interval, "events.interval")?;
    if s.http.unready_after_periods == 0 {
        return Err(bad("http.unready_after_periods", "must be at least 1"));
    }
    if !s.http.listen.is_empty() && s.http.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(bad(
            "http.listen",
            format!("`{}` is not an address like 127.0.0.1:9090", s.http.listen),
        ));
    }
    if !matches!(s.log.format.as_str(), "text" | "json") {
        return Err(bad(
            "log.format",
            format!(
                "`{}` is not a format; use \"text\" or \"json\"",
                s.log.format
            ),
        ));
    }
    s.log.level = log_filter(&s.log.level)?;
    positive(&s.shutdown_grace, "shutdown_grace")?;
    if let Some(ca) = non_empty(&s.tls.ca_file) {
        crate::tls::read_pem(ca).map_err(|e| bad("tls.ca_file", e.to_string()))?;
    }
    let ha = crate::ha::HaConfig::from_settings(&s.ha)?;
    let journal = match (non_empty(&s.provision.state_file), non_empty(&s.state_dir)) {
        (Some(f), _) => Some(PathBuf::from(f)),
        (None, Some(d)) => Some(PathBuf::from(d).join(crate::provision::store::JOURNAL_FILE)),
        (None, None) => None,
    };

    let deploy = DeployParams {
        distro_series: s.lifecycle.distro_series.trim().to_string(),
        user_data: non_empty(&s.lifecycle.user_data).map(str::to_string),
        hwe_kernel: non_empty(&s.lifecycle.hwe_kernel).map(str::to_string),
        enable_hw_sync: None,
        ephemeral_deploy: None,
    };
    let global = Profile::global(
        target,
        deploy.clone(),
        s.commission.clone(),
        match &provisioner {
            ProvisionerKind::None => ProvisionTarget::None,
            ProvisionerKind::Script(p) => ProvisionTarget::Script(p.clone()),
            ProvisionerKind::Http(u) => ProvisionTarget::Http(u.clone()),
        },
    );
    let mut list = Vec::with_capacity(s.profile.len());
    for (i, spec) in s.profile.iter().enumerate() {
        let p = crate::profile::resolve(spec, &global)
            .map_err(|e| bad(&format!("profile[{i}].{}", e.key), e.problem))?;
        if list.iter().any(|q: &Arc<Profile>| q.name == p.name) {
            return Err(bad(
                &format!("profile[{i}].name"),
                format!("`{}` names an earlier profile too", p.name),
            ));
        }
        if p.storage_layout.is_some() && api_version == ApiVersion::V1 {
            return Err(bad(
                &format!("profile[{i}].storage_layout"),
                "MAAS 1.9's API 1.0 has no op=set_storage_layout",
            ));
        }
        list.push(Arc::new(p));
    }
    let profiles = Profiles {
        list,
        global: Arc::new(global),
    };
    // Profiles may provision though `[provision]` does not.
    if journal.is_none() && profiles.any_provisioning() {
        return Err(bad(
            "state_dir",
            "no place for the provisioning journal: set state_dir (or STATE_DIRECTORY, XDG_STATE_HOME or HOME)",
        ));
    }

    Ok(Config {
        deploy,
        profiles,
        settings: s,
        maas_base: base,
        api_version,
        api_key,
        filter,
        target,
        mappings: Arc::new(mappings),
        provisioner,
        ha,
        journal,
        warnings,
    })
}

/// The level names `log.level` accepts on their own, and what each means to tracing.
const LEVELS: &[(&str, &str)] = &[
    ("off", "off"),
    ("error", "error"),
    ("warn", "warn"),
    ("warning", "warn"),
    ("info", "info"),
    ("debug", "debug"),
    ("trace", "trace"),
];

/// Validate `log.level` and return the filter to install.
///
/// tracing reads a bare word as a *target* name (`inf0` = "everything from the module
/// inf0"), which silences the service without a word. So each comma-separated part must
/// be a level name (`warning` is read as `warn`) or a directive with `=`
/// (`maas_flow=debug`), and the whole must parse as a tracing filter.
pub fn log_filter(level: &str) -> Result<String, ConfigError> {
    let reject = |why: String| {
        bad(
            "log.level",
            format!("`{level}` {why}; use one of off, error, warn, info, debug, trace, or a filter like maas_flow=debug,info"),
        )
    };
    let mut parts = Vec::new();
    for part in level.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(reject("has an empty part".into()));
        }
        if part.contains('=') {
            parts.push(part.to_string());
        } else if let Some((_, l)) = LEVELS.iter().find(|(n, _)| n.eq_ignore_ascii_case(part)) {
            parts.push(l.to_string());
        } else {
            return Err(reject(format!("is not a level (`{part}`)")));
        }
    }
    let filter = parts.join(",");
    tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| reject(format!("is not a tracing filter ({e})")))?;
    Ok(filter)
}

pub(crate) fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn positive(d: &Duration, key: &str) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(bad(key, "must be greater than zero"))
    } else {
        Ok(())
    }
}

fn resolve_key(s: &Settings, warnings: &mut Vec<String>) -> Result<ApiKey, ConfigError> {
    if let Some(k) = non_empty(&s.maas.api_key) {
        return ApiKey::parse(k)
            .map_err(|e| bad("maas.api_key", format!("malformed API key: {e}")));
    }
    let path = &s.maas.api_key_file;
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(
            "maas.api_key_file",
            format!("cannot read {path}: {e} (or give the key as maas.api_key, MAAS_FLOW_MAAS__API_KEY or --api-key)"),
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o004 != 0 {
                warnings.push(format!(
                    "API key file {path} is world-readable; chmod 600 it"
                ));
            }
        }
    }
    ApiKey::parse(&text).map_err(|e| {
        bad(
            "maas.api_key_file",
            format!("{path} holds a malformed API key: {e}"),
        )
    })
}

/// Mappings as the original tool wrote them: `{"<mac>": {"hostname": "<name>"}}`.
fn load_mappings(text: &str) -> Result<HashMap<String, String>, ConfigError> {
    let text = text.trim();
    let json = match text.strip_prefix('@') {
        Some(p) => {
            let p = crate::filter::expand_env(p);
            std::fs::read_to_string(&p)
                .map_err(|e| bad("lifecycle.mappings", format!("cannot read {p}: {e}")))?
        }
        None => text.to_string(),
    };
    /// The first Go versions read `{"<mac>": {"hostname": "..."}}`; the later ones
    /// (`MAC_TO_NAME_MAPPINGS`, a `map[string]string`) `{"<mac>": "<name>"}`.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Name(String),
        Object { hostname: String },
    }
    let raw: HashMap<String, Entry> = serde_json::from_str(&json).map_err(|e| {
        bad(
            "lifecycle.mappings",
            format!("expected {{\"<mac>\": {{\"hostname\": \"...\"}}}} or {{\"<mac>\": \"<name>\"}}: {e}"),
        )
    })?;
    Ok(raw
        .into_iter()
        .map(|(mac, e)| {
            let name = match e {
                Entry::Name(n) | Entry::Object { hostname: n } => n,
            };
            (mac.to_ascii_lowercase(), name)
        })
        .collect())
}

/// The state directory when `state_dir` is unset: `$STATE_DIRECTORY` (systemd's
/// `StateDirectory=`, first entry), else `$XDG_STATE_HOME/maas-flow`, else
/// `$HOME/.local/state/maas-flow`. The Docker image sets `MAAS_FLOW_STATE_DIR`.
pub fn default_state_dir(env: &[(String, String)]) -> Option<PathBuf> {
    let get = |k: &str| {
        env.iter()
            .find(|(n, v)| n == k && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
    };
    if let Some(d) = get("STATE_DIRECTORY") {
        return d.split(':').next().map(PathBuf::from);
    }
    if let Some(d) = get("XDG_STATE_HOME") {
        return Some(PathBuf::from(d).join("maas-flow"));
    }
    get("HOME").map(|h| PathBuf::from(h).join(".local/state/maas-flow"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(
        toml: &str,
        env: &[(&str, &str)],
        over: &[(&str, &str)],
    ) -> (tempfile::TempDir, Sources) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, toml).unwrap();
        let s = Sources {
            file: Some(p),
            env: env
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            overrides: over
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        };
        (dir, s)
    }

    #[test]
    fn file_then_env_then_flags() {
        let (_d, s) = src(
            "[maas]\napi_key = \"a:b:c\"\nperiod = \"20s\"\n",
            &[("MAAS_FLOW_MAAS__PERIOD", "30s"), ("PROVISION_TTL", "2h")],
            &[],
        );
        let c = load(&s).unwrap();
        assert_eq!(c.settings.maas.period, Duration::from_secs(30));
        assert_eq!(c.settings.provision.ttl, Duration::from_secs(7200));
        let (_d, mut s) = src(
            "[maas]\napi_key = \"a:b:c\"\n",
            &[("MAAS_FLOW_MAAS__PERIOD", "30s")],
            &[],
        );
        s.overrides.push(("maas.period".into(), "5s".into()));
        assert_eq!(
            load(&s).unwrap().settings.maas.period,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("[maas]\napi_key=\"a:b:c\"\nperiod=\"soon\"", "maas.period"),
            ("[maas]\napi_key=\"a:b\"", "maas.api_key"),
            ("[maas]\napi_key=\"a:b:c\"\nurl=\"not a url\"", "maas.url"),
            (
                "[maas]\napi_key=\"a:b:c\"\n[filter.hosts]\ninclude=[\"(\"]",
                "filter.hosts.include",
            ),
            ("[maas]\napi_key=\"a:b:c\"\nbogus=1", "maas.bogus"),
            ("bogus=1\n[maas]\napi_key=\"a:b:c\"", "bogus"),
            (
                "[maas]\napi_key=\"a:b:c\"\napi_version=\"3.0\"",
                "maas.api_version",
            ),
        ];
        for (toml, key) in cases {
            let (_d, s) = src(toml, &[], &[]);
            let e = load(&s).unwrap_err();
            assert_eq!(&e.key, key, "{toml}: {e}");
        }
    }

    #[test]
    fn profiles_are_validated_naming_the_key() {
        let head = "[maas]\napi_key=\"a:b:c\"\n";
        let cases: &[(&str, &str)] = &[
            ("[[profile]]\nname=\"a\"\nbogus=1", "profile[0].bogus"),
            (
                "[[profile]]\nname=\"a\"\n[[profile]]\nname=\"b\"\nmatch={hosts=[\"(\"]}",
                "profile[1].match.hosts",
            ),
            (
                "[[profile]]\nname=\"a\"\nmatch={racks=[\"x\"]}",
                "profile[0].match.racks",
            ),
            (
                "[[profile]]\nname=\"a\"\nuser_data=\"@/nonexistent/cloud-init\"",
                "profile[0].user_data",
            ),
            (
                "[[profile]]\nname=\"a\"\nstorage_layout=\"zfs\"",
                "profile[0].storage_layout",
            ),
            (
                "[[profile]]\nname=\"a\"\ntarget=\"gone\"",
                "profile[0].target",
            ),
            ("[[profile]]\nmatch={tags=[\"gpu\"]}", "profile[0].name"),
            (
                "[[profile]]\nname=\"a\"\n[[profile]]\nname=\"a\"",
                "profile[1].name",
            ),
            (
                "[[profile]]\nname=\"a\"\nprovision_script=\"/nonexistent/p.sh\"",
                "profile[0].provision_script",
            ),
            ("[commission]\nenable_sshh=true", "commission.enable_sshh"),
        ];
        for (toml, key) in cases {
            let (_d, s) = src(&format!("{head}{toml}"), &[], &[]);
            let e = load(&s).unwrap_err();
            assert_eq!(&e.key, key, "{toml}: {e}");
        }
        let (_d, s) = src(
            &format!(
                "{head}[[profile]]\nname=\"gpu\"\nmatch={{tags=[\"gpu\"]}}\nstorage_layout=\"lvm\""
            ),
            &[],
            &[],
        );
        let c = load(&s).unwrap();
        assert_eq!(c.profiles.list.len(), 1);
        assert!(c.render().contains("[[profile]]"), "{}", c.render());
    }

    #[test]
    fn the_config_path_variable_is_not_a_setting() {
        let (_d, s) = src(
            "[maas]\napi_key = \"a:b:c\"\n",
            &[("MAAS_FLOW_CONFIG", "/etc/x.toml")],
            &[],
        );
        assert!(load(&s).is_ok());
    }

    #[test]
    fn original_variables_sit_between_the_file_and_our_own() {
        let toml = "[maas]\napi_key = \"a:b:c\"\nperiod = \"20s\"\nurl = \"http://file/MAAS\"\n";
        let (_d, s) = src(
            toml,
            &[
                ("MAAS_QUERY_INTERVAL", "1m"),
                ("MAAS_URL", "http://env/MAAS"),
            ],
            &[],
        );
        let c = load(&s).unwrap();
        assert_eq!(
            c.settings.maas.period,
            Duration::from_secs(60),
            "above the file"
        );
        assert_eq!(c.maas_base, "http://env/MAAS/");
        let (_d, mut s) = src(
            toml,
            &[
                ("MAAS_QUERY_INTERVAL", "1m"),
                ("MAAS_FLOW_MAAS__PERIOD", "30s"),
                ("MAAS_URL", "http://env/MAAS"),
            ],
            &[],
        );
        s.overrides
            .push(("maas.url".into(), "http://flag/MAAS".into()));
        let c = load(&s).unwrap();
        assert_eq!(
            c.settings.maas.period,
            Duration::from_secs(30),
            "below MAAS_FLOW_*"
        );
        assert_eq!(c.maas_base, "http://flag/MAAS/", "below flags");
    }

    #[test]
    fn errors_from_original_variables_name_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            ("MAAS_QUERY_INTERVAL", "0", "MAAS_QUERY_INTERVAL"),
            ("MAAS_URL", "not a url", "MAAS_URL"),
            ("MAAS_API_VERSION", "3.0", "MAAS_API_VERSION"),
            (
                "HOST_FILTER_SPEC",
                r#"{"hosts":{"include":["("]}}"#,
                "HOST_FILTER_SPEC",
            ),
            ("HOST_FILTER_SPEC", "{hosts", "HOST_FILTER_SPEC"),
            ("MAC_TO_NAME_MAPPINGS", "[1]", "MAC_TO_NAME_MAPPINGS"),
            ("PROVISION_URL", "/nonexistent/p.sh", "PROVISION_URL"),
            (
                "AUTOMATION_PREVIEW_ONLY",
                "maybe",
                "AUTOMATION_PREVIEW_ONLY",
            ),
        ];
        for (var, value, key) in cases {
            let (_d, s) = src("[maas]\napi_key = \"a:b:c\"\n", &[(var, value)], &[]);
            let e = load(&s).unwrap_err();
            assert_eq!(&e.key, key, "{var}={value}: {e}");
        }
        // Overridden by our own variable: the original's bad value is not used.
        let (_d, s) = src(
            "[maas]\napi_key = \"a:b:c\"\n",
            &[
                ("MAAS_URL", "not a url"),
                ("MAAS_FLOW_MAAS__URL", "http://ok/MAAS"),
            ],
            &[],
        );
        assert!(load(&s).is_ok());
    }

    #[test]
    fn our_provisioner_setting_replaces_provision_url_whole() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("p.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let script = script.display().to_string();
        let state = dir.path().display().to_string();
        let (_d, s) = src(
            "[maas]\napi_key = \"a:b:c\"\n",
            &[
                ("STATE_DIRECTORY", state.as_str()),
                ("PROVISION_URL", "http://prov/x"),
                ("MAAS_FLOW_PROVISION__SCRIPT", script.as_str()),
            ],
            &[],
        );
        let c = load(&s).unwrap();
        assert_eq!(
            c.provisioner,
            ProvisionerKind::Script(script.clone().into())
        );
        let (_d, mut s) = src(
            "[maas]\napi_key = \"a:b:c\"\n",
            &[
                ("STATE_DIRECTORY", state.as_str()),
                ("PROVISION_URL", &script),
            ],
            &[],
        );
        s.overrides
            .push(("provision.url".into(), "http://flag/p".into()));
        let c = load(&s).unwrap();
        assert_eq!(c.provisioner, ProvisionerKind::Http("http://flag/p".into()));
    }

    #[test]
    fn mappings_take_both_of_the_originals_shapes() {
        let (_d, s) = src(
            "[maas]\napi_key = \"a:b:c\"\n",
            &[("MAC_TO_NAME_MAPPINGS", r#"{"AA:BB:CC:DD:EE:01":"cord-01"}"#)],
            &[],
        );
        let c = load(&s).unwrap();
        assert_eq!(
            c.mappings.get("aa:bb:cc:dd:ee:01").map(String::as_str),
            Some("cord-01")
        );
        let (_d, s) = src(
            "[maas]\napi_key = \"a:b:c\"\n[lifecycle]\nmappings = '{\"aa:bb:cc:dd:ee:02\": {\"hostname\": \"cord-02\"}}'\n",
            &[],
            &[],
        );
        let c = load(&s).unwrap();
        assert_eq!(
            c.mappings.get("aa:bb:cc:dd:ee:02").map(String::as_str),
            Some("cord-02")
        );
    }

    #[test]
    fn userinfo_in_urls_is_masked() {
        assert_eq!(
            mask_userinfo("http://admin:secret@host:5240/MAAS"),
            "http://***@host:5240/MAAS"
        );
        assert_eq!(mask_userinfo("http://host/MAAS"), "http://host/MAAS");
        assert_eq!(mask_userinfo("http://host/a@b"), "http://host/a@b");
        assert_eq!(mask_userinfo("http://u:p@x@host"), "http://***@host");
        assert_eq!(mask_userinfo("not a url"), "not a url");
        let (_d, s) = src(
            "[maas]\napi_key = \"a:b:c\"\nurl = \"http://admin:hunter22@maas.example/MAAS\"\n",
            &[],
            &[],
        );
        let c = load(&s).unwrap();
        assert!(!c.render().contains("hunter22"));
        assert!(!c.maas_base.contains("hunter22"), "{}", c.maas_base);
        assert!(!format!("{c:?}").contains("hunter22"));
        assert!(c.warnings.iter().any(|w| w.contains("maas.url")));
        let (_d, s) = src(
            "[maas]\napi_key = \"a:b:c\"\nurl = \"ftp://admin:hunter22@maas.example/MAAS\"\n",
            &[],
            &[],
        );
        assert!(!load(&s).unwrap_err().to_string().contains("hunter22"));
    }

    #[test]
    fn list_keys_come_from_the_defaults() {
        let keys = list_keys();
        for k in [
            "filter.hosts.include",
            "filter.hosts.exclude",
            "filter.zones.include",
            "filter.zones.exclude",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
        }
        assert!(!keys.iter().any(|x| x == "maas.url"));
    }

    #[test]
    fn rendered_config_masks_the_key() {
        let (_d, s) = src("[maas]\napi_key = \"ck:tk:supersecret\"\n", &[], &[]);
        let c = load(&s).unwrap();
        assert!(!c.render().contains("supersecret"));
        assert!(!format!("{c:?}").contains("supersecret"));
    }
}
