//! Claim checks (RFC 7519 section 4.1) and what a valid token yields: principal,
//! claim headers. Runs only after the signature is good.

use serde_json::{Map, Value};

use super::error::JwtError;
use super::provider::Provider;
use crate::token_claims::ClaimValues;

/// Longest value taken from a claim into a header.
pub(super) const MAX_HEADER_VALUE_BYTES: usize = 4096;

/// A claim by dotted path: the whole name first (names may contain dots, such as
/// "https://example.com/roles"), then walking nested objects segment by segment.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, dotted: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(dotted) {
        return Some(value);
    }
    let mut segments = dotted.split('.');
    let mut value = claims.get(segments.next()?)?;
    for segment in segments {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

/// The values of the claims `rules[].claims` test (`condition_claims`), read as `claim_to_headers` reads them.
pub(crate) fn condition_values(claims: &Map<String, Value>, provider: &Provider) -> ClaimValues {
    let mut values = ClaimValues::default();
    for (place, name) in provider.condition_claims.iter().enumerate() {
        if let Some(claim) = claim_at(claims, name) {
            values.add(place, claim);
        }
    }
    values
}

/// The token's times, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub expires_at: Option<u64>,
    pub issued_at: Option<u64>,
}

/// Time, audience and lifetime checks.
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    provider: &Provider,
    now: u64,
    skew: u64,
) -> Result<Times, JwtError> {
    let expires_at = numeric_date(claims, "exp")?;
    let not_before = numeric_date(claims, "nbf")?;
    let issued_at = numeric_date(claims, "iat")?;

    // A maximum lifetime means nothing for a token that never expires.
    if expires_at.is_none() && (provider.require_expiration || provider.max_lifetime_seconds.is_some()) {
        return Err(JwtError::MissingExpiration);
    }
    if expires_at.is_some_and(|exp| now > exp.saturating_add(skew)) {
        return Err(JwtError::Expired);
    }
    let latest_acceptable_start = now.saturating_add(skew);
    if not_before.is_some_and(|nbf| nbf > latest_acceptable_start)
        || issued_at.is_some_and(|iat| iat > latest_acceptable_start)
    {
        return Err(JwtError::NotYetValid);
    }
    if !provider.audiences.is_empty() && !audience_allowed(claims.get("aud"), &provider.audiences) {
        return Err(JwtError::WrongAudience);
    }
    if let (Some(max), Some(exp)) = (provider.max_lifetime_seconds, expires_at) {
        if exp.saturating_sub(issued_at.unwrap_or(now)) > max {
            return Err(JwtError::LifetimeTooLong);
        }
    }
    Ok(Times { expires_at, issued_at })
}

/// Most scopes read from one token (a longer list is cut, not refused).
const MAX_SCOPES: usize = 64;

/// The scopes a token holds: `scope` (space-separated, RFC 8693 4.2) and `scp`
/// (a string or an array of strings, as Azure AD and Okta write it).
pub(crate) fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    let mut add = |scope: &str| {
        if !scope.is_empty() && scopes.len() < MAX_SCOPES && !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_string());
        }
    };
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(text)) => text.split(' ').for_each(&mut add),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(&mut add),
            _ => {}
        }
    }
    scopes
}

/// `jti`, when it is a string of usable length.
pub(crate) fn token_id(claims: &Map<String, Value>) -> Option<String> {
    claims.get("jti").and_then(Value::as_str).filter(|jti| !jti.is_empty() && jti.len() <= 256).map(String::from)
}

/// 9999-12-31T23:59:59Z: a later time (`1e308`, `2^64`) is a way of saying "never", not a date.
pub(super) const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// RFC 7519 NumericDate: seconds, possibly fractional, up to MAX_NUMERIC_DATE; anything else is malformed.
pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let seconds = value.as_u64().or_else(|| {
        value.as_f64().filter(|s| s.is_finite() && *s >= 0.0 && *s <= MAX_NUMERIC_DATE as f64).map(|s| s as u64)
    });
    seconds.filter(|s| *s <= MAX_NUMERIC_DATE).map(Some).ok_or(JwtError::Malformed)
}

fn audience_allowed(aud: Option<&Value>, allowed: &[String]) -> bool {
    match aud {
        Some(Value::String(audience)) => allowed.contains(audience),
        Some(Value::Array(audiences)) => {
            audiences.iter().filter_map(Value::as_str).any(|audience| allowed.iter().any(|a| a == audience))
        }
        _ => false,
    }
}

/// The principal claim: a non-empty string or an integer, usable as a header value.
/// Not a fraction or an integer past 64 bits: JSON reads those as floats, and two
/// subjects that round to one float would name one principal.
pub(crate) fn principal(claims: &Map<String, Value>, principal_claim: &str) -> Result<String, JwtError> {
    let id = match claim_at(claims, principal_claim) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) if !number.is_f64() => number.to_string(),
        Some(Value::Number(_)) => return Err(JwtError::InvalidPrincipal),
        _ => return Err(JwtError::MissingPrincipal),
    };
    if id.is_empty() {
        return Err(JwtError::MissingPrincipal);
    }
    // " admin" must not become `admin` upstream once a proxy trims the value.
    if is_safe_header_value(&id) && id.trim() == id {
        Ok(id)
    } else {
        Err(JwtError::InvalidPrincipal)
    }
}

/// `(header, value)` per mapping whose claim is present and safe to forward.
pub(crate) fn claim_headers(claims: &Map<String, Value>, provider: &Provider) -> Vec<(String, String)> {
    provider
        .claim_to_headers
        .iter()
        .filter_map(|mapping| {
            let value = header_value(claim_at(claims, &mapping.claim)?)?;
            Some((mapping.header.clone(), value))
        })
        .collect()
}

/// Strings as they are, arrays joined with ",", other values as JSON text.
fn header_value(claim: &Value) -> Option<String> {
    let text = match claim {
        Value::Null => return None,
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(element_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    };
    is_safe_header_value(&text).then_some(text)
}

fn element_text(item: &Value) -> String {
    match item {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Non-empty, bounded, and free of control characters (CR, LF and NUL above all),
/// so a claim can never split or smuggle a header.
fn is_safe_header_value(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_HEADER_VALUE_BYTES
        && !text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
}
