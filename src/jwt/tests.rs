//! Tokens are minted with `jsonwebtoken` (an independent implementation) from the
//! fixed test keys under tests/keys/ (generated once with Python's `cryptography`).

use std::cell::RefCell;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::config::{Config, ConfigError};
use crate::remote::Step;
use crate::testing::{FakeResponse, FakeShared};

const ISSUER: &str = "https://idp.example.com";
const NOW: u64 = 1_700_000_000;
const SKEW: u64 = 60;
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

const RSA_PRIVATE: &str = include_str!("../../tests/keys/rsa2048_private.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/keys/rsa2048_public.pem");
const EC_PRIVATE: &str = include_str!("../../tests/keys/ec_p256_private.pem");
const EC_PUBLIC: &str = include_str!("../../tests/keys/ec_p256_public.pem");
const EC_P384_PRIVATE: &str = include_str!("../../tests/keys/ec_p384_private.pem");
const EC_P384_PUBLIC: &str = include_str!("../../tests/keys/ec_p384_public.pem");
const EC_P521_PUBLIC: &str = include_str!("../../tests/keys/ec_p521_public.pem");
const ED_PRIVATE: &str = include_str!("../../tests/keys/ed25519_private.pem");
const ED_PUBLIC: &str = include_str!("../../tests/keys/ed25519_public.pem");
const PUBLIC_JWKS: &str = include_str!("../../tests/keys/public_jwks.json");

// ---- fixtures ----

fn fixture_jwk(name: &str) -> Value {
    let all: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    all[name].clone()
}

fn with_kid(mut jwk: Value, kid: &str) -> Value {
    jwk["kid"] = json!(kid);
    jwk
}

fn hmac_jwk(kid: &str) -> Value {
    json!({"kty": "oct", "kid": kid, "k": URL_SAFE_NO_PAD.encode(HMAC_SECRET)})
}

fn all_local_keys() -> Value {
    json!({"keys": [
        with_kid(fixture_jwk("rsa2048"), "rsa-1"),
        with_kid(fixture_jwk("ec_p256"), "ec-1"),
        with_kid(fixture_jwk("ec_p384"), "ec384-1"),
        with_kid(fixture_jwk("ed25519"), "ed-1"),
        hmac_jwk("hs-1"),
    ]})
}

fn base_config() -> Value {
    json!({"name": "idp", "issuer": ISSUER, "local_jwks": all_local_keys()})
}

fn merged(mut config: Value, extra: Value) -> Value {
    for (name, value) in extra.as_object().unwrap() {
        config[name] = value.clone();
    }
    config
}

fn try_provider(config: Value) -> Result<Provider, ConfigError> {
    let config = Config::from_json(json!({"jwt": {"providers": [config]}}).to_string().as_bytes())?;
    Ok(config.jwt_providers.into_iter().next().unwrap())
}

fn provider(config: Value) -> Provider {
    try_provider(config).unwrap()
}

fn config_error(config: Value) -> String {
    try_provider(config).unwrap_err().to_string()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "iat": NOW - 10, "exp": NOW + 600})
}

fn claims_with(extra: Value) -> Value {
    merged(claims(), extra)
}

fn encoding_key(alg: jsonwebtoken::Algorithm) -> EncodingKey {
    use jsonwebtoken::Algorithm as A;
    match alg {
        A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512 => {
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
        }
        A::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        A::ES384 => EncodingKey::from_ec_pem(EC_P384_PRIVATE.as_bytes()).unwrap(),
        A::EdDSA => EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        A::HS256 | A::HS384 | A::HS512 => EncodingKey::from_secret(HMAC_SECRET),
    }
}

fn mint_with(alg: jsonwebtoken::Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).unwrap()
}

fn mint(alg: jsonwebtoken::Algorithm, kid: Option<&str>, claims: &Value) -> String {
    mint_with(alg, kid, &encoding_key(alg), claims)
}

fn rs256(claims: &Value) -> String {
    mint(jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims)
}

fn check_with(token: &str, providers: &[Provider], backend: &dyn SignatureBackend) -> Result<VerifiedToken, JwtError> {
    verify(token, providers, &FetchedKeys::new(providers), &|_| true, backend, NOW, SKEW)
}

/// Checked as in Envoy: the module's own code, and the host's for ES384.
fn check(token: &str, providers: &[Provider]) -> Result<VerifiedToken, JwtError> {
    check_with(token, providers, &crate::testing::HostP384)
}

/// A token made of the given JSON parts and signature bytes, with no real signature.
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn replace_signature(token: &str, mutate: impl FnOnce(&mut Vec<u8>)) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    mutate(&mut bytes);
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

// ---- each algorithm ----

#[test]
fn every_algorithm_verifies() {
    use jsonwebtoken::Algorithm as A;
    let providers = [provider(base_config())];
    for (alg, kid) in [
        (A::RS256, "rsa-1"),
        (A::RS384, "rsa-1"),
        (A::RS512, "rsa-1"),
        (A::PS256, "rsa-1"),
        (A::PS384, "rsa-1"),
        (A::PS512, "rsa-1"),
        (A::ES256, "ec-1"),
        (A::ES384, "ec384-1"),
        (A::EdDSA, "ed-1"),
        (A::HS256, "hs-1"),
    ] {
        let verified = check(&mint(alg, Some(kid), &claims()), &providers).unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
        assert_eq!(verified.principal, "alice");
        assert_eq!(verified.provider, ProviderId(0));
        assert_eq!(verified.expires_at, Some(NOW + 600));
    }
}

#[test]
fn hmac_key_with_alg_is_bound_to_it() {
    let mut jwk = hmac_jwk("hs-1");
    jwk["alg"] = json!("HS256");
    let providers = [provider(merged(base_config(), json!({"local_jwks": {"keys": [jwk]}})))];
    assert!(check(&mint(jsonwebtoken::Algorithm::HS256, Some("hs-1"), &claims()), &providers).is_ok());
    // 32 bytes is too short for HS384 anyway, but the binding refuses it first.
    let hs384 = mint(jsonwebtoken::Algorithm::HS384, Some("hs-1"), &claims());
    assert_eq!(check(&hs384, &providers), Err(JwtError::UnsupportedAlgorithm));
}

#[test]
fn rsa_key_with_alg_is_bound_to_it() {
    let mut jwk = with_kid(fixture_jwk("rsa2048"), "rsa-1");
    jwk["alg"] = json!("PS256");
    let providers = [provider(merged(base_config(), json!({"local_jwks": {"keys": [jwk]}})))];
    assert!(check(&mint(jsonwebtoken::Algorithm::PS256, Some("rsa-1"), &claims()), &providers).is_ok());
    assert_eq!(check(&rs256(&claims()), &providers), Err(JwtError::UnsupportedAlgorithm));
}

