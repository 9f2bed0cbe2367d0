//! The poller: one machine list per period, never two in flight, parsed off the actor
//! thread, published as one immutable snapshot.
//!
//! Ticks follow a fixed schedule (`start + n * period`), so a slow list delays nothing
//! but itself: a tick that finds the previous list still running is skipped. A failing
//! MAAS is retried with backoff capped at one period, so recovery takes at most one
//! period after the fault ends.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use tracing::{error, info, warn};

use super::{Snapshot, StopPolling, Supervisor};
use crate::backoff::Backoff;
use crate::maas::{parse_machine_list, MaasClient, MaasError, ParsedList};
use crate::metrics::{KindLabels, Metrics};
use crate::status::{rfc3339, Board};

pub struct Poller {
    client: MaasClient,
    supervisor: Addr<Supervisor>,
    period: Duration,
    /// Zones MAAS filters for us; dropped if MAAS refuses them.
    zones: Vec<String>,
    in_flight: bool,
    stopped: bool,
    next_tick: Instant,
    /// No list before this (backoff after a failure).
    not_before: Option<Instant>,
    backoff: Backoff,
    board: Arc<Board>,
    metrics: Arc<Metrics>,
    /// Observed lateness of ticks, for the jitter figures.
    pub max_tick_lateness: Duration,
}

#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Maas(#[from] MaasError),
    #[error("machine list is unusable: {0}")]
    Parse(String),
}

impl Poller {
    pub fn new(
        client: MaasClient,
        supervisor: Addr<Supervisor>,
        period: Duration,
        zones: Option<Vec<String>>,
        board: Arc<Board>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Poller {
            client,
            supervisor,
            period,
            zones: zones.unwrap_or_default(),
            in_flight: false,
            stopped: false,
            next_tick: Instant::now(),
            not_before: None,
            backoff: Backoff::new(Duration::from_millis(500), period),
            board,
            metrics,
            max_tick_lateness: Duration::ZERO,
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        while self.next_tick <= now {
            self.next_tick += self.period;
        }
        let mut due = self.next_tick;
        if let Some(nb) = self.not_before {
            due = due.min(nb.max(now));
        }
        ctx.run_later(due.saturating_duration_since(now), move |act, ctx| {
            let late = Instant::now().saturating_duration_since(due);
            act.max_tick_lateness = act.max_tick_lateness.max(late);
            act.tick(ctx);
            if !act.stopped {
                act.schedule(ctx);
            }
        });
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        if self.in_flight {
            Metrics::kind(&self.metrics.polls, "skipped_in_flight");
            return;
        }
        if self
            .not_before
            .is_some_and(|t| t > Instant::now() + Duration::from_millis(5))
        {
            return;
        }
        self.in_flight = true;
        let started = Instant::now();
        let client = self.client.clone();
        let req = client.api().list(&self.zones);
        let version = client.settings().version;
        let fut = async move {
            let body = client.call(&req, "list").await?;
            // Parsing 100 MB takes long enough to stall every actor: do it elsewhere.
            actix_rt::task::spawn_blocking(move || parse_machine_list(&body, version))
                .await
                .map_err(|e| PollError::Parse(e.to_string()))?
                .map_err(|e| PollError::Parse(e.to_string()))
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |res, act, ctx| act.listed(res, started, ctx)),
        );
    }

    fn listed(
        &mut self,
        res: Result<ParsedList, PollError>,
        started: Instant,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight = false;
        let took = started.elapsed();
        self.metrics.poll_seconds.observe(took.as_secs_f64());
        match res {
            Ok(parsed) => {
                Metrics::kind(&self.metrics.polls, "ok");
                self.backoff.reset();
                self.not_before = None;
                let now = SystemTime::now();
                self.metrics.last_poll_success.set(
                    now.duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                );
                for s in parsed.skipped.iter().take(10) {
                    warn!(index = s.index, system_id = s.system_id.as_deref().unwrap_or("?"), error = %s.error, "skipping a malformed machine entry");
                }
                if !parsed.skipped.is_empty() {
                    self.metrics
                        .skipped_machines
                        .inc_by(parsed.skipped.len() as u64);
                }
                let n = parsed.machines.len();
                let recovered = self.board.global().consecutive_failures > 0;
                self.board.with_global(|g| {
                    g.polls_ok += 1;
                    g.consecutive_failures = 0;
                    g.last_poll_ok = Some(rfc3339(now));
                    g.machines_in_list = n;
                    g.first_list_at.get_or_insert_with(Instant::now);
                });
                if recovered {
                    info!(machines = n, "MAAS list works again");
                }
                self.supervisor.do_send(Snapshot {
                    machines: Arc::new(parsed.machines),
                    fetched_at: started,
                    full: true,
                });
            }
            Err(e) => {
                Metrics::kind(&self.metrics.polls, "failed");
                let failures = self.board.global().consecutive_failures + 1;
                self.board.with_global(|g| {
                    g.polls_failed += 1;
                    g.consecutive_failures = failures;
                    g.last_poll_error = Some(e.to_string());
                });
                if let PollError::Maas(MaasError::Status {
                    code: 400, body, ..
                }) = &e
                {
                    if !self.zones.is_empty() && body.contains("zone") {
                        warn!(zones = ?self.zones, answer = %body, "MAAS refused the zone filter; filtering on our side instead");
                        self.zones.clear();
                        self.metrics
                            .fallbacks
                            .get_or_create(&KindLabels {
                                kind: "zone_filter".into(),
                            })
                            .inc();
                        self.not_before = Some(Instant::now());
                        ctx.run_later(Duration::from_millis(1), |act, ctx| act.tick(ctx));
                        return;
                    }
                }
                let wait = self.backoff.next_delay().max(e_retry_after(&e));
                self.not_before = Some(Instant::now() + wait);
                match &e {
                    PollError::Maas(m) if matches!(m.code(), 401 | 403) => {
                        error!(error = %e, retry_in = ?wait, "MAAS refused the API key: check maas.api_key / the key file")
                    }
                    _ => warn!(error = %e, failures, retry_in = ?wait, "machine list failed"),
                }
            }
        }
    }
}

fn e_retry_after(e: &PollError) -> Duration {
    match e {
        PollError::Maas(m) => m.retry_after().unwrap_or_default(),
        PollError::Parse(_) => Duration::ZERO,
    }
}

impl Actor for Poller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.next_tick = Instant::now();
        self.tick(ctx);
        self.schedule(ctx);
    }
}

impl Handler<StopPolling> for Poller {
    type Result = ();

    fn handle(&mut self, _: StopPolling, _ctx: &mut Self::Context) {
        self.stopped = true;
    }
}

/// Ask the poller for its worst tick lateness so far (scale harness).
#[derive(Message)]
#[rtype(result = "Duration")]
pub struct TickLateness;

impl Handler<TickLateness> for Poller {
    type Result = MessageResult<TickLateness>;

    fn handle(&mut self, _: TickLateness, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.max_tick_lateness)
    }
}
