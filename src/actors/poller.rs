//! The poller: one machine list per period, never two in flight, parsed off the actor
//! thread while it arrives (`maas/stream.rs`), published as one immutable snapshot.
//!
//! Ticks follow a fixed schedule (`start + n * period`), so a slow list delays nothing
//! but itself: a tick that finds the previous list still running is skipped. A failing
//! MAAS is retried with backoff capped at one period, so recovery takes at most one
//! period after the fault ends.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::StreamExt;
use tracing::{debug, error, info, warn};

use super::{Snapshot, StandDown, StopPolling, Supervisor};
use crate::backoff::Backoff;
use crate::maas::stream::parse_list;
use crate::maas::{MaasClient, MaasError, ParsedList};
use crate::metrics::{KindLabels, Metrics};
use crate::status::{rfc3339, Board};

pub struct Poller {
    client: MaasClient,
    supervisor: Addr<Supervisor>,
    period: Duration,
    /// Zones MAAS filters for us; dropped if MAAS refuses them.
    zones: Vec<String>,
    /// Resource pools and one tag MAAS filters for us (`pool=`, `tags=`); each dropped
    /// if MAAS refuses it.
    pools: Vec<String>,
    tags: Vec<String>,
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
    /// The event-log feed, when enabled (API 2.0).
    feed: Option<Feed>,
    /// When the last list was sent: a scheduled tick right after an early list is skipped.
    last_list_started: Option<Instant>,
    /// API 1.0 without whoami: learn our machines from `list_allocated` after each list.
    allocated_ownership: bool,
}

/// Following MAAS's event log between full lists.
struct Feed {
    interval: Duration,
    state: FeedState,
    /// The newest event id seen; the next query asks for events after it.
    last_id: i64,
    in_flight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedState {
    /// Take the newest event id, then do a full list.
    Baseline,
    /// Waiting for the full list that follows a baseline.
    AwaitList,
    Active,
}

/// Largest page MAAS serves.
const EVENT_PAGE: u32 = 1000;
/// Pages followed in one feed read before leaving the rest to a full list.
const MAX_PAGES: usize = 10;
/// Machines read per delta request (`machines/?id=..&id=..`).
const DELTA_BATCH: usize = 100;
/// Delta batches read at once.
const DELTA_PARALLEL: usize = 4;

/// What one feed read found.
enum FeedRead {
    Changed {
        last_id: i64,
        ids: Vec<String>,
        events: usize,
    },
    /// The log went backwards or the answer is inconsistent: resync.
    Broken(&'static str, String),
}

#[derive(serde::Deserialize)]
struct EventPage {
    count: usize,
    events: Vec<EventEntry>,
}

#[derive(serde::Deserialize)]
struct EventEntry {
    id: i64,
    #[serde(default)]
    node: Option<String>,
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
            pools: Vec::new(),
            tags: Vec::new(),
            in_flight: false,
            stopped: false,
            next_tick: Instant::now(),
            not_before: None,
            backoff: Backoff::new(Duration::from_millis(500), period),
            board,
            metrics,
            max_tick_lateness: Duration::ZERO,
            feed: None,
            last_list_started: None,
            allocated_ownership: false,
        }
    }

    /// Mark which machines are ours from `nodes/?op=list_allocated`, read after every
    /// list (see `maas::ownership`).
    pub fn with_allocated_ownership(mut self) -> Self {
        self.allocated_ownership = true;
        self
    }

    /// Let MAAS narrow the list by pool and tag too (see `Filter::server_side_pools` and
    /// `Filter::server_side_tags` for when that cannot change the selection).
    pub fn with_server_filter(
        mut self,
        pools: Option<Vec<String>>,
        tags: Option<Vec<String>>,
    ) -> Self {
        self.pools = pools.unwrap_or_default();
        self.tags = tags.unwrap_or_default();
        self
    }

    /// Follow the event log every `interval` between full lists.
    pub fn with_event_feed(mut self, interval: Duration) -> Self {
        self.feed = Some(Feed {
            interval,
            state: FeedState::Baseline,
            last_id: 0,
            in_flight: false,
        });
        self
    }

