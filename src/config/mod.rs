//! The plugin configuration: the JSON schema (`schema`) compiled once into the
//! policy a VM runs. Everything that can be checked once is checked here; every
//! error names its field path (`jwt.providers[1].issuer: must not be empty`) and
//! never echoes a value.

mod api_clients;
mod basic_users;
mod claims;
mod dpop;
/// The configuration error: a field path and what is wrong there.
pub mod error;
mod introspection;
mod jwt;
mod keypairs;
mod locations;
pub(crate) mod mtls;
mod names;
mod policy;
mod remote;
mod requirement;
mod schema;
mod secrets;
mod token_endpoint;

use std::borrow::Cow;
use std::collections::HashSet;
use std::rc::Rc;

pub use error::ConfigError;

use crate::api_key::{ApiClient, ApiKeys, Clients};
use crate::basic::{BasicUsers, FailureLimit, Users};
use crate::cache::CacheSettings;
use crate::fleet::{LimitScope, RATELIMIT_HEADER};
use crate::jwt::{normalized_pem, Provider, ProviderKind};
use crate::method_override::MethodOverrides;
use crate::network::Networks;
use crate::pipeline::limits::{LimitTable, Limits};
use crate::pipeline::revocation::Revocation;
use crate::pipeline::route::{Require, Routes, Schemes};
use crate::pipeline::shape::{PrincipalHeaders, Upstream};
use crate::privileges::Privileges;
use crate::query::lenient_name;
use crate::remote::{Store, StoreId};
use crate::reply::Challenges;
use crate::shared_table::{SharedTable, ONE_TIME};
use crate::token_endpoint::TokenEndpoint;
use crate::token_location::{TokenLocations, AUTHORIZATION};
use names::{cookie_name, header_name, param_name, principal_name};
use remote::{fetch_config, Document};
use schema::{RawApiKeys, RawBasic, RawConfig, RawFailureLimit};
pub use secrets::Env;

/// The largest plugin configuration accepted: room for 100,000 API clients as
/// `api_keys.clients[]` objects (about 10 MB) or 100,000 users and clients as
/// lines (`basic.htpasswd`, `api_keys.clients_lines`: under 10 MB together); a
/// bound on what every worker's VM parses and holds (docs/configuration.md, "What is checked at load").
pub const MAX_CONFIG_BYTES: usize = 32 * 1024 * 1024;

/// One-time keypair tokens remembered at once (past it, new ones wait for old ones to expire).
const ONE_TIME_TOKENS: usize = 65_536;

/// Clock skew beyond this is a misconfiguration, not tolerance.
const MAX_CLOCK_SKEW_SECONDS: u64 = 600;
const MAX_CACHE_ENTRIES: usize = 1_000_000;

