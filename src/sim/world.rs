//! The simulated region's state: machines, their timed transitions, the operation log
//! and the event log. No HTTP here: [`super::server`] turns requests into calls on
//! [`World`] and its answers into responses, so the MAAS rules read in one place.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::controllers::SimController;
use super::images::BootImages;
use crate::maas::{NodeStatus, PowerState};

/// Timings and failure rates of the simulated region.
#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    /// How long commissioning takes.
    pub commission: Duration,
    /// How long a deployment takes.
    pub deploy: Duration,
    /// How long a release takes.
    pub release: Duration,
    /// Probability that a commissioning ends in Failed commissioning.
    pub fail_commission: f64,
    /// Probability that a deployment ends in Failed deployment.
    pub fail_deploy: f64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            commission: Duration::from_secs(2),
            deploy: Duration::from_secs(3),
            release: Duration::from_secs(1),
            fail_commission: 0.0,
            fail_deploy: 0.0,
        }
    }
}

/// One link of an interface to a subnet (MAAS's `links`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimLink {
    /// The link id, unique within the machine.
    pub id: i64,
    /// `auto`, `dhcp`, `static` or `link_up`.
    pub mode: String,
    /// The subnet's CIDR, when linked to one.
    pub subnet: Option<String>,
    /// The configured address, once deployed (or static).
    pub ip_address: Option<String>,
}

/// One physical interface of a machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimInterface {
    /// The interface id, unique in the region.
    pub id: i64,
    /// Its name (`eth0`).
    pub name: String,
    /// Its MAC address.
    pub mac: String,
    /// Its links to subnets.
    pub links: Vec<SimLink>,
}

/// One simulated machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimMachine {
    /// MAAS's system_id.
    pub system_id: String,
    /// The hostname, without the domain.
    pub hostname: String,
    /// The DNS domain (`maas`).
    pub domain: String,
    /// The availability zone's name.
    pub zone: String,
    /// The resource pool's name.
    pub pool: String,
    /// The lifecycle status.
    pub status: NodeStatus,
    /// MAAS's `status_message`, the last step it logged.
    pub status_message: Option<String>,
    /// The power state the BMC reports.
    pub power_state: PowerState,
    /// The power driver (`virsh`, `ipmi`, `manual`, empty when unconfigured).
    pub power_type: String,
    /// The power driver's parameters.
    pub power_parameters: BTreeMap<String, String>,
    /// The user who allocated the machine.
    pub owner: Option<String>,
    /// The physical interfaces.
    pub interfaces: Vec<SimInterface>,
    /// Tag names.
    pub tags: Vec<String>,
    /// Workload annotations (cleared by a release, as MAAS does).
    pub annotations: BTreeMap<String, String>,
    /// The deployed OS (`ubuntu`), empty until deployed.
    pub osystem: String,
    /// The deployed series, empty until deployed.
    pub distro_series: String,
    /// Locked machines refuse every change with 403.
    pub locked: bool,
    /// The layout `op=set_storage_layout` last applied; commissioning resets it.
    pub storage_layout: Option<String>,
    /// Commissioned at least once: a release then ends Ready, not New.
    pub commissioned: bool,
    /// The status before `mark_broken`, so `mark_fixed` can go back to Deployed.
    #[serde(skip)]
    pub broken_from: Option<NodeStatus>,
    /// Force the next commissioning/deployment to fail (scenarios, demo).
    pub fail_next_commission: bool,
    /// Force the next deployment to fail.
    pub fail_next_deploy: bool,
    /// Force the next disk erasing to end in Failed disk erasing.
    pub fail_next_erase: bool,
    /// MAAS's `current_installation_result_id`: a fresh id on every deploy.
    pub installation_result_id: Option<i64>,
    #[serde(skip)]
    pub(crate) pending: Option<(Instant, NodeStatus)>,
    #[serde(skip)]
    pub(crate) generation: u64,
    #[serde(skip)]
    pub(crate) cache: Option<Arc<str>>,
}

