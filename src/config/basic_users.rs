//! Basic users as configured (`basic.users[]`, `basic.htpasswd`) and as fetched
//! (`basic.remote`): one compilation for both, so a fetched user means what a
//! configured one does.

use std::collections::HashSet;
use std::rc::Rc;

use super::error::ConfigError;
use super::names::principal_name;
use super::policy;
use super::schema::{default_time_budget, RawBasic, RawFailureLimit, RawUser};
use super::secrets::{self, Env, Secret};
use crate::basic::BasicUsers;
use crate::password::PasswordHash;
use crate::pipeline::limits::Limits;
use crate::privileges::Privileges;
use crate::remote::Parse;

/// `users[]` entries and htpasswd lines, their fields under `at` (`basic.` or nothing).
pub(super) fn compile_users(
    raw: Vec<RawUser>,
    htpasswd: Option<Secret>,
    at: &str,
    limits: &Limits,
    env: Env,
) -> Result<BasicUsers, ConfigError> {
    let mut users = BasicUsers::default();
    for (i, mut user) in raw.into_iter().enumerate() {
        let fields = user.privilege_fields();
        let path = format!("{at}users[{i}]");
        principal_name(&user.name, &format!("{path}.name"))?;
        let stored =
            secrets::required(user.password_hash, user.password_hash_env.as_deref(), &path, "password_hash", env)?;
        let hash = PasswordHash::parse(&stored.value).map_err(|e| ConfigError::new(stored.field, e))?;
        let privileges = policy::privileges(fields, limits, &path)?;
        if !users.insert(user.name, hash, Rc::new(privileges)) {
            return Err(ConfigError::new(format!("{path}.name"), "duplicate user name"));
        }
    }
    if let Some(htpasswd) = htpasswd {
        // htpasswd users take the defaults: no restriction but the default limits.
        let everything = Rc::new(Privileges { limits: *limits, ..Privileges::default() });
        super::name_lines(&htpasswd, "expected name:hash", &mut |name, hash| {
            let hash = PasswordHash::parse(hash)?;
            if !users.insert(name.to_string(), hash, Rc::clone(&everything)) {
                return Err("duplicate user name".into());
            }
            Ok(())
        })?;
    }
    Ok(users)
}

/// How `basic.remote`'s body becomes users: a `basic` object of `users[]` and
/// `htpasswd` alone, compiled as configured (the server-wide limits their default),
/// names unique and none a configured user's.
pub(super) fn document_parser(limits: Limits, configured: HashSet<String>) -> Parse<BasicUsers> {
    Rc::new(move |body: &[u8]| {
        let not_a_document =
            |e: &str| format!("not a user document ({{\"users\": [...], \"htpasswd\": \"...\"}}): {e}");
        let raw: RawBasic = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| not_a_document(&e.to_string()))?;
        let settings = raw.failure_limit != RawFailureLimit::default()
            || raw.slow_hash_budget_ms_per_second != default_time_budget();
        let environment = raw.htpasswd_env.is_some() || raw.users.iter().any(|user| user.password_hash_env.is_some());
        if settings || environment || raw.remote.is_some() {
            return Err(not_a_document("only users (with password_hash) and htpasswd are read from a store"));
        }
        let htpasswd = raw.htpasswd.map(|value| Secret { value, field: "htpasswd".into() });
        let no_environment: Env = &|_| None;
        let users = compile_users(raw.users, htpasswd, "", &limits, no_environment)
            .map_err(|e| not_a_document(&e.to_string()))?;
        if let Some(name) = users.name_in(&configured) {
            return Err(not_a_document(&format!("\"{name}\" is a configured user")));
        }
        Ok(users)
    })
}
