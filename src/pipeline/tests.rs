//! The decision, end to end on the pure core. Tokens are minted with
//! `jsonwebtoken`, not the code that verifies them.

use std::cell::Cell;
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::jwt::{Algorithm, ProviderId, SignatureBackend};
use crate::pipeline::stream::Awaited;
use crate::principal::AuthMethod;
use crate::reason::Reason;
use crate::remote::{Progress, Step};
use crate::testing::{FakeHost, FakeResponse, FakeShared};

const SECRET_SHA256: &str = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
const HMAC_SECRET: &[u8] = b"secret-secret-secret-secret-secret-";
const NOW: u64 = 1_800_000_000;

fn rsa_public_jwk() -> Value {
    let all: Value = serde_json::from_str(include_str!("../../tests/keys/public_jwks.json")).unwrap();
    let mut jwk = all["rsa2048"].clone();
    jwk["kid"] = json!("rsa-1");
    jwk
}

/// A configuration, one VM's verifier and its host.
struct Vm {
    config: Config,
    fetched: Fetched,
    verifier: Verifier,
    host: FakeHost,
}

impl Vm {
    fn keys_changed(&mut self) {
        self.verifier.keys_changed();
    }
}

fn authenticator(extra: Value) -> Vm {
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
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let host = FakeHost::new(&FakeShared::default());
    Vm { verifier: Verifier::new(&config), fetched: Fetched::new(&config), config, host }
}

fn decide_at(
    vm: &mut Vm,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    backend: Option<&dyn SignatureBackend>,
    now: u64,
) -> Decision {
    let headers = crate::testing::headers(headers);
    let request = RequestFacts::new(method, path, &headers);
    match backend {
        Some(backend) => {
            let host = WithBackend { host: &vm.host, backend };
            super::decide(&vm.config, &vm.fetched, &mut vm.verifier, &request, &host, now * 1000)
        }
        None => super::decide(&vm.config, &vm.fetched, &mut vm.verifier, &request, &vm.host, now * 1000),
    }
}

fn decide_with(vm: &mut Vm, method: &str, path: &str, headers: &[(&str, &str)]) -> Decision {
    decide_at(vm, method, path, headers, None, NOW)
}

fn decide(vm: &mut Vm, headers: &[(&str, &str)]) -> Decision {
    decide_with(vm, "GET", "/orders", headers)
}

/// The fake host, with another signature backend.
struct WithBackend<'a> {
    host: &'a FakeHost,
    backend: &'a dyn SignatureBackend,
}

impl crate::host_api::SharedData for WithBackend<'_> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.host.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: crate::host_api::Cas) -> bool {
        self.host.set(key, value, cas)
    }
}

impl crate::host_api::Clock for WithBackend<'_> {
    fn now_ns(&self) -> Option<u64> {
        self.host.now_ns()
    }
}

impl SignatureBackend for WithBackend<'_> {
    fn verify(&self, alg: Algorithm, spki_der: &[u8], input: &[u8], signature: &[u8]) -> Option<bool> {
        self.backend.verify(alg, spki_der, input, signature)
    }
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

/// A request that passed: its principal and upstream changes.
fn allowed(decision: Decision) -> (Rc<Principal>, UpstreamChanges) {
    match decision {
        Decision::Allow { principal, changes, .. } => (principal, changes),
        other => panic!("expected Allow, got {other:?}"),
    }
}

