//! Compact JWS verification (RFC 7515, 7519): parse (jwt-compact's `UntrustedToken`),
//! pick the provider by `iss`, pick keys by `kid` and algorithm binding, check the
//! signature (src/jwt/routed.rs), then the claims.

use jwt_compact::{Claims, UntrustedToken};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::algorithm::Algorithm;
use super::backend::SignatureBackend;
use super::claims::{check_claims, claim_headers, parse_times, principal, scopes, token_id};
use super::error::JwtError;
use super::keys::{Key, KeySet};
use super::provider::{Provider, ProviderId};
use super::routed::Checks;

/// What a valid token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The provider that vouched for the token.
    pub provider: ProviderId,
    pub principal: String,
    /// `claim_to_headers` results, in configuration order; claims that are missing or
    /// unusable as header values are left out.
    pub headers: Vec<(String, String)>,
    pub expires_at: Option<u64>,
    pub issued_at: Option<u64>,
    pub jti: Option<String>,
    /// `scope` and `scp`.
    pub scopes: Vec<String>,
}

/// Longest token accepted, checked before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// Longest decoded payload accepted (a guard should MAX_TOKEN_BYTES ever grow).
pub const MAX_PAYLOAD_BYTES: usize = 8192;

/// The signature work one token may cause, whatever its `kid` (or lack of one):
/// at most this many keys are tried, and at most `MAX_PURE_PUBLIC_KEY_CHECKS` of them
/// in pure Rust with a public key.
pub const MAX_SIGNATURE_CHECKS: usize = 4;

/// The header members jwt-compact's `Header` does not read and we must: `crit`.
#[derive(Debug, Clone, Default, Deserialize)]
struct ExtraHeader {
    #[serde(default)]
    crit: Present,
}

/// Whether a member is there at all, whatever its value (`null` included).
#[derive(Debug, Clone, Copy, Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Present, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Present(true))
    }
}

/// A compact JWS split and decoded; nothing in it is trusted yet.
struct UntrustedJws<'t> {
    token: UntrustedToken<'t, ExtraHeader>,
    /// The payload; `exp`, `nbf` and `iat` already checked to be NumericDates.
    claims: Claims<Map<String, Value>>,
    /// `header.payload` as sent: what the signature covers.
    signing_input: &'t str,
}

/// Verify a compact JWS against the providers (each with its fetched keys, if any);
/// `now` is unix seconds from the host and `skew` the tolerance in seconds on
/// `exp`, `nbf` and `iat`.
pub fn verify(
    token: &str,
    providers: &[Provider],
    backend: &dyn SignatureBackend,
    now: u64,
    skew: u64,
) -> Result<VerifiedToken, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let jws = parse_compact(token)?;
    // We implement no JWS extensions, so any `crit` must be refused (RFC 7515 section 4.1.11).
    if jws.token.header().other_fields.crit.0 {
        return Err(JwtError::Malformed);
    }
    let alg = Algorithm::from_name(jws.token.algorithm()).ok_or(JwtError::UnsupportedAlgorithm)?;
    let kid = jws.token.header().key_id.as_deref();

    // `iss` is read before the signature is checked only to choose whose keys check it.
    let claims = &jws.claims.custom;
    let issuer = claims.get("iss").and_then(Value::as_str).ok_or(JwtError::UnknownIssuer)?;
    let (index, provider) =
        providers.iter().enumerate().find(|(_, provider)| provider.issuer == issuer).ok_or(JwtError::UnknownIssuer)?;
    let index = ProviderId(index);
    let remote = provider.remote_keys();

    let candidates = candidate_keys(provider, index, remote, kid, alg)?;
    let checks = Checks::new(backend);
    let signature = jws.token.signature_bytes();
    let signed = candidates
        .keys
        .iter()
        .take(MAX_SIGNATURE_CHECKS)
        .any(|key| checks.key_verifies(key, alg, jws.signing_input.as_bytes(), signature));
    if !signed {
        return Err(candidates.failure);
    }

    let times = check_claims(&jws.claims, provider, now, skew)?;
    Ok(VerifiedToken {
        provider: index,
        principal: principal(claims, &provider.principal_claim)?,
        headers: claim_headers(claims, provider),
        expires_at: times.expires_at,
        issued_at: times.issued_at,
        jti: token_id(claims),
        scopes: scopes(claims),
    })
}

/// jwt-compact splits the token, decodes its parts (base64url without padding, canonical)
/// and parses the header and the claims; what it lets through and we do not is refused
/// here first: an empty part, a payload over MAX_PAYLOAD_BYTES, a claim set that is not an
/// object, a time claim that is not a NumericDate up to 9999-12-31.
fn parse_compact(token: &str) -> Result<UntrustedJws<'_>, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(JwtError::Malformed);
    }
    // Its decoded length: base64url has 3 bytes in 4 characters.
    if payload.len() * 3 / 4 > MAX_PAYLOAD_BYTES {
        return Err(JwtError::Malformed);
    }
    let untrusted = UntrustedToken::<ExtraHeader>::try_from(token).map_err(|_| JwtError::Malformed)?;
    // serde_json bounds nesting at 128 levels, so depth is bounded too.
    let mut claims = untrusted.deserialize_claims_unchecked::<Map<String, Value>>().map_err(|_| JwtError::Malformed)?;
    parse_times(&mut claims)?;
    Ok(UntrustedJws { token: untrusted, claims, signing_input: &token[..header.len() + 1 + payload.len()] })
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
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Candidates<'k>, JwtError> {
    let remote_pending = provider.awaits_remote_keys();
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
