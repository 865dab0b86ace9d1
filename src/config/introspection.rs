//! `jwt.providers[].introspection`: the endpoint that vouches for a provider's
//! opaque tokens (RFC 7662), compiled.

use super::error::ConfigError;
use super::remote::{fetch_config, Document};
use super::schema::{RawIntrospection, RawRemote};
use super::secrets::{self, Env};
use crate::digest::sha256;
use crate::jwt::introspection::{AnswerStore, ClientAuth, Introspection};

/// `identity`: what tells this provider's shared answers from another's (its name and checks).
pub(super) fn compile(
    raw: RawIntrospection,
    at: &str,
    issuer: Option<String>,
    identity: &str,
    env: Env,
) -> Result<Introspection, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    // Where it is, how long a call may take and how large its answer may be: checked as a fetched document's.
    let endpoint = RawRemote {
        cluster: raw.cluster,
        authority: raw.authority,
        path: Some(raw.path),
        jwks_cluster: None,
        refresh_seconds: 1, // nothing is refreshed
        timeout_ms: raw.timeout_ms,
        min_refetch_seconds: None,
        max_response_bytes: raw.max_response_bytes,
    };
    let endpoint = fetch_config(endpoint, at, Document::Revocation)?;
    for (name, value) in
        [("cache_ttl_seconds", raw.cache_ttl_seconds), ("negative_cache_seconds", raw.negative_cache_seconds)]
    {
        if !(1..=86_400).contains(&value) {
            return Err(ConfigError::new(field(name), "must be between 1 and 86400"));
        }
    }
    if !(16..=1_000_000).contains(&raw.max_cached_tokens) {
        return Err(ConfigError::new(field("max_cached_tokens"), "must be between 16 and 1000000"));
    }
    let all_tokens = match raw.tokens.as_str() {
        "opaque" => false,
        "all" => true,
        _ => return Err(ConfigError::new(field("tokens"), "must be \"opaque\" or \"all\"")),
    };
    if raw.token_type_hint.len() > 64 || !raw.token_type_hint.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(field("token_type_hint"), "must be a token type name (printable ASCII)"));
    }
    let secret = secrets::required(raw.client_secret, raw.client_secret_env.as_deref(), at, "client_secret", env)?;
    let client_id = raw.client_id.unwrap_or_default();
    if raw.auth != "bearer" && client_id.is_empty() {
        return Err(ConfigError::new(field("client_id"), "is required with auth \"basic\" or \"post\""));
    }
    if raw.auth == "bearer" && !secret.value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(secret.field, "a bearer credential is printable ASCII without spaces"));
    }
    let auth = ClientAuth::new(&raw.auth, &client_id, &secret.value)
        .ok_or_else(|| ConfigError::new(field("auth"), "must be \"basic\", \"post\" or \"bearer\""))?;
    let target = endpoint.target;
    // Who asks too: an endpoint may answer each resource server differently (RFC 7662 2.2).
    let endpoint_and_caller =
        format!("{}\0{}\0{}\0{}\0{client_id}", target.cluster, target.authority, target.path, raw.auth);
    let digest = sha256(format!("{identity}\0{endpoint_and_caller}").as_bytes());
    let tag: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(Introspection {
        target,
        timeout_ms: endpoint.policy.timeout_ms,
        auth,
        token_type_hint: raw.token_type_hint,
        max_response_bytes: endpoint.max_response_bytes,
        cache_ttl_seconds: raw.cache_ttl_seconds,
        negative_cache_seconds: raw.negative_cache_seconds,
        all_tokens,
        issuer,
        answers: AnswerStore::new(&tag, raw.max_cached_tokens),
    })
}
