//! One actor per machine: it owns the machine's latest observation, its provisioning
//! state, the one operation in flight, and its retry timers.
//!
//! Each observation goes through [`lifecycle::decide`]; the actor only executes the
//! returned step and records the outcome. Two rules keep MAAS from seeing an operation
//! twice: an operation MAAS accepted is remembered for as long as the machine stays in
//! that status ([`Memo`]), and an observation requested before our last write
//! completed is stale and ignored.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use tracing::{debug, error, info, warn, Span};
use tracing_actix::ActorInstrument;

use super::{Observed, Retire, SharedDeps, StandDown};
use crate::backoff::{instant_after, Backoff};
use crate::lifecycle::{
    self, Action, ActionKind, Hold, Memo, ProfileChoice, Provision, Refusal, Step, Wait,
};
use crate::maas::model::check_system_id;
use crate::maas::{parse_machine, ErrorClass, Escaped, MaasError, Machine, NodeStatus, Request};
use crate::profile::Profile;
use crate::provision::{
    self,
    store::{DeploymentKey, Record},
    Job, ProvisionError, ANNOTATION_ATTEMPTS, ANNOTATION_PROVISIONED,
};
use crate::status::{rfc3339, Board, MachineView};

/// Provisioning bookkeeping for the current deployment.
#[derive(Debug, Clone)]
struct ProvisionState {
    phase: Provision,
    attempts: u32,
    last_error: Option<String>,
    /// Durable state already read from MAAS/the store for this deployment.
    loaded: bool,
    /// Running, but still waiting for a `provision.max_concurrent` slot: shown as
    /// `queued`, not in flight, so a long queue is not mistaken for a hung provisioner.
    queued: bool,
}

impl Default for ProvisionState {
    fn default() -> Self {
        ProvisionState {
            phase: Provision::Pending,
            attempts: 0,
            last_error: None,
            loaded: false,
            queued: false,
        }
    }
}

pub struct NodeActor {
    deps: SharedDeps,
    system_id: String,
    machine: Arc<Machine>,
    /// When the request behind `machine` was sent.
    seen_at: Instant,
    /// When our last mutating operation completed.
    last_write: Option<Instant>,
    memo: Memo,
    provision: ProvisionState,
    /// Outcome annotations still to be written to MAAS.
    pending_record: Option<Vec<(String, String)>>,
    in_flight: Option<ActionKind>,
    /// An operation whose answer never came (timeout, broken connection): MAAS may or
    /// may not have applied it. Nothing is sent until a read made after it tells.
    unsure: Option<ActionKind>,
    backoff: Backoff,
    prov_backoff: Backoff,
    /// Spaces out recovery attempts (recommission, redeploy); reset at Ready/Deployed.
    recovery_backoff: Backoff,
    last_error: Option<String>,
    wake: Option<SpawnHandle>,
    last_label: String,
    /// When the machine entered its current MAAS status (for per-state metrics).
    status_since: Instant,
    retiring: bool,
    span: Span,
    /// What the board shows for this machine, to skip rewriting an unchanged row.
    published: Option<Published>,
    /// The deploy profile the machine's latest observation picks.
    profile: Arc<Profile>,
    /// The retry tag now on the machine was acted on (its removal may be pending).
    retry_consumed: bool,
    /// Operator tags acted on, still to be removed from the machine in MAAS.
    pending_untag: Option<Vec<String>>,
}

/// The inputs of the last board row written.
#[derive(Debug, Clone, PartialEq)]
struct Published {
    step: Step,
    status: NodeStatus,
    power: crate::maas::PowerState,
    in_flight: Option<ActionKind>,
    phase: Provision,
    queued: bool,
    attempts: (u32, u32),
    last_error: Option<String>,
    hostname: String,
    zone: String,
    owner: Option<String>,
    profile: String,
}

impl NodeActor {
    pub fn new(deps: SharedDeps, machine: Arc<Machine>, fetched_at: Instant) -> Self {
        let span = machine_span(&machine);
        let backoff = Backoff::new(deps.retry_base, deps.retry_cap);
        let prov_backoff = deps
            .provision
            .as_ref()
            .map(|p| Backoff::new(p.retry_base, p.retry_cap))
            .unwrap_or_else(|| Backoff::new(Duration::from_secs(30), Duration::from_secs(600)));
        let mut memo = Memo::default();
        memo.observe(machine.status);
        let profile = deps.profiles.for_machine(&machine).clone();
        NodeActor {
            profile,
            retry_consumed: false,
            pending_untag: None,
            system_id: machine.system_id.clone(),
            seen_at: fetched_at,
            last_write: None,
            memo,
            provision: ProvisionState::default(),
            pending_record: None,
            in_flight: None,
            unsure: None,
            recovery_backoff: Backoff::new(deps.retry_base * 5, deps.retry_cap),
            backoff,
            prov_backoff,
            last_error: None,
            wake: None,
            last_label: String::new(),
            status_since: Instant::now(),
            retiring: false,
            span,
            published: None,
            deps,
            machine,
        }
    }

