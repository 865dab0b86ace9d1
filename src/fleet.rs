//! Limits across a fleet of Envoys: `limits.scope` decides who counts each
//! principal's requests per hour, this Envoy (shared data) or a rate-limit engine
//! that every Envoy asks through Envoy's own rate-limit filter. With "fleet", the
//! filter hands that filter the verified, qualified principal in a header it owns
//! (removed from every incoming request, so a client cannot pick its bucket), and
//! counts only the requests in flight itself, which are per Envoy by nature.
//! `fleet_rules` (native only) writes the engine's rules from the same configuration.

pub(crate) mod engine;

use crate::pipeline::limits::Limits;
use crate::principal::Principal;

/// The header the filter sets for Envoy's rate-limit filter (`request_headers`
/// action); removed from every incoming request, and by the route before the upstream.
pub(crate) const RATELIMIT_HEADER: &str = "x-auth-ratelimit-principal";

/// Who counts the requests per hour (`limits.scope`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum LimitScope {
    /// This Envoy, in shared data: exact across its workers, blind to its siblings.
    #[default]
    Envoy,
    /// The rate-limit engine every Envoy asks; this Envoy counts requests in flight only.
    Fleet,
}

impl LimitScope {
    /// The limits this Envoy counts itself.
    pub(crate) fn local(self, limits: &Limits) -> Limits {
        match self {
            LimitScope::Envoy => *limits,
            LimitScope::Fleet => Limits { requests_per_hour: None, ..*limits },
        }
    }

    /// The header that makes Envoy's rate-limit filter ask the engine about this
    /// principal: only with "fleet", and only for a principal with an hourly limit (an
    /// unlimited one costs no call to the engine).
    pub(crate) fn descriptor(self, principal: &Principal) -> Option<(String, String)> {
        match self {
            LimitScope::Fleet if principal.privileges.limits.requests_per_hour.is_some() => {
                Some((RATELIMIT_HEADER.to_string(), principal.qualified.as_str().to_string()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
