//! Where tokens are read, across providers: each place once, bound to every
//! provider that names it, and never two places (or a token place and an API key
//! place) that one value could be read from as both.

use super::error::ConfigError;
use super::jwt::TokenPlaces;
use crate::api_key::ApiKeys;
use crate::jwt::ProviderId;
use crate::query::lenient_name;
use crate::token_location::{TokenLocation, TokenLocations, TokenPlace};

/// `configured`: each provider's own places (`jwt.providers[i]`, by index); the
/// other `providers` (keypairs, the token endpoint) read `Authorization: Bearer`.
pub(super) fn compile(
    configured: Vec<TokenPlaces>,
    providers: usize,
    api_keys: &ApiKeys,
) -> Result<TokenLocations, ConfigError> {
    let by_default = (0..providers).filter(|&i| configured.get(i).is_none_or(Vec::is_empty)).map(ProviderId).collect();
    let mut locations = TokenLocations::bearer(by_default);
    // Where each location was configured first, for messages.
    let mut origins = vec!["Authorization: Bearer (the default)".to_string()];
    for (i, places) in configured.into_iter().enumerate() {
        let provider = ProviderId(i);
        for (place, at) in places {
            if let Some(location) = locations.locations.iter_mut().find(|location| location.place == place) {
                if location.readers.contains(&provider) {
                    return Err(ConfigError::new(at, "is already listed"));
                }
                location.readers.push(provider);
                continue;
            }
            if let Some(other) = locations.locations.iter().position(|location| overlap(&location.place, &place)) {
                let origin = origins.get(other).map_or("", String::as_str);
                return Err(ConfigError::new(at, format!("overlaps {origin}: one value could be read as both")));
            }
            if let Some(message) = api_key_place(&place, api_keys) {
                return Err(ConfigError::new(at, message));
            }
            origins.push(at);
            locations.locations.push(TokenLocation { place, readers: vec![provider] });
        }
    }
    Ok(locations)
}

/// Two different places that one value could be read from as both: prefixes of one
/// header that start alike, names that a lenient parser reads as one.
fn overlap(a: &TokenPlace, b: &TokenPlace) -> bool {
    match (a, b) {
        (TokenPlace::Header { name: a, prefix: p }, TokenPlace::Header { name: b, prefix: q }) => {
            let (p, q) = (p.trim_end(), q.trim_end());
            a == b && (p.starts_with(q) || q.starts_with(p))
        }
        (TokenPlace::Param(a), TokenPlace::Param(b)) | (TokenPlace::Cookie(a), TokenPlace::Cookie(b)) => {
            lenient_name(a) == lenient_name(b)
        }
        _ => false,
    }
}

/// A token place that is also an API key's: which credential it holds would be a guess.
fn api_key_place(place: &TokenPlace, api_keys: &ApiKeys) -> Option<&'static str> {
    let spells = |name: &str, other: &str| lenient_name(name) == lenient_name(other);
    match place {
        TokenPlace::Header { name, .. } => {
            api_keys.headers.contains(name).then_some("is also an API key header (api_keys.headers)")
        }
        TokenPlace::Param(name) => api_keys
            .query_param
            .as_deref()
            .is_some_and(|param| spells(name, param))
            .then_some("is also the API key parameter (api_keys.query_param), in some spelling"),
        TokenPlace::Cookie(name) => api_keys
            .cookies
            .iter()
            .any(|cookie| spells(name, cookie))
            .then_some("is also an API key cookie (api_keys.cookies), in some spelling"),
    }
}
