//! The lifecycle decision table: what to do next with one machine.
//!
//! [`decide`] is a pure function of what MAAS reported, what this controller remembers
//! about the machine, and the operator's policy. It performs no I/O and reads no clock
//! (the caller passes `now`), so every row below is a unit test. The node actor executes
//! the [`Step`] it returns and records the outcome; nothing here sends anything.
//!
//! ```text
//! New --commission--> Commissioning --> Ready --allocate--> Allocated --deploy--> Deploying --> Deployed
//!                                                                                 |
//!                          post-deploy provisioning (script or HTTP provisioner) <-+
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::maas::model::LinkMode;
use crate::maas::{Escaped, Machine, NodeStatus, PowerState};
use crate::profile::StorageLayout;

/// The state the operator wants selected machines in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Commissioned and Ready, not allocated.
    Ready,
    /// Deployed (and provisioned, when a provisioner is configured).
    Deployed,
}

/// The operator's choices that shape decisions.
#[derive(Debug, Clone)]
pub struct Policy {
    pub target: Target,
    /// Our MAAS username: machines owned by anyone else are never touched.
    pub me: String,
    /// A post-deploy provisioner is configured.
    pub provisioning: bool,
    /// MAC (lowercase) → hostname, from `mappings`.
    pub mappings: Arc<HashMap<String, String>>,
    /// Rename in any state, not only while New.
    pub always_rename: bool,
    /// Relink `auto` interface links to DHCP before allocating.
    pub relink_dhcp: bool,
    /// Run the power helper for machines with no power type.
    pub power_helper: bool,
    /// Machines carrying this MAAS tag are left alone.
    pub skip_tag: Option<String>,
    /// A MAAS tag an operator adds to retry a machine that gave up or is quarantined.
    pub retry_tag: Option<String>,
    /// Commission again after Failed commissioning, up to this many times (0 = never).
    pub recommission_attempts: u32,
    /// Release and redeploy after Failed deployment, up to this many times (0 = never).
    pub redeploy_attempts: u32,
    /// Erase disks when we release (redeploy recovery).
    pub erase: crate::maas::Erase,
    /// The MAAS tag that marks a machine maas-flow quarantined; while it is on a failed
    /// machine, the machine stays quarantined (also across restarts).
    pub quarantine_tag: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            target: Target::Deployed,
            me: String::new(),
            provisioning: false,
            mappings: Arc::default(),
            always_rename: false,
            relink_dhcp: false,
            power_helper: false,
            skip_tag: None,
            retry_tag: None,
            recommission_attempts: 0,
            redeploy_attempts: 0,
            erase: crate::maas::Erase::None,
            quarantine_tag: None,
        }
    }
}

/// A mutating operation on MAAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    PowerOff,
    Commission,
    Allocate,
    Deploy,
    Release,
    Rename(String),
    /// Replace an `auto` link with a DHCP link on the same subnet.
    RelinkDhcp {
        interface: i64,
        link: i64,
        subnet: String,
    },
    /// Run the power helper script and set the power parameters it returns.
    PowerHelper,
    /// Set the storage layout the machine's profile asks for (only while Ready).
    SetStorageLayout(StorageLayout),
    /// Put the quarantine tag on the machine (creating the tag if missing), and say why.
    TagQuarantine(String),
}

/// An [`Action`] without its data: what the memo and metrics count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    PowerOff,
    Commission,
    Allocate,
    Deploy,
    Release,
    Rename,
    RelinkDhcp,
    PowerHelper,
    Provision,
    SetStorageLayout,
    TagQuarantine,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::PowerOff => "power_off",
            ActionKind::Commission => "commission",
            ActionKind::Allocate => "allocate",
            ActionKind::Deploy => "deploy",
            ActionKind::Release => "release",
            ActionKind::Rename => "rename",
            ActionKind::RelinkDhcp => "relink_dhcp",
            ActionKind::PowerHelper => "power_helper",
            ActionKind::Provision => "provision",
            ActionKind::SetStorageLayout => "set_storage_layout",
            ActionKind::TagQuarantine => "tag_quarantine",
        }
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::PowerOff => ActionKind::PowerOff,
            Action::Commission => ActionKind::Commission,
            Action::Allocate => ActionKind::Allocate,
            Action::Deploy => ActionKind::Deploy,
            Action::Release => ActionKind::Release,
            Action::Rename(_) => ActionKind::Rename,
            Action::RelinkDhcp { .. } => ActionKind::RelinkDhcp,
            Action::PowerHelper => ActionKind::PowerHelper,
            Action::SetStorageLayout(_) => ActionKind::SetStorageLayout,
            Action::TagQuarantine(_) => ActionKind::TagQuarantine,
        }
    }
}

/// Where post-deploy provisioning stands for a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provision {
    /// Not run yet for this deployment.
    Pending,
    Running,
    Done,
    /// Failed; may run again at `retry_at`.
    Failed {
        retry_at: Instant,
    },
    /// Failed `max_attempts` times; waits for the operator.
    GaveUp,
}