impl SimMachine {
    /// A New machine with two interfaces; `index` makes its MACs and ids unique.
    pub fn new(system_id: &str, hostname: &str, index: usize) -> Self {
        let a = (index >> 8) as u8;
        let b = index as u8;
        SimMachine {
            system_id: system_id.to_string(),
            hostname: hostname.to_string(),
            domain: "maas".into(),
            zone: "default".into(),
            pool: "default".into(),
            status: NodeStatus::New,
            status_message: None,
            power_state: PowerState::Off,
            power_type: "virsh".into(),
            power_parameters: BTreeMap::new(),
            owner: None,
            interfaces: vec![
                SimInterface {
                    id: (index as i64) * 2 + 1,
                    name: "eth0".into(),
                    mac: format!("52:54:00:{:02x}:{a:02x}:{b:02x}", (index >> 16) as u8),
                    links: vec![SimLink {
                        id: (index as i64) * 2 + 1,
                        mode: "auto".into(),
                        subnet: Some("10.20.0.0/16".into()),
                        ip_address: None,
                    }],
                },
                SimInterface {
                    id: (index as i64) * 2 + 2,
                    name: "eth1".into(),
                    mac: format!("52:54:01:{:02x}:{a:02x}:{b:02x}", (index >> 16) as u8),
                    links: vec![],
                },
            ],
            tags: vec![],
            annotations: BTreeMap::new(),
            osystem: String::new(),
            distro_series: String::new(),
            locked: false,
            storage_layout: None,
            commissioned: false,
            broken_from: None,
            fail_next_commission: false,
            fail_next_deploy: false,
            fail_next_erase: false,
            installation_result_id: None,
            pending: None,
            generation: 0,
            cache: None,
        }
    }

    /// Forget the cached JSON after changing fields directly (tests, scenarios).
    pub fn invalidate(&mut self) {
        self.cache = None;
    }

    /// Addresses MAAS would list: configured link addresses.
    pub fn ip_addresses(&self) -> Vec<String> {
        self.interfaces
            .iter()
            .flat_map(|i| i.links.iter())
            .filter_map(|l| l.ip_address.clone())
            .collect()
    }

    /// `hostname.domain`.
    pub fn fqdn(&self) -> String {
        format!("{}.{}", self.hostname, self.domain)
    }
}

/// How many machine-list queries [`World::list_queries`] keeps.
pub const LIST_QUERIES_KEPT: usize = 64;

/// One entry of the operation log: a request that changed state or was refused.
#[derive(Debug, Clone, Serialize)]
pub struct OpRecord {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
    /// The HTTP method.
    pub method: String,
    /// The full request path.
    pub path: String,
    /// The `op`, empty when none.
    pub op: String,
    /// The machine the request named, if any.
    pub system_id: Option<String>,
    /// The form parameters (`user_data` elided).
    pub params: Vec<(String, String)>,
    /// The machine's status when the request arrived.
    pub status_before: Option<String>,
    /// The HTTP status returned.
    pub http_status: u16,
}

/// One MAAS event, as `events/?op=query` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The user the event is about (`unknown` for the region's own).
    pub username: String,
    /// The system_id of the node.
    pub node: String,
    /// The node's hostname.
    pub hostname: String,
    /// The event id, increasing.
    pub id: i64,
    /// `DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL` or `AUDIT`.
    pub level: &'static str,
    /// MAAS's time format ([`maas_time`]).
    pub created: String,
    /// The event type (`Node changed status`).
    #[serde(rename = "type")]
    pub kind: String,
    /// What happened.
    pub description: String,
    /// The node's zone, for `events/?zone=` filters.
    #[serde(skip)]
    pub zone: String,
}

impl Event {
    /// The rank MAAS filters `events/?level=` by (that level and above); None if unknown.
    pub fn level_rank(level: &str) -> Option<u8> {
        Some(match level.to_ascii_uppercase().as_str() {
            "DEBUG" => 10,
            "INFO" => 20,
            "AUDIT" => 0,
            "WARNING" => 30,
            "ERROR" => 40,
            "CRITICAL" => 50,
            _ => return None,
        })
    }
}

/// An answer to an API call, independent of HTTP: the server layer
/// (`super::server`) turns it into a status code and a body, and renders machines with
/// `super::render`, so this module knows neither.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The call succeeded; the answer is this machine as it is now.
    Machine(usize),
    /// The call succeeded; the answer is the machine as it was before the change took
    /// effect (MAAS answers `abort` with the old status; the next read shows the new one).
    MachineBefore(Box<SimMachine>),
    /// The call succeeded; the answer is one interface of a machine (link/unlink).
    Interface {
        /// The machine's index.
        machine: usize,
        /// The interface's id.
        interface: i64,
    },
    /// The call succeeded and MAAS answers JSON `null` (a power driver that cannot act).
    Null,
    /// The call succeeded; the answer is this literal JSON document.
    Json(String),
    /// MAAS refused the call.
    Refused(Refusal),
}

/// Why MAAS refused a call, in MAAS's own classes of refusal. Each class has one
/// HTTP status (`Refusal::http_status`), chosen by the server layer alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The user may not edit this machine (locked, or owned by someone else): an empty
    /// 403, as MAAS's permission check answers.
    Forbidden,
    /// The machine's state forbids the operation (`NodeStateViolation`, "No machine
    /// available"): a 409 with MAAS's message.
    Conflict(String),
    /// The object does not exist: a 404 with MAAS's message.
    NotFound(String),
    /// A form field failed validation: a 400 with MAAS's `{field: [message]}` dict.
    Invalid {
        /// The form field MAAS names.
        field: String,
        /// MAAS's message for it.
        message: String,
    },
    /// A request MAAS refuses as a plain-text 400 (e.g. a preseed that fails to render).
    BadRequest(String),
    /// MAAS failed on its side with a message (e.g. an unconfigured power type): a 500.
    ServerError(String),
}

