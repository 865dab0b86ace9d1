//! Extraction and parsing of credentials from request headers (and, only where
//! configured, query parameters and cookies), and what of them must not go
//! upstream. Nothing here checks a secret.

use crate::api_key::ApiKeys;
use crate::basic_auth::{self, is_basic, BasicError};
use crate::cookie;
use crate::pipeline::route::Schemes;
use crate::query::{self, percent_decode};
use crate::reason::Reason;
use crate::request::{is_underscore_spelling_of, RequestFacts};
use crate::token_location::{after_prefix, TokenLocations, TokenPlace, AUTHORIZATION};

/// Bounds on what a client sends, checked before any decoding.
pub const MAX_AUTHORIZATION_BYTES: usize = 16 * 1024;
/// The longest API key read.
pub const MAX_API_KEY_BYTES: usize = 1024;

#[derive(Debug, PartialEq, Eq)]
/// A credential as presented, not verified yet.
pub enum Credential {
    /// `Authorization: Basic`.
    Basic {
        /// The user name (or API client id).
        user: String,
        /// The password (or API key).
        password: String,
    },
    /// A token, and where it was found (indices in `TokenLocations::locations`):
    /// only the providers bound to one of those places may verify it.
    Bearer {
        /// The token.
        token: String,
        /// Indices in `TokenLocations::locations`.
        found: Vec<usize>,
    },
    /// An API key, with where it came from.
    ApiKey {
        /// The key.
        key: String,
        /// Where it was read.
        source: ApiKeySource,
    },
    /// The client certificate Envoy verified, by the name `mtls.principal_from` reads.
    Mtls {
        /// The name read from the certificate.
        name: String,
    },
}

impl Credential {
    /// Whether a rule offering `schemes` could accept a credential of this form (checked
    /// before verifying it): `user:password` may turn out to be an API client's `id:key`.
    pub fn offered(&self, schemes: Schemes) -> bool {
        match self {
            Credential::Basic { .. } => schemes.basic,
            Credential::Bearer { .. } => schemes.bearer,
            Credential::ApiKey { .. } => schemes.api_key,
            Credential::Mtls { .. } => schemes.mtls,
        }
    }
}

#[cfg(test)]
impl Credential {
    /// A token from `Authorization: Bearer` (always the first place).
    pub fn bearer(token: impl Into<String>) -> Credential {
        Credential::Bearer { token: token.into(), found: vec![0] }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Where an API key was read, with the header, parameter or cookie name.
pub enum ApiKeySource {
    /// A request header.
    Header(String),
    /// A query parameter.
    Query(String),
    /// A cookie.
    Cookie(String),
    /// A field of the form body (`api_keys.form_field`).
    Form(String),
}

/// A credential that is present but cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// Longer than the bound of its place.
    TooLarge,
    /// A Bearer token longer than the Authorization bound: answered as a bad token (RFC 6750).
    BearerTooLarge,
    /// More than one Authorization header, one API key header, parameter or cookie
    /// given twice, or two different tokens: ambiguous.
    Ambiguous,
    /// The Basic credentials are not base64.
    BasicNotBase64,
    /// The Basic credentials have no `:`.
    BasicNoColon,
    /// The Basic credentials are not UTF-8.
    BasicNotUtf8,
    /// `Bearer` with no token.
    EmptyBearer,
    /// A token in a query parameter that is not well percent-encoded.
    MalformedBearer,
    /// An API key header, parameter or cookie that is empty.
    EmptyApiKey,
}

impl CredentialError {
    /// The `error_description` sent; never echoes the credential.
    pub fn description(&self) -> &'static str {
        match self {
            CredentialError::TooLarge => "credential too large",
            CredentialError::BearerTooLarge => "token too large",
            CredentialError::Ambiguous => "more than one credential of a kind",
            CredentialError::BasicNotBase64 => "Basic credentials are not base64",
            CredentialError::BasicNoColon => "Basic credentials need user:password",
            CredentialError::BasicNotUtf8 => "Basic credentials are not UTF-8",
            CredentialError::EmptyBearer => "empty bearer token",
            CredentialError::MalformedBearer => "malformed token",
            CredentialError::EmptyApiKey => "empty API key",
        }
    }

