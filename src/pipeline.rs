//! The decision for one request, stage by stage; each stage is its own module.
//!
//! ```text
//!   route         route.rs         bypass rules, CORS preflights     -> continue, no principal
//!   extract       credential.rs    Authorization, API key headers,
//!                                  the query parameter where set     -> 401 missing or unreadable
//!   authenticate  authenticate.rs  remembered, else Basic / API key
//!                                  / JWT (basic/, api_key.rs, jwt/)  -> 401, 429, 503, wait for keys
//!   shape         shape.rs         principal headers set; forged
//!                                  headers, other credentials gone   -> continue
//! ```
//!
//! A pure function of the configuration, the VM's verifier, the request, the host
//! (shared data, clock, signatures) and the time.

use crate::authenticate::{NotVerified, Verifier, VerifyHost};
use crate::config::Config;
use crate::credential;
use crate::jwt::ProviderId;
use crate::principal::Principal;
use crate::reply::LocalReply;
use crate::request::RequestFacts;
use crate::route;
use crate::shape::{self, UpstreamChanges};

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No authentication on this request: it continues without a principal.
    Bypass(UpstreamChanges),
    Allow {
        principal: Principal,
        changes: UpstreamChanges,
    },
    /// The filter answers the request itself.
    Reply(LocalReply),
    /// Hold the request until the provider's keys arrive (first fetch, or a refetch for an unknown `kid`).
    WaitForKeys {
        provider: ProviderId,
        refetch: bool,
    },
}

pub fn decide(
    config: &Config,
    verifier: &mut Verifier,
    request: &RequestFacts,
    host: &dyn VerifyHost,
    now_ms: u64,
) -> Decision {
    // route
    if route::bypassed(&config.bypass, config.bypass_cors_preflight, request) {
        return Decision::Bypass(shape::unauthenticated(&config.upstream, &config.api_keys, request));
    }

    // extract
    let challenges = config.challenges();
    let credential = match credential::extract(request, &config.api_keys) {
        Ok(Some(credential)) => credential,
        Ok(None) => return Decision::Reply(LocalReply::missing_credential(challenges)),
        Err(e) if e.is_bearer() => {
            return Decision::Reply(LocalReply::invalid_token(challenges, e.description(), e.reason()))
        }
        Err(e) => return Decision::Reply(LocalReply::invalid_credentials(challenges, e.description(), e.reason())),
    };

    // authenticate
    let principal = match verifier.authenticate(config, &credential, host, now_ms) {
        Ok(principal) => principal,
        Err(NotVerified::Invalid { reason, message, bearer: true }) => {
            return Decision::Reply(LocalReply::invalid_token(challenges, message, reason))
        }
        Err(NotVerified::Invalid { reason, message, bearer: false }) => {
            return Decision::Reply(LocalReply::invalid_credentials(challenges, message, reason))
        }
        Err(NotVerified::TryLater { reason, retry_after_seconds }) => {
            return Decision::Reply(LocalReply::try_later(reason, retry_after_seconds))
        }
        Err(NotVerified::WaitForKeys { provider, refetch }) => return Decision::WaitForKeys { provider, refetch },
        Err(NotVerified::KeysUnavailable) => return Decision::Reply(LocalReply::keys_unavailable(1)),
    };

    // shape
    let changes = shape::authenticated(&config.upstream, &config.api_keys, request, &credential, &principal);
    Decision::Allow { principal, changes }
}

#[cfg(test)]
mod tests;
