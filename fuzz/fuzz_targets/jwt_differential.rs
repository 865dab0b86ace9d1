//! Differential: the filter's signature check against a second, independent
//! implementation (the `jsonwebtoken` crate, whose crypto is ring) and against
//! the host path (RS*/ES256 handed to a BoringSSL stand-in, ECDSA re-encoded as
//! DER), on the same bytes with the same keys.
//!
//! Input: one mode byte, then either a whole token (seeded with real signed tokens
//! of every algorithm, so mutations explore valid and invalid signatures), or
//! `header NUL payload` that the harness signs with the fixed key for its `alg`
//! (RS*/PS* included), then optionally flips one signature bit or, for ES256,
//! replaces `s` by `n - s` (the other valid signature of the same message).
//!
//! Only the signature verdict is compared: the key is the one the token's `kid`
//! names (or the only key of its algorithm's family), claims are not checked.
//! Where the whole `jwt::verify` got past the signature (a success or a claim
//! error) or failed on it, that verdict must agree too.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use p256::elliptic_curve::PrimeField;
use serde_json::Value;
use wasm_authn::jwt::{self, check_signature, Algorithm, JwtError, Key, PureRust};
use wasm_authn_fuzz::{
    b64, config, flip_signature_bit, public_jwk, signed_token, split_nul, RingBackend, SignOptions, HMAC_SECRET, NOW,
    SKEW,
};

/// The main provider's key named `kid`, or for a token without one the key of its family.
fn key_for(kid: Option<&str>, alg: Algorithm) -> Option<&'static Key> {
    let kid = match kid {
        Some(kid) => kid,
        None => match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return None, // two HMAC keys
            Algorithm::ES256 => "ec",
            Algorithm::EdDSA => "ed",
            _ => "rsa",
        },
    };
    config().jwt_providers[0].local_keys.keys().iter().find(|key| key.kid() == Some(kid))
}

/// jsonwebtoken's key for the same kid.
fn their_key(kid: &str) -> Option<jsonwebtoken::DecodingKey> {
    let jwk = |name: &str, field: &str| public_jwk(name)[field].as_str().unwrap().to_string();
    match kid {
        "hs" => Some(jsonwebtoken::DecodingKey::from_secret(HMAC_SECRET)),
        "rsa" => jsonwebtoken::DecodingKey::from_rsa_components(&jwk("rsa2048", "n"), &jwk("rsa2048", "e")).ok(),
        "ec" => jsonwebtoken::DecodingKey::from_ec_components(&jwk("ec_p256", "x"), &jwk("ec_p256", "y")).ok(),
        "ed" => jsonwebtoken::DecodingKey::from_ed_components(&jwk("ed25519", "x")).ok(),
        _ => None,
    }
}

/// `r || (n - s)`: for ECDSA, as valid as `r || s`.
fn negate_s(token: &str) -> Option<String> {
    let (input, signature) = token.rsplit_once('.')?;
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).ok()?;
    if bytes.len() != 64 {
        return None;
    }
    let s: [u8; 32] = bytes[32..].try_into().ok()?;
    let s = Option::<p256::Scalar>::from(p256::Scalar::from_repr(s.into()))?;
    bytes[32..].copy_from_slice(&(-s).to_repr());
    Some(format!("{input}.{}", b64(&bytes)))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let token = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let (header, payload) = split_nul(rest);
        let (token, _) = signed_token(header, payload, SignOptions { rsa: true, kidless_secret: false });
        match mode & 6 {
            2 => flip_signature_bit(&token, usize::from(mode >> 3) * 17).unwrap_or(token),
            4 => negate_s(&token).unwrap_or(token),
            _ => token,
        }
    };

    let parts: Vec<&str> = token.split('.').collect();
    let [header, _, signature] = parts[..] else { return };
    let Ok(header_bytes) = URL_SAFE_NO_PAD.decode(header) else { return };
    let Ok(Value::Object(header_json)) = serde_json::from_slice::<Value>(&header_bytes) else { return };
    let Some(alg) = header_json.get("alg").and_then(Value::as_str).and_then(Algorithm::from_name) else { return };
    let kid = match header_json.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return,
    };
    let Some(key) = key_for(kid, alg) else { return };
    let signing_input = &token[..token.len() - signature.len() - 1];
    let signature_bytes = URL_SAFE_NO_PAD.decode(signature).ok();

    let ours =
        signature_bytes.as_ref().is_some_and(|sig| check_signature(key, alg, signing_input.as_bytes(), sig, &PureRust));
    let host = signature_bytes
        .as_ref()
        .is_some_and(|sig| check_signature(key, alg, signing_input.as_bytes(), sig, &RingBackend));
    let their_alg: jsonwebtoken::Algorithm = alg.name().parse().unwrap();
    // A key of another family than `alg` is refused by both (jsonwebtoken 9.3.1 even panics,
    // `unreachable!`, verifying HS* with an RSA key given as components): not asked.
    let theirs = key.allows(alg)
        && their_key(key.kid().unwrap()).is_some_and(|their_key| {
            jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), &their_key, their_alg).unwrap_or(false)
        });
    assert_eq!(ours, theirs, "pure Rust says {ours}, jsonwebtoken says {theirs} ({alg:?}, kid {kid:?})");
    assert_eq!(ours, host, "pure Rust says {ours}, the host path says {host} ({alg:?})");

    // The whole verification agrees wherever it reached the signature of that very key.
    if kid.is_some() {
        match jwt::verify(
            &token,
            &config().jwt_providers,
            &jwt::FetchedKeys::default(),
            &|_| true,
            &PureRust,
            NOW,
            SKEW,
        ) {
            Ok(_)
            | Err(
                JwtError::Expired
                | JwtError::NotYetValid
                | JwtError::WrongAudience
                | JwtError::MissingExpiration
                | JwtError::LifetimeTooLong
                | JwtError::MissingPrincipal
                | JwtError::InvalidPrincipal,
            ) => assert!(ours, "verify() passed a signature check_signature refuses"),
            Err(JwtError::BadSignature) => assert!(!ours, "verify() refused a signature check_signature accepts"),
            Err(_) => {}
        }
    }
});
