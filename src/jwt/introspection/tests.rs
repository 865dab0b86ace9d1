//! Introspection providers: their configuration, the call, the judgement of an
//! answer, and the one call per token across workers (fake VMs sharing one store).

use serde_json::{json, Value};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::*;
use crate::config::Config;
use crate::pipeline::stream::Step;
use crate::plugin::Plugin;
use crate::reason::Reason;
use crate::request::RequestFacts;
use crate::testing::{FakeHost, FakeResponse, FakeShared};

const T0: u64 = 1_800_000_000_000; // ms
const NOW: u64 = T0 / 1000;

fn provider_json(introspection: Value, extra: Value) -> Value {
    let mut provider = json!({"name": "opaque", "introspection": introspection});
    for (k, v) in extra.as_object().into_iter().flatten() {
        provider[k] = v.clone();
    }
    provider
}

fn endpoint() -> Value {
    json!({"cluster": "idp", "authority": "idp.example", "path": "/introspect", "client_id": "filter id", "client_secret": "s3cr&t"})
}

fn config_of(introspection: Value, extra: Value) -> Result<Config, String> {
    let config = json!({"jwt": {"providers": [provider_json(introspection, extra)]}, "cache": {"max_entries": 0}});
    Config::from_json_with_env(config.to_string().as_bytes(), &|name| (name == "SECRET").then(|| "env-secret\n".into()))
        .map_err(|e| e.to_string())
}

fn config(extra: Value) -> Config {
    config_of(endpoint(), extra).unwrap()
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().into_iter().flatten() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

#[test]
fn configuration_errors_name_their_field() {
    let at = "jwt.providers[0].introspection";
    let cases = [
        (json!({"cluster": ""}), format!("{at}.cluster: must name an Envoy cluster")),
        (
            json!({"path": "introspect"}),
            format!("{at}.path: must start with '/', without spaces or control characters"),
        ),
        (json!({"timeout_ms": 50}), format!("{at}.timeout_ms: must be between 100 and 60000")),
        (json!({"cache_ttl_seconds": 0}), format!("{at}.cache_ttl_seconds: must be between 1 and 86400")),
        (json!({"negative_cache_seconds": 0}), format!("{at}.negative_cache_seconds: must be between 1 and 86400")),
        (json!({"max_cached_tokens": 1}), format!("{at}.max_cached_tokens: must be between 16 and 1000000")),
        (json!({"max_response_bytes": 10}), format!("{at}.max_response_bytes: must be between 1024 and 1048576")),
        (json!({"tokens": "some"}), format!("{at}.tokens: must be \"opaque\" or \"all\"")),
        (json!({"auth": "mtls"}), format!("{at}.auth: must be \"basic\", \"post\" or \"bearer\"")),
        (json!({"client_id": null}), format!("{at}.client_id: is required with auth \"basic\" or \"post\"")),
        (json!({"client_secret": null}), format!("{at}: missing field `client_secret` (or `client_secret_env`)")),
        (
            json!({"client_secret_env": "SECRET"}),
            format!("{at}.client_secret_env: set client_secret or client_secret_env, not both"),
        ),
        (
            json!({"client_secret": null, "client_secret_env": "NOPE"}),
            format!("{at}.client_secret_env: environment variable NOPE is not set"),
        ),
    ];
    for (change, expected) in cases {
        assert_eq!(config_of(with(endpoint(), change.clone()), json!({})).err(), Some(expected), "{change}");
    }
    let keys = json!({"local_pem": include_str!("../../../tests/keys/rsa2048_public.pem")});
    let both = config_of(endpoint(), keys).err();
    assert_eq!(
        both.as_deref(),
        Some("jwt.providers[0].introspection: verifies tokens with keys or through introspection, not both")
    );
    let no_issuer =
        Config::from_json(json!({"jwt": {"providers": [{"name": "a", "local_pem": "x"}]}}).to_string().as_bytes());
    assert_eq!(no_issuer.err().map(|e| e.to_string()).as_deref(), Some("jwt.providers[0]: missing field `issuer`"));
    let two = json!({"jwt": {"providers": [provider_json(endpoint(), json!({})), provider_json(endpoint(), json!({"name": "b"}))]}});
    assert_eq!(
        Config::from_json(two.to_string().as_bytes()).err().map(|e| e.to_string()).as_deref(),
        Some("jwt.providers[1].introspection: reads tokens where jwt.providers[0] does: one introspection provider per place (from_*)")
    );
    let apart = json!({"jwt": {"providers": [provider_json(endpoint(), json!({})), provider_json(endpoint(), json!({"name": "b", "from_headers": [{"name": "x-token"}]}))]}});
    assert!(Config::from_json(apart.to_string().as_bytes()).is_ok());
    // The secret from the environment, never in an error.
    assert!(
        config_of(with(endpoint(), json!({"client_secret": null, "client_secret_env": "SECRET"})), json!({})).is_ok()
    );
}

#[test]
fn the_call_is_a_form_post_with_the_client_authenticated_as_configured() {
    let introspection = |auth: &str| {
        let config = config_of(with(endpoint(), json!({"auth": auth})), json!({})).unwrap();
        let provider = config.jwt_providers.into_iter().next().unwrap();
        provider.introspection.unwrap()
    };
    let token = "a+b/c=d&e f";
    let basic = introspection("basic");
    let (authorization, body) = basic.request(token);
    // RFC 6749 2.3.1: the id and secret form-encoded, then Basic.
    assert_eq!(authorization, Some(format!("Basic {}", STANDARD.encode("filter%20id:s3cr%26t")).as_str()));
    assert_eq!(String::from_utf8(body).unwrap(), "token=a%2Bb%2Fc%3Dd%26e%20f&token_type_hint=access_token");
    let post = introspection("post");
    let (authorization, body) = post.request("t");
    assert_eq!(authorization, None);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "token=t&token_type_hint=access_token&client_id=filter%20id&client_secret=s3cr%26t"
    );
    assert_eq!(introspection("bearer").request("t").0, Some("Bearer s3cr&t"));
    assert!(!format!("{:?}", basic).contains("s3cr"), "Debug never shows the secret");
}