/// The compiled configuration of one plugin, immutable (a VM holds it behind an `Rc`).
/// What it says to fetch (keys, the revocation list) is fetched into a VM's own
/// state, `fetched::Fetched`, which the fetch protocol keeps current.
#[derive(Debug)]
pub struct Config {
    pub(crate) realm: String,
    pub(crate) clock_skew_seconds: u64,
    /// Principal headers, owned headers, credential forwarding.
    pub upstream: Upstream,
    /// `bypass` and `rules`, and CORS preflights.
    pub routes: Routes,
    /// false: shadow mode, unless a rule says otherwise (`Rule::enforce`).
    pub enforce: bool,
    /// Outside these, 403 before any credential is checked (but on `require: "none"` routes).
    pub(crate) trusted_networks: Option<Networks>,
    pub(crate) revocation: Revocation,
    /// The shared counts of limited principals.
    pub(crate) limit_table: LimitTable,
    /// `limits`' own values (each principal's, overrides applied, are in its privileges).
    // Read by the engine's rules only (`fleet_rules`, native).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) limit_defaults: Limits,
    /// Who counts the requests per hour: this Envoy, or the fleet's rate-limit engine.
    pub(crate) limit_scope: LimitScope,
    /// With scope "fleet": the engine the filter asks about one-time tokens and failed passwords.
    pub(crate) engine: Option<crate::fleet::engine::Engine>,
    /// The `jti` of one-time keypair tokens seen, until they expire (shared by every worker).
    pub(crate) replay_table: SharedTable,
    /// The `jti` of DPoP proofs seen, for their window: a table of its own, so that a
    /// flood of proofs cannot keep one-time tokens from being recorded, nor they proofs.
    pub(crate) proof_table: SharedTable,
    /// Add the RateLimit fields to allowed responses.
    pub(crate) expose_limit_headers: bool,
    /// `basic`: the users and their password hashes.
    pub basic_users: BasicUsers,
    /// `basic.remote`: more users, fetched (`fetched::Fetched` holds them).
    pub basic_store: Option<Store<BasicUsers>>,
    pub(crate) failure_limit: FailureLimit,
    pub(crate) slow_hash_budget_ms_per_second: u64,
    /// `api_keys`: the API clients, by key digest and by id.
    pub api_keys: ApiKeys,
    /// Client certificates as principals.
    pub mtls: Option<crate::mtls::Mtls>,
    /// Providers, then keypairs, then the token endpoint's own: looked up by issuer.
    pub jwt_providers: Vec<Provider>,
    /// The algorithms a `DPoP` challenge offers (RFC 9449 7.1): those of every provider
    /// and keypair with `dpop`, once each; None without any.
    dpop_challenge_algs: Option<String>,
    /// Where tokens are read, and for which of `jwt_providers`.
    pub token_locations: TokenLocations,
    /// Issues tokens to API clients; its tokens verify through its entry in `jwt_providers`.
    pub(crate) token_endpoint: Option<TokenEndpoint>,
    /// How long a request may wait for a provider's remote keys before it gets 503.
    pub(crate) jwks_wait_ms: u64,
    pub(crate) cache: CacheSettings,
    /// Check RS256/ES256 signatures with Envoy's BoringSSL when the host offers it
    /// (ES384 always: the module has no P-384 of its own).
    // Read by the host adapter only, which a native build (the CLI) does not compile.
    #[cfg_attr(not(any(target_arch = "wasm32", clippy)), allow(dead_code))]
    pub(crate) envoy_crypto: bool,
}

impl Config {
    /// Parse and compile the plugin configuration; `X_env` fields read this process's
    /// environment (in Envoy: `vm_config.environment_variables`).
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        Config::from_json_with_env(bytes, &|name| std::env::var(name).ok())
    }

    /// As `from_json`, with the environment variables `env` gives.
    pub fn from_json_with_env(bytes: &[u8], env: Env) -> Result<Config, ConfigError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::new("", format!("configuration larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut deserializer).map_err(schema_error)?;
        deserializer.end().map_err(|e| ConfigError::new("", format!("not valid JSON: {e}")))?;
        compile(raw, env)
    }

    /// The challenges a 401 offers: one per enabled scheme (that the route accepts).
    pub fn challenges(&self, require: &Require) -> Challenges<'_> {
        let Schemes { basic, bearer, api_key, .. } = require.schemes();
        Challenges {
            realm: &self.realm,
            basic: basic && (self.has_basic_users() || (self.api_keys.allow_basic && self.api_keys.has_clients())),
            bearer: bearer && !self.jwt_providers.is_empty(),
            dpop_algs: self.dpop_challenge_algs.as_deref().filter(|_| bearer),
            api_key_header: self.api_keys.challenge_header().filter(|_| api_key),
        }
    }

    /// Whether anything is fetched (known at configuration: the root then ticks fast).
    pub fn fetches_documents(&self) -> bool {
        self.jwt_providers.iter().any(|provider| provider.fetch.is_some())
            || self.revocation.fetch.is_some()
            || self.api_keys.remote.is_some()
            || self.basic_store.is_some()
    }

    /// Whether a request with a Basic credential needs the client address: its password
    /// failures are counted per user name and source, so that a guesser cannot lock a
    /// user out. Without users there is nobody to lock out (made-up names are then
    /// counted per name alone; an API client's `id:key` is never throttled).
    pub fn reads_source_for_basic(&self) -> bool {
        self.has_basic_users()
    }

    /// How long a request waits for a credential store's first fetch.
    pub(crate) fn store_wait_ms(&self, store: StoreId) -> u64 {
        let wait = match store {
            StoreId::ApiClients => self.api_keys.remote.as_ref().map(Store::wait_ms),
            StoreId::BasicUsers => self.basic_store.as_ref().map(Store::wait_ms),
        };
        wait.unwrap_or(0)
    }

    /// Whether any Basic user may exist: configured, or fetched.
    fn has_basic_users(&self) -> bool {
        !self.basic_users.is_empty() || self.basic_store.is_some()
    }

    /// The Basic users a request may name, with what was fetched (`basic.remote`).
    pub fn users<'a>(&'a self, fetched: Option<&'a BasicUsers>) -> Users<'a> {
        self.basic_users.with_fetched(fetched, self.basic_store.is_some())
    }

    /// Whether the client address is needed: networks configured anywhere (for every
    /// request), or Basic credentials accepted (their failures are counted per source;
    /// only requests with one need it, see `reads_source_for_basic`).
    pub fn needs_source_address(&self) -> bool {
        self.reads_source_for_basic()
            || self.trusted_networks.is_some()
            || self.basic_users.any_trusted_networks()
            || self.basic_store.is_some()
            || self.api_keys.may_bind_networks()
            || self.jwt_providers.iter().any(|p| p.privileges.trusted_networks.is_some())
            || self.mtls.as_ref().is_some_and(mtls::any_trusted_networks)
    }
}

