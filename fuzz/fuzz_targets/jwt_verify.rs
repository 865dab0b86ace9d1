//! `jwt::verify`: the compact JWS parser and the whole verification of a token
//! (provider by `iss`, keys by `kid` and algorithm, signature, claims) against a
//! fixed configuration holding RSA, EC P-256, Ed25519 and HMAC keys.
//!
//! Input: one mode byte, then either a whole token (mutated real tokens: the
//! parser), or `header NUL payload` that the harness encodes and signs with the
//! fixed key for the header's `alg` (HS*, ES256, EdDSA: the claim checks and the
//! key selection, with signatures that hold), possibly with one signature bit flipped.
//!
//! Properties: the host path (RS*/ES256 through a BoringSSL stand-in, ECDSA as
//! DER) and the pure-Rust path give the same answer; a token that verifies is no
//! longer than MAX_TOKEN_BYTES, verifies under no other keys, has a flipped bit
//! nowhere in its signature, names its provider's issuer, carries a principal
//! that is a safe header value, and its `exp`, `nbf`, `iat` and audience hold at
//! the verification time; the strict provider's policy holds for its tokens.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wasm_authn::jwt::{self, PureRust, VerifiedToken, MAX_TOKEN_BYTES};
use wasm_authn_fuzz::{
    config, fake_host, flip_signature_bit, signed_token, split_nul, wrong_keys_config, RingBackend, SignOptions,
    WithBackend, NOW, SKEW, STRICT_ISSUER,
};

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn number(claims: &Value, name: &str) -> Option<f64> {
    claims.get(name).map(|v| v.as_f64().expect("a numeric date"))
}

fn check_verified(token: &str, verified: &VerifiedToken) {
    assert!(token.len() <= MAX_TOKEN_BYTES);
    let providers = &config().jwt_providers;
    let provider = &providers[verified.provider.0];
    let claims = claims_of(token);
    assert_eq!(claims["iss"].as_str(), Some(provider.issuer.as_str()));
    let principal = &verified.principal;
    assert!(!principal.is_empty() && principal.trim() == principal);
    assert!(!principal.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f), "{principal:?}");
    let now = NOW as f64;
    let skew = SKEW as f64;
    if let Some(exp) = number(&claims, "exp") {
        assert!(now <= exp.floor() + skew, "expired: {claims}");
        assert_eq!(verified.expires_at, Some(exp as u64));
    } else {
        assert!(!provider.require_expiration && provider.max_lifetime_seconds.is_none());
    }
    for name in ["nbf", "iat"] {
        if let Some(time) = number(&claims, name) {
            assert!(time.floor() <= now + skew, "not yet valid: {claims}");
        }
    }
    if !provider.audiences.is_empty() {
        let aud = &claims["aud"];
        let listed = |a: &Value| a.as_str().is_some_and(|a| provider.audiences.iter().any(|p| p == a));
        assert!(listed(aud) || aud.as_array().is_some_and(|all| all.iter().any(listed)), "audience: {claims}");
    }
    if provider.issuer == STRICT_ISSUER {
        let (exp, iat) = (number(&claims, "exp").unwrap(), number(&claims, "iat").unwrap_or(now));
        assert!(exp.floor() - iat.floor() <= 3600.0, "lifetime: {claims}");
        let email = &claims["email"];
        assert!(email.as_str() == Some(principal.as_str()) || (email.is_number() && email.to_string() == *principal));
    }
    // Under other keys (same issuers, kids and policies) it never verifies.
    let other = jwt::verify(
        token,
        &wrong_keys_config().jwt_providers,
        &jwt::FetchedKeys::default(),
        &|_| true,
        &PureRust,
        NOW,
        SKEW,
    );
    assert!(other.is_err(), "verified under other keys too: {other:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (token, flipped) = if mode & 1 == 0 {
        (String::from_utf8_lossy(rest).into_owned(), false)
    } else {
        let (header, payload) = split_nul(rest);
        let options = SignOptions { rsa: false, kidless_secret: mode & 2 != 0 };
        let (token, _) = signed_token(header, payload, options);
        match (mode & 4 != 0).then(|| flip_signature_bit(&token, usize::from(mode >> 3) * 17)).flatten() {
            Some(flipped) => (flipped, true),
            None => (token, false),
        }
    };

    let providers = &config().jwt_providers;
    let pure = jwt::verify(&token, providers, &jwt::FetchedKeys::default(), &|_| true, &PureRust, NOW, SKEW);
    let host = fake_host();
    let with_host = jwt::verify(
        &token,
        providers,
        &jwt::FetchedKeys::default(),
        &|_| true,
        &WithBackend { host: &host, backend: RingBackend },
        NOW,
        SKEW,
    );
    assert_eq!(pure, with_host, "pure Rust and the host path disagree");

    if let Ok(verified) = &pure {
        assert!(!flipped, "a signature with a flipped bit verified");
        check_verified(&token, verified);
    }
});
