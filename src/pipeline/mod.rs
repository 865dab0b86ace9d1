//! The decision for one request, stage by stage; each stage is its own module.
//!
//! The stages, in order, with what each answers: docs/design.md, "The stages, file by file".
//!
//! A pure function of the configuration, what the VM fetched (keys, the revocation
//! list), the VM's verifier, the request, the host (shared data, clock, signatures)
//! and the time.

// The stages, in the order a request meets them; `stream` is the state machine
// that carries a decision out.
pub mod authenticate;
pub mod credential;
pub(crate) mod limits;
pub(crate) mod policy;
pub(crate) mod revocation;
pub mod route;
pub mod shape;
pub mod stream;

use std::cell::OnceCell;
use std::rc::Rc;

use crate::config::Config;
use crate::dpop;
use crate::fetched::Fetched;
use crate::method_override::{self, MethodOverrides};
use crate::path::{normalize, MatchPath};
use crate::pipeline::authenticate::{NotVerified, Verifier, VerifyHost};
use crate::pipeline::credential::Credential;
use crate::pipeline::limits::{Admission, Quota};
use crate::pipeline::policy::{Access, Forbidden};
use crate::pipeline::revocation::Revoked;
use crate::pipeline::route::{Kind, Require, Rule};
use crate::pipeline::shape::UpstreamChanges;
use crate::pipeline::stream::Awaited;
use crate::principal::Principal;
use crate::reason::Reason;
use crate::reply::LocalReply;
use crate::request::RequestFacts;
use crate::requirement::{self, Tree};
use crate::token_claims;
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
    /// `require: "optional_or_failed"` and a credential that failed: it continues without a
    /// principal (`changes` set the filter state `wasm_authn.failed` to the reason).
    Failed {
        /// Why the credential failed.
        reason: Reason,
        /// What to change in the request.
        changes: UpstreamChanges,
    },
    /// Shadow mode (`enforce: false`): decided, then continued without a principal.
    /// `refused`: the reason it would have been refused for (`changes` set it as the
    /// filter state `wasm_authn.shadow`); `limited`: what the limits counted, to give back.
    Shadow {
        /// The reason it would have been refused for.
        refused: Option<Reason>,
        /// What to change in the request.
        changes: UpstreamChanges,
        /// What the limits counted.
        limited: Option<Limited>,
    },
    /// Authenticated and authorized: it continues with a principal.
    Allow {
        /// Who.
        principal: Rc<Principal>,
        /// What to change in the request.
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
    /// Hold the request for an introspection answer.
    Introspect {
        /// The answer it waits for.
        awaited: Awaited,
        /// The token, when this worker asks.
        call: Option<String>,
    },
}

/// Decide one request: the stages in order (the module's table).
pub fn decide(
    config: &Config,
    fetched: &Fetched,
    verifier: &mut Verifier,
    request: &RequestFacts,
    host: &dyn VerifyHost,
    now_ms: u64,
) -> Decision {
    let mut enforce = true;
    let decision = decide_rule(config, fetched, verifier, request, host, now_ms, &mut enforce);
    if enforce {
        return decision;
    }
    let shadowed = |refused: Option<Reason>, limited| {
        let mut changes = shape::unauthenticated(&config.upstream, &config.api_keys, &config.token_locations, request);
        changes.state.extend(refused.map(|reason| (STATE_SHADOW.to_string(), reason.label().to_string())));
        Decision::Shadow { refused, changes, limited }
    };
    match decision {
        Decision::Allow { limited, .. } => shadowed(None, limited),
        Decision::Reply(reply) => shadowed(Some(reply.reason), None),
        decision => decision,
    }
}

/// The filter state of a shadowed refusal (`wasm.wasm_authn.shadow`) and of a credential
/// that failed where `optional_or_failed` let it through (`wasm.wasm_authn.failed`): the reason.
pub const STATE_SHADOW: &str = "wasm_authn.shadow";
/// The filter state of a credential that failed where `optional_or_failed` let it through.
pub const STATE_FAILED: &str = "wasm_authn.failed";

