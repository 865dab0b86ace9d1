//! DPoP (RFC 9449): a token bound to a key (`cnf.jkt`) is used with a proof, signed by
//! that key, for each request: `Authorization: DPoP <token>` and one `DPoP` header.
//! The token endpoint binds the tokens it issues to the key of a token request's proof.
//!
//! The URI a proof names (`htu`) is compared with `<scheme>://<:authority><:path>`
//! without the query: the scheme is `x-forwarded-proto` when present (Envoy at the edge,
//! `use_remote_address: true`, sets it from the connection), else `:scheme`. Both
//! sides are normalized as RFC 3986 6.2.2-6.2.3 say (case of scheme, host and
//! percent-encodings, unreserved characters decoded, dot segments removed, default port
//! dropped), and a host's one trailing dot is dropped (`api.example.` is the DNS name
//! `api.example`). `;` parameters are part of the path (`..;x` is no dot segment).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use crate::binding::Confirmation;
use crate::config::Config;
use crate::digest::sha256;
use crate::jwt::{check_signature, numeric_date, thumbprint, Algorithm, Dpop, Key, ProviderKind};
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
    if text(&header_json, "typ") != Some("dpop+jwt") {
        return Err(Invalid("typ must be dpop+jwt"));
    }
    // The names are five characters each: one contained in the list is in it.
    let alg = text(&header_json, "alg").and_then(Algorithm::from_name);
    let Some(alg) = alg.filter(|alg| settings.algorithms.contains(alg.name())) else {
        return Err(Invalid("algorithm not allowed"));
    };
    let Some(jwk) = header_json.get("jwk").filter(|jwk| jwk.is_object()) else { return Err(Invalid("no jwk")) };
    if PRIVATE_MEMBERS.iter().any(|member| jwk.get(member).is_some()) {
        return Err(Invalid("the jwk has private key members"));
    }
    // RFC 7638: the thumbprint of the members a key of its type requires, as the client wrote them.
    let required: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        _ => &["crv", "kty", "x"], // OKP; another type is no usable key
    };
    let mut members = Map::new();
    for &name in required {
        if let Some(value) = jwk.get(name).and_then(Value::as_str) {
            members.insert(name.to_string(), Value::String(value.to_string()));
        }
    }
    let jkt = thumbprint(&members);
    let Some(key) = Key::from_public_jwk(jwk) else { return Err(Invalid("unusable jwk")) };
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Invalid("not a JWS"))?;
    let signing_input = proof.get(..header.len() + 1 + payload.len()).unwrap_or_default();
    if !check_signature(&key, alg, signing_input.as_bytes(), &signature, host) {
        return Err(Invalid("signature verification failed"));
    }
    if text(&claims, "htm") != Some(request.method) {
        return Err(Invalid("htm does not match the request method"));
    }
    let Some(htu) = text(&claims, "htu").and_then(normalized_uri) else {
        return Err(Invalid("htu missing or not an http(s) URI"));
    };
    if htu.contains(['?', '#']) {
        return Err(Invalid("htu has a query or fragment"));
    }
    let Some(target) = target_uri(request) else { return Err(Invalid("htu does not match the request URI")) };
    if htu != target {
        return Err(Invalid(uri_mismatch(&htu, &target)));
    }
    let Ok(Some(issued_at)) = numeric_date(&claims, "iat") else { return Err(Invalid("iat missing")) };
    if issued_at > now.saturating_add(skew) || issued_at.saturating_add(settings.max_age_seconds + skew) < now {
        return Err(Invalid("iat outside the accepted window"));
    }
    if let Some((token, bound_to)) = access_token {
        match text(&claims, "ath") {
            None => return Err(Invalid("ath missing")),
            Some(ath) if ath != URL_SAFE_NO_PAD.encode(sha256(token.as_bytes())) => {
                return Err(Invalid("ath does not match the access token"))
            }
            Some(_) => {}
        }
        // Both public: a plain comparison.
        if jkt != bound_to {
            return Err(Invalid("the proof's key is not the token's (cnf.jkt)"));
        }
    }
    let Some(jti) = text(&claims, "jti").filter(|jti| !jti.is_empty() && jti.len() <= MAX_JTI_BYTES) else {
        return Err(Invalid("jti missing"));
    };
    // Remembered by every worker for as long as the proof could pass (till iat + max age + skew).
    let until = issued_at.saturating_add(settings.max_age_seconds + skew + 1);
    match replay.insert_once(host, SharedTable::key(format!("dpop:{jkt}\0{jti}")), until, now) {
        Once::First => Ok(jkt),
        Once::Again => Err(Invalid("proof replayed")),
        Once::Full => Err(ProofError::TryLater(Reason::ReplayCacheFull)),
        Once::Unavailable => Err(ProofError::TryLater(Reason::LimitsUnavailable)),
    }
}

