//! The fetch protocol across VMs: several plugins (one per fake worker) share one
//! fake Envoy's shared data, tick, race, wait and fail, as Envoy's workers do.

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::pipeline::limits::LimitTable;
use crate::testing::{FakeHost, FakeResponse, FakeShared};
use crate::token_endpoint::MAX_BODY_BYTES;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const ISSUER: &str = "https://remote.example";
const T0: u64 = 1_800_000_000_000; // ms

fn rsa_jwk(kid: &str) -> Value {
    let all: Value = serde_json::from_str(include_str!("../../tests/keys/public_jwks.json")).unwrap();
    let mut jwk = all["rsa2048"].clone();
    jwk["kid"] = json!(kid);
    jwk
}

fn jwks(kids: &[&str]) -> String {
    json!({"keys": kids.iter().map(|kid| rsa_jwk(kid)).collect::<Vec<_>>()}).to_string()
}

fn token(kid: &str) -> String {
    let header = Header { kid: Some(kid.into()), ..Header::new(jsonwebtoken::Algorithm::RS256) };
    let key = EncodingKey::from_rsa_pem(include_bytes!("../../tests/keys/rsa2048_private.pem")).unwrap();
    let claims = json!({"iss": ISSUER, "sub": format!("user-{kid}"), "exp": T0 / 1000 + 3600});
    encode(&header, &claims, &key).unwrap()
}

fn config(fetch: Value) -> Config {
    let mut remote = json!({"cluster": "jwks", "authority": "idp", "path": "/jwks.json"});
    for (k, v) in fetch.as_object().unwrap() {
        remote[k] = v.clone();
    }
    let key = if remote.get("discovery").is_some() { "discovery" } else { "remote_jwks" };
    if let Some(obj) = remote.as_object_mut() {
        obj.remove("discovery");
    }
    let config = json!({
        "jwt": {"jwks_wait_ms": 2000, "providers": [{"name": "remote", "issuer": ISSUER, key: remote}]},
        "cache": {"max_entries": 0}
    });
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

/// One fake Envoy: its shared data and one plugin per worker.
struct Envoy {
    shared: FakeShared,
    workers: Vec<(Plugin, FakeHost)>,
}

impl Envoy {
    fn new(workers: usize, fetch: Value) -> Envoy {
        let shared = FakeShared::default();
        let workers = (0..workers).map(|_| (Plugin::new(config(fetch.clone())), FakeHost::new(&shared))).collect();
        Envoy { shared, workers }
    }

    /// Every worker ticks; returns, per worker, the held requests to decide again.
    fn tick(&mut self, now: u64) -> Vec<Vec<u32>> {
        self.workers.iter_mut().map(|(plugin, host)| plugin.on_tick(host, now)).collect()
    }

    /// One worker ticks alone.
    fn tick_one(&mut self, worker: usize, now: u64) -> Vec<u32> {
        let (plugin, host) = &mut self.workers[worker];
        plugin.on_tick(host, now)
    }

    /// Every call made so far, by worker.
    fn calls(&mut self) -> Vec<(usize, u32, crate::host_api::Target)> {
        let mut calls = Vec::new();
        for (i, (_, host)) in self.workers.iter_mut().enumerate() {
            calls.extend(host.take_calls().into_iter().map(|(token, target)| (i, token, target)));
        }
        calls
    }

    fn answer(&mut self, worker: usize, token: u32, response: FakeResponse, now: u64) {
        let (plugin, host) = &mut self.workers[worker];
        plugin.on_call_response(host, token, &response, now);
    }

    /// A new stream with a token signed by `kid`.
    fn request(&mut self, worker: usize, context: u32, kid: &str, now: u64) -> Step {
        let bearer = format!("Bearer {}", token(kid));
        let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/orders"), ("authorization", &bearer)]);
        let (plugin, host) = &mut self.workers[worker];
        plugin.on_request_headers(host, context, &RequestFacts::from_headers(&headers), now)
    }

    /// A held stream brought back by the tick (its headers read again, as the host does).
    fn revisit(&mut self, worker: usize, context: u32, kid: &str, now: u64) -> Step {
        let bearer = format!("Bearer {}", token(kid));
        let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/orders"), ("authorization", &bearer)]);
        let (plugin, host) = &mut self.workers[worker];
        plugin.revisit(host, context, &RequestFacts::from_headers(&headers), now)
    }

    /// The one call made since the last look, answered with `response`.
    fn answer_the_call(&mut self, response: FakeResponse, now: u64) {
        let calls = self.calls();
        assert_eq!(calls.len(), 1, "exactly one call for the whole Envoy: {calls:?}");
        let (worker, token, _) = calls[0].clone();
        self.answer(worker, token, response, now);
    }
}

fn is_allowed(step: &Step) -> bool {
    matches!(step, Step::Continue(go) if go.changes().is_some_and(|c| c.set.iter().any(|(n, _)| n == "x-auth-principal")))
}

fn reply_status(step: &Step) -> Option<u16> {
    match step {
        Step::Answer(reply) => Some(reply.status),
        _ => None,
    }
}

#[test]
fn one_fetch_for_every_worker_and_every_worker_gets_the_keys() {
    let mut envoy = Envoy::new(4, json!({}));
    envoy.tick(T0);
    let calls = envoy.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].2.path, "/jwks.json");
    envoy.tick(T0 + 20);
    assert!(envoy.calls().is_empty(), "the lease holds while the fetch is on its way");
    let (worker, token, _) = calls[0].clone();
    envoy.answer(worker, token, FakeResponse::ok(jwks(&["a"])), T0 + 30);
    envoy.tick(T0 + 40);
    for w in 0..4 {
        assert!(is_allowed(&envoy.request(w, 1, "a", T0 + 50)), "worker {w}");
    }
    assert!(envoy.calls().is_empty());
    assert_eq!(envoy.workers[worker].1.counter("jwks_fetch_success.remote"), 1);
}

