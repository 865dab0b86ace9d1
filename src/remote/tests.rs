use super::*;
use crate::testing::{FakeResponse, FakeShared};

fn fetch_config(discovery: Option<Discovery>) -> FetchConfig {
    FetchConfig {
        target: Target { cluster: "idp".into(), authority: "idp.example".into(), path: "/start".into() },
        discovery,
        policy: FetchPolicy { refresh_ms: 60_000, timeout_ms: 1000, min_refetch_ms: 30_000 },
        max_response_bytes: 1024,
    }
}

fn document(discovery: Option<Discovery>) -> RemoteDocument<String> {
    RemoteDocument::new(
        fetch_config(discovery),
        "test",
        std::rc::Rc::new(|body: &[u8]| String::from_utf8(body.to_vec()).map_err(|_| "not text".into())),
    )
}

fn failure(progress: Progress) -> String {
    match progress {
        Progress::Failed(reason) => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn failed_answers_say_what_went_wrong() {
    let shared = FakeShared::default();
    let mut doc = document(None);
    let mut answer = |response: FakeResponse| failure(doc.on_response(&shared, Step::Document, &response, 1));
    assert_eq!(answer(FakeResponse::none()), "no response (timeout or connection failure)");
    assert!(answer(FakeResponse::status(503)).contains("Envoy could not reach the cluster"));
    assert!(answer(FakeResponse::status(504)).ends_with("(timed out)"));
    assert_eq!(answer(FakeResponse::status(404)), "HTTP status 404");
    assert!(answer(FakeResponse::ok(vec![b'x'; 1025])).contains("larger than 1024 bytes"));
    assert_eq!(answer(FakeResponse::ok(vec![0xff])), "not text");
}

#[test]
fn a_jwks_uri_on_another_host_needs_its_cluster() {
    let shared = FakeShared::default();
    let on = |doc: &mut RemoteDocument<String>, uri: &str| {
        let body = format!("{{\"jwks_uri\": \"{uri}\"}}");
        doc.on_response(&shared, Step::Discovery, &FakeResponse::ok(body), 1)
    };
    let mut same_host = document(Some(Discovery { jwks_cluster: None }));
    let Progress::Call(target) = on(&mut same_host, "https://IDP.example/keys") else { panic!() };
    assert_eq!((target.cluster.as_str(), target.path.as_str()), ("idp", "/keys"));
    assert!(failure(on(&mut same_host, "https://keys.example/k")).contains("set discovery.jwks_cluster"));

    let mut with_cluster = document(Some(Discovery { jwks_cluster: Some("keys".into()) }));
    let Progress::Call(target) = on(&mut with_cluster, "https://keys.example/k") else { panic!() };
    assert_eq!(target, Target { cluster: "keys".into(), authority: "keys.example".into(), path: "/k".into() });
}

#[test]
fn documents_of_different_owners_are_kept_apart() {
    let shared = FakeShared::default();
    let mut a = document(None);
    let mut b = RemoteDocument::new(
        fetch_config(None),
        "other",
        std::rc::Rc::new(|body: &[u8]| Ok(String::from_utf8_lossy(body).into_owned())),
    );
    a.start(&shared, 1, false);
    let _ = a.on_response(&shared, Step::Document, &FakeResponse::ok("a"), 1);
    assert!(!b.sync(&shared), "another owner's document is not this one's");
    assert_eq!(b.value(), None);
    assert_eq!(shared.keys().len(), 2, "a's body and record only");
}
