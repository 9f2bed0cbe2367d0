//! Paths and operations of the MAAS API, for 2.0 and the legacy 1.0.
//!
//! Each operation becomes one [`Request`]: method, path under the API prefix, `op` in the
//! query string, and form fields (MAAS reads form data and ignores JSON bodies). API 2.0
//! is first-class; 1.0 is an adapter that maps the same intent onto MAAS 1.9's `nodes/`
//! calls as the original tool made them.

use std::fmt;

/// Which MAAS API the controller speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ApiVersion {
    /// MAAS 1.9's API; every MAAS since 2.0 answers it with 410.
    V1,
    V2,
}

impl ApiVersion {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "1.0" | "1" => Some(ApiVersion::V1),
            "2.0" | "2" => Some(ApiVersion::V2),
            _ => None,
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            ApiVersion::V1 => "api/1.0/",
            ApiVersion::V2 => "api/2.0/",
        }
    }

    fn collection(self) -> &'static str {
        match self {
            ApiVersion::V1 => "nodes",
            ApiVersion::V2 => "machines",
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiVersion::V1 => "1.0",
            ApiVersion::V2 => "2.0",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

/// One call to MAAS, independent of the HTTP library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Path under the API prefix, always ending in `/` (MAAS needs the slash).
    pub path: String,
    /// Query pairs, `op` first when there is one.
    pub query: Vec<(String, String)>,
    /// Form-encoded body fields; lists are repeated keys.
    pub form: Vec<(String, String)>,
}

impl Request {
    fn new(method: Method, path: String, op: Option<&str>) -> Self {
        Request {
            method,
            path,
            query: op
                .map(|o| vec![("op".to_string(), o.to_string())])
                .unwrap_or_default(),
            form: Vec::new(),
        }
    }

    pub fn with_form(mut self, k: &str, v: impl Into<String>) -> Self {
        self.form.push((k.to_string(), v.into()));
        self
    }

    pub fn with_query(mut self, k: &str, v: impl Into<String>) -> Self {
        self.query.push((k.to_string(), v.into()));
        self
    }

    /// The `op` name, or the method for CRUD calls (for logs and metrics).
    pub fn op_name(&self) -> &str {
        self.query
            .iter()
            .find(|(k, _)| k == "op")
            .map(|(_, v)| v.as_str())
            .unwrap_or(match self.method {
                Method::Get => "read",
                Method::Post => "create",
                Method::Put => "update",
            })
    }

    /// Path plus encoded query, relative to the API prefix.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            let q = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(self.query.iter())
                .finish();
            format!("{}?{}", self.path, q)
        }
    }

    pub fn is_mutating(&self) -> bool {
        self.method != Method::Get
    }
}

/// Deploy parameters from the operator's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployParams {
    pub distro_series: String,
    pub user_data: Option<String>,
    pub hwe_kernel: Option<String>,
    /// MAAS 3.2+: keep hardware details in sync while deployed.
    pub enable_hw_sync: Option<bool>,
    /// MAAS 3.3+: deploy to RAM, leaving the disks alone.
    pub ephemeral_deploy: Option<bool>,
}

/// How disks are erased when maas-flow releases a machine (`recovery.erase`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Erase {
    /// Release without erasing (MAAS may still erase if the region is set to).
    #[default]
    None,
    /// Wipe the start and end of each disk.
    Quick,
    /// The disks' secure erase, falling back to overwriting them.
    Secure,
}

/// `op=commission` options. MAAS reads only the last value of a repeated key, so
/// script lists are sent as one comma-separated value.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommissionParams {
    pub enable_ssh: Option<bool>,
    pub skip_bmc_config: Option<bool>,
    pub skip_networking: Option<bool>,
    pub skip_storage: Option<bool>,
    pub commissioning_scripts: Option<Vec<String>>,
    pub testing_scripts: Option<Vec<String>>,
}

impl CommissionParams {
    /// The form fields, in a fixed order; unset options are not sent.
    pub fn form(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in [
            ("enable_ssh", self.enable_ssh),
            ("skip_bmc_config", self.skip_bmc_config),
            ("skip_networking", self.skip_networking),
            ("skip_storage", self.skip_storage),
        ] {
            if let Some(v) = v {
                out.push((k.to_string(), bool_form(v).to_string()));
            }
        }
        for (k, v) in [
            ("commissioning_scripts", &self.commissioning_scripts),
            ("testing_scripts", &self.testing_scripts),
        ] {
            if let Some(list) = v {
                out.push((k.to_string(), list.join(",")));
            }
        }
        out
    }
}

/// How MAAS's forms spell booleans.
fn bool_form(v: bool) -> &'static str {
    if v {
        "true"
    } else {
        "false"
    }
}

