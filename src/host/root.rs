//! The root context: configuration at load, then a tick that keeps remote keys
//! fresh and decides again the requests that waited for them.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use log::{error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::config::Config;

use super::filter::{Filter, SharedFilter};
use super::request::{decide_request, AuthnRequest};
use super::signature::EnvoyCrypto;
use super::{jwks, now_ms};

/// While requests wait for keys or keys are missing, tick often: waiting requests resume within one tick.
const FAST_TICK: Duration = Duration::from_millis(20);
/// Otherwise a tick only picks up refreshes, due fetches and other VMs' keys.
const SLOW_TICK: Duration = Duration::from_millis(1000);

pub struct AuthnRoot {
    context_id: u32,
    filter: Option<SharedFilter>,
}

impl AuthnRoot {
    pub fn new(context_id: u32) -> Self {
        AuthnRoot { context_id, filter: None }
    }
}

/// Ask for fast ticks (from an HTTP context, this sets its root's period).
pub fn tick_fast() {
    let _ = hostcalls::set_tick_period(FAST_TICK);
}

impl Context for AuthnRoot {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        // Only record the result here: paused requests are resumed from the tick, never from this
        // callback (the SDK holds its HTTP-context table borrowed while it runs).
        if let Some(filter) = &self.filter {
            if let Ok(mut f) = filter.try_borrow_mut() {
                if let Some(now) = now_ms() {
                    jwks::on_response(&mut f, token_id, body_size, now);
                }
            }
        }
        tick_fast();
    }
}

impl RootContext for AuthnRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = match Config::from_json(&bytes) {
            Ok(config) => config,
            Err(e) => {
                error!("wasm-authn: configuration refused: {e}");
                return false;
            }
        };
        let crypto = EnvoyCrypto::detect(config.envoy_crypto);
        let filter = Filter::new(config, crypto);
        info!(
            "wasm-authn: configured ({} JWT providers, signatures via {})",
            filter.authn.config.jwt_providers.len(),
            if filter.crypto.available() { "Envoy's BoringSSL where it can" } else { "pure Rust" }
        );
        if filter.has_remote {
            tick_fast();
        }
        self.filter = Some(Rc::new(RefCell::new(filter)));
        true
    }

    fn on_tick(&mut self) {
        let (Some(filter), Some(now)) = (self.filter.clone(), now_ms()) else { return };
        let ready = {
            let Ok(mut f) = filter.try_borrow_mut() else { return };
            // Fetch first, while the effective context is still this root (calls belong to it).
            jwks::tick(&mut f, now);
            let ready: Vec<u32> = f
                .waiting
                .iter()
                .filter(|(_, w)| {
                    now >= w.deadline_ms
                        || f.remote.get(w.provider).and_then(Option::as_ref).is_some_and(|p| p.events != w.events_seen)
                })
                .map(|(id, _)| *id)
                .collect();
            ready
        };
        for context_id in ready {
            if hostcalls::set_effective_context(context_id).is_ok() {
                decide_request(&filter, context_id, true);
            } else if let Ok(mut f) = filter.try_borrow_mut() {
                f.waiting.remove(&context_id); // the request went away
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
        let busy = filter.try_borrow().is_ok_and(|f| f.busy());
        let _ = hostcalls::set_tick_period(if busy { FAST_TICK } else { SLOW_TICK });
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthnRequest { context_id, filter: self.filter.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
