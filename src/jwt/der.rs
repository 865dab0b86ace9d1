//! ECDSA signature re-encoding for the host path: JWS carries `r||s` (RFC 7518
//! section 3.4), BoringSSL wants DER `SEQUENCE { INTEGER r, INTEGER s }`.

/// Longest JWS ECDSA signature (P-521: 2 x 66 bytes); keeps every DER length below 256.
const MAX_JWS_ECDSA_BYTES: usize = 132;

const DER_SEQUENCE: u8 = 0x30;
const DER_INTEGER: u8 = 0x02;

/// Re-encode a JWS ECDSA `r||s` signature (64 bytes for P-256) as minimal DER.
/// None when the input cannot be a JWS ECDSA signature (empty, odd length, too long).
pub fn ecdsa_jws_to_der(sig: &[u8]) -> Option<Vec<u8>> {
    if sig.is_empty() || !sig.len().is_multiple_of(2) || sig.len() > MAX_JWS_ECDSA_BYTES {
        return None;
    }
    let (r, s) = sig.split_at(sig.len() / 2);
    let mut content = Vec::with_capacity(sig.len() + 6);
    push_der_integer(&mut content, r);
    push_der_integer(&mut content, s);

    let mut der = Vec::with_capacity(content.len() + 3);
    der.push(DER_SEQUENCE);
    push_der_length(&mut der, content.len());
    der.extend_from_slice(&content);
    Some(der)
}

/// A non-negative big-endian integer as a minimal DER INTEGER.
fn push_der_integer(out: &mut Vec<u8>, magnitude: &[u8]) {
    let first_nonzero = magnitude.iter().position(|&b| b != 0).unwrap_or(magnitude.len());
    let digits = &magnitude[first_nonzero..];
    // Zero is one 0x00 byte; a set top bit would read as negative, so it gets a 0x00 prefix.
    let needs_zero_prefix = digits.first().is_none_or(|&b| b & 0x80 != 0);
    out.push(DER_INTEGER);
    push_der_length(out, digits.len() + usize::from(needs_zero_prefix));
    if needs_zero_prefix {
        out.push(0x00);
    }
    out.extend_from_slice(digits);
}

/// DER definite length; callers keep it below 256 (see MAX_JWS_ECDSA_BYTES).
fn push_der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.push(0x81);
        out.push(len as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::ecdsa_jws_to_der;

    fn jws(r: &[u8], s: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; 32 - r.len()];
        sig.extend_from_slice(r);
        sig.extend(std::iter::repeat_n(0u8, 32 - s.len()));
        sig.extend_from_slice(s);
        sig
    }

    #[test]
    fn der_strips_leading_zeros() {
        let der = ecdsa_jws_to_der(&jws(&[0x01, 0x02], &[0x7f])).unwrap();
        assert_eq!(der, vec![0x30, 0x07, 0x02, 0x02, 0x01, 0x02, 0x02, 0x01, 0x7f]);
    }

    #[test]
    fn der_prepends_zero_for_high_bit() {
        let r = [0x80u8; 32];
        let s = [0xffu8; 32];
        let der = ecdsa_jws_to_der(&jws(&r, &s)).unwrap();
        assert_eq!(der.len(), 2 + 2 * (2 + 33));
        assert_eq!(&der[..5], &[0x30, 70, 0x02, 33, 0x00]);
        assert_eq!(&der[5..37], &r);
        assert_eq!(&der[37..40], &[0x02, 33, 0x00]);
        assert_eq!(&der[40..], &s);
    }

    #[test]
    fn der_encodes_zero_and_leading_zero_then_high_bit() {
        // r = 0, s = 0x00 0x00 0x9a...: stripped to 0x9a.., then 0x00 prepended.
        let der = ecdsa_jws_to_der(&jws(&[], &[0x9a, 0x01])).unwrap();
        assert_eq!(der, vec![0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x03, 0x00, 0x9a, 0x01]);
    }

    #[test]
    fn der_long_form_length_for_p521() {
        let der = ecdsa_jws_to_der(&[0xffu8; 132]).unwrap();
        assert_eq!(&der[..3], &[0x30, 0x81, 2 * (2 + 67)]);
    }

    #[test]
    fn der_refuses_impossible_inputs() {
        assert_eq!(ecdsa_jws_to_der(&[]), None);
        assert_eq!(ecdsa_jws_to_der(&[1, 2, 3]), None);
        assert_eq!(ecdsa_jws_to_der(&[1u8; 134]), None);
    }
}
