"""Claims in rules, routes on verified claims, the payload handed on, a provider's
`forward`, and Istio's RBAC after the filter (issue 22.2, 22.6-22.9), in a real
Envoy with tokens made by PyJWT.

Routes: Envoy (1.40) picks the route again after the filter changes request
headers (the module's ABI is proxy-wasm 0.2.1, for which Envoy still clears the
route cache on every header change), so a route that matches a claim header or
`x-auth-principal` sees the verified value, never a client's.
"""
from __future__ import annotations

import base64
import json
import os
import time

import pytest

from harness import EnvoyHarness, Response
from introspection_server import ISSUER as IDP_ISSUER, IntrospectionServer
from tokens import basic_header, mint, now, p256_key, public_pem, sha256_hash

KEY = p256_key()
ISSUER = "https://id.example"
ALICE = {"authorization": basic_header("alice", "alice-pw-0123")}
API_KEY = "rk-0123456789abcdef"

CONFIG = {
    "forward_credentials": False,
    "basic": {"users": [{"name": "alice", "password_hash": sha256_hash("alice-pw-0123")}]},
    "api_keys": {"clients": [{"id": "reports", "key_hash": sha256_hash(API_KEY)}]},
    "jwt": {"providers": [{
        "name": "corp", "issuer": ISSUER, "local_pem": public_pem(KEY).decode(),
        "claim_to_headers": [{"claim": "tenant", "header": "x-auth-tenant"}],
        "forward": True,
        "forward_payload_header": "x-jwt-payload",
        "payload_in_filter_state": True,
    }]},
    "bypass": [{"path_prefix": "/public"}],
    "rules": [
        {"match": {"path_prefix": "/admin"}, "claims": [
            {"claim": "realm.roles", "any_of": ["admin", "root"]},
            {"claim": "groups", "all_of": ["eng", "oncall"]},
            {"claim": "mfa", "any_of": [True]},
        ]},
        {"match": {"path_prefix": "/tenants"}, "claims": [{"claim": "tenant", "equals_header": "x-tenant"}]},
    ],
}


def routes_on_verified_headers(cfg: dict) -> None:
    """Routes on /orders that match the filter's headers: a claim header and the principal."""
    for f in cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]:
        if f["name"] == "envoy.filters.network.http_connection_manager":
            vhost = f["typed_config"]["route_config"]["virtual_hosts"][0]

    def direct(header: str, value: str, body: str) -> dict:
        return {"match": {"prefix": "/orders", "headers": [{"name": header, "string_match": {"exact": value}}]},
                "direct_response": {"status": 200, "body": {"inline_string": body}}}

    vhost["routes"] = [direct("x-auth-tenant", "acme", "route:acme-tenant"),
                       direct("x-auth-principal", "alice", "route:alice")] + vhost["routes"]


# The RBAC filter Istio (1.2x) generates for this AuthorizationPolicy, as `istioctl proxy-config
# listener -o yaml` shows it (docs/envoy-and-istio.md has the policy):
#   action: ALLOW; rules: [{to: [{operation: {paths: ["/istio/*"]}}],
#                           when: [{key: request.headers[x-auth-principal], values: ["alice"]}]},
#                          {to: [{operation: {notPaths: ["/istio/*"]}}]}]
ISTIO_RBAC = {"name": "envoy.filters.http.rbac", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
    "rules": {"policies": {
        "ns[shop]-policy[orders-admin]-rule[0]": {
            "permissions": [{"and_rules": {"rules": [{"or_rules": {"rules": [
                {"url_path": {"path": {"prefix": "/istio/"}}}]}}]}}],
            "principals": [{"and_ids": {"ids": [{"or_ids": {"ids": [
                {"header": {"name": "x-auth-principal", "string_match": {"exact": "alice"}}}]}}]}}]},
        "ns[shop]-policy[orders-admin]-rule[1]": {
            "permissions": [{"and_rules": {"rules": [{"or_rules": {"rules": [
                {"not_rule": {"url_path": {"path": {"prefix": "/istio/"}}}}]}}]}}],
            "principals": [{"and_ids": {"ids": [{"any": True}]}}]},
    }},
    "shadow_rules_stat_prefix": "istio_dry_run_allow_"}}

LOG_FORMAT = "%REQ(:PATH)% %RESPONSE_CODE% payload=%FILTER_STATE(wasm.wasm_authn.payload:PLAIN)%\n"


@pytest.fixture(scope="module")
def access_log(tmp_path_factory):
    return str(tmp_path_factory.mktemp("claims") / "access.log")


