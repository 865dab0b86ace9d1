//! The decision, end to end on the pure core. Tokens are minted with
//! `jsonwebtoken`, not the crate that verifies them.

use std::cell::Cell;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::jwt::{Algorithm, PureRust};

const SECRET_SHA256: &str = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
const HMAC_SECRET: &[u8] = b"secret-secret-secret-secret-secret-";
const NOW: u64 = 1_800_000_000;

fn rsa_public_jwk() -> Value {
    let all: Value = serde_json::from_str(include_str!("../../tests/keys/public_jwks.json")).unwrap();
    let mut jwk = all["rsa2048"].clone();
    jwk["kid"] = json!("rsa-1");
    jwk
}

fn authenticator(extra: Value) -> Authenticator {
    let mut config = json!({
        "basic": {
            "users": [{"name": "alice", "password_hash": SECRET_SHA256}],
            "htpasswd": format!("carol:{}\n", bcrypt::hash_with_salt("pw", 4, [1; 16]).unwrap().format_for_version(bcrypt::Version::TwoY))
        },
        "api_keys": {
            "headers": ["x-api-key", "x-cdata-authtoken"],
            "query_param": "api_key",
            "clients": [
                {"id": "reporting", "key_hash": SECRET_SHA256},
                {"id": "retired", "key_hash": "sha256:c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2", "disabled": true}
            ]
        },
        "bypass": [{"path_prefix": "/healthz"}, {"method": "OPTIONS"}],
        "jwt": {"providers": [
            {
                "name": "corp",
                "issuer": "https://id.corp",
                "audiences": ["api"],
                "local_jwks": {"keys": [
                    {"kty": "oct", "kid": "hmac-1", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(HMAC_SECRET)},
                    rsa_public_jwk()
                ]},
                "claim_to_headers": [{"claim": "realm.roles", "header": "x-roles"}]
            },
            {
                "name": "remote",
                "issuer": "https://remote.example",
                "remote_jwks": {"cluster": "jwks", "authority": "jwks.local", "path": "/jwks.json"}
            }
        ]}
    });
    if let (Some(base), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    Authenticator::new(Config::from_json(config.to_string().as_bytes()).unwrap())
}

fn decide_with(
    authn: &mut Authenticator,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    remote: &[RemoteKeyState],
    backend: &dyn SignatureBackend,
) -> Decision {
    let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    authn.decide(&RequestFacts { method, path, headers: &headers }, remote, backend, NOW)
}

fn decide(authn: &mut Authenticator, headers: &[(&str, &str)]) -> Decision {
    decide_with(authn, "GET", "/orders", headers, &[], &PureRust)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn hs256(claims: Value) -> String {
    let header = Header { kid: Some("hmac-1".into()), ..Header::new(jsonwebtoken::Algorithm::HS256) };
    encode(&header, &claims, &EncodingKey::from_secret(HMAC_SECRET)).unwrap()
}

fn rs256(claims: Value, kid: &str) -> String {
    let header = Header { kid: Some(kid.into()), ..Header::new(jsonwebtoken::Algorithm::RS256) };
    let key = EncodingKey::from_rsa_pem(include_bytes!("../../tests/keys/rsa2048_private.pem")).unwrap();
    encode(&header, &claims, &key).unwrap()
}

fn allowed(decision: Decision) -> Allowed {
    match decision {
        Decision::Allow(allowed) => allowed,
        other => panic!("expected Allow, got {other:?}"),
    }
}

fn denied(decision: Decision) -> Rejection {
    match decision {
        Decision::Deny(rejection) => rejection,
        other => panic!("expected Deny, got {other:?}"),
    }
}

fn header_value<'a>(allowed: &'a Allowed, name: &str) -> Option<&'a str> {
    allowed.set_headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[test]
fn basic_user_is_allowed_with_principal_headers() {
    let mut authn = authenticator(json!({}));
    let a = allowed(decide(&mut authn, &[("authorization", &basic("alice", "secret"))]));
    assert_eq!(header_value(&a, "x-auth-principal"), Some("alice"));
    assert_eq!(header_value(&a, "x-auth-method"), Some("basic"));
    assert_eq!(header_value(&a, "x-auth-provider"), None);
    assert_eq!(a.remove_headers, vec!["authorization"]);
}

#[test]
fn bcrypt_user_from_htpasswd() {
    let mut authn = authenticator(json!({}));
    let a = allowed(decide(&mut authn, &[("authorization", &basic("carol", "pw"))]));
    assert_eq!(a.principal.id, "carol");
    let r = denied(decide(&mut authn, &[("authorization", &basic("carol", "pW"))]));
    assert_eq!((r.status, r.reason), (401, "basic_invalid"));
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let mut authn = authenticator(json!({}));
    let wrong = denied(decide(&mut authn, &[("authorization", &basic("alice", "nope"))]));
    let unknown = denied(decide(&mut authn, &[("authorization", &basic("mallory", "secret"))]));
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.message, unknown.message);
    assert_eq!(
        wrong.challenges,
        vec![
            "Basic realm=\"api\", charset=\"UTF-8\"",
            "Bearer realm=\"api\"",
            "ApiKey realm=\"api\", header=\"x-api-key\""
        ]
    );
}

