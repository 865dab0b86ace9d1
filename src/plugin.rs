//! One plugin instance: what a VM (one per Envoy worker) keeps for the
//! configuration it runs, and the events the host brings it: a stream's
//! request headers, body and trailers, a tick, the answer to a fetch, the end of
//! a stream. Each stream's fate is kept by `stream::Streams`: every request
//! event returns the `Step` it allows, and only a decision continues a stream.
//! The host adapter only carries the events in and the steps out.

use std::collections::HashMap;
use std::rc::Rc;

use log::{debug, info, warn};

use crate::config::Config;
use crate::fetched::Fetched;
use crate::host_api::{CallResponse, Counters, HttpCalls, Outcome, RequestBody, Target};
use crate::jwt::introspection::Verdict;
use crate::jwt::ProviderId;
use crate::pipeline::authenticate::{Verifier, VerifyHost};
use crate::pipeline::stream::{Awaited, BodyEvent, BodyPurpose, Step, Streams, Waiting, MAX_FORM_BYTES};
use crate::pipeline::{self, Decision, Limited};
use crate::reason::Reason;
use crate::remote::{Fetch, FetchReason, Progress, StoreId, STORES};
use crate::reply::{rate_limit_fields, LocalReply};
use crate::request::HeldRequest;
use crate::request::RequestFacts;
use crate::token_endpoint::IssueHost;

mod fleet_checks;

/// Everything a plugin needs of its host.
pub trait Host: VerifyHost + HttpCalls + Counters + IssueHost {}
impl<T: VerifyHost + HttpCalls + Counters + IssueHost> Host for T {}

/// A document the plugin fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocumentId {
    Jwks(ProviderId),
    Revocation,
    Store(StoreId),
}

impl DocumentId {
    /// Whether remembered verifications stand on it (forgotten when it changes).
    fn vouches(self) -> bool {
        matches!(self, DocumentId::Jwks(_) | DocumentId::Store(_))
    }
}

/// A fetch call on its way.
struct PendingCall {
    document: DocumentId,
    step: crate::remote::Step,
    target: Target,
}

/// An introspection call on its way: whose, about which stored key, since when, and
/// until when it is waited for (Envoy cancels a call whose request went away: no answer comes).
struct IntrospectionCall {
    provider: ProviderId,
    key: u128,
    started_ms: u64,
    given_up_ms: u64,
}

/// How a document is named in logs and counters.
struct Label {
    /// "provider corp", "revocation".
    owner: String,
    /// "provider corp: JWKS", "revocation list".
    what: String,
    /// What a failed refresh keeps: "keys" or "list".
    noun: &'static str,
    /// "jwks_fetch_{}.corp", "revocation_fetch_{}" ({} is success or failed).
    metric: String,
}

/// One VM's plugin: its configuration, what it fetched, its verifier and its streams.
pub struct Plugin {
    config: Rc<Config>,
    /// What this VM fetched (keys, the revocation list): the state the fetches change.
    fetched: Fetched,
    verifier: Verifier,
    /// Every open stream's fate, by HTTP context id.
    streams: Streams,
    /// Outstanding fetch calls, by call token.
    calls: HashMap<u32, PendingCall>,
    /// Outstanding introspection calls, with their call token (a few: a list is smaller code than a map).
    introspections: Vec<(u32, IntrospectionCall)>,
    /// Questions to the fleet's rate-limit engine on their way, with their call token.
    engine_calls: Vec<fleet_checks::EngineCall>,
    needs_route_name: bool,
    needs_source_address: bool,
    needs_peer_names: bool,
    /// A body never came: said once per VM (the likely cause is the host's configuration).
    warned_no_body: bool,
}

/// How long a token request's body may take to arrive.
const BODY_WAIT_MS: u64 = 10_000;

impl Plugin {
    /// A plugin for `config`, nothing fetched yet.
    pub fn new(config: Config) -> Plugin {
        Plugin {
            verifier: Verifier::new(&config),
            needs_route_name: config.routes.needs_route_name(),
            needs_source_address: config.needs_source_address(),
            needs_peer_names: config.mtls.is_some(),
            fetched: Fetched::new(&config),
            config: Rc::new(config),
            streams: Streams::default(),
            calls: HashMap::new(),
            introspections: Vec::new(),
            engine_calls: Vec::new(),
            warned_no_body: false,
        }
    }

