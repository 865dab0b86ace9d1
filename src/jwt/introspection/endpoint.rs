//! An introspection endpoint as configured: where it is, how the filter
//! authenticates to it, and the call about one token.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::store::AnswerStore;
use crate::host_api::Target;

/// How the filter authenticates to the endpoint (RFC 7662 2.1).
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded id and secret (RFC 6749 2.3.1): the value.
    Basic(String),
    /// `client_id` and `client_secret` in the form body: the form fields, encoded.
    Post(String),
    /// `Authorization: Bearer <secret>`: the value.
    Bearer(String),
}

impl ClientAuth {
    /// `basic`, `post` or `bearer` with the client's id and secret.
    pub fn new(method: &str, client_id: &str, secret: &str) -> Option<ClientAuth> {
        let (id, secret_encoded) = (form_encode(client_id), form_encode(secret));
        Some(match method {
            "basic" => ClientAuth::Basic(format!("Basic {}", STANDARD.encode(format!("{id}:{secret_encoded}")))),
            "post" => ClientAuth::Post(format!("&client_id={id}&client_secret={secret_encoded}")),
            "bearer" => ClientAuth::Bearer(format!("Bearer {secret}")),
            _ => return None,
        })
    }
}

/// The secret is never printed.
impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::Basic(_) => "Basic(..)",
            ClientAuth::Post(_) => "Post(..)",
            ClientAuth::Bearer(_) => "Bearer(..)",
        })
    }
}

/// A provider's introspection endpoint and what it does with the answers.
#[derive(Debug)]
pub struct Introspection {
    /// Where the introspection endpoint is called.
    pub target: Target,
    /// How long a call may take.
    pub timeout_ms: u64,
    /// How this filter authenticates to the endpoint.
    pub auth: ClientAuth,
    /// `token_type_hint` sent (none when empty).
    pub token_type_hint: String,
    /// Larger answers are refused.
    pub max_response_bytes: usize,
    /// How long an active answer is stored (at most until the token expires).
    pub cache_ttl_seconds: u64,
    /// How long an inactive or refused answer is stored.
    pub negative_cache_seconds: u64,
    /// Every token its places carry (a JWS no key provider claims included); false: tokens that are not a JWS.
    pub all_tokens: bool,
    /// The `iss` its answers must carry, when configured.
    pub issuer: Option<String>,
    /// Answers shared by every worker.
    pub answers: AnswerStore,
}

/// How long a failed call's answer stands for every worker: the requests waiting for
/// it get 503 at once, and a failing endpoint is not asked again for each of them.
pub const FAILURE_HOLD_MS: u64 = 1000;

impl Introspection {
    /// The form body of the call about `token` (and the `Authorization` value, if any).
    pub fn request(&self, token: &str) -> (Option<&str>, Vec<u8>) {
        let mut body = format!("token={}", form_encode(token));
        if !self.token_type_hint.is_empty() {
            body.push_str("&token_type_hint=");
            body.push_str(&form_encode(&self.token_type_hint));
        }
        let authorization = match &self.auth {
            ClientAuth::Basic(value) | ClientAuth::Bearer(value) => Some(value.as_str()),
            ClientAuth::Post(fields) => {
                body.push_str(fields);
                None
            }
        };
        (authorization, body.into_bytes())
    }

    /// How long a request may be held for a call (its own timeout, then a margin for the answer to land).
    pub fn wait_ms(&self) -> u64 {
        self.timeout_ms + 1000
    }
}

/// `application/x-www-form-urlencoded`: unreserved characters as they are, everything else `%XX`.
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 15)]));
        }
    }
    out
}
