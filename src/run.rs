//! Assembling a running controller from a validated [`Config`]: status listener,
//! MAAS client, identity, provisioner, and the three kinds of actor.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use crate::actors::poller::{SetZones, NOT_FOUND_HINT};
use crate::actors::supervisor::SetFilter;
use crate::actors::watchdog::{self, PollerSpec};
use crate::actors::{Deps, PollerHandle, PowerHelper, ProvisionDeps, Supervisor};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::ha::Fence;
use crate::maas::{ApiVersion, ClientSettings, Identity, MaasClient};
use crate::metrics::Metrics;
use crate::profile::ProvisionTarget;
use crate::provision::http::HttpProvisioner;
use crate::provision::script::ScriptProvisioner;
use crate::provision::store::FileStore;
use crate::provision::Provisioner;
use crate::status::Board;

/// A running controller.
pub struct Controller {
    /// The current poller (the watchdog replaces it if it stops).
    pub poller: PollerHandle,
    pub supervisor: Addr<Supervisor>,
    pub board: Arc<Board>,
    pub metrics: Arc<Metrics>,
    /// Where the status listener is bound, if enabled.
    pub http_addr: Option<SocketAddr>,
    /// MAAS operations in flight at once (`limits.max_ops_in_flight`), resizable.
    pub op_permits: Arc<Semaphore>,
    /// Provisioning runs at once (`provision.max_concurrent`), resizable.
    pub provision_permits: Option<Arc<Semaphore>>,
    http: Option<actix_web::dev::ServerHandle>,
}

