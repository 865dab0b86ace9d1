//! The HTTP Basic scheme (RFC 7617), read and offered in one place: the
//! `Authorization: Basic` of a request (a user, an API client's `id:key`, the
//! token endpoint's `client_id:client_secret`) and the challenge of a 401.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Why `Basic` credentials could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BasicError {
    NotBase64,
    NotUtf8,
    NoColon,
}

/// Whether an `Authorization` value is Basic (schemes are case-insensitive, RFC 9110 11.1).
pub(crate) fn is_basic(value: &str) -> bool {
    let scheme = value.trim_start().split([' ', '\t']).next().unwrap_or("");
    scheme.eq_ignore_ascii_case("basic")
}

/// The user-id and password of a Basic `Authorization` value (its scheme checked by `is_basic`).
pub(crate) fn credentials(value: &str) -> Result<(String, String), BasicError> {
    let encoded = value.trim().split_once([' ', '\t']).map_or("", |(_, rest)| rest.trim_start());
    let decoded = STANDARD.decode(encoded).map_err(|_| BasicError::NotBase64)?;
    let text = String::from_utf8(decoded).map_err(|_| BasicError::NotUtf8)?;
    // The user-id ends at the first colon; the password may contain colons.
    let (user, password) = text.split_once(':').ok_or(BasicError::NoColon)?;
    Ok((user.to_string(), password.to_string()))
}

/// The `WWW-Authenticate` challenge of Basic in `realm`.
pub(crate) fn challenge(realm: &str) -> String {
    format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> String {
        format!("Basic {}", STANDARD.encode(text))
    }

    #[test]
    fn the_scheme_is_read_in_any_case_after_any_blank() {
        assert!(is_basic("Basic abc") && is_basic("basic abc") && is_basic("  BASIC\tabc") && is_basic("Basic"));
        assert!(!is_basic("Bearer abc") && !is_basic("Basically abc") && !is_basic(""));
    }

    #[test]
    fn the_user_id_ends_at_the_first_colon() {
        assert_eq!(credentials(&basic("alice:pa:ss")), Ok(("alice".into(), "pa:ss".into())));
        assert_eq!(credentials(&format!(" basic\t {} ", STANDARD.encode("a:"))), Ok(("a".into(), String::new())));
        assert_eq!(credentials(&basic("alice")), Err(BasicError::NoColon));
        assert_eq!(credentials("Basic"), Err(BasicError::NoColon));
        assert_eq!(credentials("Basic %%%"), Err(BasicError::NotBase64));
        assert_eq!(credentials(&format!("Basic {}", STANDARD.encode([0xff, b':', b'x']))), Err(BasicError::NotUtf8));
    }

    #[test]
    fn the_challenge_names_the_realm_and_utf8() {
        assert_eq!(challenge("api"), "Basic realm=\"api\", charset=\"UTF-8\"");
    }
}
