//! The scale harness: the real controller against the simulator (run as a separate
//! `maas-sim` process, so this process's CPU and memory are the controller's alone),
//! printing one table row per scenario.
//!
//! ```text
//! cargo bench --bench scale                       # 100, 1,000, 10,000, hung, feed on/off
//! cargo bench --bench scale -- 1000               # only scenarios with 1,000 machines
//! cargo bench --bench scale -- soak 600           # the soak: 1,000 machines, 1% faults, 600 s
//! cargo bench --bench scale -- rest               # memory at rest: 1,000 / 10,000 / 50,000, API 1.0 2,000
//! cargo bench --bench scale -- rest 10000         # one at-rest size (each runs in its own process)
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use maas_flow::actors::poller::TickLateness;
use maas_flow::config::{self, Sources};

/// mimalloc (the binaries' allocator), counting live bytes for the at-rest figures.
struct Counting;
static LIVE: AtomicI64 = AtomicI64::new(0);
#[allow(unsafe_code)] // a counting global allocator is unsafe by its trait's contract.
unsafe impl GlobalAlloc for Counting {
    // SAFETY (all three): forwards to mimalloc with the caller's own arguments.
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        mimalloc::MiMalloc.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        mimalloc::MiMalloc.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        mimalloc::MiMalloc.realloc(p, l, n)
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

const SIM: &str = env!("CARGO_BIN_EXE_maas-sim");

struct Scenario {
    name: &'static str,
    machines: usize,
    period: Duration,
    events: bool,
    hang: bool,
    commission: Duration,
    deploy: Duration,
    provision: Duration,
    poll: Duration,
}

struct SimProcess {
    child: Child,
    url: String,
    key: String,
    addr: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(s: &Scenario, extra: &[&str]) -> SimProcess {
    let secs = |d: Duration| format!("{}ms", d.as_millis());
    let mut cmd = Command::new(SIM);
    cmd.args(["--listen", "127.0.0.1:0", "--provisioner", "--workers", "1"])
        .args(["--machines", &s.machines.to_string()])
        .args([
            "--commission-time",
            &secs(s.commission),
            "--deploy-time",
            &secs(s.deploy),
        ])
        .args(["--provision-time", &secs(s.provision)])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if s.hang {
        cmd.args(["--provision-hang", "aaaaaa"]);
    }
    let mut child = cmd.spawn().expect("maas-sim starts");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let (mut url, mut key) = (String::new(), String::new());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(u) = line.strip_prefix("MAAS URL:") {
            url = u.trim().to_string();
        }
        if let Some(k) = line.strip_prefix("API key:") {
            key = k.trim().to_string();
        }
        if line.starts_with("inspect:") {
            break;
        }
        line.clear();
    }
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/MAAS")
        .to_string();
    SimProcess {
        child,
        url,
        key,
        addr,
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat; `after` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn fetch_json(url: &str) -> serde_json::Value {
    let mut r = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
        .get(url)
        .send()
        .await
        .expect("simulator answers");
    let body = r.body().limit(1 << 30).await.unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// Duplicates: the same accepted operation twice in a row on one machine.
fn duplicates(ops: &serde_json::Value) -> (usize, usize) {
    let mut last: std::collections::HashMap<String, String> = Default::default();
    let (mut accepted, mut dups) = (0, 0);
    for o in ops.as_array().unwrap() {
        let code = o["http_status"].as_u64().unwrap_or(0);
        if o["method"] == "GET" || !(200..300).contains(&code) {
            continue;
        }
        accepted += 1;
        let sid = o["system_id"].as_str().unwrap_or("").to_string();
        let key = format!(
            "{} {} {}",
            o["op"],
            o["status_before"],
            if o["op"].as_str().unwrap_or("").starts_with("set_") {
                o["params"].to_string()
            } else {
                String::new()
            }
        );
        if last.get(&sid) == Some(&key) {
            dups += 1;
        }
        last.insert(sid, key);
    }
    (accepted, dups)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

struct Row {
    converge: Duration,
    ideal: Duration,
    ops_per_machine: f64,
    dups: usize,
    lists_per_period: f64,
    cpu: f64,
    rss_mb: f64,
    rss_growth_kb_per_machine: f64,
    jitter: Duration,
    bytes: (f64, f64, f64),
}

#[allow(unsafe_code)] // mi_collect: see the SAFETY comment.
async fn run(s: &Scenario) -> Row {
    let sim = start_sim(s, &[]);
    let rss_before = status_kb("VmRSS:");
    let mut o: Vec<(String, String)> = vec![
        ("maas.url".into(), sim.url.clone()),
        ("maas.api_key".into(), sim.key.clone()),
        ("maas.period".into(), format!("{}ms", s.period.as_millis())),
        (
            "provision.url".into(),
            format!("http://{}/provisioner", sim.addr),
        ),
        (
            "provision.poll_interval".into(),
            format!("{}ms", s.poll.as_millis()),
        ),
        ("provision.max_concurrent".into(), "2000".into()),
        ("limits.max_ops_in_flight".into(), "32".into()),
        ("events.enabled".into(), s.events.to_string()),
        ("events.interval".into(), "1s".into()),
        ("http.listen".into(), "".into()),
        ("log.level".into(), "warn".into()),
    ];
    o.push(("maas.list_timeout".into(), "300s".into()));
    let state = tempfile::tempdir().unwrap();
    o.push(("state_dir".into(), state.path().display().to_string()));
    let cfg = config::load(&Sources {
        file: None,
        env: vec![],
        overrides: o,
    })
    .unwrap();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let ctrl = maas_flow::run::start(&cfg).await.unwrap();
    let want = if s.hang { s.machines - 1 } else { s.machines };
    let limit = Duration::from_secs(1800);
    loop {
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        let done = ctrl
            .board
            .count_by(|v| v.provisioning.clone())
            .get("provisioned")
            .copied()
            .unwrap_or(0);
        if done >= want || t0.elapsed() > limit {
            break;
        }
    }
    let converge = t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    // Hand freed memory (list buffers) back to the OS so RSS shows what is kept.
    // SAFETY: mi_collect only returns free pages; it is safe to call at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let jitter = ctrl.poller.send(TickLateness).await.unwrap_or_default();
    let m = ctrl.metrics.render("");
    let lists = metric(&m, "maas_flow_polls_total{kind=\"ok\"}")
        + metric(&m, "maas_flow_polls_total{kind=\"failed\"}");
    let bytes = (
        metric(&m, "maas_flow_maas_response_bytes_total{kind=\"list\"}"),
        metric(&m, "maas_flow_maas_response_bytes_total{kind=\"delta\"}"),
        metric(&m, "maas_flow_maas_response_bytes_total{kind=\"events\"}"),
    );
    let rss_after = status_kb("VmRSS:");
    let ops = fetch_json(&format!("http://{}/_sim/ops", sim.addr)).await;
    let (accepted, dups) = duplicates(&ops);
    maas_flow::shutdown::drain(&ctrl, Duration::from_secs(2)).await;
    let detect = if s.events {
        Duration::from_secs(1)
    } else {
        s.period
    };
    Row {
        converge,
        ideal: s.commission + s.deploy + s.provision + detect * 2 + s.poll,
        ops_per_machine: accepted as f64 / s.machines as f64,
        dups,
        lists_per_period: lists / (converge.as_secs_f64() / s.period.as_secs_f64()).max(1.0),
        cpu,
        rss_mb: status_kb("VmHWM:") as f64 / 1024.0,
        rss_growth_kb_per_machine: rss_after.saturating_sub(rss_before) as f64 / s.machines as f64,
        jitter,
        bytes,
    }
}

fn scenarios() -> Vec<Scenario> {
    let base = |name, machines, period_s: u64, events, hang| Scenario {
        name,
        machines,
        period: Duration::from_secs(period_s),
        events,
        hang,
        commission: Duration::from_secs(5),
        deploy: Duration::from_secs(8),
        provision: Duration::from_secs(3),
        poll: Duration::from_secs(1),
    };
    let short = |name, period_s: u64, events| Scenario {
        commission: Duration::from_secs(2),
        deploy: Duration::from_secs(3),
        provision: Duration::from_secs(1),
        ..base(name, 1_000, period_s, events, false)
    };
    vec![
        short("poll 15s", 15, false),
        short("feed 15s", 15, true),
        base("poll", 100, 2, false, false),
        base("poll", 1_000, 2, false, false),
        base("poll+hung", 1_000, 2, false, true),
        base("poll 15s", 1_000, 15, false, false),
        base("feed 15s", 1_000, 15, true, false),
        base("feed 15s", 10_000, 15, true, false),
        base("poll", 10_000, 5, false, false),
    ]
}

async fn soak(seconds: u64) {
    let s = Scenario {
        name: "soak",
        machines: 1_000,
        period: Duration::from_secs(5),
        events: true,
        hang: false,
        commission: Duration::from_secs(2),
        deploy: Duration::from_secs(3),
        provision: Duration::from_secs(1),
        poll: Duration::from_secs(1),
    };
    let sim = start_sim(
        &s,
        &[
            "--error-rate",
            "0.01",
            "--unavailable-rate",
            "0.005",
            "--drop-rate",
            "0.005",
        ],
    );
    let mut o: Vec<(String, String)> = vec![
        ("maas.url".into(), sim.url.clone()),
        ("maas.api_key".into(), sim.key.clone()),
        ("maas.period".into(), "5s".into()),
        (
            "provision.url".into(),
            format!("http://{}/provisioner", sim.addr),
        ),
        ("provision.poll_interval".into(), "1s".into()),
        ("provision.retry_base".into(), "1s".into()),
        ("provision.max_concurrent".into(), "2000".into()),
        ("limits.retry_base".into(), "500ms".into()),
        ("limits.retry_cap".into(), "5s".into()),
        ("http.listen".into(), "".into()),
        ("log.level".into(), "error".into()),
    ];
    let state = tempfile::tempdir().unwrap();
    o.push(("state_dir".into(), state.path().display().to_string()));
    let cfg = config::load(&Sources {
        file: None,
        env: vec![],
        overrides: o,
    })
    .unwrap();
    let ctrl = maas_flow::run::start(&cfg).await.unwrap();
    let key = maas_flow::maas::ApiKey::parse(&sim.key).unwrap();
    let http = awc::Client::default();
    let t0 = Instant::now();
    let mut rss_start = 0;
    let mut released = 0usize;
    let mut n = 0usize;
    // Release a few provisioned machines every second; the controller redeploys them.
    while t0.elapsed() < Duration::from_secs(seconds) {
        actix_rt::time::sleep(Duration::from_secs(1)).await;
        if rss_start == 0 && t0.elapsed() > Duration::from_secs(60) {
            rss_start = status_kb("VmRSS:");
        }
        let views = ctrl.board.all();
        for v in views
            .iter()
            .filter(|v| v.provisioning == "provisioned")
            .skip(n % 7)
            .step_by(97)
            .take(5)
        {
            let url = format!("{}/api/2.0/machines/{}/?op=release", sim.url, v.system_id);
            if let Ok(r) = http
                .post(&url)
                .insert_header(("Authorization", key.authorization()))
                .send_form(&[("comment", "soak")])
                .await
            {
                if r.status().is_success() {
                    released += 1;
                }
            }
        }
        n += 1;
    }
    // Stop releasing, let everything converge.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(300) {
        actix_rt::time::sleep(Duration::from_secs(1)).await;
        let c = ctrl.board.count_by(|v| v.provisioning.clone());
        if c.get("provisioned").copied().unwrap_or(0) == 1000 {
            break;
        }
    }
    let rss_end = status_kb("VmRSS:");
    let ops = fetch_json(&format!("http://{}/_sim/ops", sim.addr)).await;
    let (accepted, dups) = duplicates(&ops);
    let provisioned = ctrl
        .board
        .count_by(|v| v.provisioning.clone())
        .get("provisioned")
        .copied()
        .unwrap_or(0);
    println!(
        "soak {seconds}s: 1000 machines, 1% faults, {released} releases; all provisioned at end: {} ({provisioned}/1000) after {:.0}s settle; \
         accepted ops {accepted}, duplicates {dups}; RSS at 60s {:.1} MB, at end {:.1} MB",
        provisioned == 1000,
        settle.elapsed().as_secs_f64(),
        rss_start as f64 / 1024.0,
        rss_end as f64 / 1024.0
    );
}

/// One at-rest measurement: `n` machines already Deployed, owned by us and provisioned
/// (the outcome annotation set), so the controller only lists and decides.
struct Rest {
    machines: usize,
    api1: bool,
    period: Duration,
}

/// Run each at-rest size in a process of its own, so one size's peak and allocator
/// leftovers do not colour the next.
fn rest_all() {
    println!(
        "{:<26} {:>9} {:>9} {:>11} {:>12} {:>12} {:>8} {:>10} {:>10} {:>10} {:>6}",
        "at rest",
        "RSS",
        "peak RSS",
        "RSS/mach",
        "live heap",
        "heap/mach",
        "list MB",
        "round trip",
        "handling",
        "scan floor",
        "ratio"
    );
    let exe = std::env::current_exe().expect("own path");
    for arg in ["1000", "10000", "50000", "api1-2000"] {
        let status = Command::new(&exe)
            .args(["rest", arg])
            .status()
            .expect("scale harness re-runs itself");
        if !status.success() {
            println!("rest {arg}: failed ({status})");
        }
    }
}

fn rest_scenario_file(r: &Rest) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "maas-flow-rest-{}-{}.toml",
        r.machines,
        std::process::id()
    ));
    let mut text = format!(
        "[[machine]]\nhostname = \"rest\"\ncount = {}\nstatus = \"deployed\"\nowner = \"maas-flow\"\npower_state = \"on\"\n",
        r.machines
    );
    if !r.api1 {
        text.push_str("annotations = { maas_flow_provisioned = \"2026-01-01T00:00:00Z\" }\n");
    }
    std::fs::write(&path, text).expect("scenario file written");
    path
}

#[allow(unsafe_code)] // mi_collect: see the SAFETY comments.
async fn rest_one(r: Rest) {
    let scenario = rest_scenario_file(&r);
    let s = Scenario {
        name: "rest",
        machines: r.machines,
        period: r.period,
        events: !r.api1,
        hang: false,
        commission: Duration::from_secs(1),
        deploy: Duration::from_secs(1),
        provision: Duration::from_secs(1),
        poll: Duration::from_secs(1),
    };
    let sim = start_sim(&s, &["--scenario", scenario.to_str().unwrap_or_default()]);
    let _ = std::fs::remove_file(&scenario);
    // SAFETY: mi_collect only returns free pages; it is safe to call at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let rss0 = status_kb("VmRSS:");
    let live0 = LIVE.load(Ordering::Relaxed);
    let mut o: Vec<(String, String)> = vec![
        ("maas.url".into(), sim.url.clone()),
        ("maas.api_key".into(), sim.key.clone()),
        ("maas.period".into(), format!("{}ms", r.period.as_millis())),
        ("maas.list_timeout".into(), "300s".into()),
        ("events.enabled".into(), (!r.api1).to_string()),
        ("http.listen".into(), "".into()),
        ("log.level".into(), "error".into()),
    ];
    if r.api1 {
        o.push(("maas.api_version".into(), "1.0".into()));
        o.push(("maas.username".into(), "maas-flow".into()));
    } else {
        o.push((
            "provision.url".into(),
            format!("http://{}/provisioner", sim.addr),
        ));
    }
    let cfg = config::load(&Sources {
        file: None,
        env: vec![],
        overrides: o,
    })
    .unwrap();
    let ctrl = maas_flow::run::start(&cfg).await.unwrap();
    let t0 = Instant::now();
    let done = if r.api1 { "none" } else { "provisioned" };
    loop {
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        let settled = ctrl.board.len() == r.machines && ctrl.board.all_settled();
        let c = ctrl
            .board
            .count_by(|v| v.provisioning.clone())
            .get(done)
            .copied()
            .unwrap_or(0);
        if (settled && c == r.machines) || t0.elapsed() > Duration::from_secs(600) {
            break;
        }
    }
    // At rest: three more full lists, then the allocator returns what it freed.
    let lists_at = |ctrl: &maas_flow::run::Controller| {
        metric(
            &ctrl.metrics.render(""),
            "maas_flow_polls_total{kind=\"ok\"}",
        )
    };
    let l0 = lists_at(&ctrl);
    let t1 = Instant::now();
    while lists_at(&ctrl) < l0 + 3.0 && t1.elapsed() < r.period * 10 {
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: as above.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let rss = status_kb("VmRSS:");
    let peak = status_kb("VmHWM:");
    let live = LIVE.load(Ordering::Relaxed) - live0;
    let m = ctrl.metrics.render("");
    let poll_sum = metric(&m, "maas_flow_poll_seconds_sum");
    let poll_n = metric(&m, "maas_flow_poll_seconds_count").max(1.0);
    let list_bytes = metric(&m, "maas_flow_maas_response_bytes_total{kind=\"list\"}")
        / metric(&m, "maas_flow_polls_total{kind=\"ok\"}").max(1.0);
    let rows = ctrl.board.len();
    maas_flow::shutdown::drain(&ctrl, Duration::from_secs(2)).await;
    // The floor: serde_json scanning the same bytes with IgnoredAny, in memory.
    let path = if r.api1 {
        "api/1.0/nodes/?op=list"
    } else {
        "api/2.0/machines/"
    };
    let body = fetch_signed(&sim, path).await;
    let scan = best_of(3, || {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).unwrap();
    });
    // The controller's handling of the same bytes: chunks through the client's body
    // channel to the streaming parser on another thread (the network is not counted).
    let version = if r.api1 {
        maas_flow::maas::ApiVersion::V1
    } else {
        maas_flow::maas::ApiVersion::V2
    };
    let chunks: Vec<bytes::Bytes> = body
        .chunks(32 * 1024)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    // (Fed from a plain thread: a blocking send is not allowed on the runtime's thread.)
    let machines = r.machines;
    let handling = std::thread::spawn(move || {
        best_of(3, || {
            let (tx, reader) = maas_flow::maas::stream::ChunkReader::channel();
            let parser = std::thread::spawn(move || {
                maas_flow::maas::stream::parse_list(reader, version)
                    .unwrap()
                    .machines
                    .len()
            });
            let mut gather = maas_flow::maas::stream::Coalesce::default();
            for c in &chunks {
                if let Some(c) = gather.push(c.clone()) {
                    tx.blocking_send(Ok(c)).unwrap();
                }
            }
            if let Some(c) = gather.finish() {
                tx.blocking_send(Ok(c)).unwrap();
            }
            drop(tx);
            assert_eq!(parser.join().unwrap(), machines);
        })
    })
    .join()
    .expect("handling measured");
    let n = r.machines as f64;
    let label = if r.api1 {
        format!("{} API 1.0, period {}s", r.machines, r.period.as_secs())
    } else {
        format!("{} API 2.0, period {}s", r.machines, r.period.as_secs())
    };
    println!(
        "{:<26} {:>6.1} MB {:>6.1} MB {:>8.2} KB {:>9.1} MB {:>9.2} KB {:>8.1} {:>8.0}ms {:>8.1}ms {:>8.1}ms {:>6.2}   ({rows} rows; round trip: mean of {:.0} lists incl. the simulator's serving)",
        label,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        rss.saturating_sub(rss0) as f64 / n,
        live as f64 / 1e6,
        live as f64 / 1024.0 / n,
        list_bytes / 1e6,
        poll_sum / poll_n * 1000.0,
        handling.as_secs_f64() * 1000.0,
        scan.as_secs_f64() * 1000.0,
        handling.as_secs_f64() / scan.as_secs_f64(),
        poll_n,
    );
}

/// The fastest of `k` runs of `f`.
fn best_of(k: usize, mut f: impl FnMut()) -> Duration {
    (0..k)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// GET `path` from the simulator with the API key, whole.
async fn fetch_signed(sim: &SimProcess, path: &str) -> Vec<u8> {
    let key = maas_flow::maas::ApiKey::parse(&sim.key).unwrap();
    let mut r = awc::Client::builder()
        .timeout(Duration::from_secs(300))
        .finish()
        .get(format!("{}/{path}", sim.url))
        .insert_header(("Authorization", key.authorization()))
        .send()
        .await
        .expect("simulator answers");
    r.body().limit(1 << 30).await.unwrap().to_vec()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.len() == 1 && args[0] == "rest" {
        rest_all();
        return;
    }
    actix_rt::System::new().block_on(async move {
        if args.first().map(String::as_str) == Some("rest") {
            match args.get(1).map(String::as_str) {
                None => {}
                Some("api1-2000") => {
                    rest_one(Rest {
                        machines: 2_000,
                        api1: true,
                        period: Duration::from_secs(5),
                    })
                    .await
                }
                Some(n) => {
                    let machines = n.parse().expect("rest N");
                    rest_one(Rest {
                        machines,
                        api1: false,
                        period: Duration::from_secs(if machines > 10_000 { 15 } else { 5 }),
                    })
                    .await
                }
            }
            return;
        }
        if args.first().map(String::as_str) == Some("soak") {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(600);
            soak(secs).await;
            return;
        }
        let only: Option<usize> = args.first().and_then(|a| a.parse().ok());
        println!(
            "{:<10} {:>8} {:>6} {:>12} {:>9} {:>9} {:>6} {:>7} {:>5} {:>9} {:>8} {:>8} {:>9} {:>10} {:>24}",
            "scenario", "machines", "period", "commission/dep/prov", "converge", "ideal", "ratio", "ops/mach", "dups", "lists/per", "cpu s", "cores", "peak RSS", "jitter", "MB fetched list/delta/ev"
        );
        for s in scenarios().iter().filter(|s| only.is_none_or(|n| n == s.machines)) {
            let r = run(s).await;
            println!(
                "{:<10} {:>8} {:>5}s {:>8}/{}/{}s {:>8.1}s {:>8.1}s {:>6.2} {:>7.2} {:>5} {:>9.2} {:>8.2} {:>8.3} {:>7.0} MB {:>8.1}ms {:>8.1}/{:.2}/{:.2}   (+{:.1} KB/machine RSS)",
                s.name,
                s.machines,
                s.period.as_secs(),
                s.commission.as_secs(),
                s.deploy.as_secs(),
                s.provision.as_secs(),
                r.converge.as_secs_f64(),
                r.ideal.as_secs_f64(),
                r.converge.as_secs_f64() / r.ideal.as_secs_f64(),
                r.ops_per_machine,
                r.dups,
                r.lists_per_period,
                r.cpu,
                r.cpu / r.converge.as_secs_f64(),
                r.rss_mb,
                r.jitter.as_secs_f64() * 1000.0,
                r.bytes.0 / 1e6,
                r.bytes.1 / 1e6,
                r.bytes.2 / 1e6,
                r.rss_growth_kb_per_machine,
            );
        }
    });
}
