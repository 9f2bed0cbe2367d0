//! The poller: one machine list per period, never two in flight, parsed off the actor
//! thread while it arrives (`maas/stream.rs`), published as one immutable snapshot.
//!
//! The next list is scheduled from the completion of the current one (`done + period`):
//! while a list is in flight no timer runs at all, so a list slower than the period
//! costs no wake-ups. A failing MAAS is retried with backoff capped at one period, so
//! recovery takes at most one period after the fault ends.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::StreamExt;
use tracing::{debug, error, info, warn};

use super::{Snapshot, StandDown, StopPolling, Supervisor};
use crate::backoff::Backoff;
use crate::maas::stream::parse_list;
use crate::maas::{MaasClient, MaasError, Machine, ParsedList};
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
    /// The one timer for the next list; none while a list is in flight.
    timer: Option<SpawnHandle>,
    /// Ids the event log names that are not machines (controllers, devices).
    not_machines: NotMachines,
}

/// Ids from the event log that a read by id answered without (region and rack
/// controllers, devices): not read again. Bounded; an id that shows up in a full list
/// leaves the set.
#[derive(Default)]
struct NotMachines {
    set: HashSet<String>,
    order: VecDeque<String>,
}

/// Ids remembered as "not a machine" at most; the oldest is forgotten first.
const NOT_MACHINES_CAP: usize = 4096;

impl NotMachines {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.set.contains(&id) {
            return;
        }
        if self.order.len() >= NOT_MACHINES_CAP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.clone());
        self.order.push_back(id);
    }

    /// Forget every id that a full list shows as a machine.
    fn forget_listed(&mut self, machines: &[Arc<Machine>]) {
        if self.set.is_empty() {
            return;
        }
        let before = self.set.len();
        for m in machines {
            self.set.remove(&m.system_id);
        }
        if self.set.len() != before {
            let set = &self.set;
            self.order.retain(|id| set.contains(id));
        }
    }
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
            timer: None,
            not_machines: NotMachines::default(),
        }
    }

    /// A list or feed read succeeded: MAAS is readable (what `/readyz` and the
    /// staleness alert look at).
    fn note_read_ok(&self) {
        self.board
            .with_global(|g| g.last_read_ok = Some(Instant::now()));
        self.metrics.last_read_success.set(unix_now());
    }

    /// Start a list now (baseline taken, zone filter dropped, configuration reloaded)
    /// instead of at the timer.
    fn list_now(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        self.tick(ctx);
        if !self.in_flight {
            self.schedule(ctx);
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
                            act.list_now(ctx);
                        }
                        Err(e) => {
                            debug!(error = %e, "event log not readable yet; full lists continue");
                            act.schedule(ctx);
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
                let ids: Vec<String> = ids
                    .into_iter()
                    .filter(|id| !self.not_machines.contains(id))
                    .collect();
                if ids.is_empty() {
                    self.note_read_ok();
                } else {
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
        let asked = ids.clone();
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
                act.note_read_ok();
                // Ids MAAS has no machine for (controllers, devices): not asked again.
                for id in asked {
                    if !machines.iter().any(|m| m.system_id == id) {
                        debug!(system_id = %crate::maas::Escaped(&id), "the event log names a node that is not a machine; not reading it again");
                        act.not_machines.insert(id);
                    }
                }
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

    /// Arm the one timer for the next list: at `not_before` after a failure, else at
    /// `next_tick`. Nothing is armed while a list is in flight; its completion arms it.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.stopped || self.in_flight {
            return;
        }
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        let now = Instant::now();
        while self.next_tick <= now {
            self.next_tick += self.period;
        }
        let due = match self.not_before {
            Some(nb) => nb.max(now),
            None => self.next_tick,
        };
        self.timer = Some(
            ctx.run_later(due.saturating_duration_since(now), move |act, ctx| {
                act.timer = None;
                let late = Instant::now().saturating_duration_since(due);
                act.max_tick_lateness = act.max_tick_lateness.max(late);
                act.tick(ctx);
                let baseline_pending = act
                    .feed
                    .as_ref()
                    .is_some_and(|f| f.state == FeedState::Baseline && f.in_flight);
                // A baseline in flight starts the list itself when it has the event id.
                if !act.in_flight && !baseline_pending {
                    act.schedule(ctx);
                }
            }),
        );
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
        // The next list is one period after this one completed, whatever happens below.
        self.next_tick = Instant::now() + self.period;
        self.metrics.poll_seconds.observe(took.as_secs_f64());
        match res {
            Ok(parsed) => {
                Metrics::kind(&self.metrics.polls, "ok");
                self.backoff.reset();
                self.not_before = None;
                self.note_read_ok();
                self.not_machines.forget_listed(&parsed.machines);
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
                        self.schedule(ctx);
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
                        self.schedule(ctx);
                        return;
                    }
                    if !self.zones.is_empty() && body.contains("zone") {
                        // Not a failed poll: MAAS answered, we asked in a way it does not
                        // support. Counted as a fallback, and the list is asked again now.
                        warn!(zones = ?self.zones, answer = %body, "MAAS refused the zone filter; filtering on our side instead");
                        self.zones.clear();
                        self.metrics
                            .fallbacks
                            .get_or_create(&KindLabels {
                                kind: "zone_filter".into(),
                            })
                            .inc();
                        self.not_before = Some(Instant::now());
                        self.schedule(ctx);
                        return;
                    }
                }
                Metrics::kind(&self.metrics.polls, "failed");
                let failures = self.board.global().consecutive_failures + 1;
                let shown = match &e {
                    PollError::Maas(m) if m.code() == 404 => format!("{NOT_FOUND_HINT} ({e})"),
                    _ => e.to_string(),
                };
                self.board.with_global(|g| {
                    g.polls_failed += 1;
                    g.consecutive_failures = failures;
                    g.last_poll_error = Some(shown);
                });
                let wait = self.backoff.next_delay().max(e_retry_after(&e));
                self.not_before = Some(crate::backoff::instant_after(wait));
                match &e {
                    PollError::Maas(m) if matches!(m.code(), 401 | 403) => {
                        error!(error = %e, retry_in = ?wait, "MAAS refused the API key: check maas.api_key / the key file")
                    }
                    PollError::Maas(m) if m.code() == 404 => {
                        error!(error = %e, failures, retry_in = ?wait, "{NOT_FOUND_HINT}")
                    }
                    _ => warn!(error = %e, failures, retry_in = ?wait, "machine list failed"),
                }
            }
        }
        self.schedule(ctx);
    }
}