    /// Take a newer observation; returns false if it is stale.
    fn adopt(&mut self, m: Arc<Machine>, fetched_at: Instant) -> bool {
        if fetched_at < self.seen_at || self.last_write.is_some_and(|w| fetched_at < w) {
            return false;
        }
        self.seen_at = fetched_at;
        let old = self.machine.status;
        if m.hostname != self.machine.hostname {
            self.span = machine_span(&m);
        }
        let status_changed = self.memo.observe(m.status);
        if let Some(kind) = self.unsure.take() {
            // This observation was requested after the unanswered operation ended, so it
            // shows whether MAAS applied it. A status change resets the memo by itself;
            // an unchanged machine (same status, same data that the operation changes)
            // means it was not applied and may be sent again after the backoff.
            let _g = self.span.enter();
            if status_changed {
                info!(action = kind.as_str(), status = %m.status, "MAAS shows the unanswered {} took effect", kind.as_str());
            } else {
                info!(action = kind.as_str(), status = %m.status, "MAAS shows no effect of the unanswered {}; deciding again from what it reports", kind.as_str());
                self.memo.sent.retain(|k| *k != kind);
            }
        }
        let had_quarantine_tag = self.has_tag(self.deps.policy.quarantine_tag.as_deref());
        self.machine = m;
        // Tags, pool, zone or name may have changed: pick the profile again.
        let p = self.deps.profiles.for_machine(&self.machine);
        if !Arc::ptr_eq(p, &self.profile) {
            info!(
                from = self.profile.label().unwrap_or("-"),
                to = p.label().unwrap_or("-"),
                "deploy profile changed"
            );
            self.profile = p.clone();
        }
        self.operator_tags(had_quarantine_tag);
        if status_changed {
            let spent = self.status_since.elapsed().as_secs_f64();
            self.deps.metrics.left_status(old, spent);
            self.status_since = Instant::now();
            let span = self.span.clone();
            let _e = span.enter();
            debug!(from = %old, to = %self.machine.status, "status changed");
            self.deps.board.update(&self.system_id, |v| {
                Board::push_transition(v, self.machine.status.label())
            });
            if old == NodeStatus::Deployed {
                self.left_deployed();
            }
            match self.machine.status {
                NodeStatus::Ready | NodeStatus::Deployed => self.recovery_backoff.reset(),
                NodeStatus::FailedCommissioning
                | NodeStatus::FailedDeployment
                | NodeStatus::FailedDiskErasing
                    if self.deps.policy.recommission_attempts
                        + self.deps.policy.redeploy_attempts
                        > 0 =>
                {
                    // Recovery waits a little, growing with each failure of the same machine.
                    self.memo.not_before = Some(instant_after(self.recovery_backoff.next_delay()));
                }
                _ => {}
            }
        }
        self.load_durable();
        true
    }

    fn has_tag(&self, tag: Option<&str>) -> bool {
        tag.is_some_and(|t| self.machine.tag_names.iter().any(|x| x == t))
    }

    /// Act on the operator's tags as MAAS shows them now. The retry tag is
    /// level-triggered: whenever it is seen (also one added while maas-flow was down) the
    /// machine starts over and the tag is removed, so the operator sees it consumed.
    /// Removing the quarantine tag we put on a machine releases its quarantine.
    fn operator_tags(&mut self, had_quarantine_tag: bool) {
        let deps = self.deps.clone();
        let policy = &deps.policy;
        let retry_seen = self.has_tag(policy.retry_tag.as_deref());
        let quarantine_tag = policy.quarantine_tag.clone();
        let has_quarantine_tag = self.has_tag(quarantine_tag.as_deref());
        if !retry_seen {
            self.retry_consumed = false;
        } else if !self.retry_consumed {
            self.retry_consumed = true;
            self.operator_retry();
            let mut tags: Vec<String> = policy.retry_tag.iter().cloned().collect();
            if has_quarantine_tag {
                tags.extend(quarantine_tag);
            }
            self.pending_untag = Some(tags);
            return;
        }
        if had_quarantine_tag && !has_quarantine_tag {
            let span = self.span.clone();
            let _g = span.enter();
            info!("quarantine tag removed by the operator: releasing the quarantine");
            self.operator_retry();
        }
    }

    /// The operator added the retry tag: forget failures and quarantine, start over.
    fn operator_retry(&mut self) {
        let span = self.span.clone();
        let _g = span.enter();
        info!("retry tag found: clearing failures and starting over");
        self.memo.recommissions = 0;
        self.memo.redeploys = 0;
        self.memo.sent.clear();
        self.memo.not_before = None;
        self.memo.refused = None;
        self.backoff.reset();
        self.recovery_backoff.reset();
        self.last_error = None;
        if matches!(
            self.provision.phase,
            Provision::GaveUp | Provision::Failed { .. }
        ) || self.provision.attempts > 0
        {
            self.provision.phase = Provision::Pending;
            self.provision.attempts = 0;
            self.provision.last_error = None;
            self.prov_backoff.reset();
            if self.deps.annotations {
                self.pending_record = Some(vec![(ANNOTATION_ATTEMPTS.to_string(), String::new())]);
            }
            if let Some(store) = self.deps.provision.as_ref().and_then(|p| p.store.clone()) {
                persist(store, self.deployment_key(), Some(Record::default()));
            }
        }
    }

