use serde_json::json;

use super::*;
use crate::pipeline::credential::ApiKeySource;
use crate::request::Source;
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
    let refused = verifier.authenticate(
        &config,
        &Fetched::new(&config),
        &basic("alice", "wrong"),
        Source::Known(None),
        &host,
        NOW_MS,
    );
    assert_eq!(
        refused,
        Err(NotVerified::Invalid { reason: Reason::BasicInvalid, message: INVALID_PASSWORD, bearer: false })
    );
    let hashed = host.clock_reads.get();
    assert_eq!(hashed, 2, "one timed bcrypt check");
    for _ in 0..5 {
        assert_eq!(
            verifier.authenticate(
                &config,
                &Fetched::new(&config),
                &basic("alice", "wrong"),
                Source::Known(None),
                &host,
                NOW_MS
            ),
            refused
        );
    }
    assert_eq!(host.clock_reads.get(), hashed, "no hash for a repeat");
    // The right password is checked (and then remembered).
    assert!(verifier
        .authenticate(&config, &Fetched::new(&config), &basic("alice", "right"), Source::Known(None), &host, NOW_MS)
        .is_ok());
    assert!(verifier
        .authenticate(&config, &Fetched::new(&config), &basic("alice", "right"), Source::Known(None), &host, NOW_MS)
        .is_ok());
    assert_eq!(host.clock_reads.get(), hashed + 2);
}

#[test]
fn a_remembered_failure_is_forgotten_after_the_cache_lifetime() {
    let config = config();
    let mut verifier = Verifier::new(&config);
    let host = FakeHost::new(&FakeShared::default());
    let _ = verifier.authenticate(
        &config,
        &Fetched::new(&config),
        &basic("alice", "wrong"),
        Source::Known(None),
        &host,
        NOW_MS,
    );
    let later = NOW_MS + (config.cache.ttl_seconds + 1) * 1000;
    let _ = verifier.authenticate(
        &config,
        &Fetched::new(&config),
        &basic("alice", "wrong"),
        Source::Known(None),
        &host,
        later,
    );
    assert_eq!(host.clock_reads.get(), 4, "checked again once forgotten");
}

/// Issue 18: API keys are not remembered (a lookup verifies them), and cheap Basic checks
/// are remembered only while there is room: a population of either, cycling through more
/// credentials than the cache holds, never evicts a remembered bcrypt check.
#[test]
fn cycling_cheap_credentials_never_evict_a_slow_one() {
    let hash = bcrypt::hash_with_salt("right", 4, [5; 16]).unwrap().format_for_version(bcrypt::Version::TwoB);
    let sha = |i: usize| {
        format!("sha256:{}", crate::digest::sha256(format!("key-{i}").as_bytes()).map(|b| format!("{b:02x}")).concat())
    };
    let users: String = (0..20).map(|i| format!("user-{i}:{}\n", sha(i))).collect();
    let clients: String = (0..20).map(|i| format!("client-{i}:{}\n", sha(i))).collect();
    let config = json!({"cache": {"max_entries": 3}, "basic": {"users": [{"name": "alice", "password_hash": hash}],
        "htpasswd": users}, "api_keys": {"clients_lines": clients}});
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let mut verifier = Verifier::new(&config);
    let host = FakeHost::new(&FakeShared::default());
    assert!(verifier
        .authenticate(&config, &Fetched::new(&config), &basic("alice", "right"), Source::Known(None), &host, NOW_MS)
        .is_ok());
    let hashed = host.clock_reads.get();
    assert_eq!(hashed, 2, "one timed bcrypt check");
    for round in 0..3 {
        for i in 0..20 {
            let key = Credential::ApiKey { key: format!("key-{i}"), source: ApiKeySource::Header("x-api-key".into()) };
            let principal = verifier
                .authenticate(&config, &Fetched::new(&config), &key, Source::Known(None), &host, NOW_MS)
                .map(|p| p.id.clone());
            assert_eq!(principal, Ok(format!("client-{i}")), "round {round}");
            let user = verifier.authenticate(
                &config,
                &Fetched::new(&config),
                &basic(&format!("user-{i}"), &format!("key-{i}")),
                Source::Known(None),
                &host,
                NOW_MS,
            );
            assert_eq!(user.map(|p| p.id.clone()), Ok(format!("user-{i}")));
            let pair = basic(&format!("client-{i}"), &format!("key-{i}"));
            assert!(verifier
                .authenticate(&config, &Fetched::new(&config), &pair, Source::Known(None), &host, NOW_MS)
                .is_ok());
        }
        let unknown = Credential::ApiKey { key: "key-99".into(), source: ApiKeySource::Header("x-api-key".into()) };
        assert!(matches!(
            verifier.authenticate(&config, &Fetched::new(&config), &unknown, Source::Known(None), &host, NOW_MS),
            Err(NotVerified::Invalid { .. })
        ));
    }
    assert!(verifier
        .authenticate(&config, &Fetched::new(&config), &basic("alice", "right"), Source::Known(None), &host, NOW_MS)
        .is_ok());
    assert_eq!(host.clock_reads.get(), hashed, "still remembered: no second bcrypt check");
}