/// What the node actor remembers between observations. The actor updates it; `decide`
/// only reads it.
#[derive(Debug, Clone, Default)]
pub struct Memo {
    /// The status the `sent` list belongs to; a new status starts a new episode.
    pub status: Option<NodeStatus>,
    /// Operations MAAS accepted while the machine was in `status`: each is sent once.
    pub sent: Vec<ActionKind>,
    /// No operation before this instant (backoff after a failure).
    pub not_before: Option<Instant>,
    /// Recovery commissions sent since the machine was last Ready.
    pub recommissions: u32,
    /// Recovery releases sent since the machine was last Deployed.
    pub redeploys: u32,
    /// MAAS's validation refused this operation (a field error, not a state change):
    /// it is not sent again before `until`, across status changes, unless the operator
    /// sets the retry tag or restarts with another configuration.
    pub refused: Option<Refusal>,
}

/// An operation MAAS refused for a reason no re-read can fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub action: ActionKind,
    /// MAAS's message (escaped, key removed), shown to the operator.
    pub reason: String,
    pub until: Instant,
}

impl Memo {
    pub fn sent(&self, kind: ActionKind) -> bool {
        self.sent.contains(&kind)
    }

    /// Start a new episode if the status changed; returns whether it did.
    pub fn observe(&mut self, status: NodeStatus) -> bool {
        if self.status == Some(status) {
            return false;
        }
        self.status = Some(status);
        self.sent.clear();
        match status {
            NodeStatus::Ready => self.recommissions = 0,
            NodeStatus::Deployed => self.redeploys = 0,
            _ => {}
        }
        true
    }
}

/// Why nothing is sent yet, but something will happen without the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// MAAS is moving the machine (commissioning, deploying, releasing...).
    Transition(NodeStatus),
    /// We sent an operation and wait for MAAS to report its effect.
    Sent(ActionKind),
    Provisioning,
    /// Backoff after a failure.
    RetryAt(Instant),
}

/// Why the machine is left alone until something outside changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// A failed, broken, retired, reserved, rescue or testing status.
    Status(NodeStatus),
    /// Recovery attempts used up.
    Quarantined(NodeStatus),
    /// A status this build does not know.
    UnknownStatus(i64),
    OwnedBy(String),
    /// A status in which MAAS always names an owner (Allocated, Deploying, Deployed,
    /// Failed deployment), but the owner is missing: not positively ours, so untouched.
    NoOwner(NodeStatus),
    /// A status that has no owner in MAAS (Ready) reports one: something else holds it.
    UnexpectedOwner(NodeStatus, String),
    /// Locked in MAAS: no operation, no provisioning, no annotation.
    Locked,
    SkipTag,
    /// New, with no power type and no power helper: MAAS cannot commission it.
    NoPowerType,
    ProvisionGaveUp,
    /// MAAS's validation refused the next operation (`distro_series`, `hwe_kernel`...):
    /// held with MAAS's message until the refusal expires or an operator acts.
    Refused {
        action: ActionKind,
        reason: String,
    },
    /// MAAS sent data that fails validation (a system_id outside MAAS's alphabet, an
    /// address that is not an IP): never acted on.
    InvalidData(String),
}

/// The one next step for a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Act(Action),
    Provision,
    Wait(Wait),
    Hold(Hold),
    /// At the target.
    Done,
}

impl Step {
    /// A short label for status views and logs.
    pub fn label(&self) -> String {
        match self {
            Step::Act(a) => format!("act:{}", a.kind().as_str()),
            Step::Provision => "provision".into(),
            Step::Wait(Wait::Transition(s)) => format!("waiting for MAAS ({s})"),
            Step::Wait(Wait::Sent(k)) => format!("waiting after {}", k.as_str()),
            Step::Wait(Wait::Provisioning) => "provisioning".into(),
            Step::Wait(Wait::RetryAt(_)) => "backing off".into(),
            Step::Hold(Hold::Status(s)) => format!("left alone ({s})"),
            Step::Hold(Hold::Quarantined(s)) => format!("quarantined ({s})"),
            Step::Hold(Hold::UnknownStatus(n)) => format!("left alone (unknown status {n})"),
            Step::Hold(Hold::OwnedBy(o)) => format!("owned by {}", Escaped(o)),
            Step::Hold(Hold::NoOwner(s)) => format!("no owner in {s}: not ours"),
            Step::Hold(Hold::UnexpectedOwner(s, o)) => format!("{s} but owned by {}", Escaped(o)),
            Step::Hold(Hold::Locked) => "locked".into(),
            Step::Hold(Hold::SkipTag) => "skip tag".into(),
            Step::Hold(Hold::NoPowerType) => "no power type".into(),
            Step::Hold(Hold::ProvisionGaveUp) => "provisioning gave up".into(),
            Step::Hold(Hold::Refused { action, reason }) => {
                format!("refused by MAAS ({}): {reason}", action.as_str())
            }
            Step::Hold(Hold::InvalidData(why)) => format!("invalid data from MAAS: {why}"),
            Step::Done => "done".into(),
        }
    }