impl Refusal {
    /// The HTTP status MAAS sends for this class of refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::Forbidden => 403,
            Refusal::Conflict(_) => 409,
            Refusal::NotFound(_) => 404,
            Refusal::Invalid { .. } | Refusal::BadRequest(_) => 400,
            Refusal::ServerError(_) => 500,
        }
    }
}

fn conflict(msg: impl Into<String>) -> Reply {
    Reply::Refused(Refusal::Conflict(msg.into()))
}

fn invalid(field: &str, msg: &str) -> Reply {
    Reply::Refused(Refusal::Invalid {
        field: field.into(),
        message: msg.into(),
    })
}

const FORBIDDEN: Reply = Reply::Refused(Refusal::Forbidden);

/// The whole simulated region.
pub struct World {
    /// Every machine, in insertion order (indices are stable).
    pub machines: Vec<SimMachine>,
    /// system_id to index in `machines`.
    pub index: HashMap<String, usize>,
    /// Zone names known to the region.
    pub zones: Vec<String>,
    /// Resource pool names known to the region.
    pub pools: Vec<String>,
    /// Tag names the region knows (`tags/`); machines' own tags are registered too.
    pub tag_defs: Vec<String>,
    /// Transition times and failure rates.
    pub timings: Timings,
    /// The operation log: every mutating or refused API request.
    pub ops: Vec<OpRecord>,
    /// The event log, `events/?op=query`'s source.
    pub events: Vec<Event>,
    /// When the simulator started (op-log times count from here).
    pub started: Instant,
    /// The random source of failures: seeded, so runs repeat.
    pub rng: SmallRng,
    /// The synced boot images: what `deploy` accepts.
    pub boot_images: BootImages,
    /// Region and rack controllers: they log events but are not machines.
    pub controllers: Vec<SimController>,
    /// The query pairs of the most recent machine lists (`GET machines/` without `id=`),
    /// newest last, at most [`LIST_QUERIES_KEPT`]: how tests see server-side filters.
    pub list_queries: std::collections::VecDeque<Vec<(String, String)>>,
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    seq: u64,
    next_event_id: i64,
    /// The next installation result id; starts at a random base so two simulator runs
    /// on the same address never hand out the same (system_id, installation) pair.
    next_result_id: i64,
}

impl World {
    /// A region with these machines and timings, its random draws seeded by `seed`.
    pub fn new(machines: Vec<SimMachine>, timings: Timings, seed: u64) -> Self {
        let mut w = World {
            index: HashMap::new(),
            zones: vec!["default".into()],
            pools: vec!["default".into()],
            tag_defs: Vec::new(),
            machines: Vec::new(),
            timings,
            ops: Vec::new(),
            events: Vec::new(),
            started: Instant::now(),
            rng: SmallRng::seed_from_u64(seed),
            boot_images: BootImages::default(),
            controllers: Vec::new(),
            list_queries: Default::default(),
            heap: BinaryHeap::new(),
            seq: 0,
            next_event_id: 1,
            next_result_id: i64::from(rand::random::<u32>() >> 1) * 1000 + 1,
        };
        for m in machines {
            w.add(m);
        }
        w
    }

    /// Add a machine (its zone and pool become known).
    pub fn add(&mut self, mut m: SimMachine) {
        // A machine that starts Deployed was installed once, like on a real region.
        if m.installation_result_id.is_none()
            && matches!(m.status, NodeStatus::Deployed | NodeStatus::Deploying)
        {
            m.installation_result_id = Some(self.next_result_id);
            self.next_result_id += 1;
        }
        if !self.zones.contains(&m.zone) {
            self.zones.push(m.zone.clone());
        }
        if !self.pools.contains(&m.pool) {
            self.pools.push(m.pool.clone());
        }
        for t in &m.tags {
            if !self.tag_defs.contains(t) {
                self.tag_defs.push(t.clone());
            }
        }
        self.index.insert(m.system_id.clone(), self.machines.len());
        self.machines.push(m);
    }

    /// The index of a machine by system_id.
    pub fn find(&self, system_id: &str) -> Option<usize> {
        self.index.get(system_id).copied()
    }

    /// Add a region or rack controller. Its system_id must not be a machine's.
    pub fn add_controller(&mut self, mut c: SimController) {
        c.next_event = c.event_every.map(|d| Instant::now() + d);
        self.controllers.push(c);
    }

