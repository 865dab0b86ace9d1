//! `jwt`: the providers, each compiled once into its final value (keys parsed
//! and bound to algorithms, remote key set ready to be fetched).

use std::collections::HashSet;

use std::rc::Rc;

use super::error::ConfigError;
use super::names::{cookie_name, header_name, non_empty, param_name, principal_name};
use super::policy::privileges;
use super::remote::{fetch_config, Document};
use super::schema::{default_wait_ms, RawJwt, RawProvider, MAX_WAIT_MS};
use super::secrets::{self, Env};
use crate::jwt::{ClaimToHeader, KeyError, KeySet, Provider, ProviderKind, TokenOutput};
use crate::pipeline::limits::Limits;
use crate::token_location::{TokenPlace, AUTHORIZATION};

const MAX_VALUE_PREFIX_BYTES: usize = 64;

/// Headers that frame or route the request: a claim must never set them.
const RESERVED_HEADERS: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade", "proxy-connection"];

/// The places one provider reads its tokens from (`from_*`), each with its field
/// path; empty: `Authorization: Bearer`, as every provider without `from_*`.
pub(super) type TokenPlaces = Vec<(TokenPlace, String)>;

/// The providers, the places each reads tokens from, and how long a request may wait for remote keys.
pub(super) fn compile(
    raw: Option<RawJwt>,
    limits: &Limits,
    env: Env,
    claim_table: &Rc<Vec<String>>,
    clock_skew_seconds: u64,
) -> Result<(Vec<Provider>, Vec<TokenPlaces>, u64), ConfigError> {
    let Some(raw) = raw else {
        return Ok((Vec::new(), Vec::new(), default_wait_ms()));
    };
    if raw.jwks_wait_ms > MAX_WAIT_MS {
        return Err(ConfigError::new("jwt.jwks_wait_ms", format!("must be at most {MAX_WAIT_MS}")));
    }
    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut places = Vec::with_capacity(raw.providers.len());
    let mut names = HashSet::new();
    let mut issuers = HashSet::new();
    for (i, provider) in raw.providers.into_iter().enumerate() {
        let path = format!("jwt.providers[{i}]");
        places.push(token_places(&provider, &path)?);
        let provider = compile_provider(provider, limits, &path, env, claim_table, clock_skew_seconds)?;
        if !names.insert(provider.name.clone()) {
            return Err(ConfigError::new(format!("{path}.name"), "duplicate provider name"));
        }
        // An introspection provider may name no issuer.
        if !provider.issuer.is_empty() && !issuers.insert(provider.issuer.clone()) {
            return Err(ConfigError::new(format!("{path}.issuer"), "another provider has this issuer"));
        }
        providers.push(provider);
    }
    Ok((providers, places, raw.jwks_wait_ms))
}

/// An inline JWKS, its `k_env` secrets read; an error about such a key's `k` names its `k_env`.
fn local_jwks(jwks: &mut serde_json::Value, at: &str, env: Env) -> Result<KeySet, ConfigError> {
    let from_env = secrets::jwks(jwks, at, env)?;
    KeySet::from_jwks(jwks).map_err(|error| {
        let mut wrapped = key_error(at, error);
        if from_env.iter().any(|key| wrapped.path == format!("{key}.k")) {
            wrapped.path.push_str("_env");
        }
        wrapped
    })
}

/// A key refused, at its field path under `path` (the field that held it).
pub(super) fn key_error(path: &str, error: KeyError) -> ConfigError {
    ConfigError::new(error.path_under(path), error.message)
}

