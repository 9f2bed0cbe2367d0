//! `maas-flow status [HOSTNAME|SYSTEM_ID]`: the status API, read for a person on a
//! shell. Without an argument it prints the summary and the machines with a problem;
//! with one, that machine's state, history, next step and last error. `--health` is the
//! container health check (exit 0 when `/healthz` answers 200), so the image needs no
//! curl.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::dashboard::{age_secs, is_stuck, short_age};
use crate::status::{Info, MachineView, Summary};

/// What the command was asked.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    /// Base URL of the listener, e.g. `http://127.0.0.1:9090`.
    pub base: String,
    /// A hostname or system_id; None for the summary.
    pub machine: Option<String>,
    /// Only check `/healthz`.
    pub health: bool,
}

/// Why the command could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot reach the maas-flow status listener at {url}: {reason} (is maas-flow running? give its address with --url or --listen)")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {code}: {body}")]
    Status {
        url: String,
        code: u16,
        body: String,
    },
    #[error("{url} answered something that is not the status API: {source}")]
    Parse {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no managed machine with system_id or hostname `{0}`")]
    NotFound(String),
}

/// The listener's base URL from `--url`, or else from a listen address (`0.0.0.0` and
/// `::` mean "this host": ask loopback).
pub fn base_url(url: Option<&str>, listen: &str) -> String {
    if let Some(u) = url.filter(|u| !u.is_empty()) {
        return u.trim_end_matches('/').to_string();
    }
    let addr = match listen.parse::<std::net::SocketAddr>() {
        Ok(mut a) => {
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            a.to_string()
        }
        Err(_) => listen.to_string(),
    };
    format!("http://{addr}")
}

