//! Which rule a request falls under: `bypass` rules, then `rules`, first match
//! wins (no match: any configured scheme, no further requirement). A rule says
//! what the route requires: nothing, an optional credential, any credential, or
//! credentials of some kinds; and which scopes and principals it admits.

use std::collections::HashMap;

use crate::path::{has_segment_prefix, MatchPath};
use crate::principal::{AuthMethod, Principal};
use crate::request::RequestFacts;
use crate::request_principal::RequestPrincipal;
use crate::token_claims::ClaimCondition;

/// A kind of credential, spelled as the `x-auth-method` values (`jwt:<provider>` narrows `jwt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Basic users.
    Basic,
    /// API keys (and API clients' `id:key` as Basic).
    ApiKey,
    /// Tokens of any JWT provider, or of the one named.
    Jwt {
        /// `jwt:<provider>`: that provider's tokens only.
        provider: Option<String>,
    },
    /// Client keypair tokens.
    Keypair,
    /// A client certificate (`mtls`).
    Mtls,
}

impl Kind {
    /// Whether a verified principal is of this kind.
    pub fn admits(&self, principal: &Principal) -> bool {
        match self {
            Kind::Basic => principal.method == AuthMethod::Basic,
            Kind::ApiKey => principal.method == AuthMethod::ApiKey,
            Kind::Jwt { provider: None } => principal.method == AuthMethod::Jwt,
            Kind::Jwt { provider: Some(name) } => {
                principal.method == AuthMethod::Jwt && principal.provider.as_deref() == Some(name)
            }
            Kind::Keypair => principal.method == AuthMethod::Keypair,
            Kind::Mtls => principal.method == AuthMethod::Mtls,
        }
    }
}

/// As configured: `basic`, `api-key`, `jwt`, `jwt:<provider>`, `keypair`, `mtls`.
impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Basic => f.write_str("basic"),
            Kind::ApiKey => f.write_str("api-key"),
            Kind::Jwt { provider: None } => f.write_str("jwt"),
            Kind::Jwt { provider: Some(name) } => write!(f, "jwt:{name}"),
            Kind::Keypair => f.write_str("keypair"),
            Kind::Mtls => f.write_str("mtls"),
        }
    }
}

/// A requirement tree (`requirement.rs` evaluates it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// A credential of this kind.
    Kind(Kind),
    /// Every one of these.
    All(Vec<Requirement>),
    /// One of these.
    Any(Vec<Requirement>),
}

/// A rule's tree and whose principal it names (in order of preference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The tree.
    pub root: Requirement,
    /// Whose principal the request gets, in order of preference.
    pub principal_from: Vec<Kind>,
    /// Its kinds, in the order written.
    pub kinds: Vec<Kind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// What a rule requires of a request.
pub enum Require {
    /// A credential of any configured kind.
    Any,
    /// No authentication (what `bypass` does).
    None,
    /// Without a credential the request passes with no principal; with one it must verify.
    Optional,
    /// As `Optional`, and a credential that fails passes too, with no principal
    /// (`jwt_authn`'s `allow_missing_or_failed`).
    OptionalOrFailed,
    /// Only credentials of these kinds.
    Kinds(Vec<Kind>),
    /// Credentials together (a tree with an `all`; one without is `Kinds`).
    Tree(Box<Tree>),
}

impl Require {
    /// The kinds it accepts (a tree's, any of which may be among what it takes); None: any.
    pub fn kinds(&self) -> Option<&[Kind]> {
        match self {
            Require::Kinds(kinds) => Some(kinds),
            Require::Tree(tree) => Some(&tree.kinds),
            Require::Any | Require::Optional | Require::OptionalOrFailed | Require::None => None,
        }
    }

    /// The kinds the request's principal may be of (a tree's `principal_from`): claims
    /// and request principals are judged on it; None: any.
    pub fn principal_kinds(&self) -> Option<&[Kind]> {
        match self {
            Require::Tree(tree) => Some(&tree.principal_from),
            _ => self.kinds(),
        }
    }

