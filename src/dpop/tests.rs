use super::*;

#[test]
fn the_target_uri_is_compared_normalized_and_without_query() {
    let n = |uri: &str| normalized_uri(uri);
    assert_eq!(n("HTTPS://API.Example:443/a/B").as_deref(), Some("https://api.example/a/B"));
    assert_eq!(n("http://h:80").as_deref(), Some("http://h/"));
    assert_eq!(n("http://h:8080/x?q=1").as_deref(), Some("http://h:8080/x?q=1"));
    // One trailing dot of the host is the same DNS name; the port stays apart.
    assert_eq!(n("https://api.example.:443/x"), n("https://api.example/x"));
    assert_eq!(n("http://api.example.:8080/x").as_deref(), Some("http://api.example:8080/x"));
    assert_ne!(n("https://api.example../x"), n("https://api.example/x"));
    // Percent-encodings: case, and unreserved characters decoded; reserved ones stay encoded.
    assert_eq!(n("https://h/a%2fb%7e%41"), n("https://h/a%2Fb~A"));
    assert_ne!(n("https://h/a%2Fb"), n("https://h/a/b"));
    // Dot segments removed (as Envoy's normalize_path would), encoded ones too; never above
    // the root; `..;x` is a segment, not a dot segment; a query's `/..` is left alone.
    assert_eq!(n("https://h/a/./b/../c").as_deref(), Some("https://h/a/c"));
    assert_eq!(n("https://h/a/%2e%2E/c").as_deref(), Some("https://h/c"));
    assert_eq!(n("https://h/../../x").as_deref(), Some("https://h/x"));
    assert_eq!(n("https://h/a/b/..").as_deref(), Some("https://h/a/"));
    assert_eq!(n("https://h/a/.").as_deref(), Some("https://h/a/"));
    assert_eq!(n("https://h/..").as_deref(), Some("https://h/"));
    assert_eq!(n("https://h/a//b/").as_deref(), Some("https://h/a//b/"));
    assert_eq!(n("https://h/a/..;x/b").as_deref(), Some("https://h/a/..;x/b"));
    assert_eq!(n("https://h/x?a=/../y").as_deref(), Some("https://h/x?a=/../y"));
    assert_eq!(n("https://h/x/..?q").as_deref(), Some("https://h/?q"));
    // `;` parameters are part of the path.
    assert_ne!(n("https://h/a;v=1"), n("https://h/a"));
    assert_eq!(n("https://h/a;v=1").as_deref(), Some("https://h/a;v=1"));
    // IPv6 literals keep their colons.
    assert_eq!(n("https://[::1]:443/x").as_deref(), Some("https://[::1]/x"));
    assert_eq!(n("https://[::1]/x").as_deref(), Some("https://[::1]/x"));
    for unusable in ["ftp://h/x", "https://u@h/x", "https://h/%zz", "https://h/%4", "h/x", "https:///x"] {
        assert_eq!(n(unusable), None, "{unusable}");
    }
    // A request whose URI is none (no authority) meets no htu, a bad one neither.
    let headers = crate::testing::headers(&[(":scheme", "http")]);
    assert_eq!(target_uri(&RequestFacts::new("GET", "/x", &headers)), None);
    let headers = crate::testing::headers(&[(":scheme", "http"), ("x-forwarded-proto", "https")]);
    let request =
        RequestFacts { authority: "api.example", ..RequestFacts::new("GET", "/orders/1?expand=all", &headers) };
    assert_eq!(target_uri(&request).as_deref(), Some("https://api.example/orders/1"));
}

mod proofs {
    use super::super::*;
    use crate::jwt::KeySet;
    use crate::shared_table::ONE_TIME;
    use crate::testing::{headers, FakeHost, FakeShared};
    use jsonwebtoken::EncodingKey;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const EC_PRIVATE: &str = include_str!("../../tests/keys/ec_p256_private.pem");
    const EC_PUBLIC: &str = include_str!("../../tests/keys/ec_p256_public.pem");
    const ED_PRIVATE: &str = include_str!("../../tests/keys/ed25519_private.pem");
    const ED_PUBLIC: &str = include_str!("../../tests/keys/ed25519_public.pem");
    const TOKEN: &str = "the.access.token";
    const URI: &str = "https://api.example/orders/1";

    fn settings() -> Dpop {
        Dpop { required: false, max_age_seconds: 60, algorithms: "ES256 EdDSA".into() }
    }

    fn public_jwk(pem: &str) -> Value {
        let keys = KeySet::from_pem(pem, None).unwrap();
        Value::Object(keys.keys()[0].public_jwk().unwrap())
    }

