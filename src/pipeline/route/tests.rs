use super::*;
use crate::path::normalize;
use crate::pipeline::policy::authorize;
use crate::privileges::Privileges;
use std::rc::Rc;

fn rule(matcher: RouteMatch, require: Require) -> Rule {
    Rule::only(matcher, require)
}

fn prefix(p: &str) -> RouteMatch {
    RouteMatch { path_prefix: Some(p.into()), ..RouteMatch::default() }
}

fn select<'r>(routes: &'r Routes, method: &str, path: &str, headers: &[(&str, &str)]) -> &'r Rule {
    let headers = crate::testing::headers(headers);
    let mut request = RequestFacts::new(method, path, &headers);
    request.route_name = Some("orders-route");
    // The selected rule borrows `routes` only.
    let chosen = routes.select(&request, &normalize(path));
    chosen
}

#[test]
fn first_match_wins_and_no_match_is_the_default() {
    let routes = Routes::new(
        vec![
            rule(prefix("/public"), Require::None),
            rule(prefix("/admin"), Require::Kinds(vec![Kind::Jwt { provider: Some("corp".into()) }])),
            rule(prefix("/"), Require::Optional),
        ],
        false,
    );
    assert_eq!(select(&routes, "GET", "/public/x", &[]).require, Require::None);
    assert!(matches!(select(&routes, "GET", "/admin", &[]).require, Require::Kinds(_)));
    assert_eq!(select(&routes, "GET", "/other", &[]).require, Require::Optional);
    let empty = Routes::default();
    assert_eq!(select(&empty, "GET", "/x", &[]), &DEFAULT_RULE);
}

#[test]
fn escapes_never_reach_a_relaxed_rule() {
    let routes = Routes::new(
        vec![rule(prefix("/public"), Require::None), rule(prefix("/admin"), Require::Kinds(vec![Kind::Basic]))],
        false,
    );
    for escaped in [
        "/public/../admin",
        "//admin",
        "/%61dmin",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
        "/public/%2e%2e;/admin",
        "/public/..;x=1/admin",
        "/admin;x=1/a",
        "/admin;/a",
    ] {
        let chosen = select(&routes, "GET", escaped, &[]);
        assert!(matches!(chosen.require, Require::Kinds(_)), "{escaped} fell under {chosen:?}");
    }
    // An ambiguous path never relaxes, even where it names the relaxed route.
    assert_eq!(select(&routes, "GET", "/public%2Fdocs", &[]), &DEFAULT_RULE);
    assert_eq!(select(&routes, "GET", "/public/x/.;/docs", &[]), &DEFAULT_RULE);
    assert_eq!(select(&routes, "GET", "/public;v=1/docs", &[]).require, Require::None);
    assert_eq!(select(&routes, "GET", "/adminX", &[]), &DEFAULT_RULE);
    assert_eq!(select(&routes, "GET", "/PUBLIC/", &[]), &DEFAULT_RULE);
}

#[test]
fn every_condition_must_match() {
    let matcher = RouteMatch {
        path_prefix: Some("/orders".into()),
        path: None,
        methods: Some(vec!["POST".into()]),
        host: Some(HostPattern::Suffix(".example.com".into())),
        route: Some("orders-route".into()),
    };
    let routes = Routes::new(vec![rule(matcher, Require::Optional)], false);
    let host = |h: &'static str| [(":authority", h)];
    assert_eq!(select(&routes, "POST", "/orders/1", &host("api.example.com:8443")).require, Require::Optional);
    assert_eq!(select(&routes, "GET", "/orders/1", &host("api.example.com")), &DEFAULT_RULE);
    assert_eq!(select(&routes, "POST", "/orders/1", &host("example.com")), &DEFAULT_RULE, "*.suffix needs a subdomain");
    assert_eq!(select(&routes, "POST", "/orders/1", &host("evil-example.com")), &DEFAULT_RULE);
    for fqdn in ["x.api.example.com.", "x.api.example.com.:8443", "X.API.Example.COM."] {
        assert_eq!(select(&routes, "POST", "/orders/1", &host(fqdn)).require, Require::Optional, "{fqdn}");
    }
    assert_eq!(select(&routes, "POST", "/orders/1", &host("x.example.com..")), &DEFAULT_RULE, "one dot only");
    assert_eq!(select(&routes, "POST", "/other", &host("api.example.com")), &DEFAULT_RULE);

    let exact = RouteMatch {
        path: Some("/status".into()),
        host: Some(HostPattern::Exact("API.example".into())),
        ..RouteMatch::default()
    };
    let routes = Routes::new(vec![rule(exact, Require::None)], false);
    assert_eq!(select(&routes, "GET", "/status?x=1", &[(":authority", "api.example")]).require, Require::None);
    assert_eq!(select(&routes, "GET", "/status/x", &[(":authority", "api.example")]), &DEFAULT_RULE);
    assert_eq!(select(&routes, "GET", "/status", &[(":authority", "[::1]:80")]), &DEFAULT_RULE);
    for fqdn in ["api.example.", "api.example.:8443"] {
        assert_eq!(select(&routes, "GET", "/status", &[(":authority", fqdn)]).require, Require::None, "{fqdn}");
    }
}

#[test]
fn route_names_come_from_envoy() {
    let by_name = |name: &str| RouteMatch { route: Some(name.into()), ..RouteMatch::default() };
    let routes = Routes::new(
        vec![rule(by_name("admin-route"), Require::None), rule(by_name("orders-route"), Require::Optional)],
        false,
    );
    assert!(routes.needs_route_name());
    assert_eq!(select(&routes, "GET", "/", &[]).require, Require::Optional);
}

