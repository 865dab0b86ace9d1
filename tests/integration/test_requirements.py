"""Requirement trees, shadow mode, `optional_or_failed` and Istio request principals
(issue 22.1, 22.3-22.5), in a real Envoy. Tokens are made with PyJWT.

A tree's every credential is verified (a bad one is refused, never stepped around);
the rule's principal is its `principal_from` kind's, the others are reported in
`x-auth-also-<method>` (forged copies removed). Shadow mode and `optional_or_failed`
let a request through, but never with a principal header, forged or not.
"""
from __future__ import annotations

import pytest

from harness import EnvoyHarness, cli_check, refusal_of
from tokens import basic_header, mint, now, p256_key, public_pem, sha256_hash

PASSWORD = "alice-password-0123"
CLIENT_KEY = "reporting-key-0123"
CORP_KEY = p256_key()
OTHER_KEY = p256_key()
CORP_ISSUER = "https://id.corp.example"

CONFIG = {
    "filter_state": True,
    "principal_headers": {"qualified": "x-auth-qualified"},
    # alice is a Basic user and an API client: two principals, one name.
    "basic": {"users": [{"name": "alice", "password_hash": sha256_hash(PASSWORD)}]},
    "api_keys": {"clients": [{"id": "alice", "key_hash": sha256_hash(CLIENT_KEY)}]},
    "jwt": {"providers": [{"name": "corp", "issuer": CORP_ISSUER, "local_pem": public_pem(CORP_KEY).decode(),
                           "from_headers": [{"name": "x-jwt"}]}]},
    "rules": [
        {"match": {"path_prefix": "/all"}, "require": {"all": ["basic", {"any": ["jwt:corp", "api-key"]}]},
         "principal_from": ["jwt:corp", "basic"]},
        {"match": {"path_prefix": "/any"}, "require": {"any": ["jwt:corp", "api-key"]}},
        {"match": {"path_prefix": "/pinned"}, "require": {"all": ["basic", "api-key"]},
         "principal_from": ["api-key"], "principals": ["api-key:alice"]},
        {"match": {"path_prefix": "/shadow"}, "require": ["jwt:corp"], "enforce": False},
        {"match": {"path_prefix": "/migrating"}, "require": "optional_or_failed"},
        {"match": {"path": "/rp/exact"}, "request_principals": [f"{CORP_ISSUER}/bob"]},
        {"match": {"path": "/rp/prefix"}, "request_principals": [f"{CORP_ISSUER}/*"]},
        {"match": {"path": "/rp/suffix"}, "request_principals": ["*/bob"]},
        {"match": {"path": "/rp/present"}, "request_principals": ["*"]},
    ],
}

# RBAC after the filter: /shadow/audited only when the filter state says why it would be refused.
RBAC = {"name": "envoy.filters.http.rbac", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
    "rules": {"action": "ALLOW", "policies": {
        "shadow-reason": {
            "permissions": [{"url_path": {"path": {"prefix": "/shadow/audited"}}}],
            "principals": [{"filter_state": {"key": "wasm.wasm_authn.shadow",
                                             "string_match": {"exact": "missing_credential"}}}]},
        "failed-reason": {
            "permissions": [{"url_path": {"path": {"prefix": "/migrating/audited"}}}],
            "principals": [{"filter_state": {"key": "wasm.wasm_authn.failed",
                                             "string_match": {"exact": "jwt_expired"}}}]},
        "anyone-elsewhere": {
            "permissions": [{"not_rule": {"or_rules": {"rules": [
                {"url_path": {"path": {"prefix": "/shadow/audited"}}},
                {"url_path": {"path": {"prefix": "/migrating/audited"}}}]}}}],
            "principals": [{"any": True}]},
    }}}}

FORGED = {"x-auth-principal": "admin", "x-auth-qualified": "basic:admin", "x-auth-method": "basic",
          "x-auth-also-jwt": "jwt:corp:admin", "x-auth-also-basic": "basic:admin"}
PRINCIPAL_HEADERS = ("x-auth-principal", "x-auth-qualified", "x-auth-method", "x-auth-provider")


@pytest.fixture(scope="module")
def envoy(envoy_factory):
    return envoy_factory(CONFIG, concurrency=2, http_filters_after=[RBAC])


