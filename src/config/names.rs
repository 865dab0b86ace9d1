//! Names the configuration gives: HTTP header names, parameter and cookie names,
//! user names and client ids.

use super::error::ConfigError;
use crate::principal::is_plain_name;

/// Validate an HTTP header name (RFC 9110 token) and return it lowercased.
pub(super) fn header_name(name: &str, path: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(ConfigError::new(path, "is not a valid header name"));
    }
    Ok(name.to_ascii_lowercase())
}

/// A query parameter name that carries a credential: what a query may hold without
/// percent-encoding (RFC 3986 `pchar`) but the bytes form parsers give a meaning (`&`,
/// `=`, `;` separate, `+` is a space, `%` escapes, `[` starts a PHP array), so that
/// its every spelling (`query::lenient_name`) is known: CData Arc's `@authtoken` is one.
/// A client may still send it percent-encoded (`%40authtoken`): it is read as itself.
pub(super) fn param_name(name: &str, path: &str) -> Result<(), ConfigError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$'()*,:@".contains(&b)) {
        return Err(ConfigError::new(path, "must be a non-empty name of [A-Za-z0-9] and -._~!$'()*,:@"));
    }
    Ok(())
}

/// A cookie name that carries a credential: a plain name (RFC 6265 tokens exclude
/// `@`, `:` and parentheses; PHP percent-decodes names), so that its every spelling is known.
pub(super) fn cookie_name(name: &str, path: &str) -> Result<(), ConfigError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(ConfigError::new(path, "must be a non-empty name of [A-Za-z0-9-_.]"));
    }
    Ok(())
}

/// A user name, client id, keypair id or provider name: what names a principal.
pub(super) fn principal_name(name: &str, path: &str) -> Result<(), ConfigError> {
    if !is_plain_name(name) {
        return Err(ConfigError::new(path, "must be non-empty, without ':', control characters or surrounding spaces"));
    }
    Ok(())
}

/// A value that must not be blank.
pub(super) fn non_empty(value: &str, path: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(path, "must not be empty"));
    }
    Ok(())
}
