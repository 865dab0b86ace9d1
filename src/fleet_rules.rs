//! The rate-limit engine's rules from the plugin configuration (`wasm-authn
//! ratelimit-config`): the default `limits.requests_per_hour` for every principal
//! and each principal's own, as envoyproxy/ratelimit and Kuadrant's Limitador
//! read them, and the Envoy rate-limit filter and route actions that send the
//! descriptor the filter sets. Native only.
//!
//! With them, the rules of what the filter asks the engine itself
//! (`crate::fleet::engine`): one use of each one-time keypair token, and the failed
//! passwords of each user name.
//!
//! A rule is written only where a principal's limit differs from the default. A
//! JWT provider's limit holds for each subject of its tokens: a prefix rule
//! (`jwt:corp:*`), each subject counted apart. Both engines count fixed windows of
//! an hour (envoyproxy/ratelimit: clock hours; Limitador: an hour from a counter's
//! first hit), where the filter's own count slides.

use std::fmt::Write;

use crate::config::Config;
use crate::fleet::engine::{FAILURES_KEY, JTI_KEY, ONE_TIME_KEY};
use crate::fleet::{LimitScope, RATELIMIT_HEADER};

/// The descriptor key the engine's rules and Envoy's actions name.
const DESCRIPTOR_KEY: &str = "principal";
use crate::jwt::ProviderKind;

/// Which principals a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One qualified principal: `basic:alice`.
    Exact(String),
    /// Every principal with this prefix, each counted apart: `jwt:corp:`.
    Prefix(String),
}

impl Selector {
    /// As envoyproxy/ratelimit writes it (a trailing `*` is its wildcard).
    fn pattern(&self) -> String {
        match self {
            Selector::Exact(value) => value.clone(),
            Selector::Prefix(prefix) => format!("{prefix}*"),
        }
    }
}

/// A principal's own hourly limit (None: unlimited), where it differs from the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Whom the rule counts: a principal, or a provider's subjects (a prefix).
    pub selector: Selector,
    /// Their limit; None: unlimited.
    pub requests_per_hour: Option<u64>,
    /// The configuration field it comes from, for the rule's name and errors.
    pub field: String,
}

/// A one-time keypair's tokens: each used once in `seconds` (the longest a token of it
/// stays valid: its `max_lifetime_seconds` and twice the clock skew).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTime {
    /// The keypair's id, as the filter sends it.
    pub keypair: String,
    /// How long the engine remembers a token's use.
    pub seconds: u64,
    /// `keypairs[i].one_time`.
    pub field: String,
}

/// Failed passwords per user name (`basic.failure_limit`): the name is locked once
/// `max_failures` failed in a window of `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// `max_failures_per_name`.
    pub max_failures: u32,
    /// `window_seconds`.
    pub window_seconds: u64,
}

/// The limits of a configuration, as the engine must count them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// `limits.requests_per_hour`: every principal without a rule of its own (None: unlimited).
    pub default: Option<u64>,
    /// The principals whose limit differs from the default.
    pub overrides: Vec<Override>,
    /// The one-time keypairs, whose tokens the filter asks the engine about.
    pub one_time: Vec<OneTime>,
    /// With Basic users: their failed passwords, which the filter counts in the engine.
    pub failures: Option<Failures>,
    /// `limits.engine_domain`: the domain the filter asks the engine in.
    pub domain: String,
}

/// Why no rules can be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The configuration field that cannot be written as an engine rule.
    pub field: String,
    /// Why.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> Refusal {
    Refusal { field: field.into(), message: message.into() }
}

