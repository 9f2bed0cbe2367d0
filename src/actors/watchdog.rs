//! The poller's watchdog: a poller that stopped (a crash in a handler, a bug) must not
//! leave a silent zombie that serves `/healthz` 200 while nothing reads MAAS.
//!
//! Chosen behaviour: restart in the process. The watchdog checks the poller's address
//! every `CHECK_EVERY`; when it is gone, the status board says so (`/healthz` and
//! `/readyz` answer 503 until a new poller runs), and a new poller is started after a
//! backoff (1 s, doubling up to a minute), counted in `maas_flow_poller_restarts_total`.
//! Node actors and the supervisor are untouched, so no machine state is lost.
//! A poller that keeps dying stays visible: every death is logged at ERROR and counted,
//! and `/readyz` fails once no read has succeeded for `http.unready_after_periods`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::Mutex;
use tracing::{error, info};

use super::{Poller, Supervisor};
use crate::backoff::Backoff;
use crate::maas::MaasClient;
use crate::metrics::Metrics;
use crate::status::Board;

/// How often the watchdog looks at the poller.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The address of the current poller, which changes when the watchdog restarts it.
/// `send` and `do_send` go to whichever poller runs now.
#[derive(Clone)]
pub struct PollerHandle {
    inner: Arc<Mutex<HandleState>>,
}

struct HandleState {
    addr: Addr<Poller>,
    /// Zones for a restarted poller (the configuration may have been reloaded).
    zones: Vec<String>,
    /// Reloaded: pools and tags are filtered on our side.
    reloaded: bool,
    /// Shutting down: a stopped poller is expected, not restarted.
    stopping: bool,
}

impl PollerHandle {
    pub fn addr(&self) -> Addr<Poller> {
        self.inner.lock().addr.clone()
    }

    pub fn send<M>(&self, msg: M) -> actix::dev::Request<Poller, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Poller: Handler<M>,
    {
        self.addr().send(msg)
    }

    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Poller: Handler<M>,
    {
        self.addr().do_send(msg)
    }

    /// Shutdown begins: the watchdog stops restarting.
    pub fn stop_watching(&self) {
        self.inner.lock().stopping = true;
    }

    /// Remember the zones a restarted poller should use.
    pub fn set_zones(&self, zones: Vec<String>) {
        let mut st = self.inner.lock();
        st.zones = zones;
        st.reloaded = true;
    }
}

/// Pools and tags MAAS filters for us: `(pools, tags)`, each unset when client-side.
pub type ServerFilter = (Option<Vec<String>>, Option<Vec<String>>);

/// Everything needed to build a poller again.
#[derive(Clone)]
pub struct PollerSpec {
    pub client: MaasClient,
    pub supervisor: Addr<Supervisor>,
    pub period: Duration,
    pub zones: Vec<String>,
    /// Pools and tags MAAS filters for us (API 2.0).
    pub server_filter: Option<ServerFilter>,
    /// API 1.0 without whoami: ownership from `list_allocated` after each list.
    pub allocated_ownership: bool,
    pub events_interval: Option<Duration>,
    pub board: Arc<Board>,
    pub metrics: Arc<Metrics>,
}

impl PollerSpec {
    fn build(&self, zones: Vec<String>, reloaded: bool) -> Poller {
        let p = Poller::new(
            self.client.clone(),
            self.supervisor.clone(),
            self.period,
            Some(zones),
            self.board.clone(),
            self.metrics.clone(),
        );
        let p = match &self.server_filter {
            Some((pools, tags)) if !reloaded => p.with_server_filter(pools.clone(), tags.clone()),
            _ => p,
        };
        let p = if self.allocated_ownership {
            p.with_allocated_ownership()
        } else {
            p
        };
        match self.events_interval {
            Some(i) => p.with_event_feed(i),
            None => p,
        }
    }
}

/// Start the poller and its watchdog on the current arbiter.
pub fn start(spec: PollerSpec) -> PollerHandle {
    let addr = spec.build(spec.zones.clone(), false).start();
    let handle = PollerHandle {
        inner: Arc::new(Mutex::new(HandleState {
            addr,
            zones: spec.zones.clone(),
            reloaded: false,
            stopping: false,
        })),
    };
    let h = handle.clone();
    actix_rt::spawn(async move { watch(spec, h).await });
    handle
}

async fn watch(spec: PollerSpec, handle: PollerHandle) {
    let cap = Duration::from_secs(60).max(spec.period);
    let mut backoff = Backoff::new(Duration::from_secs(1), cap);
    let mut last_restart: Option<std::time::Instant> = None;
    loop {
        actix_rt::time::sleep(CHECK_EVERY).await;
        if handle.inner.lock().stopping {
            return;
        }
        if handle.addr().connected() {
            continue;
        }
        if last_restart.is_some_and(|t| t.elapsed() > cap * 10) {
            // It ran well for a long time since the last restart: start small again.
            backoff.reset();
        }
        let delay = backoff.next_delay();
        error!(restart_in = ?delay, "the poller stopped: MAAS is not being read; starting a new poller");
        spec.board.with_global(|g| g.poller_stopped = true);
        actix_rt::time::sleep(delay).await;
        let (zones, reloaded) = {
            let st = handle.inner.lock();
            if st.stopping {
                return;
            }
            (st.zones.clone(), st.reloaded)
        };
        let addr = spec.build(zones, reloaded).start();
        handle.inner.lock().addr = addr;
        last_restart = Some(std::time::Instant::now());
        spec.metrics.poller_restarts.inc();
        spec.board.with_global(|g| {
            g.poller_stopped = false;
            g.poller_restarts += 1;
        });
        info!("new poller started");
    }
}
