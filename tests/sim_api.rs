//! The simulator over HTTP, as an independent MAAS client would see it: every path of
//! the fact sheet, including every refusal, OAuth checks, faults and the op log.

mod common;

use std::time::Duration;

use common::*;
use maas_flow::maas::{parse_machine, parse_machine_list, ApiKey, ApiVersion, NodeStatus};
use maas_flow::sim::{scenario, Faults, ProvisionerConfig, Sim, SimConfig};

struct Client {
    http: awc::Client,
    base: String,
    key: ApiKey,
}

struct Answer {
    code: u16,
    body: String,
    content_type: String,
    retry_after: Option<String>,
}

impl Client {
    fn new(sim: &Sim) -> Self {
        Client {
            http: awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish(),
            base: format!("http://{}", sim.addr),
            key: ApiKey::parse(&sim.api_key()).unwrap(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
        auth: Option<String>,
    ) -> Answer {
        let url = format!("{}{}", self.base, path);
        let mut req = match method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url),
            "PUT" => self.http.put(&url),
            _ => self.http.delete(&url),
        };
        if let Some(a) = auth {
            req = req.insert_header(("Authorization", a));
        }
        let mut resp = if method == "GET" {
            req.send().await
        } else {
            req.send_form(&form).await
        }
        .expect("request sent");
        let body = resp
            .body()
            .limit(256 * 1024 * 1024)
            .await
            .unwrap_or_default();
        Answer {
            code: resp.status().as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
            content_type: resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            retry_after: resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }
    }

