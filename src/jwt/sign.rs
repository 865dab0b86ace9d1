//! Signing the tokens a token endpoint issues (ES256, EdDSA, RS256, HS256), with
//! jwt-compact's algorithms, on the host's clock. Nothing in the filter calls it yet.

use std::fmt;

use chrono::TimeDelta;
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa};
use jwt_compact::{AlgorithmExt, Claims, Header, TimeOptions};
use rsa::pkcs8::{DecodePrivateKey, ObjectIdentifier, PrivateKeyInfo};
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value};

use super::algorithm::Algorithm;
use super::claims::{at, MAX_NUMERIC_DATE};

const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

const MIN_RSA_MODULUS_BITS: usize = 2048;
/// RFC 7518 section 3.2: an HS256 key at least as long as the hash output.
const MIN_HS256_SECRET_BYTES: usize = 32;

/// A key tokens are signed with, and so the algorithm they carry.
pub enum SigningKey {
    Es256(p256::ecdsa::SigningKey),
    EdDSA(ed25519_compact::SecretKey),
    Rs256(Box<rsa::RsaPrivateKey>),
    Hs256(Hs256Key),
}

/// Why a key or a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// Not a PKCS#8 RSA, P-256 or Ed25519 private key.
    UnsupportedKey,
    /// An RSA modulus under 2048 bits or an HS256 secret under 32 bytes.
    WeakKey,
    /// `exp`, `nbf` or `iat` among the claims: `sign` sets the times itself.
    ReservedClaim(&'static str),
    /// `now + lifetime` is no NumericDate (past 9999-12-31), or the lifetime is 0.
    Lifetime,
    /// The header or claims could not be serialized.
    Encoding,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::UnsupportedKey => f.write_str("not a PKCS#8 RSA, P-256 or Ed25519 private key"),
            SignError::WeakKey => f.write_str("RSA keys need 2048 bits, HS256 secrets 32 bytes"),
            SignError::ReservedClaim(name) => write!(f, "the claim {name:?} is set by the signer"),
            SignError::Lifetime => f.write_str("the lifetime must be positive and end before 9999-12-31"),
            SignError::Encoding => f.write_str("the token could not be encoded"),
        }
    }
}

impl std::error::Error for SignError {}

impl SigningKey {
    /// A PKCS#8 private key (the DER of `BEGIN PRIVATE KEY`): RSA (RS256, at least
    /// 2048 bits), EC P-256 (ES256) or Ed25519 (EdDSA).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, SignError> {
        let info = PrivateKeyInfo::try_from(der).map_err(|_| SignError::UnsupportedKey)?;
        let algorithm = info.algorithm.oid;
        if algorithm == OID_RSA_ENCRYPTION {
            let key = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|_| SignError::UnsupportedKey)?;
            if key.n().bits() < MIN_RSA_MODULUS_BITS {
                return Err(SignError::WeakKey);
            }
            Ok(SigningKey::Rs256(Box::new(key)))
        } else if algorithm == OID_EC_PUBLIC_KEY {
            // Checks the curve too: a P-384 key is refused.
            p256::ecdsa::SigningKey::from_pkcs8_der(der).map(SigningKey::Es256).map_err(|_| SignError::UnsupportedKey)
        } else if algorithm == OID_ED25519 {
            // RFC 8410: the private key is an OCTET STRING holding the 32-byte seed.
            let seed = match info.private_key {
                [0x04, 0x20, seed @ ..] if seed.len() == ed25519_compact::Seed::BYTES => seed,
                _ => return Err(SignError::UnsupportedKey),
            };
            let seed = ed25519_compact::Seed::from_slice(seed).map_err(|_| SignError::UnsupportedKey)?;
            Ok(SigningKey::EdDSA(ed25519_compact::KeyPair::from_seed(seed).sk))
        } else {
            Err(SignError::UnsupportedKey)
        }
    }

    /// An HS256 secret of at least 32 bytes.
    pub fn hs256(secret: &[u8]) -> Result<SigningKey, SignError> {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(SignError::WeakKey);
        }
        Ok(SigningKey::Hs256(Hs256Key::new(secret)))
    }

    /// The `alg` of the tokens this key signs.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Es256(_) => Algorithm::ES256,
            SigningKey::EdDSA(_) => Algorithm::EdDSA,
            SigningKey::Rs256(_) => Algorithm::RS256,
            SigningKey::Hs256(_) => Algorithm::HS256,
        }
    }
}

/// Never prints key material.
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.algorithm().name()).finish_non_exhaustive()
    }
}

/// A compact JWS of `claims` signed with `key`, with `kid` in its header when given,
/// `iat` = `now` (unix seconds from the host) and `exp` = `now + lifetime_seconds`.
/// The claims must not hold `exp`, `nbf` or `iat` themselves.
pub fn sign(
    key: &SigningKey,
    kid: Option<&str>,
    claims: Map<String, Value>,
    now: u64,
    lifetime_seconds: u64,
) -> Result<String, SignError> {
    if let Some(name) = ["exp", "nbf", "iat"].into_iter().find(|name| claims.contains_key(*name)) {
        return Err(SignError::ReservedClaim(name));
    }
    let expires_at = now.checked_add(lifetime_seconds).filter(|exp| *exp <= MAX_NUMERIC_DATE && lifetime_seconds > 0);
    let lifetime = expires_at
        .and_then(|_| i64::try_from(lifetime_seconds).ok())
        .and_then(TimeDelta::try_seconds)
        .ok_or(SignError::Lifetime)?;
    // The host's clock, never the VM's.
    let clock = at(now);
    let claims =
        Claims::new(claims).set_duration_and_issuance(&TimeOptions::new(TimeDelta::zero(), move || clock), lifetime);
    let mut header = Header::empty().with_token_type("JWT");
    if let Some(kid) = kid {
        header = header.with_key_id(kid);
    }
    let token = match key {
        SigningKey::Es256(key) => Es256.token(&header, &claims, key),
        SigningKey::EdDSA(key) => Ed25519.token(&header, &claims, key),
        SigningKey::Rs256(key) => Rsa::rs256().token(&header, &claims, key),
        SigningKey::Hs256(key) => Hs256.token(&header, &claims, key),
    };
    token.map_err(|_| SignError::Encoding)
}
