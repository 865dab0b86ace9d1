//! The root context: configuration at load, then a tick that keeps remote keys
//! fresh and brings back the requests held for them (or for their body), and the
//! answers to fetches.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use log::{error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::config::Config;
use crate::plugin::Plugin;

use super::envoy::{now_ms, EnvoyHost};
use super::http::{revisit, AuthnRequest};
use super::vm::{tick_fast, Vm, FAST_TICK};

/// Without requests waiting or keys on their way, a tick only picks up refreshes,
/// due fetches and other VMs' keys.
const SLOW_TICK: Duration = Duration::from_millis(1000);

pub(super) struct AuthnRoot {
    context_id: u32,
    vm: Option<Rc<RefCell<Vm>>>,
}

impl AuthnRoot {
    pub(super) fn new(context_id: u32) -> Self {
        AuthnRoot { context_id, vm: None }
    }
}

impl Context for AuthnRoot {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        super::vm::call_answered(self.vm.as_ref(), token_id, body_size);
    }

    /// The engine answered a call asked while the tick revisited a held stream (the SDK
    /// files a call under the context it last called: this root): that stream is carried out.
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(vm) = self.vm.clone() else { return };
        if let Some(context_id) = super::vm::engine_answered(Some(&vm), token_id, status_code, response_size) {
            if hostcalls::set_effective_context(context_id).is_ok() {
                revisit(&vm, context_id);
            }
            let _ = hostcalls::set_effective_context(self.context_id);
        }
    }
}

impl RootContext for AuthnRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        follow_host_log_level();
        let bytes =
            hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten().unwrap_or_default();
        let config = match Config::from_json(&bytes) {
            Ok(config) => config,
            Err(e) => {
                error!("wasm-authn: configuration refused: {e}");
                return false;
            }
        };
        let host = EnvoyHost::new(config.envoy_crypto);
        if let (false, Some(provider)) =
            (host.crypto_available(), config.jwt_providers.iter().find(|p| p.local_keys.needs_host_crypto()))
        {
            error!("wasm-authn: configuration refused: {}: a P-384 key needs Envoy's verify_signature, which this host lacks", provider.name);
            return false;
        }
        info!(
            "wasm-authn: configured ({} JWT providers, signatures via {})",
            config.jwt_providers.len(),
            if host.crypto_available() { "Envoy's BoringSSL where it can" } else { "pure Rust" }
        );
        if config.fetches_documents() {
            tick_fast();
        } else {
            // The tick also hands Envoy the counts `count_soon` added up.
            let _ = hostcalls::set_tick_period(SLOW_TICK);
        }
        self.vm = Some(Rc::new(RefCell::new(Vm { plugin: Plugin::new(config), host })));
        true
    }

    fn on_tick(&mut self) {
        follow_host_log_level();
        let (Some(vm), Some(now)) = (self.vm.clone(), now_ms()) else { return };
        // Fetch first, while the effective context is still this root (calls belong to it).
        let ready = match vm.try_borrow_mut() {
            Ok(mut vm) => {
                let Vm { plugin, host } = &mut *vm;
                plugin.on_tick(host, now)
            }
            Err(_) => return,
        };
        for context_id in ready {
            if hostcalls::set_effective_context(context_id).is_ok() {
                revisit(&vm, context_id);
            } else if let Ok(mut vm) = vm.try_borrow_mut() {
                let Vm { plugin, host } = &mut *vm;
                plugin.on_stream_end(host, context_id); // the request went away
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
        if let Ok(mut vm) = vm.try_borrow_mut() {
            vm.host.flush_counters();
        }
        let busy = vm.try_borrow().is_ok_and(|vm| vm.plugin.busy());
        let _ = hostcalls::set_tick_period(if busy { FAST_TICK } else { SLOW_TICK });
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthnRequest { context_id, vm: self.vm.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Log what Envoy's `wasm` logger shows, no more (a message below its level would cost
/// a host call for nothing) and no less (`debug` shows every decision). Followed on
/// each tick: an operator may change it through the admin interface.
fn follow_host_log_level() {
    if let Some(level) = super::abi::log_level() {
        log::set_max_level(level);
    }
}
