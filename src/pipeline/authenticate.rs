//! Who the caller is: a verification this VM remembers, else the credential's
//! own check (a Basic user or API client, an API key, a Bearer JWT).

use crate::request::Source;
use std::rc::Rc;

use crate::api_key::Directory;
use crate::basic::{self, PasswordGuard, PasswordHost, Refusal};
use crate::binding::Confirmation;
use crate::cache::{CacheKey, CacheKeys, VerifiedCache};
use crate::config::Config;
use crate::fetched::Fetched;
use crate::jwt::introspection::{refusal_message, Claim, Verdict};
use crate::jwt::{self, FetchedKeys, JwtError, ProviderId, ProviderKind, SignatureBackend};
use crate::pipeline::credential::Credential;
use crate::principal::{AuthMethod, Principal, TokenFacts};
use crate::reason::Reason;
use crate::remote::StoreId;
use crate::shared_table::{Once, SharedTable};
use crate::token_claims::TokenExtras;

/// One VM's memory of verifications, and its guards on password checks.
pub struct Verifier {
    keys: CacheKeys,
    successes: VerifiedCache<Rc<Principal>>,
    /// Basic credentials that failed: a repeated wrong password costs a lookup, not a hash.
    failures: VerifiedCache<()>,
    guard: PasswordGuard,
    /// Introspection answers found stored (another worker's call, or an earlier one), by
    /// provider, since the plugin last counted them.
    pub introspection_hits: Vec<ProviderId>,
}

/// Why the credential did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotVerified {
    /// 401.
    Invalid {
        /// Counted under.
        reason: Reason,
        /// The `error_description`.
        message: &'static str,
        /// RFC 6750's `invalid_token` answer (a token), not Basic's.
        bearer: bool,
    },
    /// 429 or 503 with `Retry-After`: nothing was checked.
    TryLater {
        /// Counted under.
        reason: Reason,
        /// The `Retry-After`.
        retry_after_seconds: u64,
    },
    /// The token's provider needs its remote keys (first fetch, or a refetch for an
    /// unknown `kid`): hold the request and decide again when they arrive.
    WaitForKeys {
        /// Whose keys.
        provider: ProviderId,
        /// A refetch for an unknown `kid` (not the first fetch).
        refetch: bool,
    },
    /// The keys that could verify it cannot be fetched now: the token may be fine.
    KeysUnavailable,
    /// A credential store (`api_keys.remote`, `basic.remote`) was not fetched yet and may
    /// hold the credential: hold the request and decide again when it arrives.
    WaitForStore(StoreId),
    /// The provider's introspection endpoint has not answered about this token yet (its
    /// answers are stored under `key`): hold the request.
    Introspect {
        /// Whose endpoint.
        provider: ProviderId,
        /// The token's key in the stored answers.
        key: u128,
        /// The token, when this worker is the one to ask.
        call: Option<String>,
    },
}

/// What verification needs of the host: shared data and a clock (password
/// guards), signature checks (JWT).
pub trait VerifyHost: PasswordHost + SignatureBackend {}
impl<T: PasswordHost + SignatureBackend + ?Sized> VerifyHost for T {}

const INVALID_PASSWORD: &str = "invalid user name or password";
const INVALID_API_KEY: &str = "invalid API key";

impl Verifier {
    /// A verifier with empty caches, bounded as `config` says.
    pub fn new(config: &Config) -> Verifier {
        Verifier {
            keys: CacheKeys::new(),
            successes: VerifiedCache::new(config.cache),
            failures: VerifiedCache::new(config.cache),
            guard: PasswordGuard::new(config.failure_limit, config.slow_hash_budget_ms_per_second),
            introspection_hits: Vec::new(),
        }
    }

    /// Keys or a credential store changed: forget every remembered verification (a
    /// password that failed may be a user's now).
    pub fn keys_changed(&mut self) {
        self.successes.clear();
        self.failures.clear();
    }