    /// Whether the machine needs no more work from us (done, or held for a person).
    pub fn settled(&self) -> bool {
        matches!(self, Step::Done | Step::Hold(_))
    }
}

/// What a machine's deploy profile (`crate::profile`) changes in the table: its own
/// target, whether it is provisioned, and a storage layout to set while Ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileChoice {
    pub target: Target,
    pub provisioning: bool,
    pub storage_layout: Option<StorageLayout>,
}

impl ProfileChoice {
    /// The global policy's choices: what a machine no profile matches gets.
    pub fn global(policy: &Policy) -> Self {
        ProfileChoice {
            target: policy.target,
            provisioning: policy.provisioning,
            storage_layout: None,
        }
    }
}

/// Decide the next step for one machine under the global policy alone.
pub fn decide(
    m: &Machine,
    provision: Provision,
    policy: &Policy,
    memo: &Memo,
    now: Instant,
) -> Step {
    decide_for(
        m,
        provision,
        policy,
        &ProfileChoice::global(policy),
        memo,
        now,
    )
}

/// Decide the next step for one machine whose profile made `choice`.
pub fn decide_for(
    m: &Machine,
    provision: Provision,
    policy: &Policy,
    choice: &ProfileChoice,
    memo: &Memo,
    now: Instant,
) -> Step {
    if let Some(why) = &m.invalid {
        return Step::Hold(Hold::InvalidData(why.clone()));
    }
    if let Some(tag) = &policy.skip_tag {
        if m.has_tag(tag) {
            return Step::Hold(Hold::SkipTag);
        }
    }
    if let Some(hold) = ownership(m, policy, choice) {
        return Step::Hold(hold);
    }
    let step = decide_status(m, provision, policy, choice, memo, now);
    if m.locked == Some(true) && matches!(step, Step::Act(_) | Step::Provision) {
        // Locked gates everything we would do, provisioning included.
        return Step::Hold(Hold::Locked);
    }
    match step {
        Step::Act(a) => {
            if let Some(r) = memo
                .refused
                .as_ref()
                .filter(|r| r.action == a.kind() && r.until > now)
            {
                Step::Hold(Hold::Refused {
                    action: r.action,
                    reason: r.reason.clone(),
                })
            } else if memo.sent(a.kind()) {
                Step::Wait(Wait::Sent(a.kind()))
            } else if let Some(t) = memo.not_before.filter(|t| *t > now) {
                Step::Wait(Wait::RetryAt(t))
            } else {
                Step::Act(a)
            }
        }
        Step::Provision => match memo.not_before.filter(|t| *t > now) {
            Some(t) => Step::Wait(Wait::RetryAt(t)),
            None => Step::Provision,
        },
        other => other,
    }
}

/// Recovery attempts are used up: record it in MAAS with the quarantine tag (once),
/// then leave the machine alone.
fn quarantine(m: &Machine, policy: &Policy, attempts: u32) -> Step {
    match &policy.quarantine_tag {
        Some(tag) if !m.tag_names.iter().any(|t| t == tag) => Step::Act(Action::TagQuarantine(
            format!("{} after {attempts} recovery attempt(s)", m.status.label()),
        )),
        _ => Step::Hold(Hold::Quarantined(m.status)),
    }
}

/// The machine carries the quarantine tag in a failed status: MAAS says we quarantined
/// it, whatever this process remembers.
fn tagged_quarantined(m: &Machine, policy: &Policy) -> bool {
    use NodeStatus::*;
    matches!(
        m.status,
        FailedCommissioning | FailedDeployment | FailedDiskErasing
    ) && policy
        .quarantine_tag
        .as_ref()
        .is_some_and(|t| m.tag_names.iter().any(|x| x == t))
}

fn owned_by_other(m: &Machine, policy: &Policy) -> Option<Step> {
    match m.owner.as_deref() {
        Some(o) if o != policy.me => Some(Step::Hold(Hold::OwnedBy(o.to_string()))),
        _ => None,
    }
}

/// Ownership fails closed: act only on a machine positively ours, or unowned where its
/// status has no owner. `None` means the ownership checks pass.
///
/// - Allocated, Deploying, Deployed, Failed deployment: MAAS always names the owner; it
///   must be us. `owner: null` there is an inconsistent answer, not an invitation.
/// - Ready (to be allocated): MAAS clears the owner on release; an owner means someone
///   holds it.
/// - New and Failed commissioning (where we commission): another user's owner means
///   hands off. Other statuses are held or waited on regardless of the owner.
fn ownership(m: &Machine, policy: &Policy, choice: &ProfileChoice) -> Option<Hold> {
    use NodeStatus::*;
    let owner = m.owner.as_deref().filter(|o| !o.is_empty());
    match m.status {
        Allocated | Deploying | Deployed | FailedDeployment => match owner {
            None => Some(Hold::NoOwner(m.status)),
            Some(o) if o != policy.me => Some(Hold::OwnedBy(o.to_string())),
            Some(_) => None,
        },
        // With target `ready` a Ready machine is at its target: nothing to act on.
        Ready if choice.target == Target::Deployed => {
            owner.map(|o| Hold::UnexpectedOwner(m.status, o.to_string()))
        }
        New | FailedCommissioning => match owner {
            Some(o) if o != policy.me => Some(Hold::OwnedBy(o.to_string())),
            _ => None,
        },
        _ => None,
    }
}

