//! The plugin configuration: JSON schema (serde) and its validation into a
//! compiled, immutable [`Config`]. Everything that can be checked once is
//! checked here, and every error names its field path.

mod error;

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::Value;

pub use error::ConfigError;

use crate::jwt::{Provider, ProviderConfig};
use crate::password::{PasswordHash, Sha256Digest};

/// The largest plugin configuration accepted (an inline JWKS or htpasswd can be large, not this large).
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// The compiled configuration.
#[derive(Debug)]
pub struct Config {
    pub realm: String,
    pub clock_skew_seconds: u64,
    pub principal_headers: PrincipalHeaders,
    pub forward_credentials: bool,
    pub bypass: Vec<BypassRule>,
    /// CORS preflights (OPTIONS with `Origin` and `Access-Control-Request-Method`) skip authentication.
    pub bypass_cors_preflight: bool,
    pub basic_users: HashMap<String, PasswordHash>,
    pub api_keys: ApiKeys,
    pub jwt_providers: Vec<Provider>,
    /// How long a request may wait for a provider's remote keys before it gets 503.
    pub jwks_wait_ms: u64,
    pub cache: CacheSettings,
    /// Check RS256/ES256 signatures with Envoy's BoringSSL when the host offers it.
    pub envoy_crypto: bool,
    /// Every header name the filter sets upstream: removed from every incoming request.
    pub owned_headers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalHeaders {
    pub principal: String,
    pub method: String,
    pub provider: String,
}

/// A bypass rule matches when every condition it sets matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BypassRule {
    pub path_prefix: Option<String>,
    pub method: Option<String>,
}

#[derive(Debug, Default)]
pub struct ApiKeys {
    /// Lowercase header names carrying an API key.
    pub headers: Vec<String>,
    pub query_param: Option<String>,
    pub allow_basic: bool,
    pub clients: Vec<ApiClient>,
}

#[derive(Debug)]
pub struct ApiClient {
    pub id: String,
    pub key_digest: Sha256Digest,
    pub disabled: bool,
}

/// The verified-credential cache (one per VM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub max_entries: usize,
    pub ttl_seconds: u64,
}

impl Config {
    pub fn basic_enabled(&self) -> bool {
        !self.basic_users.is_empty() || (self.api_keys.allow_basic && !self.api_keys.clients.is_empty())
    }

    /// The API key header a challenge names, when API keys are accepted in headers.
    pub fn api_key_header_enabled(&self) -> Option<&str> {
        if self.api_keys.clients.is_empty() {
            return None;
        }
        self.api_keys.headers.first().map(String::as_str)
    }

    pub fn bearer_enabled(&self) -> bool {
        !self.jwt_providers.is_empty()
    }

    /// Parse and validate the plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::new("", format!("configuration larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::new("", format!("not valid JSON: {e}")))?;
        let raw: RawConfig = deserialize_at(value, "")?;
        compile(raw)
    }
}

/// Deserialize `value` into `T`, turning serde's message into one that names the field path.
fn deserialize_at<T: serde::de::DeserializeOwned>(value: Value, path: &str) -> Result<T, ConfigError> {
    serde_json::from_value(value).map_err(|e| {
        // serde names unknown and missing fields in its message ("unknown field `x`, expected ...").
        ConfigError::new(if path.is_empty() { "(root)" } else { path }, redact_values(&e.to_string()))
    })
}

