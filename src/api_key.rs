//! API keys: where they are read, who holds them, and their check. Keys are
//! stored as SHA-256 digests; a presented key is found by its digest in a map, so
//! an unknown key costs one hash and one lookup whatever the number of clients.
//!
//! Why a map lookup on a digest leaks nothing useful: the lookup's time depends on
//! the presented key's SHA-256 (which bucket, how many leading bytes equal a stored
//! digest's), never on the key's own bytes. Learning that SHA-256(guess) shares a
//! prefix with a stored digest brings a guesser no closer to a key that hashes to it
//! (SHA-256 is preimage-resistant, and keys are random: `wasm-authn new-api-key`),
//! so the time says nothing a guess could build on. The digest found is still
//! compared in constant time with the stored one before it is believed.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::rc::Rc;

use subtle::ConstantTimeEq;

use crate::cache::AlreadyHashed;
use crate::digest::{sha256, Sha256Digest};
use crate::principal::{AuthMethod, Principal};
use crate::privileges::Privileges;
use crate::reason::Reason;
use crate::remote::Store;

#[derive(Debug, Default)]
pub struct ApiKeys {
    /// Lowercase header names carrying an API key, in order of precedence.
    pub headers: Vec<String>,
    pub query_param: Option<String>,
    /// Cookies carrying an API key, after the headers and the query parameter, in order of precedence.
    pub cookies: Vec<String>,
    /// A form body field carrying an API key, read last (the body is read for it).
    pub form_field: Option<String>,
    /// `client-id:api-key` as Basic credentials.
    pub allow_basic: bool,
    /// The configured clients.
    pub clients: Rc<Clients>,
    /// `api_keys.remote`: more clients, fetched (`fetched::Fetched` holds them).
    pub remote: Option<Store<Clients>>,
}

/// Every API client a request may name: the configured ones, then the fetched ones.
#[derive(Clone, Copy)]
pub struct Directory<'a> {
    keys: &'a ApiKeys,
    /// The last good fetched clients; None before the first fetch or without `remote`.
    fetched: Option<&'a Clients>,
}

#[derive(Debug)]
pub struct ApiClient {
    pub id: String,
    pub key_digest: Sha256Digest,
    pub disabled: bool,
    pub privileges: Rc<Privileges>,
}

/// The API clients in configuration order, found by key digest and by id in O(1).
#[derive(Debug, Default)]
pub struct Clients {
    list: Vec<ApiClient>,
    /// Where a key digest's client is in `list` (no two clients share one).
    by_digest: HashMap<DigestKey, usize, BuildHasherDefault<AlreadyHashed>>,
    /// Where an id's client is in `list`; an id two clients share names the earlier.
    by_id: HashMap<String, usize>,
    /// Some client is bound to networks (known once, not searched per request).
    bound_to_networks: bool,
}

/// A SHA-256 digest as a map key: its bits are uniform already, and not chosen by a
/// client (a preimage would be needed), so the map uses 16 of its bytes as the hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DigestKey(Sha256Digest);

impl Hash for DigestKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut low = [0u8; 16];
        low.copy_from_slice(&self.0[..16]);
        state.write_u128(u128::from_le_bytes(low));
    }
}

impl Clients {
    /// The clients, or the ids of two that hold the same key: that key alone could not
    /// say which of them calls, and each could name itself by Basic `id:key`.
    /// `also` holds the digests of clients elsewhere (the configured ones, for a
    /// fetched document), with their ids.
    pub fn new(list: Vec<ApiClient>, also: &Clients) -> Result<Clients, (String, String)> {
        let mut by_digest = HashMap::with_capacity_and_hasher(list.len(), BuildHasherDefault::default());
        let mut by_id = HashMap::with_capacity(list.len());
        for (index, client) in list.iter().enumerate() {
            let key = DigestKey(client.key_digest);
            let earlier = by_digest.insert(key, index).and_then(|earlier| list.get(earlier));
            if let Some(earlier) = earlier.or_else(|| also.by_digest(&client.key_digest)) {
                return Err((earlier.id.clone(), client.id.clone()));
            }
            by_id.entry(client.id.clone()).or_insert(index);
        }
        let bound_to_networks = list.iter().any(|client| client.privileges.trusted_networks.is_some());
        Ok(Clients { list, by_digest, by_id, bound_to_networks })
    }

