//! Compact JWS verification (RFC 7515, 7519): parse, pick the provider by `iss`,
//! pick keys by `kid` and algorithm binding, check the signature, then the claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Verifier;
use rsa::{Pkcs1v15Sign, Pss, RsaPublicKey};
use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::binding::{confirmation, Confirmation};

use super::algorithm::Algorithm;
use super::backend::SignatureBackend;
use super::claims::{check_claims, claim_headers, condition_values, principal, scopes, token_id};
use super::der::ecdsa_jws_to_der;
use super::error::JwtError;
use super::keys::{Key, KeyMaterial, KeySet};
use super::provider::{normalized_pem, FetchedKeys, Provider, ProviderId, ProviderKind};
use crate::token_claims::TokenExtras;

/// What a valid token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The provider that vouched for the token.
    pub provider: ProviderId,
    /// Who the token names (its principal claim).
    pub principal: String,
    /// `claim_to_headers` results, in configuration order; claims that are missing or
    /// unusable as header values are left out.
    pub headers: Vec<(String, String)>,
    /// `exp`, Unix seconds.
    pub expires_at: Option<u64>,
    /// `iat`, Unix seconds.
    pub issued_at: Option<u64>,
    /// `jti`.
    pub jti: Option<String>,
    /// `scope` and `scp`.
    pub scopes: Vec<String>,
    /// `<iss>/<sub>`, when both are strings (Istio's request principal).
    pub request_principal: Option<String>,
    /// The claims rules test and the payload, as the provider hands them on (identity providers only).
    pub extras: TokenExtras,
    /// `cnf`: the certificate or key the token is bound to.
    pub confirmation: Option<Confirmation>,
}

/// Longest token accepted, checked before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// Longest decoded payload accepted (a guard should MAX_TOKEN_BYTES ever grow).
pub const MAX_PAYLOAD_BYTES: usize = 8192;

/// The signature work one token may cause, whatever its `kid` (or lack of one):
/// at most this many keys are tried ...
pub const MAX_SIGNATURE_CHECKS: usize = 4;
/// ... and at most this many of them in pure Rust with a public key (PS*, EdDSA,
/// or RS*/ES256/ES384 without the host's BoringSSL: 0.3-1.5 ms each in the VM).
pub const MAX_PURE_PUBLIC_KEY_CHECKS: u32 = 1;

#[derive(Default)]
struct SignatureBudget {
    pure_public_key_checks: u32,
}

impl SignatureBudget {
    /// Take one pure-Rust public-key check, if any is left.
    fn take_pure(&mut self) -> bool {
        if self.pure_public_key_checks >= MAX_PURE_PUBLIC_KEY_CHECKS {
            return false;
        }
        self.pure_public_key_checks += 1;
        true
    }
}

/// A compact JWS split and decoded; nothing in it is trusted yet.
struct UntrustedJws<'t> {
    header: JoseHeader,
    claims: Map<String, Value>,
    /// `header.payload` as sent: what the signature covers.
    signing_input: &'t str,
    /// The payload as sent (base64url) and decoded.
    payload: &'t str,
    payload_bytes: Vec<u8>,
    signature: Vec<u8>,
}

/// Verify a compact JWS against the providers (each with its keys `fetched`, if any);
/// `bound_here` says which providers read the place the token came from; `now` is
/// unix seconds from the host and `skew` the tolerance in seconds on `exp`, `nbf`
/// and `iat`.
pub fn verify(
    token: &str,
    providers: &[Provider],
    fetched: &FetchedKeys,
    bound_here: &dyn Fn(ProviderId) -> bool,
    backend: &dyn SignatureBackend,
    now: u64,
    skew: u64,
) -> Result<VerifiedToken, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let jws = parse_compact(token)?;
    // We implement no JWS extensions, so any `crit` must be refused (RFC 7515 section 4.1.11).
    if jws.header.crit {
        return Err(JwtError::Malformed);
    }
    let alg = Algorithm::from_name(&jws.header.alg).ok_or(JwtError::UnsupportedAlgorithm)?;
    let kid = jws.header.kid.as_deref();

    // `iss` is read before the signature is checked only to choose whose keys check it.
    let issuer = jws.claims.get("iss").and_then(Value::as_str).ok_or(JwtError::UnknownIssuer)?;
    // A keypair's PEM text is normalized once, not once per provider.
    let pem_issuer = issuer.trim_start().starts_with("-----BEGIN").then(|| normalized_pem(issuer));
    let (index, provider) = providers
        .iter()
        .enumerate()
        .find(|(_, provider)| provider.matches_issuer(issuer, pem_issuer.as_deref()))
        .ok_or(JwtError::UnknownIssuer)?;
    let index = ProviderId(index);
    // Before any key is looked at: another provider's place cannot smuggle its tokens in.
    if !bound_here(index) {
        return Err(JwtError::WrongLocation);
    }
    let remote = fetched.keys(index);
    let remote_pending = fetched.awaited(index);

    let candidates = candidate_keys(provider, index, remote, remote_pending, kid, alg)?;
    let mut budget = SignatureBudget::default();
    let signed = candidates
        .keys
        .iter()
        .take(MAX_SIGNATURE_CHECKS)
        .any(|key| signature_matches(key, alg, jws.signing_input.as_bytes(), &jws.signature, backend, &mut budget));
    if !signed {
        return Err(candidates.failure);
    }

    let times = check_claims(&jws.claims, provider, now, skew)?;
    Ok(VerifiedToken {
        provider: index,
        principal: match provider.kind {
            ProviderKind::Keypair { .. } => provider.name.clone(),
            ProviderKind::IdentityProvider | ProviderKind::TokenEndpoint => {
                principal(&jws.claims, &provider.principal_claim)?
            }
        },
        headers: claim_headers(&jws.claims, provider),
        expires_at: times.expires_at,
        issued_at: times.issued_at,
        jti: token_id(&jws.claims),
        scopes: scopes(&jws.claims),
        request_principal: jws.claims.get("sub").and_then(Value::as_str).map(|sub| format!("{issuer}/{sub}")),
        extras: match provider.kind {
            ProviderKind::IdentityProvider => extras(&jws, provider),
            // A keypair signs its own tokens, the token endpoint's carry no user claims.
            ProviderKind::Keypair { .. } | ProviderKind::TokenEndpoint => TokenExtras::default(),
        },
        confirmation: confirmation(&jws.claims).map_err(|_| JwtError::UnknownConfirmation)?,
    })
}

