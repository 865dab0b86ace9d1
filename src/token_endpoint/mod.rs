//! The token endpoint: an API client exchanges its key for a JWT that expires
//! (OAuth 2.0 client credentials, RFC 6749 4.4; Synerise's `{"apiKey"}`), and
//! other services read the public key at the JWKS path. The filter answers
//! both paths itself; neither is ever forwarded.
//!
//! ```text
//!   headers   method, size, who may ask   -> 405, 413, 400, 403
//!   body      the grant (grant.rs)        -> 400 invalid_request, unsupported_grant_type
//!   client    its API key, not disabled   -> 401 invalid_client (Basic challenge)
//!   scope     what it asks for, it holds  -> 400 invalid_scope
//!   issue     claims, signed (signer.rs)  -> 200 {access_token, token_type, expires_in, scope}
//! ```

pub mod grant;
pub mod signer;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Map, Value};

use crate::api_key::{ApiClient, ApiKeys};
use crate::policy::network_trusted;
use crate::reason::Reason;
use crate::reply::LocalReply;
use crate::request::RequestFacts;
use grant::{GrantError, Presented, Proof};
use signer::Signer;

/// The largest request body read (RFC 6749 bodies are a few fields).
pub const MAX_BODY_BYTES: usize = 8192;

pub struct TokenEndpoint {
    /// The `x-auth-provider` of its tokens.
    pub name: String,
    /// Where tokens are issued (POST).
    pub path: String,
    /// Where the JWKS is served (GET); None for an HMAC secret.
    pub jwks_path: Option<String>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub lifetime_seconds: u64,
    pub kid: String,
    pub signer: Signer,
    /// The JWKS document, rendered once.
    jwks: Option<String>,
}

/// One of the endpoint's two paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Token,
    Jwks,
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint").field("path", &self.path).field("signer", &self.signer).finish_non_exhaustive()
    }
}

impl TokenEndpoint {
    #[allow(clippy::too_many_arguments)] // the configuration's fields, once, at load
    pub fn new(
        name: String,
        path: String,
        jwks_path: Option<String>,
        issuer: String,
        audiences: Vec<String>,
        lifetime_seconds: u64,
        kid: String,
        signer: Signer,
    ) -> TokenEndpoint {
        let jwks = jwks_path.as_ref().and_then(|_| signer.public_jwk()).map(|mut jwk| {
            jwk.insert("kid".into(), kid.clone().into());
            jwk.insert("alg".into(), signer.algorithm().name().into());
            jwk.insert("use".into(), "sig".into());
            json!({ "keys": [Value::Object(jwk)] }).to_string()
        });
        TokenEndpoint { name, path, jwks_path, issuer, audiences, lifetime_seconds, kid, signer, jwks }
    }

    /// Which of its paths a (normalized) request path is.
    pub fn serves(&self, path: &str) -> Option<Served> {
        if path == self.path {
            Some(Served::Token)
        } else if self.jwks_path.as_deref() == Some(path) {
            Some(Served::Jwks)
        } else {
            None
        }
    }

    /// What the request's headers decide: the JWKS or a refusal now, or the grant's
    /// headers to read the body with.
    pub fn on_headers(
        &self,
        served: Served,
        request: &RequestFacts,
        api_keys: &ApiKeys,
        realm: &str,
    ) -> Result<Presented, LocalReply> {
        if served == Served::Jwks {
            return Err(self.jwks_reply(request.method));
        }
        if request.method != "POST" {
            let reply = oauth_error(405, "invalid_request", "use POST", Reason::TokenMethodNotAllowed);
            return Err(with_header(reply, "allow", "POST"));
        }
        if declared_length(request).is_some_and(|length| length > MAX_BODY_BYTES) {
            return Err(body_too_large());
        }
        presented(request, api_keys).map_err(|e| grant_error(e, realm))
    }

    fn jwks_reply(&self, method: &str) -> LocalReply {
        if method != "GET" && method != "HEAD" {
            let reply = oauth_error(405, "invalid_request", "use GET", Reason::TokenMethodNotAllowed);
            return with_header(reply, "allow", "GET, HEAD");
        }
        let jwks = self.jwks.clone().unwrap_or_else(|| String::from("{\"keys\":[]}"));
        // Other services cache it; a rotated key reaches them within five minutes.
        with_header(LocalReply::json(200, jwks, Reason::JwksServed), "cache-control", "public, max-age=300")
    }

