//! `rules[].require` and `principal_from`: a word, a list of kinds (any of them),
//! or a tree of `{"all": [...]}` / `{"any": [...]}`, bounded in depth and width.

use serde_json::Value;

use super::error::ConfigError;
use crate::jwt::Provider;
use crate::pipeline::route::{Kind, Require};
use crate::requirement::{covers, Requirement, Tree, MAX_DEPTH, MAX_WIDTH};

pub(super) fn require(
    raw: Option<Value>,
    principal_from: Option<Vec<String>>,
    path: &str,
    providers: &[Provider],
) -> Result<Require, ConfigError> {
    let require = match raw.unwrap_or_else(super::schema::default_require) {
        Value::String(word) => match word.as_str() {
            "any" => Require::Any,
            "none" => Require::None,
            "optional" => Require::Optional,
            "optional_or_failed" => Require::OptionalOrFailed,
            _ => Require::Kinds(vec![kind(&word, path, providers)?]),
        },
        Value::Array(list) if !list.is_empty() => {
            let mut kinds = Vec::with_capacity(list.len());
            for (i, entry) in list.iter().enumerate() {
                let at = format!("{path}[{i}]");
                let word = entry.as_str().ok_or_else(|| ConfigError::new(&at, "must be a credential kind"))?;
                kinds.push(kind(word, &at, providers)?);
            }
            Require::Kinds(kinds)
        }
        tree @ Value::Object(_) => {
            let root = requirement(&tree, path, 1, providers)?;
            let mut kinds = Vec::new();
            root.kinds(&mut kinds);
            if !has_all(&root) {
                // Any of its kinds: a plain list, whatever the nesting.
                Require::Kinds(kinds.into_iter().cloned().collect())
            } else {
                let principal_from = match principal_from {
                    None => kinds.iter().copied().cloned().collect(),
                    Some(ref names) => from(names, &root, &format!("{}.principal_from", rule_of(path)), providers)?,
                };
                let kinds = kinds.into_iter().cloned().collect();
                return Ok(Require::Tree(Box::new(Tree { root, principal_from, kinds })));
            }
        }
        _ => {
            return Err(ConfigError::new(
                path,
                "must be \"any\", \"none\", \"optional\", \"optional_or_failed\", a list of credential kinds, \
                 or {\"all\": [...]} / {\"any\": [...]}",
            ))
        }
    };
    if principal_from.is_some() {
        let message =
            "names whose principal a require tree with \"all\" gives: this rule's require takes one credential";
        return Err(ConfigError::new(format!("{}.principal_from", rule_of(path)), message));
    }
    Ok(require)
}

/// `rules[i]` of `rules[i].require`.
fn rule_of(path: &str) -> &str {
    path.strip_suffix(".require").unwrap_or(path)
}

fn has_all(node: &Requirement) -> bool {
    match node {
        Requirement::Kind(_) => false,
        Requirement::All(_) => true,
        Requirement::Any(entries) => entries.iter().any(has_all),
    }
}

fn requirement(raw: &Value, path: &str, depth: usize, providers: &[Provider]) -> Result<Requirement, ConfigError> {
    let object = match raw {
        Value::String(word) => return Ok(Requirement::Kind(kind(word, path, providers)?)),
        Value::Object(object) => object,
        _ => return Err(ConfigError::new(path, "must be a credential kind, {\"all\": [...]} or {\"any\": [...]}")),
    };
    let mut members = object.iter();
    let (Some((name, entries)), None) = (members.next(), members.next()) else {
        return Err(ConfigError::new(path, "must have one member, \"all\" or \"any\""));
    };
    let at = format!("{path}.{name}");
    if name != "all" && name != "any" {
        return Err(ConfigError::new(at, "must be \"all\" or \"any\""));
    }
    if depth > MAX_DEPTH {
        return Err(ConfigError::new(at, format!("nests deeper than {MAX_DEPTH} levels of all/any")));
    }
    let Some(entries) = entries.as_array().filter(|entries| (1..=MAX_WIDTH).contains(&entries.len())) else {
        return Err(ConfigError::new(at, format!("must list 1 to {MAX_WIDTH} requirements")));
    };
    let parsed = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| requirement(entry, &format!("{at}[{i}]"), depth + 1, providers))
        .collect::<Result<Vec<_>, _>>()?;
    if name == "any" {
        return Ok(Requirement::Any(parsed));
    }
    // A request carries one credential per place (one token, one Basic credential, one API
    // key): what one entry of an `all` may take, another cannot, or one credential would meet both.
    let mut taken = 0;
    for (i, entry) in parsed.iter().enumerate() {
        if entry.places() & taken != 0 {
            return Err(ConfigError::new(
                format!("{at}[{i}]"),
                "takes a credential from where another entry of this all does (a request carries one token, \
                 one Basic credential and one API key): one credential would meet both",
            ));
        }
        taken |= entry.places();
    }
    Ok(Requirement::All(parsed))
}

/// `principal_from`: kinds of the tree, one of which every way of meeting it verifies.
fn from(names: &[String], root: &Requirement, path: &str, providers: &[Provider]) -> Result<Vec<Kind>, ConfigError> {
    let mut leaves = Vec::new();
    root.kinds(&mut leaves);
    let mut kinds = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let kind = kind(name, &at, providers)?;
        if !leaves.iter().any(|leaf| covers(leaf, &kind) || covers(&kind, leaf)) {
            return Err(ConfigError::new(at, "is no kind of the require tree"));
        }
        kinds.push(kind);
    }
    // Met with no principal of these kinds (a kind they do not cover stands in for any other)?
    if kinds.is_empty() || root.met_where(&|leaf| !kinds.iter().any(|from| covers(from, leaf))) {
        return Err(ConfigError::new(
            path,
            "the require tree can be met without any of these kinds: name one it always needs",
        ));
    }
    Ok(kinds)
}

/// One credential kind, as the `x-auth-method` values spell it.
pub(super) fn kind(word: &str, path: &str, providers: &[Provider]) -> Result<Kind, ConfigError> {
    Ok(match word {
        "basic" => Kind::Basic,
        "api-key" => Kind::ApiKey,
        "jwt" => Kind::Jwt { provider: None },
        "keypair" => Kind::Keypair,
        "mtls" => Kind::Mtls,
        _ => match word.strip_prefix("jwt:") {
            Some(name) if providers.iter().any(|p| p.name == name) => Kind::Jwt { provider: Some(name.to_string()) },
            Some(_) => return Err(ConfigError::new(path, "names no provider in jwt.providers")),
            None => return Err(ConfigError::new(
                path,
                "unknown credential kind: use \"basic\", \"api-key\", \"jwt\", \"jwt:<provider name>\", \"keypair\" or \"mtls\"",
            )),
        },
    })
}

/// Place bits are what `all` checks; a kind must have one.
#[cfg(test)]
#[test]
fn every_kind_has_a_place() {
    use crate::requirement::place_of;
    for kind in [Kind::Basic, Kind::ApiKey, Kind::Jwt { provider: None }, Kind::Keypair, Kind::Mtls] {
        assert_ne!(place_of(&kind), 0);
    }
}