// ---- time, audience, lifetime ----

#[test]
fn expired_beyond_skew_is_refused() {
    let providers = [provider(base_config())];
    let late = claims_with(json!({"iat": NOW - 1000, "exp": NOW - SKEW - 1}));
    assert_eq!(check(&rs256(&late), &providers), Err(JwtError::Expired));
    let within_skew = claims_with(json!({"iat": NOW - 1000, "exp": NOW - SKEW}));
    assert!(check(&rs256(&within_skew), &providers).is_ok());
}

#[test]
fn not_yet_valid_nbf_and_future_iat_are_refused() {
    let providers = [provider(base_config())];
    let nbf = claims_with(json!({"nbf": NOW + SKEW + 1}));
    assert_eq!(check(&rs256(&nbf), &providers), Err(JwtError::NotYetValid));
    let iat = claims_with(json!({"iat": NOW + SKEW + 1}));
    assert_eq!(check(&rs256(&iat), &providers), Err(JwtError::NotYetValid));
    let nbf_within_skew = claims_with(json!({"nbf": NOW + SKEW}));
    assert!(check(&rs256(&nbf_within_skew), &providers).is_ok());
}

#[test]
fn audience_must_intersect_when_configured() {
    let providers = [provider(merged(base_config(), json!({"audiences": ["api", "admin"]})))];
    assert_eq!(check(&rs256(&claims_with(json!({"aud": "other"}))), &providers), Err(JwtError::WrongAudience));
    assert_eq!(check(&rs256(&claims()), &providers), Err(JwtError::WrongAudience));
    assert_eq!(check(&rs256(&claims_with(json!({"aud": [1, "x"]}))), &providers), Err(JwtError::WrongAudience));
    assert!(check(&rs256(&claims_with(json!({"aud": "api"}))), &providers).is_ok());
    assert!(check(&rs256(&claims_with(json!({"aud": ["x", "admin"]}))), &providers).is_ok());

    let any_audience = [provider(base_config())];
    assert!(check(&rs256(&claims_with(json!({"aud": "whatever"}))), &any_audience).is_ok());
}

#[test]
fn missing_expiration_is_refused_when_required() {
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let strict = [provider(base_config())];
    assert_eq!(check(&rs256(&no_exp), &strict), Err(JwtError::MissingExpiration));

    let lenient = [provider(merged(base_config(), json!({"require_expiration": false})))];
    assert_eq!(check(&rs256(&no_exp), &lenient).unwrap().expires_at, None);

    let bounded = [provider(merged(base_config(), json!({"require_expiration": false, "max_lifetime_seconds": 3600})))];
    assert_eq!(check(&rs256(&no_exp), &bounded), Err(JwtError::MissingExpiration));
}

#[test]
fn lifetime_is_bounded() {
    let providers = [provider(merged(base_config(), json!({"max_lifetime_seconds": 3600})))];
    let long = claims_with(json!({"iat": NOW, "exp": NOW + 3601}));
    assert_eq!(check(&rs256(&long), &providers), Err(JwtError::LifetimeTooLong));
    let mut long_without_iat = claims_with(json!({"exp": NOW + 3601}));
    long_without_iat.as_object_mut().unwrap().remove("iat");
    assert_eq!(check(&rs256(&long_without_iat), &providers), Err(JwtError::LifetimeTooLong));
    assert!(check(&rs256(&claims_with(json!({"iat": NOW, "exp": NOW + 3600}))), &providers).is_ok());
}

#[test]
fn time_claims_must_be_numbers() {
    let providers = [provider(base_config())];
    let absurd = [json!({"exp": 1e308}), json!({"exp": 18446744073709551615u64}), json!({"exp": 253402300800u64})];
    for bad in [json!({"exp": "soon"}), json!({"nbf": null}), json!({"iat": -5}), json!({"exp": [1]})]
        .into_iter()
        .chain(absurd)
    {
        assert_eq!(check(&rs256(&claims_with(bad.clone())), &providers), Err(JwtError::Malformed), "{bad}");
    }
    // NumericDate may be fractional.
    assert_eq!(
        check(&rs256(&claims_with(json!({"exp": (NOW + 600) as f64 + 0.5}))), &providers).unwrap().expires_at,
        Some(NOW + 600)
    );
}

// ---- issuer, keys, signature ----

#[test]
fn unknown_or_missing_issuer_is_refused() {
    let providers = [provider(base_config())];
    assert_eq!(
        check(&rs256(&claims_with(json!({"iss": "https://evil.example.com"}))), &providers),
        Err(JwtError::UnknownIssuer)
    );
    let mut no_iss = claims();
    no_iss.as_object_mut().unwrap().remove("iss");
    assert_eq!(check(&rs256(&no_iss), &providers), Err(JwtError::UnknownIssuer));
}

#[test]
fn provider_is_chosen_by_issuer() {
    let other = provider(merged(base_config(), json!({"name": "other", "issuer": "https://other.example.com"})));
    let providers = [other, provider(base_config())];
    assert_eq!(check(&rs256(&claims()), &providers).unwrap().provider, ProviderId(1));
}

#[test]
fn a_provider_not_bound_to_the_place_is_refused_before_any_signature_check() {
    let other = provider(merged(base_config(), json!({"name": "other", "issuer": "https://other.example.com"})));
    let providers = [other, provider(base_config())];
    let forged = replace_signature(&rs256(&claims()), |sig| sig[10] ^= 0x01);
    let only_other = |id: ProviderId| id == ProviderId(0);
    // A host that would accept any signature is never asked.
    let accepting = FixedBackend::new(Some(true));
    assert_eq!(
        verify(&forged, &providers, &FetchedKeys::default(), &only_other, &accepting, NOW, SKEW),
        Err(JwtError::WrongLocation)
    );
    assert!(accepting.calls.borrow().is_empty());
}

#[test]
fn flipped_signature_byte_fails() {
    use jsonwebtoken::Algorithm as A;
    let providers = [provider(base_config())];
    for (alg, kid) in
        [(A::RS256, "rsa-1"), (A::PS256, "rsa-1"), (A::ES256, "ec-1"), (A::EdDSA, "ed-1"), (A::HS256, "hs-1")]
    {
        let token = replace_signature(&mint(alg, Some(kid), &claims()), |sig| sig[10] ^= 0x01);
        assert_eq!(check(&token, &providers), Err(JwtError::BadSignature), "{alg:?}");
    }
}

