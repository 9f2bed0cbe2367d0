//! The etcd backend: a lease plus etcd's own election service (`v3election`).
//!
//! The session is an etcd lease of `ha.lease_ttl`; the campaign is etcd's `Campaign`,
//! which writes `<election>/<lease id>` bound to that lease and returns once it is the
//! oldest key of the election, i.e. once every earlier candidate's key is gone
//! (resigned, or its lease expired). Nothing here is a home-made lock: etcd decides who
//! leads, and etcd deletes a dead leader's key when its lease runs out.
//!
//! Requests carry `require_leader`, so a member cut off from its cluster's quorum
//! refuses instead of answering from stale state. TLS (rustls) and user/password
//! authentication are those of the `etcd-client` crate.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, Identity, LeaderKey, LeaseKeepAliveStream, LeaseKeeper,
    ResignOptions, TlsOptions,
};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::Mutex;

use super::{Election, HaConfig, HaError};

/// An etcd election named `cfg.election`, this replica campaigning as `cfg.identity`.
pub struct EtcdElection {
    cfg: Arc<HaConfig>,
    /// Connected lazily (inside the election thread's runtime) and reused.
    client: Arc<Mutex<Option<Client>>>,
}

/// One lease and, once elected, the key that proves it.
#[derive(Clone)]
pub struct EtcdSession {
    lease: i64,
    client: Client,
    leader_key: Arc<Mutex<Option<LeaderKey>>>,
    /// The keep-alive stream, reused while it works; dropped on any error or timeout
    /// so that a late answer is never taken for the next renewal's.
    keep_alive: Arc<Mutex<Option<(LeaseKeeper, LeaseKeepAliveStream)>>>,
}

fn service(what: &'static str) -> impl FnOnce(etcd_client::Error) -> HaError {
    move |e| HaError::Service {
        what,
        source: Box::new(e),
    }
}

impl EtcdElection {
    pub fn new(cfg: HaConfig) -> Self {
        EtcdElection {
            cfg: Arc::new(cfg),
            client: Arc::new(Mutex::new(None)),
        }
    }

    fn options(cfg: &HaConfig) -> ConnectOptions {
        let third = cfg.lease_ttl / 3;
        let mut o = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(third)
            .with_keep_alive(third, third);
        if let Some(u) = &cfg.user {
            // etcd's auth tokens expire (5 minutes by default); a replica runs for months.
            o = o
                .with_user(u.name.clone(), u.password.clone())
                .with_auto_token_refresh(true);
        }
        if let Some(t) = &cfg.tls {
            let mut tls = TlsOptions::new().with_enabled_roots();
            if let Some(ca) = &t.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &t.client {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            o = o.with_tls(tls);
        }
        o
    }

    async fn connected(cfg: &HaConfig, slot: &Mutex<Option<Client>>) -> Result<Client, HaError> {
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Client::connect(&cfg.endpoints, Some(Self::options(cfg)))
            .await
            .map_err(service("connecting to etcd"))?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

impl Election for EtcdElection {
    type Session = EtcdSession;

    fn open(&self) -> BoxFuture<'static, Result<(EtcdSession, Duration), HaError>> {
        let cfg = self.cfg.clone();
        let slot = self.client.clone();
        async move {
            let mut client = Self::connected(&cfg, &slot).await?;
            let granted = client
                .lease_grant(cfg.lease_ttl.as_secs() as i64, None)
                .await
                .map_err(service("granting a lease"))?;
            if granted.ttl() <= 0 {
                return Err(HaError::LeaseExpired);
            }
            Ok((
                EtcdSession {
                    lease: granted.id(),
                    client,
                    leader_key: Arc::new(Mutex::new(None)),
                    keep_alive: Arc::new(Mutex::new(None)),
                },
                Duration::from_secs(granted.ttl() as u64),
            ))
        }
        .boxed()
    }

    fn renew(&self, s: &EtcdSession) -> BoxFuture<'static, Result<Duration, HaError>> {
        let s = s.clone();
        async move {
            let taken = s.keep_alive.lock().await.take();
            let (mut keeper, mut stream) = match taken {
                Some(pair) => pair,
                None => s
                    .client
                    .clone()
                    .lease_keep_alive(s.lease)
                    .await
                    .map_err(service("opening the lease keep-alive stream"))?,
            };
            keeper
                .keep_alive()
                .await
                .map_err(service("renewing the lease"))?;
            let answer = stream
                .message()
                .await
                .map_err(service("renewing the lease"))?;
            let ttl = match answer {
                Some(a) if a.ttl() > 0 => a.ttl(),
                Some(_) => return Err(HaError::LeaseExpired),
                None => {
                    return Err(HaError::Service {
                        what: "renewing the lease",
                        source: "etcd closed the keep-alive stream".into(),
                    })
                }
            };
            *s.keep_alive.lock().await = Some((keeper, stream));
            Ok(Duration::from_secs(ttl as u64))
        }
        .boxed()
    }

    fn campaign(&self, s: &EtcdSession) -> BoxFuture<'static, Result<(), HaError>> {
        let s = s.clone();
        let cfg = self.cfg.clone();
        async move {
            let mut resp = s
                .client
                .clone()
                .campaign(cfg.election.as_str(), cfg.identity.as_str(), s.lease)
                .await
                .map_err(service("campaigning"))?;
            let key = resp.take_leader().ok_or_else(|| HaError::Service {
                what: "campaigning",
                source: "etcd answered without a leader key".into(),
            })?;
            *s.leader_key.lock().await = Some(key);
            Ok(())
        }
        .boxed()
    }

    fn leader(&self) -> BoxFuture<'static, Result<Option<String>, HaError>> {
        let cfg = self.cfg.clone();
        let slot = self.client.clone();
        async move {
            let mut client = Self::connected(&cfg, &slot).await?;
            match client.leader(cfg.election.as_str()).await {
                Ok(r) => Ok(r
                    .kv()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
                // etcd answers an election without candidates with "election: no leader".
                Err(e) if e.to_string().contains("no leader") => Ok(None),
                Err(e) => Err(service("reading the leader")(e)),
            }
        }
        .boxed()
    }

    fn resign(&self, s: &EtcdSession) -> BoxFuture<'static, Result<(), HaError>> {
        let s = s.clone();
        async move {
            let mut client = s.client.clone();
            if let Some(key) = s.leader_key.lock().await.take() {
                client
                    .resign(Some(ResignOptions::new().with_leader(key)))
                    .await
                    .map_err(service("resigning"))?;
            }
            // Revoking the lease deletes every key bound to it, the campaign's included.
            match client.lease_revoke(s.lease).await {
                Ok(_) => Ok(()),
                Err(e) if e.to_string().contains("lease not found") => Ok(()),
                Err(e) => Err(service("revoking the lease")(e)),
            }
        }
        .boxed()
    }
}
