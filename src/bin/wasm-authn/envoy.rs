//! `wasm-authn envoy`: a plugin configuration embedded in Envoy's wasm HTTP filter
//! block, or in an Istio `WasmPlugin`, escaped for YAML so that nobody escapes JSON by
//! hand. The configuration is read into an ordered tree (serde_json's own map sorts
//! its keys) so that the output keeps the order it was written in.

use std::fmt::Write as _;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// A JSON value whose objects keep their members in the order written.
pub enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Number(value.into()))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Number(value.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Node, E> {
        Number::from_f64(value).map(Node::Number).ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E>(self, value: &str) -> Result<Node, E> {
        Ok(Node::String(value.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Node>()? {
            members.push(member);
        }
        Ok(Node::Object(members))
    }
}

/// The secret fields that may name an environment variable of the Envoy process instead.
const ENV_FIELDS: &[&str] = &["password_hash_env", "htpasswd_env", "key_hash_env", "signing_key_env", "k_env"];

/// The environment variables the configuration's `X_env` fields name, in order, once each:
/// the VM sees only those Envoy (or Istio) passes it.
pub fn environment_variables(node: &Node) -> Vec<String> {
    fn walk(node: &Node, found: &mut Vec<String>) {
        match node {
            Node::Object(members) => {
                for (name, value) in members {
                    match value {
                        Node::String(variable) if ENV_FIELDS.contains(&name.as_str()) => {
                            if !found.contains(variable) {
                                found.push(variable.clone());
                            }
                        }
                        _ => walk(value, found),
                    }
                }
            }
            Node::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(node, &mut found);
    found
}

// ---- JSON, indented, ASCII only ----

/// The configuration as JSON text of printable ASCII (every other character escaped), so
/// that it sits in a YAML literal block whatever it holds.
pub fn json_text(node: &Node) -> String {
    let mut out = String::new();
    write_json(node, 0, &mut out);
    out
}

fn write_json(node: &Node, indent: usize, out: &mut String) {
    let pad = |n: usize| " ".repeat(n);
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        Node::Number(number) => out.push_str(&number.to_string()),
        Node::String(text) => out.push_str(&json_string(text)),
        Node::Array(items) if items.is_empty() => out.push_str("[]"),
        Node::Object(members) if members.is_empty() => out.push_str("{}"),
        Node::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad(indent + 2));
                write_json(item, indent + 2, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        Node::Object(members) => {
            out.push_str("{\n");
            for (i, (name, value)) in members.iter().enumerate() {
                let _ = write!(out, "{}{}: ", pad(indent + 2), json_string(name));
                write_json(value, indent + 2, out);
                out.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
    out
}

// ---- YAML, block style ----

/// A double-quoted YAML scalar of printable ASCII: YAML's escapes for everything else.
pub fn yaml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if u32::from(c) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

/// A mapping key: plain when no YAML reader could take it for anything but that string
/// (YAML 1.1 readers, Kubernetes' among them, read `y`, `n`, `on`, `no`, ... as booleans).
fn yaml_key(name: &str) -> String {
    let plain = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$')
        && !matches!(
            name.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        name.to_string()
    } else {
        yaml_string(name)
    }
}

fn yaml_scalar(node: &Node) -> Option<String> {
    match node {
        Node::Null => Some("null".into()),
        Node::Bool(value) => Some(value.to_string()),
        Node::Number(number) => Some(number.to_string()),
        Node::String(text) => Some(yaml_string(text)),
        Node::Array(items) if items.is_empty() => Some("[]".into()),
        Node::Object(members) if members.is_empty() => Some("{}".into()),
        Node::Array(_) | Node::Object(_) => None,
    }
}

/// A non-empty mapping or sequence in block style, every line indented by `indent`.
pub fn yaml_block(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::Object(members) => {
            for (name, value) in members {
                let _ = write!(out, "{pad}{}:", yaml_key(name));
                match (yaml_scalar(value), value) {
                    (Some(scalar), _) => {
                        let _ = writeln!(out, " {scalar}");
                    }
                    (None, Node::Array(_)) => {
                        out.push('\n');
                        yaml_block(value, indent, out);
                    }
                    (None, _) => {
                        out.push('\n');
                        yaml_block(value, indent + 2, out);
                    }
                }
            }
        }
        Node::Array(items) => {
            for item in items {
                match yaml_scalar(item) {
                    Some(scalar) => {
                        let _ = writeln!(out, "{pad}- {scalar}");
                    }
                    None => {
                        // The item's block at indent + 2, its first indentation replaced by "- ".
                        let mut block = String::new();
                        yaml_block(item, indent + 2, &mut block);
                        let item_pad = " ".repeat(indent + 2);
                        let _ = write!(out, "{pad}- {}", block.strip_prefix(&item_pad).unwrap_or(&block));
                    }
                }
            }
        }
        _ => {
            if let Some(scalar) = yaml_scalar(node) {
                let _ = writeln!(out, "{pad}{scalar}");
            }
        }
    }
}

// ---- the two documents ----

/// Where the module is, for Envoy and for Istio.
pub struct Placement<'a> {
    pub module: &'a str,
    pub url: &'a str,
    pub sha256: Option<&'a str>,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
}

/// Envoy's wasm HTTP filter, an item of the connection manager's `http_filters`.
pub fn envoy_filter(config: &Node, place: &Placement) -> String {
    let mut out = String::from(
        "# wasm-authn, an item of the HTTP connection manager's http_filters, before\n\
         # envoy.filters.http.router (written by `wasm-authn envoy`; the configuration is\n\
         # the JSON below, checked as the filter checks it).\n\
         - name: envoy.filters.http.wasm\n  typed_config:\n    \
         \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n    config:\n      \
         name: wasm_authn\n      root_id: wasm_authn\n      \
         # The token endpoint reads a request's body before its headers go on (Envoy 1.35 and later).\n      \
         allow_on_headers_stop_iteration: true\n      vm_config:\n        vm_id: wasm_authn\n        \
         runtime: envoy.wasm.runtime.v8\n        code:\n          local:\n",
    );
    let _ = writeln!(out, "            filename: {}", yaml_string(place.module));
    let variables = environment_variables(config);
    if !variables.is_empty() {
        out.push_str("        # The variables the configuration's _env fields name, from Envoy's own environment.\n");
        out.push_str("        environment_variables:\n          host_env_keys:\n");
        for variable in &variables {
            let _ = writeln!(out, "          - {}", yaml_string(variable));
        }
    }
    out.push_str(
        "      configuration:\n        \"@type\": type.googleapis.com/google.protobuf.StringValue\n        value: |\n",
    );
    for line in json_text(config).lines() {
        let _ = writeln!(out, "          {line}");
    }
    out
}

/// An Istio `WasmPlugin` resource with the configuration as its `pluginConfig`.
pub fn istio_wasmplugin(config: &Node, place: &Placement) -> String {
    let mut out = String::from(
        "# wasm-authn as an Istio WasmPlugin (written by `wasm-authn envoy --istio`; the\n\
         # configuration is the pluginConfig below, checked as the filter checks it).\n\
         # Add spec.selector to pick workloads; without it the plugin applies to every\n\
         # workload of the namespace.\n\
         apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n",
    );
    let _ = writeln!(out, "  name: {}", yaml_string(place.name));
    if let Some(namespace) = place.namespace {
        let _ = writeln!(out, "  namespace: {}", yaml_string(namespace));
    }
    out.push_str("spec:\n");
    let _ = writeln!(out, "  url: {}", yaml_string(place.url));
    match place.sha256 {
        Some(sha256) => {
            let _ = writeln!(out, "  sha256: {}", yaml_string(sha256));
        }
        None => out.push_str(
            "  # sha256: pin the image: for an oci:// url, the \"WasmPlugin sha256\" line `make oci` prints\n",
        ),
    }
    out.push_str("  phase: AUTHN\n  failStrategy: FAIL_CLOSE\n  pluginName: wasm_authn\n");
    let variables = environment_variables(config);
    if !variables.is_empty() {
        out.push_str("  # The variables the configuration's _env fields name, from the proxy's environment.\n");
        out.push_str("  vmConfig:\n    env:\n");
        for variable in &variables {
            let _ = writeln!(out, "    - name: {}\n      valueFrom: HOST", yaml_string(variable));
        }
    }
    match yaml_scalar(config) {
        Some(scalar) => {
            let _ = writeln!(out, "  pluginConfig: {scalar}");
        }
        None => {
            out.push_str("  pluginConfig:\n");
            yaml_block(config, 4, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Node {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn json_keeps_the_order_and_escapes_everything_but_printable_ascii() {
        let text = json_text(&node(r#"{"z": 1, "a": ["é😀\u0001\u007f", {}, []], "m": {"k": null}}"#));
        assert_eq!(
            text,
            "{\n  \"z\": 1,\n  \"a\": [\n    \"\\u00e9\\ud83d\\ude00\\u0001\\u007f\",\n    {},\n    []\n  ],\n  \
             \"m\": {\n    \"k\": null\n  }\n}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["a"][0], "é😀\u{1}\u{7f}");
    }

    #[test]
    fn yaml_quotes_what_a_reader_could_misread() {
        assert_eq!(yaml_key("n"), "\"n\"");
        assert_eq!(yaml_key("Y"), "\"Y\"");
        assert_eq!(yaml_key("kid"), "kid");
        assert_eq!(yaml_key("@type"), "\"@type\"");
        assert_eq!(yaml_string("a\"b\\c\nd\u{85}é😀"), "\"a\\\"b\\\\c\\nd\\x85\\xe9\\U0001f600\"");
        let mut out = String::new();
        yaml_block(&node(r#"{"a": [{"b": 1, "c": [2, {"d": "e"}]}, [3, 4]], "f": {}}"#), 0, &mut out);
        assert_eq!(out, "a:\n- b: 1\n  c:\n  - 2\n  - d: \"e\"\n- - 3\n  - 4\nf: {}\n");
    }

    #[test]
    fn env_fields_are_found_once_each_in_order() {
        let config = node(
            r#"{"basic": {"users": [{"name": "a", "password_hash_env": "A"}, {"name": "b", "password_hash_env": "A"}],
                "htpasswd_env": "H"}, "token_endpoint": {"signing_key_env": "T"}, "realm": "k_env"}"#,
        );
        assert_eq!(environment_variables(&config), ["A", "H", "T"]);
    }
}
