//! The campaign driver: one thread with its own runtime runs the election for the
//! whole life of the process, whatever the actors are doing.
//!
//! Session by session: take a lease, campaign, renew every `lease_ttl / 6`. Each
//! successful renewal opens the [`Fence`] until `when it was sent + lease_ttl / 2`
//! while this replica leads. When renewals stop succeeding the fence lapses by itself;
//! the driver then gives the session up (revoking its lease if etcd still answers, so a
//! standby wins at once), reports `standby`, and campaigns again with a new lease.
//!
//! Role and leader changes go out on a `watch` channel; the actor side
//! ([`super::replica`]) starts and stops the actors from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use super::{Election, Fence, HaError, Role};
use crate::backoff::Backoff;

/// What the election looks like from this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub role: Role,
    /// The current leader's identity, as the coordination service reports it.
    pub leader: Option<String>,
    /// Whether the last request to the coordination service succeeded.
    pub connected: bool,
}

/// The counters the driver keeps (clones of the registry's, sharing their values).
#[derive(Clone, Default)]
pub struct HaMetrics {
    pub leader: Gauge,
    pub leadership_changes: Counter,
    pub lease_renewal_failures: Counter,
}

/// The running driver.
pub struct Handle {
    status: watch::Receiver<Status>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
}

impl Handle {
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Resign if leading, revoke the lease and stop campaigning (SIGTERM): a standby
    /// wins at once instead of waiting for the lease to run out. Waits up to `limit`.
    pub async fn resign(mut self, limit: Duration) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = tokio::time::timeout(limit, d).await;
        }
    }
}