#[test]
fn changed_payload_fails() {
    let providers = [provider(base_config())];
    let token = rs256(&claims());
    let forged_payload = URL_SAFE_NO_PAD.encode(claims_with(json!({"sub": "admin"})).to_string());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(check(&forged, &providers), Err(JwtError::BadSignature));
}

#[test]
fn unknown_kid_is_unknown_key() {
    let providers = [provider(base_config())];
    let token = mint(jsonwebtoken::Algorithm::RS256, Some("rotated-away"), &claims());
    assert_eq!(check(&token, &providers), Err(JwtError::UnknownKey { provider: ProviderId(0) }));
}

#[test]
fn token_without_kid_tries_the_keys_allowing_its_alg() {
    use jsonwebtoken::Algorithm as A;
    let providers = [provider(base_config())];
    for alg in [A::RS256, A::PS256, A::ES256, A::EdDSA, A::HS256] {
        assert!(check(&mint(alg, None, &claims()), &providers).is_ok(), "{alg:?}");
    }
}

#[test]
fn alg_none_and_unknown_algs_are_refused() {
    let providers = [provider(base_config())];
    let header = json!({"alg": "none", "kid": "rsa-1"});
    let unsigned =
        format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims().to_string()));
    assert_eq!(check(&unsigned, &providers), Err(JwtError::Malformed), "empty signature part");
    for alg in ["none", "None", "rs256", "ES512", "HS256 "] {
        let token = raw_token(&json!({"alg": alg}), &claims(), b"sig");
        assert_eq!(check(&token, &providers), Err(JwtError::UnsupportedAlgorithm), "{alg}");
    }
    assert_eq!(check(&raw_token(&json!({"typ": "JWT"}), &claims(), b"sig"), &providers), Err(JwtError::Malformed));
    assert_eq!(check(&raw_token(&json!({"alg": 256}), &claims(), b"sig"), &providers), Err(JwtError::Malformed));
}

#[test]
fn hs256_signed_with_the_rsa_public_key_never_verifies() {
    let public_key_as_secret = EncodingKey::from_secret(RSA_PUBLIC.as_bytes());
    let hs256 = jsonwebtoken::Algorithm::HS256;
    let all_keys = [provider(base_config())];
    let rsa_only =
        [provider(merged(base_config(), json!({"local_jwks": {"keys": [with_kid(fixture_jwk("rsa2048"), "rsa-1")]}})))];

    let with_kid = mint_with(hs256, Some("rsa-1"), &public_key_as_secret, &claims());
    assert_eq!(check(&with_kid, &all_keys), Err(JwtError::UnsupportedAlgorithm));
    assert_eq!(check(&with_kid, &rsa_only), Err(JwtError::UnsupportedAlgorithm));

    let without_kid = mint_with(hs256, None, &public_key_as_secret, &claims());
    assert_eq!(check(&without_kid, &rsa_only), Err(JwtError::UnsupportedAlgorithm));
    // Only the real HMAC key is tried, and it does not match.
    assert_eq!(check(&without_kid, &all_keys), Err(JwtError::BadSignature));

    // The same secret trick against a PEM-configured key.
    let pem_only = [provider(json!({"name": "idp", "issuer": ISSUER, "local_pem": RSA_PUBLIC}))];
    assert_eq!(check(&without_kid, &pem_only), Err(JwtError::UnsupportedAlgorithm));
}

#[test]
fn rs256_token_naming_an_hmac_key_is_refused() {
    let providers = [provider(base_config())];
    let token = mint(jsonwebtoken::Algorithm::RS256, Some("hs-1"), &claims());
    assert_eq!(check(&token, &providers), Err(JwtError::UnsupportedAlgorithm));
}

// ---- malformed input ----

#[test]
fn malformed_tokens_are_refused() {
    let providers = [provider(base_config())];
    let good = rs256(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let not_object = URL_SAFE_NO_PAD.encode("[1,2]");
    let not_json = URL_SAFE_NO_PAD.encode("{\"alg\":");
    let cases = [
        String::new(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.extra"),
        format!("{}.{}.", parts[0], parts[1]),
        format!(".{}.{}", parts[1], parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}.{}.{}*", parts[0], parts[1], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", not_object, parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], not_object, parts[2]),
        format!("{}.{}.{}", not_json, parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode("\"a string\""), parts[2]),
        "é.é.é".to_string(),
    ];
    for token in cases {
        assert_eq!(check(&token, &providers), Err(JwtError::Malformed), "{token}");
    }
}

#[test]
fn oversized_token_is_refused_before_decoding() {
    let providers = [provider(base_config())];
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(check(&huge, &providers), Err(JwtError::TooLarge));
    let padded = claims_with(json!({"pad": "x".repeat(MAX_TOKEN_BYTES)}));
    assert_eq!(check(&rs256(&padded), &providers), Err(JwtError::TooLarge));
}

#[test]
fn deeply_nested_payload_is_malformed() {
    let providers = [provider(base_config())];
    let nested = format!("{{\"iss\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "RS256"}).to_string()),
        URL_SAFE_NO_PAD.encode(nested),
        URL_SAFE_NO_PAD.encode(b"sig")
    );
    assert_eq!(check(&token, &providers), Err(JwtError::Malformed));
}

#[test]
fn crit_header_is_refused() {
    let providers = [provider(base_config())];
    let token = raw_token(&json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}), &claims(), b"sig");
    assert_eq!(check(&token, &providers), Err(JwtError::Malformed));
    let token = raw_token(&json!({"alg": "RS256", "kid": 7}), &claims(), b"sig");
    assert_eq!(check(&token, &providers), Err(JwtError::Malformed));
}

#[test]
fn only_an_object_with_each_member_once_is_a_header() {
    let providers = [provider(base_config())];
    let with_header = |header: &str| {
        format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims().to_string()), "c2ln")
    };
    for header in [
        r#"["RS256", "rsa-1"]"#,
        r#"{"alg": "RS256", "alg": "none", "kid": "rsa-1"}"#,
        r#"{"alg": "RS256", "kid": "rsa-1", "crit": null}"#,
        r#"{"alg": "RS256", "kid": null}"#,
        r#"{"kid": "rsa-1"}"#,
        r#"{"alg": "RS256", "kid": "rsa-1"} x"#,
    ] {
        assert_eq!(check(&with_header(header), &providers), Err(JwtError::Malformed), "{header}");
    }
    // Other members are ignored; an escaped `kid` is the same `kid` (the key is found: its signature fails).
    let header = r#" {"typ": "JWT", "x5t": ["a"], "alg": "RS256", "kid": "rsa\u002d1"}"#;
    assert_eq!(check(&with_header(header), &providers), Err(JwtError::BadSignature));
}