    /// Clients for tests, which give each its own key.
    #[cfg(test)]
    pub(crate) fn of(list: Vec<ApiClient>) -> Rc<Clients> {
        Rc::new(Clients::new(list, &Clients::default()).expect("each client its own key"))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// In configuration order.
    pub fn iter(&self) -> std::slice::Iter<'_, ApiClient> {
        self.list.iter()
    }

    pub fn get(&self, index: usize) -> Option<&ApiClient> {
        self.list.get(index)
    }

    pub fn by_id(&self, id: &str) -> Option<&ApiClient> {
        self.by_id.get(id).and_then(|&index| self.list.get(index))
    }

    /// The client whose key has this digest (compared in constant time once found).
    fn by_digest(&self, digest: &Sha256Digest) -> Option<&ApiClient> {
        let client = self.by_digest.get(&DigestKey(*digest)).and_then(|&index| self.list.get(index))?;
        bool::from(client.key_digest.ct_eq(digest)).then_some(client)
    }
}

impl ApiKeys {
    /// The clients a request may name, with what was fetched (`fetched::Fetched::api_clients`).
    pub fn directory<'a>(&'a self, fetched: Option<&'a Clients>) -> Directory<'a> {
        Directory { keys: self, fetched }
    }

    /// Whether a client may be bound to networks (its requests' source address is then
    /// read): a configured one is, or fetched ones may be.
    pub fn may_bind_networks(&self) -> bool {
        self.remote.is_some() || self.clients.bound_to_networks
    }

    /// Whether any client may exist: configured, or fetched.
    pub fn has_clients(&self) -> bool {
        !self.clients.is_empty() || self.remote.is_some()
    }

    /// The API key header a challenge names, when API keys are accepted in headers.
    pub fn challenge_header(&self) -> Option<&str> {
        if !self.has_clients() {
            return None;
        }
        self.headers.first().map(String::as_str)
    }
}

impl<'a> Directory<'a> {
    /// A remote document is configured but was never fetched: a key not configured may be in it.
    fn not_fetched_yet(&self) -> bool {
        self.keys.remote.is_some() && self.fetched.is_none()
    }

    fn by_id(&self, id: &str) -> Option<&'a ApiClient> {
        self.keys.clients.by_id(id).or_else(|| self.fetched?.by_id(id))
    }

    /// The client a key belongs to: one SHA-256 and one lookup (two with fetched
    /// clients), whatever the number of clients.
    pub fn verify(&self, key: &str) -> Result<Principal, Reason> {
        let digest = sha256(key.as_bytes());
        let found = self.keys.clients.by_digest(&digest).or_else(|| self.fetched?.by_digest(&digest));
        match found {
            Some(client) if !client.disabled => {
                Ok(Principal::configured(&client.id, AuthMethod::ApiKey, &client.privileges))
            }
            Some(_) => Err(Reason::ApiKeyDisabled),
            None if self.not_fetched_yet() => Err(Reason::ApiClientsUnavailable),
            None => Err(Reason::ApiKeyInvalid),
        }
    }

    /// `client-id:api-key` as Basic credentials; None when `id` is no client's (or Basic is off).
    pub fn verify_as_basic(&self, id: &str, key: &str) -> Option<Result<Principal, Reason>> {
        if !self.keys.allow_basic {
            return None;
        }
        self.verify_pair(id, key)
    }

    /// A client's id and key, given apart (the token endpoint's `client_id` and
    /// `client_secret`); None when `id` is no client's.
    pub fn verify_pair(&self, id: &str, key: &str) -> Option<Result<Principal, Reason>> {
        let Some(client) = self.by_id(id) else {
            return self.not_fetched_yet().then_some(Err(Reason::ApiClientsUnavailable));
        };
        let matches: bool = sha256(key.as_bytes()).ct_eq(&client.key_digest).into();
        Some(match (matches, client.disabled) {
            (true, false) => Ok(Principal::configured(id, AuthMethod::ApiKey, &client.privileges)),
            (true, true) => Err(Reason::ApiKeyDisabled),
            (false, _) => Err(Reason::ApiKeyInvalid),
        })
    }

    /// An enabled client by id (a token issued to it is still good): else why not.
    pub fn enabled(&self, id: &str) -> Result<&'a ApiClient, Reason> {
        match self.by_id(id) {
            Some(client) if !client.disabled => Ok(client),
            Some(_) => Err(Reason::ApiKeyDisabled),
            None if self.not_fetched_yet() => Err(Reason::ApiClientsUnavailable),
            None => Err(Reason::ApiKeyInvalid),
        }
    }
}

