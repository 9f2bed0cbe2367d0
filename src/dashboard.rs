//! The dashboard page: one self-contained HTML document (inline CSS and script, no
//! external assets), rendered with maud so every value from MAAS is escaped by
//! construction.
//!
//! The server renders the summary and the first page of machines, so the page is
//! useful at once and without script; the script (`dashboard/app.js`) then refreshes
//! both from `/api/v1/status` and `/api/v1/machines` every 5 s, in place, one page of
//! [`PAGE`] machines at a time: 10,000 machines cost one page per refresh, not a 2 MB
//! reload.

use std::time::SystemTime;

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::status::{status_since, Board, MachineView, STUCK_AFTER, TRANSITIONAL};

/// Machines per dashboard page (the script uses the same number).
pub const PAGE: usize = 200;

const STYLE: &str = include_str!("dashboard/style.css");
const SCRIPT: &str = include_str!("dashboard/app.js");

/// "1h05m", "12m03s", "7s".
pub fn short_age(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Seconds `m` has been in its current status, if known.
pub fn age_secs(m: &MachineView, now: SystemTime) -> Option<u64> {
    status_since(m).map(|t| now.duration_since(t).unwrap_or_default().as_secs())
}

/// Whether `m` has been in a transitional status, or provisioning, for too long.
pub fn is_stuck(m: &MachineView, now: SystemTime) -> bool {
    age_secs(m, now).is_some_and(|a| a > STUCK_AFTER.as_secs())
        && (TRANSITIONAL.contains(&m.status.as_str()) || m.provisioning == "running")
}

fn row_class(m: &MachineView, now: SystemTime) -> String {
    let base = if m.problem {
        "problem"
    } else if m.settled {
        "settled"
    } else if m.action_in_flight.is_some() || m.provisioning == "running" {
        "active"
    } else {
        "waiting"
    };
    if is_stuck(m, now) {
        format!("{base} stuck")
    } else {
        base.to_string()
    }
}

fn row(m: &MachineView, now: SystemTime) -> Markup {
    html! {
        tr class=(row_class(m, now)) data-id=(m.system_id) {
            td { (m.hostname) }
            td { (m.system_id) }
            td { (m.zone) }
            td { (m.status) }
            td class="age" { (age_secs(m, now).map(short_age).unwrap_or_default()) }
            td { (m.step) }
            td { (m.provisioning) }
            td { (m.action_in_flight.as_deref().unwrap_or("")) }
            td { (m.attempts) }
            td { (m.next_retry.as_deref().unwrap_or("")) }
            td class="err" { (m.last_error.as_deref().unwrap_or("")) }
            td { (m.profile.as_deref().unwrap_or("")) }
        }
    }
}

/// The whole page.
pub fn render(board: &Board) -> String {
    let g = board.global();
    let info = board.info();
    let s = board.summary();
    let now = SystemTime::now();
    let first = board.page(None, PAGE, |_| true);
    let role = g.role.as_str();
    let transitional = serde_json::to_string(TRANSITIONAL).unwrap_or_default();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "maas-flow: " (s.at_target) "/" (s.machines) " at target" }
                style { (PreEscaped(STYLE)) }
            }
            body data-stuck-after=(STUCK_AFTER.as_secs()) data-transitional=(transitional) {
                header {
                    h1 { "maas-flow" }
                    span class="badge" { "v" (info.version) }
                    span class="badge" { "role: " span id="role" { (role) } }
                    @if let Some(id) = &g.identity {
                        span class="badge" {
                            "replica " span id="identity" { (id) }
                            " · leader " span id="leader" { (g.leader.as_deref().unwrap_or("none")) }
                        }
                    }
                    div class="meta" {
                        "MAAS " b id="maas-url" { (info.maas_url) }
                        " · user " b { (g.maas_user.as_deref().unwrap_or("?")) }
                        " · target " b id="target" { (info.target) }
                        " · filter " code id="filter" { (info.filter) }
                    }
                    div class="meta" {
                        span id="lists" { "lists ok " (g.polls_ok) ", failed " (g.polls_failed) }
                        " · last list " span id="last-list" { (g.last_poll_ok.as_deref().unwrap_or("never")) }
                        " " span id="last-error" { (g.last_poll_error.as_deref().map(|e| format!("last list error: {e}")).unwrap_or_default()) }
                    }
                }
                main {
                    div id="summary" {
                        div class="big" { b id="at-target" { (s.at_target) } " of " b id="total" { (s.machines) } " at target" }
                        div class="big chip bad" id="problems-chip" title="show only machines with a problem" {
                            "problems " b id="problems" { (s.problems) }
                        }
                        div class="big" { "in flight " b id="in-flight" { (s.in_flight) } }
                        div class="big" { "provisioning queued " b id="queued" { (s.queued) } }
                        div id="steps" style="display:contents" {
                            @for (k, n) in &s.steps {
                                span class="chip" data-step=(k) { (k) " " b { (n) } }
                            }
                        }
                    }
                    div id="controls" {
                        input type="search" id="search" placeholder="search hostname, system_id, zone, status, error";
                        label { "step " select id="step" {
                            option value="" { "all" }
                            @for k in s.steps.keys() { option value=(k) { (k) } }
                        } }
                        label { input type="checkbox" id="only-problems"; " problems only" }
                        button id="prev" disabled { "◀ prev" }
                        span id="page-info" { @if first.total > 0 { "1-" (first.machines.len()) " of " (first.total) } @else { "no machines yet" } }
                        button id="next" disabled[first.next_after.is_none()] { "next ▶" }
                        span class="note" id="updated" {}
                    }
                    table id="machines" {
                        thead { tr {
                            th { "hostname" } th { "system_id" } th { "zone" } th { "MAAS status" }
                            th { "in state" } th { "next step" } th { "provisioning" } th { "in flight" }
                            th { "attempts" } th { "next retry" } th { "last error" } th { "profile" }
                        } }
                        tbody id="rows" {
                            @for m in &first.machines { (row(m, now)) }
                        }
                    }
                    p class="note" {
                        "Rows: red = problem, green = at target or settled, blue = operation under way, yellow = waiting. "
                        "An orange edge marks a machine in a transitional status or provisioning for more than "
                        (short_age(STUCK_AFTER.as_secs())) "."
                    }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    page.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_clock() {
        assert_eq!(short_age(7), "7s");
        assert_eq!(short_age(723), "12m03s");
        assert_eq!(short_age(3900), "1h05m");
    }
}