/// An identity provider's token: the claims rules test, and its payload where the provider hands it on.
fn extras(jws: &UntrustedJws, provider: &Provider) -> TokenExtras {
    let output = &provider.output;
    TokenExtras {
        claims: condition_values(&jws.claims, provider),
        payload_header: output.payload_header.as_ref().map(|header| (header.clone(), jws.payload.to_string())),
        // Valid UTF-8: it parsed as JSON.
        payload_json: output.payload_in_filter_state.then(|| String::from_utf8_lossy(&jws.payload_bytes).into_owned()),
        forward: output.forward,
    }
}

/// Whether a token is shaped as a compact JWS (three parts, the first a JSON object in
/// base64url): what an introspection provider leaves to the JWT providers unless it
/// takes every token.
pub fn looks_like_jws(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let decoded = URL_SAFE_NO_PAD.decode(header).unwrap_or_default();
    decoded.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b'{')
}

fn parse_compact(token: &str) -> Result<UntrustedJws<'_>, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(JwtError::Malformed);
    }
    let payload_bytes = decode_part(payload)?;
    if payload_bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(JwtError::Malformed);
    }
    Ok(UntrustedJws {
        header: jose_header(&decode_part(header)?)?,
        claims: json_object(&payload_bytes)?,
        signing_input: &token[..header.len() + 1 + payload.len()],
        payload,
        payload_bytes,
        signature: decode_part(signature)?,
    })
}

/// The JOSE header members the filter reads, parsed into a struct rather than a
/// map (a third of the time); every other member is ignored, a repeated one is
/// malformed, as is a `kid` that is not a string.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default, deserialize_with = "string_if_present")]
    kid: Option<String>,
    /// Any `crit`, even `null`.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// A struct also deserializes from a JSON array (`["HS256"]`): only an object is a header.
fn jose_header(bytes: &[u8]) -> Result<JoseHeader, JwtError> {
    let opening = bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if opening != Some(&b'{') {
        return Err(JwtError::Malformed);
    }
    serde_json::from_slice(bytes).map_err(|_| JwtError::Malformed)
}

fn string_if_present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// base64url without padding, canonical (no stray trailing bits).
fn decode_part(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed)
}

/// serde_json bounds nesting at 128 levels, so depth is bounded too.
fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, JwtError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(JwtError::Malformed),
    }
}

/// The keys to try, and the error if none of them verifies the signature.
struct Candidates<'k> {
    keys: Vec<&'k Key>,
    failure: JwtError,
}

/// With a `kid`: the keys carrying it; failing that, keys without a `kid` (as Envoy's
/// jwt_authn does, so a kid-less PEM key still verifies tokens that name a kid), and
/// when those fail the key is still unknown. Without a `kid`: every key. Only keys
/// bound to `alg` are ever tried.
fn candidate_keys<'k>(
    provider: &'k Provider,
    index: ProviderId,
    remote: Option<&'k KeySet>,
    remote_pending: bool,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Candidates<'k>, JwtError> {
    let not_found = if remote_pending {
        JwtError::KeysNotLoaded { provider: index }
    } else {
        JwtError::UnknownKey { provider: index }
    };
    let all_keys = || provider.local_keys.keys().iter().chain(remote.map(KeySet::keys).unwrap_or_default());

    let Some(kid) = kid else {
        let keys: Vec<&Key> = all_keys().filter(|key| key.allows(alg)).collect();
        if keys.is_empty() {
            // Keys exist but none may verify `alg` (HS256 against RSA keys, say): refuse the algorithm.
            return Err(if remote_pending || all_keys().next().is_none() {
                not_found
            } else {
                JwtError::UnsupportedAlgorithm
            });
        }
        return Ok(Candidates { keys, failure: JwtError::BadSignature });
    };

    let named: Vec<&Key> = all_keys().filter(|key| key.kid() == Some(kid)).collect();
    if !named.is_empty() {
        let keys: Vec<&Key> = named.into_iter().filter(|key| key.allows(alg)).collect();
        if keys.is_empty() {
            return Err(JwtError::UnsupportedAlgorithm);
        }
        return Ok(Candidates { keys, failure: JwtError::BadSignature });
    }
    if remote_pending {
        return Err(not_found);
    }
    let keys: Vec<&Key> = all_keys().filter(|key| key.kid().is_none() && key.allows(alg)).collect();
    if keys.is_empty() {
        return Err(not_found);
    }
    Ok(Candidates { keys, failure: not_found })
}

