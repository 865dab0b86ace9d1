//! Every answer the filter gives itself: status, headers (`WWW-Authenticate`
//! challenges per RFC 7235, 7617 and 6750, `Retry-After`), a small JSON body, and
//! the reason it is counted under.

use std::rc::Rc;

use serde::Serialize;

use crate::pipeline::limits::Quota;
use crate::principal::Principal;
use crate::reason::Reason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    /// Besides these, every reply is `application/json` and `no-store`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body's `error` (and, for Bearer, RFC 6750's `error=`).
    pub error: &'static str,
    pub message: String,
    pub reason: Reason,
    /// A body of its own (the token endpoint's answers), instead of `{"error", "message"}`.
    pub json: Option<String>,
    /// Whom it answers, when known (refused after authentication, a token endpoint's
    /// client): named in the decision line and, with `filter_state`, in the filter state.
    pub principal: Option<Rc<Principal>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

/// The challenges a 401 offers: one per enabled scheme.
#[derive(Debug, Clone, Copy)]
pub struct Challenges<'a> {
    pub realm: &'a str,
    pub basic: bool,
    pub bearer: bool,
    /// The algorithms of a `DPoP` challenge, when a provider takes DPoP-bound tokens.
    pub dpop_algs: Option<&'a str>,
    /// The first API key header, when API keys are accepted in headers.
    pub api_key_header: Option<&'a str>,
}

impl Challenges<'_> {
    fn basic(&self) -> String {
        crate::basic_auth::challenge(self.realm)
    }

    fn bearer(&self, error: Option<(&str, &str)>) -> String {
        match error {
            None => format!("Bearer realm=\"{}\"", self.realm),
            Some((error, description)) => {
                format!("Bearer realm=\"{}\", error=\"{error}\", error_description=\"{description}\"", self.realm)
            }
        }
    }

    fn all(&self) -> Vec<(&'static str, String)> {
        let mut challenges = Vec::new();
        if self.basic {
            challenges.push(("www-authenticate", self.basic()));
        }
        if self.bearer {
            challenges.push(("www-authenticate", self.bearer(None)));
        }
        if let Some(algs) = self.dpop_algs {
            challenges.push(("www-authenticate", format!("DPoP realm=\"{}\", algs=\"{algs}\"", self.realm)));
        }
        // No registered scheme for API keys; RFC 7235 still wants a challenge that names one.
        if let Some(header) = self.api_key_header {
            challenges.push(("www-authenticate", format!("ApiKey realm=\"{}\", header=\"{header}\"", self.realm)));
        }
        challenges
    }
}

impl LocalReply {
    pub fn new(status: u16, error: &'static str, message: impl Into<String>, reason: Reason) -> LocalReply {
        LocalReply { status, headers: Vec::new(), error, message: message.into(), reason, json: None, principal: None }
    }

    /// The same answer, to this principal.
    pub fn to(self, principal: &Rc<Principal>) -> LocalReply {
        LocalReply { principal: Some(Rc::clone(principal)), ..self }
    }

    fn with_retry_after(mut self, seconds: u64) -> LocalReply {
        self.headers.push(("retry-after", seconds.max(1).to_string()));
        self
    }

    /// No credential of any kind this filter reads.
    pub fn missing_credential(challenges: Challenges) -> LocalReply {
        LocalReply {
            headers: challenges.all(),
            ..LocalReply::new(401, "unauthorized", "credentials are required", Reason::MissingCredential)
        }
    }

    /// A Basic credential or API key that does not verify; every scheme is offered again.
    pub fn invalid_credentials(challenges: Challenges, message: &str, reason: Reason) -> LocalReply {
        LocalReply { headers: challenges.all(), ..LocalReply::new(401, "invalid_credentials", message, reason) }
    }

    /// A Bearer token that does not verify (RFC 6750 3.1). `description` never echoes the token.
    pub fn invalid_token(challenges: Challenges, description: &str, reason: Reason) -> LocalReply {
        let challenge = challenges.bearer(Some(("invalid_token", description)));
        LocalReply {
            headers: vec![("www-authenticate", challenge)],
            ..LocalReply::new(401, "invalid_token", description, reason)
        }
    }

