//! The simulator's layering, checked on its source: state and rules (`world`) know
//! neither HTTP nor rendering, rendering depends on state only, and no two simulator
//! modules import each other (directly or round a longer loop).
//!
//! A reviewer would catch a new cycle only by reading every `use`; this test reads them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The simulator's modules (file stems of `src/sim/*.rs` but `mod.rs`) and, for each,
/// the sibling modules its non-test code names through `super::` or `crate::sim::`.
fn sim_imports() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sim");
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("src/sim is readable") {
        let path = entry.expect("directory entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().and_then(|e| e.to_str()) != Some("rs") || stem == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source is readable");
        // Unit tests (`#[cfg(test)] mod tests { use super::*; }`) are not the layering.
        // Comments (doc links included) name modules without importing them.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or("")
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        sources.insert(stem.to_string(), code);
    }
    let names: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(module, code)| {
            let mut deps = BTreeSet::new();
            for prefix in ["super::", "crate::sim::"] {
                for (at, _) in code.match_indices(prefix) {
                    let rest = &code[at + prefix.len()..];
                    let ident: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if names.contains(&ident) && ident != *module {
                        deps.insert(ident);
                    }
                    // `use super::{a, b::C}` names several siblings at once.
                    if let Some(group) = rest.strip_prefix('{') {
                        let group = group.split('}').next().unwrap_or("");
                        for item in group.split(',') {
                            let ident = item.trim().split("::").next().unwrap_or("").trim();
                            if names.contains(ident) && ident != module {
                                deps.insert(ident.to_string());
                            }
                        }
                    }
                }
            }
            (module.clone(), deps)
        })
        .collect()
}

/// A loop in the import graph, if there is one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = path.iter().position(|p| p == node) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn simulator_modules_import_each_other_in_one_direction() {
    let graph = sim_imports();
    assert!(
        graph.contains_key("world") && graph.contains_key("server"),
        "the simulator's modules were found: {graph:?}"
    );
    assert_eq!(find_cycle(&graph), None, "import graph: {graph:?}");
}

#[test]
fn state_and_rules_know_neither_http_nor_rendering() {
    let graph = sim_imports();
    let world = &graph["world"];
    for layer in ["server", "render", "inspect", "provisioner"] {
        assert!(!world.contains(layer), "world imports {layer}: {world:?}");
    }
    let render = &graph["render"];
    assert!(
        !render.contains("server") && !render.contains("inspect"),
        "render depends on state only: {render:?}"
    );
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sim/world.rs"))
            .expect("world.rs is readable");
    for http in ["actix", "HttpResponse", "StatusCode"] {
        assert!(!text.contains(http), "world.rs mentions {http}");
    }
}
