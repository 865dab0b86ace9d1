//! What one VM fetched and keeps current: each provider's remote key set and the
//! remote revocation list. The configuration (`Config`, immutable) says what to
//! fetch; this is the state the fetch protocol changes. The `Plugin` owns it and
//! hands it to `pipeline::decide`.

use crate::api_key::Clients;
use crate::basic::BasicUsers;
use crate::config::Config;
use crate::jwt::FetchedKeys;
use crate::pipeline::revocation::RevocationList;
use crate::remote::{Fetch, RemoteDocument, StoreId};

#[derive(Debug)]
/// One VM's fetched documents.
pub struct Fetched {
    /// By provider: the key sets of those that fetch keys.
    pub keys: FetchedKeys,
    /// `revocation.remote`, when configured.
    pub revocation: Option<RemoteDocument<RevocationList>>,
    /// `api_keys.remote`, when configured.
    pub api_clients: Option<RemoteDocument<Clients>>,
    /// `basic.remote`, when configured.
    pub basic_users: Option<RemoteDocument<BasicUsers>>,
}

impl Fetched {
    /// Nothing fetched yet (or picked up from other VMs: `sync` does).
    pub fn new(config: &Config) -> Fetched {
        Fetched {
            keys: FetchedKeys::new(&config.jwt_providers),
            revocation: config.revocation.remote_document(),
            api_clients: config.api_keys.remote.as_ref().map(|remote| remote.document(StoreId::ApiClients)),
            basic_users: config.basic_store.as_ref().map(|remote| remote.document(StoreId::BasicUsers)),
        }
    }

    /// A credential store's document, when configured.
    pub fn store(&self, id: StoreId) -> Option<&dyn Fetch> {
        match id {
            StoreId::ApiClients => self.api_clients.as_ref().map(|r| r as &dyn Fetch),
            StoreId::BasicUsers => self.basic_users.as_ref().map(|r| r as &dyn Fetch),
        }
    }

    /// A credential store's document, when configured, to fetch or sync.
    pub fn store_mut(&mut self, id: StoreId) -> Option<&mut dyn Fetch> {
        match id {
            StoreId::ApiClients => self.api_clients.as_mut().map(|r| r as &mut dyn Fetch),
            StoreId::BasicUsers => self.basic_users.as_mut().map(|r| r as &mut dyn Fetch),
        }
    }

    /// The fetched Basic users: None before their first fetch (or when none are configured).
    pub fn basic_users(&self) -> Option<&BasicUsers> {
        self.basic_users.as_ref().and_then(RemoteDocument::value)
    }

    /// The fetched API clients: None before their first fetch (or when none are configured).
    pub fn api_clients(&self) -> Option<&Clients> {
        self.api_clients.as_ref().and_then(RemoteDocument::value)
    }

    /// The fetched revocation list: None before its first fetch (or when none is configured).
    pub fn revocation_list(&self) -> Option<&RevocationList> {
        self.revocation.as_ref().and_then(RemoteDocument::value)
    }
}
