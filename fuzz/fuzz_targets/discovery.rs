//! `remote::jwks_location`: the `jwks_uri` of an OpenID Connect discovery document
//! fetched from a remote endpoint.
//!
//! Properties: a location is only ever an http(s) URL's authority (non-empty,
//! lowercase, ending where RFC 3986 3.2 ends it, without '@', spaces or control
//! characters) and path (starting with '/', without spaces, control characters or
//! a fragment), and it is the one the document's `jwks_uri` names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_authn::remote::jwks_location;

fuzz_target!(|data: &[u8]| {
    let Ok(location) = jwks_location(data) else { return };
    let authority = &location.authority;
    assert!(!authority.is_empty());
    assert_eq!(authority.to_ascii_lowercase(), *authority);
    assert!(
        !authority.contains(['/', '?', '#', '@', ' ']) && !authority.chars().any(char::is_control),
        "{authority:?}"
    );
    let path = &location.path;
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.contains([' ', '#']) && !path.chars().any(char::is_control), "{path:?}");

    let document: serde_json::Value = serde_json::from_slice(data).unwrap();
    let uri = document["jwks_uri"].as_str().unwrap();
    let rest = uri.strip_prefix("https://").or_else(|| uri.strip_prefix("http://")).unwrap();
    assert!(rest.to_ascii_lowercase().starts_with(authority.as_str()));
    // The path is all that follows the authority but the fragment ('/' put before a bare query).
    let after_authority = rest[authority.len()..].split('#').next().unwrap();
    let expected =
        if after_authority.starts_with('/') { after_authority.to_string() } else { format!("/{after_authority}") };
    assert_eq!(*path, expected);
});
