//! `rules[].claims` compiled: the claim table (every claim a condition names, read
//! once per verified token) and each rule's conditions on it. Read from the JSON
//! value here, not by a serde type: that would cost the module 10 KB.

use std::rc::Rc;

use serde_json::Value;

use super::error::ConfigError;
use super::names::header_name;
use super::schema::RawRule;
use crate::route::{Require, Rule};
use crate::token_claims::{scalar_text, ClaimCondition, Test};

/// Most conditions in one rule, and values in one list (each said in its refusal).
const MAX_CONDITIONS: usize = 64;
const TOO_MANY_CONDITIONS: &str = "must be a list of at most 64 conditions";
const MAX_VALUES: usize = 1_000;
const TOO_MANY_VALUES: &str = "must list 1 to 1000 values";

/// Every claim the rules' conditions name, once, in the order first named.
pub fn claim_table(rules: &[RawRule]) -> Rc<Vec<String>> {
    let mut table: Vec<String> = Vec::new();
    for rule in rules {
        for condition in rule.claims.as_ref().and_then(Value::as_array).into_iter().flatten() {
            if let Some(claim) = condition.get("claim").and_then(Value::as_str) {
                if !table.iter().any(|name| name == claim) {
                    table.push(claim.to_string());
                }
            }
        }
    }
    Rc::new(table)
}

/// The conditions of `rules[i]`, which requires `require`.
pub fn conditions(
    raw: Option<&Value>,
    i: usize,
    require: &Require,
    table: &[String],
) -> Result<Vec<ClaimCondition>, ConfigError> {
    let mut conditions = Vec::new();
    let refused = match raw {
        None => return Ok(conditions),
        Some(_) if *require == Require::None => ("", "a rule that requires nothing cannot test claims".to_string()),
        Some(Value::Array(items)) if items.len() <= MAX_CONDITIONS => {
            for (j, item) in items.iter().enumerate() {
                match condition(item, table) {
                    Ok(condition) => conditions.push(condition),
                    Err((field, message)) => {
                        return Err(ConfigError::new(format!("rules[{i}].claims[{j}]{field}"), message))
                    }
                }
            }
            return Ok(conditions);
        }
        Some(_) => (".claims", TOO_MANY_CONDITIONS.to_string()),
    };
    Err(ConfigError::new(format!("rules[{i}]{}", refused.0), refused.1))
}

/// A condition, or where it is wrong (`.any_of[2]`, or "" for the whole) and why.
fn condition(item: &Value, table: &[String]) -> Result<ClaimCondition, (String, &'static str)> {
    const ONE_TEST: &str = "needs exactly one of any_of, all_of and equals_header";
    let fields = item.as_object().ok_or((String::new(), "must be an object: a claim, and a test"))?;
    let mut claim = None;
    let mut test = None;
    for (key, value) in fields {
        let field = || format!(".{key}");
        let text = || value.as_str().ok_or((field(), "must be a string"));
        let compiled = match key.as_str() {
            "claim" => {
                let name = text()?;
                if name.trim().is_empty() {
                    return Err((field(), "must not be empty"));
                }
                claim = table.iter().position(|known| known == name);
                continue;
            }
            "any_of" => Test::AnyOf(values(value).map_err(|(at, why)| (field() + &at, why))?),
            "all_of" => Test::AllOf(values(value).map_err(|(at, why)| (field() + &at, why))?),
            "equals_header" => {
                let name = header_name(text()?, "").map_err(|_| (field(), "is not a valid header name"))?;
                Test::EqualsHeader(name)
            }
            _ => return Err((field(), "unknown field: expected claim, any_of, all_of or equals_header")),
        };
        if test.replace(compiled).is_some() {
            return Err((String::new(), ONE_TEST));
        }
    }
    match (claim, test) {
        (Some(claim), Some(test)) => Ok(ClaimCondition { claim, test }),
        (None, _) => Err((String::new(), "missing field `claim`")),
        (_, None) => Err((String::new(), ONE_TEST)),
    }
}

/// The values a claim is compared with: strings, booleans and numbers, as `scalar_text` writes them.
fn values(raw: &Value) -> Result<Vec<String>, (String, &'static str)> {
    let items = raw.as_array().filter(|items| (1..=MAX_VALUES).contains(&items.len()));
    let items = items.ok_or((String::new(), TOO_MANY_VALUES))?;
    let mut texts = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        texts.push(scalar_text(item).ok_or_else(|| (format!("[{k}]"), "must be a string, a number or a boolean"))?);
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
