use std::rc::Rc;

use super::*;
use crate::network::Cidr;
use crate::path::normalize;
use crate::pipeline::route::{Require, RouteMatch};
use crate::principal::AuthMethod;
use crate::privileges::Privileges;
use crate::request::Source;

fn principal(privileges: Privileges, scopes: &[&str]) -> Principal {
    Principal {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Principal::configured("alice", AuthMethod::Basic, &Rc::new(privileges))
    }
}

fn rule(scopes: &[&str], principals: Option<&[&str]>) -> Rule {
    Rule {
        matcher: RouteMatch::default(),
        require: Require::Any,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        principals: principals.map(|p| p.iter().map(|s| s.to_string()).collect()),
        request_principals: None,
        enforce: None,
        claims: Vec::new(),
    }
}

fn check(principal: &Principal, rule: &Rule, method: &str, path: &str, source: Option<&str>) -> Result<(), Forbidden> {
    let path = normalize(path);
    let access = Access { method, path: &path, source: Source::Known(source.map(|s| s.parse().unwrap())) };
    authorize(principal, rule, &access)
}

fn reason(result: Result<(), Forbidden>) -> Reason {
    match result {
        Err(Forbidden::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn cdata_style_method_privileges() {
    // A user with CData's GET and DELETE privileges: no POST, no PUT/PATCH/MERGE.
    let reader =
        principal(Privileges { methods: Some(vec!["GET".into(), "DELETE".into()]), ..Privileges::default() }, &[]);
    let open = rule(&[], None);
    assert_eq!(check(&reader, &open, "GET", "/x", None), Ok(()));
    assert_eq!(check(&reader, &open, "DELETE", "/x", None), Ok(()));
    assert_eq!(check(&reader, &open, "delete", "/x", None), Ok(()), "methods compare without case");
    for method in ["POST", "PUT", "PATCH", "MERGE", "HEAD", "post"] {
        assert_eq!(reason(check(&reader, &open, method, "/x", None)), Reason::MethodNotAllowed, "{method}");
    }
}

#[test]
fn paths_are_prefixes_at_segment_boundaries_of_the_normalized_path() {
    let scoped = principal(Privileges { paths: Some(vec!["/reports".into()]), ..Privileges::default() }, &[]);
    let open = rule(&[], None);
    assert_eq!(check(&scoped, &open, "GET", "/reports/2026", None), Ok(()));
    for outside in ["/reportsX", "/reports/../admin", "/reports%2F..%2Fadmin", "/admin"] {
        assert_eq!(reason(check(&scoped, &open, "GET", outside, None)), Reason::PathNotAllowed, "{outside}");
    }
}

#[test]
fn networks_of_a_principal_fail_closed_without_an_address() {
    let office = Networks(vec![Cidr::parse("192.0.2.0/24").unwrap()]);
    let p = principal(Privileges { trusted_networks: Some(office), ..Privileges::default() }, &[]);
    let open = rule(&[], None);
    assert_eq!(check(&p, &open, "GET", "/", Some("192.0.2.7")), Ok(()));
    assert_eq!(reason(check(&p, &open, "GET", "/", Some("198.51.100.1"))), Reason::NetworkNotTrusted);
    assert_eq!(reason(check(&p, &open, "GET", "/", None)), Reason::NetworkNotTrusted);
}

#[test]
fn route_principals_and_scopes() {
    let p = principal(Privileges::default(), &["orders:read", "orders:write"]);
    assert_eq!(check(&p, &rule(&["orders:read"], Some(&["basic:alice", "basic:bob"])), "GET", "/", None), Ok(()));
    assert_eq!(reason(check(&p, &rule(&[], Some(&["basic:bob"])), "GET", "/", None)), Reason::PrincipalNotAllowed);
    // The same name vouched for by someone else is someone else.
    for other in ["alice", "api-key:alice", "jwt:corp:alice", "keypair:alice"] {
        assert_eq!(reason(check(&p, &rule(&[], Some(&[other])), "GET", "/", None)), Reason::PrincipalNotAllowed);
    }
    let needs = rule(&["orders:read", "admin"], None);
    assert_eq!(
        check(&p, &needs, "GET", "/", None),
        Err(Forbidden::InsufficientScope { required: vec!["orders:read".into(), "admin".into()] })
    );
}

#[test]
fn top_level_networks() {
    let lan = Networks(vec![Cidr::parse("10.0.0.0/8").unwrap()]);
    assert!(network_trusted(None, Source::Known(None)));
    assert!(network_trusted(Some(&lan), Source::Known(Some("10.1.1.1".parse().unwrap()))));
    assert!(!network_trusted(Some(&lan), Source::Known(Some("11.1.1.1".parse().unwrap()))));
    assert!(!network_trusted(Some(&lan), Source::Known(None)));
}
