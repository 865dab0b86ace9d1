//! The request path: one request's headers in, a decision, and its effect.
//!
//!   strip headers the filter owns -> decide (bypass, credential, verify)
//!   -> answer 401/503 | wait for remote keys | add principal headers and continue
//!
//! A request waiting for keys is decided again from the root context's tick
//! (after `set_effective_context`), which is why this runs on a context id and
//! not on `self`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::authn::{Allowed, Decision};
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
    Bypass,
    Allow(Allowed),
    Reject(Rejection),
    Wait,
}

/// Decide one request and carry the decision out. `resumed` is true when the
/// request was paused for keys and is decided again from the root context.
pub fn decide_request(filter: &SharedFilter, context_id: u32, resumed: bool) -> Action {
    // Header values are bytes (HTTP allows obs-text): the SDK's `get_map` would panic on
    // one that is not UTF-8, so read bytes and decide on a lossy copy.
    let Ok(raw_headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
        return Action::Continue; // the stream is gone
    };
    let headers: Vec<(String, String)> =
        raw_headers.iter().map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned())).collect();
    let now = now_ms();
    let (effect, owned_headers) = {
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
        // Keys another VM fetched may be waiting in shared data: look before waiting or refusing.
        if needs_key_check(&decision) && super::jwks::sync_all(f) {
            decision = decide(f, &facts, now);
        }
        let effect = match decision {
            Decision::Bypass => {
                f.metrics.increment("bypassed");
                f.waiting.remove(&context_id);
                Effect::Bypass
            }
            Decision::Allow(allowed) => {
                f.metrics.increment("allowed");
                f.waiting.remove(&context_id);
                Effect::Allow(allowed)
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
        };
        (effect, f.authn.config.owned_headers.clone())
    };

    match effect {
        Effect::Bypass => {
            // Rare: forged principal headers on a bypassed path.
            for name in owned_headers.iter().filter(|name| headers.iter().any(|(n, _)| n == *name)) {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
            }
            if resumed {
                let _ = hostcalls::resume_http_request();
            }
            Action::Continue
        }
        Effect::Allow(allowed) => {
            let upstream = upstream_headers(&raw_headers, &owned_headers, &allowed);
            let _ = hostcalls::set_map_bytes(MapType::HttpRequestHeaders, upstream);
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

/// The request headers as they go upstream, written back in one host call (a call
/// per header costs more than the whole map): the client's headers as sent, less
/// every header the filter owns and the consumed credential, plus the principal's.
fn upstream_headers<'h>(
    raw: &'h [(String, Vec<u8>)],
    owned: &[String],
    allowed: &'h Allowed,
) -> Vec<(&'h str, &'h [u8])> {
    let mut headers: Vec<(&str, &[u8])> = raw
        .iter()
        .filter(|(name, _)| {
            !owned.contains(name)
                && !allowed.remove_headers.contains(name)
                && !(allowed.new_path.is_some() && name == ":path")
        })
        .map(|(name, value)| (name.as_str(), value.as_slice()))
        .collect();
    if let Some(path) = &allowed.new_path {
        headers.push((":path", path.as_bytes()));
    }
    headers.extend(allowed.set_headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())));
    headers
}

fn decide(f: &mut super::filter::Filter, facts: &RequestFacts, now_ms: u64) -> Decision {
    let states = super::filter::remote_states(&f.remote, now_ms);
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
