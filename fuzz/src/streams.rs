//! The `stream_steps` target's driver: a `Plugin`, a fake host that records the
//! fetches it starts, and sequences of host callbacks on a few streams, checked
//! against the invariant that only a decision continues a stream.

use std::sync::OnceLock;

use serde_json::json;
use wasm_authn::config::Config;
use wasm_authn::host_api::RequestBody;
use wasm_authn::pipeline::stream::Step;
use wasm_authn::plugin::Plugin;
use wasm_authn::request::{Header, RequestFacts};

use wasm_authn::testing::FakeResponse;

use crate::{
    flip_signature_bit, public_jwk, sha256_hex, signed_token, with_kid, FakeHost, FakeShared, SignOptions,
    ED_PRIVATE_PEM, NOW, PASSWORD, REMOTE_ISSUER,
};

const STREAMS: u32 = 4;
const REVOKED_JTI: &str = "revoked-jti";

fn config() -> Config {
    let config = json!({
        "bypass": [{"path_prefix": "/healthz"}],
        "rules": [{"match": {"path_prefix": "/admin"}, "principals": ["api-key:nobody"]}],
        "api_keys": {
            "form_field": "@authtoken",
            "clients": [{"id": "reporting", "key_hash": format!("sha256:{}", sha256_hex(PASSWORD)), "max_concurrent": 2}]
        },
        "jwt": {"jwks_wait_ms": 2000, "providers": [{
            "name": "remote", "issuer": REMOTE_ISSUER,
            "remote_jwks": {"cluster": "jwks", "authority": "jwks.local", "path": "/jwks.json", "refresh_seconds": 5}
        }]},
        "revocation": {"wait_ms": 1500,
                       "remote": {"cluster": "lists", "authority": "lists.local", "path": "/revoked.json"}},
        "token_endpoint": {"path": "/token", "issuer": "https://tokens.fuzz.example", "signing_key": ED_PRIVATE_PEM},
    });
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

/// The requests a stream can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ApiKey,
    WrongApiKey,
    Bearer,
    ForgedBearer,
    UnknownKid,
    RevokedBearer,
    TokenRequest,
    FormKey,
    WrongFormKey,
    FormWithHeaderKey,
    Bypassed,
    Forbidden,
}

const KINDS: [Kind; 12] = [
    Kind::ApiKey,
    Kind::WrongApiKey,
    Kind::Bearer,
    Kind::ForgedBearer,
    Kind::UnknownKid,
    Kind::RevokedBearer,
    Kind::TokenRequest,
    Kind::FormKey,
    Kind::WrongFormKey,
    Kind::FormWithHeaderKey,
    Kind::Bypassed,
    Kind::Forbidden,
];

impl Kind {
    /// Whether a decision may let it through (whether one does depends on keys, lists, limits, time).
    fn may_pass(self) -> bool {
        matches!(self, Kind::ApiKey | Kind::Bearer | Kind::FormKey | Kind::FormWithHeaderKey | Kind::Bypassed)
    }
}

struct Tokens {
    valid: String,
    forged: String,
    unknown_kid: String,
    revoked: String,
}

fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let sign = |kid: &str, jti: &str| {
            let header = json!({"alg": "ES256", "kid": kid}).to_string();
            let claims = json!({"iss": REMOTE_ISSUER, "sub": "svc", "exp": NOW + 3600, "jti": jti}).to_string();
            signed_token(header.as_bytes(), claims.as_bytes(), SignOptions { rsa: false, kidless_secret: false }).0
        };
        let valid = sign("ec", "j-1");
        Tokens {
            forged: flip_signature_bit(&valid, 77).unwrap(),
            unknown_kid: sign("ghost", "j-2"),
            revoked: sign("ec", REVOKED_JTI),
            valid,
        }
    })
}

