//! Requirement trees, shadow mode, `optional_or_failed` and request principals, decided.

use super::*;

const KEY: &str = "secret";

/// Basic `alice`/secret, API client `reporting`/secret, provider `corp` (tokens in `x-jwt`).
fn trees(rules: Value, extra: Value) -> Vm {
    let mut config = json!({
        "jwt": {"providers": [{
            "name": "corp",
            "issuer": "https://id.corp",
            "local_jwks": {"keys": [{"kty": "oct", "kid": "hmac-1", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(HMAC_SECRET)}]},
            "from_headers": [{"name": "x-jwt"}]
        }]},
        "rules": rules,
        "filter_state": true
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    authenticator(config)
}

fn corp_token(sub: &str) -> String {
    hs256(json!({"iss": "https://id.corp", "sub": sub, "exp": NOW + 60}))
}

fn principal_headers(changes: &UpstreamChanges) -> Vec<&str> {
    changes.set.iter().map(|(n, _)| n.as_str()).filter(|n| n.starts_with("x-auth")).collect()
}

#[test]
fn an_all_tree_verifies_each_credential_and_names_the_rules_principal() {
    let rule = json!([{"require": {"all": ["basic", {"any": ["jwt:corp", "api-key"]}]}, "principal_from": ["jwt:corp", "basic"]}]);
    let mut vm = trees(rule, json!({}));
    let token = corp_token("bob");
    let (principal, changes) = allowed(decide(&mut vm, &[("authorization", &basic("alice", KEY)), ("x-jwt", &token)]));
    assert_eq!(principal.qualified.as_str(), "jwt:corp:bob");
    assert_eq!(header_value(&changes, "x-auth-principal"), Some("bob"));
    assert_eq!(header_value(&changes, "x-auth-also-basic"), Some("basic:alice"));
    assert!(changes.state.contains(&("wasm_authn.also.basic".into(), "basic:alice".into())));
    assert!(changes.remove.iter().any(|h| h == "authorization") && changes.remove.iter().any(|h| h == "x-jwt"));
    // No token: the API key meets the `any`, and Basic's principal is the rule's.
    let (principal, changes) = allowed(decide(&mut vm, &[("authorization", &basic("alice", KEY)), ("x-api-key", KEY)]));
    assert_eq!(principal.qualified.as_str(), "basic:alice");
    assert_eq!(header_value(&changes, "x-auth-also-api-key"), Some("api-key:reporting"));
}

#[test]
fn a_missing_entry_of_an_all_is_401_naming_it() {
    let rule = json!([{"require": {"all": ["basic", {"any": ["jwt:corp", "api-key"]}]}}]);
    let mut vm = trees(rule, json!({}));
    let reply = denied(decide(&mut vm, &[("authorization", &basic("alice", KEY))]));
    assert_eq!((reply.status, reply.reason), (401, Reason::MissingCredential));
    assert_eq!(reply.message, "credentials are required: jwt:corp, api-key");
    // An API client may send its `id:key` as Basic: its challenge too.
    let offered =
        [r#"Basic realm="api", charset="UTF-8""#, r#"Bearer realm="api""#, r#"ApiKey realm="api", header="x-api-key""#];
    assert_eq!(challenges(&reply), offered);
    let reply = denied(decide(&mut vm, &[("x-api-key", KEY)]));
    assert_eq!(reply.message, "credentials are required: basic");
    assert_eq!(challenges(&reply), [r#"Basic realm="api", charset="UTF-8""#]);
}

#[test]
fn a_credential_that_fails_is_never_stepped_around() {
    let rule = json!([{"require": {"all": ["basic", {"any": ["jwt:corp", "api-key"]}]}}]);
    let mut vm = trees(rule, json!({}));
    // A bad token beside a good API key: the token is verified and refused.
    let headers = [("authorization", &*basic("alice", KEY)), ("x-jwt", "a.b.c"), ("x-api-key", KEY)];
    assert_eq!(denied(decide(&mut vm, &headers)).reason, Reason::JwtMalformed);
    let headers = [("authorization", &*basic("alice", "wrong")), ("x-api-key", KEY)];
    assert_eq!(denied(decide(&mut vm, &headers)).reason, Reason::BasicInvalid);
    // An API client's `id:key` as Basic is an API key, not a Basic user: `basic` is still missing.
    let headers = [("authorization", &*basic("reporting", KEY)), ("x-jwt", &*corp_token("bob"))];
    assert_eq!(denied(decide(&mut vm, &headers)).message, "credentials are required: basic");
    // Where the tree has no `api-key`, a client's `id:key` is reported nowhere and not forwarded.
    let rule = json!([{"require": {"all": ["basic", "jwt:corp"]}}]);
    let mut vm = trees(rule, json!({"forward_credentials": true}));
    let headers = [("authorization", &*basic("reporting", KEY)), ("x-jwt", &*corp_token("bob"))];
    let reply = denied(decide(&mut vm, &headers));
    assert_eq!(reply.message, "credentials are required: basic");
    let headers = [("authorization", &*basic("alice", KEY)), ("x-jwt", &*corp_token("bob"))];
    let (principal, changes) = allowed(decide(&mut vm, &headers));
    assert_eq!(principal.qualified.as_str(), "basic:alice");
    assert_eq!(header_value(&changes, "x-auth-also-jwt"), Some("jwt:corp:bob"));
    // Forwarded: both verified credentials stay.
    assert!(!changes.remove.iter().any(|h| h == "authorization" || h == "x-jwt"), "{:?}", changes.remove);
}

#[test]
fn forged_also_and_principal_headers_never_pass() {
    let rule = json!([{"require": {"all": ["basic", "api-key"]}}]);
    let mut vm = trees(rule, json!({}));
    let headers = [
        ("authorization", &*basic("alice", KEY)),
        ("x-api-key", KEY),
        ("x-auth-also-jwt", "jwt:corp:admin"),
        ("x_auth_also_keypair", "keypair:x"),
        ("x-auth-principal", "admin"),
    ];
    let (_, changes) = allowed(decide(&mut vm, &headers));
    for forged in ["x-auth-also-jwt", "x_auth_also_keypair", "x-auth-principal"] {
        assert!(changes.remove.iter().any(|h| h == forged), "{forged}");
    }
    assert_eq!(header_value(&changes, "x-auth-also-jwt"), None);
}

fn shadowed(decision: Decision) -> (Option<Reason>, UpstreamChanges) {
    match decision {
        Decision::Shadow { refused, changes, .. } => (refused, changes),
        other => panic!("expected Shadow, got {other:?}"),
    }
}

#[test]
fn shadow_mode_decides_and_passes_without_a_principal() {
    for (rules, extra) in [
        (json!([{"match": {"path_prefix": "/orders"}, "require": ["jwt:corp"], "enforce": false}]), json!({})),
        (json!([{"match": {"path_prefix": "/orders"}, "require": ["jwt:corp"]}]), json!({"enforce": false})),
    ] {
        let mut vm = trees(rules, extra);
        let forged = ("x-auth-principal", "admin");
        let (refused, changes) = shadowed(decide(&mut vm, &[forged]));
        assert_eq!(refused, Some(Reason::MissingCredential));
        assert!(changes.state.contains(&("wasm_authn.shadow".into(), "missing_credential".into())));
        assert!(changes.remove.iter().any(|h| h == "x-auth-principal"));
        assert!(principal_headers(&changes).is_empty());
        // Would be allowed: still no principal, and the credential is not forwarded.
        let token = corp_token("bob");
        let (refused, changes) = shadowed(decide(&mut vm, &[("x-jwt", &token), forged]));
        assert_eq!(refused, None);
        assert!(principal_headers(&changes).is_empty() && changes.state.is_empty());
        assert!(changes.remove.iter().any(|h| h == "x-jwt"));
        let (refused, _) = shadowed(decide(&mut vm, &[("x-jwt", "a.b.c")]));
        assert_eq!(refused, Some(Reason::JwtMalformed));
    }
    // A rule's own `enforce: true` overrides the configuration's.
    let rules = json!([{"match": {"path_prefix": "/orders"}, "require": ["jwt:corp"], "enforce": true}]);
    let mut vm = trees(rules, json!({"enforce": false}));
    assert_eq!(denied(decide(&mut vm, &[])).status, 401);
}

#[test]
fn optional_or_failed_passes_a_bad_credential_without_a_principal() {
    let mut vm = trees(json!([{"require": "optional_or_failed"}]), json!({}));
    let expired = hs256(json!({"iss": "https://id.corp", "sub": "bob", "exp": NOW - 600}));
    for (headers, reason) in [
        (vec![("x-jwt", expired.as_str())], Reason::JwtExpired),
        (vec![("x-jwt", "a.b.c")], Reason::JwtMalformed),
        (vec![("x-api-key", "wrong")], Reason::ApiKeyInvalid),
    ] {
        let mut with_forged = headers.clone();
        with_forged.push(("x-auth-principal", "admin"));
        match decide(&mut vm, &with_forged) {
            Decision::Failed { reason: failed, changes } => {
                assert_eq!(failed, reason);
                assert!(principal_headers(&changes).is_empty());
                assert!(changes.remove.iter().any(|h| h == "x-auth-principal"));
                assert!(changes.state.contains(&("wasm_authn.failed".into(), reason.label().into())));
            }
            other => panic!("{headers:?}: {other:?}"),
        }
    }
    let token = corp_token("bob");
    let (principal, _) = allowed(decide(&mut vm, &[("x-jwt", &token)]));
    assert_eq!(principal.qualified.as_str(), "jwt:corp:bob");
    assert!(matches!(decide(&mut vm, &[]), Decision::Anonymous(_)));
}

#[test]
fn request_principals_match_iss_and_sub_of_provider_tokens_only() {
    let rules = json!([
        {"match": {"path": "/exact"}, "request_principals": ["https://id.corp/bob"]},
        {"match": {"path": "/prefix"}, "request_principals": ["https://id.corp/*"]},
        {"match": {"path": "/suffix"}, "request_principals": ["*/bob"]},
        {"match": {"path": "/any"}, "request_principals": ["*"]}
    ]);
    let mut vm = trees(rules, json!({}));
    let bob = corp_token("bob");
    let eve = corp_token("eve");
    let outcome = |vm: &mut Vm, path: &str, headers: &[(&str, &str)]| match decide_with(vm, "GET", path, headers) {
        Decision::Allow { .. } => 200,
        Decision::Reply(reply) => reply.status,
        other => panic!("{other:?}"),
    };
    for path in ["/exact", "/prefix", "/suffix", "/any"] {
        assert_eq!(outcome(&mut vm, path, &[("x-jwt", &bob)]), 200, "{path}");
        // A Basic user named like the token's subject is no token principal.
        assert_eq!(outcome(&mut vm, path, &[("authorization", &basic("alice", KEY))]), 403, "{path}");
    }
    assert_eq!(outcome(&mut vm, "/exact", &[("x-jwt", &eve)]), 403);
    assert_eq!(outcome(&mut vm, "/prefix", &[("x-jwt", &eve)]), 200);
    assert_eq!(outcome(&mut vm, "/suffix", &[("x-jwt", &eve)]), 403);
}
