//! A JWT provider (issuer), compiled: what its tokens must say, its own keys,
//! and where it fetches more; the key sets fetched are a VM's state (`FetchedKeys`),
//! apart from the configuration.

use std::fmt;
use std::rc::Rc;

use super::keys::KeySet;
use crate::jwt::introspection::endpoint::Introspection;
use crate::privileges::Privileges;
use crate::remote::{FetchConfig, RemoteDocument};

/// A provider's place in the configuration (`jwt.providers[i]`), stable for the VM's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderId(pub usize);

/// `{"claim": "realm.roles", "header": "x-roles"}`: forward a claim upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    /// The claim's name (a dotted path into nested objects).
    pub claim: String,
    /// The request header it is forwarded in.
    pub header: String,
}

/// What kind of issuer a provider is: who signs its tokens, and who their principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// An identity provider (`jwt.providers[]`): the principal is a claim.
    IdentityProvider,
    /// A client keypair (`keypairs[]`): the client signs its own short-lived tokens;
    /// the principal is the keypair's id.
    Keypair {
        /// Each `jti` is accepted once.
        one_time: bool,
    },
    /// This filter's token endpoint: the principal is an API client (`sub`).
    TokenEndpoint,
}

/// A JWT provider as configured: an identity provider, a client keypair, or the token endpoint.
pub struct Provider {
    /// Its `name`: metrics, `x-auth-provider`, qualified principals.
    pub name: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Other `iss` values that name it (a keypair's PEM text, normalized).
    pub issuer_aliases: Vec<String>,
    /// Who signs its tokens.
    pub kind: ProviderKind,
    /// Empty: any audience.
    pub audiences: Vec<String>,
    /// Its keys from the configuration (`local_jwks`, `local_pem`).
    pub local_keys: KeySet,
    /// Where its keys are fetched from (`remote_jwks` or `discovery`), if anywhere.
    pub fetch: Option<FetchConfig>,
    /// Tokens without `exp` are refused.
    pub require_expiration: bool,
    /// The longest lifetime a token may claim.
    pub max_lifetime_seconds: Option<u64>,
    /// The claim that names the principal.
    pub principal_claim: String,
    /// Claims forwarded upstream as headers.
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// What every principal of this provider may do (no scopes: a token's come from its claims).
    pub privileges: Rc<Privileges>,
    /// Set for a provider whose tokens its introspection endpoint vouches for (it has no keys).
    pub introspection: Option<Introspection>,
    /// Refuse tokens not bound to a client certificate (RFC 8705 3); a bound token is checked either way.
    pub require_certificate_binding: bool,
    /// DPoP-bound tokens (RFC 9449): accepted with a proof, or required.
    pub dpop: Option<Box<Dpop>>,
    /// The claims `rules[].claims` test: the configuration's claim table, in its order
    /// (read from an identity provider's tokens only).
    pub condition_claims: Rc<Vec<String>>,
    /// What else goes upstream of its verified tokens.
    pub output: TokenOutput,
}

/// A provider's `forward`, `forward_payload_header` and `payload_in_filter_state`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenOutput {
    /// `forward`: the token goes upstream (None: `forward_credentials` decides).
    pub forward: Option<bool>,
    /// `forward_payload_header`: the header the payload goes upstream in.
    pub payload_header: Option<String>,
    /// `payload_in_filter_state`.
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
}

/// The key sets one VM fetched, by provider (`ProviderId`): state the fetch protocol
/// keeps current, apart from the immutable configuration.
#[derive(Debug, Default)]
pub struct FetchedKeys(Vec<Option<RemoteDocument<KeySet>>>);

impl FetchedKeys {
    /// Nothing fetched yet: one document for each provider that fetches keys.
    pub fn new(providers: &[Provider]) -> FetchedKeys {
        let document = |provider: &Provider| {
            // Keeps the shared-data keys of providers (and of two configurations in one VM id) apart.
            let identity = format!("jwks\0{}\0{}", provider.name, provider.issuer);
            let fetch = provider.fetch.clone()?;
            Some(RemoteDocument::new(fetch, &identity, std::rc::Rc::new(KeySet::from_remote_jwks)))
        };
        FetchedKeys(providers.iter().map(document).collect())
    }

    /// The document of `provider`'s keys: None when it fetches none.
    pub fn get(&self, provider: ProviderId) -> Option<&RemoteDocument<KeySet>> {
        self.0.get(provider.0).and_then(Option::as_ref)
    }

    /// The document of `provider`'s keys, to fetch into.
    pub fn get_mut(&mut self, provider: ProviderId) -> Option<&mut RemoteDocument<KeySet>> {
        self.0.get_mut(provider.0).and_then(Option::as_mut)
    }

    /// Every provider's document, for those that fetch keys.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut RemoteDocument<KeySet>> {
        self.0.iter_mut().flatten()
    }

    /// `provider`'s fetched key set: None when there is none yet (or none to fetch).
    pub fn keys(&self, provider: ProviderId) -> Option<&KeySet> {
        self.get(provider).and_then(RemoteDocument::value)
    }

    /// Whether `provider`'s keys are still to come: it fetches keys and has none yet.
    pub fn awaited(&self, provider: ProviderId) -> bool {
        self.get(provider).is_some_and(|remote| remote.value().is_none())
    }
}

/// A provider's `dpop` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dpop {
    /// Refuse its tokens unless they are DPoP-bound.
    pub required: bool,
    /// How old a proof may be (its `iat`), and how long its `jti` is remembered.
    pub max_age_seconds: u64,
    /// The asymmetric algorithms a proof may be signed with: their names, space-separated
    /// (the 401's `algs`).
    pub algorithms: String,
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
