//! `jwt`: the providers, each compiled once into its final value (keys parsed
//! and bound to algorithms, remote key set ready to be fetched).

use std::collections::HashSet;

use std::rc::Rc;

use super::error::ConfigError;
use super::names::{header_name, non_empty};
use super::policy::{privileges, PrivilegeFields};
use super::remote::{fetch_config, Document};
use super::schema::{default_jwks_wait_ms, RawJwt, RawProvider};
use crate::jwt::{ClaimToHeader, Issuer, KeySet, Provider};
use crate::limits::Limits;
use crate::remote::RemoteDocument;

const MAX_JWKS_WAIT_MS: u64 = 30_000;

/// Headers that frame or route the request: a claim must never set them.
const RESERVED_HEADERS: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade", "proxy-connection"];

/// The providers and how long a request may wait for remote keys.
pub fn compile(raw: Option<RawJwt>, limits: &Limits) -> Result<(Vec<Provider>, u64), ConfigError> {
    let Some(raw) = raw else {
        return Ok((Vec::new(), default_jwks_wait_ms()));
    };
    if raw.jwks_wait_ms > MAX_JWKS_WAIT_MS {
        return Err(ConfigError::new("jwt.jwks_wait_ms", format!("must be at most {MAX_JWKS_WAIT_MS}")));
    }
    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut names = HashSet::new();
    let mut issuers = HashSet::new();
    for (i, provider) in raw.providers.into_iter().enumerate() {
        let path = format!("jwt.providers[{i}]");
        let provider = compile_provider(provider, limits, &path)?;
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

fn compile_provider(raw: RawProvider, limits: &Limits, path: &str) -> Result<Provider, ConfigError> {
    non_empty(&raw.name, &format!("{path}.name"))?;
    non_empty(&raw.issuer, &format!("{path}.issuer"))?;
    for (i, audience) in raw.audiences.iter().enumerate() {
        non_empty(audience, &format!("{path}.audiences[{i}]"))?;
    }
    if raw.local_jwks.is_none() && raw.local_pem.is_none() && raw.remote_jwks.is_none() && raw.discovery.is_none() {
        return Err(ConfigError::new(path, "needs local_jwks, local_pem, remote_jwks or discovery"));
    }
    if raw.max_lifetime_seconds == Some(0) {
        return Err(ConfigError::new(format!("{path}.max_lifetime_seconds"), "must be greater than 0"));
    }
    non_empty(&raw.principal_claim, &format!("{path}.principal_claim"))?;

    let mut local_keys = KeySet::default();
    if let Some(jwks) = &raw.local_jwks {
        local_keys.extend(KeySet::from_jwks(jwks, &format!("{path}.local_jwks"))?);
    }
    if let Some(pem) = &raw.local_pem {
        local_keys.extend(KeySet::from_pem(pem, None, &format!("{path}.local_pem"))?);
    }

    let fetch = match (raw.remote_jwks, raw.discovery) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(format!("{path}.discovery"), "cannot be combined with remote_jwks"));
        }
        (Some(remote), None) => Some(fetch_config(remote, &format!("{path}.remote_jwks"), Document::Jwks)?),
        (None, Some(discovery)) => Some(fetch_config(discovery, &format!("{path}.discovery"), Document::Discovery)?),
        (None, None) => None,
    };
    let identity = format!("jwks\0{}\0{}", raw.name, raw.issuer);
    let remote = fetch.map(|fetch| RemoteDocument::new(fetch, &identity, KeySet::from_remote_jwks));

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

    let fields = PrivilegeFields {
        methods: raw.methods,
        paths: raw.paths,
        scopes: Vec::new(),
        trusted_networks: raw.trusted_networks,
        requests_per_hour: raw.requests_per_hour,
        max_concurrent: raw.max_concurrent,
    };
    let privileges = privileges(fields, limits, path)?;
    Ok(Provider {
        name: raw.name,
        issuer: raw.issuer,
        issuer_aliases: Vec::new(),
        kind: Issuer::Provider,
        audiences: raw.audiences,
        local_keys,
        remote,
        require_expiration: raw.require_expiration,
        max_lifetime_seconds: raw.max_lifetime_seconds,
        principal_claim: raw.principal_claim,
        claim_to_headers,
        privileges: Rc::new(privileges),
    })
}