#[test]
fn requests_held_before_the_first_keys_are_woken_on_every_worker() {
    let mut envoy = Envoy::new(3, json!({}));
    assert_eq!(envoy.request(1, 7, "a", T0), Step::Hold);
    assert_eq!(envoy.request(2, 8, "a", T0), Step::Hold);
    envoy.tick(T0);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a"])), T0 + 10);
    let ready = envoy.tick(T0 + 20);
    assert_eq!(ready[1], vec![7]);
    assert_eq!(ready[2], vec![8]);
    assert!(is_allowed(&envoy.revisit(1, 7, "a", T0 + 20)));
    assert!(is_allowed(&envoy.revisit(2, 8, "a", T0 + 20)));
    assert!(envoy.tick(T0 + 40).iter().all(Vec::is_empty), "nothing is held any more");
}

#[test]
fn a_held_request_gets_503_once_its_wait_is_over() {
    let mut envoy = Envoy::new(2, json!({}));
    assert_eq!(envoy.request(0, 5, "a", T0), Step::Hold);
    envoy.tick(T0);
    let _ = envoy.calls(); // never answered
    assert!(envoy.tick(T0 + 1000)[0].is_empty());
    assert_eq!(envoy.tick(T0 + 2000)[0], vec![5]);
    let step = envoy.revisit(0, 5, "a", T0 + 2000);
    let Step::Answer(reply) = step else { panic!("{step:?}") };
    assert_eq!((reply.status, reply.reason), (503, Reason::JwksUnavailable));
    assert!(reply.headers.contains(&("retry-after", "2".to_string())));
    assert_eq!(envoy.workers[0].1.counter("denied.jwks_unavailable"), 1);
}

#[test]
fn a_failed_first_fetch_is_retried_each_second_by_one_worker() {
    let mut envoy = Envoy::new(3, json!({}));
    envoy.tick(T0);
    envoy.answer_the_call(FakeResponse::status(500), T0 + 5);
    envoy.tick(T0 + 500);
    assert!(envoy.calls().is_empty(), "backing off");
    envoy.tick(T0 + 1010);
    envoy.answer_the_call(FakeResponse::none(), T0 + 1020);
    envoy.tick(T0 + 2030);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a"])), T0 + 2040);
    envoy.tick(T0 + 2050);
    assert!(is_allowed(&envoy.request(2, 1, "a", T0 + 2050)));
}

#[test]
fn refresh_failures_back_off_and_keep_the_last_good_keys() {
    let mut envoy = Envoy::new(2, json!({"refresh_seconds": 10}));
    envoy.tick(T0);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a"])), T0);
    let mut now = T0 + 10_000;
    let mut attempts = Vec::new();
    while now < T0 + 40_000 {
        envoy.tick(now);
        let calls = envoy.calls();
        assert!(calls.len() <= 1);
        if let Some((worker, token, _)) = calls.first().cloned() {
            attempts.push(now - T0);
            envoy.answer(worker, token, FakeResponse::ok(b"{not json".to_vec()), now);
        }
        assert!(is_allowed(&envoy.request(0, 1, "a", now)), "the last good keys at {now}");
        now += 250;
    }
    // Refresh due at 10 s, then 1 s, 2 s, 4 s, 8 s (capped at the 10 s refresh) apart.
    let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[..4], [1000, 2000, 4000, 8000], "{attempts:?}");
    assert!(envoy.workers.iter().map(|(_, h)| h.counter("jwks_fetch_failed.remote")).sum::<u64>() >= 5);
}

