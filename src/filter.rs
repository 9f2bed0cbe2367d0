//! Which machines maas-flow may touch: host and zone include/exclude regex lists.
//!
//! The JSON shape is the original tool's (`{"hosts":{"include":[],"exclude":[]},
//! "zones":{...}}`), given inline or as `@file` with environment variables expanded in
//! the path. Include is applied first, then exclude (the original parsed exclude but
//! ignored it). Patterns match the **whole** name, so `default` never matches
//! `default-2`; write `node-.*` for a prefix.

use regex::RegexSet;
use serde::{Deserialize, Serialize};

/// The operator's filter as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    #[serde(default)]
    pub hosts: IncludeExclude,
    #[serde(default)]
    pub zones: IncludeExclude,
    /// MAAS tag names, compared exactly (tags are names, not patterns). Unlike hosts and
    /// zones, an empty include list places no constraint: tags narrow a selection.
    #[serde(default, skip_serializing_if = "IncludeExclude::is_empty")]
    pub tags: IncludeExclude,
    /// Resource pool name patterns, matched like zones; an empty include list places no
    /// constraint.
    #[serde(default, skip_serializing_if = "IncludeExclude::is_empty")]
    pub pools: IncludeExclude,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IncludeExclude {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl IncludeExclude {
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

impl FilterSpec {
    /// All hosts in zone `default`, the original tool's default.
    pub fn default_zone() -> Self {
        FilterSpec {
            hosts: IncludeExclude::default(),
            zones: IncludeExclude {
                include: vec!["default".into()],
                exclude: vec![],
            },
            ..FilterSpec::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("cannot read filter file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("filter is not valid JSON of the form {{\"hosts\":{{\"include\":[],\"exclude\":[]}},\"zones\":{{...}}}}: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bad regular expression {pattern:?} in {list}: {reason}")]
    Regex {
        list: &'static str,
        pattern: String,
        reason: String,
    },
}

/// Read a filter given as inline JSON or `@path` (with `$VAR`/`${VAR}` expanded).
pub fn load_spec(text: &str) -> Result<FilterSpec, FilterError> {
    let text = text.trim();
    let json = match text.strip_prefix('@') {
        Some(path) => {
            let path = expand_env(path);
            std::fs::read_to_string(&path).map_err(|source| FilterError::File { path, source })?
        }
        None => text.to_string(),
    };
    Ok(serde_json::from_str(&json)?)
}

/// Expand `$VAR` and `${VAR}` from the environment; unknown variables become empty.
pub fn expand_env(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let name: String = if chars.peek() == Some(&'{') {
            chars.next();
            chars.by_ref().take_while(|&c| c != '}').collect()
        } else {
            let mut n = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    n.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            n
        };
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(&std::env::var(&name).unwrap_or_default());
        }
    }
    out
}

/// One include or exclude list, compiled: plain names compare as strings (the common
/// case, and ten times cheaper than a regex), anything else goes through a `RegexSet`.
#[derive(Debug, Clone)]
enum Patterns {
    Plain(Vec<String>),
    Regex(RegexSet),
}

impl Patterns {
    fn is_empty(&self) -> bool {
        match self {
            Patterns::Plain(v) => v.is_empty(),
            Patterns::Regex(r) => r.is_empty(),
        }
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            Patterns::Plain(v) => v.iter().any(|p| p == s),
            Patterns::Regex(r) => r.is_match(s),
        }
    }
}

fn is_plain(p: &str) -> bool {
    !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct Filter {
    spec: FilterSpec,
    host_include: Patterns,
    host_exclude: Patterns,
    zone_include: Patterns,
    zone_exclude: Patterns,
    pool_include: Patterns,
    pool_exclude: Patterns,
}

fn compile(list: &[String], name: &'static str) -> Result<Patterns, FilterError> {
    if list.iter().all(|p| is_plain(p)) {
        return Ok(Patterns::Plain(list.to_vec()));
    }
    let anchored = |p: &String| format!("^(?:{p})$");
    for p in list {
        if let Err(e) = regex::Regex::new(&anchored(p)) {
            // regex prints a multi-line picture; its last line is the reason.
            let text = e.to_string();
            let reason = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid");
            return Err(FilterError::Regex {
                list: name,
                pattern: p.clone(),
                reason: reason.trim().trim_start_matches("error: ").to_string(),
            });
        }
    }
    RegexSet::new(list.iter().map(anchored))
        .map(Patterns::Regex)
        .map_err(|e| FilterError::Regex {
            list: name,
            pattern: list.join(", "),
            reason: e.to_string(),
        })
}

impl Filter {
    pub fn new(spec: FilterSpec) -> Result<Self, FilterError> {
        Ok(Filter {
            host_include: compile(&spec.hosts.include, "hosts.include")?,
            host_exclude: compile(&spec.hosts.exclude, "hosts.exclude")?,
            zone_include: compile(&spec.zones.include, "zones.include")?,
            zone_exclude: compile(&spec.zones.exclude, "zones.exclude")?,
            pool_include: compile(&spec.pools.include, "pools.include")?,
            pool_exclude: compile(&spec.pools.exclude, "pools.exclude")?,
            spec,
        })
    }

    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    /// Include (an empty list includes everything), then exclude.
    pub fn matches(&self, hostname: &str, zone: &str) -> bool {
        (self.host_include.is_empty() || self.host_include.is_match(hostname))
            && !self.host_exclude.is_match(hostname)
            && (self.zone_include.is_empty() || self.zone_include.is_match(zone))
            && !self.zone_exclude.is_match(zone)
    }

    /// The whole selection for one machine: hosts and zones as [`Filter::matches`],
    /// then resource pools (patterns, like zones) and MAAS tags (exact names). A machine
    /// is kept when it has any included tag (or none are listed) and no excluded tag.
    pub fn selects(&self, m: &crate::maas::Machine) -> bool {
        self.matches(&m.hostname, m.zone_name()) && self.pool_and_tags(m.pool_name(), &m.tag_names)
    }

    /// The pool and tag half of [`Filter::selects`]; empty include lists do not constrain.
    pub fn pool_and_tags(&self, pool: &str, tags: &[String]) -> bool {
        let t = &self.spec.tags;
        (self.spec.pools.include.is_empty() || self.pool_include.is_match(pool))
            && !self.pool_exclude.is_match(pool)
            && (t.include.is_empty() || t.include.iter().any(|i| tags.contains(i)))
            && !t.exclude.iter().any(|e| tags.contains(e))
    }

    /// Tags MAAS can filter for us. MAAS ANDs repeated `tags=` (every tag required,
    /// `node_constraint_filter_forms.py`), while the filter wants any included tag, so
    /// only a single included tag can be sent without changing the selection.
    pub fn server_side_tags(&self) -> Option<Vec<String>> {
        match self.spec.tags.include.as_slice() {
            [one] if !one.is_empty() => Some(vec![one.clone()]),
            _ => None,
        }
    }

    /// Pools MAAS can filter for us (`pool=`, ORed like `zone=`), under the same rule as
    /// [`Filter::server_side_zones`]: only patterns that name exactly one pool.
    pub fn server_side_pools(&self) -> Option<Vec<String>> {
        exact_names(&self.pool_include, &self.spec.pools.include)
    }

    /// Zones MAAS can filter for us (`zone=`), when every zone include is a plain name.
    pub fn server_side_zones(&self) -> Option<Vec<String>> {
        let inc = &self.spec.zones.include;
        (!inc.is_empty() && inc.iter().all(|z| is_plain(z))).then(|| inc.clone())
    }
}

/// The names a pattern list stands for when every pattern matches exactly one name:
/// `^name$`, or a bare name while patterns match whole names.
fn exact_names(p: &Patterns, spec: &[String]) -> Option<Vec<String>> {
    if spec.is_empty() {
        return None;
    }
    spec.iter()
        .map(|s| {
            let name = match (s.strip_prefix('^').and_then(|r| r.strip_suffix('$')), p) {
                (Some(n), _) => n,
                (None, Patterns::Plain(_)) => s.as_str(),
                (None, _) => return None,
            };
            is_plain(name).then(|| name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(json: &str) -> Filter {
        Filter::new(load_spec(json).unwrap()).unwrap()
    }

    #[test]
    fn default_is_every_host_in_zone_default() {
        let f = Filter::new(FilterSpec::default_zone()).unwrap();
        assert!(f.matches("anything", "default"));
        assert!(!f.matches("anything", "default-2"));
        assert!(!f.matches("anything", "zone-north"));
        assert_eq!(f.server_side_zones(), Some(vec!["default".to_string()]));
    }

    #[test]
    fn include_then_exclude_on_hosts_and_zones() {
        let f = filter(
            r#"{"hosts":{"include":["node-.*"],"exclude":["node-9.*"]},
                "zones":{"include":[],"exclude":["quarantine"]}}"#,
        );
        assert!(f.matches("node-1", "default"));
        assert!(!f.matches("node-90", "default"));
        assert!(!f.matches("web-1", "default"));
        assert!(!f.matches("node-1", "quarantine"));
        assert_eq!(f.server_side_zones(), None);
    }

    #[test]
    fn regex_zone_include_is_filtered_client_side() {
        let f = filter(r#"{"zones":{"include":["rack-[0-9]+"]}}"#);
        assert!(f.matches("h", "rack-12"));
        assert_eq!(f.server_side_zones(), None);
    }

    #[test]
    fn bad_input_is_an_error_naming_the_list() {
        let e = Filter::new(load_spec(r#"{"hosts":{"include":["("]}}"#).unwrap()).unwrap_err();
        assert!(e.to_string().contains("hosts.include"), "{e}");
        assert!(load_spec(r#"{"hostz":{}}"#).is_err());
        assert!(load_spec("not json").is_err());
        assert!(matches!(
            load_spec("@/nonexistent/f.json"),
            Err(FilterError::File { .. })
        ));
    }

    #[test]
    fn tags_are_exact_names_and_pools_are_patterns() {
        let f = filter(
            r#"{"zones":{"include":["default"]},
                "tags":{"include":["gpu","fast"],"exclude":["broken"]},
                "pools":{"include":["prod-.*"],"exclude":["prod-old"]}}"#,
        );
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(f.pool_and_tags("prod-a", &tags(&["gpu"])));
        assert!(
            f.pool_and_tags("prod-a", &tags(&["x", "fast"])),
            "any included tag"
        );
        assert!(
            !f.pool_and_tags("prod-a", &tags(&["gpu", "broken"])),
            "exclude wins"
        );
        assert!(
            !f.pool_and_tags("prod-a", &tags(&["gpu-2"])),
            "tags are exact"
        );
        assert!(!f.pool_and_tags("prod-old", &tags(&["gpu"])));
        assert!(!f.pool_and_tags("dev", &tags(&["gpu"])));
        assert_eq!(
            f.server_side_tags(),
            None,
            "two include tags: MAAS would AND them"
        );
        assert_eq!(f.server_side_pools(), None);
        let f = filter(r#"{"tags":{"include":["gpu"]},"pools":{"include":["^storage$"]}}"#);
        assert_eq!(f.server_side_tags(), Some(vec!["gpu".to_string()]));
        assert_eq!(f.server_side_pools(), Some(vec!["storage".to_string()]));
        let f = filter(r#"{"pools":{"include":["^storage$","^rack.1$"]}}"#);
        assert_eq!(
            f.server_side_pools(),
            None,
            "a regex is filtered on our side"
        );
        let none = filter(r#"{"zones":{"include":["default"]}}"#);
        assert!(
            none.pool_and_tags("anything", &[]),
            "no tag or pool lists: no constraint"
        );
        let e = Filter::new(load_spec(r#"{"pools":{"include":["("]}}"#).unwrap()).unwrap_err();
        assert!(e.to_string().contains("pools.include"), "{e}");
    }

    #[test]
    fn file_path_expands_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.json"), r#"{"zones":{"include":["z1"]}}"#).unwrap();
        std::env::set_var("MFTEST_FILTER_DIR", dir.path());
        let f = filter("@${MFTEST_FILTER_DIR}/f.json");
        assert!(f.matches("h", "z1"));
        let f = filter("@$MFTEST_FILTER_DIR/f.json");
        assert!(f.matches("h", "z1"));
    }
}
