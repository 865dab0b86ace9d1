//! The decision for one request, stage by stage; each stage is its own module.
//!
//! ```text
//!   endpoint      token_endpoint/  its token and JWKS paths, answered
//!                                  here (never forwarded)              -> 200, 4xx, or read the body
//!   overrides     method_override  "judge": the methods named besides
//!                  .rs             the request's own                   -> too many: 400
//!   route         route.rs         bypass, then rules: first match
//!                                  (no match: any scheme)              -> require "none": continue, no principal
//!                                                                         a `..;` path segment: 400
//!                                                                         an override under another rule: 400
//!   network       policy.rs        trusted_networks                    -> 403
//!   extract       credential.rs    Authorization, API key headers,
//!                                  the query parameter where set       -> 401 missing or unreadable
//!                                                                         (require "optional": continue, no principal)
//!   authenticate  authenticate.rs  remembered, else Basic / API key
//!                                  / JWT (basic/, api_key.rs, jwt/)
//!                                  / an opaque token (introspection/);
//!                                  of a kind the route accepts         -> 401, 429, 503, wait for keys
//!                                                                         or an introspection answer
//!   revocation    revocation.rs    revoked jti, tokens issued before   -> 401
//!   authorize     policy.rs        the principal's methods (each one
//!                                  judged), paths,
//!                                  networks; the route's principals
//!                                  and scopes                          -> 403
//!   limits        limits.rs        requests per hour, in flight        -> 429
//!                                  (scope "fleet": in flight only)
//!   shape         shape.rs         principal headers set; forged
//!                                  headers, other credentials (and
//!                                  method overrides: "remove") gone;
//!                 fleet.rs         scope "fleet": the engine's header  -> continue
//! ```
//!
//! A pure function of the configuration, what the VM fetched (keys, the revocation
//! list), the VM's verifier, the request, the host (shared data, clock, signatures)
//! and the time.

use std::cell::OnceCell;
use std::rc::Rc;

use crate::authenticate::{NotVerified, Verifier, VerifyHost};
use crate::config::Config;
use crate::credential::{self, Credential};
use crate::fetched::Fetched;
use crate::limits::{Admission, Quota};
use crate::method_override::{self, MethodOverrides};
use crate::path::{normalize, MatchPath};
use crate::policy::{self, Access, Forbidden};
use crate::principal::Principal;
use crate::reason::Reason;
use crate::reply::LocalReply;
use crate::request::RequestFacts;
use crate::revocation::Revoked;
use crate::route::{Require, Schemes};
use crate::shape::{self, UpstreamChanges};
use crate::stream::Awaited;
use crate::token_endpoint::grant::Presented;

/// What the pipeline decided for a request: the one result the core hands on (the
/// plugin carries it out through `stream::Streams`, which gives the adapter its `Step`).
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No authentication on this route: it continues without a principal.
    Bypass(UpstreamChanges),
    /// An optional route without a credential: it continues without a principal.
    Anonymous(UpstreamChanges),
    Allow {
        principal: Rc<Principal>,
        changes: UpstreamChanges,
        /// Set when the limits counted it.
        limited: Option<Limited>,
    },
    /// The filter answers the request itself.
    Reply(LocalReply),
    /// A token request: read its body, then `Plugin::on_token_request` answers it.
    ReadBody(Presented),
    /// A form whose field may hold the API key: read the body, then decide again with it.
    ReadForm,
    /// Hold the request until what it needs arrives: a provider's keys (first fetch,
    /// or a refetch for an unknown `kid`), or the revocation list's first fetch.
    Wait(Awaited),
    /// Hold the request for an introspection answer; `call`: the token, when this worker asks.
    Introspect { awaited: Awaited, call: Option<String> },
}