/// A type or shape error from serde, with the field path it happened at. serde
/// quotes the value it could not use (`invalid type: string "hunter2"`); a
/// misplaced secret must not reach the log, so the value is dropped.
fn schema_error(error: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return ConfigError::new("", format!("not valid JSON: {inner}"));
    }
    let message = inner.to_string();
    let message = message.split(" at line ").next().unwrap_or("");
    let path = if path == "." || path.is_empty() { "(root)".to_string() } else { path };
    ConfigError::new(path, redact_values(message))
}

/// Drop every double-quoted value, and the first backquoted one of an `invalid
/// type`, `invalid value` or `unknown variant` message (the value; the others there,
/// and those of `unknown field`, are names from the schema).
fn redact_values(message: &str) -> String {
    let mut redacted = String::with_capacity(message.len());
    let mut rest = message;
    let mut hide_backquoted =
        ["invalid type", "invalid value", "unknown variant"].iter().any(|p| message.starts_with(p));
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        let hide = quote == '"' || hide_backquoted;
        redacted.push_str(&rest[..start]);
        let Some(len) = closing_quote(&rest[start + 1..], quote) else {
            rest = "";
            break;
        };
        if hide {
            redacted.push_str("(value hidden)");
            if quote == '`' {
                hide_backquoted = false;
            }
        } else {
            redacted.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    redacted.push_str(rest);
    redacted
}

/// Where a quoted value ends. serde quotes strings with `{:?}`, which writes a `"`
/// inside the value as `\"`: that one does not end it.
fn closing_quote(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quote == '"' {
            escaped = true;
        } else if c == quote {
            return Some(i);
        }
    }
    None
}

