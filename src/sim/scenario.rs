//! Racks to simulate: generated (`n` new machines), the demo's mixed rack, or a TOML
//! scenario file listing machines in any mix of states.

use serde::Deserialize;

use super::controllers::{ControllerKind, SimController};
use super::world::{SimLink, SimMachine};
use crate::maas::{NodeStatus, PowerState};

/// A MAAS-looking system_id (six lowercase base-36 characters), unique per index.
pub fn system_id(index: usize) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut t = [b'a'; 6];
    let mut i = index;
    for c in t[1..].iter_mut().rev() {
        *c = ALPHA[i % 36];
        i /= 36;
    }
    t[0] = ALPHA[i % 26];
    String::from_utf8_lossy(&t).into_owned()
}

/// `n` machines in New, powered off, in zone `default`: a rack straight from the crate.
pub fn rack(n: usize) -> Vec<SimMachine> {
    (0..n)
        .map(|i| SimMachine::new(&system_id(i), &format!("node-{:05}", i + 1), i))
        .collect()
}

/// The demo's mixed rack: machines in many states, one in another zone, one owned by
/// someone else, one that fails commissioning.
pub fn demo_rack(me: &str) -> Vec<SimMachine> {
    let mut out = Vec::new();
    let mut add = |name: &str, status: NodeStatus, f: &dyn Fn(&mut SimMachine)| {
        let i = out.len();
        let mut m = SimMachine::new(&system_id(i), name, i);
        m.status = status;
        m.commissioned = status != NodeStatus::New;
        f(&mut m);
        out.push(m);
    };
    for n in 1..=12 {
        add(&format!("rack1-new-{n:02}"), NodeStatus::New, &|m| {
            if n % 4 == 0 {
                m.power_state = PowerState::On;
            }
        });
    }
    for n in 1..=8 {
        add(&format!("rack1-ready-{n:02}"), NodeStatus::Ready, &|_| {});
    }
    for n in 1..=4 {
        add(
            &format!("rack1-alloc-{n:02}"),
            NodeStatus::Allocated,
            &|m| m.owner = Some(me.to_string()),
        );
    }
    for n in 1..=4 {
        add(
            &format!("rack1-deployed-{n:02}"),
            NodeStatus::Deployed,
            &|m| {
                m.owner = Some(me.to_string());
                m.power_state = PowerState::On;
                m.osystem = "ubuntu".into();
                m.distro_series = "jammy".into();
                if let Some(l) = m.interfaces[0].links.first_mut() {
                    l.ip_address = Some(format!("10.20.9.{}", n + 10));
                }
            },
        );
    }
    add("lab-node-01", NodeStatus::New, &|m| m.zone = "lab".into());
    add("rack1-flaky-01", NodeStatus::New, &|m| {
        m.fail_next_commission = true
    });
    add("rack1-alice-01", NodeStatus::Allocated, &|m| {
        m.owner = Some("alice".into())
    });
    add("rack1-broken-01", NodeStatus::Broken, &|_| {});
    add("rack1-rescue-01", NodeStatus::RescueMode, &|m| {
        m.owner = Some(me.to_string())
    });
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    machine: Vec<ScenarioMachine>,
    #[serde(default)]
    controller: Vec<ScenarioController>,
}

/// `[[controller]]`: a region/rack controller that logs events (`kind`:
/// `rack_controller`, `region_controller`, `region_and_rack_controller`; `event_every`:
/// a duration such as `"2s"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioController {
    hostname: String,
    #[serde(default = "default_controller_kind")]
    kind: ControllerKind,
    #[serde(default, with = "humantime_serde")]
    event_every: Option<std::time::Duration>,
}

fn default_controller_kind() -> ControllerKind {
    ControllerKind::RegionAndRackController
}

/// A controller's system_id: from an index range no generated machine reaches.
pub fn controller_system_id(n: usize) -> String {
    system_id(20_000_000 + n)
}

/// A scenario file's machines and controllers.
pub struct Scenario {
    /// The machines, in file order.
    pub machines: Vec<SimMachine>,
    /// The region and rack controllers.
    pub controllers: Vec<SimController>,
}

