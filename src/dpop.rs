//! DPoP (RFC 9449): a token bound to a key (`cnf.jkt`) is used with a proof, signed by
//! that key, for each request: `Authorization: DPoP <token>` and one `DPoP` header.
//! The token endpoint binds the tokens it issues to the key of a token request's proof.
//!
//! The URI a proof names (`htu`) is compared with `<scheme>://<:authority><:path>`
//! without the query: the scheme is `x-forwarded-proto` when present (Envoy at the edge,
//! `use_remote_address: true`, sets it from the connection), else `:scheme`. Both
//! sides are normalized as RFC 3986 6.2.2-6.2.3 say (case of scheme, host and
//! percent-encodings, unreserved characters decoded, default port dropped), and a
//! host's one trailing dot is dropped (`api.example.` is the DNS name `api.example`).
//! `;` parameters are part of the path; dot segments are not removed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use crate::binding::Confirmation;
use crate::config::Config;
use crate::digest::sha256;
use crate::jwt::{check_signature, thumbprint, Algorithm, Dpop, Key, ProviderKind};
use crate::pipeline::authenticate::VerifyHost;
use crate::pipeline::credential::{Credential, CredentialError};
use crate::principal::Principal;
use crate::reason::Reason;
use crate::reply::{Challenges, LocalReply};
use crate::request::RequestFacts;
use crate::shared_table::{Once, SharedTable};
use crate::token_endpoint::grant::Presented;
use crate::token_location::{after_prefix, AUTHORIZATION};

/// Longest proof read.
const MAX_PROOF_BYTES: usize = 8192;
/// Longest `jti` read.
const MAX_JTI_BYTES: usize = 256;
/// Members of a private or secret JWK (RFC 7518 6.2.2, 6.3.2, 6.4.1).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const PROOF_HEADER: &str = "dpop";

/// Why a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// `invalid_dpop_proof`, with its description.
    Invalid(&'static str),
    /// Its `jti` could not be recorded (the replay table is full or unreadable): 503.
    TryLater(Reason),
}

/// The token of `Authorization: DPoP <token>` (the header given once).
pub fn scheme_token<'r>(request: &'r RequestFacts) -> Option<&'r str> {
    let value = request.single_header(AUTHORIZATION).ok()??;
    after_prefix(value, "dpop ").filter(|token| !token.is_empty())
}

/// The token of `Authorization: DPoP`, read as the token of `Authorization: Bearer`
/// (the first token place, RFC 9449 7.1) when the request brings no other token.
pub fn with_scheme_token(
    request: &RequestFacts,
    extracted: Result<Option<Credential>, CredentialError>,
) -> Result<Option<Credential>, CredentialError> {
    match (extracted, scheme_token(request)) {
        (Ok(None), Some(token)) => Ok(Some(Credential::Bearer { token: token.to_string(), found: vec![0] })),
        (extracted, _) => extracted,
    }
}