    async fn api(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Answer {
        self.send(
            method,
            &format!("/MAAS/api/2.0/{path}"),
            form,
            Some(self.key.authorization()),
        )
        .await
    }
}

fn mixed() -> Vec<maas_flow::sim::SimMachine> {
    scenario::parse_scenario(
        r#"
        [[machine]]
        hostname = "new1"
        power_state = "on"
        [[machine]]
        hostname = "ready1"
        status = "ready"
        zone = "zone-north"
        pool = "gpu"
        [[machine]]
        hostname = "alloc-mine"
        status = "allocated"
        owner = "maas-flow"
        [[machine]]
        hostname = "alloc-alice"
        status = "allocated"
        owner = "alice"
        [[machine]]
        hostname = "manual1"
        status = "ready"
        power_type = "manual"
        [[machine]]
        hostname = "nopower"
        power_type = ""
        [[machine]]
        hostname = "broken1"
        status = "broken"
        "#,
    )
    .unwrap()
}

fn id_of(sim: &Sim, hostname: &str) -> String {
    sim.machines()
        .into_iter()
        .find(|m| m.hostname == hostname)
        .unwrap()
        .system_id
}

#[actix_rt::test]
async fn authentication_is_checked_like_maas() {
    let sim = start_sim(mixed(), fast_timings());
    let c = Client::new(&sim);
    // Anonymous list: 400 Unrecognised signature (not 401), as MAAS 3.4 answers.
    let a = c.send("GET", "/MAAS/api/2.0/machines/", &[], None).await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (400, "Unrecognised signature: method=GET op=None")
    );
    // version/ is anonymous.
    let a = c.send("GET", "/MAAS/api/2.0/version/", &[], None).await;
    assert_eq!(a.code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&a.body).unwrap()["subversion"],
        ""
    );
    let a = c.send("GET", "/MAAS/api/version/", &[], None).await;
    assert_eq!((a.code, a.body.as_str()), (200, "2.0"));
    // Bad consumer key, bad token, bad secret.
    let bad = ApiKey::parse("nope:simtoken:simsecret").unwrap();
    let a = c
        .send(
            "GET",
            "/MAAS/api/2.0/machines/",
            &[],
            Some(bad.authorization()),
        )
        .await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (401, "Authorization Error: Invalid API key.")
    );
    let bad = ApiKey::parse("maasflowsim:nope:simsecret").unwrap();
    let a = c
        .send(
            "GET",
            "/MAAS/api/2.0/machines/",
            &[],
            Some(bad.authorization()),
        )
        .await;
    assert_eq!(a.code, 401);
    assert!(a.body.contains("Invalid access token:"));
    let bad = ApiKey::parse("maasflowsim:simtoken:wrong").unwrap();
    assert_eq!(
        c.send(
            "GET",
            "/MAAS/api/2.0/machines/",
            &[],
            Some(bad.authorization())
        )
        .await
        .code,
        401
    );
    // A replayed header: the nonce is refused the second time.
    let h = c.key.authorization();
    assert_eq!(
        c.send("GET", "/MAAS/api/2.0/machines/", &[], Some(h.clone()))
            .await
            .code,
        200
    );
    let a = c.send("GET", "/MAAS/api/2.0/machines/", &[], Some(h)).await;
    assert_eq!(a.code, 401);
    assert!(a.body.contains("Nonce already used"), "{}", a.body);
    // Timestamps: 10 minutes old refused, 10 minutes ahead accepted, non-integer 400.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let a = c
        .send(
            "GET",
            "/MAAS/api/2.0/machines/",
            &[],
            Some(c.key.authorization_with("n-old", now - 600)),
        )
        .await;
    assert_eq!(a.code, 401);
    assert!(a.body.contains("Expired timestamp"), "{}", a.body);
    let a = c
        .send(
            "GET",
            "/MAAS/api/2.0/machines/",
            &[],
            Some(c.key.authorization_with("n-new", now + 600)),
        )
        .await;
    assert_eq!(a.code, 200);
    let h = c
        .key
        .authorization_with("n-x", 1)
        .replace("oauth_timestamp=\"1\"", "oauth_timestamp=\"soon\"");
    assert_eq!(
        c.send("GET", "/MAAS/api/2.0/machines/", &[], Some(h))
            .await
            .code,
        400
    );
    // A header missing one of the six fields is anonymous.
    let h = c.key.authorization().replace("oauth_nonce", "oauth_nunce");
    assert_eq!(
        c.send("GET", "/MAAS/api/2.0/machines/", &[], Some(h))
            .await
            .code,
        400
    );
    let who = c.api("GET", "users/?op=whoami", &[]).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&who.body).unwrap()["username"],
        "maas-flow"
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn listing_filters_and_their_refusals() {
    let sim = start_sim(mixed(), fast_timings());
    let c = Client::new(&sim);
    let a = c.api("GET", "machines/", &[]).await;
    assert_eq!(a.code, 200);
    assert!(a.content_type.starts_with("application/json"));
    let all = parse_machine_list(a.body.as_bytes(), ApiVersion::V2).unwrap();
    assert_eq!(all.machines.len(), 7);
    assert!(all.skipped.is_empty());
    // Real-shaped: ~10 KB per machine, with the fixture's nesting.
    let per = a.body.len() / 7;
    assert!((7_000..14_000).contains(&per), "{per} bytes per machine");
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    for key in [
        "blockdevice_set",
        "boot_disk",
        "interface_set",
        "workload_annotations",
        "owner_data",
        "status_name",
        "pool",
        "domain",
    ] {
        assert!(v[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(v[1]["status_name"], "Ready");
    let count = |body: &str| {
        serde_json::from_str::<Vec<serde_json::Value>>(body)
            .unwrap()
            .len()
    };
    assert_eq!(
        count(&c.api("GET", "machines/?zone=zone-north", &[]).await.body),
        1
    );
    assert_eq!(
        count(&c.api("GET", "machines/?pool=gpu", &[]).await.body),
        1
    );
    assert_eq!(
        count(&c.api("GET", "machines/?hostname=new1", &[]).await.body),
        1
    );
    assert_eq!(
        count(&c.api("GET", "machines/?status=ready", &[]).await.body),
        2
    );
    assert_eq!(
        count(&c.api("GET", "machines/?not_status=ready", &[]).await.body),
        5
    );
    let ids = format!(
        "machines/?id={}&id={}",
        id_of(&sim, "new1"),
        id_of(&sim, "broken1")
    );
    assert_eq!(count(&c.api("GET", &ids, &[]).await.body), 2);
    let a = c.api("GET", "machines/?zone=nosuch", &[]).await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (400, r#"{"zone":["No such zone(s): nosuch."]}"#)
    );
    let a = c.api("GET", "machines/?status=Ready", &[]).await;
    assert_eq!(a.code, 400);
    assert!(a
        .body
        .contains("Select a valid choice. Ready is not one of the available choices."));
    let a = c.api("GET", "machines/?nosuchparam=1", &[]).await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (400, r#"{"nosuchparam":["No such constraint."]}"#)
    );
    // No trailing slash: 404, no redirect.
    let a = c.api("GET", "machines", &[]).await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (404, "Unknown API endpoint: /MAAS/api/2.0/machines.")
    );
    let a = c.api("GET", "machines/nosuch/", &[]).await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (404, "No Machine matches the given query.")
    );
    let id = id_of(&sim, "new1");
    let a = c.api("GET", &format!("machines/{id}/"), &[]).await;
    assert_eq!(
        parse_machine(a.body.as_bytes(), ApiVersion::V2)
            .unwrap()
            .hostname,
        "new1"
    );
    assert_eq!(
        c.api("GET", &format!("machines/{id}/interfaces/"), &[])
            .await
            .code,
        404
    );
    assert_eq!(
        c.api("GET", &format!("nodes/{id}/interfaces/"), &[])
            .await
            .code,
        200
    );
    let a = c
        .api("GET", &format!("machines/{id}/?op=query_power_state"), &[])
        .await;
    assert_eq!(a.body, r#"{"state":"on"}"#);
    let a = c.api("GET", "machines/?op=list", &[]).await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (400, "Unrecognised signature: method=GET op=list")
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn operations_and_wrong_state_answers() {
    let sim = start_sim(mixed(), fast_timings());
    let c = Client::new(&sim);
    let new1 = id_of(&sim, "new1");
    let ready1 = id_of(&sim, "ready1");
    let mine = id_of(&sim, "alloc-mine");
    let alice = id_of(&sim, "alloc-alice");
    let manual = id_of(&sim, "manual1");
    let broken = id_of(&sim, "broken1");
    let nopower = id_of(&sim, "nopower");
    let st = |a: &Answer| {
        parse_machine(a.body.as_bytes(), ApiVersion::V2)
            .unwrap()
            .status
    };

    // commission: New -> Commissioning; again while commissioning: 400 JSON.
    let a = c
        .api("POST", &format!("machines/{new1}/?op=commission"), &[])
        .await;
    assert_eq!((a.code, st(&a)), (200, NodeStatus::Commissioning));
    let a = c
        .api("POST", &format!("machines/{new1}/?op=commission"), &[])
        .await;
    assert_eq!(a.code, 400);
    assert_eq!(
        a.body,
        r#"{"__all__":["Commission is not available because of the current state of the node."]}"#
    );
    let a = c
        .api("POST", &format!("machines/{nopower}/?op=commission"), &[])
        .await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (
            500,
            "Unconfigured power type. Please configure the power type and try again."
        )
    );
    // abort: 200 still saying Commissioning; the next read says New.
    let a = c
        .api("POST", &format!("machines/{new1}/?op=abort"), &[])
        .await;
    assert_eq!((a.code, st(&a)), (200, NodeStatus::Commissioning));
    assert_eq!(sim.status_of(&new1), Some(NodeStatus::New));
    let a = c
        .api("POST", &format!("machines/{new1}/?op=abort"), &[])
        .await;
    assert_eq!(a.code, 409);
    // allocate: Ready -> Allocated owned by us; otherwise 409.
    let a = c
        .api("POST", "machines/?op=allocate", &[("system_id", &ready1)])
        .await;
    assert_eq!((a.code, st(&a)), (200, NodeStatus::Allocated));
    assert_eq!(
        parse_machine(a.body.as_bytes(), ApiVersion::V2)
            .unwrap()
            .owner
            .as_deref(),
        Some("maas-flow")
    );
    let a = c
        .api("POST", "machines/?op=allocate", &[("system_id", &ready1)])
        .await;
    assert_eq!(
        (a.code, a.body.clone()),
        (
            409,
            format!("No machine with system ID {ready1} available.")
        )
    );
    // deploy: wrong state 409; someone else's 403; ours -> Deploying -> Deployed.
    let a = c
        .api("POST", &format!("machines/{new1}/?op=deploy"), &[])
        .await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (409, "Can't deploy a machine that is in the 'New' state")
    );
    assert_eq!(
        c.api("POST", &format!("machines/{alice}/?op=deploy"), &[])
            .await
            .code,
        403
    );
    let a = c
        .api(
            "POST",
            &format!("machines/{mine}/?op=deploy"),
            &[("distro_series", "ubuntu/noble")],
        )
        .await;
    assert_eq!((a.code, st(&a)), (200, NodeStatus::Deploying));
    let m: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        (m["osystem"].as_str(), m["distro_series"].as_str()),
        (Some("ubuntu"), Some("noble"))
    );
    wait_for("deployment", Duration::from_secs(5), || {
        sim.status_of(&mine) == Some(NodeStatus::Deployed)
    })
    .await;
    // deploy on Ready allocates and deploys in one call.
    let a = c
        .api("POST", &format!("machines/{manual}/?op=deploy"), &[])
        .await;
    assert_eq!((a.code, st(&a)), (200, NodeStatus::Deploying));
    // power_off on a manual power type answers `null`.
    let a = c
        .api("POST", &format!("machines/{manual}/?op=power_off"), &[])
        .await;
    assert_eq!((a.code, a.body.as_str()), (200, "null"));
    let a = c
        .api("POST", &format!("machines/{broken}/?op=power_on"), &[])
        .await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (409, "Can't start node: it hasn't been allocated.")
    );
    // annotations: owner only; empty value deletes; same map in owner_data.
    let a = c
        .api(
            "POST",
            &format!("machines/{mine}/?op=set_workload_annotations"),
            &[("k", "v"), ("z", "1")],
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["workload_annotations"]["k"], "v");
    assert_eq!(v["owner_data"], v["workload_annotations"]);
    let a = c
        .api(
            "POST",
            &format!("machines/{mine}/?op=set_owner_data"),
            &[("z", "")],
        )
        .await;
    assert!(
        serde_json::from_str::<serde_json::Value>(&a.body).unwrap()["workload_annotations"]
            .get("z")
            .is_none()
    );
    let a = c
        .api(
            "POST",
            &format!("machines/{broken}/?op=set_workload_annotations"),
            &[("k", "v")],
        )
        .await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (
            409,
            "Cannot set workload annotation: it hasn't been acquired."
        )
    );
    // mark_broken by a non-owner: 403, empty body; mark_fixed on a non-broken: 409.
    let a = c
        .api("POST", &format!("machines/{alice}/?op=mark_broken"), &[])
        .await;
    assert_eq!((a.code, a.body.as_str()), (403, ""));
    let a = c
        .api("POST", &format!("machines/{new1}/?op=mark_fixed"), &[])
        .await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (409, "Can't mark a non-broken node as 'Ready'.")
    );
    let a = c
        .api("POST", &format!("machines/{broken}/?op=mark_fixed"), &[])
        .await;
    assert_eq!((a.code, st(&a)), (200, NodeStatus::Ready));
    let a = c
        .api("POST", &format!("machines/{mine}/?op=mark_broken"), &[])
        .await;
    assert_eq!((a.code, st(&a)), (200, NodeStatus::Broken));
    let a = c
        .api("POST", &format!("machines/{mine}/?op=mark_fixed"), &[])
        .await;
    assert_eq!(st(&a), NodeStatus::Deployed, "fixed goes back to Deployed");
    // release: wrong state 409; ours -> Releasing -> Ready, owner and annotations cleared.
    let a = c
        .api("POST", &format!("machines/{new1}/?op=release"), &[])
        .await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (
            409,
            "Machine cannot be released in its current state ('New')."
        )
    );
    let a = c
        .api("POST", &format!("machines/{mine}/?op=release"), &[])
        .await;
    assert_eq!((a.code, st(&a)), (200, NodeStatus::Releasing));
    wait_for("release", Duration::from_secs(5), || {
        sim.status_of(&mine) == Some(NodeStatus::Ready)
    })
    .await;
    let m = sim
        .machines()
        .into_iter()
        .find(|m| m.system_id == mine)
        .unwrap();
    assert!(m.owner.is_none() && m.annotations.is_empty() && m.distro_series.is_empty());
    // rename: bad label and duplicates are 400 JSON.
    let a = c
        .api(
            "PUT",
            &format!("machines/{new1}/"),
            &[("hostname", "bad;name")],
        )
        .await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (
            400,
            r#"{"hostname":["Label contains disallowed characters: 'bad;name'."]}"#
        )
    );
    let a = c
        .api(
            "PUT",
            &format!("machines/{new1}/"),
            &[("hostname", "broken1")],
        )
        .await;
    assert_eq!(
        a.body,
        r#"{"hostname":["Node with this Hostname already exists."]}"#
    );
    let a = c
        .api(
            "PUT",
            &format!("machines/{new1}/"),
            &[
                ("hostname", "renamed"),
                ("power_type", "ipmi"),
                ("power_parameters_power_address", "10.0.0.9"),
            ],
        )
        .await;
    assert_eq!(
        parse_machine(a.body.as_bytes(), ApiVersion::V2)
            .unwrap()
            .hostname,
        "renamed"
    );
    // interfaces: unlink then link DHCP; the answer is the interface.
    let m = sim
        .machines()
        .into_iter()
        .find(|m| m.system_id == new1)
        .unwrap();
    let (iid, lid) = (m.interfaces[0].id, m.interfaces[0].links[0].id);
    let a = c
        .api(
            "POST",
            &format!("nodes/{new1}/interfaces/{iid}/?op=unlink_subnet"),
            &[("id", &lid.to_string())],
        )
        .await;
    assert_eq!(a.code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&a.body).unwrap()["links"],
        serde_json::json!([])
    );
    let a = c
        .api(
            "POST",
            &format!("nodes/{new1}/interfaces/{iid}/?op=link_subnet"),
            &[("mode", "DHCP"), ("subnet", "10.20.0.0/16")],
        )
        .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&a.body).unwrap()["links"][0]["mode"],
        "dhcp"
    );
    let a = c
        .api(
            "POST",
            &format!("nodes/{mine}/interfaces/{iid}/?op=link_subnet"),
            &[("mode", "DHCP")],
        )
        .await;
    assert_eq!(a.code, 404, "interface of another machine");
    // A JSON body is a 500 in MAAS; an unknown op is 400.
    let a = c
        .http
        .post(format!(
            "{}/MAAS/api/2.0/machines/{new1}/?op=commission",
            c.base
        ))
        .insert_header(("Authorization", c.key.authorization()))
        .send_json(&serde_json::json!({"x": 1}))
        .await
        .unwrap();
    assert_eq!(a.status().as_u16(), 500);
    let a = c
        .api("POST", &format!("machines/{new1}/?op=explode"), &[])
        .await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (400, "Unrecognised signature: method=POST op=explode")
    );
    // op as a path suffix (MAAS 3.3+).
    let a = c
        .api("POST", &format!("machines/{new1}/op-commission"), &[])
        .await;
    assert_eq!(a.code, 200);
    // The op log recorded every mutating request with the status it found.
    let ops = sim.ops();
    assert!(ops
        .iter()
        .any(|o| o.op == "allocate" && o.http_status == 409));
    assert!(ops.iter().any(|o| o.op == "commission"
        && o.status_before.as_deref() == Some("Commissioning")
        && o.http_status == 400));
    let http_ops: serde_json::Value =
        serde_json::from_str(&c.send("GET", "/_sim/ops", &[], None).await.body).unwrap();
    assert_eq!(http_ops.as_array().unwrap().len(), ops.len());
    sim.stop().await;
}

