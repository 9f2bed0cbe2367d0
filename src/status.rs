//! The status board: what every machine is doing, for the HTTP API, the dashboard,
//! the metrics gauges and the progress lines.
//!
//! Node actors write their own row; the poller writes the global row. Readers take a
//! snapshot under a short read lock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::RwLock;
use serde::Serialize;

/// Which transitional MAAS statuses a machine should leave by itself; a machine in one
/// of them for longer than [`STUCK_AFTER`] is shown as stuck.
pub const TRANSITIONAL: &[&str] = &[
    "Commissioning",
    "Deploying",
    "Releasing",
    "Disk erasing",
    "Entering rescue mode",
    "Exiting rescue mode",
    "Testing",
];

/// How long a machine may sit in a transitional status (or provisioning) before the
/// dashboard and `maas-flow status` call it stuck. Real commissioning and deployment
/// take 5-30 minutes.
pub const STUCK_AFTER: Duration = Duration::from_secs(3600);

/// When `v` entered its current status, from its transitions.
pub fn status_since(v: &MachineView) -> Option<std::time::SystemTime> {
    v.transitions
        .last()
        .and_then(|(_, t)| humantime::parse_rfc3339(t).ok())
}

/// Transitions kept per machine.
const MAX_TRANSITIONS: usize = 16;

/// One machine as the operator sees it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct MachineView {
    pub system_id: String,
    pub hostname: String,
    pub zone: String,
    /// MAAS's status label and number.
    pub status: String,
    pub status_code: i64,
    pub power_state: String,
    pub owner: Option<String>,
    pub target: String,
    /// The deploy profile the machine gets (`None`: the global settings).
    pub profile: Option<String>,
    /// What the controller does next, in words.
    pub step: String,
    /// `none`, `-` (not Deployed yet), `pending`, `queued` (waiting for a slot),
    /// `running`, `provisioned`, `failed`, `gave_up`.
    pub provisioning: String,
    pub action_in_flight: Option<String>,
    pub attempts: u32,
    pub next_retry: Option<String>,
    pub last_error: Option<String>,
    /// `(state, RFC 3339 time)` for the latest transitions, oldest first.
    pub transitions: Vec<(String, String)>,
    /// Nothing more to do without a person (at target or held).
    pub settled: bool,
    /// Held, failed or erroring: shown first on the dashboard.
    pub problem: bool,
}

/// The controller as a whole.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GlobalView {
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub consecutive_failures: u32,
    pub last_poll_ok: Option<String>,
    pub last_poll_error: Option<String>,
    pub machines_in_list: usize,
    pub machines_selected: usize,
    pub maas_user: Option<String>,
    /// HA: `leader` (acting) or `standby`; always `leader` without HA.
    pub role: crate::ha::Role,
    /// HA: this replica's identity in the election (unset without HA).
    pub identity: Option<String>,
    /// HA: the identity of the replica that leads now, as etcd reports it.
    pub leader: Option<String>,
    /// HA: whether the coordination service (etcd) answered the last request.
    pub election_connected: Option<bool>,
    #[serde(skip)]
    pub first_list_at: Option<Instant>,
}

/// What this controller is configured to do, for the dashboard and the status API.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Info {
    pub version: String,
    /// The region URL with any user:password masked.
    pub maas_url: String,
    pub target: String,
    /// The effective filter, as JSON.
    pub filter: String,
    /// The full-list period, in seconds.
    pub period_seconds: f64,
}

/// Counts for the summary line of the dashboard, the status API and `maas-flow status`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub machines: usize,
    /// Machines whose next step is `done`.
    pub at_target: usize,
    /// Per lifecycle step: the MAAS status, or the provisioning phase once Deployed
    /// (`provision queued`, `provisioning`, `provisioned`, `provision failed`, ...).
    pub steps: BTreeMap<String, usize>,
    /// Per provisioning state (`pending`, `queued`, `running`, `provisioned`, `failed`, `gave_up`).
    pub provisioning: BTreeMap<String, usize>,
    /// MAAS operations or provisioning runs under way (queued runs excluded).
    pub in_flight: usize,
    /// Provisioning runs waiting for a `provision.max_concurrent` slot.
    pub queued: usize,
    pub problems: usize,
}

/// The lifecycle step a machine is at, for counts: its MAAS status until provisioning
/// has something to say.
pub fn step_of(v: &MachineView) -> String {
    match v.provisioning.as_str() {
        "queued" => "Provision queued".into(),
        "running" => "Provisioning".into(),
        "provisioned" => "Provisioned".into(),
        "failed" => "Provision failed".into(),
        "gave_up" => "Provision gave up".into(),
        _ => v.status.clone(),
    }
}

/// Whether `v` matches a dashboard search: a case-insensitive substring of its
/// hostname, system_id, zone, status, step or last error.
pub fn matches_search(v: &MachineView, needle_lower: &str) -> bool {
    needle_lower.is_empty()
        || [
            v.hostname.as_str(),
            v.system_id.as_str(),
            v.zone.as_str(),
            v.status.as_str(),
            v.step.as_str(),
            v.last_error.as_deref().unwrap_or(""),
        ]
        .iter()
        .any(|f| f.to_lowercase().contains(needle_lower))
}

/// A page of machines in system_id order, after a cursor, matching a predicate.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub machines: Vec<MachineView>,
    /// The cursor for the next page (the last system_id here), if there may be more.
    pub next_after: Option<String>,
    /// Machines matching the predicate in all (not only on this page).
    pub total: usize,
}

