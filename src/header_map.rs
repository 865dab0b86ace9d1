//! The proxy-wasm header map wire format, decoded here rather than by the SDK,
//! whose decoder panics on a header name that is not UTF-8 (a panic kills the
//! VM: every later request on that worker fails). Bytes in, no panic.
//!
//! Layout (little-endian): `u32 count`, then `count` pairs of `u32 name_len,
//! u32 value_len`, then for each pair `name \0 value \0`.

use crate::request::Header;

/// Decode a serialized header map, borrowing from it. Names and values that are
/// not UTF-8 are read lossily (U+FFFD): such a name can never equal one the filter
/// owns or reads. None when the buffer is not a well-formed map.
pub fn decode(bytes: &[u8]) -> Option<Vec<Header<'_>>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    if sizes_end > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    let mut data = sizes_end;
    for i in 0..count {
        let name_len = usize::try_from(read_u32(bytes, 4 + i * 8)?).ok()?;
        let value_len = usize::try_from(read_u32(bytes, 8 + i * 8)?).ok()?;
        let name = take(bytes, &mut data, name_len)?;
        let value = take(bytes, &mut data, value_len)?;
        pairs.push((String::from_utf8_lossy(name), String::from_utf8_lossy(value)));
    }
    Some(pairs)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([word[0], word[1], word[2], word[3]]))
}

/// `len` bytes at `*at`, followed by the NUL that ends them.
fn take<'b>(bytes: &'b [u8], at: &mut usize, len: usize) -> Option<&'b [u8]> {
    let end = at.checked_add(len)?;
    let field = bytes.get(*at..end)?;
    if bytes.get(end) != Some(&0) {
        return None;
    }
    *at = end + 1;
    Some(field)
}

/// Serialize a header map (a local reply's headers). Sizes past `u32` cannot occur:
/// every name and value here is the filter's own, a few hundred bytes at most.
pub fn encode<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let size = |len: usize| u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = size(pairs.len()).to_vec();
    for (name, value) in pairs {
        out.extend(size(name.as_ref().len()));
        out.extend(size(value.as_ref().len()));
    }
    for (name, value) in pairs {
        out.extend(name.as_ref());
        out.push(0);
        out.extend(value.as_ref());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_in_order_with_repeats() {
        let bytes = encode(&[(":path", "/x"), ("a", ""), ("a", "2")]);
        let map = decode(&bytes).unwrap();
        assert_eq!(map, vec![(":path".into(), "/x".into()), ("a".into(), "".into()), ("a".into(), "2".into())]);
        assert_eq!(decode(&[]), Some(vec![]));
        assert_eq!(decode(&encode::<&str, &str>(&[])), Some(vec![]));
    }

    #[test]
    fn non_utf8_names_and_values_are_read_lossily() {
        let bytes = encode(&[(b"x-auth-principal\xff", b"caf\xe9")]);
        let map = decode(&bytes).unwrap();
        assert_eq!(map[0].0, "x-auth-principal\u{fffd}");
        assert_eq!(map[0].1, "caf\u{fffd}");
    }

    #[test]
    fn malformed_maps_are_refused_without_panicking() {
        let good = encode(&[(b"name", b"value")]);
        for cut in 0..good.len() {
            assert_eq!(decode(&good[..cut]).filter(|_| cut > 0), None, "cut at {cut}");
        }
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(decode(&no_nul), None);
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), None);
        let mut huge_len = good;
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge_len), None);
    }
}
