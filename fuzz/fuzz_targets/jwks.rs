//! JWKS documents: `KeySet::from_remote_jwks` (a fetched document: lenient) and
//! `KeySet::from_jwks` (the configuration's `local_jwks`: strict), on any bytes.
//!
//! Properties: a key set holds 1 to MAX_JWKS_KEYS keys, each bound to at least one
//! algorithm of one family; a fetched JWKS never yields a secret (HS*) key; every
//! RSA and EC key's SubjectPublicKeyInfo (what Envoy's BoringSSL gets) reads back as
//! a PEM key of the same family; where the strict parser accepts a document without
//! secrets, the lenient one reads the very same keys (kids and algorithms).
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wasm_authn::jwt::{Algorithm, Key, KeySet, MAX_JWKS_KEYS};

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

fn family(alg: Algorithm) -> u8 {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => 0,
        Algorithm::ES256 => 2,
        Algorithm::EdDSA => 3,
        _ => 1,
    }
}

fn check_set(set: &KeySet) {
    assert!(!set.is_empty() && set.len() <= MAX_JWKS_KEYS);
    for key in set.keys() {
        let algorithms = key.algorithms();
        assert!(!algorithms.is_empty());
        assert!(algorithms.iter().all(|a| family(*a) == family(algorithms[0])), "{key:?}");
        if let Some(spki) = key.spki_der() {
            let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(spki));
            let again = KeySet::from_pem(&pem, None).expect("a key's own SPKI reads back");
            let again: &Key = &again.keys()[0];
            assert!(algorithms.iter().all(|a| again.allows(*a)), "{key:?} read back as {again:?}");
            assert!(again.algorithms().iter().all(|a| family(*a) == family(algorithms[0])));
        } else {
            assert!(!algorithms.iter().any(|a| RSA.contains(a) || *a == Algorithm::ES256), "{key:?}");
        }
    }
}

fn summary(set: &KeySet) -> Vec<(Option<String>, Vec<Algorithm>)> {
    set.keys().iter().map(|key| (key.kid().map(str::to_string), key.algorithms().to_vec())).collect()
}

fuzz_target!(|data: &[u8]| {
    let remote = KeySet::from_remote_jwks(data);
    if let Ok(set) = &remote {
        check_set(set);
        assert!(!set.keys().iter().any(|key| key.algorithms().iter().any(|a| HMAC.contains(a))), "a fetched secret");
    }
    let Ok(document) = serde_json::from_slice::<Value>(data) else {
        assert!(remote.is_err());
        return;
    };
    let Ok(strict) = KeySet::from_jwks(&document) else { return };
    check_set(&strict);
    let secrets = strict.keys().iter().any(|key| key.algorithms().iter().any(|a| HMAC.contains(a)));
    if !secrets {
        let remote = remote.as_ref().expect("the strict parser's keys are readable leniently too");
        assert_eq!(summary(remote), summary(&strict));
    }
});
