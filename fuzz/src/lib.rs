//! What the fuzz targets share: the fixed keys and configurations, a fake host
//! (the core's host traits, as `src/testing.rs` fakes them for unit tests), a
//! stand-in for Envoy's BoringSSL built on ring, and a readable text form of a
//! request that the fuzzer mutates well.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use wasm_authn::config::Config;
use wasm_authn::host_api::{Cas, Clock, SharedData};
use wasm_authn::jwt::{Algorithm, SignatureBackend};
use wasm_authn::pipeline::shape::UpstreamChanges;
use wasm_authn::pipeline::Decision;
use wasm_authn::request::Header;

pub mod streams;

/// The time every target runs at (unix seconds), and the configured clock skew.
pub const NOW: u64 = 1_800_000_000;
pub const SKEW: u64 = 60;

/// 64 bytes: good for HS256, HS384 and HS512.
pub const HMAC_SECRET: &[u8] = b"fuzz-hmac-secret-0123456789abcdef-fuzz-hmac-secret-0123456789ab!";
/// The kid-less HMAC key's secret (32 bytes: HS256 only).
pub const HMAC_SECRET_NO_KID: &[u8] = b"kidless-secret-0123456789abcdef!";
/// A Basic user's and an API client's password, and the disabled client's key.
pub const PASSWORD: &str = "open-sesame";
pub const DISABLED_KEY: &str = "retired-key";

pub const RSA_PRIVATE_PEM: &str = include_str!("../../tests/keys/rsa2048_private.pem");
pub const EC_PRIVATE_PEM: &str = include_str!("../../tests/keys/ec_p256_private.pem");
pub const ED_PRIVATE_PEM: &str = include_str!("../../tests/keys/ed25519_private.pem");
const PUBLIC_JWKS: &str = include_str!("../../tests/keys/public_jwks.json");
/// Other keys of each kind (the RFC examples'), for "a different key never verifies".
const RFC_EXAMPLES: &str = include_str!("../../tests/vectors/jose_examples.json");

pub const ISSUER: &str = "https://id.fuzz.example";
pub const STRICT_ISSUER: &str = "https://strict.fuzz.example";
pub const REMOTE_ISSUER: &str = "https://remote.fuzz.example";
pub const IAP_ISSUER: &str = "https://iap.fuzz.example";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn with_kid(mut jwk: Value, kid: &str) -> Value {
    jwk["kid"] = json!(kid);
    jwk
}

/// The public keys of tests/keys: `rsa2048`, `ec_p256`, `ed25519`.
pub fn public_jwk(name: &str) -> Value {
    let all: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    all[name].clone()
}

/// The fixed JWKS of the main provider: one key of each kind, each with its kid,
/// plus a kid-less HMAC key (the fallback for tokens whose kid matches nothing).
pub fn provider_jwks(rsa: Value, ec: Value, ed: Value, secret: &[u8], kidless_secret: &[u8]) -> Value {
    json!({"keys": [
        {"kty": "oct", "kid": "hs", "k": b64(secret)},
        with_kid(rsa, "rsa"),
        with_kid(ec, "ec"),
        with_kid(ed, "ed"),
        {"kty": "oct", "k": b64(kidless_secret), "alg": "HS256"},
    ]})
}

/// The configuration the token and decision targets use: Basic users (SHA-256 and
/// `{SHA}` only: bcrypt would make every input cost milliseconds), API keys in
/// headers and the query, bypass rules, and three JWT providers: the main one
/// (RSA, EC, Ed25519 and HMAC keys, a claim header), a strict one (expiration
/// required, lifetime and audiences bounded, another principal claim) and a
/// remote one whose keys never arrive (a request for it waits).
pub fn config_json(jwks: Value) -> Value {
    json!({
        "bypass": [{"path_prefix": "/healthz"}, {"path_prefix": "/public/", "method": "GET"}],
        "bypass_cors_preflight": true,
        "basic": {
            "users": [{"name": "alice", "password_hash": format!("sha256:{}", sha256_hex(PASSWORD))}],
            // {SHA} of "open-sesame".
            "htpasswd": "carol:{SHA}piGucRdTwGb7+i3S1svNik60+fw=\n"
        },
        "api_keys": {
            "headers": ["x-api-key", "x-cdata-authtoken"],
            "query_param": "api_key",
            "cookies": ["api_key"],
            "clients": [
                {"id": "reporting", "key_hash": format!("sha256:{}", sha256_hex(PASSWORD))},
                {"id": "retired", "key_hash": format!("sha256:{}", sha256_hex(DISABLED_KEY)), "disabled": true}
            ]
        },
        "jwt": {"providers": [
            {
                "name": "corp",
                "issuer": ISSUER,
                "local_jwks": jwks.clone(),
                "claim_to_headers": [{"claim": "realm.roles", "header": "x-roles"}, {"claim": "team", "header": "x-team"}]
            },
            {
                "name": "strict",
                "issuer": STRICT_ISSUER,
                "audiences": ["api", "other"],
                "require_expiration": true,
                "max_lifetime_seconds": 3600,
                "principal_claim": "email",
                "local_jwks": {"keys": [jwks["keys"][0].clone()]}
            },
            {
                "name": "remote",
                "issuer": REMOTE_ISSUER,
                "remote_jwks": {"cluster": "jwks", "authority": "jwks.local", "path": "/jwks.json"}
            },
            {
                // Its tokens are read in its own places only (and nowhere else).
                "name": "iap",
                "issuer": IAP_ISSUER,
                "local_jwks": jwks.clone(),
                "from_headers": [{"name": "x-goog-iap-jwt-assertion"}, {"name": "x-token", "value_prefix": "Token "}],
                "from_params": ["access_token"],
                "from_cookies": ["session"]
            }
        ]}
    })
}

