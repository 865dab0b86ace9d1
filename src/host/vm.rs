//! One VM's plugin and its host, shared by the root context and its HTTP contexts.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;

use crate::plugin::Plugin;

use super::envoy::{now_ms, EnvoyCallResponse, EnvoyHost};

/// While requests wait for keys or keys are on their way, tick often: held requests resume within one tick.
pub(super) const FAST_TICK: Duration = Duration::from_millis(20);

pub(super) struct Vm {
    pub plugin: Plugin,
    pub host: EnvoyHost,
}

/// Ask for fast ticks (from an HTTP context, this sets its root's period).
pub(super) fn tick_fast() {
    let _ = hostcalls::set_tick_period(FAST_TICK);
}

/// A call answered (a fetch, made from the tick; or an introspection, made from the
/// request that needed it: its answer comes to that request's context). Only the
/// result is recorded here: other held requests are resumed from the tick, never from
/// this callback (the SDK holds its HTTP-context table borrowed while it runs).
pub(super) fn call_answered(vm: Option<&Rc<RefCell<Vm>>>, token_id: u32, body_size: usize) {
    if let (Some(vm), Some(now)) = (vm, now_ms()) {
        if let Ok(mut vm) = vm.try_borrow_mut() {
            let Vm { plugin, host } = &mut *vm;
            plugin.on_call_response(host, token_id, &EnvoyCallResponse { body_size }, now);
        }
    }
    tick_fast();
}

/// The most of the engine's answer read (its first field decides; statuses and headers follow).
const MAX_ENGINE_ANSWER: usize = 4096;

/// The rate-limit engine answered a call: recorded; the caller revisits the request held
/// for it (the context returned).
pub(super) fn engine_answered(
    vm: Option<&Rc<RefCell<Vm>>>,
    token_id: u32,
    status_code: u32,
    size: usize,
) -> Option<u32> {
    let message = match size {
        0 => None,
        size => hostcalls::get_buffer(proxy_wasm::types::BufferType::GrpcReceiveBuffer, 0, size.min(MAX_ENGINE_ANSWER))
            .ok()
            .flatten(),
    };
    let mut vm = vm?.try_borrow_mut().ok()?;
    vm.plugin.on_engine_answer(token_id, status_code, message.as_deref().unwrap_or_default())
}
