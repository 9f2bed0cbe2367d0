//! Fleet policies against the simulator: selection by MAAS tags and resource pools
//! (client-side and, when it cannot change the selection, server-side).

mod common;

use std::time::Duration;

use common::*;
use maas_flow::config::{self, Sources};
use maas_flow::sim::{scenario, SimMachine};

/// A controller from a TOML file plus the usual test overrides.
async fn start_toml(sim: &maas_flow::sim::Sim, toml: &str) -> maas_flow::run::Controller {
    // Kept for the controller's life: it holds the provisioning journal too.
    let dir = tempfile::Builder::new()
        .prefix("fleet-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    let path = dir.join("maas-flow.toml");
    std::fs::write(&path, toml).unwrap();
    let o: Vec<(String, String)> = [
        ("maas.url", sim.base_url.clone()),
        ("maas.api_key", sim.api_key()),
        ("maas.period", "250ms".into()),
        ("http.listen", "127.0.0.1:0".into()),
        ("limits.retry_base", "100ms".into()),
        ("limits.retry_cap", "1s".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .chain([("state_dir".to_string(), dir.display().to_string())])
    .collect();
    let cfg = config::load(&Sources {
        file: Some(path),
        env: Vec::new(),
        overrides: o,
    })
    .expect("test config is valid");
    maas_flow::run::start(&cfg)
        .await
        .expect("controller starts")
}

/// Eight machines, each probing one rule of the tag and pool filter.
fn tagged_rack() -> Vec<SimMachine> {
    let mut rack = scenario::rack(8);
    let set = |m: &mut SimMachine, pool: &str, tags: &[&str]| {
        m.pool = pool.into();
        m.tags = tags.iter().map(|t| t.to_string()).collect();
    };
    set(&mut rack[0], "prod-a", &["gpu"]); // selected
    set(&mut rack[1], "prod-b", &["fast"]); // selected: any included tag
    set(&mut rack[2], "prod-a", &["gpu", "broken"]); // excluded tag
    set(&mut rack[3], "prod-old", &["gpu"]); // excluded pool
    set(&mut rack[4], "dev", &["gpu"]); // pool not included
    set(&mut rack[5], "prod-a", &[]); // no included tag
    set(&mut rack[6], "prod-a", &["gpu-2"]); // tags are exact names
    set(&mut rack[7], "prod-a", &["gpu"]);
    rack[7].zone = "other".into(); // zone not included
    rack
}

fn commissioned(sim: &maas_flow::sim::Sim) -> Vec<String> {
    let mut v: Vec<String> = accepted_ops(sim)
        .into_iter()
        .filter(|(_, op)| op == "commission")
        .map(|(id, _)| id)
        .collect();
    v.sort();
    v
}

async fn exactly_selected_move(sim: maas_flow::sim::Sim, ctrl: maas_flow::run::Controller) {
    let ids: Vec<String> = sim.machines().iter().map(|m| m.system_id.clone()).collect();
    settle(&ctrl, Duration::from_secs(30)).await;
    wait_for("two machines Ready", Duration::from_secs(30), || {
        sim.machines()
            .iter()
            .filter(|m| m.status == maas_flow::maas::NodeStatus::Ready)
            .count()
            == 2
    })
    .await;
    // A few more periods: nothing else may move.
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(commissioned(&sim), vec![ids[0].clone(), ids[1].clone()]);
    assert_eq!(accepted_ops(&sim).len(), 2, "{:?}", accepted_ops(&sim));
    let mut on_board: Vec<String> = ctrl.board.all().into_iter().map(|v| v.system_id).collect();
    on_board.sort();
    assert_eq!(on_board, vec![ids[0].clone(), ids[1].clone()]);
    stop(ctrl).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn toml_tags_and_pools_select_exactly_the_matching_machines() {
    let sim = start_sim(tagged_rack(), fast_timings());
    let ctrl = start_toml(
        &sim,
        r#"
[lifecycle]
target = "ready"
[filter.hosts]
include = [".*"]
[filter.zones]
include = ["default"]
[filter.tags]
include = ["gpu", "fast"]
exclude = ["broken"]
[filter.pools]
include = ["prod-.*"]
exclude = ["prod-old"]
"#,
    )
    .await;
    exactly_selected_move(sim, ctrl).await;
}

#[actix_rt::test]
async fn json_filter_takes_tags_and_pools_too() {
    let sim = start_sim(tagged_rack(), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("lifecycle.target", "ready"),
            (
                "filter.json",
                r#"{"hosts":{"include":[".*"]},"zones":{"include":["default"]},
                    "tags":{"include":["gpu","fast"],"exclude":["broken"]},
                    "pools":{"include":["prod-.*"],"exclude":["prod-old"]}}"#,
            ),
        ],
    )
    .await;
    exactly_selected_move(sim, ctrl).await;
}

/// One included tag and exact pool names cannot change the selection when MAAS filters:
/// the list asks for them (`tags=`, `pool=`), and the selection is the same.
#[actix_rt::test]
async fn a_single_tag_and_exact_pools_are_filtered_by_maas() {
    let sim = start_sim(tagged_rack(), fast_timings());
    let ids: Vec<String> = sim.machines().iter().map(|m| m.system_id.clone()).collect();
    let ctrl = start(
        &sim,
        &[
            ("lifecycle.target", "ready"),
            (
                "filter.json",
                r#"{"hosts":{"include":[".*"]},"zones":{"include":["default"]},
                    "tags":{"include":["gpu"],"exclude":["broken"]},
                    "pools":{"include":["^prod-a$","^dev$"]}}"#,
            ),
        ],
    )
    .await;
    wait_for("two machines Ready", Duration::from_secs(30), || {
        sim.machines()
            .iter()
            .filter(|m| m.status == maas_flow::maas::NodeStatus::Ready)
            .count()
            == 2
    })
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    // rack[0] (prod-a, gpu) and rack[4] (dev, gpu); rack[7] is in another zone.
    assert_eq!(commissioned(&sim), vec![ids[0].clone(), ids[4].clone()]);
    let queries = sim.with_world(|w| w.list_queries.clone());
    let last = queries.back().expect("lists were read").clone();
    let has = |k: &str, v: &str| last.iter().any(|(a, b)| a == k && b == v);
    assert!(has("tags", "gpu"), "{last:?}");
    assert!(has("pool", "prod-a") && has("pool", "dev"), "{last:?}");
    assert!(!last.iter().any(|(k, _)| k == "not_tags"), "{last:?}");
    stop(ctrl).await;
    sim.stop().await;
}

fn params_of(sim: &maas_flow::sim::Sim, id: &str, op: &str) -> Vec<Vec<(String, String)>> {
    sim.ops()
        .into_iter()
        .filter(|o| o.system_id.as_deref() == Some(id) && o.op == op && o.http_status == 200)
        .map(|o| o.params)
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The README's worked example: a `gpu` tag gets noble, LVM and its own provisioning
/// script; pool `storage` stops at Ready with its own commissioning scripts; everything
/// else gets the global settings. Every MAAS request is checked with its parameters.
#[actix_rt::test]
async fn profiles_produce_exactly_their_maas_requests() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gpu-provisioned");
    let script = dir.path().join("gpu-provision.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let user_data = dir.path().join("gpu-cloud-init.yaml");
    std::fs::write(&user_data, "#cloud-config\npackages: [nvidia-driver]\n").unwrap();

    let mut rack = scenario::rack(3);
    rack[0].tags = vec!["gpu".into()];
    rack[1].pool = "storage".into();
    let ids: Vec<String> = rack.iter().map(|m| m.system_id.clone()).collect();
    let sim = start_sim(rack, fast_timings());
    let ctrl = start_toml(
        &sim,
        &format!(
            r#"
[filter.hosts]
include = [".*"]
[filter.zones]
include = ["default"]

[commission]
enable_ssh = true
skip_networking = true
commissioning_scripts = ["20-maas-01-install-lldpd", "custom-bios-check"]
testing_scripts = ["smartctl-validate", "memtester"]

[[profile]]
name = "gpu"
match = {{ tags = ["gpu"] }}
distro_series = "noble"
storage_layout = "lvm"
user_data = "@{}"
enable_hw_sync = true
provision_script = "{}"

[[profile]]
name = "storage"
match = {{ pools = ["storage"] }}
target = "ready"
skip_bmc_config = true
commissioning_scripts = ["storage-burn-in"]
testing_scripts = ["none"]
"#,
            user_data.display(),
            script.display()
        ),
    )
    .await;
    wait_for(
        "the gpu machine provisioned",
        Duration::from_secs(45),
        || std::fs::read_to_string(&out).is_ok_and(|s| s.contains(&ids[0])),
    )
    .await;
    settle(&ctrl, Duration::from_secs(45)).await;

    let global_commission = pairs(&[
        ("enable_ssh", "true"),
        ("skip_networking", "true"),
        (
            "commissioning_scripts",
            "20-maas-01-install-lldpd,custom-bios-check",
        ),
        ("testing_scripts", "smartctl-validate,memtester"),
    ]);
    // gpu: commission, storage layout while Ready, allocate, deploy noble, provision.
    assert_eq!(
        ops_for(&sim, &ids[0]),
        [
            "commission",
            "set_storage_layout",
            "allocate",
            "deploy",
            "set_workload_annotations"
        ]
    );
    assert_eq!(params_of(&sim, &ids[0], "commission"), [global_commission]);
    assert_eq!(
        params_of(&sim, &ids[0], "set_storage_layout"),
        [pairs(&[("storage_layout", "lvm")])]
    );
    assert_eq!(
        params_of(&sim, &ids[0], "deploy"),
        [pairs(&[
            ("distro_series", "noble"),
            ("user_data", "<elided>"),
            ("enable_hw_sync", "true")
        ])]
    );
    let m0 = sim.machines()[0].clone();
    assert_eq!(m0.storage_layout.as_deref(), Some("lvm"));
    assert_eq!(m0.distro_series, "noble");
    let args = std::fs::read_to_string(&out).unwrap();
    assert_eq!(args.lines().next(), Some(ids[0].as_str()), "{args}");

    // storage: commissioned with its own options, then left Ready.
    assert_eq!(ops_for(&sim, &ids[1]), ["commission"]);
    assert_eq!(
        params_of(&sim, &ids[1], "commission"),
        [pairs(&[
            ("enable_ssh", "true"),
            ("skip_bmc_config", "true"),
            ("skip_networking", "true"),
            ("commissioning_scripts", "storage-burn-in"),
            ("testing_scripts", "none"),
        ])]
    );
    assert_eq!(
        sim.status_of(&ids[1]),
        Some(maas_flow::maas::NodeStatus::Ready)
    );

    // No profile: the global settings, no provisioning step.
    assert_eq!(ops_for(&sim, &ids[2]), ["commission", "allocate", "deploy"]);
    assert_eq!(
        params_of(&sim, &ids[2], "deploy"),
        [pairs(&[("distro_series", "jammy")])]
    );
    assert_eq!(args.lines().filter(|l| l.starts_with("node")).count(), 1);

    let board = |i: usize| ctrl.board.get(&ids[i]).unwrap();
    assert_eq!(board(0).profile.as_deref(), Some("gpu"));
    assert_eq!(board(1).profile.as_deref(), Some("storage"));
    assert_eq!(board(1).target, "ready");
    assert_eq!(board(2).profile, None);
    // The status API and the dashboard show it too, over HTTP.
    let base = format!("http://{}", ctrl.http_addr.unwrap());
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let mut r = awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish()
                .get(url)
                .send()
                .await
                .expect("listener answers");
            let body = r.body().limit(16 << 20).await.unwrap();
            String::from_utf8_lossy(&body).into_owned()
        }
    };
    let api = get("/api/v1/machines").await;
    assert!(api.contains(r#""profile":"gpu""#), "{api}");
    assert!(api.contains(r#""profile":"storage""#), "{api}");
    let page = get("/").await;
    assert!(page.contains("<th>profile</th>"), "{page}");
    assert!(page.contains("<td>gpu</td>"), "{page}");
    assert!(sim.duplicate_ops().is_empty(), "{:?}", sim.duplicate_ops());
    stop(ctrl).await;
    sim.stop().await;
}

const PROFILES_TOML: &str = r#"
[maas]
api_key = "ck:tk:sup3rsecret"

[[profile]]
name = "gpu"
match = { tags = ["gpu"] }
distro_series = "noble"
storage_layout = "lvm"

[[profile]]
name = "storage"
match = { pools = ["storage"], hosts = ["st-.*"] }
target = "ready"
"#;

fn check_config(toml: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maas-flow"))
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .args(args)
        .env_remove("MAAS_FLOW_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_explain_names_the_profile_a_machine_gets() {
    let (code, out, err) = check_config(
        PROFILES_TOML,
        &[
            "--explain",
            "node-7,fast,gpu",
            "--explain",
            "st-01,pool=storage",
            "--explain",
            "node-8,pool=storage",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let blocks: Vec<&str> = out.split("\n").filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(
        blocks[..3],
        [
            "node-7 (zone default, pool default, tags [fast, gpu]): profile gpu",
            "st-01 (zone default, pool storage, tags []): profile storage",
            "node-8 (zone default, pool storage, tags []): no profile matches; global settings",
        ],
        "{out}"
    );
    assert!(
        out.contains("  distro_series = noble\n  storage_layout = lvm\n"),
        "{out}"
    );
    assert!(out.contains("  target = ready\n"), "{out}");
    assert!(!out.contains("sup3rsecret"));
}

#[test]
fn check_config_rejects_a_bad_profile_naming_its_key() {
    let bad = PROFILES_TOML.replace(r#"hosts = ["st-.*"]"#, r#"hosts = ["st-("]"#);
    let (code, _, err) = check_config(&bad, &["--explain", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`profile[1].match.hosts`"), "{err}");
    let bad = PROFILES_TOML.replace("storage_layout", "storage_layot");
    let (code, _, err) = check_config(&bad, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`profile[0].storage_layot`"), "{err}");
}

/// Redeploy recovery releases with the configured erase; a machine whose erase fails is
/// released (and erased) again within the same budget, then deploys.
#[actix_rt::test]
async fn redeploy_recovery_releases_with_erase_through_disk_erasing() {
    let mut rack = scenario::rack(2);
    rack[0].fail_next_deploy = true;
    rack[1].fail_next_deploy = true;
    rack[1].fail_next_erase = true;
    let ids: Vec<String> = rack.iter().map(|m| m.system_id.clone()).collect();
    let sim = start_sim(rack, fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("recovery.redeploy_attempts", "2"),
            ("recovery.erase", "secure"),
            ("limits.retry_base", "50ms"),
        ],
    )
    .await;
    wait_for("both machines Deployed", Duration::from_secs(45), || {
        ids.iter()
            .all(|id| sim.status_of(id) == Some(maas_flow::maas::NodeStatus::Deployed))
    })
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    let erase = pairs(&[("erase", "true"), ("secure_erase", "true")]);
    assert_eq!(
        ops_for(&sim, &ids[0]),
        [
            "commission",
            "allocate",
            "deploy",
            "release",
            "allocate",
            "deploy"
        ]
    );
    assert_eq!(
        params_of(&sim, &ids[0], "release"),
        std::slice::from_ref(&erase)
    );
    let changes: Vec<String> = sim.with_world(|w| {
        w.events
            .iter()
            .filter(|e| e.node == ids[1] && e.kind == "Node changed status")
            .map(|e| e.description.clone())
            .collect()
    });
    let erasing: Vec<&str> = changes
        .iter()
        .map(String::as_str)
        .filter(|d| d.contains("rasing"))
        .collect();
    assert_eq!(
        erasing,
        [
            "From 'Failed deployment' to 'Disk erasing'",
            "From 'Disk erasing' to 'Failed disk erasing'",
            "From 'Failed disk erasing' to 'Disk erasing'",
            "From 'Disk erasing' to 'Ready'",
        ],
        "{changes:?}"
    );
    assert_eq!(params_of(&sim, &ids[1], "release"), [erase.clone(), erase]);
    assert_eq!(
        ops_for(&sim, &ids[1]),
        [
            "commission",
            "allocate",
            "deploy",
            "release",
            "release",
            "allocate",
            "deploy"
        ]
    );
    stop(ctrl).await;
    sim.stop().await;
}

/// The HTTP provisioner's job keeps the original four keys and adds the fleet facts.
#[actix_rt::test]
async fn the_http_job_carries_zone_pool_tags_addresses_series_and_profile() {
    let mut rack = scenario::rack(1);
    rack[0].tags = vec!["gpu".into(), "rack-7".into()];
    rack[0].pool = "compute".into();
    let sim = start_sim(rack, fast_timings());
    let url = sim.provisioner_url();
    let ctrl = start_toml(
        &sim,
        &format!(
            r#"
[filter.hosts]
include = [".*"]
[filter.zones]
include = ["default"]
[provision]
url = "{url}"
poll_interval = "100ms"
[[profile]]
name = "gpu"
match = {{ tags = ["gpu"] }}
distro_series = "noble"
"#
        ),
    )
    .await;
    let m = sim.machines()[0].clone();
    wait_for("the job posted", Duration::from_secs(45), || {
        sim.provisioner_requests()
            .iter()
            .any(|r| r.method == "POST" && r.body.is_some())
    })
    .await;
    settle(&ctrl, Duration::from_secs(45)).await;
    let body = sim
        .provisioner_requests()
        .into_iter()
        .find_map(|r| r.body.filter(|_| r.method == "POST"))
        .unwrap();
    let m = sim
        .machines()
        .into_iter()
        .find(|x| x.system_id == m.system_id)
        .unwrap();
    let ip = m.ip_addresses()[0].clone();
    assert_eq!(
        body,
        serde_json::json!({
            "id": m.system_id, "name": m.hostname, "ip": ip, "mac": m.interfaces[0].mac,
            "fqdn": m.fqdn(), "zone": "default", "pool": "compute",
            "tags": ["gpu", "rack-7"], "ips": m.ip_addresses(),
            "macs": [m.interfaces[0].mac, m.interfaces[1].mac],
            "distro_series": "noble", "profile": "gpu",
        })
    );
    stop(ctrl).await;
    sim.stop().await;
}

/// A script keeps its four arguments and gets the same facts as `MAAS_*` variables.
#[actix_rt::test]
async fn the_script_gets_its_four_arguments_and_maas_variables() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let script = dir.path().join("p.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ printf 'arg=%s\\n' \"$@\"; env | grep '^MAAS_' | grep -v '^MAAS_FLOW' | sort; }} > '{}'\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut rack = scenario::rack(1);
    rack[0].tags = vec!["a;b".into(), "$(touch x)".into()];
    rack[0].pool = "compute".into();
    let sim = start_sim(rack, fast_timings());
    let ctrl = start(&sim, &[("provision.script", script.to_str().unwrap())]).await;
    wait_for("the script ran", Duration::from_secs(45), || out.exists()).await;
    settle(&ctrl, Duration::from_secs(45)).await;
    let m = sim.machines()[0].clone();
    let ip = m.ip_addresses()[0].clone();
    let got = std::fs::read_to_string(&out).unwrap();
    let want = format!(
        "arg={id}\narg={h}\narg={ip}\narg={mac}\n\
         MAAS_DISTRO_SERIES=jammy\nMAAS_FQDN={fqdn}\nMAAS_HOSTNAME={h}\n\
         MAAS_IP={ip}\nMAAS_IPS={ips}\nMAAS_MAC={mac}\nMAAS_MACS={mac},{mac1}\nMAAS_POOL=compute\n\
         MAAS_PROFILE=\nMAAS_SYSTEM_ID={id}\nMAAS_TAGS=a;b,$(touch x)\nMAAS_ZONE=default\n",
        id = m.system_id,
        h = m.hostname,
        mac = m.interfaces[0].mac,
        mac1 = m.interfaces[1].mac,
        fqdn = m.fqdn(),
        ips = m.ip_addresses().join(","),
    );
    assert_eq!(got, want);
    assert!(!dir.path().join("x").exists() && !std::path::Path::new("x").exists());
    stop(ctrl).await;
    sim.stop().await;
}

fn tag_ops(sim: &maas_flow::sim::Sim) -> Vec<(String, Vec<(String, String)>)> {
    sim.ops()
        .into_iter()
        .filter(|o| o.path.contains("/tags/"))
        .map(|o| {
            let op = if o.op.is_empty() {
                String::new()
            } else {
                format!("?op={}", o.op)
            };
            (
                format!("{} {}{op} {}", o.method, o.path, o.http_status),
                o.params,
            )
        })
        .collect()
}

/// Recovery used up: the machine gets the quarantine tag in MAAS (the tag is created
/// first, since the region does not know it); the operator removing the tag releases
/// the quarantine and the machine is recovered.
#[actix_rt::test]
async fn a_quarantined_machine_is_tagged_in_maas_and_released_by_the_operator() {
    let sim = start_sim(
        scenario::rack(1),
        maas_flow::sim::Timings {
            fail_commission: 1.0,
            ..fast_timings()
        },
    );
    let id = sim.machines()[0].system_id.clone();
    let ctrl = start(
        &sim,
        &[
            ("recovery.recommission_attempts", "1"),
            ("lifecycle.target", "ready"),
            ("limits.retry_base", "50ms"),
        ],
    )
    .await;
    wait_for("the quarantine tag", Duration::from_secs(30), || {
        sim.machines()[0]
            .tags
            .contains(&"maas-flow-quarantine".to_string())
    })
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    assert_eq!(
        ctrl.board.get(&id).unwrap().step,
        "quarantined (Failed commissioning)"
    );
    let base = "/MAAS/api/2.0/tags/";
    assert_eq!(
        tag_ops(&sim),
        [
            (
                format!("POST {base}maas-flow-quarantine/?op=update_nodes 404"),
                pairs(&[("add", &id)])
            ),
            (
                format!("POST {base} 200"),
                pairs(&[("name", "maas-flow-quarantine")])
            ),
            (
                format!("POST {base}maas-flow-quarantine/?op=update_nodes 200"),
                pairs(&[("add", &id)])
            ),
        ]
    );
    assert_eq!(
        ops_for(&sim, &id),
        ["commission", "commission", "update_nodes"]
    );
    // Not ours (never allocated): no annotation was attempted.
    assert!(!sim.ops().iter().any(|o| o.op == "set_workload_annotations"));

    // The operator fixes the cause and removes the tag in MAAS.
    sim.with_world(|w| {
        w.timings.fail_commission = 0.0;
        w.machines[0].tags.clear();
        w.machines[0].invalidate();
    });
    wait_for(
        "Ready after the quarantine is released",
        Duration::from_secs(30),
        || sim.status_of(&id) == Some(maas_flow::maas::NodeStatus::Ready),
    )
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    assert_eq!(
        ops_for(&sim, &id),
        ["commission", "commission", "update_nodes", "commission"]
    );
    stop(ctrl).await;
    sim.stop().await;
}

/// A machine quarantined by an earlier run stays quarantined after a restart (the MAAS
/// tag is the record); a retry tag added while maas-flow was stopped is acted on at
/// start and removed, with the quarantine tag.
#[actix_rt::test]
async fn a_retry_tag_added_while_stopped_is_acted_on_at_start_and_removed() {
    let mut rack = scenario::rack(2);
    for m in rack.iter_mut() {
        m.status = maas_flow::maas::NodeStatus::FailedCommissioning;
        m.commissioned = true;
        m.tags = vec!["maas-flow-quarantine".into()];
    }
    rack[0].tags.push("maas-flow-retry".into());
    let ids: Vec<String> = rack.iter().map(|m| m.system_id.clone()).collect();
    let sim = start_sim(rack, fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("recovery.recommission_attempts", "1"),
            ("lifecycle.target", "ready"),
        ],
    )
    .await;
    wait_for("the retried machine Ready", Duration::from_secs(30), || {
        sim.status_of(&ids[0]) == Some(maas_flow::maas::NodeStatus::Ready)
    })
    .await;
    settle(&ctrl, Duration::from_secs(30)).await;
    let base = "/MAAS/api/2.0/tags/";
    assert_eq!(
        tag_ops(&sim),
        [
            (
                format!("POST {base}maas-flow-retry/?op=update_nodes 200"),
                pairs(&[("remove", &ids[0])])
            ),
            (
                format!("POST {base}maas-flow-quarantine/?op=update_nodes 200"),
                pairs(&[("remove", &ids[0])])
            ),
        ]
    );
    assert_eq!(
        ops_for(&sim, &ids[0]),
        ["update_nodes", "update_nodes", "commission"]
    );
    assert!(
        sim.machines()[0].tags.is_empty(),
        "the operator sees both consumed"
    );
    // The other machine's quarantine tag is honoured across the restart.
    assert!(ops_for(&sim, &ids[1]).is_empty());
    assert_eq!(
        ctrl.board.get(&ids[1]).unwrap().step,
        "quarantined (Failed commissioning)"
    );
    stop(ctrl).await;
    sim.stop().await;
}

/// A pool MAAS does not know makes it refuse `pool=` (400 `No such pool(s)`): the list
/// is read again without it and filtered on our side, selecting nothing, touching nothing.
#[actix_rt::test]
async fn a_refused_pool_filter_falls_back_to_filtering_on_our_side() {
    let sim = start_sim(tagged_rack(), fast_timings());
    let ctrl = start(
        &sim,
        &[
            ("lifecycle.target", "ready"),
            (
                "filter.json",
                r#"{"hosts":{"include":[".*"]},"zones":{"include":["default"]},
                    "pools":{"include":["^nosuch$"]}}"#,
            ),
        ],
    )
    .await;
    wait_for("a list without pool=", Duration::from_secs(30), || {
        sim.with_world(|w| {
            w.list_queries
                .iter()
                .any(|q| !q.iter().any(|(k, _)| k == "pool"))
        })
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    let refused: Vec<u16> = sim
        .ops()
        .into_iter()
        .filter(|o| o.method == "GET")
        .map(|o| o.http_status)
        .collect();
    assert_eq!(refused, [400], "one refused list, then no more");
    assert!(accepted_ops(&sim).is_empty());
    assert!(ctrl.board.all().is_empty());
    stop(ctrl).await;
    sim.stop().await;
}
