//! The supervisor: applies the filter, keeps exactly one node actor per selected
//! machine, and routes each observation to it.
//!
//! One actor's work per system_id at any time, across actor lifetimes (kube-runtime's
//! "one reconcile per key"): an actor asked to stop goes to `retiring` and keeps its
//! operation or provisioning run in flight until it completes; no new actor is started
//! for that system_id until the old one has stopped, and then only from an observation
//! requested after it stopped (so the new actor sees the old one's last writes, such as
//! the provisioning annotation).
//!
//! A machine is forgotten only when MAAS says so twice: absent from two consecutive full
//! lists, or a direct read (`GET machines/{id}/`) answering 404. A full list that drops
//! more than half of the managed machines at once is suspect (an empty or short answer
//! from a struggling region): it is logged and counted, and the missing machines are
//! read one by one before any is retired.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use super::{NodeActor, Observed, Retire, SharedDeps, Snapshot, StandDown};
use crate::filter::Filter;
use crate::maas::{parse_machine, ErrorClass, Escaped, MaasError, Machine};

/// Direct reads (`GET machines/{id}/`) in flight at once.
const READ_PARALLEL: usize = 4;
/// Full lists a managed machine may be missing from before it is forgotten.
const ABSENT_LISTS: u32 = 2;
/// How often stopped retiring actors are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// How long the stop time of an old actor is kept to reject older observations; any
/// list requested before the stop has arrived long before this.
const STOPPED_MEMORY: Duration = Duration::from_secs(3600);

pub struct Supervisor {
    deps: SharedDeps,
    filter: Arc<Filter>,
    nodes: HashMap<String, Addr<NodeActor>>,
    /// Actors asked to stop; their work may still be running.
    retiring: HashMap<String, Addr<NodeActor>>,
    /// Selected again while their old actor still runs: managed once it has stopped.
    wanted_back: HashSet<String>,
    /// When an old actor was found stopped: its successor starts only from a newer
    /// observation.
    stopped: HashMap<String, Instant>,
    /// Consecutive full lists each managed machine was missing from.
    absent: HashMap<String, u32>,
    /// Direct reads in flight.
    reading: HashSet<String>,
    /// The filter's per-pattern match counts were logged (after the first full list).
    filter_reported: bool,
}

impl Supervisor {
    pub fn new(deps: SharedDeps, filter: Arc<Filter>) -> Self {
        Supervisor {
            deps,
            filter,
            nodes: HashMap::new(),
            retiring: HashMap::new(),
            wanted_back: HashSet::new(),
            stopped: HashMap::new(),
            absent: HashMap::new(),
            reading: HashSet::new(),
            filter_reported: false,
        }
    }

    /// Stop managing a machine: its actor finishes what is in flight, then stops.
    fn retire(&mut self, id: &str, why: &'static str) {
        self.absent.remove(id);
        self.wanted_back.remove(id);
        if let Some(addr) = self.nodes.remove(id) {
            info!(system_id = %Escaped(id), "{why}; no longer managed");
            addr.do_send(Retire);
            self.retiring.insert(id.to_string(), addr);
        }
        self.deps.board.remove(id);
    }

    /// Route one selected machine's observation, starting its actor if needed.
    fn route(&mut self, m: Arc<Machine>, fetched_at: Instant, ctx: &mut Context<Self>) {
        let id = m.system_id.clone();
        self.absent.remove(&id);
        if let Some(addr) = self.nodes.get(&id) {
            if addr.connected() {
                addr.do_send(Observed {
                    machine: m,
                    fetched_at,
                });
                return;
            }
            warn!(system_id = %Escaped(&id), hostname = %Escaped(&m.hostname), "node actor had stopped; starting it again from a fresh read");
            self.nodes.remove(&id);
            self.stopped.insert(id.clone(), Instant::now());
        }
        if let Some(old) = self.retiring.get(&id) {
            if old.connected() {
                if self.wanted_back.insert(id.clone()) {
                    info!(system_id = %Escaped(&id), hostname = %Escaped(&m.hostname), "selected again while its previous actor finishes; managed once that one has stopped");
                }
                return;
            }
            self.retiring.remove(&id);
            self.stopped.insert(id.clone(), Instant::now());
        }
        if self.reading.contains(&id) {
            // A direct read is on its way and will decide.
            return;
        }
        if let Some(t) = self.stopped.get(&id) {
            if fetched_at <= *t {
                // Requested before the previous actor had stopped: it may predate that
                // actor's last writes. Read MAAS again rather than act on it.
                self.read_direct(vec![id], ctx);
                return;
            }
            self.stopped.remove(&id);
        }
        self.wanted_back.remove(&id);
        debug!(system_id = %Escaped(&id), hostname = %Escaped(&m.hostname), "managing machine");
        let addr = NodeActor::new(self.deps.clone(), m, fetched_at).start();
        self.nodes.insert(id, addr);
    }

    /// One observation, full list or delta: filter, then route or retire.
    fn observe(&mut self, m: &Arc<Machine>, fetched_at: Instant, ctx: &mut Context<Self>) {
        if self.filter.selects(m) {
            self.route(m.clone(), fetched_at, ctx);
        } else if self.nodes.contains_key(&m.system_id) || self.wanted_back.contains(&m.system_id) {
            self.retire(&m.system_id, "machine left the filter");
        }
    }