    /// The answer to a token request, its body read (at most `MAX_BODY_BYTES`).
    pub fn issue(&self, api_keys: &ApiKeys, presented: &Presented, body: &[u8], realm: &str, now: u64) -> LocalReply {
        if body.len() > MAX_BODY_BYTES {
            return body_too_large();
        }
        let grant = match grant::read(presented, body) {
            Ok(grant) => grant,
            Err(e) => return grant_error(e, realm),
        };
        let client = match client(api_keys, &grant.proof) {
            Some(client) => client,
            None => return grant_error(GrantError::InvalidClient("invalid client credentials"), realm),
        };
        if !network_trusted(client.privileges.trusted_networks.as_ref(), presented.source) {
            return oauth_error(403, "access_denied", "network not trusted", Reason::NetworkNotTrusted);
        }
        let held = &client.privileges.scopes;
        let scopes: Vec<String> = match grant.scope {
            None => held.clone(),
            Some(asked) if asked.iter().all(|s| held.contains(s)) => asked,
            Some(_) => {
                return oauth_error(
                    400,
                    "invalid_scope",
                    "a requested scope is not the client's",
                    Reason::TokenInvalidScope,
                )
            }
        };
        let scope = scopes.join(" ");
        let token = match self.sign(&client.id, &scope, now) {
            Ok(token) => token,
            Err(_) => {
                return oauth_error(500, "server_error", "the token could not be signed", Reason::TokenSigningFailed)
            }
        };
        let response = json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.lifetime_seconds,
            "scope": scope,
        });
        with_header(LocalReply::json(200, response.to_string(), Reason::TokenIssued), "pragma", "no-cache")
    }

    /// A signed token for `subject`: `iss`, `sub`, `aud`, `iat`, `exp`, a random `jti`, `scope`.
    pub fn sign(&self, subject: &str, scope: &str, now: u64) -> Result<String, String> {
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("sub".into(), subject.into());
        match self.audiences.as_slice() {
            [] => {}
            [one] => {
                claims.insert("aud".into(), one.clone().into());
            }
            many => {
                claims.insert("aud".into(), many.to_vec().into());
            }
        }
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(self.lifetime_seconds).into());
        claims.insert("jti".into(), token_id()?.into());
        if !scope.is_empty() {
            claims.insert("scope".into(), scope.into());
        }
        let header = json!({ "alg": self.signer.algorithm().name(), "typ": "JWT", "kid": self.kid });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        );
        let signature = self.signer.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{signature}"))
    }
}

/// 128 random bits from the host (WASI `random_get`), base64url.
fn token_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    OsRng.try_fill_bytes(&mut bytes).map_err(|e| e.to_string())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The client a proof names, when the key is its and it is not disabled.
fn client<'a>(api_keys: &'a ApiKeys, proof: &Proof) -> Option<&'a ApiClient> {
    let principal = match proof {
        Proof::ApiKey(key) => api_keys.verify(key).ok()?,
        Proof::ClientSecret { id, secret } => api_keys.verify_pair(id, secret)?.ok()?,
    };
    api_keys.clients.iter().find(|c| c.id == principal.id)
}

/// The grant's headers: one `Authorization`, one configured API key header at most.
fn presented(request: &RequestFacts, api_keys: &ApiKeys) -> Result<Presented, GrantError> {
    let mut api_key = None;
    for name in &api_keys.headers {
        if let Some(value) = single(request, name)? {
            if api_key.replace(value).is_some() {
                return Err(GrantError::InvalidRequest("more than one API key header"));
            }
        }
    }
    let content_type = single(request, "content-type")?;
    let mut presented = Presented::from_headers(content_type, single(request, "authorization")?, api_key);
    presented.source = request.source;
    Ok(presented)
}

/// A header's value, when it is given once at most.
fn single<'a>(request: &'a RequestFacts, name: &'a str) -> Result<Option<&'a str>, GrantError> {
    let mut values = request.header_values(name);
    let first = values.next();
    match values.next() {
        Some(_) => Err(GrantError::InvalidRequest("a header is given twice")),
        None => Ok(first),
    }
}

fn declared_length(request: &RequestFacts) -> Option<usize> {
    request.header_values("content-length").next().and_then(|value| value.trim().parse().ok())
}

/// The body did not arrive in time (a slow client, or a host that never delivers it).
pub fn body_timeout(seconds: u64) -> LocalReply {
    let message = format!("the request body did not arrive within {seconds} s");
    oauth_error(408, "invalid_request", &message, Reason::TokenBodyTimeout)
}

fn body_too_large() -> LocalReply {
    let message = format!("the body is larger than {MAX_BODY_BYTES} bytes");
    oauth_error(413, "invalid_request", &message, Reason::TokenBodyTooLarge)
}

/// RFC 6749 5.2. `invalid_client` is 401 with a Basic challenge, whichever form was used.
fn grant_error(error: GrantError, realm: &str) -> LocalReply {
    match error {
        GrantError::InvalidRequest(message) => {
            oauth_error(400, "invalid_request", message, Reason::TokenInvalidRequest)
        }
        GrantError::UnsupportedGrantType => oauth_error(
            400,
            "unsupported_grant_type",
            "only client_credentials is supported",
            Reason::TokenUnsupportedGrantType,
        ),
        GrantError::InvalidClient(message) => {
            let reply = oauth_error(401, "invalid_client", message, Reason::TokenInvalidClient);
            with_header(reply, "www-authenticate", &format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
        }
    }
}

fn oauth_error(status: u16, error: &'static str, description: &str, reason: Reason) -> LocalReply {
    let body = json!({ "error": error, "error_description": description });
    let mut reply = LocalReply::json(status, body.to_string(), reason);
    reply.error = error;
    reply.message = description.to_string();
    with_header(reply, "pragma", "no-cache")
}

fn with_header(mut reply: LocalReply, name: &'static str, value: &str) -> LocalReply {
    reply.headers.push((name, value.to_string()));
    reply
}

#[cfg(test)]
mod tests;
