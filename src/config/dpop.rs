//! `dpop` of a provider, a keypair or the token endpoint, read from the JSON value by
//! hand (as `mtls`, for size): `"allowed"`, `"required"`, or an object with `mode`,
//! `max_age_seconds` and `algorithms`; `schema::RawDpopSetting` is its schema.

use serde_json::Value;

use super::error::ConfigError;
use crate::jwt::{Algorithm, Dpop};

const FIELDS: &[&str] = &["mode", "max_age_seconds", "algorithms"];
const DEFAULT_ALGORITHMS: [Algorithm; 4] = [Algorithm::ES256, Algorithm::RS256, Algorithm::PS256, Algorithm::EdDSA];

/// A `dpop` setting, whose errors name `path` (`jwt.providers[0].dpop`).
pub(super) fn compile(raw: &Value, path: &str) -> Result<Dpop, ConfigError> {
    let mode_only;
    let fields = match raw {
        Value::Object(fields) => fields,
        Value::String(_) => {
            mode_only = serde_json::Map::from_iter([("mode".to_string(), raw.clone())]);
            &mode_only
        }
        _ => return Err(ConfigError::new(path, "must be \"allowed\", \"required\" or an object")),
    };
    if let Some(unknown) = fields.keys().find(|name| !FIELDS.contains(&name.as_str())) {
        return Err(ConfigError::new(format!("{path}.{unknown}"), "unknown field"));
    }
    let field = |name: &str| fields.get(name).filter(|value| !value.is_null());
    let required = match field("mode").map(Value::as_str) {
        None | Some(Some("allowed")) => false,
        Some(Some("required")) => true,
        Some(_) if raw.is_string() => return Err(ConfigError::new(path, "must be \"allowed\" or \"required\"")),
        Some(_) => return Err(ConfigError::new(format!("{path}.mode"), "must be \"allowed\" or \"required\"")),
    };
    let max_age_seconds = match field("max_age_seconds") {
        None => 60,
        Some(value) => value
            .as_u64()
            .filter(|seconds| (1..=300).contains(seconds))
            .ok_or_else(|| ConfigError::new(format!("{path}.max_age_seconds"), "must be between 1 and 300"))?,
    };
    let algorithms = match field("algorithms") {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(value) => {
            let at = format!("{path}.algorithms");
            let names = value.as_array().filter(|names| !names.is_empty());
            let names = names.ok_or_else(|| ConfigError::new(&at, "must be a non-empty list of algorithms"))?;
            let mut algorithms = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let algorithm =
                    name.as_str().and_then(Algorithm::from_name).filter(|alg| !alg.name().starts_with("HS"));
                algorithms.push(algorithm.ok_or_else(|| {
                    ConfigError::new(
                        format!("{at}[{i}]"),
                        "must be an asymmetric algorithm (RS*, PS*, ES256, ES384, EdDSA)",
                    )
                })?);
            }
            algorithms
        }
    };
    Ok(Dpop { required, max_age_seconds, algorithms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_field() {
        let error =
            |raw: Value| compile(&raw, "jwt.providers[0].dpop").err().map(|e| format!("{}: {}", e.path, e.message));
        assert_eq!(
            error(json!({"mode": "always"})).as_deref(),
            Some("jwt.providers[0].dpop.mode: must be \"allowed\" or \"required\"")
        );
        assert_eq!(error(json!({"nonce": true})).as_deref(), Some("jwt.providers[0].dpop.nonce: unknown field"));
        assert!(error(json!({"algorithms": ["HS256"]}))
            .is_some_and(|e| e.starts_with("jwt.providers[0].dpop.algorithms[0]: must be an asymmetric")));
        assert!(error(json!({"max_age_seconds": 0})).is_some());
        assert_eq!(
            error(json!("always")).as_deref(),
            Some("jwt.providers[0].dpop: must be \"allowed\" or \"required\"")
        );
        assert!(error(json!(true)).is_some_and(|e| e.starts_with("jwt.providers[0].dpop: must be")));
        for required in [json!({"mode": "required"}), json!("required")] {
            let dpop = compile(&required, "p").unwrap();
            assert!(dpop.required && dpop.max_age_seconds == 60 && dpop.algorithms.len() == 4);
        }
        let dpop = compile(&json!({"max_age_seconds": 30, "algorithms": ["EdDSA"]}), "p").unwrap();
        assert!(!dpop.required && dpop.max_age_seconds == 30 && dpop.algorithms == [Algorithm::EdDSA]);
    }
}