/// Start campaigning on a thread of its own.
pub fn spawn<E: Election>(
    election: E,
    identity: String,
    ttl: Duration,
    fence: Fence,
    metrics: HaMetrics,
) -> std::io::Result<Handle> {
    let (tx, rx) = watch::channel(Status {
        role: Role::Standby,
        leader: None,
        connected: false,
    });
    let (stop_tx, stop_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ha-election".into())
        .spawn(move || {
            let d = Driver {
                election: Arc::new(election),
                identity,
                ttl,
                fence,
                tx,
                metrics,
            };
            rt.block_on(d.run(stop_rx));
            let _ = done_tx.send(());
        })?;
    Ok(Handle {
        status: rx,
        stop: Some(stop_tx),
        done: Some(done_rx),
    })
}

struct Driver<E: Election> {
    election: Arc<E>,
    identity: String,
    ttl: Duration,
    fence: Fence,
    tx: watch::Sender<Status>,
    metrics: HaMetrics,
}

/// How one session ended.
enum End {
    /// SIGTERM: resigned, stop campaigning.
    Stop,
    /// The lease is lost or leadership lapsed: start a new session.
    Lost,
}

impl<E: Election> Driver<E> {
    fn publish(&self, f: impl FnOnce(&mut Status)) {
        self.tx.send_if_modified(|s| {
            let before = s.clone();
            f(s);
            *s != before
        });
    }

    fn set_role(&self, role: Role) {
        let was = self.tx.borrow().role;
        if was == role {
            return;
        }
        self.metrics.leadership_changes.inc();
        self.metrics.leader.set(i64::from(role == Role::Leader));
        match role {
            Role::Leader => info!(identity = %self.identity, "won the election: acting as leader"),
            Role::Standby => warn!(identity = %self.identity, "no longer the leader: standing by"),
        }
        let me = self.identity.clone();
        self.publish(|s| {
            s.role = role;
            if role == Role::Leader {
                s.leader = Some(me);
            }
        });
    }

    /// A request to the coordination service, bounded so a hung service (stopped,
    /// partitioned) never stalls the driver.
    fn rpc_timeout(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(500))
    }

    async fn run(self, mut stop: oneshot::Receiver<()>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), self.ttl / 2);
        loop {
            self.fence.close();
            self.set_role(Role::Standby);
            let t = self.rpc_timeout();
            let sent = Instant::now();
            let opened = tokio::select! {
                _ = &mut stop => return,
                r = tokio::time::timeout(t, self.election.open()) => r,
            };
            let (session, granted) = match opened {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    self.unreachable(&e);
                    if self.pause(&mut stop, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    self.unreachable(&HaError::Timeout {
                        what: "granting a lease",
                        after: t,
                    });
                    if self.pause(&mut stop, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            };
            backoff.reset();
            self.publish(|s| s.connected = true);
            match self.session(&session, sent, granted, &mut stop).await {
                End::Stop => return,
                End::Lost => {
                    // Best effort: if etcd answers, our key goes now rather than at expiry.
                    let e = self.election.clone();
                    let limit = self.ttl;
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(limit, e.resign(&session)).await;
                    });
                }
            }
        }
    }

    fn unreachable(&self, e: &HaError) {
        warn!(error = %e, "coordination service unreachable; standing by and retrying");
        self.publish(|s| {
            s.connected = false;
            s.leader = None;
        });
    }

    /// Sleep, unless asked to stop (then `true`).
    async fn pause(&self, stop: &mut oneshot::Receiver<()>, d: Duration) -> bool {
        tokio::select! {
            _ = stop => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    async fn session(
        &self,
        session: &E::Session,
        opened_at: Instant,
        granted: Duration,
        stop: &mut oneshot::Receiver<()>,
    ) -> End {
        // Act for at most half of the shorter of the TTL asked for and the TTL granted.
        let half = self.ttl.min(granted) / 2;
        let mut last_renewal = opened_at;
        let mut leading = false;
        let mut campaign = Some(self.election.campaign(session));
        let mut tick = tokio::time::interval((self.ttl / 6).max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let t = self.rpc_timeout();
        loop {
            tokio::select! {
                _ = &mut *stop => {
                    self.fence.close();
                    self.set_role(Role::Standby);
                    match tokio::time::timeout(t * 2, self.election.resign(session)).await {
                        Ok(Ok(())) => info!("resigned: a standby can take over now"),
                        Ok(Err(e)) => warn!(error = %e, "could not resign; the lease will expire by itself"),
                        Err(_) => warn!("resigning timed out; the lease will expire by itself"),
                    }
                    return End::Stop;
                }
                won = async {
                    match campaign.as_mut() {
                        Some(c) => c.await,
                        None => std::future::pending().await,
                    }
                }, if campaign.is_some() => {
                    campaign = None;
                    match won {
                        Ok(()) => {
                            self.fence.open_until(last_renewal + half);
                            if self.fence.check().is_err() {
                                warn!("elected, but the lease was last renewed too long ago; starting over");
                                return End::Lost;
                            }
                            leading = true;
                            self.set_role(Role::Leader);
                        }
                        Err(e) => {
                            warn!(error = %e, "campaign failed; starting a new session");
                            self.publish(|s| s.connected = false);
                            return End::Lost;
                        }
                    }
                }
                _ = tick.tick() => {
                    let sent = Instant::now();
                    match tokio::time::timeout(t, self.election.renew(session)).await {
                        Ok(Ok(left)) => {
                            last_renewal = sent;
                            if leading {
                                self.fence.open_until(sent + half.min(left / 2));
                            }
                            self.publish(|s| s.connected = true);
                        }
                        Ok(Err(HaError::LeaseExpired)) => {
                            self.metrics.lease_renewal_failures.inc();
                            warn!("the lease expired; campaigning again with a new one");
                            return End::Lost;
                        }
                        Ok(Err(e)) => {
                            self.metrics.lease_renewal_failures.inc();
                            warn!(error = %e, "lease renewal failed");
                            self.publish(|s| s.connected = false);
                        }
                        Err(_) => {
                            self.metrics.lease_renewal_failures.inc();
                            warn!(after = ?t, "lease renewal timed out");
                            self.publish(|s| s.connected = false);
                        }
                    }
                    if leading && self.fence.check().is_err() {
                        error!("leadership lapsed: the lease was not renewed in time; stopped acting");
                        return End::Lost;
                    }
                    if !leading && last_renewal.elapsed() > self.ttl {
                        return End::Lost;
                    }
                    if let Ok(Ok(l)) = tokio::time::timeout(t, self.election.leader()).await {
                        if leading && l.as_deref() != Some(self.identity.as_str()) {
                            // Our key is gone (deleted by hand?) although the lease lives.
                            error!(leader = ?l, "the election names another leader; stopped acting");
                            return End::Lost;
                        }
                        self.publish(|s| s.leader = l);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use futures_util::FutureExt;

    use super::*;

    /// A backend that wins at once, and grants and renews leases while `renewing` holds
    /// (the service is up).
    #[derive(Default)]
    struct Fake {
        renewing: AtomicBool,
        opened: AtomicU32,
        resigned: AtomicU32,
    }

    impl Election for Arc<Fake> {
        type Session = ();
        fn open(
            &self,
        ) -> futures_util::future::BoxFuture<'static, Result<((), Duration), HaError>> {
            let up = self.renewing.load(Ordering::SeqCst);
            if up {
                self.opened.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                match up {
                    true => Ok(((), Duration::from_secs(2))),
                    false => Err(HaError::LeaseExpired),
                }
            }
            .boxed()
        }
        fn renew(
            &self,
            _: &(),
        ) -> futures_util::future::BoxFuture<'static, Result<Duration, HaError>> {
            let ok = self.renewing.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(Duration::from_secs(2))
                } else {
                    Err(HaError::Timeout {
                        what: "renewing the lease",
                        after: Duration::ZERO,
                    })
                }
            }
            .boxed()
        }
        fn campaign(
            &self,
            _: &(),
        ) -> futures_util::future::BoxFuture<'static, Result<(), HaError>> {
            async { Ok(()) }.boxed()
        }
        fn leader(
            &self,
        ) -> futures_util::future::BoxFuture<'static, Result<Option<String>, HaError>> {
            async { Ok(Some("me".to_string())) }.boxed()
        }
        fn resign(&self, _: &()) -> futures_util::future::BoxFuture<'static, Result<(), HaError>> {
            self.resigned.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }.boxed()
        }
    }

    fn wait(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_fence_follows_renewals_and_lapses_within_half_the_ttl() {
        let fake = Arc::new(Fake::default());
        fake.renewing.store(true, Ordering::SeqCst);
        let fence = Fence::closed();
        let m = HaMetrics::default();
        let h = spawn(
            fake.clone(),
            "me".into(),
            Duration::from_secs(2),
            fence.clone(),
            m.clone(),
        )
        .unwrap();
        let st = h.status();
        wait("leader", || st.borrow().role == Role::Leader);
        assert!(fence.check().is_ok());
        assert_eq!(m.leader.get(), 1);
        // Renewals stop: the fence closes no later than TTL/2 after the last success.
        fake.renewing.store(false, Ordering::SeqCst);
        let stopped = Instant::now();
        wait("fence lapse", || fence.check().is_err());
        assert!(
            stopped.elapsed() <= Duration::from_secs(1) + Duration::from_millis(500),
            "{:?} {:?}",
            stopped.elapsed(),
            fence.check()
        );
        wait("standby", || st.borrow().role == Role::Standby);
        assert!(m.lease_renewal_failures.get() >= 1);
        assert_eq!(m.leader.get(), 0);
        // A lost session is given up (resigned) and a new one campaigns.
        fake.renewing.store(true, Ordering::SeqCst);
        wait("leader again", || st.borrow().role == Role::Leader);
        assert!(fake.opened.load(Ordering::SeqCst) >= 2);
        assert!(fake.resigned.load(Ordering::SeqCst) >= 1);
        assert_eq!(m.leadership_changes.get(), 3);
        let before = fake.resigned.load(Ordering::SeqCst);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(h.resign(Duration::from_secs(5)));
        assert!(fake.resigned.load(Ordering::SeqCst) > before);
        assert!(fence.check().is_err());
    }
}
