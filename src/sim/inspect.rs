//! `/_sim/`: what tests and operators read from a running simulator (machines, the
//! operation log, provisioner requests) and the one place faults are switched at run
//! time. Not part of the MAAS API and never authenticated.

use std::time::Instant;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::server::{json_response, Faults, SimState};

/// The `/_sim/...` handler (mounted by [`super::Sim::start`] beside the API handler).
pub async fn route(req: HttpRequest, body: Bytes, state: web::Data<Arc<SimState>>) -> HttpResponse {
    let rest = req.path().strip_prefix("/_sim/").unwrap_or("");
    handle(&req, rest, &body, &state)
}

/// One inspection request: `rest` is the path below `/_sim/`.
pub fn handle(req: &HttpRequest, rest: &str, body: &Bytes, state: &SimState) -> HttpResponse {
    match (req.method().as_str(), rest.trim_end_matches('/')) {
        ("GET", "machines") => {
            let mut w = state.world.lock();
            w.advance(Instant::now());
            json_response(200, serde_json::to_string(&w.machines).unwrap_or_default())
        }
        ("GET", "ops") => {
            let w = state.world.lock();
            json_response(200, serde_json::to_string(&w.ops).unwrap_or_default())
        }
        ("GET", "provisioner") => json_response(
            200,
            serde_json::to_string(&state.provisioner.requests()).unwrap_or_default(),
        ),
        ("GET", "faults") => json_response(
            200,
            serde_json::to_string(&state.faults.lock().0).unwrap_or_default(),
        ),
        ("PUT", "faults") => match serde_json::from_slice::<Faults>(body) {
            Ok(f) => {
                state.faults.lock().0 = f;
                json_response(200, "{}")
            }
            Err(e) => json_response(400, serde_json::json!({"error": e.to_string()}).to_string()),
        },
        _ => json_response(404, r#"{"error":"unknown simulator endpoint"}"#),
    }
}
