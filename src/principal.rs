//! A verified caller: who it is, how it proved it, and who vouched for it.

/// How a principal proved itself (the `x-auth-method` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    ApiKey,
    Jwt,
}

impl AuthMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMethod::Basic => "basic",
            AuthMethod::ApiKey => "api-key",
            AuthMethod::Jwt => "jwt",
        }
    }
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
}

impl Principal {
    /// A principal proven by a configured secret (Basic password or API key).
    pub fn configured(id: &str, method: AuthMethod) -> Principal {
        Principal { id: id.to_string(), method, provider: None, claim_headers: Vec::new() }
    }
}
