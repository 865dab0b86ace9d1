//! What a verified token carries besides its principal: the claims `rules[].claims`
//! test (Istio's `when: request.auth.claims[...]`), its payload when a provider
//! forwards it, and the provider's `forward`.
//!
//! The claims the rules name are read once, when a token is verified (a JWT
//! provider's, or an introspection answer's), into `ClaimValues` by their place in
//! the configuration's claim table: a condition is then a lookup and a comparison.
//! Only identity providers' claims are read: a keypair signs its own tokens and
//! the token endpoint's carry no user claims, so they, Basic users and API keys
//! have none, and a rule with conditions refuses them.

use serde_json::Value;

use crate::request::{is_underscore_spelling_of, RequestFacts};

/// What one condition asks of its claim's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// One of the claim's values is one of these.
    AnyOf(Vec<String>),
    /// Every one of these is among the claim's values.
    AllOf(Vec<String>),
    /// The request carries this header exactly once (no other value, no underscore
    /// spelling of it), and its value is the text of one of the claim's values.
    EqualsHeader(String),
}

/// `{"claim": "groups", "any_of": [...]}`, compiled: `claim` is the claim's place in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCondition {
    /// The claim's place in the table.
    pub claim: usize,
    /// What its value must be.
    pub test: Test,
}

/// A verified token's values of the claims in the table: (the claim's place, a value
/// as `scalar_text` writes it). A claim it lacks (or that is null, an object or an
/// empty array) has none, and meets no condition. Empty for principals without claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimValues(pub Vec<(usize, String)>);

impl ClaimValues {
    /// Add the values of the claim at `place`: a string is one value (never split), an
    /// array each of its scalar elements.
    pub fn add(&mut self, place: usize, claim: &Value) {
        let items = match claim {
            Value::Array(items) => items.as_slice(),
            scalar => std::slice::from_ref(scalar),
        };
        for item in items {
            if let Some(text) = scalar_text(item) {
                self.0.push((place, text));
            }
        }
    }
}

/// What a provider's verified token hands on besides its principal (empty for others).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenExtras {
    /// The claims rules test.
    pub claims: ClaimValues,
    /// `forward_payload_header` and the payload as the token carries it (base64url).
    pub payload_header: Option<(String, String)>,
    /// The payload as JSON, for filter state (`payload_in_filter_state`).
    pub payload_json: Option<String>,
    /// The provider's `forward`, over `forward_credentials`.
    pub forward: Option<bool>,
}

/// A scalar as conditions compare it: its type's tag (`s`, `b`, `n`: the string `"true"`
/// is not the boolean `true`), then its text: a string as it is, a boolean `true` or
/// `false`, a number as JSON writes it, but a whole number without its fraction (`1.0`
/// is `1`, in a token as in the configuration).
pub fn scalar_text(value: &Value) -> Option<String> {
    let number;
    let (tag, text) = match value {
        Value::String(text) => ('s', text.as_str()),
        Value::Bool(true) => ('b', "true"),
        Value::Bool(false) => ('b', "false"),
        Value::Number(written) => {
            number = match written.as_f64() {
                Some(f) if written.is_f64() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
                    serde_json::Number::from(f as i64).to_string()
                }
                _ => written.to_string(),
            };
            ('n', number.as_str())
        }
        Value::Null | Value::Object(_) | Value::Array(_) => return None,
    };
    let mut tagged = String::with_capacity(text.len() + 1);
    tagged.push(tag);
    tagged.push_str(text);
    Some(tagged)
}

/// A value's text without its type's tag (what a header is compared with).
fn untagged(value: &str) -> &str {
    value.get(1..).unwrap_or_default()
}

/// Why a condition failed (the 403's message; the reason is `claim_condition_failed`).
pub fn check(conditions: &[ClaimCondition], values: &ClaimValues, request: &RequestFacts) -> Result<(), &'static str> {
    for condition in conditions {
        // This claim's values, each compared in the test's own way.
        let holds = |matches: &dyn Fn(&String) -> bool| {
            values.0.iter().any(|(place, value)| *place == condition.claim && matches(value))
        };
        let met = match &condition.test {
            Test::AnyOf(wanted) => holds(&|value| wanted.contains(value)),
            Test::AllOf(wanted) => wanted.iter().all(|one| holds(&|value| value == one)),
            Test::EqualsHeader(header) => {
                let sent = single_value(request, header).ok_or(MISSING_HEADER)?;
                holds(&|value| untagged(value) == sent)
            }
        };
        if !met {
            return Err("a claim does not have the required value");
        }
    }
    Ok(())
}

const MISSING_HEADER: &str = "the header a claim is compared with is missing or repeated";

/// The header's one non-empty value: none when it is absent, sent more than once, or
/// also sent under an underscore spelling (which CGI, WSGI and PHP read as this header).
fn single_value<'r>(request: &'r RequestFacts, header: &str) -> Option<&'r str> {
    let mut values = request.headers.iter().filter(|(name, _)| {
        let name = name.as_ref();
        name == header || (name.contains('_') && is_underscore_spelling_of(name, header))
    });
    let (_, value) = values.next()?;
    if values.next().is_some() || value.is_empty() {
        return None;
    }
    Some(value.as_ref())
}

#[cfg(test)]
mod tests;