fn compile(raw: RawConfig, env: Env) -> Result<Config, ConfigError> {
    if raw.realm.is_empty() || raw.realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(ConfigError::new("realm", "must be non-empty, without quotes, backslashes or control characters"));
    }
    let method_overrides = MethodOverrides::from_name(&raw.method_overrides)
        .ok_or_else(|| ConfigError::new("method_overrides", "must be \"remove\" or \"judge\""))?;
    if raw.clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
        return Err(ConfigError::new("clock_skew_seconds", format!("must be at most {MAX_CLOCK_SKEW_SECONDS}")));
    }
    let principal_headers = PrincipalHeaders {
        principal: header_name(&raw.principal_headers.principal, "principal_headers.principal")?,
        method: header_name(&raw.principal_headers.method, "principal_headers.method")?,
        provider: header_name(&raw.principal_headers.provider, "principal_headers.provider")?,
        qualified: raw
            .principal_headers
            .qualified
            .as_deref()
            .map(|name| header_name(name, "principal_headers.qualified"))
            .transpose()?,
    };
    let policy::LimitSettings { defaults: limit_defaults, max_tracked_principals, expose_headers, scope, engine } =
        policy::limits(raw.limits)?;
    let (basic_users, basic_store, failure_limit, slow_hash_budget_ms_per_second) =
        compile_basic(raw.basic, &limit_defaults, env)?;
    let api_keys = compile_api_keys(raw.api_keys, &limit_defaults, env)?;
    let mtls = raw.mtls.as_ref().map(|raw| mtls::compile(raw, &limit_defaults)).transpose()?;
    let claim_table = claims::claim_table(&raw.rules);
    let (mut jwt_providers, token_places, jwks_wait_ms) =
        jwt::compile(raw.jwt, &limit_defaults, env, &claim_table, raw.clock_skew_seconds)?;
    // Keypairs verify like providers: one list, looked up by issuer.
    jwt_providers.extend(keypairs::compile(raw.keypairs, &limit_defaults)?);
    let raw_realm = raw.realm.clone();
    let token_endpoint = match raw.token_endpoint {
        Some(raw) => {
            if !api_keys.has_clients() {
                return Err(ConfigError::new("token_endpoint", "issues tokens to api_keys.clients: configure some"));
            }
            let (endpoint, provider) = token_endpoint::compile(raw, &raw_realm, env)?;
            jwt_providers.push(provider);
            Some(endpoint)
        }
        None => None,
    };
    issuers_are_unique(&jwt_providers)?;
    let token_locations = locations::compile(token_places, jwt_providers.len(), &api_keys)?;
    one_introspection_provider_per_place(&jwt_providers, &token_locations)?;
    if let (false, Some(provider)) = (raw.envoy_crypto, jwt_providers.iter().find(|p| p.local_keys.needs_host_crypto()))
    {
        let message = format!("must be true: {} has a P-384 key, which only Envoy's BoringSSL checks", provider.name);
        return Err(ConfigError::new("envoy_crypto", message));
    }
    let es384_proofs = |p: &&Provider| p.dpop.as_ref().is_some_and(|d| d.algorithms.split(' ').any(|a| a == "ES384"));
    if let (false, Some(provider)) = (raw.envoy_crypto, jwt_providers.iter().find(es384_proofs)) {
        let message = format!(
            "must be true: {}'s dpop.algorithms names ES384, which only Envoy's BoringSSL checks",
            provider.name
        );
        return Err(ConfigError::new("envoy_crypto", message));
    }
    let owned_headers = owned_headers(&principal_headers, &jwt_providers, &api_keys, &token_locations)?;
    let mut rules = Vec::with_capacity(raw.bypass.len() + raw.rules.len());
    for (i, rule) in raw.bypass.into_iter().enumerate() {
        rules.push(policy::bypass_rule(rule, i)?);
    }
    let bypass_count = rules.len();
    for (i, mut rule) in raw.rules.into_iter().enumerate() {
        let conditions = rule.claims.take();
        let mut rule = policy::rule(rule, i, &jwt_providers)?;
        rule.claims = claims::conditions(conditions.as_ref(), i, &rule.require, &claim_table, &owned_headers)?;
        rules.push(rule);
    }
    policy::every_rule_is_reachable(&rules, bypass_count)?;
    mtls::rules_need_it(&rules[bypass_count..], mtls.is_some())?;
    let routes = Routes::new(rules, raw.bypass_cors_preflight);
    let trusted_networks = raw.trusted_networks.map(|n| policy::networks(n, "trusted_networks")).transpose()?;
    let revocation = policy::revocation(raw.revocation, &jwt_providers)?;
    let cache = raw.cache.unwrap_or_default();
    if cache.max_entries > MAX_CACHE_ENTRIES {
        return Err(ConfigError::new("cache.max_entries", format!("must be at most {MAX_CACHE_ENTRIES}")));
    }
    let cache = CacheSettings { max_entries: cache.max_entries, ttl_seconds: cache.ttl_seconds };
    if basic_users.is_empty()
        && basic_store.is_none()
        && !api_keys.has_clients()
        && jwt_providers.is_empty()
        && mtls.is_none()
    {
        return Err(ConfigError::new(
            "",
            "no credentials configured: set basic.users, basic.htpasswd, api_keys.clients, jwt.providers or mtls",
        ));
    }
    Ok(Config {
        realm: raw.realm,
        clock_skew_seconds: raw.clock_skew_seconds,
        upstream: Upstream {
            principal_headers,
            owned_headers,
            forward_credentials: raw.forward_credentials,
            filter_state: raw.filter_state,
            method_overrides,
        },
        enforce: raw.enforce,
        routes,
        trusted_networks,
        revocation,
        limit_table: LimitTable::new(max_tracked_principals),
        limit_defaults,
        limit_scope: scope,
        engine,
        replay_table: SharedTable::new("keypair_jti", ONE_TIME_TOKENS, ONE_TIME),
        proof_table: SharedTable::new("dpop_jti", ONE_TIME_TOKENS, ONE_TIME),
        expose_limit_headers: expose_headers,
        basic_users,
        basic_store,
        failure_limit,
        slow_hash_budget_ms_per_second,
        api_keys,
        mtls,
        dpop_challenge_algs: dpop_challenge_algs(&jwt_providers),
        jwt_providers,
        token_locations,
        token_endpoint,
        jwks_wait_ms,
        cache,
        envoy_crypto: raw.envoy_crypto,
    })
}

