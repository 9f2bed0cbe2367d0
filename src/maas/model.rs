//! The typed machine model, parsed from real MAAS JSON.
//!
//! Only the fields maas-flow acts on are kept; every other key is skipped by serde
//! without allocation. Every field that an older or newer MAAS may omit or send as
//! `null` is optional, and both the API 2.0 machine shape and the API 1.0 node shape
//! (folded `status` + `substatus`, FQDN `hostname`, `macaddress_set`) parse into it.
//!
//! Parsing is also where MAAS's data is checked before anything acts on it: a
//! system_id must be one MAAS could have generated (it becomes part of every URL we
//! sign), and every address must parse as an IP (it becomes a provisioning argument).
//! A machine that fails is kept, marked [`Machine::invalid`] with the reason, so that it
//! is listed and held for an operator instead of being silently dropped or acted on.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};

use super::escape::Escaped;
pub use super::status::{NodeStatus, PowerState};
use super::{intern, ApiVersion};

/// The longest system_id MAAS has generated: `node-<uuid1>` (MAAS 1.x, 41 characters).
const MAX_SYSTEM_ID: usize = 41;

/// Whether `id` is a system_id MAAS could have generated. MAAS 2.0+ generates six
/// characters from its `znums` alphabet (lowercase letters and digits,
/// `generate_node_system_id` in `src/maasserver/models/node.py`); MAAS 1.x generated
/// `node-<uuid1>`. So: 1 to 41 characters of `[a-z0-9-]`, not starting with `-`.
/// Anything else (empty, `/`, `..`, `?`, whitespace, controls) would change the URL
/// the id is put into.
pub fn check_system_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty system_id".into());
    }
    if id.len() > MAX_SYSTEM_ID
        || id.starts_with('-')
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "system_id `{}` is not one MAAS generates",
            Escaped(&id.chars().take(64).collect::<String>())
        ));
    }
    Ok(())
}

/// One machine as MAAS reported it at one moment: the compact at-rest record.
///
/// Only the fields maas-flow reads are kept (see `stream.rs` for how a list is parsed
/// into these); names that repeat across machines (zone, pool, owner, power type,
/// subnets) are interned `Arc<str>`s shared by every record (`intern.rs`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Machine {
    pub system_id: String,
    /// Short hostname (API 2.0); API 1.0 sends the FQDN here and we split it.
    #[serde(default, deserialize_with = "nullable")]
    pub hostname: String,
    #[serde(default)]
    pub fqdn: Option<String>,
    pub status: NodeStatus,
    /// API 1.0 only: the real status behind the folded `status`.
    #[serde(default)]
    pub substatus: Option<NodeStatus>,
    /// The zone's name (MAAS embeds the whole zone object).
    #[serde(default, deserialize_with = "intern::named")]
    pub zone: Option<Arc<str>>,
    #[serde(default, deserialize_with = "intern::named")]
    pub pool: Option<Arc<str>>,
    #[serde(default)]
    pub power_state: PowerState,
    #[serde(default, deserialize_with = "intern::opt")]
    pub power_type: Option<Arc<str>>,
    #[serde(default, deserialize_with = "intern::opt")]
    pub owner: Option<Arc<str>>,
    #[serde(default)]
    pub locked: Option<bool>,
    /// Tags stay plain strings: filters and deploy profiles match them as `&[String]`.
    #[serde(default, deserialize_with = "nullable")]
    pub tag_names: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub ip_addresses: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub interface_set: Vec<Interface>,
    #[serde(default)]
    pub boot_interface: Option<BootInterface>,
    /// API 1.0: `[{"mac_address": ...}]`.
    #[serde(default, deserialize_with = "nullable")]
    pub macaddress_set: Vec<MacAddress>,
    #[serde(default, deserialize_with = "nullable")]
    pub workload_annotations: BTreeMap<String, String>,
    /// The pre-3.0 name of the same map; dropped when `workload_annotations` came too.
    #[serde(default, deserialize_with = "nullable")]
    pub owner_data: BTreeMap<String, String>,
    /// The series deployed (handed to the provisioning step); interned.
    #[serde(default, deserialize_with = "intern::opt")]
    pub distro_series: Option<Arc<str>>,
    /// The script result of the machine's current installation: a new one per deploy,
    /// so it names the deployment a provisioning outcome belongs to (absent in API 1.0).
    #[serde(default)]
    pub current_installation_result_id: Option<i64>,
    /// Why this machine's data cannot be trusted (set by validation at parse time).
    #[serde(skip)]
    pub invalid: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Interface {
    pub id: i64,
    #[serde(default)]
    pub mac_address: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub links: Vec<Link>,
}

