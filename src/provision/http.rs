//! The HTTP provisioner protocol of the original tool.
//!
//! `POST {url}` with `{"id","name","ip","mac"}` must answer 202; then `GET {url}/{id}`
//! answers 202 while running, 200 when done, anything else is a failure (its body is
//! logged). `DELETE {url}/{id}` clears the job when the machine leaves Deployed.

use std::time::{Duration, Instant};

use super::{Job, ProvisionError};
use crate::maas::client::snippet;

pub struct HttpProvisioner {
    pub url: String,
    pub poll_interval: Duration,
    pub ttl: Duration,
    pub request_timeout: Duration,
    pub http: awc::Client,
}

impl HttpProvisioner {
    pub fn new(
        url: String,
        poll_interval: Duration,
        ttl: Duration,
        request_timeout: Duration,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Self {
        let mut conn = awc::Connector::new().timeout(request_timeout);
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
            ttl,
            request_timeout,
            http,
        }
    }

    fn err(&self, reason: impl Into<String>) -> ProvisionError {
        ProvisionError::Http {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    pub async fn run(&self, job: &Job) -> Result<(), ProvisionError> {
        let started = Instant::now();
        let mut resp = self
            .http
            .post(&self.url)
            .send_json(job)
            .await
            .map_err(|e| self.err(format!("POST: {e}")))?;
        let body = resp.body().limit(64 * 1024).await.unwrap_or_default();
        if resp.status().as_u16() != 202 {
            return Err(self.err(format!(
                "POST answered {} (want 202): {}",
                resp.status().as_u16(),
                snippet(&body)
            )));
        }
        let job_url = format!("{}/{}", self.url, job.system_id);
        loop {
            let left = self.ttl.saturating_sub(started.elapsed());
            if left.is_zero() {
                self.clear(&job.system_id).await;
                return Err(ProvisionError::Ttl(self.ttl));
            }
            actix_rt::time::sleep(self.poll_interval.min(left)).await;
            if started.elapsed() >= self.ttl {
                self.clear(&job.system_id).await;
                return Err(ProvisionError::Ttl(self.ttl));
            }
            let mut resp = match self.http.get(&job_url).send().await {
                Ok(r) => r,
                Err(e) => {
                    // A blip while polling is not a verdict; the TTL bounds it.
                    tracing::warn!(system_id = %job.system_id, error = %e, "provisioner poll failed; will poll again");
                    continue;
                }
            };
            let body = resp.body().limit(64 * 1024).await.unwrap_or_default();
            match resp.status().as_u16() {
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
        match self.http.delete(&url).send().await {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => {}
            Ok(r) => tracing::warn!(
                system_id,
                code = r.status().as_u16(),
                "provisioner DELETE refused"
            ),
            Err(e) => tracing::warn!(system_id, error = %e, "provisioner DELETE failed"),
        }
    }
}
