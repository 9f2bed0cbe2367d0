//! A controller that stops reading MAAS must be visible, and the poller must not spin:
//! issue 12 items 2 and 15, issue 11 items 7 and 8, issue 14 items 4 and 5. Against the
//! simulator over HTTP; the SIGHUP test runs the real binary.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use maas_flow::actors::poller::Halt;
use maas_flow::run::Controller;
use maas_flow::sim::{scenario, ControllerKind, Faults, Sim, SimController};

const BIN: &str = env!("CARGO_BIN_EXE_maas-flow");

async fn get(url: &str) -> (u16, String) {
    let res = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
        .get(url)
        .send()
        .await;
    match res {
        Ok(mut r) => {
            let body = r.body().limit(16 << 20).await.unwrap_or_default();
            (
                r.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
        Err(_) => (0, String::new()),
    }
}

/// The value of one sample (`name{labels}`) in the controller's metrics, 0 if absent.
fn metric(ctrl: &Controller, sample: &str) -> f64 {
    ctrl.metrics
        .render("")
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Poll `url` until its status is `code` (bounded), returning the body.
async fn wait_status(url: &str, code: u16, limit: Duration) -> String {
    let start = std::time::Instant::now();
    loop {
        let (c, body) = get(url).await;
        if c == code {
            return body;
        }
        assert!(
            start.elapsed() < limit,
            "{url} did not answer {code} within {limit:?} (last {c}: {body})"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 11 item 7: a list slower than the period used to wake the poller for every
/// tick it skipped (3,302 skips in one 3.6 s list). The next list is now scheduled from
/// the completion of the current one, so a slow list costs no wake-ups, also after the
/// zone-filter fallback; and (item 8) that fallback is not a failed poll.
#[actix_rt::test]
async fn a_list_slower_than_the_period_is_not_polled_over() {
    let sim = start_sim(scenario::rack(2), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("maas.period", "100ms"),
            ("events.enabled", "false"),
            ("lifecycle.target", "ready"),
            // `nowhere` is refused by MAAS: the fallback filters on our side.
            (
                "filter.json",
                r#"{"hosts": {"include": [".*"]}, "zones": {"include": ["^default$", "^nowhere$"]}}"#,
            ),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    let ok_before = ctrl.board.global().polls_ok;
    sim.set_faults(Faults {
        slow_rate: 1.0,
        slow_ms: 800,
        scope: Some("list".into()),
        ..Faults::default()
    });
    wait_for("three slow lists", Duration::from_secs(40), || {
        ctrl.board.global().polls_ok >= ok_before + 3
    })
    .await;
    let skipped = metric(&ctrl, "maas_flow_polls_total{kind=\"skipped_in_flight\"}");
    println!("skipped_in_flight after three 800 ms lists with a 100 ms period: {skipped}");
    assert!(
        skipped <= 2.0,
        "the poller woke {skipped} times for nothing"
    );
    assert_eq!(
        metric(&ctrl, "maas_flow_fallbacks_total{kind=\"zone_filter\"}"),
        1.0
    );
    assert_eq!(
        metric(&ctrl, "maas_flow_polls_total{kind=\"failed\"}"),
        0.0,
        "the zone-filter fallback is not a failed poll"
    );
    assert_eq!(ctrl.board.global().polls_failed, 0);
    stop(ctrl).await;
    sim.stop().await;
}

/// Issue 12 item 2: a poller that stops leaves no silent zombie. `/healthz` and
/// `/readyz` fail while it is gone, the watchdog starts a new one (counted), and lists
/// resume.
#[actix_rt::test]
async fn a_stopped_poller_fails_the_probes_and_is_restarted() {
    let sim = start_sim(scenario::rack(2), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("maas.period", "200ms"),
            ("events.enabled", "false"),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    let base = format!("http://{}", ctrl.http_addr.unwrap());
    settle(&ctrl, Duration::from_secs(30)).await;
    wait_status(&format!("{base}/readyz"), 200, Duration::from_secs(10)).await;
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    // A panic in a handler (what an overflow on outside data used to do), then a stop.
    for (n, how) in [Halt::Panic, Halt::Stop].into_iter().enumerate() {
        let first = ctrl.poller.addr();
        ctrl.poller.do_send(how);
        let body = wait_status(&format!("{base}/healthz"), 503, Duration::from_secs(10)).await;
        assert!(body.contains("poller stopped"), "{how:?}: {body}");
        let (code, body) = get(&format!("{base}/readyz")).await;
        assert!(
            code == 503 || metric(&ctrl, "maas_flow_poller_restarts_total") > n as f64,
            "{how:?}: readyz {code}: {body}"
        );
        wait_status(&format!("{base}/healthz"), 200, Duration::from_secs(20)).await;
        assert!(!first.connected());
        assert!(ctrl.poller.addr().connected(), "a new poller runs");
        assert_eq!(
            metric(&ctrl, "maas_flow_poller_restarts_total"),
            (n + 1) as f64
        );
        let ok = ctrl.board.global().polls_ok;
        wait_for("lists to resume", Duration::from_secs(20), || {
            ctrl.board.global().polls_ok >= ok + 2
        })
        .await;
        wait_status(&format!("{base}/readyz"), 200, Duration::from_secs(10)).await;
    }
    let status = get(&format!("{base}/api/v1/status")).await.1;
    assert!(status.contains("\"poller_restarts\":2"), "{status}");
    stop(ctrl).await;
    sim.stop().await;
}

/// Issue 12 item 2: a MAAS that hangs fails no request, so no failure is ever counted;
/// `/readyz` must still fail once no read has succeeded for N periods, and recover.
#[actix_rt::test]
async fn readyz_fails_when_no_read_succeeds_for_n_periods() {
    let sim = start_sim(scenario::rack(1), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("maas.period", "200ms"),
            ("maas.list_timeout", "60s"),
            ("http.unready_after_periods", "3"),
            ("events.enabled", "false"),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    let base = format!("http://{}", ctrl.http_addr.unwrap());
    settle(&ctrl, Duration::from_secs(30)).await;
    wait_status(&format!("{base}/readyz"), 200, Duration::from_secs(10)).await;
    assert!(metric(&ctrl, "maas_flow_last_successful_read_timestamp_seconds") > 1.6e9);
    sim.set_faults(Faults {
        slow_rate: 1.0,
        slow_ms: 4000,
        scope: Some("list".into()),
        ..Faults::default()
    });
    let body = wait_status(&format!("{base}/readyz"), 503, Duration::from_secs(10)).await;
    assert!(body.contains("no successful MAAS read"), "{body}");
    assert_eq!(
        ctrl.board.global().consecutive_failures,
        0,
        "nothing failed"
    );
    sim.set_faults(Faults::default());
    wait_status(&format!("{base}/readyz"), 200, Duration::from_secs(20)).await;
    stop(ctrl).await;
    sim.stop().await;
}

/// Issue 11 item 8: events of region/rack controllers name a node that is not a
/// machine; the feed used to re-read `machines/?id=<controller>` (answer `[]`) for every
/// such event. Each is read once, then remembered (4 events of 2 controllers: 2 reads).
#[actix_rt::test]
async fn controller_events_are_read_once_then_remembered() {
    let sim = start_sim(scenario::rack(1), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("maas.period", "60s"),
            ("events.interval", "100ms"),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    sim.with_world(|w| {
        w.add_controller(SimController::new(
            "rackct",
            "rack-1",
            ControllerKind::RackController,
        ));
        w.add_controller(SimController::new(
            "regnct",
            "region-1",
            ControllerKind::RegionAndRackController,
        ));
    });
    let controller_event = |n: u32| {
        sim.with_world(|w| w.controller_event(n as usize % 2, "Finished importing boot images."))
    };
    let seen = |ctrl: &Controller| metric(ctrl, "maas_flow_events_seen_total");
    let before_events = seen(&ctrl);
    let before_deltas = metric(&ctrl, "maas_flow_deltas_total");
    for n in 0..4 {
        controller_event(n);
        let want = before_events + f64::from(n + 1);
        wait_for("the event to be read", Duration::from_secs(10), || {
            seen(&ctrl) >= want
        })
        .await;
    }
    // Give another read time to happen if it would.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let deltas = metric(&ctrl, "maas_flow_deltas_total") - before_deltas;
    assert_eq!(deltas, 2.0, "two controllers were read {deltas} times");
    assert_eq!(
        metric(&ctrl, "maas_flow_fallbacks_total{kind=\"error\"}"),
        0.0
    );
    stop(ctrl).await;
    sim.stop().await;
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 11 item 8: after a mapping rename every log line carried two machine spans
/// (`machine{..hostname=node}:machine{..hostname=mapped}`). One span, the current name.
#[actix_rt::test]
async fn a_renamed_machine_logs_under_one_span_with_its_new_name() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let sim = start_sim(scenario::rack(1), fast_timings());
    let m0 = sim.machines()[0].clone();
    let mappings = format!(
        r#"{{"{}": {{"hostname": "mapped-1"}}}}"#,
        m0.interfaces[0].mac
    );
    let ctrl = start(
        &sim,
        &[
            ("lifecycle.mappings", &mappings),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    assert_eq!(ops_for(&sim, &m0.system_id), vec!["PUT", "commission"]);
    stop(ctrl).await;
    sim.stop().await;
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let commission = text
        .lines()
        .find(|l| l.contains("sending commission"))
        .unwrap_or_else(|| panic!("no commission line in:\n{text}"));
    assert!(commission.contains("hostname=mapped-1"), "{commission}");
    for line in text.lines() {
        assert!(
            line.matches("machine{").count() <= 1,
            "two machine spans: {line}"
        );
    }
}

/// A port nothing listens on right now, for a listener the test must reach before the
/// controller's start-up returns.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start a controller whose start-up never finishes (identity keeps failing) and
/// return its listener's base URL.
fn start_stuck(sim: &Sim, extra: &[(&str, &str)]) -> String {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut o: Vec<(&str, &str)> = vec![("http.listen", &listen), ("maas.period", "200ms")];
    o.extend_from_slice(extra);
    let cfg = config_for(sim, &o);
    actix_rt::spawn(async move {
        let _ = maas_flow::run::start(&cfg).await;
    });
    format!("http://{listen}")
}

fn status_field(body: &str, key: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(body).unwrap_or_default()[key].clone()
}

/// Issue 14 item 4: with the key refused at start-up, `/api/v1/status` said 0 failures
/// and the consecutive-failure gauge stayed 0, so no alert could fire.
#[actix_rt::test]
async fn a_refused_key_at_start_up_counts_as_failures() {
    let sim = start_sim(scenario::rack(1), fast_timings());
    let base = start_stuck(&sim, &[("maas.api_key", "maasflowsim:simtoken:wrong")]);
    let limit = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = get(&format!("{base}/api/v1/status")).await;
        if code == 200 && status_field(&body, "consecutive_failures").as_u64() >= Some(2) {
            assert!(status_field(&body, "polls_failed").as_u64() >= Some(2));
            let err = status_field(&body, "last_poll_error");
            assert!(err.to_string().contains("401"), "{err}");
            break;
        }
        assert!(
            std::time::Instant::now() < limit,
            "no failures counted: {body}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = get(&format!("{base}/metrics")).await.1;
    let gauge: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("maas_flow_consecutive_poll_failures "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(gauge >= 2.0, "gauge {gauge}");
    let (code, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(code, 503);
    assert!(body.contains("401"), "{body}");
    sim.stop().await;
}

/// Issue 14 item 5: a `maas.url` without `/MAAS` makes MAAS answer 404 to everything;
/// say so instead of "MAAS is not answering yet", and warn at `check-config`.
#[actix_rt::test]
async fn a_url_without_maas_is_named_as_the_cause() {
    let sim = start_sim(scenario::rack(1), fast_timings());
    let root = format!("http://{}/", sim.addr);
    let base = start_stuck(&sim, &[("maas.url", &root)]);
    let limit = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = get(&format!("{base}/api/v1/status")).await;
        let err = status_field(&body, "last_poll_error").to_string();
        if code == 200 && err.contains("does maas.url end in /MAAS?") {
            assert!(err.contains("404"), "{err}");
            break;
        }
        assert!(std::time::Instant::now() < limit, "no hint: {body}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // With the username configured there is no identity read: the lists say it.
    let ctrl = start(
        &sim,
        &[
            ("maas.url", &root),
            ("maas.username", "maas-flow"),
            ("events.enabled", "false"),
        ],
    )
    .await;
    wait_for(
        "the list error to name the cause",
        Duration::from_secs(20),
        || {
            ctrl.board
                .global()
                .last_poll_error
                .is_some_and(|e| e.contains("does maas.url end in /MAAS?") && e.contains("404"))
        },
    )
    .await;
    stop(ctrl).await;
    sim.stop().await;
    let out = Command::new(BIN)
        .args([
            "check-config",
            "--maas",
            "http://maas.example:5240/",
            "--api-key",
            "a:b:c",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning:") && err.contains("does not end in /MAAS"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args([
            "check-config",
            "--maas",
            "http://maas.example:5240/MAAS/",
            "--api-key",
            "a:b:c",
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("/MAAS"));
}

/// Issue 12 item 15: what a reload applies at run time besides the filter: the
/// concurrency limits grow at once and shrink as permits come back; a change that
/// needs a restart is reported, not half-applied.
#[actix_rt::test]
async fn a_reload_resizes_the_limits_and_names_what_needs_a_restart() {
    let sim = start_sim(scenario::rack(1), fast_timings());
    let url = sim.provisioner_url();
    let base: Vec<(&str, &str)> = vec![("lifecycle.target", "ready"), ("provision.url", &url)];
    let with = |extra: &[(&str, &str)]| {
        let mut o = base.clone();
        o.extend_from_slice(extra);
        config_for(&sim, &o)
    };
    let old = with(&[
        ("limits.max_ops_in_flight", "4"),
        ("provision.max_concurrent", "3"),
    ]);
    let ctrl = maas_flow::run::start(&old).await.unwrap();
    settle(&ctrl, Duration::from_secs(30)).await;
    assert_eq!(ctrl.op_permits.available_permits(), 4);
    let grown = with(&[
        ("limits.max_ops_in_flight", "8"),
        ("provision.max_concurrent", "5"),
    ]);
    assert!(ctrl.reload(&old, &grown).is_empty(), "limits apply at once");
    assert_eq!(ctrl.op_permits.available_permits(), 8);
    let prov = ctrl.provision_permits.clone().unwrap();
    assert_eq!(prov.available_permits(), 5);
    let shrunk = with(&[
        ("limits.max_ops_in_flight", "2"),
        ("provision.max_concurrent", "5"),
        ("lifecycle.distro_series", "noble"),
    ]);
    assert_eq!(ctrl.reload(&grown, &shrunk), vec!["lifecycle"]);
    wait_for("the limit to shrink", Duration::from_secs(10), || {
        ctrl.op_permits.available_permits() == 2
    })
    .await;
    stop(ctrl).await;
    sim.stop().await;
}

#[allow(unsafe_code)] // kill(2) on our own child: see the SAFETY comment.
fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn write_filter(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
}

/// Issue 12 item 15: SIGHUP used to kill the process. It reloads the configuration: a
/// new filter is acted on, a broken file is rejected with a clear line and the process
/// keeps working with the previous configuration.
#[actix_rt::test]
async fn sighup_reloads_the_filter_and_rejects_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(scenario::rack(3), fast_timings());
    let ids: Vec<String> = sim.machines().iter().map(|m| m.system_id.clone()).collect();
    let filter = dir.path().join("filter.json");
    // As in the original tool, a JSON filter selects nothing in a dimension it leaves out.
    let one = |n: usize| {
        format!(
            r#"{{"hosts": {{"include": ["^node-0000{n}$"]}}, "zones": {{"include": ["^default$"]}}}}"#
        )
    };
    write_filter(&filter, &one(1));
    let log = dir.path().join("stderr");
    let mut child = Command::new(BIN)
        .args([
            "--maas",
            &sim.base_url,
            "--api-key",
            &sim.api_key(),
            "--period",
            "200ms",
            "--target",
            "ready",
            "--listen",
            "",
            "--log-format",
            "text",
        ])
        .arg("--filter")
        .arg(format!("@{}", filter.display()))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let commissioned = |i: usize| ops_for(&sim, &ids[i]).contains(&"commission".to_string());
    let alive = |c: &mut Child| c.try_wait().unwrap().is_none();
    wait_for("node 1 commissioned", Duration::from_secs(30), || {
        commissioned(0)
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    assert!(!commissioned(1), "node 2 is not selected yet");

    // A new filter: node 2 is selected after SIGHUP.
    write_filter(&filter, &one(2));
    signal(&child, libc::SIGHUP);
    wait_for("node 2 commissioned", Duration::from_secs(30), || {
        commissioned(1)
    })
    .await;
    assert!(alive(&mut child), "SIGHUP does not kill the process");

    // A broken file is rejected; the process keeps running on the previous one.
    write_filter(&filter, "{ not json");
    signal(&child, libc::SIGHUP);
    wait_for("the rejection line", Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("configuration rejected")
    })
    .await;
    assert!(alive(&mut child));
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("configuration rejected"))
        .unwrap();
    assert!(line.contains("ERROR") && line.contains("filter"), "{line}");

    // Still working: a valid file after the broken one is applied.
    write_filter(&filter, &one(3));
    signal(&child, libc::SIGHUP);
    wait_for("node 3 commissioned", Duration::from_secs(30), || {
        commissioned(2)
    })
    .await;
    assert!(alive(&mut child));
    signal(&child, libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success());
    assert!(sim.duplicate_ops().is_empty());
    sim.stop().await;
}
