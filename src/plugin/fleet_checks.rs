//! The fleet's checks (`limits.scope: "fleet"`): a request this Envoy decided is held
//! while the rate-limit engine is asked about it (`crate::fleet::engine`), and carried
//! out on the answer. Decided once, here: an allow pending the engine continues with
//! the changes it was decided with (the local one-time record already says "seen": a
//! second decision would refuse it), a refusal pending it is answered.
//!
//! - a one-time keypair token allowed here: its use is counted; over the limit (used
//!   anywhere before) it is refused 401 `token_replayed`;
//! - a Basic user's correct password: the name's failures are checked (not counted);
//!   at their limit, 429 `basic_throttled` (the owner's right password included);
//! - a refused password (401 `basic_invalid`): the failure is counted; past the limit,
//!   429 `basic_throttled` instead.
//!
//! No answer in time (the engine or its storage down): `engine_failure_mode_deny` false
//! allows on this Envoy's records alone (`engine.failure_mode_allowed`), true answers 503
//! `limits_unavailable`; a refused password is refused either way. Counted:
//! `engine.ok`, `engine.over_limit`, `engine.error`.
//!
//! The stream waits as one held for keys does (`Awaited::Engine`, its deadline the
//! call's timeout and a second); the answer comes to the stream's own context: it is
//! recorded, and the stream is revisited (`Plugin::revisit`).

use std::rc::Rc;

use super::{Host, Plugin};
use crate::fleet::engine::{self, Answer, Check};
use crate::host_api::Outcome;
use crate::jwt::ProviderKind;
use crate::pipeline::credential::Credential;
use crate::pipeline::shape::UpstreamChanges;
use crate::pipeline::stream::{Awaited, Step, Waiting};
use crate::principal::Principal;
use crate::reason::Reason;
use crate::reply::LocalReply;
use crate::request::RequestFacts;

/// A question to the engine on its way, for one held stream.
pub(super) struct EngineCall {
    token: u32,
    context_id: u32,
    /// A one-time token's record here (its key): an answer over the limit means it was
    /// used before; none in time, with `engine_failure_mode_deny`, gives its use back.
    /// None: a Basic user's name (over the limit: locked).
    one_time: Option<u64>,
    /// What was decided here: allowed with these changes (for this principal), or this refusal.
    decided: Result<(UpstreamChanges, Rc<Principal>), LocalReply>,
    /// The answer, once it came.
    answer: Option<Answer>,
}

/// How long a stream waits for the engine: the call's own timeout (Envoy answers it
/// then with a gRPC error), and a second more should no answer come at all.
const WAIT_MS: u64 = engine::TIMEOUT_MS + 1000;

impl Plugin {
    /// What the engine must confirm before this allow: None without an engine, or for a
    /// principal it has nothing to say about.
    pub(super) fn engine_check_for(&self, principal: &Principal) -> Option<Check> {
        self.config.engine.as_ref()?;
        let one_time = |name: &str| {
            self.config
                .jwt_providers
                .iter()
                .any(|p| p.name == name && p.kind == ProviderKind::Keypair { one_time: true })
        };
        engine::confirmation(principal, one_time)
    }

    /// The failure the engine must count before this refusal: a Basic password refused.
    pub(super) fn engine_failure_of(&self, reply: &LocalReply, request: &RequestFacts) -> Option<Check> {
        self.config.engine.as_ref()?;
        if reply.reason != Reason::BasicInvalid {
            return None;
        }
        let config = &self.config;
        match crate::pipeline::credential::extract(request, &config.api_keys, &config.token_locations) {
            Ok(Some(Credential::Basic { user, .. })) => Some(Check::Failure { user }),
            _ => None,
        }
    }

    /// Hold a decided stream (an allow with its changes, or a refusal) and ask the engine.
    pub(super) fn ask_engine(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        request: &RequestFacts,
        check: Check,
        decided: Result<(UpstreamChanges, Rc<Principal>), LocalReply>,
        now_ms: u64,
    ) -> Step {
        let Some(message) = self.config.engine.as_ref().map(|settings| check.request(&settings.domain)) else {
            return Step::Hold;
        };
        let token = host.should_rate_limit(engine::CLUSTER, &message, engine::TIMEOUT_MS);
        self.engine_calls.push(EngineCall {
            token: token.unwrap_or(0),
            context_id,
            one_time: match &check {
                Check::OneTime { keypair, jti } => Some(crate::pipeline::authenticate::one_time_record(keypair, jti)),
                _ => None,
            },
            decided,
            // Not made (an unknown cluster): as if the engine were down.
            answer: token.is_none().then_some(Answer::Failed),
        });
        // A wait of its own, whatever the stream waited for before it was decided.
        self.log_decision(context_id, Some(request), "decided; held for the rate-limit engine", now_ms);
        let deadline_ms = now_ms + WAIT_MS;
        let waiting = Waiting { awaited: Awaited::Engine, since_ms: now_ms, deadline_ms, events_seen: 0 };
        match self.streams.wait(context_id, waiting) {
            Step::Hold => self.engine_decide(host, context_id, now_ms, false),
            step => step,
        }
    }