    /// Whether a rule reads the Envoy route's name (a property the host reads per request).
    pub fn needs_route_name(&self) -> bool {
        self.needs_route_name
    }

    /// Whether networks are configured anywhere (the client address is then read per request).
    pub fn needs_source_address(&self) -> bool {
        self.needs_source_address
    }

    /// Whether client certificates are principals (their names are then read with their digest).
    pub fn needs_peer_names(&self) -> bool {
        self.needs_peer_names
    }

    /// A stream's request headers: it is undecided until the pipeline decides.
    pub fn on_request_headers(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        request: &RequestFacts,
        now_ms: u64,
    ) -> Step {
        self.streams.begin(context_id);
        self.decide(host, context_id, request, now_ms)
    }

    /// A held stream, brought back by the tick (what it waits for changed, or its
    /// time is up): decided again, or answered.
    pub fn revisit(&mut self, host: &mut dyn Host, context_id: u32, request: &RequestFacts, now_ms: u64) -> Step {
        if let Some((deadline_ms, form)) = self.streams.body_deadline(context_id) {
            if now_ms < deadline_ms {
                return Step::Hold;
            }
            if !self.warned_no_body {
                self.warned_no_body = true;
                warn!(
                    "wasm-authn: a request body did not arrive within {} s; if none ever does, set \
                     allow_on_headers_stop_iteration: true in the wasm filter's config (Envoy >= 1.35)",
                    BODY_WAIT_MS / 1000
                );
            }
            host.increment("held_timeout");
            let mut reply = crate::token_endpoint::body_timeout(BODY_WAIT_MS / 1000);
            if form {
                reply.reason = Reason::FormTimeout;
            }
            return self.answer(host, context_id, Some(request), reply);
        }
        match self.streams.waiting(context_id) {
            None => return Step::Hold, // decided meanwhile, or gone: nothing to do
            Some(Waiting { awaited: Awaited::Engine, deadline_ms, .. }) => {
                return self.engine_decide(host, context_id, now_ms, now_ms >= deadline_ms)
            }
            Some(_) => {}
        }
        self.decide(host, context_id, request, now_ms)
    }

