//! A document the filter fetches through an Envoy cluster, as configured:
//! `remote_jwks`, `discovery` and `revocation.remote` share these fields.

use super::error::ConfigError;
use super::schema::{default_discovery_path, default_min_refetch_seconds, RawRemote};
use crate::host_api::Target;
use crate::remote::{Discovery, FetchConfig, FetchPolicy};

/// What is fetched: the fields each allows differ a little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Document {
    /// `remote_jwks`: `path` required.
    Jwks,
    /// `discovery`: `path` defaults to the well-known one; `jwks_cluster` allowed.
    Discovery,
    /// `revocation.remote`: `path` required; no `min_refetch_seconds` (nothing triggers a refetch).
    Revocation,
    /// `api_keys.remote`: as `Revocation`, and large (a client population).
    ApiClients,
    /// `basic.remote`: as `ApiClients` (a user population).
    BasicUsers,
}

impl Document {
    fn max_response_bytes(self) -> usize {
        match self {
            Document::ApiClients | Document::BasicUsers => 32 * 1024 * 1024,
            _ => 1024 * 1024,
        }
    }
}

/// Compile one fetched document's settings; `at` is its field path.
pub(super) fn fetch_config(raw: RawRemote, at: &str, document: Document) -> Result<FetchConfig, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    if raw.cluster.is_empty() {
        return Err(ConfigError::new(field("cluster"), "must name an Envoy cluster"));
    }
    if raw.authority.is_empty() || raw.authority.contains(['/', ' ']) {
        return Err(ConfigError::new(field("authority"), "must be a host name (the :authority sent)"));
    }
    let path = match (raw.path, document) {
        (Some(path), _) => path,
        (None, Document::Discovery) => default_discovery_path(),
        (None, _) => return Err(ConfigError::new(at, "missing field `path`")),
    };
    if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ConfigError::new(field("path"), "must start with '/', without spaces or control characters"));
    }
    let jwks_cluster = match raw.jwks_cluster {
        Some(_) if document != Document::Discovery => {
            return Err(ConfigError::new(field("jwks_cluster"), "only discovery fetches a second document"));
        }
        Some(cluster) if cluster.is_empty() => {
            return Err(ConfigError::new(field("jwks_cluster"), "must name an Envoy cluster"));
        }
        other => other,
    };
    if raw.min_refetch_seconds.is_some()
        && matches!(document, Document::Revocation | Document::ApiClients | Document::BasicUsers)
    {
        return Err(ConfigError::new(field("min_refetch_seconds"), "applies to signing keys only"));
    }
    let min_refetch_seconds = raw.min_refetch_seconds.unwrap_or_else(default_min_refetch_seconds);
    if !(1..=86_400).contains(&raw.refresh_seconds) {
        return Err(ConfigError::new(field("refresh_seconds"), "must be between 1 and 86400"));
    }
    if !(100..=60_000).contains(&raw.timeout_ms) {
        return Err(ConfigError::new(field("timeout_ms"), "must be between 100 and 60000"));
    }
    if !(1..=3_600).contains(&min_refetch_seconds) {
        return Err(ConfigError::new(field("min_refetch_seconds"), "must be between 1 and 3600"));
    }
    let most = document.max_response_bytes();
    if !(1024..=most).contains(&raw.max_response_bytes) {
        return Err(ConfigError::new(field("max_response_bytes"), format!("must be between 1024 and {most}")));
    }
    Ok(FetchConfig {
        target: Target { cluster: raw.cluster, authority: raw.authority, path },
        discovery: (document == Document::Discovery).then_some(Discovery { jwks_cluster }),
        policy: FetchPolicy {
            refresh_ms: raw.refresh_seconds * 1000,
            timeout_ms: raw.timeout_ms,
            min_refetch_ms: min_refetch_seconds * 1000,
        },
        max_response_bytes: raw.max_response_bytes,
    })
}