fn denied(decision: Decision) -> LocalReply {
    match decision {
        Decision::Reply(reply) => reply,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn header_value<'a>(changes: &'a UpstreamChanges, name: &str) -> Option<&'a str> {
    changes.set.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn challenges(reply: &LocalReply) -> Vec<&str> {
    reply.headers.iter().filter(|(n, _)| *n == "www-authenticate").map(|(_, v)| v.as_str()).collect()
}

#[test]
fn a_credential_is_offered_by_its_scheme() {
    use crate::pipeline::route::Kind;
    let keys = Require::Kinds(vec![Kind::ApiKey]).schemes();
    let jwt_corp = Require::Kinds(vec![Kind::Jwt { provider: Some("corp".into()) }]).schemes();
    let bearer = Credential::bearer("t");
    let basic = Credential::Basic { user: "u".into(), password: "p".into() };
    assert!(!bearer.offered(keys) && basic.offered(keys), "user:password may be a client's id:key");
    assert!(bearer.offered(jwt_corp) && !basic.offered(jwt_corp));
    assert!(bearer.offered(Require::Any.schemes()));
}

#[test]
fn basic_user_is_allowed_with_principal_headers() {
    let mut vm = authenticator(json!({}));
    let (_, changes) = allowed(decide(&mut vm, &[("authorization", &basic("alice", "secret"))]));
    assert_eq!(header_value(&changes, "x-auth-principal"), Some("alice"));
    assert_eq!(header_value(&changes, "x-auth-method"), Some("basic"));
    assert_eq!(header_value(&changes, "x-auth-provider"), None);
    assert_eq!(changes.remove, vec!["authorization"]);
}

#[test]
fn bcrypt_user_from_htpasswd() {
    let mut vm = authenticator(json!({}));
    let (principal, _) = allowed(decide(&mut vm, &[("authorization", &basic("carol", "pw"))]));
    assert_eq!(principal.id, "carol");
    let r = denied(decide(&mut vm, &[("authorization", &basic("carol", "pW"))]));
    assert_eq!((r.status, r.reason), (401, Reason::BasicInvalid));
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let mut vm = authenticator(json!({}));
    let wrong = denied(decide(&mut vm, &[("authorization", &basic("alice", "nope"))]));
    let unknown = denied(decide(&mut vm, &[("authorization", &basic("mallory", "secret"))]));
    assert_eq!(wrong, LocalReply { reason: Reason::BasicInvalid, ..unknown });
    assert_eq!(
        challenges(&wrong),
        vec![
            "Basic realm=\"api\", charset=\"UTF-8\"",
            "Bearer realm=\"api\"",
            "ApiKey realm=\"api\", header=\"x-api-key\""
        ]
    );
}

#[test]
fn missing_credential_offers_every_scheme() {
    let mut vm = authenticator(json!({}));
    let r = denied(decide(&mut vm, &[]));
    assert_eq!((r.status, r.reason), (401, Reason::MissingCredential));
    assert_eq!(challenges(&r).len(), 3);
}

#[test]
fn malformed_basic_is_a_401_naming_the_problem() {
    let mut vm = authenticator(json!({}));
    let r = denied(decide(&mut vm, &[("authorization", "Basic !!!")]));
    assert_eq!((r.status, r.reason), (401, Reason::BasicMalformed));
    let r = denied(decide(&mut vm, &[("authorization", &format!("Basic {}", STANDARD.encode("nocolon")))]));
    assert_eq!(r.message, "Basic credentials need user:password");
}

#[test]
fn api_keys_in_headers_basic_and_query() {
    let mut vm = authenticator(json!({}));
    let (principal, changes) = allowed(decide(&mut vm, &[("x-cdata-authtoken", "secret")]));
    assert_eq!((principal.id.as_str(), principal.method), ("reporting", AuthMethod::ApiKey));
    assert_eq!(changes.remove, vec!["x-cdata-authtoken"]);

    let (_, changes) = allowed(decide(&mut vm, &[("authorization", &basic("reporting", "secret"))]));
    assert_eq!(header_value(&changes, "x-auth-method"), Some("api-key"));

    let (_, changes) = allowed(decide_with(&mut vm, "GET", "/r?x=1&api_key=secret", &[]));
    assert_eq!(changes.path.as_deref(), Some("/r?x=1"));
}

#[test]
fn cdata_arcs_authtoken_parameter_read_under_any_encoding_of_its_name() {
    let mut vm = authenticator(json!({"api_keys": {"query_param": "@authtoken", "clients": [
        {"id": "reporting", "key_hash": SECRET_SHA256}
    ]}}));
    for path in ["/r?x=1&@authtoken=secret", "/r?x=1&%40authtoken=secret", "/r?x=1&%40authtoken=secret&@AuthToken=d"] {
        let (principal, changes) = allowed(decide_with(&mut vm, "GET", path, &[]));
        assert_eq!((principal.id.as_str(), changes.path.as_deref()), ("reporting", Some("/r?x=1")), "{path}");
    }
    let r = denied(decide_with(&mut vm, "GET", "/r?@authtoken=secret&%40authtoken=other", &[]));
    assert_eq!(r.reason, Reason::CredentialAmbiguous);
    let mut vm =
        authenticator(json!({"forward_credentials": true, "api_keys": {"query_param": "@authtoken", "clients": [
            {"id": "reporting", "key_hash": SECRET_SHA256}
        ]}}));
    let (_, changes) = allowed(decide_with(&mut vm, "GET", "/r?@AUTHTOKEN=d&%40authtoken=secret", &[]));
    assert_eq!(changes.path.as_deref(), Some("/r?%40authtoken=secret"), "the verified one is what is forwarded");
}

#[test]
fn disabled_and_unknown_api_keys() {
    let mut vm = authenticator(json!({}));
    // sha256("foobar") is the retired client's key.
    let r = denied(decide(&mut vm, &[("x-api-key", "foobar")]));
    assert_eq!((r.status, r.reason, r.message.as_str()), (401, Reason::ApiKeyDisabled, "invalid API key"));
    let r = denied(decide(&mut vm, &[("x-api-key", "guess")]));
    assert_eq!((r.status, r.reason), (401, Reason::ApiKeyInvalid));
    let r = denied(decide(&mut vm, &[("authorization", &basic("retired", "foobar"))]));
    assert_eq!(r.reason, Reason::ApiKeyDisabled);
}

#[test]
fn forward_credentials_keeps_them() {
    let mut vm = authenticator(json!({"forward_credentials": true}));
    let (_, changes) = allowed(decide(&mut vm, &[("x-api-key", "secret")]));
    assert!(changes.remove.is_empty());
}

#[test]
fn bypass_rules() {
    let mut vm = authenticator(json!({}));
    assert_eq!(decide_with(&mut vm, "GET", "/healthz/live", &[]), Decision::Bypass(UpstreamChanges::default()));
    assert_eq!(decide_with(&mut vm, "OPTIONS", "/orders", &[]), Decision::Bypass(UpstreamChanges::default()));
    assert_eq!(denied(decide_with(&mut vm, "GET", "/health", &[])).reason, Reason::MissingCredential);
}

#[test]
fn bearer_token_with_claim_headers() {
    let mut vm = authenticator(json!({}));
    let token = hs256(
        json!({"iss": "https://id.corp", "aud": "api", "sub": "u-42", "exp": NOW + 60, "realm": {"roles": ["a", "b"]}}),
    );
    let (_, changes) = allowed(decide(&mut vm, &[("authorization", &format!("Bearer {token}"))]));
    assert_eq!(header_value(&changes, "x-auth-principal"), Some("u-42"));
    assert_eq!(header_value(&changes, "x-auth-method"), Some("jwt"));
    assert_eq!(header_value(&changes, "x-auth-provider"), Some("corp"));
    assert_eq!(header_value(&changes, "x-roles"), Some("a,b"));
}

#[test]
fn bad_tokens_get_rfc6750_challenges() {
    let mut vm = authenticator(json!({}));
    let expired = hs256(json!({"iss": "https://id.corp", "aud": "api", "sub": "u", "exp": NOW - 3600}));
    let r = denied(decide(&mut vm, &[("authorization", &format!("Bearer {expired}"))]));
    assert_eq!(
        challenges(&r),
        vec!["Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token expired\""]
    );
    let r = denied(decide(&mut vm, &[("authorization", "Bearer not-a-token")]));
    assert_eq!((r.status, r.reason), (401, Reason::JwtMalformed));
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
    let mut vm = authenticator(json!({}));
    let backend = Counting(Cell::new(0));
    let token = rs256(json!({"iss": "https://id.corp", "aud": "api", "sub": "u", "exp": NOW + 60}), "rsa-1");
    let bearer = format!("Bearer {token}");
    for _ in 0..3 {
        allowed(decide_at(&mut vm, "GET", "/", &[("authorization", &bearer)], Some(&backend), NOW));
    }
    assert_eq!(backend.0.get(), 1);
    vm.keys_changed();
    allowed(decide_at(&mut vm, "GET", "/", &[("authorization", &bearer)], Some(&backend), NOW));
    assert_eq!(backend.0.get(), 2);
}

#[test]
fn a_cached_token_still_expires() {
    let mut vm = authenticator(json!({}));
    let token = hs256(json!({"iss": "https://id.corp", "aud": "api", "sub": "u", "exp": NOW + 5}));
    let bearer = format!("Bearer {token}");
    allowed(decide(&mut vm, &[("authorization", &bearer)]));
    let later = decide_at(&mut vm, "GET", "/", &[("authorization", &bearer)], None, NOW + 3600);
    assert_eq!(denied(later).reason, Reason::JwtExpired);
}

#[test]
fn a_failed_password_is_remembered_as_failed_only() {
    let mut vm = authenticator(json!({}));
    denied(decide(&mut vm, &[("authorization", &basic("alice", "wrong"))]));
    allowed(decide(&mut vm, &[("authorization", &basic("alice", "secret"))]));
    denied(decide(&mut vm, &[("authorization", &basic("alice", "wrong"))]));
}

/// The remote provider fetches its keys at `now_ms` (a refresh, or a refetch for an
/// unknown kid when `refetch`), and the endpoint answers `jwks`.
fn fetch(vm: &mut Vm, jwks: Value, now_ms: u64, refetch: bool) {
    let remote = vm.fetched.keys.get_mut(ProviderId(1)).unwrap();
    assert!(remote.start(&vm.host.shared, now_ms, refetch).is_some(), "the fetch is due");
    let fetched = remote.on_response(&vm.host.shared, Step::Document, &FakeResponse::ok(jwks.to_string()), now_ms);
    assert!(matches!(fetched, Progress::Fetched { .. }));
}

#[test]
fn remote_provider_without_keys_waits_then_unknown_kid_refetches() {
    let mut vm = authenticator(json!({}));
    let token = rs256(json!({"iss": "https://remote.example", "sub": "u", "exp": NOW + 60}), "rsa-1");
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];

    let d = decide(&mut vm, &headers);
    assert_eq!(d, Decision::Wait(Awaited::Keys { provider: ProviderId(1), refetch: false }));

    fetch(&mut vm, json!({"keys": [jwk_other()]}), NOW * 1000, false);
    // An unknown kid may trigger a refetch (none happened yet).
    let d = decide(&mut vm, &headers);
    assert_eq!(d, Decision::Wait(Awaited::Keys { provider: ProviderId(1), refetch: true }));

    // The refetch brought nothing new; within min_refetch_seconds the key is unknown.
    fetch(&mut vm, json!({"keys": [jwk_other()]}), NOW * 1000 + 10, true);
    let r = denied(decide_at(&mut vm, "GET", "/", &headers, None, NOW + 1));
    assert_eq!((r.status, r.reason), (401, Reason::JwtUnknownKey));

    // The endpoint fails: the token may be signed by a key not fetched yet.
    let remote = vm.fetched.keys.get_mut(ProviderId(1)).unwrap();
    remote.fail(&vm.host.shared, NOW * 1000 + 30);
    let r = denied(decide_at(&mut vm, "GET", "/", &headers, None, NOW + 1));
    assert_eq!((r.status, r.reason), (503, Reason::JwksUnavailable));
    assert!(r.headers.contains(&("retry-after", "1".to_string())));

    fetch(&mut vm, json!({"keys": [rsa_public_jwk()]}), NOW * 1000 + 40_000, true);
    vm.keys_changed();
    let (_, changes) = allowed(decide_at(&mut vm, "GET", "/", &headers, None, NOW + 40));
    assert_eq!(header_value(&changes, "x-auth-provider"), Some("remote"));
}