/// Builds requests for one API version.
#[derive(Debug, Clone, Copy)]
pub struct Api(pub ApiVersion);

impl Api {
    fn item(&self, system_id: &str) -> String {
        format!("{}/{}/", self.0.collection(), system_id)
    }

    /// The machine list; `zones` narrows it server-side (2.0 only).
    pub fn list(&self, zones: &[String]) -> Request {
        match self.0 {
            ApiVersion::V2 => {
                let mut r = Request::new(Method::Get, "machines/".into(), None);
                for z in zones {
                    r = r.with_query("zone", z.clone());
                }
                r
            }
            ApiVersion::V1 => Request::new(Method::Get, "nodes/".into(), Some("list")),
        }
    }

    /// A batch read of some machines by id (2.0: repeated `id=`).
    pub fn list_ids<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Request {
        let mut r = self.list(&[]);
        for id in ids {
            r = r.with_query("id", id);
        }
        r
    }

    pub fn read(&self, system_id: &str) -> Request {
        Request::new(Method::Get, self.item(system_id), None)
    }

    /// The machines allocated to our API key (1.9.5 `api/nodes.py`: "nodes allocated to
    /// the user/oauth token"); how API 1.0 without whoami learns which machines are ours.
    pub fn list_allocated(&self) -> Request {
        Request::new(
            Method::Get,
            format!("{}/", self.0.collection()),
            Some("list_allocated"),
        )
    }

    pub fn whoami(&self) -> Request {
        Request::new(Method::Get, "users/".into(), Some("whoami"))
    }

    pub fn version(&self) -> Request {
        Request::new(Method::Get, "version/".into(), None)
    }

    pub fn power_off(&self, system_id: &str) -> Request {
        match self.0 {
            ApiVersion::V2 => Request::new(Method::Post, self.item(system_id), Some("power_off")),
            ApiVersion::V1 => Request::new(Method::Post, self.item(system_id), Some("stop"))
                .with_form("stop_mode", "soft"),
        }
    }

    pub fn commission(&self, system_id: &str, p: &CommissionParams) -> Request {
        let mut r = Request::new(Method::Post, self.item(system_id), Some("commission"));
        r.form = p.form();
        r
    }

    /// Create a manual tag (no definition).
    pub fn create_tag(&self, name: &str) -> Request {
        Request::new(Method::Post, "tags/".into(), None).with_form("name", name)
    }

    /// Add machines to a tag and remove others (`op=update_nodes add=... remove=...`).
    pub fn update_tag_nodes(&self, name: &str, add: &[&str], remove: &[&str]) -> Request {
        let mut r = Request::new(Method::Post, format!("tags/{name}/"), Some("update_nodes"));
        for id in add {
            r = r.with_form("add", *id);
        }
        for id in remove {
            r = r.with_form("remove", *id);
        }
        r
    }

    /// Set a Ready machine's storage layout (`storage_layout=lvm`...).
    pub fn set_storage_layout(&self, system_id: &str, layout: &str) -> Request {
        Request::new(
            Method::Post,
            self.item(system_id),
            Some("set_storage_layout"),
        )
        .with_form("storage_layout", layout)
    }

    /// Allocate exactly this machine: by `system_id` on 2.0, by name on 1.0 (1.9's
    /// `acquire` had no system_id constraint).
    pub fn allocate(&self, system_id: &str, name: &str) -> Request {
        match self.0 {
            ApiVersion::V2 => Request::new(Method::Post, "machines/".into(), Some("allocate"))
                .with_form("system_id", system_id),
            ApiVersion::V1 => {
                Request::new(Method::Post, "nodes/".into(), Some("acquire")).with_form("name", name)
            }
        }
    }

    pub fn deploy(&self, system_id: &str, p: &DeployParams) -> Request {
        let op = match self.0 {
            ApiVersion::V2 => "deploy",
            ApiVersion::V1 => "start",
        };
        let mut r = Request::new(Method::Post, self.item(system_id), Some(op));
        if !p.distro_series.is_empty() {
            r = r.with_form("distro_series", p.distro_series.clone());
        }
        if let Some(u) = &p.user_data {
            r = r.with_form("user_data", u.clone());
        }
        if let Some(k) = &p.hwe_kernel {
            r = r.with_form("hwe_kernel", k.clone());
        }
        if let Some(v) = p.enable_hw_sync {
            r = r.with_form("enable_hw_sync", bool_form(v));
        }
        if let Some(v) = p.ephemeral_deploy {
            r = r.with_form("ephemeral_deploy", bool_form(v));
        }
        r
    }

    pub fn release(&self, system_id: &str) -> Request {
        Request::new(Method::Post, self.item(system_id), Some("release"))
    }

