//! Which credential stores there are: API clients (`api_keys.remote`) and Basic users (`basic.remote`)
//! fetched through an Envoy cluster as any remote document is, with one behaviour for
//! both: before the first fetch a credential that is not configured may be in the store,
//! so its request is held for it (one call's timeout and a second more), then 503; a
//! change picked up by any worker applies on every worker from its next request.

use crate::reason::Reason;

/// Which credential store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreId {
    /// `api_keys.remote`.
    ApiClients,
    /// `basic.remote`.
    BasicUsers,
}

/// Every store, in the order a request's decision syncs them.
pub const STORES: [StoreId; 2] = [StoreId::ApiClients, StoreId::BasicUsers];

impl StoreId {
    /// The reason of the 503 when its first fetch did not come in time.
    pub fn unavailable(self) -> Reason {
        match self {
            StoreId::ApiClients => Reason::ApiClientsUnavailable,
            StoreId::BasicUsers => Reason::BasicUsersUnavailable,
        }
    }

    /// (configured under, what it holds, its counters' prefix).
    pub fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            StoreId::ApiClients => ("api_keys", "API clients", "api_clients"),
            StoreId::BasicUsers => ("basic", "Basic users", "basic_users"),
        }
    }
}
