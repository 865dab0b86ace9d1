use std::rc::Rc;

use super::*;
use crate::api_key::{ApiClient, ApiKeys, Clients};
use crate::digest::sha256;
use crate::testing::{FakeHost, FakeShared};

const MS: u64 = 1_000_000;
const NOW_S: u64 = 1_800_000_000;

fn bcrypt_hash(password: &str) -> PasswordHash {
    let hash = bcrypt::hash_with_salt(password, 4, [3; 16]).unwrap().format_for_version(bcrypt::Version::TwoB);
    PasswordHash::parse(&hash).unwrap()
}

fn users() -> BasicUsers {
    let mut users = BasicUsers::default();
    users.insert("alice".into(), bcrypt_hash("alice-pw"), Rc::default());
    users.insert("sam".into(), PasswordHash::Sha256(sha256(b"sam-pw")), Rc::default());
    users
}

fn api_keys() -> ApiKeys {
    let client =
        ApiClient { id: "client".into(), key_digest: sha256(b"key"), disabled: false, privileges: Rc::default() };
    ApiKeys { allow_basic: true, clients: Clients::of(vec![client]), ..ApiKeys::default() }
}

/// A host whose clock moves 75 ms at every reading: each bcrypt check "takes" 75 ms.
fn slow_host() -> FakeHost {
    let mut host = FakeHost::new(&FakeShared::default());
    host.tick_ns = 75 * MS;
    host
}

fn guard(max_failures: u32, budget_ms: u64) -> PasswordGuard {
    let limit = FailureLimit { max_failures, max_failures_per_name: 10 * max_failures, window_seconds: 60 };
    PasswordGuard::new(limit, budget_ms)
}

/// An attempt as `authenticate` makes it: throttled, else verified.
fn check(guard: &mut PasswordGuard, host: &FakeHost, user: &str, password: &str) -> Result<Principal, Refusal> {
    let attempt = Attempt { user, source: crate::request::Source::Known(None) };
    let users = users();
    let users = users.with_fetched(None, false);
    if let Some(refusal) = attempt.throttled(users, guard, host, NOW_S) {
        return Err(refusal);
    }
    verify(users, api_keys().directory(None), guard, host, &attempt, password, NOW_S)
}

#[test]
fn users_clients_and_unknown_names() {
    let host = slow_host();
    let mut guard = guard(10, 1000);
    assert_eq!(check(&mut guard, &host, "alice", "alice-pw").map(|p| p.method), Ok(AuthMethod::Basic));
    assert_eq!(check(&mut guard, &host, "sam", "sam-pw").map(|p| p.id), Ok("sam".to_string()));
    assert_eq!(check(&mut guard, &host, "client", "key").map(|p| p.method), Ok(AuthMethod::ApiKey));
    assert_eq!(check(&mut guard, &host, "alice", "nope"), Err(Refusal::Invalid(Reason::BasicInvalid)));
    assert_eq!(check(&mut guard, &host, "mallory", "alice-pw"), Err(Refusal::Invalid(Reason::BasicInvalid)));
}

#[test]
fn an_unknown_name_costs_a_bcrypt_check_like_a_known_one() {
    let host = slow_host();
    let mut guard = guard(10, 1000);
    let before = host.clock_reads.get();
    let _ = check(&mut guard, &host, "alice", "wrong");
    let known = host.clock_reads.get() - before;
    let _ = check(&mut guard, &host, "mallory", "wrong");
    let unknown = host.clock_reads.get() - before - known;
    assert_eq!((known, unknown), (2, 2), "both ran one timed bcrypt check");
    // The decoy never lets an unknown name in, even with the decoy user's password.
    assert_eq!(check(&mut guard, &host, "mallory", "alice-pw"), Err(Refusal::Invalid(Reason::BasicInvalid)));
}

