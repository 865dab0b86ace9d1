//! The per-VM state shared by the root context and its HTTP contexts.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::authn::{Authenticator, RemoteKeyState};
use crate::config::Config;

use super::jwks::{PendingCall, RemoteProvider};
use super::metrics::Metrics;
use super::signature::EnvoyCrypto;

pub type SharedFilter = Rc<RefCell<Filter>>;

pub struct Filter {
    pub authn: Authenticator,
    /// One entry per JWT provider; `None` for providers with local keys only.
    pub remote: Vec<Option<RemoteProvider>>,
    /// Whether any provider has remote keys (known at configuration).
    pub has_remote: bool,
    /// Requests paused for remote keys, by HTTP context id.
    pub waiting: HashMap<u32, Waiting>,
    /// Outstanding fetches by call token.
    pub pending_calls: HashMap<u32, PendingCall>,
    pub metrics: Metrics,
    pub crypto: EnvoyCrypto,
}

#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    pub provider: usize,
    pub deadline_ms: u64,
    /// The provider's event count when the request was last decided.
    pub events_seen: u64,
    /// It waits for a refetch (its `kid` is unknown), not for the first keys.
    pub refetch: bool,
}

impl Filter {
    pub fn new(config: Config, crypto: EnvoyCrypto) -> Filter {
        let remote: Vec<Option<RemoteProvider>> = config.jwt_providers.iter().map(RemoteProvider::new).collect();
        Filter {
            authn: Authenticator::new(config),
            has_remote: remote.iter().any(Option::is_some),
            remote,
            waiting: HashMap::new(),
            pending_calls: HashMap::new(),
            metrics: Metrics::default(),
            crypto,
        }
    }

    /// Whether a request in this VM waits for a refetch of `provider`'s keys.
    pub fn refetch_wanted(&self, provider: usize) -> bool {
        self.waiting.values().any(|w| w.provider == provider && w.refetch)
    }

    /// Whether the root should tick fast: requests wait for keys, or keys are on their way.
    pub fn busy(&self) -> bool {
        !self.waiting.is_empty() || !self.pending_calls.is_empty()
    }
}

/// What the decision needs to know of each provider's remote keys.
pub fn remote_states(remote: &[Option<RemoteProvider>], now_ms: u64) -> Vec<RemoteKeyState<'_>> {
    remote
        .iter()
        .map(|remote| match remote {
            Some(p) => RemoteKeyState {
                keys: p.keys.as_ref(),
                refetch_allowed: p.refetch_allowed(now_ms),
                fetch_failing: p.record.failing(),
            },
            None => RemoteKeyState::default(),
        })
        .collect()
}