def corp(sub: str, exp_in: int = 300, key=CORP_KEY) -> str:
    t = now()
    return mint(key, "ES256", {"iss": CORP_ISSUER, "sub": sub, "iat": t, "exp": t + exp_in})


ALICE = {"authorization": basic_header("alice", PASSWORD)}
KEY = {"x-api-key": CLIENT_KEY}


def owned_headers_seen(r) -> dict:
    seen = EnvoyHarness.upstream_headers(r)
    return {k: v for k, v in seen.items() if k.startswith("x-auth") or k.startswith("x_auth")}


def test_an_all_tree_takes_each_credential_and_names_the_rules_principal(envoy):
    r = envoy.request("GET", "/all/x", {**ALICE, "x-jwt": corp("bob"), **FORGED})
    assert r.status == 200, (r.status, r.body)
    assert owned_headers_seen(r) == {"x-auth-principal": "bob", "x-auth-qualified": "jwt:corp:bob",
                                     "x-auth-method": "jwt", "x-auth-provider": "corp",
                                     "x-auth-also-basic": "basic:alice"}
    seen = EnvoyHarness.upstream_headers(r)
    assert "authorization" not in seen and "x-jwt" not in seen
    # The `any` met by the API key instead: Basic's principal is the rule's then.
    r = envoy.request("GET", "/all/x", {**ALICE, **KEY, **FORGED})
    assert r.status == 200, (r.status, r.body)
    assert owned_headers_seen(r) == {"x-auth-principal": "alice", "x-auth-qualified": "basic:alice",
                                     "x-auth-method": "basic", "x-auth-also-api-key": "api-key:alice"}


def test_a_missing_entry_of_an_all_is_401_with_the_challenges_of_what_is_missing(envoy):
    r = envoy.request("GET", "/all/x", ALICE)
    assert r.status == 401 and r.json()["message"] == "credentials are required: jwt:corp, api-key", r.body
    challenges = r.headers.get_all("www-authenticate")
    assert any(c.startswith("Bearer") for c in challenges) and any(c.startswith("ApiKey") for c in challenges)
    r = envoy.request("GET", "/all/x", {"x-jwt": corp("bob"), **KEY})
    assert r.status == 401 and r.json()["message"] == "credentials are required: basic", r.body
    assert [c.split()[0] for c in r.headers.get_all("www-authenticate")] == ["Basic"]


def test_an_unverified_credential_never_meets_a_tree(envoy):
    # A forged token (another key) beside a good API key: refused, not stepped around.
    r = envoy.request("GET", "/all/x", {**ALICE, "x-jwt": corp("bob", key=OTHER_KEY), **KEY})
    assert r.status == 401 and r.json()["error"] == "invalid_token", r.body
    r = envoy.request("GET", "/all/x", {"authorization": basic_header("alice", "wrong"), **KEY})
    assert r.status == 401 and r.json()["error"] == "invalid_credentials", r.body
    r = envoy.request("GET", "/any/x", {"x-jwt": corp("bob", exp_in=-600), **KEY})
    assert r.status == 401, r.body
    # Forged principal headers meet nothing: only credentials do.
    r = envoy.request("GET", "/all/x", {**ALICE, **FORGED})
    assert r.status == 401, r.body


def test_the_same_name_from_two_kinds_is_two_principals(envoy):
    # /pinned: Basic alice and API client alice; the rule's principal is the API client's.
    r = envoy.request("GET", "/pinned", {**ALICE, **KEY})
    assert r.status == 200, r.body
    assert owned_headers_seen(r) == {"x-auth-principal": "alice", "x-auth-qualified": "api-key:alice",
                                     "x-auth-method": "api-key", "x-auth-also-basic": "basic:alice"}
    # The API client's key as Basic `alice:key` is never the Basic user alice.
    r = envoy.request("GET", "/pinned", {"authorization": basic_header("alice", CLIENT_KEY), **KEY})
    assert r.status == 401, r.body


