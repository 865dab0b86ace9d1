//! `token_endpoint`: compiled into the endpoint (its paths, claims, signer) and
//! the provider that accepts its tokens.

use std::rc::Rc;

use super::error::ConfigError;
use super::names::{non_empty, principal_name};
use super::schema::RawTokenEndpoint;
use super::secrets::{self, Env};
use crate::budget::TimeBudget;
use crate::jwt::{thumbprint, Provider, ProviderKind};
use crate::path;
use crate::privileges::Privileges;
use crate::token_endpoint::signer::Signer;
use crate::token_endpoint::TokenEndpoint;

const DEFAULT_JWKS_PATH: &str = "/.well-known/jwks.json";
/// A day: past that, a token outlives any reason to exchange keys for it.
const MAX_TOKEN_LIFETIME_SECONDS: u64 = 86_400;

/// The endpoint, answering with `realm`'s challenge, and the provider of its tokens.
pub(super) fn compile(raw: RawTokenEndpoint, realm: &str, env: Env) -> Result<(TokenEndpoint, Provider), ConfigError> {
    const AT: &str = "token_endpoint";
    let field = |name: &str| format!("{AT}.{name}");
    principal_name(&raw.name, &field("name"))?;
    non_empty(&raw.issuer, &field("issuer"))?;
    for (i, audience) in raw.audiences.iter().enumerate() {
        non_empty(audience, &field(&format!("audiences[{i}]")))?;
    }
    let token_path = path::configured(&raw.path).map_err(|e| ConfigError::new(field("path"), e))?;
    if !(1..=MAX_TOKEN_LIFETIME_SECONDS).contains(&raw.lifetime_seconds) {
        return Err(ConfigError::new(field("lifetime_seconds"), "must be between 1 and 86400"));
    }
    if !super::TIME_BUDGET_RANGE.contains(&raw.signing_budget_ms_per_second) {
        return Err(ConfigError::new(field("signing_budget_ms_per_second"), "must be between 1 and 1000"));
    }
    // The key is never quoted: Signer's errors describe it, nothing more.
    let (signing_key, key_field) = secrets::signing_key(raw.signing_key, raw.signing_key_env.as_deref(), env)?;
    let signer = Signer::parse(&signing_key).map_err(|e| ConfigError::new(&key_field, e))?;
    let public = signer.public_jwk();
    let jwks_path = match (raw.jwks_path, &public) {
        (Some(_), None) => {
            return Err(ConfigError::new(field("jwks_path"), "an HS256 secret has no public key to serve"));
        }
        (None, None) => None,
        (given, Some(_)) => {
            let given = given.unwrap_or_else(|| DEFAULT_JWKS_PATH.to_string());
            let jwks_path = path::configured(&given).map_err(|e| ConfigError::new(field("jwks_path"), e))?;
            if jwks_path == token_path {
                return Err(ConfigError::new(field("jwks_path"), "must differ from path"));
            }
            Some(jwks_path)
        }
    };
    let kid = match raw.kid {
        Some(kid) => {
            non_empty(&kid, &field("kid"))?;
            kid
        }
        None => match &public {
            Some(members) => thumbprint(members),
            // No public half: a fixed id (a thumbprint of the secret would be its hash).
            None => "hs256".to_string(),
        },
    };
    let local_keys = signer.verification_keys(&kid).map_err(|e| ConfigError::new(key_field, e))?;
    let provider = Provider {
        name: raw.name.clone(),
        issuer: raw.issuer.clone(),
        issuer_aliases: Vec::new(),
        kind: ProviderKind::TokenEndpoint,
        audiences: raw.audiences.clone(),
        local_keys,
        fetch: None,
        require_expiration: true,
        max_lifetime_seconds: Some(raw.lifetime_seconds),
        principal_claim: "sub".to_string(),
        claim_to_headers: Vec::new(),
        // Unused: its principals take their API client's privileges.
        privileges: Rc::new(Privileges::default()),
        introspection: None,
        condition_claims: Rc::default(),
        output: Default::default(),
        require_certificate_binding: false,
        dpop: super::dpop::compile(raw.dpop.as_ref(), AT)?,
    };
    let endpoint = TokenEndpoint::new(
        token_path,
        jwks_path,
        raw.issuer,
        raw.audiences,
        raw.lifetime_seconds,
        kid,
        signer,
        realm.to_string(),
        TimeBudget::new(raw.signing_budget_ms_per_second),
    );
    Ok((endpoint, provider))
}
