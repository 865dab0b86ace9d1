//! The token endpoint's signing key: a private JWK or a PKCS#8 PEM, EC P-256
//! (ES256), Ed25519 (EdDSA), RSA (RS256, 2048 bits at least) or an `oct` secret
//! (HS256). Signs inside the VM; issuing is rare, verifying stays on the fast path.
//! Never printed: `Debug` shows the kind only.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer as _;
use rand_core::OsRng;
use rsa::pkcs8::{DecodePrivateKey, PrivateKeyInfo};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jwt::{
    jwk_bytes, only_pem_block, Algorithm, KeySet, PemError, JWK_BASE64, OID_EC_PUBLIC_KEY, OID_ED25519, OID_P256,
    OID_RSA_ENCRYPTION, PRIVATE_KEY,
};

const MIN_RSA_BITS: usize = 2048;
const MIN_HMAC_BYTES: usize = 32;

pub(crate) enum Signer {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_compact::KeyPair),
    Rs256(Box<RsaPrivateKey>),
    Hs256(Vec<u8>),
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.algorithm().name())
    }
}

impl Signer {
    /// A private JWK object, or a PKCS#8 PEM string (`BEGIN PRIVATE KEY`). Errors never
    /// quote the key.
    pub(crate) fn parse(value: &Value) -> Result<Signer, String> {
        match value {
            Value::Object(jwk) => from_jwk(jwk),
            Value::String(pem) => from_pem(pem),
            _ => Err("must be a private JWK object or a PKCS#8 PEM string".into()),
        }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Signer::Es256(_) => Algorithm::ES256,
            Signer::EdDsa(_) => Algorithm::EdDSA,
            Signer::Rs256(_) => Algorithm::RS256,
            Signer::Hs256(_) => Algorithm::HS256,
        }
    }

    /// The public half as JWK members (none for an HMAC secret).
    pub(crate) fn public_jwk(&self) -> Option<Map<String, Value>> {
        let text = |s: &str| Value::String(s.to_string());
        let members: Vec<(&str, Value)> = match self {
            Signer::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                vec![
                    ("kty", text("EC")),
                    ("crv", text("P-256")),
                    ("x", text(&JWK_BASE64.encode(point.x()?))),
                    ("y", text(&JWK_BASE64.encode(point.y()?))),
                ]
            }
            Signer::EdDsa(pair) => {
                vec![("kty", text("OKP")), ("crv", text("Ed25519")), ("x", text(&JWK_BASE64.encode(*pair.pk)))]
            }
            Signer::Rs256(key) => vec![
                ("kty", text("RSA")),
                ("n", text(&JWK_BASE64.encode(key.n().to_bytes_be()))),
                ("e", text(&JWK_BASE64.encode(key.e().to_bytes_be()))),
            ],
            Signer::Hs256(_) => return None,
        };
        Some(members.into_iter().map(|(name, value)| (name.to_string(), value)).collect())
    }

    /// The keys the filter verifies its own tokens with (the public half, or the secret).
    pub(crate) fn verification_keys(&self, kid: &str) -> Result<KeySet, String> {
        let mut jwk = match self {
            Signer::Hs256(secret) => {
                let mut jwk = Map::new();
                jwk.insert("kty".into(), "oct".into());
                jwk.insert("k".into(), JWK_BASE64.encode(secret).into());
                jwk
            }
            other => other.public_jwk().ok_or("the public key cannot be encoded")?,
        };
        jwk.insert("kid".into(), kid.into());
        jwk.insert("alg".into(), self.algorithm().name().into());
        let jwks = serde_json::json!({ "keys": [Value::Object(jwk)] });
        KeySet::from_jwks(&jwks).map_err(|e| e.message)
    }

    /// The JWS signature of `signing_input` (`header.payload`), base64url.
    pub(crate) fn sign(&self, signing_input: &[u8]) -> Result<String, String> {
        let signature: Vec<u8> = match self {
            Signer::Es256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(signing_input);
                signature.to_bytes().to_vec()
            }
            Signer::EdDsa(pair) => pair.sk.sign(signing_input, None).to_vec(),
            Signer::Rs256(key) => {
                let digest = Sha256::digest(signing_input);
                // Blinded with the host's randomness (WASI random_get).
                key.sign_with_rng(&mut OsRng, Pkcs1v15Sign::new::<Sha256>(), &digest).map_err(|e| e.to_string())?
            }
            Signer::Hs256(secret) => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|e| e.to_string())?;
                mac.update(signing_input);
                mac.finalize().into_bytes().to_vec()
            }
        };
        Ok(URL_SAFE_NO_PAD.encode(signature))
    }
}

