//! The repository's own layout: fixtures are stored once (a second copy is a symlink to the first).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::common::fixtures;

fn regular_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let kind = e.file_type().unwrap();
        if kind.is_dir() {
            regular_files(&e.path(), out);
        } else if kind.is_file() {
            out.push(e.path());
        }
    }
}

#[test]
fn fixtures_are_stored_once() {
    let mut files = Vec::new();
    regular_files(&fixtures(), &mut files);
    assert!(files.len() > 10, "the fixtures were not found");
    let mut seen: HashMap<Vec<u8>, PathBuf> = HashMap::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        if let Some(first) = seen.get(&bytes) {
            panic!("{} repeats {}: store it once and link to it (ln -s)", f.display(), first.display());
        }
        seen.insert(bytes, f);
    }
}

/// `src/model/` and `src/kernels/` as a graph of files, an edge where one names another through a
/// `crate::` path (re-exports of a `mod.rs` followed to the file that defines the item).
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for area in ["model", "kernels"] {
        regular_files(&src.join(area), &mut files);
    }
    let module_of = |p: &Path| {
        let rel = p.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
        if parts.last().map(String::as_str) == Some("mod") {
            parts.pop();
        }
        parts.join("::")
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    // `pub use child::{A, B};` in a mod.rs: (namespace, item) → the child module.
    let mut reexports: BTreeMap<(String, String), String> = BTreeMap::new();
    for f in files.iter().filter(|f| f.ends_with("mod.rs")) {
        let ns = module_of(f);
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let Some(rest) = line.trim().strip_prefix("pub use ") else { continue };
            let Some((child, items)) = rest.trim_end_matches(';').split_once("::") else { continue };
            for item in items.trim_matches(|c| c == '{' || c == '}').split(',') {
                reexports.insert((ns.clone(), item.trim().to_string()), format!("{ns}::{child}"));
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let me = module_of(f);
        // Code only: comments may name anything.
        let text: String = std::fs::read_to_string(f).unwrap().lines().map(|l| format!("{}\n", l.split("//").next().unwrap_or(""))).collect();
        let edges = graph.entry(me.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let path: String = text[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let Some(n) = (1..=segs.len()).rev().find(|&n| modules.contains(&segs[..n].join("::"))) else { continue };
            let prefix = segs[..n].join("::");
            let target = segs.get(n).and_then(|item| reexports.get(&(prefix.clone(), item.to_string()))).cloned().unwrap_or(prefix);
            if target != me {
                edges.insert(target);
            }
        }
    }
    graph
}

/// No file under src/model or src/kernels names one that names it back (directly or round a
/// longer circle), the kernels never name the model, and the model reaches the kernels only
/// through their interface.
#[test]
fn model_and_kernels_import_each_other_without_cycles() {
    let graph = module_graph();
    assert!(graph.contains_key("model::nn") && graph.contains_key("kernels::cpu::kernels"), "{:?}", graph.keys());
    assert!(graph["model::nn"].contains("kernels"), "the scan sees model → kernels edges: {:?}", graph["model::nn"]);
    for (from, to) in &graph {
        if from.starts_with("kernels") {
            assert!(to.iter().all(|t| !t.starts_with("model")), "{from} imports from the model: {to:?}");
        }
        // The model calls the kernels' interface (src/kernels/mod.rs), never a fast path directly.
        if from.starts_with("model") {
            assert!(to.iter().all(|t| !t.starts_with("kernels::cpu")), "{from} calls a CPU kernel directly: {to:?}");
        }
    }
    // Depth-first search for a back edge.
    fn visit(n: &str, graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>, state: &mut std::collections::BTreeMap<String, u8>, stack: &mut Vec<String>) {
        match state.get(n) {
            Some(2) => return,
            Some(1) => panic!("import cycle: {} -> {n}", stack.join(" -> ")),
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            visit(m, graph, state, stack);
        }
        stack.pop();
        state.insert(n.to_string(), 2);
    }
    let mut state = std::collections::BTreeMap::new();
    for n in graph.keys() {
        visit(n, &graph, &mut state, &mut Vec::new());
    }
}

/// The areas of `src/` (its top-level modules) in dependency order: each may name only areas
/// before it (and the leaves), so dependencies run one way:
/// cli → commands → train → inference → config → tasks → data → model → kernels
/// (`cli` is the flags and `cli::run`, which turns them into options and calls the rest).
/// `cargo test --test it layout::dependencies_run_one_way -- --nocapture` prints the graph.
const LAYERS: &[&str] = &["kernels", "model", "data", "tasks", "config", "inference", "train", "commands", "cli"];
/// Used by anyone; they name only each other.
const LEAVES: &[&str] = &["error", "Error", "Result", "Context", "bail", "err", "say", "rng", "device", "report", "alloc"];

#[test]
fn dependencies_run_one_way() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    regular_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
        let rel = f.strip_prefix(&src).unwrap();
        let area = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if area == "lib" || area == "main" {
            continue;
        }
        assert!(LAYERS.contains(&area.as_str()) || LEAVES.contains(&area.as_str()), "src/{area} is in no layer: add it to LAYERS or LEAVES in tests/it/layout.rs");
        // Code only: comments may name anything.
        let text: String = std::fs::read_to_string(f).unwrap().lines().map(|l| format!("{}\n", l.split("//").next().unwrap_or(""))).collect();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != area {
                graph.entry(area.clone()).or_default().entry(name).or_default().insert(rel.display().to_string());
            }
        }
    }
    let rank = |a: &str| LAYERS.iter().position(|l| *l == a);
    let mut wrong = Vec::new();
    for (from, to) in &graph {
        println!("{from:>9} → {}", to.keys().cloned().collect::<Vec<_>>().join(", "));
        for (target, where_) in to {
            let ok = match (rank(from), rank(target)) {
                _ if LEAVES.contains(&target.as_str()) => true,
                (Some(f), Some(t)) => t < f,
                _ => false,
            };
            if !ok {
                wrong.push(format!("{from} → {target} (in {})", where_.iter().cloned().collect::<Vec<_>>().join(", ")));
            }
        }
    }
    assert!(graph.get("cli").is_some_and(|t| t.contains_key("commands")), "the scan sees edges: {graph:?}");
    assert!(wrong.is_empty(), "dependencies that run backwards (order: {}):\n{}", LAYERS.join(" ← "), wrong.join("\n"));
}
