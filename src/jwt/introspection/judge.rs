//! What an introspection answer means: judged as a JWT's claims are (RFC 7662 2.2).

use serde_json::{Map, Value};

use super::endpoint::Introspection;
use super::verdict::{Answer, Verdict};
use crate::host_api::CallResponse;
use crate::jwt::{self, JwtError, Provider};
use crate::reason::Reason;

/// The refusals an active answer may get here.
const REFUSALS: [JwtError; 9] = [
    JwtError::Malformed,
    JwtError::UnknownIssuer,
    JwtError::Expired,
    JwtError::NotYetValid,
    JwtError::WrongAudience,
    JwtError::MissingExpiration,
    JwtError::LifetimeTooLong,
    JwtError::MissingPrincipal,
    JwtError::InvalidPrincipal,
];

/// The RFC 6750 `error_description` of a refusal stored as its reason.
pub fn refusal_message(reason: Reason) -> &'static str {
    REFUSALS.iter().find(|error| error.reason() == reason).map_or("token refused", JwtError::description)
}

impl Introspection {
    /// What a call's answer means, to be stored for every worker; `Err` says why it
    /// failed (for the log; the token may be fine).
    pub fn judge_response(
        &self,
        provider: &Provider,
        response: &dyn CallResponse,
        now_ms: u64,
        skew: u64,
    ) -> Result<(Verdict, u64), String> {
        let status = response.status().ok_or("no response (timeout or connection failure)")?;
        if status != 200 {
            return Err(format!("HTTP status {status}"));
        }
        let size = response.body_size();
        if size > self.max_response_bytes {
            let limit = self.max_response_bytes;
            return Err(format!("response of {size} bytes is larger than {limit} bytes (max_response_bytes)"));
        }
        let claims = match serde_json::from_slice::<Value>(&response.body()) {
            Ok(Value::Object(claims)) => claims,
            _ => return Err("the answer is not a JSON object".into()),
        };
        Ok(self.judge(provider, &claims, now_ms, skew))
    }

    /// An answer's verdict and until when (ms) every worker may reuse it.
    pub fn judge(&self, provider: &Provider, claims: &Map<String, Value>, now_ms: u64, skew: u64) -> (Verdict, u64) {
        let negative_until = now_ms + self.negative_cache_seconds * 1000;
        if claims.get("active") != Some(&Value::Bool(true)) {
            return (Verdict::Inactive, negative_until);
        }
        match self.active(provider, claims, now_ms / 1000, skew) {
            Ok(answer) => {
                // Until it expires (as the claim checks read `exp`: with the skew), or the cache's lifetime.
                let expiry_ms = answer.expires_at.map_or(u64::MAX, |exp| exp.saturating_add(skew + 1) * 1000);
                let until = expiry_ms.min(now_ms + self.cache_ttl_seconds * 1000);
                (Verdict::Active(answer), until)
            }
            Err(error) => (Verdict::Refused(error.reason()), negative_until),
        }
    }

    fn active(
        &self,
        provider: &Provider,
        claims: &Map<String, Value>,
        now: u64,
        skew: u64,
    ) -> Result<Answer, JwtError> {
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(JwtError::UnknownIssuer);
            }
        }
        let times = jwt::check_claims(claims, provider, now, skew)?;
        // A bound opaque token (RFC 8705 3.2, RFC 9449 6.2) is refused, never taken as a
        // bearer token: its binding is not carried in the stored answers yet.
        if claims.contains_key("cnf") {
            return Err(JwtError::UnknownConfirmation);
        }
        // The configured claim, else who the token was issued to: a user, else a client.
        let mut principal = Err(JwtError::MissingPrincipal);
        for claim in [provider.principal_claim.as_str(), "username", "client_id"] {
            principal = jwt::principal(claims, claim);
            if principal != Err(JwtError::MissingPrincipal) {
                break;
            }
        }
        Ok(Answer {
            principal: principal?,
            scopes: jwt::scopes(claims),
            headers: jwt::claim_headers(claims, provider),
            jti: jwt::token_id(claims),
            issued_at: times.issued_at,
            expires_at: times.expires_at,
            claims: jwt::condition_values(claims, provider),
        })
    }
}
