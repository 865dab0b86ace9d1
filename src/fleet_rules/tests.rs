use serde_json::{json, Value};

use super::*;

const SECRET_SHA256: &str = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEewIjKce030gRAjMaUNSrcd552AHI\niq6UuNBHSlk+wQFC3jYyEiDtZ+Z24A7F4AC8Z9w7YFz86oJL+HZiyKF5XA==\n-----END PUBLIC KEY-----\n";

fn provider(name: &str, requests_per_hour: Option<u64>) -> Value {
    let mut provider = json!({
        "name": name,
        "issuer": format!("https://{name}.example"),
        "local_jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}]}
    });
    if let Some(limit) = requests_per_hour {
        provider["requests_per_hour"] = json!(limit);
    }
    provider
}

fn config(limits: Value) -> Value {
    json!({
        "limits": limits,
        "basic": {
            "users": [
                {"name": "zoe", "password_hash": SECRET_SHA256, "requests_per_hour": 5},
                {"name": "alice", "password_hash": SECRET_SHA256, "requests_per_hour": 0},
                {"name": "same", "password_hash": SECRET_SHA256, "requests_per_hour": 100}
            ],
            "htpasswd": "carol:{SHA}NxjbCIMb0ZKUzwlXBgGmHqGE3mw=\n"
        },
        "api_keys": {"clients": [
            {"id": "reporting", "key_hash": SECRET_SHA256, "requests_per_hour": 5000},
            {"id": "retired", "key_hash": format!("sha256:{}", "ab".repeat(32)), "requests_per_hour": 1, "disabled": true}
        ]},
        "jwt": {"providers": [provider("corp", Some(50)), provider("partners", None)]},
        "keypairs": [{"id": "engine", "public_key": PEM, "requests_per_hour": 7}],
        "token_endpoint": {
            "path": "/auth/token",
            "issuer": "https://api.example/auth",
            "signing_key": {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}
        }
    })
}

fn rules_of(value: Value) -> Result<Rules, Refusal> {
    Rules::of(&Config::from_json(value.to_string().as_bytes()).unwrap())
}

fn exact(value: &str, requests_per_hour: Option<u64>, field: &str) -> Override {
    Override { selector: Selector::Exact(value.into()), requests_per_hour, field: field.into() }
}

#[test]
fn a_rule_for_each_principal_whose_limit_differs_from_the_default() {
    let rules = rules_of(config(json!({"requests_per_hour": 100, "scope": "fleet"}))).unwrap();
    assert_eq!(rules.default, Some(100));
    assert_eq!(
        rules.overrides,
        vec![
            // Users by name; "same" and htpasswd's carol take the default: no rule.
            exact("basic:alice", None, "basic.users[name=\"alice\"].requests_per_hour"),
            exact("basic:zoe", Some(5), "basic.users[name=\"zoe\"].requests_per_hour"),
            // A disabled client cannot authenticate; the token endpoint's tokens are their client's.
            exact("api-key:reporting", Some(5000), "api_keys.clients[0].requests_per_hour"),
            Override {
                selector: Selector::Prefix("jwt:corp:".into()),
                requests_per_hour: Some(50),
                field: "jwt.providers[0].requests_per_hour".into()
            },
            exact("keypair:engine", Some(7), "keypairs[0].requests_per_hour"),
        ]
    );
}

