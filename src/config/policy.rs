//! Who may do what, as configured: route rules, trusted networks, privileges of
//! users, clients and providers, and revocation.

use super::error::ConfigError;
use super::names::non_empty;
use super::remote::{fetch_config, Document};
use super::schema::{
    default_wait_ms, PrivilegeFields, RawBypassRule, RawLimitScope, RawLimits, RawMatch, RawRevocation, RawRule,
    MAX_WAIT_MS,
};
use crate::fleet::LimitScope;
use crate::jwt::{Provider, ProviderKind};
use crate::network::{Cidr, Networks};
use crate::path::has_segment_prefix;
use crate::pipeline::limits::Limits;
use crate::pipeline::revocation::{Revocation, RevocationList};
use crate::pipeline::route::{HostPattern, Kind, Require, RouteMatch, Rule};
use crate::principal::QualifiedName;
use crate::privileges::Privileges;
use crate::request_principal::RequestPrincipal;

/// Method names a rule or a privilege may list: RFC 9110's, PATCH, CData's MERGE,
/// and WebDAV's. Anything else is a typo.
const METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "MERGE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "SEARCH",
    "REPORT",
];

/// Most entries in one list (networks, methods, paths, scopes, principals, revoked ids).
const MAX_LIST: usize = 10_000;

pub(super) fn methods(raw: Vec<String>, path: &str) -> Result<Vec<String>, ConfigError> {
    bounded(&raw, path)?;
    let mut methods = Vec::with_capacity(raw.len());
    for (i, method) in raw.iter().enumerate() {
        let upper = method.to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            return Err(ConfigError::new(
                format!("{path}[{i}]"),
                format!("unknown HTTP method (one of {})", METHODS.join(", ")),
            ));
        }
        if !methods.contains(&upper) {
            methods.push(upper);
        }
    }
    Ok(methods)
}

/// Normalized path prefixes (or exact paths).
fn paths(raw: Vec<String>, path: &str) -> Result<Vec<String>, ConfigError> {
    bounded(&raw, path)?;
    raw.iter()
        .enumerate()
        .map(|(i, p)| crate::path::configured(p).map_err(|message| ConfigError::new(format!("{path}[{i}]"), message)))
        .collect()
}

pub(super) fn networks(raw: Vec<String>, path: &str) -> Result<Networks, ConfigError> {
    bounded(&raw, path)?;
    let cidrs = raw
        .iter()
        .enumerate()
        .map(|(i, text)| Cidr::parse(text).map_err(|message| ConfigError::new(format!("{path}[{i}]"), message)))
        .collect::<Result<Vec<_>, _>>()?;
    if cidrs.is_empty() {
        return Err(ConfigError::new(path, "must list at least one network (omit it to trust every network)"));
    }
    Ok(Networks(cidrs))
}

/// Scope names as RFC 6749 3.3 defines them: printable ASCII but space, `"` and `\`
/// (the `scope` claim separates them by spaces; a challenge quotes them).
fn scopes(raw: Vec<String>, path: &str) -> Result<Vec<String>, ConfigError> {
    bounded(&raw, path)?;
    for (i, scope) in raw.iter().enumerate() {
        let token = !scope.is_empty() && scope.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if !token {
            return Err(ConfigError::new(
                format!("{path}[{i}]"),
                "must be a scope name (RFC 6749: no spaces, quotes or backslashes)",
            ));
        }
    }
    Ok(raw)
}

fn bounded(list: &[String], path: &str) -> Result<(), ConfigError> {
    if list.len() > MAX_LIST {
        return Err(ConfigError::new(path, format!("at most {MAX_LIST} entries")));
    }
    Ok(())
}

/// The privileges of one user, client or provider at `path`; `defaults` are `limits`'.
pub(super) fn privileges(raw: PrivilegeFields, defaults: &Limits, path: &str) -> Result<Privileges, ConfigError> {
    Ok(Privileges {
        methods: raw.methods.map(|m| methods(m, &format!("{path}.methods"))).transpose()?,
        paths: raw.paths.map(|p| paths(p, &format!("{path}.paths"))).transpose()?,
        scopes: scopes(raw.scopes, &format!("{path}.scopes"))?,
        trusted_networks: raw.trusted_networks.map(|n| networks(n, &format!("{path}.trusted_networks"))).transpose()?,
        limits: Limits {
            requests_per_hour: limit(raw.requests_per_hour, defaults.requests_per_hour),
            max_concurrent: limit(raw.max_concurrent, defaults.max_concurrent),
        },
    })
}

/// A principal's own value overrides the default; absent takes it; 0 is unlimited.
fn limit(own: Option<u64>, default: Option<u64>) -> Option<u64> {
    match own {
        Some(0) => None,
        Some(value) => Some(value),
        None => default,
    }
}

