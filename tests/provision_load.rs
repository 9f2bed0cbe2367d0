//! Provisioning under load: a rack of Deployed machines, the simulated HTTP provisioner
//! with 1-second jobs, `provision.max_concurrent` 64. Every provisioner request must
//! reach the provisioner (none fails on our side), and the rack must finish close to
//! the ideal (machines / 64 × 1 s) with few requests per job.
//!
//! A provisioner that closes connections behind our back (the cause of "connector has
//! been disconnected": a pooled keep-alive connection reused just as the server closes
//! it) is a plain TCP server here, since the simulator's HTTP server always announces
//! its closes.
//!
//! `cargo test --test provision_load` runs 200 machines. The 2,000-machine figures:
//! `cargo test --release --test provision_load -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use maas_flow::metrics::KindLabels;
use maas_flow::sim::{scenario, ProvisionerConfig, Sim, SimConfig};

const JOB: Duration = Duration::from_secs(1);
const MAX_CONCURRENT: usize = 64;

/// What one load run measured.
struct Figures {
    machines: usize,
    took: Duration,
    ideal: Duration,
    posts: usize,
    gets: usize,
    requests: usize,
    failed_runs: u64,
    failed_polls: u64,
}

async fn load(machines: usize) -> Figures {
    let machines = std::env::var("LOAD_MACHINES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(machines);
    let text = format!(
        "[[machine]]\nhostname = \"node\"\ncount = {machines}\nstatus = \"deployed\"\nowner = \"maas-flow\"\nips = [\"10.9.0.1\"]\n"
    );
    let sim = Sim::start(
        SimConfig {
            workers: 2,
            ..SimConfig::default()
        },
        scenario::parse_scenario(&text).unwrap(),
        fast_timings(),
        ProvisionerConfig {
            duration: JOB,
            ..ProvisionerConfig::default()
        },
    )
    .expect("simulator starts");
    let url = sim.provisioner_url();
    let max = MAX_CONCURRENT.to_string();
    // Knobs for reproducing the old behaviour by hand (defaults: production-like).
    let first_poll = std::env::var("LOAD_FIRST_POLL").unwrap_or_else(|_| "1s".into());
    let period = std::env::var("LOAD_PERIOD").unwrap_or_else(|_| "15s".into());
    let t0 = Instant::now();
    // Production-like polling: the period and the poll interval are 15 s; only the
    // first poll of a job comes early.
    let ctrl = start(
        &sim,
        &[
            ("provision.url", url.as_str()),
            ("provision.max_concurrent", max.as_str()),
            ("provision.poll_interval", "15s"),
            ("provision.first_poll", &first_poll),
            ("maas.period", &period),
            ("log.level", "warn"),
        ],
    )
    .await;
    wait_for(
        "every machine provisioned",
        Duration::from_secs(40 + machines as u64 / 8),
        || {
            ctrl.board
                .count_by(|v| v.provisioning.clone())
                .get("provisioned")
                .copied()
                .unwrap_or(0)
                == machines
        },
    )
    .await;
    let took = t0.elapsed();
    let reqs = sim.provisioner_requests();
    let count = |m: &str| reqs.iter().filter(|r| r.method == m).count();
    let kind = |f: &prometheus_client::metrics::family::Family<
        KindLabels,
        prometheus_client::metrics::counter::Counter,
    >,
                k: &str| { f.get_or_create(&KindLabels { kind: k.into() }).get() };
    let figures = Figures {
        machines,
        took,
        ideal: JOB * (machines.div_ceil(MAX_CONCURRENT) as u32),
        posts: count("POST"),
        gets: count("GET"),
        requests: reqs.len(),
        failed_runs: kind(&ctrl.metrics.provision_runs, "failed"),
        failed_polls: kind(&ctrl.metrics.retries, "provisioner_poll"),
    };
    println!(
        "provision load: {} machines, {}s jobs, max_concurrent {MAX_CONCURRENT}: all provisioned in {:.1}s (ideal {:.0}s, {:.2}x); provisioner requests {} ({} POST, {} GET) = {:.2} per job; failed on our side: {} runs, {} polls",
        figures.machines,
        JOB.as_secs(),
        figures.took.as_secs_f64(),
        figures.ideal.as_secs_f64(),
        figures.took.as_secs_f64() / figures.ideal.as_secs_f64(),
        figures.requests,
        figures.posts,
        figures.gets,
        figures.requests as f64 / machines as f64,
        figures.failed_runs,
        figures.failed_polls,
    );
    stop(ctrl).await;
    sim.stop().await;
    figures
}

fn check(f: &Figures) {
    assert_eq!(f.failed_runs, 0, "provisioning runs failed on our side");
    assert_eq!(f.failed_polls, 0, "provisioner polls failed on our side");
    assert_eq!(f.posts, f.machines, "one POST per machine, each reached it");
    assert!(
        f.requests as f64 / f.machines as f64 <= 3.0,
        "at most 3 requests per job: {} for {}",
        f.requests,
        f.machines
    );
}

#[actix_rt::test]
async fn two_hundred_machines_provision_with_no_request_failing_on_our_side() {
    let f = load(200).await;
    check(&f);
    // Far below the 15 s poll interval per wave: new jobs are asked about after 1 s.
    assert!(
        f.took < Duration::from_secs(30),
        "took {:?} (ideal {:?})",
        f.took,
        f.ideal
    );
}

#[actix_rt::test]
#[ignore = "2,000 machines: run with --release -- --ignored"]
async fn two_thousand_machines_provision_near_the_ideal() {
    let f = load(2000).await;
    check(&f);
    assert!(
        f.took.as_secs_f64() <= 1.5 * f.ideal.as_secs_f64() + 5.0,
        "took {:?} (ideal {:?})",
        f.took,
        f.ideal
    );
}

/// A provisioner that answers one request per connection and closes it 30 ms later
/// without having said `Connection: close` (as a server does when its keep-alive timer
/// ends a connection). A client that pools connections sends its next request on the
/// connection the server is about to close; the server never reads it, and the client
/// fails with "connector has been disconnected" without reaching the provisioner. Jobs are
/// done at once; returns the address and the count of requests received.
fn closing_provisioner() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    return;
                }
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                counter.fetch_add(1, Ordering::SeqCst);
                let status = if request_line.starts_with("POST") {
                    "202 Accepted"
                } else {
                    "200 OK"
                };
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\n{{}}").as_bytes(),
                );
                // The close comes a moment later, as a keep-alive timer's would: a
                // request sent on the connection meanwhile is never read.
                std::thread::sleep(Duration::from_millis(30));
                let _ = stream.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (format!("http://{addr}/provision"), seen)
}

