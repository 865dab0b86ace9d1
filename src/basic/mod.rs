//! HTTP Basic users (RFC 7617) and the checks that keep password guessing cheap
//! for the filter and slow for the guesser:
//! - a repeated wrong password is answered from the failure cache (`authenticate`);
//! - failures per user name and source, and per user name, are limited Envoy-wide
//!   (`throttle`): 429 past the limit, checked before any remembered verification;
//! - each worker spends at most a share of its time on slow hashes (`crate::budget`): 503 past it;
//! - an unknown name costs what a known bcrypt user costs (a decoy hash is checked).

mod throttle;

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

pub(crate) use throttle::{FailureLimit, FailureThrottle};

use crate::api_key::Directory;
use crate::budget::{NotRun, TimeBudget};
use crate::host_api::{Clock, SharedData};
use crate::password::PasswordHash;
use crate::principal::{AuthMethod, Principal};
use crate::privileges::Privileges;
use crate::reason::Reason;
use crate::remote::StoreId;
use crate::request::Source;

#[derive(Debug)]
struct BasicUser {
    hash: PasswordHash,
    privileges: Rc<Privileges>,
}

/// Basic users: the configured ones, or those of one fetch of `basic.remote`.
#[derive(Debug, Default)]
pub struct BasicUsers {
    users: HashMap<String, BasicUser>,
    /// The costliest bcrypt hash configured: checked for unknown names, result ignored.
    decoy: Option<PasswordHash>,
}

impl BasicUsers {
    /// Add a user; false when the name is taken.
    pub fn insert(&mut self, name: String, hash: PasswordHash, privileges: Rc<Privileges>) -> bool {
        if self.users.contains_key(&name) {
            return false;
        }
        let costlier = match (&self.decoy, hash.bcrypt_cost()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(decoy), Some(cost)) => decoy.bcrypt_cost().is_none_or(|current| cost > current),
        };
        if costlier {
            self.decoy = Some(hash.clone());
        }
        self.users.insert(name, BasicUser { hash, privileges });
        true
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Every user's name and privileges, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Privileges)> {
        let mut users: Vec<(&str, &Privileges)> =
            self.users.iter().map(|(name, user)| (name.as_str(), user.privileges.as_ref())).collect();
        users.sort_unstable_by_key(|(name, _)| *name);
        users.into_iter()
    }

    /// Every user's name (fetched users must not reuse one).
    pub fn names(&self) -> HashSet<String> {
        let mut names = HashSet::with_capacity(self.users.len());
        for name in self.users.keys() {
            names.insert(name.clone());
        }
        names
    }

    /// A user's name that is in `names` too, if any.
    pub fn name_in(&self, names: &HashSet<String>) -> Option<&str> {
        self.users.keys().find(|name| names.contains(*name)).map(String::as_str)
    }

    /// These users and those fetched (`fetched`: None before the first fetch or without `remote`).
    pub fn with_fetched<'a>(&'a self, fetched: Option<&'a BasicUsers>, remote: bool) -> Users<'a> {
        Users { configured: self, fetched, remote }
    }

    /// Whether any user is limited to networks.
    pub fn any_trusted_networks(&self) -> bool {
        self.users.values().any(|user| user.privileges.trusted_networks.is_some())
    }
}

impl crate::remote::Summary for BasicUsers {
    fn summary(&self) -> String {
        format!("{} Basic users", self.len())
    }
}

/// Every Basic user a request may name: the configured ones, then the fetched ones.
#[derive(Clone, Copy)]
pub struct Users<'a> {
    configured: &'a BasicUsers,
    fetched: Option<&'a BasicUsers>,
    /// `basic.remote` is configured.
    remote: bool,
}

impl<'a> Users<'a> {
    fn get(self, name: &str) -> Option<&'a BasicUser> {
        self.configured.users.get(name).or_else(|| self.fetched?.users.get(name))
    }

    /// Whether `name` is a user whose hash is slow to check (bcrypt).
    pub fn slow_hash(self, name: &str) -> bool {
        self.get(name).is_some_and(|user| user.hash.is_slow())
    }

    /// The store was never fetched: a name not configured may be in it.
    fn not_fetched_yet(self) -> bool {
        self.remote && self.fetched.is_none()
    }

    /// The costliest bcrypt hash of either: checked for unknown names, result ignored.
    fn decoy(self) -> Option<&'a PasswordHash> {
        self.configured.decoy.as_ref().or_else(|| self.fetched?.decoy.as_ref())
    }
}