    /// A body chunk (`body_size`: what is buffered so far) or its end.
    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        body: &dyn RequestBody,
        body_size: usize,
        end_of_stream: bool,
        now_ms: u64,
    ) -> Step {
        match self.streams.on_body(context_id, body_size, end_of_stream) {
            BodyEvent::Step(step) => step,
            BodyEvent::Complete(purpose) => self.body_read(host, context_id, purpose, body, body_size, now_ms),
        }
    }

    /// The request's trailers: they end a body that is being read.
    pub fn on_request_trailers(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        body: &dyn RequestBody,
        now_ms: u64,
    ) -> Step {
        match self.streams.on_trailers(context_id) {
            BodyEvent::Step(step) => step,
            // The body's size is not known here: read one byte past the bound (enough to see it is over).
            BodyEvent::Complete(purpose) => {
                let size = purpose.bound() + 1;
                self.body_read(host, context_id, purpose, body, size, now_ms)
            }
        }
    }

    /// A body read before the decision is complete (or over its bound): decide with it.
    fn body_read(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        purpose: BodyPurpose,
        body: &dyn RequestBody,
        body_size: usize,
        now_ms: u64,
    ) -> Step {
        // At most one byte past the bound: enough to see it is too large.
        let Some(body) = body.read(body_size.min(purpose.bound() + 1)) else {
            return self.answer(host, context_id, None, LocalReply::host_unavailable());
        };
        let reply = match (purpose, &self.config.token_endpoint) {
            (BodyPurpose::TokenRequest(presented), Some(endpoint)) => {
                let clients = self.config.api_keys.directory(self.fetched.api_clients());
                endpoint.issue(clients, &self.config.limit_table, host, &presented, &body, now_ms / 1000)
            }
            (BodyPurpose::TokenRequest(_), None) => LocalReply::not_configured(),
            (BodyPurpose::FormKey(held), _) => {
                let reply = if body.len() > MAX_FORM_BYTES {
                    let message = format!("the form is larger than {MAX_FORM_BYTES} bytes");
                    LocalReply::form_unreadable(413, &message, Reason::FormTooLarge)
                } else if let Ok(form) = std::str::from_utf8(&body) {
                    return self.decide(host, context_id, &held.with_body(form), now_ms);
                } else {
                    LocalReply::form_unreadable(400, "the form is not UTF-8", Reason::FormMalformed)
                };
                return self.answer(host, context_id, Some(&held.with_body("")), reply);
            }
        };
        self.answer(host, context_id, None, reply)
    }

    /// Decide a stream from its headers (again, when it was held).
    fn decide(&mut self, host: &mut dyn Host, context_id: u32, request: &RequestFacts, now_ms: u64) -> Step {
        // A revocation, or a client added or removed, fetched by another VM applies from
        // the next request, not the next tick (one small read when nothing changed).
        if let Some(remote) = self.fetched.revocation.as_mut() {
            remote.sync_if_fetched(&*host);
        }
        for store in STORES {
            if self.fetched.store_mut(store).is_some_and(|remote| remote.sync_if_fetched(&*host)) {
                self.verifier.keys_changed();
            }
        }
        let mut decision = pipeline::decide(&self.config, &self.fetched, &mut self.verifier, request, &*host, now_ms);
        // Another VM may have fetched what is missing, or refetched already: look before waiting or refusing.
        if needs_sync(&decision) {
            self.sync_documents(&*host);
            decision = pipeline::decide(&self.config, &self.fetched, &mut self.verifier, request, &*host, now_ms);
        }
        // A hit is an answer found without waiting: not the one this stream was held for.
        let waited =
            self.streams.waiting(context_id).is_some_and(|w| matches!(w.awaited, Awaited::Introspection { .. }));
        for provider in std::mem::take(&mut self.verifier.introspection_hits) {
            if let Some(provider) = self.config.jwt_providers.get(provider.0).filter(|_| !waited) {
                host.increment(&format!("introspection_cache_hits.{}", metric_safe(&provider.name)));
            }
        }
        match decision {
            Decision::Bypass(changes) => {
                self.log_decision(context_id, Some(request), "bypassed", now_ms);
                host.count_soon(Outcome::Bypassed);
                self.streams.allow(context_id, changes)
            }
            Decision::Anonymous(changes) => {
                self.log_decision(context_id, Some(request), "anonymous (optional route, no credential)", now_ms);
                host.count_soon(Outcome::Anonymous);
                self.streams.allow(context_id, changes)
            }
            Decision::Failed { reason, changes } => {
                let outcome = format!("no principal: the credential failed ({}), optional_or_failed", reason.label());
                self.log_decision(context_id, Some(request), &outcome, now_ms);
                host.increment(&format!("optional_failed.{}", reason.label()));
                self.streams.allow(context_id, changes)
            }
            Decision::Shadow { refused, changes, limited } => {
                let outcome = match refused {
                    Some(reason) => {
                        host.increment(&format!("shadow_denied.{}", reason.label()));
                        format!("shadow: would be refused ({}); continues without a principal", reason.label())
                    }
                    None => {
                        host.increment("shadow_allowed");
                        "shadow: would be allowed; continues without a principal".to_string()
                    }
                };
                self.log_decision(context_id, Some(request), &outcome, now_ms);
                if let Some(limited) = limited {
                    self.track(host, context_id, limited);
                }
                self.streams.allow(context_id, changes)
            }
            Decision::Allow { principal, changes, limited } => {
                if log::log_enabled!(log::Level::Debug) {
                    let by = principal.provider.as_deref().map(|p| format!(", {p}")).unwrap_or_default();
                    let outcome = format!("allowed: {} ({}{by})", principal.id, principal.method.as_str());
                    self.log_decision(context_id, Some(request), &outcome, now_ms);
                }
                if let Some(limited) = limited {
                    self.track(host, context_id, limited);
                }
                if let Some(check) = self.engine_check_for(&principal) {
                    return self.ask_engine(host, context_id, request, check, Ok((changes, principal)), now_ms);
                }
                host.count_soon(Outcome::Allowed);
                self.streams.allow(context_id, changes)
            }
            Decision::Reply(reply) => match self.engine_failure_of(&reply, request) {
                Some(check) => self.ask_engine(host, context_id, request, check, Err(reply), now_ms),
                None => self.answer(host, context_id, Some(request), reply),
            },
            Decision::ReadBody(presented) => {
                let purpose = BodyPurpose::TokenRequest(presented);
                // The headers ended the request: there is no body to wait for.
                if let Some(body) = request.body {
                    return self.body_read(host, context_id, purpose, &body.as_bytes(), body.len(), now_ms);
                }
                self.log_decision(context_id, Some(request), "token request: reading its body", now_ms);
                self.count_held(host, context_id);
                self.streams.read_body(context_id, purpose, now_ms, now_ms + BODY_WAIT_MS)
            }
            Decision::ReadForm => {
                self.log_decision(context_id, Some(request), "reading its form for an API key", now_ms);
                self.count_held(host, context_id);
                let purpose = BodyPurpose::FormKey(Box::new(HeldRequest::of(request)));
                self.streams.read_body(context_id, purpose, now_ms, now_ms + BODY_WAIT_MS)
            }
            Decision::Wait(awaited) => self.hold(host, context_id, request, awaited, now_ms),
            Decision::Introspect { awaited, call } => {
                if let (Some(token), Awaited::Introspection { provider, key }) = (call, awaited) {
                    if !self.call_introspection(host, provider, key, &token, now_ms) {
                        let reply = LocalReply::try_later(Reason::IntrospectionFailed, 1);
                        return self.answer(host, context_id, Some(request), reply);
                    }
                }
                self.hold(host, context_id, request, awaited, now_ms)
            }
        }
    }

    /// Ask `provider`'s introspection endpoint about `token` (this worker holds the
    /// call's lease). False when the call could not be made: its failure is stored for
    /// every request waiting for it.
    fn call_introspection(
        &mut self,
        host: &mut dyn Host,
        provider: ProviderId,
        key: u128,
        token: &str,
        now_ms: u64,
    ) -> bool {
        let Some((named, introspection)) =
            self.config.jwt_providers.get(provider.0).and_then(|p| Some((p, p.introspection.as_ref()?)))
        else {
            return false;
        };
        let (authorization, body) = introspection.request(token);
        let metric = metric_safe(&named.name);
        host.increment(&format!("introspection_calls.{metric}"));
        let target = &introspection.target;
        // The token is never logged: its stored key's first bytes tell calls apart.
        debug!("wasm-authn: provider {}: introspecting token {:08x} ({target})", named.name, (key >> 96) as u32);
        if let Some(call) = host.post_form(target, authorization, &body, introspection.timeout_ms) {
            let given_up_ms = now_ms + introspection.wait_ms();
            self.introspections.push((call, IntrospectionCall { provider, key, started_ms: now_ms, given_up_ms }));
            return true;
        }
        warn!("wasm-authn: provider {}: introspection failed ({target}): {CALL_NOT_MADE}", named.name);
        host.increment(&format!("introspection_failures.{metric}"));
        let until_ms = now_ms + crate::jwt::introspection::FAILURE_HOLD_MS;
        introspection.answers.store(&*host, key, Verdict::Failed, until_ms, now_ms);
        false
    }

    /// An introspection call answered (or failed): its verdict is stored for every worker;
    /// the requests waiting for it are decided again on the next tick.
    fn introspection_answered(
        &mut self,
        host: &mut dyn Host,
        call: IntrospectionCall,
        response: &dyn CallResponse,
        now_ms: u64,
    ) {
        let Some((provider, introspection)) =
            self.config.jwt_providers.get(call.provider.0).and_then(|p| Some((p, p.introspection.as_ref()?)))
        else {
            return;
        };
        let took_ms = now_ms.saturating_sub(call.started_ms);
        let token = (call.key >> 96) as u32;
        let skew = self.config.clock_skew_seconds;
        let (verdict, until_ms) = match introspection.judge_response(provider, response, now_ms, skew) {
            Ok((verdict, until_ms)) => {
                if log::log_enabled!(log::Level::Debug) {
                    let said = match &verdict {
                        Verdict::Active(answer) => format!("active, principal {}", answer.principal),
                        Verdict::Inactive => "inactive".to_string(),
                        Verdict::Refused(reason) => {
                            format!("active but refused here: {}", crate::jwt::introspection::refusal_message(*reason))
                        }
                        Verdict::Failed => "failed".to_string(),
                    };
                    let reuse = until_ms.saturating_sub(now_ms) / 1000;
                    debug!(
                        "wasm-authn: provider {}: token {token:08x}: {said} ({took_ms} ms; reused for {reuse} s)",
                        provider.name
                    );
                }
                (verdict, until_ms)
            }
            Err(reason) => {
                let target = &introspection.target;
                warn!(
                    "wasm-authn: provider {}: introspection failed ({target}) after {took_ms} ms: {reason}",
                    provider.name
                );
                host.increment(&format!("introspection_failures.{}", metric_safe(&provider.name)));
                (Verdict::Failed, now_ms + crate::jwt::introspection::FAILURE_HOLD_MS)
            }
        };
        introspection.answers.store(&*host, call.key, verdict, until_ms, now_ms);
    }

    /// Whether a stream held for an introspection answer may be decided again (the call is over, on whichever worker).
    fn introspection_over(&self, host: &dyn Host, awaited: Awaited, now_ms: u64) -> bool {
        let Awaited::Introspection { provider, key } = awaited else { return false };
        let introspection = self.config.jwt_providers.get(provider.0).and_then(|p| p.introspection.as_ref());
        introspection.is_none_or(|introspection| !introspection.answers.pending(host, key, now_ms))
    }

    /// Answer a stream: counted, logged, and the stream is answered for good.
    fn answer(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        request: Option<&RequestFacts>,
        reply: LocalReply,
    ) -> Step {
        if log::log_enabled!(log::Level::Debug) {
            let to = reply.principal.as_ref().map(|p| format!(" (to {})", p.qualified.as_str())).unwrap_or_default();
            let outcome = format!("answered {}: {}{to}", reply.status, reply.reason.label());
            let now_ms = host.now_ns().map_or(0, |ns| ns / 1_000_000);
            self.log_decision(context_id, request, &outcome, now_ms);
        }
        host.increment(&reply.metric());
        self.streams.answer(context_id, reply)
    }

    /// Hold a stream for what it waits for, until that arrives or the wait is over (then 503).
    fn hold(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        request: &RequestFacts,
        awaited: Awaited,
        now_ms: u64,
    ) -> Step {
        let events = self.events(awaited);
        let (wait_ms, fetched_at) = match awaited {
            Awaited::Keys { provider, .. } => {
                let remote = self.fetched.keys.get(provider);
                (self.config.jwks_wait_ms, remote.map_or(0, |r| r.record().last_success_ms))
            }
            Awaited::RevocationList => (self.config.revocation.wait_ms, 0),
            Awaited::Store(store) => (self.config.store_wait_ms(store), 0),
            Awaited::Introspection { provider, .. } => {
                let introspection = self.config.jwt_providers.get(provider.0).and_then(|p| p.introspection.as_ref());
                (introspection.map_or(0, |introspection| introspection.wait_ms()), 0)
            }
            // Held by `fleet_checks`, never here.
            Awaited::Engine => (0, 0),
        };
        let earlier = self.streams.waiting(context_id);
        if let (Awaited::Keys { provider, refetch: true }, Some(earlier)) = (awaited, earlier) {
            // A fetch finished since this request began to wait for its kid, and the kid
            // is still unknown: the keys are as fresh as they get; no second refetch for it.
            if matches!(earlier.awaited, Awaited::Keys { refetch: true, .. }) && fetched_at >= earlier.since_ms {
                let challenges = self.config.challenges(&crate::pipeline::route::Require::Any);
                let unknown = crate::jwt::JwtError::UnknownKey { provider };
                let reply = LocalReply::invalid_token(challenges, unknown.description(), unknown.reason());
                return self.answer(host, context_id, Some(request), reply);
            }
        }
        let since_ms = earlier.map_or(now_ms, |earlier| earlier.since_ms);
        let deadline_ms = earlier.map_or(now_ms + wait_ms, |earlier| earlier.deadline_ms);
        if now_ms >= deadline_ms {
            host.increment("held_timeout");
            let reply = match awaited {
                Awaited::Keys { .. } => LocalReply::keys_unavailable(wait_ms.div_ceil(1000)),
                Awaited::RevocationList => LocalReply::try_later(Reason::RevocationUnavailable, wait_ms.div_ceil(1000)),
                Awaited::Store(store) => LocalReply::try_later(store.unavailable(), 1),
                Awaited::Introspection { .. } => LocalReply::try_later(Reason::IntrospectionFailed, 1),
                Awaited::Engine => LocalReply::try_later(Reason::LimitsUnavailable, 1),
            };
            return self.answer(host, context_id, Some(request), reply);
        }
        if earlier.is_none() {
            let what = match awaited {
                Awaited::Keys { .. } => "held for signing keys",
                Awaited::RevocationList => "held for the revocation list",
                Awaited::Store(StoreId::ApiClients) => "held for the client store",
                Awaited::Store(StoreId::BasicUsers) => "held for the user store",
                Awaited::Introspection { .. } => "held for an introspection answer",
                Awaited::Engine => "held for the rate-limit engine (decided)",
            };
            self.log_decision(context_id, Some(request), what, now_ms);
            self.count_held(host, context_id);
        }
        self.streams.wait(context_id, Waiting { awaited, since_ms, deadline_ms, events_seen: events })
    }

    /// A stream is held for the first time.
    fn count_held(&self, host: &mut dyn Host, context_id: u32) {
        if self.streams.held_since(context_id).is_none() {
            host.increment("held");
        }
    }

    /// Remember what a counted request gives back when its stream ends, and the
    /// quota its response shows.
    fn track(&mut self, host: &mut dyn Host, context_id: u32, limited: Limited) {
        if limited.tracked_change != 0 {
            host.add_to_gauge(crate::pipeline::limits::TRACKED_GAUGE, limited.tracked_change);
        }
        let in_flight = limited.holds_slot.then_some(limited.key);
        let quota = limited.quota.filter(|_| self.config.expose_limit_headers);
        self.streams.track(context_id, in_flight, quota);
    }

    /// The filter state to set before answering with `reply` (with `filter_state`): the
    /// principal it refuses or answers, under the keys an allowed request's are.
    pub fn answer_state(&self, reply: &LocalReply) -> Vec<(String, String)> {
        let principal = reply.principal.as_ref().filter(|_| self.config.upstream.filter_state);
        principal.map(|principal| crate::pipeline::shape::filter_state(principal)).unwrap_or_default()
    }

    /// Response headers to add to this request's response (the RateLimit fields, where exposed).
    pub fn response_headers(&mut self, context_id: u32) -> Vec<(&'static str, String)> {
        self.streams.take_quota(context_id).map(|quota| rate_limit_fields(&quota).to_vec()).unwrap_or_default()
    }

    /// The stream ended, however (completed, reset, timed out, answered by a later
    /// filter, or gone while held): its slot in flight is given back.
    /// The clock is read only then: most streams end with nothing to give back.
    pub fn on_stream_end(&mut self, host: &mut dyn Host, context_id: u32) {
        let ended = self.streams.end(context_id);
        self.engine_forget(context_id);
        if let Some(key) = ended.in_flight {
            let now_s = host.now_ns().map_or(0, |ns| ns / 1_000_000_000);
            self.config.limit_table.release(&*host, key, now_s);
        }
        if let (Some(since_ms), true) = (ended.abandoned_held_since, log::log_enabled!(log::Level::Debug)) {
            let held_ms = host.now_ns().map_or(0, |ns| (ns / 1_000_000).saturating_sub(since_ms));
            debug!("wasm-authn: stream {context_id} ended undecided after {held_ms} ms held (the client went away)");
        }
    }

    /// Whether the host should tick fast: requests wait for keys or bodies, or keys are on their way.
    pub fn busy(&self) -> bool {
        !self.calls.is_empty() || !self.introspections.is_empty() || self.streams.any_held()
    }

    /// One line per decision for operators (Envoy's `wasm` logger at debug): the method,
    /// the path without its query (where an API key may be), or the stream when a
    /// body decided it; what was decided and, for a stream that was held, for how
    /// long; never a credential.
    fn log_decision(&self, context_id: u32, request: Option<&RequestFacts>, outcome: &str, now_ms: u64) {
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let subject = match request {
            Some(request) => format!("{} {}", request.method, request.path.split(['?', '#']).next().unwrap_or("")),
            None => format!("stream {context_id} (its body read)"),
        };
        let held = match self.streams.held_since(context_id) {
            Some(since_ms) => format!(" (after {} ms held)", now_ms.saturating_sub(since_ms)),
            None => String::new(),
        };
        debug!("wasm-authn: {subject}: {outcome}{held}");
    }

    /// Every document this plugin fetches.
    fn documents(&self) -> Vec<DocumentId> {
        let jwks = self.config.jwt_providers.iter().enumerate().filter(|(_, p)| p.fetch.is_some());
        let mut documents: Vec<DocumentId> = jwks.map(|(i, _)| DocumentId::Jwks(ProviderId(i))).collect();
        if self.config.revocation.fetch.is_some() {
            documents.push(DocumentId::Revocation);
        }
        documents
            .extend(STORES.into_iter().filter(|&store| self.fetched.store(store).is_some()).map(DocumentId::Store));
        documents
    }

    fn document(&mut self, id: DocumentId) -> Option<(&mut dyn Fetch, Label)> {
        match id {
            DocumentId::Jwks(id) => {
                let provider = self.config.jwt_providers.get(id.0)?;
                let label = Label {
                    owner: format!("provider {}", provider.name),
                    what: format!("provider {}: JWKS", provider.name),
                    noun: "keys",
                    metric: format!("jwks_fetch_{{}}.{}", metric_safe(&provider.name)),
                };
                Some((self.fetched.keys.get_mut(id)? as &mut dyn Fetch, label))
            }
            DocumentId::Revocation => {
                let label = Label {
                    owner: "revocation".into(),
                    what: "revocation list".into(),
                    noun: "list",
                    metric: "revocation_fetch_{}".into(),
                };
                Some((self.fetched.revocation.as_mut()? as &mut dyn Fetch, label))
            }
            DocumentId::Store(store) => {
                let (owner, what, counters) = store.names();
                let noun = if store == StoreId::ApiClients { "clients" } else { "users" };
                let label =
                    Label { owner: owner.into(), what: what.into(), noun, metric: format!("{counters}_fetch_{{}}") };
                Some((self.fetched.store_mut(store)?, label))
            }
        }
    }

    /// Keep fetched documents fresh: pick up what other VMs fetched, start the fetches
    /// that are due. Returns the held requests to decide again (keys changed, or out of time).
    pub fn on_tick(&mut self, host: &mut dyn Host, now_ms: u64) -> Vec<u32> {
        let mut keys_changed = false;
        for id in self.documents() {
            let fetching = self.calls.values().any(|call| call.document == id);
            // When held requests began to wait for a kid this document lacks.
            let waiting_since: Vec<u64> = self
                .streams
                .held()
                .filter(|(_, w)| matches!(w.awaited, Awaited::Keys { provider, refetch: true } if DocumentId::Jwks(provider) == id))
                .map(|(_, w)| w.since_ms)
                .collect();
            let Some((document, label)) = self.document(id) else { continue };
            keys_changed |= document.sync(&*host) && id.vouches();
            // Only a request that has not seen a fetch since it arrived wants another.
            let refetch_wanted = waiting_since.iter().any(|since| *since > document.last_success_ms());
            if fetching {
                continue;
            }
            let Some(reason) = document.start(&*host, now_ms, refetch_wanted) else { continue };
            if reason == FetchReason::UnknownKid {
                info!("wasm-authn: {}: unknown key id, fetching its JWKS again", label.owner);
            }
            let target = document.fetch_config().target.clone();
            let step = document.first_step();
            match host.get(&target, document.fetch_config().policy.timeout_ms) {
                Some(token) => {
                    self.calls.insert(token, PendingCall { document: id, step, target });
                }
                None => self.fetch_failed(host, id, &target, CALL_NOT_MADE, now_ms),
            }
        }
        if keys_changed {
            self.verifier.keys_changed();
        }
        self.introspections.retain(|(_, call)| now_ms < call.given_up_ms);
        let held = self.streams.held().filter(|(_, w)| {
            now_ms >= w.deadline_ms
                || self.events(w.awaited) != w.events_seen
                || self.introspection_over(&*host, w.awaited, now_ms)
        });
        let overdue_bodies = self.streams.reading().filter(|(_, deadline_ms)| now_ms >= *deadline_ms);
        held.map(|(id, _)| id).chain(overdue_bodies.map(|(id, _)| id)).collect()
    }

    /// The events of what a held stream waits for (they change when it may be decided differently).
    fn events(&self, awaited: Awaited) -> u64 {
        let remote = match awaited {
            Awaited::Keys { provider, .. } => self.fetched.keys.get(provider),
            Awaited::RevocationList => return self.fetched.revocation.as_ref().map_or(0, |r| r.events()),
            Awaited::Store(store) => return self.fetched.store(store).map_or(0, |r| r.events()),
            // Stored in shared data: the tick looks there (`introspection_over`).
            // Its answer revisits it (`fleet_checks`).
            Awaited::Introspection { .. } | Awaited::Engine => return 0,
        };
        remote.map_or(0, |remote| remote.events())
    }

    /// A fetch call answered (or failed: no status means timeout or connection failure).
    pub fn on_call_response(&mut self, host: &mut dyn Host, token: u32, response: &dyn CallResponse, now_ms: u64) {
        if let Some(i) = self.introspections.iter().position(|(call, _)| *call == token) {
            let (_, call) = self.introspections.swap_remove(i);
            return self.introspection_answered(host, call, response, now_ms);
        }
        let Some(call) = self.calls.remove(&token) else { return };
        let Some((document, label)) = self.document(call.document) else { return };
        match document.on_response(&*host, call.step, response, now_ms) {
            Progress::Call(target) => match host.get(&target, document.fetch_config().policy.timeout_ms) {
                Some(next) => {
                    self.calls.insert(
                        next,
                        PendingCall { document: call.document, step: crate::remote::Step::Document, target },
                    );
                }
                None => self.fetch_failed(host, call.document, &target, CALL_NOT_MADE, now_ms),
            },
            Progress::Fetched { changed } => {
                let summary = document.summary().unwrap_or_default();
                let what = if changed { "" } else { " (unchanged)" };
                info!("wasm-authn: {}: fetched {summary}{what} ({})", label.what, call.target);
                host.increment(&label.metric.replace("{}", "success"));
                if changed && call.document.vouches() {
                    self.verifier.keys_changed();
                }
            }
            Progress::Failed(reason) => self.fetch_failed(host, call.document, &call.target, &reason, now_ms),
        }
    }

    fn fetch_failed(&mut self, host: &mut dyn Host, id: DocumentId, target: &Target, reason: &str, now_ms: u64) {
        let Some((document, label)) = self.document(id) else { return };
        let retry_ms = document.fail(&*host, now_ms);
        let noun = label.noun;
        let kept = if document.summary().is_some() {
            format!("keeping the last good {noun}")
        } else {
            format!("no {noun} yet")
        };
        warn!("wasm-authn: {} fetch failed ({target}): {reason}; {kept}; retrying in {retry_ms} ms", label.what);
        host.increment(&label.metric.replace("{}", "failed"));
    }

    /// Look at what other VMs fetched (the rare path of a token whose key this VM
    /// does not know, or of a document not loaded yet).
    fn sync_documents(&mut self, host: &dyn Host) {
        let mut changed = false;
        for remote in self.fetched.keys.iter_mut() {
            changed |= remote.sync(host);
        }
        for store in STORES {
            if let Some(remote) = self.fetched.store_mut(store) {
                changed |= remote.sync(host);
            }
        }
        if changed {
            self.verifier.keys_changed();
        }
        if let Some(remote) = self.fetched.revocation.as_mut() {
            remote.sync(host);
        }
    }
}

const CALL_NOT_MADE: &str = "the call could not be made (unknown cluster?)";

/// Whether a decision could change with what other VMs fetched.
fn needs_sync(decision: &Decision) -> bool {
    match decision {
        Decision::Wait(_) => true,
        Decision::Reply(reply) => reply.reason == Reason::JwtUnknownKey,
        _ => false,
    }
}

/// Provider names go into metric names: keep them to characters stats sinks accept.
pub fn metric_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests;