/// Issue 12.12: no provisioner request fails on our side when the provisioner closes
/// connections behind our back.
#[actix_rt::test]
async fn a_provisioner_closing_connections_loses_no_request() {
    let machines = 200;
    let text = format!(
        "[[machine]]\nhostname = \"node\"\ncount = {machines}\nstatus = \"deployed\"\nowner = \"maas-flow\"\nips = [\"10.9.0.1\"]\n"
    );
    let sim = start_sim(scenario::parse_scenario(&text).unwrap(), fast_timings());
    let (url, seen) = closing_provisioner();
    let ctrl = start(
        &sim,
        &[
            ("provision.url", url.as_str()),
            ("provision.max_concurrent", "64"),
            ("provision.first_poll", "50ms"),
            ("provision.retry_base", "10s"),
            ("provision.retry_cap", "10s"),
            ("maas.period", "5s"),
        ],
    )
    .await;
    let kind = |f: &prometheus_client::metrics::family::Family<
        KindLabels,
        prometheus_client::metrics::counter::Counter,
    >,
                k: &str| { f.get_or_create(&KindLabels { kind: k.into() }).get() };
    wait_for(
        "every machine provisioned or a failure",
        Duration::from_secs(60),
        || {
            kind(&ctrl.metrics.provision_runs, "failed") > 0
                || ctrl
                    .board
                    .count_by(|v| v.provisioning.clone())
                    .get("provisioned")
                    .copied()
                    .unwrap_or(0)
                    == machines
        },
    )
    .await;
    let failed_runs = kind(&ctrl.metrics.provision_runs, "failed");
    let failed_polls = kind(&ctrl.metrics.retries, "provisioner_poll");
    let received = seen.load(std::sync::atomic::Ordering::SeqCst);
    let first_error = ctrl.board.all().into_iter().find_map(|v| v.last_error);
    println!(
        "closing provisioner: {machines} machines, {received} requests received, failed on our side: {failed_runs} runs, {failed_polls} polls; first error: {first_error:?}"
    );
    assert_eq!((failed_runs, failed_polls), (0, 0));
    assert_eq!(received, 2 * machines, "one POST and one GET per machine");
    stop(ctrl).await;
    sim.stop().await;
}
