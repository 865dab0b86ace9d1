//! One plugin instance: what a VM (one per Envoy worker) keeps for the
//! configuration it runs, and the events the host brings it: a request's
//! headers, a tick, the answer to a fetch, the end of a stream. The host
//! adapter only carries these in and the verdicts out.

use std::collections::HashMap;

use log::{debug, info, warn};

use crate::authenticate::{Verifier, VerifyHost};
use crate::config::Config;
use crate::host_api::{CallResponse, Counters, HttpCalls, Outcome, Target};
use crate::jwt::ProviderId;
use crate::limits::Quota;
use crate::pipeline::{self, Decision, Limited};
use crate::reason::Reason;
use crate::remote::{Fetch, FetchReason, Progress, Step};
use crate::reply::{rate_limit_fields, LocalReply};
use crate::request::RequestFacts;
use crate::shape::UpstreamChanges;
use crate::token_endpoint::grant::Presented;
use crate::token_endpoint::IssueHost;

/// Everything a plugin needs of its host.
pub trait Host: VerifyHost + HttpCalls + Counters + IssueHost {}
impl<T: VerifyHost + HttpCalls + Counters + IssueHost> Host for T {}

/// What the host does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Continue upstream after these changes.
    Continue(UpstreamChanges),
    /// Answer it.
    Reply(LocalReply),
    /// Hold it; `on_tick` says when to bring it back.
    Pause,
    /// A token request: bring its body (at most `token_endpoint::MAX_BODY_BYTES`) to `on_token_request`.
    ReadBody(Presented),
}

/// A request held for a provider's keys.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    provider: ProviderId,
    /// When it was first held.
    since_ms: u64,
    deadline_ms: u64,
    /// The provider's key events when the request was last decided.
    events_seen: u64,
    /// It waits for a refetch (its `kid` is unknown), not for the first keys.
    refetch: bool,
}

/// A document the plugin fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocumentId {
    Jwks(ProviderId),
    Revocation,
}

