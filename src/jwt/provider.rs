//! A JWT provider (issuer), compiled: what its tokens must say, its own keys,
//! and the key set it fetches (live: changed by the fetch protocol).

use std::fmt;
use std::rc::Rc;

use super::keys::KeySet;
use crate::introspection::endpoint::Introspection;
use crate::privileges::Privileges;
use crate::remote::RemoteDocument;

/// A provider's place in the configuration (`jwt.providers[i]`), stable for the VM's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderId(pub usize);

/// `{"claim": "realm.roles", "header": "x-roles"}`: forward a claim upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    pub claim: String,
    pub header: String,
}

/// Who issues a provider's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    /// An identity provider (`jwt.providers[]`): the principal is a claim.
    Provider,
    /// A client keypair (`keypairs[]`): the client signs its own short-lived tokens;
    /// the principal is the keypair's id. `one_time`: each `jti` is accepted once.
    Keypair { one_time: bool },
    /// This filter's token endpoint: the principal is an API client (`sub`).
    TokenEndpoint,
}

pub struct Provider {
    pub name: String,
    pub issuer: String,
    /// Other `iss` values that name it (a keypair's PEM text, normalized).
    pub issuer_aliases: Vec<String>,
    pub kind: Issuer,
    /// Empty: any audience.
    pub audiences: Vec<String>,
    pub local_keys: KeySet,
    /// Keys fetched from `remote_jwks` or through `discovery`.
    pub remote: Option<RemoteDocument<KeySet>>,
    pub require_expiration: bool,
    pub max_lifetime_seconds: Option<u64>,
    pub principal_claim: String,
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// What every principal of this provider may do (no scopes: a token's come from its claims).
    pub privileges: Rc<Privileges>,
    /// Set for a provider whose tokens its introspection endpoint vouches for (it has no keys).
    pub introspection: Option<Introspection>,
    /// Refuse tokens not bound to a client certificate (RFC 8705 3); a bound token is checked either way.
    pub require_certificate_binding: bool,
    /// The claims `rules[].claims` test: the configuration's claim table, in its order
    /// (read from an identity provider's tokens only).
    pub condition_claims: Rc<Vec<String>>,
    /// What else goes upstream of its verified tokens.
    pub output: TokenOutput,
}

/// A provider's `forward`, `forward_payload_header` and `payload_in_filter_state`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenOutput {
    pub forward: Option<bool>,
    pub payload_header: Option<String>,
    pub payload_in_filter_state: bool,
}

impl Provider {
    /// Whether a token's `iss` names this provider: its issuer, or (a keypair) its PEM
    /// text, compared as `normalized_pem` gives it (`pem_iss`: the token's `iss` so
    /// normalized, when it is PEM text).
    pub fn matches_issuer(&self, iss: &str, pem_iss: Option<&str>) -> bool {
        // An introspection provider's issuer is checked in its answers; it verifies no JWS.
        self.introspection.is_none() && self.issuer == iss
            || pem_iss.is_some_and(|pem| self.issuer_aliases.iter().any(|alias| alias == pem))
    }

    /// The fetched key set: None when there is none yet (or none to fetch).
    pub fn remote_keys(&self) -> Option<&KeySet> {
        self.remote.as_ref().and_then(RemoteDocument::value)
    }

    /// Whether keys are still to come: the provider fetches keys and has none yet.
    pub fn awaits_remote_keys(&self) -> bool {
        self.remote.as_ref().is_some_and(|remote| remote.value().is_none())
    }
}

/// Inline keys may be HMAC secrets: never print them.
impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider").field("name", &self.name).field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// PEM text as keypair issuers compare it: CRLF as LF, each line and the whole trimmed.
pub fn normalized_pem(text: &str) -> String {
    text.trim().lines().map(str::trim).collect::<Vec<_>>().join("\n")
}