/// Most principals tracked for limits, at most (each a few dozen bytes of shared data).
const MAX_TRACKED_PRINCIPALS: usize = 1_000_000;

/// `limits` compiled.
pub(super) struct LimitSettings {
    pub defaults: Limits,
    pub max_tracked_principals: usize,
    pub expose_headers: bool,
    pub scope: LimitScope,
    pub engine: Option<crate::fleet::engine::Engine>,
}

/// `limits`: the defaults, the table of counts, and who counts the hourly limits.
pub(super) fn limits(raw: Option<RawLimits>) -> Result<LimitSettings, ConfigError> {
    let raw = raw.unwrap_or_default();
    if !(1..=MAX_TRACKED_PRINCIPALS).contains(&raw.max_tracked_principals) {
        return Err(ConfigError::new(
            "limits.max_tracked_principals",
            format!("must be between 1 and {MAX_TRACKED_PRINCIPALS}"),
        ));
    }
    let defaults = Limits {
        requests_per_hour: limit(raw.requests_per_hour, None),
        max_concurrent: limit(raw.max_concurrent, None),
    };
    let scope = match raw.scope {
        RawLimitScope::Envoy => LimitScope::Envoy,
        RawLimitScope::Fleet => LimitScope::Fleet,
    };
    if scope == LimitScope::Fleet && raw.expose_headers {
        // The engine holds the hourly counts: Envoy's rate-limit filter reports them
        // (its enable_x_ratelimit_headers), this filter cannot.
        return Err(ConfigError::new(
            "limits.expose_headers",
            "must be false with scope \"fleet\": the engine counts the hourly limits",
        ));
    }
    let engine = match scope {
        LimitScope::Envoy => None,
        LimitScope::Fleet => {
            if raw.engine_domain.is_empty() {
                return Err(ConfigError::new("limits.engine_domain", "must not be empty"));
            }
            Some(crate::fleet::engine::Engine {
                domain: raw.engine_domain,
                failure_mode_deny: raw.engine_failure_mode_deny,
            })
        }
    };
    Ok(LimitSettings {
        defaults,
        max_tracked_principals: raw.max_tracked_principals,
        expose_headers: raw.expose_headers,
        scope,
        engine,
    })
}

/// `bypass` rules as `require: "none"` rules.
pub(super) fn bypass_rule(rule: RawBypassRule, i: usize) -> Result<Rule, ConfigError> {
    let path = format!("bypass[{i}]");
    if rule.path_prefix.is_none() && rule.method.is_none() {
        return Err(ConfigError::new(path, "needs path_prefix or method"));
    }
    let path_prefix = match &rule.path_prefix {
        Some(prefix) => Some(
            crate::path::configured(prefix)
                .map_err(|message| ConfigError::new(format!("{path}.path_prefix"), message))?,
        ),
        None => None,
    };
    let methods = rule.method.map(|m| methods(vec![m], &format!("{path}.method"))).transpose()?;
    let matcher = RouteMatch { path_prefix, methods, ..RouteMatch::default() };
    Ok(Rule::only(matcher, Require::None))
}

/// One of `rules`; `providers` are the JWT providers, keypairs and token endpoint (`jwt:<name>`).
pub(super) fn rule(raw: RawRule, i: usize, providers: &[Provider]) -> Result<Rule, ConfigError> {
    let path = format!("rules[{i}]");
    let matcher = route_match(raw.matcher, &format!("{path}.match"))?;
    let require = super::requirement::require(raw.require, raw.principal_from, &format!("{path}.require"), providers)?;
    let scopes = scopes(raw.scopes, &format!("{path}.scopes"))?;
    let principals = match raw.principals {
        Some(ids) => {
            bounded(&ids, &format!("{path}.principals"))?;
            for (j, id) in ids.iter().enumerate() {
                QualifiedName::parse(id, Some(providers))
                    .map_err(|e| ConfigError::new(format!("{path}.principals[{j}]"), e.to_string()))?;
            }
            Some(ids)
        }
        None => None,
    };
    let request_principals = match raw.request_principals {
        Some(patterns) => {
            bounded(&patterns, &format!("{path}.request_principals"))?;
            // Only a JWT identity provider's tokens have an issuer/subject to match.
            let issuing = |p: &Provider| p.kind == ProviderKind::IdentityProvider && p.introspection.is_none();
            let takes_tokens =
                require.principal_kinds().is_none_or(|kinds| kinds.iter().any(|k| matches!(k, Kind::Jwt { .. })));
            if !providers.iter().any(issuing) || !takes_tokens {
                let message =
                    "no JWT provider's token can reach this rule: nothing could match (jwt.providers with keys)";
                return Err(ConfigError::new(format!("{path}.request_principals"), message));
            }
            let parsed = patterns.iter().enumerate().map(|(j, text)| {
                RequestPrincipal::parse(text)
                    .map_err(|message| ConfigError::new(format!("{path}.request_principals[{j}]"), message))
            });
            Some(parsed.collect::<Result<Vec<_>, _>>()?)
        }
        None => None,
    };
    if require == Require::None && (!scopes.is_empty() || principals.is_some() || request_principals.is_some()) {
        return Err(ConfigError::new(&path, "a rule that requires nothing cannot require scopes or principals"));
    }
    Ok(Rule { matcher, require, scopes, principals, request_principals, enforce: raw.enforce, claims: Vec::new() })
}

