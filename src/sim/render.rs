//! Rendering simulated machines as MAAS JSON: the 2.0 machine object (built around the
//! real fixture's fields and nesting, so a list is ~10 KB per machine) and the 1.0 node.
//!
//! A rendered machine is cached until it changes, so a 10,000-machine list is mostly
//! a concatenation of cached strings.

use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};

use super::world::{SimInterface, SimMachine};

/// The fixture machine (`machines-update` from MAAS's API examples) with its
/// per-machine keys removed: what stays is the bulk every machine carries.
struct Template {
    /// `"key":value,` pairs, with `{SYSID}` where the fixture's system_id was.
    bulk: String,
    /// Interface keys that do not vary per interface.
    iface_bulk: String,
    /// The interfaces' VLAN, which their links' subnets sit on too.
    vlan: Value,
}

const TEMPLATE_ID: &str = "d8n3re";

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let mut m: Map<String, Value> = serde_json::from_str(include_str!("machine_template.json"))
            .expect("embedded template is JSON");
        let iface = m
            .get("interface_set")
            .and_then(|v| v.as_array())
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_else(|| json!({}));
        for k in DYNAMIC_KEYS {
            m.remove(*k);
        }
        let mut iface = match iface {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        for k in [
            "id",
            "name",
            "mac_address",
            "links",
            "system_id",
            "resource_uri",
            "children",
            "parents",
            "type",
            "discovered",
        ] {
            iface.remove(k);
        }
        let vlan = iface.get("vlan").cloned().unwrap_or(Value::Null);
        Template {
            bulk: pairs(&m).replace(TEMPLATE_ID, "{SYSID}"),
            iface_bulk: pairs(&iface),
            vlan,
        }
    })
}

/// Serialize an object's entries without the braces.
fn pairs(m: &Map<String, Value>) -> String {
    let s = Value::Object(m.clone()).to_string();
    s[1..s.len() - 1].to_string()
}

const DYNAMIC_KEYS: &[&str] = &[
    "system_id",
    "hostname",
    "fqdn",
    "domain",
    "zone",
    "pool",
    "status",
    "status_name",
    "status_message",
    "status_action",
    "power_state",
    "power_type",
    "owner",
    "owner_data",
    "workload_annotations",
    "current_installation_result_id",
    "tag_names",
    "locked",
    "osystem",
    "distro_series",
    "interface_set",
    "ip_addresses",
    "boot_interface",
    "resource_uri",
    "node_type",
    "node_type_name",
    "hardware_uuid",
    "ephemeral_deploy",
    "enable_hw_sync",
    "error_description",
];

/// A stable small id for a named object (zone, pool, subnet) the simulator has no table
/// for: MAAS ids are integers, and the same name must give the same id in every answer
/// (machine JSON, `zones/`, `resourcepools/`). `default` keeps MAAS's own ids.
pub fn stable_id(kind: &str, name: &str) -> i64 {
    match (kind, name) {
        ("zone", "default") => 1,
        ("pool", "default") => 0,
        _ => {
            // FNV-1a: deterministic across runs and processes, unlike `DefaultHasher`.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in kind.bytes().chain([0]).chain(name.bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            (h % 90_000) as i64 + 2
        }
    }
}

/// A zone as `zones/` and the machine's `zone` key render it (api/zones.py: id, name,
/// description, resource_uri by name).
pub fn zone_json(name: &str) -> Value {
    json!({ "name": name, "description": "", "id": stable_id("zone", name),
            "resource_uri": format!("/MAAS/api/2.0/zones/{name}/") })
}

/// A resource pool as `resourcepools/` and the machine's `pool` key render it
/// (api/resourcepools.py: id, name, description, resource_uri by id).
pub fn pool_json(name: &str) -> Value {
    let id = stable_id("pool", name);
    let description = if name == "default" {
        "Default pool"
    } else {
        ""
    };
    json!({ "name": name, "description": description, "id": id,
            "resource_uri": format!("/MAAS/api/2.0/resourcepool/{id}/") })
}

/// A DNS domain as `domains/` and the machine's `domain` key render it (api/domains.py:
/// id, name, ttl, authoritative, is_default, resource_record_count). `maas`, MAAS's
/// default domain, has id 0.
pub fn domain_json(name: &str) -> Value {
    let id = if name == "maas" {
        0
    } else {
        stable_id("domain", name)
    };
    json!({ "authoritative": true, "ttl": null, "is_default": name == "maas", "name": name,
            "id": id, "resource_record_count": 0,
            "resource_uri": format!("/MAAS/api/2.0/domains/{id}/") })
}

/// The first host address of an IPv4 CIDR, MAAS's usual gateway; `None` otherwise.
fn first_host(cidr: &str) -> Option<String> {
    let (net, bits) = cidr.split_once('/')?;
    let net: std::net::Ipv4Addr = net.parse().ok()?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 30)?;
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    Some(std::net::Ipv4Addr::from((u32::from(net) & mask) + 1).to_string())
}

