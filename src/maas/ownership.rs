//! Which machines are ours when MAAS cannot tell us our username.
//!
//! maas-flow never touches a machine another user allocated, so it must know which
//! machines are its own. API 2.0 answers `users/?op=whoami`; MAAS 1.9 and Canonical's
//! gomaasapi 1.0 TestServer have no whoami (canonical/maas tag 1.9.5,
//! `src/maasserver/api/users.py`). What 1.9 does have is `nodes/?op=list_allocated`,
//! "nodes allocated to the user/oauth token" (`src/maasserver/api/nodes.py`). So on
//! API 1.0 without whoami the poller reads that list right after each machine list and
//! rewrites every machine's `owner` into one of the markers below before the lifecycle
//! sees it; the lifecycle's rule ("act only on machines whose owner is us") then holds
//! unchanged, with [`ALLOCATED_TO_KEY`] standing for "us".
//!
//! The read comes **after** the machine list: a machine in the answer was ours at some
//! moment after the list was taken, so acting on the list's view of it is as safe as
//! with a username. If the read fails, ownership is unknown and every machine that has
//! or needs an owner is marked [`OWNER_UNKNOWN`]: it is left alone for that period.
//! The markers contain spaces and parentheses, which MAAS usernames (Django's
//! `[\w.@+-]+`) cannot, so no real user can be mistaken for us.

use std::collections::HashSet;
use std::sync::Arc;

use super::{MaasClient, MaasError, Machine, NodeStatus};

/// Our identity in the lifecycle's ownership checks on API 1.0 without whoami.
pub const ALLOCATED_TO_KEY: &str = "(allocated to this API key)";
/// An allocated machine with no `owner` field that `list_allocated` did not name.
pub const NOT_ALLOCATED_TO_KEY: &str = "(not allocated to this API key)";
/// `list_allocated` failed this period: whose machine it is cannot be told.
pub const OWNER_UNKNOWN: &str = "(owner unknown: nodes/?op=list_allocated failed)";

/// How the controller knows which machines are its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Our MAAS username, from whoami or `maas.username`.
    Username(String),
    /// API 1.0 without whoami: the machines `list_allocated` names, read every period.
    AllocatedToKey,
}

impl Identity {
    /// The name the lifecycle compares owners with.
    pub fn policy_name(&self) -> &str {
        match self {
            Identity::Username(u) => u,
            Identity::AllocatedToKey => ALLOCATED_TO_KEY,
        }
    }
}

/// Why `list_allocated` gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum AllocatedError {
    #[error(transparent)]
    Maas(#[from] MaasError),
    #[error("nodes/?op=list_allocated answer is not a list of nodes with a system_id: {0}")]
    Parse(#[source] serde_json::Error),
}

/// Read the system ids of the machines allocated to our API key.
pub async fn read_allocated(client: &MaasClient) -> Result<HashSet<String>, AllocatedError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        system_id: String,
    }
    let req = client.api().list_allocated();
    let body = client.call(&req, "read").await?;
    let entries: Vec<Entry> = serde_json::from_slice(&body).map_err(AllocatedError::Parse)?;
    Ok(entries.into_iter().map(|e| e.system_id).collect())
}

/// Read `list_allocated` (after the machine list) and mark the machines' owners; a failed
/// read marks ownership unknown for this period.
pub async fn mark(client: &MaasClient, machines: &mut [Arc<Machine>]) {
    match read_allocated(client).await {
        Ok(set) => {
            let ours = apply(machines, Some(&set));
            tracing::debug!(ours, "nodes/?op=list_allocated read");
        }
        Err(e) => {
            let held = machines
                .iter()
                .filter(|m| m.owner.is_some() || needs_owner(m.status))
                .count();
            let hint = match &e {
                // gomaasapi's TestServer has neither whoami nor list_allocated.
                AllocatedError::Maas(m) if matches!(m.code(), 400 | 404) => {
                    "; this server has no nodes/?op=list_allocated either: set maas.username"
                }
                _ => "",
            };
            tracing::warn!(error = %e, held, "cannot tell which machines are ours this period; leaving allocated and deployed machines alone{hint}");
            apply(machines, None);
        }
    }
}