pub fn decide(
    config: &Config,
    fetched: &Fetched,
    verifier: &mut Verifier,
    request: &RequestFacts,
    host: &dyn VerifyHost,
    now_ms: u64,
) -> Decision {
    // The normalized path, computed once, and only for what reads it.
    let path = LazyPath { raw: request.path, normalized: OnceCell::new() };

    // endpoint
    if let Some(endpoint) = &config.token_endpoint {
        if let Some(served) = endpoint.serves(&path.get().path) {
            if !policy::network_trusted(config.trusted_networks.as_ref(), request.source) {
                return Decision::Reply(LocalReply::forbidden("network not trusted", Reason::NetworkNotTrusted));
            }
            return match endpoint.on_headers(served, request, &config.api_keys, &config.realm) {
                Ok(presented) => Decision::ReadBody(presented),
                Err(reply) => Decision::Reply(reply),
            };
        }
    }

    // The methods the request asks the upstream to act on instead of its own, when they reach it.
    let overrides = match config.upstream.method_overrides {
        MethodOverrides::Remove => Vec::new(),
        MethodOverrides::Judge => match method_override::requested(request) {
            Ok(methods) => methods,
            Err(_) => return Decision::Reply(LocalReply::method_override_refused("too many method overrides")),
        },
    };

    // route
    let rule = if config.routes.rules.is_empty() && !config.routes.bypass_cors_preflight {
        &crate::route::DEFAULT_RULE
    } else if path.get().hidden_dot_segment {
        // No rule may relax it, and none can say what it names: refused whatever the rules.
        return Decision::Reply(LocalReply::ambiguous_path());
    } else {
        let rule = config.routes.select(request, path.get());
        // Every method the upstream may act on falls under this one rule, or none is judged.
        let elsewhere = |method: &String| {
            let as_method = RequestFacts { method, ..*request };
            !std::ptr::eq(config.routes.select(&as_method, path.get()), rule)
        };
        if overrides.iter().any(elsewhere) {
            return Decision::Reply(LocalReply::method_override_refused("a method override falls under another rule"));
        }
        rule
    };
    if rule.require == Require::None {
        return Decision::Bypass(shape::unauthenticated(
            &config.upstream,
            &config.api_keys,
            &config.token_locations,
            request,
        ));
    }

    // network
    if !policy::network_trusted(config.trusted_networks.as_ref(), request.source) {
        return Decision::Reply(LocalReply::forbidden("network not trusted", Reason::NetworkNotTrusted));
    }

    // extract
    let challenges = config.challenges(&rule.require);
    let credential = match credential::extract(request, &config.api_keys, &config.token_locations) {
        Ok(Some(credential)) => credential,
        // Its API key may be in its form body: read it, then decide again.
        Ok(None) if rule.require.schemes().api_key && credential::awaits_form(request, &config.api_keys) => {
            return Decision::ReadForm
        }
        Ok(None) if rule.require == Require::Optional => {
            let changes = shape::unauthenticated(&config.upstream, &config.api_keys, &config.token_locations, request);
            return Decision::Anonymous(changes);
        }
        Ok(None) => return Decision::Reply(LocalReply::missing_credential(challenges)),
        Err(e) if e.is_bearer() => {
            return Decision::Reply(LocalReply::invalid_token(challenges, e.description(), e.reason()))
        }
        Err(e) => return Decision::Reply(LocalReply::invalid_credentials(challenges, e.description(), e.reason())),
    };
    if !offered(rule.require.schemes(), &credential) {
        return Decision::Reply(LocalReply::credential_not_accepted(challenges));
    }

    // authenticate
    let principal = match verifier.authenticate(config, fetched, &credential, request.source, host, now_ms) {
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
        Err(NotVerified::WaitForKeys { provider, refetch }) => {
            return Decision::Wait(Awaited::Keys { provider, refetch })
        }
        Err(NotVerified::KeysUnavailable) => return Decision::Reply(LocalReply::keys_unavailable(1)),
        Err(NotVerified::Introspect { provider, key, call }) => {
            return Decision::Introspect { awaited: Awaited::Introspection { provider, key }, call }
        }
    };
    // From here on every refusal names the principal it refuses.
    let refuse = |reply: LocalReply| Decision::Reply(reply.to(&principal));
    if !rule.require.admits(&principal) {
        return refuse(LocalReply::credential_not_accepted(challenges));
    }

    // revocation
    if config.revocation.is_active() {
        match config.revocation.check(fetched.revocation_list(), &principal) {
            Revoked::No => {}
            Revoked::Yes => {
                return refuse(LocalReply::invalid_token(challenges, "token revoked", Reason::TokenRevoked))
            }
            Revoked::NotKnownYet => return Decision::Wait(Awaited::RevocationList),
        }
    }

    // authorize
    if principal.privileges.paths.is_some() && path.get().hidden_dot_segment {
        return refuse(LocalReply::ambiguous_path());
    }
    if needs_authorization(&principal, rule) {
        // As each method the upstream may act on.
        for method in std::iter::once(request.method).chain(overrides.iter().map(String::as_str)) {
            let access = Access { method, path: path.get(), source: request.source };
            match policy::authorize(&principal, rule, &access) {
                Ok(()) => {}
                Err(Forbidden::Refused { reason, message }) => {
                    return refuse(LocalReply::forbidden(message, reason));
                }
                Err(Forbidden::InsufficientScope { required }) => {
                    let bearer = matches!(credential, Credential::Bearer { .. });
                    return refuse(LocalReply::insufficient_scope(challenges, &required, bearer));
                }
            }
        }
    }

    // limits (with scope "fleet", requests per hour are the engine's)
    let local_limits = config.limit_scope.local(&principal.privileges.limits);
    let limited = if local_limits.is_unlimited() {
        None
    } else {
        // One budget per principal however it proved itself: a client's key and its tokens share one.
        let key = principal.qualified.limit_key();
        match config.limit_table.admit(host, key, &local_limits, now_ms / 1000) {
            Admission::Admitted { holds_slot, quota, tracked_change } => {
                Some(Limited { key, holds_slot, quota, tracked_change })
            }
            Admission::RateLimited { retry_after_seconds, quota } => {
                return refuse(LocalReply::rate_limited(&quota, retry_after_seconds))
            }
            Admission::ConcurrencyLimited => return refuse(LocalReply::concurrency_limited()),
            Admission::Unavailable => {
                return refuse(LocalReply::try_later(Reason::LimitsUnavailable, 1));
            }
        }
    };

    // shape
    let mut changes = shape::authenticated(
        &config.upstream,
        &config.api_keys,
        &config.token_locations,
        request,
        &credential,
        &principal,
    );
    changes.set.extend(config.limit_scope.descriptor(&principal));
    Decision::Allow { principal, changes, limited }
}

