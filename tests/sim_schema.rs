//! The simulator's JSON against what outside clients demand of a MAAS region, so the
//! simulator cannot drift from real MAAS again (issue 11 item 4).
//!
//! The field tables are transcribed from juju/gomaasapi (Canonical's 2.0 client, HEAD
//! 39eac57), which coerces every answer through `juju/schema` field maps: a required key
//! missing, or a value of the wrong JSON type, fails the whole answer. [`Ty`] mirrors the
//! checkers it uses (`String`, `ForceInt`, `ForceUint`, `Bool`, `List`, `StringMap`,
//! `OneOf(Nil, ..)`) and [`Need`] its `Defaults` (a default or `Omit` makes a key
//! optional). Nested objects are checked with the schema gomaasapi applies to them.
//!
//! Objects checked: machine (list, single, allocate and op answers), interface, link,
//! subnet, VLAN, zone, resource pool, domain, block device, partition, file system,
//! version, allocate's `constraints_by_type`, plus MAAS's own whoami, bulk release and
//! events answers, every machine key a 3.4.10 region serves, and the 1.0 node list as
//! gomaasapi's `MAASObject` and the original tool read it. The same binary tests the
//! simulator's reproductions of the 3.4.10 answers of items 5, 6 and 8: deploy field
//! errors, the 401 that echoes the token secret, and controllers in the event feed.

mod common;

use std::time::Duration;

use common::*;
use maas_flow::maas::ApiKey;
use maas_flow::sim::{
    scenario, BootImages, ControllerKind, Faults, ProvisionerConfig, Sim, SimConfig,
};
use serde_json::Value;