    /// A path that names one resource to servlet containers and another to Envoy (a `..;`
    /// segment): refused before any credential is read, as Jetty refuses it by default.
    pub fn ambiguous_path() -> LocalReply {
        LocalReply::new(400, "bad_request", "ambiguous path (a '..;' or '.;' segment)", Reason::AmbiguousPath)
    }

    /// A request whose method overrides the filter will not judge (`method_overrides: "judge"`).
    pub fn method_override_refused(message: &str) -> LocalReply {
        LocalReply::new(400, "bad_request", message, Reason::MethodOverrideRefused)
    }

    /// A verified caller (or, for `network_not_trusted`, any caller) that may not do this.
    pub fn forbidden(message: &str, reason: Reason) -> LocalReply {
        LocalReply::new(403, "forbidden", message, reason)
    }

    /// RFC 6750 3.1: the route needs scopes the caller does not hold. A token's answer
    /// carries the Bearer challenge naming them.
    pub fn insufficient_scope(challenges: Challenges, required: &[String], bearer: bool) -> LocalReply {
        let scope = required.join(" ");
        let message = format!("the scopes {scope} are required");
        let mut reply = LocalReply::new(403, "insufficient_scope", message, Reason::InsufficientScope);
        if bearer {
            let challenge = format!(
                "Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"{scope}\"",
                challenges.realm
            );
            reply.headers.push(("www-authenticate", challenge));
        }
        reply
    }

    /// A credential of a kind this route does not accept: the accepted schemes are offered.
    pub fn credential_not_accepted(challenges: Challenges) -> LocalReply {
        LocalReply {
            headers: challenges.all(),
            ..LocalReply::new(
                401,
                "unauthorized",
                "this route does not accept this kind of credential",
                Reason::CredentialNotAccepted,
            )
        }
    }

    /// Over the requests per hour: 429, when to retry, and the quota (RateLimit fields).
    pub fn rate_limited(quota: &Quota, retry_after_seconds: u64) -> LocalReply {
        let mut reply = LocalReply::new(429, "rate_limited", "requests per hour exceeded", Reason::RateLimited)
            .with_retry_after(retry_after_seconds);
        reply.headers.extend(rate_limit_fields(quota));
        reply
    }

    /// Over the requests in flight.
    pub fn concurrency_limited() -> LocalReply {
        LocalReply::new(429, "rate_limited", "too many requests in flight", Reason::ConcurrencyLimited)
            .with_retry_after(1)
    }

    /// The signing keys are not available: the token may be fine, the filter cannot tell.
    pub fn keys_unavailable(retry_after_seconds: u64) -> LocalReply {
        LocalReply::new(503, "temporarily_unavailable", "signing keys not available yet", Reason::JwksUnavailable)
            .with_retry_after(retry_after_seconds)
    }

    /// Nothing was checked: the client is over a limit (429) or the worker is busy (503).
    pub fn try_later(reason: Reason, retry_after_seconds: u64) -> LocalReply {
        let reply = match reason {
            Reason::BasicThrottled => {
                LocalReply::new(429, "rate_limited", "too many failed attempts for this user name", reason)
            }
            Reason::PasswordChecksBusy => {
                LocalReply::new(503, "temporarily_unavailable", "too many password checks, try again later", reason)
            }
            _ => LocalReply::new(503, "temporarily_unavailable", "try again later", reason),
        };
        reply.with_retry_after(retry_after_seconds)
    }

    /// A form body read for an API key that cannot be used: 413, 400 or 408 (`reason` says which).
    pub fn form_unreadable(status: u16, message: &str, reason: Reason) -> LocalReply {
        LocalReply::new(status, "invalid_request", message, reason)
    }

    /// The plugin has no valid configuration (Envoy normally refuses such a plugin): fail closed.
    pub fn not_configured() -> LocalReply {
        LocalReply::new(500, "server_error", "authentication filter is not configured", Reason::NotConfigured)
    }

    /// The host could not give the request's headers or the time: fail closed.
    pub fn host_unavailable() -> LocalReply {
        LocalReply::new(503, "temporarily_unavailable", "the proxy could not read the request", Reason::HostError)
            .with_retry_after(1)
    }