#[test]
fn missing_credential_offers_every_scheme() {
    let mut authn = authenticator(json!({}));
    let r = denied(decide(&mut authn, &[]));
    assert_eq!((r.status, r.reason), (401, "missing_credential"));
    assert_eq!(r.challenges.len(), 3);
}

#[test]
fn malformed_basic_is_a_401_naming_the_problem() {
    let mut authn = authenticator(json!({}));
    let r = denied(decide(&mut authn, &[("authorization", "Basic !!!")]));
    assert_eq!((r.status, r.reason), (401, "basic_malformed"));
    let r = denied(decide(&mut authn, &[("authorization", &format!("Basic {}", STANDARD.encode("nocolon")))]));
    assert_eq!(r.message, "Basic credentials need user:password");
}

#[test]
fn api_keys_in_headers_basic_and_query() {
    let mut authn = authenticator(json!({}));
    let a = allowed(decide(&mut authn, &[("x-cdata-authtoken", "secret")]));
    assert_eq!((a.principal.id.as_str(), a.principal.method), ("reporting", AuthMethod::ApiKey));
    assert_eq!(a.remove_headers, vec!["x-cdata-authtoken"]);

    let a = allowed(decide(&mut authn, &[("authorization", &basic("reporting", "secret"))]));
    assert_eq!(header_value(&a, "x-auth-method"), Some("api-key"));

    let a = allowed(decide_with(&mut authn, "GET", "/r?x=1&api_key=secret", &[], &[], &PureRust));
    assert_eq!(a.new_path.as_deref(), Some("/r?x=1"));
}

#[test]
fn disabled_and_unknown_api_keys() {
    let mut authn = authenticator(json!({}));
    // sha256("foobar") is the retired client's key.
    let r = denied(decide(&mut authn, &[("x-api-key", "foobar")]));
    assert_eq!((r.status, r.reason, r.message.as_str()), (401, "api_key_disabled", "invalid API key"));
    let r = denied(decide(&mut authn, &[("x-api-key", "guess")]));
    assert_eq!((r.status, r.reason), (401, "api_key_invalid"));
    let r = denied(decide(&mut authn, &[("authorization", &basic("retired", "foobar"))]));
    assert_eq!(r.reason, "api_key_disabled");
}

#[test]
fn forward_credentials_keeps_them() {
    let mut authn = authenticator(json!({"forward_credentials": true}));
    let a = allowed(decide(&mut authn, &[("x-api-key", "secret")]));
    assert!(a.remove_headers.is_empty());
}

#[test]
fn bypass_rules() {
    let mut authn = authenticator(json!({}));
    assert_eq!(
        decide_with(&mut authn, "GET", "/healthz/live", &[], &[], &PureRust),
        Decision::Bypass { remove_headers: vec![], new_path: None }
    );
    assert_eq!(
        decide_with(&mut authn, "OPTIONS", "/orders", &[], &[], &PureRust),
        Decision::Bypass { remove_headers: vec![], new_path: None }
    );
    assert!(matches!(decide_with(&mut authn, "GET", "/health", &[], &[], &PureRust), Decision::Deny(_)));
}

#[test]
fn bearer_token_with_claim_headers() {
    let mut authn = authenticator(json!({}));
    let token = hs256(
        json!({"iss": "https://id.corp", "aud": "api", "sub": "u-42", "exp": NOW + 60, "realm": {"roles": ["a", "b"]}}),
    );
    let a = allowed(decide(&mut authn, &[("authorization", &format!("Bearer {token}"))]));
    assert_eq!(header_value(&a, "x-auth-principal"), Some("u-42"));
    assert_eq!(header_value(&a, "x-auth-method"), Some("jwt"));
    assert_eq!(header_value(&a, "x-auth-provider"), Some("corp"));
    assert_eq!(header_value(&a, "x-roles"), Some("a,b"));
}

