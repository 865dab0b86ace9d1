//! No two source files import each other, directly or in a circle, and no two
//! top-level modules (`src/<module>`) either: every `crate::`/`super::` path and
//! every `use child::` re-export is an edge from the file that writes it to the file
//! that defines the module it names, and from its module to that file's module.

#![allow(clippy::unwrap_used)] // a test: a failure to read the sources should fail it

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Source files by path relative to `src/`, without test-only code.
fn sources() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
            if !rel.ends_with(".rs") || rel.ends_with("tests.rs") || rel == "testing.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("").to_string();
            files.insert(rel, code);
        }
    }
    files
}

/// The module path of a file: `jwt/mod.rs` and `jwt.rs` are `jwt`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.trim_end_matches(".rs").split('/').map(String::from).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path` that is a module.
fn file_of(path: &[String], files: &BTreeMap<String, String>) -> String {
    for len in (1..=path.len()).rev() {
        let candidate = path[..len].join("/");
        for file in [format!("{candidate}.rs"), format!("{candidate}/mod.rs")] {
            if files.contains_key(&file) {
                return file;
            }
        }
    }
    "lib.rs".to_string()
}

fn edges(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges = BTreeMap::new();
    for (file, code) in files {
        let module = module_of(file);
        let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
        let mut targets = BTreeSet::new();
        for (start, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
            let preceded_by_ident = code[..start].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
            if preceded_by_ident {
                continue;
            }
            let text = &code[start..];
            let (base, rest) = match text.strip_prefix("crate::") {
                Some(rest) => (Vec::new(), rest),
                None => (parent.clone(), text.trim_start_matches("super::")),
            };
            let mut path = base;
            for segment in rest.split("::") {
                let name: String = segment.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if name.is_empty() || name.len() != segment.len() && !segment.starts_with(&name) {
                    break;
                }
                path.push(name.clone());
                if name.len() != segment.len() {
                    break;
                }
            }
            targets.insert(file_of(&path, files));
        }
        // `pub use child::Item` in a module re-exports from its child: an edge to the child.
        for line in code.lines() {
            let line = line.trim_start();
            let Some(rest) = line.strip_prefix("pub use ").or_else(|| line.strip_prefix("use ")) else { continue };
            let Some((first, _)) = rest.split_once("::") else { continue };
            let mut path = module.clone();
            path.push(first.to_string());
            let target = file_of(&path, files);
            if module_of(&target) == path {
                targets.insert(target);
            }
        }
        targets.remove(file);
        edges.insert(file.clone(), targets);
    }
    edges
}

/// The folder whose modules are modules of their own: the request path's stages, in
/// `src/pipeline/` to show their order (its `mod.rs`, the pipeline, is one more).
const STAGES_FOLDER: &str = "pipeline";

/// The top-level module a file belongs to (`jwt/keys.rs`: `jwt`; `lib.rs`: the crate);
/// a stage is one (`pipeline/route.rs`: `pipeline/route`).
fn top_module(file: &str) -> String {
    let module = module_of(file);
    match module.as_slice() {
        [folder, stage, ..] if folder == STAGES_FOLDER => format!("{folder}/{stage}"),
        _ => module.first().cloned().unwrap_or_default(),
    }
}

/// The edges between top-level modules (`src/<module>`): a file's edge to another
/// module's file is its module's edge to that module.
fn module_edges(file_edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, targets) in file_edges {
        let from = top_module(file);
        let entry = edges.entry(from.clone()).or_default();
        entry.extend(targets.iter().map(|target| top_module(target)).filter(|to| *to != from && !to.is_empty()));
    }
    edges
}

/// A cycle in `edges`, if there is one (a depth-first search for a back edge).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|f| f == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_source_files_import_each_other() {
    let files = sources();
    let edges = edges(&files);
    assert!(edges.len() > 20, "found the sources: {:?}", edges.keys());
    let cycle = find_cycle(&edges);
    assert!(cycle.is_none(), "import cycle: {}", cycle.unwrap_or_default().join(" -> "));
}

/// No cycle between the top-level modules either: `config` uses `jwt`, so nothing in
/// `jwt` may use `config` (a cycle between modules binds all their files into one knot).
/// The stages count one by one: `config` compiles the routes (`pipeline/route`), and
/// the pipeline reads the configuration.
#[test]
fn no_top_level_modules_import_each_other() {
    let edges = module_edges(&edges(&sources()));
    assert!(edges.contains_key("jwt") && edges.contains_key("pipeline/route"), "{:?}", edges.keys());
    let cycle = find_cycle(&edges);
    assert!(cycle.is_none(), "module cycle: {}", cycle.unwrap_or_default().join(" -> "));
}

#[test]
fn the_check_sees_a_cycle() {
    let mut files = BTreeMap::new();
    files.insert("a.rs".to_string(), "use crate::b::X;".to_string());
    files.insert("b.rs".to_string(), "pub(crate) fn f() { crate::a::g() }".to_string());
    files.insert("lib.rs".to_string(), String::new());
    let edges = edges(&files);
    assert!(edges["a.rs"].contains("b.rs") && edges["b.rs"].contains("a.rs"), "{edges:?}");
    assert!(find_cycle(&edges).is_some());
}

#[test]
fn the_check_sees_a_cycle_between_modules_that_files_do_not_have() {
    let mut files = BTreeMap::new();
    files.insert("a/mod.rs".to_string(), "mod one;\nmod two;".to_string());
    files.insert("a/one.rs".to_string(), "use crate::b::X;".to_string());
    files.insert("a/two.rs".to_string(), String::new());
    files.insert("b.rs".to_string(), "pub(crate) fn f() { crate::a::two::g() }".to_string());
    files.insert("lib.rs".to_string(), String::new());
    let edges = edges(&files);
    assert!(find_cycle(&edges).is_none(), "{edges:?}");
    let modules = module_edges(&edges);
    assert_eq!(find_cycle(&modules), Some(vec!["a".to_string(), "b".to_string(), "a".to_string()]), "{modules:?}");
}
