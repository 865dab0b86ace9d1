use crate::request::Source;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde_json::{json, Value};

use super::*;
use crate::config::Config;
use crate::pipeline::authenticate::{NotVerified, Verifier};
use crate::pipeline::credential::Credential;
use crate::principal::AuthMethod;
use crate::testing::headers;
use crate::testing::{FakeHost, FakeShared};

const NOW: u64 = 1_800_000_000;
const EC_PRIVATE: &str = include_str!("../../tests/keys/ec_p256_private.pem");
const EC_PRIVATE_SEC1: &str = include_str!("../../tests/keys/ec_p256_private_sec1.pem");
const ED_PRIVATE: &str = include_str!("../../tests/keys/ed25519_private.pem");
const RSA_PRIVATE: &str = include_str!("../../tests/keys/rsa2048_private.pem");
const EC_PUBLIC: &str = include_str!("../../tests/keys/ec_p256_public.pem");
const ED_PUBLIC: &str = include_str!("../../tests/keys/ed25519_public.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/keys/rsa2048_public.pem");
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// `sha256:` of an API key, as the configuration stores it.
fn key_hash(key: &str) -> String {
    let digest = crate::digest::sha256(key.as_bytes());
    format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn config_with(signing_key: Value, extra: Value) -> Config {
    let mut endpoint = json!({
        "path": "/auth/token",
        "issuer": "https://auth.example.com",
        "audiences": ["orders"],
        "lifetime_seconds": 600,
        "signing_key": signing_key,
    });
    if let (Value::Object(endpoint), Value::Object(extra)) = (&mut endpoint, extra) {
        endpoint.extend(extra);
    }
    let config = json!({
        "api_keys": {"clients": [
            {"id": "reports", "key_hash": key_hash("key-reports"), "scopes": ["orders:read", "orders:write"]},
            {"id": "old", "key_hash": key_hash("key-old"), "disabled": true},
        ]},
        "token_endpoint": endpoint,
    });
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

fn config(signing_key: Value) -> Config {
    config_with(signing_key, json!({}))
}

fn endpoint(config: &Config) -> &TokenEndpoint {
    config.token_endpoint.as_ref().unwrap()
}

/// The endpoint's answer to a POST with these headers and body.
fn post(config: &Config, pairs: &[(&str, &str)], body: &str) -> LocalReply {
    post_on(&mut FakeHost::new(&FakeShared::default()), config, pairs, body)
}

/// The same on a host of the test's.
fn post_on(host: &mut FakeHost, config: &Config, pairs: &[(&str, &str)], body: &str) -> LocalReply {
    let headers = headers(pairs);
    let request = RequestFacts::new("POST", "/auth/token", &headers);
    let endpoint = endpoint(config);
    match endpoint.on_headers(Served::Token, &request, &config.api_keys, &config.realm) {
        Ok(presented) => {
            endpoint.issue(config.api_keys.directory(None), &config.limit_table, host, &presented, body.as_bytes(), NOW)
        }
        Err(reply) => reply,
    }
}

fn body(reply: &LocalReply) -> Value {
    serde_json::from_str(&reply.body()).unwrap()
}

fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
    reply.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

fn issued_token(config: &Config) -> String {
    let reply = post(config, &[("content-type", "application/json")], r#"{"apiKey": "key-reports"}"#);
    assert_eq!((reply.status, reply.reason), (200, Reason::TokenIssued), "{}", reply.body());
    body(&reply)["access_token"].as_str().unwrap().to_string()
}

/// Checked by an independent implementation (jsonwebtoken), with the public key.
fn independently_verified(token: &str, key: &DecodingKey) -> Value {
    let alg = decode_header(token).unwrap().alg;
    let mut validation = Validation::new(alg);
    validation.set_audience(&["orders"]);
    validation.set_issuer(&["https://auth.example.com"]);
    validation.validate_exp = false; // issued at NOW, a fixed time in the future of the test run
    decode::<Value>(token, key, &validation).unwrap().claims
}

fn pem_string(pem: &str) -> Value {
    Value::String(pem.to_string())
}

#[test]
fn every_key_signs_tokens_that_verify_independently_and_in_the_filter() {
    let ec_jwk = match Signer::parse(&pem_string(EC_PRIVATE)).unwrap() {
        Signer::Es256(key) => {
            let mut jwk = Signer::Es256(key.clone()).public_jwk().unwrap();
            jwk.insert("d".into(), URL_SAFE_NO_PAD.encode(key.to_bytes()).into());
            Value::Object(jwk)
        }
        _ => unreachable!(),
    };
    let cases = [
        (pem_string(EC_PRIVATE), "ES256", DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap()),
        (ec_jwk, "ES256", DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap()),
        (pem_string(ED_PRIVATE), "EdDSA", DecodingKey::from_ed_pem(ED_PUBLIC.as_bytes()).unwrap()),
        (pem_string(RSA_PRIVATE), "RS256", DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap()),
        (json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET)}), "HS256", DecodingKey::from_secret(SECRET)),
    ];
    for (signing_key, alg, public) in cases {
        let config = config(signing_key);
        let token = issued_token(&config);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], alg);
        assert_eq!(header["kid"], endpoint(&config).kid.as_str());
        let claims = independently_verified(&token, &public);
        assert_eq!(claims["sub"], "reports");
        assert_eq!(claims["aud"], "orders");
        assert_eq!(claims["scope"], "orders:read orders:write");
        assert_eq!(claims["exp"].as_u64(), Some(NOW + 600));
        assert_eq!(claims["iat"].as_u64(), Some(NOW));
        assert_eq!(URL_SAFE_NO_PAD.decode(claims["jti"].as_str().unwrap()).unwrap().len(), 16);

        // The filter accepts its own token: the client, with its privileges.
        let mut verifier = Verifier::new(&config);
        let host = FakeHost::new(&FakeShared::default());
        let principal = verifier
            .authenticate(
                &config,
                &crate::fetched::Fetched::new(&config),
                &Credential::bearer(token),
                Source::Known(None),
                &host,
                NOW * 1000 + 5_000,
            )
            .unwrap();
        assert_eq!(principal.id, "reports");
        assert_eq!(principal.method, AuthMethod::Jwt);
        assert_eq!(principal.provider.as_deref(), Some("token-endpoint"));
        assert_eq!(principal.scopes, vec!["orders:read", "orders:write"]);
    }
}

