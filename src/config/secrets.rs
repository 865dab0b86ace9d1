//! Secrets given in the configuration, or named there as `X_env` and read from an
//! environment variable of the Envoy process (`vm_config.environment_variables`),
//! so that the plugin configuration (an Istio `WasmPlugin`) holds none. The
//! environment comes in as a lookup, so tests choose it. A value is never quoted in
//! an error, nor is it logged.

use serde_json::Value;

use super::error::ConfigError;

/// Reads an environment variable: `std::env::var` in the filter and the CLI, a map in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A secret and the field it came from (`X`, or `X_env`), for the messages about its value.
pub(super) struct Secret {
    pub value: String,
    pub field: String,
}

/// The secret of `{at}.{field}`: given inline, or read from the variable that
/// `{at}.{field}_env` names. None when neither is set; both is an error.
pub(super) fn secret(
    inline: Option<String>,
    variable: Option<&str>,
    at: &str,
    field: &str,
    env: Env,
) -> Result<Option<Secret>, ConfigError> {
    let inline_field = format!("{at}.{field}");
    let env_field = format!("{inline_field}_env");
    match (inline, variable) {
        (Some(_), Some(_)) => Err(both(at, field)),
        (Some(value), None) => Ok(Some(Secret { value, field: inline_field })),
        (None, Some(name)) => Ok(Some(Secret { value: from_env(name, &env_field, env)?, field: env_field })),
        (None, None) => Ok(None),
    }
}

fn both(at: &str, field: &str) -> ConfigError {
    ConfigError::new(format!("{at}.{field}_env"), format!("set {field} or {field}_env, not both"))
}

/// A secret the configuration must give, one way or the other.
pub(super) fn required(
    inline: Option<String>,
    variable: Option<&str>,
    at: &str,
    field: &str,
    env: Env,
) -> Result<Secret, ConfigError> {
    secret(inline, variable, at, field, env)?
        .ok_or_else(|| ConfigError::new(at, format!("missing field `{field}` (or `{field}_env`)")))
}

/// The value of variable `name`, without surrounding whitespace (a mounted file's newline).
fn from_env(name: &str, field: &str, env: Env) -> Result<String, ConfigError> {
    let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(ConfigError::new(field, "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"));
    }
    let value = env(name).ok_or_else(|| ConfigError::new(field, format!("environment variable {name} is not set")))?;
    let value = value.trim();
    if value.is_empty() {
        return Err(ConfigError::new(field, format!("environment variable {name} is empty")));
    }
    Ok(value.to_string())
}

/// `token_endpoint.signing_key`: a JWK object or PEM text; from a variable, the JWK as
/// JSON text or the PEM text itself.
pub(super) fn signing_key(
    inline: Option<Value>,
    variable: Option<&str>,
    env: Env,
) -> Result<(Value, String), ConfigError> {
    const AT: &str = "token_endpoint";
    match (inline, variable) {
        (Some(_), Some(_)) => return Err(both(AT, "signing_key")),
        (Some(inline), None) => return Ok((inline, format!("{AT}.signing_key"))),
        (None, _) => {}
    }
    let key = required(None, variable, AT, "signing_key", env)?;
    if !key.value.starts_with('{') {
        return Ok((Value::String(key.value), key.field));
    }
    match serde_json::from_slice::<Value>(key.value.as_bytes()) {
        Ok(jwk @ Value::Object(_)) => Ok((jwk, key.field)),
        _ => Err(ConfigError::new(key.field, "holds neither a JWK (a JSON object) nor PEM text")),
    }
}

/// An inline JWKS whose `oct` keys may name their secret as `k_env`: each such `k`
/// read from the environment into the key (in place: a key set is not copied); the
/// paths of the keys so read.
pub(super) fn jwks(jwks: &mut Value, at: &str, env: Env) -> Result<Vec<String>, ConfigError> {
    let mut read = Vec::new();
    let entries = jwks.get_mut("keys").and_then(Value::as_array_mut).into_iter().flatten();
    for (i, key) in entries.enumerate() {
        let Some(jwk) = key.as_object_mut() else { continue };
        let Some(variable) = jwk.get("k_env") else { continue };
        let key_at = format!("{at}.keys[{i}]");
        let Some(name) = variable.as_str() else {
            return Err(ConfigError::new(format!("{key_at}.k_env"), "must be an environment variable name"));
        };
        if jwk.get("kty").and_then(Value::as_str) != Some("oct") {
            return Err(ConfigError::new(format!("{key_at}.k_env"), "only an oct key has a secret (k)"));
        }
        if jwk.contains_key("k") {
            return Err(both(&key_at, "k"));
        }
        let k = from_env(name, &format!("{key_at}.k_env"), env)?;
        jwk.insert("k".to_string(), Value::String(k));
        read.push(key_at);
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HASH" => Some("sha256:00\n".to_string()),
            "BLANK" => Some(" \n".to_string()),
            _ => None,
        }
    }

    fn read(inline: Option<&str>, variable: Option<&str>) -> Result<Option<(String, String)>, String> {
        secret(inline.map(String::from), variable, "basic.users[0]", "password_hash", &env)
            .map(|found| found.map(|s| (s.value, s.field)))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn inline_or_from_the_environment() {
        let inline = Some(("sha256:11".to_string(), "basic.users[0].password_hash".to_string()));
        assert_eq!(read(Some("sha256:11"), None), Ok(inline));
        let from_env = Some(("sha256:00".to_string(), "basic.users[0].password_hash_env".to_string()));
        assert_eq!(read(None, Some("HASH")), Ok(from_env));
        assert_eq!(read(None, None), Ok(None));
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let field = "basic.users[0].password_hash_env";
        let cases = [
            (Some("x"), Some("HASH"), format!("{field}: set password_hash or password_hash_env, not both")),
            (None, Some("MISSING"), format!("{field}: environment variable MISSING is not set")),
            (None, Some("BLANK"), format!("{field}: environment variable BLANK is empty")),
            (None, Some("1X"), format!("{field}: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")),
            (None, Some("A-B"), format!("{field}: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")),
        ];
        for (inline, variable, expected) in cases {
            assert_eq!(read(inline, variable), Err(expected));
        }
        let missing = required(None, None, "basic.users[0]", "password_hash", &env).err().map(|e| e.to_string());
        assert_eq!(missing.as_deref(), Some("basic.users[0]: missing field `password_hash` (or `password_hash_env`)"));
    }
}
