//! Key encodings, decoded in one place for verification keys (`keys.rs`) and the
//! token endpoint's signing key: PEM blocks (RFC 7468), JWK base64url members, and
//! the key algorithm OIDs of SubjectPublicKeyInfo and PKCS#8.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use rsa::pkcs8::ObjectIdentifier;

/// rsaEncryption.
pub const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-ecPublicKey.
pub const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1.
pub const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(super) const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// id-Ed25519.
pub const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// JWK members are base64url without padding (RFC 7515 section 2); tolerate the
/// padding some issuers add anyway. Encodes without padding.
pub const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A JWK member's bytes, `None` when it is not base64url.
pub fn jwk_bytes(text: &str) -> Option<Vec<u8>> {
    JWK_BASE64.decode(text).ok()
}

/// Why PEM text did not give its blocks.
#[derive(Debug, PartialEq, Eq)]
pub enum PemError {
    /// Block `n` (from 0) has no END line.
    NoEnd(usize),
    /// Block `n` is not base64.
    Base64(usize),
    /// More blocks than allowed.
    TooMany,
    /// Not exactly one block and nothing else.
    NotOne,
}

/// The BEGIN and END lines of a kind of PEM block.
pub struct PemLabel {
    pub begin: &'static str,
    pub end: &'static str,
}

pub(super) const PUBLIC_KEY: PemLabel =
    PemLabel { begin: "-----BEGIN PUBLIC KEY-----", end: "-----END PUBLIC KEY-----" };
/// PKCS#8 private keys.
pub const PRIVATE_KEY: PemLabel = PemLabel { begin: "-----BEGIN PRIVATE KEY-----", end: "-----END PRIVATE KEY-----" };

/// The DER of each `label` block, in order; text between and around blocks is
/// ignored, whitespace inside them too.
pub(super) fn pem_blocks(pem: &str, label: &PemLabel, max: usize) -> Result<Vec<Vec<u8>>, PemError> {
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(label.begin) {
        let after_begin = &rest[start + label.begin.len()..];
        let end = after_begin.find(label.end).ok_or(PemError::NoEnd(blocks.len()))?;
        let base64_text: String = after_begin[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = STANDARD.decode(base64_text).map_err(|_| PemError::Base64(blocks.len()))?;
        blocks.push(der);
        if blocks.len() > max {
            return Err(PemError::TooMany);
        }
        rest = &after_begin[end + label.end.len()..];
    }
    Ok(blocks)
}

/// The DER of PEM text that is exactly one `label` block (surrounding whitespace aside).
pub fn only_pem_block(pem: &str, label: &PemLabel) -> Result<Vec<u8>, PemError> {
    let pem = pem.trim();
    if !pem.starts_with(label.begin) || !pem.ends_with(label.end) {
        return Err(PemError::NotOne);
    }
    match pem_blocks(pem, label, 1) {
        Ok(mut blocks) if blocks.len() == 1 => blocks.pop().ok_or(PemError::NotOne),
        Ok(_) | Err(PemError::TooMany) => Err(PemError::NotOne),
        Err(error) => Err(error),
    }
}
