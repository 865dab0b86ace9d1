//! Which requests skip authentication: `bypass` rules (path prefix and/or
//! method, on the normalized path) and CORS preflights where configured.

use crate::path::{has_segment_prefix, normalize};
use crate::request::RequestFacts;

/// A bypass rule matches when every condition it sets matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BypassRule {
    /// Normalized, matched at segment boundaries.
    pub path_prefix: Option<String>,
    /// Uppercase.
    pub method: Option<String>,
}

/// Whether `request` skips authentication. An ambiguous path (an encoded slash or
/// a backslash) never does: upstreams disagree on what it names.
pub fn bypassed(rules: &[BypassRule], cors_preflight: bool, request: &RequestFacts) -> bool {
    if cors_preflight && is_cors_preflight(request) {
        return true;
    }
    if rules.is_empty() {
        return false;
    }
    let path = normalize(request.path);
    if path.ambiguous {
        return false;
    }
    rules.iter().any(|rule| {
        rule.path_prefix.as_deref().is_none_or(|prefix| has_segment_prefix(&path.path, prefix))
            && rule.method.as_deref().is_none_or(|method| request.method.eq_ignore_ascii_case(method))
    })
}

/// A CORS preflight (Fetch standard): OPTIONS with `Origin` and `Access-Control-Request-Method`.
fn is_cors_preflight(request: &RequestFacts) -> bool {
    request.method == "OPTIONS"
        && request.header_values("origin").next().is_some()
        && request.header_values("access-control-request-method").next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: Option<&str>, method: Option<&str>) -> BypassRule {
        BypassRule { path_prefix: prefix.map(String::from), method: method.map(String::from) }
    }

    fn bypass(rules: &[BypassRule], method: &str, path: &str, headers: &[(&str, &str)], cors: bool) -> bool {
        let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        bypassed(rules, cors, &RequestFacts { method, path, headers: &headers })
    }

    #[test]
    fn every_condition_of_a_rule_must_match() {
        let rules = [rule(Some("/public/"), Some("GET")), rule(Some("/healthz"), None)];
        assert!(bypass(&rules, "GET", "/public/a", &[], false));
        assert!(!bypass(&rules, "POST", "/public/a", &[], false));
        assert!(bypass(&rules, "POST", "/healthz?x", &[], false));
        assert!(!bypass(&rules, "GET", "/healthzadmin", &[], false));
        assert!(!bypass(&rules, "GET", "/healthz%2Fx", &[], false));
    }

    #[test]
    fn cors_preflight_needs_origin_and_request_method() {
        let preflight = [("origin", "https://app"), ("access-control-request-method", "PUT")];
        assert!(bypass(&[], "OPTIONS", "/x", &preflight, true));
        assert!(!bypass(&[], "OPTIONS", "/x", &preflight, false));
        assert!(!bypass(&[], "OPTIONS", "/x", &preflight[..1], true));
        assert!(!bypass(&[], "GET", "/x", &preflight, true));
    }
}