impl Rules {
    /// The rules of an accepted configuration; refused unless `limits.scope` is "fleet"
    /// (never both counts by accident), when nothing has an hourly limit, or when a
    /// principal cannot be told apart from another by the engine's matching.
    pub fn of(config: &Config) -> Result<Rules, Refusal> {
        if config.limit_scope != LimitScope::Fleet {
            return Err(refuse(
                "limits.scope",
                "is \"envoy\": each Envoy counts the requests per hour itself and hands no principal to the \
                 engine; set it to \"fleet\" to have the engine count them",
            ));
        }
        let default = config.limit_defaults.requests_per_hour;
        let mut overrides = Vec::new();
        let mut differs = |selector: Selector, requests_per_hour: Option<u64>, field: String| {
            if requests_per_hour != default {
                overrides.push(Override { selector, requests_per_hour, field });
            }
        };
        for (name, privileges) in config.basic_users.iter() {
            let field = format!("basic.users[name={name:?}].requests_per_hour");
            differs(Selector::Exact(format!("basic:{name}")), privileges.limits.requests_per_hour, field);
        }
        for (i, client) in config.api_keys.clients.iter().enumerate().filter(|(_, client)| !client.disabled) {
            let field = format!("api_keys.clients[{i}].requests_per_hour");
            differs(
                Selector::Exact(format!("api-key:{}", client.id)),
                client.privileges.limits.requests_per_hour,
                field,
            );
        }
        let (mut providers, mut keypairs) = (0.., 0..);
        for provider in &config.jwt_providers {
            let limit = provider.privileges.limits.requests_per_hour;
            match provider.kind {
                ProviderKind::IdentityProvider => {
                    let field = format!("jwt.providers[{}].requests_per_hour", providers.next().unwrap_or_default());
                    differs(Selector::Prefix(format!("jwt:{}:", provider.name)), limit, field);
                }
                ProviderKind::Keypair { .. } => {
                    let field = format!("keypairs[{}].requests_per_hour", keypairs.next().unwrap_or_default());
                    differs(Selector::Exact(format!("keypair:{}", provider.name)), limit, field);
                }
                // Its tokens count as their API client (`api-key:<id>`), with the client's limit.
                ProviderKind::TokenEndpoint => {}
            }
        }
        let mut one_time = Vec::new();
        for (i, provider) in
            config.jwt_providers.iter().filter(|p| matches!(p.kind, ProviderKind::Keypair { .. })).enumerate()
        {
            if provider.kind == (ProviderKind::Keypair { one_time: true }) {
                let lifetime = provider.max_lifetime_seconds.unwrap_or(0);
                let seconds = lifetime.saturating_add(2 * config.clock_skew_seconds).saturating_add(1);
                one_time.push(OneTime {
                    keypair: provider.name.clone(),
                    seconds,
                    field: format!("keypairs[{i}].one_time"),
                });
            }
        }
        let failures = (!config.basic_users.is_empty()).then_some(Failures {
            max_failures: config.failure_limit.max_failures_per_name,
            window_seconds: config.failure_limit.window_seconds,
        });
        if default.is_none()
            && overrides.iter().all(|rule| rule.requests_per_hour.is_none())
            && one_time.is_empty()
            && failures.is_none()
        {
            return Err(refuse(
                "limits.requests_per_hour",
                "no principal has a limit, no keypair is one_time and there are no Basic users: nothing for the \
                 engine to count",
            ));
        }
        let domain = config.engine.as_ref().map_or_else(String::new, |engine| engine.domain.clone());
        let rules = Rules { default, overrides, one_time, failures, domain };
        rules.printable()?;
        Ok(rules)
    }

    /// The domain to write the rules in: `domain` when given, else the configuration's;
    /// refused when the filter asks the engine itself (one-time tokens, failed
    /// passwords) in another.
    pub fn domain_of(&self, domain: Option<&str>) -> Result<String, Refusal> {
        match domain {
            Some(domain) if domain != self.domain && (!self.one_time.is_empty() || self.failures.is_some()) => {
                Err(refuse(
                    "limits.engine_domain",
                    format!(
                        "is {:?}: the filter asks the engine about one-time tokens and failed passwords in it; \
                         --domain must be the same",
                        self.domain
                    ),
                ))
            }
            Some(domain) => Ok(domain.to_string()),
            None => Ok(self.domain.clone()),
        }
    }

