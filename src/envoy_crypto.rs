//! Envoy's `verify_signature` foreign function: checks a signature with Envoy's
//! BoringSSL, 10-20x faster than pure Rust inside the VM. This module builds its
//! protobuf arguments and reads its result; the host adapter makes the call.
//!
//! `envoy.source.extensions.common.wasm.VerifySignatureArguments`:
//! hash_function = 1 (string), public_key = 2 (bytes, SubjectPublicKeyInfo DER),
//! signature = 3 (bytes), text = 4 (bytes). `VerifySignatureResult`: result = 1 (bool),
//! error = 2 (string); on failure only `error` comes back, so a missing `result` is false.

/// Envoy's foreign function that checks a signature with BoringSSL.
pub const FUNCTION_NAME: &str = "verify_signature";

/// The protobuf arguments of `verify_signature`.
pub fn encode_arguments(hash_function: &str, spki_der: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + hash_function.len() + spki_der.len() + signature.len() + text.len());
    for (field, bytes) in [(1u8, hash_function.as_bytes()), (2, spki_der), (3, signature), (4, text)] {
        out.push(field << 3 | 2); // length-delimited
        put_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// `Some(true)` only when the result says so; `None` when the reply is not a `VerifySignatureResult`.
pub fn decode_result(bytes: &[u8]) -> Option<bool> {
    let mut pos = 0;
    let mut result = false;
    while pos < bytes.len() {
        let key = get_varint(bytes, &mut pos)?;
        match (key >> 3, key & 7) {
            (1, 0) => result = get_varint(bytes, &mut pos)? != 0,
            (_, 0) => {
                get_varint(bytes, &mut pos)?;
            }
            (_, 2) => {
                let len = usize::try_from(get_varint(bytes, &mut pos)?).ok()?;
                pos = pos.checked_add(len).filter(|end| *end <= bytes.len())?;
            }
            _ => return None,
        }
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_fields_in_order_with_varint_lengths() {
        let key = vec![0xAA; 300];
        let encoded = encode_arguments("sha256", &key, &[1, 2], b"h.p");
        assert_eq!(&encoded[..8], &[0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6']);
        assert_eq!(&encoded[8..11], &[0x12, 0xac, 0x02]); // 300 = 0b10_0101100
        assert_eq!(&encoded[311..], &[0x1a, 2, 1, 2, 0x22, 3, b'h', b'.', b'p']);
    }

    #[test]
    fn decodes_results() {
        assert_eq!(decode_result(&[0x08, 0x01]), Some(true));
        assert_eq!(decode_result(&[0x08, 0x00]), Some(false));
        assert_eq!(decode_result(&[]), Some(false));
        // Only an error string: false.
        assert_eq!(decode_result(&[0x12, 3, b'b', b'a', b'd']), Some(false));
        assert_eq!(decode_result(&[0x12, 3, b'b', b'a', b'd', 0x08, 0x01]), Some(true));
        // Truncated or unknown wire types: not a result.
        assert_eq!(decode_result(&[0x12, 9, b'x']), None);
        assert_eq!(decode_result(&[0x08]), None);
        assert_eq!(decode_result(&[0x0d, 0, 0, 0, 0]), None);
    }
}
