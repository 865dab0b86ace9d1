//! The plugin configuration as written: serde types mirroring the JSON, with
//! their defaults. Unknown fields are errors everywhere. Nothing here is
//! validated beyond types; `config` compiles these into the policy.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "the configuration object")]
pub struct RawConfig {
    #[serde(default = "default_realm")]
    pub realm: String,
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default)]
    pub principal_headers: RawPrincipalHeaders,
    #[serde(default)]
    pub forward_credentials: bool,
    #[serde(default)]
    pub bypass: Vec<RawBypassRule>,
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    /// First match wins; checked after `bypass`.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Client networks (CIDR) allowed at all; outside them 403 before any credential is checked.
    pub trusted_networks: Option<Vec<String>>,
    pub revocation: Option<RawRevocation>,
    pub limits: Option<RawLimits>,
    pub basic: Option<RawBasic>,
    pub api_keys: Option<RawApiKeys>,
    pub jwt: Option<RawJwt>,
    pub cache: Option<RawCache>,
    #[serde(default = "default_true")]
    pub envoy_crypto: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrincipalHeaders {
    #[serde(default = "default_principal_header")]
    pub principal: String,
    #[serde(default = "default_method_header")]
    pub method: String,
    #[serde(default = "default_provider_header")]
    pub provider: String,
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
pub struct RawBypassRule {
    pub path_prefix: Option<String>,
    pub method: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match", default)]
    pub matcher: RawMatch,
    /// `"any"` (default), `"none"`, `"optional"`, or a list of kinds
    /// (`"basic"`, `"api-key"`, `"jwt"`, `"jwt:<provider>"`).
    pub require: Option<Value>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub principals: Option<Vec<String>>,
}

/// All that a rule's `match` sets must match.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path_prefix: Option<String>,
    pub path: Option<String>,
    pub methods: Option<Vec<String>>,
    /// `:authority`, exact or `*.suffix`.
    pub host: Option<String>,
    /// The Envoy route's name (`xds.route_name`).
    pub route: Option<String>,
}

/// Server-wide defaults of the per-principal limits (0 or absent: unlimited).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub requests_per_hour: Option<u64>,
    pub max_concurrent: Option<u64>,
    #[serde(default = "default_max_tracked_principals")]
    pub max_tracked_principals: usize,
    /// Add the RateLimit-Policy and RateLimit fields to allowed responses too.
    #[serde(default)]
    pub expose_headers: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    #[serde(default)]
    pub jti: Vec<String>,
    /// Principal id -> Unix seconds.
    #[serde(default)]
    pub not_before: BTreeMap<String, u64>,
    pub remote: Option<RawRemote>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasic {
    #[serde(default)]
    pub users: Vec<RawUser>,
    pub htpasswd: Option<String>,
    #[serde(default)]
    pub failure_limit: RawFailureLimit,
    #[serde(default = "default_slow_hash_budget")]
    pub slow_hash_budget_ms_per_second: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    pub password_hash: String,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub trusted_networks: Option<Vec<String>>,
    /// Overrides `limits.requests_per_hour` (0: unlimited).
    pub requests_per_hour: Option<u64>,
    /// Overrides `limits.max_concurrent` (0: unlimited).
    pub max_concurrent: Option<u64>,
}

/// Failed password checks allowed per user name in a window, Envoy-wide.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailureLimit {
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_failure_window")]
    pub window_seconds: u64,
}

impl Default for RawFailureLimit {
    fn default() -> Self {
        RawFailureLimit { max_failures: default_max_failures(), window_seconds: default_failure_window() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    #[serde(default = "default_api_key_headers")]
    pub headers: Vec<String>,
    pub query_param: Option<String>,
    #[serde(default = "default_true")]
    pub allow_basic: bool,
    #[serde(default)]
    pub clients: Vec<RawApiClient>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiClient {
    pub id: String,
    pub key_hash: String,
    #[serde(default)]
    pub disabled: bool,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub trusted_networks: Option<Vec<String>>,
    /// Overrides `limits.requests_per_hour` (0: unlimited).
    pub requests_per_hour: Option<u64>,
    /// Overrides `limits.max_concurrent` (0: unlimited).
    pub max_concurrent: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default = "default_jwks_wait_ms")]
    pub jwks_wait_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub issuer: String,
    /// Empty: any audience is accepted.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// A JWKS object `{"keys": [...]}`, parsed (strictly) when compiled.
    pub local_jwks: Option<Value>,
    /// SubjectPublicKeyInfo PEM blocks (`BEGIN PUBLIC KEY`); they match tokens with any `kid`.
    pub local_pem: Option<String>,
    pub remote_jwks: Option<RawRemote>,
    pub discovery: Option<RawRemote>,
    #[serde(default = "default_true")]
    pub require_expiration: bool,
    /// Longest accepted `exp - iat` (or `exp - now` without `iat`).
    pub max_lifetime_seconds: Option<u64>,
    /// Dotted path allowed ("realm.user").
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    #[serde(default)]
    pub claim_to_headers: Vec<RawClaimToHeader>,
    /// For every token of this provider (limits: per token principal).
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub trusted_networks: Option<Vec<String>>,
    pub requests_per_hour: Option<u64>,
    pub max_concurrent: Option<u64>,
}

/// A document fetched through an Envoy cluster: `remote_jwks` (`path` required) or
/// `discovery` (`path` defaults to the well-known one; `jwks_cluster` only here).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemote {
    pub cluster: String,
    pub authority: String,
    pub path: Option<String>,
    pub jwks_cluster: Option<String>,
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// JWKS only (default 30).
    pub min_refetch_seconds: Option<u64>,
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimToHeader {
    pub claim: String,
    pub header: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
    #[serde(default = "default_cache_ttl")]
    pub ttl_seconds: u64,
}

pub fn default_realm() -> String {
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
pub fn default_api_key_headers() -> Vec<String> {
    vec!["x-api-key".into()]
}
fn default_true() -> bool {
    true
}
pub fn default_jwks_wait_ms() -> u64 {
    2000
}
pub fn default_cache_entries() -> usize {
    4096
}
pub fn default_cache_ttl() -> u64 {
    300
}
fn default_principal_claim() -> String {
    "sub".to_string()
}
fn default_refresh_seconds() -> u64 {
    300
}
fn default_timeout_ms() -> u64 {
    2000
}
pub fn default_min_refetch_seconds() -> u64 {
    30
}
fn default_max_response_bytes() -> usize {
    64 * 1024
}
pub fn default_discovery_path() -> String {
    "/.well-known/openid-configuration".to_string()
}
pub fn default_max_failures() -> u32 {
    10
}
pub fn default_failure_window() -> u64 {
    60
}
fn default_max_tracked_principals() -> usize {
    10_000
}
pub fn default_slow_hash_budget() -> u64 {
    250
}
