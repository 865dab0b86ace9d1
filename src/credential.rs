//! Extraction and parsing of credentials from request headers (and, only where
//! configured, a query parameter and cookies), and what of them must not go
//! upstream. Nothing here checks a secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::api_key::ApiKeys;
use crate::cookie;
use crate::query::{self, percent_decode};
use crate::reason::Reason;
use crate::request::{is_underscore_spelling_of, RequestFacts};

/// Bounds on what a client sends, checked before any decoding.
pub const MAX_AUTHORIZATION_BYTES: usize = 16 * 1024;
pub const MAX_API_KEY_BYTES: usize = 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Credential {
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
    /// An API key, with where it came from.
    ApiKey {
        key: String,
        source: ApiKeySource,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    Header(String),
    Query(String),
    Cookie(String),
}

/// A credential that is present but cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    TooLarge,
    /// A Bearer token longer than the Authorization bound: answered as a bad token (RFC 6750).
    BearerTooLarge,
    /// More than one Authorization header, or one API key header, parameter or cookie given twice: ambiguous.
    Ambiguous,
    BasicNotBase64,
    BasicNoColon,
    BasicNotUtf8,
    EmptyBearer,
    EmptyApiKey,
}

impl CredentialError {
    pub fn description(&self) -> &'static str {
        match self {
            CredentialError::TooLarge => "credential too large",
            CredentialError::BearerTooLarge => "token too large",
            CredentialError::Ambiguous => "more than one credential of a kind",
            CredentialError::BasicNotBase64 => "Basic credentials are not base64",
            CredentialError::BasicNoColon => "Basic credentials need user:password",
            CredentialError::BasicNotUtf8 => "Basic credentials are not UTF-8",
            CredentialError::EmptyBearer => "empty bearer token",
            CredentialError::EmptyApiKey => "empty API key",
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            CredentialError::TooLarge => Reason::CredentialTooLarge,
            CredentialError::BearerTooLarge => Reason::JwtTooLarge,
            CredentialError::Ambiguous => Reason::CredentialAmbiguous,
            CredentialError::BasicNotBase64 | CredentialError::BasicNoColon | CredentialError::BasicNotUtf8 => {
                Reason::BasicMalformed
            }
            CredentialError::EmptyBearer => Reason::JwtMalformed,
            CredentialError::EmptyApiKey => Reason::ApiKeyMalformed,
        }
    }

    /// Whether the failed credential was meant as a Bearer token (its challenge then carries RFC 6750 `error=`).
    pub fn is_bearer(&self) -> bool {
        matches!(self, CredentialError::EmptyBearer | CredentialError::BearerTooLarge)
    }
}

/// Find the request's credential: the Authorization header (Basic or Bearer)
/// first, then the configured API key headers, then the query parameter, then
/// the cookies.
/// `Ok(None)` means no credential of a kind this filter reads.
pub fn extract(request: &RequestFacts, api_keys: &ApiKeys) -> Result<Option<Credential>, CredentialError> {
    let mut authorization = request.header_values("authorization");
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return Err(CredentialError::Ambiguous);
        }
        if let Some(credential) = parse_authorization(value)? {
            return Ok(Some(credential));
        }
    }
    for header in &api_keys.headers {
        let mut values = request.header_values(header);
        if let Some(key) = values.next() {
            if values.next().is_some() {
                return Err(CredentialError::Ambiguous);
            }
            return api_key(key, ApiKeySource::Header(header.clone())).map(Some);
        }
    }
    if let Some(param) = &api_keys.query_param {
        if let Some(key) = query_value(request.path, param)? {
            return api_key(&key, ApiKeySource::Query(param.clone())).map(Some);
        }
    }
    for name in &api_keys.cookies {
        if let Some(key) = cookie::value(request, name).map_err(|_| CredentialError::Ambiguous)? {
            return api_key(key, ApiKeySource::Cookie(name.clone())).map(Some);
        }
    }
    Ok(None)
}

fn api_key(key: &str, source: ApiKeySource) -> Result<Credential, CredentialError> {
    let key = key.trim();
    if key.len() > MAX_API_KEY_BYTES {
        return Err(CredentialError::TooLarge);
    }
    if key.is_empty() {
        return Err(CredentialError::EmptyApiKey);
    }
    Ok(Credential::ApiKey { key: key.to_string(), source })
}

