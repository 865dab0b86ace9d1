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
//! No answer in time (the engine or its storage down): `failure_mode_deny` false allows
//! on this Envoy's records alone (`engine.failure_mode_allowed`), true answers 503
//! `engine_unavailable`; a refused password is refused either way. Counted:
//! `engine.ok`, `engine.over_limit`, `engine.error`.

use std::rc::Rc;

use log::warn;

use super::{Host, Plugin};
use crate::fleet::engine::{self, Answer, Check};
use crate::host_api::Outcome;
use crate::jwt::ProviderKind;
use crate::pipeline::shape::UpstreamChanges;
use crate::pipeline::stream::Step;
use crate::principal::Principal;
use crate::reason::Reason;
use crate::reply::LocalReply;
use crate::request::RequestFacts;

/// A question to the engine on its way, for one held stream.
pub(super) struct EngineCall {
    context_id: u32,
    check: Check,
    /// The refusal pending the engine (a refused password's 401); None: an allow pending it.
    refusal: Option<LocalReply>,
    /// Whom an allow pending it was for (a refusal names them).
    principal: Option<Rc<Principal>>,
    /// Past it the answer is not waited for (Envoy's gRPC timeout comes first).
    deadline_ms: u64,
}

/// How long past the call's own timeout a held stream waits before it is decided without an answer.
const GRACE_MS: u64 = 1000;

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
        let value = request.header_values("authorization").find(|value| crate::basic_auth::is_basic(value))?;
        let (user, _) = crate::basic_auth::credentials(value).ok()?;
        Some(Check::Failure { user })
    }

    /// Hold a decided stream and ask the engine: an allow with its changes, or a refusal.
    pub(super) fn ask_engine(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        check: Check,
        decided: Result<(UpstreamChanges, Rc<Principal>), LocalReply>,
        now_ms: u64,
    ) -> Step {
        let Some(settings) = self.config.engine.clone() else {
            return self.answer(host, context_id, None, LocalReply::host_unavailable());
        };
        let (changes, refusal, principal) = match decided {
            Ok((changes, principal)) => (Some(changes), None, Some(principal)),
            Err(reply) => (None, Some(reply), None),
        };
        let held = self.streams.ask_engine(context_id, changes, now_ms);
        if held != Step::Hold {
            return held;
        }
        let deadline_ms = now_ms + settings.timeout_ms + GRACE_MS;
        let call = EngineCall { context_id, check, refusal, principal, deadline_ms };
        let message = call.check.request(&settings.domain);
        match host.should_rate_limit(&settings.cluster, &message, settings.timeout_ms) {
            Some(token) => {
                self.engine_calls.push((token, call));
                Step::Hold
            }
            None => {
                warn!("wasm-authn: rate-limit engine: the call could not be made (cluster {:?}?)", settings.cluster);
                self.engine_answered(host, call, Answer::Failed)
            }
        }
    }

    /// The engine answered a call (`grpc_status` 0 and its message, or a gRPC error):
    /// the stream held for it is carried out.
    pub fn on_engine_answer(&mut self, host: &mut dyn Host, token: u32, grpc_status: u32, message: &[u8]) -> Step {
        let Some(i) = self.engine_calls.iter().position(|(call, _)| *call == token) else {
            return Step::Hold; // not waited for any more
        };
        let (_, call) = self.engine_calls.swap_remove(i);
        self.engine_answered(host, call, engine::answer(grpc_status, message))
    }

    /// A held stream whose answer is overdue (brought back by the tick): decided without it.
    pub(super) fn engine_overdue(&mut self, host: &mut dyn Host, context_id: u32, now_ms: u64) -> Step {
        let overdue = self.engine_calls.iter().position(|(_, c)| c.context_id == context_id && now_ms >= c.deadline_ms);
        let Some(i) = overdue else { return Step::Hold };
        let (_, call) = self.engine_calls.swap_remove(i);
        self.engine_answered(host, call, Answer::Failed)
    }

    /// Streams whose answer is overdue.
    pub(super) fn engine_overdue_streams(&self, now_ms: u64) -> impl Iterator<Item = u32> + '_ {
        self.engine_calls.iter().filter(move |(_, c)| now_ms >= c.deadline_ms).map(|(_, c)| c.context_id)
    }

    /// A stream ended: its question is not waited for (Envoy cancels the call).
    pub(super) fn engine_forget(&mut self, context_id: u32) {
        self.engine_calls.retain(|(_, call)| call.context_id != context_id);
    }

    fn engine_answered(&mut self, host: &mut dyn Host, call: EngineCall, answer: Answer) -> Step {
        host.increment(match answer {
            Answer::Ok => "engine.ok",
            Answer::OverLimit => "engine.over_limit",
            Answer::Failed => "engine.error",
        });
        let deny = self.config.engine.as_ref().is_none_or(|settings| settings.failure_mode_deny);
        let EngineCall { context_id, check, refusal, principal, .. } = call;
        let reply = match (answer, refusal) {
            (Answer::OverLimit, _) => match check {
                Check::OneTime { .. } => {
                    let challenges = self.config.challenges(&crate::pipeline::route::Require::Any);
                    LocalReply::invalid_token(challenges, "token already used", Reason::TokenReplayed)
                }
                Check::Locked { .. } | Check::Failure { .. } => {
                    LocalReply::try_later(Reason::BasicThrottled, self.config.failure_limit.window_seconds)
                }
            },
            (_, Some(refusal)) => refusal,
            (Answer::Failed, None) if deny => LocalReply::try_later(Reason::EngineUnavailable, 1),
            (Answer::Ok | Answer::Failed, None) => {
                if answer == Answer::Failed {
                    host.increment("engine.failure_mode_allowed");
                }
                host.count_soon(Outcome::Allowed);
                return self.streams.engine_agreed(context_id);
            }
        };
        let reply = match &principal {
            Some(principal) => reply.to(principal),
            None => reply,
        };
        self.answer(host, context_id, None, reply)
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

    fn plugin(engine: Value) -> Plugin {
        let config = json!({
            "limits": {"scope": "fleet", "engine": engine},
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

    #[test]
    fn a_correct_password_is_held_for_the_check_then_goes_on_with_its_changes() {
        let mut plugin = plugin(json!({}));
        let mut host = FakeHost::new(&FakeShared::default());
        assert_eq!(send(&mut plugin, &mut host, 1, &basic("alice", "secret")), Step::Hold);
        let (token, message) = asked(&mut host);
        assert_eq!(message, Check::Locked { user: "alice".into() }.request("wasm_authn"));
        // Its body waits with it.
        assert_eq!(plugin.on_request_body(&mut host, 1, &&b""[..], 5, true, T0), Step::Hold);
        let step = plugin.on_engine_answer(&mut host, token, 0, OK);
        let Step::Continue(go) = &step else { panic!("{step:?}") };
        let changes = Go::changes(go).expect("the changes it was decided with");
        assert!(changes.set.iter().any(|(name, value)| name == "x-auth-principal" && value == "alice"), "{changes:?}");
        assert_eq!(host.counter("engine.ok"), 1);
        // Once: a late duplicate answer changes nothing.
        assert_eq!(plugin.on_engine_answer(&mut host, token, 0, OVER), Step::Hold);
        let Step::Continue(go) = plugin.on_request_body(&mut host, 1, &&b""[..], 5, true, T0) else { panic!() };
        assert!(go.changes().is_none());
    }

    #[test]
    fn a_locked_name_refuses_the_right_password_and_a_counted_failure_past_the_limit_is_429() {
        let mut plugin = plugin(json!({}));
        let mut host = FakeHost::new(&FakeShared::default());
        let _ = send(&mut plugin, &mut host, 1, &basic("alice", "secret"));
        let (token, _) = asked(&mut host);
        let step = plugin.on_engine_answer(&mut host, token, 0, OVER);
        assert_eq!(status(&step), 429);
        let Step::Answer(reply) = &step else { unreachable!() };
        assert_eq!(reply.reason, Reason::BasicThrottled);
        assert_eq!(reply.principal.as_ref().map(|p| p.id.as_str()), Some("alice"));
        // A wrong password (any name: the engine counts unknown ones too) is held while it is counted.
        for (context, user, answer, expected) in [(2, "alice", OK, 401), (3, "mallory", OVER, 429)] {
            assert_eq!(send(&mut plugin, &mut host, context, &basic(user, "guess")), Step::Hold);
            let (token, message) = asked(&mut host);
            assert_eq!(message, Check::Failure { user: user.into() }.request("wasm_authn"));
            assert_eq!(status(&plugin.on_engine_answer(&mut host, token, 0, answer)), expected);
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
        assert!(matches!(plugin.on_engine_answer(&mut host, token, 0, OK), Step::Continue(_)));
        // Another token, which another Envoy saw first.
        assert_eq!(send(&mut plugin, &mut host, 2, &one_time("j-2")), Step::Hold);
        let (token, _) = asked(&mut host);
        let step = plugin.on_engine_answer(&mut host, token, 0, OVER);
        let Step::Answer(reply) = &step else { panic!("{step:?}") };
        assert_eq!((reply.status, reply.reason), (401, Reason::TokenReplayed));
        // This Envoy's own record still answers at once: no question for a replay seen here.
        assert_eq!(status(&send(&mut plugin, &mut host, 3, &one_time("j-1"))), 401);
        assert!(host.engine_calls.is_empty());
    }

    #[test]
    fn without_an_answer_an_allow_fails_open_or_closed_and_a_refusal_stays_one() {
        for deny in [false, true] {
            let mut plugin = plugin(json!({"failure_mode_deny": deny, "timeout_ms": 100}));
            let mut host = FakeHost::new(&FakeShared::default());
            // The engine down: gRPC status 14, no message.
            let _ = send(&mut plugin, &mut host, 1, &basic("alice", "secret"));
            let (token, _) = asked(&mut host);
            let step = plugin.on_engine_answer(&mut host, token, 14, &[]);
            if deny {
                let Step::Answer(reply) = &step else { panic!("{step:?}") };
                assert_eq!((reply.status, reply.reason), (503, Reason::EngineUnavailable));
            } else {
                assert!(matches!(step, Step::Continue(_)), "{step:?}");
            }
            // No answer at all: the tick brings the stream back past the call's timeout.
            let _ = send(&mut plugin, &mut host, 2, &one_time("j-3"));
            let _ = asked(&mut host);
            assert!(plugin.on_tick(&mut host, T0 + 100).is_empty());
            assert_eq!(plugin.on_tick(&mut host, T0 + 100 + GRACE_MS), vec![2]);
            let headers = crate::testing::headers(&[(":method", "GET"), (":path", "/r")]);
            let step = plugin.revisit(&mut host, 2, &RequestFacts::from_headers(&headers), T0 + 100 + GRACE_MS);
            assert_eq!(matches!(step, Step::Continue(_)), !deny, "{step:?}");
            // A refused password is refused however the engine fares.
            let _ = send(&mut plugin, &mut host, 3, &basic("alice", "guess"));
            let (token, _) = asked(&mut host);
            assert_eq!(status(&plugin.on_engine_answer(&mut host, token, 4, &[])), 401);
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
        assert_eq!(plugin.on_engine_answer(&mut host, token, 0, OK), Step::Hold);
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
