//! How a client proves itself to the token endpoint, in any of three forms:
//! a JSON body `{"apiKey": "..."}` (Synerise's form), an OAuth 2.0
//! client-credentials grant (RFC 6749 4.4: `grant_type=client_credentials`
//! with `client_id`/`client_secret` in the form body or in Basic, 2.3.1), or
//! the configured API key header. One form per request (RFC 6749 2.3).

use crate::binding::Confirmation;
use std::fmt;
use std::net::IpAddr;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::basic_auth;
use crate::query::percent_decode;

/// What the request's headers bring, read when they arrive (the body comes later).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presented {
    /// `Content-Type`, without parameters, lowercase.
    pub content_type: Option<String>,
    /// `Authorization: Basic`, decoded (`client_id:client_secret`, each form-urlencoded).
    pub basic: Option<(String, String)>,
    /// The first configured API key header's value.
    pub api_key_header: Option<String>,
    /// The client address, where networks are configured (a client's `trusted_networks`).
    pub source: Option<IpAddr>,
    /// What the token will be bound to: the client certificate of the connection (RFC 8705 3).
    pub bind_to: Option<Confirmation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proof {
    /// An API key alone (JSON body or header): the key names its client.
    ApiKey(String),
    /// `client_id` and `client_secret` (the secret is the client's API key).
    ClientSecret { id: String, secret: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub proof: Proof,
    /// The scopes asked for (`scope`); None: all the client holds.
    pub scope: Option<Vec<String>>,
}

/// RFC 6749 5.2 errors (`invalid_scope` is the endpoint's, once the client is known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrantError {
    InvalidRequest(&'static str),
    InvalidClient(&'static str),
    UnsupportedGrantType,
}

impl Presented {
    /// Read from the request headers: `authorization` (Basic only) and `api_key_header`.
    pub fn from_headers(
        content_type: Option<&str>,
        authorization: Option<&str>,
        api_key_header: Option<&str>,
    ) -> Presented {
        let content_type = content_type
            .map(|value| value.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .filter(|value| !value.is_empty());
        let basic = authorization.and_then(basic_pair);
        let api_key_header = api_key_header.map(str::trim).filter(|key| !key.is_empty()).map(String::from);
        Presented { content_type, basic, api_key_header, source: None, bind_to: None }
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 2.3.1).
fn basic_pair(authorization: &str) -> Option<(String, String)> {
    if !basic_auth::is_basic(authorization) {
        return None;
    }
    let (id, secret) = basic_auth::credentials(authorization).ok()?;
    Some((percent_decode(&id)?, percent_decode(&secret)?))
}

/// The grant a request makes, from its headers and body.
pub(crate) fn read(presented: &Presented, body: &[u8]) -> Result<Grant, GrantError> {
    let mut proofs: Vec<Proof> = Vec::new();
    if let Some((id, secret)) = &presented.basic {
        proofs.push(Proof::ClientSecret { id: id.clone(), secret: secret.clone() });
    }
    if let Some(key) = &presented.api_key_header {
        proofs.push(Proof::ApiKey(key.clone()));
    }
    let mut scope = None;
    let mut grant_type_given = false;
    if !body.is_empty() {
        match presented.content_type.as_deref() {
            Some("application/json") => {
                let members: Members = serde_json::from_slice(body).map_err(|e| {
                    GrantError::InvalidRequest(if e.is_data() {
                        "the body is not a JSON object"
                    } else {
                        "the body is not JSON"
                    })
                })?;
                if members.repeated {
                    return Err(GrantError::InvalidRequest("a field is given twice"));
                }
                let object = &members.object;
                match object.get("apiKey") {
                    Some(Value::String(key)) if !key.is_empty() => proofs.push(Proof::ApiKey(key.clone())),
                    Some(_) => return Err(GrantError::InvalidRequest("apiKey must be a non-empty string")),
                    None => {}
                }
                if let Some(grant_type) = object.get("grant_type") {
                    grant_type_given = true;
                    if grant_type.as_str() != Some("client_credentials") {
                        return Err(GrantError::UnsupportedGrantType);
                    }
                }
                scope = match object.get("scope") {
                    None => None,
                    Some(Value::String(text)) => Some(scopes(text)),
                    Some(_) => return Err(GrantError::InvalidRequest("scope must be a string")),
                };
            }
            Some("application/x-www-form-urlencoded") => {
                let form = form_fields(body)?;
                let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                match field("grant_type").as_deref() {
                    None => return Err(GrantError::InvalidRequest("grant_type is required")),
                    Some("client_credentials") => grant_type_given = true,
                    Some(_) => return Err(GrantError::UnsupportedGrantType),
                }
                match (field("client_id"), field("client_secret")) {
                    (Some(id), Some(secret)) => proofs.push(Proof::ClientSecret { id, secret }),
                    (None, None) => {}
                    _ => return Err(GrantError::InvalidRequest("client_id and client_secret go together")),
                }
                scope = field("scope").map(|text| scopes(&text));
            }
            _ => return Err(GrantError::InvalidRequest("the body must be application/json or a form")),
        }
    }
    // Basic credentials are an OAuth 2.0 client's: they come with a grant type.
    if presented.basic.is_some() && !grant_type_given {
        return Err(GrantError::InvalidRequest("grant_type=client_credentials is required"));
    }
    let proof = match proofs.len() {
        0 => return Err(GrantError::InvalidClient("client authentication required")),
        1 => proofs.remove(0),
        _ => return Err(GrantError::InvalidRequest("more than one client authentication")),
    };
    Ok(Grant { proof, scope })
}

/// A JSON object's members, and whether one was given twice (serde_json's `Value`
/// silently keeps the last: `{"apiKey": "x", "apiKey": "<valid>"}` must not pass as one).
struct Members {
    object: Map<String, Value>,
    repeated: bool,
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Members { object: Map::new(), repeated: false };
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    members.repeated |= members.object.insert(name, value).is_some();
                }
                Ok(members)
            }
        }
        deserializer.deserialize_map(Object)
    }
}