def test_shadow_mode_never_adds_or_forwards_a_principal_header(envoy):
    cases = [
        ({}, "missing_credential"),
        ({"x-jwt": corp("bob", key=OTHER_KEY)}, "jwt_bad_signature"),
        ({"x-jwt": corp("bob")}, None),
    ]
    before = envoy.wasm_stats()
    for headers, reason in cases:
        r = envoy.request("GET", "/shadow/x", {**headers, **FORGED})
        assert r.status == 200, (reason, r.status, r.body)
        assert owned_headers_seen(r) == {}, reason
        assert "x-jwt" not in EnvoyHarness.upstream_headers(r)
    after = envoy.wasm_stats()
    for name in ("shadow_denied.missing_credential", "shadow_denied.jwt_bad_signature", "shadow_allowed"):
        assert after.get(f"wasm_authn.{name}", 0) - before.get(f"wasm_authn.{name}", 0) == 1, (name, after)
    # The filter state says why (RBAC reads it): only a request that would be refused for it passes.
    assert envoy.request("GET", "/shadow/audited", FORGED).status == 200
    assert envoy.request("GET", "/shadow/audited", {"x-jwt": corp("bob")}).status == 403


def test_optional_or_failed(envoy):
    before = envoy.wasm_stats()
    expired = corp("bob", exp_in=-600)
    for headers in ({"x-jwt": expired}, {"x-jwt": "not.a.token"}, {"x-api-key": "wrong"}, {}):
        r = envoy.request("GET", "/migrating/x", {**headers, **FORGED})
        assert r.status == 200, (headers, r.status, r.body)
        assert owned_headers_seen(r) == {}, headers
    after = envoy.wasm_stats()
    for name in ("optional_failed.jwt_expired", "optional_failed.jwt_malformed", "optional_failed.api_key_invalid"):
        assert after.get(f"wasm_authn.{name}", 0) - before.get(f"wasm_authn.{name}", 0) == 1, (name, after)
    r = envoy.request("GET", "/migrating/x", {"x-jwt": corp("bob"), **FORGED})
    assert r.status == 200
    assert owned_headers_seen(r)["x-auth-qualified"] == "jwt:corp:bob"
    assert envoy.request("GET", "/migrating/audited", {"x-jwt": expired}).status == 200
    assert envoy.request("GET", "/migrating/audited", {"x-jwt": "not.a.token"}).status == 403


@pytest.mark.parametrize("path, bob, eve", [
    ("/rp/exact", 200, 403), ("/rp/prefix", 200, 200), ("/rp/suffix", 200, 403), ("/rp/present", 200, 200)])
def test_request_principals_as_istio_writes_them(envoy, path, bob, eve):
    assert envoy.request("GET", path, {"x-jwt": corp("bob")}).status == bob
    assert envoy.request("GET", path, {"x-jwt": corp("eve")}).status == eve
    # Not a token principal: a Basic user and an API client never match, not even `*`.
    for headers in (ALICE, KEY):
        r = envoy.request("GET", path, headers)
        assert r.status == 403 and r.json()["message"] == "principal not allowed", (path, r.body)


@pytest.mark.parametrize("rule, fragment", [
    ({"require": {"all": ["jwt", "jwt:corp"]}}, "rules[0].require.all[1]: takes a credential from where another"),
    ({"require": {"all": ["basic", {"any": ["jwt:corp", "api-key"]}]}, "principal_from": ["jwt:corp"]},
     "rules[0].principal_from: the require tree can be met without any of these kinds"),
    ({"require": {"any": [{"any": [{"any": [{"any": [{"any": ["basic"]}]}]}]}]}},
     "rules[0].require.any[0].any[0].any[0].any[0].any: nests deeper than 4"),
    ({"request_principals": ["*corp*"]}, "rules[0].request_principals[0]: must be <iss>/<sub>"),
])
def test_bad_trees_are_refused_at_load(rule, fragment, cli):
    config = {**CONFIG, "rules": [rule]}
    code, log = EnvoyHarness(config, concurrency=1).start_expect_failure(timeout=40)
    assert code not in (None, 0), log[-2000:]
    refused = refusal_of(log)
    assert refused is not None and refused.startswith(fragment), (refused, log[-2000:])
    cli_code, cli_err = cli_check(config)
    assert (cli_code, refusal_of(cli_err)) == (1, refused), cli_err
