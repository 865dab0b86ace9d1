//! The proxy-wasm adapter: the only code that talks to Envoy. The root context
//! configures the filter and keeps remote keys fresh (`jwks`); the HTTP
//! context runs the request path (`request`).

mod filter;
mod headers;
mod jwks;
mod metrics;
mod request;
mod root;
mod signature;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| Box::new(root::AuthnRoot::new(context_id)));
}}

/// Unix time in milliseconds from the host (never the VM's own clock); None when
/// the host cannot tell, and then nothing that depends on time may pass.
pub(crate) fn now_ms() -> Option<u64> {
    let since_epoch = proxy_wasm::hostcalls::get_current_time().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_millis()).ok().filter(|ms| *ms > 0)
}