    /// The engine answered a call (`grpc_status` 0 and its message, or a gRPC error):
    /// recorded for the stream held for it, which the host revisits (its context, returned).
    pub fn on_engine_answer(&mut self, token: u32, grpc_status: u32, message: &[u8]) -> Option<u32> {
        let call = self.engine_calls.iter_mut().find(|call| call.token == token && call.answer.is_none())?;
        call.answer = Some(engine::answer(grpc_status, message));
        Some(call.context_id)
    }

    /// A stream held for the engine: carried out as decided once the engine agrees, or
    /// refused; without an answer (`overdue`, or the call failed), as `failure_mode_deny` says.
    pub(super) fn engine_decide(&mut self, host: &mut dyn Host, context_id: u32, now_ms: u64, overdue: bool) -> Step {
        let due = |call: &EngineCall| call.context_id == context_id && (overdue || call.answer.is_some());
        let Some(i) = self.engine_calls.iter().position(due) else { return Step::Hold };
        let EngineCall { one_time, decided, answer, .. } = self.engine_calls.swap_remove(i);
        let answer = answer.unwrap_or(Answer::Failed);
        host.increment(match answer {
            Answer::Ok => "engine.ok",
            Answer::OverLimit => "engine.over_limit",
            Answer::Failed => "engine.error",
        });
        let (changes, principal) = match decided {
            // A refused password stays refused; past its name's limit, 429.
            Err(refusal) if answer != Answer::OverLimit => return self.answer(host, context_id, None, refusal),
            Err(_) => return self.answer(host, context_id, None, self.over_limit(one_time.is_some())),
            Ok(allowed) => allowed,
        };
        let deny = self.config.engine.as_ref().is_some_and(|settings| settings.failure_mode_deny);
        let reply = match answer {
            Answer::OverLimit => self.over_limit(one_time.is_some()),
            Answer::Failed if deny => {
                // The 503 invites a retry: this Envoy's record of the token, written before
                // the engine was asked, must not refuse it (the engine still counts its use).
                if let Some(record) = one_time {
                    self.config.replay_table.give_back_once(host, record, now_ms / 1000);
                }
                LocalReply::try_later(Reason::LimitsUnavailable, 1)
            }
            Answer::Ok | Answer::Failed => {
                if answer == Answer::Failed {
                    host.increment("engine.failure_mode_allowed");
                }
                host.count_soon(Outcome::Allowed);
                return self.streams.allow(context_id, changes);
            }
        };
        self.answer(host, context_id, None, reply.to(&principal))
    }

    /// The engine's "over the limit": a one-time token used before, or a name whose
    /// failures reached their limit.
    #[inline(never)]
    fn over_limit(&self, one_time: bool) -> LocalReply {
        if one_time {
            let challenges = self.config.challenges(&crate::pipeline::route::Require::Any);
            return LocalReply::invalid_token(challenges, "token already used", Reason::TokenReplayed);
        }
        LocalReply::try_later(Reason::BasicThrottled, self.config.failure_limit.window_seconds)
    }