    /// A machine that leaves Deployed gets provisioned again on its next deployment.
    fn left_deployed(&mut self) {
        let had_state = self.provision.phase != Provision::Pending
            || self.provision.attempts > 0
            || self.provision.loaded;
        self.provision = ProvisionState::default();
        self.pending_record = None;
        self.prov_backoff.reset();
        if !had_state {
            return;
        }
        if let Some(p) = &self.deps.provision {
            if let Some(store) = p.store.clone() {
                persist(store, self.deployment_key(), None);
            }
        }
        if self.deps.provision.is_some() && !self.deps.preview {
            let deps = self.deps.clone();
            let id = self.system_id.clone();
            let profile = self.profile.clone();
            actix_rt::spawn(async move {
                if let Some(p) = provisioner_for(&deps, &profile) {
                    p.clear(&id).await;
                }
            });
        }
    }

    /// Read the durable outcome of this deployment once (annotations, then the file).
    fn load_durable(&mut self) {
        if self.provision.loaded || self.machine.status != NodeStatus::Deployed {
            return;
        }
        let Some(p) = &self.deps.provision else {
            return;
        };
        self.provision.loaded = true;
        let mut provisioned =
            self.deps.annotations && self.machine.annotation(ANNOTATION_PROVISIONED).is_some();
        let mut attempts = if self.deps.annotations {
            self.machine
                .annotation(ANNOTATION_ATTEMPTS)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0)
        } else {
            0
        };
        if let Some(r) = p.store.as_ref().and_then(|s| s.get(&self.deployment_key())) {
            if let (Some(at), false) = (&r.provisioned_at, provisioned) {
                // The journal has the success but MAAS does not (the annotation write
                // was cut by a restart): finish recording it, never run it again.
                if self.deps.annotations {
                    self.pending_record = Some(vec![
                        (ANNOTATION_PROVISIONED.to_string(), at.clone()),
                        (ANNOTATION_ATTEMPTS.to_string(), String::new()),
                    ]);
                }
            }
            provisioned |= r.provisioned_at.is_some();
            attempts = attempts.max(r.attempts);
            if r.last_error.is_some() {
                self.provision.last_error = r.last_error;
            }
        }
        self.provision.attempts = attempts;
        self.provision.phase = if provisioned {
            Provision::Done
        } else if attempts >= p.max_attempts {
            Provision::GaveUp
        } else {
            Provision::Pending
        };
    }

    /// The deployment this machine is in, as the provisioning journal keys it.
    fn deployment_key(&self) -> DeploymentKey {
        deployment_key(&self.deps, &self.machine)
    }

    fn evaluate(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight.is_some() {
            return;
        }
        // A provisioning outcome is recorded before anything else, even when stopping,
        // but never on a machine that is locked or not positively ours (it waits).
        if let Some(pairs) = self.pending_record.clone().filter(|_| self.may_annotate()) {
            if !self.retiring && self.memo.not_before.is_some_and(|t| t > Instant::now()) {
                self.wake_at(self.memo.not_before.unwrap_or_else(Instant::now), ctx);
                return;
            }
            if !(self.retiring && self.memo.not_before.is_some()) {
                self.write_record(pairs, ctx);
                return;
            }
        }
        if self.retiring {
            ctx.stop();
            return;
        }
        if let Some(tags) = self.pending_untag.clone() {
            if self.memo.not_before.is_some_and(|t| t > Instant::now()) {
                self.wake_at(self.memo.not_before.unwrap_or_else(Instant::now), ctx);
                return;
            }
            self.untag(tags, ctx);
            return;
        }
        let now = Instant::now();
        let choice = ProfileChoice {
            target: self.profile.target,
            provisioning: self.profile.provisioning() && self.deps.provision.is_some(),
            storage_layout: self.profile.storage_layout,
        };
        let step = lifecycle::decide_for(
            &self.machine,
            self.provision.phase,
            &self.deps.policy,
            &choice,
            &self.memo,
            now,
        );
        self.publish(&step);
        match step {
            Step::Act(action) => self.act(action, ctx),
            Step::Provision => self.start_provision(ctx),
            Step::Wait(Wait::RetryAt(t)) => self.wake_at(t, ctx),
            Step::Hold(Hold::Refused { .. }) => {
                // Held, but only until the refusal's long backoff ends.
                if let Some(t) = self.memo.refused.as_ref().map(|r| r.until) {
                    self.wake_at(t, ctx);
                }
            }
            _ => {}
        }
    }

    /// Annotations are a write to MAAS like any operation: only on an unlocked machine
    /// that MAAS says is ours.
    fn may_annotate(&self) -> bool {
        self.machine.locked != Some(true)
            && self.machine.owner.as_deref() == Some(self.deps.policy.me.as_str())
    }

    fn wake_at(&mut self, t: Instant, ctx: &mut Context<Self>) {
        if let Some(h) = self.wake.take() {
            ctx.cancel_future(h);
        }
        let delay = t.saturating_duration_since(Instant::now()) + Duration::from_millis(5);
        self.wake = Some(ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.evaluate(ctx);
        }));
    }

    fn backoff_after(&mut self, e: &MaasError) -> Instant {
        let mut d = self.backoff.next_delay();
        if let Some(hint) = e.retry_after() {
            d = d.max(hint);
        }
        Metrics::kind(&self.deps.metrics.retries, "maas_op");
        instant_after(d)
    }

    fn act(&mut self, action: Action, ctx: &mut Context<Self>) {
        let kind = action.kind();
        let span = self.span.clone();
        let _e = span.enter();
        if self.deps.preview {
            info!(action = kind.as_str(), status = %self.machine.status, "preview: would send {}", kind.as_str());
            self.memo.sent.push(kind);
            self.deps.metrics.action(kind.as_str(), "preview");
            return;
        }
        info!(action = kind.as_str(), status = %self.machine.status, "sending {}", kind.as_str());
        self.in_flight = Some(kind);
        self.publish_in_flight();
        let deps = self.deps.clone();
        let m = self.machine.clone();
        let profile = self.profile.clone();
        let fut = async move {
            let _permit = deps.op_permits.clone().acquire_owned().await;
            execute(&deps, &m, &profile, &action).await
        };
        ctx.spawn(
            fut.into_actor(self)
                .actor_instrument(self.span.clone())
                .map(move |res, act, ctx| act.op_done(kind, res, ctx)),
        );
    }

    fn op_done(
        &mut self,
        kind: ActionKind,
        res: Result<Option<Machine>, MaasError>,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight = None;
        let _e = self.span.clone();
        let _g = _e.enter();
        match res {
            Ok(m) => {
                self.deps.metrics.action(kind.as_str(), "ok");
                self.memo.sent.push(kind);
                match kind {
                    ActionKind::Commission
                        if self.machine.status == NodeStatus::FailedCommissioning =>
                    {
                        self.memo.recommissions += 1
                    }
                    ActionKind::Release
                        if matches!(
                            self.machine.status,
                            NodeStatus::FailedDeployment | NodeStatus::FailedDiskErasing
                        ) =>
                    {
                        self.memo.redeploys += 1
                    }
                    _ => {}
                }
                let now = Instant::now();
                self.last_write = Some(now);
                self.backoff.reset();
                self.memo.not_before = None;
                self.last_error = None;
                if let Some(m) = m.filter(|m| m.system_id == self.system_id) {
                    self.adopt(Arc::new(m), now);
                }
                info!(action = kind.as_str(), status = %self.machine.status, "MAAS accepted {}", kind.as_str());
            }
            Err(e) => {
                self.deps.metrics.action_error(kind.as_str(), e.code());
                self.last_error = Some(e.to_string());
                let at = self.backoff_after(&e);
                self.memo.not_before = Some(at);
                if e.outcome_unknown() {
                    // The request may have reached MAAS and been applied: never send it
                    // again blind. Treat it as sent until a fresh read says otherwise.
                    warn!(action = kind.as_str(), error = %e, "no answer to {}: it may have been applied; re-reading the machine before anything else", kind.as_str());
                    self.memo.sent.push(kind);
                    self.unsure = Some(kind);
                    self.last_write = Some(Instant::now());
                    self.reread(ctx);
                    self.evaluate(ctx);
                    return;
                }
                match e.class() {
                    ErrorClass::Validation => {
                        let fields = e.refused_fields().unwrap_or("?").to_string();
                        let reason = match &e {
                            MaasError::Status { body, .. } => body.clone(),
                            other => other.to_string(),
                        };
                        let until = instant_after(self.deps.retry_cap);
                        error!(action = kind.as_str(), fields = %fields, error = %e, retry_in = ?self.deps.retry_cap, "MAAS refused the request's fields: holding this machine until the configuration changes, the retry tag is set, or the backoff ends");
                        self.deps.metrics.refusal(kind.as_str(), &fields);
                        self.memo.refused = Some(Refusal {
                            action: kind,
                            reason,
                            until,
                        });
                    }
                    ErrorClass::WrongState => {
                        warn!(action = kind.as_str(), error = %e, "MAAS refused: state changed under us; re-reading the machine");
                        self.reread(ctx);
                    }
                    ErrorClass::Auth => {
                        error!(action = kind.as_str(), error = %e, "MAAS refused our credentials or permissions")
                    }
                    ErrorClass::NotFound => {
                        warn!(action = kind.as_str(), error = %e, "machine no longer exists in MAAS")
                    }
                    ErrorClass::Gone => {
                        error!(action = kind.as_str(), error = %e, "MAAS says this API is gone: check maas.api_version")
                    }
                    ErrorClass::Transient => {
                        warn!(action = kind.as_str(), error = %e, retry_in = ?at.saturating_duration_since(Instant::now()), "operation failed; will retry")
                    }
                }
            }
        }
        self.evaluate(ctx);
    }

    /// Read this machine alone (after a wrong-state refusal).
    fn reread(&mut self, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let id = self.system_id.clone();
        let started = Instant::now();
        let fut = async move {
            check_system_id(&id).map_err(|reason| MaasError::Parse {
                op: "read".into(),
                path: String::new(),
                reason,
            })?;
            let req = deps.client.api().read(&id);
            let body = deps.client.call(&req, "read").await?;
            parse_machine(&body, deps.client.settings().version).map_err(|e| MaasError::Parse {
                op: "read".into(),
                path: req.path.clone(),
                reason: e.to_string(),
            })
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(m) => {
                if act.adopt(Arc::new(m), started) {
                    act.evaluate(ctx);
                }
            }
            Err(e) => {
                let _g = act.span.enter();
                debug!(error = %e, "re-read failed; the next poll will tell");
            }
        }));
    }

    fn start_provision(&mut self, ctx: &mut Context<Self>) {
        let Some(permits) = self.deps.provision.as_ref().map(|p| p.permits.clone()) else {
            return;
        };
        let span = self.span.clone();
        let _g = span.enter();
        if self.deps.preview {
            if !self.memo.sent(ActionKind::Provision) {
                info!("preview: would run provisioning");
                self.memo.sent.push(ActionKind::Provision);
            }
            return;
        }
        // HA fencing: a replica that is not (or no longer) the leader starts nothing.
        if let Err(e) = self.deps.client.fence().check() {
            warn!(error = %e, "not starting provisioning");
            return;
        }
        self.provision.phase = Provision::Running;
        self.provision.queued = true;
        self.in_flight = Some(ActionKind::Provision);
        let attempt = self.provision.attempts + 1;
        debug!(attempt, "provisioning queued for a slot");
        self.publish_in_flight();
        let m = self.machine.clone();
        let deps = self.deps.clone();
        let profile = self.profile.clone();
        let failed_before = self.provision.attempts;
        let queue = permits
            .acquire_owned()
            .into_actor(self)
            .then(move |permit, act, _| {
                act.provision.queued = false;
                {
                    let _g = act.span.enter();
                    info!(attempt, "provisioning");
                }
                act.publish_in_flight();
                async move { (permit, m, deps, profile) }.into_actor(act)
            });
        let fut = queue.then(move |(permit, m, deps, profile), act, _| {
            async move {
                // The wait for a slot can be long: check the fence again right before the
                // run. Not an attempt: nothing goes to the journal.
                if let Err(e) = deps.client.fence().check() {
                    drop(permit);
                    let untouched = Record {
                        provisioned_at: None,
                        attempts: failed_before,
                        last_error: None,
                    };
                    return (Err(ProvisionError::Fenced(e)), Duration::ZERO, untouched);
                }
                let started = Instant::now();
                let fqdn = m.fqdn.clone().unwrap_or_else(|| m.hostname.clone());
                let res = match provision::choose_ip(m.first_ip(), &fqdn).await {
                    Ok(ip) => {
                        let job = Job::for_machine(
                            &m,
                            ip,
                            &profile.deploy.distro_series,
                            profile.label(),
                        );
                        match provisioner_for(&deps, &profile) {
                            Some(p) => p.run(&job).await,
                            None => Ok(()),
                        }
                    }
                    Err(e) => Err(e),
                };
                drop(permit);
                let took = started.elapsed();
                // The verdict goes to the journal, and reaches the disk, before anything
                // else happens with it: a restart after this point never runs it again.
                let record = match &res {
                    Ok(()) => Record {
                        provisioned_at: Some(rfc3339(SystemTime::now())),
                        attempts: 0,
                        last_error: None,
                    },
                    Err(e) => Record {
                        provisioned_at: None,
                        attempts: failed_before + 1,
                        last_error: Some(e.to_string()),
                    },
                };
                if let Some(store) = deps.provision.as_ref().and_then(|p| p.store.clone()) {
                    let key = deployment_key(&deps, &m);
                    let rec = record.clone();
                    match actix_rt::task::spawn_blocking(move || store.put(&key, Some(rec))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "cannot write the provisioning journal")
                        }
                        Err(e) => tracing::error!(error = %e, "provisioning journal writer failed"),
                    }
                }
                (res, took, record)
            }
            .into_actor(act)
        });
        ctx.spawn(
            fut.actor_instrument(self.span.clone())
                .map(|(res, took, record), act, ctx| act.provision_done(res, took, record, ctx)),
        );
    }

    fn provision_done(
        &mut self,
        res: Result<(), ProvisionError>,
        took: Duration,
        journaled: Record,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight = None;
        let span = self.span.clone();
        let _g = span.enter();
        let Some(p) = &self.deps.provision else {
            return;
        };
        if let Err(ProvisionError::Fenced(e)) = &res {
            // Never started: not an attempt, nothing to record; the stand-down follows.
            warn!(error = %e, "provisioning not started");
            self.provision.phase = Provision::Pending;
            self.publish_in_flight();
            return;
        }
        self.deps
            .metrics
            .provision_seconds
            .observe(took.as_secs_f64());
        let record = match res {
            Ok(()) => {
                Metrics::kind(&self.deps.metrics.provision_runs, "ok");
                info!(took = ?took, "provisioned");
                self.provision.phase = Provision::Done;
                self.provision.attempts = 0;
                self.provision.last_error = None;
                self.prov_backoff.reset();
                let at = journaled
                    .provisioned_at
                    .unwrap_or_else(|| rfc3339(SystemTime::now()));
                vec![
                    (ANNOTATION_PROVISIONED.to_string(), at),
                    (ANNOTATION_ATTEMPTS.to_string(), String::new()),
                ]
            }
            Err(e) => {
                Metrics::kind(&self.deps.metrics.provision_runs, "failed");
                self.provision.attempts += 1;
                self.provision.last_error = Some(e.to_string());
                if self.provision.attempts >= p.max_attempts {
                    error!(attempts = self.provision.attempts, error = %e, "provisioning failed; attempts used up, waiting for an operator");
                    self.provision.phase = Provision::GaveUp;
                } else {
                    let wait = self.prov_backoff.next_delay();
                    Metrics::kind(&self.deps.metrics.retries, "provision");
                    warn!(attempts = self.provision.attempts, error = %e, retry_in = ?wait, "provisioning failed; will retry");
                    self.provision.phase = Provision::Failed {
                        retry_at: instant_after(wait),
                    };
                }
                vec![(
                    ANNOTATION_ATTEMPTS.to_string(),
                    self.provision.attempts.to_string(),
                )]
            }
        };
        if self.deps.annotations {
            self.pending_record = Some(record);
        }
        self.evaluate(ctx);
    }

    /// Remove consumed operator tags from the machine (`update_nodes remove=`); retried
    /// with backoff, dropped if the tag no longer exists.
    fn untag(&mut self, tags: Vec<String>, ctx: &mut Context<Self>) {
        if self.deps.preview {
            info!(tags = ?tags, "preview: would remove the consumed tags");
            self.pending_untag = None;
            return;
        }
        self.in_flight = Some(ActionKind::TagQuarantine);
        let deps = self.deps.clone();
        let id = self.system_id.clone();
        let fut = async move {
            let _permit = deps.op_permits.clone().acquire_owned().await;
            for t in &tags {
                let req = deps.client.api().update_tag_nodes(t, &[], &[id.as_str()]);
                match deps.client.call(&req, "op").await {
                    Ok(_) => {}
                    Err(e) if e.class() == ErrorClass::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.in_flight = None;
            let span = act.span.clone();
            let _g = span.enter();
            match res {
                Ok(()) => {
                    info!("consumed operator tags removed");
                    act.pending_untag = None;
                    act.last_write = Some(Instant::now());
                    act.deps.metrics.action("untag", "ok");
                }
                Err(e) => {
                    act.deps
                        .metrics
                        .action("untag", &format!("error_{}", e.code()));
                    warn!(error = %e, "removing the consumed retry tag failed; will retry");
                    let at = act.backoff_after(&e);
                    act.memo.not_before = Some(at);
                }
            }
            act.evaluate(ctx);
        }));
    }

    /// Write outcome annotations to MAAS; retried with backoff until MAAS has them.
    fn write_record(&mut self, pairs: Vec<(String, String)>, ctx: &mut Context<Self>) {
        let Some(req) = self
            .deps
            .client
            .api()
            .set_annotations(&self.system_id, &pairs)
        else {
            self.pending_record = None;
            return;
        };
        self.in_flight = Some(ActionKind::Provision);
        let deps = self.deps.clone();
        // Outcome writes take no slot of `limits.max_ops_in_flight`: they are bounded
        // by `provision.max_concurrent` already, and must not queue behind new work.
        let fut = async move { deps.client.call(&req, "op").await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.in_flight = None;
            match res {
                Ok(_) => {
                    act.pending_record = None;
                    act.last_write = Some(Instant::now());
                    act.deps.metrics.action("annotate", "ok");
                }
                Err(e) => {
                    act.deps.metrics.action_error("annotate", e.code());
                    let span = act.span.clone();
                    let _g = span.enter();
                    if matches!(
                        e.class(),
                        ErrorClass::WrongState | ErrorClass::NotFound | ErrorClass::Validation
                    ) {
                        // The machine is no longer ours to annotate (released), or MAAS
                        // refuses the fields themselves: sending again cannot help.
                        warn!(error = %e, "cannot record the provisioning outcome in MAAS");
                        act.pending_record = None;
                    } else {
                        warn!(error = %e, "recording the provisioning outcome failed; will retry");
                        let at = act.backoff_after(&e);
                        act.memo.not_before = Some(at);
                    }
                }
            }
            act.evaluate(ctx);
        }));
    }

    fn provisioning_label(&self) -> &'static str {
        if self.deps.provision.is_none() {
            return "none";
        }
        if self.machine.status != NodeStatus::Deployed && self.provision.phase == Provision::Pending
        {
            return "-";
        }
        match self.provision.phase {
            Provision::Pending => "pending",
            Provision::Running if self.provision.queued => "queued",
            Provision::Running => "running",
            Provision::Done => "provisioned",
            Provision::Failed { .. } => "failed",
            Provision::GaveUp => "gave_up",
        }
    }

    fn view(&self, step: &Step) -> MachineView {
        let m = &self.machine;
        let next_retry = match step {
            Step::Wait(Wait::RetryAt(t)) => Some(rfc3339(
                SystemTime::now() + t.saturating_duration_since(Instant::now()),
            )),
            _ => None,
        };
        let problem = matches!(step, Step::Hold(h) if !matches!(h, Hold::SkipTag))
            || self.last_error.is_some()
            || matches!(
                self.provision.phase,
                Provision::Failed { .. } | Provision::GaveUp
            );
        MachineView {
            system_id: m.system_id.clone(),
            hostname: m.hostname.clone(),
            zone: m.zone_name().to_string(),
            status: m.status.label().to_string(),
            status_code: m.status.code(),
            power_state: m.power_state.as_str().to_string(),
            owner: m.owner.as_deref().map(str::to_string),
            target: format!("{:?}", self.profile.target).to_ascii_lowercase(),
            profile: self.profile.label().map(str::to_string),
            step: step.label(),
            provisioning: self.provisioning_label().to_string(),
            action_in_flight: self.shown_in_flight(),
            attempts: self.provision.attempts.max(self.backoff.attempts()),
            next_retry,
            last_error: self
                .last_error
                .clone()
                .or_else(|| self.provision.last_error.clone()),
            transitions: Vec::new(),
            settled: step.settled() && self.in_flight.is_none(),
            problem,
        }
    }

    fn unchanged(&self, step: &Step) -> bool {
        let Some(p) = &self.published else {
            return false;
        };
        let m = &self.machine;
        p.step == *step
            && p.status == m.status
            && p.power == m.power_state
            && p.in_flight == self.in_flight
            && p.phase == self.provision.phase
            && p.queued == self.provision.queued
            && p.attempts == (self.provision.attempts, self.backoff.attempts())
            && p.last_error == self.last_error
            && p.hostname == m.hostname
            && p.zone == m.zone_name()
            && p.owner.as_deref() == m.owner.as_deref()
            && p.profile == self.profile.name
    }

    /// Update the board, and log when the step changes in a way an operator cares about.
    fn publish(&mut self, step: &Step) {
        if self.unchanged(step) {
            return;
        }
        self.published = Some(Published {
            step: step.clone(),
            status: self.machine.status,
            power: self.machine.power_state,
            in_flight: self.in_flight,
            phase: self.provision.phase,
            queued: self.provision.queued,
            attempts: (self.provision.attempts, self.backoff.attempts()),
            last_error: self.last_error.clone(),
            hostname: self.machine.hostname.clone(),
            zone: self.machine.zone_name().to_string(),
            owner: self.machine.owner.as_deref().map(str::to_string),
            profile: self.profile.name.clone(),
        });
        let mut view = self.view(step);
        let label = step.label();
        if label != self.last_label {
            let _g = self.span.enter();
            match step {
                Step::Hold(_) => info!(status = %self.machine.status, "{label}"),
                Step::Done => info!(status = %self.machine.status, "at target"),
                _ => debug!(status = %self.machine.status, "{label}"),
            }
            self.last_label = label;
        }
        if let Some(old) = self.deps.board.get(&self.system_id) {
            view.transitions = old.transitions;
        } else {
            Board::push_transition(&mut view, self.machine.status.label());
        }
        self.deps.board.upsert(view);
    }

    /// The action shown as in flight: a provisioning run waiting for a slot is not.
    fn shown_in_flight(&self) -> Option<String> {
        match self.in_flight {
            Some(ActionKind::Provision) if self.provision.queued => None,
            k => k.map(|k| k.as_str().to_string()),
        }
    }

    fn publish_in_flight(&mut self) {
        self.published = None;
        let k = self.shown_in_flight();
        let prov = self.provisioning_label().to_string();
        self.deps.board.update(&self.system_id, |v| {
            v.action_in_flight = k;
            v.provisioning = prov;
            v.settled = false;
        });
    }
}

