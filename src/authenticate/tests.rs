use serde_json::json;

use super::*;
use crate::testing::{FakeHost, FakeShared};

const NOW_MS: u64 = 1_800_000_000_000;

fn config() -> Config {
    let hash = bcrypt::hash_with_salt("right", 4, [5; 16]).unwrap().format_for_version(bcrypt::Version::TwoB);
    let config = json!({"basic": {"users": [{"name": "alice", "password_hash": hash}]}});
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

fn basic(user: &str, password: &str) -> Credential {
    Credential::Basic { user: user.into(), password: password.into() }
}

#[test]
fn a_repeated_wrong_password_costs_a_lookup_not_a_hash() {
    let config = config();
    let mut verifier = Verifier::new(&config);
    let host = FakeHost::new(&FakeShared::default());
    let refused = verifier.authenticate(&config, &basic("alice", "wrong"), &host, NOW_MS);
    assert_eq!(
        refused,
        Err(NotVerified::Invalid { reason: Reason::BasicInvalid, message: INVALID_PASSWORD, bearer: false })
    );
    let hashed = host.clock_reads.get();
    assert_eq!(hashed, 2, "one timed bcrypt check");
    for _ in 0..5 {
        assert_eq!(verifier.authenticate(&config, &basic("alice", "wrong"), &host, NOW_MS), refused);
    }
    assert_eq!(host.clock_reads.get(), hashed, "no hash for a repeat");
    // The right password is checked (and then remembered).
    assert!(verifier.authenticate(&config, &basic("alice", "right"), &host, NOW_MS).is_ok());
    assert!(verifier.authenticate(&config, &basic("alice", "right"), &host, NOW_MS).is_ok());
    assert_eq!(host.clock_reads.get(), hashed + 2);
}

#[test]
fn a_remembered_failure_is_forgotten_after_the_cache_lifetime() {
    let config = config();
    let mut verifier = Verifier::new(&config);
    let host = FakeHost::new(&FakeShared::default());
    let _ = verifier.authenticate(&config, &basic("alice", "wrong"), &host, NOW_MS);
    let later = NOW_MS + (config.cache.ttl_seconds + 1) * 1000;
    let _ = verifier.authenticate(&config, &basic("alice", "wrong"), &host, later);
    assert_eq!(host.clock_reads.get(), 4, "checked again once forgotten");
}
