//! Graceful shutdown: on SIGTERM or SIGINT stop polling, let operations in flight
//! finish within the grace period, then stop.

use std::time::{Duration, Instant};

use crate::actors::supervisor::RetireAll;
use crate::actors::{Poller, StopPolling, Supervisor};
use crate::run::Controller;
use crate::status::Board;
use actix::Addr;

/// Wait for SIGTERM or SIGINT; returns the signal's name.
pub async fn signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can only wait forever; the process can still be killed.
        std::future::pending::<()>().await;
        return "none";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Stop polling, retire every machine actor, and wait for in-flight work up to `grace`.
/// Returns how many operations were still in flight when the grace period ended.
pub async fn drain(ctrl: &Controller, grace: Duration) -> usize {
    drain_actors(&ctrl.poller, &ctrl.supervisor, &ctrl.board, grace).await
}

/// [`drain`] for actors started on their own (an HA leader's term).
pub async fn drain_actors(
    poller: &Addr<Poller>,
    supervisor: &Addr<Supervisor>,
    board: &Board,
    grace: Duration,
) -> usize {
    let _ = poller.send(StopPolling).await;
    let _ = supervisor.send(RetireAll).await;
    let ctrl = board;
    let deadline = crate::backoff::instant_after(grace);
    loop {
        let n = ctrl.in_flight();
        if n == 0 || Instant::now() >= deadline {
            return n;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}