/// The configuration with the real keys.
pub fn config() -> &'static Config {
    // The configuration holds `Rc`s (one VM's state): one per fuzzing thread, leaked.
    thread_local!(static CONFIG: &'static Config = Box::leak(Box::new({
        let jwks = provider_jwks(
            public_jwk("rsa2048"),
            public_jwk("ec_p256"),
            public_jwk("ed25519"),
            HMAC_SECRET,
            HMAC_SECRET_NO_KID,
        );
        Config::from_json(config_json(jwks).to_string().as_bytes()).unwrap()
    })));
    CONFIG.with(|config| *config)
}

/// The same configuration (issuers, kids, policies) with other keys of each kind.
pub fn wrong_keys_config() -> &'static Config {
    thread_local!(static CONFIG: &'static Config = Box::leak(Box::new({
        let rfc: Value = serde_json::from_str(RFC_EXAMPLES).unwrap();
        let jwks = provider_jwks(
            rfc["rfc7515_a2_rs256"]["jwk"].clone(),
            rfc["rfc7515_a3_es256"]["jwk"].clone(),
            rfc["rfc8037_a4_eddsa"]["jwk"].clone(),
            b"another-secret-another-secret-another-secret-another-secret-64b!",
            b"another-kidless-secret-01234567!",
        );
        Config::from_json(config_json(jwks).to_string().as_bytes()).unwrap()
    })));
    CONFIG.with(|config| *config)
}

// --- the fake host ---------------------------------------------------------------------

pub use wasm_authn::testing::{FakeHost, FakeShared};

/// The fake host of the native tests (`wasm_authn::testing`): a VM of an Envoy of its
/// own, its clock at `NOW`.
pub fn fake_host() -> FakeHost {
    let host = FakeHost::new(&FakeShared::default());
    host.now_ns.set(NOW * 1_000_000_000);
    host
}

/// Envoy's `verify_signature` as the filter uses it (RS256/384/512, and ES256 with
/// the signature re-encoded as DER), played by ring, BoringSSL's offspring: it
/// reads the SubjectPublicKeyInfo the filter hands over and parses DER strictly.
pub struct RingBackend;

impl SignatureBackend for RingBackend {
    fn verify(&self, alg: Algorithm, spki_der: &[u8], signing_input: &[u8], signature: &[u8]) -> Option<bool> {
        use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
        let rsa = |params: &'static sig::RsaParameters| {
            let key = rsa::RsaPublicKey::from_public_key_der(spki_der).ok()?;
            let components = RsaPublicKeyComponents { n: key.n().to_bytes_be(), e: key.e().to_bytes_be() };
            Some(components.verify(params, signing_input, signature).is_ok())
        };
        match alg {
            Algorithm::RS256 => rsa(&sig::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::RS384 => rsa(&sig::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::RS512 => rsa(&sig::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::ES256 => {
                let key = p256::PublicKey::from_public_key_der(spki_der).ok()?;
                let point = p256::EncodedPoint::from(key);
                let ring_key = UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_ASN1, point.as_bytes());
                Some(ring_key.verify(signing_input, signature).is_ok())
            }
            _ => None,
        }
    }
}

/// The fake host's shared data and clock, with another signature backend.
pub struct WithBackend<'a, B> {
    pub host: &'a FakeHost,
    pub backend: B,
}

impl<B> SharedData for WithBackend<'_, B> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.host.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Cas) -> bool {
        self.host.set(key, value, cas)
    }
}

impl<B> Clock for WithBackend<'_, B> {
    fn now_ns(&self) -> Option<u64> {
        self.host.now_ns()
    }
}

impl<B: SignatureBackend> SignatureBackend for WithBackend<'_, B> {
    fn verify(&self, alg: Algorithm, spki: &[u8], input: &[u8], signature: &[u8]) -> Option<bool> {
        self.backend.verify(alg, spki, input, signature)
    }
}

// --- requests as text ------------------------------------------------------------------

/// A request as the fuzzer writes it: the method on the first line, `:path` on the
/// second, then `name: value` header lines. Names are lowercased and values lose
/// the surrounding spaces and tabs, as Envoy hands them to the filter. `:method`
/// and `:path` are also headers, as in Envoy's map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<Header<'static>>,
}