/// A request the limits counted: what to give back when its stream ends, and its quota.
#[derive(Debug, PartialEq, Eq)]
pub struct Limited {
    pub key: u64,
    pub holds_slot: bool,
    pub quota: Option<Quota>,
    /// The change in the principals the limits keep records of (the tracked-principals gauge moves by it).
    pub tracked_change: i64,
}

/// Whether a credential of this form could be accepted by a rule offering `schemes`
/// (checked before verifying it).
fn offered(schemes: Schemes, credential: &Credential) -> bool {
    match credential {
        Credential::Basic { .. } => schemes.basic,
        Credential::Bearer { .. } => schemes.bearer,
        Credential::ApiKey { .. } => schemes.api_key,
    }
}

/// Whether anything restricts this principal on this rule (the stage is skipped otherwise).
fn needs_authorization(principal: &Principal, rule: &crate::route::Rule) -> bool {
    let privileges = &principal.privileges;
    privileges.methods.is_some()
        || privileges.paths.is_some()
        || privileges.trusted_networks.is_some()
        || rule.principals.is_some()
        || !rule.scopes.is_empty()
}

/// The request path normalized on first use.
struct LazyPath<'a> {
    raw: &'a str,
    normalized: OnceCell<MatchPath>,
}

impl LazyPath<'_> {
    fn get(&self) -> &MatchPath {
        self.normalized.get_or_init(|| normalize(self.raw))
    }
}

#[cfg(test)]
mod tests;