#[test]
fn bad_tokens_get_rfc6750_challenges() {
    let mut authn = authenticator(json!({}));
    let expired = hs256(json!({"iss": "https://id.corp", "aud": "api", "sub": "u", "exp": NOW - 3600}));
    let r = denied(decide(&mut authn, &[("authorization", &format!("Bearer {expired}"))]));
    assert_eq!(
        r.challenges,
        vec!["Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token expired\""]
    );
    let r = denied(decide(&mut authn, &[("authorization", "Bearer not-a-token")]));
    assert_eq!((r.status, r.reason), (401, "jwt_malformed"));
}

/// Counts the signature checks that reach the backend.
struct Counting(Cell<u32>);

impl SignatureBackend for Counting {
    fn verify(&self, _: Algorithm, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        self.0.set(self.0.get() + 1);
        None // and let the pure-Rust path decide
    }
}

#[test]
fn a_repeated_token_is_verified_once_until_keys_change() {
    let mut authn = authenticator(json!({}));
    let backend = Counting(Cell::new(0));
    let token = rs256(json!({"iss": "https://id.corp", "aud": "api", "sub": "u", "exp": NOW + 60}), "rsa-1");
    let bearer = format!("Bearer {token}");
    for _ in 0..3 {
        allowed(decide_with(&mut authn, "GET", "/", &[("authorization", &bearer)], &[], &backend));
    }
    assert_eq!(backend.0.get(), 1);
    authn.keys_changed();
    allowed(decide_with(&mut authn, "GET", "/", &[("authorization", &bearer)], &[], &backend));
    assert_eq!(backend.0.get(), 2);
}

#[test]
fn a_cached_token_still_expires() {
    let mut authn = authenticator(json!({}));
    let token = hs256(json!({"iss": "https://id.corp", "aud": "api", "sub": "u", "exp": NOW + 5}));
    let bearer = format!("Bearer {token}");
    allowed(decide(&mut authn, &[("authorization", &bearer)]));
    let headers = vec![("authorization".to_string(), bearer)];
    let later = authn.decide(&RequestFacts { method: "GET", path: "/", headers: &headers }, &[], &PureRust, NOW + 3600);
    assert_eq!(denied(later).reason, "jwt_expired");
}

#[test]
fn a_failed_credential_is_not_cached() {
    let mut authn = authenticator(json!({}));
    denied(decide(&mut authn, &[("authorization", &basic("alice", "wrong"))]));
    allowed(decide(&mut authn, &[("authorization", &basic("alice", "secret"))]));
    denied(decide(&mut authn, &[("authorization", &basic("alice", "wrong"))]));
}

#[test]
fn remote_provider_without_keys_waits_then_unknown_kid_refetches() {
    let mut authn = authenticator(json!({}));
    let token = rs256(json!({"iss": "https://remote.example", "sub": "u", "exp": NOW + 60}), "rsa-1");
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];

    let not_loaded = [RemoteKeyState::default(), RemoteKeyState::default()];
    let d = decide_with(&mut authn, "GET", "/", &headers, &not_loaded, &PureRust);
    assert_eq!(d, Decision::WaitForKeys { provider: 1, refetch: false });

    let mut jwk = rsa_public_jwk();
    jwk["kid"] = json!("other");
    let body = json!({"keys": [jwk]}).to_string();
    let keys = KeySet::from_remote_jwks(body.as_bytes()).unwrap();
    let may_refetch =
        [RemoteKeyState::default(), RemoteKeyState { keys: Some(&keys), refetch_allowed: true, fetch_failing: false }];
    let d = decide_with(&mut authn, "GET", "/", &headers, &may_refetch, &PureRust);
    assert_eq!(d, Decision::WaitForKeys { provider: 1, refetch: true });

    let rate_limited =
        [RemoteKeyState::default(), RemoteKeyState { keys: Some(&keys), refetch_allowed: false, fetch_failing: false }];
    let r = denied(decide_with(&mut authn, "GET", "/", &headers, &rate_limited, &PureRust));
    assert_eq!((r.status, r.reason), (401, "jwt_unknown_key"));

    // The endpoint is down: the token may be signed by a key not fetched yet.
    let failing =
        [RemoteKeyState::default(), RemoteKeyState { keys: Some(&keys), refetch_allowed: false, fetch_failing: true }];
    let r = denied(decide_with(&mut authn, "GET", "/", &headers, &failing, &PureRust));
    assert_eq!((r.status, r.reason, r.retry_after_seconds), (503, "jwks_unavailable", Some(1)));

    let body = json!({"keys": [rsa_public_jwk()]}).to_string();
    let rotated = KeySet::from_remote_jwks(body.as_bytes()).unwrap();
    let loaded = [
        RemoteKeyState::default(),
        RemoteKeyState { keys: Some(&rotated), refetch_allowed: false, fetch_failing: false },
    ];
    let a = allowed(decide_with(&mut authn, "GET", "/", &headers, &loaded, &PureRust));
    assert_eq!(header_value(&a, "x-auth-provider"), Some("remote"));
}

