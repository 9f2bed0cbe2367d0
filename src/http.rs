//! The read-only status listener: health, readiness, Prometheus metrics, the machine
//! API and a small self-refreshing HTML dashboard. No endpoint changes anything.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};

use crate::metrics::Metrics;
use crate::status::{Board, MachineView};

/// Not ready after this many consecutive failed lists.
const UNREADY_AFTER_FAILURES: u32 = 3;

struct Shared {
    board: Arc<Board>,
    metrics: Arc<Metrics>,
    period: Duration,
    started: Instant,
}

/// Bind and start the listener on the current actix system.
pub fn start(
    listen: &str,
    board: Arc<Board>,
    metrics: Arc<Metrics>,
    period: Duration,
) -> std::io::Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let shared = web::Data::new(Shared {
        board,
        metrics,
        period,
        started: Instant::now(),
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

async fn metrics_text(s: web::Data<Shared>) -> HttpResponse {
    let mut extra = String::new();
    extra.push_str("# HELP maas_flow_machines Managed machines by MAAS status.\n# TYPE maas_flow_machines gauge\n");
    for (k, n) in s.board.count_by(|v| v.status.clone()) {
        let _ = writeln!(
            extra,
            "maas_flow_machines{{status=\"{}\"}} {n}",
            label_value(&k)
        );
    }
    extra.push_str("# HELP maas_flow_machines_provisioning Managed machines by provisioning state.\n# TYPE maas_flow_machines_provisioning gauge\n");
    for (k, n) in s.board.count_by(|v| v.provisioning.clone()) {
        let _ = writeln!(
            extra,
            "maas_flow_machines_provisioning{{state=\"{}\"}} {n}",
            label_value(&k)
        );
    }
    extra.push_str("# HELP maas_flow_machines_problem Managed machines held, failing or quarantined.\n# TYPE maas_flow_machines_problem gauge\n");
    let problems = s.board.all().iter().filter(|m| m.problem).count();
    let _ = writeln!(extra, "maas_flow_machines_problem {problems}");
    let g = s.board.global();
    extra.push_str("# HELP maas_flow_consecutive_poll_failures Failed lists since the last success.\n# TYPE maas_flow_consecutive_poll_failures gauge\n");
    let _ = writeln!(
        extra,
        "maas_flow_consecutive_poll_failures {}",
        g.consecutive_failures
    );
    extra.push_str("# HELP maas_flow_uptime_seconds Seconds since start.\n# TYPE maas_flow_uptime_seconds gauge\n");
    let _ = writeln!(
        extra,
        "maas_flow_uptime_seconds {:.3}",
        s.started.elapsed().as_secs_f64()
    );
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(s.metrics.render(&extra))
}

async fn machines(s: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(s.board.all())
}

async fn machine(s: web::Data<Shared>, id: web::Path<String>) -> HttpResponse {
    match s.board.get(&id) {
        Some(m) => HttpResponse::Ok().json(m),
        None => HttpResponse::NotFound()
            .json(serde_json::json!({"error": format!("no managed machine {id}")})),
    }
}

async fn global(s: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(s.board.global())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn colour(m: &MachineView) -> &'static str {
    if m.problem {
        "#f8d7da"
    } else if m.settled {
        "#d4edda"
    } else if m.action_in_flight.is_some() || m.provisioning == "running" {
        "#cce5ff"
    } else {
        "#fff3cd"
    }
}

/// The dashboard: counts per state, then machines, problems first.
pub fn render_dashboard(board: &Board) -> String {
    let mut ms = board.all();
    ms.sort_by(|a, b| {
        b.problem
            .cmp(&a.problem)
            .then(a.settled.cmp(&b.settled))
            .then(a.hostname.cmp(&b.hostname))
    });
    let g = board.global();
    let mut h = String::with_capacity(4096 + ms.len() * 300);
    h.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">");
    h.push_str("<title>maas-flow</title><style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}");
    h.push_str("td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}.c{display:inline-block;margin:0 1em 1em 0;padding:4px 8px;border:1px solid #ccc}</style></head><body>");
    let _ = write!(
        h,
        "<h1>maas-flow</h1><p>user {} &middot; lists ok {} failed {} &middot; last list {} &middot; {}</p>",
        esc(g.maas_user.as_deref().unwrap_or("?")),
        g.polls_ok,
        g.polls_failed,
        esc(g.last_poll_ok.as_deref().unwrap_or("never")),
        esc(g.last_poll_error.as_deref().map(|e| format!("last error: {e}")).as_deref().unwrap_or("")),
    );
    if let Some(id) = &g.identity {
        let _ = write!(
            h,
            "<p id=\"role\">role <b>{}</b> &middot; this replica {} &middot; leader {}</p>",
            g.role.as_str(),
            esc(id),
            esc(g.leader.as_deref().unwrap_or("none")),
        );
    }
    h.push_str("<div id=\"counts\">");
    for (k, n) in board.count_by(|v| v.status.clone()) {
        let _ = write!(h, "<span class=\"c\">{}: <b>{n}</b></span>", esc(&k));
    }
    h.push_str("</div><table id=\"machines\"><thead><tr><th>hostname</th><th>system_id</th><th>zone</th><th>MAAS status</th><th>next</th><th>provisioning</th><th>in flight</th><th>attempts</th><th>last error</th></tr></thead><tbody>");
    for m in &ms {
        let _ = write!(
            h,
            "<tr style=\"background:{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            colour(m),
            esc(&m.hostname),
            esc(&m.system_id),
            esc(&m.zone),
            esc(&m.status),
            esc(&m.step),
            esc(&m.provisioning),
            esc(m.action_in_flight.as_deref().unwrap_or("")),
            m.attempts,
            esc(m.last_error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</tbody></table></body></html>");
    h
}

async fn dashboard(s: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(render_dashboard(&s.board))
}
