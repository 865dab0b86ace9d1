//! Token principals as Istio names them (`requestPrincipals`): `<iss>/<sub>` of a
//! verified JWT, matched exactly, by prefix (`https://corp.example/*`), by suffix
//! (`*/alice`), or present at all (`*`). Only a JWT provider's tokens have one: a
//! Basic user, an API client, a keypair or an introspected token never matches.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestPrincipal {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `*`: any token principal.
    Present,
}

impl RequestPrincipal {
    /// Istio's forms: `*` alone or at one end only; the rest non-empty, without control characters.
    pub fn parse(text: &str) -> Result<RequestPrincipal, &'static str> {
        const FORMS: &str = "must be <iss>/<sub>, with at most one '*' at the start or the end (or \"*\")";
        if text.chars().any(char::is_control) {
            return Err(FORMS);
        }
        let pattern = match (text.strip_prefix('*'), text.strip_suffix('*')) {
            _ if text == "*" => RequestPrincipal::Present,
            (Some(suffix), None) => RequestPrincipal::Suffix(suffix.to_string()),
            (None, Some(prefix)) => RequestPrincipal::Prefix(prefix.to_string()),
            (None, None) => RequestPrincipal::Exact(text.to_string()),
            (Some(_), Some(_)) => return Err(FORMS),
        };
        match &pattern {
            RequestPrincipal::Exact(rest) | RequestPrincipal::Prefix(rest) | RequestPrincipal::Suffix(rest)
                if rest.is_empty() || rest.contains('*') =>
            {
                Err(FORMS)
            }
            _ => Ok(pattern),
        }
    }

    /// Whether a token's `iss/sub` matches (None: no token principal).
    pub fn matches(&self, request_principal: Option<&str>) -> bool {
        let Some(name) = request_principal else { return false };
        match self {
            RequestPrincipal::Exact(exact) => name == exact,
            RequestPrincipal::Prefix(prefix) => name.starts_with(prefix.as_str()),
            RequestPrincipal::Suffix(suffix) => name.ends_with(suffix.as_str()),
            RequestPrincipal::Present => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_forms() {
        let p = |text| RequestPrincipal::parse(text).unwrap();
        let corp = Some("https://corp.example/alice");
        assert!(p("https://corp.example/alice").matches(corp));
        assert!(!p("https://corp.example/alic").matches(corp));
        assert!(p("https://corp.example/*").matches(corp));
        assert!(!p("https://other.example/*").matches(corp));
        assert!(p("*/alice").matches(corp));
        assert!(!p("*/bob").matches(corp));
        assert!(p("*").matches(corp));
        // No token principal: nothing matches, not even `*`.
        for pattern in ["*", "*/alice", "https://corp.example/*"] {
            assert!(!p(pattern).matches(None), "{pattern}");
        }
        for bad in ["", "**", "*a*", "a*b", "*a*b", "a/\n"] {
            assert!(RequestPrincipal::parse(bad).is_err(), "{bad:?}");
        }
    }
}