fn wanted_hostname<'a>(m: &Machine, policy: &'a Policy) -> Option<&'a str> {
    if policy.mappings.is_empty() {
        return None;
    }
    m.macs()
        .iter()
        .find_map(|mac| policy.mappings.get(&mac.to_ascii_lowercase()))
        .map(String::as_str)
        .filter(|h| *h != m.hostname)
}

fn decide_status(
    m: &Machine,
    provision: Provision,
    policy: &Policy,
    choice: &ProfileChoice,
    memo: &Memo,
    now: Instant,
) -> Step {
    use NodeStatus::*;
    if tagged_quarantined(m, policy) && owned_by_other(m, policy).is_none() {
        return Step::Hold(Hold::Quarantined(m.status));
    }
    if let Some(h) = wanted_hostname(m, policy) {
        let owned_ok = m.owner.as_deref().is_none_or(|o| o == policy.me);
        if (policy.always_rename || m.status == New) && owned_ok && !memo.sent(ActionKind::Rename) {
            return Step::Act(Action::Rename(h.to_string()));
        }
    }
    match m.status {
        New => {
            if m.power_state == PowerState::On && !memo.sent(ActionKind::PowerOff) {
                Step::Act(Action::PowerOff)
            } else if !m.has_power_type() {
                if policy.power_helper && !memo.sent(ActionKind::PowerHelper) {
                    Step::Act(Action::PowerHelper)
                } else if policy.power_helper {
                    Step::Wait(Wait::Sent(ActionKind::PowerHelper))
                } else {
                    Step::Hold(Hold::NoPowerType)
                }
            } else {
                Step::Act(Action::Commission)
            }
        }
        // MAAS accepts a storage layout only while Ready, and commissioning resets it:
        // set it in each Ready episode, before allocating (or before stopping at Ready).
        Ready
            if choice
                .storage_layout
                .is_some_and(|_| !memo.sent(ActionKind::SetStorageLayout)) =>
        {
            match choice.storage_layout {
                Some(l) => Step::Act(Action::SetStorageLayout(l)),
                None => Step::Done,
            }
        }
        Ready => match choice.target {
            Target::Ready => Step::Done,
            Target::Deployed => {
                if policy.relink_dhcp && !memo.sent(ActionKind::RelinkDhcp) {
                    if let Some(a) = auto_link(m) {
                        return Step::Act(a);
                    }
                }
                Step::Act(Action::Allocate)
            }
        },
        Allocated => owned_by_other(m, policy).unwrap_or(match choice.target {
            Target::Ready => Step::Done,
            Target::Deployed => Step::Act(Action::Deploy),
        }),
        Deployed => {
            owned_by_other(m, policy).unwrap_or(match (choice.target, choice.provisioning) {
                (Target::Ready, _) | (Target::Deployed, false) => Step::Done,
                (Target::Deployed, true) => match provision {
                    Provision::Done => Step::Done,
                    Provision::Running => Step::Wait(Wait::Provisioning),
                    Provision::GaveUp => Step::Hold(Hold::ProvisionGaveUp),
                    Provision::Pending => Step::Provision,
                    Provision::Failed { retry_at } if retry_at > now => {
                        Step::Wait(Wait::RetryAt(retry_at))
                    }
                    Provision::Failed { .. } => Step::Provision,
                },
            })
        }
        Deploying => owned_by_other(m, policy).unwrap_or(Step::Wait(Wait::Transition(Deploying))),
        Commissioning | Releasing | DiskErasing | EnteringRescueMode | ExitingRescueMode => {
            Step::Wait(Wait::Transition(m.status))
        }
        FailedCommissioning => {
            if memo.recommissions < policy.recommission_attempts {
                Step::Act(Action::Commission)
            } else if policy.recommission_attempts > 0 {
                quarantine(m, policy, memo.recommissions)
            } else {
                Step::Hold(Hold::Status(m.status))
            }
        }
        FailedDeployment => {
            if let Some(other) = owned_by_other(m, policy) {
                other
            } else if memo.redeploys < policy.redeploy_attempts {
                Step::Act(Action::Release)
            } else if policy.redeploy_attempts > 0 {
                quarantine(m, policy, memo.redeploys)
            } else {
                Step::Hold(Hold::Status(m.status))
            }
        }
        // Our erasing release failed: release (and erase) again within the redeploy
        // budget, then quarantine.
        FailedDiskErasing => {
            if let Some(other) = owned_by_other(m, policy) {
                other
            } else if memo.redeploys < policy.redeploy_attempts {
                Step::Act(Action::Release)
            } else if policy.redeploy_attempts > 0 {
                quarantine(m, policy, memo.redeploys)
            } else {
                Step::Hold(Hold::Status(m.status))
            }
        }
        Missing
        | Reserved
        | Retired
        | Broken
        | FailedReleasing
        | RescueMode
        | FailedEnteringRescueMode
        | FailedExitingRescueMode
        | Testing
        | FailedTesting => Step::Hold(Hold::Status(m.status)),
        Unknown(n) => Step::Hold(Hold::UnknownStatus(n)),
    }
}