#[test]
fn no_input_panics() {
    let providers = [provider(base_config())];
    let good = mint(jsonwebtoken::Algorithm::ES256, Some("ec-1"), &claims());
    for end in 0..good.len() {
        let _ = check(&good[..end], &providers);
        let _ = check(&good[end..], &providers);
    }
    for sig_len in [0usize, 1, 63, 65, 128, 255, 256, 257, 512] {
        for (alg, kid) in
            [("RS256", "rsa-1"), ("PS256", "rsa-1"), ("ES256", "ec-1"), ("EdDSA", "ed-1"), ("HS256", "hs-1")]
        {
            let token = raw_token(&json!({"alg": alg, "kid": kid}), &claims(), &vec![0xff; sig_len]);
            assert!(check(&token, &providers).is_err());
        }
    }
}

// ---- claims out ----

#[test]
fn dotted_claims_arrays_and_objects_become_headers() {
    let config = merged(
        base_config(),
        json!({
            "principal_claim": "realm.user",
            "claim_to_headers": [
                {"claim": "realm.roles", "header": "X-Roles"},
                {"claim": "https://x.io/tenant", "header": "x-tenant"},
                {"claim": "level", "header": "x-level"},
                {"claim": "profile", "header": "x-profile"},
                {"claim": "absent.deeply", "header": "x-absent"},
                {"claim": "evil", "header": "x-evil"},
                {"claim": "huge", "header": "x-huge"},
            ]
        }),
    );
    let providers = [provider(config)];
    let token = rs256(&claims_with(json!({
        "realm": {"user": "bob", "roles": ["a", "b"]},
        "https://x.io/tenant": "acme",
        "level": 3,
        "profile": {"k": "v"},
        "evil": "ok\r\nx-auth-principal: admin",
        "huge": "x".repeat(4097),
    })));
    let verified = check(&token, &providers).unwrap();
    assert_eq!(verified.principal, "bob");
    assert_eq!(
        verified.headers,
        vec![
            ("x-roles".to_string(), "a,b".to_string()),
            ("x-tenant".to_string(), "acme".to_string()),
            ("x-level".to_string(), "3".to_string()),
            ("x-profile".to_string(), "{\"k\":\"v\"}".to_string()),
        ]
    );
}

#[test]
fn claim_at_prefers_the_whole_name() {
    let claims = json!({"a.b": 1, "a": {"b": 2, "c": {"d": 3}}, "x": 5});
    let claims = claims.as_object().unwrap();
    assert_eq!(claim_at(claims, "a.b"), Some(&json!(1)));
    assert_eq!(claim_at(claims, "a.c.d"), Some(&json!(3)));
    assert_eq!(claim_at(claims, "x.y"), None);
    assert_eq!(claim_at(claims, "a.missing"), None);
    assert_eq!(claim_at(claims, ""), None);
}

#[test]
fn principal_must_be_a_usable_string_or_number() {
    let providers = [provider(base_config())];
    assert_eq!(check(&rs256(&claims_with(json!({"sub": 12345}))), &providers).unwrap().principal, "12345");
    for bad in [json!(""), json!(null), json!(["alice"]), json!({"id": 1})] {
        assert_eq!(check(&rs256(&claims_with(json!({"sub": bad}))), &providers), Err(JwtError::MissingPrincipal));
    }
    assert_eq!(
        check(&rs256(&claims_with(json!({"sub": u64::MAX}))), &providers).unwrap().principal,
        u64::MAX.to_string()
    );
    // Floats: 2^64 and 2^64 + 1 would both read as 1.8446744073709552e19.
    for bad in
        [json!("a\nb"), json!(" admin"), json!("admin "), json!("\tadmin"), json!(1.5), json!(1.8446744073709552e19)]
    {
        assert_eq!(check(&rs256(&claims_with(json!({"sub": bad}))), &providers), Err(JwtError::InvalidPrincipal));
    }
    let mut no_sub = claims();
    no_sub.as_object_mut().unwrap().remove("sub");
    assert_eq!(check(&rs256(&no_sub), &providers), Err(JwtError::MissingPrincipal));
}

// ---- remote keys and the host backend ----

fn remote_provider() -> Provider {
    provider(json!({
        "name": "remote",
        "issuer": ISSUER,
        "remote_jwks": {"cluster": "idp", "authority": "idp.example.com", "path": "/jwks"}
    }))
}

/// The providers' keys after one fetch of the first one's remote JWKS answered `jwks`.
fn fetched(providers: &[Provider], jwks: Value) -> FetchedKeys {
    let shared = FakeShared::default();
    let mut fetched = FetchedKeys::new(providers);
    let remote = fetched.get_mut(ProviderId(0)).unwrap();
    assert!(remote.start(&shared, 1000, false).is_some());
    let response = FakeResponse::ok(jwks.to_string());
    assert!(matches!(
        remote.on_response(&shared, Step::Document, &response, 1000),
        crate::remote::Progress::Fetched { .. }
    ));
    fetched
}

#[test]
fn keys_not_loaded_until_the_remote_set_arrives() {
    let providers = [remote_provider()];
    let token = rs256(&claims());
    assert_eq!(check_with(&token, &providers, &PureRust), Err(JwtError::KeysNotLoaded { provider: ProviderId(0) }));
    let no_kid = mint(jsonwebtoken::Algorithm::RS256, None, &claims());
    assert_eq!(check_with(&no_kid, &providers, &PureRust), Err(JwtError::KeysNotLoaded { provider: ProviderId(0) }));

    let keys = fetched(&providers, json!({"keys": [with_kid(fixture_jwk("rsa2048"), "rsa-1")]}));
    let with_keys = |token: &str| verify(token, &providers, &keys, &|_| true, &PureRust, NOW, SKEW);
    assert!(with_keys(&token).is_ok());
    assert!(with_keys(&no_kid).is_ok());

    let rotated = mint(jsonwebtoken::Algorithm::RS256, Some("rsa-2"), &claims());
    assert_eq!(with_keys(&rotated), Err(JwtError::UnknownKey { provider: ProviderId(0) }));
    // A provider with only local keys never waits for anything.
    assert_eq!(check(&rotated, &[provider(base_config())]), Err(JwtError::UnknownKey { provider: ProviderId(0) }));
}

/// What the host was asked: algorithm, SPKI DER, signature.
type BackendCall = (Algorithm, Vec<u8>, Vec<u8>);

