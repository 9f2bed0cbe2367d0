//! The read-only status listener: health, readiness, Prometheus metrics, the machine
//! API and the dashboard. No endpoint changes anything.
//!
//! Memory is bounded however many clients read and however slowly: the machine list is
//! paged (`?limit=&after=`, at most [`Limits::max_page`] per answer), at most
//! [`Limits::max_responses`] list answers are being written at once (more get 503 with
//! `Retry-After`), and an answer not taken by the client within
//! [`Limits::write_timeout`] is dropped with its connection.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::status::{status_since, Board};

/// Not ready after this many consecutive failed lists.
const UNREADY_AFTER_FAILURES: u32 = 3;

/// Bounds on what the listener holds for its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Machines per `/api/v1/machines` answer when the client gives no `limit`.
    pub default_page: usize,
    /// The largest `limit` honoured (~1 KB of JSON per machine).
    pub max_page: usize,
    /// Machine-list answers being written at once; more get 503.
    pub max_responses: usize,
    /// An answer still not taken by the client after this long is dropped.
    pub write_timeout: Duration,
    /// Open connections at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_page: 500,
            max_page: 5000,
            max_responses: 8,
            write_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

struct Shared {
    board: Arc<Board>,
    metrics: Arc<Metrics>,
    period: Duration,
    started: Instant,
    limits: Limits,
    responses: Arc<Semaphore>,
}

/// Bind and start the listener on the current actix system.
pub fn start(
    listen: &str,
    board: Arc<Board>,
    metrics: Arc<Metrics>,
    period: Duration,
) -> std::io::Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    start_with(listen, board, metrics, period, Limits::default())
}

/// [`start`] with explicit [`Limits`].
pub fn start_with(
    listen: &str,
    board: Arc<Board>,
    metrics: Arc<Metrics>,
    period: Duration,
    limits: Limits,
) -> std::io::Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let shared = web::Data::new(Shared {
        board,
        metrics,
        period,
        started: Instant::now(),
        limits,
        responses: Arc::new(Semaphore::new(limits.max_responses.max(1))),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics_text))
            .route("/api/v1/machines", web::get().to(machines))
            .route("/api/v1/machines/{system_id}", web::get().to(machine))
            .route("/api/v1/status", web::get().to(global))
            .route("/", web::get().to(dashboard))
    })
    .workers(1)
    .max_connections(limits.max_connections)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(listen)?;
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok((addr, handle))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(s: web::Data<Shared>) -> HttpResponse {
    let g = s.board.global();
    if g.role == crate::ha::Role::Standby {
        // A standby is ready when it can take over: it reaches the coordination service.
        return if g.election_connected == Some(false) {
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("not ready: standby, the coordination service (etcd) does not answer\n")
        } else {
            HttpResponse::Ok().content_type("text/plain").body(format!(
                "ready: standby (leader: {})\n",
                g.leader.as_deref().unwrap_or("none")
            ))
        };
    }
    if g.polls_ok == 0 {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("not ready: no successful MAAS list yet\n")
    } else if g.consecutive_failures >= UNREADY_AFTER_FAILURES {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!(
                "not ready: {} consecutive failed lists (period {:?}); last error: {}\n",
                g.consecutive_failures,
                s.period,
                g.last_poll_error.unwrap_or_default()
            ))
    } else if g.identity.is_some() {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready: leader\n")
    } else {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")
    }
}

fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics_text(s: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let mut extra = String::new();
    extra.push_str("# HELP maas_flow_machines Managed machines by MAAS status.\n# TYPE maas_flow_machines gauge\n");
    let by_status = s.board.count_by(|v| {
        crate::metrics::status_label(crate::maas::NodeStatus::from_code(v.status_code))
    });
    for (k, n) in &by_status {
        let _ = writeln!(
            extra,
            "maas_flow_machines{{status=\"{}\"}} {n}",
            label_value(k)
        );
    }
    let summary = s.board.summary();
    extra.push_str("# HELP maas_flow_machines_provisioning Managed machines by provisioning state (queued = waiting for a provision.max_concurrent slot).\n# TYPE maas_flow_machines_provisioning gauge\n");
    for (k, n) in &summary.provisioning {
        let _ = writeln!(
            extra,
            "maas_flow_machines_provisioning{{state=\"{}\"}} {n}",
            label_value(k)
        );
    }
    extra.push_str("# HELP maas_flow_machines_problem Managed machines held, failing or quarantined.\n# TYPE maas_flow_machines_problem gauge\n");
    let _ = writeln!(extra, "maas_flow_machines_problem {}", summary.problems);
    extra.push_str("# HELP maas_flow_machines_at_target Managed machines at their target.\n# TYPE maas_flow_machines_at_target gauge\n");
    let _ = writeln!(extra, "maas_flow_machines_at_target {}", summary.at_target);
    // The longest time any machine has been in each status: "stuck" alerts without one
    // series per machine.
    let now = std::time::SystemTime::now();
    let mut oldest: std::collections::BTreeMap<String, f64> = Default::default();
    let mut quarantined = 0usize;
    s.board.for_each(|m| {
        quarantined += usize::from(m.step.starts_with("quarantined"));
        if let Some(since) = status_since(m) {
            let age = now.duration_since(since).unwrap_or_default().as_secs_f64();
            let k = crate::metrics::status_label(crate::maas::NodeStatus::from_code(m.status_code));
            let e = oldest.entry(k).or_insert(0.0);
            *e = e.max(age);
        }
    });
    extra.push_str("# HELP maas_flow_machines_quarantined Managed machines quarantined after their recovery attempts.\n# TYPE maas_flow_machines_quarantined gauge\n");
    let _ = writeln!(extra, "maas_flow_machines_quarantined {quarantined}");
    extra.push_str("# HELP maas_flow_status_oldest_seconds The longest time a managed machine has been in each MAAS status.\n# TYPE maas_flow_status_oldest_seconds gauge\n# UNIT maas_flow_status_oldest_seconds seconds\n");
    for (k, age) in &oldest {
        let _ = writeln!(
            extra,
            "maas_flow_status_oldest_seconds{{status=\"{}\"}} {age:.3}",
            label_value(k)
        );
    }
    let g = s.board.global();
    extra.push_str("# HELP maas_flow_consecutive_poll_failures Failed lists since the last success.\n# TYPE maas_flow_consecutive_poll_failures gauge\n");
    let _ = writeln!(
        extra,
        "maas_flow_consecutive_poll_failures {}",
        g.consecutive_failures
    );
    extra.push_str("# HELP maas_flow_poll_period_seconds The configured full-list period (maas.period).\n# TYPE maas_flow_poll_period_seconds gauge\n# UNIT maas_flow_poll_period_seconds seconds\n");
    let _ = writeln!(
        extra,
        "maas_flow_poll_period_seconds {}",
        s.period.as_secs_f64()
    );
    extra.push_str("# HELP maas_flow_uptime_seconds Seconds since start.\n# TYPE maas_flow_uptime_seconds gauge\n# UNIT maas_flow_uptime_seconds seconds\n");
    let _ = writeln!(
        extra,
        "maas_flow_uptime_seconds {:.3}",
        s.started.elapsed().as_secs_f64()
    );
    let text = s.metrics.render(&extra);
    // Prometheus asks for OpenMetrics; promtool, curl and older scrapers get text 0.0.4.
    let accept = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text)
    } else {
        HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(crate::metrics::to_text_format(&text))
    }
}

/// Query of `/api/v1/machines`.
#[derive(Debug, serde::Deserialize, Default)]
pub struct ListQuery {
    /// Machines per answer (default [`Limits::default_page`], at most [`Limits::max_page`]).
    pub limit: Option<usize>,
    /// Only machines whose system_id sorts after this one (the previous page's last).
    pub after: Option<String>,
    /// Case-insensitive substring of hostname, system_id, zone, status, step or error.
    pub q: Option<String>,
    /// Only machines at this lifecycle step ([`crate::status::step_of`]) or MAAS status.
    pub step: Option<String>,
    /// Only machines with a problem.
    pub problems: Option<bool>,
}

/// An answer body that gives its memory back: it holds a response slot, is sent in
/// 64 KiB slices, and is dropped (slot freed, bytes released, connection closed) if the
/// client has not taken it all within the write timeout.
struct Outgoing {
    state: Arc<Mutex<OutgoingState>>,
    len: u64,
}

struct OutgoingState {
    chunks: VecDeque<Bytes>,
    permit: Option<OwnedSemaphorePermit>,
    expired: bool,
}

/// The client did not read its answer in time.
#[derive(Debug, thiserror::Error)]
#[error("the client did not read the answer within the write timeout")]
struct WriteTimeout;