fn principal(method: AuthMethod, provider: Option<&str>) -> Principal {
    Principal {
        provider: provider.map(String::from),
        ..Principal::configured("p", method, &Rc::new(Privileges::default()))
    }
}

#[test]
fn kinds_admit_their_principals() {
    let jwt_corp = Require::Kinds(vec![Kind::Jwt { provider: Some("corp".into()) }]);
    assert!(jwt_corp.admits(&principal(AuthMethod::Jwt, Some("corp"))));
    assert!(!jwt_corp.admits(&principal(AuthMethod::Jwt, Some("partners"))));
    assert!(!jwt_corp.admits(&principal(AuthMethod::ApiKey, None)));
    let keys = Require::Kinds(vec![Kind::ApiKey]);
    assert!(keys.admits(&principal(AuthMethod::ApiKey, None)));
    assert!(!keys.admits(&principal(AuthMethod::Basic, None)));
    assert_eq!(keys.schemes(), Schemes { basic: true, bearer: false, api_key: true, mtls: false });
    assert_eq!(Require::Any.schemes(), Schemes { basic: true, bearer: true, api_key: true, mtls: true });
    // authorize is covered in policy's tests; here only that a default rule restricts nothing.
    let access = crate::pipeline::policy::Access {
        method: "DELETE",
        path: &normalize("/x"),
        source: crate::request::Source::Known(None),
    };
    assert_eq!(authorize(&principal(AuthMethod::Basic, None), &DEFAULT_RULE, &access), Ok(()));
}

#[test]
fn methods_match_without_case() {
    // Some upstreams read `post` as POST: it must meet the POST rule, not the laxer one after it.
    let post = RouteMatch { methods: Some(vec!["POST".into()]), ..prefix("/orders") };
    let routes = Routes::new(vec![rule(post, Require::Any), rule(prefix("/orders"), Require::None)], true);
    for method in ["POST", "post", "PoSt"] {
        assert_eq!(select(&routes, method, "/orders", &[]).require, Require::Any, "{method}");
    }
    let preflight = [("origin", "https://a.example"), ("access-control-request-method", "POST")];
    assert_eq!(select(&routes, "options", "/orders", &preflight).require, Require::None);
}

/// What `select` answered when it tried every rule in order.
fn select_by_scan<'r>(routes: &'r Routes, request: &RequestFacts, path: &MatchPath) -> &'r Rule {
    routes
        .rules
        .iter()
        .filter(|rule| !(path.ambiguous && rule.require.relaxed()))
        .find(|rule| rule.matcher.matches(request, path))
        .unwrap_or(&DEFAULT_RULE)
}

#[test]
fn the_index_selects_what_a_scan_of_every_rule_selects() {
    // A small xorshift: random rule sets over a few segments (prefixes with and without a
    // trailing '/', exact paths, '/', rules on any path, methods, relaxed or not) against
    // random paths, ambiguous or not.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    const SEGMENTS: [&str; 6] = ["a", "b", "ab", "", "a.b", "c"];
    let random_path = |next: &mut dyn FnMut(usize) -> usize| {
        let depth = next(4);
        let mut path: String = (0..depth).map(|_| format!("/{}", SEGMENTS[next(SEGMENTS.len())])).collect();
        if path.is_empty() || next(4) == 0 {
            path.push('/');
        }
        path
    };
    for _ in 0..500 {
        let rules: Vec<Rule> = (0..next(12))
            .map(|_| {
                let mut matcher = RouteMatch::default();
                match next(4) {
                    0 => matcher.path = Some(random_path(&mut next)),
                    1 | 2 => matcher.path_prefix = Some(random_path(&mut next)),
                    _ => {}
                }
                if next(4) == 0 {
                    matcher.methods = Some(vec!["POST".into()]);
                }
                let require = [Require::Any, Require::None, Require::Optional][next(3)].clone();
                rule(matcher, require)
            })
            .collect();
        let routes = Routes::new(rules, false);
        let headers = crate::testing::headers(&[]);
        for _ in 0..40 {
            let raw = random_path(&mut next);
            let method = ["GET", "POST"][next(2)];
            let request = RequestFacts::new(method, &raw, &headers);
            let mut path = normalize(&raw);
            path.ambiguous = next(3) == 0;
            let (indexed, scanned) = (routes.select(&request, &path), select_by_scan(&routes, &request, &path));
            assert!(std::ptr::eq(indexed, scanned), "{method} {raw}: {indexed:?} vs {scanned:?} in {:?}", routes.rules);
        }
    }
}

#[test]
fn a_thousand_rules_select_as_one() {
    let rules: Vec<Rule> = (0..1000)
        .map(|i| rule(prefix(&format!("/service-{}/v{}", i % 250, i / 250)), Require::Kinds(vec![Kind::Basic])))
        .chain([rule(prefix("/"), Require::Optional)])
        .collect();
    let routes = Routes::new(rules, false);
    let chosen = select(&routes, "GET", "/service-249/v3/items", &[]);
    assert_eq!(chosen.matcher.path_prefix.as_deref(), Some("/service-249/v3"));
    assert_eq!(select(&routes, "GET", "/service-249/v4", &[]).require, Require::Optional);
    assert_eq!(select(&routes, "GET", "/elsewhere", &[]).require, Require::Optional);
}
