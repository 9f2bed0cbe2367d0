//! The supervisor: applies the filter, keeps exactly one node actor per selected
//! machine, and routes each observation to it.
//!
//! A machine seen for the first time gets an actor; an actor that died is started
//! again on the next snapshot; a machine that vanished from a full list or left the
//! filter has its actor retired once its operation in flight completes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use tracing::{info, warn};

use super::{NodeActor, Observed, Retire, SharedDeps, Snapshot, StandDown};
use crate::filter::Filter;

pub struct Supervisor {
    deps: SharedDeps,
    filter: Arc<Filter>,
    nodes: HashMap<String, Addr<NodeActor>>,
}

impl Supervisor {
    pub fn new(deps: SharedDeps, filter: Arc<Filter>) -> Self {
        Supervisor {
            deps,
            filter,
            nodes: HashMap::new(),
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<Snapshot> for Supervisor {
    type Result = ();

    fn handle(&mut self, snap: Snapshot, _ctx: &mut Self::Context) {
        let mut selected: HashSet<&str> = HashSet::with_capacity(self.nodes.len());
        let mut spawned = 0usize;
        for m in snap.machines.iter() {
            if !self.filter.selects(m) {
                // A delta can show a machine leaving the filter (zone moved, renamed).
                if !snap.full {
                    if let Some(addr) = self.nodes.remove(&m.system_id) {
                        info!(system_id = %crate::maas::Escaped(&m.system_id), "machine left the filter; no longer managed");
                        addr.do_send(Retire);
                        self.deps.board.remove(&m.system_id);
                    }
                }
                continue;
            }
            selected.insert(m.system_id.as_str());
            let msg = Observed {
                machine: m.clone(),
                fetched_at: snap.fetched_at,
            };
            match self.nodes.get(&m.system_id) {
                Some(addr) if addr.connected() => addr.do_send(msg),
                existing => {
                    if existing.is_some() {
                        warn!(system_id = %crate::maas::Escaped(&m.system_id), hostname = %crate::maas::Escaped(&m.hostname), "node actor had stopped; starting it again");
                    }
                    spawned += 1;
                    let addr =
                        NodeActor::new(self.deps.clone(), m.clone(), snap.fetched_at).start();
                    self.nodes.insert(m.system_id.clone(), addr);
                }
            }
        }
        if spawned > 0 {
            info!(spawned, total = self.nodes.len(), "tracking new machines");
        }
        if snap.full {
            let gone: Vec<String> = self
                .nodes
                .keys()
                .filter(|id| !selected.contains(id.as_str()))
                .cloned()
                .collect();
            for id in gone {
                if let Some(addr) = self.nodes.remove(&id) {
                    info!(system_id = %crate::maas::Escaped(&id), "machine vanished or left the filter; no longer managed");
                    addr.do_send(Retire);
                }
                self.deps.board.remove(&id);
            }
            let n = self.nodes.len();
            self.deps.board.with_global(|g| g.machines_selected = n);
        }
    }
}

/// Retire every node actor (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireAll;

impl Handler<RetireAll> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: RetireAll, _ctx: &mut Self::Context) {
        for (_, addr) in self.nodes.drain() {
            addr.do_send(Retire);
        }
    }
}

impl Handler<StandDown> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: StandDown, ctx: &mut Self::Context) {
        for (_, addr) in self.nodes.drain() {
            addr.do_send(StandDown);
        }
        ctx.stop();
    }
}
