//! The simulator's HTTP face: MAAS API 2.0 and 1.0 routing, OAuth checking, fault
//! injection. The `/_sim/` inspection endpoints are [`super::inspect`]'s, routed beside
//! this handler so that it depends on this layer and not the other way round.
//!
//! Routing is by hand on the path, like MAAS's own dispatcher: every route ends in `/`
//! (no redirect: a missing slash is `404 Unknown API endpoint`), `op` is read from the
//! query, then the form, then an `/op-<name>` suffix, and an unknown method/op pair is
//! `400 Unrecognised signature`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::provisioner::ProvisionerState;
use super::render::{
    domain_json, interface_json, machine_v2, node_v1, pool_json, stable_id, zone_json,
};
use super::world::{Event, Refusal, Reply, World};
use crate::maas::auth::parse_oauth_header;
use crate::maas::{ApiKey, NodeStatus};

/// Faults injected into API answers, each a probability per request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// 500 Internal Server Error.
    pub error_rate: f64,
    /// 503 with `Retry-After: retry_after_secs`.
    pub unavailable_rate: f64,
    /// 503 without `Retry-After` (MAAS's PowerProblem and friends).
    pub unavailable_no_hint_rate: f64,
    /// 409 with `Retry-After` (a database conflict after MAAS's own retries).
    pub conflict_retry_rate: f64,
    /// The `Retry-After` seconds of the 409 and 503 faults (at least 1).
    pub retry_after_secs: u64,
    /// Headers sent, then the connection is cut.
    pub drop_rate: f64,
    /// Answer after `slow_ms`.
    pub slow_rate: f64,
    /// The delay of a slow answer, in milliseconds.
    pub slow_ms: u64,
    /// Machine lists cut in half.
    pub truncate_list_rate: f64,
    /// Machine lists replaced by non-JSON.
    pub garbage_list_rate: f64,
    /// `events/` answers 500.
    pub events_error_rate: f64,
    /// `events/` answers non-JSON.
    pub events_garbage_rate: f64,
    /// `events/` answers with an event older than `after` (the log went back).
    pub events_gap_rate: f64,
    /// `deploy` answers 400 `Failed to render preseed: ...`, as a region with a broken
    /// curtin preseed does (a field error no re-read fixes).
    pub preseed_error_rate: f64,
    /// Only fault these paths' kinds: "all" (default), "list", "ops", "events",
    /// "list_allocated" (API 1.0's `nodes/?op=list_allocated` alone).
    pub scope: Option<String>,
    /// The next full machine list (not a read by `id=`) answers `[]`, once.
    pub empty_list_once: bool,
    /// The next full machine list answers only its first N machines, once (0 = off).
    pub short_list_once: usize,
    /// Send this `Retry-After` value verbatim instead of `retry_after_secs` (an
    /// HTTP-date, a huge number, garbage).
    pub retry_after_header: Option<String>,
    /// Operations are applied, then answered only after `slow_ms` (a client that times
    /// out first cannot know whether they were applied).
    pub late_answer_rate: f64,
    /// Operations are applied, then the connection is cut instead of answering.
    pub cut_after_apply_rate: f64,
    /// Answer mutating requests for one machine with a redirect.
    pub redirect: Option<RedirectFault>,
    /// Answer every signed request with MAAS 3.4's wrong-signature 401, which echoes the
    /// region's token secret: `Invalid signature. Expected signature base string: &<secret>`.
    pub echo_secret_401: bool,
}

/// A redirect injected for the mutating requests of one machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedirectFault {
    /// The machine whose mutating requests are redirected.
    pub system_id: String,
    /// 301, 302, 303, 307 or 308.
    pub code: u16,
    /// The `Location` header, absolute or relative to the region.
    pub location: String,
}

/// Settings of a simulated region.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The only API key the region accepts.
    pub api_key: ApiKey,
    /// The user the API key belongs to.
    pub username: String,
    /// Serve API 1.0 (MAAS 1.9); off answers 410 like every MAAS since 2.0.
    pub api1: bool,
    /// Serve `users/?op=whoami` on API 1.0. MAAS 1.9 and gomaasapi's 1.0 TestServer have
    /// no whoami (canonical/maas 1.9.5 `api/users.py`); off answers as 1.9 does, and a
    /// client learns its machines from `nodes/?op=list_allocated` instead.
    pub api1_whoami: bool,
    /// Seed of every random draw (faults, failures): runs repeat.
    pub seed: u64,
    /// The address to listen on.
    pub listen: std::net::SocketAddr,
    /// HTTP worker threads.
    pub workers: usize,
    /// Serve HTTPS with this configuration (tests of the client's TLS).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The synced boot images: a deploy of another series answers MAAS's 400.
    pub boot_images: super::images::BootImages,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key: ApiKey::parse(super::DEFAULT_API_KEY).expect("default key parses"),
            username: "maas-flow".into(),
            api1: true,
            api1_whoami: true,
            seed: 1,
            listen: "127.0.0.1:0".parse().expect("literal address"),
            workers: 2,
            tls: None,
            boot_images: super::images::BootImages::default(),
        }
    }
}

/// Everything the request handlers share.
pub struct SimState {
    /// The region's settings.
    pub cfg: SimConfig,
    /// Machines, rules and logs: the state layer.
    pub world: Mutex<World>,
    /// The faults injected now and the random source that draws them.
    pub faults: Mutex<(Faults, SmallRng)>,
    nonces: Mutex<HashSet<String>>,
    /// The simulated HTTP provisioner served beside the API.
    pub provisioner: ProvisionerState,
}

impl SimState {
    /// Shared state for a region with these settings, world and provisioner.
    pub fn new(cfg: SimConfig, world: World, provisioner: ProvisionerState) -> Self {
        let seed = cfg.seed;
        SimState {
            cfg,
            world: Mutex::new(world),
            faults: Mutex::new((Faults::default(), SmallRng::seed_from_u64(seed ^ 0x5eed))),
            nonces: Mutex::new(HashSet::new()),
            provisioner,
        }
    }
}

