use std::borrow::Cow;

use serde_json::json;

use super::*;
use crate::request::Header;

fn values(claims: serde_json::Value, names: &[&str]) -> ClaimValues {
    let claims = claims.as_object().cloned().unwrap_or_default();
    let mut values = ClaimValues::default();
    for (place, name) in names.iter().enumerate() {
        if let Some(claim) = crate::jwt::claim_at(&claims, name) {
            values.add(place, claim);
        }
    }
    values
}

fn headers(pairs: &[(&'static str, &'static str)]) -> Vec<Header<'static>> {
    pairs.iter().map(|(n, v)| (Cow::Borrowed(*n), Cow::Borrowed(*v))).collect()
}

/// Configured values, as the configuration compiles them (strings here).
fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| format!("s{s}")).collect()
}

/// Values as a token's claim gives them, by the claim's place: `s:` strings, `b:` booleans, `n:` numbers.
fn tagged(list: &[(usize, &str)]) -> Vec<(usize, String)> {
    list.iter().map(|(place, s)| (*place, s.replacen(':', "", 1))).collect()
}

fn condition(claim: usize, test: Test) -> ClaimCondition {
    ClaimCondition { claim, test }
}

fn met(conditions: &[ClaimCondition], values: &ClaimValues, sent: &[(&'static str, &'static str)]) -> bool {
    let headers = headers(sent);
    check(conditions, values, &RequestFacts::new("GET", "/", &headers)).is_ok()
}

#[test]
fn claims_read_as_texts_strings_whole_numbers_booleans_and_arrays() {
    let token = json!({
        "groups": ["admin", "ops", 7, true, null, {"x": 1}],
        "realm": {"roles": ["reader"]},
        "https://example.com/tenant": "acme",
        "tenant": "acme corp",
        "level": 3.0,
        "ratio": 0.5,
        "verified": false,
        "nothing": null,
        "object": {"a": 1},
    });
    let names = [
        "groups",
        "realm.roles",
        "https://example.com/tenant",
        "tenant",
        "level",
        "ratio",
        "verified",
        "nothing",
        "object",
        "absent",
    ];
    let read = values(token, &names);
    let expected = [
        (0, "s:admin"),
        (0, "s:ops"),
        (0, "n:7"),
        (0, "b:true"),
        (1, "s:reader"),
        (2, "s:acme"),
        (3, "s:acme corp"),
        (4, "n:3"),
        (5, "n:0.5"),
        (6, "b:false"),
    ];
    // `nothing` (null), `object` and `absent` have none.
    assert_eq!(read.0, tagged(&expected));
}

#[test]
fn any_of_and_all_of_compare_values_exactly() {
    let read = values(json!({"groups": ["admin", "ops"], "tenant": "acme"}), &["groups", "tenant", "missing"]);
    let any = |list: &[&str]| condition(0, Test::AnyOf(strings(list)));
    let all = |list: &[&str]| condition(0, Test::AllOf(strings(list)));
    assert!(met(&[any(&["admin"])], &read, &[]));
    assert!(met(&[any(&["root", "ops"])], &read, &[]));
    assert!(!met(&[any(&["Admin"])], &read, &[]), "case matters");
    assert!(!met(&[any(&["adm"])], &read, &[]), "no prefixes");
    assert!(met(&[all(&["ops", "admin"])], &read, &[]));
    assert!(!met(&[all(&["ops", "root"])], &read, &[]));
    // A string is one value, never split.
    let spaced = values(json!({"groups": "admin ops"}), &["groups"]);
    assert!(!met(&[any(&["admin"])], &spaced, &[]));
    // Every condition must hold; a missing claim fails whatever the test.
    assert!(!met(&[any(&["admin"]), condition(1, Test::AnyOf(strings(&["other"])))], &read, &[]));
    assert_eq!(
        check(&[condition(2, Test::AnyOf(strings(&["x"])))], &read, &RequestFacts::new("GET", "/", &[])),
        Err("a claim does not have the required value")
    );
    let empty = values(json!({"groups": []}), &["groups"]);
    assert!(!met(&[all(&["admin"])], &empty, &[]));
}

#[test]
fn values_compare_with_their_json_type() {
    let read = values(json!({"mfa": true, "text": "true", "level": 3, "code": "3"}), &["mfa", "text", "level", "code"]);
    let is = |claim, value: serde_json::Value| condition(claim, Test::AnyOf(vec![scalar_text(&value).unwrap()]));
    assert!(met(&[is(0, json!(true))], &read, &[]));
    assert!(!met(&[is(0, json!("true"))], &read, &[]), "a string is not a boolean");
    assert!(!met(&[is(1, json!(true))], &read, &[]), "a boolean is not a string");
    assert!(met(&[is(2, json!(3.0))], &read, &[]), "1.0 is 1");
    assert!(!met(&[is(2, json!("3"))], &read, &[]));
    assert!(!met(&[is(3, json!(3))], &read, &[]));
    // A header is text: it equals a number's text as it equals a string.
    let header = |claim| condition(claim, Test::EqualsHeader("x-level".into()));
    assert!(met(&[header(2)], &read, &[("x-level", "3")]));
    assert!(met(&[header(3)], &read, &[("x-level", "3")]));
    assert!(!met(&[header(2)], &read, &[("x-level", "n3")]));
}

#[test]
fn principals_without_claims_meet_no_condition() {
    let none = ClaimValues::default();
    assert!(met(&[], &none, &[]));
    assert!(!met(&[condition(0, Test::AllOf(strings(&["a"])))], &none, &[]));
}

#[test]
fn equals_header_needs_exactly_one_value_among_the_claims() {
    let read = values(json!({"tenant": "acme", "tenants": ["acme", "globex"]}), &["tenant", "tenants"]);
    let tenant = [condition(0, Test::EqualsHeader("x-tenant".into()))];
    assert!(met(&tenant, &read, &[("x-tenant", "acme")]));
    assert!(!met(&tenant, &read, &[("x-tenant", "globex")]));
    assert!(!met(&tenant, &read, &[("x-tenant", "ACME")]));
    assert!(!met(&tenant, &read, &[]), "missing");
    assert!(!met(&tenant, &read, &[("x-tenant", "")]), "empty");
    assert!(!met(&tenant, &read, &[("x-tenant", "acme"), ("x-tenant", "acme")]), "repeated, even alike");
    assert!(!met(&tenant, &read, &[("x-tenant", "acme"), ("x-tenant", "globex")]), "repeated");
    assert!(!met(&tenant, &read, &[("x-tenant", "acme"), ("x_tenant", "globex")]), "an underscore spelling too");
    assert!(!met(&tenant, &read, &[("x-tenant", "acme,globex")]), "one value, compared whole");
    // Alone, an underscore spelling is what CGI reads as the header: compared like it.
    assert!(met(&tenant, &read, &[("x_tenant", "acme")]));
    // A claim with several values: the header names one of them.
    let tenants = [condition(1, Test::EqualsHeader("x-tenant".into()))];
    assert!(met(&tenants, &read, &[("x-tenant", "globex")]));
    assert!(!met(&tenants, &read, &[("x-tenant", "initech")]));
}
