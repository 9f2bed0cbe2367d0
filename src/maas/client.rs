//! The MAAS HTTP client: signing, timeouts, MAAS's own retry hints, error context.
//!
//! A call returns the response bytes or a [`MaasError`] that says what was asked and
//! what came back. Only the two answers MAAS marks as retryable (503 and 409 carrying
//! `Retry-After`) are retried here; every other failure goes back to the caller, whose
//! backoff decides when to ask again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::api::{Method, Request};
use super::auth::ApiKey;
use crate::metrics::{KindLabels, Metrics};

/// What went wrong talking to MAAS.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MaasError {
    #[error("{op} {path}: no answer from MAAS: {reason}")]
    Transport {
        op: String,
        path: String,
        reason: String,
    },
    #[error("{op} {path}: timed out after {after:?}")]
    Timeout {
        op: String,
        path: String,
        after: Duration,
    },
    #[error("{op} {path}: MAAS answered {code}: {body}")]
    Status {
        op: String,
        path: String,
        code: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("{op} {path}: unusable answer: {reason}")]
    Parse {
        op: String,
        path: String,
        reason: String,
    },
    /// Not sent: this replica may not act (HA standby, or its leadership lapsed).
    #[error("{op} {path}: not sent: {source}")]
    Fenced {
        op: String,
        path: String,
        #[source]
        source: crate::ha::FenceError,
    },
}

/// How the caller should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The machine is not in the state we thought: re-read it, do not resend blindly.
    WrongState,
    /// The key was refused: nothing will work until an operator fixes it.
    Auth,
    /// The machine is gone.
    NotFound,
    /// The API (or this feature) is gone: wrong `api_version`.
    Gone,
    /// Anything that may pass: 5xx, timeouts, refused connections, garbage answers.
    Transient,
}