fn jwk_other() -> Value {
    let mut jwk = rsa_public_jwk();
    jwk["kid"] = json!("other");
    jwk
}

#[test]
fn forged_principal_headers_are_removed_from_whatever_goes_upstream() {
    let mut vm = authenticator(json!({}));
    let forged = [("x-auth-principal", "root"), ("x-roles", "admin")];
    let d = decide_with(&mut vm, "GET", "/healthz", &forged);
    let expected = UpstreamChanges { remove: vec!["x-auth-principal".into(), "x-roles".into()], ..Default::default() };
    assert_eq!(d, Decision::Bypass(expected));

    let mut headers = forged.to_vec();
    let credentials = basic("alice", "secret");
    headers.push(("authorization", &credentials));
    let (_, changes) = allowed(decide_with(&mut vm, "GET", "/orders", &headers));
    assert_eq!(changes.remove, vec!["x-auth-principal", "x-roles", "authorization"]);
    assert_eq!(header_value(&changes, "x-auth-principal"), Some("alice"));
}

#[test]
fn a_second_credential_never_reaches_the_upstream() {
    let mut vm = authenticator(json!({}));
    let token = hs256(json!({"iss": "https://id.corp", "aud": "api", "sub": "u", "exp": NOW + 60}));
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str()), ("x-api-key", "foobar"), ("x-cdata-authtoken", "foobar")];
    let (principal, changes) = allowed(decide_with(&mut vm, "GET", "/o?api_key=foobar&API_KEY=x", &headers));
    assert_eq!(principal.id, "u");
    assert_eq!(changes.remove, vec!["authorization", "x-api-key", "x-cdata-authtoken"]);
    assert_eq!(changes.path.as_deref(), Some("/o"));

    let d = decide_with(&mut vm, "GET", "/healthz?api%5Fkey=x", &[("x-api-key", "k")]);
    let expected = UpstreamChanges {
        remove: vec!["x-api-key".into()],
        path: Some("/healthz".into()),
        ..UpstreamChanges::default()
    };
    assert_eq!(d, Decision::Bypass(expected));
}

#[test]
fn bypass_matches_normalized_paths_at_segment_boundaries() {
    let mut vm = authenticator(json!({}));
    for escape in [
        "/healthz/../orders",
        "/healthz/%2e%2e/orders",
        "/healthz/..%2forders",
        "/healthz\\..\\orders",
        "http://h/healthz/../orders",
        "/healthzadmin",
        "/healthz%2Fx",
    ] {
        let d = decide_with(&mut vm, "GET", escape, &[]);
        assert_eq!(denied(d).reason, Reason::MissingCredential, "{escape}");
    }
    for fine in ["/healthz", "/healthz/", "//healthz/live", "/x/../healthz", "/%68ealthz"] {
        let d = decide_with(&mut vm, "GET", fine, &[]);
        assert!(matches!(d, Decision::Bypass(_)), "{fine}: {d:?}");
    }
}

#[test]
fn path_parameters_are_removed_and_dot_segments_with_parameters_refused() {
    let mut vm = policy_vm(json!({"bypass": [{"path_prefix": "/healthz"}]}));
    // A servlet container reads each of these as /admin (or /orders/..): no bypass, no relaxed
    // rule, and no restrictive one either: 400 before any credential is read.
    let root = basic("reader", "secret");
    for escape in ["/healthz/%2e%2e;/admin", "/healthz/..;/admin", "/public/.%2E;x=1/admin", "/maybe/%2e;/x"] {
        for headers in [&[][..], &[("authorization", root.as_str())]] {
            let r = denied(decide_with(&mut vm, "GET", escape, headers));
            assert_eq!((r.status, r.reason, r.error), (400, Reason::AmbiguousPath, "bad_request"), "{escape}");
        }
    }
    // Parameters are removed from every segment: `/admin;x=1` is /admin to the rules.
    let r = denied(decide_with(&mut vm, "GET", "/admin;x=1", &[("authorization", &root)]));
    assert_eq!(r.reason, Reason::PrincipalNotAllowed);
    assert!(matches!(decide_with(&mut vm, "GET", "/healthz;jsessionid=1", &[]), Decision::Bypass(_)));
    assert!(matches!(decide_with(&mut vm, "GET", "/public;v=2/x", &[]), Decision::Bypass(_)));
}

#[test]
fn path_privileges_refuse_dot_segments_with_parameters_without_rules() {
    let mut vm = authenticator(json!({"bypass": [], "api_keys": {"clients": [
        {"id": "orders", "key_hash": SECRET_SHA256, "paths": ["/orders"]}
    ]}}));
    allowed(decide_with(&mut vm, "GET", "/orders;v=1/7", &[("x-api-key", "secret")]));
    let r = denied(decide_with(&mut vm, "GET", "/orders;v=1/../billing", &[("x-api-key", "secret")]));
    assert_eq!(r.reason, Reason::PathNotAllowed);
    let r = denied(decide_with(&mut vm, "GET", "/orders/%2e%2e;/billing", &[("x-api-key", "secret")]));
    assert_eq!((r.status, r.reason), (400, Reason::AmbiguousPath));
    // Without rules or path privileges the filter reads no path: nothing to escape.
    allowed(decide_with(&mut vm, "GET", "/x/%2e%2e;/y", &[("authorization", &basic("alice", "secret"))]));
}

#[test]
fn cors_preflight_bypass_needs_origin_and_request_method() {
    let mut vm = authenticator(json!({"bypass": [], "bypass_cors_preflight": true}));
    let preflight = [("origin", "https://app.example"), ("access-control-request-method", "POST")];
    let d = decide_with(&mut vm, "OPTIONS", "/orders", &preflight);
    assert!(matches!(d, Decision::Bypass(_)), "{d:?}");
    for headers in [&preflight[..1], &preflight[1..], &[]] {
        let d = decide_with(&mut vm, "OPTIONS", "/orders", headers);
        assert_eq!(denied(d).reason, Reason::MissingCredential);
    }
    let not_options = decide_with(&mut vm, "POST", "/orders", &preflight);
    assert_eq!(denied(not_options).reason, Reason::MissingCredential);
}

#[test]
fn underscore_spellings_of_owned_headers_are_removed() {
    let mut vm = authenticator(json!({}));
    let headers = [("x_auth_principal", "root"), ("x-auth_method", "basic"), ("x_roles", "admin"), ("x_other", "ok")];
    let Decision::Bypass(changes) = decide_with(&mut vm, "GET", "/healthz", &headers) else { panic!() };
    assert_eq!(changes.remove, vec!["x_auth_principal", "x-auth_method", "x_roles"]);
}

// ---- who may do what (issue 9) ----