    /// Every value is printable (the engines' files carry them as text). Each principal
    /// meets one rule by construction: a prefix is `jwt:<provider>:` and provider
    /// names have no `:`, so no prefix covers another rule's principals.
    fn printable(&self) -> Result<(), Refusal> {
        for rule in &self.overrides {
            let value = match &rule.selector {
                Selector::Exact(value) | Selector::Prefix(value) => value,
            };
            if value.chars().any(char::is_control) {
                return Err(refuse(&rule.field, "its principal has control characters, which no rule can carry"));
            }
        }
        Ok(())
    }

    /// envoyproxy/ratelimit's configuration (`domain`, `descriptors`). A value with a
    /// `*` (its wildcard) is refused, and a one-time keypair id with a `_`.
    pub fn envoy_ratelimit(&self, domain: &str) -> Result<String, Refusal> {
        let mut out = String::new();
        let _ = writeln!(out, "# envoyproxy/ratelimit: the hourly limits of wasm-authn's principals (one budget per");
        let _ = writeln!(out, "# principal for every Envoy; a key without a value is each principal's default), its");
        let _ = writeln!(out, "# one-time tokens and failed passwords.");
        let _ = writeln!(out, "domain: {}", json_string(domain));
        let _ = writeln!(out, "descriptors:");
        if let Some(limit) = self.default {
            let _ = writeln!(out, "- key: {DESCRIPTOR_KEY}");
            out.push_str(&ratelimit_limit(Some(limit)));
        }
        for rule in &self.overrides {
            if let Selector::Exact(value) = &rule.selector {
                if value.contains('*') {
                    return Err(refuse(&rule.field, "its principal has a '*', envoyproxy/ratelimit's wildcard"));
                }
            }
            let _ = writeln!(out, "# {}", rule.field);
            let _ = writeln!(out, "- key: {DESCRIPTOR_KEY}");
            let _ = writeln!(out, "  value: {}", json_string(&rule.selector.pattern()));
            out.push_str(&ratelimit_limit(rule.requests_per_hour));
        }
        for rule in &self.one_time {
            // Its cache key runs `one_time_keypair_<id>_jti_<jti>`: an id with `_` could meet another's.
            if rule.keypair.contains('_') || rule.keypair.contains('*') {
                return Err(refuse(
                    &rule.field,
                    "its keypair id has a '_' (envoyproxy/ratelimit's key separator) or a '*' (its wildcard)",
                ));
            }
            let _ = writeln!(
                out,
                "# {}: each token once (a fixed day: one used just before midnight UTC can be used once\n\
                 # more after it; the filter's own record still refuses it on the Envoy that saw it)",
                rule.field
            );
            let _ = writeln!(out, "- key: {ONE_TIME_KEY}");
            let _ = writeln!(out, "  value: {}", json_string(&rule.keypair));
            let _ = writeln!(out, "  descriptors:");
            let _ = writeln!(out, "  - key: {JTI_KEY}");
            let _ = writeln!(out, "    rate_limit:\n      unit: day\n      requests_per_unit: 1");
        }
        if let Some(failures) = self.failures {
            let (unit, a) = match failures.window_seconds {
                0..=1 => ("second", "a"),
                2..=60 => ("minute", "a"),
                61..=3600 => ("hour", "an"),
                _ => ("day", "a"),
            };
            let _ = writeln!(
                out,
                "# basic.failure_limit.max_failures_per_name ({} in {} s): failed passwords per user name, in\n\
                 # fixed windows of {a} {unit}. The filter checks a right password with hits_addend 0, which is\n\
                 # over once more than requests_per_unit failed: one less than the limit.",
                failures.max_failures, failures.window_seconds
            );
            let _ = writeln!(out, "- key: {FAILURES_KEY}");
            let _ = writeln!(
                out,
                "  rate_limit:\n    unit: {unit}\n    requests_per_unit: {}",
                failures.max_failures.saturating_sub(1)
            );
        }
        Ok(out)
    }

