//! Basic users as configured (`basic.users[]`, `basic.htpasswd`) and as fetched
//! (`basic.remote`): one compilation for both, so a fetched user means what a
//! configured one does.

use std::collections::HashSet;
use std::rc::Rc;

use serde::Deserialize;

use super::error::ConfigError;
use super::names::principal_name;
use super::policy;
use super::schema::RawUser;
use super::secrets::{self, Env, Secret};
use crate::basic::BasicUsers;
use crate::password::PasswordHash;
use crate::pipeline::limits::Limits;
use crate::privileges::Privileges;
use crate::remote::Parse;

/// `users[]` entries and htpasswd lines under `at` (`basic.` or nothing); a name in
/// `taken` is refused as one listed twice is.
pub(super) fn compile_users(
    raw: Vec<RawUser>,
    htpasswd: Option<Secret>,
    at: &str,
    limits: &Limits,
    env: Env,
    taken: &HashSet<String>,
) -> Result<BasicUsers, ConfigError> {
    let mut users = BasicUsers::default();
    let mut add = |name: String, hash, privileges| {
        if taken.contains(&name) {
            return Err("is a configured user");
        }
        match users.insert(name, hash, privileges) {
            true => Ok(()),
            false => Err("duplicate user name"),
        }
    };
    for (i, mut user) in raw.into_iter().enumerate() {
        let fields = user.privilege_fields();
        let path = format!("{at}users[{i}]");
        principal_name(&user.name, &format!("{path}.name"))?;
        let stored =
            secrets::required(user.password_hash, user.password_hash_env.as_deref(), &path, "password_hash", env)?;
        let hash = PasswordHash::parse(&stored.value).map_err(|e| ConfigError::new(stored.field, e))?;
        let privileges = policy::privileges(fields, limits, &path)?;
        add(user.name, hash, Rc::new(privileges)).map_err(|e| ConfigError::new(format!("{path}.name"), e))?;
    }
    if let Some(htpasswd) = htpasswd {
        // htpasswd users take the defaults: no restriction but the default limits.
        let everything = Rc::new(Privileges { limits: *limits, ..Privileges::default() });
        super::name_lines(&htpasswd, "expected name:hash", &mut |name, hash| {
            let hash = PasswordHash::parse(hash)?;
            add(name.to_string(), hash, Rc::clone(&everything)).map_err(String::from)
        })?;
    }
    Ok(users)
}

/// The fetched document, as written: the configuration's two forms.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUserDocument {
    #[serde(default)]
    users: Vec<RawUser>,
    htpasswd: Option<String>,
}

/// How `basic.remote`'s body becomes users: entries compiled as configured ones (the
/// server-wide limits their default), names unique and none a configured user's.
pub(super) fn document_parser(limits: Limits, configured: HashSet<String>) -> Parse<BasicUsers> {
    Rc::new(move |body: &[u8]| {
        let not_a_document =
            |e: String| format!("not a user document ({{\"users\": [...], \"htpasswd\": \"...\"}}): {e}");
        let raw: RawUserDocument = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| not_a_document(e.to_string()))?;
        if let Some(i) = raw.users.iter().position(|user| user.password_hash_env.is_some()) {
            return Err(not_a_document(format!("users[{i}].password_hash_env: not in a fetched document")));
        }
        let htpasswd = raw.htpasswd.map(|value| Secret { value, field: "htpasswd".into() });
        let no_environment: Env = &|_| None;
        compile_users(raw.users, htpasswd, "", &limits, no_environment, &configured)
            .map_err(|e| not_a_document(e.to_string()))
    })
}