    fn feed_tick(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        if feed.in_flight {
            return;
        }
        match feed.state {
            FeedState::AwaitList => {}
            FeedState::Baseline => {
                feed.in_flight = true;
                let client = self.client.clone();
                let fut = async move {
                    let req = client.api().events_after(None, 1);
                    let body = client.call(&req, "events").await?;
                    let page: EventPage = serde_json::from_slice(&body)
                        .map_err(|e| PollError::Parse(format!("events: {e}")))?;
                    Ok::<i64, PollError>(page.events.iter().map(|e| e.id).max().unwrap_or(0))
                };
                ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
                    let Some(feed) = act.feed.as_mut() else {
                        return;
                    };
                    feed.in_flight = false;
                    match res {
                        Ok(newest) => {
                            debug!(newest, "event log baseline taken");
                            feed.last_id = newest;
                            feed.state = FeedState::AwaitList;
                            // Everything after `newest` reaches us through the feed; the
                            // list that follows covers everything before it.
                            act.not_before = Some(Instant::now());
                            act.tick(ctx);
                        }
                        Err(e) => {
                            debug!(error = %e, "event log not readable yet; full lists continue")
                        }
                    }
                }));
            }
            FeedState::Active => {
                feed.in_flight = true;
                let after = feed.last_id;
                let client = self.client.clone();
                let fut = read_feed(client, after);
                ctx.spawn(
                    fut.into_actor(self)
                        .map(move |res, act, ctx| act.fed(res, ctx)),
                );
            }
        }
    }

    fn fed(&mut self, res: Result<FeedRead, PollError>, ctx: &mut Context<Self>) {
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        feed.in_flight = false;
        let reason = match res {
            Ok(FeedRead::Changed {
                last_id,
                ids,
                events,
            }) => {
                if events > 0 {
                    debug!(
                        events,
                        machines = ids.len(),
                        last_id,
                        "event log: machines changed"
                    );
                }
                feed.last_id = last_id;
                self.metrics.events_seen.inc_by(events as u64);
                if !ids.is_empty() {
                    self.read_delta(ids, ctx);
                }
                return;
            }
            Ok(FeedRead::Broken(reason, detail)) => {
                warn!(reason, %detail, "event log inconsistent; falling back to a full list");
                reason
            }
            Err(e) => {
                warn!(error = %e, "event log read failed; falling back to a full list");
                match e {
                    PollError::Parse(_) => "unparsable",
                    PollError::Maas(_) => "error",
                }
            }
        };
        self.metrics
            .fallbacks
            .get_or_create(&KindLabels {
                kind: reason.into(),
            })
            .inc();
        if let Some(feed) = self.feed.as_mut() {
            feed.state = FeedState::Baseline;
        }
        self.feed_tick(ctx);
    }

    /// Re-read only the machines that changed and publish them as a delta.
    fn read_delta(&mut self, ids: Vec<String>, ctx: &mut Context<Self>) {
        let client = self.client.clone();
        let version = client.settings().version;
        let started = Instant::now();
        let fut = async move {
            // A few batches at once; parsing on the blocking pool, never on the actors' thread.
            let reads: Vec<_> = ids
                .chunks(DELTA_BATCH)
                .map(|chunk| {
                    let client = client.clone();
                    let req = client.api().list_ids(chunk.iter().map(String::as_str));
                    async move {
                        client
                            .call_streamed(&req, "delta", move |r| parse_list(r, version))
                            .await?
                            .map_err(|e| PollError::Parse(e.to_string()))
                    }
                })
                .collect();
            let mut all = Vec::new();
            let mut stream = futures_util::stream::iter(reads).buffered(DELTA_PARALLEL);
            while let Some(parsed) = stream.next().await {
                all.extend(parsed?.machines);
            }
            Ok::<_, PollError>(all)
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(machines) => {
                act.metrics.deltas.inc();
                act.supervisor.do_send(Snapshot {
                    machines: Arc::new(machines),
                    fetched_at: started,
                    full: false,
                });
            }
            Err(e) => {
                warn!(error = %e, "re-reading changed machines failed; falling back to a full list");
                act.metrics.fallbacks.get_or_create(&KindLabels { kind: "delta_error".into() }).inc();
                if let Some(feed) = act.feed.as_mut() {
                    feed.state = FeedState::Baseline;
                }
                act.feed_tick(ctx);
            }
        }));
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
            .feed
            .as_ref()
            .is_some_and(|f| f.state == FeedState::Baseline && f.in_flight)
        {
            // The baseline read triggers the list as soon as it has the newest event id.
            return;
        }
        if self
            .not_before
            .is_some_and(|t| t > Instant::now() + Duration::from_millis(5))
        {
            return;
        }
        let started = Instant::now();
        let retrying = self.not_before.is_some();
        if !retrying
            && self
                .last_list_started
                .is_some_and(|t| started.duration_since(t) < self.period / 2)
        {
            // A list just ran (the feed's start-up list): keep the period.
            return;
        }
        self.in_flight = true;
        self.last_list_started = Some(started);
        let client = self.client.clone();
        let mut req = client.api().list(&self.zones);
        for p in &self.pools {
            req = req.with_query("pool", p.clone());
        }
        for t in &self.tags {
            req = req.with_query("tags", t.clone());
        }
        let version = client.settings().version;
        let allocated_ownership = self.allocated_ownership;
        let fut = async move {
            // Parsed while it arrives, on the blocking pool: a 100 MB list is never held
            // whole and never stalls an actor.
            let mut parsed = client
                .call_streamed(&req, "list", move |r| parse_list(r, version))
                .await?
                .map_err(|e| PollError::Parse(e.to_string()))?;
            if allocated_ownership {
                crate::maas::ownership::mark(&client, &mut parsed.machines).await;
            }
            Ok(parsed)
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
                if let Some(feed) = self.feed.as_mut() {
                    if feed.state == FeedState::AwaitList {
                        feed.state = FeedState::Active;
                    }
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
                    if !self.pools.is_empty() && body.contains("pool") {
                        warn!(pools = ?self.pools, answer = %body, "MAAS refused the pool filter; filtering on our side instead");
                        self.pools.clear();
                        self.metrics
                            .fallbacks
                            .get_or_create(&KindLabels {
                                kind: "pool_filter".into(),
                            })
                            .inc();
                        self.not_before = Some(Instant::now());
                        ctx.run_later(Duration::from_millis(1), |act, ctx| act.tick(ctx));
                        return;
                    }
                    if !self.tags.is_empty() && body.contains("tag") {
                        warn!(tags = ?self.tags, answer = %body, "MAAS refused the tag filter; filtering on our side instead");
                        self.tags.clear();
                        self.metrics
                            .fallbacks
                            .get_or_create(&KindLabels {
                                kind: "tag_filter".into(),
                            })
                            .inc();
                        self.not_before = Some(Instant::now());
                        ctx.run_later(Duration::from_millis(1), |act, ctx| act.tick(ctx));
                        return;
                    }
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
                self.not_before = Some(crate::backoff::instant_after(wait));
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
        match self.feed.as_ref().map(|f| f.interval) {
            Some(interval) => {
                // Take the newest event id before the first list, so no change is lost
                // between the two; the baseline triggers that first list itself.
                self.feed_tick(ctx);
                ctx.run_interval(interval, |act, ctx| act.feed_tick(ctx));
                // If the event log cannot be read, lists go on regardless.
                self.next_tick = Instant::now() + Duration::from_millis(200).min(self.period);
            }
            None => self.tick(ctx),
        }
        self.schedule(ctx);
    }
}

