//! `pipeline::decide`: the whole decision for one request (route, extract,
//! authenticate, shape) with the fixed configuration, a fresh `Verifier` and a
//! fake host (shared data, clock, no host crypto), on a request in text form
//! (method line, path line, `name: value` lines).
//!
//! Properties:
//! - a request is let through without authentication only when a bypass rule or a
//!   CORS preflight matched (checked against the rules' own reading of the path);
//! - a request is allowed only with a credential that really verifies: one of the
//!   configured user/password or client/key pairs (known to the harness), or a
//!   token that `jwt::verify` accepts and no other keys would;
//! - what goes upstream has no forged owned header (any spelling) and no
//!   credential the filter reads (`forward_credentials` is off), and has the
//!   principal headers of the principal allowed;
//! - a path with a dot segment with parameters (`..;`) is refused with 400, and
//!   only it; otherwise, without a credential (and no bypass) the answer is a 401
//!   naming none missing; every answer is 400, 401, 403, 429 or 503, a 401 with a
//!   challenge; a request waits
//!   only for the provider that fetches keys;
//! - asking again (the verification now remembered) gives the same decision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_authn::jwt::{self, ProviderId, PureRust};
use wasm_authn::path::normalize;
use wasm_authn::pipeline::authenticate::Verifier;
use wasm_authn::pipeline::credential::{extract, Credential};
use wasm_authn::pipeline::stream::Awaited;
use wasm_authn::pipeline::{decide, Decision};
use wasm_authn::principal::AuthMethod;
use wasm_authn::reason::Reason;
use wasm_authn::request::RequestFacts;
use wasm_authn_fuzz::{config, fake_host, wrong_keys_config, TextRequest, NOW, PASSWORD, SKEW};

fn facts(request: &TextRequest) -> RequestFacts<'_> {
    RequestFacts::new(&request.method, &request.path, &request.headers)
}

/// The configured bypass rules (`/healthz` any method, `/public/` for GET) and CORS
/// preflights, as their documentation reads.
fn bypass_expected(request: &TextRequest) -> bool {
    let has = |name: &str| request.headers.iter().any(|(n, _)| n == name);
    if request.method.eq_ignore_ascii_case("OPTIONS") && has("origin") && has("access-control-request-method") {
        return true;
    }
    let path = normalize(&request.path);
    let under = |prefix: &str| path.path == prefix || path.path.starts_with(&format!("{prefix}/"));
    !path.ambiguous
        && (under("/healthz") || (path.path.starts_with("/public/") && request.method.eq_ignore_ascii_case("GET")))
}

/// Whether a header name is read as one the filter owns (`x_auth_principal` is `x-auth-principal`).
fn owned(name: &str) -> bool {
    let name = name.replace('_', "-");
    config().upstream.owned_headers.iter().any(|owned| *owned == name)
}