fn text(code: u16, body: impl Into<String>) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("text/plain; charset=utf-8")
        .body(body.into())
}

fn json_body(code: u16, body: impl Into<Bytes>) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .content_type("application/json")
        .insert_header(("X-MAAS-API-Hash", "sim"))
        .body(body.into())
}

fn unknown_endpoint(path: &str) -> HttpResponse {
    text(
        404,
        format!("Unknown API endpoint: {}.", path.trim_end_matches('/')),
    )
}

fn signature(method: &str, op: Option<&str>) -> HttpResponse {
    text(
        400,
        format!(
            "Unrecognised signature: method={method} op={}",
            op.unwrap_or("None")
        ),
    )
}

/// One parsed API request.
struct Call {
    method: String,
    /// Path below the API prefix, e.g. `machines/abc/`.
    rest: String,
    full_path: String,
    op: Option<String>,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
}

impl Call {
    /// Log the request in the op log: every mutating request, and any refused one.
    fn record(&self, w: &mut World, sid: Option<&str>, resp: &HttpResponse) {
        if self.method != "GET" || !resp.status().is_success() {
            self.log(w, sid, resp.status().as_u16());
        }
    }

    /// The one place an op-log entry is written from an API request (`http_status` 0:
    /// no error status reached the client, see [`InjectedFault::logged_status`]).
    fn log(&self, w: &mut World, sid: Option<&str>, http_status: u16) {
        let op = self.op.as_deref().unwrap_or("");
        w.record(
            &self.method,
            &self.full_path,
            op,
            sid,
            &self.form,
            http_status,
        );
    }

    /// Every value of a repeated query parameter.
    fn params(&self, k: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(p, _)| p == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .chain(self.form.iter())
            .find(|(p, _)| p == k)
            .map(|(_, v)| v.as_str())
    }
}

/// The catch-all handler.
pub async fn handle(
    req: HttpRequest,
    body: Bytes,
    state: web::Data<Arc<SimState>>,
) -> HttpResponse {
    let path = req.path().to_string();
    if path == "/provisioner" || path.starts_with("/provisioner/") {
        return state.provisioner.handle(&req, &body);
    }
    if path == "/MAAS/api/version/" {
        return text(200, "2.0");
    }
    let (v1, rest) = if let Some(r) = path.strip_prefix("/MAAS/api/2.0/") {
        (false, r.to_string())
    } else if let Some(r) = path.strip_prefix("/MAAS/api/1.0/") {
        if !state.cfg.api1 {
            return text(
                410,
                "The 1.0 API is no longer available. Please use API version 2.0.",
            );
        }
        (true, r.to_string())
    } else {
        return unknown_endpoint(&path);
    };
    let method = req.method().as_str().to_string();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let is_json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json && !body.is_empty() && method != "GET" {
        return text(500, "'dict' object has no attribute 'lists'");
    }
    let form: Vec<(String, String)> = if method == "GET" {
        Vec::new()
    } else {
        url::form_urlencoded::parse(&body).into_owned().collect()
    };
    let mut rest = rest;
    let mut op = query
        .iter()
        .chain(form.iter())
        .find(|(k, _)| k == "op")
        .map(|(_, v)| v.clone());
    if op.is_none() {
        // Since MAAS 3.3 an op may also be a path suffix: `machines/abc/op-deploy`.
        if let Some(pos) = rest.rfind("/op-") {
            let name = rest[pos + 4..].trim_end_matches('/').to_string();
            rest = format!("{}/", &rest[..pos]);
            op = Some(name);
        } else if let Some(name) = rest.strip_prefix("op-") {
            op = Some(name.trim_end_matches('/').to_string());
            rest = String::new();
        }
    }
    let call = Call {
        method,
        rest,
        full_path: path.clone(),
        op,
        query,
        form,
    };
    let anonymous = call.rest == "version/";
    if !anonymous {
        if let Err(resp) = check_auth(&req, &call, &state) {
            let resp = *resp;
            let sid = system_id_of(&call.rest);
            // Refused before anything else: logged whatever the method.
            call.log(
                &mut state.world.lock(),
                sid.as_deref(),
                resp.status().as_u16(),
            );
            return resp;
        }
    }
    if let Some(resp) = hostile_answer(&call, &state) {
        call.record(
            &mut state.world.lock(),
            hostile_sid(&call).as_deref(),
            &resp,
        );
        return resp;
    }
    if let Some((resp, code)) = inject_fault(&call, &state).await {
        if call.method != "GET" {
            let sid =
                system_id_of(&call.rest).or_else(|| call.param("system_id").map(str::to_string));
            call.log(&mut state.world.lock(), sid.as_deref(), code);
        }
        return resp;
    }
    let resp = if v1 {
        dispatch_v1(&call, &state)
    } else {
        dispatch_v2(&call, &state)
    };
    let (late, cut) = {
        let mut g = state.faults.lock();
        let (f, rng) = &mut *g;
        let op = fault_kind(&call) == "ops";
        let mut roll = |p: f64| op && p > 0.0 && rng.gen_bool(p.clamp(0.0, 1.0));
        (
            roll(f.late_answer_rate).then_some(f.slow_ms),
            roll(f.cut_after_apply_rate),
        )
    };
    if let Some(ms) = late {
        // Applied and logged already; the answer comes too late for an impatient client.
        actix_rt::time::sleep(Duration::from_millis(ms)).await;
    }
    if cut {
        // Applied and logged already; the client sees a broken connection.
        let s = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other(
                "connection cut after applying (injected)",
            ))
        });
        return HttpResponse::Ok()
            .content_type("application/json")
            .streaming(s);
    }
    if is_list(&call, v1) && resp.status() == StatusCode::OK {
        if call.params("id").is_empty() {
            if let Some(keep) = take_list_once(&state) {
                return shorten_list(resp, keep).await;
            }
        }
        return corrupt_list(resp, &state).await;
    }
    resp
}