/// The decision as its rule says; `enforce` becomes the rule's once it is known (the
/// token endpoint and malformed requests are answered whatever it says).
fn decide_rule(
    config: &Config,
    fetched: &Fetched,
    verifier: &mut Verifier,
    request: &RequestFacts,
    host: &dyn VerifyHost,
    now_ms: u64,
    enforce: &mut bool,
) -> Decision {
    // The normalized path, computed once, and only for what reads it.
    let path = LazyPath { raw: request.path, normalized: OnceCell::new() };

    // endpoint
    if let Some(endpoint) = &config.token_endpoint {
        if let Some(served) = endpoint.serves(&path.get().path) {
            if !policy::network_trusted(config.trusted_networks.as_ref(), request.source) {
                return Decision::Reply(LocalReply::forbidden("network not trusted", Reason::NetworkNotTrusted));
            }
            let presented =
                endpoint.on_headers(served, request, &config.api_keys, &config.realm).and_then(|mut presented| {
                    dpop::bind_token_request(config, request, &mut presented, host, now_ms)?;
                    Ok(presented)
                });
            return match presented {
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
        &crate::pipeline::route::DEFAULT_RULE
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
    *enforce = rule.enforce.unwrap_or(config.enforce);
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

    // extract, authenticate
    let challenges = config.challenges(&rule.require);
    let verified = match &rule.require {
        Require::Tree(tree) => verify_tree(config, fetched, verifier, request, host, now_ms, rule, tree),
        _ => verify_one(config, fetched, verifier, request, host, now_ms, rule),
    };
    let Verified { principal, credentials, others } = match verified {
        Ok(verified) => verified,
        Err(decision) => return decision,
    };
    // From here on every refusal names the principal it refuses.
    let refuse = |reply: LocalReply| Decision::Reply(reply.to(&principal));

    // revocation
    if config.revocation.is_active() {
        // Each credential verified: a revoked one meets no requirement.
        for each in std::iter::once(&principal).chain(&others) {
            match config.revocation.check(fetched.revocation_list(), each) {
                Revoked::No => {}
                Revoked::Yes if rule.require == Require::OptionalOrFailed => {
                    return failed(config, request, Reason::TokenRevoked);
                }
                Revoked::Yes => {
                    return refuse(LocalReply::invalid_token(challenges, "token revoked", Reason::TokenRevoked))
                }
                Revoked::NotKnownYet => return Decision::Wait(Awaited::RevocationList),
            }
        }
    }

    // proof of possession: each bound token (a remembered one too) against this connection or
    // proof; after every wait, so that a proof is spent once, on the decision that stands
    for each in std::iter::once(&principal).chain(&others) {
        if let Err(reply) = dpop::possession(config, each, request, &credentials, challenges, host, now_ms) {
            if rule.require == Require::OptionalOrFailed {
                return failed(config, request, reply.reason);
            }
            return refuse(reply);
        }
    }

    // authorize
    let restricted_path = |p: &Rc<Principal>| p.privileges.paths.is_some();
    if (restricted_path(&principal) || others.iter().any(restricted_path)) && path.get().hidden_dot_segment {
        return refuse(LocalReply::ambiguous_path());
    }
    // The others' own privileges hold too: a restricted key is no wider for the company it keeps.
    for other in &others {
        if policy::restricted(other, &crate::pipeline::route::DEFAULT_RULE) {
            for method in std::iter::once(request.method).chain(overrides.iter().map(String::as_str)) {
                let access = Access { method, path: path.get(), source: request.source };
                if let Err(Forbidden::Refused { reason, message }) =
                    policy::authorize(other, &crate::pipeline::route::DEFAULT_RULE, &access)
                {
                    return refuse(LocalReply::forbidden(message, reason));
                }
            }
        }
    }
    if policy::restricted(&principal, rule) {
        // As each method the upstream may act on.
        for method in std::iter::once(request.method).chain(overrides.iter().map(String::as_str)) {
            let access = Access { method, path: path.get(), source: request.source };
            match policy::authorize(&principal, rule, &access) {
                Ok(()) => {}
                Err(Forbidden::Refused { reason, message }) => {
                    return refuse(LocalReply::forbidden(message, reason));
                }
                Err(Forbidden::InsufficientScope { required }) => {
                    let bearer = credentials.iter().any(|c| matches!(c, Credential::Bearer { .. }));
                    return refuse(LocalReply::insufficient_scope(challenges, &required, bearer));
                }
            }
        }
    }

    // claim conditions (a principal without claims meets none)
    if let Err(message) = token_claims::check(&rule.claims, &principal.extras.claims, request) {
        return refuse(LocalReply::forbidden(message, Reason::ClaimConditionFailed));
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
        &credentials.iter().collect::<Vec<_>>(),
        &principal,
    );
    changes.set.extend(config.limit_scope.descriptor(&principal));
    requirement::report_others(&others, config.upstream.filter_state, &mut changes.set, &mut changes.state);
    Decision::Allow { principal, changes, limited }
}

/// What the extract and authenticate stages verified: the rule's principal, every
/// credential verified, and the principals besides the rule's (a requirement tree's).
struct Verified {
    principal: Rc<Principal>,
    credentials: Vec<Credential>,
    others: Vec<Rc<Principal>>,
}

/// The request's one credential (the first found: Basic, a token, an API key), verified.
// The error is the request's decision, moved out once per request: no boxing.
#[allow(clippy::result_large_err)]
fn verify_one(
    config: &Config,
    fetched: &Fetched,
    verifier: &mut Verifier,
    request: &RequestFacts,
    host: &dyn VerifyHost,
    now_ms: u64,
    rule: &Rule,
) -> Result<Verified, Decision> {
    let challenges = config.challenges(&rule.require);
    let may_fail = rule.require == Require::OptionalOrFailed;
    let extracted =
        dpop::with_scheme_token(request, credential::extract(request, &config.api_keys, &config.token_locations));
    let credential = match crate::mtls::with_certificate(config.mtls.as_ref(), &rule.require, request.peer, extracted) {
        Ok(Some(credential)) => credential,
        // Its API key may be in its form body: read it, then decide again.
        Ok(None) if rule.require.schemes().api_key && credential::awaits_form(request, &config.api_keys) => {
            return Err(Decision::ReadForm)
        }
        Ok(None) if matches!(rule.require, Require::Optional | Require::OptionalOrFailed) => {
            let changes = shape::unauthenticated(&config.upstream, &config.api_keys, &config.token_locations, request);
            return Err(Decision::Anonymous(changes));
        }
        Ok(None) => return Err(Decision::Reply(LocalReply::missing_credential(challenges))),
        Err(e) if may_fail => return Err(failed(config, request, e.reason())),
        Err(e) => return Err(unreadable(e, challenges)),
    };
    if !credential.offered(rule.require.schemes()) {
        return Err(Decision::Reply(LocalReply::credential_not_accepted(challenges)));
    }
    let principal = match verifier.authenticate(config, fetched, &credential, request.source, host, now_ms) {
        Ok(principal) => principal,
        Err(NotVerified::Invalid { reason, .. } | NotVerified::TryLater { reason, .. }) if may_fail => {
            return Err(failed(config, request, reason))
        }
        Err(NotVerified::KeysUnavailable) if may_fail => return Err(failed(config, request, Reason::JwksUnavailable)),
        Err(e) => return Err(not_verified(e, challenges)),
    };
    if !rule.require.admits(&principal) {
        return Err(Decision::Reply(LocalReply::credential_not_accepted(challenges).to(&principal)));
    }
    Ok(Verified { principal, credentials: vec![credential], others: Vec::new() })
}

/// Every credential the request carries that the tree could use, each verified (one
/// that fails is refused: a tree is never met around a bad credential); the tree met
/// by their principals' kinds, or 401 with the challenges of the kinds missing.
#[allow(clippy::result_large_err)]
#[allow(clippy::too_many_arguments)] // verify_one's, and the tree
fn verify_tree(
    config: &Config,
    fetched: &Fetched,
    verifier: &mut Verifier,
    request: &RequestFacts,
    host: &dyn VerifyHost,
    now_ms: u64,
    rule: &Rule,
    tree: &Tree,
) -> Result<Verified, Decision> {
    let every_challenge = || config.challenges(&rule.require);
    let mut found = match credential::extract_each(request, &config.api_keys, &config.token_locations) {
        // The client certificate is a credential of its own place.
        Ok(mut found) => {
            if let Ok(Some(token)) = dpop::with_scheme_token(request, Ok(None)) {
                if !found.iter().any(|c| matches!(c, Credential::Bearer { .. })) {
                    found.push(token);
                }
            }
            found.extend(crate::mtls::certificate_credential(config.mtls.as_ref(), request.peer));
            found
        }
        Err(e) => return Err(unreadable(e, every_challenge())),
    };
    if found.is_empty()
        && tree.root.places() & requirement::place_of(&Kind::ApiKey) != 0
        && credential::awaits_form(request, &config.api_keys)
    {
        return Err(Decision::ReadForm);
    }
    // The token last: a one-time token's use is spent once no other credential can make the
    // decision wait (a store's first fetch) and be made again.
    if let Some(token) = found.iter().position(|credential| matches!(credential, Credential::Bearer { .. })) {
        let token = found.remove(token);
        found.push(token);
    }
    // Credentials of kinds the tree has no use for are not verified (and not forwarded).
    let mut credentials = Vec::with_capacity(found.len());
    let mut principals = Vec::with_capacity(found.len());
    for credential in found.into_iter().filter(|c| c.offered(rule.require.schemes())) {
        match verifier.authenticate(config, fetched, &credential, request.source, host, now_ms) {
            // Verified as a kind the tree has no use for (a client's Basic `id:key` where only
            // `basic` is): it meets nothing, is reported nowhere, and is not forwarded.
            Ok(principal) if !rule.require.admits(&principal) => {}
            Ok(principal) => {
                credentials.push(credential);
                principals.push(principal);
            }
            Err(e) => return Err(not_verified(e, every_challenge())),
        }
    }
    let main = tree.principal_of(&principals).filter(|_| tree.root.met_by(&principals));
    let Some(main) = main else {
        let mut missing = Vec::new();
        tree.root.missing(&principals, &mut missing);
        let names: Vec<String> = missing.iter().map(|kind| kind.to_string()).collect();
        let reply =
            LocalReply::missing_credential(config.challenges(&Require::Kinds(missing.into_iter().cloned().collect())));
        let message = format!("credentials are required: {}", names.join(", "));
        return Err(Decision::Reply(LocalReply { message, ..reply }));
    };
    let principal = principals.remove(main);
    Ok(Verified { principal, credentials, others: principals })
}

/// A credential that did not verify, answered.
fn not_verified(e: NotVerified, challenges: crate::reply::Challenges) -> Decision {
    match e {
        NotVerified::Invalid { reason, message, bearer: true } => {
            Decision::Reply(LocalReply::invalid_token(challenges, message, reason))
        }
        NotVerified::Invalid { reason, message, bearer: false } => {
            Decision::Reply(LocalReply::invalid_credentials(challenges, message, reason))
        }
        NotVerified::TryLater { reason, retry_after_seconds } => {
            Decision::Reply(LocalReply::try_later(reason, retry_after_seconds))
        }
        NotVerified::WaitForKeys { provider, refetch } => Decision::Wait(Awaited::Keys { provider, refetch }),
        NotVerified::KeysUnavailable => Decision::Reply(LocalReply::keys_unavailable(1)),
        NotVerified::WaitForStore(store) => Decision::Wait(Awaited::Store(store)),
        NotVerified::Introspect { provider, key, call } => {
            Decision::Introspect { awaited: Awaited::Introspection { provider, key }, call }
        }
    }
}

/// A credential that could not be read (malformed, too large, ambiguous): 401 with its scheme's error.
fn unreadable(e: credential::CredentialError, challenges: crate::reply::Challenges) -> Decision {
    if e.is_bearer() {
        return Decision::Reply(LocalReply::invalid_token(challenges, e.description(), e.reason()));
    }
    Decision::Reply(LocalReply::invalid_credentials(challenges, e.description(), e.reason()))
}

/// `optional_or_failed`: the request continues without a principal, the reason in filter state.
fn failed(config: &Config, request: &RequestFacts, reason: Reason) -> Decision {
    let mut changes = shape::unauthenticated(&config.upstream, &config.api_keys, &config.token_locations, request);
    changes.state.push((STATE_FAILED.to_string(), reason.label().to_string()));
    Decision::Failed { reason, changes }
}

/// A request the limits counted: what to give back when its stream ends, and its quota.
#[derive(Debug, PartialEq, Eq)]
pub struct Limited {
    /// The principal's limit key.
    pub key: u64,
    /// Whether it holds a slot in flight (given back when its stream ends).
    pub holds_slot: bool,
    /// The quota its response shows.
    pub quota: Option<Quota>,
    /// The change in the principals the limits keep records of (the tracked-principals gauge moves by it).
    pub tracked_change: i64,
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