fuzz_target!(|data: &[u8]| {
    let request = TextRequest::parse(data);
    let config = config();
    let mut verifier = Verifier::new(config);
    let host = fake_host();
    let decision =
        decide(config, &wasm_authn::fetched::Fetched::new(config), &mut verifier, &facts(&request), &host, NOW * 1000);
    let credential = extract(&facts(&request), &config.api_keys, &config.token_locations);

    match &decision {
        Decision::Bypass(changes) => {
            assert!(bypass_expected(&request), "bypassed without a matching rule");
            // Nothing is set but a Cookie header rewritten without its credential cookies.
            assert!(changes.set.iter().all(|(name, _)| name == "cookie"), "{changes:?}");
            let after = request.after(changes);
            assert!(!after.headers.iter().any(|(name, _)| owned(name)), "a forged header went upstream: {after:?}");
            let left = extract(&facts(&after), &config.api_keys, &config.token_locations);
            assert!(!matches!(left, Ok(Some(_))), "a credential went upstream: {left:?}");
        }
        Decision::Allow { principal, changes, .. } => {
            assert!(!bypass_expected(&request) && !normalize(&request.path).hidden_dot_segment);
            let Ok(Some(credential)) = &credential else { panic!("allowed without a credential: {credential:?}") };
            match credential {
                Credential::Basic { user, password } => {
                    assert_eq!(password, PASSWORD, "a wrong password was allowed");
                    assert_eq!(&principal.id, user);
                    let expected = if user == "reporting" { AuthMethod::ApiKey } else { AuthMethod::Basic };
                    assert!(["alice", "carol", "reporting"].contains(&user.as_str()));
                    assert_eq!(principal.method, expected);
                }
                Credential::ApiKey { key, .. } => {
                    assert_eq!(key, PASSWORD, "a wrong API key was allowed");
                    assert_eq!((principal.id.as_str(), principal.method), ("reporting", AuthMethod::ApiKey));
                }
                Credential::Bearer { token, found } => {
                    assert_eq!(principal.method, AuthMethod::Jwt);
                    let bound_here = |provider| config.token_locations.binds(found, provider);
                    let verified = jwt::verify(
                        token,
                        &config.jwt_providers,
                        &jwt::FetchedKeys::default(),
                        &bound_here,
                        &PureRust,
                        NOW,
                        SKEW,
                    );
                    assert_eq!(verified.map(|v| v.principal).as_ref(), Ok(&principal.id));
                    let wrong_keys = &wrong_keys_config().jwt_providers;
                    assert!(jwt::verify(
                        token,
                        wrong_keys,
                        &jwt::FetchedKeys::default(),
                        &|_| true,
                        &PureRust,
                        NOW,
                        SKEW
                    )
                    .is_err());
                }
                // This configuration reads no client certificate.
                Credential::Mtls { .. } => panic!("impossible here: {credential:?}"),
            }
            let after = request.after(changes);
            let names = &config.upstream.principal_headers;
            let value = |name: &str| after.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_ref());
            assert_eq!(value(&names.principal), Some(principal.id.as_str()));
            assert_eq!(value(&names.method), Some(principal.method.as_str()));
            for (name, _) in after.headers.iter().filter(|(name, _)| owned(name)) {
                assert!(changes.set.iter().any(|(set, _)| set == name), "a forged {name} went upstream");
            }
            let left = extract(&facts(&after), &config.api_keys, &config.token_locations);
            assert!(!matches!(left, Ok(Some(_))), "a credential went upstream: {left:?}");
        }
        Decision::Reply(reply) => {
            // The configuration has bypass rules: the filter reads every path.
            let hidden_dots = normalize(&request.path).hidden_dot_segment;
            assert_eq!(reply.status == 400, hidden_dots, "{reply:?}");
            assert!(reply.status != 400 || reply.reason == Reason::AmbiguousPath, "{reply:?}");
            assert!([400, 401, 403, 429, 503].contains(&reply.status), "{reply:?}");
            if reply.status == 401 {
                assert!(reply.headers.iter().any(|(name, _)| *name == "www-authenticate"), "{reply:?}");
            }
            if matches!(credential, Ok(None)) && !hidden_dots {
                assert!(!bypass_expected(&request));
                assert_eq!((reply.status, reply.reason), (401, Reason::MissingCredential));
            }
        }
        Decision::Wait(Awaited::Keys { provider, .. }) => {
            assert!(matches!(credential, Ok(Some(Credential::Bearer { .. }))));
            assert_eq!(*provider, ProviderId(2), "only the remote provider fetches keys");
        }
        // This configuration fetches no revocation list, asks no endpoint and has no store;
        // the pipeline never waits for the rate-limit engine (the plugin does, once it decided).
        Decision::Wait(
            Awaited::RevocationList | Awaited::Introspection { .. } | Awaited::Store(_) | Awaited::Engine,
        ) => {
            panic!("impossible here: {decision:?}")
        }
        // This configuration has no optional rule, no shadow rule and no token endpoint.
        Decision::Anonymous(_)
        | Decision::Failed { .. }
        | Decision::Shadow { .. }
        | Decision::ReadBody(_)
        | Decision::ReadForm
        | Decision::Introspect { .. } => {
            panic!("impossible here: {decision:?}")
        }
    }

    let again =
        decide(config, &wasm_authn::fetched::Fetched::new(config), &mut verifier, &facts(&request), &host, NOW * 1000);
    assert_eq!(again, decision, "asked again, the decision changed");
});
