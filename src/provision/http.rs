//! The HTTP provisioner protocol of the original tool.
//!
//! `POST {url}` with `{"id","name","ip","mac"}` must answer 202; then `GET {url}/{id}`
//! answers 202 while running, 200 when done, anything else is a failure (its body is
//! logged). `DELETE {url}/{id}` clears the job when the machine leaves Deployed.
//!
//! Deadlines: every request, body included, must finish within `request_timeout`, and
//! the whole job (POST, polls, the waits between them) within the TTL; a provisioner
//! that answers and then drips its body cannot pin a machine or hold a slot.
//!
//! Polling: a new job is asked about after `first_poll` (1 s by default), then at
//! twice the previous wait, up to `poll_interval`, so short jobs are seen done within
//! about a second and long ones cost few requests.
//!
//! Connections: a new connection per request (no keep-alive pool). With a pool, a
//! request sent on an idle connection at the moment the provisioner closes it (its
//! keep-alive timer, a request cap) is never read: awc sees the connection end before
//! any answer and fails with "connector has been disconnected", and the request never
//! reaches the provisioner. Jobs poll seconds apart, about a typical server keep-alive,
//! so under load this happened in bursts. A provisioner request costs one connection;
//! at `max_concurrent` jobs of a few requests each, that is nothing.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Job, ProvisionError};
use crate::maas::client::snippet;

/// Largest provisioner answer read (bodies are only logged).
const MAX_BODY: usize = 64 * 1024;

pub struct HttpProvisioner {
    /// `POST` target; jobs live at `{url}/{system_id}`.
    pub url: String,
    /// The longest wait between two polls of one job.
    pub poll_interval: Duration,
    /// The first wait after the POST; doubles up to `poll_interval`.
    pub first_poll: Duration,
    /// Bound on one whole job.
    pub ttl: Duration,
    /// Bound on one request, answer body included.
    pub request_timeout: Duration,
    pub http: awc::Client,
    /// Counts failed polls (`maas_flow_retries_total{kind="provisioner_poll"}`).
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// The method of a provisioner request (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Post,
    Get,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Post => "POST",
            Verb::Get => "GET",
            Verb::Delete => "DELETE",
        }
    }
}

impl HttpProvisioner {
    pub fn new(
        url: String,
        poll_interval: Duration,
        first_poll: Duration,
        ttl: Duration,
        request_timeout: Duration,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        let mut conn = awc::Connector::new()
            .timeout(request_timeout)
            .conn_keep_alive(Duration::ZERO)
            .limit(0);
        if let Some(cfg) = tls {
            conn = conn.rustls_0_23(cfg);
        }
        let http = awc::Client::builder()
            .connector(conn)
            .timeout(request_timeout)
            .add_default_header((
                "User-Agent",
                concat!("maas-flow/", env!("CARGO_PKG_VERSION")),
            ))
            .finish();
        HttpProvisioner {
            url: url.trim_end_matches('/').to_string(),
            poll_interval,
            first_poll: first_poll.min(poll_interval),
            ttl,
            request_timeout,
            http,
            metrics,
        }
    }

    fn err(&self, reason: impl Into<String>) -> ProvisionError {
        ProvisionError::Http {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    /// One request, answer body included, bounded by `request_timeout`.
    async fn request(
        &self,
        verb: Verb,
        url: &str,
        job: Option<&Job>,
    ) -> Result<(u16, Bytes), String> {
        let work = async {
            let mut resp = match (verb, job) {
                (Verb::Post, Some(j)) => self.http.post(url).send_json(j).await,
                (Verb::Post, None) => self.http.post(url).send().await,
                (Verb::Get, _) => self.http.get(url).send().await,
                (Verb::Delete, _) => self.http.delete(url).send().await,
            }
            .map_err(|e| format!("{}: {e}", verb.as_str()))?;
            let body = resp
                .body()
                .limit(MAX_BODY)
                .await
                .map_err(|e| format!("{}: reading the answer: {e}", verb.as_str()))?;
            Ok((resp.status().as_u16(), body))
        };
        match actix_rt::time::timeout(self.request_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{}: no complete answer within {:?}",
                verb.as_str(),
                self.request_timeout
            )),
        }
    }

    /// Run one job to its verdict; the TTL bounds all of it.
    pub async fn run(&self, job: &Job) -> Result<(), ProvisionError> {
        match actix_rt::time::timeout(self.ttl, self.run_job(job)).await {
            Ok(r) => r,
            Err(_) => {
                self.clear(&job.system_id).await;
                Err(ProvisionError::Ttl(self.ttl))
            }
        }
    }

    async fn run_job(&self, job: &Job) -> Result<(), ProvisionError> {
        let (code, body) = self
            .request(Verb::Post, &self.url, Some(job))
            .await
            .map_err(|e| self.err(e))?;
        if code != 202 {
            return Err(self.err(format!(
                "POST answered {code} (want 202): {}",
                snippet(&body)
            )));
        }
        let job_url = format!("{}/{}", self.url, job.system_id);
        let mut wait = self.first_poll;
        let started = Instant::now();
        loop {
            actix_rt::time::sleep(wait).await;
            wait = wait.saturating_mul(2).min(self.poll_interval);
            let (code, body) = match self.request(Verb::Get, &job_url, None).await {
                Ok(r) => r,
                Err(e) => {
                    crate::metrics::Metrics::kind(&self.metrics.retries, "provisioner_poll");
                    // A blip while polling is not a verdict; the TTL bounds it.
                    tracing::warn!(system_id = %job.system_id, error = %e, running_for = ?started.elapsed(), "provisioner poll failed; will poll again");
                    continue;
                }
            };
            match code {
                202 => continue,
                200 => return Ok(()),
                code => {
                    return Err(
                        self.err(format!("GET {job_url} answered {code}: {}", snippet(&body)))
                    );
                }
            }
        }
    }

    pub async fn clear(&self, system_id: &str) {
        let url = format!("{}/{}", self.url, system_id);
        match self.request(Verb::Delete, &url, None).await {
            Ok((code, _)) if (200..300).contains(&code) || code == 404 => {}
            Ok((code, _)) => tracing::warn!(system_id, code, "provisioner DELETE refused"),
            Err(e) => tracing::warn!(system_id, error = %e, "provisioner DELETE failed"),
        }
    }
}