fn hostile_sid(call: &Call) -> Option<String> {
    system_id_of(&call.rest).or_else(|| call.param("system_id").map(str::to_string))
}

/// The switched-on hostile answers that replace MAAS's own (see [`Faults`]).
fn hostile_answer(call: &Call, state: &SimState) -> Option<HttpResponse> {
    let f = state.faults.lock().0.clone();
    let kind = fault_kind(call);
    let in_scope = f.scope.as_deref().is_none_or(|s| s == "all" || s == kind);
    if f.echo_secret_401 && in_scope {
        let key = state.cfg.api_key.expose();
        let secret = key.rsplit(':').next().unwrap_or_default();
        return Some(text(
            401,
            format!(
                "Authorization Error: 'Invalid signature. Expected signature base string: &{secret}'"
            ),
        ));
    }
    if let Some(r) = f.redirect.as_ref().filter(|_| call.method != "GET") {
        if hostile_sid(call).as_deref() == Some(r.system_id.as_str()) {
            return Some(
                HttpResponse::build(StatusCode::from_u16(r.code).unwrap_or(StatusCode::FOUND))
                    .insert_header(("Location", r.location.clone()))
                    .finish(),
            );
        }
    }
    None
}

fn system_id_of(rest: &str) -> Option<String> {
    let mut parts = rest.split('/');
    match (parts.next(), parts.next()) {
        (Some("machines" | "nodes"), Some(id)) if !id.is_empty() => Some(id.to_string()),
        _ => None,
    }
}

fn is_list(call: &Call, v1: bool) -> bool {
    call.method == "GET"
        && ((v1 && call.rest == "nodes/" && call.op.as_deref() == Some("list"))
            || (!v1 && call.rest == "machines/" && call.op.is_none()))
}

/// OAuth 1.0 PLAINTEXT as MAAS checks it.
fn check_auth(req: &HttpRequest, call: &Call, state: &SimState) -> Result<(), Box<HttpResponse>> {
    const NEEDED: [&str; 6] = [
        "oauth_consumer_key",
        "oauth_token",
        "oauth_signature",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_nonce",
    ];
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let pairs = header.and_then(parse_oauth_header).unwrap_or_default();
    let get = |k: &str| pairs.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
    if NEEDED.iter().any(|k| get(k).is_none()) {
        // Without a complete OAuth set the request is anonymous.
        let list_like = matches!(call.rest.as_str(), "machines/" | "nodes/");
        return Err(Box::new(if list_like {
            signature(&call.method, call.op.as_deref())
        } else {
            text(
                401,
                "Authorization Error: Authentication credentials were not provided.",
            )
        }));
    }
    let ts: i64 = get("oauth_timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| Box::new(text(400, "Invalid timestamp: must be an integer.")))?;
    let key = &state.cfg.api_key;
    if get("oauth_consumer_key") != Some(key.consumer_key()) {
        return Err(Box::new(text(401, "Authorization Error: Invalid API key.")));
    }
    if get("oauth_token") != Some(key.token_key()) {
        return Err(Box::new(text(
            401,
            format!(
                "Authorization Error: Invalid access token: {}",
                get("oauth_token").unwrap_or("")
            ),
        )));
    }
    if get("oauth_signature_method") != Some("PLAINTEXT") {
        return Err(Box::new(text(
            401,
            "Authorization Error: Invalid signature.",
        )));
    }
    if !get("oauth_signature")
        .and_then(|s| s.strip_prefix('&'))
        .is_some_and(|s| key.secret_matches(s))
    {
        // With the right consumer and token keys, piston's OAuth check answers with the
        // signature it expected: `&` + the real token secret (the consumer secret is
        // empty). A 3.4.10 region did exactly this (maas-api.md section 7); clients
        // must never log such a body unredacted.
        let exposed = key.expose();
        let secret = exposed.rsplit(':').next().unwrap_or("");
        return Err(Box::new(text(
            401,
            format!(
                "Authorization Error: 'Invalid signature. Expected signature base string: &{secret}'"
            ),
        )));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if now - ts > 300 {
        return Err(Box::new(text(
            401,
            format!("Authorization Error: 'Expired timestamp: given {ts} and now {now} has a greater difference than threshold 300'"),
        )));
    }
    let nonce = get("oauth_nonce").unwrap_or("").to_string();
    if !state.nonces.lock().insert(nonce.clone()) {
        return Err(Box::new(
            HttpResponse::Unauthorized()
                .content_type("text/html; charset=utf-8")
                .body(format!(
                    "Authorization Error: 'Nonce already used: {nonce}'"
                )),
        ));
    }
    Ok(())
}

/// Whether this deploy meets the injected preseed failure (`Faults::preseed_error_rate`).
fn roll_preseed_error(state: &SimState) -> bool {
    let mut g = state.faults.lock();
    let (f, rng) = &mut *g;
    f.preseed_error_rate > 0.0 && rng.gen_bool(f.preseed_error_rate.clamp(0.0, 1.0))
}

fn fault_kind(call: &Call) -> &'static str {
    if call.rest.starts_with("events/") {
        "events"
    } else if call.op.as_deref() == Some("list_allocated") {
        "list_allocated"
    } else if call.method == "GET" {
        "list"
    } else {
        "ops"
    }
}

/// A fault drawn for one request (`Faults`' rates), each answered its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InjectedFault {
    /// Headers sent, then the connection is cut (`drop_rate`).
    Drop,
    /// 500 (`error_rate`, `events_error_rate`).
    ServerError,
    /// 503 with `Retry-After` (`unavailable_rate`).
    Unavailable,
    /// 503 without `Retry-After` (`unavailable_no_hint_rate`).
    UnavailableNoHint,
    /// 409 with `Retry-After` (`conflict_retry_rate`).
    ConflictRetry,
    /// `events/` answers an HTML page (`events_garbage_rate`).
    EventsGarbage,
    /// `events/` answers an event older than asked for (`events_gap_rate`).
    EventsGap,
}

