//! Verification keys: JWK / JWKS (RFC 7517, 7518, 8037) and SPKI PEM, each key
//! bound to the algorithms it may verify. That binding is what refuses algorithm
//! confusion: an RSA, EC or Ed25519 key never verifies HS*, a secret never RS*.

use std::fmt;

use base64::Engine;
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, SubjectPublicKeyInfoRef};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde_json::{Map, Value};

use super::algorithm::Algorithm;
use super::encoding::{
    jwk_bytes, PemError, JWK_BASE64, OID_EC_PUBLIC_KEY, OID_ED25519, OID_P256, OID_P384, OID_RSA_ENCRYPTION,
};

/// Most keys read from one JWKS document.
pub const MAX_JWKS_KEYS: usize = 64;

const MIN_RSA_MODULUS_BITS: usize = 2048;
const P256_COORDINATE_BYTES: usize = 32;
const P384_COORDINATE_BYTES: usize = 48;
const ED25519_KEY_BYTES: usize = 32;

const RSA_ALGORITHMS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

/// One verification key.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    material: KeyMaterial,
}

#[derive(Clone)]
pub(super) enum KeyMaterial {
    /// `spki_der` is kept for the host's BoringSSL, which imports SubjectPublicKeyInfo only.
    Rsa {
        key: RsaPublicKey,
        spki_der: Vec<u8>,
    },
    P256 {
        key: p256::ecdsa::VerifyingKey,
        spki_der: Vec<u8>,
    },
    /// Verified by the host's BoringSSL only (a pure-Rust P-384 would cost the module
    /// 150 KB of its 1 MiB). `point` is the uncompressed SEC1 point, on the curve.
    P384 {
        point: Vec<u8>,
        spki_der: Vec<u8>,
    },
    Ed25519(ed25519_compact::PublicKey),
    Hmac(Vec<u8>),
}