/// Check the request's one `DPoP` proof (RFC 9449 4.3): for `access_token` (its `ath`)
/// bound to the key `jkt`, or for a token request (neither). The RFC 7638 thumbprint of
/// its key when it passes; its `jti` is then spent.
#[allow(clippy::too_many_arguments)] // the request, what it is checked against, and the host
pub fn check_proof(
    settings: &Dpop,
    request: &RequestFacts,
    access_token: Option<(&str, &str)>,
    replay: &SharedTable,
    host: &dyn VerifyHost,
    now: u64,
    skew: u64,
) -> Result<String, ProofError> {
    use ProofError::Invalid;
    let Ok(Some(proof)) = request.single_header(PROOF_HEADER) else {
        return Err(Invalid("exactly one DPoP proof header is required"));
    };
    if proof.len() > MAX_PROOF_BYTES {
        return Err(Invalid("proof too large"));
    }
    let mut parts = proof.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid("not a JWS"));
    };
    let (header_json, claims) = (object(header)?, object(payload)?);
    let text = |object: &Map<String, Value>, name: &str| object.get(name).and_then(Value::as_str).map(str::to_owned);
    if text(&header_json, "typ").as_deref() != Some("dpop+jwt") {
        return Err(Invalid("typ must be dpop+jwt"));
    }
    let alg = text(&header_json, "alg").as_deref().and_then(Algorithm::from_name);
    let Some(alg) = alg.filter(|alg| settings.algorithms.contains(alg)) else {
        return Err(Invalid("algorithm not allowed"));
    };
    let Some(jwk) = header_json.get("jwk").filter(|jwk| jwk.is_object()) else { return Err(Invalid("no jwk")) };
    if PRIVATE_MEMBERS.iter().any(|member| jwk.get(member).is_some()) {
        return Err(Invalid("the jwk has private key members"));
    }
    let Some(key) = Key::from_public_jwk(jwk) else { return Err(Invalid("unusable jwk")) };
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Invalid("not a JWS"))?;
    let signing_input = proof.get(..header.len() + 1 + payload.len()).unwrap_or_default();
    if !check_signature(&key, alg, signing_input.as_bytes(), &signature, host) {
        return Err(Invalid("signature verification failed"));
    }
    if text(&claims, "htm").as_deref() != Some(request.method) {
        return Err(Invalid("htm does not match the request method"));
    }
    if text(&claims, "htu").as_deref().and_then(normalized_uri) != normalized_uri(&target_uri(request)) {
        return Err(Invalid("htu does not match the request URI"));
    }
    let Some(issued_at) = claims.get("iat").and_then(Value::as_u64) else { return Err(Invalid("iat missing")) };
    if issued_at > now.saturating_add(skew) || issued_at.saturating_add(settings.max_age_seconds + skew) < now {
        return Err(Invalid("iat outside the accepted window"));
    }
    let jkt = key.public_jwk().map(|members| thumbprint(&members)).unwrap_or_default();
    if let Some((token, bound_to)) = access_token {
        if text(&claims, "ath") != Some(URL_SAFE_NO_PAD.encode(sha256(token.as_bytes()))) {
            return Err(Invalid("ath does not match the access token"));
        }
        // Both public: a plain comparison.
        if jkt != bound_to {
            return Err(Invalid("the proof's key is not the token's (cnf.jkt)"));
        }
    }
    let Some(jti) = text(&claims, "jti").filter(|jti| !jti.is_empty() && jti.len() <= MAX_JTI_BYTES) else {
        return Err(Invalid("jti missing"));
    };
    // Remembered by every worker for as long as the proof could pass.
    let until = issued_at.saturating_add(settings.max_age_seconds + 2 * skew + 1);
    match replay.insert_once(host, SharedTable::key(format!("dpop:{jkt}\0{jti}")), until, now) {
        Once::First => Ok(jkt),
        Once::Again => Err(Invalid("proof replayed")),
        Once::Full => Err(ProofError::TryLater(Reason::ReplayCacheFull)),
        Once::Unavailable => Err(ProofError::TryLater(Reason::LimitsUnavailable)),
    }
}

/// A base64url JSON object.
fn object(part: &str) -> Result<Map<String, Value>, ProofError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| ProofError::Invalid("not a JWS"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(ProofError::Invalid("not a JWS")),
    }
}

/// The URI the client used, without query and fragment (see the module's doc).
fn target_uri(request: &RequestFacts) -> String {
    let scheme = request.header_values("x-forwarded-proto").chain(request.header_values(":scheme")).next();
    let path = request.path.split(['?', '#']).next().unwrap_or_default();
    format!("{}://{}{path}", scheme.unwrap_or("http"), request.authority)
}

/// An `http(s)` URI as RFC 3986 6.2.2-6.2.3 normalize it, with the host's trailing
/// dot dropped; a query or fragment stays (a proof's `htu` must have none). None for
/// what is no such URI (another scheme, userinfo, a bad percent-encoding).
fn normalized_uri(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    // A port follows the last `:` outside an IPv6 literal's brackets.
    let (host, port) = match authority.rfind(':') {
        Some(at) if !authority[at..].contains(']') => (&authority[..at], &authority[at + 1..]),
        _ => (authority, ""),
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host.is_empty() || authority.contains('@') || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = if port.is_empty() || port == default_port { String::new() } else { format!(":{port}") };
    let path =
        if path.starts_with('/') { percent_normalized(path)? } else { format!("/{}", percent_normalized(path)?) };
    Some(format!("{scheme}://{host}{port}{path}"))
}

/// Percent-encodings in upper case, those of unreserved characters decoded (RFC 3986 6.2.2.1-2).
fn percent_normalized(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let hex = rest.get(at + 1..at + 3)?;
        let byte = u8::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit()))?;
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push_str(&hex.to_ascii_uppercase());
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A token request (RFC 9449 5): with a valid proof, its token is bound to the proof's
/// key (over the connection's certificate); with `dpop: "required"`, a proof is needed.
/// An endpoint without `dpop` reads no proof: its tokens are Bearer tokens.
pub(crate) fn bind_token_request(
    config: &Config,
    request: &RequestFacts,
    presented: &mut Presented,
    host: &dyn VerifyHost,
    now_ms: u64,
) -> Result<(), LocalReply> {
    let endpoint = config.jwt_providers.iter().find(|p| p.kind == ProviderKind::TokenEndpoint);
    let Some(settings) = endpoint.and_then(|p| p.dpop.as_ref()) else { return Ok(()) };
    if !settings.required && request.header_values(PROOF_HEADER).next().is_none() {
        return Ok(());
    }
    let (replay, skew) = (&config.replay_table, config.clock_skew_seconds);
    match check_proof(settings, request, None, replay, host, now_ms / 1000, skew) {
        Ok(jkt) => {
            presented.bind_to = Some(Confirmation::Key(jkt));
            Ok(())
        }
        Err(ProofError::Invalid(message)) => {
            Err(crate::token_endpoint::oauth_error(400, "invalid_dpop_proof", message, Reason::DpopProofInvalid))
        }
        Err(ProofError::TryLater(reason)) => Err(LocalReply::try_later(reason, 1)),
    }
}