    /// Every response header, the content type and `Cache-Control` included.
    pub fn all_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = self.headers.clone();
        headers.push(("content-type", "application/json".into()));
        // Never stored, but for what says otherwise (the token endpoint's JWKS).
        if !self.headers.iter().any(|(name, _)| *name == "cache-control") {
            headers.push(("cache-control", "no-store".into()));
        }
        headers
    }

    pub fn body(&self) -> String {
        if let Some(json) = &self.json {
            return json.clone();
        }
        serde_json::to_string(&Body { error: self.error, message: &self.message })
            .unwrap_or_else(|_| String::from("{\"error\":\"server_error\"}"))
    }

    /// A reply with a JSON body of its own (`error` and `message` then only name it in logs).
    pub fn json(status: u16, json: String, reason: Reason) -> LocalReply {
        LocalReply { json: Some(json), ..LocalReply::new(status, "", "", reason) }
    }

    /// Envoy's response code details (`%RESPONSE_CODE_DETAILS%`): `wasm_authn.<reason>`.
    pub fn details(&self) -> String {
        format!("wasm_authn.{}", self.reason.label())
    }

    /// The counter this reply increments: `denied.<reason>` for a refusal, `<reason>` otherwise.
    pub fn metric(&self) -> String {
        if self.status < 400 {
            self.reason.label().to_string()
        } else {
            self.reason.metric()
        }
    }
}

/// The `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-10)
/// of the hourly quota: `"hourly";q=1000;w=3600` and `"hourly";r=250;t=1800`.
pub(crate) fn rate_limit_fields(quota: &Quota) -> [(&'static str, String); 2] {
    [
        ("ratelimit-policy", format!("\"hourly\";q={};w={}", quota.limit, crate::pipeline::limits::WINDOW_SECONDS)),
        ("ratelimit", format!("\"hourly\";r={};t={}", quota.remaining, quota.reset_seconds)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Challenges =
        Challenges { realm: "api", basic: true, bearer: true, dpop_algs: None, api_key_header: None };

    fn challenges(reply: &LocalReply) -> Vec<&str> {
        reply.headers.iter().filter(|(n, _)| *n == "www-authenticate").map(|(_, v)| v.as_str()).collect()
    }

    #[test]
    fn missing_offers_every_enabled_scheme() {
        let r = LocalReply::missing_credential(BOTH);
        assert_eq!((r.status, r.reason), (401, Reason::MissingCredential));
        assert_eq!(challenges(&r), vec!["Basic realm=\"api\", charset=\"UTF-8\"", "Bearer realm=\"api\""]);
        let only_bearer = LocalReply::missing_credential(Challenges { basic: false, ..BOTH });
        assert_eq!(challenges(&only_bearer), vec!["Bearer realm=\"api\""]);
        let api_keys_only = LocalReply::missing_credential(Challenges {
            basic: false,
            bearer: false,
            api_key_header: Some("x-api-key"),
            ..BOTH
        });
        assert_eq!(challenges(&api_keys_only), vec!["ApiKey realm=\"api\", header=\"x-api-key\""]);
        // A provider that takes DPoP-bound tokens: a DPoP challenge with its algorithms (RFC 9449 7.1).
        let dpop = LocalReply::missing_credential(Challenges { basic: false, dpop_algs: Some("ES256 EdDSA"), ..BOTH });
        assert_eq!(challenges(&dpop), vec!["Bearer realm=\"api\"", "DPoP realm=\"api\", algs=\"ES256 EdDSA\""]);
    }

    #[test]
    fn invalid_token_follows_rfc6750() {
        let r = LocalReply::invalid_token(BOTH, "token expired", Reason::JwtExpired);
        assert_eq!(
            challenges(&r),
            vec!["Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token expired\""]
        );
        assert_eq!(r.body(), r#"{"error":"invalid_token","message":"token expired"}"#);
    }

    #[test]
    fn unavailable_has_retry_after_and_no_challenge() {
        let r = LocalReply::keys_unavailable(2);
        assert_eq!(r.status, 503);
        let headers = r.all_headers();
        assert!(headers.contains(&("retry-after", "2".into())));
        assert!(headers.contains(&("cache-control", "no-store".into())));
        assert!(!headers.iter().any(|(n, _)| *n == "www-authenticate"));
    }

    #[test]
    fn body_is_escaped_json() {
        let r = LocalReply::invalid_credentials(BOTH, "bad \"quote\"", Reason::BasicInvalid);
        let parsed: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(parsed["message"], "bad \"quote\"");
    }
}
