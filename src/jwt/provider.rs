//! A JWT provider (issuer), compiled: what its tokens must say, its own keys,
//! and the key set it fetches (live: changed by the fetch protocol).

use std::fmt;
use std::rc::Rc;

use super::keys::KeySet;
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

pub struct Provider {
    pub name: String,
    pub issuer: String,
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
}

impl Provider {
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
