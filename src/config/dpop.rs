//! `dpop` of a provider, a keypair or the token endpoint, read from the JSON value by
//! hand (as `mtls`, for size): `"allowed"`, `"required"`, or an object with `mode`,
//! `max_age_seconds` and `algorithms`; `schema::RawDpopSetting` is its schema.

use serde_json::Value;

use super::error::ConfigError;
use crate::jwt::{Algorithm, Dpop};

const FIELDS: [&str; 3] = ["mode", "max_age_seconds", "algorithms"];
const DEFAULT_ALGORITHMS: &str = "ES256 RS256 PS256 EdDSA";
const MODES: &str = "must be \"allowed\" or \"required\"";

/// The `dpop` setting at `owner` (`jwt.providers[0]`), if any; errors name `<owner>.dpop...`.
pub(super) fn compile(raw: Option<&Value>, owner: &str) -> Result<Option<Dpop>, ConfigError> {
    let Some(raw) = raw.filter(|raw| !raw.is_null()) else { return Ok(None) };
    let at = |field: &str| format!("{owner}.dpop{field}");
    let (mode, fields) = match raw {
        Value::String(_) => (Some(raw), None),
        Value::Object(fields) => (fields.get("mode"), Some(fields)),
        _ => return Err(ConfigError::new(at(""), "must be \"allowed\", \"required\" or an object")),
    };
    let mode_at = if fields.is_some() { ".mode" } else { "" };
    let required = match mode.and_then(Value::as_str) {
        None if mode.is_none_or(Value::is_null) => false,
        Some("allowed") => false,
        Some("required") => true,
        _ => return Err(ConfigError::new(at(mode_at), MODES)),
    };
    let mut dpop = Dpop { required, max_age_seconds: 60, algorithms: DEFAULT_ALGORITHMS.to_string() };
    let Some(fields) = fields else { return Ok(Some(dpop)) };
    if let Some(unknown) = fields.keys().find(|name| !FIELDS.contains(&name.as_str())) {
        return Err(ConfigError::new(at(&format!(".{unknown}")), "unknown field"));
    }
    if let Some(value) = fields.get("max_age_seconds").filter(|value| !value.is_null()) {
        dpop.max_age_seconds = value
            .as_u64()
            .filter(|seconds| (1..=300).contains(seconds))
            .ok_or_else(|| ConfigError::new(at(".max_age_seconds"), "must be between 1 and 300"))?;
    }
    if let Some(value) = fields.get("algorithms").filter(|value| !value.is_null()) {
        let names = value.as_array().filter(|names| !names.is_empty());
        let names =
            names.ok_or_else(|| ConfigError::new(at(".algorithms"), "must be a non-empty list of algorithms"))?;
        dpop.algorithms.clear();
        for (i, name) in names.iter().enumerate() {
            match name.as_str().and_then(Algorithm::from_name).filter(|alg| !alg.name().starts_with("HS")) {
                Some(algorithm) => {
                    if i > 0 {
                        dpop.algorithms.push(' ');
                    }
                    dpop.algorithms.push_str(algorithm.name());
                }
                None => {
                    let message = "must be an asymmetric algorithm (RS*, PS*, ES256, ES384, EdDSA)";
                    return Err(ConfigError::new(at(&format!(".algorithms[{i}]")), message));
                }
            }
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