impl InjectedFault {
    /// The status the op log records: 0 when no status reached the client as an
    /// error (a cut connection, or a 200 with a hostile body).
    fn logged_status(self) -> u16 {
        match self {
            InjectedFault::Drop | InjectedFault::EventsGarbage | InjectedFault::EventsGap => 0,
            InjectedFault::ServerError => 500,
            InjectedFault::Unavailable | InjectedFault::UnavailableNoHint => 503,
            InjectedFault::ConflictRetry => 409,
        }
    }

    /// The answer, with `retry` as the `Retry-After` value where it has one.
    fn response(self, retry: String) -> HttpResponse {
        match self {
            InjectedFault::Drop => {
                let s = futures_util::stream::once(async {
                    Err::<Bytes, std::io::Error>(std::io::Error::other(
                        "connection dropped (injected)",
                    ))
                });
                HttpResponse::Ok()
                    .content_type("application/json")
                    .streaming(s)
            }
            InjectedFault::EventsGarbage => {
                text(200, "<html><body>garbage (injected)</body></html>")
            }
            InjectedFault::EventsGap => json_body(
                200,
                r#"{"count":1,"events":[{"username":"unknown","node":"","hostname":"","id":0,"level":"INFO","created":"","type":"Injected","description":"log reset (injected)"}],"next_uri":"","prev_uri":""}"#,
            ),
            InjectedFault::ConflictRetry => HttpResponse::Conflict()
                .insert_header(("Retry-After", retry))
                .content_type("text/plain")
                .body("Conflict: database is locked (injected)"),
            InjectedFault::Unavailable => HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", retry))
                .content_type("text/plain")
                .body("Unable to connect to any rack controller (injected)"),
            InjectedFault::UnavailableNoHint => text(503, "Power problem (injected)"),
            InjectedFault::ServerError => text(500, "Internal server error (injected)"),
        }
    }
}

/// An injected answer and the status to log for it ([`InjectedFault::logged_status`]).
async fn inject_fault(call: &Call, state: &SimState) -> Option<(HttpResponse, u16)> {
    let kind = fault_kind(call);
    let (outcome, slow) = {
        let mut g = state.faults.lock();
        let (f, rng) = &mut *g;
        if f.scope.as_deref().is_some_and(|s| s != "all" && s != kind) {
            return None;
        }
        let mut roll = |p: f64| p > 0.0 && rng.gen_bool(p.clamp(0.0, 1.0));
        let slow = roll(f.slow_rate).then_some(f.slow_ms);
        let outcome = if roll(f.drop_rate) {
            Some(InjectedFault::Drop)
        } else if roll(f.error_rate) || (kind == "events" && roll(f.events_error_rate)) {
            Some(InjectedFault::ServerError)
        } else if roll(f.unavailable_rate) {
            Some(InjectedFault::Unavailable)
        } else if roll(f.unavailable_no_hint_rate) {
            Some(InjectedFault::UnavailableNoHint)
        } else if roll(f.conflict_retry_rate) {
            Some(InjectedFault::ConflictRetry)
        } else if kind == "events" && roll(f.events_garbage_rate) {
            Some(InjectedFault::EventsGarbage)
        } else if kind == "events" && roll(f.events_gap_rate) {
            Some(InjectedFault::EventsGap)
        } else {
            None
        };
        let retry = f
            .retry_after_header
            .clone()
            .unwrap_or_else(|| f.retry_after_secs.max(1).to_string());
        (outcome.map(|o| (o, retry)), slow)
    };
    if let Some(ms) = slow {
        actix_rt::time::sleep(Duration::from_millis(ms)).await;
    }
    let (fault, retry) = outcome?;
    Some((fault.response(retry), fault.logged_status()))
}

/// A pending "empty list once" (`Some(0)`) or "short list once" (`Some(n)`), consumed.
fn take_list_once(state: &SimState) -> Option<usize> {
    let mut g = state.faults.lock();
    let f = &mut g.0;
    if f.empty_list_once {
        f.empty_list_once = false;
        return Some(0);
    }
    if f.short_list_once > 0 {
        return Some(std::mem::take(&mut f.short_list_once));
    }
    None
}

/// The list with only its first `keep` machines, as a region that lost rows would answer.
async fn shorten_list(resp: HttpResponse, keep: usize) -> HttpResponse {
    let Ok(b) = actix_web::body::to_bytes(resp.into_body()).await else {
        return json_body(200, "[]");
    };
    match serde_json::from_slice::<Vec<serde_json::Value>>(&b) {
        Ok(mut all) => {
            all.truncate(keep);
            json_body(
                200,
                serde_json::to_string(&all).unwrap_or_else(|_| "[]".into()),
            )
        }
        Err(_) => json_body(200, "[]"),
    }
}

async fn corrupt_list(resp: HttpResponse, state: &SimState) -> HttpResponse {
    let (truncate, garbage) = {
        let mut g = state.faults.lock();
        let (f, rng) = &mut *g;
        if f.scope
            .as_deref()
            .is_some_and(|s| s != "all" && s != "list")
        {
            return resp;
        }
        let t = f.truncate_list_rate > 0.0 && rng.gen_bool(f.truncate_list_rate.clamp(0.0, 1.0));
        let g = f.garbage_list_rate > 0.0 && rng.gen_bool(f.garbage_list_rate.clamp(0.0, 1.0));
        (t, g)
    };
    if garbage {
        return json_body(200, "<!DOCTYPE html><html>Bad gateway (injected)</html>");
    }
    if !truncate {
        return resp;
    }
    match actix_web::body::to_bytes(resp.into_body()).await {
        Ok(b) => json_body(200, b.slice(..b.len() / 2)),
        Err(_) => json_body(200, "["),
    }
}