/// Issue 17.11: one source's guessing throttles that source only, and a throttled source
/// gets 429 for the right password too, remembered as verified or not.
#[test]
fn a_throttled_source_gets_429_even_for_a_remembered_right_password() {
    let limited = json!({"basic": {
        "users": [{"name": "alice", "password_hash": "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"}],
        "failure_limit": {"max_failures": 3, "max_failures_per_name": 6}
    }});
    let config = Config::from_json(limited.to_string().as_bytes()).unwrap();
    let mut verifier = Verifier::new(&config);
    let host = FakeHost::new(&FakeShared::default());
    let (owner, guesser) = (Some("198.51.100.1".parse().unwrap()), Some("192.0.2.7".parse().unwrap()));
    let mut attempt = |password: &str, source| {
        verifier.authenticate(
            &config,
            &Fetched::new(&config),
            &basic("alice", password),
            Source::Known(source),
            &host,
            NOW_MS,
        )
    };
    assert!(attempt("secret", owner).is_ok(), "verified, and remembered");
    for guess in ["a", "b", "c"] {
        assert!(matches!(attempt(guess, guesser), Err(NotVerified::Invalid { .. })));
    }
    let throttled = NotVerified::TryLater { reason: Reason::BasicThrottled, retry_after_seconds: 60 };
    assert_eq!(attempt("secret", guesser), Err(throttled.clone()), "no oracle");
    assert_eq!(attempt("d", guesser), Err(throttled.clone()));
    assert!(attempt("secret", owner).is_ok(), "the owner elsewhere is not throttled");
    // Three more sources guessing reach the name's ceiling: everyone waits, the owner too.
    for (i, guess) in ["e", "f", "g"].iter().enumerate() {
        let source = Some(format!("203.0.113.{i}").parse().unwrap());
        assert!(matches!(attempt(guess, source), Err(NotVerified::Invalid { .. })));
    }
    assert_eq!(attempt("secret", owner), Err(throttled));
}

// ---- keypairs ----

mod keypairs {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::{json, Value};

    use super::*;
    use crate::principal::AuthMethod;

    const EC_PRIVATE: &str = include_str!("../../../tests/keys/ec_p256_private.pem");
    const EC_PUBLIC: &str = include_str!("../../../tests/keys/ec_p256_public.pem");
    const RSA_PRIVATE: &str = include_str!("../../../tests/keys/rsa2048_private.pem");
    const RSA_PUBLIC: &str = include_str!("../../../tests/keys/rsa2048_public.pem");
    const NOW: u64 = NOW_MS / 1000;

    fn config(one_time: bool) -> Config {
        let config = json!({"keypairs": [
            {"id": "engine-1", "public_key": EC_PUBLIC, "max_lifetime_seconds": 30, "one_time": one_time,
             "scopes": ["backend"]},
            {"id": "engine-2", "public_key": RSA_PUBLIC},
        ]});
        Config::from_json(config.to_string().as_bytes()).unwrap()
    }