/// A request's headers and the body it sends.
fn request(kind: Kind) -> (Vec<Header<'static>>, &'static [u8]) {
    let tokens = tokens();
    let form = "application/x-www-form-urlencoded";
    let (method, path, extra, body): (&str, &str, Vec<(&str, String)>, &'static [u8]) = match kind {
        Kind::ApiKey => ("GET", "/orders", vec![("x-api-key", PASSWORD.into())], b""),
        Kind::WrongApiKey => ("POST", "/orders", vec![("x-api-key", "guess".into())], b"{\"rows\": 1}"),
        Kind::Bearer => ("POST", "/orders", vec![("authorization", format!("Bearer {}", tokens.valid))], b"rows"),
        Kind::ForgedBearer => ("POST", "/orders", vec![("authorization", format!("Bearer {}", tokens.forged))], b"x"),
        Kind::UnknownKid => {
            ("POST", "/orders", vec![("authorization", format!("Bearer {}", tokens.unknown_kid))], b"y")
        }
        Kind::RevokedBearer => ("POST", "/orders", vec![("authorization", format!("Bearer {}", tokens.revoked))], b"z"),
        Kind::TokenRequest => {
            ("POST", "/token", vec![("content-type", "application/json".into())], b"{\"apiKey\": \"open-sesame\"}")
        }
        Kind::FormKey => ("POST", "/arc", vec![("content-type", form.into())], b"a=1&%40authtoken=open-sesame&b=2"),
        Kind::WrongFormKey => ("POST", "/arc", vec![("content-type", form.into())], b"a=1&@authtoken=guess"),
        Kind::FormWithHeaderKey => {
            ("POST", "/arc", vec![("content-type", form.into()), ("x-api-key", PASSWORD.into())], b"@authtoken=x")
        }
        Kind::Bypassed => ("POST", "/healthz", vec![], b"ping"),
        Kind::Forbidden => ("GET", "/admin", vec![("x-api-key", PASSWORD.into())], b""),
    };
    let mut headers: Vec<Header<'static>> = vec![(":method".into(), method.into()), (":path".into(), path.into())];
    headers.extend(extra.into_iter().map(|(name, value)| (name.into(), value.into())));
    (headers, body)
}

/// One host callback.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// A stream's request headers (of a kind), perhaps ending the request.
    Headers {
        stream: u32,
        kind: u8,
        end_of_stream: bool,
    },
    /// `grow` more bytes of its body buffered, perhaps the last.
    Body {
        stream: u32,
        grow: u16,
        end_of_stream: bool,
    },
    Trailers {
        stream: u32,
    },
    /// Time passes and the root ticks: the held streams it names are revisited.
    Tick {
        ms: u16,
    },
    /// A stream revisited outside a tick (decided meanwhile, or never held).
    Revisit {
        stream: u32,
    },
    /// One of the fetches on their way answered: the document, a failure, an error, junk.
    Answer {
        pick: u8,
        how: u8,
    },
    /// The stream ended (`on_log`): completed, reset, or gone while held.
    End {
        stream: u32,
    },
    ResponseHeaders {
        stream: u32,
    },
}

impl Op {
    /// Three bytes per callback.
    pub fn decode(data: &[u8]) -> Vec<Op> {
        data.chunks_exact(3)
            .map(|op| {
                let (a, b, c) = (op[0], op[1], op[2]);
                let stream = u32::from(a >> 4) % STREAMS + 1;
                match a % 8 {
                    0 => Op::Headers { stream, kind: b, end_of_stream: c & 1 == 1 },
                    1 | 2 => Op::Body { stream, grow: u16::from_le_bytes([b, c >> 1]), end_of_stream: c & 1 == 1 },
                    3 => Op::Trailers { stream },
                    4 => Op::Tick { ms: u16::from_le_bytes([b, c]) },
                    5 => Op::Answer { pick: b, how: c },
                    6 => Op::End { stream },
                    _ if b % 2 == 0 => Op::Revisit { stream },
                    _ => Op::ResponseHeaders { stream },
                }
            })
            .collect()
    }
}

/// The body buffered so far: what the request sends, then filler.
struct Buffered<'a> {
    sent: &'a [u8],
    size: usize,
}

impl RequestBody for Buffered<'_> {
    fn read(&self, max_size: usize) -> Option<Vec<u8>> {
        let size = self.size.min(max_size);
        Some((0..size).map(|i| self.sent.get(i).copied().unwrap_or(b'x')).collect())
    }
}

/// What the driver knows of one stream, to judge the steps it gets.
#[derive(Default)]
struct Seen {
    kind: Option<Kind>,
    headers: Vec<Header<'static>>,
    sent: &'static [u8],
    buffered: usize,
    /// The body ended (its end, or trailers): a body read is complete.
    complete: bool,
    /// A decision allowed it: continuing is its to do.
    allowed: bool,
    answered: bool,
}

impl Seen {
    /// Check a step the plugin gave this stream, and remember what it means; whether it decided it allowed.
    fn judge(&mut self, step: &Step, callback: &str) -> bool {
        let Some(kind) = self.kind else {
            assert!(!matches!(step, Step::Continue(_)), "{callback}: a stream never begun was continued");
            return false;
        };
        match step {
            Step::Continue(go) => {
                assert!(!self.answered, "{callback}: {kind:?} continued after it was answered");
                assert!(kind.may_pass(), "{callback}: {kind:?} continued");
                match go.changes() {
                    Some(changes) => {
                        assert!(!self.allowed, "{callback}: {kind:?} decided twice");
                        if kind == Kind::FormKey {
                            assert!(self.complete, "{callback}: a form continued before its body was read");
                            let body = changes.body.as_ref().expect("the form loses its key");
                            assert!(!body.body.contains("authtoken"), "{callback}: the key went upstream");
                        }
                        self.allowed = true;
                        return true;
                    }
                    None => assert!(self.allowed, "{callback}: {kind:?} continued without a decision"),
                }
            }
            Step::Answer(_) => {
                assert!(!self.allowed, "{callback}: {kind:?} answered after it was allowed");
                self.answered = true;
            }
            Step::Hold => {}
        }
        false
    }
}

