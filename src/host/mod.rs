//! The proxy-wasm adapter: the only code that talks to Envoy. It implements the
//! core's host traits on Envoy's hostcalls (`envoy`) and carries Envoy's events
//! to the core's `Plugin`: configuration and ticks (`root`), request headers and
//! stream ends (`http`).

mod abi;
mod envoy;
mod http;
mod root;
mod vm;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| Box::new(root::AuthnRoot::new(context_id)));
}}