fn route_match(raw: RawMatch, path: &str) -> Result<RouteMatch, ConfigError> {
    let configured = |p: Option<String>, field: &str| {
        p.map(|p| crate::path::configured(&p).map_err(|message| ConfigError::new(format!("{path}.{field}"), message)))
            .transpose()
    };
    let host = match raw.host {
        None => None,
        Some(host) => {
            let name = host.strip_prefix("*.");
            let text = name.unwrap_or(&host);
            // Labels are never empty: `a..b`, `.a` and `a.` (requests are matched without
            // their trailing dot) would never match.
            let label =
                |label: &str| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !text.split('.').all(label) {
                return Err(ConfigError::new(
                    format!("{path}.host"),
                    "must be a host name, or *.suffix (without a trailing dot)",
                ));
            }
            Some(match name {
                Some(suffix) => HostPattern::Suffix(format!(".{suffix}")),
                None => HostPattern::Exact(host),
            })
        }
    };
    if raw.route.as_deref().is_some_and(str::is_empty) {
        return Err(ConfigError::new(format!("{path}.route"), "must name an Envoy route"));
    }
    let matcher = RouteMatch {
        path_prefix: configured(raw.path_prefix, "path_prefix")?,
        path: configured(raw.path, "path")?,
        methods: raw.methods.map(|m| methods(m, &format!("{path}.methods"))).transpose()?,
        host,
        route: raw.route,
    };
    if matcher.methods.as_ref().is_some_and(Vec::is_empty) {
        return Err(ConfigError::new(format!("{path}.methods"), "must list a method: an empty list never matches"));
    }
    if let (Some(exact), Some(prefix)) = (&matcher.path, &matcher.path_prefix) {
        if !has_segment_prefix(exact, prefix) {
            return Err(ConfigError::new(path, "path is not under path_prefix: the rule never matches"));
        }
    }
    Ok(matcher)
}

/// No rule may be unreachable: an earlier rule that matches every request a later one
/// matches takes them all (but a relaxed rule lets ambiguous paths through to a later
/// restrictive one). `bypass_count`: the first rules are `bypass[..]`.
pub(super) fn every_rule_is_reachable(rules: &[Rule], bypass_count: usize) -> Result<(), ConfigError> {
    let name = |i: usize| match i.checked_sub(bypass_count) {
        None => format!("bypass[{i}]"),
        Some(j) => format!("rules[{j}]"),
    };
    for (j, later) in rules.iter().enumerate() {
        let shadow = rules[..j].iter().position(|earlier| {
            (!earlier.require.relaxed() || later.require.relaxed()) && earlier.matcher.covers(&later.matcher)
        });
        if let Some(i) = shadow {
            let message = format!("never matches: {} before it matches every request it would", name(i));
            return Err(ConfigError::new(name(j), message));
        }
    }
    Ok(())
}

pub(super) fn revocation(raw: Option<RawRevocation>, providers: &[Provider]) -> Result<Revocation, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Revocation {
            local: RevocationList::default(),
            fetch: None,
            allow_before_first_fetch: false,
            wait_ms: default_wait_ms(),
        });
    };
    bounded(&raw.jti, "revocation.jti")?;
    if raw.wait_ms > MAX_WAIT_MS {
        return Err(ConfigError::new("revocation.wait_ms", format!("must be at most {MAX_WAIT_MS}")));
    }
    if raw.not_before.len() > MAX_LIST {
        return Err(ConfigError::new("revocation.not_before", format!("at most {MAX_LIST} entries")));
    }
    for (i, jti) in raw.jti.iter().enumerate() {
        non_empty(jti, &format!("revocation.jti[{i}]"))?;
    }
    for name in raw.not_before.keys() {
        let refusal = match QualifiedName::parse(name, Some(providers)) {
            Ok(named) if named.is_basic() => "Basic users have no tokens to revoke".to_string(),
            Ok(_) => continue,
            Err(e) => e.to_string(),
        };
        return Err(ConfigError::new(format!("revocation.not_before.{name}"), refusal));
    }
    let fetch = raw.remote.map(|remote| fetch_config(remote, "revocation.remote", Document::Revocation)).transpose()?;
    Ok(Revocation {
        local: RevocationList::new(raw.jti, raw.not_before),
        fetch,
        allow_before_first_fetch: raw.allow_before_first_fetch,
        wait_ms: raw.wait_ms,
    })
}
