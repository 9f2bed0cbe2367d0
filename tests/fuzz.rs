//! Property tests (proptest) for the two parsers that take outside input: the machine
//! list parser and the filter parser. Neither may panic, whatever it is given; a list
//! with one damaged machine still yields every other machine.

use proptest::prelude::*;
use serde_json::{json, Value};

use maas_flow::filter::{load_spec, Filter};
use maas_flow::maas::{parse_machine_list, ApiVersion};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn machine(i: usize) -> Value {
    json!({
        "system_id": format!("m{i:05}"), "hostname": format!("node-{i}"), "status": 4,
        "zone": {"name": "default"}, "power_state": "off", "power_type": "ipmi", "owner": null,
        "tag_names": ["a"], "ip_addresses": ["10.0.0.1"],
        "interface_set": [{"id": 1, "name": "eth0", "mac_address": "52:54:00:00:00:01",
            "links": [{"id": 2, "mode": "auto", "subnet": {"id": 3, "cidr": "10.0.0.0/24"}}]}],
        "workload_annotations": {"k": "v"}
    })
}

const FIELDS: &[&str] = &[
    "system_id",
    "hostname",
    "status",
    "zone",
    "power_state",
    "power_type",
    "owner",
    "tag_names",
    "ip_addresses",
    "interface_set",
    "workload_annotations",
    "owner_data",
    "boot_interface",
    "locked",
    "fqdn",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn list_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_machine_list(&bytes, ApiVersion::V2);
        let _ = parse_machine_list(&bytes, ApiVersion::V1);
    }

    #[test]
    fn list_parser_never_panics_on_json(v in arb_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        let _ = parse_machine_list(&body, ApiVersion::V2);
        let _ = parse_machine_list(&body, ApiVersion::V1);
    }

    #[test]
    fn one_damaged_machine_costs_only_itself(field in prop::sample::select(FIELDS), value in arb_json(), victim in 0usize..5) {
        let mut list: Vec<Value> = (0..5).map(machine).collect();
        list[victim][field] = value;
        let body = serde_json::to_vec(&list).unwrap();
        let parsed = parse_machine_list(&body, ApiVersion::V2).expect("still a list");
        prop_assert_eq!(parsed.machines.len() + parsed.skipped.len(), 5);
        for (i, _) in list.iter().enumerate().filter(|(i, _)| *i != victim) {
            let id = format!("m{i:05}");
            prop_assert!(parsed.machines.iter().any(|m| m.system_id == id), "{} lost", id);
        }
    }

    #[test]
    fn truncated_lists_are_errors_not_panics(cut in 1usize..2000) {
        let body = serde_json::to_vec(&(0..5).map(machine).collect::<Vec<_>>()).unwrap();
        let cut = cut.min(body.len() - 1);
        prop_assert!(parse_machine_list(&body[..cut], ApiVersion::V2).is_err());
    }

    #[test]
    fn filter_parser_never_panics(text in ".{0,80}") {
        if let Ok(spec) = load_spec(&text) {
            let _ = Filter::new(spec);
        }
    }

    #[test]
    fn filter_with_arbitrary_patterns_never_panics(
        hosts in prop::collection::vec(".{0,10}", 0..4),
        zones in prop::collection::vec("[a-z(\\[*+?.|^$\\\\-]{0,8}", 0..4),
        name in ".{0,12}",
    ) {
        let text = json!({"hosts": {"include": hosts, "exclude": []}, "zones": {"include": [], "exclude": zones}}).to_string();
        let spec = load_spec(&text).expect("well-formed JSON");
        if let Ok(f) = Filter::new(spec) {
            let _ = f.matches(&name, &name);
            let _ = f.server_side_zones();
        }
    }

    /// The original's semantics (opencord/maas `automation/state.go`, `matchedFilter`:
    /// Go's `MatchString`, an unanchored search): a name is included when the pattern is
    /// found anywhere in it, whatever fast path the filter takes.
    #[test]
    fn filter_is_a_search_like_the_original(
        pattern in "\\^?[a-c-]{0,3}(\\.\\*|\\[ab\\])?[a-c]{0,2}\\$?",
        name in "[a-c-]{0,8}",
    ) {
        let text = json!({"hosts": {"include": [pattern.clone()]}, "zones": {"include": [".*"]}}).to_string();
        let f = Filter::new(load_spec(&text).unwrap()).unwrap();
        let searched = regex::Regex::new(&pattern).unwrap().is_match(&name);
        prop_assert_eq!(f.matches(&name, "z"), searched, "{} on {}", pattern, name);
    }

    /// Server-side zone filtering never changes the selection: when MAAS is asked for
    /// `zone=a&zone=b`, exactly the zones named are the ones the include list matches.
    #[test]
    fn server_side_zones_select_exactly_what_the_filter_selects(
        zones in prop::collection::vec("\\^?[a-c.-]{0,4}\\$?", 1..4),
        zone in "[a-c.-]{0,5}",
    ) {
        let text = json!({"hosts": {"include": [""]}, "zones": {"include": zones}}).to_string();
        let f = Filter::new(load_spec(&text).unwrap()).unwrap();
        if let Some(names) = f.server_side_zones() {
            prop_assert_eq!(names.contains(&zone), f.matches("h", &zone));
        }
    }
}