    /// Release, erasing the disks first when asked (`erase=true` plus `quick_erase` or
    /// `secure_erase`); MAAS then passes through Disk erasing.
    pub fn release_erasing(&self, system_id: &str, erase: Erase) -> Request {
        let r = self.release(system_id);
        match erase {
            Erase::None => r,
            Erase::Quick => r
                .with_form("erase", "true")
                .with_form("quick_erase", "true"),
            Erase::Secure => r
                .with_form("erase", "true")
                .with_form("secure_erase", "true"),
        }
    }

    /// Set (or with an empty value, delete) workload annotations. 2.0 only.
    pub fn set_annotations(&self, system_id: &str, pairs: &[(String, String)]) -> Option<Request> {
        match self.0 {
            ApiVersion::V1 => None,
            ApiVersion::V2 => {
                let mut r = Request::new(
                    Method::Post,
                    self.item(system_id),
                    Some("set_workload_annotations"),
                );
                for (k, v) in pairs {
                    r = r.with_form(k, v.clone());
                }
                Some(r)
            }
        }
    }

    pub fn rename(&self, system_id: &str, hostname: &str) -> Request {
        Request::new(Method::Put, self.item(system_id), None).with_form("hostname", hostname)
    }

    /// Set the power type and its parameters (`power_parameters_<k>`).
    pub fn set_power(
        &self,
        system_id: &str,
        power_type: &str,
        params: &[(String, String)],
    ) -> Request {
        let mut r = Request::new(Method::Put, self.item(system_id), None)
            .with_form("power_type", power_type);
        for (k, v) in params {
            r = r.with_form(&format!("power_parameters_{k}"), v.clone());
        }
        r
    }

    /// Interfaces live under `nodes/` in every version.
    fn interface(&self, system_id: &str, iface: i64, op: &str) -> Request {
        Request::new(
            Method::Post,
            format!("nodes/{system_id}/interfaces/{iface}/"),
            Some(op),
        )
    }

    pub fn unlink_subnet(&self, system_id: &str, iface: i64, link: i64) -> Request {
        self.interface(system_id, iface, "unlink_subnet")
            .with_form("id", link.to_string())
    }

    pub fn link_subnet_dhcp(&self, system_id: &str, iface: i64, subnet: &str) -> Request {
        self.interface(system_id, iface, "link_subnet")
            .with_form("mode", "DHCP")
            .with_form("subnet", subnet)
    }

    /// The event log, oldest-first pages after `after` (2.0 only).
    pub fn events_after(&self, after: Option<i64>, limit: u32) -> Request {
        let mut r = Request::new(Method::Get, "events/".into(), Some("query"))
            .with_query("level", "DEBUG")
            .with_query("limit", limit.to_string());
        if let Some(a) = after {
            r = r.with_query("after", a.to_string());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_paths_end_in_slash_and_put_op_in_query() {
        let api = Api(ApiVersion::V2);
        let r = api.allocate("abc", "h");
        assert_eq!(r.path_and_query(), "machines/?op=allocate");
        assert_eq!(r.form, vec![("system_id".to_string(), "abc".to_string())]);
        assert_eq!(
            api.commission("abc", &CommissionParams::default())
                .path_and_query(),
            "machines/abc/?op=commission"
        );
        assert_eq!(
            api.list(&["a b".into(), "c".into()]).path_and_query(),
            "machines/?zone=a+b&zone=c"
        );
        assert_eq!(
            api.list_ids(["x", "y"]).path_and_query(),
            "machines/?id=x&id=y"
        );
        assert_eq!(
            api.unlink_subnet("abc", 7, 9).path_and_query(),
            "nodes/abc/interfaces/7/?op=unlink_subnet"
        );
    }

    #[test]
    fn v1_adapter_speaks_maas_1_9() {
        let api = Api(ApiVersion::V1);
        assert_eq!(api.list(&[]).path_and_query(), "nodes/?op=list");
        assert_eq!(api.allocate("n1", "h1.maas").form[0].1, "h1.maas");
        assert_eq!(
            api.allocate("n1", "h1").path_and_query(),
            "nodes/?op=acquire"
        );
        let d = api.deploy(
            "n1",
            &DeployParams {
                distro_series: "jammy".into(),
                ..Default::default()
            },
        );
        assert_eq!(d.path_and_query(), "nodes/n1/?op=start");
        assert_eq!(api.power_off("n1").path_and_query(), "nodes/n1/?op=stop");
        assert!(api.set_annotations("n1", &[]).is_none());
        assert_eq!(
            api.list_allocated().path_and_query(),
            "nodes/?op=list_allocated"
        );
    }
}
