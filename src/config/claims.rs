//! `rules[].claims` compiled: the claim table (every claim a condition names, read
//! once per verified token) and each rule's conditions on it.

use std::rc::Rc;

use serde_json::Value;

use super::error::ConfigError;
use super::names::{header_name, non_empty};
use super::schema::{RawClaimCondition, RawRule};
use crate::route::Rule;
use crate::token_claims::{scalar_text, ClaimCondition, Test};

/// Most conditions in one rule, and values in one list.
const MAX_CONDITIONS: usize = 64;
const MAX_VALUES: usize = 1_000;

/// Every claim the rules' conditions name, once, in the order first named.
pub fn claim_table(rules: &[RawRule]) -> Rc<[String]> {
    let mut table: Vec<String> = Vec::new();
    for condition in rules.iter().flat_map(|rule| &rule.claims) {
        if !table.contains(&condition.claim) {
            table.push(condition.claim.clone());
        }
    }
    table.into()
}

/// One rule's conditions, at `path` (`rules[i].claims`).
pub fn conditions(
    raw: Vec<RawClaimCondition>,
    path: &str,
    table: &[String],
) -> Result<Vec<ClaimCondition>, ConfigError> {
    if raw.len() > MAX_CONDITIONS {
        return Err(ConfigError::new(path, format!("at most {MAX_CONDITIONS} conditions")));
    }
    raw.into_iter().enumerate().map(|(j, condition)| compile(condition, &format!("{path}[{j}]"), table)).collect()
}

fn compile(raw: RawClaimCondition, at: &str, table: &[String]) -> Result<ClaimCondition, ConfigError> {
    non_empty(&raw.claim, &format!("{at}.claim"))?;
    let claim = table.iter().position(|name| *name == raw.claim).unwrap_or(usize::MAX);
    let test = match (raw.any_of, raw.all_of, raw.equals_header) {
        (Some(values), None, None) => Test::AnyOf(values_at(values, &format!("{at}.any_of"))?),
        (None, Some(values), None) => Test::AllOf(values_at(values, &format!("{at}.all_of"))?),
        (None, None, Some(header)) => {
            let name = header_name(&header, &format!("{at}.equals_header"))?;
            Test::EqualsHeader(name)
        }
        _ => return Err(ConfigError::new(at, "needs exactly one of any_of, all_of and equals_header")),
    };
    Ok(ClaimCondition { claim, test })
}

/// The values a claim is compared with: strings, booleans and numbers, as `scalar_text` writes them.
fn values_at(raw: Vec<Value>, at: &str) -> Result<Vec<String>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(at, "must list a value"));
    }
    if raw.len() > MAX_VALUES {
        return Err(ConfigError::new(at, format!("at most {MAX_VALUES} values")));
    }
    raw.iter()
        .enumerate()
        .map(|(k, value)| {
            scalar_text(value)
                .ok_or_else(|| ConfigError::new(format!("{at}[{k}]"), "must be a string, a number or a boolean"))
        })
        .collect()
}

/// An `equals_header` compares what the client sent: never a header the filter sets
/// (it removes the client's copy), whose value would be the filter's own.
pub fn headers_not_owned(rules: &[Rule], owned: &[String]) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        for (j, condition) in rule.claims.iter().enumerate() {
            if let Test::EqualsHeader(header) = &condition.test {
                if owned.contains(header) {
                    let message = "is a header the filter sets (principal, claim or payload header)";
                    return Err(ConfigError::new(format!("rules[{i}].claims[{j}].equals_header"), message));
                }
            }
        }
    }
    Ok(())
}