impl Outgoing {
    fn new(body: Vec<u8>, permit: OwnedSemaphorePermit, timeout: Duration) -> Self {
        let body = Bytes::from(body);
        let len = body.len() as u64;
        let mut chunks = VecDeque::new();
        let mut at = 0;
        while at < body.len() {
            let end = (at + 64 * 1024).min(body.len());
            chunks.push_back(body.slice(at..end));
            at = end;
        }
        let state = Arc::new(Mutex::new(OutgoingState {
            chunks,
            permit: Some(permit),
            expired: false,
        }));
        let timer = Arc::downgrade(&state);
        actix_rt::spawn(async move {
            actix_rt::time::sleep(timeout).await;
            if let Some(state) = timer.upgrade() {
                let mut st = state.lock();
                if st.permit.is_some() {
                    st.expired = true;
                    st.chunks.clear();
                    st.permit = None;
                }
            }
        });
        Outgoing { state, len }
    }
}

impl MessageBody for Outgoing {
    type Error = WriteTimeout;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let mut st = self.state.lock();
        if st.expired {
            return Poll::Ready(Some(Err(WriteTimeout)));
        }
        match st.chunks.pop_front() {
            Some(c) => Poll::Ready(Some(Ok(c))),
            None => {
                st.permit = None;
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        st.chunks.clear();
        st.permit = None;
    }
}

fn busy() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header(("Retry-After", "1"))
        .json(serde_json::json!({"error": "too many answers being written; retry"}))
}

/// `GET /api/v1/machines`: one page, as a JSON array in system_id order. `Link: <...>;
/// rel="next"` names the next page; `X-Total-Count` counts every match.
async fn machines(s: web::Data<Shared>, q: web::Query<ListQuery>) -> HttpResponse {
    let Ok(permit) = s.responses.clone().try_acquire_owned() else {
        return busy();
    };
    let limit = q
        .limit
        .unwrap_or(s.limits.default_page)
        .clamp(1, s.limits.max_page.max(1));
    let needle = q.q.as_deref().unwrap_or("").trim().to_lowercase();
    let step = q.step.as_deref().filter(|v| !v.is_empty());
    let problems = q.problems.unwrap_or(false);
    let page = s.board.page(q.after.as_deref(), limit, |v| {
        (!problems || v.problem)
            && step.is_none_or(|st| crate::status::step_of(v) == st || v.status == st)
            && crate::status::matches_search(v, &needle)
    });
    let body = match serde_json::to_vec(&page.machines) {
        Ok(b) => b,
        Err(e) => {
            return HttpResponse::InternalServerError()
                .json(serde_json::json!({"error": e.to_string()}))
        }
    };
    drop(page.machines);
    let mut r = HttpResponse::Ok();
    r.content_type("application/json")
        .insert_header(("X-Total-Count", page.total.to_string()));
    if let Some(next) = &page.next_after {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        url.append_pair("limit", &limit.to_string());
        url.append_pair("after", next);
        if !needle.is_empty() {
            url.append_pair("q", &needle);
        }
        if let Some(st) = step {
            url.append_pair("step", st);
        }
        if problems {
            url.append_pair("problems", "true");
        }
        r.insert_header((
            "Link",
            format!("</api/v1/machines?{}>; rel=\"next\"", url.finish()),
        ));
    }
    r.body(Outgoing::new(body, permit, s.limits.write_timeout))
}

async fn machine(s: web::Data<Shared>, id: web::Path<String>) -> HttpResponse {
    match s.board.get(&id) {
        Some(m) => HttpResponse::Ok().json(m),
        None => HttpResponse::NotFound()
            .json(serde_json::json!({"error": format!("no managed machine {id}")})),
    }
}

/// `GET /api/v1/status`: the poller's view, plus `summary` (counts) and `info` (what
/// this controller is set to do).
async fn global(s: web::Data<Shared>) -> HttpResponse {
    let mut v = serde_json::to_value(s.board.global()).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "summary".into(),
            serde_json::to_value(s.board.summary()).unwrap_or_default(),
        );
        o.insert(
            "info".into(),
            serde_json::to_value(s.board.info()).unwrap_or_default(),
        );
    }
    HttpResponse::Ok().json(v)
}

async fn dashboard(s: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(crate::dashboard::render(&s.board))
}