    /// The reason it is counted under.
    pub fn reason(&self) -> Reason {
        match self {
            CredentialError::TooLarge => Reason::CredentialTooLarge,
            CredentialError::BearerTooLarge => Reason::JwtTooLarge,
            CredentialError::Ambiguous => Reason::CredentialAmbiguous,
            CredentialError::BasicNotBase64 | CredentialError::BasicNoColon | CredentialError::BasicNotUtf8 => {
                Reason::BasicMalformed
            }
            CredentialError::EmptyBearer | CredentialError::MalformedBearer => Reason::JwtMalformed,
            CredentialError::EmptyApiKey => Reason::ApiKeyMalformed,
        }
    }

    /// Whether the failed credential was meant as a Bearer token (its challenge then carries RFC 6750 `error=`).
    pub fn is_bearer(&self) -> bool {
        matches!(
            self,
            CredentialError::EmptyBearer | CredentialError::MalformedBearer | CredentialError::BearerTooLarge
        )
    }
}

/// Find the request's credential: Basic in the Authorization header first, then a
/// token in any of `tokens` (all of them are read: two different tokens are
/// ambiguous, one token found in several places is one credential), then the
/// configured API key headers, the query parameter and the cookies, in that order.
/// `Ok(None)` means no credential of a kind this filter reads.
pub fn extract(
    request: &RequestFacts,
    api_keys: &ApiKeys,
    tokens: &TokenLocations,
) -> Result<Option<Credential>, CredentialError> {
    let authorization = single(request, AUTHORIZATION)?;
    if let Some(value) = authorization.filter(|value| is_basic(value)) {
        if value.len() > MAX_AUTHORIZATION_BYTES {
            return Err(CredentialError::TooLarge);
        }
        return parse_basic(value).map(Some);
    }
    if let Some(token) = find_token(request, tokens)? {
        return Ok(Some(token));
    }
    if authorization.is_some_and(|value| value.len() > MAX_AUTHORIZATION_BYTES) {
        return Err(CredentialError::TooLarge);
    }
    find_api_key(request, api_keys)
}

/// Every credential the request carries, one per place: Basic in the Authorization
/// header, a token, an API key (what a requirement tree's `all` takes together).
pub fn extract_each(
    request: &RequestFacts,
    api_keys: &ApiKeys,
    tokens: &TokenLocations,
) -> Result<Vec<Credential>, CredentialError> {
    let mut each = Vec::new();
    let authorization = single(request, AUTHORIZATION)?;
    if authorization.is_some_and(|value| value.len() > MAX_AUTHORIZATION_BYTES) {
        return Err(CredentialError::TooLarge);
    }
    if let Some(value) = authorization.filter(|value| is_basic(value)) {
        each.push(parse_basic(value)?);
    }
    each.extend(find_token(request, tokens)?);
    each.extend(find_api_key(request, api_keys)?);
    Ok(each)
}

