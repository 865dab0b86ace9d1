//! What the JSON Schema of the configuration (`wasm-authn.schema.json`, printed by
//! `wasm-authn schema`) says beyond the serde types of `schema.rs`: the shape of an
//! inline JWKS, which the filter reads as a plain JSON value. Native builds only.
//!
//! The schema checks shapes and types and never more than the filter: a
//! configuration it refuses, `Config::from_json` refuses too (values such as hashes,
//! key sizes and ranges are the filter's job alone).

use schemars::{json_schema, Schema, SchemaGenerator};
use serde_json::{json, Value};

/// The `alg` values a configured key may name (every `jwt::Algorithm`).
pub(super) const ALGORITHMS: &[&str] =
    &["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "EdDSA"];

/// The most keys one JWKS may hold (`jwt::MAX_JWKS_KEYS`).
const MAX_JWKS_KEYS: usize = 64;

/// `local_jwks`: a JWKS object (or null, for none). Its description is the field's doc comment.
pub(super) fn jwks(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["object", "null"],
        "required": ["keys"],
        "properties": {
            "keys": {
                "description": "JWKs (RFC 7517): RSA (RS*/PS*, 2048 bits at least), EC P-256 (ES256), OKP Ed25519 \
                                (EdDSA), oct (HS*, 32 bytes at least); `wasm-authn jwks PUBLIC.pem` makes them.",
                "type": "array",
                "maxItems": MAX_JWKS_KEYS,
                "items": jwk()
            }
        }
    })
}

/// One JWK as the filter reads it: keys marked `"use": "enc"` are skipped whatever
/// else they hold; every other key needs a `kty` and that type's members.
fn jwk() -> Value {
    let base64url = |what: &str| json!({"type": "string", "description": format!("{what}, base64url")});
    let no_private_part = json!({"not": {"required": ["d"]}, "description": "public keys only: no `d`"});
    let kind = |kty: &str, members: Value, required: &[&str], private_part_refused: bool| {
        let mut then = json!({"required": required, "properties": members});
        if private_part_refused {
            then["allOf"] = json!([no_private_part]);
        }
        json!({"if": {"required": ["kty"], "properties": {"kty": {"const": kty}}}, "then": then})
    };
    json!({
        "type": "object",
        "properties": {
            "use": {"enum": ["sig", "enc"], "description": "`enc` keys are skipped"}
        },
        "if": {"required": ["use"], "properties": {"use": {"const": "enc"}}},
        "else": {
            "required": ["kty"],
            "properties": {
                "kty": {"enum": ["RSA", "EC", "OKP", "oct"], "description": "the key type"},
                "kid": {"type": "string", "description": "the key id tokens name in their `kid` header"},
                "alg": {"enum": ALGORITHMS, "description": "binds the key to this algorithm only"}
            },
            "allOf": [
                kind("RSA", json!({"n": base64url("the modulus"), "e": base64url("the exponent")}), &["n", "e"], true),
                kind(
                    "EC",
                    json!({"crv": {"const": "P-256"}, "x": base64url("x (32 bytes)"), "y": base64url("y (32 bytes)")}),
                    &["crv", "x", "y"],
                    true,
                ),
                kind(
                    "OKP",
                    json!({"crv": {"const": "Ed25519"}, "x": base64url("the public key (32 bytes)")}),
                    &["crv", "x"],
                    true,
                ),
                oct_key()
            ]
        }
    })
}

/// An `oct` key holds its secret as `k`, or names the environment variable of the
/// Envoy process that does as `k_env`: exactly one of them.
fn oct_key() -> Value {
    json!({
        "if": {"required": ["kty"], "properties": {"kty": {"const": "oct"}}},
        "then": {
            "properties": {
                "k": {"type": "string", "description": "the HMAC secret, base64url"},
                "k_env": {"type": "string", "description": "instead of `k`: the environment variable that holds it"}
            },
            "oneOf": [{"required": ["k"]}, {"required": ["k_env"]}]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{Algorithm, MAX_JWKS_KEYS as FILTER_MAX_JWKS_KEYS};

    #[test]
    fn the_algorithms_are_the_filters() {
        for name in ALGORITHMS {
            assert!(Algorithm::from_name(name).is_some(), "{name}");
        }
        assert_eq!(ALGORITHMS.len(), 11, "a new jwt::Algorithm belongs here too");
        assert_eq!(MAX_JWKS_KEYS, FILTER_MAX_JWKS_KEYS);
    }
}
