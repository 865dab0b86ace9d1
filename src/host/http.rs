//! One request's HTTP context: every request callback goes to the core's
//! `Plugin`, whose `Step` is turned into the SDK's `Action` here and nowhere
//! else (`request_action`). A held request is decided again from the root
//! context's tick (after `set_effective_context`), which is why this runs on a
//! context id.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::header_map;
use crate::host_api::RequestBody;
use crate::network::parse_source_address;
use crate::peer::{Peer, PeerCertificate, ReadPeer};
use crate::pipeline::stream::Step;
use crate::plugin::Plugin;
use crate::reply::LocalReply;
use crate::request::{RequestFacts, Source};

use super::abi::{request_body, request_headers, send_local_response, set_property};
use super::envoy::{now_ms, EnvoyHost};
use super::vm::{tick_fast, Vm};

pub(super) struct AuthnRequest {
    pub context_id: u32,
    /// `None` only if the plugin has no configuration: every request is refused.
    pub vm: Option<Rc<RefCell<Vm>>>,
}

impl Context for AuthnRequest {
    /// An introspection call this request made (Envoy answers it here; should the
    /// stream end first, Envoy cancels the call and the requests waiting for it ask
    /// again once its lease is over). The answer is stored for every worker, and this
    /// request is decided at once (as the SDK's own examples resume from here); others
    /// held for the same token are decided on the next tick.
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        super::vm::call_answered(self.vm.as_ref(), token_id, body_size);
        if let Some(vm) = self.vm.as_ref() {
            revisit(vm, self.context_id);
        }
    }

    /// The fleet's rate-limit engine answered (or the call failed: a gRPC status, no
    /// message): recorded, and the request held for it is carried out.
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let _ = super::vm::engine_answered(self.vm.as_ref(), token_id, status_code, response_size);
        if let Some(vm) = self.vm.as_ref() {
            revisit(vm, self.context_id);
        }
    }
}

impl HttpContext for AuthnRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let step = with_request(self.vm.as_ref(), |plugin, host, request, now| {
            // No body comes: it is known (empty).
            let request = RequestFacts { body: end_of_stream.then_some("").or(request.body), ..*request };
            plugin.on_request_headers(host, self.context_id, &request, now)
        });
        request_action(step)
    }

    /// Every chunk goes through the stream's fate: held until it is decided, whatever
    /// Envoy's `allow_on_headers_stop_iteration` says.
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let step = with_plugin(self.vm.as_ref(), |plugin, host, now| {
            plugin.on_request_body(host, self.context_id, &BufferedBody, body_size, end_of_stream, now)
        });
        request_action(step)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let step = with_plugin(self.vm.as_ref(), |plugin, host, now| {
            plugin.on_request_trailers(host, self.context_id, &BufferedBody, now)
        });
        request_action(step)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(Ok(mut vm)) = self.vm.as_ref().map(|vm| vm.try_borrow_mut()) {
            for (name, value) in vm.plugin.response_headers(self.context_id) {
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(&value));
            }
        }
        response_action()
    }

    /// Called once at the end of every stream, however it ended.
    fn on_log(&mut self) {
        if let Some(Ok(mut vm)) = self.vm.as_ref().map(|vm| vm.try_borrow_mut()) {
            let Vm { plugin, host } = &mut *vm;
            plugin.on_stream_end(host, self.context_id);
        }
    }
}

/// A held stream, brought back by the tick or by its own call's answer: decided again,
/// and carried out. A stream allowed here is resumed, one answered is answered.
pub(super) fn revisit(vm: &Rc<RefCell<Vm>>, context_id: u32) {
    let step = with_request(Some(vm), |plugin, host, request, now| plugin.revisit(host, context_id, request, now));
    let allowed = matches!(step, Step::Continue(_));
    let _ = request_action(step);
    if allowed {
        let _ = hostcalls::resume_http_request();
    }
}

/// The one place a request's `Step` becomes an `Action`: `Continue` only from a
/// `Go`, which the core makes for a stream it decided to allow.
fn request_action(step: Step) -> Action {
    match step {
        Step::Continue(go) => {
            if let Some(changes) = go.changes() {
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
                if let Some(new) = &changes.body {
                    let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, new.replaces, new.body.as_bytes());
                }
            }
            Action::Continue
        }
        Step::Answer(reply) => {
            send(&reply);
            Action::Pause
        }
        Step::Hold => {
            tick_fast(); // the root brings it back
            Action::Pause
        }
    }
}