/// The HTTP answer to a [`Reply`] of the world: the one place where MAAS's answers and
/// refusals get their status codes and bodies.
fn reply(w: &mut World, r: Reply, v1: bool) -> HttpResponse {
    match r {
        Reply::Machine(i) => {
            if v1 {
                json_body(200, node_v1(&w.machines[i]).to_string())
            } else {
                json_body(
                    200,
                    Bytes::from(machine_v2(&mut w.machines[i]).as_bytes().to_vec()),
                )
            }
        }
        Reply::MachineBefore(mut m) => {
            if v1 {
                json_body(200, node_v1(&m).to_string())
            } else {
                json_body(200, machine_v2(&mut m).to_string())
            }
        }
        Reply::Interface { machine, interface } => {
            let m = &w.machines[machine];
            match m.interfaces.iter().find(|f| f.id == interface) {
                Some(f) => json_body(200, interface_json(m, f)),
                None => reply(w, Reply::Machine(machine), v1),
            }
        }
        Reply::Null => json_body(200, "null"),
        Reply::Json(s) => json_body(200, s),
        Reply::Refused(refusal) => refused(&refusal),
    }
}

/// MAAS's answer to a refusal: field errors as a JSON dict, the rest as plain text.
fn refused(refusal: &Refusal) -> HttpResponse {
    let code = refusal.http_status();
    match refusal {
        Refusal::Forbidden => text(code, ""),
        Refusal::Invalid { field, message } => json_body(
            code,
            serde_json::json!({ field.as_str(): [message] }).to_string(),
        ),
        Refusal::Conflict(msg)
        | Refusal::NotFound(msg)
        | Refusal::BadRequest(msg)
        | Refusal::ServerError(msg) => text(code, msg.clone()),
    }
}

fn whoami(state: &SimState) -> HttpResponse {
    json_body(
        200,
        serde_json::json!({
            "username": state.cfg.username, "email": format!("{}@example.com", state.cfg.username),
            "is_local": true, "is_superuser": true,
            "resource_uri": format!("/MAAS/api/2.0/users/{}/", state.cfg.username),
        })
        .to_string(),
    )
}

fn version() -> HttpResponse {
    json_body(
        200,
        serde_json::json!({
            "capabilities": ["networks-management", "static-ipaddresses", "ipv6-deployment-ubuntu",
                "devices-management", "storage-deployment-ubuntu", "network-deployment-ubuntu",
                "bridging-interface-ubuntu", "bridging-automatic-ubuntu", "authenticate-api"],
            "version": "3.4.10 (maas-sim)", "subversion": "",
        })
        .to_string(),
    )
}

