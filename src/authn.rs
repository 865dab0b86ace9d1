//! The decision for one request: who the caller is, and whether it passes.
//! A pure function of (configuration, keys, request facts, now), plus the
//! VM's verified-credential cache.

use crate::cache::{cache_key, VerifiedCache};
use crate::config::Config;
use crate::credential::{self, Credential, RequestFacts};
use crate::jwt::{self, JwtError, KeySet, SignatureBackend};
use crate::password::sha256;
use crate::reject::{Rejection, Schemes};
use subtle::ConstantTimeEq;

/// How a principal proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    ApiKey,
    Jwt,
}

impl AuthMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMethod::Basic => "basic",
            AuthMethod::ApiKey => "api-key",
            AuthMethod::Jwt => "jwt",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub method: AuthMethod,
    /// The JWT provider that vouched for it.
    pub provider: Option<String>,
    /// Configured claim -> header mappings.
    pub claim_headers: Vec<(String, String)>,
}

/// What the host does with the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// A bypass rule matched: pass without authentication, less any forged principal
    /// headers and any credential (nothing was verified).
    Bypass {
        remove_headers: Vec<String>,
        new_path: Option<String>,
    },
    Allow(Allowed),
    Deny(Rejection),
    /// The token's provider needs its remote keys (first fetch, or a refetch for an
    /// unknown `kid`): hold the request and decide again when they arrive.
    WaitForKeys {
        provider: usize,
        refetch: bool,
    },
}

/// Why a credential did not verify.
enum NotVerified {
    Deny(Rejection),
    WaitForKeys {
        provider: usize,
        refetch: bool,
    },
    /// The keys that could verify it cannot be fetched now.
    KeysUnavailable,
}

impl From<NotVerified> for Decision {
    fn from(not_verified: NotVerified) -> Decision {
        match not_verified {
            NotVerified::Deny(rejection) => Decision::Deny(rejection),
            NotVerified::WaitForKeys { provider, refetch } => Decision::WaitForKeys { provider, refetch },
            NotVerified::KeysUnavailable => Decision::Deny(Rejection::keys_unavailable(1)),
        }
    }
}

/// A request that passes, with the changes to make before it goes upstream.
#[derive(Debug, PartialEq, Eq)]
pub struct Allowed {
    pub principal: Principal,
    pub set_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    /// The new `:path` when an API key is removed from the query string.
    pub new_path: Option<String>,
}

/// The host's view of one provider's remote keys.
#[derive(Clone, Copy, Default)]
pub struct RemoteKeyState<'a> {
    pub keys: Option<&'a KeySet>,
    /// Whether an unknown `kid` may trigger a refetch now (rate-limited by the host).
    pub refetch_allowed: bool,
    /// The last fetch failed: an unknown `kid` may be a key the filter could not fetch.
    pub fetch_failing: bool,
}

pub struct Authenticator {
    pub config: Config,
    cache: VerifiedCache<Principal>,
}

impl Authenticator {
    pub fn new(config: Config) -> Self {
        let cache = VerifiedCache::new(config.cache);
        Authenticator { config, cache }
    }

    /// Keys changed: forget every cached verification.
    pub fn keys_changed(&mut self) {
        self.cache.clear();
    }

