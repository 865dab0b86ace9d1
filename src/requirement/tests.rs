use serde_json::{json, Value};

use super::*;
use crate::config::Config;
use crate::pipeline::route::Require;
use crate::principal::AuthMethod;
use crate::privileges::Privileges;

fn jwt(provider: &str) -> Kind {
    Kind::Jwt { provider: Some(provider.into()) }
}

fn principal(method: AuthMethod, provider: Option<&str>) -> Rc<Principal> {
    let privileges = Rc::new(Privileges::default());
    Rc::new(Principal { provider: provider.map(String::from), ..Principal::configured("alice", method, &privileges) })
}

/// `{"all": [basic, {"any": [jwt:corp, api-key]}]}`
fn tree() -> Requirement {
    Requirement::All(vec![
        Requirement::Kind(Kind::Basic),
        Requirement::Any(vec![Requirement::Kind(jwt("corp")), Requirement::Kind(Kind::ApiKey)]),
    ])
}

#[test]
fn a_tree_is_met_by_the_kinds_of_the_verified_principals() {
    let basic = principal(AuthMethod::Basic, None);
    let corp = principal(AuthMethod::Jwt, Some("corp"));
    let partners = principal(AuthMethod::Jwt, Some("partners"));
    let key = principal(AuthMethod::ApiKey, None);
    assert!(tree().met_by(&[basic.clone(), corp.clone()]));
    assert!(tree().met_by(&[basic.clone(), key.clone()]));
    assert!(!tree().met_by(std::slice::from_ref(&basic)));
    assert!(!tree().met_by(&[corp.clone(), key.clone()]));
    // Another provider's token is not `jwt:corp`.
    assert!(!tree().met_by(&[basic.clone(), partners.clone()]));
    let missing = |principals: &[Rc<Principal>]| {
        let tree = tree();
        let mut out = Vec::new();
        tree.missing(principals, &mut out);
        out.iter().map(|kind| kind.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(missing(std::slice::from_ref(&basic)), ["jwt:corp", "api-key"]);
    assert_eq!(missing(std::slice::from_ref(&corp)), ["basic"]);
    assert_eq!(missing(&[]), ["basic", "jwt:corp", "api-key"]);
    assert!(missing(&[basic, key]).is_empty());
}

#[test]
fn the_rules_principal_is_the_first_principal_from_kind_present() {
    let tree = Tree { root: tree(), principal_from: vec![jwt("corp"), Kind::ApiKey, Kind::Basic], kinds: Vec::new() };
    let basic = principal(AuthMethod::Basic, None);
    let corp = principal(AuthMethod::Jwt, Some("corp"));
    let key = principal(AuthMethod::ApiKey, None);
    assert_eq!(tree.principal_of(&[basic.clone(), corp]), Some(1));
    assert_eq!(tree.principal_of(&[basic.clone(), key]), Some(1));
    assert_eq!(tree.principal_of(&[basic]), Some(0));
}

#[test]
fn also_headers_are_the_filters_under_any_spelling() {
    for name in ["x-auth-also-jwt", "X-Auth-Also-basic", "x_auth_also_api-key", "x-auth-also-"] {
        assert!(is_also_header(name), "{name}");
    }
    for name in ["x-auth-als", "x-auth-principal", "y-auth-also-jwt"] {
        assert!(!is_also_header(name), "{name}");
    }
    let others = [principal(AuthMethod::Basic, None), principal(AuthMethod::Jwt, Some("corp"))];
    let (mut headers, mut state) = (Vec::new(), Vec::new());
    report_others(&others, true, &mut headers, &mut state);
    assert_eq!(
        headers,
        [("x-auth-also-basic".into(), "basic:alice".into()), ("x-auth-also-jwt".into(), "jwt:alice".into())]
    );
    assert_eq!(state[0], ("wasm_authn.also.basic".into(), "basic:alice".into()));
    let mut without = Vec::new();
    report_others(&others, false, &mut headers, &mut without);
    assert!(without.is_empty());
}

fn config(rule: Value) -> Result<Config, String> {
    let config = json!({
        "basic": {"users": [{"name": "alice", "password_hash": "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"}]},
        "api_keys": {"clients": [{"id": "reporting", "key_hash": "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"}]},
        "jwt": {"providers": [
            {"name": "corp", "issuer": "https://corp", "local_jwks": {"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}]}, "from_headers": [{"name": "x-jwt"}]},
            {"name": "partners", "issuer": "https://partners", "local_jwks": {"keys": [{"kty": "oct", "kid": "b", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}]}}
        ]},
        "rules": [rule]
    });
    Config::from_json_with_env(config.to_string().as_bytes(), &|_| None).map_err(|e| e.to_string())
}

fn refused(rule: Value) -> String {
    match config(rule) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

#[test]
fn trees_load_and_a_tree_without_all_is_a_list() {
    let c = config(json!({"require": {"all": ["basic", {"any": ["jwt:corp", "api-key"]}]}})).unwrap();
    let Require::Tree(tree) = &c.routes.rules[0].require else { panic!("not a tree") };
    assert_eq!(tree.root, super::tests::tree());
    assert_eq!(tree.principal_from, [Kind::Basic, jwt("corp"), Kind::ApiKey]);
    let c = config(json!({"require": {"any": ["basic", {"any": ["jwt:corp"]}]}})).unwrap();
    assert_eq!(c.routes.rules[0].require, Require::Kinds(vec![Kind::Basic, jwt("corp")]));
    let c = config(json!({"require": {"all": ["basic", "jwt"]}, "principal_from": ["jwt:corp", "jwt"]})).unwrap();
    let Require::Tree(tree) = &c.routes.rules[0].require else { panic!("not a tree") };
    assert_eq!(tree.principal_from, [jwt("corp"), Kind::Jwt { provider: None }]);
    assert!(config(json!({"require": "optional_or_failed", "enforce": false})).is_ok());
}

#[test]
fn bad_trees_are_refused_with_their_field() {
    let cases = [
        (json!({"require": {"all": []}}), "rules[0].require.all: must list 1 to 8"),
        (json!({"require": {"all": ["basic", "basic"]}}), "rules[0].require.all[1]: takes a credential from where"),
        // One token cannot be two (and `jwt` covers `jwt:corp`).
        (json!({"require": {"all": ["jwt", "jwt:corp"]}}), "rules[0].require.all[1]: takes a credential"),
        (json!({"require": {"all": ["jwt:corp", "keypair"]}}), "rules[0].require.all[1]: takes a credential"),
        (json!({"require": {"all": ["api-key", {"any": ["jwt", "api-key"]}]}}), "rules[0].require.all[1]: takes"),
        (json!({"require": {"all": ["basic", "kerberos"]}}), "rules[0].require.all[1]: unknown credential kind"),
        (
            json!({"require": {"all": ["basic", {"any": ["mtls"]}]}}),
            "rules[0].require: accepts \"mtls\": configure the mtls section",
        ),
        (json!({"require": {"all": ["basic", "jwt:nobody"]}}), "rules[0].require.all[1]: names no provider"),
        (json!({"require": {"both": ["basic"]}}), "rules[0].require.both: must be \"all\" or \"any\""),
        (json!({"require": {"all": ["basic"], "any": ["jwt"]}}), "rules[0].require: must have one member"),
        (json!({"require": {"all": ["basic", 3]}}), "rules[0].require.all[1]: must be a credential kind"),
        (
            json!({"require": {"all": ["basic", "jwt"]}, "principal_from": ["api-key"]}),
            "rules[0].principal_from[0]: is no kind",
        ),
        (
            json!({"require": {"all": ["basic", {"any": ["jwt:corp", "api-key"]}]}, "principal_from": ["jwt:corp"]}),
            "rules[0].principal_from: the require tree can be met without",
        ),
        // `jwt` is met by a partners token too: it has no `jwt:corp` principal then.
        (
            json!({"require": {"all": ["basic", "jwt"]}, "principal_from": ["jwt:corp"]}),
            "rules[0].principal_from: the require",
        ),
        (json!({"require": ["basic", "jwt"], "principal_from": ["basic"]}), "rules[0].principal_from: names whose"),
        (json!({"request_principals": ["*a*"]}), "rules[0].request_principals[0]: must be <iss>/<sub>"),
    ];
    for (rule, expected) in cases {
        let error = refused(rule.clone());
        assert!(error.starts_with(expected), "{rule}: {error}");
    }
    // Bounded depth: four levels of all/any, not five.
    let mut deep = json!("basic");
    for _ in 0..MAX_DEPTH {
        deep = json!({"any": [deep]});
    }
    assert!(config(json!({"require": {"all": [deep.clone()]}})).unwrap_err().contains("nests deeper than 4"));
    let four = deep["any"][0].clone();
    assert!(config(json!({"require": {"all": [four, "jwt"]}})).is_ok());
    let wide: Vec<Value> = (0..=MAX_WIDTH).map(|_| json!("basic")).collect();
    assert!(refused(json!({"require": {"any": wide}})).starts_with("rules[0].require.any: must list 1 to 8"));
}