#[derive(Default)]
pub struct Board {
    machines: RwLock<BTreeMap<String, MachineView>>,
    global: RwLock<GlobalView>,
    info: RwLock<Info>,
    /// Observations handled by node actors (benchmarks wait on it).
    observations: std::sync::atomic::AtomicU64,
}

/// `url` with any `user:password@` replaced by `***:***@`, for display.
pub fn masked_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("***");
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(not a URL)".into(),
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Board {
    pub fn upsert(&self, view: MachineView) {
        self.machines.write().insert(view.system_id.clone(), view);
    }

    pub fn note_observation(&self) {
        self.observations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn observations(&self) -> u64 {
        self.observations.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn update(&self, system_id: &str, f: impl FnOnce(&mut MachineView)) {
        if let Some(v) = self.machines.write().get_mut(system_id) {
            f(v);
        }
    }

    pub fn push_transition(v: &mut MachineView, state: &str) {
        v.transitions
            .push((state.to_string(), rfc3339(SystemTime::now())));
        if v.transitions.len() > MAX_TRANSITIONS {
            v.transitions.remove(0);
        }
    }

    /// Forget every machine and every list statistic (HA stand-down: a standby holds
    /// no machine state); the role fields stay.
    pub fn clear_machines(&self) {
        self.machines.write().clear();
        let mut g = self.global.write();
        *g = GlobalView {
            role: g.role,
            identity: g.identity.take(),
            leader: g.leader.take(),
            election_connected: g.election_connected,
            ..GlobalView::default()
        };
    }

    pub fn remove(&self, system_id: &str) {
        self.machines.write().remove(system_id);
    }

    pub fn get(&self, system_id: &str) -> Option<MachineView> {
        self.machines.read().get(system_id).cloned()
    }

    pub fn all(&self) -> Vec<MachineView> {
        self.machines.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.machines.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn set_info(&self, info: Info) {
        *self.info.write() = info;
    }

    pub fn info(&self) -> Info {
        self.info.read().clone()
    }

    /// Visit every machine under the read lock, without copying any (a scrape at
    /// 100,000 machines must not clone them all).
    pub fn for_each(&self, mut f: impl FnMut(&MachineView)) {
        for v in self.machines.read().values() {
            f(v);
        }
    }

    /// The counts, in one pass under one read lock.
    pub fn summary(&self) -> Summary {
        let ms = self.machines.read();
        let mut s = Summary {
            machines: ms.len(),
            ..Summary::default()
        };
        for v in ms.values() {
            *s.steps.entry(step_of(v)).or_insert(0) += 1;
            *s.provisioning.entry(v.provisioning.clone()).or_insert(0) += 1;
            s.at_target += usize::from(v.step == "done");
            s.in_flight += usize::from(v.action_in_flight.is_some());
            s.queued += usize::from(v.provisioning == "queued");
            s.problems += usize::from(v.problem);
        }
        s
    }

    /// Up to `limit` machines after `after` (exclusive) in system_id order that satisfy
    /// `keep`. Clones only what it returns, so a page costs the same at 100,000 machines.
    pub fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&MachineView) -> bool,
    ) -> Page {
        use std::ops::Bound;
        let ms = self.machines.read();
        let start = match after {
            Some(a) => Bound::Excluded(a.to_string()),
            None => Bound::Unbounded,
        };
        let mut machines = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for (_, v) in ms.range((start, Bound::Unbounded)) {
            if !keep(v) {
                continue;
            }
            if machines.len() == limit {
                more = true;
                break;
            }
            machines.push(v.clone());
        }
        let total = if after.is_none() && !more {
            machines.len()
        } else {
            ms.values().filter(|v| keep(v)).count()
        };
        Page {
            next_after: if more {
                machines.last().map(|m| m.system_id.clone())
            } else {
                None
            },
            machines,
            total,
        }
    }

    pub fn global(&self) -> GlobalView {
        self.global.read().clone()
    }

    pub fn with_global(&self, f: impl FnOnce(&mut GlobalView)) {
        f(&mut self.global.write())
    }

    /// Whether every selected machine is settled (and at least one list succeeded).
    pub fn all_settled(&self) -> bool {
        self.global.read().polls_ok > 0 && self.machines.read().values().all(|m| m.settled)
    }

    pub fn in_flight(&self) -> usize {
        self.machines
            .read()
            .values()
            .filter(|m| m.action_in_flight.is_some())
            .count()
    }

    /// Counts by a key of each view, sorted by key.
    pub fn count_by(&self, key: impl Fn(&MachineView) -> String) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for v in self.machines.read().values() {
            *out.entry(key(v)).or_insert(0) += 1;
        }
        out
    }

    /// One line: how many machines are at each lifecycle step and what they wait on.
    /// Provisioning runs waiting for a slot are counted as queued, not in flight, so a
    /// long queue is not mistaken for a hung provisioner.
    pub fn progress_line(&self) -> String {
        let s = self.summary();
        let parts: Vec<String> = s.steps.iter().map(|(k, n)| format!("{k}={n}")).collect();
        format!(
            "{} machines: {} | in flight: {} | queued: {} | problems: {}",
            s.machines,
            parts.join(" "),
            s.in_flight,
            s.queued,
            s.problems
        )
    }
}