    /// Limitador's `limits.yaml`, its conditions in CEL on the descriptors as
    /// limitador-server maps them (`descriptors[0].principal`): the default excludes
    /// every principal with a rule of its own.
    pub fn limitador(&self, namespace: &str) -> String {
        let principal = format!("descriptors[0].{DESCRIPTOR_KEY}");
        let mut out = String::new();
        let _ = writeln!(out, "# Kuadrant's Limitador: the hourly limits of wasm-authn's principals (one budget per");
        let _ = writeln!(out, "# principal for every Envoy), its one-time tokens and failed passwords, on the first");
        let _ = writeln!(out, "# descriptor of the request.");
        let limit = |out: &mut String, name: &str, max_value: u64, conditions: &[String]| {
            let _ = writeln!(out, "- namespace: {}", json_string(namespace));
            let _ = writeln!(out, "  name: {}", yaml_string(name));
            let _ = writeln!(out, "  max_value: {max_value}");
            let _ = writeln!(out, "  seconds: 3600");
            if conditions.is_empty() {
                let _ = writeln!(out, "  conditions: []");
            } else {
                let _ = writeln!(out, "  conditions:");
                for condition in conditions {
                    let _ = writeln!(out, "  - {}", yaml_string(condition));
                }
            }
            let _ = writeln!(out, "  variables:\n  - {}", yaml_string(&principal));
        };
        if let Some(max_value) = self.default {
            let mut conditions = Vec::new();
            let exact: Vec<String> = self
                .overrides
                .iter()
                .filter_map(|rule| match &rule.selector {
                    Selector::Exact(value) => Some(cel_string(value)),
                    Selector::Prefix(_) => None,
                })
                .collect();
            if !exact.is_empty() {
                conditions.push(format!("!({principal} in [{}])", exact.join(", ")));
            }
            for rule in &self.overrides {
                if let Selector::Prefix(prefix) = &rule.selector {
                    conditions.push(format!("!{principal}.startsWith({})", cel_string(prefix)));
                }
            }
            if conditions.is_empty() {
                // Requests with a principal descriptor (a limit without conditions would
                // apply to any descriptor Envoy sends in this namespace).
                conditions.push(format!("{principal} != \"\""));
            }
            limit(&mut out, "limits.requests_per_hour", max_value, &conditions);
        }
        for rule in &self.overrides {
            let Some(max_value) = rule.requests_per_hour else { continue };
            let condition = match &rule.selector {
                Selector::Exact(value) => format!("{principal} == {}", cel_string(value)),
                Selector::Prefix(prefix) => format!("{principal}.startsWith({})", cel_string(prefix)),
            };
            limit(&mut out, &rule.field, max_value, &[condition]);
        }
        for rule in &self.one_time {
            let keypair = format!("descriptors[0].{ONE_TIME_KEY}");
            let _ = writeln!(out, "- namespace: {}", json_string(namespace));
            let _ = writeln!(out, "  name: {}", yaml_string(&rule.field));
            let _ = writeln!(out, "  max_value: 1\n  seconds: {}", rule.seconds);
            let condition = format!("{keypair} == {}", cel_string(&rule.keypair));
            let _ = writeln!(out, "  conditions:\n  - {}", yaml_string(&condition));
            let _ = writeln!(out, "  variables:\n  - {}", yaml_string(&format!("descriptors[0].{JTI_KEY}")));
        }
        if let Some(failures) = self.failures {
            let user = format!("descriptors[0].{FAILURES_KEY}");
            let _ = writeln!(out, "- namespace: {}", json_string(namespace));
            let _ = writeln!(out, "  name: 'basic.failure_limit.max_failures_per_name'");
            let _ = writeln!(out, "  max_value: {}\n  seconds: {}", failures.max_failures, failures.window_seconds);
            let _ = writeln!(out, "  conditions:\n  - {}", yaml_string(&format!("{user} != \"\"")));
            let _ = writeln!(out, "  variables:\n  - {}", yaml_string(&user));
        }
        out
    }

