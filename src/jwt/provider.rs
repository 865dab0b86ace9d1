//! A JWT provider (issuer): its configuration as written, and compiled.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::keys::KeySet;
use crate::config::{header_name, ConfigError};
use crate::jwks_remote::{DiscoveryConfig, RemoteJwksConfig};

/// One entry of `jwt.providers`, as written.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub issuer: String,
    /// Empty: any audience is accepted.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// A JWKS object `{"keys": [...]}`.
    pub local_jwks: Option<Value>,
    /// One SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`); it matches tokens with any `kid`.
    pub local_pem: Option<String>,
    pub remote_jwks: Option<RemoteJwksConfig>,
    pub discovery: Option<DiscoveryConfig>,
    #[serde(default = "default_require_expiration")]
    pub require_expiration: bool,
    /// Longest accepted `exp - iat` (or `exp - now` without `iat`).
    pub max_lifetime_seconds: Option<u64>,
    /// Dotted path allowed ("realm.user").
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    #[serde(default)]
    pub claim_to_headers: Vec<ClaimToHeader>,
}

fn default_require_expiration() -> bool {
    true
}

fn default_principal_claim() -> String {
    "sub".to_string()
}

/// Inline keys may hold HMAC secrets: never print them.
impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig").field("name", &self.name).field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// `{"claim": "realm.roles", "header": "x-roles"}`: forward a claim upstream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeader {
    pub claim: String,
    pub header: String,
}

/// Headers that frame or route the request: a claim must never set them.
const RESERVED_HEADERS: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade", "proxy-connection"];

/// A compiled, immutable provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub local_keys: KeySet,
    pub remote_jwks: Option<RemoteJwksConfig>,
    pub discovery: Option<DiscoveryConfig>,
    pub require_expiration: bool,
    pub max_lifetime_seconds: Option<u64>,
    pub principal_claim: String,
    pub claim_to_headers: Vec<ClaimToHeader>,
}

impl Provider {
    /// Validate one provider; `path` is its field path ("jwt.providers[1]") and every
    /// error names the exact field below it.
    pub fn from_config(cfg: ProviderConfig, path: &str) -> Result<Provider, ConfigError> {
        require_non_empty(&cfg.name, &format!("{path}.name"))?;
        require_non_empty(&cfg.issuer, &format!("{path}.issuer"))?;
        for (i, audience) in cfg.audiences.iter().enumerate() {
            require_non_empty(audience, &format!("{path}.audiences[{i}]"))?;
        }
        if cfg.local_jwks.is_none() && cfg.local_pem.is_none() && cfg.remote_jwks.is_none() && cfg.discovery.is_none() {
            return Err(ConfigError::new(path, "needs local_jwks, local_pem, remote_jwks or discovery"));
        }
        if cfg.remote_jwks.is_some() && cfg.discovery.is_some() {
            return Err(ConfigError::new(format!("{path}.discovery"), "cannot be combined with remote_jwks"));
        }
        if cfg.max_lifetime_seconds == Some(0) {
            return Err(ConfigError::new(format!("{path}.max_lifetime_seconds"), "must be greater than 0"));
        }
        require_non_empty(&cfg.principal_claim, &format!("{path}.principal_claim"))?;

        let mut local_keys = KeySet::default();
        if let Some(jwks) = &cfg.local_jwks {
            local_keys.extend(KeySet::from_jwks(jwks, &format!("{path}.local_jwks"))?);
        }
        if let Some(pem) = &cfg.local_pem {
            local_keys.extend(KeySet::from_pem(pem, None, &format!("{path}.local_pem"))?);
        }

        let mut claim_to_headers: Vec<ClaimToHeader> = Vec::with_capacity(cfg.claim_to_headers.len());
        for (i, mapping) in cfg.claim_to_headers.iter().enumerate() {
            let mapping_path = format!("{path}.claim_to_headers[{i}]");
            require_non_empty(&mapping.claim, &format!("{mapping_path}.claim"))?;
            let header_path = format!("{mapping_path}.header");
            let header = header_name(&mapping.header, &header_path)?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(ConfigError::new(header_path, format!("{header:?} cannot be set from a claim")));
            }
            if claim_to_headers.iter().any(|earlier| earlier.header == header) {
                return Err(ConfigError::new(header_path, format!("{header:?} is already mapped")));
            }
            claim_to_headers.push(ClaimToHeader { claim: mapping.claim.clone(), header });
        }

        Ok(Provider {
            name: cfg.name,
            issuer: cfg.issuer,
            audiences: cfg.audiences,
            local_keys,
            remote_jwks: cfg.remote_jwks,
            discovery: cfg.discovery,
            require_expiration: cfg.require_expiration,
            max_lifetime_seconds: cfg.max_lifetime_seconds,
            principal_claim: cfg.principal_claim,
            claim_to_headers,
        })
    }

    /// Whether this provider's keys (also) come from a fetched JWKS.
    pub fn fetches_remote_keys(&self) -> bool {
        self.remote_jwks.is_some() || self.discovery.is_some()
    }
}

fn require_non_empty(value: &str, path: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(path, "must not be empty"));
    }
    Ok(())
}
