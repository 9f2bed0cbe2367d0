//! One replica under leader election: the status listener always, the actors only
//! while this replica leads.
//!
//! On winning, the actors start as on a fresh start (a full list; outcomes come from
//! MAAS annotations and the local journal). When the [`Fence`] lapses or the election
//! says standby, they are stood down at once: no grace, no drain, timers cancelled,
//! provisioning killed; the board forgets every machine. On SIGTERM a leader drains
//! like a single replica does, then resigns so a standby takes over immediately.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::campaign::{self, Status};
use super::etcd::EtcdElection;
use super::{Backend, Fence, HaConfig, Role};
use crate::actors::StandDown;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::run::{self, Actors};
use crate::status::Board;

/// Why [`serve`] returned.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] run::StartError),
    #[error("cannot start the election thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Run as one replica of `ha` until SIGTERM/SIGINT. Must run inside an actix system.
pub async fn serve(cfg: &Config, ha: &HaConfig) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::new());
    let board = Arc::new(Board::default());
    board.with_global(|g| {
        g.role = Role::Standby;
        g.identity = Some(ha.identity.clone());
    });
    let (_addr, http) = run::listen(cfg, board.clone(), metrics.clone())?;
    let fence = Fence::closed();
    let election = match ha.backend {
        Backend::Etcd => EtcdElection::new(ha.clone()),
    };
    info!(identity = %ha.identity, election = %ha.election, endpoints = ?ha.endpoints,
        lease_ttl = ?ha.lease_ttl, "campaigning for leadership");
    let handle = campaign::spawn(
        election,
        ha.identity.clone(),
        ha.lease_ttl,
        fence.clone(),
        metrics.ha.clone(),
    )
    .map_err(ServeError::Thread)?;
    let mut status = handle.status();
    // A progress line when it changes, while leading (a standby has nothing to report).
    let progress_board = board.clone();
    let every = cfg.settings.maas.period.max(Duration::from_secs(10)) * 2;
    actix_rt::spawn(async move {
        let mut last = String::new();
        loop {
            actix_rt::time::sleep(every).await;
            if progress_board.global().role != Role::Leader {
                continue;
            }
            let line = progress_board.progress_line();
            if line != last {
                info!("progress: {line}");
                last = line;
            }
        }
    });
    let signal = crate::shutdown::signal();
    tokio::pin!(signal);
    let mut active: Option<Actors> = None;
    let outcome: Result<(), ServeError> = loop {
        // Standby: wait until we lead and may act.
        tokio::select! {
            sig = &mut signal => {
                info!(signal = sig, "stopping (standby)");
                break Ok(());
            }
            _ = wait_for_leadership(&mut status, &fence, &board) => {}
        }
        info!("leading: starting the actors with a full list");
        let started = tokio::select! {
            sig = &mut signal => {
                info!(signal = sig, "stopping before the actors started");
                break Ok(());
            }
            _ = wait_for_loss(&mut status, &fence, &board) => {
                stand_down(None, &board).await;
                continue;
            }
            r = run::start_actors(cfg, board.clone(), metrics.clone(), fence.clone()) => r,
        };
        match started {
            Ok(a) => active = Some(a),
            Err(e) => break Err(e.into()),
        }
        tokio::select! {
            sig = &mut signal => {
                info!(signal = sig, grace = ?cfg.settings.shutdown_grace, "stopping: no new polls, waiting for operations in flight, then resigning");
                break Ok(());
            }
            _ = wait_for_loss(&mut status, &fence, &board) => {
                stand_down(active.take(), &board).await;
            }
        }
    };
    if let Some(a) = active.take() {
        let left = crate::shutdown::drain_actors(
            &a.poller,
            &a.supervisor,
            &board,
            cfg.settings.shutdown_grace,
        )
        .await;
        if left > 0 {
            warn!(
                in_flight = left,
                "grace period over; abandoning operations in flight"
            );
        }
    }
    fence.close();
    handle.resign(ha.lease_ttl).await;
    if let Some(h) = http {
        h.stop(true).await;
    }
    outcome
}

/// Copy the election's view onto the board (status API, dashboard, readiness).
fn show(board: &Board, s: &Status) {
    board.with_global(|g| {
        g.leader = s.leader.clone();
        g.election_connected = Some(s.connected);
    });
}

async fn wait_for_leadership(status: &mut watch::Receiver<Status>, fence: &Fence, board: &Board) {
    loop {
        let s = status.borrow_and_update().clone();
        show(board, &s);
        if s.role == Role::Leader && fence.check().is_ok() {
            board.with_global(|g| g.role = Role::Leader);
            return;
        }
        if status.changed().await.is_err() {
            // The election thread is gone: stay a standby for good.
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves when this replica must stop acting: the election says standby, or the
/// fence lapsed (checked at its deadline, whether or not the election noticed yet).
async fn wait_for_loss(status: &mut watch::Receiver<Status>, fence: &Fence, board: &Board) {
    loop {
        let s = status.borrow_and_update().clone();
        show(board, &s);
        if s.role != Role::Leader {
            return;
        }
        if let Err(e) = fence.check() {
            error!(error = %e, "leadership lapsed: stopping at once");
            return;
        }
        let wake = fence
            .deadline()
            .unwrap_or_else(Instant::now)
            .min(Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = status.changed() => {
                if r.is_err() {
                    return;
                }
            }
            _ = actix_rt::time::sleep_until(wake.into()) => {}
        }
    }
}

/// Stop acting now: the poller and every node actor stop without waiting for anything
/// in flight (a standby must send nothing), and the board forgets every machine.
async fn stand_down(active: Option<Actors>, board: &Board) {
    board.with_global(|g| g.role = Role::Standby);
    if let Some(a) = active {
        let _ = a.poller.send(StandDown).await;
        let _ = a.supervisor.send(StandDown).await;
    }
    board.clear_machines();
    info!("standing by: no machine state kept");
}