impl crate::remote::Summary for Clients {
    fn summary(&self) -> String {
        format!("{} API clients", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, key: &[u8], disabled: bool) -> ApiClient {
        ApiClient { id: id.into(), key_digest: sha256(key), disabled, privileges: Rc::default() }
    }

    fn keys() -> ApiKeys {
        ApiKeys {
            headers: vec!["x-api-key".into()],
            query_param: None,
            cookies: vec![],
            form_field: None,
            allow_basic: true,
            clients: Clients::of(vec![client("live", b"k1", false), client("retired", b"k2", true)]),
            remote: None,
        }
    }

    #[test]
    fn keys_name_their_client() {
        assert_eq!(keys().directory(None).verify("k1").map(|p| p.id), Ok("live".to_string()));
        assert_eq!(keys().directory(None).verify("k2"), Err(Reason::ApiKeyDisabled));
        assert_eq!(keys().directory(None).verify("k3"), Err(Reason::ApiKeyInvalid));
    }

    #[test]
    fn as_basic_credentials() {
        assert_eq!(
            keys().directory(None).verify_as_basic("live", "k1").map(|r| r.map(|p| p.method)),
            Some(Ok(AuthMethod::ApiKey))
        );
        assert_eq!(keys().directory(None).verify_as_basic("live", "k2"), Some(Err(Reason::ApiKeyInvalid)));
        assert_eq!(keys().directory(None).verify_as_basic("retired", "k2"), Some(Err(Reason::ApiKeyDisabled)));
        assert_eq!(keys().directory(None).verify_as_basic("nobody", "k1"), None);
        assert_eq!(ApiKeys { allow_basic: false, ..keys() }.directory(None).verify_as_basic("live", "k1"), None);
    }

    /// What `verify` and `verify_pair` answered when they scanned every client: a key
    /// names the last client holding it, an id the first.
    fn scanned(clients: &[ApiClient], key: &str) -> Result<String, Reason> {
        let digest = sha256(key.as_bytes());
        match clients.iter().rev().find(|c| c.key_digest == digest) {
            Some(c) if !c.disabled => Ok(c.id.clone()),
            Some(_) => Err(Reason::ApiKeyDisabled),
            None => Err(Reason::ApiKeyInvalid),
        }
    }

    fn scanned_pair(clients: &[ApiClient], id: &str, key: &str) -> Option<Result<String, Reason>> {
        let c = clients.iter().find(|c| c.id == id)?;
        Some(match (c.key_digest == sha256(key.as_bytes()), c.disabled) {
            (true, false) => Ok(id.to_string()),
            (true, true) => Err(Reason::ApiKeyDisabled),
            (false, _) => Err(Reason::ApiKeyInvalid),
        })
    }

    #[test]
    fn lookups_answer_as_a_scan_of_every_client_did() {
        // A small xorshift: repeated ids and disabled clients, in every mix (each key
        // one client's: a key two clients share is refused, see below).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..200 {
            let size = next(12);
            let mut spec: Vec<(String, String, bool)> = Vec::new();
            for _ in 0..size {
                let (id, key, off) = (format!("c{}", next(8)), format!("k{}", next(8)), next(3) == 0);
                if spec.iter().all(|(_, taken, _)| *taken != key) {
                    spec.push((id, key, off));
                }
            }
            let make = || spec.iter().map(|(id, key, off)| client(id, key.as_bytes(), *off)).collect::<Vec<_>>();
            let keys = ApiKeys { allow_basic: true, clients: Clients::of(make()), ..ApiKeys::default() };
            let reference = make();
            for probe in 0..10 {
                let key = format!("k{probe}");
                assert_eq!(
                    keys.directory(None).verify(&key).map(|p| p.id),
                    scanned(&reference, &key),
                    "{spec:?} {key}"
                );
                for id in 0..10 {
                    let id = format!("c{id}");
                    assert_eq!(
                        keys.directory(None).verify_pair(&id, &key).map(|r| r.map(|p| p.id)),
                        scanned_pair(&reference, &id, &key),
                        "{spec:?} {id} {key}"
                    );
                }
            }
        }
    }