/// The first API key: in the configured headers, the query parameter, the cookies, the form.
fn find_api_key(request: &RequestFacts, api_keys: &ApiKeys) -> Result<Option<Credential>, CredentialError> {
    for header in &api_keys.headers {
        if let Some(key) = single(request, header)? {
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
    if let (Some(field), Some(form)) = (&api_keys.form_field, request.body) {
        if let Some(key) = query_value(&format!("?{form}"), field)? {
            return api_key(&key, ApiKeySource::Form(field.clone())).map(Some);
        }
    }
    Ok(None)
}

/// Whether the request's body must be read for its API key: a form field is
/// configured, the body is a form, and it has not been read.
pub fn awaits_form(request: &RequestFacts, api_keys: &ApiKeys) -> bool {
    let is_form = |value: &str| {
        value.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
    };
    api_keys.form_field.is_some() && request.body.is_none() && request.header_values("content-type").any(is_form)
}

/// A header's one value; the same header twice is ambiguous.
fn single<'r>(request: &'r RequestFacts, name: &'r str) -> Result<Option<&'r str>, CredentialError> {
    request.single_header(name).map_err(|_| CredentialError::Ambiguous)
}

/// The token of every place it was found at.
fn find_token(request: &RequestFacts, tokens: &TokenLocations) -> Result<Option<Credential>, CredentialError> {
    let mut found: Option<(String, Vec<usize>)> = None;
    for (i, location) in tokens.locations.iter().enumerate() {
        let Some(token) = read_token(request, &location.place)? else { continue };
        match &mut found {
            None => found = Some((token, vec![i])),
            Some((first, places)) if *first == token => places.push(i),
            Some(_) => return Err(CredentialError::Ambiguous),
        }
    }
    Ok(found.map(|(token, found)| Credential::Bearer { token, found }))
}

fn read_token(request: &RequestFacts, place: &TokenPlace) -> Result<Option<String>, CredentialError> {
    let too_large = |value: &str| value.len() > MAX_AUTHORIZATION_BYTES;
    let token = match place {
        TokenPlace::Header { name, prefix } => {
            let Some(value) = single(request, name)? else { return Ok(None) };
            let Some(token) = after_prefix(value, prefix) else { return Ok(None) };
            if too_large(value) {
                return Err(CredentialError::BearerTooLarge);
            }
            token.to_string()
        }
        TokenPlace::Param(name) => {
            let Some(raw) = query::raw_value(request.path, name).map_err(|_| CredentialError::Ambiguous)? else {
                return Ok(None);
            };
            if too_large(raw) {
                return Err(CredentialError::BearerTooLarge);
            }
            percent_decode(raw).ok_or(CredentialError::MalformedBearer)?.trim().to_string()
        }
        TokenPlace::Cookie(name) => {
            let Some(value) = cookie::value(request, name).map_err(|_| CredentialError::Ambiguous)? else {
                return Ok(None);
            };
            if too_large(value) {
                return Err(CredentialError::BearerTooLarge);
            }
            value.trim().to_string()
        }
    };
    if token.is_empty() {
        return Err(CredentialError::EmptyBearer);
    }
    Ok(Some(token))
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

/// `Basic base64(user:password)`.
fn parse_basic(value: &str) -> Result<Credential, CredentialError> {
    let (user, password) = basic_auth::credentials(value).map_err(|error| match error {
        BasicError::NotBase64 => CredentialError::BasicNotBase64,
        BasicError::NotUtf8 => CredentialError::BasicNotUtf8,
        BasicError::NoColon => CredentialError::BasicNoColon,
    })?;
    Ok(Credential::Basic { user, password })
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
/// revive a disabled key or take a token no provider vouched for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CredentialRemoval {
    /// Headers to remove.
    pub headers: Vec<String>,
    /// The new `:path` when the query string carried a credential.
    pub path: Option<String>,
    /// The new `Cookie` value when a cookie carried a credential (empty: no cookie left).
    pub cookie: Option<String>,
    /// The new form body when a form field carried a credential.
    pub form: Option<String>,
}

/// What to remove before the request goes upstream (`forward`: keep the verified credential).
pub fn credential_removal(
    request: &RequestFacts,
    api_keys: &ApiKeys,
    tokens: &TokenLocations,
    verified: &[&Credential],
    forward: bool,
) -> CredentialRemoval {
    let kept = if forward { verified } else { &[] };
    let kept_key =
        kept.iter().find_map(|c| if let Credential::ApiKey { source, .. } = c { Some(source) } else { None });
    let kept_token: &[usize] = kept
        .iter()
        .find_map(|c| if let Credential::Bearer { found, .. } = c { Some(found) } else { None })
        .map_or(&[], |f| f);
    let mut removal = CredentialRemoval::default();

    // Authorization when its scheme is one the filter reads; other schemes are the upstream's business.
    let authorization_kept = kept.iter().any(|c| matches!(c, Credential::Basic { .. }))
        || tokens.headers().any(|(i, name, _)| name == AUTHORIZATION && kept_token.contains(&i));
    let read_scheme = |value: &str| {
        is_basic(value)
            || after_prefix(value, "dpop ").is_some()
            || tokens.headers().any(|(_, name, prefix)| name == AUTHORIZATION && after_prefix(value, prefix).is_some())
    };
    if !authorization_kept && request.header_values(AUTHORIZATION).any(read_scheme) {
        removal.headers.push(AUTHORIZATION.to_string());
    }
    // A DPoP proof goes where its token goes.
    if !authorization_kept && request.header_values("dpop").next().is_some() {
        removal.headers.push("dpop".to_string());
    }
    // Every other credential header, whatever its value: (name, whether it carries the kept credential).
    let mut headers: Vec<(&str, bool)> = api_keys
        .headers
        .iter()
        .map(|h| (h.as_str(), matches!(kept_key, Some(ApiKeySource::Header(k)) if k == h)))
        .collect();
    for (i, name, _) in tokens.headers().filter(|(_, name, _)| *name != AUTHORIZATION) {
        match headers.iter_mut().find(|(known, _)| *known == name) {
            Some((_, header_kept)) => *header_kept |= kept_token.contains(&i),
            None => headers.push((name, kept_token.contains(&i))),
        }
    }
    for (name, header_kept) in &headers {
        if !header_kept && request.header_values(name).next().is_some() {
            removal.headers.push(name.to_string());
        }
    }
    // A CGI, WSGI or PHP upstream reads `x_api_key` as `x-api-key`: never the verified one.
    for (name, _) in request.headers {
        let name = name.as_ref();
        let spelling = name.contains('_')
            && !headers.iter().any(|(h, _)| *h == name)
            && !removal.headers.iter().any(|r| r == name);
        if spelling && headers.iter().any(|(header, _)| is_underscore_spelling_of(name, header)) {
            removal.headers.push(name.to_string());
        }
    }

    let mut params: Vec<&str> = tokens.params().map(|(_, name)| name).collect();
    let mut kept_params: Vec<&str> = tokens.params().filter(|(i, _)| kept_token.contains(i)).map(|(_, n)| n).collect();
    if let Some(param) = &api_keys.query_param {
        params.push(param);
        if matches!(kept_key, Some(ApiKeySource::Query(_))) {
            kept_params.push(param);
        }
    }
    if !params.is_empty() {
        removal.path = query::without_params(request.path, &params, &kept_params);
    }

    let mut cookies: Vec<&str> = tokens.cookies().map(|(_, name)| name).collect();
    let mut kept_cookies: Vec<&str> =
        tokens.cookies().filter(|(i, _)| kept_token.contains(i)).map(|(_, n)| n).collect();
    cookies.extend(api_keys.cookies.iter().map(String::as_str));
    if let Some(ApiKeySource::Cookie(name)) = kept_key {
        kept_cookies.push(name);
    }
    if !cookies.is_empty() {
        removal.cookie = cookie::without_cookies(request, &cookies, &kept_cookies);
    }

    if let (Some(field), Some(form)) = (&api_keys.form_field, request.body) {
        let kept: &[&str] = if matches!(kept_key, Some(ApiKeySource::Form(_))) { &[field] } else { &[] };
        let rest = query::without_params(&format!("?{form}"), &[field], kept);
        removal.form = rest.map(|rest| rest.trim_start_matches('?').to_string());
    }
    removal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::ProviderId;
    use crate::token_location::TokenLocation;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    fn keys(query: Option<&str>) -> ApiKeys {
        ApiKeys {
            headers: vec!["x-api-key".into(), "x-cdata-authtoken".into()],
            query_param: query.map(String::from),
            cookies: vec!["apikey".into(), "legacy_key".into()],
            form_field: None,
            allow_basic: true,
            clients: Default::default(),
            remote: None,
        }
    }

    fn extract_from(
        path: &str,
        headers: &[(&str, &str)],
        query: Option<&str>,
    ) -> Result<Option<Credential>, CredentialError> {
        let headers = crate::testing::headers(headers);
        extract(&RequestFacts::new("GET", path, &headers), &keys(query), &TokenLocations::bearer(vec![ProviderId(0)]))
    }

    /// Authorization: Bearer for provider 0, and provider 1's and 2's own places.
    fn places() -> TokenLocations {
        let header = |name: &str, prefix: &str| TokenPlace::Header { name: name.into(), prefix: prefix.into() };
        let mut tokens = TokenLocations::bearer(vec![ProviderId(0)]);
        for (place, provider) in [
            (header("x-goog-iap-jwt-assertion", ""), 1),
            (header("authorization", "token "), 2),
            (TokenPlace::Param("access_token".into()), 1),
            (TokenPlace::Cookie("session".into()), 2),
        ] {
            tokens.locations.push(TokenLocation { place, readers: vec![ProviderId(provider)] });
        }
        tokens
    }

    fn extract_at(path: &str, headers: &[(&str, &str)]) -> Result<Option<Credential>, CredentialError> {
        let headers = crate::testing::headers(headers);
        extract(&RequestFacts::new("GET", path, &headers), &keys(None), &places())
    }

    fn token_at(token: &str, found: &[usize]) -> Result<Option<Credential>, CredentialError> {
        Ok(Some(Credential::Bearer { token: token.into(), found: found.to_vec() }))
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
            Ok(Some(Credential::bearer("a.b.c")))
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
        let headers = crate::testing::headers(headers);
        let request = RequestFacts::new("GET", path, &headers);
        let verified: Vec<&Credential> = verified.into_iter().collect();
        credential_removal(&request, &keys(Some("api_key")), &places(), &verified, forward)
    }

    #[test]
    fn every_unverified_credential_is_removed() {
        let bearer = Credential::bearer("t");
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

    #[test]
    fn tokens_from_every_place() {
        assert_eq!(extract_at("/", &[("x-goog-iap-jwt-assertion", " a.b.c ")]), token_at("a.b.c", &[1]));
        assert_eq!(extract_at("/", &[("authorization", "TOKEN a.b.c")]), token_at("a.b.c", &[2]));
        assert_eq!(extract_at("/", &[("authorization", "Bearer a.b.c")]), token_at("a.b.c", &[0]));
        assert_eq!(extract_at("/x?a=1&access_token=a.b%2Ec", &[]), token_at("a.b.c", &[3]));
        assert_eq!(extract_at("/", &[("cookie", "theme=dark; session=a.b.c")]), token_at("a.b.c", &[4]));
        // Other spellings are not read (they are removed: see below).
        assert_eq!(extract_at("/x?Access_Token=a.b.c", &[("cookie", "SESSION=a.b.c")]), Ok(None));
    }

    #[test]
    fn one_token_in_several_places_is_one_credential() {
        let headers = [("x-goog-iap-jwt-assertion", "a.b.c"), ("cookie", "session=a.b.c")];
        assert_eq!(extract_at("/x?access_token=a.b.c", &headers), token_at("a.b.c", &[1, 3, 4]));
    }

    #[test]
    fn two_different_tokens_are_ambiguous() {
        let ambiguous = Err(CredentialError::Ambiguous);
        assert_eq!(extract_at("/x?access_token=d.e.f", &[("authorization", "Bearer a.b.c")]), ambiguous);
        assert_eq!(extract_at("/", &[("authorization", "Token a.b.c"), ("cookie", "session=d.e.f")]), ambiguous);
        assert_eq!(extract_at("/", &[("cookie", "session=a.b.c"), ("cookie", "session=a.b.c")]), ambiguous);
        assert_eq!(extract_at("/x?access_token=a&access_token=a", &[]), ambiguous);
        let twice = [("x-goog-iap-jwt-assertion", "a.b.c"), ("x-goog-iap-jwt-assertion", "a.b.c")];
        assert_eq!(extract_at("/", &twice), ambiguous);
    }

    #[test]
    fn unreadable_tokens_are_refused_as_tokens() {
        assert_eq!(extract_at("/x?access_token=%zz", &[]), Err(CredentialError::MalformedBearer));
        assert_eq!(extract_at("/x?access_token=", &[]), Err(CredentialError::EmptyBearer));
        assert_eq!(extract_at("/", &[("cookie", "session=\"\"")]), Err(CredentialError::EmptyBearer));
        let huge = "a".repeat(MAX_AUTHORIZATION_BYTES + 1);
        assert_eq!(extract_at(&format!("/x?access_token={huge}"), &[]), Err(CredentialError::BearerTooLarge));
        let cookie = format!("session={huge}");
        assert_eq!(extract_at("/", &[("cookie", &cookie)]), Err(CredentialError::BearerTooLarge));
        assert!(CredentialError::MalformedBearer.is_bearer());
    }

    #[test]
    fn basic_comes_first_then_tokens_then_api_keys() {
        let basic_header = format!("Basic {}", STANDARD.encode("alice:pw"));
        let found = extract_at("/", &[("authorization", &basic_header), ("cookie", "session=a.b.c")]);
        assert_eq!(found, Ok(Some(basic("alice", "pw"))));
        assert_eq!(extract_at("/", &[("x-api-key", "k1"), ("cookie", "session=a.b.c")]), token_at("a.b.c", &[4]));
        // A scheme no place reads is no token: the API key header is next.
        let found = extract_at("/", &[("authorization", "Digest x=y"), ("x-api-key", "k1")]).unwrap().unwrap();
        assert!(matches!(found, Credential::ApiKey { .. }));
    }

    #[test]
    fn every_token_place_is_removed_but_the_forwarded_one() {
        let all = [
            ("authorization", "Token a.b.c"),
            ("x-goog-iap-jwt-assertion", "d.e.f"),
            ("x_goog_iap_jwt_assertion", "g.h.i"),
            ("cookie", "theme=dark; session=a.b.c; Session=x.y.z"),
        ];
        let path = "/x?access_token=d.e.f&ACCESS.TOKEN=x&page=2";
        let r = removal(&all, path, None, false);
        assert_eq!(r.headers, vec!["authorization", "x-goog-iap-jwt-assertion", "x_goog_iap_jwt_assertion"]);
        assert_eq!(r.path.as_deref(), Some("/x?page=2"));
        assert_eq!(r.cookie.as_deref(), Some("theme=dark"));
        // Forwarded: the verified token stays where it was found, every other place goes.
        let verified = Credential::Bearer { token: "a.b.c".into(), found: vec![2, 4] };
        let r = removal(&all, path, Some(&verified), true);
        assert_eq!(r.headers, vec!["x-goog-iap-jwt-assertion", "x_goog_iap_jwt_assertion"]);
        assert_eq!(r.path.as_deref(), Some("/x?page=2"));
        assert_eq!(r.cookie.as_deref(), Some("theme=dark; session=a.b.c"));
        let in_param = Credential::Bearer { token: "d.e.f".into(), found: vec![3] };
        assert_eq!(removal(&all, path, Some(&in_param), true).path.as_deref(), Some("/x?access_token=d.e.f&page=2"));
    }
}
