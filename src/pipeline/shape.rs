//! What goes upstream: the headers the filter owns are removed from every
//! request (under any spelling a backend reads as theirs), so is every
//! credential that was not verified, and a verified principal is added.

use crate::api_key::ApiKeys;
use crate::method_override::{self, MethodOverrides};
use crate::pipeline::credential::{credential_removal, Credential, CredentialRemoval};
use crate::principal::Principal;
use crate::request::{is_underscore_spelling_of, RequestFacts};
use crate::token_location::TokenLocations;

/// The upstream header names of a principal (`principal_headers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalHeaders {
    /// The bare id (`alice`), what upstreams have always read.
    pub principal: String,
    /// The header of the way it proved itself (`x-auth-method`).
    pub method: String,
    /// The header of the provider that vouched (`x-auth-provider`).
    pub provider: String,
    /// The qualified name (`basic:alice`), when configured.
    pub qualified: Option<String>,
}

/// How requests are shaped for the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The principal headers' names.
    pub principal_headers: PrincipalHeaders,
    /// Every header name the filter sets: principal and claim headers.
    pub owned_headers: Vec<String>,
    /// Forward the verified credential (never another one).
    pub forward_credentials: bool,
    /// Also hand the principal to Envoy as filter state (`filter_state`).
    pub filter_state: bool,
    /// Remove method overrides, or forward them (the decision judged each method they name).
    pub method_overrides: MethodOverrides,
}

/// The filter state keys (properties; Envoy prefixes `wasm.`: RBAC and access logs
/// read `wasm.wasm_authn.principal`, the qualified name: another issuer's `sub` never matches).
pub const STATE_PRINCIPAL: &str = "wasm_authn.principal";
/// The filter state key of the method.
pub const STATE_METHOD: &str = "wasm_authn.method";
/// The filter state key of the provider.
pub const STATE_PROVIDER: &str = "wasm_authn.provider";
/// The verified token's payload as JSON (a provider's `payload_in_filter_state`).
pub const STATE_PAYLOAD: &str = "wasm_authn.payload";
/// Followed by a claim header's name: `wasm_authn.claim.x-roles`.
pub const STATE_CLAIM_PREFIX: &str = "wasm_authn.claim.";

/// The changes to make to the request headers before it continues: `remove` first,
/// then `set` (a header in both ends with its one new value: the `Cookie` header
/// without credential cookies, however many Cookie headers there were).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpstreamChanges {
    /// Headers to remove.
    pub remove: Vec<String>,
    /// Headers to set.
    pub set: Vec<(String, String)>,
    /// The new `:path` when a query parameter carried an API key.
    pub path: Option<String>,
    /// Filter state to set (`filter_state`): key, value.
    pub state: Vec<(String, String)>,
    /// The new body when a form field carried an API key.
    pub body: Option<NewBody>,
}

/// A request body in place of the first `replaces` bytes (all of it: the form that was read).
#[derive(Debug, PartialEq, Eq)]
pub struct NewBody {
    /// How many bytes of the body it replaces.
    pub replaces: usize,
    /// The new body.
    pub body: String,
}

/// A request that passes without authentication: it loses what the filter owns and every credential.
pub fn unauthenticated(
    upstream: &Upstream,
    api_keys: &ApiKeys,
    tokens: &TokenLocations,
    request: &RequestFacts,
) -> UpstreamChanges {
    let removal = credential_removal(request, api_keys, tokens, &[], false);
    changes(upstream, request, removal, Vec::new(), Vec::new())
}

/// A verified request: the principal's headers set, forged ones and unverified credentials removed
/// (`credentials`: the verified ones, forwarded with `forward_credentials`).
pub fn authenticated(
    upstream: &Upstream,
    api_keys: &ApiKeys,
    tokens: &TokenLocations,
    request: &RequestFacts,
    credentials: &[&Credential],
    principal: &Principal,
) -> UpstreamChanges {
    let names = &upstream.principal_headers;
    let mut set = vec![
        (names.principal.clone(), principal.id.clone()),
        (names.method.clone(), principal.method.as_str().to_string()),
    ];
    if let Some(provider) = &principal.provider {
        set.push((names.provider.clone(), provider.clone()));
    }
    if let Some(qualified) = &names.qualified {
        set.push((qualified.clone(), principal.qualified.as_str().to_string()));
    }
    set.extend(principal.claim_headers.iter().cloned());
    let extras = &principal.extras;
    set.extend(extras.payload_header.iter().cloned());

    let mut state = if upstream.filter_state { filter_state(principal) } else { Vec::new() };
    if let Some(payload) = &extras.payload_json {
        state.push((STATE_PAYLOAD.to_string(), payload.clone()));
    }
    let forward = extras.forward.unwrap_or(upstream.forward_credentials);
    let removal = credential_removal(request, api_keys, tokens, credentials, forward);
    changes(upstream, request, removal, set, state)
}

/// Forged headers and the credentials to remove, the headers and filter state to set.
fn changes(
    upstream: &Upstream,
    request: &RequestFacts,
    removal: CredentialRemoval,
    mut set: Vec<(String, String)>,
    state: Vec<(String, String)>,
) -> UpstreamChanges {
    let mut remove = forged_headers(upstream, request);
    remove.extend(removal.headers);
    if let Some(cookie) = removal.cookie {
        remove.push("cookie".to_string());
        if !cookie.is_empty() {
            set.push(("cookie".to_string(), cookie));
        }
    }
    let mut path = removal.path;
    if let Some(without) =
        method_override::upstream_path(path.as_deref().unwrap_or(request.path), upstream.method_overrides)
    {
        path = Some(without);
    }
    let body = removal.form.map(|body| {
        if request.header_values("content-length").next().is_some() {
            set.push(("content-length".to_string(), body.len().to_string()));
        }
        NewBody { replaces: request.body.map_or(0, str::len), body }
    });
    UpstreamChanges { remove, set, path, state, body }
}

/// The principal as Envoy filter state: what RBAC and access logs can trust, whatever the headers say.
pub fn filter_state(principal: &Principal) -> Vec<(String, String)> {
    let mut state = vec![
        (STATE_PRINCIPAL.to_string(), principal.qualified.as_str().to_string()),
        (STATE_METHOD.to_string(), principal.method.as_str().to_string()),
    ];
    if let Some(provider) = &principal.provider {
        state.push((STATE_PROVIDER.to_string(), provider.clone()));
    }
    for (header, value) in &principal.claim_headers {
        state.push((format!("{STATE_CLAIM_PREFIX}{header}"), value.clone()));
    }
    state
}

/// The headers the filter owns that the request carries, under their own name or
/// with underscores for dashes (CGI, WSGI and PHP read `X_Auth_Principal` as
/// `x-auth-principal`): a client may not set them. Method override headers too, when removed.
fn forged_headers(upstream: &Upstream, request: &RequestFacts) -> Vec<String> {
    let mut forged: Vec<String> = Vec::new();
    let remove_overrides = upstream.method_overrides == MethodOverrides::Remove;
    for (name, _) in request.headers {
        let name = name.as_ref();
        let owned = if name.contains('_') {
            upstream.owned_headers.iter().any(|owned| is_underscore_spelling_of(name, owned))
        } else {
            upstream.owned_headers.iter().any(|owned| owned == name)
        } || (remove_overrides && method_override::is_override_header(name))
            || crate::requirement::is_also_header(name);
        if owned && !forged.iter().any(|f| f == name) {
            forged.push(name.to_string());
        }
    }
    forged
}