/// A fetch call on its way.
struct PendingCall {
    document: DocumentId,
    step: Step,
    target: Target,
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

pub struct Plugin {
    config: Config,
    verifier: Verifier,
    /// Requests held for keys, by HTTP context id.
    waiting: HashMap<u32, Waiting>,
    /// Outstanding fetch calls, by call token.
    calls: HashMap<u32, PendingCall>,
    needs_route_name: bool,
    needs_source_address: bool,
    /// Requests holding a slot in flight: the principal's limit key, by HTTP context id.
    in_flight: HashMap<u32, u64>,
    /// Quotas to show on responses (`limits.expose_headers`), by HTTP context id.
    response_fields: HashMap<u32, Quota>,
    /// Token requests whose body is awaited: when to give up, by HTTP context id.
    reading: HashMap<u32, u64>,
    /// A body never came: said once per VM (the likely cause is the host's configuration).
    warned_no_body: bool,
}

/// How long a token request's body may take to arrive.
const BODY_WAIT_MS: u64 = 10_000;

impl Plugin {
    pub fn new(config: Config) -> Plugin {
        Plugin {
            verifier: Verifier::new(&config),
            needs_route_name: config.routes.needs_route_name(),
            needs_source_address: config.needs_source_address(),
            config,
            waiting: HashMap::new(),
            calls: HashMap::new(),
            in_flight: HashMap::new(),
            response_fields: HashMap::new(),
            reading: HashMap::new(),
            warned_no_body: false,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether a rule reads the Envoy route's name (a property the host reads per request).
    pub fn needs_route_name(&self) -> bool {
        self.needs_route_name
    }

    /// Whether networks are configured anywhere (the client address is then read per request).
    pub fn needs_source_address(&self) -> bool {
        self.needs_source_address
    }

    /// Decide a request (again, when it was held for keys).
    pub fn on_request(&mut self, host: &mut dyn Host, context_id: u32, request: &RequestFacts, now_ms: u64) -> Verdict {
        // A revocation fetched by another VM applies from the next request, not the next tick.
        if let Some(remote) = self.config.revocation.remote.as_mut() {
            remote.sync_if_fetched(&*host);
        }
        let mut decision = pipeline::decide(&self.config, &mut self.verifier, request, &*host, now_ms);
        // Another VM may have fetched the keys, or refetched already: look before waiting or refusing.
        if needs_key_check(&decision) {
            self.sync_keys(&*host);
            decision = pipeline::decide(&self.config, &mut self.verifier, request, &*host, now_ms);
        }
        if log::log_enabled!(log::Level::Debug) {
            log_decision(request, &decision);
        }
        let verdict = match decision {
            Decision::Bypass(changes) => {
                host.count_soon(Outcome::Bypassed);
                Verdict::Continue(changes)
            }
            Decision::Anonymous(changes) => {
                host.count_soon(Outcome::Anonymous);
                Verdict::Continue(changes)
            }
            Decision::Allow { changes, limited, .. } => {
                host.count_soon(Outcome::Allowed);
                if let Some(limited) = limited {
                    self.track(host, context_id, limited);
                }
                Verdict::Continue(changes)
            }
            Decision::Reply(reply) => Verdict::Reply(reply),
            Decision::ReadBody(presented) => {
                self.reading.insert(context_id, now_ms + BODY_WAIT_MS);
                Verdict::ReadBody(presented)
            }
            Decision::WaitForKeys { provider, refetch } => self.hold(context_id, provider, refetch, now_ms),
        };
        if !matches!(verdict, Verdict::Pause) {
            self.waiting.remove(&context_id);
        }
        if let Verdict::Reply(reply) = &verdict {
            host.increment(&reply.metric());
        }
        verdict
    }

    /// A token request's body arrived (or its size passed the limit): the endpoint answers.
    pub fn on_token_request(
        &mut self,
        host: &mut dyn Host,
        context_id: u32,
        presented: &Presented,
        body: &[u8],
        now_ms: u64,
    ) -> LocalReply {
        self.reading.remove(&context_id);
        let reply = match &self.config.token_endpoint {
            Some(endpoint) => {
                endpoint.issue(&self.config.api_keys, &self.config.limit_table, host, presented, body, now_ms / 1000)
            }
            None => LocalReply::not_configured(),
        };
        host.increment(&reply.metric());
        reply
    }

    /// Token requests whose body has not come in time, and their answer (408).
    pub fn overdue_body_reads(&mut self, host: &mut dyn Host, now_ms: u64) -> Vec<(u32, LocalReply)> {
        let overdue: Vec<u32> = self.reading.iter().filter(|(_, due)| now_ms >= **due).map(|(id, _)| *id).collect();
        if !overdue.is_empty() && !self.warned_no_body {
            self.warned_no_body = true;
            warn!(
                "wasm-authn: a token request's body did not arrive within {} s; if none ever does, set \
                 allow_on_headers_stop_iteration: true in the wasm filter's config (Envoy >= 1.35)",
                BODY_WAIT_MS / 1000
            );
        }
        overdue
            .into_iter()
            .map(|id| {
                self.reading.remove(&id);
                let reply = crate::token_endpoint::body_timeout(BODY_WAIT_MS / 1000);
                host.increment(&reply.metric());
                (id, reply)
            })
            .collect()
    }

    /// Hold a request for keys, until they arrive or `jwks_wait_ms` runs out (then 503).
    fn hold(&mut self, context_id: u32, provider: ProviderId, refetch: bool, now_ms: u64) -> Verdict {
        let wait_ms = self.config.jwks_wait_ms;
        let events = self.remote_events(provider);
        let remote = self.config.jwt_providers.get(provider.0).and_then(|p| p.remote.as_ref());
        let fetched_at = remote.map_or(0, |remote| remote.record().last_success_ms);
        if let Some(held) = self.waiting.get(&context_id) {
            // A fetch finished since this request began to wait for its kid, and the kid
            // is still unknown: the keys are as fresh as they get; no second refetch for it.
            if refetch && held.refetch && fetched_at >= held.since_ms {
                let challenges = self.config.challenges(&crate::route::Require::Any);
                let unknown = crate::jwt::JwtError::UnknownKey { provider };
                return Verdict::Reply(LocalReply::invalid_token(challenges, unknown.description(), unknown.reason()));
            }
        }
        let entry = self.waiting.entry(context_id).or_insert(Waiting {
            provider,
            since_ms: now_ms,
            deadline_ms: now_ms + wait_ms,
            events_seen: events,
            refetch,
        });
        entry.provider = provider;
        entry.events_seen = events;
        entry.refetch = refetch;
        if now_ms >= entry.deadline_ms {
            Verdict::Reply(LocalReply::keys_unavailable(wait_ms.div_ceil(1000)))
        } else {
            Verdict::Pause
        }
    }

    fn remote_events(&self, provider: ProviderId) -> u64 {
        let remote = self.config.jwt_providers.get(provider.0).and_then(|p| p.remote.as_ref());
        remote.map_or(0, |remote| remote.events())
    }

    /// Remember what a counted request gives back when its stream ends, and the
    /// quota its response shows.
    fn track(&mut self, host: &mut dyn Host, context_id: u32, limited: Limited) {
        if limited.tracked_change != 0 {
            host.add_to_gauge(crate::limits::TRACKED_GAUGE, limited.tracked_change);
        }
        if limited.holds_slot {
            self.in_flight.insert(context_id, limited.key);
        }
        if let (true, Some(quota)) = (self.config.expose_limit_headers, limited.quota) {
            self.response_fields.insert(context_id, quota);
        }
    }

    /// Response headers to add to this request's response (the RateLimit fields, where exposed).
    pub fn response_headers(&mut self, context_id: u32) -> Vec<(&'static str, String)> {
        self.response_fields.remove(&context_id).map(|quota| rate_limit_fields(&quota).to_vec()).unwrap_or_default()
    }

    /// The stream ended, however (completed, reset, timed out, answered by a later
    /// filter, or gone while held): its slot in flight is given back.
    /// The clock is read only then: most streams end with nothing to give back.
    pub fn on_stream_end(&mut self, host: &mut dyn Host, context_id: u32) {
        self.waiting.remove(&context_id);
        self.response_fields.remove(&context_id);
        self.reading.remove(&context_id);
        if let Some(key) = self.in_flight.remove(&context_id) {
            let now_s = host.now_ns().map_or(0, |ns| ns / 1_000_000_000);
            self.config.limit_table.release(&*host, key, now_s);
        }
    }

    /// Whether the host should tick fast: requests wait for keys or bodies, or keys are on their way.
    pub fn busy(&self) -> bool {
        !self.waiting.is_empty() || !self.calls.is_empty() || !self.reading.is_empty()
    }

    /// Every document this plugin fetches.
    fn documents(&self) -> Vec<DocumentId> {
        let jwks = self.config.jwt_providers.iter().enumerate().filter(|(_, p)| p.remote.is_some());
        let mut documents: Vec<DocumentId> = jwks.map(|(i, _)| DocumentId::Jwks(ProviderId(i))).collect();
        if self.config.revocation.remote.is_some() {
            documents.push(DocumentId::Revocation);
        }
        documents
    }

    fn document(&mut self, id: DocumentId) -> Option<(&mut dyn Fetch, Label)> {
        match id {
            DocumentId::Jwks(provider) => {
                let provider = self.config.jwt_providers.get_mut(provider.0)?;
                let label = Label {
                    owner: format!("provider {}", provider.name),
                    what: format!("provider {}: JWKS", provider.name),
                    noun: "keys",
                    metric: format!("jwks_fetch_{{}}.{}", metric_safe(&provider.name)),
                };
                Some((provider.remote.as_mut()? as &mut dyn Fetch, label))
            }
            DocumentId::Revocation => {
                let label = Label {
                    owner: "revocation".into(),
                    what: "revocation list".into(),
                    noun: "list",
                    metric: "revocation_fetch_{}".into(),
                };
                Some((self.config.revocation.remote.as_mut()? as &mut dyn Fetch, label))
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
                .waiting
                .values()
                .filter(|w| DocumentId::Jwks(w.provider) == id && w.refetch)
                .map(|w| w.since_ms)
                .collect();
            let Some((document, label)) = self.document(id) else { continue };
            keys_changed |= document.sync(&*host) && matches!(id, DocumentId::Jwks(_));
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
        self.waiting
            .iter()
            .filter(|(_, w)| now_ms >= w.deadline_ms || self.remote_events(w.provider) != w.events_seen)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A fetch call answered (or failed: no status means timeout or connection failure).
    pub fn on_call_response(&mut self, host: &mut dyn Host, token: u32, response: &dyn CallResponse, now_ms: u64) {
        let Some(call) = self.calls.remove(&token) else { return };
        let Some((document, label)) = self.document(call.document) else { return };
        match document.on_response(&*host, call.step, response, now_ms) {
            Progress::Call(target) => match host.get(&target, document.fetch_config().policy.timeout_ms) {
                Some(next) => {
                    self.calls.insert(next, PendingCall { document: call.document, step: Step::Document, target });
                }
                None => self.fetch_failed(host, call.document, &target, CALL_NOT_MADE, now_ms),
            },
            Progress::Fetched { changed } => {
                let summary = document.summary().unwrap_or_default();
                let what = if changed { "" } else { " (unchanged)" };
                info!("wasm-authn: {}: fetched {summary}{what} ({})", label.what, call.target);
                host.increment(&label.metric.replace("{}", "success"));
                if changed && matches!(call.document, DocumentId::Jwks(_)) {
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
    /// does not know, or whose keys are not loaded yet).
    fn sync_keys(&mut self, host: &dyn Host) {
        let mut changed = false;
        for remote in self.config.jwt_providers.iter_mut().filter_map(|p| p.remote.as_mut()) {
            changed |= remote.sync(host);
        }
        if changed {
            self.verifier.keys_changed();
        }
    }
}

/// One line per decision for operators (Envoy's `wasm` logger at debug): the method,
/// the path without its query (where an API key may be), what was decided, the
/// principal's id and how it proved itself; never a credential.
fn log_decision(request: &RequestFacts, decision: &Decision) {
    let path = request.path.split(['?', '#']).next().unwrap_or("");
    let outcome = match decision {
        Decision::Allow { principal, .. } => {
            let by = principal.provider.as_deref().map(|p| format!(", {p}")).unwrap_or_default();
            format!("allowed: {} ({}{by})", principal.id, principal.method.as_str())
        }
        Decision::Bypass(_) => "bypassed".to_string(),
        Decision::Anonymous(_) => "anonymous (optional route, no credential)".to_string(),
        Decision::Reply(reply) => format!("answered {}: {}", reply.status, reply.reason.label()),
        Decision::WaitForKeys { .. } => "held for signing keys".to_string(),
        Decision::ReadBody(_) => "token request: reading its body".to_string(),
    };
    debug!("wasm-authn: {} {path}: {outcome}", request.method);
}

const CALL_NOT_MADE: &str = "the call could not be made (unknown cluster?)";

fn needs_key_check(decision: &Decision) -> bool {
    match decision {
        Decision::WaitForKeys { .. } => true,
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
