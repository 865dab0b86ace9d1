//! `header_map::decode`, the proxy-wasm header map wire decoder (`u32 count`, the
//! `count` pairs of lengths, then each `name \0 value \0`), on any bytes.
//!
//! Properties: no panic and no allocation beyond what the buffer describes; a
//! decoded map re-encodes to the bytes it came from (a prefix: trailing bytes are
//! ignored) when it is valid UTF-8, and decodes to itself either way; the decoded
//! map is a request the extraction reads without trouble.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_authn::header_map::decode;
use wasm_authn::request::{Header, RequestFacts};
use wasm_authn_fuzz::config;

fn encode(pairs: &[Header]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (name, value) in pairs {
        out.extend((name.len() as u32).to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend(name.as_bytes());
        out.push(0);
        out.extend(value.as_bytes());
        out.push(0);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(pairs) = decode(data) else { return };
    if data.is_empty() {
        assert!(pairs.is_empty());
        return;
    }
    assert!(4 + pairs.len() * 8 <= data.len(), "more pairs than the buffer describes");
    let encoded = encode(&pairs);
    let lossless = pairs.iter().all(|(n, v)| !n.contains('\u{fffd}') && !v.contains('\u{fffd}'));
    if lossless {
        assert!(data.starts_with(&encoded), "re-encoding differs");
    }
    assert_eq!(decode(&encoded).as_ref(), Some(&pairs));

    let request = RequestFacts::from_headers(&pairs);
    let _ = wasm_authn::credential::extract(&request, &config().api_keys, &config().token_locations);
});
