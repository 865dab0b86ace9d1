use std::rc::Rc;

use super::*;
use crate::principal::AuthMethod;
use crate::privileges::Privileges;

fn principal(id: &str, method: AuthMethod, requests_per_hour: Option<u64>) -> Principal {
    let limits = Limits { requests_per_hour, max_concurrent: Some(3) };
    let privileges = Rc::new(Privileges { limits, ..Privileges::default() });
    Principal::configured(id, method, &privileges)
}

#[test]
fn the_scope_decides_who_counts_the_hour() {
    let limits = Limits { requests_per_hour: Some(10), max_concurrent: Some(3) };
    assert_eq!(LimitScope::Envoy.local(&limits), limits);
    assert_eq!(LimitScope::Fleet.local(&limits), Limits { requests_per_hour: None, max_concurrent: Some(3) });
    assert!(LimitScope::Fleet.local(&Limits { requests_per_hour: Some(1), max_concurrent: None }).is_unlimited());
}

#[test]
fn only_a_fleet_principal_with_an_hourly_limit_is_handed_to_the_engine() {
    let limited = principal("alice", AuthMethod::Basic, Some(10));
    let unlimited = principal("bob", AuthMethod::Basic, None);
    assert_eq!(
        LimitScope::Fleet.descriptor(&limited),
        Some(("x-auth-ratelimit-principal".to_string(), "basic:alice".to_string()))
    );
    assert_eq!(LimitScope::Fleet.descriptor(&unlimited), None);
    assert_eq!(LimitScope::Envoy.descriptor(&limited), None);
}