    /// Whether a verified principal's kind is accepted here.
    pub fn admits(&self, principal: &Principal) -> bool {
        self.kinds().is_none_or(|kinds| kinds.iter().any(|kind| kind.admits(principal)))
    }

    /// Whether this requirement lets a request through without a verified credential.
    pub fn relaxed(&self) -> bool {
        matches!(self, Require::None | Require::Optional | Require::OptionalOrFailed)
    }

    /// Which schemes a 401 here offers, and the forms of credential it may accept
    /// (`user:password` may turn out to be an API client's `id:key`).
    pub fn schemes(&self) -> Schemes {
        match self.kinds() {
            Some(kinds) => Schemes {
                basic: kinds.iter().any(|k| matches!(k, Kind::Basic | Kind::ApiKey)),
                bearer: kinds.iter().any(|k| matches!(k, Kind::Jwt { .. } | Kind::Keypair)),
                api_key: kinds.iter().any(|k| matches!(k, Kind::ApiKey)),
                mtls: kinds.iter().any(|k| matches!(k, Kind::Mtls)),
            },
            None => Schemes { basic: true, bearer: true, api_key: true, mtls: true },
        }
    }
}

/// The schemes a route accepts, as a 401 offers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schemes {
    /// `Authorization: Basic` (a user, or an API client's `id:key`).
    pub basic: bool,
    /// `Authorization: Bearer` (and the other places tokens are read).
    pub bearer: bool,
    /// An API key in its header, parameter or form field.
    pub api_key: bool,
    /// A client certificate (no challenge: it comes with the connection).
    pub mtls: bool,
}

/// `:authority` exact, or `*.suffix` for any subdomain (compared without case, port
/// and one trailing dot: `admin.example.` is `admin.example` to DNS and to Envoy's routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// This host.
    Exact(String),
    /// Any subdomain of this one.
    Suffix(String),
}

impl HostPattern {
    /// Whether every host `other` matches, this matches too.
    fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(mine), HostPattern::Exact(theirs)) => mine.eq_ignore_ascii_case(theirs),
            (HostPattern::Suffix(_), HostPattern::Exact(theirs)) => self.matches(theirs),
            // Both start with '.': `.a.example` ends with `.example` at a label boundary.
            (HostPattern::Suffix(mine), HostPattern::Suffix(theirs)) => theirs
                .len()
                .checked_sub(mine.len())
                .and_then(|start| theirs.get(start..))
                .is_some_and(|end| end.eq_ignore_ascii_case(mine)),
            (HostPattern::Exact(_), HostPattern::Suffix(_)) => false,
        }
    }

    fn matches(&self, authority: &str) -> bool {
        let host = strip_port(authority);
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            HostPattern::Exact(name) => host.eq_ignore_ascii_case(name),
            HostPattern::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host.get(host.len() - suffix.len()..).is_some_and(|end| end.eq_ignore_ascii_case(suffix))
            }
        }
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_once(']').map_or(authority, |(host, _)| &host[1..]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The conditions of a rule; all that are set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    /// The path starts with it (by segment).
    pub path_prefix: Option<String>,
    /// The path is exactly it.
    pub path: Option<String>,
    /// Uppercase; matched without case, as the most lenient upstream reads a method
    /// (`post` must not escape a rule for POST).
    pub methods: Option<Vec<String>>,
    /// `:authority`.
    pub host: Option<HostPattern>,
    /// The name of the Envoy route that matched (`xds.route_name`).
    pub route: Option<String>,
}