#[test]
fn the_three_forms_and_a_narrower_scope() {
    let config = config(pem_string(EC_PRIVATE));
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let in_body = post(&config, &form, "grant_type=client_credentials&client_id=reports&client_secret=key-reports");
    assert_eq!(in_body.status, 200, "{}", in_body.body());
    let basic = format!("Basic {}", STANDARD.encode("reports:key-reports"));
    let in_basic =
        post(&config, &[form[0], ("authorization", &basic)], "grant_type=client_credentials&scope=orders:read");
    assert_eq!(in_basic.status, 200, "{}", in_basic.body());
    assert_eq!(body(&in_basic)["scope"], "orders:read");
    let in_header = post(&config, &[("x-api-key", "key-reports")], "");
    assert_eq!(in_header.status, 200);
    let answer = body(&in_header);
    assert_eq!((answer["token_type"].as_str(), answer["expires_in"].as_u64()), (Some("Bearer"), Some(600)));
    // RFC 6749 5.1: never cached.
    let headers = in_header.all_headers();
    assert!(headers.contains(&("cache-control", "no-store".into())));
    assert!(headers.contains(&("pragma", "no-cache".into())));

    // The narrower token holds only what it asked for.
    let token = body(&in_basic)["access_token"].as_str().unwrap().to_string();
    let host = FakeHost::new(&FakeShared::default());
    let principal = Verifier::new(&config)
        .authenticate(
            &config,
            &crate::fetched::Fetched::new(&config),
            &Credential::bearer(token),
            Source::Known(None),
            &host,
            NOW * 1000,
        )
        .unwrap();
    assert_eq!(principal.scopes, vec!["orders:read"]);
}