/// Parse `Authorization`. A scheme this filter does not read gives `Ok(None)`.
fn parse_authorization(value: &str) -> Result<Option<Credential>, CredentialError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim_start();
    if value.len() > MAX_AUTHORIZATION_BYTES {
        let bearer = scheme.eq_ignore_ascii_case("bearer");
        return Err(if bearer { CredentialError::BearerTooLarge } else { CredentialError::TooLarge });
    }
    // Schemes are case-insensitive (RFC 9110 11.1).
    if scheme.eq_ignore_ascii_case("basic") {
        parse_basic(rest).map(Some)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(CredentialError::EmptyBearer);
        }
        Ok(Some(Credential::Bearer(rest.to_string())))
    } else {
        Ok(None)
    }
}

fn parse_basic(encoded: &str) -> Result<Credential, CredentialError> {
    let decoded = STANDARD.decode(encoded).map_err(|_| CredentialError::BasicNotBase64)?;
    let text = String::from_utf8(decoded).map_err(|_| CredentialError::BasicNotUtf8)?;
    // RFC 7617: the user-id ends at the first colon; the password may contain colons.
    let (user, password) = text.split_once(':').ok_or(CredentialError::BasicNoColon)?;
    Ok(Credential::Basic { user: user.to_string(), password: password.to_string() })
}

/// The percent-decoded value of `param` in the query of `path`, if present once.
fn query_value(path: &str, param: &str) -> Result<Option<String>, CredentialError> {
    let Some(value) = query::raw_value(path, param).map_err(|_| CredentialError::Ambiguous)? else {
        return Ok(None);
    };
    if value.len() > MAX_API_KEY_BYTES * 3 {
        return Err(CredentialError::TooLarge);
    }
    percent_decode(value).map(Some).ok_or(CredentialError::EmptyApiKey)
}

/// What must not reach the upstream: every credential the filter reads, except the
/// verified one when `forward` is set (`forward_credentials`). A second credential
/// next to the verified one was never checked, and an upstream reading it would
/// revive a disabled key.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CredentialRemoval {
    pub headers: Vec<String>,
    /// The new `:path` when the query string carried an API key.
    pub path: Option<String>,
    /// The new `Cookie` value when a cookie carried a credential (empty: no cookie left).
    pub cookie: Option<String>,
}

pub fn credential_removal(
    request: &RequestFacts,
    api_keys: &ApiKeys,
    verified: Option<&Credential>,
    forward: bool,
) -> CredentialRemoval {
    let kept = if forward { verified } else { None };
    let mut removal = CredentialRemoval::default();
    let authorization_kept = matches!(kept, Some(Credential::Basic { .. } | Credential::Bearer(_)));
    if !authorization_kept && request.header_values("authorization").any(is_read_scheme) {
        removal.headers.push("authorization".to_string());
    }
    let kept_source = match kept {
        Some(Credential::ApiKey { source, .. }) => Some(source),
        _ => None,
    };
    for header in &api_keys.headers {
        let header_kept = matches!(kept_source, Some(ApiKeySource::Header(h)) if h == header);
        if !header_kept && request.header_values(header).next().is_some() {
            removal.headers.push(header.clone());
        }
    }
    // A CGI, WSGI or PHP upstream reads `x_api_key` as `x-api-key`: never the verified one.
    for (name, _) in request.headers {
        let spelling = name.contains('_') && !api_keys.headers.contains(name) && !removal.headers.contains(name);
        if spelling && api_keys.headers.iter().any(|header| is_underscore_spelling_of(name, header)) {
            removal.headers.push(name.clone());
        }
    }
    if let Some(param) = &api_keys.query_param {
        let keep: &[&str] = match kept_source {
            Some(ApiKeySource::Query(_)) => &[param.as_str()],
            _ => &[],
        };
        removal.path = query::without_params(request.path, &[param.as_str()], keep);
    }
    if !api_keys.cookies.is_empty() {
        let names: Vec<&str> = api_keys.cookies.iter().map(String::as_str).collect();
        let keep: Vec<&str> = match kept_source {
            Some(ApiKeySource::Cookie(name)) => vec![name.as_str()],
            _ => Vec::new(),
        };
        removal.cookie = cookie::without_cookies(request, &names, &keep);
    }
    removal
}

