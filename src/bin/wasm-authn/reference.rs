//! `wasm-authn schema --markdown`: the configuration reference
//! (docs/configuration-reference.md), every field with its type, default and
//! description, read from the JSON Schema the serde types derive: the filter, the
//! schema and the reference have one source, `src/config/schema.rs`.

use serde_json::Value;

/// One field of the configuration, as the reference shows it.
pub struct Field {
    /// `jwt.providers[].remote_jwks.refresh_seconds`
    pub path: String,
    pub kind: String,
    pub default: String,
    /// Empty when the schema has none (a test refuses that).
    pub description: String,
}

/// Every field, depth first, each object's fields in the schema's order.
pub fn fields(schema: &Value) -> Vec<Field> {
    let mut found = Vec::new();
    walk(schema, schema, "", &mut found);
    found
}

fn walk(root: &Value, object: &Value, prefix: &str, found: &mut Vec<Field>) {
    let Some(properties) = object.get("properties").and_then(Value::as_object) else { return };
    let required: Vec<&str> =
        object.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    for (name, property) in properties {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        let target = object_of(root, property);
        let description = text_of(property).or_else(|| target.and_then(text_of)).unwrap_or_default();
        found.push(Field {
            path: path.clone(),
            kind: kind_of(root, property),
            default: default_of(property, required.contains(&name.as_str()), target.is_some()),
            description,
        });
        if let Some(target) = target {
            walk(root, target, &path, found);
        } else if let Some(items) = property.get("items").and_then(|items| object_of(root, items)) {
            walk(root, items, &format!("{path}[]"), found);
        }
    }
}

fn text_of(schema: &Value) -> Option<String> {
    let text = schema.get("description")?.as_str()?;
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// What `$ref` (or `anyOf: [{$ref}, null]`) names, or the schema itself.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let reference =
        schema.get("$ref").or_else(|| schema.get("anyOf")?.as_array()?.iter().find_map(|choice| choice.get("$ref")));
    reference
        .and_then(Value::as_str)
        .and_then(|name| name.strip_prefix("#/$defs/"))
        .and_then(|name| root.get("$defs")?.get(name))
        .unwrap_or(schema)
}

/// The object schema a field holds, when it holds one with fields of its own.
fn object_of<'a>(root: &'a Value, schema: &'a Value) -> Option<&'a Value> {
    let target = resolve(root, schema);
    if target.get("properties").is_some() {
        return Some(target);
    }
    // A shorthand or an object (`"dpop": "required"` or `{"mode": ...}`): the object's fields.
    let choices = target.get("anyOf")?.as_array()?;
    choices.iter().map(|choice| resolve(root, choice)).find(|choice| choice.get("properties").is_some())
}

fn nullable(schema: &Value) -> bool {
    let in_type = match schema.get("type") {
        Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
        _ => false,
    };
    let in_any_of = schema
        .get("anyOf")
        .and_then(Value::as_array)
        .is_some_and(|choices| choices.iter().any(|choice| choice.get("type").is_some_and(|t| t == "null")));
    in_type || in_any_of
}

fn kind_of(root: &Value, schema: &Value) -> String {
    let target = resolve(root, schema);
    let words = |values: &Vec<Value>| values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(" \\| ");
    if let Some(values) = target.get("enum").and_then(Value::as_array) {
        return words(values);
    }
    if let Some(choices) = target.get("oneOf").and_then(Value::as_array) {
        let constants: Vec<Value> = choices.iter().filter_map(|choice| choice.get("const").cloned()).collect();
        if constants.len() == choices.len() {
            return words(&constants);
        }
    }
    let types: Vec<&str> = match target.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ if target.get("properties").is_some() => vec!["object"],
        _ => vec!["any"],
    };
    types
        .iter()
        .map(|t| match (*t, target.get("items")) {
            ("array", Some(items)) => format!("array of {}", kind_of(root, items)),
            ("object", _) | ("array", None) => t.to_string(),
            _ => t.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

fn default_of(schema: &Value, required: bool, is_object: bool) -> String {
    match schema.get("default") {
        Some(Value::Null) => "none".into(),
        Some(value) => format!("`{value}`"),
        None if required => "required".into(),
        None if nullable(schema) => "none".into(),
        None if is_object => "its fields' defaults".into(),
        // A list without a default of its own is serde's `default`: empty.
        None if schema.get("type").is_some_and(|t| t == "array") => "`[]`".into(),
        None => "see the description".into(),
    }
}

/// docs/configuration-reference.md.
pub fn markdown(schema: &Value) -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated by `wasm-authn schema --markdown` (`make schema`) from src/config/schema.rs; \
         do not edit: a test fails when it is out of date. -->\n\n\
         Every field of the plugin configuration, with its type, its default and what it does, \
         generated from the filter's own configuration types (the same source as \
         [`wasm-authn.schema.json`](../wasm-authn.schema.json)). The guide, with a complete example \
         and each field explained at length, is [configuration.md](configuration.md). Types are \
         the JSON ones; values (a hash's format, a key's size, a range, a header name) are checked \
         by the filter when it loads the configuration, and by `wasm-authn check`. `none` means \
         absent (off, or unlimited, as the description says); `a[]` is each item of the list `a`.\n\n\
         | field | type | default | description |\n|---|---|---|---|\n",
    );
    for field in fields(schema) {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            field.path,
            field.kind,
            field.default,
            field.description.replace('|', "\\|")
        ));
    }
    out
}