    /// Log one event of controller `i` now, as a region does for image imports:
    /// the feed then names a system_id that `machines/?id=` does not know.
    pub fn controller_event(&mut self, i: usize, description: &str) {
        let c = &self.controllers[i];
        let (node, hostname, kind) = (c.system_id.clone(), c.hostname.clone(), c.kind);
        self.push_event(
            node,
            hostname,
            "default".into(),
            "INFO",
            kind.event_type(),
            description.into(),
            "unknown",
        );
    }

    /// Log the controllers' periodic events due by `now` (at most one per controller per
    /// call, so a long idle spell does not flood the log).
    fn controller_events_due(&mut self, now: Instant) {
        for i in 0..self.controllers.len() {
            let c = &mut self.controllers[i];
            let (Some(due), Some(every)) = (c.next_event, c.event_every) else {
                continue;
            };
            if due > now {
                continue;
            }
            c.next_event = Some(now + every);
            self.controller_event(i, "Finished importing boot images.");
        }
    }

    /// Apply every transition due by `now`, in time order (events keep that order).
    pub fn advance(&mut self, now: Instant) {
        while let Some(Reverse((due, gen, i))) = self.heap.peek().copied() {
            if due > now {
                break;
            }
            self.heap.pop();
            let m = &self.machines[i];
            if m.generation != gen {
                continue;
            }
            if let Some((_, to)) = m.pending {
                self.finish_transition(i, to);
            }
        }
        if !self.controllers.is_empty() {
            self.controller_events_due(now);
        }
    }

    fn finish_transition(&mut self, i: usize, to: NodeStatus) {
        let m = &mut self.machines[i];
        m.pending = None;
        match to {
            NodeStatus::Ready if m.status == NodeStatus::Commissioning => {
                m.commissioned = true;
                m.power_state = PowerState::Off;
                m.status_message = Some("Ready".into());
            }
            NodeStatus::FailedCommissioning => {
                m.power_state = PowerState::Off;
                m.status_message = Some("Failed commissioning".into());
            }
            NodeStatus::Deployed => {
                m.status_message = Some("Deployed".into());
                // A deployed machine has a configured address.
                if let Some(l) = m.interfaces.first_mut().and_then(|i| i.links.first_mut()) {
                    if l.ip_address.is_none() {
                        l.ip_address =
                            Some(format!("10.20.{}.{}", (i >> 8) & 0xff, (i & 0xff).max(1)));
                    }
                }
            }
            NodeStatus::FailedDeployment => {
                m.status_message = Some("Failed deployment".into());
            }
            NodeStatus::FailedDiskErasing => {
                m.status_message = Some("Failed to erase disks".into());
                m.power_state = PowerState::Off;
            }
            NodeStatus::Ready | NodeStatus::New => {
                // End of a release.
                m.status_message = Some("Released".into());
                m.power_state = PowerState::Off;
            }
            _ => {}
        }
        self.set_status(i, to, None);
    }

    /// Change status and log MAAS's `Node changed status` event.
    pub fn set_status(&mut self, i: usize, to: NodeStatus, to_user: Option<&str>) {
        let m = &mut self.machines[i];
        let from = m.status;
        m.status = to;
        m.cache = None;
        if from == to {
            return;
        }
        let mut description = format!("From '{}' to '{}'", from.label(), to.label());
        if let Some(u) = to_user {
            description.push_str(&format!(" (to {u})"));
        }
        let (node, hostname, zone) = (m.system_id.clone(), m.hostname.clone(), m.zone.clone());
        self.push_event(
            node,
            hostname,
            zone,
            "DEBUG",
            "Node changed status",
            description,
            "unknown",
        );
    }

    /// Append an event to the log with the next id.
    #[allow(clippy::too_many_arguments)]
    pub fn push_event(
        &mut self,
        node: String,
        hostname: String,
        zone: String,
        level: &'static str,
        kind: &str,
        description: String,
        username: &str,
    ) {
        let id = self.next_event_id;
        self.next_event_id += 1;
        self.events.push(Event {
            username: username.into(),
            node,
            hostname,
            id,
            level,
            created: maas_time(SystemTime::now()),
            kind: kind.into(),
            description,
            zone,
        });
    }

    /// Skip event ids, as a feed gap (fault injection).
    pub fn skip_event_ids(&mut self, n: i64) {
        self.next_event_id += n;
    }

    /// Move machine `i` to `to` after `after` (replacing any pending transition).
    pub fn schedule(&mut self, i: usize, after: Duration, to: NodeStatus) {
        let due = Instant::now() + after;
        let m = &mut self.machines[i];
        m.generation += 1;
        m.pending = Some((due, to));
        self.heap.push(Reverse((due, m.generation, i)));
    }