/// What a request's `DPoP` challenge offers: the algorithms of the providers and keypairs
/// that take DPoP tokens (the token endpoint's proofs are for token requests).
fn dpop_challenge_algs(providers: &[Provider]) -> Option<String> {
    let mut algs: Vec<&str> = Vec::new();
    let taking = providers.iter().filter(|p| p.kind != ProviderKind::TokenEndpoint);
    for alg in taking.filter_map(|p| p.dpop.as_deref()).flat_map(|dpop| dpop.algorithms.split(' ')) {
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    (!algs.is_empty()).then(|| algs.join(" "))
}

/// Time budgets (ms per second) outside this are not a budget (0) or more than a worker has.
pub(crate) const TIME_BUDGET_RANGE: std::ops::RangeInclusive<u64> = 1..=1000;

/// `basic`'s users (configured, and the store they may be fetched from) and guards.
type BasicSettings = (BasicUsers, Option<Store<BasicUsers>>, FailureLimit, u64);

fn compile_basic(raw: Option<RawBasic>, limits: &Limits, env: Env) -> Result<BasicSettings, ConfigError> {
    let Some(raw) = raw else {
        let limit = failure_limit(RawFailureLimit::default())?;
        return Ok((BasicUsers::default(), None, limit, schema::default_time_budget()));
    };
    let htpasswd = secrets::secret(raw.htpasswd, raw.htpasswd_env.as_deref(), "basic", "htpasswd", env)?;
    let users = basic_users::compile_users(raw.users, htpasswd, "basic.", limits, env)?;
    let store = match raw.remote {
        Some(remote) => Some(Store {
            fetch: fetch_config(remote, "basic.remote", Document::BasicUsers)?,
            parse: basic_users::document_parser(*limits, users.names()),
        }),
        None => None,
    };
    let limit = failure_limit(raw.failure_limit)?;
    if !TIME_BUDGET_RANGE.contains(&raw.slow_hash_budget_ms_per_second) {
        return Err(ConfigError::new("basic.slow_hash_budget_ms_per_second", "must be between 1 and 1000"));
    }
    Ok((users, store, limit, raw.slow_hash_budget_ms_per_second))
}

fn failure_limit(raw: RawFailureLimit) -> Result<FailureLimit, ConfigError> {
    if raw.max_failures == 0 {
        return Err(ConfigError::new("basic.failure_limit.max_failures", "must be at least 1"));
    }
    if raw.max_failures_per_name < raw.max_failures {
        return Err(ConfigError::new(
            "basic.failure_limit.max_failures_per_name",
            "must be at least max_failures (else one source alone locks a name out)",
        ));
    }
    if !(1..=86_400).contains(&raw.window_seconds) {
        return Err(ConfigError::new("basic.failure_limit.window_seconds", "must be between 1 and 86400"));
    }
    Ok(FailureLimit {
        max_failures: raw.max_failures,
        max_failures_per_name: raw.max_failures_per_name,
        window_seconds: raw.window_seconds,
    })
}

fn compile_api_keys(raw: Option<RawApiKeys>, limits: &Limits, env: Env) -> Result<ApiKeys, ConfigError> {
    let raw = raw.unwrap_or_default();
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (i, h) in raw.headers.iter().enumerate() {
        let name = header_name(h, &format!("api_keys.headers[{i}]"))?;
        if name == "authorization" {
            return Err(ConfigError::new(format!("api_keys.headers[{i}]"), "authorization is read as Basic/Bearer"));
        }
        headers.push(name);
    }
    if let Some(q) = &raw.query_param {
        param_name(q, "api_keys.query_param")?;
    }
    if let Some(field) = &raw.form_field {
        param_name(field, "api_keys.form_field")?;
    }
    for (i, cookie) in raw.cookies.iter().enumerate() {
        let path = format!("api_keys.cookies[{i}]");
        cookie_name(cookie, &path)?;
        if raw.cookies[..i].iter().any(|earlier| lenient_name(earlier) == lenient_name(cookie)) {
            return Err(ConfigError::new(path, "is already listed (in some spelling)"));
        }
    }
    let lines = secrets::secret(raw.clients_lines, raw.clients_lines_env.as_deref(), "api_keys", "clients_lines", env)?;
    let mut clients = Vec::with_capacity(raw.clients.len() + lines.as_ref().map_or(0, |l| l.value.lines().count()));
    let mut ids = HashSet::with_capacity(clients.capacity());
    for (i, client) in raw.clients.into_iter().enumerate() {
        let path = format!("api_keys.clients[{i}]");
        if !ids.insert(client.id.clone()) {
            return Err(ConfigError::new(format!("{path}.id"), "duplicate client id"));
        }
        clients.push(api_clients::compile_client(client, &path, limits, env)?);
    }
    if let Some(lines) = lines {
        // Clients listed this way take the defaults, as htpasswd users do.
        let everything = Rc::new(Privileges { limits: *limits, ..Privileges::default() });
        name_lines(&lines, "expected id:sha256:<hex>", &mut |id, hash| {
            let key_digest = api_clients::api_key_digest(hash)?;
            if !ids.insert(id.to_string()) {
                return Err("duplicate client id".into());
            }
            clients.push(ApiClient {
                id: id.to_string(),
                key_digest,
                disabled: false,
                privileges: Rc::clone(&everything),
            });
            Ok(())
        })?;
    }
    let clients = Rc::new(
        Clients::new(clients, &Clients::default())
            .map_err(|shared| ConfigError::new("api_keys", api_clients::shared_key(shared)))?,
    );
    let remote = match raw.remote {
        Some(remote) => Some(Store {
            fetch: fetch_config(remote, "api_keys.remote", Document::ApiClients)?,
            parse: api_clients::document_parser(*limits, Rc::clone(&clients)),
        }),
        None => None,
    };
    Ok(ApiKeys {
        headers,
        query_param: raw.query_param,
        cookies: raw.cookies,
        form_field: raw.form_field,
        allow_basic: raw.allow_basic,
        clients,
        remote,
    })
}

/// The `name:hash` lines of `basic.htpasswd` and `api_keys.clients_lines` (blank lines
/// and `#` comments skipped), each name checked, then handed to `each`; an error names
/// the line (`basic.htpasswd line 3: ...`).
fn name_lines(
    text: &secrets::Secret,
    expected: &str,
    each: &mut dyn FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), ConfigError> {
    for (n, line) in text.value.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let checked = match line.split_once(':') {
            None => Err(expected.to_string()),
            Some((name, hash)) => principal_name(name, "").map_err(|e| e.message).and_then(|()| each(name, hash)),
        };
        // The path is made only for an error: 100,000 lines load in one pass.
        checked.map_err(|message| ConfigError::new(format!("{} line {}", text.field, n + 1), message))?;
    }
    Ok(())
}

