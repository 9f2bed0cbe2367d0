//! The MAAS HTTP client: signing, timeouts, MAAS's own retry hints, error context.
//!
//! A call returns the response bytes or a [`MaasError`] that says what was asked and
//! what came back. Only the two answers MAAS marks as retryable (503 and 409 carrying
//! `Retry-After`) are retried here; every other failure goes back to the caller, whose
//! backoff decides when to ask again.
//!
//! Everything MAAS sends back is treated as untrusted: redirects are never followed (a
//! followed 307 re-sends a signed POST wherever the region points, a followed 302 turns a
//! POST into a GET that looks accepted), a `Retry-After` is capped at
//! [`ClientSettings::max_retry_after`] whatever it says, and an error body is cut,
//! escaped and stripped of our API key before it becomes part of an error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::api::{Method, Request};
use super::auth::ApiKey;
use super::escape::escape;
use super::redact::Redactor;
use super::stream::{ChunkReader, Coalesce};
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
        /// The start of the body, on one line, escaped, with our key removed.
        body: String,
        /// MAAS's hint, already capped at the client's maximum.
        retry_after: Option<Duration>,
        /// The form fields a 400 refused (`distro_series`, `hwe_kernel`, `preseed`...):
        /// a validation error that no re-read can fix.
        refused_fields: Option<String>,
    },
    /// MAAS (or something in front of it) answered 3xx. Never followed: the request may
    /// be signed and mutating, and the new location is not ours to trust.
    #[error("{op} {path}: MAAS answered {code} redirecting to `{location}`; redirects are not followed (check maas.url)")]
    Redirect {
        op: String,
        path: String,
        code: u16,
        location: String,
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
    /// MAAS's form validation refused a field of the request (a 400 naming
    /// `distro_series`, `hwe_kernel`, `network`... or `Failed to render preseed`): the
    /// same request fails again until the configuration or the machine changes.
    Validation,
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
            MaasError::Status {
                code: 400,
                refused_fields: Some(_),
                ..
            } => ErrorClass::Validation,
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
            MaasError::Status { code, .. } | MaasError::Redirect { code, .. } => *code,
            _ => 0,
        }
    }

    /// Whether a mutating request may have been applied even though no answer came
    /// back (it timed out, or the connection broke): only a fresh read can tell.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            MaasError::Timeout { .. } | MaasError::Transport { .. }
        )
    }

    /// The fields MAAS's validation refused, for a [`ErrorClass::Validation`] error.
    pub fn refused_fields(&self) -> Option<&str> {
        match self {
            MaasError::Status { refused_fields, .. } => refused_fields.as_deref(),
            _ => None,
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
    /// Upper bound on any wait MAAS asks for with `Retry-After` (the controller passes
    /// `limits.retry_cap`): a hostile or broken region cannot suspend us for decades.
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
    redactor: Redactor,
}

impl MaasClient {
    pub fn new(settings: ClientSettings, metrics: Arc<Metrics>) -> Self {
        let mut conn = awc::Connector::new().limit(256).timeout(settings.timeout);
        if let Some(cfg) = settings.tls.clone() {
            conn = conn.rustls_0_23(cfg);
        }
        let http = awc::Client::builder()
            .disable_timeout()
            .disable_redirects()
            .no_default_headers()
            .add_default_header((
                "User-Agent",
                concat!("maas-flow/", env!("CARGO_PKG_VERSION")),
            ))
            .connector(conn)
            .finish();
        MaasClient {
            http,
            redactor: Redactor::for_key(&settings.key),
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

    /// Strips our key from any text that came from MAAS (for callers keeping answers).
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
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
        self.call_with(req, kind, &Body::<fn(ChunkReader)>::Buffer)
            .await
            .map(|(answer, _)| match answer {
                Answer::Body(b) => b,
                Answer::Parsed(()) => Bytes::new(),
            })
    }

    /// Send `req` and hand a 2xx body, while it arrives, to `parse` on the blocking pool
    /// (a [`ChunkReader`] over the body's chunks): the body is never held whole, and the
    /// actor thread only moves chunks. `maas.max_body_mib` bounds the bytes read; a body
    /// cut short or over the limit reaches `parse` as a read error.
    pub async fn call_streamed<T, P>(
        &self,
        req: &Request,
        kind: &str,
        parse: P,
    ) -> Result<T, MaasError>
    where
        T: Send + 'static,
        P: Fn(ChunkReader) -> T + Clone + Send + 'static,
    {
        match self.call_with(req, kind, &Body::Stream(parse)).await? {
            (Answer::Parsed(t), _) => Ok(t),
            (Answer::Body(_), _) => Err(MaasError::Parse {
                op: req.op_name().to_string(),
                path: req.path.clone(),
                reason: "answer was not streamed".into(),
            }),
        }
    }

    async fn call_with<T, P>(
        &self,
        req: &Request,
        kind: &str,
        body: &Body<P>,
    ) -> Result<(Answer<T>, u64), MaasError>
    where
        T: Send + 'static,
        P: Fn(ChunkReader) -> T + Clone + Send + 'static,
    {
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
            let res = self.once(req, timeout, body).await;
            self.metrics
                .maas_latency
                .get_or_create(&KindLabels { kind: kind.into() })
                .observe(started.elapsed().as_secs_f64());
            match &res {
                Ok((_, bytes)) => {
                    self.metrics.request(req.op_name(), 200);
                    self.metrics
                        .bytes_fetched
                        .get_or_create(&KindLabels { kind: kind.into() })
                        .inc_by(*bytes);
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

    async fn once<T, P>(
        &self,
        req: &Request,
        timeout: Duration,
        body_mode: &Body<P>,
    ) -> Result<(Answer<T>, u64), MaasError>
    where
        T: Send + 'static,
        P: Fn(ChunkReader) -> T + Clone + Send + 'static,
    {
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
        let transport = |reason: String| MaasError::Transport {
            op: op.clone(),
            path: path.clone(),
            reason,
        };
        let work = async {
            let mut resp = if req.method == Method::Get {
                builder.send().await
            } else {
                builder.send_form(&req.form).await
            }
            .map_err(|e| transport(e.to_string()))?;
            let status = resp.status();
            if status.is_success() {
                if let Body::Stream(parse) = body_mode {
                    return self.stream(&mut resp, parse.clone(), &transport).await;
                }
            }
            let body = resp
                .body()
                .limit(self.settings.max_body)
                .await
                .map_err(|e| transport(format!("reading body: {e}")))?;
            if status.is_success() {
                let n = body.len() as u64;
                Ok((Answer::Body(body), n))
            } else if status.is_redirection() {
                let location = resp
                    .headers()
                    .get("Location")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                Err(MaasError::Redirect {
                    op: op.clone(),
                    path: path.clone(),
                    code: status.as_u16(),
                    location: self.redactor.redact(&escape(&location)),
                })
            } else {
                let retry_after = resp
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
                    .map(|d| d.min(self.settings.max_retry_after));
                let code = status.as_u16();
                Err(MaasError::Status {
                    op: op.clone(),
                    path: path.clone(),
                    code,
                    refused_fields: (code == 400).then(|| refused_fields(&body)).flatten(),
                    body: self.redactor.redact(&snippet(&body)),
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

    /// Move a 2xx body's chunks to `parse` running on the blocking pool, counting bytes
    /// against the size limit; returns what `parse` made of it and the bytes read.
    async fn stream<S, T, P>(
        &self,
        resp: &mut S,
        parse: P,
        transport: &impl Fn(String) -> MaasError,
    ) -> Result<(Answer<T>, u64), MaasError>
    where
        S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
        T: Send + 'static,
        P: FnOnce(ChunkReader) -> T + Send + 'static,
    {
        use futures_util::StreamExt;
        let (tx, reader) = ChunkReader::channel();
        let parser = actix_rt::task::spawn_blocking(move || parse(reader));
        let limit = self.settings.max_body as u64;
        let mut read = 0u64;
        let mut failed: Option<String> = None;
        let mut gather = Coalesce::default();
        while let Some(chunk) = resp.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let reason = format!("reading body: {e}");
                    let _ = tx.send(Err(std::io::Error::other(reason.clone()))).await;
                    failed = Some(reason);
                    break;
                }
            };
            read += chunk.len() as u64;
            if read > limit {
                let reason = format!("reading body: larger than the limit of {limit} bytes");
                let _ = tx.send(Err(std::io::Error::other(reason.clone()))).await;
                failed = Some(reason);
                break;
            }
            if let Some(chunk) = gather.push(chunk) {
                if tx.send(Ok(chunk)).await.is_err() {
                    // The parser stopped early (a malformed list): its error says why.
                    break;
                }
            }
        }
        if failed.is_none() {
            if let Some(rest) = gather.finish() {
                let _ = tx.send(Ok(rest)).await;
            }
        }
        drop(tx);
        let parsed = parser
            .await
            .map_err(|e| transport(format!("parsing the body: {e}")))?;
        match failed {
            Some(reason) => Err(transport(reason)),
            None => Ok((Answer::Parsed(parsed), read)),
        }
    }
}

/// What to do with a 2xx body.
enum Body<P> {
    /// Read it whole (operations, single reads, events).
    Buffer,
    /// Hand it to this parser while it arrives (machine lists).
    Stream(P),
}

enum Answer<T> {
    Body(Bytes),
    Parsed(T),
}

/// The first 300 characters of an error body, on one line, other controls escaped.
pub fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s: String = s.chars().take(300).collect();
    escape(s.replace(['\n', '\r'], " ").trim())
}

/// `Retry-After` as RFC 9110 allows it: delay-seconds or an HTTP-date. A date in the
/// past means now; a value that is neither is ignored. The caller caps the result.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time", not "no hint".
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Which fields a 400 refused: the keys of MAAS's form-error object other than
/// `__all__` (which is MAAS's "not in this state"), or `preseed` for `Failed to render
/// preseed`. `None` means the 400 is about the machine's state, not our request.
fn refused_fields(body: &[u8]) -> Option<String> {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        let fields: Vec<String> = map
            .keys()
            .filter(|k| k.as_str() != "__all__")
            .map(|k| escape(k))
            .collect();
        return (!fields.is_empty()).then(|| fields.join(","));
    }
    let text = String::from_utf8_lossy(body);
    text.contains("Failed to render preseed")
        .then(|| "preseed".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn retry_after_takes_seconds_and_dates_and_survives_huge_values() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", SystemTime::now()), None);
        assert_eq!(parse_retry_after("-1", SystemTime::now()), None);
    }

    #[test]
    fn a_400_naming_fields_is_a_validation_error_and_all_is_wrong_state() {
        let f = |b: &str| refused_fields(b.as_bytes());
        assert_eq!(
            f(r#"{"distro_series": ["'noble' is not a valid distro_series."]}"#).as_deref(),
            Some("distro_series")
        );
        assert_eq!(f(r#"{"hwe_kernel": ["x"]}"#).as_deref(), Some("hwe_kernel"));
        assert_eq!(f(r#"{"network": ["x"]}"#).as_deref(), Some("network"));
        assert_eq!(
            f("Failed to render preseed: no template").as_deref(),
            Some("preseed")
        );
        assert_eq!(f(r#"{"__all__": ["Commission is not available"]}"#), None);
        assert_eq!(f("Unrecognised signature: method=POST op=x"), None);
    }
}
