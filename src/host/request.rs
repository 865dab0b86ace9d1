//! The request path: one request's headers in, a decision, and its effect.
//!
//!   headers in -> decide (bypass, credential, cache, verify)
//!   -> answer 401/503 | wait for remote keys
//!   | remove the headers the filter owns and the credential, add the principal's,
//!     and continue
//!
//! A request waiting for keys is decided again from the root context's tick
//! (after `set_effective_context`), which is why this runs on a context id and
//! not on `self`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::authn::Decision;
use crate::credential::RequestFacts;
use crate::reject::Rejection;

use super::filter::{SharedFilter, Waiting};
use super::now_ms;

pub struct AuthnRequest {
    pub context_id: u32,
    /// `None` only if the plugin has no configuration: every request is refused.
    pub filter: Option<SharedFilter>,
}

impl Context for AuthnRequest {}

impl HttpContext for AuthnRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.filter {
            Some(filter) => decide_request(filter, self.context_id, false),
            None => {
                send_rejection(&Rejection::not_configured());
                Action::Pause
            }
        }
    }
}

/// What to do with the request once the filter's state is no longer borrowed.
enum Effect {
    /// Pass upstream after these header changes.
    Continue(HeaderChanges),
    Reject(Rejection),
    Wait,
}

#[derive(Default)]
struct HeaderChanges {
    remove: Vec<String>,
    set: Vec<(String, String)>,
    path: Option<String>,
}

/// Decide one request and carry the decision out. `resumed` is true when the
/// request was paused for keys and is decided again from the root context.
pub fn decide_request(filter: &SharedFilter, context_id: u32, resumed: bool) -> Action {
    // Fail closed: a request whose headers or time cannot be read never passes.
    let (Some(headers), Some(now)) = (super::headers::request_headers(), now_ms()) else {
        send_rejection(&Rejection::host_unavailable());
        return Action::Pause;
    };
    let effect = {
        let Ok(mut f) = filter.try_borrow_mut() else {
            // Never expected (the host calls one context at a time); fail closed.
            send_rejection(&Rejection::keys_unavailable(1));
            return Action::Pause;
        };
        let f = &mut *f;
        let method = header(&headers, ":method");
        let path = header(&headers, ":path");
        let facts = RequestFacts { method, path, headers: &headers };

        let mut decision = decide(f, &facts, now);
        // Another VM may have fetched keys, or refetched already: look before waiting or refusing.
        if needs_key_check(&decision) {
            super::jwks::sync_all(f);
            decision = decide(f, &facts, now);
        }
        match decision {
            Decision::Bypass { remove_headers, new_path } => {
                let changes = HeaderChanges { remove: remove_headers, set: Vec::new(), path: new_path };
                f.metrics.increment("bypassed");
                f.waiting.remove(&context_id);
                Effect::Continue(changes)
            }
            Decision::Allow(allowed) => {
                let changes =
                    HeaderChanges { remove: allowed.remove_headers, set: allowed.set_headers, path: allowed.new_path };
                f.metrics.increment("allowed");
                f.waiting.remove(&context_id);
                Effect::Continue(changes)
            }
            Decision::Deny(rejection) => {
                f.metrics.increment(&format!("denied.{}", rejection.reason));
                f.waiting.remove(&context_id);
                Effect::Reject(rejection)
            }
            Decision::WaitForKeys { provider, refetch } => {
                let wait_ms = f.authn.config.jwks_wait_ms;
                let events = f.remote.get(provider).and_then(Option::as_ref).map_or(0, |p| p.events);
                let entry = f.waiting.entry(context_id).or_insert(Waiting {
                    provider,
                    deadline_ms: now + wait_ms,
                    events_seen: events,
                    refetch,
                });
                entry.provider = provider;
                entry.events_seen = events;
                entry.refetch = refetch;
                if now >= entry.deadline_ms {
                    f.waiting.remove(&context_id);
                    let rejection = Rejection::keys_unavailable(retry_after_seconds(wait_ms));
                    f.metrics.increment(&format!("denied.{}", rejection.reason));
                    Effect::Reject(rejection)
                } else {
                    Effect::Wait
                }
            }
        }
    };

    match effect {
        Effect::Continue(changes) => {
            // One call per change: measured cheaper than writing the whole map back,
            // which makes Envoy remove and re-add every header.
            for name in &changes.remove {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
            }
            for (name, value) in &changes.set {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
            }
            if let Some(path) = &changes.path {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(path));
            }
            if resumed {
                let _ = hostcalls::resume_http_request();
            }
            Action::Continue
        }
        Effect::Reject(rejection) => {
            send_rejection(&rejection);
            Action::Pause
        }
        Effect::Wait => {
            super::root::tick_fast();
            Action::Pause
        }
    }
}

fn decide(f: &mut super::filter::Filter, facts: &RequestFacts, now_ms: u64) -> Decision {
    // Without remote providers there is no remote state to build, per request.
    let states = if f.has_remote { super::filter::remote_states(&f.remote, now_ms) } else { Vec::new() };
    f.authn.decide(facts, &states, &f.crypto, now_ms / 1000)
}

fn needs_key_check(decision: &Decision) -> bool {
    match decision {
        Decision::WaitForKeys { .. } => true,
        Decision::Deny(rejection) => rejection.reason == "jwt_unknown_key",
        _ => false,
    }
}

fn retry_after_seconds(wait_ms: u64) -> u64 {
    wait_ms.div_ceil(1000).max(1)
}

fn send_rejection(rejection: &Rejection) {
    let headers = rejection.headers();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let body = rejection.body();
    let _ = hostcalls::send_http_response(u32::from(rejection.status), headers, Some(body.as_bytes()));
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> &'h str {
    headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
}
