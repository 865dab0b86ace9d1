//! Where wasm-authn's time goes on one request, stage by stage, measured in V8
//! (Node's WASI runs this module; Envoy runs the filter in V8 too). The host
//! calls are not here: bench/run.py counts them in Envoy and times them with the
//! trivial filter. Prints a Markdown table: nanoseconds per call of each stage and
//! scheme, the median of several timed batches. Run by scripts/bench.sh with
//! Node (`node --no-liftoff run.mjs stages.wasm`: optimized code only, as Envoy
//! compiles a module).

mod scale;

use std::time::Instant;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use wasm_authn::cache::CacheKeys;
use wasm_authn::config::Config;
use wasm_authn::host_api::{Cas, Clock, Counters, HttpCalls, SharedData, Target};
use wasm_authn::jwt::{Algorithm, SignatureBackend};
use wasm_authn::peer::{Peer, PeerCertificate};
use wasm_authn::pipeline::authenticate::Verifier;
use wasm_authn::pipeline::credential;
use wasm_authn::plugin::Plugin;
use wasm_authn::request::{RequestFacts, Source};

/// No client address (no configuration here reads one).
pub const NO_SOURCE: Source<'static> = Source::Known(None);
use wasm_authn::pipeline::stream::Step;
use wasm_authn::testing::FakeShared;
use wasm_authn::{header_map, pipeline, pipeline::shape, token_claims};

const SECRET: &[u8] = b"stages-bench-secret-0123456789abcdef";
const API_KEY: &str = "stages-bench-api-key-0123456789";
const PASSWORD: &str = "stages-bench-password";

/// A host with nothing behind it: the native tests' shared data (`wasm_authn::testing`),
/// a fixed clock, RS256 answered as if by BoringSSL.
#[derive(Default)]
pub struct Host {
    shared: FakeShared,
    /// ES256 answered at once too, as if by BoringSSL.
    host_es256: bool,
}

impl SharedData for Host {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Cas) -> bool {
        self.shared.set(key, value, cas)
    }
}
impl Clock for Host {
    fn now_ns(&self) -> Option<u64> {
        Some(NOW_MS * 1_000_000)
    }
}
impl SignatureBackend for Host {
    /// RS256 is answered at once, as if by Envoy's BoringSSL (its own time is not ours
    /// to cut); the rest takes the pure-Rust path.
    fn verify(&self, alg: Algorithm, _: &[u8], _: &[u8], _: &[u8]) -> Option<bool> {
        (alg == Algorithm::RS256 || (self.host_es256 && alg == Algorithm::ES256)).then_some(true)
    }
}
impl HttpCalls for Host {
    fn get(&mut self, _: &Target, _: u64) -> Option<u32> {
        None
    }
    fn post_form(&mut self, _: &Target, _: Option<&str>, _: &[u8], _: u64) -> Option<u32> {
        None
    }
    fn should_rate_limit(&mut self, _: &str, _: &[u8], _: u64) -> Option<u32> {
        None
    }
}
impl Counters for Host {
    fn increment(&mut self, _: &str) {}
    fn count_soon(&mut self, _: wasm_authn::host_api::Outcome) {}
    fn add_to_gauge(&mut self, _: &str, _: i64) {}
}

pub const NOW_MS: u64 = 1_800_000_000_000;