/// A `juju/schema` checker, as gomaasapi uses them.
#[derive(Clone, Copy)]
enum Ty {
    /// `schema.String()`.
    Str,
    /// `schema.ForceInt()`: a JSON number (or numeric string).
    Int,
    /// `schema.ForceUint()`: a non-negative JSON number.
    Uint,
    /// `schema.Bool()`.
    Bool,
    /// `schema.List(schema.String())`.
    StrList,
    /// `schema.StringMap(schema.String())`.
    StrMap,
    /// `schema.StringMap(schema.Any())`, read no further.
    Map,
    /// An object gomaasapi reads on with another schema.
    Obj(&'static Schema),
    /// A list of such objects.
    ObjList(&'static Schema),
    /// `schema.OneOf(schema.Nil(""), T)`.
    Null(&'static Ty),
}

/// Whether a key must be present (`FieldMap` without a default for it) or not.
#[derive(Clone, Copy, PartialEq)]
enum Need {
    Required,
    /// In `schema.Defaults` (a value or `schema.Omit`).
    Optional,
}

struct Schema {
    /// The gomaasapi function the table is transcribed from.
    source: &'static str,
    fields: &'static [(&'static str, Ty, Need)],
}

use Need::*;
use Ty::*;

/// gomaasapi `machine.go`, `machine_2_0`; `boot_interface` and `interface_set` are read
/// with `interface_2_0`, `zone` with `zone_2_0`, a non-nil `pool` with `pool_2_0`, the
/// block device sets with `blockdevice_2_0`.
static MACHINE: Schema = Schema {
    source: "machine.go machine_2_0",
    fields: &[
        ("resource_uri", Str, Required),
        ("system_id", Str, Required),
        ("hostname", Str, Required),
        ("fqdn", Str, Required),
        ("tag_names", StrList, Required),
        ("owner_data", StrMap, Required),
        ("osystem", Str, Required),
        ("distro_series", Str, Required),
        ("architecture", Null(&Str), Optional),
        ("memory", Int, Required),
        ("cpu_count", Int, Required),
        ("hardware_info", Null(&StrMap), Required),
        ("ip_addresses", StrList, Required),
        ("power_state", Str, Required),
        ("status_name", Str, Required),
        ("status_message", Null(&Str), Required),
        ("boot_interface", Null(&Obj(&INTERFACE)), Required),
        ("interface_set", ObjList(&INTERFACE), Required),
        ("zone", Obj(&ZONE), Required),
        ("pool", Null(&Obj(&POOL)), Required),
        ("physicalblockdevice_set", ObjList(&BLOCKDEVICE), Required),
        ("blockdevice_set", ObjList(&BLOCKDEVICE), Required),
    ],
};

/// gomaasapi `interface.go`, `interface_2_0` (a non-nil `vlan` read with `vlan_2_0`,
/// `links` with `link_2_0`).
static INTERFACE: Schema = Schema {
    source: "interface.go interface_2_0",
    fields: &[
        ("resource_uri", Str, Required),
        ("id", Int, Required),
        ("name", Str, Required),
        ("type", Str, Required),
        ("enabled", Bool, Required),
        ("tags", Null(&StrList), Required),
        ("vlan", Null(&Obj(&VLAN)), Required),
        ("links", ObjList(&LINK), Required),
        ("mac_address", Null(&Str), Optional),
        ("effective_mtu", Int, Required),
        ("parents", StrList, Required),
        ("children", StrList, Required),
    ],
};

/// gomaasapi `link.go`, `link_2_0` (`subnet` read with `subnet_2_0`).
static LINK: Schema = Schema {
    source: "link.go link_2_0",
    fields: &[
        ("id", Int, Required),
        ("mode", Str, Required),
        ("subnet", Obj(&SUBNET), Optional),
        ("ip_address", Str, Optional),
    ],
};

/// gomaasapi `subnet.go`, `subnet_2_0` (`vlan` read with `vlan_2_0`). The simulator's
/// old links lacked `space`: "subnet 2.0 schema check failed: space: expected string,
/// got nothing".
static SUBNET: Schema = Schema {
    source: "subnet.go subnet_2_0",
    fields: &[
        ("resource_uri", Str, Required),
        ("id", Int, Required),
        ("name", Str, Required),
        ("space", Str, Required),
        ("gateway_ip", Null(&Str), Required),
        ("cidr", Str, Required),
        ("vlan", Obj(&VLAN), Required),
        ("dns_servers", Null(&StrList), Required),
    ],
};

/// gomaasapi `vlan.go`, `vlan_2_0`.
static VLAN: Schema = Schema {
    source: "vlan.go vlan_2_0",
    fields: &[
        ("id", Int, Required),
        ("resource_uri", Str, Required),
        ("name", Null(&Str), Required),
        ("fabric", Str, Required),
        ("vid", Int, Required),
        ("mtu", Int, Required),
        ("dhcp_on", Bool, Required),
        ("primary_rack", Null(&Str), Required),
        ("secondary_rack", Null(&Str), Required),
    ],
};

/// gomaasapi `zone.go`, `zone_2_0`.
static ZONE: Schema = Schema {
    source: "zone.go zone_2_0",
    fields: &[
        ("name", Str, Required),
        ("description", Str, Required),
        ("resource_uri", Str, Required),
    ],
};

/// gomaasapi `pool.go`, `pool_2_0`.
static POOL: Schema = Schema {
    source: "pool.go pool_2_0",
    fields: &[
        ("name", Str, Required),
        ("description", Str, Required),
        ("resource_uri", Str, Required),
    ],
};

/// gomaasapi `domain.go`, `domain_`.
static DOMAIN: Schema = Schema {
    source: "domain.go domain_",
    fields: &[
        ("authoritative", Bool, Required),
        ("resource_record_count", Int, Required),
        ("ttl", Null(&Int), Required),
        ("resource_uri", Str, Required),
        ("id", Int, Required),
        ("name", Str, Required),
    ],
};

/// gomaasapi `blockdevice.go`, `blockdevice_2_0` (a non-nil `filesystem` read with
/// `filesystem2_0`, `partitions` with `partition_2_0`).
static BLOCKDEVICE: Schema = Schema {
    source: "blockdevice.go blockdevice_2_0",
    fields: &[
        ("resource_uri", Str, Required),
        ("id", Int, Required),
        ("uuid", Null(&Str), Required),
        ("name", Str, Required),
        ("model", Null(&Str), Required),
        ("id_path", Null(&Str), Required),
        ("path", Str, Required),
        ("used_for", Str, Required),
        ("tags", StrList, Required),
        ("block_size", Uint, Required),
        ("used_size", Uint, Required),
        ("size", Uint, Required),
        ("filesystem", Null(&Obj(&FILESYSTEM)), Required),
        ("partitions", ObjList(&PARTITION), Required),
    ],
};

/// gomaasapi `partition.go`, `partition_2_0`.
static PARTITION: Schema = Schema {
    source: "partition.go partition_2_0",
    fields: &[
        ("resource_uri", Str, Required),
        ("id", Int, Required),
        ("path", Str, Required),
        ("uuid", Null(&Str), Required),
        ("used_for", Str, Required),
        ("size", Uint, Required),
        ("tags", StrList, Optional),
        ("filesystem", Null(&Obj(&FILESYSTEM)), Required),
    ],
};

/// gomaasapi `filesystem.go`, `filesystem2_0`.
static FILESYSTEM: Schema = Schema {
    source: "filesystem.go filesystem2_0",
    fields: &[
        ("fstype", Str, Required),
        ("mount_point", Null(&Str), Optional),
        ("label", Null(&Str), Optional),
        ("uuid", Str, Required),
    ],
};

/// gomaasapi `controller.go`, `readAPIVersionInfo`.
static VERSION: Schema = Schema {
    source: "controller.go readAPIVersionInfo",
    fields: &[
        ("capabilities", StrList, Required),
        ("version", Str, Required),
        ("subversion", Str, Required),
    ],
};

/// gomaasapi `controller.go`, `parseAllocateConstraintsResponse`: the allocate answer
/// must carry `constraints_by_type`.
static ALLOCATED: Schema = Schema {
    source: "controller.go parseAllocateConstraintsResponse",
    fields: &[("constraints_by_type", Obj(&CONSTRAINTS), Required)],
};

static CONSTRAINTS: Schema = Schema {
    source: "controller.go parseAllocateConstraintsResponse (matchFields)",
    fields: &[("storage", Map, Optional), ("interfaces", Map, Optional)],
};

/// gomaasapi checks whoami's status only (`controller.go` `checkCreds`); the table is
/// MAAS's `UserHandler.fields` (canonical/maas `src/maasserver/api/users.py`) plus the
/// `resource_uri` its `resource_uri` classmethod adds.
static USER: Schema = Schema {
    source: "maasserver/api/users.py UserHandler",
    fields: &[
        ("username", Str, Required),
        ("email", Str, Required),
        ("is_local", Bool, Required),
        ("is_superuser", Bool, Required),
        ("resource_uri", Str, Required),
    ],
};

/// gomaasapi has no events; the table is MAAS's `events/?op=query` answer
/// (canonical/maas `src/maasserver/api/events.py`, maas-api.md section 8).
static EVENTS: Schema = Schema {
    source: "maasserver/api/events.py EventsHandler.query",
    fields: &[
        ("count", Int, Required),
        ("events", ObjList(&EVENT), Required),
        ("next_uri", Str, Required),
        ("prev_uri", Str, Required),
    ],
};

static EVENT: Schema = Schema {
    source: "maasserver/api/events.py event_to_dict",
    fields: &[
        ("username", Str, Required),
        ("node", Str, Required),
        ("hostname", Str, Required),
        ("id", Int, Required),
        ("level", Str, Required),
        ("created", Str, Required),
        ("type", Str, Required),
        ("description", Str, Required),
    ],
};

/// The API 1.0 node as gomaasapi's `MAASObject` (`maasobject.go` `GetMAASObject` needs a
/// `resource_uri` string that parses as a URL) and the original tool (opencord/maas
/// `automation/node.go`: `GetString` of system_id, hostname, power_type, power_state;
/// `GetFloat64` of status; `macaddress_set[].mac_address`; `zone.name`) read it.
static NODE_V1: Schema = Schema {
    source: "gomaasapi maasobject.go + opencord/maas automation/node.go",
    fields: &[
        ("resource_uri", Str, Required),
        ("system_id", Str, Required),
        ("hostname", Str, Required),
        ("power_type", Str, Required),
        ("power_state", Str, Required),
        ("status", Int, Required),
        ("substatus", Int, Required),
        ("macaddress_set", ObjList(&MAC_V1), Required),
        ("zone", Obj(&ZONE_V1), Required),
    ],
};

static MAC_V1: Schema = Schema {
    source: "opencord/maas automation/node.go MACs",
    fields: &[("mac_address", Str, Required)],
};

static ZONE_V1: Schema = Schema {
    source: "opencord/maas automation/node.go Zone",
    fields: &[("name", Str, Required)],
};

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// Check `v` against `ty` as `juju/schema` would; errors name the path like gomaasapi.
fn check_ty(path: &str, v: &Value, ty: Ty, errs: &mut Vec<String>) {
    let wrong = |want: &str| format!("{path}: expected {want}, got {}", describe(v));
    macro_rules! bad {
        ($want:expr) => {
            errs.push(wrong($want))
        };
    }
    match ty {
        Str => {
            if !v.is_string() {
                bad!("string")
            }
        }
        Int => {
            let ok = v.as_i64().is_some()
                || v.as_f64().is_some()
                || v.as_str().is_some_and(|s| s.parse::<i64>().is_ok());
            if !ok {
                bad!("number")
            }
        }
        Uint => {
            let ok = v.as_u64().is_some() || v.as_f64().is_some_and(|f| f >= 0.0);
            if !ok {
                bad!("unsigned number")
            }
        }
        Bool => {
            if !v.is_boolean() {
                bad!("bool")
            }
        }
        StrList => match v.as_array() {
            Some(a) => {
                for (i, x) in a.iter().enumerate() {
                    check_ty(&format!("{path}[{i}]"), x, Str, errs);
                }
            }
            None => bad!("list"),
        },
        StrMap => match v.as_object() {
            Some(o) => {
                for (k, x) in o {
                    check_ty(&format!("{path}.{k}"), x, Str, errs);
                }
            }
            None => bad!("map"),
        },
        Map => {
            if !v.is_object() {
                bad!("map")
            }
        }
        Obj(s) => check(path, v, s, errs),
        ObjList(s) => match v.as_array() {
            Some(a) => {
                for (i, x) in a.iter().enumerate() {
                    check(&format!("{path}[{i}]"), x, s, errs);
                }
            }
            None => bad!("list"),
        },
        Null(inner) => {
            if !v.is_null() {
                check_ty(path, v, *inner, errs)
            }
        }
    }
}

/// Check an object against a gomaasapi field map.
fn check(path: &str, v: &Value, s: &Schema, errs: &mut Vec<String>) {
    let Some(o) = v.as_object() else {
        errs.push(format!(
            "{path} ({}): expected map, got {}",
            s.source,
            describe(v)
        ));
        return;
    };
    for (k, ty, need) in s.fields {
        match o.get(*k) {
            Some(x) => check_ty(&format!("{path}.{k}"), x, *ty, errs),
            None if *need == Required => errs.push(format!(
                "{path} ({}): {k}: expected a value, got nothing",
                s.source
            )),
            None => {}
        }
    }
}

fn assert_schema(what: &str, v: &Value, s: &Schema) {
    let mut errs = Vec::new();
    check(what, v, s, &mut errs);
    assert!(
        errs.is_empty(),
        "{what} fails {}:\n{}",
        s.source,
        errs.join("\n")
    );
}

fn assert_each(what: &str, v: &Value, s: &Schema) {
    let list = v
        .as_array()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {v}"));
    assert!(!list.is_empty(), "{what}: empty list proves nothing");
    for (i, x) in list.iter().enumerate() {
        assert_schema(&format!("{what}[{i}]"), x, s);
    }
}

/// Every machine key a MAAS 3.4.10 region serves (maas-api.md section 7) with the JSON
/// type it has there; `?` marks keys that are null until something sets them.
const MAAS_3_4_MACHINE_KEYS: &[(&str, &str)] = &[
    ("address_ttl", "number?"),
    ("architecture", "string"),
    ("bcaches", "list"),
    ("bios_boot_method", "string?"),
    ("blockdevice_set", "list"),
    ("boot_disk", "map?"),
    ("boot_interface", "map?"),
    ("cache_sets", "list"),
    ("commissioning_status", "number"),
    ("commissioning_status_name", "string"),
    ("cpu_count", "number"),
    ("cpu_speed", "number"),
    ("cpu_test_status", "number"),
    ("cpu_test_status_name", "string"),
    ("current_commissioning_result_id", "number?"),
    ("current_installation_result_id", "number?"),
    ("current_testing_result_id", "number?"),
    ("default_gateways", "map"),
    ("description", "string"),
    ("disable_ipv4", "bool"),
    ("distro_series", "string"),
    ("domain", "map"),
    ("enable_hw_sync", "bool"),
    ("ephemeral_deploy", "bool"),
    ("fqdn", "string"),
    ("hardware_info", "map"),
    ("hardware_uuid", "string?"),
    ("hostname", "string"),
    ("hwe_kernel", "string?"),
    ("interface_set", "list"),
    ("interface_test_status", "number"),
    ("interface_test_status_name", "string"),
    ("ip_addresses", "list"),
    ("last_sync", "string?"),
    ("locked", "bool"),
    ("memory", "number"),
    ("memory_test_status", "number"),
    ("memory_test_status_name", "string"),
    ("min_hwe_kernel", "string?"),
    ("netboot", "bool"),
    ("network_test_status", "number"),
    ("network_test_status_name", "string"),
    ("next_sync", "string?"),
    ("node_type", "number"),
    ("node_type_name", "string"),
    ("numanode_set", "list"),
    ("osystem", "string"),
    ("other_test_status", "number"),
    ("other_test_status_name", "string"),
    ("owner", "string?"),
    ("owner_data", "map"),
    ("parent", "string?"),
    ("physicalblockdevice_set", "list"),
    ("pod", "map?"),
    ("pool", "map"),
    ("power_state", "string"),
    ("power_type", "string"),
    ("raids", "list"),
    ("resource_uri", "string"),
    ("special_filesystems", "list"),
    ("status", "number"),
    ("status_action", "string?"),
    ("status_message", "string?"),
    ("status_name", "string"),
    ("storage", "number"),
    ("storage_test_status", "number"),
    ("storage_test_status_name", "string"),
    ("swap_size", "number?"),
    ("sync_interval", "number?"),
    ("system_id", "string"),
    ("tag_names", "list"),
    ("testing_status", "number"),
    ("testing_status_name", "string"),
    ("virtualblockdevice_set", "list"),
    ("virtualmachine_id", "number?"),
    ("volume_groups", "list"),
    ("workload_annotations", "map"),
    ("zone", "map"),
];

fn assert_maas_3_4_keys(what: &str, m: &Value) {
    let o = m.as_object().expect("machine is an object");
    let mut errs = Vec::new();
    for (k, ty) in MAAS_3_4_MACHINE_KEYS {
        let (base, nullable) = match ty.strip_suffix('?') {
            Some(b) => (b, true),
            None => (*ty, false),
        };
        match o.get(*k) {
            None => errs.push(format!("{k}: missing")),
            Some(Value::Null) if nullable => {}
            Some(v) if describe(v) == base => {}
            Some(v) => errs.push(format!("{k}: expected {ty}, got {}", describe(v))),
        }
    }
    assert!(
        errs.is_empty(),
        "{what} is not a 3.4.10 machine:\n{}",
        errs.join("\n")
    );
}

struct Client {
    http: awc::Client,
    base: String,
    key: ApiKey,
}

impl Client {
    fn new(sim: &Sim) -> Self {
        Client {
            http: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
            base: format!("http://{}/MAAS/api", sim.addr),
            key: ApiKey::parse(&sim.api_key()).expect("simulator key parses"),
        }
    }

