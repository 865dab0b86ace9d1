//! The `mtls` section: which certificate name is the principal, which names are
//! admitted, and their privileges. Read from the JSON value by hand, not by a serde
//! derive: the module then carries no deserializer of its own for it (about 12 KB).
//! `schema::RawMtls` is its schema; a test keeps the two on the same fields.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{Map, Value};

use super::error::ConfigError;
use super::policy;
use crate::mtls::{Mtls, NameSource};
use crate::pipeline::limits::Limits;
use crate::pipeline::route::{Kind, Rule};
use crate::privileges::Privileges;

const SECTION_FIELDS: &[&str] = &["principal_from", "principals", "allow_prefixes"];
const PRINCIPAL_FIELDS: &[&str] =
    &["name", "methods", "paths", "scopes", "trusted_networks", "requests_per_hour", "max_concurrent"];

pub(crate) fn compile(raw: &Value, limits: &Limits) -> Result<Mtls, ConfigError> {
    let section = object(raw, "mtls", SECTION_FIELDS)?;
    let name_from = match present(section, "principal_from") {
        None => NameSource::UriSan,
        Some(value) => value.as_str().and_then(NameSource::from_name).ok_or_else(|| {
            ConfigError::new("mtls.principal_from", "must be \"uri_san\", \"dns_san\" or \"subject_cn\"")
        })?,
    };
    let listed = match present(section, "principals") {
        None => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => return Err(ConfigError::new("mtls.principals", "must be a list of principals")),
    };
    let mut principals = HashMap::with_capacity(listed.len());
    let mut privileges = Vec::with_capacity(listed.len());
    for (i, item) in listed.iter().enumerate() {
        let path = format!("mtls.principals[{i}]");
        let fields = object(item, &path, PRINCIPAL_FIELDS)?;
        let name = present(fields, "name").and_then(Value::as_str).filter(|name| usable(name)).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.name"),
                "must be non-empty, without control characters or surrounding spaces",
            )
        })?;
        let raw = super::schema::PrivilegeFields {
            methods: strings(fields, &path, "methods")?,
            paths: strings(fields, &path, "paths")?,
            scopes: strings(fields, &path, "scopes")?.unwrap_or_default(),
            trusted_networks: strings(fields, &path, "trusted_networks")?,
            requests_per_hour: count(fields, &path, "requests_per_hour")?,
            max_concurrent: count(fields, &path, "max_concurrent")?,
        };
        if principals.insert(name.to_string(), privileges.len()).is_some() {
            return Err(ConfigError::new(format!("{path}.name"), "duplicate principal name"));
        }
        privileges.push(Rc::new(policy::privileges(raw, limits, &path)?));
    }
    let allow_prefixes = strings(section, "mtls", "allow_prefixes")?.unwrap_or_default();
    if let Some(i) = allow_prefixes.iter().position(|prefix| !usable(prefix)) {
        return Err(ConfigError::new(
            format!("mtls.allow_prefixes[{i}]"),
            "must be non-empty, without control characters or surrounding spaces",
        ));
    }
    Ok(Mtls {
        name_from,
        principals,
        privileges,
        allow_prefixes,
        defaults: Rc::new(Privileges { limits: *limits, ..Privileges::default() }),
    })
}

fn usable(name: &str) -> bool {
    !name.is_empty() && name.trim() == name && !name.chars().any(char::is_control)
}

/// An object whose fields are all known (as serde's `deny_unknown_fields`).
fn object<'a>(value: &'a Value, path: &str, known: &[&str]) -> Result<&'a Map<String, Value>, ConfigError> {
    let Value::Object(fields) = value else { return Err(ConfigError::new(path, "must be an object")) };
    match fields.keys().find(|name| !known.contains(&name.as_str())) {
        Some(unknown) => Err(ConfigError::new(format!("{path}.{unknown}"), "unknown field")),
        None => Ok(fields),
    }
}

/// A field, absent when missing or null (as serde reads an `Option`).
fn present<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|value| !value.is_null())
}

