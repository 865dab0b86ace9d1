//! Who may do what: a verified request checked against its principal's
//! privileges (methods, path prefixes, trusted networks) and its route's
//! required scopes and principals.

use crate::request::Source;

use crate::network::Networks;
use crate::path::{has_segment_prefix, MatchPath};
use crate::pipeline::route::Rule;
use crate::principal::Principal;
use crate::reason::Reason;
use crate::request_principal::RequestPrincipal;

/// Why a verified request may not proceed (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Forbidden {
    Refused {
        reason: Reason,
        message: &'static str,
    },
    /// RFC 6750 3.1: the scopes the route needs, which the principal does not all hold.
    InsufficientScope {
        required: Vec<String>,
    },
}

/// The request as authorization sees it.
pub(crate) struct Access<'a> {
    pub method: &'a str,
    pub path: &'a MatchPath,
    /// Envoy's `source.address`, read if a network is to be checked.
    pub source: Source<'a>,
}

/// One restriction a principal's privileges or a route's rule put on a request.
enum Check<'a> {
    Networks(&'a Networks),
    Methods(&'a [String]),
    Paths(&'a [String]),
    Principals(&'a [String]),
    RequestPrincipals(&'a [RequestPrincipal]),
    Scopes(&'a [String]),
}

/// The restrictions on this principal under this rule: `authorize` judges each, and
/// with none the stage is skipped, so a check added here is never skipped.
fn checks<'a>(principal: &'a Principal, rule: &'a Rule) -> [Option<Check<'a>>; 6] {
    let privileges = &principal.privileges;
    [
        privileges.trusted_networks.as_ref().map(Check::Networks),
        privileges.methods.as_deref().map(Check::Methods),
        privileges.paths.as_deref().map(Check::Paths),
        rule.principals.as_deref().map(Check::Principals),
        rule.request_principals.as_deref().map(Check::RequestPrincipals),
        (!rule.scopes.is_empty()).then_some(Check::Scopes(&rule.scopes)),
    ]
}

/// Whether anything restricts this principal on this rule (`authorize` has nothing to refuse otherwise).
pub(crate) fn restricted(principal: &Principal, rule: &Rule) -> bool {
    checks(principal, rule).iter().any(Option::is_some)
}

/// Check a verified principal against its privileges and the route's rule.
pub(crate) fn authorize(principal: &Principal, rule: &Rule, access: &Access) -> Result<(), Forbidden> {
    for check in checks(principal, rule) {
        let Some(check) = check else { continue };
        match check {
            Check::Networks(networks) => {
                // Fail closed: without the client's address a restricted principal cannot be placed.
                if !access.source.get().is_some_and(|source| networks.contains(source)) {
                    return Err(refused(Reason::NetworkNotTrusted, "network not trusted"));
                }
            }
            Check::Methods(methods) => {
                if !methods.iter().any(|m| m.eq_ignore_ascii_case(access.method)) {
                    return Err(refused(Reason::MethodNotAllowed, "method not allowed"));
                }
            }
            Check::Paths(paths) => {
                if !paths.iter().any(|prefix| has_segment_prefix(&access.path.path, prefix)) {
                    return Err(refused(Reason::PathNotAllowed, "path not allowed"));
                }
            }
            Check::Principals(principals) => {
                if !principals.iter().any(|admitted| admitted == principal.qualified.as_str()) {
                    return Err(refused(Reason::PrincipalNotAllowed, "principal not allowed"));
                }
            }
            Check::RequestPrincipals(patterns) => {
                let name = principal.token.as_ref().and_then(|token| token.request_principal.as_deref());
                if !patterns.iter().any(|pattern| pattern.matches(name)) {
                    return Err(refused(Reason::PrincipalNotAllowed, "principal not allowed"));
                }
            }
            Check::Scopes(scopes) => {
                if !scopes.iter().all(|scope| principal.scopes.contains(scope)) {
                    return Err(Forbidden::InsufficientScope { required: scopes.to_vec() });
                }
            }
        }
    }
    Ok(())
}

fn refused(reason: Reason, message: &'static str) -> Forbidden {
    Forbidden::Refused { reason, message }
}

/// Whether the client address is inside the configuration's `trusted_networks` (true when unset).
pub(crate) fn network_trusted(networks: Option<&Networks>, source: Source) -> bool {
    match networks {
        None => true,
        Some(networks) => source.get().is_some_and(|source| networks.contains(source)),
    }
}

#[cfg(test)]
mod tests;
