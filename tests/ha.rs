//! High availability against a real etcd: several real `maas-flow` processes campaign;
//! only the leader acts; failover after SIGKILL, SIGSTOP (fencing), etcd stopping, and
//! SIGTERM (resignation). Every replica talks to the simulator through its own counting
//! TCP relay, so "a standby sends nothing to MAAS" is measured in bytes per process.
//!
//! Needs the `etcd` binary (Debian `etcd-server`, installed by `.ci/run`). Without it the
//! etcd tests say so and pass, except under CI (`CI` set), where they fail.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use maas_flow::maas::NodeStatus;
use maas_flow::sim::{scenario, Sim, SimMachine, Timings};

const BIN: &str = env!("CARGO_BIN_EXE_maas-flow");
/// Short lease so the file runs fast: renewals every 0.5 s, the fence at 1.5 s.
const TTL: Duration = Duration::from_secs(3);
const PERIOD: Duration = Duration::from_secs(1);

/// One etcd test at a time: each starts etcd and several controllers on 2 shared cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn etcd_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("etcd"))
        .find(|p| p.is_file())
}

#[allow(unsafe_code)] // kill(2) on our own child: see the SAFETY comment.
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process this test started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A single-member etcd on loopback ephemeral ports with a temporary data directory.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// `None` (after saying why) when the binary is absent outside CI.
    fn start() -> Option<Etcd> {
        Self::start_with(None)
    }

    /// `tls`: (certificate, key) PEM files; clients then use https://localhost:port.
    fn start_with(tls: Option<(&Path, &Path)>) -> Option<Etcd> {
        let Some(bin) = etcd_binary() else {
            if std::env::var_os("CI").is_some() {
                panic!("etcd is not installed: .ci/run installs Debian's etcd-server");
            }
            eprintln!("SKIPPED: the `etcd` binary is absent (apt-get install etcd-server)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let (listen, url) = match tls {
            None => (
                format!("http://127.0.0.1:{client}"),
                format!("http://127.0.0.1:{client}"),
            ),
            Some(_) => (
                format!("https://127.0.0.1:{client}"),
                format!("https://localhost:{client}"),
            ),
        };
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let mut cmd = Command::new(bin);
        if let Some((cert, key)) = tls {
            cmd.arg(format!("--cert-file={}", cert.display()))
                .arg(format!("--key-file={}", key.display()));
        }
        let child = cmd
            .arg("--name=t")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={listen}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=t={peer_url}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        let e = Etcd {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let healthy = || match tls {
            None => http_get(client, "/health").map(|(c, _)| c) == Some(200),
            Some(_) => TcpStream::connect(("127.0.0.1", client)).is_ok(),
        };
        while !healthy() {
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(e)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        signal(self.child.id(), libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay to the simulator counting the bytes one replica sends to MAAS.
struct Relay {
    port: u16,
    sent: Arc<AtomicU64>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        // Lives as long as the test process; each connection ends with its peers.
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(client) = c else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let n = counter.clone();
                std::thread::spawn(move || pump(client, server, Some(n)));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        Relay { port, sent }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(c) = &count {
                    c.fetch_add(n as u64, Ordering::SeqCst);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// `GET path` on a loopback port: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// One `maas-flow` process in the election.
struct Replica {
    name: String,
    child: Child,
    status_port: u16,
    relay: Relay,
}

impl Replica {
    fn spawn(name: &str, sim: &Sim, etcd: &Etcd, dir: &Path, script: &str) -> Replica {
        Self::spawn_with(name, sim, etcd, dir, script, "")
    }

    /// `ha_extra`: more `[ha]` lines (credentials).
    fn spawn_with(
        name: &str,
        sim: &Sim,
        etcd: &Etcd,
        dir: &Path,
        script: &str,
        ha_extra: &str,
    ) -> Replica {
        let relay = Relay::start(sim.addr);
        let status_port = free_port();
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                r#"shutdown_grace = "10s"
state_dir = "{state}"
[maas]
url = "http://127.0.0.1:{relay}/MAAS"
api_key = "{key}"
period = "{period}s"
[events]
interval = "500ms"
[provision]
script = "{script}"
retry_base = "200ms"
retry_cap = "1s"
[limits]
retry_base = "200ms"
retry_cap = "1s"
[http]
listen = "127.0.0.1:{status_port}"
[log]
level = "info"
[ha]
backend = "etcd"
etcd_endpoints = ["{etcd}"]
election = "region-1"
lease_ttl = "{ttl}s"
identity = "{name}"
{ha_extra}
"#,
                // Each replica keeps its own local journal, as on separate hosts.
                state = dir.join(format!("{name}-state")).display(),
                relay = relay.port,
                key = sim.api_key(),
                period = PERIOD.as_secs(),
                etcd = etcd.url,
                ttl = TTL.as_secs(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Replica {
            name: name.into(),
            child,
            status_port,
            relay,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn status(&self) -> Option<serde_json::Value> {
        let (code, body) = http_get(self.status_port, "/api/v1/status")?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    fn role(&self) -> Option<String> {
        self.status()?["role"].as_str().map(str::to_string)
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        signal(self.pid(), libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` every 50 ms for at most `limit`; panics naming `what`.
async fn wait(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Like [`wait`], but `None` on timeout.
async fn wait_or(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Machines in three phases at once: two Deployed (provisioned at once), two Ready
/// (allocated and deployed), three New (commissioned first).
fn rack() -> Vec<SimMachine> {
    let mut ms = scenario::rack(7);
    for (i, m) in ms.iter_mut().enumerate() {
        match i {
            0 | 1 => {
                m.status = NodeStatus::Deployed;
                m.owner = Some("maas-flow".into());
                m.commissioned = true;
                m.distro_series = "jammy".into();
                m.osystem = "ubuntu".into();
                m.interfaces[0].links[0].ip_address = Some(format!("10.20.0.{}", 10 + i));
            }
            2 | 3 => {
                m.status = NodeStatus::Ready;
                m.commissioned = true;
            }
            _ => {}
        }
    }
    ms
}

fn timings() -> Timings {
    Timings {
        commission: Duration::from_secs(2),
        deploy: Duration::from_secs(2),
        release: Duration::from_millis(500),
        ..Timings::default()
    }
}

/// The provisioning script logs `system_id parent_pid start|done`; the parent is the
/// `maas-flow` process that ran it. `done` comes from a child of the script, so only
/// killing the whole process group stops it.
fn write_script(dir: &Path) -> String {
    let runs = dir.join("runs");
    let p = dir.join("prov.sh");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nP=$PPID\necho \"$1 $P start\" >> '{r}'\n(sleep 3; echo \"$1 $P done\" >> '{r}') &\nwait\n",
            r = runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// (system_id, pid, event) for every line of the runs file.
fn runs(dir: &Path) -> Vec<(String, u32, String)> {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            Some((
                it.next()?.to_string(),
                it.next()?.parse().ok()?,
                it.next()?.to_string(),
            ))
        })
        .collect()
}

fn all_provisioned(sim: &Sim) -> bool {
    sim.machines().iter().all(|m| {
        m.status == NodeStatus::Deployed && m.annotations.contains_key("maas_flow_provisioned")
    })
}

/// The one replica whose status says leader, once exactly one does.
fn leader_of(reps: &[Replica]) -> Option<usize> {
    let leaders: Vec<usize> = (0..reps.len())
        .filter(|&i| reps[i].role().as_deref() == Some("leader"))
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

struct Setup {
    etcd: Etcd,
    sim: Sim,
    dir: tempfile::TempDir,
    reps: Vec<Replica>,
    leader: usize,
}

/// etcd, the simulator, `n` replicas; returns once one leads and a provisioning run
/// is under way while other machines are still commissioning and deploying.
async fn setup(n: usize) -> Option<Setup> {
    let etcd = Etcd::start()?;
    let sim = start_sim(rack(), timings());
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path());
    let reps: Vec<Replica> = (0..n)
        .map(|i| Replica::spawn(&format!("r{}", i + 1), &sim, &etcd, dir.path(), &script))
        .collect();
    let mut leader = None;
    wait("one leader", Duration::from_secs(30), || {
        leader = leader_of(&reps);
        leader.is_some()
    })
    .await;
    let leader = leader.unwrap();
    if wait_or(Duration::from_secs(30), || {
        runs(dir.path()).iter().any(|(_, _, e)| e == "start")
    })
    .await
    .is_none()
    {
        for r in &reps {
            let log = std::fs::read_to_string(dir.path().join(format!("{}.log", r.name)));
            eprintln!("--- {}\n{}", r.name, log.unwrap_or_default());
        }
        panic!("timed out: a provisioning run under way");
    }
    // Standbys hold no machine state and have sent nothing to MAAS.
    for (i, r) in reps.iter().enumerate() {
        if i != leader {
            assert_eq!(
                r.relay.sent(),
                0,
                "{} is a standby and sent bytes to MAAS",
                r.name
            );
            let name = reps[leader].name.as_str();
            wait(
                "the standby to learn the leader's name",
                Duration::from_secs(10),
                || {
                    r.status()
                        .is_some_and(|s| s["role"] == "standby" && s["leader"] == name)
                },
            )
            .await;
            let (code, body) = http_get(r.status_port, "/readyz").unwrap();
            assert_eq!(
                (code, body.trim()),
                (200, &*format!("ready: standby (leader: {name})"))
            );
            let page = http_get(r.status_port, "/").unwrap().1;
            assert!(page.contains(r#"<span id="role">standby</span>"#), "{page}");
            assert!(
                page.contains(&format!(r#"<span id="leader">{name}</span>"#)),
                "{page}"
            );
            assert_eq!(
                http_get(r.status_port, "/api/v1/machines")
                    .unwrap()
                    .1
                    .trim(),
                "[]"
            );
        }
    }
    Some(Setup {
        etcd,
        sim,
        dir,
        reps,
        leader,
    })
}

/// Wait until some replica other than `old` sends its first bytes to MAAS.
async fn first_act_after(reps: &[Replica], old: usize, limit: Duration) -> (usize, Duration) {
    let before: Vec<u64> = reps.iter().map(|r| r.relay.sent()).collect();
    let mut who = None;
    let took = wait("a standby to act", limit, || {
        who = (0..reps.len()).find(|&i| i != old && reps[i].relay.sent() > before[i]);
        who.is_some()
    })
    .await;
    (who.unwrap(), took)
}

fn assert_no_duplicates(sim: &Sim) {
    let dups = sim.duplicate_ops();
    assert!(dups.is_empty(), "operations sent twice: {dups:?}");
}

#[actix_rt::test]
async fn failover_after_sigkill_repeats_nothing() {
    let _g = SERIAL.lock().await;
    let Some(Setup {
        etcd: _etcd,
        sim,
        dir,
        mut reps,
        leader,
    }) = setup(3).await
    else {
        return;
    };
    // Machines are commissioning (New), deploying (Ready) and provisioning (Deployed).
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let old_pid = reps[leader].pid();
    let recorded: Vec<String> = sim
        .machines()
        .into_iter()
        .filter(|m| m.annotations.contains_key("maas_flow_provisioned"))
        .map(|m| m.system_id)
        .collect();
    let phases: Vec<NodeStatus> = sim.machines().iter().map(|m| m.status).collect();
    assert!(phases.contains(&NodeStatus::Commissioning), "{phases:?}");
    assert!(phases.contains(&NodeStatus::Deploying), "{phases:?}");
    let cut = runs(dir.path());
    assert!(
        cut.iter()
            .any(|(id, _, e)| e == "start" && !cut.iter().any(|(i, _, d)| i == id && d == "done")),
        "a provisioning run is under way: {cut:?}"
    );
    signal(old_pid, libc::SIGKILL);
    let _ = reps[leader].child.wait();
    let (new, took) = first_act_after(&reps, leader, TTL + PERIOD + Duration::from_secs(10)).await;
    eprintln!(
        "failover after SIGKILL: {} acted after {took:?}",
        reps[new].name
    );
    assert!(
        took <= TTL + PERIOD + Duration::from_secs(3),
        "failover took {took:?}"
    );
    wait(
        "every machine deployed and provisioned",
        Duration::from_secs(60),
        || all_provisioned(&sim),
    )
    .await;
    // The remaining standby never acted.
    for (i, r) in reps.iter().enumerate() {
        if i != leader && i != new {
            assert_eq!(
                r.relay.sent(),
                0,
                "{} acted while {} led",
                r.name,
                reps[new].name
            );
        }
    }
    assert_eq!(reps[new].role().as_deref(), Some("leader"));
    assert_no_duplicates(&sim);
    let runs = runs(dir.path());
    for m in sim.machines() {
        let starts = |dead: bool| {
            runs.iter()
                .filter(|(id, pid, e)| {
                    *id == m.system_id && e == "start" && (*pid == old_pid) == dead
                })
                .count()
        };
        let (by_old, by_new) = (starts(true), starts(false));
        assert!(
            by_old <= 1 && by_new <= 1,
            "{}: {by_old} + {by_new} runs",
            m.system_id
        );
        assert!(by_old + by_new >= 1, "{}: never provisioned", m.system_id);
        if by_old == 1 && by_new == 1 {
            assert!(
                !recorded.contains(&m.system_id),
                "{}: its outcome was recorded before the kill, yet it ran again",
                m.system_id
            );
        }
    }
    sim.stop().await;
}

#[actix_rt::test]
async fn paused_leader_is_fenced_and_resumes_as_standby() {
    let _g = SERIAL.lock().await;
    let Some(Setup {
        etcd: _etcd,
        sim,
        dir,
        mut reps,
        leader,
    }) = setup(2).await
    else {
        return;
    };
    let other = 1 - leader;
    let old_pid = reps[leader].pid();
    signal(old_pid, libc::SIGSTOP);
    let (who, took) = first_act_after(&reps, leader, TTL + PERIOD + Duration::from_secs(10)).await;
    assert_eq!(who, other);
    eprintln!("failover after SIGSTOP: acted after {took:?}");
    // Let the new leader get going, then wake the old one; it is long past its fence.
    wait(
        "the new leader to act for a while",
        Duration::from_secs(30),
        || {
            sim.ops()
                .iter()
                .any(|o| o.method != "GET" && o.http_status < 300)
        },
    )
    .await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let sent_before = reps[leader].relay.sent();
    let started_before = runs(dir.path())
        .iter()
        .filter(|(_, pid, e)| *pid == old_pid && e == "start")
        .count();
    signal(old_pid, libc::SIGCONT);
    wait(
        "the old leader to report standby",
        Duration::from_secs(20),
        || reps[leader].role().as_deref() == Some("standby"),
    )
    .await;
    wait(
        "every machine deployed and provisioned",
        Duration::from_secs(60),
        || all_provisioned(&sim),
    )
    .await;
    // A few more periods for anything the old leader might still send.
    actix_rt::time::sleep(PERIOD * 3).await;
    assert_eq!(
        reps[leader].relay.sent(),
        sent_before,
        "the old leader sent bytes to MAAS after it resumed"
    );
    let started_after = runs(dir.path())
        .iter()
        .filter(|(_, pid, e)| *pid == old_pid && e == "start")
        .count();
    assert_eq!(
        started_after, started_before,
        "the old leader started provisioning after it resumed"
    );
    assert!(reps[leader].alive());
    assert_eq!(reps[leader].role().as_deref(), Some("standby"));
    assert_eq!(reps[other].role().as_deref(), Some("leader"));
    let m = http_get(reps[leader].status_port, "/metrics").unwrap().1;
    assert!(m.contains("maas_flow_leader 0"), "{m}");
    assert_no_duplicates(&sim);
    sim.stop().await;
}

#[actix_rt::test]
async fn etcd_down_stops_all_action_until_it_is_back() {
    let _g = SERIAL.lock().await;
    let Some(Setup {
        etcd,
        sim,
        dir,
        mut reps,
        leader: _,
    }) = setup(2).await
    else {
        return;
    };
    signal(etcd.child.id(), libc::SIGSTOP);
    // Within TTL/2 of its last renewal the leader stops; wait a whole TTL to be sure.
    actix_rt::time::sleep(TTL).await;
    let sent: Vec<u64> = reps.iter().map(|r| r.relay.sent()).collect();
    let ops = sim.ops().len();
    actix_rt::time::sleep(TTL + PERIOD).await;
    let sent_after: Vec<u64> = reps.iter().map(|r| r.relay.sent()).collect();
    assert_eq!(sent_after, sent, "bytes sent to MAAS while etcd was down");
    assert_eq!(sim.ops().len(), ops, "operations while etcd was down");
    for r in &reps {
        assert_eq!(r.role().as_deref(), Some("standby"), "{}", r.name);
        // Not ready: a standby that cannot reach etcd cannot take over.
        let (code, body) = http_get(r.status_port, "/readyz").unwrap();
        assert_eq!(code, 503, "{}: {body}", r.name);
        assert!(body.contains("etcd"), "{body}");
        let m = http_get(r.status_port, "/metrics").unwrap().1;
        assert!(m.contains("maas_flow_leader 0"), "{m}");
    }
    // The leader's provisioning runs were killed with their process group and counted.
    let interrupted: u64 = reps
        .iter()
        .map(|r| {
            let m = http_get(r.status_port, "/metrics").unwrap().1;
            m.lines()
                .find(|l| l.starts_with("maas_flow_provision_runs_total{kind=\"interrupted\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0)
        })
        .sum();
    assert!(interrupted >= 1, "no provisioning run was interrupted");
    let cut = runs(dir.path());
    let unfinished = cut
        .iter()
        .filter(|(id, pid, e)| {
            e == "start"
                && !cut
                    .iter()
                    .any(|(i, p, d)| i == id && p == pid && d == "done")
        })
        .count();
    assert_eq!(unfinished as u64, interrupted, "{cut:?}");
    signal(etcd.child.id(), libc::SIGCONT);
    wait(
        "every machine deployed and provisioned",
        Duration::from_secs(60),
        || all_provisioned(&sim),
    )
    .await;
    for r in reps.iter_mut() {
        assert!(r.alive(), "{} exited", r.name);
    }
    assert!(leader_of(&reps).is_some());
    assert_no_duplicates(&sim);
    sim.stop().await;
}

#[actix_rt::test]
async fn sigterm_resigns_and_the_standby_acts_within_one_period() {
    let _g = SERIAL.lock().await;
    let Some(Setup {
        etcd: _etcd,
        sim,
        dir: _dir,
        mut reps,
        leader,
    }) = setup(2).await
    else {
        return;
    };
    signal(reps[leader].pid(), libc::SIGTERM);
    // The drain waits for the running 3 s script, not for the whole shutdown_grace (10 s).
    let deadline = Instant::now() + Duration::from_secs(9);
    let status = loop {
        if let Some(s) = reps[leader].child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not exit within 9 s of SIGTERM"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(status.success(), "{status:?}");
    let (_, took) = first_act_after(&reps, leader, Duration::from_secs(20)).await;
    eprintln!("failover after SIGTERM: acted {took:?} after the old leader exited");
    assert!(
        took <= PERIOD,
        "the standby took {took:?} to act after a resignation"
    );
    wait(
        "every machine deployed and provisioned",
        Duration::from_secs(60),
        || all_provisioned(&sim),
    )
    .await;
    assert_no_duplicates(&sim);
    sim.stop().await;
}

/// Failover figures for the README: `cargo test --release --test ha -- --ignored --nocapture`.
#[actix_rt::test]
#[ignore]
async fn measure_failover_times() {
    let _g = SERIAL.lock().await;
    let mut kill = Vec::new();
    let mut term = Vec::new();
    for round in 0..5 {
        for graceful in [false, true] {
            let Some(Setup {
                etcd: _etcd,
                sim,
                dir: _dir,
                mut reps,
                leader,
            }) = setup(2).await
            else {
                return;
            };
            let t0 = Instant::now();
            signal(
                reps[leader].pid(),
                if graceful {
                    libc::SIGTERM
                } else {
                    libc::SIGKILL
                },
            );
            let _ = reps[leader].child.wait();
            let (_, _) = first_act_after(&reps, leader, Duration::from_secs(30)).await;
            let took = t0.elapsed();
            eprintln!("round {round} graceful={graceful}: {took:?}");
            if graceful { &mut term } else { &mut kill }.push(took);
            assert_no_duplicates(&sim);
            sim.stop().await;
        }
    }
    for (what, v) in [("SIGKILL", &mut kill), ("SIGTERM", &mut term)] {
        v.sort();
        eprintln!(
            "{what}: median {:?}, min {:?}, max {:?} (lease_ttl {TTL:?}, period {PERIOD:?})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
}

#[test]
fn ha_configuration_errors_name_the_key_and_exit_2() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--ha-etcd", "not a url"], &[], "ha.etcd_endpoints"),
        (&["--ha-etcd", "ftp://h:1"], &[], "ha.etcd_endpoints"),
        (&[], &[("MAAS_FLOW_HA__BACKEND", "zookeeper")], "ha.backend"),
        (
            &["--ha-etcd", "http://127.0.0.1:2379"],
            &[("MAAS_FLOW_HA__LEASE_TTL", "1500ms")],
            "ha.lease_ttl",
        ),
        (
            &["--ha-etcd", "http://127.0.0.1:2379", "--ha-election", " "],
            &[],
            "ha.election",
        ),
        (
            &[],
            &[
                ("MAAS_FLOW_HA__BACKEND", "etcd"),
                ("MAAS_FLOW_HA__ETCD_USERNAME", "maas-flow"),
            ],
            "ha.etcd_password_file",
        ),
    ];
    for (args, env, key) in cases {
        let out = Command::new(BIN)
            .arg("check-config")
            .args(["--api-key", "a:b:c"])
            .args(*args)
            .envs(env.iter().copied())
            .env_remove("MAAS_FLOW_CONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(&format!("`{key}`")), "{args:?} {env:?}: {err}");
    }
    // Endpoints from the environment as one comma-separated string; flags win.
    let out = Command::new(BIN)
        .arg("check-config")
        .args(["--api-key", "a:b:c", "--ha-election", "region-7"])
        .env("MAAS_FLOW_HA__BACKEND", "etcd")
        .env(
            "MAAS_FLOW_HA__ETCD_ENDPOINTS",
            "http://10.0.0.1:2379, http://10.0.0.2:2379",
        )
        .env_remove("MAAS_FLOW_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("\"http://10.0.0.1:2379\""), "{text}");
    assert!(text.contains("\"http://10.0.0.2:2379\""), "{text}");
    assert!(text.contains("election = \"region-7\""), "{text}");
}

/// Without `[ha]` nothing changes: the status says leader and readiness says `ready`.
#[actix_rt::test]
async fn without_ha_a_single_replica_is_the_leader() {
    let sim = start_sim(scenario::rack(1), fast_timings());
    let ctrl = start(&sim, &[]).await;
    settle(&ctrl, Duration::from_secs(30)).await;
    let g = ctrl.board.global();
    assert_eq!(g.role, maas_flow::ha::Role::Leader);
    assert!(g.identity.is_none());
    let port = ctrl.http_addr.unwrap().port();
    let m = http_get(port, "/metrics").unwrap().1;
    assert!(m.contains("maas_flow_leader 1"), "{m}");
    assert_eq!(http_get(port, "/readyz").unwrap(), (200, "ready\n".into()));
    stop(ctrl).await;
    sim.stop().await;
}

/// etcd with authentication on: the right password wins the election, a wrong one
/// never leads (and is not ready), and neither password appears in a log.
#[actix_rt::test]
async fn etcd_user_and_password_authenticate_the_campaign() {
    let _g = SERIAL.lock().await;
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let mut admin = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .unwrap();
    admin.user_add("root", "root-pw-7", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin
        .user_add("maas-flow", "right-pw-42", None)
        .await
        .unwrap();
    admin.user_grant_role("maas-flow", "root").await.unwrap();
    admin.auth_enable().await.unwrap();
    let sim = start_sim(scenario::rack(2), timings());
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path());
    let (good, bad) = (dir.path().join("good-pw"), dir.path().join("bad-pw"));
    std::fs::write(&good, "right-pw-42\n").unwrap();
    std::fs::write(&bad, "wrong-pw-13\n").unwrap();
    let ha = |f: &Path| {
        format!(
            "etcd_username = \"maas-flow\"\netcd_password_file = \"{}\"",
            f.display()
        )
    };
    let intruder = Replica::spawn_with("r9", &sim, &etcd, dir.path(), &script, &ha(&bad));
    let member = Replica::spawn_with("r1", &sim, &etcd, dir.path(), &script, &ha(&good));
    wait(
        "the authenticated replica to lead",
        Duration::from_secs(30),
        || member.role().as_deref() == Some("leader"),
    )
    .await;
    wait(
        "the leader's first operation",
        Duration::from_secs(30),
        || sim.ops().iter().any(|o| o.method != "GET"),
    )
    .await;
    assert_eq!(intruder.role().as_deref(), Some("standby"));
    assert_eq!(intruder.relay.sent(), 0);
    assert_eq!(http_get(intruder.status_port, "/readyz").unwrap().0, 503);
    for name in ["r1", "r9"] {
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap();
        assert!(
            !log.contains("right-pw-42") && !log.contains("wrong-pw-13"),
            "{log}"
        );
    }
    drop((intruder, member));
    sim.stop().await;
}

/// https:// etcd: the operator's CA file is trusted; without it the replica never leads.
#[actix_rt::test]
async fn etcd_over_tls_with_the_operators_ca_file() {
    let _g = SERIAL.lock().await;
    let pem = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (pem.path().join("etcd.pem"), pem.path().join("etcd-key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let Some(etcd) = Etcd::start_with(Some((&cert, &key))) else {
        return;
    };
    let sim = start_sim(scenario::rack(2), timings());
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path());
    let stranger = Replica::spawn("r9", &sim, &etcd, dir.path(), &script);
    let trusting = Replica::spawn_with(
        "r1",
        &sim,
        &etcd,
        dir.path(),
        &script,
        &format!("etcd_ca_file = \"{}\"", cert.display()),
    );
    wait(
        "the replica trusting etcd's CA to lead",
        Duration::from_secs(30),
        || trusting.role().as_deref() == Some("leader"),
    )
    .await;
    wait(
        "the leader's first operation",
        Duration::from_secs(30),
        || sim.ops().iter().any(|o| o.method != "GET"),
    )
    .await;
    assert_eq!(stranger.role().as_deref(), Some("standby"));
    assert_eq!(stranger.relay.sent(), 0);
    assert_eq!(http_get(stranger.status_port, "/readyz").unwrap().0, 503);
    drop((stranger, trusting));
    sim.stop().await;
}