struct FixedBackend {
    answer: Option<bool>,
    calls: RefCell<Vec<BackendCall>>,
}

impl FixedBackend {
    fn new(answer: Option<bool>) -> Self {
        FixedBackend { answer, calls: RefCell::new(Vec::new()) }
    }
}

impl SignatureBackend for FixedBackend {
    fn verify(&self, alg: Algorithm, spki_der: &[u8], _signing_input: &[u8], signature: &[u8]) -> Option<bool> {
        self.calls.borrow_mut().push((alg, spki_der.to_vec(), signature.to_vec()));
        self.answer
    }
}

/// Counts the calls that reach the host, answering like it.
struct CountingBackend(RefCell<usize>, bool);

impl SignatureBackend for CountingBackend {
    fn verify(&self, _: Algorithm, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        *self.0.borrow_mut() += 1;
        Some(self.1)
    }
}

#[test]
fn signature_work_per_token_is_bounded() {
    // 64 RSA keys without `alg`: each may verify every RS* and PS*.
    let keys: Vec<Value> = (0..MAX_JWKS_KEYS).map(|i| with_kid(fixture_jwk("rsa2048"), &format!("k{i}"))).collect();
    let providers = [provider(merged(base_config(), json!({"local_jwks": {"keys": keys}})))];
    let forged_rs256 = replace_signature(&mint(jsonwebtoken::Algorithm::RS256, None, &claims()), |sig| sig[7] ^= 1);
    let host = CountingBackend(RefCell::new(0), false);
    assert_eq!(check_with(&forged_rs256, &providers, &host), Err(JwtError::BadSignature));
    assert_eq!(*host.0.borrow(), MAX_SIGNATURE_CHECKS, "host checks are bounded");

    // PS256 is pure Rust: one key is tried, so a token signed by the second kid-less key fails.
    let other = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode([9u8; 32])});
    let two_rsa =
        json!({"keys": [{"kty": "RSA", "n": keys_rsa_n_flipped(), "e": "AQAB"}, fixture_jwk("rsa2048"), other]});
    let providers = [provider(merged(base_config(), json!({"local_jwks": two_rsa})))];
    let ps256 = mint(jsonwebtoken::Algorithm::PS256, None, &claims());
    assert_eq!(check(&ps256, &providers), Err(JwtError::BadSignature));
    // With the signing key alone it verifies.
    assert!(check(&mint(jsonwebtoken::Algorithm::PS256, None, &claims()), &[provider(base_config())]).is_ok());
}

/// A valid 2048-bit modulus that is not the fixture key's (its last byte changed to another odd value).
fn keys_rsa_n_flipped() -> String {
    let n = fixture_jwk("rsa2048")["n"].as_str().unwrap().to_string();
    let mut bytes = URL_SAFE_NO_PAD.decode(&n).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x02;
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn host_backend_answer_is_authoritative_for_rs256_and_es256() {
    let providers = [provider(base_config())];
    let good_rs256 = rs256(&claims());
    let good_es256 = mint(jsonwebtoken::Algorithm::ES256, Some("ec-1"), &claims());

    let refusing = FixedBackend::new(Some(false));
    assert_eq!(check_with(&good_rs256, &providers, &refusing), Err(JwtError::BadSignature));
    assert_eq!(check_with(&good_es256, &providers, &refusing), Err(JwtError::BadSignature));

    let accepting = FixedBackend::new(Some(true));
    let forged = replace_signature(&good_rs256, |sig| sig[0] ^= 0xff);
    assert!(check_with(&forged, &providers, &accepting).is_ok());

    let calls = accepting.calls.borrow();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, Algorithm::RS256);
    assert_eq!(calls[0].1, pem_der(RSA_PUBLIC), "the host gets the key as SPKI DER");
}

#[test]
fn host_backend_gets_der_ecdsa_and_is_not_asked_for_other_algorithms() {
    use jsonwebtoken::Algorithm as A;
    let providers = [provider(base_config())];
    let recording = FixedBackend::new(None);
    for (alg, kid) in [(A::ES256, "ec-1"), (A::PS256, "rsa-1"), (A::EdDSA, "ed-1"), (A::HS256, "hs-1")] {
        assert!(check_with(&mint(alg, Some(kid), &claims()), &providers, &recording).is_ok(), "{alg:?}");
    }
    let calls = recording.calls.borrow();
    assert_eq!(calls.len(), 1, "only ES256 goes to the host");
    let (alg, spki_der, signature) = &calls[0];
    assert_eq!(*alg, Algorithm::ES256);
    assert_eq!(*spki_der, pem_der(EC_PUBLIC));
    assert_eq!(signature[0], 0x30);
    assert_eq!(usize::from(signature[1]) + 2, signature.len());
}

// ---- JWKS parsing ----

fn jwks_error(keys: Value) -> String {
    config_error(merged(base_config(), json!({"local_jwks": {"keys": keys}})))
}

