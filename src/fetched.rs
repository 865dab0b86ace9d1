//! What one VM fetched and keeps current: each provider's remote key set and the
//! remote revocation list. The configuration (`Config`, immutable) says what to
//! fetch; this is the state the fetch protocol changes. The `Plugin` owns it and
//! hands it to `pipeline::decide`.

use crate::config::Config;
use crate::jwt::FetchedKeys;
use crate::pipeline::revocation::RevocationList;
use crate::remote::RemoteDocument;

#[derive(Debug)]
/// One VM's fetched documents.
pub struct Fetched {
    /// By provider: the key sets of those that fetch keys.
    pub keys: FetchedKeys,
    /// `revocation.remote`, when configured.
    pub revocation: Option<RemoteDocument<RevocationList>>,
}

impl Fetched {
    /// Nothing fetched yet (or picked up from other VMs: `sync` does).
    pub fn new(config: &Config) -> Fetched {
        Fetched { keys: FetchedKeys::new(&config.jwt_providers), revocation: config.revocation.remote_document() }
    }

    /// The fetched revocation list: None before its first fetch (or when none is configured).
    pub fn revocation_list(&self) -> Option<&RevocationList> {
        self.revocation.as_ref().and_then(RemoteDocument::value)
    }
}