/// Run one sequence of callbacks, checking every step; the kinds of request a decision let through.
pub fn run(ops: &[Op]) -> Vec<Kind> {
    let mut passed = Vec::new();
    let mut plugin = Plugin::new(config());
    let mut host = FakeHost::new(&FakeShared::default());
    host.now_ns.set(NOW * 1_000_000_000);
    let mut seen: Vec<Seen> = (0..=STREAMS).map(|_| Seen::default()).collect();
    for op in ops {
        let now = host.now_ns.get() / 1_000_000;
        match *op {
            Op::Headers { stream, kind, end_of_stream } => {
                let kind = KINDS[usize::from(kind) % KINDS.len()];
                let (headers, sent) = request(kind);
                let s = &mut seen[stream as usize];
                *s = Seen { kind: Some(kind), headers, sent, complete: end_of_stream, ..Seen::default() };
                let mut facts = RequestFacts::from_headers(&s.headers);
                if end_of_stream {
                    facts.body = Some("");
                }
                let step = plugin.on_request_headers(&mut host, stream, &facts, now);
                if s.judge(&step, "headers") {
                    passed.extend(s.kind);
                }
            }
            Op::Body { stream, grow, end_of_stream } => {
                let s = &mut seen[stream as usize];
                s.buffered += usize::from(grow);
                s.complete |= end_of_stream;
                let body = Buffered { sent: s.sent, size: s.buffered };
                let step = plugin.on_request_body(&mut host, stream, &body, s.buffered, end_of_stream, now);
                if s.judge(&step, "body") {
                    passed.extend(s.kind);
                }
            }
            Op::Trailers { stream } => {
                let s = &mut seen[stream as usize];
                s.complete = true;
                let body = Buffered { sent: s.sent, size: s.buffered };
                let step = plugin.on_request_trailers(&mut host, stream, &body, now);
                if s.judge(&step, "trailers") {
                    passed.extend(s.kind);
                }
            }
            Op::Tick { ms } => {
                let now = now + u64::from(ms);
                host.now_ns.set(now * 1_000_000);
                for stream in plugin.on_tick(&mut host, now) {
                    let s = &mut seen[stream as usize];
                    let step = plugin.revisit(&mut host, stream, &RequestFacts::from_headers(&s.headers), now);
                    if s.judge(&step, "tick") {
                        passed.extend(s.kind);
                    }
                }
            }
            Op::Revisit { stream } => {
                let s = &mut seen[stream as usize];
                let step = plugin.revisit(&mut host, stream, &RequestFacts::from_headers(&s.headers), now);
                if s.judge(&step, "revisit") {
                    passed.extend(s.kind);
                }
            }
            Op::Answer { pick, how } => {
                if host.calls.is_empty() {
                    continue;
                }
                let (token, target) = host.calls.remove(usize::from(pick) % host.calls.len());
                let document = if target.path.ends_with("jwks.json") {
                    json!({"keys": [with_kid(public_jwk("ec_p256"), "ec")]}).to_string()
                } else {
                    json!({"jti": [REVOKED_JTI]}).to_string()
                };
                let response = match how % 4 {
                    0 | 1 => FakeResponse::ok(document),
                    2 => FakeResponse::none(),
                    _ => FakeResponse { status: Some(200 + u16::from(how) % 400), body: vec![how; usize::from(how)] },
                };
                plugin.on_call_response(&mut host, token, &response, now);
            }
            Op::End { stream } => {
                plugin.on_stream_end(&mut host, stream);
                seen[stream as usize] = Seen::default();
            }
            Op::ResponseHeaders { stream } => {
                let _ = plugin.response_headers(stream);
            }
        }
    }
    // No provider of the driven configuration introspects: a call would be a fault of the pipeline.
    assert!(host.posts.is_empty(), "an introspection call: {:?}", host.posts);
    passed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic sequences (xorshift), as the fuzz target runs random ones.
    #[test]
    fn random_callback_sequences_never_continue_an_undecided_stream() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut passed = Vec::new();
        for _ in 0..300 {
            let data: Vec<u8> = (0..3 * 60)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            passed.extend(run(&Op::decode(&data)));
        }
        // The sequences reach every way a request passes: keys and list fetched, a form read.
        for kind in [Kind::ApiKey, Kind::Bearer, Kind::FormKey, Kind::FormWithHeaderKey, Kind::Bypassed] {
            assert!(passed.contains(&kind), "{kind:?} never passed");
        }
    }
}