/// Field `name` of the object at `path`: a list of strings, or absent.
fn strings(fields: &Map<String, Value>, path: &str, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(value) = present(fields, name) else { return Ok(None) };
    let items = value.as_array().and_then(|items| items.iter().map(|item| item.as_str().map(String::from)).collect());
    items.map(Some).ok_or_else(|| ConfigError::new(format!("{path}.{name}"), "must be a list of strings"))
}

/// Field `name` of the object at `path`: a whole number, or absent.
fn count(fields: &Map<String, Value>, path: &str, name: &str) -> Result<Option<u64>, ConfigError> {
    let Some(value) = present(fields, name) else { return Ok(None) };
    value.as_u64().map(Some).ok_or_else(|| ConfigError::new(format!("{path}.{name}"), "must be a whole number"))
}

/// Whether a certificate principal's own networks make the client address needed.
pub(crate) fn any_trusted_networks(mtls: &Mtls) -> bool {
    mtls.privileges.iter().any(|privileges| privileges.trusted_networks.is_some())
}

/// A rule may require `"mtls"` only when the `mtls` section says what a certificate names.
pub(crate) fn rules_need_it(rules: &[Rule], configured: bool) -> Result<(), ConfigError> {
    let requires_mtls = |rule: &Rule| rule.require.kinds().is_some_and(|kinds| kinds.contains(&Kind::Mtls));
    match rules.iter().position(requires_mtls) {
        Some(i) if !configured => Err(ConfigError::new(
            format!("rules[{i}].require"),
            "accepts \"mtls\": configure the mtls section (what a client certificate names)",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(raw: Value) -> String {
        match compile(&raw, &Limits::default()) {
            Err(e) => format!("{}: {}", e.path, e.message),
            Ok(_) => "accepted".into(),
        }
    }

    /// The hand reader takes exactly the fields the schema (`schema::RawMtls`) documents.
    #[test]
    fn the_reader_and_the_schema_name_the_same_fields() {
        let schema = crate::config::json_schema();
        let properties = |name: &str| {
            let mut names: Vec<String> = schema["$defs"][name]["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            names.sort();
            names
        };
        let sorted = |fields: &[&str]| {
            let mut names: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            names.sort();
            names
        };
        assert_eq!(properties("RawMtls"), sorted(SECTION_FIELDS));
        assert_eq!(properties("RawMtlsPrincipal"), sorted(PRINCIPAL_FIELDS));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(error(json!([])), "mtls: must be an object");
        assert_eq!(error(json!({"principal": "x"})), "mtls.principal: unknown field");
        assert_eq!(
            error(json!({"principal_from": "san"})),
            "mtls.principal_from: must be \"uri_san\", \"dns_san\" or \"subject_cn\""
        );
        assert_eq!(error(json!({"principals": {}})), "mtls.principals: must be a list of principals");
        assert_eq!(
            error(json!({"principals": [{"name": "a", "password_hash": "x"}]})),
            "mtls.principals[0].password_hash: unknown field"
        );
        assert!(
            error(json!({"principals": [{"name": " a"}]})).starts_with("mtls.principals[0].name: must be non-empty")
        );
        assert!(error(json!({"principals": [{}]})).starts_with("mtls.principals[0].name:"));
        assert_eq!(
            error(json!({"principals": [{"name": "a"}, {"name": "a"}]})),
            "mtls.principals[1].name: duplicate principal name"
        );
        assert_eq!(
            error(json!({"principals": [{"name": "a", "methods": "GET"}]})),
            "mtls.principals[0].methods: must be a list of strings"
        );
        assert_eq!(
            error(json!({"principals": [{"name": "a", "max_concurrent": -1}]})),
            "mtls.principals[0].max_concurrent: must be a whole number"
        );
        assert!(error(json!({"principals": [{"name": "a", "trusted_networks": ["nope"]}]}))
            .starts_with("mtls.principals[0].trusted_networks"));
        assert_eq!(
            error(json!({"allow_prefixes": ["ok/", ""]})),
            "mtls.allow_prefixes[1]: must be non-empty, without control characters or surrounding spaces"
        );
        assert_eq!(
            error(json!({"principal_from": null, "principals": null, "allow_prefixes": ["spiffe://x/"]})),
            "accepted"
        );
    }
}