@pytest.fixture(scope="module")
def envoy(envoy_factory, access_log):
    hcm = {"access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": access_log, "log_format": {"text_format_source": {"inline_string": LOG_FORMAT}}}}]}
    return envoy_factory(CONFIG, config_hook=routes_on_verified_headers, http_filters_after=[ISTIO_RBAC],
                         hcm_overrides=hcm, extra_args=["--file-flush-interval-msec", "50"])


def token(**claims) -> str:
    base = {"iss": ISSUER, "sub": "u-1", "exp": now() + 300}
    base.update(claims)
    return mint(KEY, "ES256", base)


def bearer(**claims) -> dict:
    return {"authorization": f"Bearer {token(**claims)}"}


def show(r: Response) -> str:
    return f"{r.status} {r.headers.to_dict()} {r.body[:300]!r}"


def refusals(h: EnvoyHarness, method: str, path: str, headers) -> tuple:
    before = h.wasm_stats()
    r = h.request(method, path, headers)
    after = h.wasm_stats()
    reasons = [k[len("wasm_authn.denied."):] for k, v in after.items()
               if k.startswith("wasm_authn.denied.") and v > before.get(k, 0)]
    return r, reasons


ADMIN = dict(realm={"roles": ["admin"]}, groups=["eng", "oncall", "sre"], mfa=True)


def test_claim_conditions_admit_only_tokens_that_meet_them_all(envoy):
    r = envoy.request("GET", "/admin/users", bearer(**ADMIN))
    assert r.status == 200, show(r)
    for missing in [dict(ADMIN, realm={"roles": ["reader"]}), dict(ADMIN, groups=["eng"]),
                    dict(ADMIN, mfa=False), dict(ADMIN, mfa="true"), {k: v for k, v in ADMIN.items() if k != "mfa"},
                    dict(ADMIN, groups="eng oncall")]:
        r, reasons = refusals(envoy, "GET", "/admin/users", bearer(**missing))
        assert r.status == 403, (missing, show(r))
        assert r.json()["error"] == "forbidden", show(r)
        assert reasons == ["claim_condition_failed"], (missing, reasons)
    # Basic users and API keys have no claims: a rule with conditions refuses them.
    for credential in [ALICE, {"x-api-key": API_KEY}]:
        r, reasons = refusals(envoy, "GET", "/admin/users", credential)
        assert (r.status, reasons) == (403, ["claim_condition_failed"]), show(r)
        assert envoy.request("GET", "/elsewhere", credential).status == 200


def test_equals_header_holds_the_client_to_its_tenant(envoy):
    acme = bearer(tenant="acme")
    r = envoy.request("GET", "/tenants/acme/orders", {**acme, "x-tenant": "acme"})
    assert r.status == 200, show(r)
    assert EnvoyHarness.upstream_headers(r)["x-tenant"] == "acme"
    # Another tenant, no header, the header twice (even alike, even a second that matches), another case.
    for sent in [[("x-tenant", "globex")], [], [("x-tenant", "acme"), ("x-tenant", "acme")],
                 [("x-tenant", "globex"), ("x-tenant", "acme")], [("x-tenant", "ACME")], [("x-tenant", "")]]:
        r, reasons = refusals(envoy, "GET", "/tenants/acme/orders", list(acme.items()) + sent)
        assert (r.status, reasons) == (403, ["claim_condition_failed"]), (sent, show(r))
    # A token whose tenant is a list: the header names one of them.
    both = bearer(tenant=["acme", "globex"])
    assert envoy.request("GET", "/tenants/globex/x", {**both, "x-tenant": "globex"}).status == 200
    assert envoy.request("GET", "/tenants/initech/x", {**both, "x-tenant": "initech"}).status == 403


def test_routes_match_verified_claims_and_principals_never_forged_ones(envoy):
    # The claim header the filter sets picks the route.
    r = envoy.request("GET", "/orders", bearer(tenant="acme"))
    assert (r.status, r.body) == (200, b"route:acme-tenant"), show(r)
    # A client's copy is removed first: another tenant's token, or none, never reaches that route.
    r = envoy.request("GET", "/orders", {**bearer(tenant="globex"), "x-auth-tenant": "acme"})
    assert r.status == 200 and r.body != b"route:acme-tenant", show(r)
    assert EnvoyHarness.upstream_headers(r)["x-auth-tenant"] == "globex"
    r = envoy.request("GET", "/public/x", {"x-auth-tenant": "acme", "x-auth-principal": "alice"})
    assert r.status == 200 and r.body not in (b"route:acme-tenant", b"route:alice"), show(r)
    seen = EnvoyHarness.upstream_headers(r)
    assert "x-auth-tenant" not in seen and "x-auth-principal" not in seen, seen
    # The principal header likewise.
    r = envoy.request("GET", "/orders", ALICE)
    assert (r.status, r.body) == (200, b"route:alice"), show(r)
    r = envoy.request("GET", "/orders", {"x-api-key": API_KEY, "x-auth-principal": "alice"})
    assert r.status == 200 and r.body != b"route:alice", show(r)
    assert EnvoyHarness.upstream_headers(r)["x-auth-principal"] == "reports"
    r = envoy.request("GET", "/orders", {"x-auth-principal": "alice"})
    assert r.status == 401, show(r)


