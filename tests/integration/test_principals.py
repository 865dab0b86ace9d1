"""Principals named by who vouches for them (issue 17.6), in a real Envoy: the Basic
user alice, the API client alice (by its key, and by a token of the token endpoint)
and a partner IdP's sub=alice are four principals, and neither `rules[].principals`
nor Envoy's RBAC on the filter state (`wasm.wasm_authn.principal`) can be fooled into
taking one for another. `x-auth-principal` keeps the bare id upstreams read today.
"""
from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization

from harness import EnvoyHarness, cli_check, refusal_of
from tokens import basic_header, mint, now, p256_key, public_pem, sha256_hash

PASSWORD = "alice-password-0123"
CLIENT_KEY = "alice-client-key-0123"
PARTNER_KEY = p256_key()
PARTNER_ISSUER = "https://login.partner.example"
ENDPOINT_KEY = p256_key()

CONFIG = {
    "filter_state": True,
    "principal_headers": {"qualified": "x-auth-qualified"},
    "basic": {"users": [{"name": "alice", "password_hash": sha256_hash(PASSWORD)}]},
    "api_keys": {"clients": [{"id": "alice", "key_hash": sha256_hash(CLIENT_KEY)}], "allow_basic": False},
    "jwt": {"providers": [{"name": "partners", "issuer": PARTNER_ISSUER,
                           "local_pem": public_pem(PARTNER_KEY).decode()}]},
    "token_endpoint": {"path": "/auth/token", "issuer": "https://api.example/auth", "signing_key": ENDPOINT_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()},
    "rules": [{"match": {"path_prefix": "/rule-admin"}, "principals": ["basic:alice"]}],
}

# Envoy's RBAC after wasm-authn: /rbac-admin for the Basic user alice only, by the filter state.
RBAC = {"name": "envoy.filters.http.rbac", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
    "rules": {"action": "ALLOW", "policies": {
        "basic-alice-on-admin": {
            "permissions": [{"url_path": {"path": {"prefix": "/rbac-admin"}}}],
            "principals": [{"filter_state": {"key": "wasm.wasm_authn.principal",
                                             "string_match": {"exact": "basic:alice"}}}]},
        "anyone-elsewhere": {
            "permissions": [{"not_rule": {"url_path": {"path": {"prefix": "/rbac-admin"}}}}],
            "principals": [{"any": True}]},
    }}}}


@pytest.fixture(scope="module")
def envoy(envoy_factory):
    return envoy_factory(CONFIG, concurrency=2, http_filters_after=[RBAC])


def endpoint_token(envoy) -> str:
    r = envoy.request("POST", "/auth/token", {"content-type": "application/json"},
                      body=json.dumps({"apiKey": CLIENT_KEY}).encode())
    assert r.status == 200, (r.status, r.body)
    return r.json()["access_token"]


def other_alices(envoy):
    """Every principal named alice but the Basic user, with its qualified name."""
    t = now()
    partner = mint(PARTNER_KEY, "ES256", {"iss": PARTNER_ISSUER, "sub": "alice", "iat": t, "exp": t + 300})
    return [
        ({"x-api-key": CLIENT_KEY}, "api-key:alice", "api-key"),
        ({"authorization": f"Bearer {endpoint_token(envoy)}"}, "api-key:alice", "jwt"),
        ({"authorization": f"Bearer {partner}"}, "jwt:partners:alice", "jwt"),
    ]


def test_the_basic_user_alice_passes_the_rule_and_rbac(envoy):
    alice = {"authorization": basic_header("alice", PASSWORD)}
    for path in ("/rule-admin/x", "/rbac-admin/x"):
        r = envoy.request("GET", path, {**alice, "x-auth-qualified": "forged"})
        assert r.status == 200, (path, r.status, r.body)
        seen = EnvoyHarness.upstream_headers(r)
        assert (seen["x-auth-principal"], seen["x-auth-qualified"], seen["x-auth-method"]) == \
            ("alice", "basic:alice", "basic")


def test_no_other_alice_passes_the_rule_or_rbac(envoy):
    for headers, qualified, method in other_alices(envoy):
        # Elsewhere it is allowed, with the bare id upstreams read, and its qualified name.
        r = envoy.request("GET", "/orders", {**headers, "x-auth-qualified": "basic:alice"})
        assert r.status == 200, (qualified, r.status, r.body)
        seen = EnvoyHarness.upstream_headers(r)
        assert (seen["x-auth-principal"], seen["x-auth-qualified"], seen["x-auth-method"]) == \
            ("alice", qualified, method)
        r = envoy.request("GET", "/rule-admin/x", headers)
        assert r.status == 403 and r.json()["message"] == "principal not allowed", (qualified, r.status, r.body)
        r = envoy.request("GET", "/rbac-admin/x", headers)
        assert r.status == 403 and b"RBAC" in r.body, (qualified, r.status, r.body)


BARE = {**CONFIG, "rules": [{"match": {"path_prefix": "/rule-admin"}, "principals": ["alice"]}]}


@pytest.mark.parametrize("config, fragment", [
    (BARE, 'rules[0].principals[0]: names no kind of principal: write "basic:alice"'),
    ({**CONFIG, "revocation": {"not_before": {"alice": 1800000000}}},
     'revocation.not_before.alice: names no kind of principal: write "basic:alice"'),
    ({**CONFIG, "rules": [{"principals": ["jwt:token-endpoint:alice"]}]},
     "rules[0].principals[0]: names no JWT provider: the token endpoint's tokens are api-key:<client id>"),
])
def test_a_name_without_its_kind_is_refused_at_load(config, fragment, cli):
    code, log = EnvoyHarness(config, concurrency=1).start_expect_failure(timeout=40)
    assert code not in (None, 0), log[-2000:]
    refused = refusal_of(log)
    assert refused is not None and refused.startswith(fragment), (refused, log[-2000:])
    cli_code, cli_err = cli_check(config)
    assert (cli_code, refusal_of(cli_err)) == (1, refused), cli_err