impl RouteMatch {
    /// Whether every request `other` matches, this matches too (configured values:
    /// paths normalized, methods uppercase).
    pub fn covers(&self, other: &RouteMatch) -> bool {
        let under = |prefix: &str| {
            [&other.path_prefix, &other.path].into_iter().flatten().any(|p| has_segment_prefix(p, prefix))
        };
        self.path_prefix.as_deref().is_none_or(under)
            && self.path.as_deref().is_none_or(|exact| other.path.as_deref() == Some(exact))
            && self
                .methods
                .as_ref()
                .is_none_or(|mine| other.methods.as_ref().is_some_and(|theirs| theirs.iter().all(|m| mine.contains(m))))
            && self.host.as_ref().is_none_or(|mine| other.host.as_ref().is_some_and(|theirs| mine.covers(theirs)))
            && self.route.as_ref().is_none_or(|mine| other.route.as_ref() == Some(mine))
    }

    fn matches(&self, request: &RequestFacts, path: &MatchPath) -> bool {
        self.path_prefix.as_deref().is_none_or(|prefix| has_segment_prefix(&path.path, prefix))
            && self.path.as_deref().is_none_or(|exact| path.path == exact)
            && self
                .methods
                .as_ref()
                .is_none_or(|methods| methods.iter().any(|m| m.eq_ignore_ascii_case(request.method)))
            && self.host.as_ref().is_none_or(|host| host.matches(request.authority))
            && self.route.as_deref().is_none_or(|name| request.route_name == Some(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A rule: what it matches, and what it requires.
pub struct Rule {
    /// What it matches.
    pub matcher: RouteMatch,
    /// What it requires.
    pub require: Require,
    /// Every one must be held.
    pub scopes: Vec<String>,
    /// When set, only these principals, by qualified name (`basic:alice`, `jwt:corp:alice`).
    pub principals: Option<Vec<String>>,
    /// When set, only token principals whose `iss/sub` one of these matches (Istio's `requestPrincipals`).
    pub request_principals: Option<Vec<RequestPrincipal>>,
    /// `enforce` (None: the configuration's): false decides, reports, and lets the request through without a principal.
    pub enforce: Option<bool>,
    /// Conditions on the token's claims, all to be met (`rules[].claims`).
    pub claims: Vec<ClaimCondition>,
}

/// The rule of a request no rule matches: today's behaviour.
pub static DEFAULT_RULE: Rule = Rule::only(ROUTE_MATCH_ANY, Require::Any);

/// A CORS preflight where `bypass_cors_preflight` is set.
static PREFLIGHT_RULE: Rule = Rule::only(ROUTE_MATCH_ANY, Require::None);

impl Rule {
    /// A rule that says who may pass and nothing more (no scopes, principals or claims).
    pub(crate) const fn only(matcher: RouteMatch, require: Require) -> Rule {
        Rule {
            matcher,
            require,
            scopes: Vec::new(),
            principals: None,
            request_principals: None,
            enforce: None,
            claims: Vec::new(),
        }
    }
}

const ROUTE_MATCH_ANY: RouteMatch =
    RouteMatch { path_prefix: None, path: None, methods: None, host: None, route: None };

#[derive(Debug, Clone, Default, PartialEq, Eq)]
/// The rules, in order, and the CORS preflight bypass.
pub struct Routes {
    /// `bypass` rules first (as `require: "none"`), then `rules`.
    pub rules: Vec<Rule>,
    /// Let CORS preflights through unauthenticated.
    pub bypass_cors_preflight: bool,
    /// `rules` by the path segments they require: what a request's path could match.
    index: SegmentTrie,
}

/// Rules by the whole path segments every path they match starts with: node 0 is the
/// root, and a node's rules require exactly the segments on the way to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SegmentTrie {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    /// Positions in `Routes::rules`, ascending.
    rules: Vec<usize>,
    /// The node under each next segment, by its position in `nodes`.
    children: HashMap<String, usize>,
}

impl Default for SegmentTrie {
    fn default() -> Self {
        SegmentTrie { nodes: vec![Node::default()] }
    }
}

impl SegmentTrie {
    fn insert<'s>(&mut self, segments: impl Iterator<Item = &'s str>, rule: usize) {
        let mut at = 0;
        for segment in segments {
            let next = self.nodes.len();
            let Some(node) = self.nodes.get_mut(at) else { return };
            at = *node.children.entry(segment.to_string()).or_insert(next);
            if at == next {
                self.nodes.push(Node::default());
            }
        }
        if let Some(node) = self.nodes.get_mut(at) {
            node.rules.push(rule);
        }
    }

    /// The nodes on a path's branch, from the root.
    fn branch<'t>(&'t self, segments: &'t str) -> impl Iterator<Item = &'t Node> + 't {
        let mut segments = segments.split('/');
        let mut at = Some(0);
        std::iter::from_fn(move || {
            let node = self.nodes.get(at?)?;
            at = segments.next().and_then(|segment| node.children.get(segment).copied());
            Some(node)
        })
    }
}

impl Routes {
    /// The rules, indexed for lookup.
    pub fn new(rules: Vec<Rule>, bypass_cors_preflight: bool) -> Routes {
        let mut index = SegmentTrie::default();
        for (position, rule) in rules.iter().enumerate() {
            index.insert(required_segments(&rule.matcher), position);
        }
        Routes { rules, bypass_cors_preflight, index }
    }