/// One entry of an interface's `links[]`; `ip_address` and `subnet` are optional in MAAS.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Link {
    pub id: i64,
    #[serde(default)]
    pub mode: LinkMode,
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub subnet: Option<Subnet>,
}

/// How MAAS configures a link (`links[].mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkMode {
    Auto,
    Dhcp,
    Static,
    LinkUp,
    /// Missing, `null`, or a mode this build does not know.
    #[default]
    Other,
}

impl<'de> Deserialize<'de> for LinkMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(
            match Option::<std::borrow::Cow<'de, str>>::deserialize(d)?.as_deref() {
                Some("auto") => LinkMode::Auto,
                Some("dhcp") => LinkMode::Dhcp,
                Some("static") => LinkMode::Static,
                Some("link_up") => LinkMode::LinkUp,
                _ => LinkMode::Other,
            },
        )
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Subnet {
    #[serde(default, deserialize_with = "intern::opt")]
    pub cidr: Option<Arc<str>>,
    #[serde(default)]
    pub id: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BootInterface {
    #[serde(default)]
    pub mac_address: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MacAddress {
    pub mac_address: String,
}

/// `null` and a missing key both mean "empty" for collections and names.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Machine {
    pub fn zone_name(&self) -> &str {
        self.zone.as_deref().unwrap_or("")
    }

    pub fn pool_name(&self) -> &str {
        self.pool.as_deref().unwrap_or("")
    }

    /// MAC addresses in MAAS's order, boot interface first.
    pub fn macs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        if let Some(m) = self
            .boot_interface
            .as_ref()
            .and_then(|b| b.mac_address.as_deref())
        {
            out.push(m);
        }
        for m in self
            .interface_set
            .iter()
            .filter_map(|i| i.mac_address.as_deref())
        {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        for m in &self.macaddress_set {
            if !out.contains(&m.mac_address.as_str()) {
                out.push(&m.mac_address);
            }
        }
        out
    }

    /// The first address MAAS knows, as the original tool chose it.
    pub fn first_ip(&self) -> Option<&str> {
        self.ip_addresses.first().map(String::as_str).or_else(|| {
            self.interface_set
                .iter()
                .flat_map(|i| i.links.iter())
                .find_map(|l| l.ip_address.as_deref())
        })
    }

    /// Whether MAAS lists `tag` on this machine.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tag_names.iter().any(|t| t == tag)
    }

    pub fn has_power_type(&self) -> bool {
        self.power_type.as_deref().is_some_and(|p| !p.is_empty())
    }

    /// Workload annotations, falling back to `owner_data` (the pre-3.0 name of the same map).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.workload_annotations
            .get(key)
            .or_else(|| self.owner_data.get(key))
            .map(String::as_str)
    }

    /// Check what we will put into URLs and child processes; mark the machine invalid
    /// with the first problem found.
    fn validate(&mut self) {
        self.invalid = if let Err(why) = check_system_id(&self.system_id) {
            Some(why)
        } else {
            self.ip_addresses
                .iter()
                .map(String::as_str)
                .chain(
                    self.interface_set
                        .iter()
                        .flat_map(|i| i.links.iter())
                        .filter_map(|l| l.ip_address.as_deref()),
                )
                .find(|ip| ip.trim().parse::<IpAddr>().is_err())
                .map(|bad| format!("ip address `{}` is not an IP address", Escaped(bad)))
        };
    }

    /// Bring an API 1.0 node into the 2.0 shape (real status, short hostname), validate,
    /// and drop what a record does not need to keep.
    pub(crate) fn normalise(&mut self, version: ApiVersion) {
        self.validate();
        if !self.workload_annotations.is_empty() {
            // MAAS 3.x sends the same map under both names.
            self.owner_data.clear();
        }
        self.ip_addresses.shrink_to_fit();
        self.interface_set.shrink_to_fit();
        if version == ApiVersion::V1 {
            if let Some(sub) = self.substatus {
                self.status = sub;
            }
            if self.fqdn.is_none() && self.hostname.contains('.') {
                self.fqdn = Some(self.hostname.clone());
            }
            if let Some((short, _)) = self.hostname.split_once('.') {
                self.hostname = short.to_string();
            }
        }
    }
}

/// A machine entry that could not be parsed; the rest of the list still counts.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub index: usize,
    pub system_id: Option<String>,
    pub error: String,
}

/// The result of parsing one machine list.
#[derive(Debug, Default)]
pub struct ParsedList {
    pub machines: Vec<Arc<Machine>>,
    pub skipped: Vec<Skipped>,
}

