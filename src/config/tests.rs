use super::*;
use serde_json::json;

const SECRET_SHA256: &str = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
/// SHA-256 of "second": another client's key (no two clients may hold one).
const SECOND_SHA256: &str = "sha256:16367aacb67a4a017c8da8ab95682ccb390863780f7114dda0a0e0c55644c7c4";

fn parse(value: serde_json::Value) -> Result<Config, ConfigError> {
    Config::from_json(value.to_string().as_bytes())
}

fn error_of(value: serde_json::Value) -> String {
    parse(value).expect_err("configuration should be refused").to_string()
}

fn hs256_provider(name: &str, issuer: &str) -> serde_json::Value {
    json!({
        "name": name,
        "issuer": issuer,
        "local_jwks": {"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}]}
    })
}

#[test]
fn defaults() {
    let c = parse(json!({"basic": {"users": [{"name": "alice", "password_hash": SECRET_SHA256}]}})).unwrap();
    assert_eq!(c.realm, "api");
    assert_eq!(c.clock_skew_seconds, 60);
    assert_eq!(
        c.upstream.principal_headers,
        PrincipalHeaders {
            principal: "x-auth-principal".into(),
            method: "x-auth-method".into(),
            provider: "x-auth-provider".into(),
            qualified: None,
        }
    );
    assert!(!c.upstream.forward_credentials);
    assert_eq!(c.api_keys.headers, vec!["x-api-key"]);
    assert!(c.api_keys.allow_basic);
    assert_eq!(c.api_keys.query_param, None);
    assert_eq!(c.jwks_wait_ms, 2000);
    assert!(c.envoy_crypto);
    assert!(c.challenges(&crate::pipeline::route::Require::Any).basic);
    assert!(!c.challenges(&crate::pipeline::route::Require::Any).bearer);
    assert_eq!(
        c.upstream.owned_headers,
        vec!["x-auth-method", "x-auth-principal", "x-auth-provider", "x-auth-ratelimit-principal"]
    );
}

#[test]
fn full_example_compiles() {
    let c = parse(json!({
        "realm": "payments",
        "clock_skew_seconds": 30,
        "principal_headers": {"principal": "X-User", "method": "x-how", "provider": "x-idp"},
        "forward_credentials": true,
        "bypass": [{"path_prefix": "/healthz"}, {"method": "options"}, {"path_prefix": "/public", "method": "GET"}],
        "basic": {
            "users": [{"name": "alice", "password_hash": SECRET_SHA256}],
            "htpasswd": "# comment\nbob:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n\n"
        },
        "api_keys": {
            "headers": ["x-api-key", "X-CData-AuthToken"],
            "query_param": "api_key",
            "allow_basic": false,
            "clients": [{"id": "reporting", "key_hash": SECRET_SHA256}, {"id": "old", "key_hash": SECOND_SHA256, "disabled": true}]
        },
        "jwt": {"providers": [hs256_provider("corp", "https://id.corp")], "jwks_wait_ms": 500},
        "cache": {"max_entries": 10, "ttl_seconds": 5},
        "envoy_crypto": false
    }))
    .unwrap();
    assert_eq!(c.upstream.principal_headers.principal, "x-user");
    assert_eq!(c.routes.rules.len(), 3);
    assert_eq!(c.routes.rules[1].matcher.methods.as_deref(), Some(&["OPTIONS".to_string()][..]));
    assert_eq!(c.basic_users.len(), 2);
    assert_eq!(c.api_keys.headers, vec!["x-api-key", "x-cdata-authtoken"]);
    assert!(c.api_keys.clients.get(1).is_some_and(|client| client.disabled));
    assert_eq!(c.jwt_providers.len(), 1);
    assert_eq!(c.jwks_wait_ms, 500);
    assert_eq!(c.cache, CacheSettings { max_entries: 10, ttl_seconds: 5 });
    assert!(!c.envoy_crypto);
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (json!({"realm": "a\"b"}), "realm:"),
        (json!({"basic": {"users": [{"name": "a", "password_hash": "plain"}]}}), "basic.users[0].password_hash:"),
        (json!({"basic": {"users": [{"name": "a:b", "password_hash": SECRET_SHA256}]}}), "basic.users[0].name:"),
        (json!({"basic": {"htpasswd": "alice:{SHA}x\n"}}), "basic.htpasswd line 1:"),
        (json!({"basic": {"htpasswd": "\nalice\n"}}), "basic.htpasswd line 2:"),
        (
            json!({"api_keys": {"clients": [{"id": "c", "key_hash": "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="}]}}),
            "api_keys.clients[0].key_hash:",
        ),
        (
            json!({"api_keys": {"headers": ["bad header"], "clients": [{"id": "c", "key_hash": SECRET_SHA256}]}}),
            "api_keys.headers[0]:",
        ),
        (
            json!({"api_keys": {"clients": [{"id": "c", "key_hash": SECRET_SHA256}, {"id": "c", "key_hash": SECRET_SHA256}]}}),
            "api_keys.clients[1].id:",
        ),
        (json!({"api_keys": {"clients": [{"id": "c"}]}}), "api_keys.clients[0]:"),
        (json!({"bypass": [{}], "basic": {"users": []}}), "bypass[0]:"),
        (json!({"bypass": [{"path_prefix": "healthz"}]}), "bypass[0].path_prefix:"),
        (json!({"principal_headers": {"principal": "x y"}}), "principal_headers.principal:"),
        (json!({"jwt": {"providers": [hs256_provider("a", "i"), hs256_provider("a", "j")]}}), "jwt.providers[1].name:"),
        (
            json!({"jwt": {"providers": [hs256_provider("a", "i"), hs256_provider("b", "i")]}}),
            "jwt.providers[1].issuer:",
        ),
        (
            json!({"jwt": {"providers": [{"name": "a", "issuer": "i", "remote_jwks": {"cluster": "", "authority": "a", "path": "/j"}}]}}),
            "jwt.providers[0].remote_jwks.cluster:",
        ),
        (
            json!({"jwt": {"providers": [{"name": "a", "issuer": "i", "discovery": {"cluster": "c", "authority": "a", "timeout_ms": 5}}]}}),
            "jwt.providers[0].discovery.timeout_ms:",
        ),
        (json!({"jwt": {"providers": [], "jwks_wait_ms": 999999}}), "jwt.jwks_wait_ms:"),
        (json!({"unknown_field": 1}), "unknown field `unknown_field`"),
        (json!({"clock_skew_seconds": 100000}), "clock_skew_seconds:"),
        (json!({"clock_skew_seconds": "60"}), "invalid type"),
        (json!({"method_overrides": "keep"}), "method_overrides: must be \"remove\" or \"judge\""),
        (json!({}), "no credentials configured"),
        (
            json!({"rules": [{"require": "password"}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0].require: unknown credential kind",
        ),
        (
            json!({"rules": [{"require": ["basic", "jwt:nobody"]}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0].require[1]: names no provider",
        ),
        (
            json!({"rules": [{"require": 7}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0].require: must be",
        ),
        (
            json!({"rules": [{"match": {"route": ""}}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0].match.route: must name an Envoy route",
        ),
        (
            json!({"rules": [{"match": {"methods": ["GET", "FETCH"]}}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0].match.methods[1]: unknown HTTP method",
        ),
        (
            json!({"rules": [{"match": {"path_prefix": "/a/../b"}}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0].match.path_prefix:",
        ),
        (
            json!({"rules": [{"match": {"host": "a b"}}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0].match.host:",
        ),
        (
            json!({"rules": [{"match": {"host": "admin.example."}}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0].match.host: must be a host name, or *.suffix (without a trailing dot)",
        ),
        (
            json!({"rules": [{"match": {"host": "*.a..example"}}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0].match.host:",
        ),
        (
            json!({"rules": [{"require": "none", "scopes": ["x"]}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0]: a rule that requires nothing",
        ),
        (
            json!({"rules": [{"scopes": ["a b"]}], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "rules[0].scopes[0]:",
        ),
        (
            json!({"trusted_networks": ["10.0.0.1/8"], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "trusted_networks[0]: has host bits set",
        ),
        (
            json!({"trusted_networks": [], "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "trusted_networks: must list at least one",
        ),
        (
            json!({"basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256, "trusted_networks": ["10.0.0.0/33"]}]}}),
            "basic.users[0].trusted_networks[0]: prefix length",
        ),
        (
            json!({"basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256, "methods": ["get", "PUTT"]}]}}),
            "basic.users[0].methods[1]: unknown HTTP method",
        ),
        (
            json!({"api_keys": {"clients": [{"id": "c", "key_hash": SECRET_SHA256, "paths": ["reports"]}]}}),
            "api_keys.clients[0].paths[0]: must start with '/'",
        ),
        (
            json!({"jwt": {"providers": [{"name": "a", "issuer": "i", "local_jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}]}, "methods": ["BREW"]}]}}),
            "jwt.providers[0].methods[0]:",
        ),
        (
            json!({"revocation": {"remote": {"cluster": "c", "authority": "a"}}, "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "revocation.remote: missing field `path`",
        ),
        (
            json!({"revocation": {"remote": {"cluster": "c", "authority": "a", "path": "/r", "min_refetch_seconds": 5}}, "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "revocation.remote.min_refetch_seconds:",
        ),
        (
            json!({"revocation": {"not_before": {"a": -1}}, "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}}),
            "revocation.not_before.a: invalid value",
        ),
        (
            json!({"principal_headers": {"method": "x-auth-principal"}, "api_keys": {"clients": [{"id": "c", "key_hash": SECRET_SHA256}]}}),
            "principal_headers.principal:",
        ),
        (
            json!({"principal_headers": {"method": "x-p", "provider": "X-P"}, "api_keys": {"clients": [{"id": "c", "key_hash": SECRET_SHA256}]}}),
            "principal_headers.method:",
        ),
        (json!({"basic": {"users": [{"name": " alice", "password_hash": SECRET_SHA256}]}}), "basic.users[0].name:"),
        (json!({"api_keys": {"clients": [{"id": "c ", "key_hash": SECRET_SHA256}]}}), "api_keys.clients[0].id:"),
    ];
    for (config, expected) in cases {
        let error = error_of(config.clone());
        assert!(error.contains(expected), "{config} gave {error:?}, expected it to contain {expected:?}");
    }
}

#[test]
fn a_rule_that_can_never_match_is_refused() {
    let with = |bypass: serde_json::Value, rules: serde_json::Value| json!({"bypass": bypass, "rules": rules, "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}});
    let refused = [
        (
            with(json!([]), json!([{"match": {"path": "/a", "path_prefix": "/b"}}])),
            "rules[0].match: path is not under path_prefix: the rule never matches",
        ),
        (
            with(json!([]), json!([{"match": {"path": "/ab", "path_prefix": "/a"}}])),
            "rules[0].match: path is not under",
        ),
        (
            with(json!([]), json!([{"match": {"path_prefix": "/a", "methods": []}}])),
            "rules[0].match.methods: must list a method",
        ),
        (
            with(json!([]), json!([{}, {"match": {"path_prefix": "/x"}}])),
            "rules[1]: never matches: rules[0] before it matches every request it would",
        ),
        (
            with(
                json!([{"path_prefix": "/healthz"}]),
                json!([{"match": {"path_prefix": "/healthz/x"}, "require": "none"}]),
            ),
            "rules[0]: never matches: bypass[0]",
        ),
        (
            with(json!([{"path_prefix": "/a"}, {"path_prefix": "/a/b", "method": "GET"}]), json!([])),
            "bypass[1]: never matches: bypass[0]",
        ),
        (
            with(
                json!([]),
                json!([{"match": {"path_prefix": "/a/"}}, {"match": {"path": "/a/b", "methods": ["GET"]}}]),
            ),
            "rules[1]: never matches: rules[0]",
        ),
        (
            with(
                json!([]),
                json!([{"match": {"methods": ["GET", "POST"]}}, {"match": {"methods": ["post"], "route": "r"}}]),
            ),
            "rules[1]: never matches: rules[0]",
        ),
        (
            with(json!([]), json!([{"match": {"host": "*.Example"}}, {"match": {"host": "a.example"}}])),
            "rules[1]: never matches: rules[0]",
        ),
        (
            with(json!([]), json!([{"match": {"host": "*.example"}}, {"match": {"host": "*.a.EXAMPLE"}}])),
            "rules[1]: never matches: rules[0]",
        ),
        (
            with(json!([]), json!([{"match": {"host": "a.example"}}, {"match": {"host": "A.example", "path": "/x"}}])),
            "rules[1]: never matches: rules[0]",
        ),
        (
            with(
                json!([]),
                json!([{"match": {"route": "r"}, "require": "optional"}, {"match": {"route": "r"}, "require": "none"}]),
            ),
            "rules[1]: never matches: rules[0]",
        ),
    ];
    for (config, expected) in refused {
        let error = error_of(config.clone());
        assert!(error.starts_with(expected), "{config}: {error}");
    }
    let reachable = [
        with(json!([]), json!([{"match": {"path": "/a/b", "path_prefix": "/a"}}])),
        with(json!([]), json!([{"match": {"path": "/a", "path_prefix": "/a"}}])),
        // A relaxed rule lets ambiguous paths (/public%2Fx) through to the restrictive one.
        with(json!([{"path_prefix": "/public"}]), json!([{"match": {"path_prefix": "/public/x"}, "scopes": ["s"]}])),
        with(json!([]), json!([{"match": {"path_prefix": "/a/"}}, {"match": {"path_prefix": "/a"}}])),
        with(json!([]), json!([{"match": {"methods": ["GET"]}}, {"match": {"methods": ["GET", "POST"]}}])),
        with(json!([]), json!([{"match": {"host": "a.example"}}, {"match": {"host": "*.example"}}])),
        with(json!([]), json!([{"match": {"host": "*.a.example"}}, {"match": {"host": "*.example"}}])),
        with(json!([]), json!([{"match": {"host": "*.example"}}, {"match": {"host": "example"}}])),
        with(json!([]), json!([{"match": {"route": "r"}}, {"match": {"route": "s"}}, {}])),
    ];
    for config in reachable {
        assert!(parse(config.clone()).is_ok(), "{config}: {:?}", parse(config.clone()).err());
    }
}

#[test]
fn a_provider_keypair_and_token_endpoint_never_claim_one_issuer() {
    let pem = include_str!("../../tests/keys/ec_p256_public.pem");
    let keypair = json!([{"id": "signer", "public_key": pem}]);
    // The provider's issuer is the keypair's key: as written, in CRLF, indented, trimmed.
    for issuer in [pem.to_string(), pem.replace('\n', "\r\n"), format!("  {pem}\n"), pem.trim().to_string()] {
        let config = json!({"jwt": {"providers": [hs256_provider("corp", &issuer)]}, "keypairs": keypair});
        assert_eq!(
            error_of(config),
            "keypairs[0].public_key: jwt.providers[0].issuer claims this issuer too: a token's iss would name both"
        );
    }
    let config = json!({"jwt": {"providers": [hs256_provider("corp", "signer")]}, "keypairs": keypair});
    assert!(error_of(config).starts_with("keypairs[0].id: jwt.providers[0].issuer claims this issuer too"));
    let config = json!({"jwt": {"providers": [hs256_provider("signer", "https://x")]}, "keypairs": keypair});
    assert_eq!(error_of(config), "keypairs[0].id: jwt.providers[0].name has this name too");
    let two_keys = json!([{"id": "a", "public_key": pem}, {"id": "b", "public_key": pem.replace('\n', "\r\n")}]);
    let config = json!({"keypairs": two_keys});
    assert!(error_of(config).starts_with("keypairs[1].public_key: keypairs[0].public_key claims this issuer too"));
    let mut endpoint = json!({"keypairs": keypair, "api_keys": {"clients": [{"id": "c", "key_hash": SECRET_SHA256}]},
        "token_endpoint": {"path": "/token", "issuer": pem, "signing_key": ED25519_PRIVATE}});
    assert!(error_of(endpoint.clone()).starts_with("token_endpoint.issuer: keypairs[0].public_key claims this issuer"));
    endpoint["token_endpoint"]["issuer"] = json!("https://me");
    assert!(parse(endpoint).is_ok());
}

#[test]
fn not_json_and_too_large() {
    assert!(Config::from_json(b"{").unwrap_err().to_string().contains("not valid JSON"));
    assert!(Config::from_json(&vec![b' '; MAX_CONFIG_BYTES + 1]).unwrap_err().to_string().contains("larger"));
}

#[test]
fn a_principal_header_cannot_be_a_credential_header() {
    let error = error_of(json!({
        "principal_headers": {"principal": "x-api-key"},
        "api_keys": {"clients": [{"id": "c", "key_hash": SECRET_SHA256}]}
    }));
    assert!(error.starts_with("principal_headers.principal: the filter sets x-api-key"), "{error}");
}

#[test]
fn claim_headers_are_owned() {
    let mut provider = hs256_provider("corp", "https://id.corp");
    provider["claim_to_headers"] = json!([{"claim": "realm.roles", "header": "X-Roles"}]);
    let c = parse(json!({"jwt": {"providers": [provider]}})).unwrap();
    assert!(c.upstream.owned_headers.contains(&"x-roles".to_string()));
}

#[test]
fn a_claim_cannot_set_a_principal_header() {
    let mut provider = hs256_provider("corp", "https://id.corp");
    provider["claim_to_headers"] = json!([{"claim": "nick", "header": "X-Auth-Principal"}]);
    let error = error_of(json!({"jwt": {"providers": [provider]}}));
    assert!(error.starts_with("jwt.providers[0].claim_to_headers[0].header:"), "{error}");
}

#[test]
fn type_errors_never_echo_a_value() {
    let error = error_of(json!({"basic": {"users": "alice:hunter2"}}));
    assert_eq!(error, "basic.users: invalid type: string (value hidden), expected a sequence");
    let error = error_of(json!({"api_keys": {"clients": [{"id": "c", "key_hash": {"k": "hunter2"}}]}}));
    assert_eq!(error, "api_keys.clients[0].key_hash: invalid type: map, expected a string");
    let error = error_of(json!({"jwt": {"providers": [{"name": "p", "issuer": 7, "local_jwks": "hunter2"}]}}));
    assert_eq!(error, "jwt.providers[0].issuer: invalid type: integer (value hidden), expected a string");
    assert_eq!(redact_values(r#"a "b" c "d"#), "a (value hidden) c ");
    assert_eq!(
        redact_values("unknown variant `secret`, expected one of `basic`, `jwt`"),
        "unknown variant (value hidden), expected one of `basic`, `jwt`"
    );
}

#[test]
fn every_error_names_the_full_path_and_hides_numbers() {
    let cases = [
        (json!({"clock_skew_seconds": "60"}), "clock_skew_seconds: invalid type: string (value hidden), expected u64"),
        (
            json!({"jwt": {"providers": [hs256_provider("a", "i"), {"name": "b", "issuer": "j",
                "remote_jwks": {"cluster": "c", "authority": "a", "path": "/j", "refresh_seconds": -5}}]}}),
            "jwt.providers[1].remote_jwks.refresh_seconds: invalid value: integer (value hidden), expected u64",
        ),
        (
            json!({"jwt": {"providers": [{"name": "b", "issuer": "j",
                "remote_jwks": {"cluster": "c", "authority": "a", "path": "/j", "uri": "https://x"}}]}}),
            "jwt.providers[0].remote_jwks.uri: unknown field `uri`",
        ),
        (json!({"cache": {"ttl_seconds": 1.5}}), "cache.ttl_seconds: invalid type: floating point (value hidden)"),
        (json!({"bypass": [{"method": true}]}), "bypass[0].method: invalid type: boolean (value hidden)"),
        (json!({"api_keys": {"clients": [{"key_hash": SECRET_SHA256}]}}), "api_keys.clients[0]: missing field `id`"),
        (json!("{}"), "(root): invalid type: string (value hidden), expected the configuration object"),
    ];
    for (config, expected) in cases {
        let error = error_of(config.clone());
        assert!(error.starts_with(expected), "{config} gave {error:?}, expected {expected:?}");
        assert!(!error.contains("line"), "{error}");
    }
}

#[test]
fn a_top_level_schema_reference_is_accepted_and_ignored() {
    let users = json!({"users": [{"name": "alice", "password_hash": SECRET_SHA256}]});
    let with = parse(json!({"$schema": "./wasm-authn.schema.json", "basic": users})).unwrap();
    let without = parse(json!({"basic": users})).unwrap();
    assert_eq!(format!("{with:?}"), format!("{without:?}"));
    assert!(parse(json!({"$schema": null, "basic": users})).is_ok());
    assert!(error_of(json!({"$schema": 1, "basic": users})).starts_with("$schema: invalid type: integer"));
    // Only at the top: elsewhere it is an unknown field like any other.
    let nested = json!({"users": [], "$schema": "x"});
    assert!(error_of(json!({"basic": nested})).starts_with("basic.$schema: unknown field `$schema`"));
}

/// The JSON block under "## Every field in one example" in docs/configuration.md.
fn complete_example() -> &'static str {
    let guide = include_str!("../../docs/configuration.md");
    let section = &guide[guide.find("\n## Every field in one example").expect("the complete example's section")..];
    let start = section.find("<!-- config -->\n```json\n").expect("a JSON block marked as a configuration")
        + "<!-- config -->\n```json\n".len();
    let end = start + section[start..].find("```").expect("the block ends");
    &section[start..end]
}

#[test]
fn the_complete_example_loads_as_it_stands() {
    let config = Config::from_json(complete_example().as_bytes()).unwrap();
    assert_eq!(config.basic_users.len(), 3);
    assert_eq!(config.api_keys.clients.len(), 2);
    // Three providers, one keypair, the token endpoint's own.
    assert_eq!(config.jwt_providers.len(), 5);
    assert!(config.token_endpoint.is_some());
    assert!(!complete_example().contains("\"...\""), "no placeholders");
}

#[test]
fn a_p384_key_needs_envoy_crypto() {
    let pem = include_str!("../../tests/keys/ec_p384_public.pem");
    let config = json!({"envoy_crypto": false, "keypairs": [{"id": "signer", "public_key": pem}]});
    let message = Config::from_json(config.to_string().as_bytes()).unwrap_err().to_string();
    assert!(message.starts_with("envoy_crypto: must be true: signer has a P-384 key"), "{message}");
    let config = json!({"keypairs": [{"id": "signer", "public_key": pem}]});
    assert!(Config::from_json(config.to_string().as_bytes()).is_ok());
}

fn api_keys_with(places: serde_json::Value) -> serde_json::Value {
    let mut api_keys = json!({"clients": [{"id": "c", "key_hash": SECRET_SHA256}]});
    for (k, v) in places.as_object().unwrap() {
        api_keys[k] = v.clone();
    }
    json!({ "api_keys": api_keys })
}

#[test]
fn api_key_cookies_are_plain_distinct_names() {
    let c = parse(api_keys_with(json!({"cookies": ["api_key", "__Host-key"]}))).unwrap();
    assert_eq!(c.api_keys.cookies, vec!["api_key", "__Host-key"]);
    let cases = [
        (json!({"cookies": ["a key"]}), "api_keys.cookies[0]: must be a non-empty name of [A-Za-z0-9-_.]"),
        (json!({"cookies": [""]}), "api_keys.cookies[0]: must be"),
        (json!({"cookies": ["api_key", "API.key"]}), "api_keys.cookies[1]: is already listed (in some spelling)"),
        (json!({"query_param": "a=b"}), "api_keys.query_param: must be a non-empty name"),
    ];
    for (places, expected) in cases {
        let error = error_of(api_keys_with(places));
        assert!(error.starts_with(expected), "{error}");
    }
}

#[test]
fn query_parameter_names_are_what_a_query_holds_unencoded() {
    // CData Arc's `@authtoken`, and the other pchar a form parser gives no meaning.
    for name in ["@authtoken", "api-key.v2", "key~1", "a:b", "x!$'()*,"] {
        let c = parse(api_keys_with(json!({"query_param": name}))).unwrap();
        assert_eq!(c.api_keys.query_param.as_deref(), Some(name));
        let mut provider = hs256_provider("corp", "https://id.corp");
        provider["from_params"] = json!([name]);
        assert!(parse(json!({"jwt": {"providers": [provider]}})).is_ok(), "{name}");
    }
    for name in ["a&b", "a=b", "a;b", "a+b", "a%40b", "a[]", "a b", "a#b", "a?b", "a/b", "\u{e9}"] {
        let error = error_of(api_keys_with(json!({"query_param": name})));
        assert!(
            error.starts_with("api_keys.query_param: must be a non-empty name of [A-Za-z0-9] and"),
            "{name}: {error}"
        );
    }
    // Not a cookie name (RFC 6265 tokens exclude '@').
    let error = error_of(api_keys_with(json!({"cookies": ["@authtoken"]})));
    assert!(error.starts_with("api_keys.cookies[0]: must be a non-empty name of [A-Za-z0-9-_.]"), "{error}");
}

fn providers_with(places: &[serde_json::Value]) -> serde_json::Value {
    let providers: Vec<serde_json::Value> = places
        .iter()
        .enumerate()
        .map(|(i, place)| {
            let mut provider = hs256_provider(&format!("p{i}"), &format!("https://issuer-{i}"));
            for (k, v) in place.as_object().unwrap() {
                provider[k] = v.clone();
            }
            provider
        })
        .collect();
    json!({"jwt": {"providers": providers}, "api_keys": {"headers": ["x-api-key"], "query_param": "api_key",
        "cookies": ["apikey"], "clients": [{"id": "c", "key_hash": SECRET_SHA256}]}})
}

#[test]
fn token_places_are_shared_by_the_providers_that_name_them() {
    use crate::jwt::ProviderId;
    use crate::token_location::TokenPlace;
    let c = parse(providers_with(&[
        json!({}),
        json!({"from_headers": [{"name": "X-Goog-IAP-JWT-Assertion"}, {"name": "authorization", "value_prefix": "Token "}],
               "from_params": ["access_token"]}),
        json!({"from_headers": [{"name": "x-goog-iap-jwt-assertion"}, {"name": "Authorization", "value_prefix": "Bearer "}],
               "from_cookies": ["session"]}),
    ]))
    .unwrap();
    let places: Vec<(&TokenPlace, &[ProviderId])> =
        c.token_locations.locations.iter().map(|l| (&l.place, l.readers.as_slice())).collect();
    let header = |name: &str, prefix: &str| TokenPlace::Header { name: name.into(), prefix: prefix.into() };
    assert_eq!(
        places,
        vec![
            (&header("authorization", "bearer "), &[ProviderId(0), ProviderId(2)][..]),
            (&header("x-goog-iap-jwt-assertion", ""), &[ProviderId(1), ProviderId(2)][..]),
            (&header("authorization", "token "), &[ProviderId(1)][..]),
            (&TokenPlace::Param("access_token".into()), &[ProviderId(1)][..]),
            (&TokenPlace::Cookie("session".into()), &[ProviderId(2)][..]),
        ]
    );
}

#[test]
fn keypairs_and_the_token_endpoint_read_authorization_bearer() {
    let mut config = providers_with(&[json!({"from_cookies": ["session"]})]);
    config["token_endpoint"] = json!({"path": "/token", "issuer": "https://me",
        "signing_key": {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}});
    let c = parse(config).unwrap();
    assert_eq!(c.token_locations.locations[0].readers, vec![crate::jwt::ProviderId(1)]);
}

#[test]
fn token_places_that_could_be_read_as_another_are_refused() {
    let cases = [
        (
            vec![json!({"from_headers": [{"name": "bad header"}]})],
            "jwt.providers[0].from_headers[0].name: is not a valid header name",
        ),
        (vec![json!({"from_headers": [{"name": "host"}]})], "jwt.providers[0].from_headers[0].name: names a header"),
        (vec![json!({"from_headers": [{"name": "cookie"}]})], "jwt.providers[0].from_headers[0].name: names a header"),
        (
            vec![json!({"from_headers": [{"name": "authorization"}]})],
            "jwt.providers[0].from_headers[0].value_prefix: is required on authorization",
        ),
        (
            vec![json!({"from_headers": [{"name": "authorization", "value_prefix": "basic "}]})],
            "jwt.providers[0].from_headers[0].value_prefix: Authorization: Basic",
        ),
        (
            vec![json!({"from_headers": [{"name": "x-t", "value_prefix": "T\u{e9} "}]})],
            "jwt.providers[0].from_headers[0].value_prefix: must be printable ASCII",
        ),
        (
            vec![json!({"from_headers": [{"name": "x-t", "value_prefix": " T"}]})],
            "jwt.providers[0].from_headers[0].value_prefix: must be printable ASCII",
        ),
        (
            vec![json!({"from_headers": [{"name": "authorization", "value_prefix": "Bear"}]})],
            "jwt.providers[0].from_headers[0]: overlaps Authorization: Bearer (the default)",
        ),
        (
            vec![json!({"from_headers": [{"name": "x-t"}, {"name": "x-t", "value_prefix": "JWT "}]})],
            "jwt.providers[0].from_headers[1]: overlaps jwt.providers[0].from_headers[0]",
        ),
        (
            vec![json!({"from_headers": [{"name": "x-t"}, {"name": "X-T"}]})],
            "jwt.providers[0].from_headers[1]: is already listed",
        ),
        (
            vec![json!({"from_headers": [{"name": "x-api-key"}]})],
            "jwt.providers[0].from_headers[0]: is also an API key header",
        ),
        (vec![json!({"from_params": ["a b"]})], "jwt.providers[0].from_params[0]: must be a non-empty name"),
        (vec![json!({"from_params": ["Api.Key"]})], "jwt.providers[0].from_params[0]: is also the API key parameter"),
        (
            vec![json!({"from_params": ["token"]}), json!({"from_params": ["TOKEN"]})],
            "jwt.providers[1].from_params[0]: overlaps jwt.providers[0].from_params[0]",
        ),
        (vec![json!({"from_cookies": ["session", "session"]})], "jwt.providers[0].from_cookies[1]: is already listed"),
        (vec![json!({"from_cookies": ["ApiKey"]})], "jwt.providers[0].from_cookies[0]: is also an API key cookie"),
        (
            vec![json!({"from_cookies": ["s"], "claim_to_headers": [{"claim": "c", "header": "cookie"}]})],
            "jwt.providers[0].claim_to_headers[0].header: the filter sets cookie, which is also a header credentials",
        ),
        (
            vec![json!({"from_headers": [{"name": "x-t"}], "claim_to_headers": [{"claim": "c", "header": "x-t"}]})],
            "jwt.providers[0].claim_to_headers[0].header: the filter sets x-t, which is also a header credentials",
        ),
    ];
    for (places, expected) in cases {
        let error = error_of(providers_with(&places));
        assert!(error.starts_with(expected), "{expected}\n{error}");
    }
}

const HMAC_K: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0";
const ED25519_PRIVATE: &str = include_str!("../../tests/keys/ed25519_private.pem");

/// Every secret-bearing field given as `X_env`.
fn secrets_from_env() -> serde_json::Value {
    json!({
        "basic": {"users": [{"name": "alice", "password_hash_env": "ALICE_HASH"}], "htpasswd_env": "HTPASSWD"},
        "api_keys": {"clients": [{"id": "reporting", "key_hash_env": "REPORTING_KEY_HASH"}]},
        "jwt": {"providers": [{"name": "corp", "issuer": "https://id.corp",
            "local_jwks": {"keys": [{"kty": "oct", "kid": "h1", "k_env": "CORP_HMAC"}]}}]},
        "token_endpoint": {"path": "/token", "issuer": "https://me", "signing_key_env": "TOKEN_KEY"}
    })
}

fn environment(overrides: &[(&str, Option<&str>)]) -> impl Fn(&str) -> Option<String> {
    let mut vars: std::collections::HashMap<String, Option<String>> = [
        ("ALICE_HASH", SECRET_SHA256),
        ("HTPASSWD", "# from a secret\ncarol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n"),
        ("REPORTING_KEY_HASH", SECRET_SHA256),
        ("CORP_HMAC", HMAC_K),
        ("TOKEN_KEY", ED25519_PRIVATE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
    .collect();
    for (name, value) in overrides {
        vars.insert(name.to_string(), value.map(String::from));
    }
    move |name| vars.get(name).cloned().flatten()
}

fn parse_with_env(value: serde_json::Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
    Config::from_json_with_env(value.to_string().as_bytes(), env).map_err(|e| e.to_string())
}

#[test]
fn every_secret_may_come_from_the_environment() {
    let c = parse_with_env(secrets_from_env(), &environment(&[])).unwrap();
    assert_eq!(c.basic_users.len(), 2);
    assert_eq!(c.api_keys.directory(None).verify("secret").map(|p| p.id), Ok("reporting".to_string()));
    assert!(c.token_endpoint.is_some());
    // A JWK given as JSON text, with a mounted file's newline.
    let jwk = r#"{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}"#.to_string() + "\n";
    assert!(parse_with_env(secrets_from_env(), &environment(&[("TOKEN_KEY", Some(&jwk))])).is_ok());
}

#[test]
fn a_missing_variable_names_the_field_and_a_value_is_never_echoed() {
    let cases = [
        ("TOKEN_KEY", None, "token_endpoint.signing_key_env: environment variable TOKEN_KEY is not set"),
        ("ALICE_HASH", None, "basic.users[0].password_hash_env: environment variable ALICE_HASH is not set"),
        ("HTPASSWD", Some("\n"), "basic.htpasswd_env: environment variable HTPASSWD is empty"),
        ("CORP_HMAC", None, "jwt.providers[0].local_jwks.keys[0].k_env: environment variable CORP_HMAC is not set"),
        ("CORP_HMAC", Some("c2hvcnQ"), "jwt.providers[0].local_jwks.keys[0].k_env: "),
        ("ALICE_HASH", Some("hunter2-clear"), "basic.users[0].password_hash_env: unsupported hash format"),
        ("REPORTING_KEY_HASH", Some("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="), "api_keys.clients[0].key_hash_env: API keys"),
        ("HTPASSWD", Some("carol"), "basic.htpasswd_env line 1: expected name:hash"),
        ("TOKEN_KEY", Some("{not json-hunter2"), "token_endpoint.signing_key_env: holds neither a JWK"),
        ("TOKEN_KEY", Some("hunter2-not-pem"), "token_endpoint.signing_key_env: "),
    ];
    for (name, value, expected) in cases {
        let error = parse_with_env(secrets_from_env(), &environment(&[(name, value)])).unwrap_err();
        assert!(error.starts_with(expected), "{expected}\n{error}");
        assert!(!error.contains("hunter2") && !error.contains("c2hvcnQ"), "{error}");
    }
}

#[test]
fn a_secret_is_given_one_way_only() {
    let mut both = secrets_from_env();
    both["basic"]["users"][0]["password_hash"] = json!(SECRET_SHA256);
    both["token_endpoint"]["signing_key"] = json!(ED25519_PRIVATE);
    let error = parse_with_env(both, &environment(&[])).unwrap_err();
    assert_eq!(error, "basic.users[0].password_hash_env: set password_hash or password_hash_env, not both");
    let mut k_twice = secrets_from_env();
    k_twice["jwt"]["providers"][0]["local_jwks"]["keys"][0]["k"] = json!(HMAC_K);
    let error = parse_with_env(k_twice, &environment(&[])).unwrap_err();
    assert_eq!(error, "jwt.providers[0].local_jwks.keys[0].k_env: set k or k_env, not both");
    let mut rsa = secrets_from_env();
    rsa["jwt"]["providers"][0]["local_jwks"]["keys"][0]["kty"] = json!("RSA");
    let error = parse_with_env(rsa, &environment(&[])).unwrap_err();
    assert_eq!(error, "jwt.providers[0].local_jwks.keys[0].k_env: only an oct key has a secret (k)");
    let mut neither = secrets_from_env();
    neither["token_endpoint"].as_object_mut().unwrap().remove("signing_key_env");
    let error = parse_with_env(neither, &environment(&[])).unwrap_err();
    assert_eq!(error, "token_endpoint: missing field `signing_key` (or `signing_key_env`)");
}

/// A Basic user, an API client, a keypair and the token endpoint, all `alice`, and a provider `corp`.
fn every_kind_of_alice(extra: serde_json::Value) -> serde_json::Value {
    let pem = include_str!("../../tests/keys/ec_p256_public.pem");
    let mut config = json!({
        "basic": {"users": [{"name": "alice", "password_hash": SECRET_SHA256}]},
        "api_keys": {"clients": [{"id": "alice", "key_hash": SECRET_SHA256}]},
        "jwt": {"providers": [hs256_provider("corp", "https://id.corp")]},
        "keypairs": [{"id": "signer", "public_key": pem}],
        "token_endpoint": {"path": "/token", "issuer": "https://me",
            "signing_key": {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}},
    });
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    config
}

#[test]
fn principals_are_named_by_who_vouches_for_them() {
    let names = ["basic:alice", "api-key:alice", "keypair:signer", "jwt:corp:alice", "jwt:corp:urn:x:alice"];
    let c = parse(every_kind_of_alice(json!({
        "rules": [{"principals": names}],
        "revocation": {"not_before": {"jwt:corp:alice": 1, "api-key:alice": 2, "keypair:signer": 3}},
    })))
    .unwrap();
    assert_eq!(c.routes.rules[0].principals.as_deref(), Some(&names.map(String::from)[..]));

    let refused = |extra: serde_json::Value| error_of(every_kind_of_alice(extra));
    let bare = refused(json!({"rules": [{}, {"principals": ["basic:alice", "alice"]}]}));
    assert!(bare.starts_with("rules[1].principals[1]: names no kind of principal: write \"basic:alice\""), "{bare}");
    assert!(bare.contains("\"api-key:alice\"") && bare.contains("\"jwt:<provider>:alice\""), "{bare}");
    let cases = [
        (json!({"rules": [{"principals": ["jwt:alice"]}]}), "rules[0].principals[0]: a JWT principal is written"),
        (json!({"rules": [{"principals": ["jwt:other:alice"]}]}), "rules[0].principals[0]: names no JWT provider in"),
        (json!({"rules": [{"principals": ["jwt:token-endpoint:alice"]}]}), "tokens are api-key:<client id>"),
        (json!({"rules": [{"principals": ["jwt:signer:x"]}]}), "tokens are keypair:<keypair id>"),
        (json!({"rules": [{"principals": ["basic: alice"]}]}), "rules[0].principals[0]: is not a principal name"),
        (json!({"rules": [{"principals": ["jwt:corp:"]}]}), "rules[0].principals[0]: is not a principal name"),
        (json!({"revocation": {"not_before": {"alice": 1}}}), "revocation.not_before.alice: names no kind"),
        (json!({"revocation": {"not_before": {"basic:alice": 1}}}), "revocation.not_before.basic:alice: Basic users"),
        (
            json!({"revocation": {"not_before": {"jwt:nope:alice": 1}}}),
            "revocation.not_before.jwt:nope:alice: names no",
        ),
    ];
    for (extra, expected) in cases {
        let error = refused(extra.clone());
        assert!(error.contains(expected), "{extra} gave {error:?}, expected {expected:?}");
    }
    // `jwt:<provider>:<subject>` is one name only if provider names have no `:`.
    let colon = error_of(json!({"jwt": {"providers": [hs256_provider("a:b", "https://id")]}}));
    assert!(colon.starts_with("jwt.providers[0].name: must be non-empty, without ':'"), "{colon}");
}

#[test]
fn the_qualified_principal_header_is_owned_when_set() {
    let c = parse(every_kind_of_alice(json!({"principal_headers": {"qualified": "X-Auth-Qualified"}}))).unwrap();
    assert_eq!(c.upstream.principal_headers.qualified.as_deref(), Some("x-auth-qualified"));
    assert!(c.upstream.owned_headers.contains(&"x-auth-qualified".to_string()));
    let unset = parse(every_kind_of_alice(json!({}))).unwrap();
    assert_eq!(
        unset.upstream.owned_headers,
        ["x-auth-method", "x-auth-principal", "x-auth-provider", "x-auth-ratelimit-principal"]
    );
    let clash = error_of(every_kind_of_alice(json!({"principal_headers": {"qualified": "x-auth-method"}})));
    assert!(clash.starts_with("principal_headers.method: must differ"), "{clash}");
    let bad = error_of(every_kind_of_alice(json!({"principal_headers": {"qualified": "x y"}})));
    assert!(bad.starts_with("principal_headers.qualified: is not a valid header name"), "{bad}");
}

#[test]
fn password_failures_per_source_and_per_name() {
    let user = json!([{"name": "alice", "password_hash": SECRET_SHA256}]);
    let c = parse(json!({"basic": {"users": user}})).unwrap();
    assert_eq!((c.failure_limit.max_failures, c.failure_limit.max_failures_per_name), (10, 100));
    let set = json!({"basic": {"users": user, "failure_limit": {"max_failures": 5, "max_failures_per_name": 50}}});
    assert_eq!(parse(set).unwrap().failure_limit.max_failures_per_name, 50);
    let lower = json!({"basic": {"users": user, "failure_limit": {"max_failures": 5, "max_failures_per_name": 4}}});
    assert!(error_of(lower).starts_with("basic.failure_limit.max_failures_per_name: must be at least max_failures"));
    // Counted per source: Basic requests read the client address.
    assert!(c.needs_source_address() && c.reads_source_for_basic());
    let keys_only = parse(json!({"api_keys": {"clients": [{"id": "c", "key_hash": SECRET_SHA256}]}}));
    assert!(!keys_only.unwrap().needs_source_address(), "no user to lock out: no host call for it");
}

#[test]
fn limits_scope_is_envoy_or_fleet() {
    let user = json!({"users": [{"name": "alice", "password_hash": SECRET_SHA256}]});
    let c = parse(json!({"basic": user})).unwrap();
    assert_eq!(c.limit_scope, LimitScope::Envoy);
    let c = parse(json!({"basic": user, "limits": {"requests_per_hour": 10, "scope": "fleet"}})).unwrap();
    assert_eq!(c.limit_scope, LimitScope::Fleet);
    assert_eq!(c.limit_defaults.requests_per_hour, Some(10));
    let e = error_of(json!({"basic": user, "limits": {"scope": "cluster"}}));
    assert_eq!(e, "limits.scope: must be `envoy` or `fleet`");
    // The engine holds the hourly counts: this filter has none to expose.
    let e = error_of(json!({"basic": user, "limits": {"scope": "fleet", "expose_headers": true}}));
    assert!(e.starts_with("limits.expose_headers: must be false with scope \"fleet\""), "{e}");
}

#[test]
fn the_ratelimit_header_is_the_filters_own() {
    let user = json!({"users": [{"name": "alice", "password_hash": SECRET_SHA256}]});
    let e = error_of(json!({"basic": user, "principal_headers": {"provider": "X-Auth-Ratelimit-Principal"}}));
    assert!(
        e.starts_with("principal_headers.provider: is the header the filter hands Envoy's rate-limit filter"),
        "{e}"
    );
    let mut provider = hs256_provider("corp", "https://corp");
    provider["claim_to_headers"] = json!([{"claim": "sub", "header": "x-auth-ratelimit-principal"}]);
    let e = error_of(json!({"jwt": {"providers": [provider]}}));
    assert!(e.starts_with("jwt.providers[0].claim_to_headers[0].header: is the header"), "{e}");
    let e = error_of(
        json!({"api_keys": {"headers": ["x-auth-ratelimit-principal"], "clients": [{"id": "a", "key_hash": SECRET_SHA256}]}}),
    );
    assert!(e.starts_with("api_keys.headers: is the header the filter hands Envoy's rate-limit filter"), "{e}");
    // A payload header that is a credential header is named by its own field.
    let mut provider = hs256_provider("corp", "https://corp");
    provider["forward_payload_header"] = json!("Authorization");
    let e = error_of(json!({"jwt": {"providers": [provider]}}));
    assert!(
        e.starts_with("jwt.providers[0].forward_payload_header: the filter sets authorization, which is also"),
        "{e}"
    );
}

#[test]
fn clients_as_lines() {
    let lines = format!(
        "# issued 2026-12\nreporting:{SECOND_SHA256}\n\n  billing:{}  \n",
        SECRET_SHA256.to_uppercase().replace("SHA256", "sha256")
    );
    let c = parse(json!({"limits": {"requests_per_hour": 7}, "api_keys": {
        "clients": [{"id": "admin", "key_hash": format!("sha256:{}", "ab".repeat(32)), "scopes": ["admin"]}], "clients_lines": lines}}))
    .unwrap();
    let ids: Vec<&str> = c.api_keys.clients.iter().map(|client| client.id.as_str()).collect();
    assert_eq!(ids, ["admin", "reporting", "billing"]);
    let billing = c.api_keys.clients.by_id("billing").unwrap();
    assert!(!billing.disabled && billing.privileges.scopes.is_empty());
    assert_eq!(billing.privileges.limits.requests_per_hour, Some(7), "lines take the default limits");
    assert_eq!(
        c.api_keys.directory(None).verify_pair("billing", "secret").map(|r| r.map(|p| p.id)),
        Some(Ok("billing".into()))
    );
    for (lines, error) in [
        ("reporting\n", "api_keys.clients_lines line 1: expected id:sha256:<hex>"),
        (
            "\nreporting:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
            "api_keys.clients_lines line 2: API keys are hashed as sha256:<hex>",
        ),
        ("reporting:sha256:abc", "api_keys.clients_lines line 1: sha256: needs 64 hex digits"),
        (" :sha256:00", "api_keys.clients_lines line 1: must be non-empty"),
    ] {
        let got = error_of(json!({"api_keys": {"clients_lines": lines}}));
        assert!(got.starts_with(error), "{got}");
    }
    let twice = format!("a:{SECRET_SHA256}\nb:{SECRET_SHA256}\na:{SECRET_SHA256}\n");
    assert_eq!(
        error_of(json!({"api_keys": {"clients_lines": twice}})),
        "api_keys.clients_lines line 3: duplicate client id"
    );
    let clash = json!({"api_keys": {"clients": [{"id": "a", "key_hash": SECRET_SHA256}], "clients_lines": format!("a:{SECRET_SHA256}")}});
    assert_eq!(error_of(clash), "api_keys.clients_lines line 1: duplicate client id");
    // One key, two clients: the key alone could not say which calls.
    let shared = json!({"api_keys": {"clients": [{"id": "a", "key_hash": SECRET_SHA256}], "clients_lines": format!("b:{SECRET_SHA256}")}});
    assert!(error_of(shared).starts_with("api_keys: clients \"a\" and \"b\" hold the same key"));
    let both = json!({"api_keys": {"clients_lines": "", "clients_lines_env": "X"}});
    assert!(error_of(both).starts_with("api_keys.clients_lines_env: set clients_lines or clients_lines_env, not both"));
}

/// 100,000 API clients (as objects, and as lines) and 100,000 users load: the configuration
/// bound has room for them. (Load time is measured by bench/stages, not asserted here.)
#[test]
fn a_hundred_thousand_clients_and_users() {
    let hex = |i: usize| crate::digest::sha256(format!("key-{i}").as_bytes()).map(|b| format!("{b:02x}")).concat();
    let digests: Vec<String> = (0..100_000).map(hex).collect();
    let objects: Vec<serde_json::Value> = (0..100_000)
        .map(|i| json!({"id": format!("client-{i}"), "key_hash": format!("sha256:{}", digests[i])}))
        .collect();
    let text = json!({"api_keys": {"clients": objects}}).to_string();
    assert!(text.len() > 1024 * 1024, "more than the old bound: {}", text.len());
    let c = Config::from_json(text.as_bytes()).unwrap();
    assert_eq!(c.api_keys.clients.len(), 100_000);
    assert_eq!(c.api_keys.directory(None).verify("key-99999").map(|p| p.id), Ok("client-99999".into()));

    let lines: String = (0..100_000).map(|i| format!("client-{i}:sha256:{}\n", digests[i])).collect();
    let htpasswd: String = (0..100_000).map(|i| format!("user-{i}:sha256:{}\n", digests[i])).collect();
    let c = parse(json!({"api_keys": {"clients_lines": lines}, "basic": {"htpasswd": htpasswd}})).unwrap();
    assert_eq!((c.api_keys.clients.len(), c.basic_users.len()), (100_000, 100_000));
    assert_eq!(c.api_keys.directory(None).verify("key-4242").map(|p| p.id), Ok("client-4242".into()));
}

#[test]
fn api_clients_fetched_through_a_cluster() {
    let remote = json!({"cluster": "clients", "authority": "clients.internal", "path": "/clients.json"});
    let configured = json!({"id": "local", "key_hash": format!("sha256:{}", "ab".repeat(32))});
    let c = parse(json!({"api_keys": {"remote": remote, "clients": [configured]}})).unwrap();
    let remote_clients = c.api_keys.remote.as_ref().expect("api_keys.remote");
    assert!(c.fetches_documents() && c.api_keys.has_clients() && c.needs_source_address());
    // The document: clients[] entries compiled as configured ones, the server's limits their default.
    let parse_document = |body: serde_json::Value| (remote_clients.parse)(body.to_string().as_bytes());
    let entry = |id: &str| json!({"id": id, "key_hash": format!("sha256:{}", "cd".repeat(32)), "requests_per_hour": 5});
    let configured_key = |id: &str| json!({"id": id, "key_hash": format!("sha256:{}", "ab".repeat(32))});
    let clients = parse_document(json!({"clients": [entry("fetched")]})).unwrap();
    assert_eq!(clients.by_id("fetched").map(|c| c.privileges.limits.requests_per_hour), Some(Some(5)));
    for (document, error) in [
        (json!({"clients": [entry("local")]}), "clients[0].id: \"local\" is a configured client"),
        (json!({"clients": [entry("a"), entry("a")]}), "clients[1].id: duplicate client id"),
        (json!({"clients": [entry("a"), entry("b")]}), "clients \"a\" and \"b\" hold the same key"),
        (json!({"clients": [configured_key("b")]}), "clients \"local\" and \"b\" hold the same key"),
        (json!({"clients": [{"id": "b", "key_hash_env": "B"}]}), "clients[0].key_hash_env: not in a fetched document"),
        (json!({"clients": [{"id": "b", "key_hash": "plain"}]}), "clients[0].key_hash"),
        (
            json!({"clients": [{"id": "b", "key_hash": "sha256:00", "colour": 1}]}),
            "clients[0].colour: unknown field `colour`",
        ),
        (json!({"users": []}), "unknown field `users`"),
        (json!([1]), "not an API client document"),
    ] {
        let refused = parse_document(document.clone()).err().unwrap_or_default();
        assert!(refused.contains(error), "{document}: {refused}");
    }
    // Large documents are allowed here, not for the revocation list.
    let big = json!({"cluster": "c", "authority": "a", "path": "/p", "max_response_bytes": 33_554_432});
    assert!(parse(json!({"api_keys": {"remote": big.clone()}})).is_ok());
    assert!(error_of(json!({"api_keys": {"remote": {"cluster": "c", "authority": "a", "path": "/p", "max_response_bytes": 33_554_433}}}))
        .starts_with("api_keys.remote.max_response_bytes: must be between 1024 and 33554432"));
    assert!(error_of(json!({"api_keys": {"remote": {"cluster": "c", "authority": "a"}}}))
        .starts_with("api_keys.remote: missing field `path`"));
}

#[test]
fn basic_users_fetched_through_a_cluster() {
    let remote = json!({"cluster": "users", "authority": "users.internal", "path": "/users.json"});
    let configured = json!({"name": "local", "password_hash": SECRET_SHA256});
    let c = parse(json!({"basic": {"remote": remote.clone(), "users": [configured]}})).unwrap();
    let store = c.basic_store.as_ref().expect("basic.remote");
    assert!(c.fetches_documents() && c.reads_source_for_basic() && c.needs_source_address());
    assert!(parse(json!({"basic": {"remote": remote}})).is_ok(), "the store alone is a credential");
    // The document: users[] entries and htpasswd lines, compiled as configured ones.
    let parse_document = |body: serde_json::Value| (store.parse)(body.to_string().as_bytes());
    let entry = |name: &str| json!({"name": name, "password_hash": SECRET_SHA256, "requests_per_hour": 5});
    let users = parse_document(json!({"users": [entry("fetched")], "htpasswd": format!("line:{SECRET_SHA256}\n")}));
    let users = users.unwrap();
    let limits: Vec<_> = users.iter().map(|(name, p)| (name.to_string(), p.limits.requests_per_hour)).collect();
    assert_eq!(limits, [("fetched".to_string(), Some(5)), ("line".to_string(), None)]);
    for (document, error) in [
        (json!({"users": [entry("local")]}), "\"local\" is a configured user"),
        (json!({"htpasswd": format!("local:{SECRET_SHA256}")}), "\"local\" is a configured user"),
        (json!({"users": [entry("a"), entry("a")]}), "users[1].name: duplicate user name"),
        (json!({"users": [{"name": "b", "password_hash_env": "B"}]}), "only users (with password_hash) and htpasswd"),
        (json!({"htpasswd_env": "H"}), "only users (with password_hash) and htpasswd"),
        (json!({"failure_limit": {"max_failures": 1}}), "only users (with password_hash) and htpasswd"),
        (json!({"remote": {"cluster": "c", "authority": "a", "path": "/p"}}), "only users (with password_hash)"),
        (json!({"users": [{"name": "b", "password_hash": "plain"}]}), "users[0].password_hash"),
        (json!({"clients": []}), "unknown field `clients`"),
        (json!([1]), "not a user document"),
    ] {
        let refused = parse_document(document.clone()).err().unwrap_or_default();
        assert!(refused.contains(error), "{document}: {refused}");
    }
    assert!(error_of(
        json!({"basic": {"remote": {"cluster": "c", "authority": "a", "min_refetch_seconds": 5, "path": "/p"}}})
    )
    .starts_with("basic.remote.min_refetch_seconds: applies to signing keys only"));
}

#[test]
fn claim_conditions_and_payload_errors_name_the_field() {
    let basic = json!({"users": [{"name": "a", "password_hash": SECRET_SHA256}]});
    let with_rule = |condition: serde_json::Value| json!({"basic": basic, "rules": [{"claims": [condition]}]});
    let cases = [
        (with_rule(json!({"claim": "groups"})), "rules[0].claims[0]: needs a claim and exactly one of"),
        (
            with_rule(json!({"claim": "groups", "any_of": ["a"], "all_of": ["b"]})),
            "rules[0].claims[0]: needs a claim and exactly one",
        ),
        (with_rule(json!({"claim": " ", "any_of": ["a"]})), "rules[0].claims[0].claim:"),
        (with_rule(json!({"claim": "groups", "any_of": []})), "rules[0].claims[0].any_of: must list 1 to"),
        (with_rule(json!({"claim": "groups", "one_of": ["a"]})), "rules[0].claims[0]: needs a claim and exactly one"),
        (
            with_rule(json!({"claim": "g", "any_of": ["a"], "note": 1})),
            "rules[0].claims[0]: needs a claim and exactly one",
        ),
        (with_rule(json!({"any_of": ["a"]})), "rules[0].claims[0]: missing field `claim`"),
        (with_rule(json!("groups")), "rules[0].claims[0]: must be an object"),
        (json!({"basic": basic, "rules": [{"claims": {"claim": "g"}}]}), "rules[0].claims: must be a list"),
        (with_rule(json!({"claim": "groups", "all_of": ["a", {"b": 1}]})), "rules[0].claims[0].all_of[1]:"),
        (with_rule(json!({"claim": "t", "equals_header": "x tenant"})), "rules[0].claims[0].equals_header:"),
        (
            with_rule(json!({"claim": "t", "equals_header": "X-Auth-Principal"})),
            "rules[0].claims[0].equals_header: is a header the filter sets",
        ),
        (
            json!({"basic": basic, "rules": [{"require": "none", "claims": [{"claim": "t", "any_of": ["a"]}]}]}),
            "rules[0]: a rule that requires nothing cannot test claims",
        ),
        (
            json!({"jwt": {"providers": [with_field("forward_payload_header", "x-auth-method")]}}),
            "jwt.providers[0].forward_payload_header: is one of principal_headers",
        ),
        (
            json!({"jwt": {"providers": [with_field("forward_payload_header", "host")]}}),
            "jwt.providers[0].forward_payload_header: names a header that frames",
        ),
        (
            json!({"jwt": {"providers": [clashing_payload_header()]}}),
            "jwt.providers[0].forward_payload_header: is also one of its claim_to_headers headers",
        ),
        (
            json!({"jwt": {"providers": [{"name": "o", "payload_in_filter_state": true,
                "introspection": {"cluster": "c", "authority": "a", "path": "/i", "auth": "bearer", "client_secret": "s"}}]}}),
            "jwt.providers[0].payload_in_filter_state: is for JWTs: an introspected token has no payload",
        ),
        (
            json!({"jwt": {"providers": [{"name": "o", "forward_payload_header": "x-payload",
                "introspection": {"cluster": "c", "authority": "a", "path": "/i", "auth": "bearer", "client_secret": "s"}}]}}),
            "jwt.providers[0].forward_payload_header: is for JWTs",
        ),
    ];
    for (config, expected) in cases {
        let error = error_of(config);
        assert!(error.starts_with(expected), "{error:?} should start with {expected:?}");
    }
}

/// A provider whose payload header is also one of its claim headers.
fn clashing_payload_header() -> serde_json::Value {
    let mut provider = with_field("forward_payload_header", "x-t");
    provider["claim_to_headers"] = json!([{"claim": "t", "header": "X-T"}]);
    provider
}

/// `hs256_provider` with one more field.
fn with_field(field: &str, value: &str) -> serde_json::Value {
    let mut provider = hs256_provider("corp", "https://id.corp");
    provider[field] = json!(value);
    provider
}

#[test]
fn claim_conditions_compile_against_one_table() {
    let config = parse(json!({
        "jwt": {"providers": [hs256_provider("corp", "https://id.corp")]},
        "rules": [
            {"match": {"path_prefix": "/a"}, "claims": [{"claim": "groups", "any_of": ["admin", 7, true]}]},
            {"match": {"path_prefix": "/b"}, "claims": [{"claim": "tenant", "equals_header": "X-Tenant"}, {"claim": "groups", "all_of": [1.0]}]}
        ]
    }))
    .unwrap();
    assert_eq!(*config.jwt_providers[0].condition_claims, ["groups".to_string(), "tenant".to_string()]);
    let claims: Vec<_> = config.routes.rules.iter().map(|rule| rule.claims.clone()).collect();
    use crate::token_claims::{ClaimCondition, Test};
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    assert_eq!(claims[0], vec![ClaimCondition { claim: 0, test: Test::AnyOf(strings(&["sadmin", "n7", "btrue"])) }]);
    assert_eq!(
        claims[1],
        vec![
            ClaimCondition { claim: 1, test: Test::EqualsHeader("x-tenant".into()) },
            ClaimCondition { claim: 0, test: Test::AllOf(strings(&["n1"])) }
        ]
    );
}

#[test]
fn conditions_no_credential_could_meet_are_refused_at_load() {
    let api_keys = json!({"clients": [{"id": "c", "key_hash": format!("sha256:{}", "ab".repeat(32))}]});
    let claims = json!([{"claim": "tenant", "any_of": ["acme"]}]);
    let err = error_of(json!({"api_keys": api_keys, "rules": [{"require": ["api-key"], "claims": claims}]}));
    assert!(err.starts_with("rules[0].claims: the rule's principal is never a token with claims"), "{err}");
    let err = error_of(json!({"api_keys": api_keys, "rules": [{"request_principals": ["*"]}]}));
    assert!(err.starts_with("rules[0].request_principals: no JWT provider's token can reach this rule"), "{err}");
    let with_provider = json!({"api_keys": api_keys, "jwt": {"providers": [hs256_provider("corp", "https://id.corp")]},
                               "rules": [{"require": ["api-key"], "request_principals": ["*"]}]});
    assert!(error_of(with_provider).starts_with("rules[0].request_principals: no JWT provider's token"));
    let fine = json!({"api_keys": api_keys, "jwt": {"providers": [hs256_provider("corp", "https://id.corp")]},
                      "rules": [{"request_principals": ["https://id.corp/*"], "claims": claims}]});
    assert!(parse(fine).is_ok());
    // A tree takes a token, but the principal (whose credential is judged) is the API client's.
    let tree = |extra: serde_json::Value| {
        let mut rule = json!({"require": {"all": ["api-key", "jwt"]}, "principal_from": ["api-key"]});
        rule.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"api_keys": api_keys, "jwt": {"providers": [hs256_provider("corp", "https://id.corp")]}, "rules": [rule]})
    };
    assert!(
        error_of(tree(json!({"claims": claims}))).starts_with("rules[0].claims: the rule's principal is never a token")
    );
    assert!(error_of(tree(json!({"request_principals": ["*"]}))).starts_with("rules[0].request_principals: no JWT"));
    assert!(parse(tree(json!({"principal_from": ["jwt", "api-key"], "claims": claims}))).is_ok());
}

#[test]
fn introspection_answers_are_shared_only_by_configurations_that_judge_and_ask_alike() {
    let with = |require_expiration: bool, client_id: &str, skew: u64| {
        let introspection =
            json!({"cluster": "c", "authority": "a", "path": "/i", "client_id": client_id, "client_secret": "s"});
        let provider = json!({"name": "idp", "issuer": "https://idp", "require_expiration": require_expiration,
                              "introspection": introspection});
        let config = json!({"clock_skew_seconds": skew, "jwt": {"providers": [provider]}});
        parse(config).unwrap().jwt_providers.remove(0).introspection.unwrap().answers
    };
    let base = with(false, "filter", 60);
    assert!(base.shares_answers_with(&with(false, "filter", 60)));
    // A token without `exp` is active here, and refused where an expiration is required.
    assert!(!base.shares_answers_with(&with(true, "filter", 60)));
    // An endpoint may answer each caller differently (RFC 7662 2.2).
    assert!(!base.shares_answers_with(&with(false, "another", 60)));
    // An answer is kept until `exp` plus the skew: one past `exp` by a minute is not active where the skew is 0.
    assert!(!base.shares_answers_with(&with(false, "filter", 0)));
}

#[test]
fn dpop_that_no_token_of_its_provider_could_meet_is_refused() {
    let introspection = json!({"cluster": "c", "authority": "a", "path": "/i", "auth": "bearer", "client_secret": "s"});
    for mode in ["allowed", "required"] {
        let opaque = json!({"name": "o", "introspection": introspection.clone(), "dpop": mode});
        let error = error_of(json!({"jwt": {"providers": [opaque]}}));
        assert_eq!(
            error,
            "jwt.providers[0].dpop: is for JWTs: bound opaque tokens are refused (their binding is not checked yet)"
        );
        // A token has one binding: a provider that requires a certificate's never takes a key's.
        let mut both = hs256_provider("p", "https://p");
        both["dpop"] = json!(mode);
        both["require_certificate_binding"] = json!(true);
        let error = error_of(json!({"jwt": {"providers": [both]}}));
        assert_eq!(
            error,
            "jwt.providers[0].dpop: require_certificate_binding refuses every token bound to a key (a token has one binding)"
        );
    }
    let mut dpop = hs256_provider("p", "https://p");
    dpop["dpop"] = json!("required");
    assert!(parse(json!({"jwt": {"providers": [dpop]}})).is_ok());
}

#[test]
fn an_es384_dpop_proof_needs_envoy_crypto() {
    // P-384 has no pure-Rust path: without Envoy's BoringSSL every ES384 proof would fail its signature.
    let mut provider = hs256_provider("corp", "https://corp");
    provider["dpop"] = json!({"algorithms": ["ES256", "ES384"]});
    let config = json!({"envoy_crypto": false, "jwt": {"providers": [provider.clone()]}});
    assert_eq!(
        error_of(config),
        "envoy_crypto: must be true: corp's dpop.algorithms names ES384, which only Envoy's BoringSSL checks"
    );
    assert!(parse(json!({"jwt": {"providers": [provider]}})).is_ok());
}

#[test]
fn a_dpop_challenge_offers_every_algorithm_a_provider_takes_once() {
    use crate::pipeline::route::{Kind, Require};
    let mut a = hs256_provider("a", "https://a");
    a["dpop"] = json!({"algorithms": ["ES256", "EdDSA"]});
    let mut b = hs256_provider("b", "https://b");
    b["dpop"] = json!({"algorithms": ["EdDSA", "PS256"]});
    let plain = hs256_provider("c", "https://c");
    let config = parse(json!({"jwt": {"providers": [a, b, plain.clone()]}})).unwrap();
    assert_eq!(config.challenges(&Require::Any).dpop_algs, Some("ES256 EdDSA PS256"));
    // Not offered where the rule takes no token, nor without a provider that takes DPoP.
    assert_eq!(config.challenges(&Require::Kinds(vec![Kind::ApiKey])).dpop_algs, None);
    let config = parse(json!({"jwt": {"providers": [plain]}})).unwrap();
    assert_eq!(config.challenges(&Require::Any).dpop_algs, None);
}