def log_line(access_log: str, path: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(access_log):
            with open(access_log) as f:
                lines = [line.rstrip("\n") for line in f if line.startswith(path + " ")]
            if lines:
                return lines[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no access log line for {path}")
        time.sleep(0.05)


def test_the_verified_payload_goes_upstream_and_to_filter_state(envoy, access_log):
    jws = token(tenant="initech", team="blue")
    r = envoy.request("GET", "/payload/jwt", {"authorization": f"Bearer {jws}", "x-jwt-payload": "eyJzdWIiOiJyb290In0"})
    assert r.status == 200, show(r)
    seen = EnvoyHarness.upstream_headers(r)
    assert seen["x-jwt-payload"] == jws.split(".")[1], seen
    padded = seen["x-jwt-payload"] + "=" * (-len(seen["x-jwt-payload"]) % 4)
    assert json.loads(base64.urlsafe_b64decode(padded))["team"] == "blue"
    # forward: true on the provider, over forward_credentials: false.
    assert seen["authorization"] == f"Bearer {jws}", seen
    line = log_line(access_log, "/payload/jwt")
    assert json.loads(line.split(" payload=", 1)[1])["team"] == "blue", line
    # Other credentials: forward_credentials (false), and no payload, a client's copy removed.
    r = envoy.request("GET", "/payload/basic", {**ALICE, "x-jwt-payload": "eyJzdWIiOiJyb290In0"})
    seen = EnvoyHarness.upstream_headers(r)
    assert "x-jwt-payload" not in seen and "authorization" not in seen, seen
    assert log_line(access_log, "/payload/basic").endswith("payload=-")
    r = envoy.request("GET", "/public/p", {"x-jwt-payload": "eyJzdWIiOiJyb290In0"})
    assert "x-jwt-payload" not in EnvoyHarness.upstream_headers(r)


def test_istio_rbac_on_the_principal_header_after_the_filter(envoy):
    """Istio's generated RBAC (`when: request.headers[x-auth-principal]`) admits the
    verified principal and never a forged header: the filter removes it first."""
    r = envoy.request("GET", "/istio/orders", ALICE)
    assert r.status == 200, show(r)
    for forged in [{"x-api-key": API_KEY, "x-auth-principal": "alice"},
                   {**bearer(sub="bob"), "x-auth-principal": "alice"}]:
        r = envoy.request("GET", "/istio/orders", forged)
        assert r.status == 403 and b"RBAC" in r.body, show(r)
    # A bypassed path: the filter still removes the forged header, RBAC sees none.
    r = envoy.request("GET", "/public/../istio/orders", {"x-auth-principal": "alice"})
    assert r.status in (401, 403), show(r)
    assert envoy.request("GET", "/other", {"x-api-key": API_KEY}).status == 200


def test_introspected_attributes_meet_claim_conditions(envoy_factory):
    client_id, secret = "filter", "s3cret"
    with IntrospectionServer({client_id: secret}) as idp:
        config = {
            "jwt": {"providers": [{"name": "idp", "issuer": IDP_ISSUER, "introspection": {
                "cluster": "jwks", "authority": "idp.test", "path": "/introspect", "timeout_ms": 1000,
                "client_id": client_id, "client_secret": secret}}]},
            "rules": [{"match": {"path_prefix": "/ops"}, "claims": [{"claim": "dept", "any_of": ["ops"]},
                                                                   {"claim": "level", "all_of": [3]}]}],
        }
        h = envoy_factory(config, jwks_port=idp.port, fresh=True)
        ops = idp.issue(iss=IDP_ISSUER, sub="carol", dept="ops", level=3)
        r = h.request("GET", "/ops/x", {"authorization": f"Bearer {ops}"}, timeout=15)
        assert r.status == 200, show(r)
        for attributes in [dict(dept="sales", level=3), dict(dept="ops", level=2), dict(dept="ops")]:
            other = idp.issue(iss=IDP_ISSUER, sub="dave", **attributes)
            r, reasons = refusals(h, "GET", "/ops/x", {"authorization": f"Bearer {other}"})
            assert (r.status, reasons) == (403, ["claim_condition_failed"]), (attributes, show(r))
        h.stop()