use crate::metrics::Metrics;

/// The span every line about one machine carries. A root span: `adopt` replaces it on
/// a rename while the old one is entered, and a child of the old span would print both
/// hostnames on every line (`machine{hostname=old}:machine{hostname=new}`).
fn machine_span(m: &Machine) -> Span {
    tracing::info_span!(parent: None, "machine", system_id = %Escaped(&m.system_id), hostname = %Escaped(&m.hostname))
}

/// Write a journal entry in the background (an operator's retry, a release).
fn persist(store: Arc<provision::store::FileStore>, key: DeploymentKey, r: Option<Record>) {
    actix_rt::task::spawn_blocking(move || {
        if let Err(e) = store.put(&key, r) {
            tracing::error!(system_id = %key.system_id, error = %e, "cannot write the provisioning journal");
        }
    });
}

/// The post-deploy step for a machine of `profile`: the profile's own, else the global.
fn provisioner_for<'a>(
    deps: &'a super::Deps,
    profile: &Profile,
) -> Option<&'a provision::Provisioner> {
    let p = deps.provision.as_ref()?;
    if profile.own_provisioner {
        p.by_profile.get(&profile.name)
    } else {
        p.provisioner.as_ref()
    }
}

/// The deployment `m` is in, as the provisioning journal keys it.
fn deployment_key(deps: &super::Deps, m: &Machine) -> DeploymentKey {
    DeploymentKey {
        region: deps.client.settings().base.clone(),
        system_id: m.system_id.clone(),
        installation: m.current_installation_result_id,
    }
}