#[test]
fn refused_unless_the_engine_is_to_count() {
    let refusal = rules_of(config(json!({"requests_per_hour": 100}))).unwrap_err();
    assert_eq!(refusal.field, "limits.scope");
    let nothing =
        json!({"limits": {"scope": "fleet"}, "api_keys": {"clients": [{"id": "a", "key_hash": SECRET_SHA256}]}});
    assert_eq!(rules_of(nothing).unwrap_err().field, "limits.requests_per_hour");
    // Basic users alone: their failed passwords are the engine's to count.
    let users =
        json!({"limits": {"scope": "fleet"}, "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}]}});
    let rules = rules_of(users).unwrap();
    assert_eq!(rules.failures, Some(Failures { max_failures: 100, window_seconds: 60 }));
}

#[test]
fn envoyproxy_ratelimit_rules() {
    let rules = rules_of(config(json!({"requests_per_hour": 100, "scope": "fleet"}))).unwrap();
    let text = rules.envoy_ratelimit("api").unwrap();
    let expected_tail = "domain: \"api\"\ndescriptors:\n- key: principal\n  rate_limit:\n    unit: hour\n    requests_per_unit: 100\n\
                         # basic.users[name=\"alice\"].requests_per_hour\n- key: principal\n  value: \"basic:alice\"\n  rate_limit:\n    unlimited: true\n";
    assert!(text.contains(expected_tail), "{text}");
    assert!(
        text.contains("  value: \"jwt:corp:*\"\n  rate_limit:\n    unit: hour\n    requests_per_unit: 50\n"),
        "{text}"
    );
    // Its wildcard cannot be a user name's character.
    let mut value = config(json!({"requests_per_hour": 100, "scope": "fleet"}));
    value["basic"]["users"][0]["name"] = json!("zo*");
    let refused = rules_of(value).unwrap().envoy_ratelimit("api").unwrap_err();
    assert_eq!(refused.field, "basic.users[name=\"zo*\"].requests_per_hour");
}

#[test]
fn limitador_limits_exclude_overridden_principals_from_the_default() {
    let rules = rules_of(config(json!({"requests_per_hour": 100, "scope": "fleet"}))).unwrap();
    let text = rules.limitador("api");
    let default = "- namespace: \"api\"\n  name: 'limits.requests_per_hour'\n  max_value: 100\n  seconds: 3600\n  conditions:\n  \
                   - '!(descriptors[0].principal in [\"basic:alice\", \"basic:zoe\", \"api-key:reporting\", \"keypair:engine\"])'\n  \
                   - '!descriptors[0].principal.startsWith(\"jwt:corp:\")'\n  variables:\n  - 'descriptors[0].principal'\n";
    assert!(text.contains(default), "{text}");
    assert!(
        text.contains(
            "  max_value: 5\n  seconds: 3600\n  conditions:\n  - 'descriptors[0].principal == \"basic:zoe\"'\n"
        ),
        "{text}"
    );
    assert!(text.contains("  - 'descriptors[0].principal.startsWith(\"jwt:corp:\")'\n"), "{text}");
    // An unlimited principal is only excluded from the default.
    assert!(!text.contains("== \"basic:alice\""), "{text}");
    // Four hourly rules and the users' failed passwords.
    assert_eq!(text.matches("- namespace:").count(), 6, "{text}");
}

#[test]
fn limitador_quotes_what_cel_and_yaml_would_misread() {
    let mut value = config(json!({"requests_per_hour": 100, "scope": "fleet"}));
    value["basic"]["users"][0]["name"] = json!("o'\"\\x");
    let text = rules_of(value).unwrap().limitador("api");
    assert!(text.contains("  - 'descriptors[0].principal == \"basic:o''\\\"\\\\x\"'\n"), "{text}");
}

#[test]
fn without_a_default_only_the_principals_with_a_limit_have_rules() {
    let value = json!({
        "limits": {"scope": "fleet"},
        "api_keys": {"clients": [{"id": "a", "key_hash": SECRET_SHA256, "requests_per_hour": 3}, {"id": "b", "key_hash": format!("sha256:{}", "ab".repeat(32))}]}
    });
    let rules = rules_of(value).unwrap();
    assert_eq!(
        rules,
        Rules {
            default: None,
            overrides: vec![exact("api-key:a", Some(3), "api_keys.clients[0].requests_per_hour")],
            one_time: Vec::new(),
            failures: None,
            domain: "wasm_authn".into()
        }
    );
    assert!(!rules.envoy_ratelimit("d").unwrap().contains("- key: principal\n  rate_limit"));
    assert_eq!(rules.limitador("d").matches("- namespace:").count(), 1);
}

#[test]
fn envoy_side_reads_the_header_the_filter_sets_and_removes_it() {
    let rules = rules_of(config(json!({"requests_per_hour": 100, "scope": "fleet"}))).unwrap();
    let text = rules.envoy("api", "rls");
    assert!(text.contains("    domain: \"api\"\n"), "{text}");
    assert!(text.contains("          cluster_name: \"rls\"\n"), "{text}");
    // The cluster is named, not printed: the comment says what to define.
    assert!(text.contains("`cluster_name` is the engine's Envoy cluster, not printed here: define it"), "{text}");
    assert!(text.contains(
        "  - actions:\n    - request_headers:\n        header_name: x-auth-ratelimit-principal\n        descriptor_key: principal\n  \
         request_headers_to_remove:\n  - x-auth-ratelimit-principal\n"
    ), "{text}");
}

fn one_time_config() -> Value {
    json!({
        "limits": {"scope": "fleet"},
        "clock_skew_seconds": 10,
        "basic": {"users": [{"name": "a", "password_hash": SECRET_SHA256}],
                  "failure_limit": {"max_failures": 3, "max_failures_per_name": 6, "window_seconds": 600}},
        "keypairs": [
            {"id": "plain", "public_key": PEM},
            {"id": "sign.er", "public_key": include_str!("../../tests/keys/ec_p256_public.pem"),
             "max_lifetime_seconds": 60, "one_time": true}
        ]
    })
}

#[test]
fn one_time_keypairs_and_failed_passwords_have_rules_of_their_own() {
    let rules = rules_of(one_time_config()).unwrap();
    assert_eq!(
        rules.one_time,
        vec![OneTime { keypair: "sign.er".into(), seconds: 60 + 2 * 10 + 1, field: "keypairs[1].one_time".into() }]
    );
    assert_eq!(rules.failures, Some(Failures { max_failures: 6, window_seconds: 600 }));
    let limitador = rules.limitador("api");
    assert!(
        limitador.contains(
            "- namespace: \"api\"\n  name: 'keypairs[1].one_time'\n  max_value: 1\n  seconds: 81\n  conditions:\n  \
         - 'descriptors[0].one_time_keypair == \"sign.er\"'\n  variables:\n  - 'descriptors[0].jti'\n"
        ),
        "{limitador}"
    );
    assert!(
        limitador.contains(
            "  name: 'basic.failure_limit.max_failures_per_name'\n  max_value: 6\n  seconds: 600\n  conditions:\n  \
         - 'descriptors[0].basic_failures != \"\"'\n  variables:\n  - 'descriptors[0].basic_failures'\n"
        ),
        "{limitador}"
    );
    let ratelimit = rules.envoy_ratelimit("api").unwrap();
    assert!(ratelimit.contains(
        "- key: one_time_keypair\n  value: \"sign.er\"\n  descriptors:\n  - key: jti\n    rate_limit:\n      unit: day\n      requests_per_unit: 1\n"
    ), "{ratelimit}");
    // Checked with hits_addend 0, which envoyproxy/ratelimit finds over once the count exceeds the limit.
    assert!(
        ratelimit.contains("- key: basic_failures\n  rate_limit:\n    unit: hour\n    requests_per_unit: 5\n"),
        "{ratelimit}"
    );
    // The filter's domain, unless another is asked for where the filter asks nothing itself.
    assert_eq!(rules.domain_of(None).unwrap(), "wasm_authn");
    assert_eq!(rules.domain_of(Some("other")).unwrap_err().field, "limits.engine_domain");
    assert!(rules
        .envoy("api", "ratelimit")
        .contains("# cluster named `ratelimit` (gRPC, HTTP/2), in the domain \"wasm_authn\".\n"));
    // Its cache key would be ambiguous with a `_` in the keypair's id.
    let mut underscore = one_time_config();
    underscore["keypairs"][1]["id"] = json!("sign_er");
    let refused = rules_of(underscore).unwrap().envoy_ratelimit("api").unwrap_err();
    assert_eq!(refused.field, "keypairs[1].one_time");
    // No principal descriptor without hourly limits.
    assert!(
        !ratelimit.contains("key: principal") && !limitador.contains("descriptors[0].principal"),
        "{ratelimit}{limitador}"
    );
}