#[test]
fn strict_jwks_errors_name_the_key_and_field() {
    let p = "jwt.providers[0].local_jwks";
    let rsa = fixture_jwk("rsa2048");
    let mut bad_n = rsa.clone();
    bad_n["n"] = json!("not base64!");
    assert_eq!(jwks_error(json!([rsa.clone(), bad_n])), format!("{p}.keys[1].n: invalid base64url"));
    assert_eq!(jwks_error(json!([{"kty": "XYZ"}])), format!("{p}.keys[0].kty: unsupported key type \"XYZ\""));
    assert_eq!(jwks_error(json!([{"n": "AQAB"}])), format!("{p}.keys[0].kty: missing"));
    assert_eq!(
        jwks_error(json!([fixture_jwk("rsa1024")])),
        format!("{p}.keys[0].n: RSA modulus must be at least 2048 bits")
    );
    let mut p521 = fixture_jwk("ec_p256");
    p521["crv"] = json!("P-521");
    assert_eq!(jwks_error(json!([p521])), format!("{p}.keys[0].crv: unsupported curve \"P-521\""));
    let mut short_p384 = fixture_jwk("ec_p256");
    short_p384["crv"] = json!("P-384");
    assert_eq!(jwks_error(json!([short_p384])), format!("{p}.keys[0].x: must be 48 bytes for P-384"));
    let mut short_x = fixture_jwk("ec_p256");
    short_x["x"] = json!("AAAA");
    assert_eq!(jwks_error(json!([short_x])), format!("{p}.keys[0].x: must be 32 bytes for P-256"));
    let mut off_curve = fixture_jwk("ec_p256");
    off_curve["y"] = off_curve["x"].clone();
    assert_eq!(jwks_error(json!([off_curve])), format!("{p}.keys[0]: x and y are not a point on P-256"));
    // P-384 points are checked here (the host verifies): off the curve, or a coordinate past p.
    for coordinate in ["x", "y"] {
        let mut off_curve = fixture_jwk("ec_p384");
        let mut bytes = URL_SAFE_NO_PAD.decode(off_curve[coordinate].as_str().unwrap()).unwrap();
        bytes[47] ^= 1;
        off_curve[coordinate] = json!(URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(jwks_error(json!([off_curve])), format!("{p}.keys[0]: x and y are not a point on P-384"));
        let mut past_p = fixture_jwk("ec_p384");
        past_p[coordinate] = json!(URL_SAFE_NO_PAD.encode([0xff; 48]));
        assert_eq!(jwks_error(json!([past_p])), format!("{p}.keys[0]: x and y are not a point on P-384"));
    }
    let p384 = KeySet::from_jwks(&json!({"keys": [fixture_jwk("ec_p384")]})).unwrap();
    assert!(p384.needs_host_crypto());
    assert_eq!(
        p384.keys()[0].spki_der(),
        Some(pem_der(EC_P384_PUBLIC).as_slice()),
        "the SPKI the host gets is the standard encoding"
    );
    let mut wrong_alg = rsa.clone();
    wrong_alg["alg"] = json!("ES256");
    assert_eq!(jwks_error(json!([wrong_alg])), format!("{p}.keys[0].alg: ES256 cannot be used with a RSA key"));
    let mut unknown_alg = rsa.clone();
    unknown_alg["alg"] = json!("RSA-OAEP");
    assert_eq!(jwks_error(json!([unknown_alg])), format!("{p}.keys[0].alg: unsupported algorithm \"RSA-OAEP\""));
    let mut private = rsa.clone();
    private["d"] = json!("AQAB");
    assert!(jwks_error(json!([private])).starts_with(&format!("{p}.keys[0].d: private key material")));
    assert_eq!(
        jwks_error(json!([{"kty": "oct", "k": URL_SAFE_NO_PAD.encode([7u8; 31])}])),
        format!("{p}.keys[0].k: must be at least 32 bytes")
    );
    assert_eq!(
        jwks_error(json!([{"kty": "oct", "alg": "HS512", "k": URL_SAFE_NO_PAD.encode([7u8; 48])}])),
        format!("{p}.keys[0].k: too short for HS512")
    );
    let mut bad_kid = rsa.clone();
    bad_kid["kid"] = json!(1);
    assert_eq!(jwks_error(json!([bad_kid])), format!("{p}.keys[0].kid: must be a string"));
    let mut bad_use = rsa.clone();
    bad_use["use"] = json!("signing");
    assert_eq!(jwks_error(json!([bad_use])), format!("{p}.keys[0].use: must be \"sig\" or \"enc\""));
    assert_eq!(jwks_error(json!(["key"])), format!("{p}.keys[0]: must be a JSON object"));
    assert_eq!(jwks_error(json!([])), format!("{p}.keys: no usable signing key"));
    let mut enc_only = rsa.clone();
    enc_only["use"] = json!("enc");
    assert_eq!(jwks_error(json!([enc_only])), format!("{p}.keys: no usable signing key"));
    assert_eq!(jwks_error(json!(vec![rsa; MAX_JWKS_KEYS + 1])), format!("{p}.keys: at most 64 keys"));
    assert_eq!(
        config_error(merged(base_config(), json!({"local_jwks": [1]}))),
        format!("{p}: must be a JWKS object with a \"keys\" array")
    );
}

#[test]
fn small_order_ed25519_keys_are_refused_at_load_and_fetch() {
    let identity = [1u8].iter().chain([0u8; 31].iter()).copied().collect::<Vec<u8>>();
    let order_8: [u8; 32] = [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
        0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
    ];
    for weak in [identity.as_slice(), &order_8, &[0u8; 32]] {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": URL_SAFE_NO_PAD.encode(weak)});
        let error = jwks_error(json!([jwk.clone()]));
        assert!(error.ends_with("keys[0].x: a small-order (weak) Ed25519 public key"), "{error}");
        let remote = json!({"keys": [jwk, fixture_jwk("ed25519")]}).to_string();
        assert_eq!(KeySet::from_remote_jwks(remote.as_bytes()).unwrap().len(), 1);
    }
}

#[test]
fn strict_jwks_accepts_padding_and_skips_encryption_keys() {
    let mut padded = fixture_jwk("ed25519");
    padded["x"] = json!(format!("{}=", padded["x"].as_str().unwrap()));
    let mut enc = fixture_jwk("rsa2048");
    enc["use"] = json!("enc");
    let set = KeySet::from_jwks(&json!({"keys": [padded, enc]})).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.keys()[0].algorithms(), &[Algorithm::EdDSA]);
}

#[test]
fn key_algorithm_bindings() {
    let set = KeySet::from_jwks(&all_local_keys()).unwrap();
    let algs: Vec<(Option<&str>, &[Algorithm])> = set.keys().iter().map(|key| (key.kid(), key.algorithms())).collect();
    use Algorithm::*;
    assert_eq!(
        algs,
        vec![
            (Some("rsa-1"), &[RS256, RS384, RS512, PS256, PS384, PS512][..]),
            (Some("ec-1"), &[ES256][..]),
            (Some("ec384-1"), &[ES384][..]),
            (Some("ed-1"), &[EdDSA][..]),
            (Some("hs-1"), &[HS256][..]),
        ]
    );
    let long_secret =
        KeySet::from_jwks(&json!({"keys": [{"kty": "oct", "k": URL_SAFE_NO_PAD.encode([1u8; 64])}]})).unwrap();
    assert_eq!(long_secret.keys()[0].algorithms(), &[HS256, HS384, HS512]);
    assert!(set.contains_kid("ec-1") && !set.contains_kid("nope"));
    assert_eq!(set.keys()[0].spki_der(), Some(pem_der(RSA_PUBLIC).as_slice()));
    assert_eq!(set.keys()[1].spki_der(), Some(pem_der(EC_PUBLIC).as_slice()));
    assert_eq!(set.keys()[3].spki_der(), None);
    let debug = format!("{set:?}");
    assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(HMAC_SECRET)) && !debug.contains("0123456789"));
}

