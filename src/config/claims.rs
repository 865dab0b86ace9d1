//! `rules[].claims` compiled: the claim table (every claim a condition names, read
//! once per verified token) and each rule's conditions on it. Read from the JSON
//! value here, not by a serde type: that would cost the module 10 KB.

use std::rc::Rc;

use serde_json::{Map, Value};

use super::error::ConfigError;
use super::names::{header_name, non_empty};
use super::schema::RawRule;
use crate::route::Rule;
use crate::token_claims::{scalar_text, ClaimCondition, Test};

/// Most conditions in one rule, and values in one list.
const MAX_CONDITIONS: usize = 64;
const MAX_VALUES: usize = 1_000;

/// Every claim the rules' conditions name, once, in the order first named.
pub fn claim_table(rules: &[RawRule]) -> Rc<[String]> {
    let mut table: Vec<String> = Vec::new();
    let conditions = rules.iter().filter_map(|rule| rule.claims.as_ref()?.as_array()).flatten();
    for claim in conditions.filter_map(|condition| condition.get("claim")?.as_str()) {
        if !table.iter().any(|name| name == claim) {
            table.push(claim.to_string());
        }
    }
    table.into()
}

/// One rule's conditions, at `path` (`rules[i].claims`).
pub fn conditions(raw: Option<&Value>, path: &str, table: &[String]) -> Result<Vec<ClaimCondition>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let Some(items) = raw.as_array().filter(|items| items.len() <= MAX_CONDITIONS) else {
        return Err(ConfigError::new(path, format!("must be a list of at most {MAX_CONDITIONS} conditions")));
    };
    let mut conditions = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let at = format!("{path}[{j}]");
        let Some(fields) = item.as_object() else {
            return Err(ConfigError::new(
                at,
                "must be an object: {\"claim\": ..., and any_of, all_of or equals_header}",
            ));
        };
        conditions.push(condition(fields, &at, table)?);
    }
    Ok(conditions)
}

fn condition(fields: &Map<String, Value>, at: &str, table: &[String]) -> Result<ClaimCondition, ConfigError> {
    let mut claim = None;
    let mut test = None;
    for (key, value) in fields {
        let field = format!("{at}.{key}");
        let compiled = match key.as_str() {
            "claim" => {
                let name = value.as_str().ok_or_else(|| ConfigError::new(&field, "must be a string"))?;
                non_empty(name, &field)?;
                claim = table.iter().position(|known| known == name);
                continue;
            }
            "any_of" => Test::AnyOf(values(value, &field)?),
            "all_of" => Test::AllOf(values(value, &field)?),
            "equals_header" => {
                let name = value.as_str().ok_or_else(|| ConfigError::new(&field, "must be a string"))?;
                Test::EqualsHeader(header_name(name, &field)?)
            }
            _ => return Err(ConfigError::new(field, "unknown field: expected claim, any_of, all_of or equals_header")),
        };
        if test.replace(compiled).is_some() {
            return Err(ConfigError::new(at, "needs exactly one of any_of, all_of and equals_header"));
        }
    }
    match (claim, test) {
        (Some(claim), Some(test)) => Ok(ClaimCondition { claim, test }),
        (None, _) => Err(ConfigError::new(at, "missing field `claim`")),
        (_, None) => Err(ConfigError::new(at, "needs exactly one of any_of, all_of and equals_header")),
    }
}

/// The values a claim is compared with: strings, booleans and numbers, as `scalar_text` writes them.
fn values(raw: &Value, at: &str) -> Result<Vec<String>, ConfigError> {
    let Some(items) = raw.as_array().filter(|items| (1..=MAX_VALUES).contains(&items.len())) else {
        return Err(ConfigError::new(at, format!("must list 1 to {MAX_VALUES} values")));
    };
    let mut texts = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let text = scalar_text(item);
        texts.push(
            text.ok_or_else(|| ConfigError::new(format!("{at}[{k}]"), "must be a string, a number or a boolean"))?,
        );
    }
    Ok(texts)
}

/// An `equals_header` compares what the client sent: never a header the filter sets
/// (it removes the client's copy), whose value would be the filter's own.
pub fn headers_not_owned(rules: &[Rule], owned: &[String]) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        for (j, condition) in rule.claims.iter().enumerate() {
            if matches!(&condition.test, Test::EqualsHeader(header) if owned.contains(header)) {
                let message = "is a header the filter sets (principal, claim or payload header)";
                return Err(ConfigError::new(format!("rules[{i}].claims[{j}].equals_header"), message));
            }
        }
    }
    Ok(())
}