/// Parse a scenario file with its `[[controller]]` entries.
pub fn parse_scenario_file(text: &str) -> Result<Scenario, String> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let controllers = file
        .controller
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let mut sc = SimController::new(&controller_system_id(n), &c.hostname, c.kind);
            sc.event_every = c.event_every;
            sc
        })
        .collect();
    Ok(Scenario {
        machines: machines_of(file.machine)?,
        controllers,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioMachine {
    hostname: String,
    #[serde(default = "one")]
    count: usize,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    pool: Option<String>,
    #[serde(default)]
    status: Option<toml::Value>,
    #[serde(default)]
    power_state: Option<String>,
    #[serde(default)]
    power_type: Option<String>,
    #[serde(default)]
    macs: Vec<String>,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    fail_commission: bool,
    #[serde(default)]
    fail_deploy: bool,
    /// Workload annotations already set (e.g. a recorded provisioning outcome).
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

fn one() -> usize {
    1
}

/// Parse a scenario file's text into machines (controllers are left out).
pub fn parse_scenario(text: &str) -> Result<Vec<SimMachine>, String> {
    parse_scenario_file(text).map(|s| s.machines)
}

fn machines_of(list: Vec<ScenarioMachine>) -> Result<Vec<SimMachine>, String> {
    let mut out = Vec::new();
    for (n, s) in list.into_iter().enumerate() {
        let status = match &s.status {
            None => NodeStatus::New,
            Some(toml::Value::Integer(i)) => NodeStatus::from_code(*i),
            Some(toml::Value::String(name)) => {
                NodeStatus::from_api_name(&name.to_ascii_lowercase())
                    .ok_or_else(|| format!("machine {}: unknown status {name:?}", n + 1))?
            }
            Some(other) => {
                return Err(format!(
                    "machine {}: status must be a name or number, not {other}",
                    n + 1
                ))
            }
        };
        for c in 0..s.count {
            let i = out.len();
            let hostname = if s.count > 1 {
                format!("{}-{:03}", s.hostname, c + 1)
            } else {
                s.hostname.clone()
            };
            let mut m = SimMachine::new(&system_id(i), &hostname, i);
            m.status = status;
            m.commissioned = status != NodeStatus::New;
            if let Some(z) = &s.zone {
                m.zone = z.clone();
            }
            if let Some(p) = &s.pool {
                m.pool = p.clone();
            }
            if let Some(p) = &s.power_state {
                m.power_state = PowerState::parse(p);
            }
            if let Some(p) = &s.power_type {
                m.power_type = p.clone();
            }
            for (k, mac) in s.macs.iter().enumerate() {
                if let Some(ifc) = m.interfaces.get_mut(k) {
                    ifc.mac = mac.to_ascii_lowercase();
                }
            }
            for (k, ip) in s.ips.iter().enumerate() {
                if let Some(ifc) = m.interfaces.get_mut(k) {
                    match ifc.links.first_mut() {
                        Some(l) => l.ip_address = Some(ip.clone()),
                        None => ifc.links.push(SimLink {
                            id: ifc.id * 10,
                            mode: "static".into(),
                            subnet: None,
                            ip_address: Some(ip.clone()),
                        }),
                    }
                }
            }
            m.owner = s.owner.clone().filter(|o| !o.is_empty());
            m.tags = s.tags.clone();
            m.locked = s.locked;
            m.fail_next_commission = s.fail_commission;
            m.fail_next_deploy = s.fail_deploy;
            m.annotations = s.annotations.clone();
            out.push(m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_ids_are_unique_and_maas_shaped() {
        let ids: std::collections::HashSet<String> = (0..20_000).map(system_id).collect();
        assert_eq!(ids.len(), 20_000);
        assert!(ids.iter().all(|s| s.len() == 6
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())));
    }

    #[test]
    fn scenario_sets_up_any_mix() {
        let ms = parse_scenario(
            r#"
            [[machine]]
            hostname = "a"
            count = 3
            status = "ready"
            zone = "z1"
            [[machine]]
            hostname = "b"
            status = 10
            owner = "alice"
            ips = ["10.0.0.5"]
            annotations = { maas_flow_provisioned = "2026-01-01T00:00:00Z" }
            "#,
        )
        .unwrap();
        assert_eq!(ms.len(), 4);
        assert_eq!(ms[0].hostname, "a-001");
        assert_eq!(ms[2].zone, "z1");
        assert_eq!(ms[3].status, NodeStatus::Allocated);
        assert_eq!(ms[3].ip_addresses(), ["10.0.0.5"]);
        assert_eq!(
            ms[3]
                .annotations
                .get("maas_flow_provisioned")
                .map(String::as_str),
            Some("2026-01-01T00:00:00Z")
        );
        assert!(parse_scenario("[[machine]]\nhostname='x'\nstatus='nope'").is_err());
    }

    #[test]
    fn scenario_lists_controllers_apart_from_machines() {
        let s = parse_scenario_file(
            r#"
            [[machine]]
            hostname = "a"
            [[controller]]
            hostname = "region-1"
            event_every = "1s"
            [[controller]]
            hostname = "rack-2"
            kind = "rack_controller"
            "#,
        )
        .unwrap();
        assert_eq!(s.machines.len(), 1);
        assert_eq!(s.controllers.len(), 2);
        assert_eq!(
            s.controllers[0].kind,
            ControllerKind::RegionAndRackController
        );
        assert_eq!(
            s.controllers[0].event_every,
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(s.controllers[1].kind, ControllerKind::RackController);
        assert_ne!(s.controllers[0].system_id, s.machines[0].system_id);
        assert!(parse_scenario_file("[[controller]]\nhostname='r'\nkind='pdu'").is_err());
    }
}
