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

from cryptography.hazmat.primitives import serialization

from tokens import basic_header, mint, now, p256_key, public_pem, sha256_hash

PASSWORDS = {"alice": "alice-pw-0123", "bob": "bob-pw-0123", "carol": "carol-pw-0123"}
KEY = p256_key()
ISSUER = "https://idp.example"

CONFIG = {
    "filter_state": True,
    "basic": {"users": [{"name": n, "password_hash": sha256_hash(p)} for n, p in PASSWORDS.items()
                        if n != "carol"]
              # carol may only GET, once an hour: her refusals name her (issue 17.16).
              + [{"name": "carol", "password_hash": sha256_hash(PASSWORDS["carol"]), "methods": ["GET"],
                  "requests_per_hour": 1}]},
    "jwt": {"providers": [{"name": "corp", "issuer": ISSUER, "local_pem": public_pem(KEY).decode(),
                           "claim_to_headers": [{"claim": "team", "header": "x-team"}]}]},
    "bypass": [{"path_prefix": "/healthz"}],
    "api_keys": {"clients": [{"id": "reports", "key_hash": sha256_hash("rk-0123456789abcdef")}]},
    "token_endpoint": {"path": "/auth/token", "issuer": "https://auth.example", "signing_key": p256_key()
                       .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()},
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


def test_refusals_after_authentication_name_the_principal(envoy, access_log):
    """403 and 429 refusals of a verified caller name it in the access log (the filter
    state) and the debug line; a refusal before authentication names nobody."""
    carol = {"authorization": basic_header("carol", PASSWORDS["carol"])}
    r = envoy.request("DELETE", "/named/forbidden", carol)
    assert r.status == 403, (r.status, r.body)
    line = log_line(access_log, "/named/forbidden")
    assert " 403 wasm_authn.method_not_allowed principal=basic:carol method=basic provider=- " in line, line
    assert envoy.request("GET", "/named/allowed", carol).status == 200
    r = envoy.request("GET", "/named/limited", carol)
    assert r.status == 429, (r.status, r.body)
    line = log_line(access_log, "/named/limited")
    assert " 429 wasm_authn.rate_limited principal=basic:carol method=basic " in line, line
    wrong = {"authorization": basic_header("carol", "wrong-pw")}
    assert envoy.request("GET", "/named/wrong", wrong).status in (401, 429)
    assert " principal=- " in log_line(access_log, "/named/wrong")
    deadline = time.monotonic() + 5
    while "GET /named/limited: answered 429" not in envoy.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = envoy.log_text()
    assert "wasm-authn: DELETE /named/forbidden: answered 403: method_not_allowed (to basic:carol)" in log
    assert "wasm-authn: GET /named/limited: answered 429: rate_limited (to basic:carol)" in log


def test_token_endpoint_outcomes_are_decision_lines_naming_the_client(envoy, access_log):
    def post(attempt, body):  # a query of its own, to find its access log line
        return envoy.request("POST", f"/auth/token?{attempt}", {"content-type": "application/json"}, body=body)
    assert post("issued", b'{"apiKey": "rk-0123456789abcdef"}').status == 200
    line = log_line(access_log, "/auth/token?issued")
    assert " 200 wasm_authn.token_issued principal=api-key:reports method=api-key " in line, line
    assert post("unknown", b'{"apiKey": "not-a-key"}').status == 401
    line = log_line(access_log, "/auth/token?unknown")
    assert " 401 wasm_authn.token_invalid_client principal=- " in line, line
    assert post("malformed", b'{"apiKey": ').status == 400
    assert post("large", b"x" * 20000).status == 413
    deadline = time.monotonic() + 5
    while "POST /auth/token: answered 413" not in envoy.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = envoy.log_text()
    assert re.search(r"wasm-authn: stream \d+ \(its body read\): answered 200: token_issued \(to api-key:reports\)"
                     r" \(after \d+ ms held\)", log), log[-3000:]
    assert re.search(r"wasm-authn: stream \d+ \(its body read\): answered 401: token_invalid_client \(after", log)
    assert re.search(r"wasm-authn: stream \d+ \(its body read\): answered 400: token_invalid_request \(after", log)
    assert "wasm-authn: POST /auth/token: answered 413: token_body_too_large" in log
    assert "rk-0123456789abcdef" not in log and "not-a-key" not in log


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


def test_shadow_and_optional_failed_counters_carry_the_reason_label(envoy_factory):
    # The bundled stats_tags give what shadow mode would have refused, and what failed
    # on an optional_or_failed route, the same reason label as denied.
    config = {"basic": {"users": [{"name": "bob", "password_hash": sha256_hash("pw-of-bob")}]},
              "rules": [{"match": {"path_prefix": "/shadowed"}, "require": ["basic"], "enforce": False},
                        {"match": {"path_prefix": "/migrating"}, "require": "optional_or_failed"}]}
    h = envoy_factory(config)
    assert h.request("GET", "/shadowed").status == 200
    assert h.request("GET", "/migrating", {"authorization": basic_header("bob", "wrong")}).status == 200
    text = h.admin("/stats/prometheus").text
    assert re.search(r'^wasm_authn_shadow_denied\{reason="missing_credential"\} 1', text, re.M), text[-3000:]
    assert re.search(r'^wasm_authn_optional_failed\{reason="basic_invalid"\} 1', text, re.M), text[-3000:]


def test_the_provider_label_of_fetches(envoy_factory):
    h = envoy_factory(None, demo_jwks=True)
    deadline = time.monotonic() + 10
    while "wasm_authn_jwks_fetch_success" not in h.admin("/stats/prometheus").text:
        assert time.monotonic() < deadline, "no fetch counted"
        time.sleep(0.1)
    text = h.admin("/stats/prometheus").text
    assert 'wasm_authn_jwks_fetch_success{provider="remote-demo"} 1' in text
