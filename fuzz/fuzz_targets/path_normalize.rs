//! `path::normalize`, `path::has_segment_prefix` and `path::configured`, and the
//! bypass rule match built on them (`route::Routes::select`). Input: a raw `:path`,
//! optionally followed by NUL and a configured prefix.
//!
//! Properties: the normal form starts with '/', is idempotent and never ambiguous;
//! it has no empty, '.' or '..' segment inside, no backslash or ';', and its escapes are
//! uppercase and only of characters that are not unreserved, '/' or '\'; it is a
//! valid configured path; a prefix matches exactly at segment boundaries (against a
//! segment-by-segment reference); a bypass rule matches exactly when the path is
//! unambiguous and under the prefix; a dot segment with parameters is ambiguous.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_authn::path::{configured, has_segment_prefix, normalize, MatchPath};
use wasm_authn::pipeline::route::{Require, RouteMatch, Routes, Rule};
use wasm_authn::request::RequestFacts;
use wasm_authn_fuzz::split_nul;

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn upper_hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn check_normal_form(path: &str) {
    assert!(path.starts_with('/'), "{path:?}");
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(last || !segment.is_empty(), "empty segment in {path:?}");
        assert!(*segment != "." && *segment != "..", "dot segment in {path:?}");
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let high = bytes.get(i + 1).copied().and_then(upper_hex);
                let low = bytes.get(i + 2).copied().and_then(upper_hex);
                let (Some(high), Some(low)) = (high, low) else { panic!("bad escape in {path:?}") };
                let decoded = high << 4 | low;
                assert!(!is_unreserved(decoded) && decoded != b'/' && decoded != b'\\', "{path:?}");
                i += 3;
            }
            b'\\' | b'?' | b'#' | b';' => panic!("{path:?}"),
            _ => i += 1,
        }
    }
}

/// Segment-by-segment: `/a/b` is under `/a` and `/a/b`, not under `/a/bc`; a
/// prefix ending in '/' needs what follows it.
fn reference_prefix(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    let path: Vec<&str> = path.split('/').collect();
    let prefix: Vec<&str> = prefix.split('/').collect();
    path.len() >= prefix.len() && path[..prefix.len()] == prefix[..]
}

fuzz_target!(|data: &[u8]| {
    let (raw, prefix) = split_nul(data);
    let raw = String::from_utf8_lossy(raw);
    let normalized = normalize(&raw);
    check_normal_form(&normalized.path);
    let again = MatchPath { path: normalized.path.clone(), ambiguous: false, hidden_dot_segment: false };
    assert_eq!(normalize(&normalized.path), again);
    assert!(!normalized.hidden_dot_segment || normalized.ambiguous, "{raw:?}");
    assert_eq!(configured(&normalized.path), Ok(normalized.path.clone()));

    let Ok(prefix) = configured(&String::from_utf8_lossy(prefix)) else { return };
    let under = has_segment_prefix(&normalized.path, &prefix);
    assert_eq!(under, reference_prefix(&normalized.path, &prefix), "{normalized:?} under {prefix:?}");
    let matcher = RouteMatch { path_prefix: Some(prefix), ..RouteMatch::default() };
    let bypass = Rule {
        matcher,
        require: Require::None,
        scopes: Vec::new(),
        principals: None,
        request_principals: None,
        enforce: None,
        claims: Vec::new(),
    };
    let routes = Routes::new(vec![bypass], false);
    let headers = Vec::new();
    let request = RequestFacts::new("GET", &raw, &headers);
    let bypassed = routes.select(&request, &normalized).require == Require::None;
    assert_eq!(bypassed, under && !normalized.ambiguous);
});