#[test]
fn an_unknown_kid_refetches_once_for_the_whole_envoy() {
    let mut envoy = Envoy::new(4, json!({}));
    envoy.tick(T0);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a"])), T0);
    envoy.tick(T0 + 10);
    // The key rotates at the endpoint; tokens signed with "b" reach every worker.
    for w in 0..4 {
        assert_eq!(envoy.request(w, 10 + w as u32, "b", T0 + 100), Step::Hold, "worker {w}");
    }
    envoy.tick(T0 + 120);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a", "b"])), T0 + 130);
    let ready = envoy.tick(T0 + 140);
    for (w, held) in ready.iter().enumerate() {
        assert_eq!(held, &vec![10 + w as u32]);
        assert!(is_allowed(&envoy.revisit(w, 10 + w as u32, "b", T0 + 140)), "worker {w}");
    }
    envoy.tick(T0 + 5000);
    assert!(envoy.calls().is_empty(), "no second refetch");
    // Another unknown kid within min_refetch_seconds: refused at once, no fetch.
    assert_eq!(reply_status(&envoy.request(0, 20, "c", T0 + 6000)), Some(401));
    envoy.tick(T0 + 6010);
    assert!(envoy.calls().is_empty());
}

#[test]
fn an_unknown_kid_while_the_endpoint_fails_is_a_503() {
    let mut envoy = Envoy::new(2, json!({}));
    envoy.tick(T0);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a"])), T0);
    assert_eq!(envoy.request(1, 3, "b", T0 + 100), Step::Hold);
    envoy.tick(T0 + 110);
    envoy.answer_the_call(FakeResponse::status(503), T0 + 120);
    assert_eq!(envoy.tick(T0 + 130)[1], vec![3]);
    assert_eq!(reply_status(&envoy.revisit(1, 3, "b", T0 + 130)), Some(503));
    assert!(is_allowed(&envoy.request(1, 4, "a", T0 + 130)), "known keys still work");
}

#[test]
fn a_worker_that_never_answers_loses_its_lease() {
    let mut envoy = Envoy::new(2, json!({"timeout_ms": 1000}));
    envoy.tick_one(0, T0);
    let first = envoy.calls();
    assert_eq!(first[0].0, 0);
    // Worker 0 is gone; its lease (two timeouts and a second) runs out, worker 1 fetches.
    envoy.tick_one(1, T0 + 2500);
    assert!(envoy.calls().is_empty());
    envoy.tick_one(1, T0 + 3001);
    let second = envoy.calls();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].0, 1);
}

#[test]
fn racing_workers_take_the_lease_once() {
    let mut envoy = Envoy::new(2, json!({}));
    // Worker 1 leases between worker 0's read of the record and its write.
    let shared = envoy.shared.clone();
    let other = std::rc::Rc::new(move |s: &FakeShared| {
        let mut plugin = Plugin::new(config(json!({})));
        let mut host = FakeHost::new(s);
        plugin.on_tick(&mut host, T0);
        assert_eq!(host.take_calls().len(), 1, "the other worker won");
    });
    shared.interfere_before_next_sets(1, other);
    envoy.tick(T0);
    assert!(envoy.calls().is_empty(), "the loser does not fetch");
}

#[test]
fn an_unchanged_document_is_not_stored_again() {
    let mut envoy = Envoy::new(2, json!({"refresh_seconds": 1}));
    envoy.tick(T0);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a"])), T0);
    let writes = envoy.shared.writes();
    envoy.tick(T0 + 1500);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a"])), T0 + 1500);
    // The fetch record changes (lease, success), the document does not.
    assert_eq!(envoy.shared.writes(), writes + 2);
}

#[test]
fn discovery_reads_the_jwks_uri_each_fetch() {
    let mut envoy = Envoy::new(1, json!({"discovery": true, "path": "/.well-known/openid-configuration"}));
    envoy.tick(T0);
    let calls = envoy.calls();
    assert_eq!(calls[0].2.path, "/.well-known/openid-configuration");
    let document = json!({"issuer": ISSUER, "jwks_uri": "https://idp/keys/v1"}).to_string();
    envoy.answer(0, calls[0].1, FakeResponse::ok(document), T0);
    let calls = envoy.calls();
    assert_eq!((calls[0].2.cluster.as_str(), calls[0].2.path.as_str()), ("jwks", "/keys/v1"));
    envoy.answer(0, calls[0].1, FakeResponse::ok(jwks(&["a"])), T0);
    assert!(is_allowed(&envoy.request(0, 1, "a", T0 + 1)));

    let elsewhere = json!({"jwks_uri": "https://keys.other/jwks"}).to_string();
    envoy.tick(T0 + 300_001);
    let calls = envoy.calls();
    envoy.answer(0, calls[0].1, FakeResponse::ok(elsewhere), T0 + 300_001);
    assert!(envoy.calls().is_empty(), "another host needs discovery.jwks_cluster");
    assert_eq!(envoy.workers[0].1.counter("jwks_fetch_failed.remote"), 1);
}

#[test]
fn oversized_and_keyless_documents_are_failures() {
    let mut envoy = Envoy::new(1, json!({"max_response_bytes": 1024}));
    envoy.tick(T0);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a", "b", "c"])), T0);
    envoy.tick(T0 + 1001);
    envoy.answer_the_call(FakeResponse::ok(json!({"keys": []}).to_string()), T0 + 1001);
    assert_eq!(envoy.workers[0].1.counter("jwks_fetch_failed.remote"), 2);
    assert_eq!(envoy.request(0, 1, "a", T0 + 1002), Step::Hold, "still no keys");
}