impl MaasError {
    pub fn class(&self) -> ErrorClass {
        match self {
            MaasError::Status { code, .. } => match code {
                409 | 400 => ErrorClass::WrongState,
                401 | 403 => ErrorClass::Auth,
                404 => ErrorClass::NotFound,
                410 => ErrorClass::Gone,
                _ => ErrorClass::Transient,
            },
            _ => ErrorClass::Transient,
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            MaasError::Status { code, .. } => *code,
            _ => 0,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            MaasError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Connection settings for one MAAS region.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Base URL ending in `/MAAS/`.
    pub base: String,
    pub version: super::ApiVersion,
    pub key: ApiKey,
    /// Timeout for reads and operations.
    pub timeout: Duration,
    /// Timeout for a full machine list (large regions take tens of seconds).
    pub list_timeout: Duration,
    /// The largest answer accepted (a 10,000-machine list is ~100 MB).
    pub max_body: usize,
    /// How many times a 503/409 carrying `Retry-After` is tried again.
    pub hinted_retries: u32,
    /// Upper bound on a `Retry-After` wait.
    pub max_retry_after: Duration,
    /// TLS settings for an https:// region (system roots plus the operator's CA file).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A MAAS API client. Cheap to clone; lives on the actor thread (awc is not `Send`).
#[derive(Clone)]
pub struct MaasClient {
    http: awc::Client,
    settings: Arc<ClientSettings>,
    metrics: Arc<Metrics>,
    /// Checked immediately before every request (HA); always open without HA.
    fence: crate::ha::Fence,
}

impl MaasClient {
    pub fn new(settings: ClientSettings, metrics: Arc<Metrics>) -> Self {
        let mut conn = awc::Connector::new().limit(256).timeout(settings.timeout);
        if let Some(cfg) = settings.tls.clone() {
            conn = conn.rustls_0_23(cfg);
        }
        let http = awc::Client::builder()
            .disable_timeout()
            .no_default_headers()
            .add_default_header((
                "User-Agent",
                concat!("maas-flow/", env!("CARGO_PKG_VERSION")),
            ))
            .connector(conn)
            .finish();
        MaasClient {
            http,
            settings: Arc::new(settings),
            metrics,
            fence: crate::ha::Fence::unfenced(),
        }
    }

    /// Send nothing unless `fence` allows it (HA leader election).
    pub fn with_fence(mut self, fence: crate::ha::Fence) -> Self {
        self.fence = fence;
        self
    }

    pub fn fence(&self) -> &crate::ha::Fence {
        &self.fence
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    pub fn api(&self) -> super::Api {
        super::Api(self.settings.version)
    }

    pub fn url(&self, req: &Request) -> String {
        format!(
            "{}{}{}",
            self.settings.base,
            self.settings.version.prefix(),
            req.path_and_query()
        )
    }

    /// Send `req`, honouring MAAS's `Retry-After` hints, and return the body of a 2xx.
    /// `kind` labels the latency and byte metrics (`list`, `read`, `op`, `events`).
    pub async fn call(&self, req: &Request, kind: &str) -> Result<Bytes, MaasError> {
        let timeout = if kind == "list" {
            self.settings.list_timeout
        } else {
            self.settings.timeout
        };
        let mut attempt = 0;
        loop {
            // HA fencing: the last moment before anything leaves for MAAS.
            self.fence.check().map_err(|source| MaasError::Fenced {
                op: req.op_name().to_string(),
                path: req.path.clone(),
                source,
            })?;
            let started = Instant::now();
            let res = self.once(req, timeout).await;
            self.metrics
                .maas_latency
                .get_or_create(&KindLabels { kind: kind.into() })
                .observe(started.elapsed().as_secs_f64());
            match &res {
                Ok(b) => {
                    self.metrics.request(req.op_name(), 200);
                    self.metrics
                        .bytes_fetched
                        .get_or_create(&KindLabels { kind: kind.into() })
                        .inc_by(b.len() as u64);
                }
                Err(e) => self.metrics.request(req.op_name(), e.code()),
            }
            match res {
                Err(e) if attempt < self.settings.hinted_retries => {
                    let hint = match &e {
                        MaasError::Status {
                            code: 503 | 409,
                            retry_after: Some(d),
                            ..
                        } => Some(*d),
                        _ => None,
                    };
                    match hint {
                        Some(d) => {
                            attempt += 1;
                            let wait = d.min(self.settings.max_retry_after);
                            tracing::debug!(error = %e, ?wait, "MAAS asked to retry later");
                            Metrics::kind(&self.metrics.retries, "maas_retry_after");
                            actix_rt::time::sleep(wait).await;
                        }
                        None => return Err(e),
                    }
                }
                other => return other,
            }
        }
    }

    async fn once(&self, req: &Request, timeout: Duration) -> Result<Bytes, MaasError> {
        let url = self.url(req);
        let op = req.op_name().to_string();
        let path = req.path.clone();
        let builder = match req.method {
            Method::Get => self.http.get(&url),
            Method::Post => self.http.post(&url),
            Method::Put => self.http.put(&url),
        }
        .insert_header(("Authorization", self.settings.key.authorization()))
        .insert_header(("Accept", "application/json"));
        let work = async {
            let mut resp = if req.method == Method::Get {
                builder.send().await
            } else {
                builder.send_form(&req.form).await
            }
            .map_err(|e| MaasError::Transport {
                op: op.clone(),
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let status = resp.status();
            let body = resp
                .body()
                .limit(self.settings.max_body)
                .await
                .map_err(|e| MaasError::Transport {
                    op: op.clone(),
                    path: path.clone(),
                    reason: format!("reading body: {e}"),
                })?;
            if status.is_success() {
                Ok(body)
            } else {
                let retry_after = resp
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Err(MaasError::Status {
                    op: op.clone(),
                    path: path.clone(),
                    code: status.as_u16(),
                    body: snippet(&body),
                    retry_after,
                })
            }
        };
        match actix_rt::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(MaasError::Timeout {
                op,
                path,
                after: timeout,
            }),
        }
    }
}

/// The first 300 characters of an error body, on one line.
pub fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s: String = s.chars().take(300).collect();
    s.replace(['\n', '\r'], " ").trim().to_string()
}