#[test]
fn forged_principal_headers_are_removed_from_whatever_goes_upstream() {
    let mut authn = authenticator(json!({}));
    let forged = [("x-auth-principal", "root"), ("x-roles", "admin")];
    let d = decide_with(&mut authn, "GET", "/healthz", &forged, &[], &PureRust);
    assert_eq!(
        d,
        Decision::Bypass { remove_headers: vec!["x-auth-principal".into(), "x-roles".into()], new_path: None }
    );

    let mut headers = forged.to_vec();
    let credentials = basic("alice", "secret");
    headers.push(("authorization", &credentials));
    let a = allowed(decide_with(&mut authn, "GET", "/orders", &headers, &[], &PureRust));
    assert_eq!(a.remove_headers, vec!["x-auth-principal", "x-roles", "authorization"]);
    assert_eq!(header_value(&a, "x-auth-principal"), Some("alice"));
}

#[test]
fn a_second_credential_never_reaches_the_upstream() {
    let mut authn = authenticator(json!({}));
    let token = hs256(json!({"iss": "https://id.corp", "aud": "api", "sub": "u", "exp": NOW + 60}));
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str()), ("x-api-key", "foobar"), ("x-cdata-authtoken", "foobar")];
    let a = allowed(decide_with(&mut authn, "GET", "/o?api_key=foobar&API_KEY=x", &headers, &[], &PureRust));
    assert_eq!(a.principal.id, "u");
    assert_eq!(a.remove_headers, vec!["authorization", "x-api-key", "x-cdata-authtoken"]);
    assert_eq!(a.new_path.as_deref(), Some("/o"));

    let d = decide_with(&mut authn, "GET", "/healthz?api%5Fkey=x", &[("x-api-key", "k")], &[], &PureRust);
    assert_eq!(d, Decision::Bypass { remove_headers: vec!["x-api-key".into()], new_path: Some("/healthz".into()) });
}

#[test]
fn bypass_matches_normalized_paths_at_segment_boundaries() {
    let mut authn = authenticator(json!({}));
    for escape in [
        "/healthz/../orders",
        "/healthz/%2e%2e/orders",
        "/healthz/..%2forders",
        "/healthz\\..\\orders",
        "http://h/healthz/../orders",
        "/healthzadmin",
        "/healthz%2Fx",
    ] {
        let d = decide_with(&mut authn, "GET", escape, &[], &[], &PureRust);
        assert_eq!(denied(d).reason, "missing_credential", "{escape}");
    }
    for fine in ["/healthz", "/healthz/", "//healthz/live", "/x/../healthz", "/%68ealthz"] {
        let d = decide_with(&mut authn, "GET", fine, &[], &[], &PureRust);
        assert!(matches!(d, Decision::Bypass { .. }), "{fine}: {d:?}");
    }
}

#[test]
fn cors_preflight_bypass_needs_origin_and_request_method() {
    let mut authn = authenticator(json!({"bypass": [], "bypass_cors_preflight": true}));
    let preflight = [("origin", "https://app.example"), ("access-control-request-method", "POST")];
    let d = decide_with(&mut authn, "OPTIONS", "/orders", &preflight, &[], &PureRust);
    assert!(matches!(d, Decision::Bypass { .. }), "{d:?}");
    for headers in [&preflight[..1], &preflight[1..], &[]] {
        let d = decide_with(&mut authn, "OPTIONS", "/orders", headers, &[], &PureRust);
        assert_eq!(denied(d).reason, "missing_credential");
    }
    let not_options = decide_with(&mut authn, "POST", "/orders", &preflight, &[], &PureRust);
    assert_eq!(denied(not_options).reason, "missing_credential");
}

#[test]
fn underscore_spellings_of_owned_headers_are_removed() {
    let mut authn = authenticator(json!({}));
    let headers = [("x_auth_principal", "root"), ("x-auth_method", "basic"), ("x_roles", "admin"), ("x_other", "ok")];
    let d = decide_with(&mut authn, "GET", "/healthz", &headers, &[], &PureRust);
    let Decision::Bypass { remove_headers, .. } = d else { panic!("{d:?}") };
    assert_eq!(remove_headers, vec!["x_auth_principal", "x-auth_method", "x_roles"]);
}