fn scopes(text: &str) -> Vec<String> {
    text.split(' ').filter(|s| !s.is_empty()).map(String::from).collect()
}

/// `application/x-www-form-urlencoded` pairs; a field given twice is an error (RFC 6749 3.2).
fn form_fields(body: &[u8]) -> Result<Vec<(String, String)>, GrantError> {
    let text = std::str::from_utf8(body).map_err(|_| GrantError::InvalidRequest("the form is not UTF-8"))?;
    let mut fields: Vec<(String, String)> = Vec::new();
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name).ok_or(GrantError::InvalidRequest("the form is not well encoded"))?;
        let value = percent_decode(value).ok_or(GrantError::InvalidRequest("the form is not well encoded"))?;
        if fields.iter().any(|(n, _)| *n == name) {
            return Err(GrantError::InvalidRequest("a form field is given twice"));
        }
        fields.push((name, value));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    fn presented(content_type: Option<&str>, basic: Option<(&str, &str)>, header: Option<&str>) -> Presented {
        let authorization = basic.map(|(id, secret)| format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))));
        Presented::from_headers(content_type, authorization.as_deref(), header)
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn the_three_forms() {
        let json = presented(Some("application/json; charset=utf-8"), None, None);
        assert_eq!(read(&json, br#"{"apiKey": "k1"}"#), Ok(Grant { proof: Proof::ApiKey("k1".into()), scope: None }));
        let form = presented(FORM, None, None);
        let body = b"grant_type=client_credentials&client_id=c%201&client_secret=s%2Bx&scope=a+b";
        let grant = read(&form, body).unwrap();
        assert_eq!(grant.proof, Proof::ClientSecret { id: "c 1".into(), secret: "s+x".into() });
        assert_eq!(grant.scope, Some(vec!["a".into(), "b".into()]));
        let basic = presented(FORM, Some(("c%3A1", "s")), None);
        assert_eq!(
            read(&basic, b"grant_type=client_credentials").unwrap().proof,
            Proof::ClientSecret { id: "c:1".into(), secret: "s".into() },
            "RFC 6749 2.3.1: the Basic parts are form-urlencoded"
        );
        let header = presented(None, None, Some("k2"));
        assert_eq!(read(&header, b""), Ok(Grant { proof: Proof::ApiKey("k2".into()), scope: None }));
    }

    #[test]
    fn a_field_given_twice_is_refused_in_json_and_in_a_form() {
        let twice = Err(GrantError::InvalidRequest("a field is given twice"));
        let json = presented(Some("application/json"), None, None);
        for body in [
            &br#"{"apiKey": "x", "apiKey": "k"}"#[..],
            br#"{"apiKey": "k", "api\u004bey": "x"}"#,
            br#"{"apiKey": "k", "scope": "a", "scope": "b"}"#,
            br#"{"apiKey": "k", "grant_type": "client_credentials", "grant_type": "client_credentials"}"#,
        ] {
            assert_eq!(read(&json, body), twice, "{}", String::from_utf8_lossy(body));
        }
        // Members of nested values are not fields: only the top level counts.
        assert!(read(&json, br#"{"apiKey": "k", "x": {"a": 1, "a": 2}}"#).is_ok());
        let form = presented(FORM, None, None);
        let base = "grant_type=client_credentials&client_id=c&client_secret=s";
        for extra in ["&client_secret=t", "&client%5Fsecret=t", "&scope=a&scope=b", "&client_id=c"] {
            assert_eq!(
                read(&form, format!("{base}{extra}").as_bytes()),
                Err(GrantError::InvalidRequest("a form field is given twice")),
                "{extra}"
            );
        }
    }

    #[test]
    fn rfc_6749_errors() {
        let form = presented(FORM, None, None);
        assert_eq!(
            read(&form, b"client_id=c&client_secret=s"),
            Err(GrantError::InvalidRequest("grant_type is required"))
        );
        assert_eq!(read(&form, b"grant_type=password&username=u"), Err(GrantError::UnsupportedGrantType));
        assert_eq!(
            read(&form, b"grant_type=client_credentials"),
            Err(GrantError::InvalidClient("client authentication required"))
        );
        assert!(matches!(
            read(&form, b"grant_type=client_credentials&client_id=c"),
            Err(GrantError::InvalidRequest(_))
        ));
        assert!(matches!(
            read(&form, b"grant_type=client_credentials&grant_type=x"),
            Err(GrantError::InvalidRequest(_))
        ));
        let two = presented(Some("application/json"), None, Some("k"));
        assert_eq!(
            read(&two, br#"{"apiKey": "k"}"#),
            Err(GrantError::InvalidRequest("more than one client authentication"))
        );
        let basic_alone = presented(None, Some(("c", "s")), None);
        assert!(matches!(read(&basic_alone, b""), Err(GrantError::InvalidRequest(_))));
        let xml = presented(Some("text/xml"), None, None);
        assert!(matches!(read(&xml, b"<x/>"), Err(GrantError::InvalidRequest(_))));
        let json = presented(Some("application/json"), None, None);
        for bad in [&b"[1]"[..], b"{", br#"{"apiKey": 7}"#, br#"{"apiKey": ""}"#, br#"{"scope": 1, "apiKey": "k"}"#] {
            assert!(matches!(read(&json, bad), Err(GrantError::InvalidRequest(_))), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(read(&json, br#"{"apiKey": "k", "grant_type": "implicit"}"#), Err(GrantError::UnsupportedGrantType));
        assert_eq!(read(&json, b"{"), Err(GrantError::InvalidRequest("the body is not JSON")));
        assert_eq!(read(&json, b"[1]"), Err(GrantError::InvalidRequest("the body is not a JSON object")));
        assert_eq!(
            read(&presented(None, None, None), b""),
            Err(GrantError::InvalidClient("client authentication required"))
        );
    }
}
