//! `config::Config::from_json`: the whole plugin configuration, on any bytes.
//!
//! Properties: no panic; an error never shows a value the configuration holds,
//! tested with the marker `SECRET`: a message may show it only where the input has
//! it in a field name (unknown fields are named), a `path_prefix` (shown
//! normalized) or a key's `kty`, `alg` or `crv` (unsupported names are quoted); a
//! configuration that loads gives a verifier, and a request without any credential
//! is never allowed (a bypass or a 401, never a wait, never a principal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wasm_authn::authenticate::Verifier;
use wasm_authn::config::Config;
use wasm_authn::pipeline::{decide, Decision};
use wasm_authn::reason::Reason;
use wasm_authn::request::RequestFacts;
use wasm_authn_fuzz::{FakeHost, NOW};

const MARKER: &str = "SECRET";
/// Fields whose value an error may name: it is a name, not a secret.
const ECHOED_FIELDS: &[&str] = &["path_prefix", "kty", "alg", "crv"];

/// Whether the marker appears where an error may show it.
fn may_be_shown(value: &Value, field: Option<&str>) -> bool {
    match value {
        Value::String(text) => text.contains(MARKER) && field.is_some_and(|f| ECHOED_FIELDS.contains(&f)),
        Value::Array(items) => items.iter().any(|item| may_be_shown(item, field)),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains(MARKER) || may_be_shown(v, Some(k))),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let config = match Config::from_json(data) {
        Ok(config) => config,
        Err(error) => {
            let shown = error.to_string();
            if shown.contains(MARKER) {
                let document: Value = match serde_json::from_slice(data) {
                    Ok(document) => document,
                    // Not JSON: which part of it a message quotes is not known here.
                    Err(_) => return,
                };
                assert!(may_be_shown(&document, None), "an error shows a value: {shown}");
            }
            return;
        }
    };
    let mut verifier = Verifier::new(&config);
    let host = FakeHost::default();
    for (method, path) in [("GET", "/"), ("OPTIONS", "/x"), ("POST", "/healthz/../admin?x=1")] {
        let headers = vec![(":method".to_string(), method.to_string()), (":path".to_string(), path.to_string())];
        let request = RequestFacts { method, path, headers: &headers };
        match decide(&config, &mut verifier, &request, &host, NOW * 1000) {
            Decision::Bypass(_) => {}
            Decision::Reply(reply) => {
                assert_eq!((reply.status, reply.reason), (401, Reason::MissingCredential), "{reply:?}")
            }
            other => panic!("a request without a credential: {other:?}"),
        }
    }
});
