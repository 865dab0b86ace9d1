//! `header_map::decode`, the proxy-wasm header map wire decoder (`u32 count`, the
//! `count` pairs of lengths, then each `name \0 value \0`), on any bytes.
//!
//! Properties: no panic and no allocation beyond what the buffer describes; a
//! decoded map re-encodes to the bytes it came from (a prefix: trailing bytes are
//! ignored) when it is valid UTF-8, and decodes to itself either way; the decoded
//! map is a request the extraction reads without trouble.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_authn::header_map::{decode, encode};
use wasm_authn::request::RequestFacts;
use wasm_authn_fuzz::config;

fuzz_target!(|data: &[u8]| {
    let Some(pairs) = decode(data) else { return };
    if data.is_empty() {
        assert!(pairs.is_empty());
        return;
    }
    assert!(4 + pairs.len() * 8 <= data.len(), "more pairs than the buffer describes");
    let as_bytes: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
    let encoded = encode(&as_bytes);
    let lossless = pairs.iter().all(|(n, v)| !n.contains('\u{fffd}') && !v.contains('\u{fffd}'));
    if lossless {
        assert!(data.starts_with(&encoded), "re-encoding differs");
    }
    assert_eq!(decode(&encoded).as_ref(), Some(&pairs));

    let request = RequestFacts::from_headers(&pairs);
    let _ = wasm_authn::pipeline::credential::extract(&request, &config().api_keys, &config().token_locations);
});
