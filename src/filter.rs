//! Which machines maas-flow may touch: host and zone include/exclude regex lists.
//!
//! The JSON shape is the original tool's (`{"hosts":{"include":[],"exclude":[]},
//! "zones":{...}}`), given inline or as `@file` with environment variables expanded in
//! the path. Patterns mean what they meant to the original (opencord/maas
//! `automation/state.go`, `buildFilter` and `matchedFilter`): each is a regular expression
//! **searched for** in the name (Go's `MatchString`), so `cord` selects `cord-01` and
//! `^skip-` every name that starts with `skip-`; anchor with `^...$` for a whole name. An
//! empty include list selects nothing, as it did there. Exclude lists, which the
//! original parsed but never applied, win over includes here.

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
    /// Every host in the zone named exactly `default`. The original's default
    /// (`{"hosts":{"include":[".*"]},"zones":{"include":["default"]}}`) searched for
    /// `default`, which also selects `default-2` or `nodefault`; maas-flow anchors it.
    pub fn default_zone() -> Self {
        FilterSpec {
            hosts: IncludeExclude {
                include: vec![".*".into()],
                exclude: vec![],
            },
            zones: IncludeExclude {
                include: vec!["^default$".into()],
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
    let mut value: serde_json::Value = serde_json::from_str(&json)?;
    go_json_shape(&mut value, 0);
    Ok(serde_json::from_value(value)?)
}

/// Read the JSON as Go's `encoding/json` read it into the original's `HostFilter`: key
/// names match case-insensitively (`"Hosts"`, `"Include"`), and `null` is an empty
/// list. Unknown keys stay errors (Go ignored them, hiding typos in a safety filter).
fn go_json_shape(v: &mut serde_json::Value, depth: usize) {
    match v {
        serde_json::Value::Object(map) if depth < 2 => {
            let entries = std::mem::take(map);
            for (k, mut val) in entries {
                go_json_shape(&mut val, depth + 1);
                map.insert(k.to_ascii_lowercase(), val);
            }
        }
        serde_json::Value::Null if depth == 1 => *v = serde_json::Value::Object(Default::default()),
        serde_json::Value::Null if depth == 2 => *v = serde_json::Value::Array(Vec::new()),
        _ => {}
    }
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

/// How one pattern is matched. Patterns made only of name characters (letters, digits,
/// `-`, `_`) are literals to a regex engine, so they are matched as strings: a search
/// for `cord` is `contains("cord")`, `^cord-01$` is equality, `^skip-` a prefix test.
/// That covers most real filters and is ten times cheaper than a regex.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Simple {
    Contains(String),
    Prefix(String),
    Suffix(String),
    Exact(String),
}

impl Simple {
    fn parse(p: &str) -> Option<Simple> {
        let (anchored_start, rest) = match p.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, p),
        };
        let (anchored_end, lit) = match rest.strip_suffix('$') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if !is_literal(lit) {
            return None;
        }
        let lit = lit.to_string();
        Some(match (anchored_start, anchored_end) {
            (true, true) => Simple::Exact(lit),
            (true, false) => Simple::Prefix(lit),
            (false, true) => Simple::Suffix(lit),
            (false, false) => Simple::Contains(lit),
        })
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            Simple::Contains(l) => s.contains(l.as_str()),
            Simple::Prefix(l) => s.starts_with(l.as_str()),
            Simple::Suffix(l) => s.ends_with(l.as_str()),
            Simple::Exact(l) => s == l,
        }
    }
}