/// serde quotes the value it could not use (`invalid type: string "hunter2", expected u64`);
/// a misplaced secret must not reach the log, so every quoted value is dropped.
fn redact_values(message: &str) -> String {
    let mut redacted = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find('"') {
        redacted.push_str(&rest[..start]);
        match rest[start + 1..].find('"') {
            Some(len) => {
                redacted.push_str("(value hidden)");
                rest = &rest[start + len + 2..];
            }
            None => {
                rest = "";
            }
        }
    }
    redacted.push_str(rest);
    redacted
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default = "default_clock_skew")]
    clock_skew_seconds: u64,
    #[serde(default)]
    principal_headers: RawPrincipalHeaders,
    #[serde(default)]
    forward_credentials: bool,
    #[serde(default)]
    bypass: Vec<Value>,
    #[serde(default)]
    bypass_cors_preflight: bool,
    #[serde(default)]
    basic: Option<Value>,
    #[serde(default)]
    api_keys: Option<Value>,
    #[serde(default)]
    jwt: Option<Value>,
    #[serde(default)]
    cache: Option<Value>,
    #[serde(default = "default_true")]
    envoy_crypto: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipalHeaders {
    #[serde(default = "default_principal_header")]
    principal: String,
    #[serde(default = "default_method_header")]
    method: String,
    #[serde(default = "default_provider_header")]
    provider: String,
}

impl Default for RawPrincipalHeaders {
    fn default() -> Self {
        RawPrincipalHeaders {
            principal: default_principal_header(),
            method: default_method_header(),
            provider: default_provider_header(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBypassRule {
    path_prefix: Option<String>,
    method: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    #[serde(default)]
    users: Vec<Value>,
    htpasswd: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKeys {
    #[serde(default = "default_api_key_headers")]
    headers: Vec<String>,
    query_param: Option<String>,
    #[serde(default = "default_true")]
    allow_basic: bool,
    #[serde(default)]
    clients: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiClient {
    id: String,
    key_hash: String,
    #[serde(default)]
    disabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    #[serde(default)]
    providers: Vec<Value>,
    #[serde(default = "default_jwks_wait_ms")]
    jwks_wait_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default = "default_cache_entries")]
    max_entries: usize,
    #[serde(default = "default_cache_ttl")]
    ttl_seconds: u64,
}

fn default_realm() -> String {
    "api".into()
}
fn default_clock_skew() -> u64 {
    60
}
fn default_principal_header() -> String {
    "x-auth-principal".into()
}
fn default_method_header() -> String {
    "x-auth-method".into()
}
fn default_provider_header() -> String {
    "x-auth-provider".into()
}
fn default_api_key_headers() -> Vec<String> {
    vec!["x-api-key".into()]
}
fn default_true() -> bool {
    true
}
fn default_jwks_wait_ms() -> u64 {
    2000
}
fn default_cache_entries() -> usize {
    4096
}
fn default_cache_ttl() -> u64 {
    300
}

/// Clock skew beyond this is a misconfiguration, not tolerance.
const MAX_CLOCK_SKEW_SECONDS: u64 = 600;
const MAX_JWKS_WAIT_MS: u64 = 30_000;
const MAX_CACHE_ENTRIES: usize = 1_000_000;

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    if raw.realm.is_empty() || raw.realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(ConfigError::new("realm", "must be non-empty, without quotes, backslashes or control characters"));
    }
    if raw.clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
        return Err(ConfigError::new("clock_skew_seconds", format!("must be at most {MAX_CLOCK_SKEW_SECONDS}")));
    }
    let principal_headers = PrincipalHeaders {
        principal: header_name(&raw.principal_headers.principal, "principal_headers.principal")?,
        method: header_name(&raw.principal_headers.method, "principal_headers.method")?,
        provider: header_name(&raw.principal_headers.provider, "principal_headers.provider")?,
    };

    let mut bypass = Vec::with_capacity(raw.bypass.len());
    for (i, rule) in raw.bypass.into_iter().enumerate() {
        let path = format!("bypass[{i}]");
        let rule: RawBypassRule = deserialize_at(rule, &path)?;
        if rule.path_prefix.is_none() && rule.method.is_none() {
            return Err(ConfigError::new(path, "needs path_prefix or method"));
        }
        let path_prefix = match &rule.path_prefix {
            Some(prefix) => Some(
                crate::path::configured(prefix)
                    .map_err(|message| ConfigError::new(format!("{path}.path_prefix"), message))?,
            ),
            None => None,
        };
        let method = match rule.method {
            Some(m) if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                return Err(ConfigError::new(format!("{path}.method"), "must be an HTTP method name"));
            }
            m => m.map(|m| m.to_ascii_uppercase()),
        };
        bypass.push(BypassRule { path_prefix, method });
    }