/// The 401 of RFC 9449 7.1: `WWW-Authenticate: DPoP error="..."` with the algorithms taken.
fn refused(realm: &str, settings: Option<&Dpop>, error: &'static str, message: &str, reason: Reason) -> LocalReply {
    let algs: Vec<&str> = settings.map_or(Vec::new(), |s| s.algorithms.iter().map(|alg| alg.name()).collect());
    let challenge = format!(
        "DPoP realm=\"{realm}\", error=\"{error}\", error_description=\"{message}\", algs=\"{}\"",
        algs.join(" ")
    );
    LocalReply { headers: vec![("www-authenticate", challenge)], ..LocalReply::new(401, error, message, reason) }
}

/// Proof of possession for one principal, on every request (a remembered token too):
/// a token bound to a certificate on a connection with it (RFC 8705 3); a token bound
/// to a key only as `Authorization: DPoP` with a valid proof of that key (RFC 9449 7),
/// whether or not its provider configures `dpop`; `Authorization: DPoP` only with a
/// token bound to a key; a provider's `dpop: "required"` refuses its unbound tokens.
pub fn possession(
    config: &Config,
    principal: &Principal,
    request: &RequestFacts,
    credentials: &[Credential],
    challenges: Challenges,
    host: &dyn VerifyHost,
    now_ms: u64,
) -> Result<(), LocalReply> {
    let Some(token) = &principal.token else { return Ok(()) };
    let settings = token.provider.and_then(|id| config.jwt_providers.get(id.0)).and_then(|p| p.dpop.as_ref());
    let refuse = |error, message, reason| refused(&config.realm, settings, error, message, reason);
    // The request's token (one at most), when it came as `Authorization: DPoP`.
    let bearer =
        credentials.iter().find_map(|c| if let Credential::Bearer { token, .. } = c { Some(token) } else { None });
    let dpop_token = scheme_token(request).filter(|dpop| bearer.is_some_and(|bearer| bearer == dpop));
    match (&token.confirmation, dpop_token) {
        (Some(Confirmation::Certificate(_)), _) | (None, None) => {
            if let Err(unbound) = crate::binding::check_certificate(token.confirmation.as_ref(), request.peer) {
                return Err(LocalReply::invalid_token(challenges, unbound.message(), unbound.reason()));
            }
            match (settings.is_some_and(|s| s.required), dpop_token) {
                (true, _) => Err(refuse("invalid_token", "a DPoP-bound token is required", Reason::TokenNotBound)),
                (false, Some(_)) => {
                    Err(refuse("invalid_token", "token not bound to a DPoP key", Reason::TokenNotBound))
                }
                (false, None) => Ok(()),
            }
        }
        (None, Some(_)) => Err(refuse("invalid_token", "token not bound to a DPoP key", Reason::TokenNotBound)),
        (Some(Confirmation::Key(_)), None) => {
            let unbound = crate::binding::Unbound::NeedsProof;
            Err(LocalReply::invalid_token(challenges, unbound.message(), unbound.reason()))
        }
        (Some(Confirmation::Key(jkt)), Some(access_token)) => {
            let Some(settings) = settings else {
                let message = "DPoP is not configured for this token's provider";
                return Err(refuse("invalid_token", message, Reason::DpopProofInvalid));
            };
            let (replay, skew) = (&config.replay_table, config.clock_skew_seconds);
            match check_proof(settings, request, Some((access_token, jkt)), replay, host, now_ms / 1000, skew) {
                Ok(_) => Ok(()),
                Err(ProofError::Invalid(message)) => {
                    Err(refuse("invalid_dpop_proof", message, Reason::DpopProofInvalid))
                }
                Err(ProofError::TryLater(reason)) => Err(LocalReply::try_later(reason, 1)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
