//! What one user, API client or JWT provider (for all its tokens) may do.

use crate::network::Networks;
use crate::pipeline::limits::Limits;

/// `None`: no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privileges {
    /// Allowed methods, uppercase, each by name (none implies another).
    pub methods: Option<Vec<String>>,
    /// Allowed path prefixes (normalized, matched at segment boundaries).
    pub paths: Option<Vec<String>>,
    /// Scopes held (users and API clients; a token's come from its claims).
    pub scopes: Vec<String>,
    pub trusted_networks: Option<Networks>,
    /// Requests per hour and in flight, the configuration's defaults applied.
    pub limits: Limits,
}