/// Send one action to MAAS; returns the machine when MAAS answered with one.
async fn execute(
    deps: &super::Deps,
    m: &Machine,
    profile: &Profile,
    action: &Action,
) -> Result<Option<Machine>, MaasError> {
    let api = deps.client.api();
    let id = m.system_id.as_str();
    // Decisions never act on an invalid machine; this keeps a bad id out of any URL even
    // if that ever changes.
    check_system_id(id).map_err(|reason| MaasError::Parse {
        op: action.kind().as_str().into(),
        path: String::new(),
        reason,
    })?;
    if let Action::TagQuarantine(why) = action {
        tag_quarantine(deps, m, why).await?;
        return Ok(None);
    }
    let reqs: Vec<Request> = match action {
        Action::TagQuarantine(_) => vec![],
        Action::PowerOff => vec![api.power_off(id)],
        Action::Commission => vec![api.commission(id, &profile.commission)],
        Action::Allocate => vec![api.allocate(id, m.fqdn.as_deref().unwrap_or(&m.hostname))],
        Action::Deploy => vec![api.deploy(id, &profile.deploy)],
        Action::SetStorageLayout(l) => vec![api.set_storage_layout(id, l.as_str())],
        Action::Release => vec![api.release_erasing(id, deps.policy.erase)],
        Action::Rename(h) => vec![api.rename(id, h)],
        Action::RelinkDhcp {
            interface,
            link,
            subnet,
        } => {
            vec![
                api.unlink_subnet(id, *interface, *link),
                api.link_subnet_dhcp(id, *interface, subnet),
            ]
        }
        Action::PowerHelper => {
            let helper = deps.power_helper.as_ref().ok_or_else(|| MaasError::Parse {
                op: "power_helper".into(),
                path: String::new(),
                reason: "no power helper configured".into(),
            })?;
            vec![power_helper_request(helper, m, &api).await?]
        }
    };
    let mut last = None;
    for req in reqs {
        let body = deps.client.call(&req, "op").await?;
        last = parse_machine(&body, deps.client.settings().version).ok();
    }
    Ok(last)
}