/// Why a Basic credential did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 401: wrong password, unknown user, bad or disabled API key.
    Invalid(Reason),
    /// 429 (this name failed too often) or 503 (this worker is busy hashing): no check was made.
    TryLater { reason: Reason, retry_after_seconds: u64 },
    /// The name may be in a store (`api_keys.remote`, `basic.remote`) not fetched yet: hold the request.
    NotFetched(StoreId),
}

/// One VM's guards on password checks.
pub(crate) struct PasswordGuard {
    pub throttle: FailureThrottle,
    /// For slow hashes only.
    pub budget: TimeBudget,
}

impl PasswordGuard {
    pub(crate) fn new(limit: FailureLimit, slow_hash_ms_per_second: u64) -> PasswordGuard {
        PasswordGuard { throttle: FailureThrottle::new(limit), budget: TimeBudget::new(slow_hash_ms_per_second) }
    }
}

/// What a password check needs of the host.
pub trait PasswordHost: SharedData + Clock {}
impl<T: SharedData + Clock + ?Sized> PasswordHost for T {}

/// A Basic attempt at `user` from `source`, and whether it is throttled (429) before
/// anything is checked or remembered: an API client's `id:key` never is (keys are not
/// guessed), any other name by its failures (a user's, or an unknown name's).
pub(crate) struct Attempt<'a> {
    pub user: &'a str,
    /// Read only to count a failure, or to look for this source's when the name has some.
    pub source: Source<'a>,
}

impl Attempt<'_> {
    /// 429 when this source, or every source together, failed too often for this name.
    pub(crate) fn throttled(
        &self,
        users: Users,
        guard: &PasswordGuard,
        host: &dyn PasswordHost,
        now_s: u64,
    ) -> Option<Refusal> {
        let known = users.get(self.user).is_some();
        let retry_after_seconds = guard.throttle.over_limit(host, self.user, self.source, known, now_s)?;
        Some(Refusal::TryLater { reason: Reason::BasicThrottled, retry_after_seconds })
    }
}

/// Check `user:password` (not throttled: `Attempt::throttled` said so): a Basic user,
/// else an API client's `id:key`, else an unknown name.
pub(crate) fn verify(
    users: Users,
    api_keys: Directory,
    guard: &mut PasswordGuard,
    host: &dyn PasswordHost,
    attempt: &Attempt,
    password: &str,
    now_s: u64,
) -> Result<Principal, Refusal> {
    let user = attempt.user;
    if let Some(known) = users.get(user) {
        return check(guard, host, attempt, true, &known.hash, password, now_s)
            .map(|()| Principal::configured(user, AuthMethod::Basic, &known.privileges));
    }
    if let Some(result) = api_keys.verify_as_basic(user, password) {
        return result.map_err(|reason| match reason {
            Reason::ApiClientsUnavailable => Refusal::NotFetched(StoreId::ApiClients),
            reason => Refusal::Invalid(reason),
        });
    }
    if users.not_fetched_yet() {
        return Err(Refusal::NotFetched(StoreId::BasicUsers));
    }
    match users.decoy() {
        Some(decoy) => {
            check(guard, host, attempt, false, decoy, password, now_s).and(Err(Refusal::Invalid(Reason::BasicInvalid)))
        }
        None => {
            guard.throttle.record_failure(host, user, attempt.source.get(), false, now_s);
            Err(Refusal::Invalid(Reason::BasicInvalid))
        }
    }
}

/// One password check under the budget; `known` says whether the user exists (a decoy
/// hash is checked for a name that does not, and never matches).
fn check(
    guard: &mut PasswordGuard,
    host: &dyn PasswordHost,
    attempt: &Attempt,
    known: bool,
    hash: &PasswordHash,
    password: &str,
    now_s: u64,
) -> Result<(), Refusal> {
    let matches = if hash.is_slow() {
        match guard.budget.run(host, || hash.verify(password.as_bytes())) {
            Ok(matches) => matches,
            Err(NotRun::Busy { retry_after_seconds }) => {
                return Err(Refusal::TryLater { reason: Reason::PasswordChecksBusy, retry_after_seconds })
            }
            Err(NotRun::NoClock) => {
                return Err(Refusal::TryLater { reason: Reason::HostError, retry_after_seconds: 1 })
            }
        }
    } else {
        hash.verify(password.as_bytes())
    };
    if matches && known {
        return Ok(());
    }
    guard.throttle.record_failure(host, attempt.user, attempt.source.get(), known, now_s);
    Err(Refusal::Invalid(Reason::BasicInvalid))
}

#[cfg(test)]
mod tests;