    /// Whether any rule reads the Envoy route name (read from the host only then).
    pub fn needs_route_name(&self) -> bool {
        self.rules.iter().any(|rule| rule.matcher.route.is_some())
    }

    /// The first rule that matches. An ambiguous path (an encoded slash or a backslash)
    /// never matches a rule that relaxes authentication: upstreams disagree on what it names.
    ///
    /// Only the rules on the path's branch of the index are tried (those whose required
    /// segments the path starts with, and those requiring none): no other rule can match,
    /// so the first of them that matches is the first of all, whatever the number of rules.
    pub fn select(&self, request: &RequestFacts, path: &MatchPath) -> &Rule {
        if self.bypass_cors_preflight && is_cors_preflight(request) {
            return &PREFLIGHT_RULE;
        }
        let applies = |rule: &Rule| !(path.ambiguous && rule.require.relaxed()) && rule.matcher.matches(request, path);
        // A path without its leading '/' (never, normalized) matches only rules on any path: the root's.
        let segments = path.path.strip_prefix('/').unwrap_or_default();
        // The first rule that applies, in configuration order, among the rules of each node
        // on the branch (each list is in configuration order: stop at the best so far).
        let mut first: Option<usize> = None;
        for node in self.index.branch(segments) {
            for &position in &node.rules {
                if first.is_some_and(|best| position >= best) {
                    break;
                }
                if self.rules.get(position).is_some_and(applies) {
                    first = Some(position);
                    break;
                }
            }
        }
        first.and_then(|position| self.rules.get(position)).unwrap_or(&DEFAULT_RULE)
    }
}

/// The segments every path a rule matches starts with: those of its exact path, else of
/// its prefix (a prefix matches at segment boundaries, `has_segment_prefix`, so `/a/b`
/// and `/a/b/` both require `a` then `b`); none for a rule on any path.
fn required_segments(matcher: &RouteMatch) -> impl Iterator<Item = &str> {
    let path = matcher.path.as_deref().or(matcher.path_prefix.as_deref()).and_then(|path| path.strip_prefix('/'));
    let body = path.map(|body| body.strip_suffix('/').unwrap_or(body)).unwrap_or_default();
    body.split('/').filter(move |_| !body.is_empty())
}

/// A CORS preflight (Fetch standard): OPTIONS with `Origin` and `Access-Control-Request-Method`.
fn is_cors_preflight(request: &RequestFacts) -> bool {
    request.method.eq_ignore_ascii_case("OPTIONS")
        && request.header_values("origin").next().is_some()
        && request.header_values("access-control-request-method").next().is_some()
}

#[cfg(test)]
mod tests;
