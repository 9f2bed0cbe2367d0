//! A simulated HTTP provisioner speaking the original tool's protocol.
//!
//! `POST {url}` with `{"id","name","ip","mac"}` answers 202 and starts a job;
//! `GET {url}/{id}` answers 202 while it runs, 200 when done, 404 for an unknown id and
//! 500 with `{"status":"failed"}` when it failed; `DELETE {url}/{id}` answers 200.
//! Every request is recorded so tests can count them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How the simulated provisioner answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvisionerConfig {
    /// How long a job runs.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Probability that a job fails.
    pub fail_rate: f64,
    /// Machines whose jobs never finish.
    pub hang: HashSet<String>,
    /// Machines whose jobs always fail.
    pub fail: HashSet<String>,
    /// Answer every request with this code instead (fault injection; 0 = off).
    pub force_status: u16,
    /// Answer every request with a non-JSON body and this code (0 = off).
    pub garbage_status: u16,
    /// Machines whose every answer is sent one byte a second, then spaces forever:
    /// the status line arrives, the body never ends (a hostile or broken provisioner).
    pub drip: HashSet<String>,
}

impl Default for ProvisionerConfig {
    fn default() -> Self {
        ProvisionerConfig {
            duration: Duration::from_secs(2),
            fail_rate: 0.0,
            hang: HashSet::new(),
            fail: HashSet::new(),
            force_status: 0,
            garbage_status: 0,
            drip: HashSet::new(),
        }
    }
}

/// A request the provisioner received.
#[derive(Debug, Clone, Serialize)]
pub struct ProvisionerRequest {
    /// Milliseconds since the provisioner started.
    pub at_ms: u64,
    /// The HTTP method.
    pub method: String,
    /// The path below `/provisioner/` (empty for a job submission, the job id for a
    /// status read).
    pub id: String,
    /// The JSON body, if there was one.
    pub body: Option<serde_json::Value>,
    /// The HTTP status answered.
    pub status: u16,
}

struct Job {
    started: Instant,
    fails: bool,
    hangs: bool,
}

struct Inner {
    cfg: ProvisionerConfig,
    jobs: HashMap<String, Job>,
    log: Vec<ProvisionerRequest>,
    rng: SmallRng,
    started: Instant,
}

/// The simulated provisioner's configuration, jobs and request log.
pub struct ProvisionerState {
    inner: Mutex<Inner>,
}

impl ProvisionerState {
    /// A provisioner answering as `cfg` says, its random draws seeded by `seed`.
    pub fn new(cfg: ProvisionerConfig, seed: u64) -> Self {
        ProvisionerState {
            inner: Mutex::new(Inner {
                cfg,
                jobs: HashMap::new(),
                log: Vec::new(),
                rng: SmallRng::seed_from_u64(seed ^ 0x9e37),
                started: Instant::now(),
            }),
        }
    }

    /// Replace the configuration (jobs already started keep their outcome).
    pub fn set_config(&self, cfg: ProvisionerConfig) {
        self.inner.lock().cfg = cfg;
    }

    /// The configuration now.
    pub fn config(&self) -> ProvisionerConfig {
        self.inner.lock().cfg.clone()
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<ProvisionerRequest> {
        self.inner.lock().log.clone()
    }

    /// Answer one request under `/provisioner`.
    pub fn handle(&self, req: &HttpRequest, body: &Bytes) -> HttpResponse {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let method = req.method().as_str().to_string();
        let id = req
            .path()
            .trim_start_matches("/provisioner")
            .trim_matches('/')
            .to_string();
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let (status, out) = if inner.cfg.force_status != 0 {
            (
                inner.cfg.force_status,
                r#"{"status":"error","error":"injected"}"#.to_string(),
            )
        } else if inner.cfg.garbage_status != 0 {
            (inner.cfg.garbage_status, "<html>garbage</html>".to_string())
        } else {
            match (method.as_str(), id.is_empty()) {
                ("POST", true) => match parsed
                    .as_ref()
                    .and_then(|v| v.get("id"))
                    .and_then(|v| v.as_str())
                {
                    Some(job) => {
                        let fails = inner.cfg.fail.contains(job)
                            || (inner.cfg.fail_rate > 0.0
                                && inner.rng.gen_bool(inner.cfg.fail_rate.clamp(0.0, 1.0)));
                        let hangs = inner.cfg.hang.contains(job);
                        inner.jobs.entry(job.to_string()).or_insert(Job {
                            started: Instant::now(),
                            fails,
                            hangs,
                        });
                        (202, r#"{"status":"accepted"}"#.to_string())
                    }
                    None => (
                        400,
                        r#"{"error":"body must be JSON with an id"}"#.to_string(),
                    ),
                },
                ("GET", false) => match inner.jobs.get(&id) {
                    None => (404, r#"{"status":"unknown"}"#.to_string()),
                    Some(j) if j.hangs || j.started.elapsed() < inner.cfg.duration => {
                        (202, r#"{"status":"running"}"#.to_string())
                    }
                    Some(j) if j.fails => (
                        500,
                        r#"{"status":"failed","error":"simulated failure"}"#.to_string(),
                    ),
                    Some(_) => (200, r#"{"status":"done"}"#.to_string()),
                },
                ("DELETE", false) => {
                    inner.jobs.remove(&id);
                    (200, r#"{"status":"deleted"}"#.to_string())
                }
                _ => (405, r#"{"error":"method not allowed"}"#.to_string()),
            }
        };
        let job_id = parsed
            .as_ref()
            .and_then(|v| v.get("id"))
            .and_then(|v| v.as_str())
            .unwrap_or(&id);
        let drip = inner.cfg.drip.contains(job_id);
        let at_ms = inner.started.elapsed().as_millis() as u64;
        inner.log.push(ProvisionerRequest {
            at_ms,
            method,
            id,
            body: parsed,
            status,
        });
        let mut resp = HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::OK),
        );
        resp.content_type("application/json");
        if drip {
            return resp.streaming(dripping(out.into_bytes()));
        }
        resp.body(out)
    }
}

/// A body that never ends: `text` one byte a second, then a space a second.
fn dripping(
    text: Vec<u8>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    futures_util::stream::unfold(0usize, move |i| {
        let byte = text.get(i).copied().unwrap_or(b' ');
        async move {
            if i > 0 {
                actix_rt::time::sleep(Duration::from_secs(1)).await;
            }
            Some((Ok(Bytes::copy_from_slice(&[byte])), i + 1))
        }
    })
}