fn dispatch_v2(call: &Call, state: &SimState) -> HttpResponse {
    if !call.rest.is_empty() && !call.rest.ends_with('/') {
        return unknown_endpoint(&call.full_path);
    }
    let segs: Vec<&str> = call.rest.trim_end_matches('/').split('/').collect();
    let user = state.cfg.username.as_str();
    let m = call.method.as_str();
    let op = call.op.as_deref();
    let mut w = state.world.lock();
    w.advance(Instant::now());
    match segs.as_slice() {
        ["version"] if m == "GET" => version(),
        ["users"] if m == "GET" && op == Some("whoami") => whoami(state),
        ["machines"] | ["nodes"] => {
            let resp = match (m, op) {
                ("GET", None) => list_v2(call, &mut w, None),
                ("GET", Some("list_allocated")) if segs[0] == "machines" => {
                    list_v2(call, &mut w, Some(user))
                }
                ("POST", Some("allocate")) if segs[0] == "machines" => {
                    let Some(sid) = call.param("system_id").map(str::to_string) else {
                        let resp = text(409, "No machine available.");
                        call.record(&mut w, None, &resp);
                        return resp;
                    };
                    let resp = match w.allocate(&sid, user) {
                        // MAAS adds the constraint matches to the allocated machine
                        // (`constraints_by_type`, empty when only `system_id` was
                        // given); gomaasapi's `AllocateMachine` requires the key.
                        Reply::Machine(i) => {
                            let body = machine_v2(&mut w.machines[i]);
                            let body = body.strip_suffix('}').unwrap_or(&body);
                            json_body(200, format!("{body},\"constraints_by_type\":{{}}}}"))
                        }
                        r => reply(&mut w, r, false),
                    };
                    call.record(&mut w, Some(&sid), &resp);
                    return resp;
                }
                ("POST", Some("release")) if segs[0] == "machines" => {
                    return release_many(call, &mut w, user);
                }
                _ => signature(m, op),
            };
            call.record(&mut w, None, &resp);
            resp
        }
        ["machines" | "nodes", id] => {
            let sid = id.to_string();
            let Some(i) = w.find(&sid) else {
                let resp = text(404, "No Machine matches the given query.");
                call.record(&mut w, Some(&sid), &resp);
                return resp;
            };
            let r = match (m, op) {
                ("GET", None) => Reply::Machine(i),
                ("GET", Some("query_power_state")) => Reply::Json(
                    serde_json::json!({"state": w.machines[i].power_state.as_str()}).to_string(),
                ),
                ("PUT", None) => w.update(i, &call.form),
                ("POST", Some(o))
                    if segs[0] == "machines"
                        || matches!(
                            o,
                            "power_on"
                                | "power_off"
                                | "set_workload_annotations"
                                | "set_owner_data"
                        ) =>
                {
                    match o {
                        "commission" => w.commission(i),
                        "deploy"
                            if matches!(
                                w.machines[i].status,
                                NodeStatus::Ready | NodeStatus::Allocated
                            ) && roll_preseed_error(state) =>
                        {
                            Reply::Refused(Refusal::BadRequest(
                            "Failed to render preseed: 'NoneType' object has no attribute 'get' (injected)".into(),
                        ))
                        }
                        "deploy" => w.deploy(i, user, &call.form),
                        "power_on" => w.power_on(i, user),
                        "power_off" => w.power_off(i, user),
"release" => w.release_with(i, user, &call.form),
                        "abort" => w.abort(i, user),
                        "mark_broken" => w.mark_broken(i, user),
                        "mark_fixed" => w.mark_fixed(i),
                        "set_storage_layout" => {
                            w.set_storage_layout(i, user, call.param("storage_layout"))
                        }
                        "set_workload_annotations" | "set_owner_data" => {
                            w.set_annotations(i, user, &call.form)
                        }
                        _ => {
                            let resp = signature(m, op);
                            call.record(&mut w, Some(&sid), &resp);
                            return resp;
                        }
                    }
                }
                _ => {
                    let resp = signature(m, op);
                    call.record(&mut w, Some(&sid), &resp);
                    return resp;
                }
            };
            let resp = reply(&mut w, r, false);
            call.record(&mut w, Some(&sid), &resp);
            resp
        }
        ["nodes", id, "interfaces"] if m == "GET" => {
            let Some(i) = w.find(id) else {
                return text(404, "No Node matches the given query.");
            };
            let body = machine_v2(&mut w.machines[i]);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            json_body(200, v["interface_set"].to_string())
        }
        ["nodes", id, "interfaces", iface] => {
            let sid = id.to_string();
            let Some(i) = w.find(&sid) else {
                let resp = text(404, "No Node matches the given query.");
                call.record(&mut w, Some(&sid), &resp);
                return resp;
            };
            let resp = match (m, op, iface.parse::<i64>()) {
                ("POST", Some(o @ ("link_subnet" | "unlink_subnet")), Ok(iid)) => {
                    let r = w.link_subnet(i, iid, o, &call.form);
                    reply(&mut w, r, false)
                }
                (_, _, Err(_)) => text(404, "No Interface matches the given query."),
                _ => signature(m, op),
            };
            call.record(&mut w, Some(&sid), &resp);
            resp
        }
        ["tags"] if m == "POST" && op.is_none() => {
            let r = w.create_tag(call.param("name"));
            let resp = reply(&mut w, r, false);
            call.record(&mut w, None, &resp);
            resp
        }
        ["tags", name] if m == "POST" && op == Some("update_nodes") => {
            let r = w.update_tag_nodes(name, &call.form);
            let resp = reply(&mut w, r, false);
            let sid = call.form.first().map(|(_, v)| v.clone());
            call.record(&mut w, sid.as_deref(), &resp);
            resp
        }
        ["zones"] if m == "GET" && op.is_none() => json_body(
            200,
            serde_json::Value::Array(w.zones.iter().map(|z| zone_json(z)).collect()).to_string(),
        ),
        ["zones", name] if m == "GET" && op.is_none() => match w.zones.iter().find(|z| z == name) {
            Some(z) => json_body(200, zone_json(z).to_string()),
            None => text(404, "No Zone matches the given query."),
        },
        ["domains"] if m == "GET" && op.is_none() => {
            let mut names: Vec<&str> = vec!["maas"];
            for d in w.machines.iter().map(|m| m.domain.as_str()) {
                if !names.contains(&d) {
                    names.push(d);
                }
            }
            json_body(
                200,
                serde_json::Value::Array(names.into_iter().map(domain_json).collect()).to_string(),
            )
        }
        ["resourcepools"] if m == "GET" && op.is_none() => json_body(
            200,
            serde_json::Value::Array(w.pools.iter().map(|p| pool_json(p)).collect()).to_string(),
        ),
        ["resourcepool", id] if m == "GET" && op.is_none() => {
            match w
                .pools
                .iter()
                .find(|p| id.parse() == Ok(stable_id("pool", p)))
            {
                Some(p) => json_body(200, pool_json(p).to_string()),
                None => text(404, "No ResourcePool matches the given query."),
            }
        }
        ["events"] if m == "GET" && op == Some("query") => events_query(call, &w),
        ["events"] => signature(m, op),
        _ => unknown_endpoint(&call.full_path),
    }
}

/// `POST machines/?op=release machines=A machines=B`: release several machines at once
/// (canonical/maas `api/machines.py` `MachinesHandler.release`): 400 for unknown ids,
/// 403 for machines the caller may not edit, 409 naming the ones in a state that cannot
/// be released (none is released then), else the list of released system_ids (Ready
/// ones are skipped).
fn release_many(call: &Call, w: &mut World, user: &str) -> HttpResponse {
    let mut ids: Vec<&str> = call
        .form
        .iter()
        .filter(|(k, _)| k == "machines")
        .map(|(_, v)| v.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let unknown: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|s| w.find(s).is_none())
        .collect();
    let resp = if !unknown.is_empty() {
        text(400, format!("Unknown machine(s): {}.", unknown.join(", ")))
    } else {
        let idx: Vec<usize> = ids.iter().filter_map(|s| w.find(s)).collect();
        let denied: Vec<&str> = idx
            .iter()
            .filter(|&&i| {
                let m = &w.machines[i];
                m.locked || m.owner.as_deref().is_some_and(|o| o != user)
            })
            .map(|&i| w.machines[i].system_id.as_str())
            .collect();
        use NodeStatus::*;
        let releasable = |s: NodeStatus| {
            matches!(
                s,
                Allocated
                    | Reserved
                    | Broken
                    | Deploying
                    | Deployed
                    | FailedDeployment
                    | FailedDiskErasing
                    | FailedReleasing
            )
        };
        let failed: Vec<String> = idx
            .iter()
            .map(|&i| &w.machines[i])
            .filter(|m| m.status != Ready && !releasable(m.status))
            .map(|m| format!("{} ('{}')", m.system_id, m.status.label()))
            .collect();
        if !denied.is_empty() {
            text(
                403,
                format!(
                    "You don't have the required permission to release the following machine(s): {}.",
                    denied.join(", ")
                ),
            )
        } else if !failed.is_empty() {
            text(
                409,
                format!(
                    "Machine(s) cannot be released in their current state: {}.",
                    failed.join(", ")
                ),
            )
        } else {
            let mut released = Vec::new();
            for i in idx {
                if w.machines[i].status != Ready {
                    let sid = w.machines[i].system_id.clone();
                    if matches!(w.release(i, user), Reply::Machine(_)) {
                        released.push(sid);
                    }
                }
            }
            json_body(200, serde_json::json!(released).to_string())
        }
    };
    let sid = (ids.len() == 1).then(|| ids[0].to_string());
    call.record(w, sid.as_deref(), &resp);
    resp
}