/// An API key's stored digest: `sha256:<hex>` only (a key is random, a slow hash buys nothing).
/// A provider, a keypair and the token endpoint may never claim the same issuer (or
/// name): a token's `iss` would name both. Issuers are compared as tokens select them:
/// PEM text as `normalized_pem` gives it (a keypair's tokens may carry its public key,
/// in any line endings, as `iss`), so a provider whose issuer is a keypair's key is
/// caught too. A clash names both fields, at the later one.
fn issuers_are_unique(providers: &[Provider]) -> Result<(), ConfigError> {
    // (issuer or name, its field): a few entries, searched in order.
    let mut issuers: Vec<(Cow<str>, String)> = Vec::new();
    let mut names: Vec<(&str, String)> = Vec::new();
    let (mut provider_index, mut keypair_index) = (0.., 0..);
    for provider in providers {
        // Where a clash is named: (the name's field, the issuer's, the alias's).
        let (name_field, issuer_field, alias_field) = match provider.kind {
            ProviderKind::IdentityProvider => {
                let at = format!("jwt.providers[{}]", provider_index.next().unwrap_or_default());
                (format!("{at}.name"), format!("{at}.issuer"), format!("{at}.issuer"))
            }
            ProviderKind::Keypair { .. } => {
                let at = format!("keypairs[{}]", keypair_index.next().unwrap_or_default());
                (format!("{at}.id"), format!("{at}.id"), format!("{at}.public_key"))
            }
            ProviderKind::TokenEndpoint => {
                ("token_endpoint.name".into(), "token_endpoint.issuer".into(), "token_endpoint.issuer".into())
            }
        };
        if let Some((_, other)) = names.iter().find(|(name, _)| *name == provider.name) {
            return Err(ConfigError::new(name_field, format!("{other} has this name too")));
        }
        names.push((&provider.name, name_field));
        let named = Some(&provider.issuer).filter(|issuer| !issuer.is_empty());
        for (issuer, field) in named
            .into_iter()
            .map(|issuer| (issuer, &issuer_field))
            .chain(provider.issuer_aliases.iter().map(|alias| (alias, &alias_field)))
        {
            let compared = if issuer.trim_start().starts_with("-----BEGIN") {
                Cow::Owned(normalized_pem(issuer))
            } else {
                Cow::Borrowed(issuer.as_str())
            };
            if let Some((_, other)) = issuers.iter().find(|(claimed, _)| *claimed == compared) {
                let message = format!("{other} claims this issuer too: a token's iss would name both");
                return Err(ConfigError::new(field.as_str(), message));
            }
            issuers.push((compared, field.clone()));
        }
    }
    Ok(())
}