    #[test]
    fn two_clients_holding_one_key_are_refused() {
        let shared = vec![client("a", b"k", false), client("b", b"k", true)];
        assert_eq!(Clients::new(shared, &Clients::default()).err(), Some(("a".into(), "b".into())));
        // A fetched client with a configured client's key.
        let configured = Clients::of(vec![client("local", b"k", false)]);
        let fetched = vec![client("new", b"other", false), client("copy", b"k", false)];
        assert_eq!(Clients::new(fetched, &configured).err(), Some(("local".into(), "copy".into())));
    }

    #[test]
    fn a_hundred_thousand_clients() {
        let clients: Vec<ApiClient> =
            (0..100_000).map(|i| client(&format!("client-{i}"), format!("key-{i}").as_bytes(), i % 10 == 7)).collect();
        let keys = ApiKeys { allow_basic: true, clients: Clients::of(clients), ..ApiKeys::default() };
        assert_eq!(keys.clients.len(), 100_000);
        assert_eq!(keys.directory(None).verify("key-99998").map(|p| p.id), Ok("client-99998".into()));
        assert_eq!(keys.directory(None).verify("key-99997"), Err(Reason::ApiKeyDisabled));
        assert_eq!(keys.directory(None).verify("key-100000"), Err(Reason::ApiKeyInvalid));
        assert_eq!(
            keys.directory(None).verify_pair("client-5", "key-5").map(|r| r.map(|p| p.id)),
            Some(Ok("client-5".into()))
        );
        assert_eq!(keys.directory(None).verify_pair("client-5", "key-6"), Some(Err(Reason::ApiKeyInvalid)));
        assert_eq!(keys.clients.by_id("client-77").map(|c| c.disabled), Some(true));
    }

    /// `api_keys.remote` configured: what the configured clients and the fetched ones answer.
    fn with_remote() -> ApiKeys {
        let target = crate::host_api::Target { cluster: "idp".into(), authority: "idp".into(), path: "/c".into() };
        let policy = crate::remote::FetchPolicy { refresh_ms: 1000, timeout_ms: 1000, min_refetch_ms: 1000 };
        let fetch = crate::remote::FetchConfig { target, discovery: None, policy, max_response_bytes: 1024 };
        let parse: crate::remote::Parse<Clients> = Rc::new(|_: &[u8]| Ok(Clients::default()));
        ApiKeys { remote: Some(Store { fetch, parse }), ..keys() }
    }

    #[test]
    fn fetched_clients_answer_after_the_configured_ones() {
        let keys = with_remote();
        let fetched = Clients::of(vec![client("remote", b"k9", false), client("gone", b"k8", true)]);
        let clients = keys.directory(Some(&fetched));
        assert_eq!(clients.verify("k1").map(|p| p.id), Ok("live".to_string()));
        assert_eq!(clients.verify("k9").map(|p| p.id), Ok("remote".to_string()));
        assert_eq!(clients.verify("k8"), Err(Reason::ApiKeyDisabled));
        assert_eq!(clients.verify("k7"), Err(Reason::ApiKeyInvalid));
        assert_eq!(clients.verify_pair("remote", "k9").map(|r| r.map(|p| p.id)), Some(Ok("remote".into())));
        assert_eq!(clients.verify_pair("remote", "k1"), Some(Err(Reason::ApiKeyInvalid)));
        assert_eq!(clients.verify_pair("nobody", "k9"), None);
        assert_eq!(clients.enabled("remote").map(|c| c.id.as_str()), Ok("remote"));
        assert_eq!(clients.enabled("gone").map(|c| c.id.as_str()), Err(Reason::ApiKeyDisabled));
    }

    #[test]
    fn before_the_first_fetch_an_unconfigured_client_is_not_known_yet() {
        let remote = with_remote();
        let clients = remote.directory(None);
        assert_eq!(clients.verify("k1").map(|p| p.id), Ok("live".to_string()), "configured: known");
        assert_eq!(clients.verify("k9"), Err(Reason::ApiClientsUnavailable));
        assert_eq!(clients.verify_pair("live", "k1").map(|r| r.map(|p| p.id)), Some(Ok("live".into())));
        assert_eq!(clients.verify_pair("nobody", "k9"), Some(Err(Reason::ApiClientsUnavailable)));
        assert_eq!(clients.enabled("nobody").map(|c| c.id.as_str()), Err(Reason::ApiClientsUnavailable));
        // Without a remote document, unknown is unknown.
        assert_eq!(keys().directory(None).verify("k9"), Err(Reason::ApiKeyInvalid));
    }
}