/// Which part of two different normalized URIs (`scheme://authority/path`) differs:
/// the first of scheme, authority, path.
fn uri_mismatch(htu: &str, target: &str) -> &'static str {
    fn origin(uri: &str) -> (&str, &str) {
        let (scheme, rest) = uri.split_once("://").unwrap_or_default();
        (scheme, rest.split('/').next().unwrap_or_default())
    }
    let ((scheme, authority), (target_scheme, target_authority)) = (origin(htu), origin(target));
    if scheme != target_scheme {
        "htu does not match the request URI's scheme (x-forwarded-proto, else :scheme)"
    } else if authority != target_authority {
        "htu does not match the request URI's host (:authority)"
    } else {
        "htu does not match the request URI's path"
    }
}

/// A string member.
fn text<'o>(object: &'o Map<String, Value>, name: &str) -> Option<&'o str> {
    object.get(name).and_then(Value::as_str)
}

/// A base64url JSON object.
fn object(part: &str) -> Result<Map<String, Value>, ProofError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| ProofError::Invalid("not a JWS"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(ProofError::Invalid("not a JWS")),
    }
}

/// The URI the client used, without the query (see the module's doc; Envoy strips a fragment).
fn target_uri(request: &RequestFacts) -> Option<String> {
    let scheme = request.header_values("x-forwarded-proto").chain(request.header_values(":scheme")).next();
    let path = request.path.split('?').next().unwrap_or_default();
    normalized(scheme.unwrap_or("http"), request.authority, path)
}

