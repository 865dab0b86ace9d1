//! Inputs the fuzz targets (fuzz/, `make fuzz`) found that the filter got wrong,
//! kept as tests of the public API after the fix. Each names its target.

use serde_json::json;
use wasm_authn::config::Config;
use wasm_authn::remote::jwks_location;

/// `config`: a value with a `"` in it was shown from that quote on in a type error
/// (serde quotes it as `"a\"b"`, and the redaction ended the value at `\"`).
#[test]
fn a_quote_inside_a_misplaced_value_does_not_show_the_rest_of_it() {
    let cases = [
        br#""[\"SECRET""#.to_vec(),
        json!({"basic": {"failure_limit": "pass\"SECRET-word", "users": []}}).to_string().into_bytes(),
        json!({"jwt": {"jwks_wait_ms": "a\\\"\"SECRET"}}).to_string().into_bytes(),
    ];
    for input in cases {
        let Err(error) = Config::from_json(&input) else { panic!("accepted {input:?}") };
        let shown = error.to_string();
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("invalid type: string (value hidden)"), "{shown}");
    }
}

/// `discovery`: a `jwks_uri` authority with a control character (DEL here; the
/// path already refused them) was taken as the `:authority` of the JWKS fetch.
#[test]
fn a_jwks_uri_authority_with_a_control_character_is_refused() {
    assert!(jwks_location(b"{\"jwks_uri\": \"http://idp\\u007fexample/jwks\"}").is_err());
    assert!(jwks_location(b"{\"jwks_uri\": \"https://idp\\r\\nx-injected: 1/jwks\"}").is_err());
}

/// `discovery`: the authority ends at the first '/', '?' or '#' (RFC 3986 3.2),
/// not at the first '/' only.
#[test]
fn a_jwks_uri_authority_ends_at_a_query_or_a_fragment() {
    let location = jwks_location(br#"{"jwks_uri": "https://IdP.example?x=/keys"}"#).unwrap();
    assert_eq!((location.authority.as_str(), location.path.as_str()), ("idp.example", "/?x=/keys"));
    let location = jwks_location(br#"{"jwks_uri": "https://idp.example#/keys"}"#).unwrap();
    assert_eq!((location.authority.as_str(), location.path.as_str()), ("idp.example", "/"));
}

/// `path_normalize`: a dot segment before an encoded ';' (`..%3B`) was flagged as
/// hidden but kept as a name, so its normal form was ambiguous again (not a fixpoint).
#[test]
fn a_dot_segment_before_an_encoded_semicolon_is_resolved_in_the_normal_form() {
    let raw = String::from_utf8_lossy(b"/..%3B\x8dzadmiz");
    let once = wasm_authn::path::normalize(&raw);
    assert!(once.hidden_dot_segment && once.ambiguous);
    let twice = wasm_authn::path::normalize(&once.path);
    assert!(!twice.ambiguous && twice.path == once.path, "{once:?} then {twice:?}");
}