    fn schemes(&self) -> Schemes<'_> {
        Schemes {
            realm: &self.config.realm,
            basic: self.config.basic_enabled(),
            bearer: self.config.bearer_enabled(),
            api_key_header: self.config.api_key_header_enabled(),
        }
    }

    /// `remote[i]` is provider i's remote key state (length = number of providers).
    pub fn decide(
        &mut self,
        request: &RequestFacts,
        remote: &[RemoteKeyState],
        backend: &dyn SignatureBackend,
        now: u64,
    ) -> Decision {
        if self.is_bypassed(request) {
            let mut remove_headers = self.forged_headers(request);
            let removal = credential::credential_removal(request, &self.config.api_keys, None, false);
            remove_headers.extend(removal.headers);
            return Decision::Bypass { remove_headers, new_path: removal.path };
        }
        let credential = match credential::extract(request, &self.config.api_keys) {
            Ok(Some(credential)) => credential,
            Ok(None) => return Decision::Deny(Rejection::missing_credential(self.schemes())),
            Err(e) if e.is_bearer() => {
                return Decision::Deny(Rejection::invalid_token(self.schemes(), e.description(), e.reason()))
            }
            Err(e) => {
                return Decision::Deny(Rejection::invalid_credentials(self.schemes(), e.description(), e.reason()))
            }
        };
        let key = match &credential {
            Credential::Basic { user, password } => cache_key("basic", &[user.as_bytes(), password.as_bytes()]),
            Credential::Bearer(token) => cache_key("bearer", &[token.as_bytes()]),
            Credential::ApiKey { key, .. } => cache_key("api-key", &[key.as_bytes()]),
        };
        let principal = match self.cache.get(&key, now) {
            Some(principal) => principal,
            None => match self.verify(&credential, remote, backend, now) {
                Ok((principal, not_after)) => {
                    self.cache.insert(key, principal.clone(), now, not_after);
                    principal
                }
                Err(not_verified) => return not_verified.into(),
            },
        };
        Decision::Allow(self.allowed(principal, &credential, request))
    }

    /// The headers the filter owns that the request carries, under their own name or
    /// with underscores for dashes (CGI, WSGI and PHP read `X_Auth_Principal` as
    /// `x-auth-principal`): a client may not set them.
    fn forged_headers(&self, request: &RequestFacts) -> Vec<String> {
        let mut forged: Vec<String> = Vec::new();
        for (name, _) in request.headers {
            let owned = if name.contains('_') {
                self.config.owned_headers.iter().any(|owned| is_spelling_of(name, owned))
            } else {
                self.config.owned_headers.iter().any(|owned| owned == name)
            };
            if owned && !forged.contains(name) {
                forged.push(name.clone());
            }
        }
        forged
    }

    /// Bypass rules match the normalized path, at segment boundaries; an ambiguous
    /// path (encoded slash, backslash) never skips authentication.
    fn is_bypassed(&self, request: &RequestFacts) -> bool {
        if self.config.bypass_cors_preflight && is_cors_preflight(request) {
            return true;
        }
        let path = crate::path::normalize(request.path);
        if path.ambiguous {
            return false;
        }
        self.config.bypass.iter().any(|rule| {
            rule.path_prefix.as_deref().is_none_or(|prefix| crate::path::has_segment_prefix(&path.path, prefix))
                && rule.method.as_deref().is_none_or(|method| request.method.eq_ignore_ascii_case(method))
        })
    }

    fn verify(
        &self,
        credential: &Credential,
        remote: &[RemoteKeyState],
        backend: &dyn SignatureBackend,
        now: u64,
    ) -> Result<(Principal, Option<u64>), NotVerified> {
        match credential {
            Credential::Basic { user, password } => self.verify_basic(user, password).map(|p| (p, None)),
            Credential::ApiKey { key, .. } => self.verify_api_key(key).map(|p| (p, None)),
            Credential::Bearer(token) => self.verify_bearer(token, remote, backend, now),
        }
    }

    fn verify_basic(&self, user: &str, password: &str) -> Result<Principal, NotVerified> {
        let basic = |id: &str| Principal {
            id: id.to_string(),
            method: AuthMethod::Basic,
            provider: None,
            claim_headers: vec![],
        };
        if let Some(hash) = self.config.basic_users.get(user) {
            return if hash.verify(password.as_bytes()) {
                Ok(basic(user))
            } else {
                Err(self.deny_credentials("invalid user name or password", "basic_invalid"))
            };
        }
        // `client-id:api-key` as Basic credentials.
        if self.config.api_keys.allow_basic {
            if let Some(client) = self.config.api_keys.clients.iter().find(|c| c.id == user) {
                let matches: bool = sha256(password.as_bytes()).ct_eq(&client.key_digest).into();
                return match (matches, client.disabled) {
                    (true, false) => Ok(Principal { method: AuthMethod::ApiKey, ..basic(user) }),
                    (true, true) => Err(self.deny_credentials("invalid API key", "api_key_disabled")),
                    (false, _) => Err(self.deny_credentials("invalid user name or password", "api_key_invalid")),
                };
            }
        }
        Err(self.deny_credentials("invalid user name or password", "basic_invalid"))
    }

    fn verify_api_key(&self, key: &str) -> Result<Principal, NotVerified> {
        let digest = sha256(key.as_bytes());
        // Compare against every client, in constant time, without stopping early.
        let mut found = None;
        for client in &self.config.api_keys.clients {
            if bool::from(digest.ct_eq(&client.key_digest)) {
                found = Some(client);
            }
        }
        match found {
            Some(client) if !client.disabled => Ok(Principal {
                id: client.id.clone(),
                method: AuthMethod::ApiKey,
                provider: None,
                claim_headers: vec![],
            }),
            Some(_) => Err(self.deny_credentials("invalid API key", "api_key_disabled")),
            None => Err(self.deny_credentials("invalid API key", "api_key_invalid")),
        }
    }

    fn verify_bearer(
        &self,
        token: &str,
        remote: &[RemoteKeyState],
        backend: &dyn SignatureBackend,
        now: u64,
    ) -> Result<(Principal, Option<u64>), NotVerified> {
        if self.config.jwt_providers.is_empty() {
            return Err(NotVerified::Deny(Rejection::invalid_token(
                self.schemes(),
                "bearer tokens are not accepted",
                "jwt_not_configured",
            )));
        }
        let keys: Vec<Option<&KeySet>> =
            (0..self.config.jwt_providers.len()).map(|i| remote.get(i).and_then(|state| state.keys)).collect();
        match jwt::verify(token, &self.config.jwt_providers, &keys, backend, now, self.config.clock_skew_seconds) {
            Ok(verified) => {
                let provider = self.config.jwt_providers.get(verified.provider).map(|p| p.name.clone());
                let principal = Principal {
                    id: verified.principal,
                    method: AuthMethod::Jwt,
                    provider,
                    claim_headers: verified.headers,
                };
                Ok((principal, verified.expires_at))
            }
            Err(JwtError::KeysNotLoaded { provider }) => Err(NotVerified::WaitForKeys { provider, refetch: false }),
            Err(JwtError::UnknownKey { provider })
                if remote.get(provider).is_some_and(|state| state.refetch_allowed) =>
            {
                Err(NotVerified::WaitForKeys { provider, refetch: true })
            }
            // The token may be fine: its key could not be fetched. 503, not 401.
            Err(JwtError::UnknownKey { provider }) if remote.get(provider).is_some_and(|state| state.fetch_failing) => {
                Err(NotVerified::KeysUnavailable)
            }
            Err(e) => Err(NotVerified::Deny(Rejection::invalid_token(self.schemes(), e.description(), e.reason()))),
        }
    }

    fn deny_credentials(&self, message: &str, reason: &'static str) -> NotVerified {
        NotVerified::Deny(Rejection::invalid_credentials(self.schemes(), message, reason))
    }

    fn allowed(&self, principal: Principal, credential: &Credential, request: &RequestFacts) -> Allowed {
        let names = &self.config.principal_headers;
        let mut set_headers = vec![
            (names.principal.clone(), principal.id.clone()),
            (names.method.clone(), principal.method.as_str().to_string()),
        ];
        if let Some(provider) = &principal.provider {
            set_headers.push((names.provider.clone(), provider.clone()));
        }
        set_headers.extend(principal.claim_headers.iter().cloned());

        let mut remove_headers = self.forged_headers(request);
        let removal = credential::credential_removal(
            request,
            &self.config.api_keys,
            Some(credential),
            self.config.forward_credentials,
        );
        remove_headers.extend(removal.headers);
        let new_path = removal.path;
        Allowed { principal, set_headers, remove_headers, new_path }
    }
}

/// A CORS preflight (Fetch standard): OPTIONS with `Origin` and `Access-Control-Request-Method`.
fn is_cors_preflight(request: &RequestFacts) -> bool {
    request.method == "OPTIONS"
        && request.header_values("origin").next().is_some()
        && request.header_values("access-control-request-method").next().is_some()
}

/// Whether header `name` (lowercase) reads as `owned` once underscores are dashes.
fn is_spelling_of(name: &str, owned: &str) -> bool {
    name.len() == owned.len() && name.bytes().zip(owned.bytes()).all(|(n, o)| n == o || (n == b'_' && o == b'-'))
}

#[cfg(test)]
mod tests;