/// `from_headers`, `from_params` and `from_cookies`, each name checked on its own
/// (how they sit with other providers' and API keys' places: `config::locations`).
fn token_places(raw: &RawProvider, path: &str) -> Result<TokenPlaces, ConfigError> {
    let mut places = Vec::new();
    for (i, header) in raw.from_headers.iter().enumerate() {
        let at = format!("{path}.from_headers[{i}]");
        let name = header_name(&header.name, &format!("{at}.name"))?;
        if RESERVED_HEADERS.contains(&name.as_str()) || name == "cookie" {
            let message = "names a header that frames or routes the request, or Cookie (use from_cookies)";
            return Err(ConfigError::new(format!("{at}.name"), message));
        }
        let prefix = header.value_prefix.as_deref().unwrap_or("");
        let prefix_path = format!("{at}.value_prefix");
        if prefix.len() > MAX_VALUE_PREFIX_BYTES
            || !prefix.bytes().all(|b| (0x20..0x7f).contains(&b))
            || prefix.starts_with(' ')
        {
            let message =
                format!("must be printable ASCII, without leading spaces, at most {MAX_VALUE_PREFIX_BYTES} bytes");
            return Err(ConfigError::new(prefix_path, message));
        }
        let prefix = prefix.to_ascii_lowercase();
        if name == AUTHORIZATION && prefix.trim_end().is_empty() {
            return Err(ConfigError::new(prefix_path, "is required on authorization (e.g. \"Bearer \")"));
        }
        if name == AUTHORIZATION && prefix.starts_with("basic") {
            return Err(ConfigError::new(prefix_path, "Authorization: Basic is read as HTTP Basic"));
        }
        places.push((TokenPlace::Header { name, prefix }, at));
    }
    for (i, param) in raw.from_params.iter().enumerate() {
        let at = format!("{path}.from_params[{i}]");
        param_name(param, &at)?;
        places.push((TokenPlace::Param(param.clone()), at));
    }
    for (i, cookie) in raw.from_cookies.iter().enumerate() {
        let at = format!("{path}.from_cookies[{i}]");
        cookie_name(cookie, &at)?;
        places.push((TokenPlace::Cookie(cookie.clone()), at));
    }
    Ok(places)
}