#[test]
fn errors_follow_rfc_6749_and_never_echo_the_key() {
    let config = config(pem_string(EC_PRIVATE));
    let json_type = [("content-type", "application/json")];
    let invalid_client = |reply: &LocalReply| {
        assert_eq!((reply.status, reply.reason), (401, Reason::TokenInvalidClient), "{}", reply.body());
        assert_eq!(body(reply)["error"], "invalid_client");
        assert_eq!(header(reply, "www-authenticate"), Some("Basic realm=\"api\", charset=\"UTF-8\""));
        assert!(!reply.body().contains("key-"), "{}", reply.body());
    };
    invalid_client(&post(&config, &json_type, r#"{"apiKey": "key-wrong"}"#));
    invalid_client(&post(&config, &json_type, r#"{"apiKey": "key-old"}"#)); // disabled
    invalid_client(&post(&config, &[], ""));
    let form = [("content-type", "application/x-www-form-urlencoded")];
    invalid_client(&post(&config, &form, "grant_type=client_credentials&client_id=nobody&client_secret=key-reports"));
    invalid_client(&post(&config, &form, "grant_type=client_credentials&client_id=old&client_secret=key-old"));

    let bad = post(&config, &form, "grant_type=password&username=a&password=b");
    assert_eq!((bad.status, body(&bad)["error"].as_str()), (400, Some("unsupported_grant_type")));
    let bad = post(&config, &json_type, "{not json");
    assert_eq!((bad.status, body(&bad)["error"].as_str()), (400, Some("invalid_request")));
    let bad = post(&config, &[("x-api-key", "key-reports"), ("x-api-key", "key-other")], "");
    assert_eq!((bad.status, bad.reason), (400, Reason::TokenInvalidRequest));
    let scope =
        post(&config, &form, "grant_type=client_credentials&client_id=reports&client_secret=key-reports&scope=admin");
    assert_eq!(
        (scope.status, scope.reason, body(&scope)["error"].as_str()),
        (400, Reason::TokenInvalidScope, Some("invalid_scope"))
    );

    // Size: declared, and actual.
    let declared = post(&config, &[json_type[0], ("content-length", "8193")], "");
    assert_eq!((declared.status, declared.reason), (413, Reason::TokenBodyTooLarge));
    let actual = post(&config, &json_type, &format!("{{\"apiKey\": \"{}\"}}", "k".repeat(MAX_BODY_BYTES)));
    assert_eq!(actual.status, 413);

    // Methods.
    let headers = headers(&[]);
    let get = RequestFacts::new("GET", "/auth/token", &headers);
    let reply = endpoint(&config).on_headers(Served::Token, &get, &config.api_keys, &config.realm).unwrap_err();
    assert_eq!((reply.status, header(&reply, "allow")), (405, Some("POST")));
    let post_jwks = RequestFacts::new("POST", "/.well-known/jwks.json", &headers);
    let reply = endpoint(&config).on_headers(Served::Jwks, &post_jwks, &config.api_keys, &config.realm).unwrap_err();
    assert_eq!((reply.status, header(&reply, "allow")), (405, Some("GET, HEAD")));
}

#[test]
fn the_jwks_verifies_issued_tokens() {
    let config = config(pem_string(RSA_PRIVATE));
    let endpoint = endpoint(&config);
    assert_eq!(endpoint.serves("/.well-known/jwks.json"), Some(Served::Jwks));
    assert_eq!(endpoint.serves("/auth/token"), Some(Served::Token));
    assert_eq!(endpoint.serves("/auth/token/x"), None);
    let headers = headers(&[]);
    let get = RequestFacts::new("GET", "/.well-known/jwks.json", &headers);
    let reply = endpoint.on_headers(Served::Jwks, &get, &config.api_keys, &config.realm).unwrap_err();
    assert_eq!((reply.status, reply.reason), (200, Reason::JwksServed));
    assert_eq!(reply.all_headers().iter().filter(|(n, _)| *n == "cache-control").count(), 1);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&reply.body()).unwrap();
    assert!(!reply.body().contains("\"d\""), "the private half stays");
    let token = issued_token(&config);
    let kid = decode_header(&token).unwrap().kid.unwrap();
    let jwk = jwks.find(&kid).unwrap();
    let claims = independently_verified(&token, &DecodingKey::from_jwk(jwk).unwrap());
    assert_eq!(claims["sub"], "reports");
}

#[test]
fn a_disabled_client_loses_its_tokens_with_the_new_configuration() {
    let before = config(pem_string(ED_PRIVATE));
    let token = issued_token(&before);
    let host = FakeHost::new(&FakeShared::default());
    let mut verifier = Verifier::new(&before);
    assert!(verifier
        .authenticate(
            &before,
            &crate::fetched::Fetched::new(&before),
            &Credential::bearer(token.clone()),
            Source::Known(None),
            &host,
            NOW * 1000
        )
        .is_ok());

    let disabled = json!({
        "api_keys": {"clients": [{"id": "reports", "key_hash": key_hash("key-reports"), "disabled": true}]},
        "token_endpoint": {"path": "/auth/token", "issuer": "https://auth.example.com", "audiences": ["orders"],
                           "lifetime_seconds": 600, "signing_key": ED_PRIVATE},
    });
    let after = Config::from_json(disabled.to_string().as_bytes()).unwrap();
    let refused = Verifier::new(&after).authenticate(
        &after,
        &crate::fetched::Fetched::new(&after),
        &Credential::bearer(token),
        Source::Known(None),
        &host,
        NOW * 1000,
    );
    assert!(matches!(refused, Err(NotVerified::Invalid { reason: Reason::TokenRevoked, bearer: true, .. })));
}

#[test]
fn configuration_errors_name_the_field_and_hide_the_key() {
    let error = |config: Value| Config::from_json(config.to_string().as_bytes()).unwrap_err().to_string();
    let clients = json!({"clients": [{"id": "a", "key_hash": key_hash("k")}]});
    let endpoint = |extra: Value| {
        let mut endpoint = json!({"path": "/auth/token", "issuer": "https://auth", "signing_key": EC_PRIVATE});
        if let (Value::Object(e), Value::Object(x)) = (&mut endpoint, extra) {
            e.extend(x);
        }
        json!({"api_keys": clients, "token_endpoint": endpoint})
    };
    let message = error(endpoint(json!({"signing_key": EC_PRIVATE.replace("MIG", "MIH")})));
    assert!(message.starts_with("token_endpoint.signing_key:"), "{message}");
    assert!(!message.contains("BEGIN") && !message.contains("MIH"), "{message}");
    let secret = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(b"short-secret")});
    let message = error(endpoint(json!({"signing_key": secret})));
    assert!(message.contains("at least 32 bytes") && !message.contains("c2hvcnQ"), "{message}");
    let hs256 = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET)});
    assert!(
        error(endpoint(json!({"signing_key": hs256, "jwks_path": "/jwks"}))).starts_with("token_endpoint.jwks_path:")
    );
    assert!(error(endpoint(json!({"path": "/auth//token"}))).starts_with("token_endpoint.path:"));
    assert!(error(endpoint(json!({"jwks_path": "/auth/token"}))).starts_with("token_endpoint.jwks_path:"));
    assert!(error(endpoint(json!({"lifetime_seconds": 0}))).starts_with("token_endpoint.lifetime_seconds:"));
    assert!(error(endpoint(json!({"lifetime_seconds": 86_401}))).starts_with("token_endpoint.lifetime_seconds:"));
    let mut no_clients = endpoint(json!({}));
    no_clients["api_keys"] = json!({});
    assert!(error(no_clients).starts_with("token_endpoint:"));
    // One issuer, one owner.
    let mut clash = endpoint(json!({}));
    clash["jwt"] = json!({"providers": [{"name": "corp", "issuer": "https://auth", "local_pem": EC_PUBLIC}]});
    assert!(error(clash.clone()).starts_with("token_endpoint.issuer:"), "{}", error(clash));
    let mut clash = endpoint(json!({"name": "corp"}));
    clash["jwt"] = json!({"providers": [{"name": "corp", "issuer": "https://other", "local_pem": EC_PUBLIC}]});
    assert!(error(clash).starts_with("token_endpoint.name:"));
    let mut clash = endpoint(json!({"issuer": "svc"}));
    clash["keypairs"] = json!([{"id": "svc", "public_key": EC_PUBLIC}]);
    assert!(error(clash).starts_with("token_endpoint.issuer:"));
}

