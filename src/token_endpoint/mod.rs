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
//!   limit     one request of the client's
//!             requests_per_hour (shared
//!             with its key and its tokens) -> 429 rate_limited
//!   sign      within the worker's signing
//!             budget (crate::budget)      -> 503 temporarily_unavailable
//!   issue     claims, signed (signer.rs)  -> 200 {access_token, token_type, expires_in, scope}
//! ```

pub(crate) mod grant;
pub(crate) mod signer;

use crate::binding::Confirmation;
use std::cell::Cell;
use std::rc::Rc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Map, Value};

use crate::api_key::{ApiKeys, Directory};
use crate::budget::{NotRun, TimeBudget};
use crate::host_api::{Clock, Counters, SharedData};
use crate::pipeline::limits::{Admission, LimitTable, Limits, TRACKED_GAUGE};
use crate::pipeline::policy::network_trusted;
use crate::principal::Principal;
use crate::reason::Reason;
use crate::reply::{rate_limit_fields, LocalReply};
use crate::request::{RequestFacts, Source};
use grant::{GrantError, Presented, Proof};
use signer::Signer;

/// The largest request body read (RFC 6749 bodies are a few fields).
pub(crate) const MAX_BODY_BYTES: usize = 8192;

pub(crate) struct TokenEndpoint {
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
    /// The realm of its `invalid_client` challenge.
    realm: String,
    /// This VM's budget of time for signing (RSA keys take milliseconds a token).
    signing_budget: Cell<TimeBudget>,
}

/// What issuing a token needs of the host: the clients' shared limit counts, a clock
/// for the signing budget, the tracked-principals gauge.
pub trait IssueHost: SharedData + Clock + Counters {}
impl<T: SharedData + Clock + Counters + ?Sized> IssueHost for T {}