/// Characters that stand for themselves in both Go's RE2 syntax and Rust's `regex`.
fn is_literal(p: &str) -> bool {
    p.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One include or exclude list, compiled.
#[derive(Debug, Clone)]
enum Patterns {
    Simple(Vec<Simple>),
    Regex(RegexSet),
}

impl Patterns {
    fn len(&self) -> usize {
        match self {
            Patterns::Simple(v) => v.len(),
            Patterns::Regex(r) => r.len(),
        }
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            Patterns::Simple(v) => v.iter().any(|p| p.is_match(s)),
            Patterns::Regex(r) => r.is_match(s),
        }
    }

    /// Which patterns (by index) match `s`.
    fn matching(&self, s: &str, mut hit: impl FnMut(usize)) {
        match self {
            Patterns::Simple(v) => v
                .iter()
                .enumerate()
                .filter(|(_, p)| p.is_match(s))
                .for_each(|(i, _)| hit(i)),
            Patterns::Regex(r) => r.matches(s).iter().for_each(hit),
        }
    }
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
    if let Some(simple) = list.iter().map(|p| Simple::parse(p)).collect() {
        return Ok(Patterns::Simple(simple));
    }
    for p in list {
        if let Err(e) = regex::Regex::new(p) {
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
    RegexSet::new(list)
        .map(Patterns::Regex)
        .map_err(|e| FilterError::Regex {
            list: name,
            pattern: list.join(", "),
            reason: e.to_string(),
        })
}

/// The four lists, in the order they are reported.
pub const LISTS: [&str; 4] = [
    "hosts.include",
    "hosts.exclude",
    "zones.include",
    "zones.exclude",
];

/// How many machines of one list each pattern of a filter matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatternCount {
    /// `hosts.include`, `hosts.exclude`, `zones.include` or `zones.exclude`.
    pub list: &'static str,
    pub pattern: String,
    pub machines: usize,
}

/// What a filter selects from one machine list, pattern by pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchReport {
    /// Machines in the list examined.
    pub listed: usize,
    /// Machines the whole filter selects.
    pub selected: usize,
    pub patterns: Vec<PatternCount>,
    /// Include lists that are empty, and so select nothing.
    pub empty_includes: Vec<&'static str>,
}

impl MatchReport {
    /// Patterns that match no machine of the list: an operator's typo, or an exclude
    /// that protects nothing.
    pub fn unmatched(&self) -> impl Iterator<Item = &PatternCount> {
        self.patterns.iter().filter(|p| p.machines == 0)
    }

    /// One line: `hosts.include "cord"=3, hosts.exclude "^skip-"=2, ...`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .patterns
            .iter()
            .map(|p| format!("{} {:?}={}", p.list, p.pattern, p.machines))
            .collect();
        parts.extend(
            self.empty_includes
                .iter()
                .map(|l| format!("{l} empty (selects nothing)")),
        );
        parts.join(", ")
    }

    /// Log the report: one info line with every count, one warning per pattern that
    /// matches nothing and per empty include list.
    pub fn log(&self) {
        tracing::info!(
            listed = self.listed,
            selected = self.selected,
            "filter: {} of {} machines selected; machines matched per pattern: {}",
            self.selected,
            self.listed,
            self.summary()
        );
        for p in self.unmatched() {
            tracing::warn!(
                list = p.list,
                pattern = %p.pattern,
                "filter pattern {:?} in {} matches none of the {} machines MAAS reports",
                p.pattern,
                p.list,
                self.listed
            );
        }
        for l in &self.empty_includes {
            tracing::warn!(
                list = *l,
                "filter {l} is empty, so the filter selects no machine (as in the original tool); write [\".*\"] for all"
            );
        }
    }
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

    /// The original tool's selection (`automation/state.go`, `ProcessAll`): a machine is
    /// selected when some host include pattern and some zone include pattern are found
    /// in its hostname and zone name (an unanchored search, Go's `MatchString`; an empty
    /// include list selects nothing). Unlike the original, which parsed exclude lists
    /// but never read them, a machine matching any exclude pattern is never selected.
    pub fn matches(&self, hostname: &str, zone: &str) -> bool {
        self.host_include.is_match(hostname)
            && self.zone_include.is_match(zone)
            && !self.host_exclude.is_match(hostname)
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
        exact_names(&self.pool_include)
    }

    /// Include lists that are empty (so nothing is selected).
    pub fn empty_includes(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.host_include.len() == 0 {
            v.push("hosts.include");
        }
        if self.zone_include.len() == 0 {
            v.push("zones.include");
        }
        v
    }

    /// Count, for each pattern, the machines of `names` (hostname, zone) it matches.
    pub fn report<'a>(&self, names: impl IntoIterator<Item = (&'a str, &'a str)>) -> MatchReport {
        let lists = [
            (&self.host_include, &self.spec.hosts.include),
            (&self.host_exclude, &self.spec.hosts.exclude),
            (&self.zone_include, &self.spec.zones.include),
            (&self.zone_exclude, &self.spec.zones.exclude),
        ];
        let mut counts: Vec<Vec<usize>> = lists.iter().map(|(_, s)| vec![0; s.len()]).collect();
        let (mut listed, mut selected) = (0, 0);
        for (host, zone) in names {
            listed += 1;
            if self.matches(host, zone) {
                selected += 1;
            }
            for (li, (pats, _)) in lists.iter().enumerate() {
                let name = if li < 2 { host } else { zone };
                pats.matching(name, |i| counts[li][i] += 1);
            }
        }
        let patterns = lists
            .iter()
            .zip(counts)
            .zip(LISTS)
            .flat_map(|(((_, spec), counts), list)| {
                spec.iter().zip(counts).map(move |(p, n)| PatternCount {
                    list,
                    pattern: p.clone(),
                    machines: n,
                })
            })
            .collect();
        MatchReport {
            listed,
            selected,
            patterns,
            empty_includes: self.empty_includes(),
        }
    }

    /// Zones MAAS can filter for us (`GET machines/?zone=a&zone=b`) without changing
    /// the selection: only when every zone include pattern is an anchored literal
    /// (`^name$`), which matches exactly one zone name, as `zone=` does. A pattern such
    /// as `default` also matches `default-2` under search semantics, and `^rack.1$`
    /// matches `rack-1`, so those lists are filtered on our side.
    pub fn server_side_zones(&self) -> Option<Vec<String>> {
        exact_names(&self.zone_include)
    }
}