/// Constraint names `GET machines/` accepts (each also as `not_<name>`).
const LIST_FILTERS: &[&str] = &[
    "id",
    "hostname",
    "mac_address",
    "domain",
    "zone",
    "pool",
    "agent_name",
    "owner",
    "tags",
    "power_state",
    "status",
];

fn list_v2(call: &Call, w: &mut World, only_owner: Option<&str>) -> HttpResponse {
    if !call.query.iter().any(|(k, _)| k == "id") {
        if w.list_queries.len() >= super::world::LIST_QUERIES_KEPT {
            w.list_queries.pop_front();
        }
        w.list_queries.push_back(call.query.clone());
    }
    let mut filters: Vec<(&str, bool, Vec<&str>)> = Vec::new();
    for (k, v) in &call.query {
        if k == "op" {
            continue;
        }
        let (name, negate) = match k.strip_prefix("not_") {
            Some(n) => (n, true),
            None => (k.as_str(), false),
        };
        if !LIST_FILTERS.contains(&name) {
            return json_body(
                400,
                serde_json::json!({ k: ["No such constraint."] }).to_string(),
            );
        }
        if name == "zone" && !w.zones.contains(v) {
            return json_body(
                400,
                serde_json::json!({ "zone": [format!("No such zone(s): {v}.")] }).to_string(),
            );
        }
        if name == "pool" && !w.pools.contains(v) {
            return json_body(
                400,
                serde_json::json!({ "pool": [format!("No such pool(s): {v}.")] }).to_string(),
            );
        }
        if name == "status" && NodeStatus::from_api_name(v).is_none() {
            return json_body(
                400,
                serde_json::json!({ "status": [format!("Select a valid choice. {v} is not one of the available choices.")] })
                    .to_string(),
            );
        }
        match filters
            .iter_mut()
            .find(|(n, neg, _)| *n == name && *neg == negate)
        {
            Some(f) => f.2.push(v),
            None => filters.push((name, negate, vec![v])),
        }
    }
    let mut parts: Vec<Arc<str>> = Vec::new();
    for m in w.machines.iter_mut() {
        if only_owner.is_some()
            && (m.status != NodeStatus::Allocated || m.owner.as_deref() != only_owner)
        {
            continue;
        }
        let ok = filters.iter().all(|(name, negate, vals)| {
            let hit = |v: &str| match *name {
                "id" => m.system_id == v,
                "hostname" => m.hostname == v || m.fqdn() == v,
                "mac_address" => m.interfaces.iter().any(|i| i.mac.eq_ignore_ascii_case(v)),
                "domain" => m.domain == v,
                "zone" => m.zone == v,
                "pool" => m.pool == v,
                "owner" => m.owner.as_deref() == Some(v),
                "tags" => m.tags.iter().any(|t| t == v),
                "power_state" => m.power_state.as_str() == v,
                "status" => m.status.api_name() == Some(v),
                _ => false,
            };
            let any = if *name == "tags" {
                vals.iter().all(|v| hit(v))
            } else {
                vals.iter().any(|v| hit(v))
            };
            any != *negate
        });
        if ok {
            parts.push(machine_v2(m));
        }
    }
    let total: usize = parts.iter().map(|p| p.len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(total);
    out.push(b'[');
    for (n, p) in parts.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(p.as_bytes());
    }
    out.push(b']');
    json_body(200, out)
}

fn events_query(call: &Call, w: &World) -> HttpResponse {
    let after = call.param("after").map(|v| v.parse::<i64>());
    let before = call.param("before").map(|v| v.parse::<i64>());
    if after.is_some() && before.is_some() {
        return text(
            400,
            "There is undetermined behaviour when both `after` and `before` are specified.",
        );
    }
    let (Ok(after), Ok(before)) = (after.transpose(), before.transpose()) else {
        return text(400, "Invalid after/before: must be an integer.");
    };
    let limit = match call.param("limit").map(|v| v.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if n > 1000 => {
            return text(
                400,
                format!("Requested number of events {n} is greater than limit: 1000"),
            );
        }
        Some(Ok(n)) => n,
        Some(Err(_)) => return text(400, "Invalid limit: must be an integer."),
    };
    let level = call.param("level").unwrap_or("INFO");
    let Some(min) = Event::level_rank(level) else {
        return text(400, format!("Unrecognised log level: {level}"));
    };
    let ids = call.params("id");
    let hostnames = call.params("hostname");
    let zones = call.params("zone");
    let keep = |e: &&Event| {
        Event::level_rank(e.level).unwrap_or(0) >= min
            && (ids.is_empty() || ids.contains(&e.node.as_str()))
            && (hostnames.is_empty() || hostnames.contains(&e.hostname.as_str()))
            && (zones.is_empty() || zones.contains(&e.zone.as_str()))
    };
    let mut page: Vec<&Event> = match (after, before) {
        (Some(a), _) => w
            .events
            .iter()
            .filter(|e| e.id > a)
            .filter(keep)
            .take(limit)
            .collect(),
        (_, Some(b)) => w
            .events
            .iter()
            .rev()
            .filter(|e| e.id < b)
            .filter(keep)
            .take(limit)
            .collect(),
        _ => w.events.iter().rev().filter(keep).take(limit).collect(),
    };
    page.sort_by_key(|e| std::cmp::Reverse(e.id));
    let base = format!("/MAAS/api/2.0/events/?op=query&level={level}&limit={limit}");
    let next_uri = match page.first() {
        Some(e) => format!("{base}&after={}", e.id),
        None => base.clone(),
    };
    let prev_uri = match page.last() {
        Some(e) => format!("{base}&before={}", e.id),
        None => base,
    };
    json_body(
        200,
        serde_json::json!({ "count": page.len(), "events": page, "next_uri": next_uri, "prev_uri": prev_uri }).to_string(),
    )
}