/// One of the endpoint's two paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
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
    pub(crate) fn new(
        path: String,
        jwks_path: Option<String>,
        issuer: String,
        audiences: Vec<String>,
        lifetime_seconds: u64,
        kid: String,
        signer: Signer,
        realm: String,
        signing_budget: TimeBudget,
    ) -> TokenEndpoint {
        let jwks = jwks_path.as_ref().and_then(|_| signer.public_jwk()).map(|mut jwk| {
            jwk.insert("kid".into(), kid.clone().into());
            jwk.insert("alg".into(), signer.algorithm().name().into());
            jwk.insert("use".into(), "sig".into());
            json!({ "keys": [Value::Object(jwk)] }).to_string()
        });
        let signing_budget = Cell::new(signing_budget);
        TokenEndpoint { path, jwks_path, issuer, audiences, lifetime_seconds, kid, signer, jwks, realm, signing_budget }
    }

    /// Which of its paths a (normalized) request path is.
    pub(crate) fn serves(&self, path: &str) -> Option<Served> {
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
    pub(crate) fn on_headers(
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

    /// The answer to a token request, its body read (at most `MAX_BODY_BYTES`), at `now` (Unix seconds).
    pub(crate) fn issue(
        &self,
        clients: Directory,
        limits: &LimitTable,
        host: &mut dyn IssueHost,
        presented: &Presented,
        body: &[u8],
        now: u64,
    ) -> LocalReply {
        if body.len() > MAX_BODY_BYTES {
            return body_too_large();
        }
        let grant = match grant::read(presented, body) {
            Ok(grant) => grant,
            Err(e) => return grant_error(e, &self.realm),
        };
        let client = match client(clients, &grant.proof) {
            Ok(client) => Rc::new(client),
            Err(reason @ Reason::ApiClientsUnavailable) => return LocalReply::try_later(reason, 1),
            Err(_) => return grant_error(GrantError::InvalidClient("invalid client credentials"), &self.realm),
        };
        // The client is known: every answer names it.
        self.issue_to(&client, limits, host, presented, grant.scope, now).to(&client)
    }

    /// The answer to a known client's token request.
    fn issue_to(
        &self,
        client: &Principal,
        limits: &LimitTable,
        host: &mut dyn IssueHost,
        presented: &Presented,
        asked: Option<Vec<String>>,
        now: u64,
    ) -> LocalReply {
        if !network_trusted(client.privileges.trusted_networks.as_ref(), Source::Known(presented.source)) {
            return oauth_error(403, "access_denied", "network not trusted", Reason::NetworkNotTrusted);
        }
        let held = &client.privileges.scopes;
        let scopes: Vec<String> = match asked {
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
        // Within the worker's signing budget (a request refused for it is not counted), issuing
        // is one of the client's requests: its key, its tokens and this share one budget.
        let mut budget = self.signing_budget.get();
        let done = budget.run(&*host, || {
            let tracked_change = self.count(client, limits, &*host, now)?;
            Ok((tracked_change, self.sign(&client.id, &scope, presented.bind_to.as_ref(), now)))
        });
        self.signing_budget.set(budget);
        let token = match done {
            Ok(Ok((tracked_change, signed))) => {
                if tracked_change != 0 {
                    host.add_to_gauge(TRACKED_GAUGE, tracked_change);
                }
                match signed {
                    Ok(token) => token,
                    Err(_) => {
                        let message = "the token could not be signed";
                        return oauth_error(500, "server_error", message, Reason::TokenSigningFailed);
                    }
                }
            }
            Ok(Err(refused)) => return refused,
            Err(NotRun::Busy { retry_after_seconds }) => {
                let reply = oauth_error(
                    503,
                    "temporarily_unavailable",
                    "too many tokens being issued, try again later",
                    Reason::TokenSigningBusy,
                );
                return with_header(reply, "retry-after", &retry_after_seconds.to_string());
            }
            Err(NotRun::NoClock) => return LocalReply::host_unavailable(),
        };
        let response = json!({
            "access_token": token,
            "token_type": if matches!(presented.bind_to, Some(Confirmation::Key(_))) { "DPoP" } else { "Bearer" },
            "expires_in": self.lifetime_seconds,
            "scope": scope,
        });
        with_header(LocalReply::json(200, response.to_string(), Reason::TokenIssued), "pragma", "no-cache")
    }

    /// Count one request of `client` against its requests per hour (429 past them); the
    /// change in the principals the limits keep records of.
    fn count(
        &self,
        client: &Principal,
        limits: &LimitTable,
        shared: &dyn SharedData,
        now: u64,
    ) -> Result<i64, LocalReply> {
        let Some(per_hour) = client.privileges.limits.requests_per_hour else { return Ok(0) };
        // No slot in flight: the request is answered here and now.
        let hourly = Limits { requests_per_hour: Some(per_hour), max_concurrent: None };
        match limits.admit(shared, client.qualified.limit_key(), &hourly, now) {
            Admission::Admitted { tracked_change, .. } => Ok(tracked_change),
            Admission::RateLimited { retry_after_seconds, quota } => {
                let reply = oauth_error(429, "rate_limited", "requests per hour exceeded", Reason::RateLimited);
                let mut reply = with_header(reply, "retry-after", &retry_after_seconds.max(1).to_string());
                reply.headers.extend(rate_limit_fields(&quota));
                Err(reply)
            }
            Admission::ConcurrencyLimited | Admission::Unavailable => {
                Err(LocalReply::try_later(Reason::LimitsUnavailable, 1))
            }
        }
    }

    /// A signed token for `subject`: `iss`, `sub`, `aud`, `iat`, `exp`, a random `jti`,
    /// `scope`, and `cnf` when it is bound.
    pub(crate) fn sign(
        &self,
        subject: &str,
        scope: &str,
        bound: Option<&Confirmation>,
        now: u64,
    ) -> Result<String, String> {
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
        match bound {
            Some(Confirmation::Certificate(thumbprint)) => {
                claims.insert("cnf".into(), json!({ "x5t#S256": thumbprint }))
            }
            Some(Confirmation::Key(thumbprint)) => claims.insert("cnf".into(), json!({ "jkt": thumbprint })),
            None => None,
        };
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
fn client(clients: Directory, proof: &Proof) -> Result<Principal, Reason> {
    match proof {
        Proof::ApiKey(key) => clients.verify(key),
        Proof::ClientSecret { id, secret } => clients.verify_pair(id, secret).unwrap_or(Err(Reason::ApiKeyInvalid)),
    }
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
    // Read only when a client's networks may need it (checked once its body names the client).
    if api_keys.may_bind_networks() {
        presented.source = request.source.get();
    }
    // A client with a certificate gets tokens only that certificate's connections can use.
    presented.bind_to = request.peer.get().map(|peer| Confirmation::Certificate(peer.thumbprint.clone()));
    Ok(presented)
}

/// A header's value, when it is given once at most.
fn single<'a>(request: &'a RequestFacts, name: &'a str) -> Result<Option<&'a str>, GrantError> {
    request.single_header(name).map_err(|_| GrantError::InvalidRequest("a header is given twice"))
}

fn declared_length(request: &RequestFacts) -> Option<usize> {
    request.header_values("content-length").next().and_then(|value| value.trim().parse().ok())
}

/// The body did not arrive in time (a slow client, or a host that never delivers it).
pub(crate) fn body_timeout(seconds: u64) -> LocalReply {
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
            with_header(reply, "www-authenticate", &crate::basic_auth::challenge(realm))
        }
    }
}

pub(crate) fn oauth_error(status: u16, error: &'static str, description: &str, reason: Reason) -> LocalReply {
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