    /// One signed request; `form` is sent form-encoded on POST.
    async fn call(&self, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        self.call_as(method, path, form, self.key.authorization())
            .await
    }

    async fn call_as(
        &self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
        auth: String,
    ) -> (u16, String) {
        let url = format!("{}/{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        }
        .insert_header(("Authorization", auth));
        let mut resp = if method == "GET" {
            req.send().await
        } else {
            req.send_form(&form).await
        }
        .expect("request reaches the simulator");
        let body = resp.body().limit(64 << 20).await.expect("body read");
        (
            resp.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// A 200 answer parsed as JSON.
    async fn json(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
        let (code, body) = self.call(method, path, form).await;
        assert_eq!(code, 200, "{method} {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
    }
}

/// Machines in the states and shapes that change the JSON: links with and without a
/// subnet or address, owners, tags, other zones and pools, a deployed machine.
fn varied() -> Vec<maas_flow::sim::SimMachine> {
    let mut ms = scenario::parse_scenario(
        r#"
        [[machine]]
        hostname = "new1"
        [[machine]]
        hostname = "ready1"
        status = "ready"
        zone = "zone-north"
        pool = "gpu"
        tags = ["fast", "maas-flow-skip"]
        [[machine]]
        hostname = "alloc1"
        status = "allocated"
        owner = "maas-flow"
        [[machine]]
        hostname = "deployed1"
        status = "deployed"
        owner = "maas-flow"
        ips = ["10.20.3.4", "192.168.9.9"]
        [[machine]]
        hostname = "ready2"
        status = "ready"
        "#,
    )
    .expect("scenario parses");
    ms[2].annotations.insert("role".into(), "ceph".into());
    ms
}

fn start(machines: Vec<maas_flow::sim::SimMachine>, cfg: SimConfig) -> Sim {
    Sim::start(
        SimConfig { workers: 1, ..cfg },
        machines,
        fast_timings(),
        ProvisionerConfig::default(),
    )
    .expect("simulator starts")
}

/// Every object of the 2.0 API a client reads passes gomaasapi's schemas; every
/// machine carries every key 3.4.10 serves. On the old simulator this failed at the
/// first link: `subnet 2.0 schema check failed: space: expected string, got nothing`.
#[actix_rt::test]
async fn every_2_0_answer_satisfies_gomaasapi() {
    let sim = start(varied(), SimConfig::default());
    let c = Client::new(&sim);

    let list = c.json("GET", "2.0/machines/", &[]).await;
    assert_each("machines/", &list, &MACHINE);
    let ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["system_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 5);
    // The checks must reach a link with a subnet and an address, or they prove little.
    let deployed = &list[3];
    let link = &deployed["interface_set"][0]["links"][0];
    assert!(
        link["subnet"].is_object() && link["ip_address"].is_string(),
        "{link}"
    );

    for (n, id) in ids.iter().enumerate() {
        let m = c.json("GET", &format!("2.0/machines/{id}/"), &[]).await;
        assert_schema(&format!("machines/{id}/"), &m, &MACHINE);
        assert_schema(&format!("machines/{id}/ domain"), &m["domain"], &DOMAIN);
        assert_maas_3_4_keys(&format!("machines/{id}/"), &m);
        assert_eq!(m, list[n], "single and list answers agree");
        let ifaces = c
            .json("GET", &format!("2.0/nodes/{id}/interfaces/"), &[])
            .await;
        assert_each(&format!("nodes/{id}/interfaces/"), &ifaces, &INTERFACE);
    }

    let mine = c.json("GET", "2.0/machines/?op=list_allocated", &[]).await;
    assert_each("machines/?op=list_allocated", &mine, &MACHINE);

    // Zones and pools: gomaasapi's tables, and the same ids as the machines show.
    let zones = c.json("GET", "2.0/zones/", &[]).await;
    assert_each("zones/", &zones, &ZONE);
    let pools = c.json("GET", "2.0/resourcepools/", &[]).await;
    assert_each("resourcepools/", &pools, &POOL);
    let ready1 = &list[1];
    assert!(
        zones.as_array().unwrap().contains(&ready1["zone"]),
        "{zones}"
    );
    assert!(
        pools.as_array().unwrap().contains(&ready1["pool"]),
        "{pools}"
    );
    assert_ne!(list[0]["zone"]["id"], ready1["zone"]["id"]);
    let zone = c.json("GET", "2.0/zones/zone-north/", &[]).await;
    assert_eq!(zone, ready1["zone"]);
    let pool_uri = ready1["pool"]["resource_uri"].as_str().unwrap();
    let pool = c
        .json("GET", pool_uri.trim_start_matches("/MAAS/api/"), &[])
        .await;
    assert_eq!(pool, ready1["pool"]);
    assert_eq!(
        c.call("GET", "2.0/zones/nosuch/", &[]).await,
        (404, "No Zone matches the given query.".to_string())
    );

    let domains = c.json("GET", "2.0/domains/", &[]).await;
    assert_each("domains/", &domains, &DOMAIN);
    assert!(
        domains.as_array().unwrap().contains(&list[0]["domain"]),
        "{domains}"
    );
    assert_schema(
        "version/",
        &c.json("GET", "2.0/version/", &[]).await,
        &VERSION,
    );
    let me = c.json("GET", "2.0/users/?op=whoami", &[]).await;
    assert_schema("whoami", &me, &USER);
    assert_eq!(me["username"], "maas-flow");

    // Allocate: a machine plus constraints_by_type.
    let ready2 = &ids[4];
    let a = c
        .json(
            "POST",
            "2.0/machines/?op=allocate",
            &[("system_id", ready2)],
        )
        .await;
    assert_schema("allocate", &a, &MACHINE);
    assert_schema("allocate", &a, &ALLOCATED);
    assert_eq!(a["status_name"], "Allocated");
    assert_maas_3_4_keys("allocate", &a);

    // Op answers are machines too.
    let d = c
        .json(
            "POST",
            &format!("2.0/machines/{ready2}/?op=deploy"),
            &[("distro_series", "jammy")],
        )
        .await;
    assert_schema("deploy", &d, &MACHINE);
    let iface = ready1["interface_set"][0]["id"].as_i64().unwrap();
    let linked = c
        .json(
            "POST",
            &format!("2.0/nodes/{}/interfaces/{iface}/?op=link_subnet", ids[1]),
            &[("mode", "dhcp"), ("subnet", "10.30.0.0/24")],
        )
        .await;
    assert_schema("link_subnet", &linked, &INTERFACE);

    // Bulk release (MAAS `MachinesHandler.release`): the released ids; refusals name ids.
    let alloc1 = &ids[2];
    let r = c
        .json(
            "POST",
            "2.0/machines/?op=release",
            &[("machines", alloc1.as_str()), ("machines", ids[1].as_str())],
        )
        .await;
    assert_eq!(r, serde_json::json!([alloc1]), "Ready machines are skipped");
    assert_eq!(
        c.call(
            "POST",
            "2.0/machines/?op=release",
            &[("machines", "nosuch")]
        )
        .await,
        (400, "Unknown machine(s): nosuch.".to_string())
    );
    let (code, body) = c
        .call(
            "POST",
            "2.0/machines/?op=release",
            &[("machines", ids[0].as_str())],
        )
        .await;
    assert_eq!(
        (code, body),
        (
            409,
            format!(
                "Machine(s) cannot be released in their current state: {} ('New').",
                ids[0]
            )
        )
    );

    let ev = c
        .json("GET", "2.0/events/?op=query&level=DEBUG&limit=50", &[])
        .await;
    assert_schema("events/", &ev, &EVENTS);
    assert!(ev["count"].as_u64().unwrap() >= 3, "{ev}");
    sim.stop().await;
}

/// The 1.0 node list as gomaasapi's `MAASObject` and the original tool read it.
#[actix_rt::test]
async fn the_1_0_node_list_satisfies_maas_object_and_the_original_tool() {
    let sim = start(varied(), SimConfig::default());
    let c = Client::new(&sim);
    let nodes = c.json("GET", "1.0/nodes/?op=list", &[]).await;
    assert_each("1.0 nodes", &nodes, &NODE_V1);
    for n in nodes.as_array().unwrap() {
        let uri = n["resource_uri"].as_str().unwrap();
        assert!(
            url::Url::parse("http://x").unwrap().join(uri).is_ok()
                && uri.starts_with("/MAAS/api/1.0/nodes/"),
            "{uri}"
        );
    }
    sim.stop().await;
}

/// Deploy field errors, word for word as a 3.4.10 region answers them (maas-api.md
/// section 7; canonical/maas `forms/__init__.py`, `utils/osystems.py`): a series without
/// images and an unknown kernel are 400 JSON naming the field, and change nothing.
#[actix_rt::test]
async fn deploy_field_errors_read_like_the_region() {
    let sim = start(
        varied(),
        SimConfig {
            boot_images: BootImages::only(&["focal", "jammy"]),
            ..SimConfig::default()
        },
    );
    let c = Client::new(&sim);
    let ms = sim.machines();
    let (alloc1, ready1) = (ms[2].system_id.clone(), ms[1].system_id.clone());

    let (code, body) = c
        .call(
            "POST",
            &format!("2.0/machines/{alloc1}/?op=deploy"),
            &[("distro_series", "noble")],
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::json!({"distro_series": [
            "'noble' is not a valid distro_series.  It should be one of: '', 'ubuntu/focal', 'ubuntu/jammy'."
        ]})
    );
    let (code, body) = c
        .call(
            "POST",
            &format!("2.0/machines/{alloc1}/?op=deploy"),
            &[("distro_series", "jammy"), ("hwe_kernel", "hwe-16.04")],
        )
        .await;
    assert_eq!(
        (code, body.as_str()),
        (
            400,
            r#"{"hwe_kernel":["hwe-16.04 is not available for ubuntu/jammy on amd64/generic."]}"#
        )
    );
    // A Ready machine is not allocated by a refused deploy.
    let (code, _) = c
        .call(
            "POST",
            &format!("2.0/machines/{ready1}/?op=deploy"),
            &[("distro_series", "noble")],
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        sim.status_of(&ready1),
        Some(maas_flow::maas::NodeStatus::Ready)
    );
    assert_eq!(
        sim.status_of(&alloc1),
        Some(maas_flow::maas::NodeStatus::Allocated)
    );
    let refused = sim
        .ops()
        .iter()
        .filter(|o| o.op == "deploy" && o.http_status == 400)
        .count();
    assert_eq!(refused, 3);
    let refused_ready = sim
        .ops()
        .iter()
        .filter(|o| o.op == "deploy" && o.status_before.as_deref() == Some("Ready"))
        .count();
    assert_eq!(refused_ready, 1, "the op log shows the refused deploy");

    // A series whose kernels are gone: the 3.4.10 `hwe_kernel` answer.
    sim.with_world(|w| w.boot_images.images[0].kernels.clear());
    let (code, body) = c
        .call(
            "POST",
            &format!("2.0/machines/{alloc1}/?op=deploy"),
            &[("distro_series", "focal")],
        )
        .await;
    assert_eq!(
        (code, body.as_str()),
        (400, r#"{"hwe_kernel":["focal has no kernels available."]}"#)
    );

    // No address-configuring link: the 3.4.10 `network` answer.
    let deployed1 = ms[3].system_id.clone();
    sim.with_world(|w| {
        let i = w.find(&ms[4].system_id).unwrap();
        for f in w.machines[i].interfaces.iter_mut() {
            f.links.retain(|l| l.mode == "link_up");
        }
        w.machines[i].invalidate();
    });
    let (code, body) = c
        .call(
            "POST",
            &format!("2.0/machines/{}/?op=deploy", ms[4].system_id),
            &[],
        )
        .await;
    assert_eq!(
        (code, body.as_str()),
        (
            400,
            r#"{"network":["Node must be configured to use a network"]}"#
        )
    );
    // A broken preseed (fault switch): 400 text, only where a deploy could start.
    sim.set_faults(Faults {
        preseed_error_rate: 1.0,
        ..Faults::default()
    });
    let (code, body) = c
        .call("POST", &format!("2.0/machines/{alloc1}/?op=deploy"), &[])
        .await;
    assert_eq!(code, 400);
    assert!(body.starts_with("Failed to render preseed: "), "{body}");
    let (code, _) = c
        .call("POST", &format!("2.0/machines/{deployed1}/?op=deploy"), &[])
        .await;
    assert_eq!(code, 409, "a wrong state is still a 409");
    sim.set_faults(Faults::default());

    // A synced series still deploys, with or without the `ubuntu/` prefix.
    let d = c
        .json(
            "POST",
            &format!("2.0/machines/{alloc1}/?op=deploy"),
            &[
                ("distro_series", "ubuntu/jammy"),
                ("hwe_kernel", "hwe-22.04"),
            ],
        )
        .await;
    assert_eq!(
        (d["status_name"].as_str(), d["distro_series"].as_str()),
        (Some("Deploying"), Some("jammy"))
    );
    sim.stop().await;
}

/// With the right consumer and token keys but a wrong secret, MAAS's OAuth check echoes
/// the real token secret (maas-api.md section 7): the simulator sends exactly that body,
/// so the controller's redaction can be tested against it.
#[actix_rt::test]
async fn a_wrong_secret_is_answered_with_the_real_one() {
    let sim = start(varied(), SimConfig::default());
    let c = Client::new(&sim);
    let real = ApiKey::parse(&sim.api_key()).unwrap();
    let exposed = real.expose();
    let secret = exposed.rsplit(':').next().unwrap();
    let wrong = ApiKey::parse(&format!(
        "{}:{}:not-the-secret",
        real.consumer_key(),
        real.token_key()
    ))
    .unwrap();
    let (code, body) = c
        .call_as("GET", "2.0/machines/", &[], wrong.authorization())
        .await;
    assert_eq!(code, 401);
    assert_eq!(
        body,
        format!(
            "Authorization Error: 'Invalid signature. Expected signature base string: &{secret}'"
        )
    );
    // A wrong consumer key does not get that far.
    let stranger = ApiKey::parse("nobody:nothing:none").unwrap();
    let (code, body) = c
        .call_as("GET", "2.0/machines/", &[], stranger.authorization())
        .await;
    assert_eq!(
        (code, body.as_str()),
        (401, "Authorization Error: Invalid API key.")
    );
    sim.stop().await;
}

/// Controllers write to the event feed, but `machines/?id=<controller>` answers `[]`
/// (maas-api.md section 7): on demand, and periodically as the region is used.
#[actix_rt::test]
async fn controllers_appear_in_the_feed_but_not_among_machines() {
    let s = scenario::parse_scenario_file(
        r#"
        [[machine]]
        hostname = "node1"
        [[controller]]
        hostname = "region-1"
        event_every = "100ms"
        [[controller]]
        hostname = "rack-1"
        kind = "rack_controller"
        "#,
    )
    .expect("scenario parses");
    let sim = start(s.machines, SimConfig::default());
    sim.with_world(|w| s.controllers.into_iter().for_each(|c| w.add_controller(c)));
    let (region, rack) = sim.with_world(|w| {
        (
            w.controllers[0].system_id.clone(),
            w.controllers[1].system_id.clone(),
        )
    });
    assert_eq!(
        sim.with_world(|w| w.controllers[1].kind),
        ControllerKind::RackController
    );
    sim.with_world(|w| w.controller_event(1, "Importing boot images."));
    let c = Client::new(&sim);

    // The periodic controller: events keep coming while the region is asked.
    let mut region_events = 0;
    for _ in 0..300 {
        let ev = c
            .json("GET", "2.0/events/?op=query&level=DEBUG&limit=1000", &[])
            .await;
        assert_schema("events/", &ev, &EVENTS);
        region_events = ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["node"] == region.as_str())
            .count();
        if region_events >= 2 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(region_events >= 2, "region events: {region_events}");
    let ev = c
        .json(
            "GET",
            &format!("2.0/events/?op=query&level=DEBUG&id={rack}"),
            &[],
        )
        .await;
    assert_eq!(ev["count"], 1, "{ev}");
    assert_eq!(ev["events"][0]["type"], "Rack import info");
    assert_eq!(ev["events"][0]["hostname"], "rack-1");

    for id in [&region, &rack] {
        let l = c.json("GET", &format!("2.0/machines/?id={id}"), &[]).await;
        assert_eq!(l, serde_json::json!([]), "machines/?id={id}");
        assert_eq!(
            c.call("GET", &format!("2.0/machines/{id}/"), &[]).await,
            (404, "No Machine matches the given query.".to_string())
        );
    }
    sim.stop().await;
}

/// A test of the checker itself: the old simulator's link subnet is refused with
/// gomaasapi's complaint, so the schema test can fail.
#[test]
fn the_checker_refuses_the_old_link_subnet() {
    let old: Value = serde_json::json!({
        "id": 1, "mode": "auto",
        "subnet": {"name": "10.20.0.0/16", "cidr": "10.20.0.0/16", "vlan": null, "id": 1,
                   "resource_uri": "/MAAS/api/2.0/subnets/1/"}
    });
    let mut errs = Vec::new();
    check("link 0", &old, &LINK, &mut errs);
    assert!(
        errs.iter()
            .any(|e| e.contains("space: expected a value, got nothing")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains(".vlan (vlan.go vlan_2_0): expected map, got nothing")),
        "{errs:?}"
    );
}
