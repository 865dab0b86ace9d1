//! The documents agree with the code: every JSON block of README.md and docs/ says
//! whether it is a plugin configuration, and every one that is loads with the
//! filter's own parser; the explained field table names only fields the generated
//! reference has; every relative link and anchor leads somewhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use wasm_authn::config::Config;

/// README.md and every docs/*.md, by path relative to the repository.
fn documents() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| path.strip_prefix(root).unwrap().to_path_buf())
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(root.join(&path)).unwrap();
            (path.to_string_lossy().replace('\\', "/"), text)
        })
        .collect()
}

/// The variables the documents' `X_env` examples name, with values the filter accepts.
fn example_environment(name: &str) -> Option<String> {
    match name {
        "ALICE_HASH" => Some("sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b".into()),
        "REPORTING_KEY_HASH" => {
            Some("sha256:5d60436179138c86dd8c184f3cb73736d66813526133e8262fdaa55ffcef3a72".into())
        }
        "TOKEN_KEY" => Some(
            r#"{"kty": "OKP", "crv": "Ed25519", "d": "L5y2pOJZS_BlWreCsLnGsueSZ3F-iW5v7ksxwxl7oao", "x": "_afyMCp--JegtKBwloxX3M6lku2z4eUHoGxLwcBpWIg"}"#
                .into(),
        ),
        "KEYCLOAK_SECRET" => Some("a-client-secret".into()),
        _ => None,
    }
}

/// Each ```json block: (document, line, the comment line before it, its text).
fn json_blocks() -> Vec<(String, usize, String, String)> {
    let mut blocks = Vec::new();
    for (path, text) in documents() {
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].trim_start() == "```json" {
                let marker = lines[..i].iter().rev().find(|line| !line.trim().is_empty()).unwrap_or(&"").trim();
                let end = i + 1 + lines[i + 1..].iter().position(|line| line.trim_start() == "```").unwrap();
                let indent = lines[i].len() - lines[i].trim_start().len();
                let body: Vec<&str> = lines[i + 1..end].iter().map(|line| line.get(indent..).unwrap_or("")).collect();
                blocks.push((path.clone(), i + 1, marker.to_string(), body.join("\n")));
                i = end;
            }
            i += 1;
        }
    }
    blocks
}

#[test]
fn every_example_configuration_loads() {
    let blocks = json_blocks();
    let mut configurations = 0;
    for (path, line, marker, text) in &blocks {
        match marker.as_str() {
            "<!-- config -->" => {
                configurations += 1;
                if let Err(e) = Config::from_json_with_env(text.as_bytes(), &example_environment) {
                    panic!("{path}:{line}: the example configuration is refused: {e}");
                }
            }
            other if other.starts_with("<!-- not-config") => {}
            _ => panic!(
                "{path}:{line}: a ```json block needs `<!-- config -->` (a plugin configuration, which a test \
                 loads) or `<!-- not-config: why -->` on the line before it"
            ),
        }
    }
    assert!(configurations >= 2, "the complete example and the environment example at least");
}

/// The field paths of the generated reference.
fn reference_fields() -> BTreeSet<String> {
    let reference = documents().into_iter().find(|(path, _)| path == "docs/configuration-reference.md").unwrap().1;
    reference
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .map(|rest| rest[..rest.find('`').unwrap()].to_string())
        .collect()
}

#[test]
fn the_explained_fields_are_the_schemas() {
    let fields = reference_fields();
    let top_level: BTreeSet<&str> = fields.iter().filter(|f| !f.contains(['.', '['])).map(String::as_str).collect();
    let guide = documents().into_iter().find(|(path, _)| path == "docs/configuration.md").unwrap().1;
    let table = &guide[guide.find("| field | default | meaning |").unwrap()..];
    let mut named = 0;
    for row in table.lines().skip(2).take_while(|line| line.starts_with('|')) {
        let first_cell = row.trim_start_matches('|').split(" | ").next().unwrap();
        let mut last = String::new();
        for (i, token) in first_cell.split('`').enumerate() {
            if i % 2 == 0 || token.is_empty() {
                continue; // outside backquotes
            }
            // `.paths` after `basic.users[].methods` is `basic.users[].paths`.
            let full = match token.strip_prefix('.') {
                Some(sibling) => format!("{}.{sibling}", &last[..last.rfind('.').unwrap_or(0)]),
                None => token.trim_end_matches("[]").to_string(),
            };
            // The row's first name is a field; the others are where they look like one.
            let is_path = i == 1 || full.contains('.') || top_level.contains(full.as_str());
            if is_path {
                assert!(fields.contains(&full), "docs/configuration.md explains `{full}`, which the schema lacks");
                named += 1;
            }
            if is_path && !token.starts_with('.') {
                last = full;
            }
        }
    }
    assert!(named > 60, "only {named} fields found in the table");
}

/// GitHub's anchor of a heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.insert(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn every_link_leads_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let documents = documents();
    for (path, text) in &documents {
        let dir = Path::new(path).parent().unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let target = &rest[..rest.find(')').unwrap()];
            if target.starts_with("http") || target.contains(' ') {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let linked = if file.is_empty() { PathBuf::from(path) } else { dir.join(file) };
            let normalized: PathBuf = linked.components().fold(PathBuf::new(), |mut acc, part| {
                match part {
                    std::path::Component::ParentDir => {
                        acc.pop();
                    }
                    std::path::Component::CurDir => {}
                    other => acc.push(other),
                }
                acc
            });
            assert!(root.join(&normalized).exists(), "{path}: link to {target}: no such file");
            if !fragment.is_empty() {
                let name = normalized.to_string_lossy().replace('\\', "/");
                let text = &documents.iter().find(|(p, _)| *p == name).expect("anchors only into documents").1;
                assert!(anchors(text).contains(fragment), "{path}: link to {target}: no such heading");
            }
        }
    }
}