impl Key {
    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms it may verify.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Whether it may verify `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }

    /// SubjectPublicKeyInfo DER of an RSA or EC key (what the host path verifies with).
    pub fn spki_der(&self) -> Option<&[u8]> {
        match &self.material {
            KeyMaterial::Rsa { spki_der, .. }
            | KeyMaterial::P256 { spki_der, .. }
            | KeyMaterial::P384 { spki_der, .. } => Some(spki_der),
            KeyMaterial::Ed25519(_) | KeyMaterial::Hmac(_) => None,
        }
    }

    pub(super) fn material(&self) -> &KeyMaterial {
        &self.material
    }
}

/// Never prints key material (HMAC keys are secrets).
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.material {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::P256 { .. } => "EC P-256",
            KeyMaterial::P384 { .. } => "EC P-384",
            KeyMaterial::Ed25519(_) => "Ed25519",
            KeyMaterial::Hmac(_) => "oct",
        };
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &kind)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// Why configured keys are refused: where inside what was parsed, and what is wrong.
/// The configuration puts its field path in front (`path_under`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Where inside what was parsed, as a path's tail (`.keys[2].n`; `[1]`: the second
    /// PEM block); empty: the whole.
    pub at: String,
    /// What is wrong there.
    pub message: String,
}

impl KeyError {
    fn new(at: impl Into<String>, message: impl Into<String>) -> KeyError {
        KeyError { at: at.into(), message: message.into() }
    }

    /// Where it is under `path`, the field that held the keys
    /// (`jwt.providers[0].local_jwks` and `.keys[2].n`: `jwt.providers[0].local_jwks.keys[2].n`).
    pub fn path_under(&self, path: &str) -> String {
        format!("{path}{}", self.at)
    }
}

/// A set of verification keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// Parse a JWKS from the configuration. Strict: any key that is not usable is an
    /// error at `keys[i].field`, except keys marked `"use": "enc"`, which are skipped.
    /// A set without a usable key is an error.
    pub fn from_jwks(jwks: &Value) -> Result<KeySet, KeyError> {
        let entries =
            jwks_entries(jwks).ok_or_else(|| KeyError::new("", "must be a JWKS object with a \"keys\" array"))?;
        let keys_path = ".keys";
        if entries.len() > MAX_JWKS_KEYS {
            return Err(KeyError::new(keys_path, format!("at most {MAX_JWKS_KEYS} keys")));
        }
        let mut keys = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            match parse_jwk(entry, Origin::Config) {
                Ok(Some(key)) => keys.push(key),
                Ok(None) => {}
                Err(JwkError { field, message }) => {
                    let key_path = if field.is_empty() {
                        format!("{keys_path}[{i}]")
                    } else {
                        format!("{keys_path}[{i}].{field}")
                    };
                    return Err(KeyError::new(key_path, message));
                }
            }
        }
        if keys.is_empty() {
            return Err(KeyError::new(keys_path, "no usable signing key"));
        }
        Ok(KeySet { keys })
    }

    /// Parse a fetched JWKS document. Lenient: keys it cannot use are skipped (unknown
    /// `kty`, `crv` or `alg`, `use` other than `sig`, weak or invalid keys, and `oct`
    /// secrets, which have no business on a JWKS endpoint). Only the first
    /// MAX_JWKS_KEYS entries are read. Err when it is not a JWKS or no key is usable.
    pub fn from_remote_jwks(body: &[u8]) -> Result<KeySet, String> {
        let document: Value = serde_json::from_slice(body).map_err(|err| format!("JWKS is not valid JSON: {err}"))?;
        let entries = jwks_entries(&document).ok_or("not a JWKS document: no \"keys\" array")?;
        let keys: Vec<Key> = entries
            .iter()
            .take(MAX_JWKS_KEYS)
            .filter_map(|entry| parse_jwk(entry, Origin::Remote).ok().flatten())
            .collect();
        if keys.is_empty() {
            return Err("JWKS has no usable signing key".to_string());
        }
        Ok(KeySet { keys })
    }

    /// SubjectPublicKeyInfo PEM keys (`BEGIN PUBLIC KEY`: RSA, EC P-256 or Ed25519),
    /// one or more blocks, each bound to the RS*/PS* family, ES256 or EdDSA
    /// respectively. Errors are about the whole text, or at `[i]` for the i-th block of several.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<KeySet, KeyError> {
        let blocks = pem_blocks(pem).map_err(|message| KeyError::new("", message))?;
        let several = blocks.len() > 1;
        let mut keys = Vec::with_capacity(blocks.len());
        for (i, der) in blocks.iter().enumerate() {
            let at = if several { format!("[{i}]") } else { String::new() };
            let (material, algorithms) = key_from_spki(der).map_err(|message| KeyError::new(at, message))?;
            keys.push(Key { kid: kid.clone(), algorithms, material });
        }
        Ok(KeySet { keys })
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key here is checked by the host only (P-384: ES384).
    pub fn needs_host_crypto(&self) -> bool {
        self.keys.iter().any(|key| matches!(key.material, KeyMaterial::P384 { .. }))
    }

    /// Whether a key has this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid() == Some(kid))
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Bind every key to `allowed` only: each must already allow all of them
    /// (Err names the first it does not).
    pub fn restrict(&mut self, allowed: &[Algorithm]) -> Result<(), Algorithm> {
        for key in &mut self.keys {
            if let Some(missing) = allowed.iter().find(|alg| !key.algorithms.contains(alg)) {
                return Err(*missing);
            }
            key.algorithms = allowed.to_vec();
        }
        Ok(())
    }

    /// Add `other`'s keys after these.
    pub fn extend(&mut self, other: KeySet) {
        self.keys.extend(other.keys);
    }
}

impl crate::remote::Summary for KeySet {
    fn summary(&self) -> String {
        format!("{} signing keys", self.keys.len())
    }
}

fn jwks_entries(jwks: &Value) -> Option<&Vec<Value>> {
    jwks.as_object()?.get("keys")?.as_array()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Config,
    Remote,
}

/// Why one JWK is unusable: the member at fault ("" for the key as a whole).
struct JwkError {
    field: &'static str,
    message: String,
}

fn jwk_error(field: &'static str, message: impl Into<String>) -> JwkError {
    JwkError { field, message: message.into() }
}

/// Ok(None): a key deliberately ignored (`"use": "enc"`).
fn parse_jwk(entry: &Value, origin: Origin) -> Result<Option<Key>, JwkError> {
    let jwk = entry.as_object().ok_or_else(|| jwk_error("", "must be a JSON object"))?;
    match jwk.get("use") {
        None => {}
        Some(Value::String(usage)) if usage == "sig" => {}
        Some(Value::String(usage)) if usage == "enc" => return Ok(None),
        Some(_) => return Err(jwk_error("use", "must be \"sig\" or \"enc\"")),
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(jwk_error("kid", "must be a string")),
    };
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => Some(
            Algorithm::from_name(name).ok_or_else(|| jwk_error("alg", format!("unsupported algorithm {name:?}")))?,
        ),
        Some(_) => return Err(jwk_error("alg", "must be a string")),
    };
    let kty = string_member(jwk, "kty")?;
    if kty != "oct" && jwk.contains_key("d") {
        return Err(jwk_error("d", "private key material must not be configured; use the public key"));
    }
    let (material, algorithms) = match kty {
        "RSA" => rsa_from_jwk(jwk, alg)?,
        "EC" => ec_from_jwk(jwk, alg)?,
        "OKP" => ed25519_from_jwk(jwk, alg)?,
        "oct" if origin == Origin::Remote => return Err(jwk_error("kty", "secret keys are not read from remote JWKS")),
        "oct" => hmac_from_jwk(jwk, alg)?,
        other => return Err(jwk_error("kty", format!("unsupported key type {other:?}"))),
    };
    Ok(Some(Key { kid, algorithms, material }))
}

fn string_member<'a>(jwk: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, JwkError> {
    match jwk.get(field) {
        None => Err(jwk_error(field, "missing")),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(jwk_error(field, "must be a string")),
    }
}

fn base64_member(jwk: &Map<String, Value>, field: &'static str) -> Result<Vec<u8>, JwkError> {
    let bytes = jwk_bytes(string_member(jwk, field)?).ok_or_else(|| jwk_error(field, "invalid base64url"))?;
    if bytes.is_empty() {
        return Err(jwk_error(field, "must not be empty"));
    }
    Ok(bytes)
}

/// The key's algorithms: exactly its `alg` when it names one of `family`, else the family.
fn bind(alg: Option<Algorithm>, family: &[Algorithm], kty: &str) -> Result<Vec<Algorithm>, JwkError> {
    match alg {
        None => Ok(family.to_vec()),
        Some(alg) if family.contains(&alg) => Ok(vec![alg]),
        Some(alg) => Err(jwk_error("alg", format!("{} cannot be used with a {kty} key", alg.name()))),
    }
}

fn rsa_from_jwk(jwk: &Map<String, Value>, alg: Option<Algorithm>) -> Result<(KeyMaterial, Vec<Algorithm>), JwkError> {
    let modulus = BigUint::from_bytes_be(&base64_member(jwk, "n")?);
    let exponent = BigUint::from_bytes_be(&base64_member(jwk, "e")?);
    if modulus.bits() < MIN_RSA_MODULUS_BITS {
        return Err(jwk_error("n", format!("RSA modulus must be at least {MIN_RSA_MODULUS_BITS} bits")));
    }
    let key = RsaPublicKey::new(modulus, exponent).map_err(|err| jwk_error("", format!("invalid RSA key: {err}")))?;
    let algorithms = bind(alg, RSA_ALGORITHMS, "RSA")?;
    Ok((rsa_material(key).map_err(|message| jwk_error("", message))?, algorithms))
}

/// EC P-256 (ES256) or P-384 (ES384).
fn ec_from_jwk(jwk: &Map<String, Value>, alg: Option<Algorithm>) -> Result<(KeyMaterial, Vec<Algorithm>), JwkError> {
    let curve = string_member(jwk, "crv")?;
    let (size, name) = match curve {
        "P-256" => (P256_COORDINATE_BYTES, "P-256"),
        "P-384" => (P384_COORDINATE_BYTES, "P-384"),
        _ => return Err(jwk_error("crv", format!("unsupported curve {curve:?}"))),
    };
    let mut sec1_point = vec![0x04];
    for coordinate in ["x", "y"] {
        let bytes = base64_member(jwk, coordinate)?;
        if bytes.len() != size {
            return Err(jwk_error(coordinate, format!("must be {size} bytes for {name}")));
        }
        sec1_point.extend_from_slice(&bytes);
    }
    let not_a_point = || jwk_error("", format!("x and y are not a point on {name}"));
    if size == P256_COORDINATE_BYTES {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1_point).map_err(|_| not_a_point())?;
        let algorithms = bind(alg, &[Algorithm::ES256], "P-256")?;
        Ok((p256_material(key).map_err(|message| jwk_error("", message))?, algorithms))
    } else {
        let material = p384_material(&sec1_point).ok_or_else(not_a_point)?;
        Ok((material, bind(alg, &[Algorithm::ES384], "P-384")?))
    }
}

fn ed25519_from_jwk(
    jwk: &Map<String, Value>,
    alg: Option<Algorithm>,
) -> Result<(KeyMaterial, Vec<Algorithm>), JwkError> {
    let curve = string_member(jwk, "crv")?;
    if curve != "Ed25519" {
        return Err(jwk_error("crv", format!("unsupported curve {curve:?}")));
    }
    let key = ed25519_key(&base64_member(jwk, "x")?).map_err(|message| jwk_error("x", message))?;
    let algorithms = bind(alg, &[Algorithm::EdDSA], "Ed25519")?;
    Ok((KeyMaterial::Ed25519(key), algorithms))
}

/// RFC 7518 section 3.2: an HMAC key at least as long as the hash output. With no
/// `alg`, the key is bound to every HS* its length is good for.
fn hmac_from_jwk(jwk: &Map<String, Value>, alg: Option<Algorithm>) -> Result<(KeyMaterial, Vec<Algorithm>), JwkError> {
    let secret = base64_member(jwk, "k")?;
    let family: Vec<Algorithm> = [(Algorithm::HS256, 32), (Algorithm::HS384, 48), (Algorithm::HS512, 64)]
        .into_iter()
        .filter(|&(_, min_bytes)| secret.len() >= min_bytes)
        .map(|(alg, _)| alg)
        .collect();
    let algorithms = match alg {
        Some(alg @ (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) if !family.contains(&alg) => {
            return Err(jwk_error("k", format!("too short for {}", alg.name())));
        }
        _ if family.is_empty() => return Err(jwk_error("k", "must be at least 32 bytes")),
        _ => bind(alg, &family, "oct")?,
    };
    Ok((KeyMaterial::Hmac(secret), algorithms))
}

fn rsa_material(key: RsaPublicKey) -> Result<KeyMaterial, String> {
    if key.n().bits() < MIN_RSA_MODULUS_BITS {
        return Err(format!("RSA modulus must be at least {MIN_RSA_MODULUS_BITS} bits"));
    }
    let spki_der = key.to_public_key_der().map_err(|err| format!("cannot encode RSA key: {err}"))?.into_vec();
    Ok(KeyMaterial::Rsa { key, spki_der })
}

fn p256_material(key: p256::ecdsa::VerifyingKey) -> Result<KeyMaterial, String> {
    let spki_der = p256::PublicKey::from(&key)
        .to_public_key_der()
        .map_err(|err| format!("cannot encode P-256 key: {err}"))?
        .into_vec();
    Ok(KeyMaterial::P256 { key, spki_der })
}

/// The DER of a P-384 SubjectPublicKeyInfo up to its point (RFC 5480: id-ecPublicKey,
/// secp384r1, a BIT STRING of 98 bytes: no unused bits, then the 97-byte point).
const P384_SPKI_PREFIX: [u8; 23] = [
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
    0x22, 0x03, 0x62, 0x00,
];
const P384_POINT_BYTES: usize = 1 + 2 * P384_COORDINATE_BYTES;
/// secp384r1 (SEC 2, 2.5.1): y^2 = x^3 - 3x + b over the prime p.
const P384_P: &[u8] =
    b"fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff";
const P384_B: &[u8] =
    b"b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef";

/// A P-384 key from its uncompressed SEC1 point; None when it is not a point on the curve.
fn p384_material(point: &[u8]) -> Option<KeyMaterial> {
    let coordinates = match point {
        [0x04, coordinates @ ..] if point.len() == P384_POINT_BYTES => coordinates,
        _ => return None,
    };
    let (x, y) = coordinates.split_at(P384_COORDINATE_BYTES);
    let (x, y) = (BigUint::from_bytes_be(x), BigUint::from_bytes_be(y));
    let p = BigUint::parse_bytes(P384_P, 16)?;
    let b = BigUint::parse_bytes(P384_B, 16)?;
    if x >= p || y >= p {
        return None;
    }
    // x^3 - 3x + b, kept non-negative: x^3 + 3(p - x) + b.
    let right = (&x * &x * &x + BigUint::from(3u8) * (&p - &x) + b) % &p;
    if (&y * &y) % &p != right {
        return None;
    }
    let spki_der = [&P384_SPKI_PREFIX[..], point].concat();
    Some(KeyMaterial::P384 { point: point.to_vec(), spki_der })
}

fn ed25519_key(bytes: &[u8]) -> Result<ed25519_compact::PublicKey, String> {
    if bytes.len() != ED25519_KEY_BYTES {
        return Err(format!("must be {ED25519_KEY_BYTES} bytes for Ed25519"));
    }
    let key =
        ed25519_compact::PublicKey::from_slice(bytes).map_err(|_| "not a valid Ed25519 public key".to_string())?;
    // A small-order key verifies forged signatures in lax implementations; refuse it outright.
    key.validate().map_err(|err| match err {
        ed25519_compact::Error::WeakPublicKey => "a small-order (weak) Ed25519 public key".to_string(),
        _ => "not a valid Ed25519 public key".to_string(),
    })?;
    Ok(key)
}

/// Most PEM blocks in one `local_pem` (as many as a JWKS may hold).
const MAX_PEM_BLOCKS: usize = MAX_JWKS_KEYS;

/// The DER inside each `BEGIN PUBLIC KEY` block; text between blocks is ignored.
fn pem_blocks(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks =
        super::encoding::pem_blocks(pem, &super::encoding::PUBLIC_KEY, MAX_PEM_BLOCKS).map_err(
            |error| match error {
                PemError::NoEnd(n) => format!("PEM block {n} has no END line"),
                PemError::Base64(n) => format!("invalid base64 in PEM block {n}"),
                PemError::TooMany | PemError::NotOne => format!("at most {MAX_PEM_BLOCKS} PEM blocks"),
            },
        )?;
    if blocks.is_empty() {
        return Err(if pem.contains("PRIVATE KEY") {
            "private keys must not be configured; use the public key (BEGIN PUBLIC KEY)".to_string()
        } else if pem.contains("BEGIN RSA PUBLIC KEY") {
            "PKCS#1 RSA keys are not supported; use SubjectPublicKeyInfo (BEGIN PUBLIC KEY)".to_string()
        } else if pem.contains("BEGIN CERTIFICATE") {
            "certificates are not supported; use the public key (BEGIN PUBLIC KEY)".to_string()
        } else {
            "must hold PEM blocks \"BEGIN PUBLIC KEY\"".to_string()
        });
    }
    if pem.contains("PRIVATE KEY") {
        return Err("private keys must not be configured; use the public key (BEGIN PUBLIC KEY)".to_string());
    }
    Ok(blocks)
}

fn key_from_spki(der: &[u8]) -> Result<(KeyMaterial, Vec<Algorithm>), String> {
    let info = SubjectPublicKeyInfoRef::try_from(der).map_err(|_| "not a valid SubjectPublicKeyInfo".to_string())?;
    let algorithm = info.algorithm.oid;
    if algorithm == OID_RSA_ENCRYPTION {
        let key = RsaPublicKey::from_public_key_der(der).map_err(|err| format!("invalid RSA key: {err}"))?;
        Ok((rsa_material(key)?, RSA_ALGORITHMS.to_vec()))
    } else if algorithm == OID_EC_PUBLIC_KEY {
        let curve = info.algorithm.parameters_oid().ok();
        if curve == Some(OID_P256) {
            let key = p256::PublicKey::from_public_key_der(der).map_err(|_| "invalid P-256 key".to_string())?;
            Ok((p256_material(key.into())?, vec![Algorithm::ES256]))
        } else if curve == Some(OID_P384) {
            let point = info.subject_public_key.as_bytes().unwrap_or_default();
            let material = p384_material(point).ok_or("invalid P-384 key: an uncompressed point on the curve")?;
            Ok((material, vec![Algorithm::ES384]))
        } else {
            Err("unsupported EC curve: P-256 and P-384 are supported".to_string())
        }
    } else if algorithm == OID_ED25519 {
        let bytes = info.subject_public_key.as_bytes().ok_or_else(|| "invalid Ed25519 key".to_string())?;
        Ok((KeyMaterial::Ed25519(ed25519_key(bytes)?), vec![Algorithm::EdDSA]))
    } else {
        Err(format!("unsupported key algorithm {algorithm}"))
    }
}

/// RFC 7638: base64url(SHA-256) of a public key's required members (what
/// `Key::public_jwk` gives), sorted, without whitespace.
pub fn thumbprint(members: &Map<String, Value>) -> String {
    let mut pairs: Vec<(&String, &Value)> = members.iter().collect();
    pairs.sort_by_key(|(name, _)| name.as_str());
    let body: Vec<String> =
        pairs.iter().map(|(name, value)| format!("{}:{value}", Value::from(name.as_str()))).collect();
    let digest = crate::digest::sha256(format!("{{{}}}", body.join(",")).as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

impl Key {
    /// A public JWK read as a fetched JWKS's key is (no secrets); None when unusable.
    pub fn from_public_jwk(jwk: &Value) -> Option<Key> {
        parse_jwk(jwk, Origin::Remote).ok().flatten()
    }

    /// The JWK members of a public key: `kty` and the key's own (`n`, `e`; `crv`, `x`,
    /// `y`; `crv`, `x`), which are also the members of its RFC 7638 thumbprint; no
    /// `kid` or `alg`. None for an HMAC secret. For `wasm-authn jwks` and the token
    /// endpoint's JWKS.
    pub fn public_jwk(&self) -> Option<Map<String, Value>> {
        let members: Vec<(&str, String)> = match &self.material {
            KeyMaterial::Rsa { key, .. } => vec![
                ("kty", "RSA".into()),
                ("n", JWK_BASE64.encode(key.n().to_bytes_be())),
                ("e", JWK_BASE64.encode(key.e().to_bytes_be())),
            ],
            KeyMaterial::P256 { key, .. } => {
                let point = key.to_encoded_point(false);
                vec![
                    ("kty", "EC".into()),
                    ("crv", "P-256".into()),
                    ("x", JWK_BASE64.encode(point.x()?)),
                    ("y", JWK_BASE64.encode(point.y()?)),
                ]
            }
            KeyMaterial::P384 { point, .. } => {
                let (x, y) = point.get(1..)?.split_at(P384_COORDINATE_BYTES);
                vec![
                    ("kty", "EC".into()),
                    ("crv", "P-384".into()),
                    ("x", JWK_BASE64.encode(x)),
                    ("y", JWK_BASE64.encode(y)),
                ]
            }
            KeyMaterial::Ed25519(key) => {
                vec![("kty", "OKP".into()), ("crv", "Ed25519".into()), ("x", JWK_BASE64.encode(key.as_ref()))]
            }
            KeyMaterial::Hmac(_) => return None,
        };
        Some(members.into_iter().map(|(name, value)| (name.to_string(), Value::String(value))).collect())
    }
}