/// Check one raw signature with one key, exactly as `verify` checks each candidate
/// key (RS* and ES256 through `backend` first, else in pure Rust), but without a
/// token: no parsing, no `kid` selection, no claims. False when `key` is not bound
/// to `alg`. For known-answer vectors (Wycheproof) and fuzzing, whose messages are
/// not JWS signing inputs; the request path calls `verify`.
pub fn check_signature(
    key: &Key,
    alg: Algorithm,
    signing_input: &[u8],
    signature: &[u8],
    backend: &dyn SignatureBackend,
) -> bool {
    key.allows(alg) && signature_matches(key, alg, signing_input, signature, backend, &mut SignatureBudget::default())
}

/// Whether `key` (already known to allow `alg`) verifies the signature. RS* and
/// ES256 go to the host first; it answers None when it cannot check them. A
/// pure-Rust public-key check happens only while `budget` allows it.
fn signature_matches(
    key: &Key,
    alg: Algorithm,
    signing_input: &[u8],
    signature: &[u8],
    backend: &dyn SignatureBackend,
    budget: &mut SignatureBudget,
) -> bool {
    match key.material() {
        KeyMaterial::Hmac(secret) => hmac_matches(alg, secret, signing_input, signature),
        KeyMaterial::Rsa { key, spki_der } => {
            let host_answer = match alg {
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
                    backend.verify(alg, spki_der, signing_input, signature)
                }
                _ => None,
            };
            host_answer.unwrap_or_else(|| budget.take_pure() && rsa_matches(alg, key, signing_input, signature))
        }
        KeyMaterial::P256 { key, spki_der } => {
            // JWS ES256 signatures are exactly r||s, 32 bytes each (RFC 7518 section 3.4).
            if alg != Algorithm::ES256 || signature.len() != 64 {
                return false;
            }
            let host_answer = ecdsa_jws_to_der(signature)
                .and_then(|der_signature| backend.verify(alg, spki_der, signing_input, &der_signature));
            host_answer.unwrap_or_else(|| {
                budget.take_pure()
                    && p256::ecdsa::Signature::from_slice(signature)
                        .is_ok_and(|sig| key.verify(signing_input, &sig).is_ok())
            })
        }
        KeyMaterial::P384 { spki_der, .. } => {
            // JWS ES384 signatures are exactly r||s, 48 bytes each. Only the host checks them.
            if alg != Algorithm::ES384 || signature.len() != 96 {
                return false;
            }
            ecdsa_jws_to_der(signature)
                .and_then(|der_signature| backend.verify(alg, spki_der, signing_input, &der_signature))
                .unwrap_or(false)
        }
        KeyMaterial::Ed25519(key) => {
            alg == Algorithm::EdDSA
                && budget.take_pure()
                && ed25519_compact::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify(signing_input, &sig).is_ok())
        }
    }
}

fn rsa_matches(alg: Algorithm, key: &RsaPublicKey, signing_input: &[u8], signature: &[u8]) -> bool {
    let result = match alg {
        Algorithm::RS256 => key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(signing_input), signature),
        Algorithm::RS384 => key.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(signing_input), signature),
        Algorithm::RS512 => key.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(signing_input), signature),
        // RFC 7518 section 3.5: MGF1 with the same hash, salt as long as the hash.
        Algorithm::PS256 => key.verify(Pss::new::<Sha256>(), &Sha256::digest(signing_input), signature),
        Algorithm::PS384 => key.verify(Pss::new::<Sha384>(), &Sha384::digest(signing_input), signature),
        Algorithm::PS512 => key.verify(Pss::new::<Sha512>(), &Sha512::digest(signing_input), signature),
        _ => return false,
    };
    result.is_ok()
}

fn hmac_matches(alg: Algorithm, secret: &[u8], signing_input: &[u8], signature: &[u8]) -> bool {
    match alg {
        Algorithm::HS256 => mac_matches::<Hmac<Sha256>>(secret, signing_input, signature),
        Algorithm::HS384 => mac_matches::<Hmac<Sha384>>(secret, signing_input, signature),
        Algorithm::HS512 => mac_matches::<Hmac<Sha512>>(secret, signing_input, signature),
        _ => false,
    }
}

/// `verify_slice` compares in constant time.
fn mac_matches<M: Mac + hmac::digest::KeyInit>(secret: &[u8], signing_input: &[u8], signature: &[u8]) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(signing_input);
    mac.verify_slice(signature).is_ok()
}