async fn get(url: &str) -> Result<(u16, Vec<u8>), StatusError> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut r = client
        .get(url)
        .send()
        .await
        .map_err(|e| StatusError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let body = r
        .body()
        .limit(64 << 20)
        .await
        .map_err(|e| StatusError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    Ok((r.status().as_u16(), body.to_vec()))
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Result<Option<T>, StatusError> {
    let (code, body) = get(url).await?;
    if code == 404 {
        return Ok(None);
    }
    if code != 200 {
        return Err(StatusError::Status {
            url: url.to_string(),
            code,
            body: String::from_utf8_lossy(&body).chars().take(200).collect(),
        });
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|source| StatusError::Parse {
            url: url.to_string(),
            source,
        })
}

/// `/api/v1/status` as the command reads it.
#[derive(Debug, serde::Deserialize)]
struct StatusDoc {
    #[serde(default)]
    polls_ok: u64,
    #[serde(default)]
    polls_failed: u64,
    #[serde(default)]
    consecutive_failures: u32,
    last_poll_ok: Option<String>,
    last_poll_error: Option<String>,
    maas_user: Option<String>,
    role: Option<String>,
    #[serde(default)]
    summary: Summary,
    #[serde(default)]
    info: Info,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Run the command; the text to print on success.
pub async fn run(req: &StatusRequest) -> Result<String, StatusError> {
    if req.health {
        let url = format!("{}/healthz", req.base);
        let (code, body) = get(&url).await?;
        return if code == 200 {
            Ok("ok\n".into())
        } else {
            Err(StatusError::Status {
                url,
                code,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            })
        };
    }
    match &req.machine {
        None => summary(&req.base).await,
        Some(m) => machine(&req.base, m).await,
    }
}

async fn summary(base: &str) -> Result<String, StatusError> {
    let url = format!("{base}/api/v1/status");
    let st: StatusDoc = get_json(&url).await?.ok_or(StatusError::Status {
        url,
        code: 404,
        body: "no status API".into(),
    })?;
    let s = &st.summary;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "maas-flow {} ({}) · MAAS {} as {} · target {}",
        st.info.version,
        st.role.as_deref().unwrap_or("single"),
        st.info.maas_url,
        st.maas_user.as_deref().unwrap_or("?"),
        st.info.target
    );
    let _ = writeln!(o, "filter: {}", st.info.filter);
    let _ = writeln!(
        o,
        "lists: {} ok, {} failed{}; last {}",
        st.polls_ok,
        st.polls_failed,
        if st.consecutive_failures > 0 {
            format!(" ({} in a row)", st.consecutive_failures)
        } else {
            String::new()
        },
        st.last_poll_ok.as_deref().unwrap_or("never")
    );
    if let Some(e) = &st.last_poll_error {
        let _ = writeln!(o, "last list error: {e}");
    }
    let _ = writeln!(
        o,
        "machines: {} of {} at target · problems {} · in flight {} · provisioning queued {}",
        s.at_target, s.machines, s.problems, s.in_flight, s.queued
    );
    let steps: Vec<String> = s.steps.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(o, "steps: {}", steps.join(" · "));
    if s.problems > 0 {
        let url = format!("{base}/api/v1/machines?problems=true&limit=20");
        let ms: Vec<MachineView> = get_json(&url).await?.unwrap_or_default();
        let _ = writeln!(o, "\nproblems (first {} of {}):", ms.len(), s.problems);
        for m in &ms {
            let _ = writeln!(
                o,
                "  {:<24} {:<8} {:<22} {} {}",
                m.hostname,
                m.system_id,
                m.status,
                m.step,
                m.last_error
                    .as_deref()
                    .map(|e| format!("— {e}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(o, "(maas-flow status HOSTNAME for one machine's history)");
    }
    Ok(o)
}

async fn machine(base: &str, wanted: &str) -> Result<String, StatusError> {
    let by_id: Option<MachineView> =
        get_json(&format!("{base}/api/v1/machines/{}", enc(wanted))).await?;
    let m = match by_id {
        Some(m) => m,
        None => {
            let url = format!("{base}/api/v1/machines?q={}&limit=100", enc(wanted));
            let ms: Vec<MachineView> = get_json(&url).await?.unwrap_or_default();
            ms.into_iter()
                .find(|m| m.hostname == wanted)
                .ok_or_else(|| StatusError::NotFound(wanted.to_string()))?
        }
    };
    Ok(describe(&m, SystemTime::now()))
}

/// One machine, for a person: where it is, why, what happens next.
pub fn describe(m: &MachineView, now: SystemTime) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{} ({}) in zone {}", m.hostname, m.system_id, m.zone);
    let _ = writeln!(
        o,
        "MAAS status:  {} ({}), power {}, owner {}",
        m.status,
        m.status_code,
        m.power_state,
        m.owner.as_deref().unwrap_or("none")
    );
    let _ = writeln!(
        o,
        "in status:    {}{}",
        age_secs(m, now)
            .map(short_age)
            .unwrap_or_else(|| "?".into()),
        if is_stuck(m, now) {
            "  STUCK: longer than a transitional status should take"
        } else {
            ""
        }
    );
    let _ = writeln!(o, "target:       {}", m.target);
    let _ = writeln!(
        o,
        "next step:    {}{}",
        m.step,
        if m.settled {
            " (settled: nothing more to do without an operator)"
        } else {
            ""
        }
    );
    let _ = writeln!(o, "provisioning: {}", m.provisioning);
    let _ = writeln!(
        o,
        "in flight:    {}",
        m.action_in_flight.as_deref().unwrap_or("-")
    );
    let _ = writeln!(o, "attempts:     {}", m.attempts);
    let _ = writeln!(
        o,
        "next retry:   {}",
        m.next_retry.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        o,
        "last error:   {}",
        m.last_error.as_deref().unwrap_or("-")
    );
    let _ = writeln!(o, "history:");
    for (state, at) in &m.transitions {
        let _ = writeln!(o, "  {at}  {state}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_from_url_or_listen() {
        assert_eq!(base_url(Some("http://h:1/"), "x"), "http://h:1");
        assert_eq!(base_url(None, "0.0.0.0:9090"), "http://127.0.0.1:9090");
        assert_eq!(base_url(None, "[::]:9090"), "http://[::1]:9090");
        assert_eq!(base_url(None, "10.0.0.5:9091"), "http://10.0.0.5:9091");
    }
}
