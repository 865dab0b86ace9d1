//! One VM's plugin and its host, shared by the root context and its HTTP contexts.

use std::time::Duration;

use proxy_wasm::hostcalls;

use crate::plugin::Plugin;

use super::envoy::EnvoyHost;

/// While requests wait for keys or keys are on their way, tick often: held requests resume within one tick.
pub const FAST_TICK: Duration = Duration::from_millis(20);

pub struct Vm {
    pub plugin: Plugin,
    pub host: EnvoyHost,
}

/// Ask for fast ticks (from an HTTP context, this sets its root's period).
pub fn tick_fast() {
    let _ = hostcalls::set_tick_period(FAST_TICK);
}
