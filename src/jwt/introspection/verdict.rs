//! What an introspection answer says of a token, as every worker reuses it.

use crate::reason::Reason;
use crate::token_claims::ClaimValues;

/// What an answer says of a token (what every worker reuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `active: true` and its claims pass.
    Active(Answer),
    /// `active: false`, or missing.
    Inactive,
    /// Active, but its claims do not pass here (expired, audience, no principal, ...).
    Refused(Reason),
    /// The endpoint could not tell: every request waiting for it gets 503.
    Failed,
}

/// What an active token's answer grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Who the token names.
    pub principal: String,
    /// The scopes it grants.
    pub scopes: Vec<String>,
    /// `claim_to_headers` results.
    pub headers: Vec<(String, String)>,
    /// `jti`.
    pub jti: Option<String>,
    /// `iat`, Unix seconds.
    pub issued_at: Option<u64>,
    /// `exp`, Unix seconds.
    pub expires_at: Option<u64>,
    /// The attributes `rules[].claims` test, read as a JWT's claims are.
    pub claims: ClaimValues,
}