    /// Envoy's side: the rate-limit filter (after wasm-authn, before the router) and
    /// what each route (or virtual host) guarded by wasm-authn needs: the action that
    /// sends the filter's descriptor, and the header's removal before the upstream.
    pub fn envoy(&self, domain: &str, cluster: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Envoy: `http_filter` goes after wasm-authn and before the router; `route` holds what each\n\
             # route (or virtual host) that wasm-authn guards needs. The router removes the header only\n\
             # after the rate-limit filter has read it: the upstream never sees it.\n\
             # `cluster_name` is the engine's Envoy cluster, not printed here: define it (gRPC, so\n\
             # HTTP/2; envoy/envoy-fleet.yaml's `ratelimit` is one)."
        );
        if !self.one_time.is_empty() || self.failures.is_some() {
            let _ = writeln!(
                out,
                "# wasm-authn itself asks the engine about one-time tokens and failed passwords through the\n\
                 # cluster named `ratelimit` (gRPC, HTTP/2), in the domain {}.",
                json_string(&self.domain)
            );
        }
        let _ = writeln!(out, "http_filter:");
        let _ = writeln!(out, "  name: envoy.filters.http.ratelimit");
        let _ = writeln!(out, "  typed_config:");
        let _ =
            writeln!(out, "    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit");
        let _ = writeln!(out, "    domain: {}", json_string(domain));
        let _ = writeln!(
            out,
            "    # false: when the engine does not answer in time, requests pass (counted as\n    \
             # ratelimit.failure_mode_allowed); true: they get 500 (status_on_error sets another)."
        );
        let _ = writeln!(out, "    failure_mode_deny: false");
        let _ = writeln!(out, "    timeout: 0.25s");
        let _ = writeln!(out, "    rate_limit_service:");
        let _ = writeln!(out, "      transport_api_version: V3");
        let _ = writeln!(out, "      grpc_service:");
        let _ = writeln!(out, "        envoy_grpc:");
        let _ = writeln!(out, "          cluster_name: {}", json_string(cluster));
        let _ = writeln!(out, "route:");
        let _ = writeln!(out, "  rate_limits:");
        let _ = writeln!(out, "  - actions:");
        let _ = writeln!(out, "    - request_headers:");
        let _ = writeln!(out, "        header_name: {RATELIMIT_HEADER}");
        let _ = writeln!(out, "        descriptor_key: {DESCRIPTOR_KEY}");
        let _ = writeln!(out, "  request_headers_to_remove:");
        let _ = writeln!(out, "  - {RATELIMIT_HEADER}");
        out
    }
}

/// envoyproxy/ratelimit's `rate_limit` of one descriptor.
fn ratelimit_limit(requests_per_hour: Option<u64>) -> String {
    match requests_per_hour {
        Some(limit) => format!("  rate_limit:\n    unit: hour\n    requests_per_unit: {limit}\n"),
        None => "  rate_limit:\n    unlimited: true\n".to_string(),
    }
}

/// A YAML double-quoted scalar (JSON's string syntax, which YAML reads alike).
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A YAML single-quoted scalar (for CEL, whose strings are double-quoted). The
/// text has no control characters (`Rules::distinct`): a single-quoted scalar
/// could not escape them.
fn yaml_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A CEL string literal.
fn cel_string(text: &str) -> String {
    let mut literal = String::with_capacity(text.len() + 2);
    literal.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            literal.push('\\');
        }
        literal.push(c);
    }
    literal.push('"');
    literal
}

#[cfg(test)]
mod tests;
