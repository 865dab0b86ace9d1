//! Where Bearer tokens are read (`from_headers`, `from_params`, `from_cookies`,
//! or `Authorization: Bearer` by default), and which providers each place is
//! bound to: a token found there verifies only for them, as Envoy's `jwt_authn`
//! binds its locations to issuers.

use crate::jwt::ProviderId;

/// A place a token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPlace {
    /// A header whose value is `prefix` (lowercase, compared without case) and then the
    /// token; empty: the whole value is the token.
    Header {
        name: String,
        prefix: String,
    },
    /// A query parameter, percent-decoded.
    Param(String),
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLocation {
    pub place: TokenPlace,
    /// The providers whose tokens it may carry.
    pub readers: Vec<ProviderId>,
}

/// Every place tokens are read from. The first is always `Authorization: Bearer`:
/// the place of providers without `from_*`, of keypairs and of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLocations {
    pub locations: Vec<TokenLocation>,
}

pub(crate) const AUTHORIZATION: &str = "authorization";
pub(crate) const BEARER_PREFIX: &str = "bearer ";

impl TokenLocations {
    /// Only `Authorization: Bearer`, bound to these providers.
    pub fn bearer(readers: Vec<ProviderId>) -> TokenLocations {
        let place = TokenPlace::Header { name: AUTHORIZATION.to_string(), prefix: BEARER_PREFIX.to_string() };
        TokenLocations { locations: vec![TokenLocation { place, readers }] }
    }

    /// Whether `provider` reads one of the places (indices in `locations`) a token was found at.
    pub fn binds(&self, found: &[usize], provider: ProviderId) -> bool {
        found.iter().any(|&i| self.locations.get(i).is_some_and(|location| location.readers.contains(&provider)))
    }

    /// The places of one kind: header names (with their prefixes), parameter or cookie names.
    pub fn headers(&self) -> impl Iterator<Item = (usize, &str, &str)> {
        self.locations.iter().enumerate().filter_map(|(i, location)| match &location.place {
            TokenPlace::Header { name, prefix } => Some((i, name.as_str(), prefix.as_str())),
            _ => None,
        })
    }

    pub fn params(&self) -> impl Iterator<Item = (usize, &str)> {
        self.locations.iter().enumerate().filter_map(|(i, location)| match &location.place {
            TokenPlace::Param(name) => Some((i, name.as_str())),
            _ => None,
        })
    }

    pub fn cookies(&self) -> impl Iterator<Item = (usize, &str)> {
        self.locations.iter().enumerate().filter_map(|(i, location)| match &location.place {
            TokenPlace::Cookie(name) => Some((i, name.as_str())),
            _ => None,
        })
    }
}

/// The token in a header value that starts with `prefix` (lowercase): compared
/// without case (schemes are, RFC 9110 11.1), a prefix that ends in a space taking
/// any run of spaces and tabs there. None when the value does not start so.
pub(crate) fn after_prefix<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    const BLANKS: [char; 2] = [' ', '\t'];
    let value = value.trim_matches(BLANKS);
    let word = prefix.trim_end_matches(BLANKS);
    if !value.get(..word.len())?.eq_ignore_ascii_case(word) {
        return None;
    }
    let rest = value.get(word.len()..)?;
    if word.len() < prefix.len() && !rest.is_empty() && !rest.starts_with(BLANKS) {
        return None;
    }
    Some(rest.trim_start_matches(BLANKS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_without_case_and_with_any_blanks() {
        assert_eq!(after_prefix("Bearer a.b.c", "bearer "), Some("a.b.c"));
        assert_eq!(after_prefix("  bearer \t a.b.c ", "bearer "), Some("a.b.c"));
        assert_eq!(after_prefix("Bearer", "bearer "), Some(""));
        assert_eq!(after_prefix("Bearerish a.b.c", "bearer "), None);
        assert_eq!(after_prefix("Basic xyz", "bearer "), None);
        assert_eq!(after_prefix("Token=a.b.c", "token="), Some("a.b.c"));
        assert_eq!(after_prefix("a.b.c", ""), Some("a.b.c"));
        // Never a panic on a prefix length inside a multi-byte character.
        assert_eq!(after_prefix("é.b.c", "x"), None);
    }

    #[test]
    fn a_token_binds_to_the_readers_of_where_it_was_found() {
        let mut locations = TokenLocations::bearer(vec![ProviderId(0)]);
        locations.locations.push(TokenLocation { place: TokenPlace::Cookie("s".into()), readers: vec![ProviderId(1)] });
        assert!(locations.binds(&[0], ProviderId(0)));
        assert!(!locations.binds(&[0], ProviderId(1)));
        assert!(locations.binds(&[0, 1], ProviderId(1)));
        assert!(!locations.binds(&[7], ProviderId(0)));
    }
}