fn compile_provider(
    mut raw: RawProvider,
    limits: &Limits,
    path: &str,
    env: Env,
    claim_table: &Rc<Vec<String>>,
    clock_skew_seconds: u64,
) -> Result<Provider, ConfigError> {
    let fields = raw.privilege_fields();
    // Its principals are `jwt:<name>:<subject>`: a `:` in the name would make two of them one.
    principal_name(&raw.name, &format!("{path}.name"))?;
    let has_keys =
        raw.local_jwks.is_some() || raw.local_pem.is_some() || raw.remote_jwks.is_some() || raw.discovery.is_some();
    if let Some(issuer) = &raw.issuer {
        non_empty(issuer, &format!("{path}.issuer"))?;
    }
    for (i, audience) in raw.audiences.iter().enumerate() {
        non_empty(audience, &format!("{path}.audiences[{i}]"))?;
    }
    if raw.introspection.is_some() && has_keys {
        let message = "verifies tokens with keys or through introspection, not both";
        return Err(ConfigError::new(format!("{path}.introspection"), message));
    }
    if raw.introspection.is_none() && !has_keys {
        return Err(ConfigError::new(path, "needs local_jwks, local_pem, remote_jwks, discovery or introspection"));
    }
    if raw.introspection.is_none() && raw.issuer.is_none() {
        return Err(ConfigError::new(path, "missing field `issuer`"));
    }
    if raw.max_lifetime_seconds == Some(0) {
        return Err(ConfigError::new(format!("{path}.max_lifetime_seconds"), "must be greater than 0"));
    }
    non_empty(&raw.principal_claim, &format!("{path}.principal_claim"))?;
    let output = token_output(&raw, path)?;

    let mut local_keys = KeySet::default();
    if let Some(jwks) = &mut raw.local_jwks {
        local_keys.extend(local_jwks(jwks, &format!("{path}.local_jwks"), env)?);
    }
    if let Some(pem) = &raw.local_pem {
        let at = format!("{path}.local_pem");
        local_keys.extend(KeySet::from_pem(pem, None).map_err(|e| key_error(&at, e))?);
    }

    let fetch = match (raw.remote_jwks, raw.discovery) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(format!("{path}.discovery"), "cannot be combined with remote_jwks"));
        }
        (Some(remote), None) => Some(fetch_config(remote, &format!("{path}.remote_jwks"), Document::Jwks)?),
        (None, Some(discovery)) => Some(fetch_config(discovery, &format!("{path}.discovery"), Document::Discovery)?),
        (None, None) => None,
    };
    let issuer = raw.issuer.clone().unwrap_or_default();

    let mut claim_to_headers: Vec<ClaimToHeader> = Vec::with_capacity(raw.claim_to_headers.len());
    for (i, mapping) in raw.claim_to_headers.iter().enumerate() {
        let mapping_path = format!("{path}.claim_to_headers[{i}]");
        non_empty(&mapping.claim, &format!("{mapping_path}.claim"))?;
        let header_path = format!("{mapping_path}.header");
        let header = header_name(&mapping.header, &header_path)?;
        if RESERVED_HEADERS.contains(&header.as_str()) || header.starts_with(':') {
            return Err(ConfigError::new(header_path, "names a header that frames or routes the request"));
        }
        if claim_to_headers.iter().any(|earlier| earlier.header == header) {
            return Err(ConfigError::new(header_path, "is already mapped"));
        }
        claim_to_headers.push(ClaimToHeader { claim: mapping.claim.clone(), header });
    }

    let privileges = privileges(fields, limits, path)?;
    let introspection = match raw.introspection {
        Some(introspection) => {
            // What its answers are judged by is part of whose answers they are (two configurations in one Envoy).
            let mappings: Vec<String> = claim_to_headers.iter().map(|m| format!("{}={}", m.claim, m.header)).collect();
            // The claims rules test are stored with each answer, by their place in the table.
            let identity = format!(
                "{}\0{issuer}\0{}\0{}\0{}\0{:?}\0{}\0{clock_skew_seconds}\0{}",
                raw.name,
                raw.audiences.join(" "),
                raw.principal_claim,
                mappings.join(" "),
                raw.max_lifetime_seconds,
                raw.require_expiration.unwrap_or(false),
                claim_table.join("\0")
            );
            let at = format!("{path}.introspection");
            Some(super::introspection::compile(introspection, &at, raw.issuer.clone(), &identity, env)?)
        }
        None => None,
    };
    let dpop = super::dpop::compile(raw.dpop.as_ref(), path)?;
    let opaque_binding = "is for JWTs: bound opaque tokens are refused (their binding is not checked yet)";
    if raw.require_certificate_binding && introspection.is_some() {
        return Err(ConfigError::new(format!("{path}.require_certificate_binding"), opaque_binding));
    }
    if dpop.is_some() && introspection.is_some() {
        return Err(ConfigError::new(format!("{path}.dpop"), opaque_binding));
    }
    if dpop.is_some() && raw.require_certificate_binding {
        let message = "require_certificate_binding refuses every token bound to a key (a token has one binding)";
        return Err(ConfigError::new(format!("{path}.dpop"), message));
    }
    // Introspection answers need not say when the token expires (RFC 7662 2.2).
    let require_expiration = raw.require_expiration.unwrap_or(introspection.is_none());
    Ok(Provider {
        name: raw.name,
        issuer,
        issuer_aliases: Vec::new(),
        kind: ProviderKind::IdentityProvider,
        audiences: raw.audiences,
        local_keys,
        fetch,
        require_expiration,
        max_lifetime_seconds: raw.max_lifetime_seconds,
        principal_claim: raw.principal_claim,
        claim_to_headers,
        privileges: Rc::new(privileges),
        introspection,
        condition_claims: Rc::clone(claim_table),
        output,
        require_certificate_binding: raw.require_certificate_binding,
        dpop,
    })
}

/// `forward`, `forward_payload_header` and `payload_in_filter_state` (a payload only a JWS has).
fn token_output(raw: &RawProvider, path: &str) -> Result<TokenOutput, ConfigError> {
    if raw.introspection.is_some() && (raw.forward_payload_header.is_some() || raw.payload_in_filter_state) {
        // The field the user wrote, not the introspection it clashes with.
        let field =
            if raw.forward_payload_header.is_some() { "forward_payload_header" } else { "payload_in_filter_state" };
        let message =
            "is for JWTs: an introspected token has no payload to hand on (claim_to_headers hands on its claims)";
        return Err(ConfigError::new(format!("{path}.{field}"), message));
    }
    let payload_header = match &raw.forward_payload_header {
        Some(name) => {
            let at = format!("{path}.forward_payload_header");
            let header = header_name(name, &at)?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(ConfigError::new(at, "names a header that frames or routes the request"));
            }
            Some(header)
        }
        None => None,
    };
    Ok(TokenOutput { forward: raw.forward, payload_header, payload_in_filter_state: raw.payload_in_filter_state })
}