#[test]
fn signing_keys_that_cannot_sign_are_refused() {
    let parse = |value: Value| Signer::parse(&value).map(|_| ()).unwrap_err();
    assert!(parse(json!(7)).contains("private JWK"));
    assert!(parse(pem_string(EC_PUBLIC)).contains("PKCS#8"));
    // `openssl ecparam -genkey` writes SEC1 (`BEGIN EC PRIVATE KEY`): the refusal says how to convert it.
    assert_eq!(
        parse(pem_string(EC_PRIVATE_SEC1)),
        "must be a private JWK or one PKCS#8 PEM block (BEGIN PRIVATE KEY; \
         `openssl pkcs8 -topk8 -nocrypt` converts an EC or RSA PRIVATE KEY)"
    );
    assert!(parse(json!({"kty": "EC", "crv": "P-384", "d": "AA"})).contains("P-256"));
    assert!(parse(json!({"kty": "OKP", "crv": "X25519", "d": "AA"})).contains("Ed25519"));
    // A JWK whose public members are not its private key's.
    let Signer::Es256(key) = Signer::parse(&pem_string(EC_PRIVATE)).unwrap() else { unreachable!() };
    let other = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let mut jwk = Signer::Es256(other).public_jwk().unwrap();
    jwk.insert("d".into(), URL_SAFE_NO_PAD.encode(key.to_bytes()).into());
    assert!(parse(Value::Object(jwk)).contains("public half"));
    let debug = format!("{:?}", Signer::parse(&pem_string(RSA_PRIVATE)).unwrap());
    assert_eq!(debug, "Signer(RS256)");
}

