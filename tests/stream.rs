//! The machine list is parsed while it arrives and never held whole: a `maas-sim` child
//! process serves a real-shaped list of thousands of machines, the real controller reads
//! it (API 2.0 `machines/` and API 1.0 `nodes/?op=list`), and this test binary's own
//! allocator records the most heap the controller held at once. Buffering the body, as
//! the controller once did, needs at least the body's size; streaming needs one snapshot
//! of compact records plus a few chunks.

use std::alloc::{GlobalAlloc, Layout};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use maas_flow::config::{self, Sources};

struct Peak;
static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

#[allow(unsafe_code)] // a counting global allocator is unsafe by its trait's contract.
unsafe impl GlobalAlloc for Peak {
    // SAFETY (all three): forwards to the system allocator with the caller's arguments.
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size() as i64, Ordering::Relaxed) + l.size() as i64;
        PEAK.fetch_max(now, Ordering::Relaxed);
        std::alloc::System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        std::alloc::System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let now = LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed) + n as i64
            - l.size() as i64;
        PEAK.fetch_max(now, Ordering::Relaxed);
        std::alloc::System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

const SIM: &str = env!("CARGO_BIN_EXE_maas-sim");

struct SimProcess {
    child: Child,
    url: String,
    key: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(machines: usize) -> SimProcess {
    let mut child = Command::new(SIM)
        .args(["--listen", "127.0.0.1:0", "--workers", "1", "--api1", "on"])
        .args(["--machines", &machines.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("maas-sim starts");
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let (mut url, mut key) = (String::new(), String::new());
    let mut line = String::new();
    for _ in 0..50 {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(u) = line.strip_prefix("MAAS URL:") {
            url = u.trim().to_string();
        }
        if let Some(k) = line.strip_prefix("API key:") {
            key = k.trim().to_string();
        }
        if line.starts_with("inspect:") {
            break;
        }
    }
    assert!(
        !url.is_empty() && !key.is_empty(),
        "maas-sim printed its URL and key"
    );
    SimProcess { child, url, key }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Read one full list with the real controller; returns (peak heap growth, list bytes,
/// machines in the list).
async fn one_list(sim: &SimProcess, version: &str) -> (i64, f64, usize) {
    let cfg = config::load(&Sources {
        file: None,
        env: Vec::new(),
        overrides: vec![
            ("maas.url".into(), sim.url.clone()),
            ("maas.api_key".into(), sim.key.clone()),
            ("maas.api_version".into(), version.into()),
            ("maas.username".into(), "maas-flow".into()),
            ("maas.period".into(), "10m".into()),
            ("events.enabled".into(), "false".into()),
            ("http.listen".into(), "".into()),
            ("log.level".into(), "error".into()),
            ("preview".into(), "true".into()),
            // Select nothing: what is measured is the list's handling, not node actors.
            (
                "filter.json".into(),
                r#"{"hosts":{"include":["no-such-host"],"exclude":[]}}"#.into(),
            ),
        ],
    })
    .expect("valid config");
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let ctrl = maas_flow::run::start(&cfg)
        .await
        .expect("controller starts");
    let started = std::time::Instant::now();
    while ctrl.board.global().polls_ok == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no list within 60 s: {:?}",
            ctrl.board.global().last_poll_error
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let text = ctrl.metrics.render("");
    let bytes = metric(&text, "maas_flow_maas_response_bytes_total{kind=\"list\"}");
    let n = ctrl.board.global().machines_in_list;
    maas_flow::shutdown::drain(&ctrl, Duration::from_secs(2)).await;
    (peak, bytes, n)
}

#[actix_rt::test]
async fn a_large_list_is_parsed_while_it_arrives_never_held_whole() {
    let machines = 3_000;
    let sim = start_sim(machines);
    // API 2.0 machines are ~7.5 KB of JSON each: the bound is a third of the body. API 1.0
    // nodes (TestServer-shaped) are ~0.6 KB, about what a record costs, so for 1.0 this
    // checks that the same streamed path reads the whole list.
    for (version, per_machine, bound) in [("2.0", 5_000.0, Some(3.0)), ("1.0", 400.0, None)] {
        let (peak, bytes, n) = one_list(&sim, version).await;
        assert_eq!(n, machines, "API {version}: every machine parsed");
        assert!(
            bytes > per_machine * machines as f64,
            "API {version}: a real-shaped list ({bytes} bytes)"
        );
        eprintln!(
            "API {version}: {machines} machines, list {:.1} MB, peak heap growth {:.1} MB",
            bytes / 1e6,
            peak as f64 / 1e6
        );
        if let Some(bound) = bound {
            assert!(
                (peak as f64) < bytes / bound,
                "API {version}: the controller held {peak} bytes at once for a {bytes}-byte list"
            );
        }
    }
}

#[actix_rt::test]
async fn a_list_over_max_body_is_cut_off_and_nothing_is_published() {
    // ~2.2 MB of machines against a 1 MiB limit.
    let sim = start_sim(300);
    let cfg = config::load(&Sources {
        file: None,
        env: Vec::new(),
        overrides: vec![
            ("maas.url".into(), sim.url.clone()),
            ("maas.api_key".into(), sim.key.clone()),
            ("maas.max_body_mib".into(), "1".into()),
            ("maas.period".into(), "10m".into()),
            ("events.enabled".into(), "false".into()),
            ("http.listen".into(), "".into()),
            ("log.level".into(), "error".into()),
            ("preview".into(), "true".into()),
        ],
    })
    .expect("valid config");
    let ctrl = maas_flow::run::start(&cfg)
        .await
        .expect("controller starts");
    let started = std::time::Instant::now();
    while ctrl.board.global().polls_failed == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the oversized list was not refused within 60 s"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let g = ctrl.board.global();
    let error = g.last_poll_error.clone().unwrap_or_default();
    assert!(error.contains("larger than the limit"), "{error}");
    assert_eq!(g.polls_ok, 0);
    assert_eq!(g.machines_in_list, 0);
    assert!(
        ctrl.board.is_empty(),
        "nothing of the cut list was published"
    );
    maas_flow::shutdown::drain(&ctrl, Duration::from_secs(2)).await;
}