/// A token no key verifies goes to the introspection provider that reads its place:
/// one at most per place (`jwt.providers[i]` is `ProviderId(i)`).
fn one_introspection_provider_per_place(providers: &[Provider], tokens: &TokenLocations) -> Result<(), ConfigError> {
    for location in &tokens.locations {
        let mut introspecting = location
            .readers
            .iter()
            .filter(|id| providers.get(id.0).is_some_and(|provider| provider.introspection.is_some()));
        if let (Some(first), Some(second)) = (introspecting.next(), introspecting.next()) {
            return Err(ConfigError::new(
                format!("jwt.providers[{}].introspection", second.0),
                format!(
                    "reads tokens where jwt.providers[{}] does: one introspection provider per place (from_*)",
                    first.0
                ),
            ));
        }
    }
    Ok(())
}

/// The headers the filter sets upstream (principal headers and claim headers): they
/// must be distinct, and none may be a header credentials are read from.
fn owned_headers(
    principal_headers: &PrincipalHeaders,
    providers: &[Provider],
    api_keys: &ApiKeys,
    tokens: &TokenLocations,
) -> Result<Vec<String>, ConfigError> {
    let mut principal_names = vec![
        ("principal_headers.principal", &principal_headers.principal),
        ("principal_headers.method", &principal_headers.method),
        ("principal_headers.provider", &principal_headers.provider),
    ];
    if let Some(qualified) = &principal_headers.qualified {
        principal_names.push(("principal_headers.qualified", qualified));
    }
    for (i, (field, name)) in principal_names.iter().enumerate() {
        if principal_names[i + 1..].iter().any(|(_, other)| other == name) {
            return Err(ConfigError::new(*field, "must differ from the other principal headers"));
        }
    }
    let ratelimit_header = "is the header the filter hands Envoy's rate-limit filter (x-auth-ratelimit-principal)";
    if let Some((field, _)) = principal_names.iter().find(|(_, name)| *name == RATELIMIT_HEADER) {
        return Err(ConfigError::new(*field, ratelimit_header));
    }
    // Each header the filter sets, with the field that names it (for the credential check below).
    let mut set_by: Vec<(String, String)> =
        principal_names.iter().map(|(field, name)| (field.to_string(), name.to_string())).collect();
    for (i, provider) in providers.iter().enumerate() {
        // Its claim headers, then its payload header.
        let mappings = provider.claim_to_headers.iter().map(|mapping| &mapping.header);
        let its_own = set_by.len();
        for (j, header) in mappings.chain(&provider.output.payload_header).enumerate() {
            let at = || match j < provider.claim_to_headers.len() {
                true => format!("jwt.providers[{i}].claim_to_headers[{j}].header"),
                false => format!("jwt.providers[{i}].forward_payload_header"),
            };
            if principal_names.iter().any(|(_, name)| *name == header) {
                return Err(ConfigError::new(at(), "is one of principal_headers: a claim must not set the principal"));
            }
            if header == RATELIMIT_HEADER {
                return Err(ConfigError::new(at(), ratelimit_header));
            }
            if set_by.get(its_own..).is_some_and(|its| its.iter().any(|(_, name)| name == header)) {
                return Err(ConfigError::new(at(), "is also one of its claim_to_headers headers"));
            }
            set_by.push((at(), header.clone()));
        }
    }
    let reads_cookies = !api_keys.cookies.is_empty() || tokens.cookies().next().is_some();
    let credential_header = |name: &String| {
        name == AUTHORIZATION
            || api_keys.headers.contains(name)
            || tokens.headers().any(|(_, header, _)| header == name)
            || (reads_cookies && name == "cookie")
    };
    if let Some((field, name)) = set_by.iter().find(|(_, name)| credential_header(name)) {
        let why = format!("the filter sets {name}, which is also a header credentials are read from");
        return Err(ConfigError::new(field.as_str(), why));
    }
    // Owned whatever limits.scope says: a client never sets it.
    if api_keys.headers.iter().any(|name| name == RATELIMIT_HEADER) {
        return Err(ConfigError::new("api_keys.headers", ratelimit_header));
    }
    if tokens.headers().any(|(_, header, _)| header == RATELIMIT_HEADER) {
        return Err(ConfigError::new("jwt.providers[].from_headers", ratelimit_header));
    }
    let mut owned: Vec<String> = set_by.into_iter().map(|(_, name)| name).collect();
    owned.push(RATELIMIT_HEADER.to_string());
    owned.sort();
    owned.dedup();
    Ok(owned)
}

// Native only, and last, so that the module's code (and its panic locations) is as without it.
#[cfg(not(target_arch = "wasm32"))]
mod jwks_schema;

/// The JSON Schema (draft 2020-12) of the configuration, generated from the serde
/// types of `schema.rs` with their doc comments as descriptions: what `wasm-authn
/// schema` prints and `wasm-authn.schema.json` holds. It checks shapes and types
/// only; `Config::from_json` checks everything. Native builds only.
#[cfg(not(target_arch = "wasm32"))]
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawConfig);
    schema.insert("title".into(), "wasm-authn configuration".into());
    schema.insert(
        "description".into(),
        "The plugin configuration of the wasm-authn filter (Envoy, Istio). Generated by `wasm-authn schema`; \
         shapes and types only: `wasm-authn check CONFIG.json` runs the filter's own validation."
            .into(),
    );
    schema.to_value()
}

#[cfg(test)]
mod tests;