fn judge(claims: Value, extra: Value) -> (Verdict, u64) {
    let config = config(extra);
    let provider = &config.jwt_providers[0];
    let introspection = provider.introspection.as_ref().unwrap();
    introspection.judge(provider, claims.as_object().unwrap(), T0, 60)
}

#[test]
fn an_answer_is_judged_as_a_jwts_claims() {
    let negative = T0 + 10_000;
    assert_eq!(judge(json!({"active": false, "sub": "x"}), json!({})), (Verdict::Inactive, negative));
    assert_eq!(judge(json!({"sub": "x"}), json!({})), (Verdict::Inactive, negative), "active missing");
    assert_eq!(judge(json!({"active": "true", "sub": "x"}), json!({})), (Verdict::Inactive, negative));
    let (verdict, until) = judge(
        json!({"active": true, "sub": "alice", "scope": "read write", "jti": "j-1", "iat": NOW - 100, "exp": NOW - 30, "dept": "ops"}),
        json!({"claim_to_headers": [{"claim": "dept", "header": "x-dept"}]}),
    );
    let Verdict::Active(answer) = verdict else { panic!("{verdict:?}") };
    assert_eq!(answer.principal, "alice");
    assert_eq!(answer.scopes, ["read", "write"]);
    assert_eq!(answer.headers, [("x-dept".to_string(), "ops".to_string())]);
    assert_eq!(answer.jti.as_deref(), Some("j-1"));
    assert_eq!(until, (NOW - 30 + 61) * 1000, "until exp (and the skew), within the cache's lifetime");
    let (_, until) = judge(json!({"active": true, "sub": "alice"}), json!({}));
    assert_eq!(until, T0 + 60_000, "no exp: the cache's lifetime");
    // The principal: principal_claim, else username, else client_id.
    for (claims, principal) in [
        (json!({"active": true, "username": "bob", "client_id": "c"}), "bob"),
        (json!({"active": true, "client_id": "svc"}), "svc"),
        (json!({"active": true, "sub": "s", "username": "bob"}), "s"),
    ] {
        assert!(matches!(judge(claims, json!({})).0, Verdict::Active(a) if a.principal == principal));
    }
    let refused = |claims: Value, extra: Value| judge(claims, extra).0;
    assert_eq!(refused(json!({"active": true}), json!({})), Verdict::Refused(Reason::JwtNoPrincipal));
    assert_eq!(
        refused(json!({"active": true, "sub": "a", "exp": NOW - 61}), json!({})),
        Verdict::Refused(Reason::JwtExpired)
    );
    assert_eq!(
        refused(json!({"active": true, "sub": "a", "nbf": NOW + 61}), json!({})),
        Verdict::Refused(Reason::JwtNotYetValid)
    );
    let audiences = json!({"audiences": ["orders"]});
    assert_eq!(
        refused(json!({"active": true, "sub": "a", "aud": "other"}), audiences.clone()),
        Verdict::Refused(Reason::JwtAudience)
    );
    assert!(matches!(
        refused(json!({"active": true, "sub": "a", "aud": ["x", "orders"]}), audiences),
        Verdict::Active(_)
    ));
    let issuer = json!({"issuer": "https://idp.example"});
    assert_eq!(
        refused(json!({"active": true, "sub": "a"}), issuer.clone()),
        Verdict::Refused(Reason::JwtUnknownIssuer)
    );
    assert!(matches!(
        refused(json!({"active": true, "sub": "a", "iss": "https://idp.example"}), issuer),
        Verdict::Active(_)
    ));
    assert_eq!(
        refused(json!({"active": true, "sub": "a"}), json!({"require_expiration": true})),
        Verdict::Refused(Reason::JwtNoExpiration)
    );
}

