//! Revoked tokens: by `jti`, and by principal with a time before which its
//! tokens were issued ("log out everywhere"). From the configuration and from a
//! document the filter fetches (`{"jti": [...], "not_before": {"jwt:corp:alice":
//! 1800000000}}`), checked on every request, cached verification or not. Principals
//! are named by who vouches for them (`principal.rs`): a bare name is refused.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use crate::principal::{Principal, QualifiedName};
use crate::remote::{FetchConfig, RemoteDocument};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    jti: HashSet<String>,
    /// Qualified principal -> Unix seconds: tokens issued before (or without `iat`) are revoked.
    not_before: HashMap<String, u64>,
}

/// The fetched document, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    #[serde(default)]
    jti: Vec<String>,
    #[serde(default)]
    not_before: HashMap<String, u64>,
}

impl RevocationList {
    pub fn new(jti: impl IntoIterator<Item = String>, not_before: impl IntoIterator<Item = (String, u64)>) -> Self {
        RevocationList { jti: jti.into_iter().collect(), not_before: not_before.into_iter().collect() }
    }

    /// A fetched list; Err (and the last good list kept) when it is not one.
    pub fn from_document(body: &[u8]) -> Result<RevocationList, String> {
        let not_a_list =
            |e: String| format!("not a revocation list ({{\"jti\": [...], \"not_before\": {{...}}}}): {e}");
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| not_a_list(e.to_string()))?;
        if !value.is_object() {
            return Err(not_a_list("not a JSON object".into()));
        }
        let raw: RawList = serde_json::from_value(value).map_err(|e| not_a_list(e.to_string()))?;
        if let Some(bare) = raw.not_before.keys().find(|name| QualifiedName::parse(name, None).is_err()) {
            return Err(not_a_list(format!(
                "not_before: \"{bare}\" is not a qualified principal (jwt:<provider>:<subject>)"
            )));
        }
        Ok(RevocationList::new(raw.jti, raw.not_before))
    }

    pub fn is_empty(&self) -> bool {
        self.jti.is_empty() && self.not_before.is_empty()
    }

    fn revokes(&self, principal: &Principal) -> bool {
        let Some(token) = &principal.token else { return false };
        if token.jti.as_ref().is_some_and(|jti| self.jti.contains(jti)) {
            return true;
        }
        self.not_before
            .get(principal.qualified.as_str())
            .is_some_and(|&cutoff| token.issued_at.is_none_or(|iat| iat < cutoff))
    }
}

impl crate::remote::Summary for RevocationList {
    fn summary(&self) -> String {
        format!("a revocation list of {} token ids and {} principals", self.jti.len(), self.not_before.len())
    }
}

/// The configured list, and where a list is fetched from (the fetched one is a VM's
/// state: `Fetched`).
#[derive(Debug)]
pub(crate) struct Revocation {
    pub local: RevocationList,
    /// `revocation.remote`.
    pub fetch: Option<FetchConfig>,
    /// Until the remote list's first fetch, tokens pass unchecked by it
    /// (`allow_before_first_fetch`); otherwise they wait for it, then get 503.
    pub allow_before_first_fetch: bool,
    /// How long a token waits for the remote list's first fetch.
    pub wait_ms: u64,
}

/// What the lists say of a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revoked {
    No,
    Yes,
    /// The remote list was never fetched and could revoke it: not known yet.
    NotKnownYet,
}

impl Revocation {
    /// What the configured list and `fetched` (the remote list, None before its first fetch) say.
    pub(crate) fn check(&self, fetched: Option<&RevocationList>, principal: &Principal) -> Revoked {
        if self.local.revokes(principal) {
            return Revoked::Yes;
        }
        // Only tokens are revoked: other credentials never wait for the list.
        if principal.token.is_some() && self.awaited(fetched) {
            return Revoked::NotKnownYet;
        }
        match fetched {
            Some(list) if self.fetch.is_some() && list.revokes(principal) => Revoked::Yes,
            _ => Revoked::No,
        }
    }

    /// Whether a token waits for the remote list: never fetched, and not let through before it.
    pub(crate) fn awaited(&self, fetched: Option<&RevocationList>) -> bool {
        self.fetch.is_some() && fetched.is_none() && !self.allow_before_first_fetch
    }

    /// Whether anything could be revoked (the stage is skipped otherwise).
    pub(crate) fn is_active(&self) -> bool {
        !self.local.is_empty() || self.fetch.is_some()
    }

    /// The remote list's document, nothing fetched yet: None when none is configured.
    pub(crate) fn remote_document(&self) -> Option<RemoteDocument<RevocationList>> {
        let fetch = self.fetch.clone()?;
        Some(RemoteDocument::new(fetch, "revocation", std::rc::Rc::new(RevocationList::from_document)))
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::principal::{AuthMethod, TokenFacts};
    use crate::privileges::Privileges;

    /// A token of provider `corp` for `id`.
    fn token(id: &str, jti: Option<&str>, issued_at: Option<u64>) -> Principal {
        Principal {
            token: Some(TokenFacts { jti: jti.map(String::from), issued_at, ..TokenFacts::default() }),
            qualified: QualifiedName::of_provider("corp", id),
            provider: Some("corp".into()),
            ..Principal::configured(id, AuthMethod::Jwt, &Rc::new(Privileges::default()))
        }
    }

    #[test]
    fn by_jti_and_by_issue_time() {
        let list = RevocationList::new(vec!["leaked".to_string()], vec![("jwt:corp:alice".to_string(), 1000)]);
        assert!(list.revokes(&token("bob", Some("leaked"), Some(5000))));
        assert!(!list.revokes(&token("bob", Some("fine"), Some(5000))));
        assert!(list.revokes(&token("alice", None, Some(999))));
        assert!(list.revokes(&token("alice", None, None)), "no iat counts as issued before");
        assert!(!list.revokes(&token("alice", None, Some(1000))));
        let basic = Principal::configured("alice", AuthMethod::Basic, &Rc::new(Privileges::default()));
        assert!(!list.revokes(&basic), "only tokens are revoked");
        // Another issuer's alice, and the API client alice's tokens, are someone else.
        let other =
            Principal { qualified: QualifiedName::of_provider("partners", "alice"), ..token("alice", None, None) };
        assert!(!list.revokes(&other));
        let client = Principal {
            token: Some(TokenFacts::default()),
            ..Principal::configured("alice", AuthMethod::ApiKey, &Rc::new(Privileges::default()))
        };
        assert!(!list.revokes(&client));
        let by_client = RevocationList::new(vec![], vec![("api-key:alice".to_string(), 1000)]);
        assert!(by_client.revokes(&client), "a client's tokens from the token endpoint, by its name");
    }

    #[test]
    fn fetched_documents() {
        let list = RevocationList::from_document(br#"{"jti": ["a"], "not_before": {"jwt:corp:u": 5}}"#).unwrap();
        assert!(list.revokes(&token("x", Some("a"), Some(1))));
        assert!(list.revokes(&token("u", None, Some(4))));
        let bare = RevocationList::from_document(br#"{"not_before": {"jwt:corp:u": 5, "u": 5}}"#).unwrap_err();
        assert!(bare.contains("\"u\" is not a qualified principal"), "{bare}");
        assert!(RevocationList::from_document(b"{}").unwrap().is_empty());
        for bad in [&b"[]"[..], b"{\"jti\": \"a\"}", b"{\"not_before\": {\"u\": -1}}", b"{\"other\": 1}", b"nope"] {
            assert!(RevocationList::from_document(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
