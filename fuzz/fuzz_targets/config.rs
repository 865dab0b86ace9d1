//! `config::Config::from_json`: the whole plugin configuration, on any bytes.
//!
//! Properties: no panic; an error never shows a value the configuration holds,
//! tested with the marker `SECRET`: a message may show it only in a field name
//! (the field path, an unknown field), a `path_prefix` (shown normalized) or a
//! key's `kty`, `alg` or `crv` (unsupported names are quoted); a
//! configuration that loads gives a verifier, and a request without any credential
//! is never allowed (a bypass or a 401, never a wait, never a principal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_authn::config::Config;
use wasm_authn::pipeline::authenticate::Verifier;
use wasm_authn::pipeline::{decide, Decision};
use wasm_authn::reason::Reason;
use wasm_authn::request::{Header, RequestFacts};
use wasm_authn_fuzz::{fake_host, NOW};

const MARKER: &str = "SECRET";
/// Fields whose value an error may name: it is a name, not a secret.
const ECHOED_FIELDS: &[&str] = &["path_prefix", "kty", "alg", "crv"];

/// Whether the message is about a field name (`unknown field `x``, `missing field`,
/// `duplicate field`): serde quotes nothing else there, and a name may hold a '`'.
fn names_a_field(message: &str) -> bool {
    ["unknown field", "missing field", "duplicate field"].iter().any(|p| message.starts_with(p))
}

/// Whether some marker in the raw input is inside the string value of an echoed
/// field (`"alg": "..SECRET.."`). Read from the text, not a parsed document: a
/// duplicated section is reported where it first appears, a parser keeps the last.
fn in_echoed_value(input: &str) -> bool {
    input.match_indices(MARKER).any(|(at, _)| {
        let before = &input[..at];
        // The quote that opens the string the marker is in: one not escaped by a backslash.
        let bytes = before.as_bytes();
        let unescaped = |i: usize| bytes[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0;
        let Some(open) = (0..bytes.len()).rev().find(|i| bytes[*i] == b'"' && unescaped(*i)) else { return false };
        let key = before[..open].trim_end();
        let Some(key) = key.strip_suffix(':') else { return false };
        let key = key.trim_end();
        ECHOED_FIELDS.iter().any(|field| key.ends_with(&format!("\"{field}\"")))
    })
}

fuzz_target!(|data: &[u8]| {
    let config = match Config::from_json(data) {
        Ok(config) => config,
        Err(error) => {
            // The path names fields only; the message may name the value.
            if !names_a_field(&error.message) && error.message.contains(MARKER) {
                let input = String::from_utf8_lossy(data);
                // Written with escapes (`\u0053ECRET`): where it came from is not known here.
                if input.contains(MARKER) {
                    assert!(in_echoed_value(&input), "an error shows a value: {error}");
                }
            }
            return;
        }
    };
    let mut verifier = Verifier::new(&config);
    let host = fake_host();
    for (method, path) in [("GET", "/"), ("OPTIONS", "/x"), ("POST", "/healthz/../admin?x=1")] {
        let headers: Vec<Header> = vec![(":method".into(), method.into()), (":path".into(), path.into())];
        let request = RequestFacts::new(method, path, &headers);
        match decide(&config, &wasm_authn::fetched::Fetched::new(&config), &mut verifier, &request, &host, NOW * 1000) {
            // A `none` or `optional` rule, or the token endpoint's path.
            Decision::Bypass(_) | Decision::Anonymous(_) | Decision::ReadBody(_) | Decision::ReadForm => {}
            Decision::Reply(reply) if reply.status == 401 => {
                assert_eq!(reply.reason, Reason::MissingCredential, "{reply:?}")
            }
            // Outside trusted networks; the token endpoint's JWKS and its 405/413.
            Decision::Reply(reply) => assert!([200, 403, 405, 413].contains(&reply.status), "{reply:?}"),
            other => panic!("a request without a credential: {other:?}"),
        }
    }
});
