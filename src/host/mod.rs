//! The proxy-wasm adapter: the only code that talks to Envoy. The root context
//! configures the filter and keeps remote keys fresh (`jwks`); the HTTP
//! context runs the request path (`request`).

mod filter;
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

/// Unix time in milliseconds from the host (never the VM's own clock).
pub(crate) fn now_ms() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}
