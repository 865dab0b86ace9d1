//! Benchmark floor: read one request header (`authorization`) and continue.
//!
//! With the plugin configuration `"host-calls"` it makes, instead, the host calls
//! wasm-authn makes for an allowed API-key request (and nothing else): the whole
//! header map, the clock, one header removed, two set. Its cost over the floor is
//! what those calls cost; wasm-authn's cost over it is the filter's own work
//! (BENCHMARKS.md).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { host_calls: false }) });
}}

struct Root {
    /// The configuration asks for wasm-authn's host calls.
    host_calls: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.host_calls = self.get_plugin_configuration().unwrap_or_default() == b"\"host-calls\"";
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Trivial { host_calls: self.host_calls }))
    }
}

struct Trivial {
    host_calls: bool,
}

impl Context for Trivial {}

impl HttpContext for Trivial {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if !self.host_calls {
            let _ = self.get_http_request_header("authorization");
            return Action::Continue;
        }
        let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
        let _ = hostcalls::get_current_time();
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-api-key", None);
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-auth-principal", Some("client-1"));
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-auth-method", Some("api-key"));
        Action::Continue
    }
}