    fn jkt(pem: &str) -> String {
        thumbprint(public_jwk(pem).as_object().unwrap())
    }

    /// A proof signed by `jsonwebtoken` (an independent implementation) with the EC key
    /// (the Ed25519 key for EdDSA), its header changed by `header`.
    fn proof_with(header: impl FnOnce(&mut Value), claims: Value) -> String {
        let mut jose = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(EC_PUBLIC)});
        header(&mut jose);
        let (alg, key) = match jose["alg"].as_str() {
            Some("EdDSA") => (jsonwebtoken::Algorithm::EdDSA, EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap()),
            Some("HS256") => (jsonwebtoken::Algorithm::HS256, EncodingKey::from_secret(b"secret")),
            _ => (jsonwebtoken::Algorithm::ES256, EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap()),
        };
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(jose.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        format!("{input}.{}", jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).unwrap())
    }

    fn claims(jti: &str) -> Value {
        let ath = URL_SAFE_NO_PAD.encode(sha256(TOKEN.as_bytes()));
        json!({"htm": "GET", "htu": URI, "iat": NOW, "jti": jti, "ath": ath})
    }

    fn proof(jti: &str) -> String {
        proof_with(|_| {}, claims(jti))
    }

    struct Check {
        host: FakeHost,
        replay: SharedTable,
    }

    impl Check {
        fn new() -> Check {
            Check { host: FakeHost::new(&FakeShared::default()), replay: SharedTable::new("replay", 64, ONE_TIME) }
        }

        /// The proofs (each a `DPoP` header) of a GET of URI with TOKEN bound to the EC key.
        fn run(&self, proofs: &[&str], bound_to: &str, now: u64) -> Result<String, ProofError> {
            let mut pairs = vec![(":scheme", "https")];
            pairs.extend(proofs.iter().map(|proof| ("dpop", *proof)));
            let headers = headers(&pairs);
            let request =
                RequestFacts { authority: "api.example", ..RequestFacts::new("GET", "/orders/1?x=1", &headers) };
            check_proof(&settings(), &request, Some((TOKEN, bound_to)), &self.replay, &self.host, now, 5)
        }

        fn once(&self, proof: &str) -> Result<String, ProofError> {
            self.run(&[proof], &jkt(EC_PUBLIC), NOW)
        }
    }

    fn invalid(result: Result<String, ProofError>) -> &'static str {
        match result {
            Err(ProofError::Invalid(message)) => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_valid_proof_passes_once() {
        let check = Check::new();
        assert_eq!(check.once(&proof("a")), Ok(jkt(EC_PUBLIC)));
        assert_eq!(invalid(check.once(&proof("a"))), "proof replayed");
        // Another jti, another proof; within the clock skew too.
        assert!(check.run(&[&proof("b")], &jkt(EC_PUBLIC), NOW - 5).is_ok());
        assert!(check.run(&[&proof("c")], &jkt(EC_PUBLIC), NOW + 65).is_ok());
    }

    #[test]
    fn an_eddsa_proof_passes_and_its_key_must_be_the_tokens() {
        let eddsa =
            proof_with(|h| *h = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": public_jwk(ED_PUBLIC)}), claims("ed"));
        let check = Check::new();
        assert_eq!(invalid(check.once(&eddsa)), "the proof's key is not the token's (cnf.jkt)");
        assert_eq!(check.run(&[&eddsa], &jkt(ED_PUBLIC), NOW), Ok(jkt(ED_PUBLIC)));
    }

    #[test]
    fn each_claim_is_checked() {
        let check = Check::new();
        let with = |name: &str, value: Value| {
            let mut claims = claims(name);
            claims[name] = value;
            check.once(&proof_with(|_| {}, claims))
        };
        assert_eq!(invalid(with("htm", json!("POST"))), "htm does not match the request method");
        // The description names the part that differs: behind a TLS-terminating proxy the
        // scheme is the usual one, and nothing else tells the client which.
        for (htu, part) in [
            ("http://api.example/orders/1", "scheme (x-forwarded-proto, else :scheme)"),
            ("https://other.example/orders/1", "host (:authority)"),
            ("https://api.example:8443/orders/1", "host (:authority)"),
            ("https://api.example/orders/2", "path"),
        ] {
            assert_eq!(invalid(with("htu", json!(htu))), format!("htu does not match the request URI's {part}"));
        }
        for htu in ["https://api.example/orders/1?x=1", "https://api.example/orders/1#f"] {
            assert_eq!(invalid(with("htu", json!(htu))), "htu has a query or fragment", "{htu}");
        }
        assert!(with("htu", json!("HTTPS://API.EXAMPLE.:443/orders/%31")).is_ok());
        for unusable in [json!("ftp://api.example/orders/1"), json!("not a URI"), json!(5)] {
            assert_eq!(invalid(with("htu", unusable)), "htu missing or not an http(s) URI");
        }
        assert_eq!(invalid(with("iat", json!(NOW - 66))), "iat outside the accepted window");
        assert_eq!(invalid(with("iat", json!(NOW + 6))), "iat outside the accepted window");
        assert_eq!(invalid(with("iat", json!(NOW.to_string()))), "iat missing");
        // A NumericDate may be fractional (RFC 7519 2), as a token's `iat` is read.
        assert!(with("iat", json!(NOW as f64 + 0.5)).is_ok());
        assert_eq!(invalid(with("ath", json!("AAAA"))), "ath does not match the access token");
        assert_eq!(invalid(with("jti", json!(""))), "jti missing");
        let mut without_ath = claims("no-ath");
        without_ath.as_object_mut().unwrap().remove("ath");
        assert_eq!(invalid(check.once(&proof_with(|_| {}, without_ath))), "ath missing");
    }

    #[test]
    fn the_header_is_checked() {
        let check = Check::new();
        let with = |name: &str, value: Value| check.once(&proof_with(|h| h[name] = value, claims(name)));
        assert_eq!(invalid(with("typ", json!("JWT"))), "typ must be dpop+jwt");
        assert_eq!(invalid(with("alg", json!("HS256"))), "algorithm not allowed");
        assert_eq!(invalid(with("alg", json!("none"))), "algorithm not allowed");
        assert_eq!(invalid(with("alg", json!("RS256"))), "algorithm not allowed");
        let mut private = public_jwk(EC_PUBLIC);
        private["d"] = json!("AAAA");
        assert_eq!(invalid(with("jwk", private)), "the jwk has private key members");
        assert_eq!(invalid(with("jwk", json!({"kty": "oct", "k": "c2VjcmV0"}))), "the jwk has private key members");
        assert_eq!(invalid(with("jwk", json!("key"))), "no jwk");
        assert_eq!(invalid(with("jwk", public_jwk(ED_PUBLIC))), "signature verification failed");
        let mut tampered = proof("s");
        let last = tampered.pop();
        tampered.push(if last == Some('A') { 'B' } else { 'A' });
        assert!(check.once(&tampered).is_err());
        assert_eq!(invalid(check.once("a.b")), "not a JWS");
        // RFC 7638 3.2: the thumbprint is of the members an EC key requires, whatever else the jwk has.
        let mut extra = public_jwk(EC_PUBLIC);
        extra["kid"] = json!("k");
        extra["n"] = json!("AQAB");
        assert_eq!(check.once(&proof_with(|h| h["jwk"] = extra, claims("extra members"))), Ok(jkt(EC_PUBLIC)));
    }

    #[test]
    fn exactly_one_proof() {
        let check = Check::new();
        assert_eq!(invalid(check.run(&[], &jkt(EC_PUBLIC), NOW)), "exactly one DPoP proof header is required");
        let (one, two) = (proof("1"), proof("2"));
        assert_eq!(
            invalid(check.run(&[&one, &two], &jkt(EC_PUBLIC), NOW)),
            "exactly one DPoP proof header is required"
        );
    }

    #[test]
    fn a_full_replay_table_is_a_try_later() {
        let check = Check { replay: SharedTable::new("tiny", 1, ONE_TIME), ..Check::new() };
        let results: Vec<_> = (0..40).map(|i| check.once(&proof(&i.to_string()))).collect();
        assert!(results.contains(&Err(ProofError::TryLater(Reason::ReplayCacheFull))), "{results:?}");
    }
}

#[test]
fn a_challenge_names_the_algorithms_taken_and_none_without_dpop() {
    let refusal = ("invalid_token", "DPoP is not configured for this token's provider", Reason::DpopProofInvalid);
    let challenge = |settings: Option<&Dpop>| refused("api", settings, refusal).headers[0].1.clone();
    let settings = Dpop { required: false, max_age_seconds: 60, algorithms: "ES256 EdDSA".into() };
    assert!(challenge(Some(&settings)).ends_with(", algs=\"ES256 EdDSA\""), "{}", challenge(Some(&settings)));
    // A provider without `dpop` takes no algorithm: no `algs` (RFC 9449 7.1: a list of them), not an empty one.
    assert_eq!(
        challenge(None),
        "DPoP realm=\"api\", error=\"invalid_token\", error_description=\"DPoP is not configured for this token's provider\""
    );
}
