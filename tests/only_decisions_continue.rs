//! The adapter turns a request's `Step` into the SDK's `Action` in one function:
//! `Action::Continue` appears in `src/host/` only there (from a `stream::Go`, which
//! only a decision makes) and in the response callbacks' `response_action`. A
//! `Continue` written anywhere else could let an undecided request through.

#![allow(clippy::unwrap_used)] // a test: a failure to read the sources should fail it

use std::path::Path;

/// A declaration without its visibility (`pub`, `pub(crate)`, `pub(super)`, ...).
fn without_visibility(line: &str) -> &str {
    let Some(rest) = line.strip_prefix("pub") else { return line };
    let rest = match rest.strip_prefix('(') {
        Some(scoped) => scoped.split_once(')').map_or(rest, |(_, after)| after),
        None => rest,
    };
    rest.trim_start()
}

/// The function each `Action::Continue` of a source file is written in.
fn functions_continuing(code: &str) -> Vec<String> {
    let mut current = String::new();
    let mut found = Vec::new();
    for line in code.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = without_visibility(trimmed).strip_prefix("fn ") {
            current = rest.split(['(', '<']).next().unwrap().to_string();
        }
        if line.contains("Action::Continue") && !trimmed.starts_with("//") {
            found.push(current.clone());
        }
    }
    found
}

#[test]
fn only_the_step_translation_says_continue() {
    let host = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/host");
    let mut continuing = Vec::new();
    for entry in std::fs::read_dir(&host).unwrap() {
        let path = entry.unwrap().path();
        let code = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        continuing.extend(functions_continuing(&code).into_iter().map(|f| format!("{file}: {f}")));
    }
    continuing.sort();
    continuing.dedup();
    assert_eq!(continuing, ["http.rs: request_action", "http.rs: response_action"]);
}

#[test]
fn the_finder_sees_a_continue_in_any_function() {
    let code = "fn on_http_request_body() -> Action {\n    Action::Continue\n}\n";
    assert_eq!(functions_continuing(code), ["on_http_request_body"]);
    // Whatever the function's visibility: it is not taken for the function before it.
    let code =
        "fn request_action() {}\npub(super) fn revisit() {\n    Action::Continue\n}\npub fn f() { Action::Continue }\n";
    assert_eq!(functions_continuing(code), ["revisit", "f"]);
}