/// Whether an `Authorization` value uses a scheme this filter reads.
fn is_read_scheme(value: &str) -> bool {
    let scheme = value.trim_start().split(' ').next().unwrap_or("");
    scheme.eq_ignore_ascii_case("basic") || scheme.eq_ignore_ascii_case("bearer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(query: Option<&str>) -> ApiKeys {
        ApiKeys {
            headers: vec!["x-api-key".into(), "x-cdata-authtoken".into()],
            query_param: query.map(String::from),
            cookies: vec!["apikey".into(), "legacy_key".into()],
            allow_basic: true,
            clients: vec![],
        }
    }

    fn extract_from(
        path: &str,
        headers: &[(&str, &str)],
        query: Option<&str>,
    ) -> Result<Option<Credential>, CredentialError> {
        let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        extract(&RequestFacts::new("GET", path, &headers), &keys(query))
    }

    fn basic(user: &str, password: &str) -> Credential {
        Credential::Basic { user: user.into(), password: password.into() }
    }

    #[test]
    fn basic_credentials() {
        let header = format!("Basic {}", STANDARD.encode("alice:pa:ss"));
        assert_eq!(extract_from("/", &[("authorization", &header)], None), Ok(Some(basic("alice", "pa:ss"))));
        let lower = format!("basic   {}", STANDARD.encode("bob:"));
        assert_eq!(extract_from("/", &[("authorization", &lower)], None), Ok(Some(basic("bob", ""))));
    }

    #[test]
    fn malformed_basic() {
        let no_colon = format!("Basic {}", STANDARD.encode("alice"));
        assert_eq!(extract_from("/", &[("authorization", &no_colon)], None), Err(CredentialError::BasicNoColon));
        assert_eq!(extract_from("/", &[("authorization", "Basic %%%")], None), Err(CredentialError::BasicNotBase64));
        let latin1 = format!("Basic {}", STANDARD.encode([0xff, b':', b'x']));
        assert_eq!(extract_from("/", &[("authorization", &latin1)], None), Err(CredentialError::BasicNotUtf8));
    }

    #[test]
    fn bearer() {
        assert_eq!(
            extract_from("/", &[("authorization", "Bearer a.b.c")], None),
            Ok(Some(Credential::Bearer("a.b.c".into())))
        );
        assert_eq!(extract_from("/", &[("authorization", "Bearer ")], None), Err(CredentialError::EmptyBearer));
        assert_eq!(extract_from("/", &[("authorization", "bearer")], None), Err(CredentialError::EmptyBearer));
    }

    #[test]
    fn unknown_scheme_is_no_credential() {
        assert_eq!(extract_from("/", &[("authorization", "Digest x=y")], None), Ok(None));
        assert_eq!(extract_from("/", &[], None), Ok(None));
    }

    #[test]
    fn two_authorization_headers_are_ambiguous() {
        let headers = [("authorization", "Bearer a.b.c"), ("authorization", "Bearer d.e.f")];
        assert_eq!(extract_from("/", &headers, None), Err(CredentialError::Ambiguous));
    }

    #[test]
    fn oversized_authorization() {
        let huge = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert_eq!(extract_from("/", &[("authorization", &huge)], None), Err(CredentialError::BearerTooLarge));
        assert!(CredentialError::BearerTooLarge.is_bearer());
        let huge = format!("Basic {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert_eq!(extract_from("/", &[("authorization", &huge)], None), Err(CredentialError::TooLarge));
    }

    #[test]
    fn api_key_headers_in_order() {
        let found = extract_from("/", &[("x-cdata-authtoken", "k2")], None).unwrap().unwrap();
        assert_eq!(
            found,
            Credential::ApiKey { key: "k2".into(), source: ApiKeySource::Header("x-cdata-authtoken".into()) }
        );
        assert_eq!(extract_from("/", &[("x-api-key", " ")], None), Err(CredentialError::EmptyApiKey));
    }

    #[test]
    fn query_param_only_where_configured() {
        assert_eq!(extract_from("/x?api_key=k1", &[], None), Ok(None));
        let found = extract_from("/x?a=1&api_key=k%2B1&b=2", &[], Some("api_key")).unwrap().unwrap();
        assert_eq!(found, Credential::ApiKey { key: "k+1".into(), source: ApiKeySource::Query("api_key".into()) });
        assert_eq!(extract_from("/x?api_key=a&api_key=b", &[], Some("api_key")), Err(CredentialError::Ambiguous));
        assert_eq!(extract_from("/x?api_key=%zz", &[], Some("api_key")), Err(CredentialError::EmptyApiKey));
    }

    #[test]
    fn api_key_cookies_after_headers_and_the_param() {
        let cookie = |name: &str| Credential::ApiKey { key: "c1".into(), source: ApiKeySource::Cookie(name.into()) };
        let found = extract_from("/", &[("cookie", "theme=dark; legacy_key=c1")], None);
        assert_eq!(found, Ok(Some(cookie("legacy_key"))));
        let both = [("cookie", "legacy_key=c2; apikey=c1")];
        assert_eq!(extract_from("/", &both, None), Ok(Some(cookie("apikey"))));
        let header_first = [("cookie", "apikey=c1"), ("x-api-key", "h1")];
        let found = extract_from("/x?api_key=q1", &header_first, Some("api_key")).unwrap().unwrap();
        assert!(matches!(found, Credential::ApiKey { source: ApiKeySource::Header(_), .. }));
        let found = extract_from("/x?api_key=q1", &[("cookie", "apikey=c1")], Some("api_key")).unwrap().unwrap();
        assert!(matches!(found, Credential::ApiKey { source: ApiKeySource::Query(_), .. }));
    }

    #[test]
    fn an_api_key_cookie_sent_twice_is_ambiguous() {
        let twice = [("cookie", "apikey=c1"), ("cookie", "apikey=c2")];
        assert_eq!(extract_from("/", &twice, None), Err(CredentialError::Ambiguous));
        assert_eq!(extract_from("/", &[("cookie", "apikey=")], None), Err(CredentialError::EmptyApiKey));
        let huge = format!("apikey={}", "k".repeat(MAX_API_KEY_BYTES + 1));
        assert_eq!(extract_from("/", &[("cookie", &huge)], None), Err(CredentialError::TooLarge));
    }

    fn removal(
        headers: &[(&str, &str)],
        path: &str,
        verified: Option<&Credential>,
        forward: bool,
    ) -> CredentialRemoval {
        let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        credential_removal(&RequestFacts::new("GET", path, &headers), &keys(Some("api_key")), verified, forward)
    }

    #[test]
    fn every_unverified_credential_is_removed() {
        let bearer = Credential::Bearer("t".into());
        let all = [("authorization", "Bearer t"), ("x-api-key", "D1"), ("x-cdata-authtoken", "D2")];
        let r = removal(&all, "/x?api_key=D3", Some(&bearer), false);
        assert_eq!(r.headers, vec!["authorization", "x-api-key", "x-cdata-authtoken"]);
        assert_eq!(r.path.as_deref(), Some("/x"));
        // Forwarding keeps the verified credential only.
        let r = removal(&all, "/x?api_key=D3", Some(&bearer), true);
        assert_eq!(r.headers, vec!["x-api-key", "x-cdata-authtoken"]);
        let key = Credential::ApiKey { key: "K".into(), source: ApiKeySource::Header("x-api-key".into()) };
        let r = removal(&all, "/x", Some(&key), true);
        assert_eq!(r.headers, vec!["authorization", "x-cdata-authtoken"]);
        assert_eq!(r.path, None);
        // Schemes the filter does not read are the upstream's business.
        let r = removal(&[("authorization", "Digest x=y")], "/", None, false);
        assert!(r.headers.is_empty());
    }

    #[test]
    fn credential_cookies_and_underscore_headers_are_removed() {
        let headers = [("cookie", "a=1; apikey=K; ApiKey=D"), ("cookie", "legacy.key=D; b=2"), ("x_api_key", "D")];
        let r = removal(&headers, "/", None, false);
        assert_eq!(r.headers, vec!["x_api_key"]);
        assert_eq!(r.cookie.as_deref(), Some("a=1; b=2"));
        let key = Credential::ApiKey { key: "K".into(), source: ApiKeySource::Cookie("apikey".into()) };
        let r = removal(&headers, "/", Some(&key), true);
        assert_eq!(r.headers, vec!["x_api_key"]);
        assert_eq!(r.cookie.as_deref(), Some("a=1; apikey=K; b=2"));
        assert_eq!(removal(&[("cookie", "a=1")], "/", None, false).cookie, None);
    }
}