/// The first `auto` link, to be relinked as DHCP on the same subnet.
fn auto_link(m: &Machine) -> Option<Action> {
    m.interface_set.iter().find_map(|i| {
        i.links
            .iter()
            .find(|l| l.mode == LinkMode::Auto)
            .and_then(|l| {
                let subnet = l.subnet.as_ref()?;
                let subnet = subnet
                    .cidr
                    .as_deref()
                    .map(str::to_string)
                    .or_else(|| subnet.id.map(|id| id.to_string()))?;
                Some(Action::RelinkDhcp {
                    interface: i.id,
                    link: l.id,
                    subnet,
                })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeStatus::*;

    fn machine(status: NodeStatus, owner: Option<&str>, power: PowerState) -> Machine {
        let mut m: Machine = serde_json::from_value(serde_json::json!({
            "system_id": "abc123", "hostname": "node-1", "status": status.code(),
            "power_type": "ipmi", "power_state": power.as_str(), "owner": owner,
            "interface_set": [{"id": 5, "name": "eth0", "mac_address": "52:54:00:aa:bb:cc",
                "links": [{"id": 9, "mode": "auto", "subnet": {"id": 1, "cidr": "10.0.0.0/24"}}]}],
        }))
        .unwrap();
        m.status = status;
        m
    }

    fn policy() -> Policy {
        Policy {
            me: "maas-flow".into(),
            ..Policy::default()
        }
    }

    /// One row per MAAS status: (status, owner, expected step with target Deployed).
    #[test]
    fn table_every_status_target_deployed() {
        let me = Some("maas-flow");
        let now = Instant::now();
        let rows: Vec<(NodeStatus, Option<&str>, Step)> = vec![
            (New, None, Step::Act(Action::Commission)),
            (
                Commissioning,
                None,
                Step::Wait(Wait::Transition(Commissioning)),
            ),
            (
                FailedCommissioning,
                None,
                Step::Hold(Hold::Status(FailedCommissioning)),
            ),
            (Missing, None, Step::Hold(Hold::Status(Missing))),
            (Ready, None, Step::Act(Action::Allocate)),
            (Reserved, None, Step::Hold(Hold::Status(Reserved))),
            (Deployed, me, Step::Done),
            (Retired, None, Step::Hold(Hold::Status(Retired))),
            (Broken, None, Step::Hold(Hold::Status(Broken))),
            (Deploying, me, Step::Wait(Wait::Transition(Deploying))),
            (Allocated, me, Step::Act(Action::Deploy)),
            (
                FailedDeployment,
                me,
                Step::Hold(Hold::Status(FailedDeployment)),
            ),
            (Releasing, me, Step::Wait(Wait::Transition(Releasing))),
            (
                FailedReleasing,
                me,
                Step::Hold(Hold::Status(FailedReleasing)),
            ),
            (DiskErasing, me, Step::Wait(Wait::Transition(DiskErasing))),
            (
                FailedDiskErasing,
                me,
                Step::Hold(Hold::Status(FailedDiskErasing)),
            ),
            (RescueMode, me, Step::Hold(Hold::Status(RescueMode))),
            (
                EnteringRescueMode,
                me,
                Step::Wait(Wait::Transition(EnteringRescueMode)),
            ),
            (
                FailedEnteringRescueMode,
                me,
                Step::Hold(Hold::Status(FailedEnteringRescueMode)),
            ),
            (
                ExitingRescueMode,
                me,
                Step::Wait(Wait::Transition(ExitingRescueMode)),
            ),
            (
                FailedExitingRescueMode,
                me,
                Step::Hold(Hold::Status(FailedExitingRescueMode)),
            ),
            (Testing, None, Step::Hold(Hold::Status(Testing))),
            (FailedTesting, None, Step::Hold(Hold::Status(FailedTesting))),
            (Unknown(23), None, Step::Hold(Hold::UnknownStatus(23))),
            (Unknown(-1), None, Step::Hold(Hold::UnknownStatus(-1))),
        ];
        assert_eq!(
            rows.len(),
            NodeStatus::ALL.len() + 2,
            "every status has a row"
        );
        for (status, owner, want) in rows {
            let m = machine(status, owner, PowerState::Off);
            let got = decide(&m, Provision::Pending, &policy(), &Memo::default(), now);
            assert_eq!(got, want, "status {status} ({})", status.code());
        }
    }

    #[test]
    fn table_target_ready_stops_at_ready_and_never_goes_back() {
        let p = Policy {
            target: Target::Ready,
            ..policy()
        };
        let now = Instant::now();
        let m = |s| machine(s, Some("maas-flow"), PowerState::Off);
        let memo = Memo::default();
        assert_eq!(
            decide(&m(New), Provision::Pending, &p, &memo, now),
            Step::Act(Action::Commission)
        );
        assert_eq!(
            decide(&m(Ready), Provision::Pending, &p, &memo, now),
            Step::Done
        );
        assert_eq!(
            decide(&m(Allocated), Provision::Pending, &p, &memo, now),
            Step::Done
        );
        assert_eq!(
            decide(&m(Deployed), Provision::Pending, &p, &memo, now),
            Step::Done
        );
    }

    #[test]
    fn new_machine_powered_on_is_powered_off_first_then_commissioned() {
        let now = Instant::now();
        let m = machine(New, None, PowerState::On);
        let mut memo = Memo::default();
        memo.observe(New);
        assert_eq!(
            decide(&m, Provision::Pending, &policy(), &memo, now),
            Step::Act(Action::PowerOff)
        );
        memo.sent.push(ActionKind::PowerOff);
        // MAAS's cached power state may still say "on" (manual power type): go on anyway.
        assert_eq!(
            decide(&m, Provision::Pending, &policy(), &memo, now),
            Step::Act(Action::Commission)
        );
        memo.sent.push(ActionKind::Commission);
        assert_eq!(
            decide(&m, Provision::Pending, &policy(), &memo, now),
            Step::Wait(Wait::Sent(ActionKind::Commission))
        );
    }

    #[test]
    fn machines_of_other_users_are_never_touched() {
        let now = Instant::now();
        for s in [Allocated, Deploying, Deployed, FailedDeployment] {
            let m = machine(s, Some("alice"), PowerState::On);
            assert_eq!(
                decide(&m, Provision::Pending, &policy(), &Memo::default(), now),
                Step::Hold(Hold::OwnedBy("alice".into())),
                "{s}"
            );
        }
    }

    /// Ownership fails closed (issue 12 item 6): one row per case of owner and lock.
    #[test]
    fn table_ownership_and_lock_fail_closed() {
        let now = Instant::now();
        let p = Policy {
            provisioning: true,
            ..policy()
        };
        let me = Some("maas-flow");
        let alice = Some("alice");
        // (status, owner, locked, expected step)
        let rows: Vec<(NodeStatus, Option<&str>, bool, Step)> = vec![
            (Allocated, None, false, Step::Hold(Hold::NoOwner(Allocated))),
            (
                Allocated,
                Some(""),
                false,
                Step::Hold(Hold::NoOwner(Allocated)),
            ),
            (Deploying, None, false, Step::Hold(Hold::NoOwner(Deploying))),
            (Deployed, None, false, Step::Hold(Hold::NoOwner(Deployed))),
            (
                FailedDeployment,
                None,
                false,
                Step::Hold(Hold::NoOwner(FailedDeployment)),
            ),
            (
                Ready,
                alice,
                false,
                Step::Hold(Hold::UnexpectedOwner(Ready, "alice".into())),
            ),
            (
                Ready,
                me,
                false,
                Step::Hold(Hold::UnexpectedOwner(Ready, "maas-flow".into())),
            ),
            (New, alice, false, Step::Hold(Hold::OwnedBy("alice".into()))),
            (
                FailedCommissioning,
                alice,
                false,
                Step::Hold(Hold::OwnedBy("alice".into())),
            ),
            (
                Deployed,
                alice,
                false,
                Step::Hold(Hold::OwnedBy("alice".into())),
            ),
            // Positively ours, or unowned where the status has no owner: act.
            (Deployed, me, false, Step::Provision),
            (Allocated, me, false, Step::Act(Action::Deploy)),
            (Ready, None, false, Step::Act(Action::Allocate)),
            (New, None, false, Step::Act(Action::Commission)),
            (New, me, false, Step::Act(Action::Commission)),
            // Locked: no operation and no provisioning.
            (Deployed, me, true, Step::Hold(Hold::Locked)),
            (Allocated, me, true, Step::Hold(Hold::Locked)),
            (Ready, None, true, Step::Hold(Hold::Locked)),
            (New, None, true, Step::Hold(Hold::Locked)),
            // Locked but nothing to do: waiting is not acting.
            (Deploying, me, true, Step::Wait(Wait::Transition(Deploying))),
        ];
        for (status, owner, locked, want) in rows {
            let mut m = machine(status, owner, PowerState::Off);
            m.locked = Some(locked);
            let got = decide(&m, Provision::Pending, &p, &Memo::default(), now);
            assert_eq!(got, want, "{status} owner {owner:?} locked {locked}");
        }
    }

    #[test]
    fn a_refused_operation_is_held_until_the_refusal_expires_and_invalid_data_always() {
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(300);
        let m = machine(Allocated, Some("maas-flow"), PowerState::Off);
        let memo = Memo {
            refused: Some(Refusal {
                action: ActionKind::Deploy,
                reason: "'noble' is not a valid distro_series.".into(),
                until: later,
            }),
            ..Memo::default()
        };
        let held = decide(&m, Provision::Pending, &policy(), &memo, now);
        assert_eq!(
            held,
            Step::Hold(Hold::Refused {
                action: ActionKind::Deploy,
                reason: "'noble' is not a valid distro_series.".into()
            })
        );
        assert!(held.settled());
        assert_eq!(
            held.label(),
            "refused by MAAS (deploy): 'noble' is not a valid distro_series."
        );
        assert_eq!(
            decide(&m, Provision::Pending, &policy(), &memo, later),
            Step::Act(Action::Deploy)
        );
        // A refusal of another operation does not hold this one.
        let ready = machine(Ready, None, PowerState::Off);
        assert_eq!(
            decide(&ready, Provision::Pending, &policy(), &memo, now),
            Step::Act(Action::Allocate)
        );
        let mut bad = machine(New, None, PowerState::Off);
        bad.invalid = Some("empty system_id".into());
        assert_eq!(
            decide(&bad, Provision::Pending, &policy(), &Memo::default(), now),
            Step::Hold(Hold::InvalidData("empty system_id".into()))
        );
    }

    #[test]
    fn owner_names_cannot_break_a_log_line() {
        let m = machine(Deployed, Some("eve\nforged"), PowerState::On);
        let step = decide(
            &m,
            Provision::Pending,
            &policy(),
            &Memo::default(),
            Instant::now(),
        );
        assert_eq!(step.label(), "owned by eve\\nforged");
    }

    #[test]
    fn provisioning_follows_deployed() {
        let now = Instant::now();
        let p = Policy {
            provisioning: true,
            ..policy()
        };
        let m = machine(Deployed, Some("maas-flow"), PowerState::On);
        let memo = Memo::default();
        assert_eq!(
            decide(&m, Provision::Pending, &p, &memo, now),
            Step::Provision
        );
        assert_eq!(
            decide(&m, Provision::Running, &p, &memo, now),
            Step::Wait(Wait::Provisioning)
        );
        assert_eq!(decide(&m, Provision::Done, &p, &memo, now), Step::Done);
        assert_eq!(
            decide(&m, Provision::GaveUp, &p, &memo, now),
            Step::Hold(Hold::ProvisionGaveUp)
        );
        let later = now + std::time::Duration::from_secs(30);
        let backoff = Memo {
            not_before: Some(later),
            ..Memo::default()
        };
        assert_eq!(
            decide(&m, Provision::Failed { retry_at: later }, &p, &backoff, now),
            Step::Wait(Wait::RetryAt(later))
        );
        assert_eq!(
            decide(
                &m,
                Provision::Failed { retry_at: later },
                &p,
                &backoff,
                later
            ),
            Step::Provision
        );
    }

    #[test]
    fn backoff_delays_actions_and_skip_tag_and_lock_hold() {
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(5);
        let mut m = machine(Ready, None, PowerState::Off);
        let memo = Memo {
            not_before: Some(later),
            ..Memo::default()
        };
        assert_eq!(
            decide(&m, Provision::Pending, &policy(), &memo, now),
            Step::Wait(Wait::RetryAt(later))
        );
        assert_eq!(
            decide(&m, Provision::Pending, &policy(), &memo, later),
            Step::Act(Action::Allocate)
        );
        m.tag_names.push("maas-flow-skip".into());
        let p = Policy {
            skip_tag: Some("maas-flow-skip".into()),
            ..policy()
        };
        assert_eq!(
            decide(&m, Provision::Pending, &p, &Memo::default(), now),
            Step::Hold(Hold::SkipTag)
        );
        m.tag_names.clear();
        m.locked = Some(true);
        assert_eq!(
            decide(&m, Provision::Pending, &policy(), &Memo::default(), now),
            Step::Hold(Hold::Locked)
        );
    }

    #[test]
    fn recovery_policies_are_bounded_then_quarantine() {
        let now = Instant::now();
        let p = Policy {
            recommission_attempts: 2,
            redeploy_attempts: 1,
            ..policy()
        };
        let m = machine(FailedCommissioning, None, PowerState::Off);
        let mut memo = Memo::default();
        assert_eq!(
            decide(&m, Provision::Pending, &p, &memo, now),
            Step::Act(Action::Commission)
        );
        memo.recommissions = 2;
        assert_eq!(
            decide(&m, Provision::Pending, &p, &memo, now),
            Step::Hold(Hold::Quarantined(FailedCommissioning))
        );
        let m = machine(FailedDeployment, Some("maas-flow"), PowerState::Off);
        assert_eq!(
            decide(&m, Provision::Pending, &p, &Memo::default(), now),
            Step::Act(Action::Release)
        );
        // An erasing release that failed is released again, within the same budget.
        let m = machine(FailedDiskErasing, Some("maas-flow"), PowerState::Off);
        assert_eq!(
            decide(&m, Provision::Pending, &p, &Memo::default(), now),
            Step::Act(Action::Release)
        );
        let spent = Memo {
            redeploys: 1,
            ..Memo::default()
        };
        assert_eq!(
            decide(&m, Provision::Pending, &p, &spent, now),
            Step::Hold(Hold::Quarantined(FailedDiskErasing))
        );
    }

    #[test]
    fn mapping_renames_new_machines_and_relink_precedes_allocate() {
        let now = Instant::now();
        let mut map = HashMap::new();
        map.insert("52:54:00:aa:bb:cc".to_string(), "rack1-node7".to_string());
        let p = Policy {
            mappings: Arc::new(map),
            relink_dhcp: true,
            ..policy()
        };
        let m = machine(New, None, PowerState::Off);
        assert_eq!(
            decide(&m, Provision::Pending, &p, &Memo::default(), now),
            Step::Act(Action::Rename("rack1-node7".into()))
        );
        // Not New and not always_rename: no rename; relink first.
        let m = machine(Ready, None, PowerState::Off);
        assert_eq!(
            decide(&m, Provision::Pending, &p, &Memo::default(), now),
            Step::Act(Action::RelinkDhcp {
                interface: 5,
                link: 9,
                subnet: "10.0.0.0/24".into()
            })
        );
        let memo = Memo {
            sent: vec![ActionKind::RelinkDhcp],
            ..Memo::default()
        };
        assert_eq!(
            decide(&m, Provision::Pending, &p, &memo, now),
            Step::Act(Action::Allocate)
        );
    }

    /// A profile's storage layout is set once per Ready episode, then the machine goes on
    /// to its profile's target; a profile can stop at Ready while the global goes on.
    #[test]
    fn profile_storage_layout_precedes_allocate_and_profile_target_wins() {
        let now = Instant::now();
        let m = machine(Ready, None, PowerState::Off);
        let lvm = ProfileChoice {
            target: Target::Deployed,
            provisioning: false,
            storage_layout: Some(StorageLayout::Lvm),
        };
        let mut memo = Memo::default();
        memo.observe(Ready);
        assert_eq!(
            decide_for(&m, Provision::Pending, &policy(), &lvm, &memo, now),
            Step::Act(Action::SetStorageLayout(StorageLayout::Lvm))
        );
        memo.sent.push(ActionKind::SetStorageLayout);
        assert_eq!(
            decide_for(&m, Provision::Pending, &policy(), &lvm, &memo, now),
            Step::Act(Action::Allocate)
        );
        // Commissioning again resets the layout in MAAS: the next Ready sets it again.
        memo.observe(Commissioning);
        memo.observe(Ready);
        assert_eq!(
            decide_for(&m, Provision::Pending, &policy(), &lvm, &memo, now),
            Step::Act(Action::SetStorageLayout(StorageLayout::Lvm))
        );
        let ready = ProfileChoice {
            target: Target::Ready,
            ..lvm
        };
        memo.sent.push(ActionKind::SetStorageLayout);
        assert_eq!(
            decide_for(&m, Provision::Pending, &policy(), &ready, &memo, now),
            Step::Done
        );
        let provisioned = ProfileChoice {
            target: Target::Deployed,
            provisioning: true,
            storage_layout: None,
        };
        let d = machine(Deployed, Some("maas-flow"), PowerState::On);
        assert_eq!(
            decide_for(
                &d,
                Provision::Pending,
                &policy(),
                &provisioned,
                &Memo::default(),
                now
            ),
            Step::Provision,
            "the profile's own provisioning step runs though the global has none"
        );
    }

    /// With a quarantine tag configured, a used-up machine is tagged first, then held;
    /// a failed machine carrying the tag stays quarantined whatever the counters say.
    #[test]
    fn quarantine_is_recorded_with_a_tag_and_the_tag_is_honoured() {
        let now = Instant::now();
        let p = Policy {
            recommission_attempts: 1,
            quarantine_tag: Some("maas-flow-quarantine".into()),
            ..policy()
        };
        let mut m = machine(FailedCommissioning, None, PowerState::Off);
        let spent = Memo {
            recommissions: 1,
            ..Memo::default()
        };
        assert_eq!(
            decide(&m, Provision::Pending, &p, &spent, now),
            Step::Act(Action::TagQuarantine(
                "Failed commissioning after 1 recovery attempt(s)".into()
            ))
        );
        m.tag_names.push("maas-flow-quarantine".into());
        assert_eq!(
            decide(&m, Provision::Pending, &p, &spent, now),
            Step::Hold(Hold::Quarantined(FailedCommissioning))
        );
        // A restart forgets the counters; the tag does not.
        assert_eq!(
            decide(&m, Provision::Pending, &p, &Memo::default(), now),
            Step::Hold(Hold::Quarantined(FailedCommissioning))
        );
        // Outside a failed status the tag does not hold the machine.
        let mut r = machine(Ready, None, PowerState::Off);
        r.tag_names.push("maas-flow-quarantine".into());
        assert_eq!(
            decide(&r, Provision::Pending, &p, &Memo::default(), now),
            Step::Act(Action::Allocate)
        );
    }

    #[test]
    fn memo_resets_on_status_change() {
        let mut memo = Memo::default();
        assert!(memo.observe(New));
        memo.sent.push(ActionKind::Commission);
        assert!(!memo.observe(New));
        assert!(memo.sent(ActionKind::Commission));
        assert!(memo.observe(Commissioning));
        assert!(memo.sent.is_empty());
    }
}