fn hs256(claims: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The headers Envoy hands the filter for a typical request, serialized as the ABI does.
fn serialized(credential: (&str, &str)) -> Vec<u8> {
    serialized_all(&[credential])
}

/// The same with these credential headers.
fn serialized_all(credentials: &[(&str, &str)]) -> Vec<u8> {
    let mut pairs = vec![
        (":authority", "api.example.com"),
        (":path", "/orders/12345?expand=items"),
        (":method", "GET"),
        (":scheme", "http"),
        ("user-agent", "wrk"),
        ("accept", "*/*"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "6f1c0a4e-2b1d-4c55-9d6e-1a2b3c4d5e6f"),
    ];
    pairs.extend_from_slice(credentials);
    header_map::encode(&pairs)
}

/// Nanoseconds per call of `f`: the median of 15 batches.
fn time<T>(mut f: impl FnMut() -> T) -> f64 {
    let batch = 2000;
    for _ in 0..batch {
        std::hint::black_box(f());
    }
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                std::hint::black_box(f());
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() {
    // `stages scale`: the scale section alone (to profile it).
    if std::env::args().nth(1).as_deref() == Some("scale") {
        return scale::run();
    }
    let token = hs256(json!({
        "iss": "https://issuer.bench", "sub": "user-42", "aud": "bench-api", "iat": NOW_MS / 1000 - 10,
        "exp": NOW_MS / 1000 + 3600, "scope": "orders:read reports:read", "jti": "2b1d4c559d6e1a2b",
    }));
    let basic = format!("Basic {}", STANDARD.encode(format!("alice:{PASSWORD}")));
    let bearer = format!("Bearer {token}");
    let config_text = json!({
        "basic": {"users": [{"name": "alice", "password_hash": format!("sha256:{}", sha256_hex(PASSWORD))}]},
        "api_keys": {"headers": ["x-api-key"], "clients": [{"id": "client-1", "key_hash": format!("sha256:{}", sha256_hex(API_KEY))}]},
        "jwt": {"providers": [{"name": "bench", "issuer": "https://issuer.bench", "audiences": ["bench-api"],
                "local_jwks": {"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(SECRET)}]}}]},
    })
    .to_string();
    let schemes = [
        ("api-key", ("x-api-key", API_KEY)),
        ("basic-sha256", ("authorization", basic.as_str())),
        ("bearer-hs256", ("authorization", bearer.as_str())),
    ];
    let mut results = Vec::new();
    for (scheme, credential_header) in schemes {
        let config = Config::from_json(config_text.as_bytes()).unwrap();
        let bytes = serialized(credential_header);
        let headers = header_map::decode(&bytes).unwrap();
        let request = RequestFacts::from_headers(&headers);
        let mut host = Host::default();
        let mut verifier = Verifier::new(&config);
        let credential = credential::extract(&request, &config.api_keys, &config.token_locations).unwrap().unwrap();
        verifier
            .authenticate(&config, &wasm_authn::fetched::Fetched::new(&config), &credential, NO_SOURCE, &host, NOW_MS)
            .unwrap();
        let principal = verifier
            .authenticate(&config, &wasm_authn::fetched::Fetched::new(&config), &credential, NO_SOURCE, &host, NOW_MS)
            .unwrap();

        let decode = time(|| header_map::decode(&bytes));
        let facts = time(|| RequestFacts::from_headers(&headers).path.len());
        let extract = time(|| credential::extract(&request, &config.api_keys, &config.token_locations));
        let keys = CacheKeys::new();
        let key = match &credential {
            credential::Credential::Bearer { token, found } => time(|| {
                let places: Vec<u8> = found.iter().flat_map(|place| (*place as u64).to_be_bytes()).collect();
                keys.of("bearer", &[token.as_bytes(), &places])
            }),
            credential::Credential::Basic { user, password } => {
                time(|| keys.of("basic", &[user.as_bytes(), password.as_bytes()]))
            }
            credential::Credential::ApiKey { key, .. } => time(|| keys.of("api-key", &[key.as_bytes()])),
            credential::Credential::Mtls { name } => time(|| keys.of("mtls", &[name.as_bytes()])),
        };
        let remembered = time(|| {
            verifier.authenticate(
                &config,
                &wasm_authn::fetched::Fetched::new(&config),
                &credential,
                NO_SOURCE,
                &host,
                NOW_MS,
            )
        });
        let shaped = time(|| {
            shape::authenticated(
                &config.upstream,
                &config.api_keys,
                &config.token_locations,
                &request,
                &[&credential],
                &principal,
            )
        });
        let mut plugin = Plugin::new(Config::from_json(config_text.as_bytes()).unwrap());
        let mut context = 0u32;
        let whole = time(|| {
            context = context.wrapping_add(1);
            let headers = header_map::decode(&bytes).unwrap();
            let request = RequestFacts::from_headers(&headers);
            let step = plugin.on_request_headers(&mut host, context, &request, NOW_MS);
            plugin.on_stream_end(&mut host, context);
            matches!(step, Step::Continue(_))
        });
        // Unremembered: what a distinct credential costs in the VM (HS256: the HMAC included), with
        // the cache off so that every call verifies.
        let mut uncached_config: serde_json::Value = serde_json::from_str(&config_text).unwrap();
        uncached_config["cache"] = json!({"max_entries": 0});
        let uncached_config = Config::from_json(uncached_config.to_string().as_bytes()).unwrap();
        let mut uncached = Verifier::new(&uncached_config);
        let fresh = time(|| {
            uncached.authenticate(
                &uncached_config,
                &wasm_authn::fetched::Fetched::new(&uncached_config),
                &credential,
                NO_SOURCE,
                &host,
                NOW_MS,
            )
        });
        results.push((
            scheme,
            [
                ("decode the header map", decode),
                ("request facts", facts),
                ("find the credential", extract),
                ("cache key (SipHash-1-3, 128 bits)", key),
                ("authenticate, remembered", remembered),
                ("shape the upstream changes", shaped),
                ("the whole request: decode to shaped, with policy (on_request_headers, on_stream_end)", whole),
                ("authenticate, not remembered (the cache off; HS256: the HMAC included)", fresh),
            ],
        ));
    }
    print_table(&results);
    requirement_tree(&config_text, &basic);
    distinct_tokens();
    opaque_token();
    claim_conditions();
    proof_of_possession();
    dpop();
    scale::run();
}

/// A two-credential `all` (Basic and an API key) against each credential alone, the whole
/// decision each time (both remembered as they are in steady state): the tree should cost
/// the sum of its verifications and nothing more.
fn requirement_tree(config_text: &str, basic: &str) {
    let with_rules = |rules: serde_json::Value| {
        let mut config: serde_json::Value = serde_json::from_str(config_text).unwrap();
        config["rules"] = rules;
        Config::from_json(config.to_string().as_bytes()).unwrap()
    };
    let host = Host::default();
    let decide = |config: &Config, pairs: &[(&str, &str)]| {
        let bytes = serialized_all(pairs);
        let mut verifier = Verifier::new(config);
        let fetched = wasm_authn::fetched::Fetched::new(config);
        time(|| {
            let headers = header_map::decode(&bytes).unwrap();
            let request = RequestFacts::from_headers(&headers);
            matches!(
                pipeline::decide(config, &fetched, &mut verifier, &request, &host, NOW_MS),
                pipeline::Decision::Allow { .. } | pipeline::Decision::Anonymous(_)
            )
        })
    };
    let key = ("x-api-key", API_KEY);
    let authorization = ("authorization", basic);
    let nothing = decide(&with_rules(json!([{"require": "optional"}])), &[]);
    let alone_basic = decide(&with_rules(json!([{"require": ["basic"]}])), &[authorization]);
    let alone_key = decide(&with_rules(json!([{"require": ["api-key"]}])), &[key]);
    let tree = decide(&with_rules(json!([{"require": {"all": ["basic", "api-key"]}}])), &[authorization, key]);
    println!();
    println!("| a requirement tree, the whole decision (decode to shaped) | ns |");
    println!("|---|---:|");
    println!("| no credential (require \"optional\"): the decision's fixed cost | {nothing:.0} |");
    println!("| require [\"basic\"], Basic (SHA-256, remembered) | {alone_basic:.0} |");
    println!("| require [\"api-key\"], an API key | {alone_key:.0} |");
    println!("| require {{\"all\": [\"basic\", \"api-key\"]}}, both | {tree:.0} |");
    println!(
        "| the tree beyond its two verifications: all - basic - api-key + fixed | {:.0} |",
        tree - alone_basic - alone_key + nothing
    );
}

/// A rule with three claim conditions (any_of, all_of, equals_header) on a remembered
/// token: what the conditions add to a request (issue 22: under 0.3 µs per condition).
fn claim_conditions() {
    let config = Config::from_json(
        json!({
            "jwt": {"providers": [{"name": "bench", "issuer": "https://issuer.bench",
                    "local_jwks": {"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(SECRET)}]}}]},
            "rules": [{"match": {"path_prefix": "/"}, "claims": [
                {"claim": "realm.roles", "any_of": ["admin", "root"]},
                {"claim": "groups", "all_of": ["eng", "oncall"]},
                {"claim": "tenant", "equals_header": "x-tenant"}]}],
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let token = hs256(json!({
        "iss": "https://issuer.bench", "sub": "user-42", "exp": NOW_MS / 1000 + 3600, "tenant": "acme",
        "realm": {"roles": ["reader", "admin"]}, "groups": ["eng", "sre", "oncall", "payments"],
    }));
    let bearer = format!("Bearer {token}");
    let bytes = header_map::encode(&[
        (":method", "GET"),
        (":path", "/orders/1"),
        (":authority", "api.bench"),
        ("user-agent", "wrk"),
        ("accept", "*/*"),
        ("x-request-id", "6f1c0a4e-2b1d-4c55-9d6e-1a2b3c4d5e6f"),
        ("x-tenant", "acme"),
        ("authorization", bearer.as_str()),
    ]);
    let headers = header_map::decode(&bytes).unwrap();
    let request = RequestFacts::from_headers(&headers);
    let host = Host::default();
    let mut verifier = Verifier::new(&config);
    let credential = credential::extract(&request, &config.api_keys, &config.token_locations).unwrap().unwrap();
    let principal = verifier
        .authenticate(
            &config,
            &wasm_authn::fetched::Fetched::new(&config),
            &credential,
            Source::Known(None),
            &host,
            NOW_MS,
        )
        .unwrap();
    let rule = &config.routes.rules[0];
    assert_eq!(token_claims::check(&rule.claims, &principal.extras.claims, &request), Ok(()));
    let three = time(|| token_claims::check(&rule.claims, &principal.extras.claims, &request).is_ok());
    println!();
    println!("| a rule with three claim conditions, the token remembered | ns |");
    println!("|---|---:|");
    println!("| any_of, all_of and equals_header, all met (each: a third) | {three:.0} |");
}

/// The whole request (`on_request_headers`, `on_stream_end`) for a remembered Bearer
/// token, the same token bound to the connection's certificate (RFC 8705: its binding
/// compared with the certificate on every request), and a client certificate as the
/// principal. The certificate is given as the host's reader would (its host calls
/// are Envoy's, counted by bench/run.py).
fn proof_of_possession() {
    let certificate = PeerCertificate::from_hex_digest(&sha256_hex("a client certificate")).map(|certificate| {
        PeerCertificate { uri_san: Some("spiffe://example.org/ns/prod/sa/billing".into()), ..certificate }
    });
    let thumbprint = certificate.as_ref().map(|c| c.thumbprint.clone()).unwrap_or_default();
    let claims = |cnf: Option<serde_json::Value>| {
        let mut claims = json!({
            "iss": "https://issuer.bench", "sub": "user-42", "aud": "bench-api", "iat": NOW_MS / 1000 - 10,
            "exp": NOW_MS / 1000 + 3600, "scope": "orders:read reports:read", "jti": "2b1d4c559d6e1a2b",
        });
        if let Some(cnf) = cnf {
            claims["cnf"] = cnf;
        }
        format!("Bearer {}", hs256(claims))
    };
    let config_text = json!({
        "mtls": {"principal_from": "uri_san"},
        "jwt": {"providers": [{"name": "bench", "issuer": "https://issuer.bench", "audiences": ["bench-api"],
                "local_jwks": {"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(SECRET)}]}}]},
    })
    .to_string();
    let whole = |credential: Option<(&str, &str)>| {
        let mut plugin = Plugin::new(Config::from_json(config_text.as_bytes()).unwrap());
        let mut host = Host::default();
        let bytes = serialized(credential.unwrap_or(("x-other", "none")));
        let mut context = 0u32;
        time(|| {
            context = context.wrapping_add(1);
            let headers = header_map::decode(&bytes).unwrap();
            let mut request = RequestFacts::from_headers(&headers);
            request.peer = Peer::Known(certificate.as_ref());
            let step = plugin.on_request_headers(&mut host, context, &request, NOW_MS);
            plugin.on_stream_end(&mut host, context);
            assert!(matches!(step, Step::Continue(_)));
        })
    };
    let bearer = claims(None);
    let bound = claims(Some(json!({ "x5t#S256": thumbprint })));
    let plain = whole(Some(("authorization", bearer.as_str())));
    let bound = whole(Some(("authorization", bound.as_str())));
    let mtls = whole(None);
    println!();
    println!("| the whole request, remembered credential (on_request_headers, on_stream_end) | ns |");
    println!("|---|---:|");
    println!("| a Bearer token (HS256) | {plain:.0} |");
    println!("| the same token bound to the connection's certificate (cnf x5t#S256) | {bound:.0} |");
    println!("| a client certificate as the principal (mtls, uri_san) | {mtls:.0} |");
}

/// A DPoP-bound token (remembered) with an ES256 proof, the whole request: the proof
/// is checked on every request (its signature included) and its `jti` recorded in
/// shared data. Each call gets an empty shared store (so the one proof is always
/// fresh): a table's first record, as a quiet worker's. The signature in pure Rust,
/// and answered at once by the host as Envoy's BoringSSL would (add its own time).
fn dpop() {
    use p256::ecdsa::signature::Signer;
    use sha2::Digest;
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let point = key.verifying_key().to_encoded_point(false);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                     "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())});
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, jwk["x"], jwk["y"]);
    let jkt = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let token = hs256(json!({
        "iss": "https://issuer.bench", "sub": "user-42", "aud": "bench-api", "iat": NOW_MS / 1000 - 10,
        "exp": NOW_MS / 1000 + 3600, "scope": "orders:read reports:read", "cnf": {"jkt": jkt},
    }));
    let claims = json!({"jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": "http://api.example.com/orders/12345",
                        "iat": NOW_MS / 1000 - 1, "ath": URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
    let proof = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    let config_text = json!({
        "jwt": {"providers": [{"name": "bench", "issuer": "https://issuer.bench", "audiences": ["bench-api"],
                "local_jwks": {"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(SECRET)}]},
                "dpop": "allowed"}]},
    })
    .to_string();
    let authorization = format!("DPoP {token}");
    let bytes = serialized_all(&[("authorization", authorization.as_str()), ("dpop", proof.as_str())]);
    let whole = |host_es256: bool| {
        let mut plugin = Plugin::new(Config::from_json(config_text.as_bytes()).unwrap());
        let mut context = 0u32;
        time(|| {
            context = context.wrapping_add(1);
            let mut host = Host { host_es256, ..Host::default() };
            let headers = header_map::decode(&bytes).unwrap();
            let request = RequestFacts::from_headers(&headers);
            let step = plugin.on_request_headers(&mut host, context, &request, NOW_MS);
            plugin.on_stream_end(&mut host, context);
            assert!(matches!(step, Step::Continue(_)), "{step:?}");
        })
    };
    let pure = whole(false);
    let by_host = whole(true);
    let empty_host = time(|| Host::default());
    println!();
    println!("| a DPoP-bound token (HS256, remembered) with an ES256 proof, the whole request | ns |");
    println!("|---|---:|");
    println!("| the proof's signature in pure Rust (P-256) | {pure:.0} |");
    println!("| the proof's signature answered by the host (Envoy's BoringSSL: add its ES256 verify) | {by_host:.0} |");
    println!("| of each: an empty shared store, made per call (the proof's jti is new to it) | {empty_host:.0} |");
}

/// An opaque token whose introspection answer another worker stored (the per-VM cache
/// off): what a worker pays for it without a call, against the same token remembered
/// by the worker itself (as a JWT is).
fn opaque_token() {
    let config_of = |cache: serde_json::Value| {
        let introspection = json!({"cluster": "idp", "authority": "idp", "path": "/introspect",
                                   "client_id": "bench", "client_secret": "bench-secret"});
        let text = json!({"cache": cache, "jwt": {"providers": [{"name": "opaque", "introspection": introspection}]}});
        Config::from_json(text.to_string().as_bytes()).unwrap()
    };
    let token = "op_bench_0123456789abcdefghijklmnop";
    let credential = credential::Credential::Bearer { token: token.to_string(), found: vec![0] };
    let host = Host::default();
    let stored = config_of(json!({"max_entries": 0}));
    let provider = &stored.jwt_providers[0];
    let introspection = provider.introspection.as_ref().unwrap();
    let answer =
        json!({"active": true, "sub": "user-42", "scope": "orders:read reports:read", "exp": NOW_MS / 1000 + 3600});
    let (verdict, until) = introspection.judge(provider, answer.as_object().unwrap(), NOW_MS, 60);
    let key = introspection.answers.key(&host, token);
    assert!(introspection.answers.store(&host, key, verdict, until, NOW_MS));
    let mut verifier = Verifier::new(&stored);
    let shared = time(|| {
        verifier
            .authenticate(&stored, &wasm_authn::fetched::Fetched::new(&stored), &credential, NO_SOURCE, &host, NOW_MS)
            .is_ok()
    });
    let remembered_config = config_of(json!({}));
    let mut remembered = Verifier::new(&remembered_config);
    let _ = remembered.authenticate(
        &remembered_config,
        &wasm_authn::fetched::Fetched::new(&remembered_config),
        &credential,
        NO_SOURCE,
        &host,
        NOW_MS,
    );
    let remembered_key = remembered_config.jwt_providers[0].introspection.as_ref().unwrap().answers.key(&host, token);
    assert_eq!(remembered_key, key, "one hash key per Envoy");
    let cached = time(|| {
        remembered
            .authenticate(
                &remembered_config,
                &wasm_authn::fetched::Fetched::new(&remembered_config),
                &credential,
                NO_SOURCE,
                &host,
                NOW_MS,
            )
            .is_ok()
    });
    println!();
    println!("| an opaque token (introspection), its answer stored | ns |");
    println!("|---|---:|");
    println!("| authenticate: the answer another worker stored (shared data read, decoded) | {shared:.0} |");
    println!("| authenticate: remembered by this worker (as a cached JWT) | {cached:.0} |");
}

/// A distinct RS256 token per request (the cache smaller than the pool, as in
/// `make bench`): what is ours to cut besides Envoy's signature check.
fn distinct_tokens() {
    let config = Config::from_json(
        json!({
            "cache": {"max_entries": 64},
            "jwt": {"providers": [{"name": "bench", "issuer": "https://issuer.bench", "audiences": ["bench-api"],
                    "local_pem": include_str!("../../../tests/keys/rsa2048_public.pem")}]},
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}).to_string());
    let signature = URL_SAFE_NO_PAD.encode([7u8; 256]);
    let tokens: Vec<credential::Credential> = (0..4096)
        .map(|i| {
            let claims = json!({
                "iss": "https://issuer.bench", "sub": format!("user-{i}"), "aud": "bench-api", "iat": NOW_MS / 1000 - 10,
                "exp": NOW_MS / 1000 + 3600, "scope": "orders:read reports:read", "jti": format!("{i:016x}"),
            });
            let token = format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(claims.to_string()));
            credential::Credential::Bearer { token, found: vec![0] }
        })
        .collect();
    let host = Host::default();
    let mut verifier = Verifier::new(&config);
    let mut next = 0;
    let mut pick = || {
        next = (next + 1) % tokens.len();
        &tokens[next]
    };
    let token_of = |credential: &credential::Credential| match credential {
        credential::Credential::Bearer { token, .. } => token.clone(),
        _ => String::new(),
    };
    assert!(verifier
        .authenticate(&config, &wasm_authn::fetched::Fetched::new(&config), pick(), NO_SOURCE, &host, NOW_MS)
        .is_ok());
    let verify = time(|| {
        let token = token_of(pick());
        wasm_authn::jwt::verify(
            &token,
            &config.jwt_providers,
            &wasm_authn::jwt::FetchedKeys::default(),
            &|_| true,
            &host,
            NOW_MS / 1000,
            60,
        )
        .is_ok()
    });
    let copy = time(|| token_of(pick()).len());
    let authenticate = time(|| {
        verifier
            .authenticate(&config, &wasm_authn::fetched::Fetched::new(&config), pick(), NO_SOURCE, &host, NOW_MS)
            .is_ok()
    });
    let der = [0u8; 294];
    let text = [b'a'; 420];
    let arguments = time(|| wasm_authn::envoy_crypto::encode_arguments("sha256", &der, &[7u8; 256], &text).len());
    println!();
    println!("| a distinct RS256 token (the signature answered at once) | ns |");
    println!("|---|---:|");
    println!("| jwt::verify: split, base64, JSON, key, time and audience checks | {:.0} |", verify - copy);
    println!("| authenticate: cache miss, jwt::verify, remember (64 entries, evicting) | {authenticate:.0} |");
    println!("| the verify_signature arguments (protobuf: SPKI, signature, signed text) | {arguments:.0} |");
}

/// A Markdown table: a row per stage, a column per scheme, nanoseconds.
fn print_table(results: &[(&str, [(&str, f64); 8])]) {
    println!(
        "| stage (ns per call, median of 15 batches) | {} |",
        results.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|{}", "---:|".repeat(results.len()));
    for row in 0..8 {
        let cells: Vec<String> = results.iter().map(|(_, stages)| format!("{:.0}", stages[row].1)).collect();
        println!("| {} | {} |", results[0].1[row].0, cells.join(" | "));
    }
}