    /// Who presents `credential`, from `source` (Envoy's client address; None: unknown);
    /// tokens are checked with the keys `fetched` too.
    pub fn authenticate(
        &mut self,
        config: &Config,
        fetched: &Fetched,
        credential: &Credential,
        source: Source,
        host: &dyn VerifyHost,
        now_ms: u64,
    ) -> Result<Rc<Principal>, NotVerified> {
        let now_s = now_ms / 1000;
        let clients = config.api_keys.directory(fetched.api_clients());
        // A throttled guesser gets 429 whatever it guessed: remembered verifications
        // (its name's owner's, from elsewhere) never tell it which guess was right.
        if let Credential::Basic { user, .. } = credential {
            let attempt = basic::Attempt { user, source };
            if let Some(Refusal::TryLater { reason, retry_after_seconds }) =
                attempt.throttled(config.users(fetched.basic_users()), &self.guard, host, now_s)
            {
                return Err(NotVerified::TryLater { reason, retry_after_seconds });
            }
        }
        // An API key is verified each time: one SHA-256 and one lookup cost less than a
        // cache miss does (bench/stages), and a population cycling through more keys than
        // the cache holds then churns nothing.
        if let Credential::ApiKey { key, .. } = credential {
            return match clients.verify(key) {
                Ok(principal) => Ok(Rc::new(principal)),
                Err(Reason::ApiClientsUnavailable) => Err(NotVerified::WaitForStore(StoreId::ApiClients)),
                Err(reason) => Err(invalid(reason, INVALID_API_KEY)),
            };
        }
        // A certificate's name is looked up, never remembered.
        if let Credential::Mtls { name } = credential {
            return match config.mtls.as_ref().map(|mtls| mtls.verify(name)) {
                Some(Ok(principal)) => Ok(Rc::new(principal)),
                _ => Err(invalid(Reason::MtlsNotAllowed, "client certificate not allowed")),
            };
        }
        let key = key_of(&self.keys, credential);
        if let Some(principal) = self.successes.get(&key, now_s) {
            return Ok(principal);
        }
        if self.failures.get(&key, now_s).is_some() {
            return Err(invalid(Reason::BasicInvalid, INVALID_PASSWORD));
        }
        let verified = match credential {
            Credential::Bearer { token, found } => {
                let verified =
                    verify_bearer(config, fetched, clients, token, found, host, now_ms, &mut self.introspection_hits)?;
                let principal = Rc::new(verified.principal);
                // A one-time token is never remembered: every use meets the replay check.
                if verified.cacheable {
                    self.successes.insert(key, Rc::clone(&principal), now_s, verified.expires_at);
                }
                return Ok(principal);
            }
            Credential::Basic { user, password } => {
                let attempt = basic::Attempt { user, source };
                let users = config.users(fetched.basic_users());
                match basic::verify(users, clients, &mut self.guard, host, &attempt, password, now_s) {
                    // Remembered while there is room only, when a check is cheap (not bcrypt):
                    // evicting for it would cost more than checking it again.
                    Ok(principal) if !users.slow_hash(user) => {
                        let principal = Rc::new(principal);
                        self.successes.insert_if_room(key, Rc::clone(&principal), now_s);
                        return Ok(principal);
                    }
                    Ok(principal) => Ok(principal),
                    Err(Refusal::Invalid(reason)) => {
                        if reason == Reason::BasicInvalid {
                            self.failures.insert(key, (), now_s, None);
                        }
                        Err(invalid(reason, message_of(reason)))
                    }
                    Err(Refusal::TryLater { reason, retry_after_seconds }) => {
                        Err(NotVerified::TryLater { reason, retry_after_seconds })
                    }
                    Err(Refusal::NotFetched(store)) => Err(NotVerified::WaitForStore(store)),
                }
            }
            Credential::ApiKey { .. } | Credential::Mtls { .. } => {
                return Err(invalid(Reason::ApiKeyInvalid, INVALID_API_KEY))
            }
        };
        let principal = Rc::new(verified?);
        self.successes.insert(key, Rc::clone(&principal), now_s, None);
        Ok(principal)
    }
}

/// The key a credential is remembered under; the scheme tag keeps schemes apart.
fn key_of(keys: &CacheKeys, credential: &Credential) -> CacheKey {
    match credential {
        Credential::Basic { user, password } => keys.of("basic", &[user.as_bytes(), password.as_bytes()]),
        // Where it was found is part of it: a token is remembered for the providers bound there only.
        Credential::Bearer { token, found } => {
            let places: Vec<u8> = found.iter().flat_map(|place| (*place as u64).to_be_bytes()).collect();
            keys.of("bearer", &[token.as_bytes(), &places])
        }
        // Not remembered (`authenticate`); a tag of its own all the same.
        Credential::ApiKey { key, .. } => keys.of("api-key", &[key.as_bytes()]),
        Credential::Mtls { name } => keys.of("mtls", &[name.as_bytes()]),
    }
}

fn invalid(reason: Reason, message: &'static str) -> NotVerified {
    NotVerified::Invalid { reason, message, bearer: false }
}

fn message_of(reason: Reason) -> &'static str {
    match reason {
        Reason::ApiKeyInvalid | Reason::ApiKeyDisabled => INVALID_API_KEY,
        _ => INVALID_PASSWORD,
    }
}

/// A verified token's principal, when to forget it (`exp`), and whether it may be remembered.
struct VerifiedBearer {
    principal: Principal,
    expires_at: Option<u64>,
    cacheable: bool,
}

