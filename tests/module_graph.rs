//! The crate's top-level modules form a DAG: data flows one way (docs/architecture.md). This
//! reads every source file, collects the `crate::MODULE` paths it names (comments aside), and
//! fails with the cycle if a module reaches itself. It also pins the layering the map draws:
//! `sys`, `tls` and `wire` are leaves, and `telemetry` is below the layers that count and serve with them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure here is the report

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

const MODULES: &[&str] = &[
    "acme",
    "bgp",
    "config",
    "daemon",
    "ha",
    "istio",
    "l2",
    "proxy",
    "resolve",
    "sys",
    "telemetry",
    "tls",
    "wire",
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module → the other top-level modules its files name.
fn graph() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for &m in MODULES {
        let mut files = Vec::new();
        let dir = src.join(m);
        if dir.is_dir() {
            sources(&dir, &mut files);
        }
        let single = src.join(format!("{m}.rs"));
        if single.is_file() {
            files.push(single);
        }
        assert!(!files.is_empty(), "no sources for module {m}");
        let mut deps = BTreeSet::new();
        for f in files {
            let text = fs::read_to_string(&f).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for &other in MODULES {
                    if other == m {
                        continue;
                    }
                    let needle = format!("crate::{other}");
                    let named = code.match_indices(&needle).any(|(i, _)| {
                        !code[i + needle.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                    if named {
                        deps.insert(other);
                    }
                }
            }
        }
        graph.insert(m, deps);
    }
    graph
}

fn find_cycle(
    graph: &BTreeMap<&'static str, BTreeSet<&'static str>>,
    node: &'static str,
    path: &mut Vec<&'static str>,
    done: &mut BTreeSet<&'static str>,
) -> Option<Vec<&'static str>> {
    if let Some(i) = path.iter().position(|&n| n == node) {
        let mut cycle = path[i..].to_vec();
        cycle.push(node);
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node);
    for &next in &graph[node] {
        if let Some(c) = find_cycle(graph, next, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node);
    None
}

#[test]
fn top_level_modules_have_no_cycle() {
    let graph = graph();
    let mut done = BTreeSet::new();
    for &m in MODULES {
        if let Some(cycle) = find_cycle(&graph, m, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}\ngraph: {graph:#?}", cycle.join(" → "));
        }
    }
}

#[test]
fn leaves_and_layers_as_the_map_draws_them() {
    let graph = graph();
    for leaf in ["sys", "tls", "wire"] {
        assert!(graph[leaf].is_empty(), "{leaf} imports {:?}", graph[leaf]);
    }
    // telemetry renders what every layer hands it; it may read the config and the TLS types
    // of its access-log record, nothing that counts with it.
    for layer in ["l2", "ha", "proxy", "daemon", "istio"] {
        assert!(
            !graph["telemetry"].contains(layer),
            "telemetry imports {layer}"
        );
    }
    // The configuration is below everything that acts on it.
    for layer in ["l2", "ha", "proxy", "daemon", "telemetry", "istio"] {
        assert!(!graph["config"].contains(layer), "config imports {layer}");
    }
    // The proxy does not decide who owns the VIP, and the election does not proxy.
    assert!(!graph["proxy"].contains("ha") && !graph["proxy"].contains("l2"));
    // ACME orders in the background and hands answers to the listeners, never the reverse.
    assert!(!graph["acme"].contains("proxy") && !graph["acme"].contains("daemon"));
    assert!(!graph["ha"].contains("proxy") && !graph["l2"].contains("proxy"));
}
