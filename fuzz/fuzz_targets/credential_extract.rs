//! `credential::extract` (Authorization Basic/Bearer, API key headers, the query
//! parameter and cookies, token places) and `credential::credential_removal` on any
//! header set.
//!
//! Properties: every credential found is within the bounds (Bearer and Basic below
//! the Authorization bound, API keys below theirs, trimmed, non-empty; a Basic user
//! has no ':'); Basic decoding round-trips; removal leaves no credential the filter
//! reads; forwarding the verified credential keeps exactly that one.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use wasm_authn::pipeline::credential::{
    credential_removal, extract, ApiKeySource, Credential, CredentialError, CredentialRemoval, MAX_API_KEY_BYTES,
    MAX_AUTHORIZATION_BYTES,
};
use wasm_authn::pipeline::shape::UpstreamChanges;
use wasm_authn::request::RequestFacts;
use wasm_authn_fuzz::{config, TextRequest};

fn facts(request: &TextRequest) -> RequestFacts<'_> {
    RequestFacts::new(&request.method, &request.path, &request.headers)
}

/// The removal as the upstream changes `shape` makes of it (a rewritten `Cookie` replaces the old ones).
fn changes_of(removal: CredentialRemoval) -> UpstreamChanges {
    let mut changes = UpstreamChanges { remove: removal.headers, path: removal.path, ..UpstreamChanges::default() };
    if let Some(cookie) = removal.cookie {
        changes.remove.push("cookie".into());
        if !cookie.is_empty() {
            changes.set.push(("cookie".into(), cookie));
        }
    }
    changes
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (api_keys, tokens) = (&config().api_keys, &config().token_locations);
    // Mode 1: the rest is what a Basic header's base64 carries (reaches past the base64 check).
    let request = if mode & 1 == 1 {
        let mut request = TextRequest::parse(b"GET\n/");
        request.headers.push(("authorization".into(), format!("Basic {}", STANDARD.encode(rest)).into()));
        request
    } else {
        TextRequest::parse(rest)
    };
    let result = extract(&facts(&request), api_keys, tokens);

    match &result {
        Ok(Some(Credential::Bearer { token, found })) => {
            assert!(!token.is_empty() && token.len() <= MAX_AUTHORIZATION_BYTES);
            // A header's value is trimmed of HTTP's blanks (a token with others fails to parse later).
            assert_eq!(token.trim_matches([' ', '\t']), token);
            assert!(!found.is_empty());
        }
        Ok(Some(Credential::Basic { user, password })) => {
            assert!(!user.contains(':'));
            assert!(user.len() + password.len() < MAX_AUTHORIZATION_BYTES);
        }
        Ok(Some(Credential::ApiKey { key, source })) => {
            assert!(!key.is_empty() && key.len() <= MAX_API_KEY_BYTES);
            assert_eq!(key.trim(), key);
            match source {
                ApiKeySource::Header(name) => assert!(api_keys.headers.contains(name)),
                ApiKeySource::Query(name) => assert_eq!(Some(name), api_keys.query_param.as_ref()),
                ApiKeySource::Cookie(name) => assert!(api_keys.cookies.contains(name)),
                ApiKeySource::Form(name) => assert_eq!(Some(name), api_keys.form_field.as_ref()),
            }
        }
        // `extract` reads requests only: a certificate is the connection's (`mtls`).
        Ok(Some(Credential::Mtls { .. })) => panic!("a certificate from the request: {result:?}"),
        Ok(None) | Err(_) => {}
    }

    if mode & 1 == 1 {
        let encoded_len = "Basic ".len() + STANDARD.encode(rest).len();
        let expected = if encoded_len > MAX_AUTHORIZATION_BYTES {
            Err(CredentialError::TooLarge)
        } else {
            match std::str::from_utf8(rest) {
                Err(_) => Err(CredentialError::BasicNotUtf8),
                Ok(text) => match text.split_once(':') {
                    None => Err(CredentialError::BasicNoColon),
                    Some((user, password)) => {
                        Ok(Some(Credential::Basic { user: user.to_string(), password: password.to_string() }))
                    }
                },
            }
        };
        assert_eq!(result, expected);
    }

    // Nothing the filter reads survives the removal of unverified credentials.
    let removal = credential_removal(&facts(&request), api_keys, tokens, &[], false);
    let after = request.after(&changes_of(removal));
    let left = extract(&facts(&after), api_keys, tokens);
    assert!(!matches!(left, Ok(Some(_))), "a credential survived its removal: {left:?}");

    // Forwarding keeps the verified credential, and only it.
    if let Ok(Some(credential)) = &result {
        let removal = credential_removal(&facts(&request), api_keys, tokens, &[credential], true);
        let after = request.after(&changes_of(removal));
        let again = extract(&facts(&after), api_keys, tokens);
        assert_eq!(again.as_ref().ok().and_then(Option::as_ref), Some(credential), "forwarded: {again:?}");
    }
});