    fn sign(alg: Algorithm, claims: Value) -> String {
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        };
        encode(&Header::new(alg), &claims, &key).unwrap()
    }

    /// As thirdweb's clients sign them: `iss` is the PEM text, 15 seconds to live.
    fn thirdweb(iss: &str) -> Value {
        json!({"iss": iss, "iat": NOW, "exp": NOW + 15, "jti": "a1"})
    }

    fn check(config: &Config, token: String, host: &FakeHost) -> Result<Rc<Principal>, NotVerified> {
        Verifier::new(config).authenticate(
            config,
            &Fetched::new(config),
            &Credential::bearer(token),
            Source::Known(None),
            host,
            NOW_MS,
        )
    }

    fn refused(result: Result<Rc<Principal>, NotVerified>) -> Reason {
        match result {
            Err(NotVerified::Invalid { reason, bearer: true, .. }) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_issuer_is_the_pem_text_however_its_lines_end_or_the_id() {
        let config = config(false);
        let host = FakeHost::new(&FakeShared::default());
        let crlf = EC_PUBLIC.replace('\n', "\r\n");
        for iss in [EC_PUBLIC.to_string(), EC_PUBLIC.trim().to_string(), format!("  {crlf}\n"), "engine-1".into()] {
            let principal = check(&config, sign(Algorithm::ES256, thirdweb(&iss)), &host).unwrap();
            assert_eq!((principal.id.as_str(), principal.method), ("engine-1", AuthMethod::Keypair));
            assert_eq!(principal.provider, None, "no x-auth-provider for keypairs");
            assert_eq!(principal.scopes, vec!["backend"], "its configuration's, not its claims'");
        }
        // Another keypair's PEM (whose key cannot take ES256), a forged signature, a mangled PEM.
        let other = sign(Algorithm::ES256, thirdweb(RSA_PUBLIC));
        assert_eq!(refused(check(&config, other, &host)), Reason::JwtAlgorithm);
        let mut forged = sign(Algorithm::ES256, thirdweb(EC_PUBLIC));
        // The last character but one: every bit of it is the signature's (the last one's low bits are padding).
        let at = forged.len() - 2;
        let other = if &forged[at..at + 1] == "A" { "B" } else { "A" };
        forged.replace_range(at..at + 1, other);
        assert_eq!(refused(check(&config, forged, &host)), Reason::JwtBadSignature);
        let mangled = EC_PUBLIC.replacen('A', "B", 1);
        assert_eq!(
            refused(check(&config, sign(Algorithm::ES256, thirdweb(&mangled)), &host)),
            Reason::JwtUnknownIssuer
        );
        // RSA keys default to RS256 and PS256.
        for alg in [Algorithm::RS256, Algorithm::PS256] {
            let principal = check(&config, sign(alg, thirdweb(RSA_PUBLIC)), &host).unwrap();
            assert_eq!(principal.id, "engine-2");
        }
        let rs384 = sign(Algorithm::RS384, thirdweb(RSA_PUBLIC));
        assert_eq!(refused(check(&config, rs384, &host)), Reason::JwtAlgorithm);
    }

    #[test]
    fn lifetimes_are_short_and_exp_is_required() {
        let config = config(false);
        let host = FakeHost::new(&FakeShared::default());
        let token = |claims: Value| sign(Algorithm::ES256, claims);
        let ok = json!({"iss": "engine-1", "iat": NOW, "exp": NOW + 30});
        assert!(check(&config, token(ok), &host).is_ok());
        let long = json!({"iss": "engine-1", "iat": NOW, "exp": NOW + 31});
        assert_eq!(refused(check(&config, token(long), &host)), Reason::JwtLifetime);
        // Without iat, the lifetime counts from now.
        let no_iat = json!({"iss": "engine-1", "exp": NOW + 31});
        assert_eq!(refused(check(&config, token(no_iat), &host)), Reason::JwtLifetime);
        let backdated = json!({"iss": "engine-1", "iat": NOW - 100, "exp": NOW + 10});
        assert_eq!(refused(check(&config, token(backdated), &host)), Reason::JwtLifetime);
        let no_exp = json!({"iss": "engine-1", "iat": NOW});
        assert_eq!(refused(check(&config, token(no_exp), &host)), Reason::JwtNoExpiration);
        // The default skew (60 s) lets a just-expired token pass, as for providers.
        let expired = json!({"iss": "engine-1", "iat": NOW - 90, "exp": NOW - 61});
        assert_eq!(refused(check(&config, token(expired), &host)), Reason::JwtExpired);
        // The default lifetime is 60 s.
        let engine_2 = json!({"iss": "engine-2", "iat": NOW, "exp": NOW + 61});
        assert_eq!(refused(check(&config, sign(Algorithm::RS256, engine_2), &host)), Reason::JwtLifetime);
    }

    #[test]
    fn a_one_time_token_is_accepted_once_on_every_worker() {
        let config = config(true);
        let envoy = FakeShared::default();
        let (worker_1, worker_2) = (FakeHost::new(&envoy), FakeHost::new(&envoy));
        let token = sign(Algorithm::ES256, thirdweb("engine-1"));
        assert!(check(&config, token.clone(), &worker_1).is_ok());
        assert_eq!(refused(check(&config, token.clone(), &worker_2)), Reason::TokenReplayed);
        // Not even from the VM that accepted it: one-time tokens are never remembered as verified.
        let mut verifier = Verifier::new(&config);
        let fresh = sign(Algorithm::ES256, json!({"iss": "engine-1", "iat": NOW, "exp": NOW + 15, "jti": "a2"}));
        assert!(verifier
            .authenticate(
                &config,
                &Fetched::new(&config),
                &Credential::bearer(fresh.clone()),
                Source::Known(None),
                &worker_1,
                NOW_MS
            )
            .is_ok());
        let again = verifier.authenticate(
            &config,
            &Fetched::new(&config),
            &Credential::bearer(fresh),
            Source::Known(None),
            &worker_1,
            NOW_MS,
        );
        assert_eq!(refused(again), Reason::TokenReplayed);
        let no_jti = sign(Algorithm::ES256, json!({"iss": "engine-1", "iat": NOW, "exp": NOW + 15}));
        assert_eq!(refused(check(&config, no_jti, &worker_1)), Reason::JwtNoJti);
        // Its id is forgotten once it has expired (and the skew with it): the table stays bounded.
        let later = NOW_MS + (15 + config.clock_skew_seconds + 2) * 1000;
        let reused = sign(
            Algorithm::ES256,
            json!({"iss": "engine-1", "iat": later / 1000, "exp": later / 1000 + 15, "jti": "a1"}),
        );
        assert!(Verifier::new(&config)
            .authenticate(
                &config,
                &Fetched::new(&config),
                &Credential::bearer(reused),
                Source::Known(None),
                &worker_2,
                later
            )
            .is_ok());
    }

    #[test]
    fn keypair_configuration_errors_name_the_field() {
        let error = |keypair: Value| {
            let config = json!({"keypairs": [keypair]});
            Config::from_json(config.to_string().as_bytes()).unwrap_err().to_string()
        };
        let message = error(json!({"id": "k", "public_key": EC_PUBLIC, "algorithms": ["RS256"]}));
        assert!(message.starts_with("keypairs[0].algorithms[0]: does not fit"), "{message}");
        let message = error(json!({"id": "k", "public_key": EC_PUBLIC, "max_lifetime_seconds": 3601}));
        assert!(message.starts_with("keypairs[0].max_lifetime_seconds:"), "{message}");
        let message = error(json!({"id": "k", "public_key": format!("{EC_PUBLIC}{RSA_PUBLIC}")}));
        assert!(message.starts_with("keypairs[0].public_key: must be exactly one"), "{message}");
        let message = error(json!({"id": "k", "public_key": EC_PRIVATE}));
        assert!(message.starts_with("keypairs[0].public_key:") && !message.contains("MIG"), "{message}");
        // The same key twice, or a keypair named as a provider's issuer.
        let twice = json!({"keypairs": [{"id": "a", "public_key": EC_PUBLIC}, {"id": "b", "public_key": EC_PUBLIC}]});
        let message = Config::from_json(twice.to_string().as_bytes()).unwrap_err().to_string();
        assert!(message.starts_with("keypairs[1].public_key:"), "{message}");
        let clash = json!({"keypairs": [{"id": "corp", "public_key": EC_PUBLIC}],
                           "jwt": {"providers": [{"name": "p", "issuer": "corp", "local_pem": RSA_PUBLIC}]}});
        let message = Config::from_json(clash.to_string().as_bytes()).unwrap_err().to_string();
        assert!(message.starts_with("keypairs[0].id:"), "{message}");
    }
}