impl Handler<StopPolling> for Poller {
    type Result = ();

    fn handle(&mut self, _: StopPolling, _ctx: &mut Self::Context) {
        self.stopped = true;
    }
}

impl Handler<StandDown> for Poller {
    type Result = ();

    fn handle(&mut self, _: StandDown, ctx: &mut Self::Context) {
        self.stopped = true;
        ctx.stop();
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

/// Read the events after `after`, following full pages, and collect the machines named.
async fn read_feed(client: MaasClient, after: i64) -> Result<FeedRead, PollError> {
    let mut last = after;
    let mut ids: Vec<String> = Vec::new();
    let mut events = 0usize;
    for _ in 0..MAX_PAGES {
        let req = client.api().events_after(Some(last), EVENT_PAGE);
        let body = client.call(&req, "events").await?;
        let page: EventPage =
            serde_json::from_slice(&body).map_err(|e| PollError::Parse(format!("events: {e}")))?;
        if page.count != page.events.len() {
            return Ok(FeedRead::Broken(
                "inconsistent",
                format!("count {} but {} events", page.count, page.events.len()),
            ));
        }
        if let Some(old) = page.events.iter().find(|e| e.id <= last) {
            return Ok(FeedRead::Broken(
                "gap",
                format!("event {} is not after {last}: the log went back", old.id),
            ));
        }
        events += page.events.len();
        for e in &page.events {
            if let Some(n) = e.node.as_ref().filter(|n| !n.is_empty()) {
                if !ids.contains(n) {
                    ids.push(n.clone());
                }
            }
        }
        // `next_uri` drops `after` when nothing is new (MAAS's trap): keep our own cursor.
        last = page.events.iter().map(|e| e.id).max().unwrap_or(last);
        if page.events.len() < EVENT_PAGE as usize {
            return Ok(FeedRead::Changed {
                last_id: last,
                ids,
                events,
            });
        }
    }
    Ok(FeedRead::Broken(
        "backlog",
        format!(
            "more than {} events since {after}",
            MAX_PAGES * EVENT_PAGE as usize
        ),
    ))
}