/// A link's `subnet` object, with every key api/subnets.py `DISPLAYED_SUBNET_FIELDS`
/// serves (gomaasapi `subnet_2_0` requires `space`, `gateway_ip`, `dns_servers` and a
/// full `vlan`). The simulator names subnets by CIDR, as MAAS does by default.
fn subnet_json(cidr: &str) -> Value {
    let id = stable_id("subnet", cidr);
    json!({
        "id": id, "name": cidr, "description": "", "cidr": cidr,
        "vlan": template().vlan.clone(), "space": "undefined",
        "gateway_ip": first_host(cidr), "dns_servers": [], "rdns_mode": 2,
        "allow_dns": true, "allow_proxy": true, "active_discovery": false, "managed": true,
        "disabled_boot_architectures": [],
        "resource_uri": format!("/MAAS/api/2.0/subnets/{id}/"),
    })
}

/// A stable, UUID-shaped `hardware_uuid` per machine (MAAS reads it from DMI when
/// commissioning).
fn hardware_uuid(system_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in system_id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 20) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

/// One interface object, as `nodes/{id}/interfaces/{iid}/` returns it.
pub fn interface_json(m: &SimMachine, i: &SimInterface) -> String {
    let links: Vec<Value> = i
        .links
        .iter()
        .map(|l| {
            let mut o = json!({ "id": l.id, "mode": l.mode });
            if let Some(ip) = &l.ip_address {
                o["ip_address"] = json!(ip);
            }
            if let Some(s) = &l.subnet {
                o["subnet"] = subnet_json(s);
            }
            o
        })
        .collect();
    let head = json!({
        "id": i.id, "name": i.name, "type": "physical", "mac_address": i.mac, "links": links,
        "system_id": m.system_id, "children": [], "parents": [], "discovered": null,
        "resource_uri": format!("/MAAS/api/2.0/nodes/{}/interfaces/{}/", m.system_id, i.id),
    })
    .to_string();
    let bulk = &template().iface_bulk;
    if bulk.is_empty() {
        head
    } else {
        format!("{},{}}}", &head[..head.len() - 1], bulk)
    }
}

/// The API 2.0 machine object.
pub fn machine_v2(m: &mut SimMachine) -> Arc<str> {
    if let Some(c) = &m.cache {
        return c.clone();
    }
    let ifaces: Vec<String> = m.interfaces.iter().map(|i| interface_json(m, i)).collect();
    let boot = ifaces.first().cloned().unwrap_or_else(|| "null".into());
    let ann = json!(m.annotations);
    let head = json!({
        "system_id": m.system_id, "hostname": m.hostname, "fqdn": m.fqdn(),
        "domain": domain_json(&m.domain),
        "zone": zone_json(&m.zone), "pool": pool_json(&m.pool),
        "status": m.status.code(), "status_name": m.status.label(),
        "status_message": m.status_message, "status_action": "",
        "power_state": m.power_state.as_str(), "power_type": m.power_type,
        "owner": m.owner, "owner_data": ann, "workload_annotations": ann,
        "tag_names": m.tags, "locked": m.locked, "osystem": m.osystem, "distro_series": m.distro_series,
        "ip_addresses": m.ip_addresses(), "node_type": 0, "node_type_name": "Machine",
        "hardware_uuid": hardware_uuid(&m.system_id), "ephemeral_deploy": false, "enable_hw_sync": false,
        "resource_uri": format!("/MAAS/api/2.0/machines/{}/", m.system_id),
        "current_installation_result_id": m.installation_result_id,
    })
    .to_string();
    let bulk = template().bulk.replace("{SYSID}", &m.system_id);
    let s: Arc<str> = format!(
        "{},\"interface_set\":[{}],\"boot_interface\":{},{}}}",
        &head[..head.len() - 1],
        ifaces.join(","),
        boot,
        bulk
    )
    .into();
    m.cache = Some(s.clone());
    s
}

/// The API 1.0 node object (MAAS 1.9 `DISPLAYED_NODE_FIELDS`): folded status plus
/// `substatus`, FQDN as hostname, `macaddress_set`.
pub fn node_v1(m: &SimMachine) -> Value {
    json!({
        "system_id": m.system_id, "hostname": m.fqdn(),
        "status": m.status.folded_v1().code(), "substatus": m.status.code(),
        "substatus_name": m.status.label(), "substatus_message": m.status_message,
        "substatus_action": "", "owner": m.owner,
        "zone": { "name": m.zone, "description": "",
                  "resource_uri": format!("/MAAS/api/1.0/zones/{}/", m.zone) },
        "power_state": m.power_state.as_str(), "power_type": m.power_type,
        "macaddress_set": m.interfaces.iter().map(|i| json!({ "mac_address": i.mac })).collect::<Vec<_>>(),
        "pxe_mac": m.interfaces.first().map(|i| json!({ "mac_address": i.mac })),
        "ip_addresses": m.ip_addresses(), "tag_names": m.tags, "osystem": m.osystem,
        "distro_series": m.distro_series, "architecture": "amd64/generic", "netboot": true,
        "cpu_count": 4, "memory": 8192, "storage": 256000, "boot_type": "fastpath",
        "resource_uri": format!("/MAAS/api/1.0/nodes/{}/", m.system_id),
    })
}
