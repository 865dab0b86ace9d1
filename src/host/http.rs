//! One request's HTTP context: its headers (and a token request's body) to the
//! core, the verdict back to Envoy. A request held for keys is decided again from
//! the root context's tick (after `set_effective_context`), which is why this runs
//! on a context id.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::header_map;
use crate::network::parse_source_address;
use crate::plugin::Verdict;
use crate::reply::LocalReply;
use crate::request::RequestFacts;
use crate::token_endpoint::grant::Presented;
use crate::token_endpoint::MAX_BODY_BYTES;

use super::abi::{request_body, request_headers, send_local_response, set_property};
use super::envoy::now_ms;
use super::vm::{tick_fast, Vm};

pub struct AuthnRequest {
    pub context_id: u32,
    /// `None` only if the plugin has no configuration: every request is refused.
    pub vm: Option<Rc<RefCell<Vm>>>,
    /// A token request whose body is being read.
    pub token_request: Option<Presented>,
}

impl Context for AuthnRequest {}

impl HttpContext for AuthnRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(vm) = &self.vm else {
            send(&LocalReply::not_configured());
            return Action::Pause;
        };
        match handle_request(vm, self.context_id, false) {
            Handled::Done(action) => action,
            Handled::ReadBody(presented) if end_of_stream => {
                answer_token_request(vm, self.context_id, &presented, &[]);
                Action::Pause
            }
            Handled::ReadBody(presented) => {
                tick_fast(); // the root answers it if its body does not come in time
                self.token_request = Some(presented);
                Action::Pause
            }
        }
    }

    /// Only token requests are read: every other body streams past.
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(vm), true) = (&self.vm, self.token_request.is_some()) else { return Action::Continue };
        // Over the limit: no need to wait for the rest (the endpoint answers 413).
        if body_size > MAX_BODY_BYTES || end_of_stream {
            if let Some(presented) = self.token_request.take() {
                finish_token_request(vm, self.context_id, &presented, body_size);
            }
        }
        // Buffered until the end; answered, it goes nowhere.
        Action::Pause
    }

    /// Trailers end a body whose last data frame did not say so (HTTP/2, gRPC-style clients).
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let (Some(vm), Some(presented)) = (&self.vm, self.token_request.take()) else { return Action::Continue };
        finish_token_request(vm, self.context_id, &presented, MAX_BODY_BYTES + 1);
        Action::Pause
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
            plugin.on_stream_end(host, self.context_id);
        }
    }
}

/// What became of a request's headers.
pub enum Handled {
    /// Carried out: continue, answered, or held.
    Done(Action),
    /// A token request: its body is to be read.
    ReadBody(Presented),
}

/// Read what a token request's body holds (at most one byte past the limit: enough
/// for the endpoint to see it is too large) and answer it.
fn finish_token_request(vm: &Rc<RefCell<Vm>>, context_id: u32, presented: &Presented, body_size: usize) {
    match request_body(body_size.min(MAX_BODY_BYTES + 1)) {
        Some(body) => answer_token_request(vm, context_id, presented, &body),
        None => send(&LocalReply::host_unavailable()),
    }
}

fn answer_token_request(vm: &Rc<RefCell<Vm>>, context_id: u32, presented: &Presented, body: &[u8]) {
    let (Some(now), Ok(mut vm)) = (now_ms(), vm.try_borrow_mut()) else {
        send(&LocalReply::host_unavailable());
        return;
    };
    let Vm { plugin, host } = &mut *vm;
    let reply = plugin.on_token_request(host, context_id, presented, body, now);
    send(&reply);
}

/// Decide one request and carry the verdict out. `resumed`: the request was held
/// for keys and is decided again from the root context.
pub fn handle_request(vm: &Rc<RefCell<Vm>>, context_id: u32, resumed: bool) -> Handled {
    // Fail closed: a request whose headers or time cannot be read never passes.
    let serialized = request_headers();
    let headers = serialized.as_deref().and_then(header_map::decode);
    let (Some(headers), Some(now)) = (headers, now_ms()) else {
        send(&LocalReply::host_unavailable());
        return Handled::Done(Action::Pause);
    };
    let verdict = {
        let Ok(mut vm) = vm.try_borrow_mut() else {
            // Never expected (the host calls one context at a time); fail closed.
            send(&LocalReply::host_unavailable());
            return Handled::Done(Action::Pause);
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
    let action = match verdict {
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
            for (key, value) in &changes.state {
                let _ = set_property(key, value);
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
        // Token requests are never held, so never resumed; fail closed if one were.
        Verdict::ReadBody(_) if resumed => {
            send(&LocalReply::host_unavailable());
            Action::Pause
        }
        Verdict::ReadBody(presented) => return Handled::ReadBody(presented),
    };
    Handled::Done(action)
}

/// A string property of the stream (`xds.route_name`, `source.address`).
fn property(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

/// Answer the request, with `wasm_authn.<reason>` as Envoy's response code details.
pub fn send(reply: &LocalReply) {
    let headers = crate::header_map::encode(&reply.all_headers());
    let body = reply.body();
    let _ = send_local_response(reply.status, &reply.details(), &headers, body.as_bytes());
}
