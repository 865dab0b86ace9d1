//! `dpop` of a provider, a keypair or the token endpoint, read from the JSON value by
//! hand (as `mtls`, for size): `"allowed"`, `"required"`, or an object with `mode`,
//! `max_age_seconds` and `algorithms`; `schema::RawDpopSetting` is its schema.

use serde_json::Value;

use super::error::ConfigError;
use crate::jwt::{Algorithm, Dpop};

const FIELDS: [&str; 3] = ["mode", "max_age_seconds", "algorithms"];
/// The algorithms of a proof when `algorithms` is not set (the schema's default too).
pub(super) const DEFAULT_ALGORITHMS: &str = "ES256 RS256 PS256 EdDSA";
/// How old a proof may be when `max_age_seconds` is not set (the schema's default too).
pub(super) const DEFAULT_MAX_AGE_SECONDS: u64 = 60;

/// The `dpop` setting at `owner` (`jwt.providers[0]`), if any; errors name `<owner>.dpop...`.
pub(super) fn compile(raw: Option<&Value>, owner: &str) -> Result<Option<Box<Dpop>>, ConfigError> {
    read(raw).map_err(|(field, message)| ConfigError::new(format!("{owner}.dpop{field}"), message))
}

/// The setting, or the field under `dpop` at fault (`""`, `.mode`, ...) and why.
fn read(raw: Option<&Value>) -> Result<Option<Box<Dpop>>, (String, &'static str)> {
    let Some(raw) = raw.filter(|raw| !raw.is_null()) else { return Ok(None) };
    let fault = |field: &str, message| Err((field.to_string(), message));
    let (mode, fields) = match raw {
        Value::String(_) => (Some(raw), None),
        Value::Object(fields) => (fields.get("mode"), Some(fields)),
        _ => return fault("", "must be \"allowed\", \"required\" or an object"),
    };
    let required = match mode.and_then(Value::as_str) {
        None if mode.is_none_or(Value::is_null) => false,
        Some("allowed") => false,
        Some("required") => true,
        _ => return fault(if fields.is_some() { ".mode" } else { "" }, "must be \"allowed\" or \"required\""),
    };
    let mut dpop = Box::new(Dpop {
        required,
        max_age_seconds: DEFAULT_MAX_AGE_SECONDS,
        algorithms: DEFAULT_ALGORITHMS.to_string(),
    });
    let Some(fields) = fields else { return Ok(Some(dpop)) };
    if let Some(unknown) = fields.keys().find(|name| !FIELDS.contains(&name.as_str())) {
        return Err((format!(".{unknown}"), "unknown field"));
    }
    if let Some(value) = fields.get("max_age_seconds").filter(|value| !value.is_null()) {
        match value.as_u64().filter(|seconds| (1..=300).contains(seconds)) {
            Some(seconds) => dpop.max_age_seconds = seconds,
            None => return fault(".max_age_seconds", "must be between 1 and 300"),
        }
    }
    if let Some(value) = fields.get("algorithms").filter(|value| !value.is_null()) {
        let Some(names) = value.as_array().filter(|names| !names.is_empty()) else {
            return fault(".algorithms", "must be a non-empty list of algorithms");
        };
        dpop.algorithms.clear();
        for (i, name) in names.iter().enumerate() {
            let Some(algorithm) =
                name.as_str().and_then(Algorithm::from_name).filter(|alg| !alg.name().starts_with("HS"))
            else {
                return Err((
                    format!(".algorithms[{i}]"),
                    "must be an asymmetric algorithm (RS*, PS*, ES256, ES384, EdDSA)",
                ));
            };
            if i > 0 {
                dpop.algorithms.push(' ');
            }
            dpop.algorithms.push_str(algorithm.name());
        }
    }
    Ok(Some(dpop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_field() {
        let error =
            |raw: Value| compile(Some(&raw), "jwt.providers[0]").err().map(|e| format!("{}: {}", e.path, e.message));
        assert_eq!(
            error(json!({"mode": "always"})).as_deref(),
            Some("jwt.providers[0].dpop.mode: must be \"allowed\" or \"required\"")
        );
        assert_eq!(error(json!({"nonce": true})).as_deref(), Some("jwt.providers[0].dpop.nonce: unknown field"));
        assert!(error(json!({"algorithms": ["HS256"]}))
            .is_some_and(|e| e.starts_with("jwt.providers[0].dpop.algorithms[0]: must be an asymmetric")));
        assert!(error(json!({"max_age_seconds": 0})).is_some());
        assert_eq!(compile(None, "p"), Ok(None));
        assert_eq!(compile(Some(&Value::Null), "p"), Ok(None));
        assert_eq!(
            error(json!("always")).as_deref(),
            Some("jwt.providers[0].dpop: must be \"allowed\" or \"required\"")
        );
        assert!(error(json!(true)).is_some_and(|e| e.starts_with("jwt.providers[0].dpop: must be")));
        for required in [json!({"mode": "required"}), json!("required")] {
            let dpop = compile(Some(&required), "p").unwrap().unwrap();
            assert!(dpop.required && dpop.max_age_seconds == 60 && dpop.algorithms == DEFAULT_ALGORITHMS);
        }
        let dpop = compile(Some(&json!({"max_age_seconds": 30, "algorithms": ["EdDSA"]})), "p").unwrap().unwrap();
        assert!(!dpop.required && dpop.max_age_seconds == 30 && dpop.algorithms == "EdDSA");
    }
}