#[test]
fn an_unusable_answer_is_a_failure_never_a_refusal() {
    let config = config(json!({}));
    let provider = &config.jwt_providers[0];
    let introspection = provider.introspection.as_ref().unwrap();
    let failed = |response: FakeResponse| introspection.judge_response(provider, &response, T0, 60).err();
    assert!(failed(FakeResponse::none()).is_some());
    assert!(failed(FakeResponse::status(500)).is_some());
    assert!(failed(FakeResponse::status(401)).is_some());
    assert!(failed(FakeResponse::ok("<html>")).is_some());
    assert!(failed(FakeResponse::ok("[true]")).is_some());
    assert!(failed(FakeResponse::ok(format!("{{\"active\": true, \"pad\": \"{}\"}}", "x".repeat(70_000)))).is_some());
    assert_eq!(failed(FakeResponse::ok(r#"{"active": false}"#)), None);
}

/// One fake Envoy: its shared data and one plugin per worker.
struct Envoy {
    workers: Vec<(Plugin, FakeHost)>,
}

impl Envoy {
    fn new(workers: usize, extra: Value) -> Envoy {
        let shared = FakeShared::default();
        Envoy { workers: (0..workers).map(|_| (Plugin::new(config(extra.clone())), FakeHost::new(&shared))).collect() }
    }

    fn request(&mut self, worker: usize, context: u32, token: &str, now: u64) -> Step {
        let bearer = format!("Bearer {token}");
        let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/orders"), ("authorization", &bearer)]);
        let (plugin, host) = &mut self.workers[worker];
        plugin.on_request_headers(host, context, &RequestFacts::from_headers(&headers), now)
    }

    fn revisit(&mut self, worker: usize, context: u32, token: &str, now: u64) -> Step {
        let bearer = format!("Bearer {token}");
        let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/orders"), ("authorization", &bearer)]);
        let (plugin, host) = &mut self.workers[worker];
        plugin.revisit(host, context, &RequestFacts::from_headers(&headers), now)
    }

    /// Every POST made so far: (worker, call token, body).
    fn posts(&mut self) -> Vec<(usize, u32, String)> {
        let mut posts = Vec::new();
        for (i, (_, host)) in self.workers.iter_mut().enumerate() {
            for (token, _, _, body) in std::mem::take(&mut host.posts) {
                posts.push((i, token, String::from_utf8(body).unwrap()));
            }
        }
        posts
    }

    fn answer(&mut self, worker: usize, call: u32, response: FakeResponse, now: u64) {
        let (plugin, host) = &mut self.workers[worker];
        plugin.on_call_response(host, call, &response, now);
    }

    fn tick(&mut self, worker: usize, now: u64) -> Vec<u32> {
        let (plugin, host) = &mut self.workers[worker];
        plugin.on_tick(host, now)
    }
}

fn principal_of(step: &Step) -> Option<String> {
    let Step::Continue(go) = step else { return None };
    go.changes()?.set.iter().find(|(name, _)| name == "x-auth-principal").map(|(_, value)| value.clone())
}

fn status_of(step: &Step) -> Option<u16> {
    match step {
        Step::Answer(reply) => Some(reply.status),
        _ => None,
    }
}

#[test]
fn one_call_for_every_worker_then_every_worker_uses_the_answer() {
    let mut envoy = Envoy::new(3, json!({}));
    for worker in 0..3 {
        assert_eq!(envoy.request(worker, 1, "opaque-1", T0), Step::Hold, "worker {worker}");
    }
    let posts = envoy.posts();
    assert_eq!(posts.len(), 1, "one call for the whole Envoy: {posts:?}");
    let (caller, call, body) = posts[0].clone();
    assert_eq!((caller, body.as_str()), (0, "token=opaque-1&token_type_hint=access_token"));
    // Nothing is known yet: held streams stay held.
    assert!(envoy.tick(1, T0 + 20).is_empty());
    envoy.answer(caller, call, FakeResponse::ok(json!({"active": true, "sub": "alice"}).to_string()), T0 + 30);
    for worker in 0..3 {
        assert_eq!(envoy.tick(worker, T0 + 40), vec![1], "worker {worker} decides its stream again");
        assert_eq!(principal_of(&envoy.revisit(worker, 1, "opaque-1", T0 + 40)).as_deref(), Some("alice"));
    }
    // A new stream anywhere: no call, the stored answer.
    assert_eq!(principal_of(&envoy.request(2, 2, "opaque-1", T0 + 50)).as_deref(), Some("alice"));
    assert!(envoy.posts().is_empty());
    assert_eq!(envoy.workers[0].1.counter("introspection_calls.opaque"), 1);
    // A hit is an answer found without waiting: worker 2's new stream, not the held ones.
    assert_eq!(envoy.workers[1].1.counter("introspection_cache_hits.opaque"), 0);
    assert_eq!(envoy.workers[2].1.counter("introspection_cache_hits.opaque"), 1);
    // No shared-data key or value holds the token.
    let (_, host) = &envoy.workers[0];
    for key in host.shared.keys() {
        let (value, _) = crate::host_api::SharedData::get(&host.shared, &key).unwrap();
        assert!(!key.contains("opaque-1") && !value.windows(8).any(|w| w == b"opaque-1"), "{key}");
    }
}

#[test]
fn inactive_is_401_and_remembered_failures_are_503_and_never_401() {
    let mut envoy = Envoy::new(2, json!({}));
    assert_eq!(envoy.request(0, 1, "gone", T0), Step::Hold);
    let (_, call, _) = envoy.posts()[0].clone();
    envoy.answer(0, call, FakeResponse::ok(r#"{"active": false}"#), T0 + 10);
    assert_eq!(status_of(&envoy.request(1, 2, "gone", T0 + 20)), Some(401));
    assert!(envoy.posts().is_empty(), "inactive answers are remembered");
    // After negative_cache_seconds, asked again.
    assert_eq!(envoy.request(1, 3, "gone", T0 + 10_010), Step::Hold);
    assert_eq!(envoy.posts().len(), 1);

    for failure in [FakeResponse::none(), FakeResponse::status(500), FakeResponse::ok("garbage")] {
        let mut envoy = Envoy::new(2, json!({}));
        assert_eq!(envoy.request(0, 1, "maybe", T0), Step::Hold);
        assert_eq!(envoy.request(1, 1, "maybe", T0), Step::Hold);
        let (_, call, _) = envoy.posts()[0].clone();
        envoy.answer(0, call, failure, T0 + 10);
        for worker in 0..2 {
            assert_eq!(envoy.tick(worker, T0 + 20), vec![1]);
            let step = envoy.revisit(worker, 1, "maybe", T0 + 20);
            assert_eq!(status_of(&step), Some(503));
            let Step::Answer(reply) = step else { unreachable!() };
            assert!(reply.all_headers().iter().any(|(name, _)| name.eq_ignore_ascii_case("retry-after")));
        }
        assert_eq!(envoy.workers[0].1.counter("introspection_failures.opaque"), 1);
        // The failure stands a second, then the endpoint is asked again.
        assert_eq!(status_of(&envoy.request(1, 2, "maybe", T0 + 500)), Some(503));
        assert_eq!(envoy.request(1, 3, "maybe", T0 + 1_100), Step::Hold);
    }

    // A call that never answers: the request waits timeout_ms and a margin, then 503.
    let mut envoy = Envoy::new(1, json!({}));
    assert_eq!(envoy.request(0, 1, "slow", T0), Step::Hold);
    assert!(envoy.tick(0, T0 + 2_000).is_empty());
    assert_eq!(envoy.tick(0, T0 + 3_000), vec![1]);
    assert_eq!(status_of(&envoy.revisit(0, 1, "slow", T0 + 3_000)), Some(503));
    // Its lease was over too: that decision asked again (for the requests to come).
    assert_eq!(envoy.posts().len(), 2);
    assert!(envoy.tick(0, T0 + 6_000).is_empty());
    assert!(!envoy.workers[0].0.busy(), "a call never answered is given up");
}

#[test]
fn jws_tokens_go_to_introspection_only_when_it_takes_all_tokens() {
    let jws = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln";
    let mut envoy = Envoy::new(1, json!({}));
    assert_eq!(status_of(&envoy.request(0, 1, jws, T0)), Some(401), "an unknown issuer's JWS");
    assert!(envoy.posts().is_empty());
    let mut envoy = Envoy::new(1, json!({"introspection": with(endpoint(), json!({"tokens": "all"}))}));
    assert_eq!(envoy.request(0, 1, jws, T0), Step::Hold);
    assert_eq!(envoy.posts().len(), 1);
}