#[actix_rt::test]
async fn api_1_0_is_served_like_maas_1_9_or_gone() {
    let sim = start_sim(mixed(), fast_timings());
    let c = Client::new(&sim);
    let a = c
        .send(
            "GET",
            "/MAAS/api/1.0/nodes/?op=list",
            &[],
            Some(c.key.authorization()),
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let alloc = v
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["hostname"] == "alloc-mine.maas")
        .unwrap();
    assert_eq!(
        (alloc["status"].as_i64(), alloc["substatus"].as_i64()),
        (Some(6), Some(10)),
        "folded status"
    );
    assert!(alloc["macaddress_set"][0]["mac_address"].is_string());
    let parsed = parse_machine_list(a.body.as_bytes(), ApiVersion::V1).unwrap();
    assert_eq!(
        parsed
            .machines
            .iter()
            .find(|m| m.hostname == "alloc-mine")
            .unwrap()
            .status,
        NodeStatus::Allocated
    );
    assert_eq!(
        c.send(
            "GET",
            "/MAAS/api/1.0/nodes/",
            &[],
            Some(c.key.authorization())
        )
        .await
        .code,
        400
    );
    let a = c
        .send(
            "POST",
            "/MAAS/api/1.0/nodes/?op=acquire",
            &[("name", "ready1.maas")],
            Some(c.key.authorization()),
        )
        .await;
    assert_eq!(a.code, 200);
    let id = id_of(&sim, "ready1");
    let a = c
        .send(
            "POST",
            &format!("/MAAS/api/1.0/nodes/{id}/?op=start"),
            &[("distro_series", "jammy")],
            Some(c.key.authorization()),
        )
        .await;
    assert_eq!(a.code, 200);
    assert_eq!(sim.status_of(&id), Some(NodeStatus::Deploying));
    sim.stop().await;

    let sim = Sim::start(
        SimConfig {
            api1: false,
            workers: 1,
            ..SimConfig::default()
        },
        mixed(),
        fast_timings(),
        ProvisionerConfig::default(),
    )
    .unwrap();
    let c = Client::new(&sim);
    let a = c
        .send(
            "GET",
            "/MAAS/api/1.0/nodes/?op=list",
            &[],
            Some(c.key.authorization()),
        )
        .await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (
            410,
            "The 1.0 API is no longer available. Please use API version 2.0."
        )
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn events_record_status_changes_like_maas() {
    let sim = start_sim(mixed(), fast_timings());
    let c = Client::new(&sim);
    let ready1 = id_of(&sim, "ready1");
    c.api("POST", "machines/?op=allocate", &[("system_id", &ready1)])
        .await;
    let new1 = id_of(&sim, "new1");
    c.api("POST", &format!("machines/{new1}/?op=commission"), &[])
        .await;
    let a = c
        .api(
            "GET",
            "events/?op=query&level=DEBUG&after=0&limit=1000",
            &[],
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let evs = v["events"].as_array().unwrap();
    let descr: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "Node changed status")
        .map(|e| e["description"].as_str().unwrap())
        .collect();
    assert!(
        descr.contains(&"From 'Ready' to 'Allocated' (to maas-flow)"),
        "{descr:?}"
    );
    assert!(
        descr.contains(&"From 'New' to 'Commissioning'"),
        "{descr:?}"
    );
    let ids: Vec<i64> = evs.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let newest = ids[0];
    assert!(v["next_uri"]
        .as_str()
        .unwrap()
        .ends_with(&format!("after={newest}")));
    // Default level INFO hides status changes.
    let a = c.api("GET", "events/?op=query&after=0", &[]).await;
    assert!(!a.body.contains("Node changed status"));
    // Nothing new: next_uri drops `after` (the trap in the fact sheet).
    let a = c
        .api(
            "GET",
            &format!("events/?op=query&level=DEBUG&after={newest}"),
            &[],
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["count"], 0);
    assert!(!v["next_uri"].as_str().unwrap().contains("after="));
    let a = c.api("GET", "events/?op=query&limit=1001", &[]).await;
    assert_eq!(
        (a.code, a.body.as_str()),
        (
            400,
            "Requested number of events 1001 is greater than limit: 1000"
        )
    );
    assert_eq!(
        c.api("GET", "events/?op=query&after=1&before=5", &[])
            .await
            .code,
        400
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn faults_can_be_injected_and_switched_off_at_run_time() {
    let sim = start_sim(mixed(), fast_timings());
    let c = Client::new(&sim);
    sim.set_faults(Faults {
        unavailable_rate: 1.0,
        retry_after_secs: 7,
        ..Faults::default()
    });
    let a = c.api("GET", "machines/", &[]).await;
    assert_eq!((a.code, a.retry_after.as_deref()), (503, Some("7")));
    sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    assert_eq!(c.api("GET", "machines/", &[]).await.code, 500);
    sim.set_faults(Faults {
        conflict_retry_rate: 1.0,
        retry_after_secs: 5,
        ..Faults::default()
    });
    let a = c
        .api(
            "POST",
            &format!("machines/{}/?op=commission", id_of(&sim, "new1")),
            &[],
        )
        .await;
    assert_eq!((a.code, a.retry_after.as_deref()), (409, Some("5")));
    sim.set_faults(Faults {
        garbage_list_rate: 1.0,
        ..Faults::default()
    });
    let a = c.api("GET", "machines/", &[]).await;
    assert!(parse_machine_list(a.body.as_bytes(), ApiVersion::V2).is_err());
    sim.set_faults(Faults {
        truncate_list_rate: 1.0,
        ..Faults::default()
    });
    let a = c.api("GET", "machines/", &[]).await;
    assert!(parse_machine_list(a.body.as_bytes(), ApiVersion::V2).is_err());
    sim.set_faults(Faults {
        drop_rate: 1.0,
        ..Faults::default()
    });
    let r = c
        .http
        .get(format!("{}/MAAS/api/2.0/machines/", c.base))
        .insert_header(("Authorization", c.key.authorization()))
        .send()
        .await;
    let dropped = match r {
        Err(_) => true,
        Ok(mut resp) => resp.body().await.is_err(),
    };
    assert!(dropped, "the connection was cut");
    sim.set_faults(Faults {
        slow_rate: 1.0,
        slow_ms: 300,
        ..Faults::default()
    });
    let t = std::time::Instant::now();
    assert_eq!(c.api("GET", "machines/", &[]).await.code, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Switched over HTTP too.
    let r = c
        .http
        .put(format!("{}/_sim/faults", c.base))
        .send_body("{}")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(c.api("GET", "machines/", &[]).await.code, 200);
    sim.stop().await;
}

#[actix_rt::test]
async fn simulated_provisioner_speaks_the_original_protocol() {
    let sim = start_sim(mixed(), fast_timings());
    sim.set_provisioner(ProvisionerConfig {
        duration: Duration::from_millis(200),
        ..ProvisionerConfig::default()
    });
    let http = awc::Client::default();
    let url = sim.provisioner_url();
    let r = http
        .post(&url)
        .send_json(&serde_json::json!({"id": "abc", "name": "h", "ip": "10.0.0.1", "mac": "m"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(
        http.get(format!("{url}/abc"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    actix_rt::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        http.get(format!("{url}/abc"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        http.get(format!("{url}/nope"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        http.delete(format!("{url}/abc"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        http.get(format!("{url}/abc"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(sim.provisioner_requests().len(), 6);
    sim.stop().await;
}

#[actix_rt::test]
async fn a_10000_machine_list_is_served_and_parsed() {
    let sim = Sim::start(
        SimConfig {
            workers: 1,
            ..SimConfig::default()
        },
        scenario::rack(10_000),
        fast_timings(),
        ProvisionerConfig::default(),
    )
    .unwrap();
    let c = Client::new(&sim);
    let t = std::time::Instant::now();
    let a = c.api("GET", "machines/", &[]).await;
    let served = t.elapsed();
    assert_eq!(a.code, 200);
    let parsed = parse_machine_list(a.body.as_bytes(), ApiVersion::V2).unwrap();
    assert_eq!(parsed.machines.len(), 10_000);
    println!(
        "10,000 machines: {} MB served in {:?}",
        a.body.len() / 1_000_000,
        served
    );
    assert!(a.body.len() > 70_000_000, "real-sized list");
    sim.stop().await;
}

/// API 1.0's `abort_operation` answers the node as 1.0 renders it, still in its old
/// status (the world answers "the machine as it was"; the HTTP layer picks the
/// version's shape). Before the world stopped rendering, it answered a 2.0 machine.
#[actix_rt::test]
async fn api1_abort_answers_a_1_0_node_in_its_old_status() {
    let timings = maas_flow::sim::Timings {
        commission: Duration::from_secs(120),
        ..fast_timings()
    };
    let sim = start_sim(mixed(), timings);
    let c = Client::new(&sim);
    let new1 = id_of(&sim, "new1");
    let a = c
        .api("POST", &format!("machines/{new1}/?op=commission"), &[])
        .await;
    assert_eq!(a.code, 200, "{}", a.body);
    let a = c
        .send(
            "POST",
            &format!("/MAAS/api/1.0/nodes/{new1}/?op=abort_operation"),
            &[],
            Some(c.key.authorization()),
        )
        .await;
    assert_eq!(a.code, 200, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        v["resource_uri"].as_str(),
        Some(format!("/MAAS/api/1.0/nodes/{new1}/").as_str()),
        "{v}"
    );
    assert_eq!(v["substatus_name"], "Commissioning", "{v}");
    assert_eq!(sim.status_of(&new1), Some(NodeStatus::New));
    sim.stop().await;
}