/// Annotation saying why maas-flow quarantined a machine (set when we own it: MAAS
/// accepts workload annotations only from the owner).
pub const ANNOTATION_QUARANTINE: &str = "maas_flow_quarantine";

/// Tag the machine as quarantined, creating the tag when MAAS does not know it, and
/// say why in an annotation when the machine is ours.
async fn tag_quarantine(deps: &super::Deps, m: &Machine, why: &str) -> Result<(), MaasError> {
    let api = deps.client.api();
    let Some(tag) = deps.policy.quarantine_tag.as_deref() else {
        return Ok(());
    };
    let add = api.update_tag_nodes(tag, &[m.system_id.as_str()], &[]);
    match deps.client.call(&add, "op").await {
        Ok(_) => {}
        Err(e) if e.class() == ErrorClass::NotFound => {
            match deps.client.call(&api.create_tag(tag), "op").await {
                // Someone created it meanwhile: MAAS answers 400 "already exists".
                Ok(_) | Err(MaasError::Status { code: 400, .. }) => {}
                Err(e) => return Err(e),
            }
            deps.client.call(&add, "op").await?;
        }
        Err(e) => return Err(e),
    }
    if deps.annotations && m.owner.as_deref() == Some(deps.policy.me.as_str()) {
        let pairs = [(ANNOTATION_QUARANTINE.to_string(), why.to_string())];
        if let Some(req) = api.set_annotations(&m.system_id, &pairs) {
            if let Err(e) = deps.client.call(&req, "op").await {
                warn!(error = %e, "cannot annotate why the machine is quarantined");
            }
        }
    }
    Ok(())
}

