//! Benchmark floor: read one request header (`authorization`) and continue.
//!
//! With the plugin configuration `"host-calls"` it makes, instead, the host calls
//! wasm-authn makes for an allowed API-key request (and nothing else): the whole
//! header map, the clock, one header removed, two set. Its cost over the floor is
//! what those calls cost; wasm-authn's cost over it is the filter's own work
//! (BENCHMARKS.md).
//!
//! With `"verify-signature:<hex>"` it hands Envoy's `verify_signature` those
//! argument bytes (a key, a signature and a text, as wasm-authn does for a token
//! it has not seen) on every request: what the foreign function costs by itself.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { mode: Mode::default() }) });
}}

#[derive(Clone, Default)]
enum Mode {
    #[default]
    ReadOneHeader,
    /// wasm-authn's host calls for an allowed API key.
    HostCalls,
    /// `verify_signature` with these arguments (a valid signature).
    VerifySignature(Rc<[u8]>),
}

struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&configuration);
        let text = text.trim_matches('"');
        self.mode = match text.strip_prefix("verify-signature:") {
            Some(hex) => match from_hex(hex) {
                Some(arguments) => Mode::VerifySignature(arguments.into()),
                None => return false,
            },
            None if text == "host-calls" => Mode::HostCalls,
            None => Mode::ReadOneHeader,
        };
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Trivial { mode: self.mode.clone() }))
    }
}

struct Trivial {
    mode: Mode,
}

impl Context for Trivial {}

impl HttpContext for Trivial {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.mode {
            Mode::ReadOneHeader => {
                let _ = self.get_http_request_header("authorization");
            }
            Mode::HostCalls => {
                let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
                let _ = hostcalls::get_current_time();
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-api-key", None);
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-auth-principal", Some("client-1"));
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-auth-method", Some("api-key"));
            }
            Mode::VerifySignature(arguments) => {
                // `VerifySignatureResult { result: true }` is 08 01; anything else fails the bench's row.
                let verified = hostcalls::call_foreign_function("verify_signature", Some(arguments));
                if !matches!(verified, Ok(Some(result)) if result.starts_with(&[0x08, 0x01])) {
                    self.send_http_response(500, vec![], Some(b"verify_signature did not verify"));
                    return Action::Pause;
                }
            }
        }
        Action::Continue
    }
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}
