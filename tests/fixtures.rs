//! Real MAAS JSON (the fixtures copied from MAAS's API examples, in tests/fixtures/maas) parsed
//! with the project's own model, and the simulator's output parsed with the same model.

mod common;

use common::*;
use maas_flow::maas::{parse_machine, parse_machine_list, ApiVersion, NodeStatus, PowerState};
use maas_flow::sim::scenario;

fn fixture(name: &str) -> serde_json::Map<String, serde_json::Value> {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn is_machine(v: &serde_json::Value) -> bool {
    v.get("system_id").is_some()
        && v.get("status_name").is_some()
        && v.get("interface_set").is_some()
        && v.get("node_type").is_none_or(|t| t == 0)
}

#[test]
fn every_machine_object_in_the_fixtures_parses() {
    let mut seen = 0;
    for file in ["machines.json", "nodes.json"] {
        for (key, v) in fixture(file) {
            if !is_machine(&v) {
                continue;
            }
            let m = parse_machine(v.to_string().as_bytes(), ApiVersion::V2)
                .unwrap_or_else(|e| panic!("{file} {key}: {e}"));
            seen += 1;
            assert_eq!(m.system_id, v["system_id"].as_str().unwrap(), "{key}");
            assert_eq!(m.status.code(), v["status"].as_i64().unwrap(), "{key}");
            assert_eq!(
                m.status.label(),
                v["status_name"].as_str().unwrap(),
                "{key}: label matches MAAS"
            );
            assert_eq!(m.hostname, v["hostname"].as_str().unwrap());
            assert_eq!(m.zone_name(), v["zone"]["name"].as_str().unwrap());
            assert_eq!(m.power_state.as_str(), v["power_state"].as_str().unwrap());
            assert_eq!(
                m.interface_set.len(),
                v["interface_set"].as_array().unwrap().len()
            );
        }
    }
    assert!(seen >= 20, "parsed {seen} machine objects");
}

#[test]
fn specific_fixture_facts() {
    let machines = fixture("machines.json");
    let m = parse_machine(
        machines["machines-update"].to_string().as_bytes(),
        ApiVersion::V2,
    )
    .unwrap();
    assert_eq!(
        (m.system_id.as_str(), m.status, m.owner.as_deref()),
        ("d8n3re", NodeStatus::Allocated, Some("admin"))
    );
    assert_eq!(m.power_type.as_deref(), Some("manual"));
    assert_eq!(m.macs().len(), 4);
    let nodes = fixture("nodes.json");
    let m = parse_machine(nodes["read-node"].to_string().as_bytes(), ApiVersion::V2).unwrap();
    assert_eq!(m.status, NodeStatus::FailedExitingRescueMode);
    assert_eq!(m.power_state, PowerState::Error);
    let m = parse_machine(
        nodes["set-owner-data"].to_string().as_bytes(),
        ApiVersion::V2,
    )
    .unwrap();
    assert_eq!(m.annotation("somekey"), Some("somevalue"));
    // A whole list built from the fixtures, as a GET machines/ would return it.
    let list: Vec<serde_json::Value> = machines
        .values()
        .filter(|v| is_machine(v))
        .cloned()
        .collect();
    let body = serde_json::to_vec(&list).unwrap();
    let parsed = parse_machine_list(&body, ApiVersion::V2).unwrap();
    assert_eq!(parsed.machines.len(), list.len());
    assert!(parsed.skipped.is_empty());
}

#[test]
fn interface_links_with_and_without_addresses_parse() {
    let nodes = fixture("nodes.json");
    let ifaces = nodes["interfaces-read"].as_array().unwrap();
    for i in ifaces {
        let parsed: maas_flow::maas::model::Interface = serde_json::from_value(i.clone()).unwrap();
        assert_eq!(parsed.links.len(), i["links"].as_array().unwrap().len());
    }
}

#[test]
fn events_fixture_parses_into_the_feed_shape() {
    let ev = fixture("events.json");
    let q = &ev["events-query"];
    assert_eq!(q["count"], 5);
    assert_eq!(q["events"][0]["id"], 1667);
}

#[actix_rt::test]
async fn the_simulator_output_parses_with_the_same_model() {
    let sim = start_sim(scenario::demo_rack("maas-flow"), fast_timings());
    let key = maas_flow::maas::ApiKey::parse(&sim.api_key()).unwrap();
    let http = awc::Client::default();
    let mut r = http
        .get(format!("{}/api/2.0/machines/", sim.base_url))
        .insert_header(("Authorization", key.authorization()))
        .send()
        .await
        .unwrap();
    let body = r.body().limit(64 << 20).await.unwrap();
    let parsed = parse_machine_list(&body, ApiVersion::V2).unwrap();
    assert_eq!(parsed.machines.len(), sim.machines().len());
    let raw: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    // Same keys as the fixture (which is where the simulator's shape comes from).
    let fixture_keys: std::collections::BTreeSet<String> = fixture("machines.json")
        ["machines-update"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let sim_keys: std::collections::BTreeSet<String> =
        raw[0].as_object().unwrap().keys().cloned().collect();
    let missing: Vec<_> = fixture_keys.difference(&sim_keys).collect();
    assert!(missing.is_empty(), "simulator lacks {missing:?}");
    for (m, v) in parsed.machines.iter().zip(&raw) {
        assert_eq!(m.status.label(), v["status_name"].as_str().unwrap());
    }
    sim.stop().await;
}
