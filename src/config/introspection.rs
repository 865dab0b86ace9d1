//! `jwt.providers[].introspection`: the endpoint that vouches for a provider's
//! opaque tokens (RFC 7662), compiled.

use super::error::ConfigError;
use super::schema::RawIntrospection;
use super::secrets::{self, Env};
use crate::digest::sha256;
use crate::host_api::Target;
use crate::introspection::{AnswerStore, ClientAuth, Introspection};

/// `identity`: what tells this provider's shared answers from another's (its name and checks).
pub fn compile(
    raw: RawIntrospection,
    at: &str,
    issuer: Option<String>,
    identity: &str,
    env: Env,
) -> Result<Introspection, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    if raw.cluster.is_empty() {
        return Err(ConfigError::new(field("cluster"), "must name an Envoy cluster"));
    }
    if raw.authority.is_empty() || raw.authority.contains(['/', ' ']) {
        return Err(ConfigError::new(field("authority"), "must be a host name (the :authority sent)"));
    }
    if !raw.path.starts_with('/') || raw.path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ConfigError::new(field("path"), "must start with '/', without spaces or control characters"));
    }
    if !(100..=60_000).contains(&raw.timeout_ms) {
        return Err(ConfigError::new(field("timeout_ms"), "must be between 100 and 60000"));
    }
    if !(1024..=1024 * 1024).contains(&raw.max_response_bytes) {
        return Err(ConfigError::new(field("max_response_bytes"), "must be between 1024 and 1048576"));
    }
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
    let digest = sha256(format!("{identity}\0{}\0{}\0{}", raw.cluster, raw.authority, raw.path).as_bytes());
    let tag: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(Introspection {
        target: Target { cluster: raw.cluster, authority: raw.authority, path: raw.path },
        timeout_ms: raw.timeout_ms,
        auth,
        token_type_hint: raw.token_type_hint,
        max_response_bytes: raw.max_response_bytes,
        cache_ttl_seconds: raw.cache_ttl_seconds,
        negative_cache_seconds: raw.negative_cache_seconds,
        all_tokens,
        issuer,
        answers: AnswerStore::new(&tag, raw.max_cached_tokens),
    })
}
