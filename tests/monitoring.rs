//! Monitoring as code: the live `/metrics` passes `promtool check metrics`, the alert
//! rules pass `promtool check rules` and their unit tests, and every metric the rules
//! and the Grafana dashboard query exists on a live `/metrics`.
//!
//! promtool comes from the Debian package `prometheus` (`.ci/run` installs it); without
//! it the promtool steps say so and the name checks still run.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use maas_flow::sim::{scenario, ProvisionerConfig};

const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/monitoring/alerts.yml");
const ALERT_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/monitoring/alerts_test.yml");
const GRAFANA: &str = include_str!("../monitoring/grafana-dashboard.json");

fn promtool() -> Option<&'static str> {
    let ok = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("NOTE: promtool is not installed (Debian package `prometheus`; .ci/run installs it); promtool checks skipped");
    }
    ok.then_some("promtool")
}

/// (exit success, stdout + stderr) of promtool with `args`, `stdin` fed in.
fn run_promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A controller that has run the demo rack to the end, and its `/metrics` text as a
/// plain scraper (curl, promtool) gets it.
async fn live_metrics() -> String {
    let sim = start_sim(scenario::demo_rack("maas-flow"), fast_timings());
    sim.set_provisioner(ProvisionerConfig {
        duration: Duration::from_millis(100),
        ..ProvisionerConfig::default()
    });
    let ctrl = start(&sim, &[("provision.url", &sim.provisioner_url())]).await;
    settle(&ctrl, Duration::from_secs(60)).await;
    let mut r = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
        .get(format!("http://{}/metrics", ctrl.http_addr.unwrap()))
        .send()
        .await
        .unwrap();
    let body = r.body().limit(16 << 20).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers().get("content-type").unwrap().to_str().unwrap();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    stop(ctrl).await;
    sim.stop().await;
    String::from_utf8(body.to_vec()).unwrap()
}

/// Sample names on a metrics page.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Metric names used in a PromQL expression.
fn names_in(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b(maas_flow_[a-z0-9_]+|process_[a-z0-9_]+)\b").unwrap();
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

#[actix_rt::test]
async fn live_metrics_pass_promtool_and_follow_the_conventions() {
    let text = live_metrics().await;
    // Conventions checked without promtool too.
    let status = regex::Regex::new(r#"\bstatus="([^"]*)""#).unwrap();
    let enum_name = regex::Regex::new("^[a-z0-9_]+$").unwrap();
    for c in status.captures_iter(&text) {
        assert!(
            enum_name.is_match(&c[1]),
            "status label values are API enum names: {}",
            &c[1]
        );
    }
    assert!(
        text.contains(r#"maas_flow_machines{status="failed_commissioning"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"maas_flow_state_seconds_count{status="commissioning"}"#));
    assert!(!text.contains("maas_flow_state_seconds_count{state="));
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut w = line.split(' ').skip(2);
        let (name, kind) = (w.next().unwrap(), w.next().unwrap());
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{line}");
        }
    }
    assert!(
        !text.contains("result=\"error_"),
        "the HTTP code is its own label"
    );
    let names = sample_names(&text);
    for n in [
        "maas_flow_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "maas_flow_maas_response_bytes_total",
    ] {
        assert!(names.contains(n), "missing {n}");
    }
    if promtool().is_some() {
        let (ok, out) = run_promtool(&["check", "metrics"], &text);
        println!("promtool check metrics: success={ok} output={out:?}");
        assert!(
            ok && out.trim().is_empty(),
            "promtool check metrics: {out}\n{text}"
        );
    }
}

#[actix_rt::test]
async fn alert_rules_and_dashboard_query_live_metrics() {
    if promtool().is_some() {
        let (ok, out) = run_promtool(&["check", "rules", ALERTS], "");
        println!("promtool check rules: {}", out.trim());
        assert!(ok, "{out}");
        assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
        let dir = std::path::Path::new(ALERT_TESTS).parent().unwrap();
        let out = Command::new("promtool")
            .args(["test", "rules", "alerts_test.yml"])
            .current_dir(dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        println!("promtool test rules: {}", text.trim());
        assert!(out.status.success(), "{text}");
    }
    let live = sample_names(&live_metrics().await);

    // Every metric the alert rules use is exported.
    let exprs: Vec<String> = {
        let y = std::fs::read_to_string(ALERTS).unwrap();
        // The rules file is plain YAML; pick the expressions out line by line (a
        // folded `expr: |` continues on the indented lines after it).
        let mut exprs = Vec::new();
        let mut lines = y.lines().peekable();
        while let Some(l) = lines.next() {
            if let Some(e) = l.trim_start().strip_prefix("expr:") {
                let mut e = e.trim().to_string();
                if e == "|" {
                    e.clear();
                    while let Some(n) = lines.peek() {
                        if n.trim_start().starts_with("for:") {
                            break;
                        }
                        e.push_str(lines.next().unwrap());
                    }
                }
                exprs.push(e);
            }
        }
        exprs
    };
    assert_eq!(exprs.len(), 6);
    for e in &exprs {
        let used = names_in(e);
        assert!(!used.is_empty(), "{e}");
        for n in used {
            assert!(live.contains(&n), "alert uses {n}, not on /metrics: {e}");
        }
    }

    // The Grafana dashboard: valid JSON, unique panel ids, every query on live metrics.
    let d: serde_json::Value = serde_json::from_str(GRAFANA).unwrap();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut ids = BTreeSet::new();
    let mut queried = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            for n in names_in(e) {
                assert!(live.contains(&n), "panel {} uses {n}: {e}", p["title"]);
                queried.insert(n);
            }
        }
    }
    for needed in [
        "maas_flow_machines",
        "maas_flow_provision_runs_total",
        "maas_flow_maas_requests_total",
        "maas_flow_maas_request_seconds_bucket",
        "maas_flow_poll_seconds_bucket",
        "maas_flow_maas_response_bytes_total",
    ] {
        assert!(queried.contains(needed), "the dashboard shows {needed}");
    }
}