#[test]
fn failures_per_name_are_limited_and_unknown_names_answer_alike() {
    let host = slow_host();
    let mut guard = guard(3, 1000);
    for name in ["alice", "mallory"] {
        for _ in 0..3 {
            assert_eq!(check(&mut guard, &host, name, "guess"), Err(Refusal::Invalid(Reason::BasicInvalid)));
            host.now_ns.set(host.now_ns.get() + 1000 * MS); // let the budget refill
        }
        let throttled = check(&mut guard, &host, name, "guess");
        assert!(
            matches!(throttled, Err(Refusal::TryLater { reason: Reason::BasicThrottled, retry_after_seconds: 60 })),
            "{name}: {throttled:?}"
        );
    }
    // Even the right password waits for the window; other users are not affected.
    assert!(matches!(check(&mut guard, &host, "alice", "alice-pw"), Err(Refusal::TryLater { .. })));
    assert!(check(&mut guard, &host, "sam", "sam-pw").is_ok());
}

#[test]
fn past_the_budget_a_slow_check_is_not_made() {
    let host = slow_host();
    let mut guard = guard(100, 100); // 100 ms of hashing per second
    assert_eq!(check(&mut guard, &host, "alice", "w1"), Err(Refusal::Invalid(Reason::BasicInvalid)));
    assert_eq!(check(&mut guard, &host, "alice", "w2"), Err(Refusal::Invalid(Reason::BasicInvalid)));
    let busy = check(&mut guard, &host, "alice", "alice-pw");
    assert!(matches!(busy, Err(Refusal::TryLater { reason: Reason::PasswordChecksBusy, .. })), "{busy:?}");
    // Fast hashes never wait for the budget.
    assert!(check(&mut guard, &host, "sam", "sam-pw").is_ok());
    host.now_ns.set(host.now_ns.get() + 2000 * MS);
    assert!(check(&mut guard, &host, "alice", "alice-pw").is_ok());
}

#[test]
fn the_decoy_is_the_costliest_bcrypt_hash() {
    let mut users = BasicUsers::default();
    let cheap = bcrypt_hash("a");
    let dear = PasswordHash::parse(&bcrypt::hash_with_salt("b", 6, [1; 16]).unwrap().to_string()).unwrap();
    users.insert("a".into(), cheap, Rc::default());
    users.insert("b".into(), dear, Rc::default());
    users.insert("c".into(), PasswordHash::Sha256(sha256(b"c")), Rc::default());
    assert_eq!(users.decoy.as_ref().and_then(PasswordHash::bcrypt_cost), Some(6));
    assert!(!users.insert("a".into(), PasswordHash::Sha256(sha256(b"x")), Rc::default()), "names are unique");
}

#[test]
fn fetched_users_answer_after_the_configured_ones_and_none_before_their_first_fetch() {
    let host = slow_host();
    let mut guard = guard(10, 1000);
    let configured = users();
    let mut fetched = BasicUsers::default();
    fetched.insert("remote".into(), PasswordHash::Sha256(sha256(b"remote-pw")), Rc::default());
    let mut attempt = |users: Users, user: &str, password: &str| {
        let attempt = Attempt { user, source: crate::request::Source::Known(None) };
        verify(users, api_keys().directory(None), &mut guard, &host, &attempt, password, NOW_S)
    };
    let after = configured.with_fetched(Some(&fetched), true);
    assert_eq!(attempt(after, "remote", "remote-pw").map(|p| p.id), Ok("remote".to_string()));
    assert_eq!(attempt(after, "sam", "sam-pw").map(|p| p.id), Ok("sam".to_string()));
    assert_eq!(attempt(after, "remote", "nope"), Err(Refusal::Invalid(Reason::BasicInvalid)));
    assert_eq!(attempt(after, "nobody", "x"), Err(Refusal::Invalid(Reason::BasicInvalid)));
    // Before the first fetch: configured users and clients answer, any other name waits.
    let before = configured.with_fetched(None, true);
    assert_eq!(attempt(before, "sam", "sam-pw").map(|p| p.id), Ok("sam".to_string()));
    assert_eq!(attempt(before, "client", "key").map(|p| p.method), Ok(AuthMethod::ApiKey));
    assert_eq!(attempt(before, "remote", "remote-pw"), Err(Refusal::NotFetched(StoreId::BasicUsers)));
}