fn member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = jwk.get(name).and_then(Value::as_str).ok_or_else(|| format!("the JWK needs `{name}`"))?;
    jwk_bytes(text).ok_or_else(|| format!("the JWK's `{name}` is not base64url"))
}

fn from_jwk(jwk: &Map<String, Value>) -> Result<Signer, String> {
    let kty = jwk.get("kty").and_then(Value::as_str).ok_or("the JWK needs `kty`")?;
    match kty {
        "EC" => {
            if jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
                return Err("an EC signing key must be on P-256 (ES256)".into());
            }
            let key = p256::ecdsa::SigningKey::from_slice(&member(jwk, "d")?)
                .map_err(|_| "`d` is not a P-256 private key")?;
            check_public(jwk, Signer::Es256(key))
        }
        "OKP" => {
            if jwk.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                return Err("an OKP signing key must be Ed25519 (EdDSA)".into());
            }
            let seed: [u8; 32] = member(jwk, "d")?.try_into().map_err(|_| "`d` must be 32 bytes")?;
            check_public(jwk, Signer::EdDsa(ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed))))
        }
        "RSA" => {
            let number = |name| member(jwk, name).map(|bytes| BigUint::from_bytes_be(&bytes));
            let primes = vec![number("p")?, number("q")?];
            let key = RsaPrivateKey::from_components(number("n")?, number("e")?, number("d")?, primes)
                .map_err(|_| "not a valid RSA private key")?;
            rsa_signer(key)
        }
        "oct" => {
            let secret = member(jwk, "k")?;
            if secret.len() < MIN_HMAC_BYTES {
                return Err(format!("an HS256 secret must be at least {MIN_HMAC_BYTES} bytes"));
            }
            Ok(Signer::Hs256(secret))
        }
        _ => Err("unsupported key type: use EC P-256, OKP Ed25519, RSA or oct".into()),
    }
}

/// A JWK that also gives its public members must give this key's.
fn check_public(jwk: &Map<String, Value>, signer: Signer) -> Result<Signer, String> {
    let public = signer.public_jwk().unwrap_or_default();
    for name in ["x", "y"] {
        if let (Some(given), Some(derived)) = (jwk.get(name), public.get(name)) {
            if given.as_str().map(|g| g.trim_end_matches('=')) != derived.as_str() {
                return Err(format!("the JWK's `{name}` is not the public half of `d`"));
            }
        }
    }
    Ok(signer)
}

fn rsa_signer(key: RsaPrivateKey) -> Result<Signer, String> {
    key.validate().map_err(|_| "not a valid RSA private key")?;
    if key.n().bits() < MIN_RSA_BITS {
        return Err(format!("an RSA signing key needs {MIN_RSA_BITS} bits at least"));
    }
    Ok(Signer::Rs256(Box::new(key)))
}

fn from_pem(pem: &str) -> Result<Signer, String> {
    let der = only_pem_block(pem, &PRIVATE_KEY).map_err(|error| match error {
        PemError::Base64(_) => "invalid base64 in the PEM block",
        _ => {
            "must be a private JWK or one PKCS#8 PEM block (BEGIN PRIVATE KEY; `openssl pkcs8 -topk8 -nocrypt` \
             converts an EC or RSA PRIVATE KEY)"
        }
    })?;
    let info = PrivateKeyInfo::try_from(der.as_slice()).map_err(|_| "not a PKCS#8 private key")?;
    let algorithm = info.algorithm.oid;
    if algorithm == OID_RSA_ENCRYPTION {
        rsa_signer(RsaPrivateKey::from_pkcs8_der(&der).map_err(|_| "not a valid RSA private key")?)
    } else if algorithm == OID_EC_PUBLIC_KEY {
        if info.algorithm.parameters_oid().ok() != Some(OID_P256) {
            return Err("an EC signing key must be on P-256 (ES256)".into());
        }
        let key = p256::SecretKey::from_pkcs8_der(&der).map_err(|_| "not a valid P-256 private key")?;
        Ok(Signer::Es256(key.into()))
    } else if algorithm == OID_ED25519 {
        // RFC 8410: the private key is an OCTET STRING holding the 32-byte seed.
        let seed = match info.private_key {
            [0x04, 0x20, seed @ ..] if seed.len() == 32 => seed,
            _ => return Err("not a valid Ed25519 private key".into()),
        };
        let seed: [u8; 32] = seed.try_into().map_err(|_| "not a valid Ed25519 private key")?;
        Ok(Signer::EdDsa(ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed))))
    } else {
        Err("unsupported key algorithm: use EC P-256, Ed25519 or RSA".into())
    }
}