#[test]
fn lenient_remote_jwks_skips_what_it_cannot_use() {
    let mut enc = with_kid(fixture_jwk("rsa2048"), "enc");
    enc["use"] = json!("enc");
    let mut p384 = fixture_jwk("ec_p256");
    p384["crv"] = json!("P-384"); // P-256 coordinates: not a P-384 key
    let mut ps_only = with_kid(fixture_jwk("rsa2048"), "ps");
    ps_only["alg"] = json!("PS256");
    let mut oaep = fixture_jwk("rsa2048");
    oaep["alg"] = json!("RSA-OAEP");
    let document = json!({"keys": [
        {"kty": "RSA", "n": "!!", "e": "AQAB"},
        enc, p384, oaep, hmac_jwk("secret"), fixture_jwk("rsa1024"), "junk", {"kty": "EC", "crv": "P-521"},
        with_kid(fixture_jwk("ec_p256"), "ec-1"), ps_only,
    ], "extra": true});
    let set = KeySet::from_remote_jwks(document.to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 2);
    assert!(
        set.contains_kid("ec-1") && set.contains_kid("ps") && !set.contains_kid("secret") && !set.contains_kid("enc")
    );

    assert!(KeySet::from_remote_jwks(b"not json").is_err());
    assert!(KeySet::from_remote_jwks(b"{\"keys\": {}}").is_err());
    assert!(KeySet::from_remote_jwks(b"[]").is_err());
    assert_eq!(
        KeySet::from_remote_jwks(b"{\"keys\": [{\"kty\": \"oct\", \"k\": \"AAAA\"}]}").unwrap_err(),
        "JWKS has no usable signing key"
    );

    let mut many: Vec<Value> = (0..MAX_JWKS_KEYS).map(|i| with_kid(fixture_jwk("ed25519"), &format!("k{i}"))).collect();
    many.push(with_kid(fixture_jwk("ed25519"), "beyond"));
    let bounded = KeySet::from_remote_jwks(json!({"keys": many}).to_string().as_bytes()).unwrap();
    assert_eq!(bounded.len(), MAX_JWKS_KEYS);
    assert!(!bounded.contains_kid("beyond"));
}

// ---- PEM ----

#[test]
fn pem_keys_verify_and_match_any_kid() {
    use jsonwebtoken::Algorithm as A;
    let pems = [
        (RSA_PUBLIC, A::RS256),
        (RSA_PUBLIC, A::PS384),
        (EC_PUBLIC, A::ES256),
        (EC_P384_PUBLIC, A::ES384),
        (ED_PUBLIC, A::EdDSA),
    ];
    for (pem, alg) in pems {
        let providers = [provider(json!({"name": "pem", "issuer": ISSUER, "local_pem": pem}))];
        assert!(check(&mint(alg, Some("some-kid"), &claims()), &providers).is_ok(), "{alg:?}");
        assert!(check(&mint(alg, None, &claims()), &providers).is_ok(), "{alg:?}");
        let forged = replace_signature(&mint(alg, Some("some-kid"), &claims()), |sig| sig[5] ^= 1);
        // A kid-less key that fails a token naming another kid: that key is unknown here.
        assert_eq!(check(&forged, &providers), Err(JwtError::UnknownKey { provider: ProviderId(0) }), "{alg:?}");
    }
}

#[test]
fn pem_with_kid_and_spki() {
    let set = KeySet::from_pem(EC_PUBLIC, Some("ec-pem".to_string())).unwrap();
    assert!(set.contains_kid("ec-pem"));
    assert_eq!(set.keys()[0].spki_der(), Some(pem_der(EC_PUBLIC).as_slice()));
}