    let basic_users = match raw.basic {
        Some(v) => compile_basic(deserialize_at(v, "basic")?)?,
        None => HashMap::new(),
    };
    let api_keys = match raw.api_keys {
        Some(v) => compile_api_keys(deserialize_at(v, "api_keys")?)?,
        None => ApiKeys { headers: default_api_key_headers(), allow_basic: true, ..ApiKeys::default() },
    };

    let (jwt_providers, jwks_wait_ms) = match raw.jwt {
        Some(v) => compile_jwt(deserialize_at(v, "jwt")?)?,
        None => (Vec::new(), default_jwks_wait_ms()),
    };

    let cache = match raw.cache {
        Some(v) => {
            let c: RawCache = deserialize_at(v, "cache")?;
            if c.max_entries > MAX_CACHE_ENTRIES {
                return Err(ConfigError::new("cache.max_entries", format!("must be at most {MAX_CACHE_ENTRIES}")));
            }
            CacheSettings { max_entries: c.max_entries, ttl_seconds: c.ttl_seconds }
        }
        None => CacheSettings { max_entries: default_cache_entries(), ttl_seconds: default_cache_ttl() },
    };

    if basic_users.is_empty() && api_keys.clients.is_empty() && jwt_providers.is_empty() {
        return Err(ConfigError::new(
            "",
            "no credentials configured: set basic.users, basic.htpasswd, api_keys.clients or jwt.providers",
        ));
    }

    let principal_names = [&principal_headers.principal, &principal_headers.method, &principal_headers.provider];
    if principal_names[0] == principal_names[1] || principal_names[0] == principal_names[2] {
        return Err(ConfigError::new(
            "principal_headers.principal",
            "must differ from the method and provider headers",
        ));
    }
    if principal_names[1] == principal_names[2] {
        return Err(ConfigError::new("principal_headers.method", "must differ from the provider header"));
    }
    let mut owned_headers: Vec<String> = principal_names.iter().map(|name| name.to_string()).collect();
    for (i, provider) in jwt_providers.iter().enumerate() {
        for (j, mapping) in provider.claim_to_headers.iter().enumerate() {
            if principal_names.contains(&&mapping.header) {
                return Err(ConfigError::new(
                    format!("jwt.providers[{i}].claim_to_headers[{j}].header"),
                    "is one of principal_headers: a claim must not set the principal",
                ));
            }
            owned_headers.push(mapping.header.clone());
        }
    }
    owned_headers.sort();
    owned_headers.dedup();
    for owned in &owned_headers {
        if owned == "authorization" || api_keys.headers.contains(owned) {
            return Err(ConfigError::new("principal_headers", format!("header {owned:?} is also a credential header")));
        }
    }

    Ok(Config {
        realm: raw.realm,
        clock_skew_seconds: raw.clock_skew_seconds,
        principal_headers,
        forward_credentials: raw.forward_credentials,
        bypass,
        bypass_cors_preflight: raw.bypass_cors_preflight,
        basic_users,
        api_keys,
        jwt_providers,
        jwks_wait_ms,
        cache,
        envoy_crypto: raw.envoy_crypto,
        owned_headers,
    })
}

fn compile_basic(raw: RawBasic) -> Result<HashMap<String, PasswordHash>, ConfigError> {
    let mut users = HashMap::new();
    for (i, user) in raw.users.into_iter().enumerate() {
        let path = format!("basic.users[{i}]");
        let user: RawUser = deserialize_at(user, &path)?;
        check_user_name(&user.name, &format!("{path}.name"))?;
        let hash = PasswordHash::parse(&user.password_hash)
            .map_err(|e| ConfigError::new(format!("{path}.password_hash"), e))?;
        if users.insert(user.name, hash).is_some() {
            return Err(ConfigError::new(format!("{path}.name"), "duplicate user name"));
        }
    }
    if let Some(text) = raw.htpasswd {
        for (n, line) in text.lines().enumerate() {
            let path = format!("basic.htpasswd line {}", n + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) = line.split_once(':').ok_or_else(|| ConfigError::new(&path, "expected name:hash"))?;
            check_user_name(name, &path)?;
            let hash = PasswordHash::parse(hash).map_err(|e| ConfigError::new(&path, e))?;
            if users.insert(name.to_string(), hash).is_some() {
                return Err(ConfigError::new(path, "duplicate user name"));
            }
        }
    }
    Ok(users)
}