    /// Read machines one by one (`GET machines/{id}/`), a few at once: 404 forgets a
    /// machine, an answer is routed like any observation, an error leaves it as it is.
    fn read_direct(&mut self, ids: Vec<String>, ctx: &mut Context<Self>) {
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|id| self.reading.insert(id.clone()))
            .collect();
        if ids.is_empty() {
            return;
        }
        let client = self.deps.client.clone();
        let version = client.settings().version;
        let fut = async move {
            futures_util::stream::iter(ids)
                .map(|id| {
                    let client = client.clone();
                    async move {
                        let sent = Instant::now();
                        let req = client.api().read(&id);
                        let res = match client.call(&req, "read").await {
                            Ok(body) => parse_machine(&body, version).map_err(|e| e.to_string()),
                            Err(e) => return (id, sent, Err(Some(e))),
                        };
                        (id, sent, res.map_err(|_| None))
                    }
                })
                .buffer_unordered(READ_PARALLEL)
                .collect::<Vec<_>>()
                .await
        };
        ctx.spawn(fut.into_actor(self).map(|results, act, ctx| {
            for (id, sent, res) in results {
                act.reading.remove(&id);
                act.read_done(id, sent, res, ctx);
            }
        }));
    }

    fn read_done(
        &mut self,
        id: String,
        sent: Instant,
        res: Result<Machine, Option<MaasError>>,
        ctx: &mut Context<Self>,
    ) {
        match res {
            Ok(m) if m.system_id == id => {
                let m = Arc::new(m);
                self.observe(&m, sent, ctx);
            }
            Ok(m) => {
                warn!(system_id = %Escaped(&id), answered = %Escaped(&m.system_id), "MAAS answered a read with another machine; ignored")
            }
            Err(Some(e)) if e.class() == ErrorClass::NotFound => {
                self.retire(&id, "MAAS answers 404 for the machine");
                self.stopped.remove(&id);
            }
            Err(Some(e)) => {
                warn!(system_id = %Escaped(&id), error = %e, "cannot read the machine; the next list decides")
            }
            Err(None) => {
                warn!(system_id = %Escaped(&id), "MAAS answered a read of the machine with something unusable; the next list decides")
            }
        }
    }

    /// Find retiring actors that have stopped; a machine wanted back is read again and
    /// managed by a new actor.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let done: Vec<String> = self
            .retiring
            .iter()
            .filter(|(_, a)| !a.connected())
            .map(|(id, _)| id.clone())
            .collect();
        let now = Instant::now();
        let mut back = Vec::new();
        for id in done {
            self.retiring.remove(&id);
            self.stopped.insert(id.clone(), now);
            if self.wanted_back.contains(&id) {
                back.push(id);
            }
        }
        if !back.is_empty() {
            self.read_direct(back, ctx);
        }
        self.stopped
            .retain(|_, t| now.saturating_duration_since(*t) < STOPPED_MEMORY);
    }

    /// A full list: machines missing from it are counted, and forgotten after
    /// `ABSENT_LISTS` lists or a 404; a suspect list only triggers direct reads.
    fn missing_from_full(&mut self, seen: &HashSet<&str>, ctx: &mut Context<Self>) {
        let missing: Vec<String> = self
            .nodes
            .keys()
            .filter(|id| !seen.contains(id.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        let managed = self.nodes.len();
        if managed >= 2 && missing.len() * 2 > managed {
            warn!(
                missing = missing.len(),
                managed,
                "a full list dropped more than half of the managed machines; reading them one by one before retiring any"
            );
            self.deps.metrics.suspect_lists.inc();
            self.read_direct(missing, ctx);
            return;
        }
        let mut to_read = Vec::new();
        for id in missing {
            let n = self.absent.entry(id.clone()).or_insert(0);
            *n += 1;
            if *n >= ABSENT_LISTS {
                self.retire(&id, "machine absent from two consecutive full lists");
            } else {
                debug!(system_id = %Escaped(&id), "machine missing from a full list; reading it");
                to_read.push(id);
            }
        }
        self.read_direct(to_read, ctx);
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SWEEP_EVERY, |act, ctx| {
            if !act.retiring.is_empty() {
                act.sweep(ctx);
            }
        });
    }
}

impl Handler<Snapshot> for Supervisor {
    type Result = ();

    fn handle(&mut self, snap: Snapshot, ctx: &mut Self::Context) {
        if snap.full && !self.filter_reported {
            // A wrong exclude is destructive: show at once what each pattern matches.
            self.filter_reported = true;
            self.filter
                .report(
                    snap.machines
                        .iter()
                        .map(|m| (m.hostname.as_str(), m.zone_name())),
                )
                .log();
        }
        let before = self.nodes.len();
        if !self.retiring.is_empty() {
            self.sweep(ctx);
        }
        let mut seen: HashSet<&str> = HashSet::with_capacity(snap.machines.len());
        for m in snap.machines.iter() {
            seen.insert(m.system_id.as_str());
            self.observe(m, snap.fetched_at, ctx);
        }
        if self.nodes.len() > before {
            info!(
                spawned = self.nodes.len() - before,
                total = self.nodes.len(),
                "tracking new machines"
            );
        }
        if snap.full {
            self.missing_from_full(&seen, ctx);
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
        self.wanted_back.clear();
        for (id, addr) in self.nodes.drain() {
            addr.do_send(Retire);
            self.retiring.insert(id, addr);
        }
    }
}

/// Replace the filter (configuration reloaded). The next snapshot applies it: machines
/// it no longer selects are retired, newly selected ones get an actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetFilter(pub Arc<Filter>);

impl Handler<SetFilter> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: SetFilter, _ctx: &mut Self::Context) {
        self.filter = msg.0;
    }
}

impl Handler<StandDown> for Supervisor {
    type Result = ();

    /// Every actor stops at once, retiring ones included: a standby acts on nothing.
    fn handle(&mut self, _: StandDown, ctx: &mut Self::Context) {
        for (_, addr) in self.nodes.drain().chain(self.retiring.drain()) {
            addr.do_send(StandDown);
        }
        ctx.stop();
    }
}