fn dispatch_v1(call: &Call, state: &SimState) -> HttpResponse {
    if !call.rest.is_empty() && !call.rest.ends_with('/') {
        return unknown_endpoint(&call.full_path);
    }
    let segs: Vec<&str> = call.rest.trim_end_matches('/').split('/').collect();
    let user = state.cfg.username.as_str();
    let m = call.method.as_str();
    let op = call.op.as_deref();
    let mut w = state.world.lock();
    w.advance(Instant::now());
    match segs.as_slice() {
        ["version"] if m == "GET" => {
            json_body(200, r#"{"capabilities":[],"version":"1.9.5 (maas-sim)"}"#)
        }
        ["users"] if m == "GET" && op == Some("whoami") && state.cfg.api1_whoami => whoami(state),
        // MAAS 1.9's users handler has no whoami: its dispatcher's answer to an unknown op.
        ["users"] => signature(m, op),
        ["nodes"] => match (m, op) {
            ("GET", Some("list")) => {
                let list: Vec<serde_json::Value> = w.machines.iter().map(node_v1).collect();
                json_body(200, serde_json::Value::Array(list).to_string())
            }
            // 1.9.5 `api/nodes.py`: "nodes allocated to the user/oauth token", whatever
            // their status (the simulator has one key per user).
            ("GET", Some("list_allocated")) => {
                let list: Vec<serde_json::Value> = w
                    .machines
                    .iter()
                    .filter(|x| x.owner.as_deref() == Some(user))
                    .map(node_v1)
                    .collect();
                json_body(200, serde_json::Value::Array(list).to_string())
            }
            ("POST", Some("acquire")) => {
                let name = call.param("name").unwrap_or("").to_string();
                let found = w.machines.iter().position(|x| {
                    (name.is_empty() || x.hostname == name || x.fqdn() == name)
                        && x.status == NodeStatus::Ready
                        && x.owner.is_none()
                });
                let resp = match found {
                    Some(i) => {
                        let sid = w.machines[i].system_id.clone();
                        let r = w.allocate(&sid, user);
                        let resp = reply(&mut w, r, true);
                        call.record(&mut w, Some(&sid), &resp);
                        return resp;
                    }
                    None => text(
                        409,
                        format!("No available node matches constraints: name={name}"),
                    ),
                };
                call.record(&mut w, None, &resp);
                resp
            }
            _ => {
                let resp = signature(m, op);
                call.record(&mut w, None, &resp);
                resp
            }
        },
        ["nodes", id] => {
            let sid = id.to_string();
            let Some(i) = w.find(&sid) else {
                let resp = text(404, "Not Found");
                call.record(&mut w, Some(&sid), &resp);
                return resp;
            };
            let r = match (m, op) {
                ("GET", None) => Reply::Machine(i),
                ("PUT", None) => w.update(i, &call.form),
                ("POST", Some("commission")) => w.commission(i),
                ("POST", Some("start")) => {
                    if w.machines[i].status == NodeStatus::Allocated {
                        w.deploy(i, user, &call.form)
                    } else if w.machines[i].status == NodeStatus::Deployed {
                        w.power_on(i, user)
                    } else {
                        Reply::Refused(Refusal::Conflict(format!(
                            "Node cannot be started in its current state ('{}').",
                            w.machines[i].status.label()
                        )))
                    }
                }
                ("POST", Some("stop")) => w.power_off(i, user),
                ("POST", Some("release")) => w.release(i, user),
                ("POST", Some("abort_operation")) => w.abort(i, user),
                ("POST", Some("mark_broken")) => w.mark_broken(i, user),
                ("POST", Some("mark_fixed")) => w.mark_fixed(i),
                _ => {
                    let resp = signature(m, op);
                    call.record(&mut w, Some(&sid), &resp);
                    return resp;
                }
            };
            let resp = reply(&mut w, r, true);
            call.record(&mut w, Some(&sid), &resp);
            resp
        }
        ["nodes", id, "interfaces", iface] => {
            let sid = id.to_string();
            let Some(i) = w.find(&sid) else {
                return text(404, "Not Found");
            };
            let resp = match (m, op, iface.parse::<i64>()) {
                ("POST", Some(o @ ("link_subnet" | "unlink_subnet")), Ok(iid)) => {
                    let r = w.link_subnet(i, iid, o, &call.form);
                    reply(&mut w, r, true)
                }
                _ => signature(m, op),
            };
            call.record(&mut w, Some(&sid), &resp);
            resp
        }
        _ => unknown_endpoint(&call.full_path),
    }
}

/// A JSON answer with MAAS's headers (`/_sim/` endpoints use it too).
pub fn json_response(code: u16, body: impl Into<Bytes>) -> HttpResponse {
    json_body(code, body)
}