/// An `http(s)` URI as RFC 3986 6.2.2-6.2.3 normalize it (RFC 9449 4.3 asks for it:
/// Envoy's `normalize_path` may have rewritten the path the client signed), with the host's trailing
/// dot dropped; a query or fragment stays (a proof's `htu` must have none). None for
/// what is no such URI (another scheme, userinfo, a bad percent-encoding).
fn normalized_uri(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let end = rest.bytes().position(|b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    normalized(scheme, authority, path)
}

/// `normalized_uri` of a URI's three parts.
fn normalized(scheme: &str, authority: &str, path: &str) -> Option<String> {
    let mut out = scheme.to_ascii_lowercase();
    let default_port = match out.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    // A port is what follows the last `:` when it is digits (an IPv6 literal ends with `]`).
    let (host, port) = match authority.bytes().rposition(|b| b == b':') {
        Some(at) if authority[at + 1..].bytes().all(|b| b.is_ascii_digit()) => (&authority[..at], &authority[at + 1..]),
        _ => (authority, ""),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || authority.contains('@') {
        return None;
    }
    out.push_str("://");
    out.push_str(&host.to_ascii_lowercase());
    if !port.is_empty() && port != default_port {
        out.push(':');
        out.push_str(port);
    }
    // Percent-encodings in upper case, those of unreserved characters decoded (6.2.2.1-2),
    // then dot segments removed (6.2.2.3): `%2E%2E` is `..` as a server reads it.
    let mut decoded = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        decoded.push_str(&rest[..at]);
        let byte = crate::query::escaped_byte(rest.as_bytes(), at)?;
        if crate::path::is_unreserved(byte) {
            decoded.push(char::from(byte));
        } else {
            decoded.push_str(&rest.get(at..at + 3)?.to_ascii_uppercase());
        }
        rest = &rest[at + 3..];
    }
    decoded.push_str(rest);
    // A query or fragment is no path: its `/..` are left alone.
    let end = decoded.find(['?', '#']).unwrap_or(decoded.len());
    push_without_dot_segments(&mut out, &decoded[..end]);
    out.push_str(&decoded[end..]);
    Some(out)
}

/// An absolute path without its `.` and `..` segments (RFC 3986 5.2.4): `/a/./b/../c`
/// is `/a/c`, a `..` above the root stays at the root, a path ending in one ends in `/`.
/// Not `path::normalize`'s: rules read paths as servlet containers do (`;` parameters
/// off, slashes merged), a URI the client signed is compared as RFC 3986 says.
fn push_without_dot_segments(out: &mut String, path: &str) {
    let mut kept: Vec<&str> = Vec::new();
    let mut ends_in_dot = false;
    for segment in path.strip_prefix('/').unwrap_or(path).split('/') {
        ends_in_dot = matches!(segment, "." | "..");
        match segment {
            "." => {}
            ".." => {
                kept.pop();
            }
            _ => kept.push(segment),
        }
    }
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if kept.is_empty() || ends_in_dot {
        out.push('/');
    }
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
    let Some(settings) = endpoint.and_then(|p| p.dpop.as_deref()) else { return Ok(()) };
    if !settings.required && request.header_values(PROOF_HEADER).next().is_none() {
        return Ok(());
    }
    let (replay, skew) = (&config.proof_table, config.clock_skew_seconds);
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
fn refused(realm: &str, settings: Option<&Dpop>, (error, message, reason): Refusal) -> LocalReply {
    let mut challenge = format!("DPoP realm=\"{realm}\", error=\"{error}\", error_description=\"{message}\"");
    if let Some(settings) = settings {
        challenge.push_str(&format!(", algs=\"{}\"", settings.algorithms));
    }
    LocalReply { headers: vec![("www-authenticate", challenge)], ..LocalReply::new(401, error, message, reason) }
}

/// A DPoP refusal: its `error`, its description, its reason.
type Refusal = (&'static str, &'static str, Reason);

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
    let settings = token.provider.and_then(|id| config.jwt_providers.get(id.0)).and_then(|p| p.dpop.as_deref());
    // The request's token (one at most), when it came as `Authorization: DPoP`.
    let bearer =
        credentials.iter().find_map(|c| if let Credential::Bearer { token, .. } = c { Some(token) } else { None });
    let dpop_token = scheme_token(request).filter(|dpop| bearer.is_some_and(|bearer| bearer == dpop));
    let refusal = match (&token.confirmation, dpop_token, settings) {
        (Some(Confirmation::Key(jkt)), Some(access_token), Some(settings)) => {
            let (replay, skew) = (&config.proof_table, config.clock_skew_seconds);
            match check_proof(settings, request, Some((access_token, jkt)), replay, host, now_ms / 1000, skew) {
                Ok(_) => return Ok(()),
                Err(ProofError::Invalid(message)) => ("invalid_dpop_proof", message, Reason::DpopProofInvalid),
                Err(ProofError::TryLater(reason)) => return Err(LocalReply::try_later(reason, 1)),
            }
        }
        (Some(Confirmation::Key(_)), Some(_), None) => {
            ("invalid_token", "DPoP is not configured for this token's provider", Reason::DpopProofInvalid)
        }
        // A certificate's binding, or a key's sent as `Bearer`.
        (confirmation, dpop_token, _) => {
            if let Err(unbound) = crate::binding::check_certificate(confirmation.as_ref(), request.peer) {
                return Err(LocalReply::invalid_token(challenges, unbound.message(), unbound.reason()));
            }
            if dpop_token.is_some() {
                ("invalid_token", "token not bound to a DPoP key", Reason::TokenNotBound)
            } else if settings.is_some_and(|s| s.required) {
                ("invalid_token", "a DPoP-bound token is required", Reason::TokenNotBound)
            } else {
                return Ok(());
            }
        }
    };
    Err(refused(&config.realm, settings, refusal))
}

#[cfg(test)]
mod tests;