#[test]
fn pem_errors_explain_what_to_use_instead() {
    let error = |pem: &str| {
        let error = KeySet::from_pem(pem, None).unwrap_err();
        format!("{}: {}", error.path_under("jwt.providers[0].local_pem"), error.message)
    };
    assert!(error(RSA_PRIVATE).contains("private keys must not be configured"));
    let pkcs1 = RSA_PUBLIC.replace("PUBLIC KEY", "RSA PUBLIC KEY");
    assert!(error(&pkcs1).contains("PKCS#1"));
    assert!(error("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").contains("certificates"));
    assert!(error(EC_P521_PUBLIC).ends_with("P-256 and P-384 are supported"));
    assert_eq!(
        error("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----"),
        "jwt.providers[0].local_pem: invalid base64 in PEM block 0"
    );
    assert_eq!(
        error("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
        "jwt.providers[0].local_pem: not a valid SubjectPublicKeyInfo"
    );
    assert_eq!(error(""), "jwt.providers[0].local_pem: must hold PEM blocks \"BEGIN PUBLIC KEY\"");
    let rsa_then_p521 = format!("{RSA_PUBLIC}{EC_P521_PUBLIC}");
    assert!(error(&rsa_then_p521).starts_with("jwt.providers[0].local_pem[1]: "), "{}", error(&rsa_then_p521));
    assert!(error(&format!("{RSA_PUBLIC}{RSA_PRIVATE}")).contains("private keys must not be configured"));
}

#[test]
fn several_pem_blocks_are_several_keys() {
    let set = KeySet::from_pem(&format!("{RSA_PUBLIC}\n{EC_PUBLIC}{ED_PUBLIC}"), None).unwrap();
    let algorithms: Vec<&[Algorithm]> = set.keys().iter().map(|k| k.algorithms()).collect();
    assert_eq!(algorithms.len(), 3);
    assert_eq!(algorithms[1], &[Algorithm::ES256]);
    assert_eq!(algorithms[2], &[Algorithm::EdDSA]);
}

#[test]
fn public_jwk_of_pem_keys_is_their_jwk() {
    let set = KeySet::from_pem(&format!("{RSA_PUBLIC}{EC_PUBLIC}{ED_PUBLIC}"), None).unwrap();
    for (key, fixture) in set.keys().iter().zip(["rsa2048", "ec_p256", "ed25519"]) {
        assert_eq!(Value::Object(key.public_jwk().unwrap()), fixture_jwk(fixture), "{fixture}");
    }
    let hmac = KeySet::from_jwks(&json!({"keys": [hmac_jwk("h")]})).unwrap();
    assert!(hmac.keys()[0].public_jwk().is_none(), "a secret has no public JWK");
}

// ---- provider configuration ----

#[test]
fn provider_config_errors_name_the_field() {
    let p = "jwt.providers[0]";
    assert_eq!(config_error(merged(base_config(), json!({"issuer": ""}))), format!("{p}.issuer: must not be empty"));
    assert_eq!(
        config_error(merged(base_config(), json!({"name": " "}))),
        format!("{p}.name: must be non-empty, without ':', control characters or surrounding spaces")
    );
    assert_eq!(
        config_error(merged(base_config(), json!({"audiences": ["a", ""]}))),
        format!("{p}.audiences[1]: must not be empty")
    );
    assert_eq!(
        config_error(json!({"name": "idp", "issuer": ISSUER})),
        format!("{p}: needs local_jwks, local_pem, remote_jwks, discovery or introspection")
    );
    let both =
        merged(remote_provider_config(), json!({"discovery": {"cluster": "idp", "authority": "idp.example.com"}}));
    assert_eq!(config_error(both), format!("{p}.discovery: cannot be combined with remote_jwks"));
    assert_eq!(
        config_error(merged(base_config(), json!({"max_lifetime_seconds": 0}))),
        format!("{p}.max_lifetime_seconds: must be greater than 0")
    );
    assert_eq!(
        config_error(merged(base_config(), json!({"principal_claim": ""}))),
        format!("{p}.principal_claim: must not be empty")
    );

    let mapping = |header: &str| merged(base_config(), json!({"claim_to_headers": [{"claim": "c", "header": header}]}));
    assert!(config_error(mapping("x roles")).starts_with(&format!("{p}.claim_to_headers[0].header: ")));
    assert!(config_error(mapping(":path")).starts_with(&format!("{p}.claim_to_headers[0].header: ")));
    assert!(config_error(mapping("x-roles\r\n")).starts_with(&format!("{p}.claim_to_headers[0].header: ")));
    assert!(config_error(mapping("Content-Length")).starts_with(&format!("{p}.claim_to_headers[0].header: ")));
    let duplicate = merged(
        base_config(),
        json!({"claim_to_headers": [{"claim": "a", "header": "x-a"}, {"claim": "b", "header": "X-A"}]}),
    );
    assert!(config_error(duplicate).starts_with(&format!("{p}.claim_to_headers[1].header: ")));
    let empty_claim = merged(base_config(), json!({"claim_to_headers": [{"claim": "", "header": "x-a"}]}));
    assert_eq!(config_error(empty_claim), format!("{p}.claim_to_headers[0].claim: must not be empty"));
}

fn remote_provider_config() -> Value {
    json!({
        "name": "remote",
        "issuer": ISSUER,
        "remote_jwks": {"cluster": "idp", "authority": "idp.example.com", "path": "/jwks"}
    })
}

#[test]
fn provider_config_defaults_and_header_lowercasing() {
    let compiled = provider(merged(base_config(), json!({"claim_to_headers": [{"claim": "c", "header": "X-Claim"}]})));
    assert!(compiled.require_expiration);
    assert_eq!(compiled.principal_claim, "sub");
    assert_eq!(compiled.claim_to_headers[0].header, "x-claim");
    assert_eq!(compiled.local_keys.len(), 5);
    assert!(compiled.fetch.is_none());
    assert!(FetchedKeys::new(&[remote_provider()]).awaited(ProviderId(0)));
    let unknown_field = merged(base_config(), json!({"issuer_url": "x"}));
    assert!(config_error(unknown_field).starts_with("jwt.providers[0].issuer_url: unknown field"));
}

#[test]
fn local_jwks_and_pem_together() {
    let compiled = provider(merged(base_config(), json!({"local_pem": EC_PUBLIC})));
    assert_eq!(compiled.local_keys.len(), 6);
}

// ---- error texts ----

#[test]
fn error_texts_are_fixed() {
    assert_eq!(JwtError::UnsupportedAlgorithm.description(), "algorithm not allowed");
    assert_eq!(JwtError::KeysNotLoaded { provider: ProviderId(3) }.description(), "signing keys not available yet");
    assert_eq!(JwtError::UnknownKey { provider: ProviderId(0) }.reason().label(), "jwt_unknown_key");
    assert_eq!(JwtError::MissingExpiration.reason().label(), "jwt_no_expiration");
    assert_eq!(JwtError::LifetimeTooLong.description(), "token lifetime too long");
    for name in ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "EdDSA"] {
        assert_eq!(Algorithm::from_name(name).map(Algorithm::name), Some(name));
    }
}

// Key encodings (src/jwt/encoding.rs): the one decoder of JWK members and PEM blocks,
// for verification keys and the token endpoint's signing key alike.

#[test]
fn jwk_members_are_base64url_with_or_without_their_padding() {
    use super::encoding::jwk_bytes;
    assert_eq!(jwk_bytes("AQAB"), Some(vec![1, 0, 1]));
    assert_eq!(jwk_bytes("AQ"), Some(vec![1]));
    assert_eq!(jwk_bytes("AQ=="), Some(vec![1]));
    assert_eq!(jwk_bytes("-_8"), Some(vec![0xfb, 0xff]));
    // Not base64url: the standard alphabet, padding past a quantum.
    assert_eq!(jwk_bytes("+/8"), None);
    assert_eq!(jwk_bytes("AQ==="), None);
}

#[test]
fn pem_blocks_are_read_by_label_whitespace_and_text_between_ignored() {
    use super::encoding::{only_pem_block, pem_blocks, PemError, PRIVATE_KEY, PUBLIC_KEY};
    let two = format!("comment\n{EC_PUBLIC}\nbetween\n{ED_PUBLIC}");
    let blocks = pem_blocks(&two, &PUBLIC_KEY, 2).unwrap();
    assert_eq!(blocks, vec![pem_der(EC_PUBLIC), pem_der(ED_PUBLIC)]);
    assert_eq!(pem_blocks(&two, &PUBLIC_KEY, 1), Err(PemError::TooMany));
    assert_eq!(pem_blocks(&two, &PRIVATE_KEY, 2), Ok(vec![]));
    let unended = EC_PUBLIC.replace("-----END PUBLIC KEY-----", "");
    assert_eq!(pem_blocks(&unended, &PUBLIC_KEY, 2), Err(PemError::NoEnd(0)));
    let bad = EC_PUBLIC.replacen("MF", "M!", 1);
    assert_eq!(pem_blocks(&bad, &PUBLIC_KEY, 2), Err(PemError::Base64(0)));

    assert_eq!(only_pem_block(&format!("  {ED_PRIVATE}\n"), &PRIVATE_KEY), Ok(pem_der(ED_PRIVATE)));
    assert_eq!(only_pem_block(&format!("x{ED_PRIVATE}"), &PRIVATE_KEY), Err(PemError::NotOne));
    assert_eq!(only_pem_block(&format!("{ED_PRIVATE}{ED_PRIVATE}"), &PRIVATE_KEY), Err(PemError::NotOne));
    assert_eq!(only_pem_block(ED_PUBLIC, &PRIVATE_KEY), Err(PemError::NotOne));
}