fn policy_vm(extra: Value) -> Vm {
    let mut config = json!({
        "basic": {"users": [
            {"name": "reader", "password_hash": SECRET_SHA256, "methods": ["GET"], "scopes": ["orders:read"]},
            {"name": "office", "password_hash": SECRET_SHA256, "trusted_networks": ["192.0.2.0/24"]}
        ]},
        "api_keys": {"clients": [{"id": "reporting", "key_hash": SECRET_SHA256, "paths": ["/reports"]}]},
        "jwt": {"providers": [{
            "name": "corp", "issuer": "https://id.corp",
            "local_jwks": {"keys": [{"kty": "oct", "kid": "hmac-1", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(HMAC_SECRET)}]}
        }]},
        "rules": [
            {"match": {"path_prefix": "/public"}, "require": "none"},
            {"match": {"path_prefix": "/maybe"}, "require": "optional"},
            {"match": {"path_prefix": "/tokens-only"}, "require": ["jwt:corp"]},
            {"match": {"path_prefix": "/keys-only"}, "require": "api-key"},
            {"match": {"path_prefix": "/orders"}, "scopes": ["orders:read"]},
            {"match": {"path": "/admin"}, "principals": ["basic:root"]}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let host = FakeHost::new(&FakeShared::default());
    Vm { verifier: Verifier::new(&config), fetched: Fetched::new(&config), config, host }
}

fn token(claims: Value) -> String {
    format!("Bearer {}", hs256(merge(json!({"iss": "https://id.corp", "sub": "u-1", "exp": NOW + 60}), claims)))
}

fn merge(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn from(vm: &mut Vm, method: &str, path: &str, headers: &[(&str, &str)], source: Option<&str>) -> Decision {
    let headers = crate::testing::headers(headers);
    let mut request = RequestFacts::new(method, path, &headers);
    request.source = crate::request::Source::Known(source.map(|s| s.parse().unwrap()));
    super::decide(&vm.config, &vm.fetched, &mut vm.verifier, &request, &vm.host, NOW * 1000)
}

#[test]
fn optional_and_none_routes() {
    let mut vm = policy_vm(json!({}));
    assert!(matches!(decide_with(&mut vm, "GET", "/public/x", &[]), Decision::Bypass(_)));
    let Decision::Anonymous(changes) = decide_with(&mut vm, "GET", "/maybe", &[("x-auth-principal", "root")]) else {
        panic!()
    };
    assert_eq!(changes.remove, vec!["x-auth-principal"]);
    let bad = basic("reader", "wrong");
    assert_eq!(denied(decide_with(&mut vm, "GET", "/maybe", &[("authorization", &bad)])).reason, Reason::BasicInvalid);
    let (principal, _) =
        allowed(decide_with(&mut vm, "GET", "/maybe", &[("authorization", &basic("reader", "secret"))]));
    assert_eq!(principal.id, "reader");
}

#[test]
fn a_route_accepts_only_its_kinds_and_offers_only_their_challenges() {
    let mut vm = policy_vm(json!({}));
    let r = denied(decide_with(&mut vm, "GET", "/tokens-only", &[]));
    assert_eq!((r.status, challenges(&r)), (401, vec!["Bearer realm=\"api\""]));
    let r = denied(decide_with(&mut vm, "GET", "/tokens-only", &[("authorization", &basic("reader", "secret"))]));
    assert_eq!((r.status, r.reason), (401, Reason::CredentialNotAccepted));
    assert_eq!(challenges(&r), vec!["Bearer realm=\"api\""]);
    allowed(decide_with(&mut vm, "GET", "/tokens-only", &[("authorization", &token(json!({})))]));

    let r = denied(decide_with(&mut vm, "GET", "/keys-only", &[("authorization", &token(json!({})))]));
    assert_eq!(r.reason, Reason::CredentialNotAccepted);
    assert_eq!(
        challenges(&r),
        vec!["Basic realm=\"api\", charset=\"UTF-8\"", "ApiKey realm=\"api\", header=\"x-api-key\""]
    );
    // A Basic user is not an API key, even with the right password.
    let r = denied(decide_with(&mut vm, "GET", "/keys-only", &[("authorization", &basic("reader", "secret"))]));
    assert_eq!(r.reason, Reason::CredentialNotAccepted);
    // A client's id:key is an API key: accepted here (then refused for its paths).
    let r = denied(decide_with(&mut vm, "GET", "/keys-only", &[("authorization", &basic("reporting", "secret"))]));
    assert_eq!(r.reason, Reason::PathNotAllowed);
}

#[test]
fn privileges_and_route_requirements_answer_403() {
    let mut vm = policy_vm(json!({}));
    let reader = basic("reader", "secret");
    let r = denied(decide_with(&mut vm, "POST", "/orders", &[("authorization", &reader)]));
    assert_eq!((r.status, r.error, r.message.as_str()), (403, "forbidden", "method not allowed"));
    allowed(decide_with(&mut vm, "GET", "/orders", &[("authorization", &reader)]));

    let r = denied(decide_with(&mut vm, "GET", "/orders", &[("x-api-key", "secret")]));
    assert_eq!((r.status, r.reason), (403, Reason::PathNotAllowed));
    allowed(decide_with(&mut vm, "GET", "/reports/q1", &[("x-api-key", "secret")]));

    let r = denied(decide_with(&mut vm, "GET", "/admin", &[("authorization", &reader)]));
    assert_eq!((r.status, r.message.as_str()), (403, "principal not allowed"));
}

#[test]
fn method_overrides_are_removed_before_the_upstream_by_default() {
    let mut vm = policy_vm(json!({}));
    let reader = basic("reader", "secret");
    let headers =
        [("authorization", reader.as_str()), ("x-http-method-override", "DELETE"), ("x_http_method", "DELETE")];
    let (_, changes) = allowed(decide_with(&mut vm, "GET", "/orders?_method=DELETE&%5FMETHOD=PUT&a=1", &headers));
    assert!(changes.remove.contains(&"x-http-method-override".to_string()), "{changes:?}");
    assert!(changes.remove.contains(&"x_http_method".to_string()), "{changes:?}");
    assert_eq!(changes.path.as_deref(), Some("/orders?a=1"));
    // Also where nothing is authenticated.
    let Decision::Bypass(changes) = decide_with(&mut vm, "POST", "/public/x?_method=DELETE", &headers[1..]) else {
        panic!()
    };
    assert_eq!((changes.remove.len(), changes.path.as_deref()), (2, Some("/public/x")));
    let (_, changes) = allowed(decide_with(&mut vm, "GET", "/orders?method=x", &headers[..1]));
    assert_eq!(changes.path, None);
}

#[test]
fn judged_method_overrides_are_each_checked_and_stay_under_one_rule() {
    let mut vm = policy_vm(json!({"method_overrides": "judge", "rules": [
        {"match": {"path_prefix": "/catalog", "methods": ["GET"]}, "require": "optional"},
        {"match": {"path_prefix": "/public"}, "require": "none"}
    ]}));
    let reader = basic("reader", "secret");
    for (header, value) in [("x-http-method-override", "DELETE"), ("x_method_override", "get, delete")] {
        let r = denied(decide_with(&mut vm, "GET", "/orders", &[("authorization", &reader), (header, value)]));
        assert_eq!((r.status, r.reason), (403, Reason::MethodNotAllowed), "{header}");
    }
    let r = denied(decide_with(&mut vm, "GET", "/orders?_method=delete", &[("authorization", &reader)]));
    assert_eq!(r.reason, Reason::MethodNotAllowed);
    // Its own method again, or none: judged as usual, and forwarded.
    let own = [("authorization", reader.as_str()), ("x-http-method-override", "get")];
    let (_, changes) = allowed(decide_with(&mut vm, "GET", "/orders?_method=GET", &own));
    assert!(!changes.remove.iter().any(|h| h.contains("method")) && changes.path.is_none(), "{changes:?}");
    // Only the `_method` judged goes on: another spelling, which a lenient upstream may read, is removed.
    let (_, changes) = allowed(decide_with(&mut vm, "GET", "/orders?_method=GET&_METHOD=DELETE", &own));
    assert_eq!(changes.path.as_deref(), Some("/orders?_method=GET"));
    let r = denied(decide_with(&mut vm, "GET", "/orders?_method=GET&%5Fmethod=GET", &own));
    assert_eq!(r.reason, Reason::MethodOverrideRefused);
    // GET /catalog is optional; as a DELETE it would be the default rule's: neither is chosen.
    let r = denied(decide_with(&mut vm, "GET", "/catalog", &[("x-http-method", "DELETE")]));
    assert_eq!((r.status, r.reason, r.error), (400, Reason::MethodOverrideRefused, "bad_request"));
    assert!(matches!(decide_with(&mut vm, "POST", "/public?_method=DELETE", &[]), Decision::Bypass(_)));
    let many = [("x-http-method", "A,B,C,D,E,F,G,H,I")];
    assert_eq!(denied(decide_with(&mut vm, "GET", "/public", &many)).reason, Reason::MethodOverrideRefused);
}

#[test]
fn scopes_come_from_scope_or_scp_and_a_token_gets_rfc6750_insufficient_scope() {
    let mut vm = policy_vm(json!({}));
    allowed(decide_with(&mut vm, "GET", "/orders", &[("authorization", &token(json!({"scope": "a orders:read"})))]));
    allowed(decide_with(&mut vm, "GET", "/orders", &[("authorization", &token(json!({"scp": ["orders:read"]})))]));
    allowed(decide_with(&mut vm, "GET", "/orders", &[("authorization", &token(json!({"scp": "orders:read"})))]));
    let r =
        denied(decide_with(&mut vm, "GET", "/orders", &[("authorization", &token(json!({"scope": "orders:write"})))]));
    assert_eq!((r.status, r.error), (403, "insufficient_scope"));
    assert_eq!(
        challenges(&r),
        vec!["Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"orders:read\""]
    );
    // A Basic user without the scope: 403 insufficient_scope, no Bearer challenge.
    let office = basic("office", "secret");
    let r = denied(from(&mut vm, "GET", "/orders", &[("authorization", &office)], Some("192.0.2.1")));
    assert_eq!((r.status, r.error, challenges(&r).len()), (403, "insufficient_scope", 0));
}

#[test]
fn trusted_networks_at_the_top_and_per_principal() {
    let mut vm = policy_vm(json!({"trusted_networks": ["192.0.2.0/24", "2001:db8::/32"]}));
    let office = basic("office", "secret");
    let r = denied(from(&mut vm, "GET", "/x", &[], Some("198.51.100.7")));
    assert_eq!((r.status, r.reason), (403, Reason::NetworkNotTrusted), "before any credential is checked");
    assert!(matches!(from(&mut vm, "GET", "/public/x", &[], Some("198.51.100.7")), Decision::Bypass(_)));
    allowed(from(&mut vm, "GET", "/x", &[("authorization", &office)], Some("192.0.2.9")));
    let r = denied(from(&mut vm, "GET", "/x", &[("authorization", &office)], Some("2001:db8::1")));
    assert_eq!((r.status, r.reason), (403, Reason::NetworkNotTrusted), "the principal's own list");
    let r = denied(from(&mut vm, "GET", "/x", &[("authorization", &office)], None));
    assert_eq!(r.reason, Reason::NetworkNotTrusted, "no address: fail closed");
}

#[test]
fn revocation_by_jti_and_not_before_beats_the_cache() {
    let mut vm = policy_vm(json!({"revocation": {"jti": ["leaked"], "not_before": {"jwt:corp:u-2": NOW - 100}}}));
    let leaked = token(json!({"jti": "leaked"}));
    let r = denied(decide_with(&mut vm, "GET", "/x", &[("authorization", &leaked)]));
    assert_eq!((r.status, r.reason, r.message.as_str()), (401, Reason::TokenRevoked, "token revoked"));
    assert_eq!(
        challenges(&r),
        vec!["Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token revoked\""]
    );
    let old = token(json!({"sub": "u-2", "iat": NOW - 200}));
    assert_eq!(denied(decide_with(&mut vm, "GET", "/x", &[("authorization", &old)])).reason, Reason::TokenRevoked);
    allowed(decide_with(&mut vm, "GET", "/x", &[("authorization", &token(json!({"sub": "u-2", "iat": NOW - 50})))]));
    let no_iat = token(json!({"sub": "u-2"}));
    assert_eq!(denied(decide_with(&mut vm, "GET", "/x", &[("authorization", &no_iat)])).reason, Reason::TokenRevoked);

    // A remote list: until its first fetch a token waits for it (the list could revoke
    // it); then a token verified and remembered is refused once the list names it.
    let remote = json!({"revocation": {"remote": {"cluster": "rev", "authority": "rev", "path": "/revoked.json"}}});
    let mut vm = policy_vm(remote);
    let good = token(json!({"jti": "t-1"}));
    assert_eq!(decide_with(&mut vm, "GET", "/x", &[("authorization", &good)]), Decision::Wait(Awaited::RevocationList));
    let list = vm.fetched.revocation.as_mut().unwrap();
    list.start(&vm.host.shared, NOW * 1000, false);
    let body = json!({"jti": ["t-1"]}).to_string();
    assert!(matches!(
        list.on_response(&vm.host.shared, Step::Document, &FakeResponse::ok(body), NOW * 1000),
        Progress::Fetched { .. }
    ));
    assert_eq!(denied(decide_with(&mut vm, "GET", "/x", &[("authorization", &good)])).reason, Reason::TokenRevoked);
    allowed(decide_with(&mut vm, "GET", "/x", &[("authorization", &token(json!({"jti": "t-2"})))]));
}

#[test]
fn before_the_remote_revocation_list_is_fetched_only_tokens_wait_unless_allowed() {
    let remote = json!({"cluster": "rev", "authority": "rev", "path": "/revoked.json"});
    let mut vm = policy_vm(json!({"revocation": {"remote": remote, "jti": ["leaked"]}}));
    let leaked = token(json!({"jti": "leaked"}));
    assert_eq!(denied(decide_with(&mut vm, "GET", "/x", &[("authorization", &leaked)])).reason, Reason::TokenRevoked);
    let mut vm = policy_vm(json!({"revocation": {"remote": remote, "allow_before_first_fetch": true}}));
    allowed(decide_with(&mut vm, "GET", "/x", &[("authorization", &token(json!({"jti": "t-1"})))]));
}

#[test]
fn the_token_endpoint_answers_its_paths_before_any_rule_and_never_forwards_them() {
    let signing_key = include_str!("../../tests/keys/ec_p256_private.pem");
    let endpoint = json!({"path": "/auth/token", "issuer": "https://auth.local", "signing_key": signing_key});
    // A bypass rule over the whole tree does not open the endpoint's paths to the upstream.
    let mut vm = authenticator(json!({"token_endpoint": endpoint, "bypass": [{"path_prefix": "/"}]}));
    for path in ["/auth/token", "/auth//token?x=1", "/auth/./token", "/auth/%74oken"] {
        match decide_with(&mut vm, "POST", path, &[("x-api-key", "secret")]) {
            Decision::ReadBody(presented) => assert_eq!(presented.api_key_header.as_deref(), Some("secret"), "{path}"),
            other => panic!("{path}: {other:?}"),
        }
    }
    let reply = denied(decide_with(&mut vm, "GET", "/.well-known/jwks.json", &[]));
    assert_eq!((reply.status, reply.reason), (200, Reason::JwksServed));
    assert_eq!(denied(decide_with(&mut vm, "PUT", "/auth/token", &[])).status, 405);
    assert!(matches!(decide_with(&mut vm, "POST", "/auth/token/more", &[]), Decision::Bypass(_)));

    // Outside the trusted networks, the endpoint is closed too.
    let mut vm = authenticator(json!({"token_endpoint": endpoint, "trusted_networks": ["10.0.0.0/8"]}));
    let reply = denied(decide_with(&mut vm, "POST", "/auth/token", &[("x-api-key", "secret")]));
    assert_eq!((reply.status, reply.reason), (403, Reason::NetworkNotTrusted));
}

#[test]
fn the_verdict_as_filter_state_when_asked_and_refusals_name_their_reason() {
    let claims = json!({"iss": "https://id.corp", "sub": "svc-1", "aud": "api", "exp": NOW + 600,
                        "realm": {"roles": ["admin", "ops"]}});
    let bearer = format!("Bearer {}", hs256(claims));
    let mut vm = authenticator(json!({"filter_state": true}));
    let (_, changes) = allowed(decide(&mut vm, &[("authorization", &bearer)]));
    let state: Vec<(&str, &str)> = changes.state.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        state,
        [
            ("wasm_authn.principal", "jwt:corp:svc-1"),
            ("wasm_authn.method", "jwt"),
            ("wasm_authn.provider", "corp"),
            ("wasm_authn.claim.x-roles", "admin,ops"),
        ]
    );
    // Off by default: no host calls for it.
    let mut vm = authenticator(json!({}));
    assert!(allowed(decide(&mut vm, &[("authorization", &bearer)])).1.state.is_empty());
    let reply = denied(decide(&mut vm, &[]));
    assert_eq!(reply.details(), "wasm_authn.missing_credential");
}

/// corp reads `Authorization: Bearer`; iap reads its tokens only in its own places.
fn locations_vm(extra: Value) -> Vm {
    let secret = json!({"keys": [{"kty": "oct", "kid": "hmac-1", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(HMAC_SECRET)}]});
    authenticator(merge(
        json!({"jwt": {"providers": [
            {"name": "corp", "issuer": "https://id.corp", "local_jwks": secret},
            {"name": "iap", "issuer": "https://iap.example", "local_jwks": secret,
             "from_headers": [{"name": "x-goog-iap-jwt-assertion"}],
             "from_params": ["access_token"],
             "from_cookies": ["session"]}
        ]}}),
        extra,
    ))
}

fn token_of(issuer: &str) -> String {
    hs256(json!({"iss": issuer, "sub": "u-1", "exp": NOW + 60}))
}

#[test]
fn a_provider_reads_its_tokens_in_its_places_only() {
    let mut vm = locations_vm(json!({}));
    let iap = token_of("https://iap.example");
    let cookie = format!("theme=dark; session={iap}; lang=en");
    let (principal, changes) = allowed(decide(&mut vm, &[("cookie", &cookie)]));
    assert_eq!(principal.provider.as_deref(), Some("iap"));
    assert_eq!(changes.remove, vec!["cookie"]);
    assert_eq!(header_value(&changes, "cookie"), Some("theme=dark; lang=en"));
    let (_, changes) = allowed(decide_with(&mut vm, "GET", &format!("/o?access_token={iap}&page=2"), &[]));
    assert_eq!(changes.path.as_deref(), Some("/o?page=2"));
    allowed(decide(&mut vm, &[("x-goog-iap-jwt-assertion", &iap)]));

    // iap's token in corp's place, corp's token in iap's place: another place cannot smuggle it in.
    let r = denied(decide(&mut vm, &[("authorization", &format!("Bearer {iap}"))]));
    assert_eq!(
        (r.status, r.reason, r.message.as_str()),
        (401, Reason::JwtWrongLocation, "token not accepted in this location")
    );
    let corp = token_of("https://id.corp");
    let r = denied(decide(&mut vm, &[("cookie", &format!("session={corp}"))]));
    assert_eq!(r.reason, Reason::JwtWrongLocation);
}

#[test]
fn a_remembered_token_stays_bound_to_its_place() {
    let mut vm = locations_vm(json!({}));
    let corp = token_of("https://id.corp");
    allowed(decide(&mut vm, &[("authorization", &format!("Bearer {corp}"))]));
    let r = denied(decide(&mut vm, &[("x-goog-iap-jwt-assertion", &corp)]));
    assert_eq!(r.reason, Reason::JwtWrongLocation);
}

#[test]
fn two_tokens_in_two_places_are_ambiguous() {
    let mut vm = locations_vm(json!({}));
    let (corp, iap) = (token_of("https://id.corp"), token_of("https://iap.example"));
    let headers = [("authorization", format!("Bearer {corp}")), ("cookie", format!("session={iap}"))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let r = denied(decide(&mut vm, &headers));
    assert_eq!((r.status, r.reason), (401, Reason::CredentialAmbiguous));
    // The same token twice is one credential.
    let path = format!("/o?access_token={iap}");
    let (_, changes) = allowed(decide_with(&mut vm, "GET", &path, &[("x-goog-iap-jwt-assertion", &iap)]));
    assert_eq!(changes.remove, vec!["x-goog-iap-jwt-assertion"]);
    assert_eq!(changes.path.as_deref(), Some("/o"));
}

#[test]
fn a_bypassed_request_loses_every_token_place() {
    let mut vm = locations_vm(json!({}));
    let headers = [
        ("cookie", "session=x; Session=y; keep=1"),
        ("x-goog-iap-jwt-assertion", "z"),
        ("x_goog_iap_jwt_assertion", "z"),
    ];
    match decide_with(&mut vm, "GET", "/healthz?access_token=x&ACCESS_TOKEN=y", &headers) {
        Decision::Bypass(changes) => {
            assert_eq!(changes.remove, vec!["x-goog-iap-jwt-assertion", "x_goog_iap_jwt_assertion", "cookie"]);
            assert_eq!(header_value(&changes, "cookie"), Some("keep=1"));
            assert_eq!(changes.path.as_deref(), Some("/healthz"));
        }
        other => panic!("expected Bypass, got {other:?}"),
    }
}

#[test]
fn forwarded_tokens_stay_where_they_were_found() {
    let mut vm = locations_vm(json!({"forward_credentials": true}));
    let iap = token_of("https://iap.example");
    let cookie = format!("session={iap}; other=1");
    let (_, changes) = allowed(decide(&mut vm, &[("cookie", &cookie), ("x-api-key", "not-checked")]));
    assert_eq!(changes.remove, vec!["x-api-key"]);
    assert_eq!(header_value(&changes, "cookie"), None);
}

/// Every kind of principal named `alice`: the Basic user (password `secret`), the API
/// client (key `alice-key`) by its key and by a token of the token endpoint, and corp's
/// `sub=alice`; `/admin` admits `basic:alice` only. (Basic `alice:alice-key` is the user's:
/// users are looked up before clients.)
#[test]
fn another_kind_of_alice_is_never_the_basic_user_alice() {
    let key_hash = format!(
        "sha256:{}",
        crate::digest::sha256(b"alice-key").iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut vm = authenticator(json!({
        "api_keys": {"clients": [{"id": "alice", "key_hash": key_hash}]},
        "token_endpoint": {"path": "/token", "issuer": "https://me",
            "signing_key": {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}},
        "rules": [{"match": {"path_prefix": "/admin"}, "principals": ["basic:alice"]}],
        "principal_headers": {"qualified": "x-auth-qualified"},
        "filter_state": true,
    }));
    let (principal, changes) =
        allowed(decide_with(&mut vm, "GET", "/admin", &[("authorization", &basic("alice", "secret"))]));
    assert_eq!(principal.qualified.as_str(), "basic:alice");
    assert_eq!(header_value(&changes, "x-auth-principal"), Some("alice"), "upstreams read the bare id as before");
    assert_eq!(header_value(&changes, "x-auth-qualified"), Some("basic:alice"));
    assert!(changes.state.contains(&("wasm_authn.principal".to_string(), "basic:alice".to_string())));

    let endpoint_token = vm.config.token_endpoint.as_ref().unwrap().sign("alice", "", None, NOW).unwrap();
    let corp_token = hs256(json!({"iss": "https://id.corp", "sub": "alice", "aud": "api", "exp": NOW + 60}));
    let others = [
        ("x-api-key", "alice-key".to_string(), "api-key:alice"),
        ("authorization", format!("Bearer {endpoint_token}"), "api-key:alice"),
        ("authorization", format!("Bearer {corp_token}"), "jwt:corp:alice"),
    ];
    for (header, value, qualified) in others {
        let (principal, changes) = allowed(decide_with(&mut vm, "GET", "/orders", &[(header, &value)]));
        assert_eq!((principal.id.as_str(), principal.qualified.as_str()), ("alice", qualified));
        assert_eq!(header_value(&changes, "x-auth-qualified"), Some(qualified));
        let refused = denied(decide_with(&mut vm, "GET", "/admin", &[(header, &value)]));
        assert_eq!((refused.status, refused.reason), (403, Reason::PrincipalNotAllowed), "{qualified}");
    }
    // A client may not name itself: the qualified header is owned.
    let forged = [("x-api-key", "alice-key"), ("x-auth-qualified", "basic:alice")];
    let (_, changes) = allowed(decide_with(&mut vm, "GET", "/orders", &forged));
    assert!(changes.remove.contains(&"x-auth-qualified".to_string()));
    assert_eq!(header_value(&changes, "x-auth-qualified"), Some("api-key:alice"));
}

/// Issue 17.8: an API client's key and its tokens from the token endpoint are one
/// principal, with one budget of requests per hour and of requests in flight.
#[test]
fn a_client_and_its_tokens_share_one_budget() {
    let mut vm = authenticator(json!({
        "api_keys": {"clients": [{"id": "reporting", "key_hash": SECRET_SHA256, "requests_per_hour": 3}]},
        "token_endpoint": {"path": "/token", "issuer": "https://me",
            "signing_key": {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}},
    }));
    let token =
        format!("Bearer {}", vm.config.token_endpoint.as_ref().unwrap().sign("reporting", "", None, NOW).unwrap());
    for _ in 0..3 {
        allowed(decide(&mut vm, &[("x-api-key", "secret")]));
    }
    for credential in [("authorization", token.as_str()), ("x-api-key", "secret")] {
        let refused = denied(decide(&mut vm, &[credential]));
        assert_eq!((refused.status, refused.reason), (429, Reason::RateLimited), "{credential:?}");
    }

    let mut vm = authenticator(json!({
        "api_keys": {"clients": [{"id": "reporting", "key_hash": SECRET_SHA256, "max_concurrent": 1}]},
        "token_endpoint": {"path": "/token", "issuer": "https://me",
            "signing_key": {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}},
    }));
    let token =
        format!("Bearer {}", vm.config.token_endpoint.as_ref().unwrap().sign("reporting", "", None, NOW).unwrap());
    let Decision::Allow { limited: Some(limited), .. } = decide(&mut vm, &[("x-api-key", "secret")]) else { panic!() };
    assert!(limited.holds_slot);
    let refused = denied(decide(&mut vm, &[("authorization", &token)]));
    assert_eq!((refused.status, refused.reason), (429, Reason::ConcurrencyLimited), "the key's request is in flight");
    vm.config.limit_table.release(&vm.host, limited.key, NOW);
    allowed(decide(&mut vm, &[("authorization", &token)]));
}

// ---- limits.scope "fleet": the engine counts the hours, this Envoy what is in flight ----

#[test]
fn with_scope_fleet_the_hour_is_the_engines_and_the_principal_is_handed_to_it() {
    let limits = json!({"limits": {"requests_per_hour": 1, "max_concurrent": 1, "scope": "fleet"}});
    let mut vm = authenticator(limits);
    let credentials = basic("alice", "secret");
    let forged = [("authorization", credentials.as_str()), ("x-auth-ratelimit-principal", "basic:bob")];
    let first = decide(&mut vm, &forged);
    let Decision::Allow { changes, limited, .. } = first else { panic!("expected Allow, got {first:?}") };
    // The forged copy is removed, the verified principal set in its place.
    assert!(changes.remove.iter().any(|name| name == "x-auth-ratelimit-principal"));
    assert_eq!(header_value(&changes, "x-auth-ratelimit-principal"), Some("basic:alice"));
    let limited = limited.expect("the request in flight is counted here");
    assert!(limited.holds_slot);
    assert_eq!(limited.quota, None, "no hourly quota is counted here");
    // Over the hour's 1 (the engine's to refuse), but not over one in flight: the
    // first still holds its slot, so the second is refused here, per Envoy.
    assert_eq!(denied(decide(&mut vm, &forged)).reason, Reason::ConcurrencyLimited);
    vm.config.limit_table.release(&vm.host, limited.key, NOW);
    allowed(decide(&mut vm, &forged));
}

#[test]
fn with_scope_envoy_no_principal_is_handed_to_an_engine() {
    let mut vm = authenticator(json!({"limits": {"requests_per_hour": 1}}));
    let credentials = basic("alice", "secret");
    let headers = [("authorization", credentials.as_str()), ("x-auth-ratelimit-principal", "basic:alice")];
    let (_, changes) = allowed(decide(&mut vm, &headers));
    assert!(changes.remove.iter().any(|name| name == "x-auth-ratelimit-principal"));
    assert_eq!(header_value(&changes, "x-auth-ratelimit-principal"), None);
    assert_eq!(denied(decide(&mut vm, &headers)).reason, Reason::RateLimited);
}

#[test]
fn with_scope_fleet_an_unlimited_principal_costs_no_engine_call() {
    let limits = json!({"limits": {"max_concurrent": 10, "scope": "fleet"}});
    let mut vm = authenticator(limits);
    let credentials = basic("alice", "secret");
    let (_, changes) = allowed(decide(&mut vm, &[("authorization", &credentials)]));
    assert_eq!(header_value(&changes, "x-auth-ratelimit-principal"), None);
    // A bypassed request carries none either, and loses a forged one.
    let d = decide_with(&mut vm, "GET", "/healthz", &[("x-auth-ratelimit-principal", "basic:alice")]);
    let expected = UpstreamChanges { remove: vec!["x-auth-ratelimit-principal".into()], ..Default::default() };
    assert_eq!(d, Decision::Bypass(expected));
}

/// `rules[].claims` (issue 22.2): every condition met, else 403 `claim_condition_failed`;
/// principals without claims (Basic, API keys) meet none.
#[test]
fn claim_conditions_decide_after_the_principal() {
    let rules = json!({"rules": [{"match": {"path_prefix": "/admin"}, "claims": [
        {"claim": "realm.roles", "any_of": ["admin"]},
        {"claim": "mfa", "all_of": [true]},
        {"claim": "tenant", "equals_header": "x-tenant"}
    ]}]});
    let mut vm = authenticator(rules);
    let claims = |roles: Value| {
        json!({"iss": "https://id.corp", "aud": "api", "sub": "u-1", "exp": NOW + 60, "realm": {"roles": roles},
               "mfa": true, "tenant": "acme"})
    };
    let bearer = |claims: Value| format!("Bearer {}", hs256(claims));
    let admin = bearer(claims(json!(["admin", "ops"])));
    let at = |vm: &mut Vm, auth: &str, tenant: &[(&'static str, &'static str)]| {
        let mut headers = vec![("authorization", auth)];
        headers.extend_from_slice(tenant);
        decide_with(vm, "GET", "/admin/users", &headers)
    };
    let (principal, changes) = allowed(at(&mut vm, &admin, &[("x-tenant", "acme")]));
    assert_eq!(principal.qualified.as_str(), "jwt:corp:u-1");
    assert!(!changes.remove.iter().any(|name| name == "x-tenant"), "the compared header goes on");
    for tenant in [&[("x-tenant", "globex")][..], &[], &[("x-tenant", "acme"), ("x-tenant", "acme")]] {
        let reply = denied(at(&mut vm, &admin, tenant));
        assert_eq!((reply.status, reply.reason), (403, Reason::ClaimConditionFailed), "{tenant:?}");
    }
    let reader = bearer(claims(json!(["reader"])));
    assert_eq!(denied(at(&mut vm, &reader, &[("x-tenant", "acme")])).reason, Reason::ClaimConditionFailed);
    let no_mfa = bearer(json!({"iss": "https://id.corp", "aud": "api", "sub": "u-1", "exp": NOW + 60,
                               "realm": {"roles": ["admin"]}, "tenant": "acme"}));
    assert_eq!(denied(at(&mut vm, &no_mfa, &[("x-tenant", "acme")])).reason, Reason::ClaimConditionFailed);
    // Basic users and API keys have no claims: refused by a rule with conditions, allowed elsewhere.
    let alice = basic("alice", "secret");
    assert_eq!(denied(at(&mut vm, &alice, &[("x-tenant", "acme")])).reason, Reason::ClaimConditionFailed);
    let reply = denied(decide_with(&mut vm, "GET", "/admin", &[("x-api-key", "secret"), ("x-tenant", "acme")]));
    assert_eq!(reply.reason, Reason::ClaimConditionFailed);
    allowed(decide_with(&mut vm, "GET", "/orders", &[("authorization", &alice)]));
}

/// A provider's `forward`, `forward_payload_header` and `payload_in_filter_state` (issue 22.7, 22.8).
#[test]
fn a_provider_hands_on_its_payload_and_forwards_its_tokens() {
    let mut vm = authenticator(json!({"forward_credentials": false, "jwt": {"providers": [{
        "name": "corp", "issuer": "https://id.corp",
        "local_jwks": {"keys": [{"kty": "oct", "kid": "hmac-1", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(HMAC_SECRET)}]},
        "forward": true, "forward_payload_header": "x-jwt-payload", "payload_in_filter_state": true
    }]}}));
    let token = hs256(json!({"iss": "https://id.corp", "sub": "u-1", "exp": NOW + 60, "team": "blue"}));
    let payload = token.split('.').nth(1).unwrap();
    let forged = [("authorization", format!("Bearer {token}")), ("x-jwt-payload", "eyJzdWIiOiJhZG1pbiJ9".into())];
    let headers: Vec<(&str, &str)> = forged.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (_, changes) = allowed(decide(&mut vm, &headers));
    assert_eq!(header_value(&changes, "x-jwt-payload"), Some(payload));
    assert!(changes.remove.iter().any(|name| name == "x-jwt-payload"), "the forged copy goes first");
    assert!(!changes.remove.iter().any(|name| name == "authorization"), "forward: true over forward_credentials");
    let json_text = changes.state.iter().find(|(key, _)| key == "wasm_authn.payload").map(|(_, v)| v.as_str());
    let decoded: Value = serde_json::from_str(json_text.unwrap()).unwrap();
    assert_eq!(decoded["team"], "blue");
    // Another kind of credential follows forward_credentials, and a forged payload never passes.
    let alice = basic("alice", "secret");
    let (_, changes) = allowed(decide(&mut vm, &[("authorization", &alice), ("x-jwt-payload", "e30")]));
    assert!(changes.remove.iter().any(|name| name == "authorization"));
    assert!(changes.remove.iter().any(|name| name == "x-jwt-payload"));
    assert_eq!(header_value(&changes, "x-jwt-payload"), None);
    assert!(changes.state.is_empty());
}

/// RFC 8705 3: a certificate-bound token is checked against the connection's certificate
/// on every request; the remembered verification never serves another connection.
#[test]
fn a_remembered_bound_token_is_checked_against_each_connection() {
    use crate::peer::{Peer, PeerCertificate};
    let mut vm = authenticator(json!({}));
    let certificate = |hex: &str| PeerCertificate::from_hex_digest(&hex.repeat(32)).unwrap();
    let (mine, other) = (certificate("ab"), certificate("cd"));
    let bound = format!(
        "Bearer {}",
        hs256(json!({"iss": "https://id.corp", "sub": "u-1", "aud": "api", "exp": NOW + 60,
                     "cnf": {"x5t#S256": mine.thumbprint}}))
    );
    let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/orders"), ("authorization", &bound)]);
    let mut on = |peer: Option<&PeerCertificate>| {
        let mut request = RequestFacts::from_headers(&headers);
        request.peer = Peer::Known(peer);
        super::decide(&vm.config, &vm.fetched, &mut vm.verifier, &request, &vm.host, NOW * 1000)
    };
    assert!(matches!(on(Some(&mine)), Decision::Allow { .. }));
    for wrong in [Some(&other), None] {
        match on(wrong) {
            Decision::Reply(reply) => assert_eq!(reply.reason, Reason::TokenCertificateMismatch),
            decision => panic!("a bound token served another connection: {decision:?}"),
        }
    }
    assert!(matches!(on(Some(&mine)), Decision::Allow { .. }), "remembered, and still its own");
}

/// RFC 9449 7: a DPoP-bound token needs this request's proof, a remembered one too; never as Bearer.
#[test]
fn a_remembered_dpop_token_needs_each_requests_proof() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut vm = authenticator(json!({"jwt": {"providers": [{
        "name": "corp", "issuer": "https://id.corp", "dpop": "allowed",
        "local_jwks": {"keys": [{"kty": "oct", "kid": "hmac-1", "k": URL_SAFE_NO_PAD.encode(HMAC_SECRET)}]}}]}}));
    let public = crate::jwt::KeySet::from_pem(include_str!("../../tests/keys/ec_p256_public.pem"), None).unwrap();
    let jwk = public.keys()[0].public_jwk().unwrap();
    let private = EncodingKey::from_ec_pem(include_bytes!("../../tests/keys/ec_p256_private.pem")).unwrap();
    let claims = |sub: &str| json!({"iss": "https://id.corp", "sub": sub, "exp": NOW + 60, "cnf": {"jkt": crate::jwt::thumbprint(&jwk)}});
    let (token, other) = (hs256(claims("u-1")), hs256(claims("u-2")));
    let proof = |jti: &str, for_token: &str| {
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(serde_json::from_value(Value::Object(jwk.clone())).unwrap());
        let ath = URL_SAFE_NO_PAD.encode(crate::digest::sha256(for_token.as_bytes()));
        let claims = json!({"jti": jti, "htm": "GET", "htu": "http://api.test/orders", "iat": NOW, "ath": ath});
        encode(&header, &claims, &private).unwrap()
    };
    let mut on = |authorization: String, proof: Option<String>| {
        let mut pairs = vec![(":method", "GET"), (":path", "/orders?page=2"), (":authority", "api.test")];
        pairs.extend([(":scheme", "http"), ("authorization", authorization.as_str())]);
        pairs.extend(proof.as_deref().map(|proof| ("dpop", proof)));
        let headers = crate::testing::headers(&pairs);
        let request = RequestFacts::from_headers(&headers);
        super::decide(&vm.config, &vm.fetched, &mut vm.verifier, &request, &vm.host, NOW * 1000)
    };
    let dpop = format!("DPoP {token}");
    let (_, changes) = allowed(on(dpop.clone(), Some(proof("1", &token))));
    assert!(
        changes.remove.iter().any(|name| name == "authorization") && changes.remove.iter().any(|name| name == "dpop")
    );
    // Remembered now: a new proof passes, the same one again, none, or another token's does not.
    assert!(matches!(on(dpop.clone(), Some(proof("2", &token))), Decision::Allow { .. }));
    for (proof, message) in [
        (Some(proof("2", &token)), "proof replayed"),
        (None, "exactly one DPoP proof header is required"),
        (Some(proof("3", &other)), "ath does not match the access token"),
    ] {
        let reply = denied(on(dpop.clone(), proof));
        assert_eq!(
            (reply.reason, reply.error, reply.message.as_str()),
            (Reason::DpopProofInvalid, "invalid_dpop_proof", message)
        );
        assert!(reply.headers.iter().any(|(name, value)| *name == "www-authenticate" && value.starts_with("DPoP ")));
    }
    // As Bearer, even with its proof: refused.
    let reply = denied(on(format!("Bearer {token}"), Some(proof("4", &token))));
    assert_eq!((reply.reason, reply.error), (Reason::DpopProofInvalid, "invalid_token"));
}

mod requirements;
