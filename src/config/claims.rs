//! `rules[].claims` compiled: the claim table (every claim a condition names, read
//! once per verified token) and each rule's conditions on it. Read from the JSON
//! value here, not by a serde type: that would cost the module 10 KB.

use std::rc::Rc;

use serde_json::Value;

use super::error::ConfigError;
use super::names::header_name;
use super::schema::RawRule;
use crate::pipeline::route::{Kind, Require};
use crate::token_claims::{scalar_text, ClaimCondition, Test};

/// Most conditions in one rule, and values in one list (each said in its refusal).
const MAX_CONDITIONS: usize = 64;
const TOO_MANY_CONDITIONS: &str = "must be a list of at most 64 conditions";
const MAX_VALUES: usize = 1_000;
const TOO_MANY_VALUES: &str = "must list 1 to 1000 values";

/// Every claim the rules' conditions name, once, in the order first named.
pub(super) fn claim_table(rules: &[RawRule]) -> Rc<Vec<String>> {
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

/// The conditions of `rules[i]`, which requires `require`; `owned`: the headers the filter sets.
pub(super) fn conditions(
    raw: Option<&Value>,
    i: usize,
    require: &Require,
    table: &[String],
    owned: &[String],
) -> Result<Vec<ClaimCondition>, ConfigError> {
    let mut conditions = Vec::new();
    let refused = match raw {
        None => return Ok(conditions),
        Some(_) if *require == Require::None => ("", "a rule that requires nothing cannot test claims".to_string()),
        // Only identity providers' tokens carry claims, and they are judged on the
        // principal's credential: the conditions could never be met.
        Some(_) if require.principal_kinds().is_some_and(|kinds| !kinds.iter().any(|kind| matches!(kind, Kind::Jwt { .. }))) => {
            (".claims", "the rule's principal is never a token with claims (only jwt providers' tokens have them; see principal_from)".to_string())
        }
        Some(Value::Array(items)) if items.len() <= MAX_CONDITIONS => {
            for (j, item) in items.iter().enumerate() {
                match condition(item, table, owned) {
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
fn condition(item: &Value, table: &[String], owned: &[String]) -> Result<ClaimCondition, (String, &'static str)> {
    let refuse = |field: &str, message| Err((field.to_string(), message));
    let Some(fields) = item.as_object() else {
        return refuse("", "must be an object: a claim and a test");
    };
    let claim = match fields.get("claim") {
        Some(Value::String(name)) if !name.trim().is_empty() => name,
        Some(_) => return refuse(".claim", "must be a non-empty string"),
        None => return refuse("", "missing field `claim`"),
    };
    let mut tests = ["any_of", "all_of", "equals_header"].into_iter().filter_map(|key| Some((key, fields.get(key)?)));
    let (Some((key, value)), None, 2) = (tests.next(), tests.next(), fields.len()) else {
        return refuse("", "needs a claim and exactly one of any_of, all_of and equals_header, nothing else");
    };
    let test = match (key, value) {
        ("equals_header", Value::String(name)) => {
            let Ok(name) = header_name(name, "") else { return refuse(".equals_header", "is not a valid header name") };
            if owned.contains(&name) {
                return refuse(".equals_header", "is a header the filter sets (principal, claim or payload header)");
            }
            Test::EqualsHeader(name)
        }
        ("equals_header", _) => return refuse(".equals_header", "must be a string"),
        (_, value) => {
            let values = values(value).map_err(|(at, why)| (format!(".{key}{at}"), why))?;
            if key == "any_of" {
                Test::AnyOf(values)
            } else {
                Test::AllOf(values)
            }
        }
    };
    // Every claim a condition names is in the table: it was made from these conditions.
    let claim = table.iter().position(|known| known == claim).unwrap_or(usize::MAX);
    Ok(ClaimCondition { claim, test })
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