impl Controller {
    /// Apply a reloaded configuration (SIGHUP): the filter, and the zones MAAS filters
    /// for us, take effect at once (a list is started), and so do the concurrency
    /// limits `limits.max_ops_in_flight` and `provision.max_concurrent`. Everything else
    /// needs a restart; returns the sections that changed and were not applied.
    pub fn reload(&self, old: &Config, new: &Config) -> Vec<&'static str> {
        resize(
            &self.op_permits,
            old.settings.limits.max_ops_in_flight,
            new.settings.limits.max_ops_in_flight,
        );
        if let Some(p) = &self.provision_permits {
            resize(
                p,
                old.settings.provision.max_concurrent,
                new.settings.provision.max_concurrent,
            );
        }
        self.supervisor
            .do_send(SetFilter(Arc::new(new.filter.clone())));
        let zones = match new.api_version {
            ApiVersion::V2 => new.filter.server_side_zones(),
            ApiVersion::V1 => None,
        }
        .unwrap_or_default();
        self.poller.set_zones(zones.clone());
        self.poller.do_send(SetZones(zones));
        restart_only_changes(old, new)
    }

    pub async fn stop_http(&self) {
        if let Some(h) = &self.http {
            h.stop(true).await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot open the provisioning journal: {0}")]
    Journal(#[source] crate::provision::store::JournalError),
    #[error("cannot learn our MAAS username: {0}")]
    Identity(String),
}

/// Grow a semaphore at once, or shrink it as permits come back (work in flight is never
/// interrupted; new work waits until fewer than `to` run).
fn resize(sem: &Arc<Semaphore>, from: usize, to: usize) {
    if to > from {
        sem.add_permits(to - from);
    } else if to < from {
        let sem = sem.clone();
        let k = u32::try_from(from - to).unwrap_or(u32::MAX);
        actix_rt::spawn(async move {
            if let Ok(p) = sem.acquire_many_owned(k).await {
                p.forget();
            }
        });
    }
}

/// Sections of the settings a reload does not apply and that changed.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let o = &old.settings;
    // What a reload applies is not a change that needs a restart.
    let mut n = new.settings.clone();
    n.limits.max_ops_in_flight = o.limits.max_ops_in_flight;
    n.provision.max_concurrent = o.provision.max_concurrent;
    let n = &n;
    fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
        matches!((serde_json::to_value(a), serde_json::to_value(b)), (Ok(a), Ok(b)) if a == b)
    }
    let mut changed = Vec::new();
    let sections: [(&'static str, bool); 10] = [
        ("maas", same(&o.maas, &n.maas) && old.api_key == new.api_key),
        ("lifecycle", same(&o.lifecycle, &n.lifecycle)),
        ("provision", same(&o.provision, &n.provision)),
        ("recovery", same(&o.recovery, &n.recovery)),
        ("limits", same(&o.limits, &n.limits)),
        ("events", same(&o.events, &n.events)),
        ("http", same(&o.http, &n.http)),
        ("log", same(&o.log, &n.log)),
        ("tls", same(&o.tls, &n.tls)),
        (
            "preview/shutdown_grace",
            o.preview == n.preview && o.shutdown_grace == n.shutdown_grace,
        ),
    ];
    for (name, unchanged) in sections {
        if !unchanged {
            changed.push(name);
        }
    }
    changed
}

/// TLS settings shared by the MAAS client and the HTTP provisioner.
fn tls_for(cfg: &Config) -> Option<Arc<rustls::ClientConfig>> {
    let ca = cfg
        .settings
        .tls
        .ca_file
        .as_deref()
        .filter(|c| !c.is_empty());
    match crate::tls::client_config(ca) {
        Ok(c) => Some(c),
        Err(e) => {
            // Validated at start-up; only a file changed since then gets here.
            error!(error = %e, "TLS setup failed; https:// requests will fail");
            None
        }
    }
}

pub fn client_for(cfg: &Config, metrics: Arc<Metrics>) -> MaasClient {
    let s = &cfg.settings.maas;
    MaasClient::new(
        ClientSettings {
            base: cfg.maas_base.clone(),
            version: cfg.api_version,
            key: cfg.api_key.clone(),
            timeout: s.request_timeout,
            list_timeout: s.list_timeout,
            max_body: (s.max_body_mib as usize).saturating_mul(1024 * 1024),
            hinted_retries: 3,
            // MAAS itself asks for 5 or 10 s; anything beyond a minute is not a hint
            // worth stalling a list or an operation for.
            max_retry_after: cfg.settings.limits.retry_cap.min(Duration::from_secs(60)),
            tls: tls_for(cfg),
        },
        metrics,
    )
}

/// A failed identity read counts like a failed list: `/api/v1/status`, the
/// consecutive-failure gauge and `polls_total{kind="failed"}` show a controller that
/// cannot start, so an alert fires.
fn count_failure(board: &Board, metrics: &Metrics, error: String) {
    crate::metrics::Metrics::kind(&metrics.polls, "failed");
    board.with_global(|g| {
        g.polls_failed += 1;
        g.consecutive_failures += 1;
        g.last_poll_error = Some(error);
    });
}

/// Ask MAAS who we are, retrying with backoff while MAAS is unreachable. On API 1.0 a
/// server without whoami (MAAS 1.9, gomaasapi's TestServer) is not an error: our
/// machines are then the ones `nodes/?op=list_allocated` names, read every period.
async fn whoami(
    client: &MaasClient,
    period: Duration,
    board: &Board,
    metrics: &Metrics,
) -> Result<Identity, StartError> {
    #[derive(serde::Deserialize)]
    struct Me {
        username: String,
    }
    let mut backoff = Backoff::new(
        Duration::from_millis(500),
        period.max(Duration::from_secs(1)),
    );
    loop {
        let req = client.api().whoami();
        match client.call(&req, "read").await {
            Ok(body) => match serde_json::from_slice::<Me>(&body) {
                Ok(me) => return Ok(Identity::Username(me.username)),
                Err(e) => {
                    warn!(error = %e, "users/?op=whoami gave an unexpected answer; retrying");
                    count_failure(board, metrics, format!("users/?op=whoami: {e}"));
                }
            },
            Err(e) => {
                match e.code() {
                    410 => {
                        return Err(StartError::Identity(format!(
                            "{e}: this MAAS does not serve API {}",
                            client.settings().version
                        )))
                    }
                    400 | 404 if client.settings().version == ApiVersion::V1 => {
                        info!(answer = %e, "this MAAS has no users/?op=whoami (MAAS 1.9): our machines are those nodes/?op=list_allocated names, read every period; maas.username overrides");
                        return Ok(Identity::AllocatedToKey);
                    }
                    401 | 403 => {
                        error!(error = %e, "MAAS refused the API key; fix maas.api_key or the key file (retrying)")
                    }
                    404 => error!(error = %e, "{NOT_FOUND_HINT} (retrying)"),
                    _ => warn!(error = %e, "MAAS is not answering yet; retrying"),
                }
                let shown = if e.code() == 404 {
                    format!("{NOT_FOUND_HINT} ({e})")
                } else {
                    e.to_string()
                };
                count_failure(board, metrics, shown);
            }
        }
        actix_rt::time::sleep(backoff.next_delay()).await;
    }
}

/// Start everything. Must run inside an actix system.
pub async fn start(cfg: &Config) -> Result<Controller, StartError> {
    let metrics = Arc::new(Metrics::new());
    let board = Arc::new(Board::default());
    // A single replica is always the leader.
    metrics.ha.leader.set(1);
    let (http_addr, http) = listen(cfg, board.clone(), metrics.clone())?;
    let Actors {
        poller,
        supervisor,
        op_permits,
        provision_permits,
    } = start_actors(cfg, board.clone(), metrics.clone(), Fence::unfenced()).await?;
    Ok(Controller {
        poller,
        supervisor,
        board,
        metrics,
        http_addr,
        http,
        op_permits,
        provision_permits,
    })
}

/// Describe this controller on the board and start the status listener (`http.listen`;
/// none when empty).
pub fn listen(
    cfg: &Config,
    board: Arc<Board>,
    metrics: Arc<Metrics>,
) -> Result<(Option<SocketAddr>, Option<actix_web::dev::ServerHandle>), StartError> {
    let s = &cfg.settings;
    board.set_info(crate::status::Info {
        version: env!("CARGO_PKG_VERSION").to_string(),
        maas_url: crate::status::masked_url(&cfg.maas_base),
        target: format!("{:?}", cfg.target).to_ascii_lowercase(),
        filter: serde_json::to_string(cfg.filter.spec()).unwrap_or_default(),
        period_seconds: s.maas.period.as_secs_f64(),
    });
    if s.http.listen.is_empty() {
        return Ok((None, None));
    }
    let (addr, handle) = crate::http::start(&s.http.listen, board, metrics, s.maas.period)
        .map_err(|source| StartError::Listen {
            addr: s.http.listen.clone(),
            source,
        })?;
    info!(%addr, "status listener up: /healthz /readyz /metrics /api/v1/machines /");
    Ok((Some(addr), Some(handle)))
}

/// The actors that act on MAAS: started on every win of the election (or once without HA).
pub struct Actors {
    /// The current poller (its watchdog replaces it if it stops; call
    /// [`PollerHandle::stop_watching`] before stopping it on purpose).
    pub poller: PollerHandle,
    pub supervisor: Addr<Supervisor>,
    /// MAAS operations in flight at once (`limits.max_ops_in_flight`), resizable.
    pub op_permits: Arc<Semaphore>,
    /// Provisioning runs at once (`provision.max_concurrent`), resizable.
    pub provision_permits: Option<Arc<Semaphore>>,
}

/// Learn who we are in MAAS and start the poller, supervisor and node actors, as a
/// fresh start: every MAAS request and provisioning start passes `fence` first.
pub async fn start_actors(
    cfg: &Config,
    board: Arc<Board>,
    metrics: Arc<Metrics>,
    fence: Fence,
) -> Result<Actors, StartError> {
    let s = &cfg.settings;
    let client = client_for(cfg, metrics.clone()).with_fence(fence);
    let identity = match s.maas.username.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => Identity::Username(u.to_string()),
        None => whoami(&client, s.maas.period, &board, &metrics).await?,
    };
    let me = identity.policy_name().to_string();
    info!(user = %crate::maas::Escaped(&me), "acting as MAAS user");
    board.with_global(|g| g.maas_user = Some(me.clone()));
    let policy = cfg.policy(&me);
    let store = match &cfg.journal {
        Some(path) if cfg.profiles.any_provisioning() => Some(Arc::new(
            FileStore::open(path, &cfg.maas_base).map_err(StartError::Journal)?,
        )),
        _ => None,
    };
    let scrub = crate::child::Scrub::for_key(&cfg.api_key);
    let make = |kind: &ProvisionTarget| match kind {
        ProvisionTarget::None => None,
        ProvisionTarget::Script(path) => Some(Provisioner::Script(ScriptProvisioner {
            path: path.clone(),
            ttl: s.provision.ttl,
            output_limit: s.provision.output_limit,
            scrub: scrub.clone(),
        })),
        ProvisionTarget::Http(url) => Some(Provisioner::Http(HttpProvisioner::new(
            url.clone(),
            s.provision.poll_interval.unwrap_or(s.maas.period),
            s.provision.first_poll,
            s.provision.ttl,
            s.maas.request_timeout,
            tls_for(cfg),
            metrics.clone(),
        ))),
    };
    let provisioner = make(&cfg.profiles.global.provision);
    let by_profile: std::collections::HashMap<String, Provisioner> = cfg
        .profiles
        .list
        .iter()
        .filter(|p| p.own_provisioner)
        .filter_map(|p| make(&p.provision).map(|v| (p.name.clone(), v)))
        .collect();
    let op_permits = Arc::new(Semaphore::new(s.limits.max_ops_in_flight));
    let provision_permits = cfg
        .profiles
        .any_provisioning()
        .then(|| Arc::new(Semaphore::new(s.provision.max_concurrent)));
    let deps = Rc::new(Deps {
        client: client.clone(),
        policy,
        deploy: cfg.deploy.clone(),
        preview: s.preview,
        op_permits: op_permits.clone(),
        retry_base: s.limits.retry_base,
        retry_cap: s.limits.retry_cap,
        profiles: Arc::new(cfg.profiles.clone()),
        provision: cfg.profiles.any_provisioning().then(|| ProvisionDeps {
            provisioner,
            by_profile,
            permits: provision_permits
                .clone()
                .unwrap_or_else(|| Arc::new(Semaphore::new(s.provision.max_concurrent))),
            retry_base: s.provision.retry_base,
            retry_cap: s.provision.retry_cap,
            max_attempts: s.provision.max_attempts,
            store,
        }),
        annotations: cfg.api_version == ApiVersion::V2,
        power_helper: s
            .lifecycle
            .power_helper_script
            .as_ref()
            .map(|p| PowerHelper {
                script: p.into(),
                user: s.lifecycle.power_helper_user.clone().unwrap_or_default(),
                timeout: s.maas.request_timeout,
                scrub: scrub.clone(),
            }),
        board: board.clone(),
        metrics: metrics.clone(),
    });
    let filter = Arc::new(cfg.filter.clone());
    let zones = match cfg.api_version {
        ApiVersion::V2 => cfg.filter.server_side_zones(),
        ApiVersion::V1 => None,
    };
    let supervisor = Supervisor::new(deps, filter).start();
    board.with_global(|g| {
        g.stale_after = s.maas.period * s.http.unready_after_periods;
    });
    let events = s.events.enabled && cfg.api_version == ApiVersion::V2;
    let poller = watchdog::start(PollerSpec {
        client,
        supervisor: supervisor.clone(),
        period: s.maas.period,
        zones: zones.unwrap_or_default(),
        server_filter: (cfg.api_version == ApiVersion::V2).then(|| {
            (
                cfg.filter.server_side_pools(),
                cfg.filter.server_side_tags(),
            )
        }),
        allocated_ownership: identity == Identity::AllocatedToKey,
        events_interval: events.then_some(s.events.interval),
        board: board.clone(),
        metrics: metrics.clone(),
    });
    Ok(Actors {
        poller,
        supervisor,
        op_permits,
        provision_permits,
    })
}