/// A Bearer JWT from a provider, a client keypair or the token endpoint, bound to
/// the places it was `found` at.
#[allow(clippy::too_many_arguments)]
fn verify_bearer(
    config: &Config,
    documents: &Fetched,
    clients: Directory,
    token: &str,
    found: &[usize],
    host: &dyn VerifyHost,
    now_ms: u64,
    introspection_hits: &mut Vec<ProviderId>,
) -> Result<VerifiedBearer, NotVerified> {
    let fetched: &FetchedKeys = &documents.keys;
    let providers = &config.jwt_providers;
    if providers.is_empty() {
        return Err(bearer_error(Reason::JwtNotConfigured, "bearer tokens are not accepted"));
    }
    let now = now_ms / 1000;
    let bound_here = |provider| config.token_locations.binds(found, provider);
    // An introspection provider reading this place takes what no key can verify: a token
    // that is not a JWS; with `tokens: "all"`, also a JWS whose `iss` names no provider with keys.
    let introspector = providers
        .iter()
        .enumerate()
        .find(|(i, provider)| provider.introspection.is_some() && bound_here(ProviderId(*i)))
        .map(|(i, provider)| (ProviderId(i), provider.introspection.as_ref().is_some_and(|i| i.all_tokens)));
    let jws = jwt::looks_like_jws(token);
    if let (Some((provider, _)), false) = (introspector, jws) {
        return introspect(config, provider, token, host, now_ms, introspection_hits);
    }
    let mut verified = match jwt::verify(token, providers, fetched, &bound_here, host, now, config.clock_skew_seconds) {
        Ok(verified) => verified,
        Err(JwtError::UnknownIssuer | JwtError::Malformed | JwtError::UnsupportedAlgorithm)
            if introspector.is_some_and(|(_, all)| all) =>
        {
            let provider = introspector.map_or(ProviderId(0), |(provider, _)| provider);
            return introspect(config, provider, token, host, now_ms, introspection_hits);
        }
        Err(JwtError::KeysNotLoaded { provider }) => return Err(NotVerified::WaitForKeys { provider, refetch: false }),
        Err(JwtError::UnknownKey { provider }) => {
            return Err(match fetched.get(provider) {
                Some(remote) if remote.refetch_allowed(now_ms) => NotVerified::WaitForKeys { provider, refetch: true },
                // The token may be fine: its key could not be fetched. 503, not 401.
                Some(remote) if remote.failing() => NotVerified::KeysUnavailable,
                _ => bearer_error(Reason::JwtUnknownKey, JwtError::UnknownKey { provider }.description()),
            });
        }
        Err(e) => return Err(bearer_error(e.reason(), e.description())),
    };
    let Some(provider) = providers.get(verified.provider.0) else {
        return Err(bearer_error(Reason::JwtUnknownIssuer, "unknown issuer"));
    };
    // RFC 8705 3: with `require_certificate_binding`, a token must be bound to a certificate.
    if provider.require_certificate_binding && !matches!(verified.confirmation, Some(Confirmation::Certificate(_))) {
        return Err(bearer_error(Reason::TokenNotBound, "token not bound to a client certificate"));
    }
    let token = TokenFacts {
        jti: verified.jti.clone(),
        issued_at: verified.issued_at,
        request_principal: verified
            .request_principal
            .take()
            .filter(|_| provider.kind == ProviderKind::IdentityProvider),
        confirmation: verified.confirmation.take(),
        provider: Some(verified.provider),
    };
    let expires_at = verified.expires_at;
    let principal = match provider.kind {
        ProviderKind::IdentityProvider => Principal::of_provider(
            &provider.name,
            verified.principal,
            verified.headers,
            verified.scopes,
            token,
            &provider.privileges,
            verified.extras,
        ),
        // The client signed it: its claims grant nothing; its configuration does.
        ProviderKind::Keypair { one_time } => {
            // Not spent on a decision that waits for the remote revocation list: it is made again.
            if one_time && !config.revocation.awaited(documents.revocation_list()) {
                first_use(config, &provider.name, verified.jti.as_deref(), expires_at, host, now)?;
            }
            let principal = Principal {
                method: AuthMethod::Keypair,
                token: Some(token),
                ..Principal::configured(&provider.name, AuthMethod::Keypair, &provider.privileges)
            };
            return Ok(VerifiedBearer { principal, expires_at, cacheable: !one_time });
        }
        // Issued here to an API client: what the client may do is what its token may do,
        // and a client disabled since is refused.
        ProviderKind::TokenEndpoint => {
            let client = match clients.enabled(&verified.principal) {
                Ok(client) => client,
                Err(Reason::ApiClientsUnavailable) => return Err(NotVerified::WaitForStore(StoreId::ApiClients)),
                Err(_) => return Err(bearer_error(Reason::TokenRevoked, "token revoked")),
            };
            // The scopes it was issued with, as far as the client still holds them.
            let held = &client.privileges.scopes;
            let scopes = verified.scopes.into_iter().filter(|scope| held.contains(scope)).collect();
            // Named as its client however it proves itself: one client, one name (rules,
            // revocation, limits); `x-auth-method` still says it came with a token.
            Principal {
                method: AuthMethod::Jwt,
                provider: Some(provider.name.clone()),
                scopes,
                token: Some(token),
                ..Principal::configured(&client.id, AuthMethod::ApiKey, &client.privileges)
            }
        }
    };
    Ok(VerifiedBearer { principal, expires_at, cacheable: true })
}

