//! API clients as configured (`api_keys.clients[]`) and as fetched (`api_keys.remote`):
//! one compilation for both, so a fetched client means what a configured one does.

use std::collections::HashSet;
use std::rc::Rc;

use serde::Deserialize;

use super::error::ConfigError;
use super::names::principal_name;
use super::policy;
use super::schema::RawApiClient;
use super::secrets::{self, Env};
use crate::api_key::{ApiClient, Clients};
use crate::password::PasswordHash;
use crate::pipeline::limits::Limits;
use crate::remote::Parse;

/// One `clients[]` entry at `path`.
pub(super) fn compile_client(
    mut client: RawApiClient,
    path: &str,
    limits: &Limits,
    env: Env,
) -> Result<ApiClient, ConfigError> {
    principal_name(&client.id, &format!("{path}.id"))?;
    let fields = client.privilege_fields();
    let stored = secrets::required(client.key_hash, client.key_hash_env.as_deref(), path, "key_hash", env)?;
    let key_digest = api_key_digest(&stored.value).map_err(|e| ConfigError::new(stored.field, e))?;
    let privileges = policy::privileges(fields, limits, path)?;
    Ok(ApiClient { id: client.id, key_digest, disabled: client.disabled, privileges: Rc::new(privileges) })
}

pub(super) fn api_key_digest(stored: &str) -> Result<crate::digest::Sha256Digest, String> {
    match PasswordHash::parse(stored)? {
        PasswordHash::Sha256(digest) => Ok(digest),
        _ => Err("API keys are hashed as sha256:<hex>".into()),
    }
}

/// The fetched document, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientDocument {
    clients: Vec<RawApiClient>,
}

/// How `api_keys.remote`'s body becomes clients: entries compiled as configured ones
/// (the server-wide limits their default), ids and keys unique and none a configured
/// client's.
pub(super) fn document_parser(limits: Limits, configured: Rc<Clients>) -> Parse<Clients> {
    Rc::new(move |body: &[u8]| {
        let not_a_document = |e: String| format!("not an API client document ({{\"clients\": [...]}}): {e}");
        let raw: RawClientDocument = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| not_a_document(e.to_string()))?;
        let no_environment: Env = &|_| None;
        let mut ids = HashSet::with_capacity(raw.clients.len());
        let mut clients = Vec::with_capacity(raw.clients.len());
        for (i, client) in raw.clients.into_iter().enumerate() {
            let path = format!("clients[{i}]");
            if client.key_hash_env.is_some() {
                return Err(not_a_document(format!("{path}.key_hash_env: not in a fetched document")));
            }
            if configured.by_id(&client.id).is_some() {
                return Err(not_a_document(format!("{path}.id: \"{}\" is a configured client", client.id)));
            }
            if !ids.insert(client.id.clone()) {
                return Err(not_a_document(format!("{path}.id: duplicate client id")));
            }
            let client =
                compile_client(client, &path, &limits, no_environment).map_err(|e| not_a_document(e.to_string()))?;
            clients.push(client);
        }
        Clients::new(clients, &configured).map_err(|shared| not_a_document(shared_key(shared)))
    })
}

/// Why clients that hold one key are refused.
pub(super) fn shared_key((earlier, later): (String, String)) -> String {
    format!(
        "clients \"{earlier}\" and \"{later}\" hold the same key: give each client its own (wasm-authn new-api-key)"
    )
}