/// Statuses in which the lifecycle acts only on machines that are ours.
fn needs_owner(status: NodeStatus) -> bool {
    matches!(
        status,
        NodeStatus::Allocated
            | NodeStatus::Deploying
            | NodeStatus::Deployed
            | NodeStatus::FailedDeployment
    )
}

/// Rewrite owners from `allocated` (`None`: the read failed, ownership unknown).
/// Returns how many machines are marked ours.
pub fn apply(machines: &mut [Arc<Machine>], allocated: Option<&HashSet<String>>) -> usize {
    let mut ours = 0;
    for m in machines.iter_mut() {
        let marker = match allocated {
            Some(set) if set.contains(&m.system_id) => {
                ours += 1;
                Some(ALLOCATED_TO_KEY)
            }
            // Someone's machine, named by MAAS, and not ours: the name says whose.
            Some(_) if m.owner.is_some() => None,
            Some(_) if needs_owner(m.status) => Some(NOT_ALLOCATED_TO_KEY),
            Some(_) => None,
            None if m.owner.is_some() || needs_owner(m.status) => Some(OWNER_UNKNOWN),
            None => None,
        };
        if let Some(marker) = marker {
            if m.owner.as_deref() != Some(marker) {
                Arc::make_mut(m).owner = Some(Arc::from(marker));
            }
        }
    }
    ours
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{decide, Hold, Memo, Policy, Provision, Step};
    use crate::maas::{parse_machine_list, ApiVersion};

    fn nodes() -> Vec<Arc<Machine>> {
        // API 1.0 nodes: folded status 6 with the real one in substatus.
        let body = br#"[
            {"system_id":"mine","hostname":"a.maas","status":6,"substatus":10,"owner":"cord"},
            {"system_id":"theirs","hostname":"b.maas","status":6,"substatus":10,"owner":"alice"},
            {"system_id":"noowner","hostname":"c.maas","status":6,"substatus":10},
            {"system_id":"ready","hostname":"d.maas","status":4,"substatus":4,"power_type":"ipmi"}
        ]"#;
        parse_machine_list(body, ApiVersion::V1).unwrap().machines
    }

    fn step(m: &Machine) -> Step {
        let policy = Policy {
            me: Identity::AllocatedToKey.policy_name().to_string(),
            ..Policy::default()
        };
        decide(
            m,
            Provision::Pending,
            &policy,
            &Memo::default(),
            std::time::Instant::now(),
        )
    }

    #[test]
    fn only_machines_list_allocated_names_are_ours() {
        let mut ms = nodes();
        let set: HashSet<String> = ["mine".to_string()].into();
        assert_eq!(apply(&mut ms, Some(&set)), 1);
        let steps: Vec<Step> = ms.iter().map(|m| step(m)).collect();
        assert!(matches!(steps[0], Step::Act(_)), "{:?}", steps[0]);
        assert_eq!(steps[1], Step::Hold(Hold::OwnedBy("alice".into())));
        assert_eq!(
            steps[2],
            Step::Hold(Hold::OwnedBy(NOT_ALLOCATED_TO_KEY.into()))
        );
        assert!(matches!(steps[3], Step::Act(_)), "Ready needs no owner");
    }

    #[test]
    fn a_failed_read_leaves_every_owned_machine_alone() {
        let mut ms = nodes();
        assert_eq!(apply(&mut ms, None), 0);
        for m in &ms[..3] {
            assert_eq!(step(m), Step::Hold(Hold::OwnedBy(OWNER_UNKNOWN.into())));
        }
        assert!(matches!(step(&ms[3]), Step::Act(_)));
    }
}
