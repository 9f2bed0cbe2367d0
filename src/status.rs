//! The status board: what every machine is doing, for the HTTP API, the dashboard,
//! the metrics gauges and the progress lines.
//!
//! Node actors write their own row; the poller writes the global row. Readers take a
//! snapshot under a short read lock.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use parking_lot::RwLock;
use serde::Serialize;

/// Transitions kept per machine.
const MAX_TRANSITIONS: usize = 16;

/// One machine as the operator sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
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
    /// `none`, `pending`, `running`, `provisioned`, `failed`, `gave_up`.
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
    #[serde(skip)]
    pub first_list_at: Option<Instant>,
}

#[derive(Default)]
pub struct Board {
    machines: RwLock<BTreeMap<String, MachineView>>,
    global: RwLock<GlobalView>,
    /// Observations handled by node actors (benchmarks wait on it).
    observations: std::sync::atomic::AtomicU64,
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

    /// One line: how many machines are in each MAAS status and what they wait on.
    pub fn progress_line(&self) -> String {
        let by_status = self.count_by(|v| {
            if v.provisioning == "running" {
                "Provisioning".into()
            } else if v.provisioning == "provisioned" {
                "Provisioned".into()
            } else {
                v.status.clone()
            }
        });
        let parts: Vec<String> = by_status.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let in_flight = self.in_flight();
        let problems = self.machines.read().values().filter(|m| m.problem).count();
        format!(
            "{} machines: {} | in flight: {} | problems: {}",
            self.len(),
            parts.join(" "),
            in_flight,
            problems
        )
    }
}