fn limited_config(signing_key: Value, client: Value, endpoint: Value) -> Config {
    let mut config = json!({
        "api_keys": {"clients": [client]},
        "token_endpoint": {"path": "/auth/token", "issuer": "https://auth.example.com", "signing_key": signing_key},
    });
    for (key, value) in endpoint.as_object().unwrap() {
        config["token_endpoint"][key] = value.clone();
    }
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

/// Issue 17.9: issuing is one of the client's requests per hour, with its key and its tokens.
#[test]
fn issuing_counts_against_the_clients_requests_per_hour() {
    let client = json!({"id": "reports", "key_hash": key_hash("key-reports"), "requests_per_hour": 2});
    let config = limited_config(json!(EC_PRIVATE), client, json!({}));
    let mut host = FakeHost::new(&FakeShared::default());
    let ask = |host: &mut FakeHost| post_on(host, &config, &[("x-api-key", "key-reports")], "");
    assert_eq!(ask(&mut host).status, 200);
    assert_eq!(host.counter("tracked_principals"), 1, "a new principal's record");
    let key = crate::pipeline::limits::LimitTable::key("api-key:reports");
    let hourly = crate::pipeline::limits::Limits { requests_per_hour: Some(2), max_concurrent: None };
    assert!(matches!(config.limit_table.admit(&host, key, &hourly, NOW), Admission::Admitted { .. }));
    let refused = ask(&mut host);
    assert_eq!((refused.status, refused.reason), (429, Reason::RateLimited));
    assert_eq!(body(&refused)["error"], "rate_limited");
    assert!(header(&refused, "retry-after").unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(header(&refused, "ratelimit-policy"), Some("\"hourly\";q=2;w=3600"));
    assert!(!refused.body().contains("key-reports"));
}

/// Issue 17.9: signing takes at most its share of the worker; past it, 503 with Retry-After.
#[test]
fn signing_stays_within_the_workers_budget() {
    let client = json!({"id": "reports", "key_hash": key_hash("key-reports")});
    let config = limited_config(json!(RSA_PRIVATE), client, json!({"signing_budget_ms_per_second": 10}));
    let mut host = FakeHost::new(&FakeShared::default());
    host.tick_ns = 30_000_000; // each reading of the clock 30 ms later: a signature "takes" 30 ms
    let answers: Vec<(u16, Reason)> = (0..3)
        .map(|_| post_on(&mut host, &config, &[("x-api-key", "key-reports")], ""))
        .map(|reply| (reply.status, reply.reason))
        .collect();
    assert_eq!(answers, [(200, Reason::TokenIssued), (503, Reason::TokenSigningBusy), (503, Reason::TokenSigningBusy)]);
    let busy = post_on(&mut host, &config, &[("x-api-key", "key-reports")], "");
    assert_eq!(body(&busy)["error"], "temporarily_unavailable");
    assert!(header(&busy, "retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // The budget is the worker's: a VM of its own signs at once.
    let other = config_with(json!(RSA_PRIVATE), json!({"signing_budget_ms_per_second": 10}));
    assert_eq!(post_on(&mut host, &other, &[("x-api-key", "key-reports")], "").status, 200);
}

#[test]
fn a_request_refused_for_the_signing_budget_is_not_counted() {
    let client = json!({"id": "reports", "key_hash": key_hash("key-reports"), "requests_per_hour": 2});
    let config = limited_config(json!(RSA_PRIVATE), client, json!({"signing_budget_ms_per_second": 10}));
    let mut host = FakeHost::new(&FakeShared::default());
    host.tick_ns = 30_000_000;
    let mut ask = || post_on(&mut host, &config, &[("x-api-key", "key-reports")], "").status;
    assert_eq!([ask(), ask(), ask()], [200, 503, 503]);
    host.now_ns.set(host.now_ns.get() + 10_000_000_000); // the budget refills
    let mut ask = || post_on(&mut host, &config, &[("x-api-key", "key-reports")], "").status;
    assert_eq!(ask(), 200, "the two 503s cost the client nothing");
    host.now_ns.set(host.now_ns.get() + 10_000_000_000);
    assert_eq!(post_on(&mut host, &config, &[("x-api-key", "key-reports")], "").status, 429);
}
