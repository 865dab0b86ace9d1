//! One request's HTTP context: its headers to the core, the verdict back to
//! Envoy. A request held for keys is decided again from the root context's tick
//! (after `set_effective_context`), which is why this runs on a context id.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::network::parse_source_address;
use crate::plugin::Verdict;
use crate::reply::LocalReply;
use crate::request::RequestFacts;

use super::envoy::now_ms;
use super::headers::request_headers;
use super::vm::{tick_fast, Vm};

pub struct AuthnRequest {
    pub context_id: u32,
    /// `None` only if the plugin has no configuration: every request is refused.
    pub vm: Option<Rc<RefCell<Vm>>>,
}

impl Context for AuthnRequest {}

impl HttpContext for AuthnRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.vm {
            Some(vm) => handle_request(vm, self.context_id, false),
            None => {
                send(&LocalReply::not_configured());
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(Ok(mut vm)) = self.vm.as_ref().map(|vm| vm.try_borrow_mut()) {
            for (name, value) in vm.plugin.response_headers(self.context_id) {
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(&value));
            }
        }
        Action::Continue
    }

    /// Called once at the end of every stream, however it ended.
    fn on_log(&mut self) {
        if let Some(Ok(mut vm)) = self.vm.as_ref().map(|vm| vm.try_borrow_mut()) {
            let Vm { plugin, host } = &mut *vm;
            plugin.on_stream_end(host, self.context_id, now_ms().unwrap_or(0));
        }
    }
}

/// Decide one request and carry the verdict out. `resumed`: the request was held
/// for keys and is decided again from the root context.
pub fn handle_request(vm: &Rc<RefCell<Vm>>, context_id: u32, resumed: bool) -> Action {
    // Fail closed: a request whose headers or time cannot be read never passes.
    let (Some(headers), Some(now)) = (request_headers(), now_ms()) else {
        send(&LocalReply::host_unavailable());
        return Action::Pause;
    };
    let verdict = {
        let Ok(mut vm) = vm.try_borrow_mut() else {
            // Never expected (the host calls one context at a time); fail closed.
            send(&LocalReply::host_unavailable());
            return Action::Pause;
        };
        let Vm { plugin, host } = &mut *vm;
        let mut request = RequestFacts::from_headers(&headers);
        // Properties cost a host call each: read only what the configuration uses.
        let route_name = plugin.needs_route_name().then(|| property(&["xds", "route_name"])).flatten();
        request.route_name = route_name.as_deref();
        if plugin.needs_source_address() {
            request.source = property(&["source", "address"]).as_deref().and_then(parse_source_address);
        }
        plugin.on_request(host, context_id, &request, now)
    };
    match verdict {
        Verdict::Continue(changes) => {
            // One call per change: measured cheaper than writing the whole map back,
            // which makes Envoy remove and re-add every header.
            for name in &changes.remove {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
            }
            for (name, value) in &changes.set {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
            }
            if let Some(path) = &changes.path {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(path));
            }
            if resumed {
                let _ = hostcalls::resume_http_request();
            }
            Action::Continue
        }
        Verdict::Reply(reply) => {
            send(&reply);
            Action::Pause
        }
        Verdict::Pause => {
            tick_fast();
            Action::Pause
        }
    }
}

/// A string property of the stream (`xds.route_name`, `source.address`).
fn property(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

fn send(reply: &LocalReply) {
    let headers = reply.all_headers();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let body = reply.body();
    let _ = hostcalls::send_http_response(u32::from(reply.status), headers, Some(body.as_bytes()));
}
