"""The filter inside the rest of Envoy (issue 13.1, 13.2, 13.5): its verdict as
filter state that Envoy's RBAC filter and access logs read, its refusals named in
%RESPONSE_CODE_DETAILS%, a debug line per decision, and its counters with reason
and provider as Prometheus labels.
"""
from __future__ import annotations

import os
import re
import time

import pytest

from tokens import basic_header, mint, now, p256_key, public_pem, sha256_hash

PASSWORDS = {"alice": "alice-pw-0123", "bob": "bob-pw-0123"}
KEY = p256_key()
ISSUER = "https://idp.example"

CONFIG = {
    "filter_state": True,
    "basic": {"users": [{"name": n, "password_hash": sha256_hash(p)} for n, p in PASSWORDS.items()]},
    "jwt": {"providers": [{"name": "corp", "issuer": ISSUER, "local_pem": public_pem(KEY).decode(),
                           "claim_to_headers": [{"claim": "team", "header": "x-team"}]}]},
    "bypass": [{"path_prefix": "/healthz"}],
}

# Envoy's RBAC after wasm-authn: /admin only for the Basic user alice, by the filter state
# (the qualified principal: another issuer's sub=alice is jwt:corp:alice), never a header.
RBAC = {"name": "envoy.filters.http.rbac", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
    "rules": {"action": "ALLOW", "policies": {
        "alice-on-admin": {
            "permissions": [{"url_path": {"path": {"prefix": "/admin"}}}],
            "principals": [{"filter_state": {"key": "wasm.wasm_authn.principal",
                                             "string_match": {"exact": "basic:alice"}}}]},
        "anyone-elsewhere": {
            "permissions": [{"not_rule": {"url_path": {"path": {"prefix": "/admin"}}}}],
            "principals": [{"any": True}]},
    }}}}

LOG_FORMAT = ("%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS% "
              "principal=%FILTER_STATE(wasm.wasm_authn.principal:PLAIN)% "
              "method=%FILTER_STATE(wasm.wasm_authn.method:PLAIN)% "
              "provider=%FILTER_STATE(wasm.wasm_authn.provider:PLAIN)% "
              "team=%FILTER_STATE(wasm.wasm_authn.claim.x-team:PLAIN)%\n")


@pytest.fixture(scope="module")
def access_log(tmp_path_factory):
    return str(tmp_path_factory.mktemp("access") / "access.log")


@pytest.fixture(scope="module")
def envoy(envoy_factory, access_log):
    hcm = {"access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": access_log, "log_format": {"text_format_source": {"inline_string": LOG_FORMAT}}}}]}
    return envoy_factory(CONFIG, concurrency=2, hcm_overrides=hcm, http_filters_after=[RBAC],
                         extra_args=["--component-log-level", "wasm:debug", "--file-flush-interval-msec", "50"])


def log_line(access_log, path, timeout=10.0):
    """The access log line of the last request to `path` (Envoy writes it after the stream)."""
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


def test_rbac_admits_only_the_verified_principal(envoy):
    alice = {"authorization": basic_header("alice", PASSWORDS["alice"])}
    bob = {"authorization": basic_header("bob", PASSWORDS["bob"])}
    assert envoy.request("GET", "/admin/users", alice).status == 200
    r = envoy.request("GET", "/admin/users", bob)
    assert r.status == 403 and b"RBAC" in r.body, (r.status, r.body)
    # A forged header reaches nothing: the state is set by the filter only.
    forged = {**bob, "x-auth-principal": "alice"}
    assert envoy.request("GET", "/admin/users", forged).status == 403
    # corp's sub=alice is not the Basic user alice.
    t = now()
    corp_alice = mint(KEY, "ES256", {"iss": ISSUER, "sub": "alice", "exp": t + 300})
    r = envoy.request("GET", "/admin/users", {"authorization": f"Bearer {corp_alice}"})
    assert r.status == 403 and b"RBAC" in r.body, (r.status, r.body)
    # Without authentication (a bypass) there is no state: RBAC refuses /admin.
    assert envoy.request("GET", "/healthz").status == 200
    assert envoy.request("GET", "/anything", bob).status == 200


def test_access_logs_print_the_principal_and_the_reason(envoy, access_log):
    t = now()
    token = mint(KEY, "ES256", {"iss": ISSUER, "sub": "svc-7", "team": "payments", "exp": t + 300})
    assert envoy.request("GET", "/logged/jwt", {"authorization": f"Bearer {token}"}).status == 200
    line = log_line(access_log, "/logged/jwt")
    assert "principal=jwt:corp:svc-7 method=jwt provider=corp team=payments" in line, line
    expired = mint(KEY, "ES256", {"iss": ISSUER, "sub": "svc-7", "iat": t - 900, "exp": t - 600})
    assert envoy.request("GET", "/logged/expired", {"authorization": f"Bearer {expired}"}).status == 401
    line = log_line(access_log, "/logged/expired")
    assert " 401 wasm_authn.jwt_expired principal=- " in line, line
    assert envoy.request("GET", "/logged/none").status == 401
    assert " 401 wasm_authn.missing_credential " in log_line(access_log, "/logged/none")
    r = envoy.request("GET", "/logged/basic", {"authorization": basic_header("alice", PASSWORDS["alice"])})
    assert r.status == 200
    assert "principal=basic:alice method=basic provider=- team=-" in log_line(access_log, "/logged/basic")


def test_each_decision_is_a_debug_line_without_secrets(envoy):
    secret = "query-secret-0123"
    envoy.request("GET", f"/debugged?api_key={secret}", {"authorization": basic_header("bob", "wrong-pw")})
    envoy.request("GET", "/debugged-ok", {"authorization": basic_header("bob", PASSWORDS["bob"])})
    deadline = time.monotonic() + 5
    while True:
        log = envoy.log_text()
        if "GET /debugged-ok: allowed: bob (basic)" in log or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert "wasm-authn: GET /debugged: answered 401: basic_invalid" in log
    assert "wasm-authn: GET /debugged-ok: allowed: bob (basic)" in log
    assert secret not in log and "wrong-pw" not in log and PASSWORDS["bob"] not in log


def test_counters_carry_reason_and_provider_as_prometheus_labels(envoy):
    envoy.request("GET", "/prom")
    envoy.request("GET", "/prom", {"authorization": "Bearer not.a.token"})
    text = envoy.admin("/stats/prometheus").text
    assert re.search(r'^wasm_authn_denied\{reason="missing_credential"\} [1-9]', text, re.M), text[-3000:]
    assert re.search(r'^wasm_authn_denied\{reason="jwt_malformed"\} [1-9]', text, re.M)
    # The JSON stats page keeps the full names.
    assert envoy.wasm_stats().get("wasm_authn.denied.missing_credential", 0) >= 1


def test_the_provider_label_of_fetches(envoy_factory):
    h = envoy_factory(None, demo_jwks=True)
    deadline = time.monotonic() + 10
    while "wasm_authn_jwks_fetch_success" not in h.admin("/stats/prometheus").text:
        assert time.monotonic() < deadline, "no fetch counted"
        time.sleep(0.1)
    text = h.admin("/stats/prometheus").text
    assert 'wasm_authn_jwks_fetch_success{provider="remote-demo"} 1' in text
