//! The scale harness: the real controller against the simulator (run as a separate
//! `maas-sim` process, so this process's CPU and memory are the controller's alone),
//! printing one table row per scenario.
//!
//! ```text
//! cargo bench --bench scale                       # 100, 1,000, 10,000, hung, feed on/off
//! cargo bench --bench scale -- 1000               # only scenarios with 1,000 machines
//! cargo bench --bench scale -- soak 600           # the soak: 1,000 machines, 1% faults, 600 s
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use maas_flow::actors::poller::TickLateness;
use maas_flow::config::{self, Sources};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        metric(&m, "maas_flow_maas_bytes_fetched_total{kind=\"list\"}"),
        metric(&m, "maas_flow_maas_bytes_fetched_total{kind=\"delta\"}"),
        metric(&m, "maas_flow_maas_bytes_fetched_total{kind=\"events\"}"),
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

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    actix_rt::System::new().block_on(async move {
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