// ---- limits across workers ----

fn limited_envoy(workers: usize, limits: Value) -> (FakeShared, Vec<(Plugin, FakeHost)>) {
    let shared = FakeShared::default();
    let config = json!({
        "limits": limits,
        "api_keys": {"clients": [
            {"id": "a", "key_hash": format!("sha256:{}", hex(b"key-a"))},
            {"id": "b", "key_hash": format!("sha256:{}", hex(b"key-b")), "requests_per_hour": 2}
        ]}
    });
    let workers = (0..workers)
        .map(|_| (Plugin::new(Config::from_json(config.to_string().as_bytes()).unwrap()), FakeHost::new(&shared)))
        .collect();
    (shared, workers)
}

fn hex(key: &[u8]) -> String {
    crate::digest::sha256(key).iter().map(|b| format!("{b:02x}")).collect()
}

fn key_request(plugin: &mut Plugin, host: &mut FakeHost, context: u32, key: &str, now: u64) -> Step {
    let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/"), ("x-api-key", key)]);
    plugin.on_request_headers(host, context, &RequestFacts::from_headers(&headers), now)
}

#[test]
fn requests_per_hour_are_exact_across_workers_and_the_override_applies() {
    let (_, mut workers) = limited_envoy(4, json!({"requests_per_hour": 10, "max_concurrent": 0}));
    let mut allowed = 0;
    for i in 0..20u32 {
        let (plugin, host) = &mut workers[(i % 4) as usize];
        match key_request(plugin, host, i, "key-a", T0 + u64::from(i)) {
            Step::Continue(_) => allowed += 1,
            Step::Answer(reply) => {
                assert_eq!((reply.status, reply.reason), (429, Reason::RateLimited));
                assert!(reply.headers.iter().any(|(n, v)| *n == "retry-after" && v.parse::<u64>().unwrap() > 0));
                assert!(reply.headers.contains(&("ratelimit-policy", "\"hourly\";q=10;w=3600".to_string())));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(allowed, 10);
    // b's own limit (2) overrides the default.
    let results: Vec<bool> = (0..4u32)
        .map(|i| {
            let (plugin, host) = &mut workers[(i % 4) as usize];
            matches!(key_request(plugin, host, 100 + i, "key-b", T0 + 100), Step::Continue(_))
        })
        .collect();
    assert_eq!(results, [true, true, false, false]);
    let denied: u64 = workers.iter().map(|(_, h)| h.counter("denied.rate_limited")).sum();
    assert_eq!(denied, 12);
    let tracked: u64 = workers.iter().map(|(_, h)| h.counter("tracked_principals")).sum();
    assert_eq!(tracked, 2, "a and b");
}

#[test]
fn slots_in_flight_are_given_back_when_streams_end() {
    let (shared, mut workers) = limited_envoy(2, json!({"max_concurrent": 2, "expose_headers": true}));
    let (w0, w1) = workers.split_at_mut(1);
    let (p0, h0) = &mut w0[0];
    let (p1, h1) = &mut w1[0];
    assert!(matches!(key_request(p0, h0, 1, "key-a", T0), Step::Continue(_)));
    assert!(matches!(key_request(p1, h1, 2, "key-a", T0), Step::Continue(_)));
    let Step::Answer(reply) = key_request(p0, h0, 3, "key-a", T0) else { panic!() };
    assert_eq!((reply.status, reply.reason), (429, Reason::ConcurrencyLimited));
    // Whatever ended the stream (a reset, a timeout, another filter's reply), the slot comes back.
    h1.now_ns.set((T0 + 1) * 1_000_000);
    p1.on_stream_end(h1, 2);
    assert!(matches!(key_request(p0, h0, 4, "key-a", T0 + 1), Step::Continue(_)));
    for context in [1, 4, 3, 99] {
        h0.now_ns.set((T0 + 2) * 1_000_000);
        p0.on_stream_end(h0, context);
    }
    let table = LimitTable::new(10_000);
    assert_eq!(table.in_flight(&shared, LimitTable::key("api-key:a")), 0);
    // b (2 per hour, no concurrency limit from its own config: the default 2 applies) shows its quota.
    assert!(matches!(key_request(p0, h0, 5, "key-b", T0 + 3), Step::Continue(_)));
    assert_eq!(
        p0.response_headers(5),
        vec![
            ("ratelimit-policy", "\"hourly\";q=2;w=3600".to_string()),
            ("ratelimit", format!("\"hourly\";r=1;t={}", 3600 - (T0 + 3) / 1000 % 3600))
        ]
    );
    assert!(p0.response_headers(5).is_empty(), "once");
}

#[test]
fn a_request_held_through_a_fetch_that_missed_its_kid_gets_401_not_a_second_fetch() {
    let mut envoy = Envoy::new(2, json!({"refresh_seconds": 10}));
    envoy.tick(T0);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a"])), T0);
    // A refresh is on its way when a token with an unknown kid arrives: it waits for it.
    envoy.tick(T0 + 10_000);
    let refresh = envoy.calls();
    assert_eq!(refresh.len(), 1);
    assert_eq!(envoy.request(1, 9, "b", T0 + 10_010), Step::Hold);
    let (worker, token, _) = refresh[0].clone();
    envoy.answer(worker, token, FakeResponse::ok(jwks(&["a"])), T0 + 10_020);
    assert_eq!(envoy.tick(T0 + 10_030)[1], vec![9]);
    assert_eq!(reply_status(&envoy.revisit(1, 9, "b", T0 + 10_030)), Some(401));
    envoy.tick(T0 + 10_050);
    assert!(envoy.calls().is_empty(), "no refetch: the keys were fetched after it arrived");
}

/// A body the fake host has buffered.
struct FakeBody(Vec<u8>);

impl crate::host_api::RequestBody for FakeBody {
    fn read(&self, max_size: usize) -> Option<Vec<u8>> {
        Some(self.0[..self.0.len().min(max_size)].to_vec())
    }
}

fn token_endpoint_plugin() -> Plugin {
    let clients = json!([{"id": "reports", "key_hash": format!("sha256:{}", hex(b"key-1"))}]);
    let signing_key = include_str!("../../tests/keys/ed25519_private.pem");
    let config = json!({
        "api_keys": {"clients": clients},
        "token_endpoint": {"path": "/token", "issuer": "https://auth.local", "signing_key": signing_key},
    });
    Plugin::new(Config::from_json(config.to_string().as_bytes()).unwrap())
}

fn token_request(plugin: &mut Plugin, host: &mut FakeHost, context: u32, body: &[u8]) -> Step {
    let headers =
        crate::testing::headers(&[(":method", "POST"), (":path", "/token"), ("content-type", "application/json")]);
    assert_eq!(plugin.on_request_headers(host, context, &RequestFacts::from_headers(&headers), T0), Step::Hold);
    let half = body.len() / 2;
    assert_eq!(plugin.on_request_body(host, context, &FakeBody(body[..half].to_vec()), half, false, T0), Step::Hold);
    plugin.on_request_body(host, context, &FakeBody(body.to_vec()), body.len(), true, T0)
}

#[test]
fn a_token_request_reads_its_body_and_is_counted() {
    let mut plugin = token_endpoint_plugin();
    let mut host = FakeHost::new(&FakeShared::default());
    let Step::Answer(issued) = token_request(&mut plugin, &mut host, 1, br#"{"apiKey": "key-1"}"#) else { panic!() };
    assert_eq!(issued.status, 200);
    assert_eq!(reply_status(&token_request(&mut plugin, &mut host, 2, br#"{"apiKey": "key-2"}"#)), Some(401));
    assert_eq!((host.counter("token_issued"), host.counter("denied.token_invalid_client")), (1, 1));
    assert_eq!(host.counter("held"), 2, "a body read holds the stream");

    // Its token opens the other routes.
    let token = serde_json::from_str::<Value>(&issued.body()).unwrap()["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/orders"), ("authorization", &bearer)]);
    let step = plugin.on_request_headers(&mut host, 3, &RequestFacts::from_headers(&headers), T0 + 1000);
    assert!(is_allowed(&step), "{step:?}");
}

#[test]
fn a_token_request_ends_with_its_trailers_or_its_bound() {
    let mut plugin = token_endpoint_plugin();
    let mut host = FakeHost::new(&FakeShared::default());
    let headers =
        crate::testing::headers(&[(":method", "POST"), (":path", "/token"), ("content-type", "application/json")]);
    let body = FakeBody(br#"{"apiKey": "key-1"}"#.to_vec());
    assert_eq!(plugin.on_request_headers(&mut host, 1, &RequestFacts::from_headers(&headers), T0), Step::Hold);
    assert_eq!(plugin.on_request_body(&mut host, 1, &body, body.0.len(), false, T0), Step::Hold);
    assert_eq!(reply_status(&plugin.on_request_trailers(&mut host, 1, &body, T0)), Some(200));
    // Over its bound: answered 413 before the rest arrives, and the rest is never continued.
    let large = FakeBody(vec![b' '; MAX_BODY_BYTES + 100]);
    assert_eq!(plugin.on_request_headers(&mut host, 2, &RequestFacts::from_headers(&headers), T0), Step::Hold);
    assert_eq!(reply_status(&plugin.on_request_body(&mut host, 2, &large, large.0.len(), false, T0)), Some(413));
    assert_eq!(plugin.on_request_body(&mut host, 2, &large, large.0.len(), true, T0), Step::Hold);
    assert_eq!(plugin.on_request_trailers(&mut host, 2, &large, T0), Step::Hold);
}

#[test]
fn a_token_request_whose_body_never_comes_gets_408() {
    let mut plugin = token_endpoint_plugin();
    let mut host = FakeHost::new(&FakeShared::default());
    let headers = crate::testing::headers(&[(":method", "POST"), (":path", "/token")]);
    for context in [1, 2] {
        assert_eq!(
            plugin.on_request_headers(&mut host, context, &RequestFacts::from_headers(&headers), T0),
            Step::Hold
        );
    }
    assert!(plugin.busy(), "ticks fast while bodies are awaited");
    plugin.on_stream_end(&mut host, 2);
    assert!(plugin.on_tick(&mut host, T0 + 9_999).is_empty());
    assert_eq!(plugin.on_tick(&mut host, T0 + 10_000), vec![1]);
    let request = RequestFacts::from_headers(&headers);
    let Step::Answer(reply) = plugin.revisit(&mut host, 1, &request, T0 + 10_000) else { panic!() };
    assert_eq!((reply.status, reply.reason), (408, Reason::TokenBodyTimeout));
    assert!(plugin.on_tick(&mut host, T0 + 20_000).is_empty(), "answered once");
    assert_eq!(plugin.revisit(&mut host, 1, &request, T0 + 20_000), Step::Hold, "never answered twice");
    assert!(!plugin.busy());
    assert_eq!((host.counter("denied.token_body_timeout"), host.counter("held_timeout")), (1, 1));
}

// ---- the stream's fate: only a decision continues it ----

/// A forged POST with a body while the keys are being fetched: the body and its
/// trailers are held however they come; the stream goes on only once decided.
#[test]
fn a_held_stream_never_goes_on_with_its_body() {
    let mut envoy = Envoy::new(1, json!({}));
    assert_eq!(envoy.request(0, 1, "a", T0), Step::Hold, "no keys yet");
    let (plugin, host) = &mut envoy.workers[0];
    for (size, end) in [(10, false), (100_000, false), (100_010, true)] {
        assert_eq!(plugin.on_request_body(host, 1, &FakeBody(vec![b'x'; size]), size, end, T0 + 1), Step::Hold);
    }
    assert_eq!(plugin.on_request_trailers(host, 1, &FakeBody(Vec::new()), T0 + 2), Step::Hold);
    assert_eq!(host.counter("held"), 1);
    // The wait runs out: 503, and whatever comes after is held (the reply is on its way).
    assert_eq!(envoy.tick(T0 + 2000)[0], vec![1]);
    assert_eq!(reply_status(&envoy.revisit(0, 1, "a", T0 + 2000)), Some(503));
    let (plugin, host) = &mut envoy.workers[0];
    assert_eq!(plugin.on_request_body(host, 1, &FakeBody(vec![b'x'; 5]), 5, true, T0 + 2001), Step::Hold);
    assert_eq!(host.counter("held_timeout"), 1);
}

#[test]
fn a_held_stream_decided_allowed_goes_on_with_its_body() {
    let mut envoy = Envoy::new(1, json!({}));
    assert_eq!(envoy.request(0, 1, "a", T0), Step::Hold);
    let (plugin, host) = &mut envoy.workers[0];
    assert_eq!(plugin.on_request_body(host, 1, &FakeBody(vec![b'x'; 10]), 10, true, T0 + 1), Step::Hold);
    envoy.tick(T0 + 5);
    envoy.answer_the_call(FakeResponse::ok(jwks(&["a"])), T0 + 10);
    assert_eq!(envoy.tick(T0 + 20)[0], vec![1]);
    assert!(is_allowed(&envoy.revisit(0, 1, "a", T0 + 20)));
    // Chunks after the decision go on, with nothing more to change.
    let (plugin, host) = &mut envoy.workers[0];
    let Step::Continue(go) = plugin.on_request_body(host, 1, &FakeBody(vec![b'x'; 5]), 5, true, T0 + 21) else {
        panic!()
    };
    assert!(go.changes().is_none());
    assert!(matches!(plugin.on_request_trailers(host, 1, &FakeBody(Vec::new()), T0 + 21), Step::Continue(_)));
}

#[test]
fn a_stream_the_filter_never_saw_is_never_continued() {
    let mut envoy = Envoy::new(1, json!({}));
    let (plugin, host) = &mut envoy.workers[0];
    assert!(matches!(plugin.on_request_body(host, 7, &FakeBody(vec![1]), 1, true, T0), Step::Answer(_)));
    assert!(matches!(plugin.on_request_trailers(host, 7, &FakeBody(vec![1]), T0), Step::Answer(_)));
    let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/orders")]);
    assert_eq!(plugin.revisit(host, 7, &RequestFacts::from_headers(&headers), T0), Step::Hold, "nothing to revisit");
}

// ---- decisions name their principal ----

#[test]
fn refusals_after_authentication_and_issued_tokens_name_their_principal() {
    let key_hash = format!("sha256:{}", hex(b"key-1"));
    let config = json!({
        "filter_state": true,
        "api_keys": {"clients": [{"id": "reports", "key_hash": key_hash, "methods": ["GET"], "requests_per_hour": 1}]},
        "token_endpoint": {"path": "/token", "issuer": "https://auth.local",
                           "signing_key": include_str!("../../tests/keys/ed25519_private.pem")},
    });
    let mut plugin = Plugin::new(Config::from_json(config.to_string().as_bytes()).unwrap());
    let mut host = FakeHost::new(&FakeShared::default());
    let send = |plugin: &mut Plugin, host: &mut FakeHost, context: u32, method: &str, key: &str| {
        let headers = crate::testing::headers(&[(":method", method), (":path", "/r"), ("x-api-key", key)]);
        plugin.on_request_headers(host, context, &RequestFacts::from_headers(&headers), T0)
    };
    let state = |plugin: &Plugin, step: &Step| match step {
        Step::Answer(reply) => {
            let principal = reply.principal.as_ref().map(|p| p.qualified.as_str().to_string());
            (reply.status, principal, plugin.answer_state(reply))
        }
        other => panic!("{other:?}"),
    };
    let named = |status| {
        let state = [("wasm_authn.principal", "api-key:reports"), ("wasm_authn.method", "api-key")];
        (status, Some("api-key:reports".to_string()), state.map(|(k, v)| (k.to_string(), v.to_string())).to_vec())
    };
    let forbidden = send(&mut plugin, &mut host, 1, "DELETE", "key-1");
    assert_eq!(state(&plugin, &forbidden), named(403));
    assert!(matches!(send(&mut plugin, &mut host, 2, "GET", "key-1"), Step::Continue(_)));
    let limited = send(&mut plugin, &mut host, 3, "GET", "key-1");
    assert_eq!(state(&plugin, &limited), named(429));
    // Before authentication, nobody is named.
    let unknown = send(&mut plugin, &mut host, 4, "GET", "key-2");
    assert_eq!(state(&plugin, &unknown), (401, None, vec![]));
    // The token endpoint names the client it answers.
    let issued = token_request(&mut plugin, &mut host, 5, br#"{"apiKey": "key-1"}"#);
    assert_eq!(state(&plugin, &issued).1.as_deref(), Some("api-key:reports"));
    let refused = token_request(&mut plugin, &mut host, 6, br#"{"apiKey": "key-2"}"#);
    assert_eq!(state(&plugin, &refused), (401, None, vec![]));
}

// ---- the client address is read only when a decision needs it ----

/// Requests from `source`, counting how often the plugin reads it (a host property call).
fn reads_of_source(config: Value, requests: &[(&str, &str)]) -> Vec<u32> {
    let mut plugin = Plugin::new(Config::from_json(config.to_string().as_bytes()).unwrap());
    assert!(plugin.needs_source_address());
    let mut host = FakeHost::new(&FakeShared::default());
    let reads = std::cell::Cell::new(0);
    let mut counts = Vec::new();
    for (context, (path, authorization)) in (1..).zip(requests) {
        // As the host adapter reads it: once per request at most.
        let source = std::cell::OnceCell::new();
        let read = || {
            *source.get_or_init(|| {
                reads.set(reads.get() + 1);
                Some("192.0.2.7".parse().unwrap())
            })
        };
        let headers = crate::testing::headers(&[(":method", "GET"), (":path", path), ("authorization", authorization)]);
        let mut request = RequestFacts::from_headers(&headers);
        request.source = crate::request::Source::Lazy(&read);
        reads.set(0);
        let _ = plugin.on_request_headers(&mut host, context, &request, T0);
        counts.push(reads.get());
    }
    counts
}

#[test]
fn the_source_is_read_for_a_failed_basic_attempt_or_a_network_only() {
    let basic = |user: &str, password: &str| format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    let right = basic("alice", "pw");
    let wrong: Vec<String> = (0..2).map(|i| basic("alice", &format!("nope-{i}"))).collect();
    let users = json!({"users": [{"name": "alice", "password_hash": format!("sha256:{}", hex(b"pw"))}],
                       "failure_limit": {"max_failures": 2}});
    let requests = [("/", right.as_str()), ("/", &wrong[0]), ("/", &right), ("/", &wrong[1]), ("/", &right)];
    // Each failure is counted per source (one read); once this source's failures are at
    // the limit, its requests read it to find them (429, whatever the password).
    assert_eq!(reads_of_source(json!({"basic": users}), &requests), [0, 1, 0, 1, 1]);
    // A network rule reads it on each request it applies to, once.
    let networks = json!({"basic": users, "trusted_networks": ["192.0.2.0/24"], "bypass": [{"path_prefix": "/open"}]});
    assert_eq!(reads_of_source(networks, &[("/", &right), ("/", &wrong[0]), ("/open", "")]), [1, 1, 0]);
}

// ---- an API key in a form field ----

fn form_plugin(forward: bool) -> Plugin {
    let config = json!({
        "forward_credentials": forward,
        "api_keys": {"form_field": "@authtoken", "clients": [{"id": "arc", "key_hash": format!("sha256:{}", hex(b"k 1"))}]},
    });
    Plugin::new(Config::from_json(config.to_string().as_bytes()).unwrap())
}

/// A form POST whose body comes in two chunks; the step of the last one.
fn form_post(plugin: &mut Plugin, host: &mut FakeHost, context: u32, content_type: &str, body: &[u8]) -> Step {
    let length = body.len().to_string();
    let headers = crate::testing::headers(&[
        (":method", "POST"),
        (":path", "/arc"),
        ("content-type", content_type),
        ("content-length", &length),
    ]);
    let first = plugin.on_request_headers(host, context, &RequestFacts::from_headers(&headers), T0);
    if first != Step::Hold {
        return first;
    }
    let half = body.len() / 2;
    assert_eq!(plugin.on_request_body(host, context, &FakeBody(body[..half].to_vec()), half, false, T0), Step::Hold);
    plugin.on_request_body(host, context, &FakeBody(body.to_vec()), body.len(), true, T0 + 5)
}

#[test]
fn an_api_key_in_a_form_field_is_read_from_the_body_and_removed() {
    let mut plugin = form_plugin(false);
    let mut host = FakeHost::new(&FakeShared::default());
    let form = "a=1&%40authtoken=k+1&b=%26";
    let Step::Continue(go) =
        form_post(&mut plugin, &mut host, 1, "application/x-www-form-urlencoded; charset=utf-8", form.as_bytes())
    else {
        panic!()
    };
    let changes = go.changes().unwrap();
    assert!(changes.set.contains(&("x-auth-principal".into(), "arc".into())));
    assert_eq!(changes.body, Some(crate::pipeline::shape::NewBody { replaces: form.len(), body: "a=1&b=%26".into() }));
    assert!(changes.set.contains(&("content-length".into(), "9".into())));
    assert_eq!(host.counter("held"), 1);
    // A wrong key, no key, or a key given twice: refused, never continued.
    for (context, body) in [(2, "%40authtoken=nope"), (3, "a=1"), (4, "@authtoken=k+1&%40authtoken=k+1")] {
        let step = form_post(&mut plugin, &mut host, context, "application/x-www-form-urlencoded", body.as_bytes());
        assert_eq!(reply_status(&step), Some(401), "{body}: {step:?}");
    }
    // Not a form: the body is not read.
    let step = form_post(&mut plugin, &mut host, 5, "text/plain", b"@authtoken=k+1");
    assert_eq!(reply_status(&step), Some(401));
    // Past the bound: 413 as soon as it is over.
    let large = vec![b'a'; crate::pipeline::stream::MAX_FORM_BYTES + 1];
    let step = form_post(&mut plugin, &mut host, 6, "application/x-www-form-urlencoded", &large);
    let Step::Answer(reply) = step else { panic!("{step:?}") };
    assert_eq!((reply.status, reply.reason), (413, Reason::FormTooLarge));
    // Forwarded as it came with forward_credentials.
    let mut plugin = form_plugin(true);
    let Step::Continue(go) = form_post(&mut plugin, &mut host, 7, "application/x-www-form-urlencoded", form.as_bytes())
    else {
        panic!()
    };
    assert_eq!(go.changes().unwrap().body, None);
}

#[test]
fn a_form_read_for_its_key_ends_with_trailers_or_its_deadline() {
    let mut plugin = form_plugin(false);
    let mut host = FakeHost::new(&FakeShared::default());
    let headers = crate::testing::headers(&[
        (":method", "POST"),
        (":path", "/arc"),
        ("content-type", "application/x-www-form-urlencoded"),
    ]);
    let request = RequestFacts::from_headers(&headers);
    assert_eq!(plugin.on_request_headers(&mut host, 1, &request, T0), Step::Hold);
    let body = FakeBody(b"@authtoken=k%201".to_vec());
    assert_eq!(plugin.on_request_body(&mut host, 1, &body, 16, false, T0), Step::Hold);
    let Step::Continue(go) = plugin.on_request_trailers(&mut host, 1, &body, T0) else { panic!() };
    assert_eq!(go.changes().unwrap().body.as_ref().unwrap().body, "");
    // Its body never comes: 408 at the deadline, never continued.
    assert_eq!(plugin.on_request_headers(&mut host, 2, &request, T0), Step::Hold);
    assert_eq!(plugin.on_tick(&mut host, T0 + 10_000), vec![2]);
    let Step::Answer(reply) = plugin.revisit(&mut host, 2, &request, T0 + 10_000) else { panic!() };
    assert_eq!((reply.status, reply.reason), (408, Reason::FormTimeout));
    // No body at all (the headers ended the request): decided at once.
    let ended = RequestFacts { body: Some(""), ..request };
    assert_eq!(reply_status(&plugin.on_request_headers(&mut host, 3, &ended, T0)), Some(401));
}

#[test]
fn a_token_request_the_headers_ended_is_answered_at_once() {
    let mut plugin = token_endpoint_plugin();
    let mut host = FakeHost::new(&FakeShared::default());
    let headers = crate::testing::headers(&[(":method", "POST"), (":path", "/token"), ("x-api-key", "key-1")]);
    let ended = RequestFacts { body: Some(""), ..RequestFacts::from_headers(&headers) };
    assert_eq!(reply_status(&plugin.on_request_headers(&mut host, 1, &ended, T0)), Some(200));
    assert_eq!(host.counter("held"), 0, "nothing to wait for");
}
