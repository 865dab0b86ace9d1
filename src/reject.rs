//! What the filter answers when it refuses a request: status, `WWW-Authenticate`
//! challenges (RFC 7235, 7617, 6750), `Retry-After`, and a small JSON body.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// The JSON body's `error` (and, for Bearer, RFC 6750's `error=`).
    pub error: &'static str,
    pub message: String,
    pub challenges: Vec<String>,
    pub retry_after_seconds: Option<u64>,
    /// Metric-safe reason this rejection is counted under.
    pub reason: &'static str,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

/// The challenges a 401 offers: one per enabled scheme.
#[derive(Debug, Clone, Copy)]
pub struct Schemes<'a> {
    pub realm: &'a str,
    pub basic: bool,
    pub bearer: bool,
    /// The first API key header, when API keys are accepted in headers.
    pub api_key_header: Option<&'a str>,
}

impl Schemes<'_> {
    fn basic_challenge(&self) -> String {
        format!("Basic realm=\"{}\", charset=\"UTF-8\"", self.realm)
    }

    fn bearer_challenge(&self, error: Option<(&str, &str)>) -> String {
        match error {
            None => format!("Bearer realm=\"{}\"", self.realm),
            Some((error, description)) => {
                format!("Bearer realm=\"{}\", error=\"{error}\", error_description=\"{description}\"", self.realm)
            }
        }
    }

    fn all(&self) -> Vec<String> {
        let mut challenges = Vec::new();
        if self.basic {
            challenges.push(self.basic_challenge());
        }
        if self.bearer {
            challenges.push(self.bearer_challenge(None));
        }
        // No registered scheme for API keys; RFC 7235 still wants a challenge that names one.
        if let Some(header) = self.api_key_header {
            challenges.push(format!("ApiKey realm=\"{}\", header=\"{header}\"", self.realm));
        }
        challenges
    }
}

impl Rejection {
    /// No credential of any kind this filter reads.
    pub fn missing_credential(schemes: Schemes) -> Rejection {
        Rejection {
            status: 401,
            error: "unauthorized",
            message: "credentials are required".into(),
            challenges: schemes.all(),
            retry_after_seconds: None,
            reason: "missing_credential",
        }
    }

    /// A Basic credential or API key that does not verify; every scheme is offered again.
    pub fn invalid_credentials(schemes: Schemes, message: &str, reason: &'static str) -> Rejection {
        Rejection {
            status: 401,
            error: "invalid_credentials",
            message: message.into(),
            challenges: schemes.all(),
            retry_after_seconds: None,
            reason,
        }
    }

    /// A Bearer token that does not verify (RFC 6750 3.1). `description` never echoes the token.
    pub fn invalid_token(schemes: Schemes, description: &str, reason: &'static str) -> Rejection {
        Rejection {
            status: 401,
            error: "invalid_token",
            message: description.into(),
            challenges: vec![schemes.bearer_challenge(Some(("invalid_token", description)))],
            retry_after_seconds: None,
            reason,
        }
    }

    /// The signing keys are not available yet: the token may be fine, the filter cannot tell.
    pub fn keys_unavailable(retry_after_seconds: u64) -> Rejection {
        Rejection {
            status: 503,
            error: "temporarily_unavailable",
            message: "signing keys not available yet".into(),
            challenges: Vec::new(),
            retry_after_seconds: Some(retry_after_seconds),
            reason: "jwks_unavailable",
        }
    }

    /// The plugin has no valid configuration (Envoy normally refuses such a plugin): fail closed.
    pub fn not_configured() -> Rejection {
        Rejection {
            status: 500,
            error: "server_error",
            message: "authentication filter is not configured".into(),
            challenges: Vec::new(),
            retry_after_seconds: None,
            reason: "not_configured",
        }
    }

    /// The host could not give the request's headers or the time: fail closed.
    pub fn host_unavailable() -> Rejection {
        Rejection {
            status: 503,
            error: "temporarily_unavailable",
            message: "the proxy could not read the request".into(),
            challenges: Vec::new(),
            retry_after_seconds: Some(1),
            reason: "host_error",
        }
    }

    /// The response headers besides the content type.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers: Vec<(&'static str, String)> =
            self.challenges.iter().map(|c| ("www-authenticate", c.clone())).collect();
        if let Some(seconds) = self.retry_after_seconds {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers.push(("content-type", "application/json".into()));
        headers.push(("cache-control", "no-store".into()));
        headers
    }

    pub fn body(&self) -> String {
        serde_json::to_string(&Body { error: self.error, message: &self.message })
            .unwrap_or_else(|_| String::from("{\"error\":\"unauthorized\"}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Schemes = Schemes { realm: "api", basic: true, bearer: true, api_key_header: None };

    #[test]
    fn missing_offers_every_enabled_scheme() {
        let r = Rejection::missing_credential(BOTH);
        assert_eq!(r.status, 401);
        assert_eq!(r.challenges, vec!["Basic realm=\"api\", charset=\"UTF-8\"", "Bearer realm=\"api\""]);
        let only_bearer = Rejection::missing_credential(Schemes { basic: false, ..BOTH });
        assert_eq!(only_bearer.challenges, vec!["Bearer realm=\"api\""]);
        let api_keys_only = Rejection::missing_credential(Schemes {
            basic: false,
            bearer: false,
            api_key_header: Some("x-api-key"),
            ..BOTH
        });
        assert_eq!(api_keys_only.challenges, vec!["ApiKey realm=\"api\", header=\"x-api-key\""]);
    }

    #[test]
    fn invalid_token_follows_rfc6750() {
        let r = Rejection::invalid_token(BOTH, "token expired", "jwt_expired");
        assert_eq!(
            r.challenges,
            vec!["Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token expired\""]
        );
        assert_eq!(r.body(), r#"{"error":"invalid_token","message":"token expired"}"#);
    }

    #[test]
    fn unavailable_has_retry_after_and_no_challenge() {
        let r = Rejection::keys_unavailable(2);
        assert_eq!(r.status, 503);
        let headers = r.headers();
        assert!(headers.contains(&("retry-after", "2".into())));
        assert!(!headers.iter().any(|(n, _)| *n == "www-authenticate"));
    }

    #[test]
    fn body_is_escaped_json() {
        let r = Rejection::invalid_credentials(BOTH, "bad \"quote\"", "basic_invalid");
        let parsed: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(parsed["message"], "bad \"quote\"");
    }
}