/// Why a whole answer could not be used.
#[derive(Debug, thiserror::Error)]
#[error("machine list is not a JSON array of objects: {0}")]
pub struct ListError(#[from] serde_json::Error);

/// Parse a machine list held in memory, with the same per-machine rules as a streamed
/// list (`stream.rs`): a malformed machine is skipped, a malformed list is an error.
pub fn parse_machine_list(body: &[u8], version: ApiVersion) -> Result<ParsedList, ListError> {
    super::stream::parse_slice(body, version)
}

/// Parse one machine object (an op's answer or a single read).
pub fn parse_machine(body: &[u8], version: ApiVersion) -> Result<Machine, serde_json::Error> {
    let mut m: Machine = serde_json::from_slice(body)?;
    m.normalise(version);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_null_fields_are_empty_not_errors() {
        let body = br#"[{"system_id":"a","status":4,"hostname":null,"zone":null,
            "interface_set":null,"ip_addresses":null,"tag_names":null,"power_state":null,
            "workload_annotations":null,"some_future_field":{"x":1}}]"#;
        let p = parse_machine_list(body, ApiVersion::V2).unwrap();
        assert_eq!(p.machines.len(), 1);
        assert_eq!(p.machines[0].status, NodeStatus::Ready);
        assert_eq!(p.machines[0].power_state, PowerState::Unknown);
        assert_eq!(p.machines[0].zone_name(), "");
    }

    #[test]
    fn one_bad_machine_is_skipped_the_rest_proceed() {
        let body = br#"[{"system_id":"a","status":4},{"system_id":"b","status":"four"},
            {"status":1},{"system_id":"c","status":77}]"#;
        let p = parse_machine_list(body, ApiVersion::V2).unwrap();
        let ids: Vec<_> = p.machines.iter().map(|m| m.system_id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(p.machines[1].status, NodeStatus::Unknown(77));
        assert_eq!(p.skipped.len(), 2);
        assert_eq!(p.skipped[0].system_id.as_deref(), Some("b"));
        assert!(
            p.skipped[0].error.contains("invalid type"),
            "{}",
            p.skipped[0].error
        );
    }

    #[test]
    fn not_a_list_is_an_error() {
        assert!(parse_machine_list(b"{\"a\":1}", ApiVersion::V2).is_err());
        assert!(parse_machine_list(b"[{\"system_id\":\"a\"", ApiVersion::V2).is_err());
    }

    #[test]
    fn v1_nodes_unfold_status_and_split_fqdn() {
        let body = br#"[{"system_id":"node-1","hostname":"h1.maas","status":6,"substatus":10,
            "macaddress_set":[{"mac_address":"00:11:22:33:44:55"}],"owner":"admin"}]"#;
        let p = parse_machine_list(body, ApiVersion::V1).unwrap();
        let m = &p.machines[0];
        assert_eq!(m.status, NodeStatus::Allocated);
        assert_eq!(m.hostname, "h1");
        assert_eq!(m.fqdn.as_deref(), Some("h1.maas"));
        assert_eq!(m.macs(), ["00:11:22:33:44:55"]);
        assert_eq!(m.invalid, None);
    }

    #[test]
    fn system_ids_outside_maas_alphabet_and_bad_ips_mark_the_machine_invalid() {
        for ok in [
            "4y3h7n",
            "abc123",
            "node-1",
            "node-5f8a2c3e-1d2b-11e5-9b1f-00163e5b8e0c",
        ] {
            assert_eq!(check_system_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "..",
            "a/b",
            "a b",
            "ABC",
            "-rf",
            "a?op=release",
            "x\ny",
            &"a".repeat(42),
        ] {
            assert!(check_system_id(bad).is_err(), "{bad:?}");
        }
        let body = br#"[{"system_id":"","status":0},{"system_id":"ok1","status":4,"ip_addresses":["-rf"]},
            {"system_id":"ok2","status":4,"ip_addresses":["10.0.0.5","fe80::1"]},
            {"system_id":"ok3","status":4,"interface_set":[{"id":1,"links":[{"id":2,"ip_address":"1.2.3"}]}]}]"#;
        let p = parse_machine_list(body, ApiVersion::V2).unwrap();
        let why: Vec<Option<&str>> = p.machines.iter().map(|m| m.invalid.as_deref()).collect();
        assert_eq!(why[0], Some("empty system_id"));
        assert!(why[1].unwrap().contains("`-rf`"), "{why:?}");
        assert_eq!(why[2], None);
        assert!(why[3].unwrap().contains("1.2.3"), "{why:?}");
        let one = parse_machine(br#"{"system_id":"../x","status":4}"#, ApiVersion::V2).unwrap();
        assert!(one.invalid.is_some());
    }
}
