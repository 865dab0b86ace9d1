//! `keypairs`: clients that sign their own short-lived tokens, compiled into
//! providers whose issuer is the key's id or its PEM text.

use std::rc::Rc;

use super::error::ConfigError;
use super::names::principal_name;
use super::policy::privileges;
use super::schema::RawKeypair;
use crate::jwt::{normalized_pem, Algorithm, KeySet, Provider, ProviderKind};
use crate::pipeline::limits::Limits;

/// The longest lifetime a keypair's tokens may be given: they are meant to be short.
const MAX_KEYPAIR_LIFETIME_SECONDS: u64 = 3600;

pub(super) fn compile(raw: Vec<RawKeypair>, limits: &Limits) -> Result<Vec<Provider>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, keypair)| keypair_provider(keypair, &format!("keypairs[{i}]"), limits))
        .collect()
}

fn keypair_provider(mut raw: RawKeypair, path: &str, limits: &Limits) -> Result<Provider, ConfigError> {
    let fields = raw.privilege_fields();
    principal_name(&raw.id, &format!("{path}.id"))?;
    let key_path = format!("{path}.public_key");
    let mut keys = KeySet::from_pem(&raw.public_key, None).map_err(|e| super::jwt::key_error(&key_path, e))?;
    if keys.len() != 1 {
        return Err(ConfigError::new(key_path, "must be exactly one PEM block"));
    }
    let fitting = keys.keys().first().map(|key| key.algorithms().to_vec()).unwrap_or_default();
    let algorithms = match raw.algorithms {
        None => defaults_for(&fitting),
        Some(names) => {
            let mut algorithms = Vec::with_capacity(names.len());
            for (j, name) in names.iter().enumerate() {
                let at = format!("{path}.algorithms[{j}]");
                let alg = Algorithm::from_name(name).ok_or_else(|| ConfigError::new(&at, "unknown algorithm"))?;
                if !fitting.contains(&alg) || matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                    return Err(ConfigError::new(at, "does not fit the key"));
                }
                algorithms.push(alg);
            }
            if algorithms.is_empty() {
                return Err(ConfigError::new(format!("{path}.algorithms"), "must name at least one algorithm"));
            }
            algorithms
        }
    };
    keys.restrict(&algorithms).map_err(|_| ConfigError::new(format!("{path}.algorithms"), "does not fit the key"))?;
    if !(1..=MAX_KEYPAIR_LIFETIME_SECONDS).contains(&raw.max_lifetime_seconds) {
        return Err(ConfigError::new(format!("{path}.max_lifetime_seconds"), "must be between 1 and 3600"));
    }
    let privileges = privileges(fields, limits, path)?;
    Ok(Provider {
        name: raw.id.clone(),
        issuer: raw.id,
        issuer_aliases: vec![normalized_pem(&raw.public_key)],
        kind: ProviderKind::Keypair { one_time: raw.one_time },
        audiences: Vec::new(),
        local_keys: keys,
        fetch: None,
        require_expiration: true,
        max_lifetime_seconds: Some(raw.max_lifetime_seconds),
        principal_claim: "sub".to_string(),
        claim_to_headers: Vec::new(),
        privileges: Rc::new(privileges),
        introspection: None,
        condition_claims: Rc::default(),
        output: Default::default(),
        require_certificate_binding: false,
        dpop: super::dpop::compile(raw.dpop.as_ref(), path)?,
    })
}

/// The algorithms a key takes by default: RS256 and PS256 for RSA, else the one that fits.
fn defaults_for(fitting: &[Algorithm]) -> Vec<Algorithm> {
    if fitting.contains(&Algorithm::RS256) {
        vec![Algorithm::RS256, Algorithm::PS256]
    } else {
        fitting.to_vec()
    }
}