fn check_user_name(name: &str, path: &str) -> Result<(), ConfigError> {
    // RFC 7617: the user-id cannot contain a colon. Surrounding spaces would make two
    // spellings of one principal upstream.
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) || name.trim() != name {
        return Err(ConfigError::new(path, "must be non-empty, without ':', control characters or surrounding spaces"));
    }
    Ok(())
}

fn compile_api_keys(raw: RawApiKeys) -> Result<ApiKeys, ConfigError> {
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (i, h) in raw.headers.iter().enumerate() {
        let name = header_name(h, &format!("api_keys.headers[{i}]"))?;
        if name == "authorization" {
            return Err(ConfigError::new(format!("api_keys.headers[{i}]"), "authorization is read as Basic/Bearer"));
        }
        headers.push(name);
    }
    if let Some(q) = &raw.query_param {
        if q.is_empty() || !q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(ConfigError::new("api_keys.query_param", "must be a non-empty name of [A-Za-z0-9-_.]"));
        }
    }
    let mut clients = Vec::with_capacity(raw.clients.len());
    let mut ids = HashSet::new();
    for (i, client) in raw.clients.into_iter().enumerate() {
        let path = format!("api_keys.clients[{i}]");
        let client: RawApiClient = deserialize_at(client, &path)?;
        check_user_name(&client.id, &format!("{path}.id"))?;
        if !ids.insert(client.id.clone()) {
            return Err(ConfigError::new(format!("{path}.id"), "duplicate client id"));
        }
        let key_digest = match PasswordHash::parse(&client.key_hash) {
            Ok(PasswordHash::Sha256(digest)) => digest,
            Ok(_) => return Err(ConfigError::new(format!("{path}.key_hash"), "API keys are hashed as sha256:<hex>")),
            Err(e) => return Err(ConfigError::new(format!("{path}.key_hash"), e)),
        };
        clients.push(ApiClient { id: client.id, key_digest, disabled: client.disabled });
    }
    Ok(ApiKeys { headers, query_param: raw.query_param, allow_basic: raw.allow_basic, clients })
}

fn compile_jwt(raw: RawJwt) -> Result<(Vec<Provider>, u64), ConfigError> {
    if raw.jwks_wait_ms > MAX_JWKS_WAIT_MS {
        return Err(ConfigError::new("jwt.jwks_wait_ms", format!("must be at most {MAX_JWKS_WAIT_MS}")));
    }
    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut names = HashSet::new();
    let mut issuers = HashSet::new();
    for (i, provider) in raw.providers.into_iter().enumerate() {
        let path = format!("jwt.providers[{i}]");
        let cfg: ProviderConfig = deserialize_at(provider, &path)?;
        let provider = Provider::from_config(cfg, &path)?;
        let source =
            crate::jwks_remote::RemoteSource::from_config(provider.remote_jwks.as_ref(), provider.discovery.as_ref());
        if let Some(source) = source {
            source.validate(&path)?;
        }
        if !names.insert(provider.name.clone()) {
            return Err(ConfigError::new(format!("{path}.name"), "duplicate provider name"));
        }
        if !issuers.insert(provider.issuer.clone()) {
            return Err(ConfigError::new(format!("{path}.issuer"), "another provider has this issuer"));
        }
        providers.push(provider);
    }
    Ok((providers, raw.jwks_wait_ms))
}

/// Validate an HTTP header name (RFC 9110 token) and return it lowercased.
pub fn header_name(name: &str, path: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(ConfigError::new(path, format!("{name:?} is not a valid header name")));
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