impl TextRequest {
    pub fn parse(data: &[u8]) -> TextRequest {
        let text = String::from_utf8_lossy(data);
        let mut lines = text.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line));
        let method = lines.next().unwrap_or("").to_string();
        let path = lines.next().unwrap_or("").to_string();
        let mut headers: Vec<Header> =
            vec![(":method".into(), method.clone().into()), (":path".into(), path.clone().into())];
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            if name.is_empty() || name.starts_with(':') {
                continue;
            }
            headers.push((name.to_ascii_lowercase().into(), value.trim_matches([' ', '\t']).to_string().into()));
        }
        TextRequest { method, path, headers }
    }

    /// The request as the upstream gets it after `changes`.
    pub fn after(&self, changes: &UpstreamChanges) -> TextRequest {
        let path = changes.path.clone().unwrap_or_else(|| self.path.clone());
        let mut headers: Vec<Header> = self
            .headers
            .iter()
            .filter(|(name, _)| {
                !changes.remove.iter().any(|removed| removed == name) && !changes.set.iter().any(|(set, _)| set == name)
            })
            .map(
                |(name, value)| {
                    if name == ":path" {
                        (name.clone(), path.clone().into())
                    } else {
                        (name.clone(), value.clone())
                    }
                },
            )
            .collect();
        headers.extend(changes.set.iter().map(|(name, value)| (name.clone().into(), value.clone().into())));
        TextRequest { method: self.method.clone(), path, headers }
    }
}

/// The upstream changes of a decision that lets the request through.
pub fn changes_of(decision: &Decision) -> Option<&UpstreamChanges> {
    match decision {
        Decision::Bypass(changes)
        | Decision::Anonymous(changes)
        | Decision::Failed { changes, .. }
        | Decision::Shadow { changes, .. }
        | Decision::Allow { changes, .. } => Some(changes),
        Decision::Reply(_)
        | Decision::ReadBody(_)
        | Decision::ReadForm
        | Decision::Wait(_)
        | Decision::Introspect { .. } => None,
    }
}

// --- tokens the harness signs -----------------------------------------------------------

struct Signers {
    ec: jsonwebtoken::EncodingKey,
    ed: jsonwebtoken::EncodingKey,
    rsa: jsonwebtoken::EncodingKey,
}

fn signers() -> &'static Signers {
    static SIGNERS: OnceLock<Signers> = OnceLock::new();
    SIGNERS.get_or_init(|| Signers {
        ec: jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap(),
        ed: jsonwebtoken::EncodingKey::from_ed_pem(ED_PRIVATE_PEM.as_bytes()).unwrap(),
        rsa: jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap(),
    })
}

/// How the harness signs a token it builds from fuzzed header and payload text.
#[derive(Debug, Clone, Copy)]
pub struct SignOptions {
    /// Sign RS*/PS* too (a millisecond each: only the differential target does).
    pub rsa: bool,
    /// HMAC with the kid-less key's secret instead of the `hs` key's.
    pub kidless_secret: bool,
}

/// `base64url(header).base64url(payload).signature`, the signature made with the fixed
/// key for the header's `alg` (by jsonwebtoken, i.e. ring). An `alg` it cannot sign
/// gets a signature of junk. Returns the token and whether its signature is real.
pub fn signed_token(header: &[u8], payload: &[u8], options: SignOptions) -> (String, bool) {
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let alg = serde_json::from_slice::<Value>(header)
        .ok()
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_string))
        .and_then(|name| name.parse::<jsonwebtoken::Algorithm>().ok());
    use jsonwebtoken::Algorithm as A;
    let secret_key;
    let key = match alg {
        Some(A::HS256 | A::HS384 | A::HS512) => {
            let secret = if options.kidless_secret { HMAC_SECRET_NO_KID } else { HMAC_SECRET };
            secret_key = jsonwebtoken::EncodingKey::from_secret(secret);
            Some(&secret_key)
        }
        Some(A::ES256) => Some(&signers().ec),
        Some(A::EdDSA) => Some(&signers().ed),
        Some(A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512) if options.rsa => Some(&signers().rsa),
        _ => None,
    };
    let signature = match (key, alg) {
        (Some(key), Some(alg)) => jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).ok(),
        _ => None,
    };
    match signature {
        Some(signature) => (format!("{signing_input}.{signature}"), true),
        None => (format!("{signing_input}.{}", b64(&[0x5a; 64])), false),
    }
}

/// The token with one bit of its signature flipped (`at` picks which); None without a signature.
pub fn flip_signature_bit(token: &str, at: usize) -> Option<String> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).ok()?;
    if bytes.is_empty() {
        return None;
    }
    let len = bytes.len();
    bytes[(at / 8) % len] ^= 1 << (at % 8);
    Some(format!("{signing_input}.{}", b64(&bytes)))
}

/// Split fuzz data at the first NUL (the second part empty when there is none).
pub fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