    fn cancel(&mut self, i: usize) {
        let m = &mut self.machines[i];
        m.generation += 1;
        m.pending = None;
    }

    /// Append one entry to the operation log (the server layer's `Call::log` calls it).
    pub fn record(
        &mut self,
        method: &str,
        path: &str,
        op: &str,
        system_id: Option<&str>,
        params: &[(String, String)],
        http_status: u16,
    ) {
        self.seq += 1;
        let status_before = system_id
            .and_then(|s| self.find(s))
            .map(|i| self.machines[i].status.label().to_string());
        self.ops.push(OpRecord {
            seq: self.seq,
            at_ms: self.started.elapsed().as_millis() as u64,
            method: method.into(),
            path: path.into(),
            op: op.into(),
            system_id: system_id.map(str::to_string),
            params: params
                .iter()
                .map(|(k, v)| {
                    let v = if k == "user_data" {
                        "<elided>".to_string()
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect(),
            status_before,
            http_status,
        });
    }

    fn can_edit(&self, i: usize, user: &str) -> bool {
        let m = &self.machines[i];
        !m.locked && m.owner.as_deref().is_none_or(|o| o == user)
    }

    // ---- operations (API 2.0 semantics; 1.0 maps onto these) ----

    /// `op=commission`: New, Ready, Failed commissioning, Broken... to Commissioning.
    pub fn commission(&mut self, i: usize) -> Reply {
        use NodeStatus::*;
        let m = &self.machines[i];
        if m.locked {
            return FORBIDDEN;
        }
        if !matches!(
            m.status,
            New | FailedCommissioning | Missing | Ready | Broken | Testing | FailedTesting
        ) {
            return invalid(
                "__all__",
                "Commission is not available because of the current state of the node.",
            );
        }
        if m.power_type.is_empty() {
            return Reply::Refused(Refusal::ServerError(
                "Unconfigured power type. Please configure the power type and try again.".into(),
            ));
        }
        let fail = m.fail_next_commission
            || self
                .rng
                .gen_bool(self.timings.fail_commission.clamp(0.0, 1.0));
        let m = &mut self.machines[i];
        m.fail_next_commission = false;
        m.storage_layout = None;
        m.power_state = PowerState::On;
        m.status_message = Some("Commissioning".into());
        let to = if fail { FailedCommissioning } else { Ready };
        self.set_status(i, Commissioning, None);
        let t = self.timings.commission;
        self.schedule(i, t, to);
        Reply::Machine(i)
    }

    /// `op=set_storage_layout`: MAAS 3.4 allows it only while Ready (maas-api.md;
    /// `src/maasserver/api/machines.py`), for the layouts of `storage_layouts.py`.
    pub fn set_storage_layout(&mut self, i: usize, user: &str, layout: Option<&str>) -> Reply {
        if !self.can_edit(i, user) {
            return FORBIDDEN;
        }
        if self.machines[i].status != NodeStatus::Ready {
            return conflict("Cannot change the storage layout on a machine that is not Ready.");
        }
        const LAYOUTS: [&str; 7] = ["flat", "lvm", "bcache", "vmfs6", "vmfs7", "custom", "blank"];
        let Some(layout) = layout.filter(|l| LAYOUTS.contains(l)) else {
            return invalid(
                "storage_layout",
                &format!(
                    "Select a valid choice. {} is not one of the available choices.",
                    layout.unwrap_or("")
                ),
            );
        };
        let m = &mut self.machines[i];
        m.storage_layout = Some(layout.to_string());
        m.cache = None;
        Reply::Machine(i)
    }

    /// `POST tags/ name=...`: a manual tag (no definition). MAAS refuses a duplicate name
    /// as a field error.
    pub fn create_tag(&mut self, name: Option<&str>) -> Reply {
        let valid = |n: &str| {
            !n.is_empty()
                && n.len() <= 256
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        match name {
            None | Some("") => invalid("name", "This field is required."),
            Some(n) if !valid(n) => invalid("name", "Invalid character in tag name."),
            Some(n) if self.tag_defs.iter().any(|t| t == n) => {
                invalid("name", "Tag with this Name already exists.")
            }
            Some(n) => {
                self.tag_defs.push(n.to_string());
                Reply::Json(
                    serde_json::json!({"name": n, "definition": "", "comment": "",
                        "kernel_opts": null, "resource_uri": format!("/MAAS/api/2.0/tags/{n}/")})
                    .to_string(),
                )
            }
        }
    }

    /// `POST tags/{name}/?op=update_nodes add=<id>... remove=<id>...`: answers the
    /// counts, as MAAS does (`{"added": n, "removed": n}`).
    pub fn update_tag_nodes(&mut self, name: &str, params: &[(String, String)]) -> Reply {
        let known = self.tag_defs.iter().any(|t| t == name)
            || self
                .machines
                .iter()
                .any(|m| m.tags.iter().any(|t| t == name));
        if !known {
            return Reply::Refused(Refusal::NotFound("No Tag matches the given query.".into()));
        }
        let (mut added, mut removed) = (0, 0);
        for (k, id) in params {
            let Some(i) = self.find(id) else { continue };
            let m = &mut self.machines[i];
            match k.as_str() {
                "add" if !m.tags.iter().any(|t| t == name) => {
                    m.tags.push(name.to_string());
                    added += 1;
                }
                "remove" if m.tags.iter().any(|t| t == name) => {
                    m.tags.retain(|t| t != name);
                    removed += 1;
                }
                _ => continue,
            }
            m.cache = None;
        }
        Reply::Json(serde_json::json!({"added": added, "removed": removed}).to_string())
    }

    /// `machines/?op=allocate system_id=`: a Ready machine to Allocated for `user`.
    pub fn allocate(&mut self, system_id: &str, user: &str) -> Reply {
        let Some(i) = self.find(system_id) else {
            return conflict(format!("No machine with system ID {system_id} available."));
        };
        let m = &self.machines[i];
        if m.status != NodeStatus::Ready
            || m.locked
            || m.owner.as_deref().is_some_and(|o| o != user)
        {
            return conflict(format!("No machine with system ID {system_id} available."));
        }
        self.do_allocate(i, user);
        Reply::Machine(i)
    }

    fn do_allocate(&mut self, i: usize, user: &str) {
        let m = &mut self.machines[i];
        m.owner = Some(user.to_string());
        m.status_message = None;
        self.set_status(i, NodeStatus::Allocated, Some(user));
        let (n, h, z) = {
            let m = &self.machines[i];
            (m.system_id.clone(), m.hostname.clone(), m.zone.clone())
        };
        self.push_event(
            n,
            h,
            z,
            "DEBUG",
            "User acquiring node",
            "(admin)".into(),
            user,
        );
    }

    /// `op=deploy`: Ready or Allocated to Deploying, checking boot images and links.
    pub fn deploy(&mut self, i: usize, user: &str, params: &[(String, String)]) -> Reply {
        use NodeStatus::*;
        if !self.can_edit(i, user) {
            return FORBIDDEN;
        }
        let status = self.machines[i].status;
        if status != Ready && status != Allocated {
            return conflict(format!(
                "Can't deploy a machine that is in the '{}' state",
                status.label()
            ));
        }
        // MAAS's machine form: a series or kernel without boot images is a 400 field
        // error. Checked before a Ready machine is allocated, so a refusal changes nothing.
        let param = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
        let series = match self
            .boot_images
            .validate_deploy(param("distro_series"), param("hwe_kernel"))
        {
            Ok(s) => s,
            Err(e) => return invalid(e.field, &e.message),
        };
        // Without an address-configuring link (auto, dhcp, static) a 3.4.10 region
        // refuses the deploy as a field error (maas-api.md section 7).
        let configured = self.machines[i]
            .interfaces
            .iter()
            .flat_map(|f| f.links.iter())
            .any(|l| matches!(l.mode.as_str(), "auto" | "dhcp" | "static"));
        if !configured {
            return invalid("network", "Node must be configured to use a network");
        }
        if status == Ready {
            self.do_allocate(i, user);
        }
        let fail = self.machines[i].fail_next_deploy
            || self.rng.gen_bool(self.timings.fail_deploy.clamp(0.0, 1.0));
        let m = &mut self.machines[i];
        m.fail_next_deploy = false;
        m.installation_result_id = Some(self.next_result_id);
        self.next_result_id += 1;
        m.osystem = "ubuntu".into();
        m.distro_series = series;
        m.power_state = PowerState::On;
        m.status_message = Some("Deploying".into());
        self.set_status(i, Deploying, None);
        let t = self.timings.deploy;
        self.schedule(i, t, if fail { FailedDeployment } else { Deployed });
        Reply::Machine(i)
    }

    /// `op=power_off`.
    pub fn power_off(&mut self, i: usize, user: &str) -> Reply {
        if !self.can_edit(i, user) {
            return FORBIDDEN;
        }
        let m = &mut self.machines[i];
        if m.power_type == "manual" {
            // MAAS answers `null` when the power driver cannot act.
            return Reply::Null;
        }
        m.power_state = PowerState::Off;
        m.cache = None;
        Reply::Machine(i)
    }

    /// `op=power_on`: only for an allocated machine.
    pub fn power_on(&mut self, i: usize, user: &str) -> Reply {
        if !self.can_edit(i, user) {
            return FORBIDDEN;
        }
        let m = &mut self.machines[i];
        if m.owner.is_none() {
            return conflict("Can't start node: it hasn't been allocated.");
        }
        if m.power_type == "manual" {
            return Reply::Null;
        }
        m.power_state = PowerState::On;
        m.cache = None;
        Reply::Machine(i)
    }

    /// `op=release`: back to Ready (or New if never commissioned), annotations cleared.
    pub fn release(&mut self, i: usize, user: &str) -> Reply {
        self.release_with(i, user, &[])
    }

    /// `op=release` with its form: `erase=true` (with `quick_erase`/`secure_erase`)
    /// goes through Disk erasing to Ready, or Failed disk erasing (MAAS 3.4,
    /// `api/machines.py` `release`).
    pub fn release_with(&mut self, i: usize, user: &str, params: &[(String, String)]) -> Reply {
        use NodeStatus::*;
        let flag = |k: &str| {
            params
                .iter()
                .rev()
                .find(|(p, _)| p == k)
                .is_some_and(|(_, v)| {
                    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "on")
                })
        };
        let erase = flag("erase");
        if !self.can_edit(i, user) {
            return FORBIDDEN;
        }
        let status = self.machines[i].status;
        match status {
            Ready | Releasing => return Reply::Machine(i),
            Allocated | Reserved | Broken | Deploying | Deployed | FailedDeployment
            | FailedDiskErasing | FailedReleasing => {}
            other => {
                return conflict(format!(
                    "Machine cannot be released in its current state ('{}').",
                    other.label()
                ))
            }
        }
        self.cancel(i);
        let m = &mut self.machines[i];
        m.owner = None;
        m.annotations.clear();
        m.osystem.clear();
        m.distro_series.clear();
        m.status_message = Some("Releasing".into());
        for l in m.interfaces.iter_mut().flat_map(|i| i.links.iter_mut()) {
            l.ip_address = None;
        }
        let to = if m.commissioned { Ready } else { New };
        let t = self.timings.release;
        if erase {
            let failed = std::mem::take(&mut m.fail_next_erase);
            m.status_message = Some("Disk erasing".into());
            self.set_status(i, DiskErasing, None);
            self.schedule(i, t, if failed { FailedDiskErasing } else { to });
        } else {
            self.set_status(i, Releasing, None);
            self.schedule(i, t, to);
        }
        Reply::Machine(i)
    }

    /// `op=abort`: stop a commissioning, deployment, erase or test.
    pub fn abort(&mut self, i: usize, user: &str) -> Reply {
        use NodeStatus::*;
        if !self.can_edit(i, user) {
            return FORBIDDEN;
        }
        let status = self.machines[i].status;
        let to = match status {
            Commissioning => New,
            Deploying => Allocated,
            DiskErasing => FailedDiskErasing,
            Testing => FailedTesting,
            other => return conflict(format!("Cannot abort in current state: {}", other.label())),
        };
        self.cancel(i);
        // MAAS answers with the machine still in the old status; the next read shows the new one.
        let m = &mut self.machines[i];
        m.status_message = Some(format!("Aborted {}", status.label().to_ascii_lowercase()));
        m.cache = None;
        let before = Box::new(m.clone());
        self.set_status(i, to, None);
        Reply::MachineBefore(before)
    }

    /// `op=mark_broken`: only by the owner.
    pub fn mark_broken(&mut self, i: usize, user: &str) -> Reply {
        let m = &self.machines[i];
        if m.owner.as_deref() != Some(user) || m.locked {
            return FORBIDDEN;
        }
        self.cancel(i);
        let m = &mut self.machines[i];
        m.broken_from = Some(m.status);
        self.set_status(i, NodeStatus::Broken, None);
        Reply::Machine(i)
    }

    /// `op=mark_fixed`: Broken back to Ready (or Deployed if it was).
    pub fn mark_fixed(&mut self, i: usize) -> Reply {
        let m = &mut self.machines[i];
        if m.status != NodeStatus::Broken {
            return conflict("Can't mark a non-broken node as 'Ready'.");
        }
        let to = if m.broken_from == Some(NodeStatus::Deployed) {
            NodeStatus::Deployed
        } else {
            NodeStatus::Ready
        };
        m.broken_from = None;
        self.set_status(i, to, None);
        Reply::Machine(i)
    }

    /// `op=set_workload_annotations` (and 1.0's `set_owner_data`): empty values delete.
    pub fn set_annotations(&mut self, i: usize, user: &str, params: &[(String, String)]) -> Reply {
        let m = &mut self.machines[i];
        if m.owner.as_deref() != Some(user) {
            return conflict("Cannot set workload annotation: it hasn't been acquired.");
        }
        if m.locked {
            return FORBIDDEN;
        }
        for (k, v) in params {
            if v.is_empty() {
                m.annotations.remove(k);
            } else {
                m.annotations.insert(k.clone(), v.clone());
            }
        }
        m.cache = None;
        Reply::Machine(i)
    }

    /// `PUT machines/{id}/`: hostname, zone, pool, power type and parameters.
    pub fn update(&mut self, i: usize, params: &[(String, String)]) -> Reply {
        if self.machines[i].locked {
            return FORBIDDEN;
        }
        for (k, v) in params {
            if k == "hostname" {
                let label = v.split('.').next().unwrap_or("");
                let ok = !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-');
                if !ok {
                    return invalid(
                        "hostname",
                        &format!("Label contains disallowed characters: '{label}'."),
                    );
                }
                if self
                    .machines
                    .iter()
                    .enumerate()
                    .any(|(j, m)| j != i && m.hostname == label)
                {
                    return invalid("hostname", "Node with this Hostname already exists.");
                }
            }
            if k == "zone" && !self.zones.contains(v) {
                return invalid(
                    "zone",
                    &format!("Select a valid choice. {v} is not one of the available choices."),
                );
            }
        }
        let m = &mut self.machines[i];
        for (k, v) in params {
            match k.as_str() {
                "hostname" => m.hostname = v.split('.').next().unwrap_or(v).to_string(),
                "zone" => m.zone = v.clone(),
                "pool" => m.pool = v.clone(),
                "power_type" => m.power_type = v.clone(),
                other => {
                    if let Some(p) = other.strip_prefix("power_parameters_") {
                        m.power_parameters.insert(p.to_string(), v.clone());
                    }
                }
            }
        }
        m.cache = None;
        Reply::Machine(i)
    }

    /// `interfaces/{id}/?op=link_subnet` and `unlink_subnet`.
    pub fn link_subnet(
        &mut self,
        i: usize,
        iface: i64,
        op: &str,
        params: &[(String, String)],
    ) -> Reply {
        use NodeStatus::*;
        let status = self.machines[i].status;
        if !matches!(status, New | Ready | Allocated | Broken | FailedTesting) {
            return conflict("Cannot link subnet interface because the machine is not New, Ready, Allocated, or Broken.");
        }
        let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
        let m = &mut self.machines[i];
        let Some(ifc) = m.interfaces.iter_mut().find(|f| f.id == iface) else {
            return Reply::Refused(Refusal::NotFound(
                "No Interface matches the given query.".into(),
            ));
        };
        match op {
            "unlink_subnet" => {
                let Some(id) = get("id").and_then(|v| v.parse::<i64>().ok()) else {
                    return invalid("id", "This field is required.");
                };
                let before = ifc.links.len();
                ifc.links.retain(|l| l.id != id);
                if ifc.links.len() == before {
                    return invalid(
                        "id",
                        &format!(
                            "Select a valid choice. {id} is not one of the available choices."
                        ),
                    );
                }
            }
            _ => {
                let mode = get("mode").unwrap_or_default().to_ascii_lowercase();
                if !matches!(mode.as_str(), "auto" | "dhcp" | "static" | "link_up") {
                    return invalid("mode", "Select a valid choice.");
                }
                let id = ifc.links.iter().map(|l| l.id).max().unwrap_or(iface * 100) + 1;
                ifc.links.push(SimLink {
                    id,
                    mode,
                    subnet: get("subnet"),
                    ip_address: get("ip_address"),
                });
            }
        }
        m.cache = None;
        // MAAS answers link/unlink with the interface, not the machine.
        Reply::Interface {
            machine: i,
            interface: iface,
        }
    }
}

/// MAAS's event time format: `Tue, 24 Nov. 2026 17:47:53`.
pub fn maas_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rfc = humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .to_string();
    // rfc: 2026-11-24T17:47:53Z
    let (date, time) = rfc
        .trim_end_matches('Z')
        .split_once('T')
        .unwrap_or(("1970-01-01", "00:00:00"));
    let mut parts = date.split('-');
    let (y, mo, d) = (
        parts.next().unwrap_or("1970"),
        parts.next().unwrap_or("01"),
        parts.next().unwrap_or("01"),
    );
    const MONTHS: [&str; 12] = [
        "Jan.", "Feb.", "March", "April", "May", "June", "July", "Aug.", "Sept.", "Oct.", "Nov.",
        "Dec.",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let month = MONTHS[mo.parse::<usize>().unwrap_or(1).clamp(1, 12) - 1];
    let weekday = DAYS[((secs / 86_400) % 7) as usize];
    format!("{weekday}, {d} {month} {y} {time}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maas_time_looks_like_maas() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_542_473); // 2026-11-24T17:47:53Z
        assert_eq!(maas_time(t), "Tue, 24 Nov. 2026 17:47:53");
    }
}