/// An opaque token, as its provider's introspection endpoint answers about it: the
/// answer stored for every worker, else a call (this worker's, or one on its way).
fn introspect(
    config: &Config,
    id: ProviderId,
    token: &str,
    host: &dyn VerifyHost,
    now_ms: u64,
    hits: &mut Vec<ProviderId>,
) -> Result<VerifiedBearer, NotVerified> {
    let Some((provider, introspection)) =
        config.jwt_providers.get(id.0).and_then(|p| Some((p, p.introspection.as_ref()?)))
    else {
        return Err(bearer_error(Reason::JwtUnknownIssuer, "unknown issuer"));
    };
    let store = &introspection.answers;
    let key = store.key(host, token);
    let (verdict, until_ms) = match store.claim(host, key, now_ms, now_ms + introspection.wait_ms()) {
        Claim::Stored(verdict, until_ms) => {
            hits.push(id);
            (verdict, until_ms)
        }
        Claim::Call => return Err(NotVerified::Introspect { provider: id, key, call: Some(token.to_string()) }),
        Claim::Pending => return Err(NotVerified::Introspect { provider: id, key, call: None }),
        Claim::Unavailable => {
            return Err(NotVerified::TryLater { reason: Reason::IntrospectionFailed, retry_after_seconds: 1 })
        }
    };
    let answer = match verdict {
        Verdict::Active(answer) => answer,
        Verdict::Inactive => return Err(bearer_error(Reason::IntrospectionInactive, "token not active")),
        Verdict::Refused(reason) => return Err(bearer_error(reason, refusal_message(reason))),
        Verdict::Failed => {
            return Err(NotVerified::TryLater { reason: Reason::IntrospectionFailed, retry_after_seconds: 1 })
        }
    };
    let token = TokenFacts {
        jti: answer.jti,
        issued_at: answer.issued_at,
        request_principal: None,
        confirmation: None,
        provider: None,
    };
    let principal = Principal::of_provider(
        &provider.name,
        answer.principal,
        answer.headers,
        answer.scopes,
        token,
        &provider.privileges,
        TokenExtras { claims: answer.claims, forward: provider.output.forward, ..TokenExtras::default() },
    );
    // This worker remembers it no longer than every worker may reuse it.
    Ok(VerifiedBearer { principal, expires_at: Some(until_ms / 1000), cacheable: true })
}

fn bearer_error(reason: Reason, message: &'static str) -> NotVerified {
    NotVerified::Invalid { reason, message, bearer: true }
}

/// A one-time keypair token: refused when its `jti` was seen (on any worker) before it expired.
fn first_use(
    config: &Config,
    keypair: &str,
    jti: Option<&str>,
    expires_at: Option<u64>,
    host: &dyn VerifyHost,
    now: u64,
) -> Result<(), NotVerified> {
    let Some(jti) = jti else {
        return Err(bearer_error(Reason::JwtNoJti, "token id (jti) required"));
    };
    // Remembered while the token could still pass: until its `exp` and the clock skew.
    let until = expires_at.unwrap_or(now).saturating_add(config.clock_skew_seconds).saturating_add(1);
    match config.replay_table.insert_once(host, one_time_record(keypair, jti), until, now) {
        Once::First => Ok(()),
        Once::Again => Err(bearer_error(Reason::TokenReplayed, "token already used")),
        Once::Full => Err(NotVerified::TryLater { reason: Reason::ReplayCacheFull, retry_after_seconds: 1 }),
        Once::Unavailable => Err(NotVerified::TryLater { reason: Reason::LimitsUnavailable, retry_after_seconds: 1 }),
    }
}

/// The key of a one-time token's record in `Config::replay_table`.
pub(crate) fn one_time_record(keypair: &str, jti: &str) -> u64 {
    SharedTable::key(format!("{keypair}\0{jti}"))
}

#[cfg(test)]
mod tests;
