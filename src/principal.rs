//! A verified caller: who it is, how it proved it, who vouched for it, and what
//! it holds (scopes) and may do (privileges).

use std::rc::Rc;

use crate::privileges::Privileges;

/// How a principal proved itself (the `x-auth-method` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    ApiKey,
    Jwt,
    /// A token the client signed with its registered key.
    Keypair,
}

impl AuthMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMethod::Basic => "basic",
            AuthMethod::ApiKey => "api-key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Keypair => "keypair",
        }
    }
}

/// What revocation looks at in a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFacts {
    pub jti: Option<String>,
    pub issued_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user name, the API client id, or the JWT's principal claim.
    pub id: String,
    pub method: AuthMethod,
    /// The JWT provider that vouched for it.
    pub provider: Option<String>,
    /// Configured claim -> header mappings, in configuration order.
    pub claim_headers: Vec<(String, String)>,
    /// Scopes held: a token's `scope`/`scp`, or a user's or client's configured `scopes`.
    pub scopes: Vec<String>,
    /// Set for tokens.
    pub token: Option<TokenFacts>,
    /// What it may do; shared by every principal of one user, client or provider.
    pub privileges: Rc<Privileges>,
}

impl Principal {
    /// A principal proven by a configured secret (Basic password or API key).
    pub fn configured(id: &str, method: AuthMethod, privileges: &Rc<Privileges>) -> Principal {
        Principal {
            id: id.to_string(),
            method,
            provider: None,
            claim_headers: Vec::new(),
            scopes: privileges.scopes.clone(),
            token: None,
            privileges: Rc::clone(privileges),
        }
    }
}