/// Responses are not this filter's to hold: they go on.
fn response_action() -> Action {
    Action::Continue
}

/// The request as the host gives it, to a plugin event; fail closed (an answer) when
/// the plugin, the headers or the time cannot be had.
fn with_request(
    vm: Option<&Rc<RefCell<Vm>>>,
    event: impl FnOnce(&mut Plugin, &mut EnvoyHost, &RequestFacts, u64) -> Step,
) -> Step {
    let Some(vm) = vm else { return Step::Answer(LocalReply::not_configured()) };
    let serialized = request_headers();
    let Some(headers) = serialized.as_deref().and_then(header_map::decode) else {
        return Step::Answer(LocalReply::host_unavailable());
    };
    // Properties cost a host call each: read only what the configuration uses, the
    // client address only when a decision asks for it (and once).
    let source = OnceCell::new();
    let read_source =
        || *source.get_or_init(|| property(&["source", "address"]).as_deref().and_then(parse_source_address));
    with_plugin(Some(vm), |plugin, host, now| {
        let mut request = RequestFacts::from_headers(&headers);
        let route_name = plugin.needs_route_name().then(|| property(&["xds", "route_name"])).flatten();
        request.route_name = route_name.as_deref();
        if plugin.needs_source_address() {
            request.source = Source::Lazy(&read_source);
        }
        // No host call unless a decision asks: `mtls`, or a token bound to a certificate.
        let peer = PeerReader { names: plugin.needs_peer_names(), read: OnceCell::new() };
        request.peer = Peer::Lazy(&peer);
        event(plugin, host, &request, now)
    })
}

/// The VM's plugin and host, and the time, to a plugin event; fail closed when either is not to be had.
fn with_plugin(vm: Option<&Rc<RefCell<Vm>>>, event: impl FnOnce(&mut Plugin, &mut EnvoyHost, u64) -> Step) -> Step {
    let Some(vm) = vm else { return Step::Answer(LocalReply::not_configured()) };
    // Never expected to fail (the host calls one context at a time); fail closed if it does.
    let (Some(now), Ok(mut vm)) = (now_ms(), vm.try_borrow_mut()) else {
        return Step::Answer(LocalReply::host_unavailable());
    };
    let Vm { plugin, host } = &mut *vm;
    let step = event(plugin, host, now);
    // An answer leaves the principal it names for the access log, as an allowed request does.
    if let Step::Answer(reply) = &step {
        for (key, value) in plugin.answer_state(reply) {
            let _ = set_property(&key, &value);
        }
    }
    step
}

/// The request body Envoy has buffered for this stream.
struct BufferedBody;

impl RequestBody for BufferedBody {
    fn read(&self, max_size: usize) -> Option<Vec<u8>> {
        request_body(max_size)
    }
}

/// A string property of the stream (`xds.route_name`, `source.address`).
fn property(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

/// The connection's client certificate as Envoy verified it, read on first use: its
/// digest, and its names only when `mtls` reads them.
struct PeerReader {
    names: bool,
    read: OnceCell<Option<PeerCertificate>>,
}

impl ReadPeer for PeerReader {
    fn read(&self) -> Option<&PeerCertificate> {
        self.read
            .get_or_init(|| {
                // TLS with a client certificate (which the listener's validation_context verified).
                let mtls = hostcalls::get_property(vec!["connection", "mtls"]).ok().flatten();
                if mtls.as_deref() != Some(&[1]) {
                    return None;
                }
                let digest = property(&["connection", "sha256_peer_certificate_digest"])?;
                let mut peer = PeerCertificate::from_hex_digest(&digest)?;
                if self.names {
                    let non_empty = |name: &str| property(&["connection", name]).filter(|value| !value.is_empty());
                    peer.uri_san = non_empty("uri_san_peer_certificate");
                    peer.dns_san = non_empty("dns_san_peer_certificate");
                    peer.subject = non_empty("subject_peer_certificate");
                }
                Some(peer)
            })
            .as_ref()
    }
}

/// Answer the request, with `wasm_authn.<reason>` as Envoy's response code details.
fn send(reply: &LocalReply) {
    let headers = crate::header_map::encode(&reply.all_headers());
    let body = reply.body();
    let _ = send_local_response(reply.status, &reply.details(), &headers, body.as_bytes());
}