/// What a 404 for the API itself almost always means.
pub const NOT_FOUND_HINT: &str = "404 from the region: does maas.url end in /MAAS?";

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
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
                // If the event log cannot be read, lists go on regardless.
                self.next_tick = Instant::now() + Duration::from_millis(200).min(self.period);
                self.schedule(ctx);
                // Take the newest event id before the first list, so no change is lost
                // between the two; the baseline triggers that first list itself.
                self.feed_tick(ctx);
                ctx.run_interval(interval, |act, ctx| act.feed_tick(ctx));
            }
            None => self.list_now(ctx),
        }
    }
}

impl Handler<StopPolling> for Poller {
    type Result = ();

    fn handle(&mut self, _: StopPolling, ctx: &mut Self::Context) {
        self.stopped = true;
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
    }
}

/// Replace the zones MAAS filters for us (configuration reloaded) and list at once, so
/// a new selection is acted on without waiting a period. Pools and tags are filtered
/// on our side from then on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetZones(pub Vec<String>);

impl Handler<SetZones> for Poller {
    type Result = ();

    fn handle(&mut self, msg: SetZones, ctx: &mut Self::Context) {
        self.zones = msg.0;
        // Pools and tags of the new filter are applied on our side (always correct).
        self.pools.clear();
        self.tags.clear();
        if !self.stopped && !self.in_flight {
            self.not_before = Some(Instant::now());
            self.list_now(ctx);
        }
    }
}

/// Test hook: make the poller die the way a bug would (a panic in a handler, or the
/// actor stopping), so the watchdog, `/healthz` and `/readyz` can be tested. The
/// controller itself never sends it.
#[doc(hidden)]
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub enum Halt {
    Stop,
    Panic,
}

impl Handler<Halt> for Poller {
    type Result = ();

    fn handle(&mut self, how: Halt, ctx: &mut Self::Context) {
        error!(?how, "poller halted (test hook)");
        match how {
            Halt::Stop => ctx.stop(),
            #[allow(clippy::panic)]
            Halt::Panic => panic!("poller halted by the test hook"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_machines_is_bounded_and_forgets_listed_ids() {
        let mut nm = NotMachines::default();
        for i in 0..NOT_MACHINES_CAP + 10 {
            nm.insert(format!("ctl{i}"));
        }
        assert_eq!(nm.set.len(), NOT_MACHINES_CAP);
        assert_eq!(nm.order.len(), NOT_MACHINES_CAP);
        assert!(!nm.contains("ctl0"), "the oldest id is forgotten first");
        assert!(nm.contains(&format!("ctl{}", NOT_MACHINES_CAP + 9)));
        let listed: Machine = serde_json::from_value(serde_json::json!({
            "system_id": "ctl20", "hostname": "now-a-machine", "status": 0,
        }))
        .unwrap();
        nm.forget_listed(&[Arc::new(listed)]);
        assert!(
            !nm.contains("ctl20"),
            "an id seen in a full list is a machine"
        );
        assert_eq!(nm.order.len(), nm.set.len());
    }
}