/// Run the power helper (argv only) and turn its answer into a `PUT` of AMT parameters.
async fn power_helper_request(
    h: &super::PowerHelper,
    m: &Machine,
    api: &crate::maas::Api,
) -> Result<Request, MaasError> {
    let fail = |reason: String| MaasError::Parse {
        op: "power_helper".into(),
        path: h.script.display().to_string(),
        reason,
    };
    let mut cmd = tokio::process::Command::new(&h.script);
    crate::child::prepare(&mut cmd, &h.scrub);
    cmd.arg(&h.user).arg(&m.hostname);
    for mac in m.macs() {
        cmd.arg(mac);
    }
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(h.timeout, cmd.output())
        .await
        .map_err(|_| fail(format!("timed out after {:?}", h.timeout)))?
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!("exited with {}", out.status)));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        power_address: String,
        power_password: String,
    }
    let a: Answer =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("bad JSON: {e}")))?;
    Ok(api.set_power(
        &m.system_id,
        "amt",
        &[
            ("power_address".into(), a.power_address),
            ("power_pass".into(), a.power_password),
        ],
    ))
}

impl Actor for NodeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.load_durable();
        // A retry tag added while maas-flow was down is acted on now.
        self.operator_tags(false);
        self.evaluate(ctx);
    }

    /// A stopped actor has nothing in flight: a drain waiting on the board must not
    /// wait for a row its actor can no longer update.
    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.deps
            .board
            .update(&self.system_id, |v| v.action_in_flight = None);
    }
}

impl Handler<Observed> for NodeActor {
    type Result = ();

    fn handle(&mut self, msg: Observed, ctx: &mut Self::Context) {
        self.deps.board.note_observation();
        if self.adopt(msg.machine, msg.fetched_at) {
            self.evaluate(ctx);
        }
    }
}

impl Handler<Retire> for NodeActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        self.retiring = true;
        if self.in_flight.is_none() {
            ctx.stop();
        }
    }
}

impl Handler<StandDown> for NodeActor {
    type Result = ();

    fn handle(&mut self, _: StandDown, ctx: &mut Self::Context) {
        if self.in_flight == Some(ActionKind::Provision) {
            let _g = self.span.enter();
            warn!("provisioning interrupted: no longer the leader; its process group is killed");
            Metrics::kind(&self.deps.metrics.provision_runs, "interrupted");
        }
        self.deps.board.remove(&self.system_id);
        // Stopping drops every spawned future: timers, the MAAS request in flight, and
        // the provisioning run (which kills its process group when dropped).
        ctx.stop();
    }
}