/// The names a pattern list stands for when every pattern matches exactly one name:
/// `^name$`, or a bare name while patterns match whole names.
fn exact_names(p: &Patterns) -> Option<Vec<String>> {
    match p {
        Patterns::Simple(v) if !v.is_empty() => v
            .iter()
            .map(|p| match p {
                Simple::Exact(name) if !name.is_empty() => Some(name.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(json: &str) -> Filter {
        Filter::new(load_spec(json).unwrap()).unwrap()
    }

    #[test]
    fn default_is_every_host_in_the_zone_named_default() {
        let f = Filter::new(FilterSpec::default_zone()).unwrap();
        assert!(f.matches("anything", "default"));
        assert!(!f.matches("anything", "default-2"));
        assert!(!f.matches("anything", "zone-north"));
        assert_eq!(f.server_side_zones(), Some(vec!["default".to_string()]));
    }

    /// opencord/maas `automation/state.go`, `matchedFilter`: `MatchString` is a search.
    #[test]
    fn patterns_are_searched_for_as_in_the_original() {
        let f = filter(
            r#"{"hosts":{"include":["cord"],"exclude":["^skip-"]},"zones":{"include":["default"]}}"#,
        );
        assert!(f.matches("cord-01", "default"));
        assert!(f.matches("my-cord", "default-2"), "unanchored in zones too");
        assert!(!f.matches("skip-cord-01", "default"), "exclude wins");
        assert!(
            f.matches("cord-skip-01", "default"),
            "^ anchors the exclude"
        );
        assert!(!f.matches("node-01", "default"));
        assert_eq!(
            f.server_side_zones(),
            None,
            "`default` also matches default-2"
        );

        let f = filter(r#"{"hosts":{"include":["^node-0[1-4]$"]},"zones":{"include":[".*"]}}"#);
        assert!(f.matches("node-01", "z") && f.matches("node-04", "z"));
        assert!(!f.matches("node-05", "z") && !f.matches("node-010", "z"));
        assert!(!f.matches("xnode-01", "z"));
    }

    /// opencord/maas `automation/state.go`, `ProcessAll`: `len(x) >= 0 && matchedFilter(x, ..)`
    /// is false for an empty list, whatever its comment says.
    #[test]
    fn an_empty_include_selects_nothing_as_in_the_original() {
        let f = filter(r#"{"zones":{"include":["default"]}}"#);
        assert!(!f.matches("node-1", "default"));
        assert_eq!(f.empty_includes(), vec!["hosts.include"]);
        let f = filter(r#"{"hosts":{"include":[".*"]}}"#);
        assert!(!f.matches("node-1", "default"));
        assert_eq!(f.empty_includes(), vec!["zones.include"]);
    }

    #[test]
    fn include_then_exclude_on_hosts_and_zones() {
        let f = filter(
            r#"{"hosts":{"include":["^node-"],"exclude":["^node-9"]},
                "zones":{"include":[""],"exclude":["^quarantine$"]}}"#,
        );
        assert!(f.matches("node-1", "default"));
        assert!(!f.matches("node-90", "default"));
        assert!(!f.matches("web-1", "default"));
        assert!(!f.matches("node-1", "quarantine"));
        assert!(f.matches("node-1", "quarantine-2"));
        assert_eq!(f.server_side_zones(), None);
    }

    #[test]
    fn only_anchored_literal_zones_go_to_maas() {
        let f =
            filter(r#"{"hosts":{"include":[".*"]},"zones":{"include":["^rack-1$","^lab_2$"]}}"#);
        assert_eq!(
            f.server_side_zones(),
            Some(vec!["rack-1".to_string(), "lab_2".to_string()])
        );
        assert!(f.matches("h", "rack-1") && !f.matches("h", "rack-10"));
        for zones in [
            r#"["^rack.1$"]"#,
            r#"["^rack-1$","lab"]"#,
            r#"["^rack-1"]"#,
            r#"["rack-1$"]"#,
            r#"["^(rack-1)$"]"#,
            r#"["^rack-1$|^lab$"]"#,
            r#"["(?i)^rack-1$"]"#,
            r#"["^$"]"#,
            "[]",
        ] {
            let f = filter(&format!(
                r#"{{"hosts":{{"include":[".*"]}},"zones":{{"include":{zones}}}}}"#
            ));
            assert_eq!(f.server_side_zones(), None, "{zones}");
        }
        let f = filter(r#"{"hosts":{"include":[".*"]},"zones":{"include":["^rack.1$"]}}"#);
        assert!(f.matches("h", "rack-1"), "`.` is any character");
    }

    #[test]
    fn regex_zone_include_is_filtered_client_side() {
        let f = filter(r#"{"hosts":{"include":[".*"]},"zones":{"include":["rack-[0-9]+"]}}"#);
        assert!(f.matches("h", "rack-12"));
        assert!(f.matches("h", "old-rack-12"));
        assert_eq!(f.server_side_zones(), None);
    }

    #[test]
    fn report_counts_machines_per_pattern() {
        let f = filter(
            r#"{"hosts":{"include":["cord","^node-0[1-4]$"],"exclude":["^skip-","nomatch"]},
                "zones":{"include":["^default$"],"exclude":[]}}"#,
        );
        let names = [
            ("cord-01", "default"),
            ("skip-cord-02", "default"),
            ("node-01", "default"),
            ("node-05", "default"),
            ("cord-03", "lab"),
        ];
        let r = f.report(names.iter().copied());
        assert_eq!(r.listed, 5);
        assert_eq!(r.selected, 2);
        let counts: Vec<(&str, &str, usize)> = r
            .patterns
            .iter()
            .map(|p| (p.list, p.pattern.as_str(), p.machines))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("hosts.include", "cord", 3),
                ("hosts.include", "^node-0[1-4]$", 1),
                ("hosts.exclude", "^skip-", 1),
                ("hosts.exclude", "nomatch", 0),
                ("zones.include", "^default$", 4),
            ]
        );
        assert_eq!(r.unmatched().count(), 1);
        assert!(
            r.summary().contains(r#"hosts.exclude "nomatch"=0"#),
            "{}",
            r.summary()
        );
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

    /// Go's `encoding/json` matches keys case-insensitively and reads `null` as an
    /// empty slice (opencord/maas `automation/maas-flow.go`, `json.Unmarshal` into
    /// `HostFilter`).
    #[test]
    fn keys_and_nulls_read_as_go_read_them() {
        let f =
            filter(r#"{"Hosts":{"Include":["cord"],"EXCLUDE":null},"zones":{"include":[".*"]}}"#);
        assert!(f.matches("cord-01", "default"));
        assert_eq!(f.spec().hosts.exclude, Vec::<String>::new());
        assert!(load_spec(r#"{"hosts":{"include":["a"]},"zone":{}}"#).is_err());
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
        std::fs::write(
            dir.path().join("f.json"),
            r#"{"hosts":{"include":[".*"]},"zones":{"include":["z1"]}}"#,
        )
        .unwrap();
        std::env::set_var("MFTEST_FILTER_DIR", dir.path());
        let f = filter("@${MFTEST_FILTER_DIR}/f.json");
        assert!(f.matches("h", "z1"));
        let f = filter("@$MFTEST_FILTER_DIR/f.json");
        assert!(f.matches("h", "z1"));
    }
}