    /// A stream ended: its question is not waited for (Envoy cancels the call).
    pub(super) fn engine_forget(&mut self, context_id: u32) {
        // One question at most per stream.
        if let Some(i) = self.engine_calls.iter().position(|call| call.context_id == context_id) {
            self.engine_calls.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::{json, Value};

    use super::*;
    use crate::config::Config;
    use crate::pipeline::stream::Go;
    use crate::testing::{FakeHost, FakeShared};

    const T0: u64 = 1_800_000_000_000; // ms, the fake host's clock
    /// sha256 of "secret".
    const SECRET: &str = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    const EC_PRIVATE: &str = include_str!("../../tests/keys/ec_p256_private.pem");
    const EC_PUBLIC: &str = include_str!("../../tests/keys/ec_p256_public.pem");

    /// A plugin with scope "fleet" and these `limits.engine_*` settings.
    fn plugin(engine: Value) -> Plugin {
        let mut limits = json!({"scope": "fleet"});
        for (key, value) in engine.as_object().unwrap() {
            limits[format!("engine_{key}")] = value.clone();
        }
        let config = json!({
            "limits": limits,
            "basic": {"users": [{"name": "alice", "password_hash": SECRET}],
                      "failure_limit": {"max_failures": 5, "max_failures_per_name": 5, "window_seconds": 600}},
            "keypairs": [{"id": "kp", "public_key": EC_PUBLIC, "max_lifetime_seconds": 60, "one_time": true}],
        });
        Plugin::new(Config::from_json(config.to_string().as_bytes()).unwrap())
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    fn one_time(jti: &str) -> String {
        let claims = json!({"iss": "kp", "iat": T0 / 1000, "exp": T0 / 1000 + 30, "jti": jti});
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        format!("Bearer {}", encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap())
    }

    fn send(plugin: &mut Plugin, host: &mut FakeHost, context: u32, authorization: &str) -> Step {
        let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/r"), ("authorization", authorization)]);
        plugin.on_request_headers(host, context, &RequestFacts::from_headers(&headers), T0)
    }

    /// The last question to the engine: its token and message.
    fn asked(host: &mut FakeHost) -> (u32, Vec<u8>) {
        let (token, cluster, message) = host.engine_calls.pop().expect("the engine was asked");
        assert_eq!(cluster, "ratelimit");
        (token, message)
    }

    fn status(step: &Step) -> u16 {
        match step {
            Step::Answer(reply) => reply.status,
            other => panic!("{other:?}"),
        }
    }

    const OK: &[u8] = &[0x08, 0x01];
    const OVER: &[u8] = &[0x08, 0x02];

    /// The engine answers `token`, and the host revisits the stream held for it.
    fn answered(
        plugin: &mut Plugin,
        host: &mut FakeHost,
        context: u32,
        token: u32,
        status: u32,
        message: &[u8],
    ) -> Step {
        plugin.on_engine_answer(token, status, message);
        let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/r")]);
        plugin.revisit(host, context, &RequestFacts::from_headers(&headers), T0)
    }

    #[test]
    fn a_correct_password_is_held_for_the_check_then_goes_on_with_its_changes() {
        let mut plugin = plugin(json!({}));
        let mut host = FakeHost::new(&FakeShared::default());
        assert_eq!(send(&mut plugin, &mut host, 1, &basic("alice", "secret")), Step::Hold);
        let (token, message) = asked(&mut host);
        assert_eq!(message, Check::Locked { user: "alice".into() }.request("wasm_authn"));
        // Its body waits with it.
        assert_eq!(plugin.on_request_body(&mut host, 1, &&b""[..], 5, true, T0), Step::Hold);
        let step = answered(&mut plugin, &mut host, 1, token, 0, OK);
        let Step::Continue(go) = &step else { panic!("{step:?}") };
        let changes = Go::changes(go).expect("the changes it was decided with");
        assert!(changes.set.iter().any(|(name, value)| name == "x-auth-principal" && value == "alice"), "{changes:?}");
        assert_eq!(host.counter("engine.ok"), 1);
        // Once: a late duplicate answer changes nothing.
        assert_eq!(answered(&mut plugin, &mut host, 1, token, 0, OVER), Step::Hold);
        let Step::Continue(go) = plugin.on_request_body(&mut host, 1, &&b""[..], 5, true, T0) else { panic!() };
        assert!(go.changes().is_none());
    }

    #[test]
    fn a_locked_name_refuses_the_right_password_and_a_counted_failure_past_the_limit_is_429() {
        let mut plugin = plugin(json!({}));
        let mut host = FakeHost::new(&FakeShared::default());
        let _ = send(&mut plugin, &mut host, 1, &basic("alice", "secret"));
        let (token, _) = asked(&mut host);
        let step = answered(&mut plugin, &mut host, 1, token, 0, OVER);
        assert_eq!(status(&step), 429);
        let Step::Answer(reply) = &step else { unreachable!() };
        assert_eq!(reply.reason, Reason::BasicThrottled);
        assert_eq!(reply.principal.as_ref().map(|p| p.id.as_str()), Some("alice"));
        // A wrong password (any name: the engine counts unknown ones too) is held while it is counted.
        for (context, user, answer, expected) in [(2, "alice", OK, 401), (3, "mallory", OVER, 429)] {
            assert_eq!(send(&mut plugin, &mut host, context, &basic(user, "guess")), Step::Hold);
            let (token, message) = asked(&mut host);
            assert_eq!(message, Check::Failure { user: user.into() }.request("wasm_authn"));
            assert_eq!(status(&answered(&mut plugin, &mut host, context, token, 0, answer)), expected);
        }
        assert_eq!(host.counter("engine.over_limit"), 2);
    }

    #[test]
    fn a_one_time_token_used_elsewhere_is_refused() {
        let mut plugin = plugin(json!({"domain": "d"}));
        let mut host = FakeHost::new(&FakeShared::default());
        assert_eq!(send(&mut plugin, &mut host, 1, &one_time("j-1")), Step::Hold);
        let (token, message) = asked(&mut host);
        assert_eq!(message, Check::OneTime { keypair: "kp".into(), jti: "j-1".into() }.request("d"));
        assert!(matches!(answered(&mut plugin, &mut host, 1, token, 0, OK), Step::Continue(_)));
        // Another token, which another Envoy saw first.
        assert_eq!(send(&mut plugin, &mut host, 2, &one_time("j-2")), Step::Hold);
        let (token, _) = asked(&mut host);
        let step = answered(&mut plugin, &mut host, 2, token, 0, OVER);
        let Step::Answer(reply) = &step else { panic!("{step:?}") };
        assert_eq!((reply.status, reply.reason), (401, Reason::TokenReplayed));
        // This Envoy's own record still answers at once: no question for a replay seen here.
        assert_eq!(status(&send(&mut plugin, &mut host, 3, &one_time("j-1"))), 401);
        assert!(host.engine_calls.is_empty());
    }

    #[test]
    fn without_an_answer_an_allow_fails_open_or_closed_and_a_refusal_stays_one() {
        for deny in [false, true] {
            let mut plugin = plugin(json!({"failure_mode_deny": deny}));
            let mut host = FakeHost::new(&FakeShared::default());
            // The engine down: gRPC status 14, no message.
            let _ = send(&mut plugin, &mut host, 1, &basic("alice", "secret"));
            let (token, _) = asked(&mut host);
            let step = answered(&mut plugin, &mut host, 1, token, 14, &[]);
            if deny {
                let Step::Answer(reply) = &step else { panic!("{step:?}") };
                assert_eq!((reply.status, reply.reason), (503, Reason::LimitsUnavailable));
            } else {
                assert!(matches!(step, Step::Continue(_)), "{step:?}");
            }
            // No answer at all: the tick brings the stream back past the call's timeout.
            let _ = send(&mut plugin, &mut host, 2, &one_time("j-3"));
            let _ = asked(&mut host);
            assert!(plugin.on_tick(&mut host, T0 + 250).is_empty());
            let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/r")]);
            assert_eq!(plugin.revisit(&mut host, 2, &RequestFacts::from_headers(&headers), T0 + 250), Step::Hold);
            assert_eq!(plugin.on_tick(&mut host, T0 + WAIT_MS), vec![2]);
            let step = plugin.revisit(&mut host, 2, &RequestFacts::from_headers(&headers), T0 + WAIT_MS);
            assert_eq!(matches!(step, Step::Continue(_)), !deny, "{step:?}");
            // A refused password is refused however the engine fares.
            let _ = send(&mut plugin, &mut host, 3, &basic("alice", "guess"));
            let (token, _) = asked(&mut host);
            assert_eq!(status(&answered(&mut plugin, &mut host, 3, token, 4, &[])), 401);
            // The call cannot even be made (unknown cluster).
            host.refuse_calls = true;
            let step = send(&mut plugin, &mut host, 4, &basic("alice", "secret"));
            assert_eq!(matches!(step, Step::Continue(_)), !deny, "{step:?}");
            assert_eq!(host.counter("engine.error"), 4);
            assert_eq!(host.counter("engine.failure_mode_allowed"), if deny { 0 } else { 3 });
        }
    }

    #[test]
    fn a_stream_gone_while_held_is_forgotten() {
        let mut plugin = plugin(json!({}));
        let mut host = FakeHost::new(&FakeShared::default());
        let _ = send(&mut plugin, &mut host, 1, &basic("alice", "secret"));
        let (token, _) = asked(&mut host);
        plugin.on_stream_end(&mut host, 1);
        assert!(!plugin.busy());
        assert_eq!(answered(&mut plugin, &mut host, 1, token, 0, OK), Step::Hold);
    }

    #[test]
    fn a_one_time_token_answered_503_for_want_of_the_engine_may_be_retried_here() {
        for deny in [true, false] {
            let mut plugin = plugin(json!({"failure_mode_deny": deny}));
            let mut host = FakeHost::new(&FakeShared::default());
            assert_eq!(send(&mut plugin, &mut host, 1, &one_time("j-503")), Step::Hold);
            let (token, _) = asked(&mut host);
            let step = answered(&mut plugin, &mut host, 1, token, 14, &[]);
            if deny {
                // The 503 says "try later": the retry is asked about again, not refused as a replay.
                assert_eq!(status(&step), 503);
                assert_eq!(send(&mut plugin, &mut host, 2, &one_time("j-503")), Step::Hold);
                let (token, _) = asked(&mut host);
                assert!(matches!(answered(&mut plugin, &mut host, 2, token, 0, OK), Step::Continue(_)));
            } else {
                // Allowed on this Envoy's records: used, and so a replay here.
                assert!(matches!(step, Step::Continue(_)), "{step:?}");
            }
            assert_eq!(status(&send(&mut plugin, &mut host, 3, &one_time("j-503"))), 401);
            assert!(host.engine_calls.is_empty());
        }
    }

    #[test]
    fn a_one_time_token_held_for_the_revocation_list_is_not_spent_by_the_wait() {
        // Before the remote list's first fetch a token waits for it: deciding it again (at
        // once, after a sync; on each tick) must not find its own first use a replay.
        let config = json!({
            "limits": {"scope": "fleet"},
            "revocation": {"remote": {"cluster": "rev", "authority": "rev", "path": "/revoked.json"}},
            "keypairs": [{"id": "kp", "public_key": EC_PUBLIC, "max_lifetime_seconds": 60, "one_time": true}],
        });
        let mut plugin = Plugin::new(Config::from_json(config.to_string().as_bytes()).unwrap());
        let mut host = FakeHost::new(&FakeShared::default());
        let token = one_time("j-9");
        assert_eq!(send(&mut plugin, &mut host, 1, &token), Step::Hold);
        let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/r"), ("authorization", &token)]);
        assert_eq!(plugin.revisit(&mut host, 1, &RequestFacts::from_headers(&headers), T0 + 100), Step::Hold);
        assert!(host.engine_calls.is_empty(), "not decided yet");
    }

    #[test]
    fn a_one_time_token_whose_tree_waits_for_the_client_store_is_not_spent_by_the_wait() {
        let config = json!({
            "api_keys": {"remote": {"cluster": "keys", "authority": "keys", "path": "/clients.json"}},
            "keypairs": [{"id": "kp", "public_key": EC_PUBLIC, "max_lifetime_seconds": 60, "one_time": true}],
            "rules": [{"match": {"path_prefix": "/"}, "require": {"all": ["keypair", "api-key"]}}],
        });
        let mut plugin = Plugin::new(Config::from_json(config.to_string().as_bytes()).unwrap());
        let mut host = FakeHost::new(&FakeShared::default());
        let token = one_time("j-10");
        let headers = crate::testing::headers(&[
            (":method", "GET"),
            (":path", "/r"),
            ("authorization", &token),
            ("x-api-key", "some-stored-key"),
        ]);
        let request = RequestFacts::from_headers(&headers);
        assert_eq!(plugin.on_request_headers(&mut host, 1, &request, T0), Step::Hold);
        assert_eq!(plugin.revisit(&mut host, 1, &request, T0 + 100), Step::Hold);
    }

    #[test]
    fn scope_envoy_never_asks() {
        let config = json!({"basic": {"users": [{"name": "alice", "password_hash": SECRET}]}});
        let mut plugin = Plugin::new(Config::from_json(config.to_string().as_bytes()).unwrap());
        let mut host = FakeHost::new(&FakeShared::default());
        assert!(matches!(send(&mut plugin, &mut host, 1, &basic("alice", "secret")), Step::Continue(_)));
        assert_eq!(status(&send(&mut plugin, &mut host, 2, &basic("alice", "guess"))), 401);
        assert!(host.engine_calls.is_empty());
    }
}
