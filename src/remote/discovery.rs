//! OpenID Connect discovery (OpenID Connect Discovery 1.0, section 4): the
//! document's `jwks_uri` says where the provider's JWKS is.

/// Where an OpenID Connect discovery document says the JWKS is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksLocation {
    /// The `jwks_uri` host (and port), lowercase.
    pub authority: String,
    /// Its path and query.
    pub path: String,
}

/// The `jwks_uri` of an OpenID Connect discovery document.
pub fn jwks_location(body: &[u8]) -> Result<JwksLocation, String> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "discovery document is not JSON".to_string())?;
    let uri = document
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| "discovery document has no jwks_uri".to_string())?;
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| "jwks_uri is not an http(s) URL".to_string())?;
    // RFC 3986 3.2: the authority ends at the first '/', '?' or '#'.
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("");
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let unusable = |c: char| c.is_control() || c == ' ';
    if path.chars().any(unusable) || authority.is_empty() || authority.contains('@') || authority.chars().any(unusable)
    {
        return Err("jwks_uri is not a usable URL".into());
    }
    Ok(JwksLocation { authority: authority.to_ascii_lowercase(), path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_gives_the_jwks_location() {
        let doc = br#"{"issuer":"https://id.example","jwks_uri":"https://ID.example:8443/keys/jwks.json?v=2"}"#;
        let location = jwks_location(doc).unwrap();
        assert_eq!(location.authority, "id.example:8443");
        assert_eq!(location.path, "/keys/jwks.json?v=2");
        assert_eq!(jwks_location(br#"{"jwks_uri":"http://h"}"#).unwrap().path, "/");
        assert!(jwks_location(b"not json").is_err());
        assert!(jwks_location(br#"{"issuer":"x"}"#).is_err());
        assert!(jwks_location(br#"{"jwks_uri":"ftp://h/x"}"#).is_err());
        assert!(jwks_location(br#"{"jwks_uri":"https:///x"}"#).is_err());
    }
}
