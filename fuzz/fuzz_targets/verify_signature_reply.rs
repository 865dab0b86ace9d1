//! `envoy_crypto::decode_result`, the reader of Envoy's `verify_signature` reply
//! (a `VerifySignatureResult` protobuf), on any bytes; and `encode_arguments`.
//!
//! Properties: the reply decodes as a reference protobuf reader (varints of up to
//! ten bytes; wire types 0 and 2 only) reads it: `Some(true)` exactly when the
//! last field 1 is a non-zero varint; arguments encode as the four length-delimited
//! fields 1-4 holding exactly the bytes given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_authn::envoy_crypto::{decode_result, encode_arguments};

fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value: u128 = 0;
    for i in 0..10 {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u128::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value as u64);
        }
    }
    None
}

/// Every field, in order: (number, Ok(varint) | Err(bytes)).
fn fields(bytes: &[u8]) -> Option<Vec<(u64, Result<u64, &[u8]>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let key = varint(bytes, &mut pos)?;
        match key & 7 {
            0 => out.push((key >> 3, Ok(varint(bytes, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(bytes, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                out.push((key >> 3, Err(bytes.get(pos..end)?)));
                pos = end;
            }
            _ => return None,
        }
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let expected = fields(data)
        .map(|fields| fields.iter().filter(|(n, v)| *n == 1 && v.is_ok()).last().is_some_and(|(_, v)| *v != Ok(0)));
    assert_eq!(decode_result(data), expected);

    let mut parts = data.splitn(4, |b| *b == 0xff);
    let (hash, key, signature, text) = (
        parts.next().unwrap_or(&[]),
        parts.next().unwrap_or(&[]),
        parts.next().unwrap_or(&[]),
        parts.next().unwrap_or(&[]),
    );
    let hash = String::from_utf8_lossy(hash);
    let encoded = encode_arguments(&hash, key, signature, text);
    let decoded = fields(&encoded).unwrap();
    let want: Vec<(u64, Result<u64, &[u8]>)> =
        vec![(1, Err(hash.as_bytes())), (2, Err(key)), (3, Err(signature)), (4, Err(text))];
    assert_eq!(decoded, want);
});
