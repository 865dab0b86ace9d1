//! API keys: where they are read, who holds them, and their check. Keys are
//! stored as SHA-256 digests and compared in constant time.

use std::rc::Rc;

use subtle::ConstantTimeEq;

use crate::digest::{sha256, Sha256Digest};
use crate::principal::{AuthMethod, Principal};
use crate::privileges::Privileges;
use crate::reason::Reason;

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
    pub clients: Vec<ApiClient>,
}

#[derive(Debug)]
pub struct ApiClient {
    pub id: String,
    pub key_digest: Sha256Digest,
    pub disabled: bool,
    pub privileges: Rc<Privileges>,
}

impl ApiKeys {
    /// The client a key belongs to. Every client is compared, in constant time, without stopping early.
    pub fn verify(&self, key: &str) -> Result<Principal, Reason> {
        let digest = sha256(key.as_bytes());
        let mut found = None;
        for client in &self.clients {
            if bool::from(digest.ct_eq(&client.key_digest)) {
                found = Some(client);
            }
        }
        match found {
            Some(client) if !client.disabled => {
                Ok(Principal::configured(&client.id, AuthMethod::ApiKey, &client.privileges))
            }
            Some(_) => Err(Reason::ApiKeyDisabled),
            None => Err(Reason::ApiKeyInvalid),
        }
    }

    /// `client-id:api-key` as Basic credentials; None when `id` is no client's (or Basic is off).
    pub fn verify_as_basic(&self, id: &str, key: &str) -> Option<Result<Principal, Reason>> {
        if !self.allow_basic {
            return None;
        }
        self.verify_pair(id, key)
    }

    /// A client's id and key, given apart (the token endpoint's `client_id` and
    /// `client_secret`); None when `id` is no client's.
    pub fn verify_pair(&self, id: &str, key: &str) -> Option<Result<Principal, Reason>> {
        let client = self.clients.iter().find(|c| c.id == id)?;
        let matches: bool = sha256(key.as_bytes()).ct_eq(&client.key_digest).into();
        Some(match (matches, client.disabled) {
            (true, false) => Ok(Principal::configured(id, AuthMethod::ApiKey, &client.privileges)),
            (true, true) => Err(Reason::ApiKeyDisabled),
            (false, _) => Err(Reason::ApiKeyInvalid),
        })
    }

    /// The API key header a challenge names, when API keys are accepted in headers.
    pub fn challenge_header(&self) -> Option<&str> {
        if self.clients.is_empty() {
            return None;
        }
        self.headers.first().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys {
            headers: vec!["x-api-key".into()],
            query_param: None,
            cookies: vec![],
            form_field: None,
            allow_basic: true,
            clients: vec![
                ApiClient { id: "live".into(), key_digest: sha256(b"k1"), disabled: false, privileges: Rc::default() },
                ApiClient {
                    id: "retired".into(),
                    key_digest: sha256(b"k2"),
                    disabled: true,
                    privileges: Rc::default(),
                },
            ],
        }
    }

    #[test]
    fn keys_name_their_client() {
        assert_eq!(keys().verify("k1").map(|p| p.id), Ok("live".to_string()));
        assert_eq!(keys().verify("k2"), Err(Reason::ApiKeyDisabled));
        assert_eq!(keys().verify("k3"), Err(Reason::ApiKeyInvalid));
    }

    #[test]
    fn as_basic_credentials() {
        assert_eq!(keys().verify_as_basic("live", "k1").map(|r| r.map(|p| p.method)), Some(Ok(AuthMethod::ApiKey)));
        assert_eq!(keys().verify_as_basic("live", "k2"), Some(Err(Reason::ApiKeyInvalid)));
        assert_eq!(keys().verify_as_basic("retired", "k2"), Some(Err(Reason::ApiKeyDisabled)));
        assert_eq!(keys().verify_as_basic("nobody", "k1"), None);
        assert_eq!(ApiKeys { allow_basic: false, ..keys() }.verify_as_basic("live", "k1"), None);
    }
}
