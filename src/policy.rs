//! Who may do what: a verified request checked against its principal's
//! privileges (methods, path prefixes, trusted networks) and its route's
//! required scopes and principals.

use crate::request::Source;

use crate::network::Networks;
use crate::path::{has_segment_prefix, MatchPath};
use crate::principal::Principal;
use crate::reason::Reason;
use crate::route::Rule;

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

/// Check a verified principal against its privileges and the route's rule.
pub(crate) fn authorize(principal: &Principal, rule: &Rule, access: &Access) -> Result<(), Forbidden> {
    let privileges = &principal.privileges;
    if let Some(networks) = &privileges.trusted_networks {
        // Fail closed: without the client's address a restricted principal cannot be placed.
        if !access.source.get().is_some_and(|source| networks.contains(source)) {
            return Err(refused(Reason::NetworkNotTrusted, "network not trusted"));
        }
    }
    if let Some(methods) = &privileges.methods {
        if !methods.iter().any(|m| m.eq_ignore_ascii_case(access.method)) {
            return Err(refused(Reason::MethodNotAllowed, "method not allowed"));
        }
    }
    if let Some(paths) = &privileges.paths {
        if !paths.iter().any(|prefix| has_segment_prefix(&access.path.path, prefix)) {
            return Err(refused(Reason::PathNotAllowed, "path not allowed"));
        }
    }
    if let Some(principals) = &rule.principals {
        if !principals.iter().any(|admitted| admitted == principal.qualified.as_str()) {
            return Err(refused(Reason::PrincipalNotAllowed, "principal not allowed"));
        }
    }
    if !rule.scopes.iter().all(|scope| principal.scopes.contains(scope)) {
        return Err(Forbidden::InsufficientScope { required: rule.scopes.clone() });
    }
    Ok(())
}

fn refused(reason: Reason, message: &'static str) -> Forbidden {
    Forbidden::Refused { reason, message }
}

/// The client address is outside the configuration's `trusted_networks`.
pub(crate) fn network_trusted(networks: Option<&Networks>, source: Source) -> bool {
    match networks {
        None => true,
        Some(networks) => source.get().is_some_and(|source| networks.contains(source)),
    }
}

#[cfg(test)]
mod tests;
