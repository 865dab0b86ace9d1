"""Opaque tokens (issue 20) in a real Envoy against a real RFC 7662 endpoint
(introspection_server.py, built on Authlib's IntrospectionEndpoint, behind the
`jwks` cluster): what an answer grants, what it refuses, failing closed (503,
never a pass, never a 401), the answer shared by every worker with one call per
new token, and the token never in Envoy's log.

Each test that counts calls at the endpoint issues tokens of its own; Envoys are
shared per configuration within the module (the answers live in its shared data).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import EnvoyHarness, Response
from introspection_server import ISSUER, IntrospectionServer

CLIENT_ID, CLIENT_SECRET = "filter id", "s3cr&t:/+"  # form-encoded in Basic (RFC 6749 2.3.1)
PROVIDER = "idp"


@pytest.fixture(scope="module")
def idp():
    with IntrospectionServer({CLIENT_ID: CLIENT_SECRET}) as server:
        yield server


@pytest.fixture(autouse=True)
def well_behaved(idp):
    idp.misbehave()
    yield
    idp.misbehave()


def plugin_config(**introspection) -> dict:
    endpoint = {"cluster": "jwks", "authority": "idp.test", "path": "/introspect", "timeout_ms": 1000,
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "cache_ttl_seconds": 60}
    endpoint.update(introspection)
    return {
        "realm": "api",
        "jwt": {"providers": [{
            "name": PROVIDER, "issuer": ISSUER, "audiences": ["orders-api"],
            "introspection": endpoint,
            "claim_to_headers": [{"claim": "dept", "header": "x-dept"}],
        }]},
        "rules": [
            {"match": {"path_prefix": "/orders"}, "scopes": ["orders:read"]},
            {"match": {"path_prefix": "/admin"}, "principals": [f"jwt:{PROVIDER}:root"]},
        ],
        "revocation": {"jti": ["leaked-jti"]},
        # The per-worker cache off: every request reads the Envoy-wide answers.
        "cache": {"max_entries": 0},
    }


@pytest.fixture(scope="module")
def envoy(idp, envoy_factory):
    return envoy_factory(plugin_config(), jwks_port=idp.port, concurrency=2,
                         extra_args=["--component-log-level", "wasm:debug"])


def get(h: EnvoyHarness, token: str, path: str = "/orders/1") -> Response:
    return h.request("GET", path, {"authorization": f"Bearer {token}"}, timeout=15)


def show(r: Response) -> str:
    return f"{r.status} {r.headers.to_dict()} {r.body[:300]!r}"


def claims(**extra) -> dict:
    base = {"iss": ISSUER, "aud": "orders-api", "scope": "orders:read", "dept": "ops"}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def refused(h: EnvoyHarness, token: str, path: str = "/orders/1") -> tuple:
    """The answer to a request with `token`, and the reasons (`denied.<reason>`) it was counted under."""
    before = h.wasm_stats()
    r = get(h, token, path)
    after = h.wasm_stats()
    reasons = [k[len("wasm_authn.denied."):] for k, v in after.items()
               if k.startswith("wasm_authn.denied.") and v > before.get(k, 0)]
    return r, reasons


def assert_refused(answer: tuple, status: int, reason: str, message: str) -> None:
    r, reasons = answer
    assert r.status == status, show(r)
    assert r.json()["message"] == message, show(r)
    assert reasons == [reason], (reasons, show(r))


def assert_unavailable(r: Response) -> None:
    assert r.status == 503, show(r)
    assert r.json()["error"] == "temporarily_unavailable", show(r)
    retry = r.headers.get("retry-after")
    assert retry is not None and retry.isdigit() and int(retry) >= 1, show(r)


def test_an_active_token_authenticates_with_its_answers_principal_scopes_and_claims(envoy, idp):
    token = idp.issue(**claims(sub="alice", jti="j-alice"))
    r = get(envoy, token)
    assert r.status == 200, show(r)
    seen = EnvoyHarness.upstream_headers(r)
    assert seen["x-auth-principal"] == "alice", seen
    assert seen["x-auth-provider"] == PROVIDER, seen
    assert seen["x-dept"] == "ops", seen
    assert "authorization" not in seen, seen
    # The call Authlib received: a form POST, the client in Basic, the hint.
    call = idp.calls[-1]
    assert call["content_type"] == "application/x-www-form-urlencoded", call
    assert call["form"] == {"token": token, "token_type_hint": "access_token"}, call
    assert call["authorization"].startswith("Basic "), call
    # Rules read its scopes and principal.
    assert_refused(refused(envoy, token, "/admin/x"), 403, "principal_not_allowed", "principal not allowed")
    root = idp.issue(**claims(sub="root", scope="admin"))
    assert get(envoy, root, "/admin/x").status == 200
    assert_refused(refused(envoy, root), 403, "insufficient_scope", "the scopes orders:read are required")


@pytest.mark.parametrize("answer, principal", [
    (dict(sub=None, username="bob"), "bob"),
    (dict(sub=None, client_id="batch-service"), "batch-service"),
    (dict(sub="s-1", username="carol", client_id="c"), "s-1"),
    (dict(sub="dave", aud=["other", "orders-api"]), "dave"),
    (dict(sub="erin", exp=None, iat=None), "erin"),
])
def test_the_principal_is_principal_claim_else_username_else_client_id(envoy, idp, answer, principal):
    expires_in = None if "exp" in answer else 600
    token = idp.issue(expires_in=expires_in, **claims(**answer))
    r = get(envoy, token)
    assert r.status == 200, show(r)
    assert EnvoyHarness.upstream_headers(r)["x-auth-principal"] == principal


@pytest.mark.parametrize("issue, reason, message", [
    (lambda idp: "op_never_issued", "introspection_inactive", "token not active"),
    (lambda idp: idp.issue(expires_in=-5, **claims(sub="late")), "introspection_inactive", "token not active"),
    (lambda idp: idp.issue(**claims(sub="x", aud="another-api")), "jwt_audience", "audience not allowed"),
    (lambda idp: idp.issue(**claims(sub="x", iss="https://elsewhere")), "jwt_unknown_issuer", "unknown issuer"),
    (lambda idp: idp.issue(**claims(sub=None)), "jwt_no_principal", "principal claim missing"),
    (lambda idp: idp.issue(**claims(sub="x", nbf=int(time.time()) + 3600)), "jwt_not_yet_valid", "token not yet valid"),
    (lambda idp: idp.issue(**claims(sub="x", scope=None)), "insufficient_scope", "the scopes orders:read are required"),
    (lambda idp: idp.issue(**claims(sub="x", jti="leaked-jti")), "token_revoked", "token revoked"),
], ids=["unknown", "expired", "audience", "issuer", "no-principal", "not-yet-valid", "no-scope", "revoked-jti"])
def test_refusals(envoy, idp, issue, reason, message):
    answer = refused(envoy, issue(idp))
    status = 403 if reason == "insufficient_scope" else 401
    assert_refused(answer, status, reason, message)
    if status == 401:
        assert 'error="invalid_token"' in answer[0].headers["www-authenticate"], show(answer[0])


def test_a_token_revoked_at_the_endpoint_passes_at_most_cache_ttl_seconds(idp, envoy_factory):
    h = envoy_factory(plugin_config(cache_ttl_seconds=1), jwks_port=idp.port, fresh=True)
    token = idp.issue(**claims(sub="mallory"))
    assert get(h, token).status == 200
    idp.revoke(token)
    assert get(h, token).status == 200, "the answer is reused within cache_ttl_seconds"
    assert idp.hits(token) == 1
    time.sleep(1.3)
    assert_refused(refused(h, token), 401, "introspection_inactive", "token not active")
    assert idp.hits(token) == 2
    # Inactive answers are reused too (negative_cache_seconds, 10 by default).
    assert_refused(refused(h, token), 401, "introspection_inactive", "token not active")
    assert idp.hits(token) == 2


@pytest.mark.parametrize("misbehaviour", [
    dict(status=500, body=b'{"error": "server_error"}'),
    dict(body=b"<html>garbage</html>"),
    dict(body=b'{"active": true, "sub": "x", "pad": "' + b"x" * 70_000 + b'"}'),  # over max_response_bytes
    dict(delay=1.6),  # past timeout_ms
], ids=["500", "garbage", "huge", "slow"])
def test_an_endpoint_that_fails_is_503_never_a_pass_never_a_401(envoy, idp, misbehaviour):
    idp.misbehave(**misbehaviour)
    token = idp.issue(**claims(sub="zoe"))
    assert_unavailable(get(envoy, token))
    assert "introspection_failed" in envoy.log_text()
    # Once it answers again (the failure stands a second), the token passes.
    idp.misbehave()
    time.sleep(1.1)
    assert get(envoy, token).status == 200


def test_an_endpoint_that_is_down_is_503(idp, envoy_factory):
    h = envoy_factory(plugin_config(), fresh=True)  # `jwks` at a port nothing listens on
    assert_unavailable(get(h, idp.issue(**claims(sub="zoe"))))
    assert h.wasm_stats().get(f"wasm_authn.introspection_failures.{PROVIDER}", 0) >= 1


@pytest.mark.parametrize("auth", ["basic", "post", "bearer"])
def test_client_authentication_as_configured(idp, envoy_factory, auth):
    h = envoy_factory(plugin_config(auth=auth), jwks_port=idp.port)
    token = idp.issue(**claims(sub="frank"))
    r = get(h, token)
    assert r.status == 200, show(r)
    call = next(c for c in reversed(idp.calls) if c["form"].get("token") == token)
    if auth == "post":
        assert call["authorization"] is None and call["form"]["client_secret"] == CLIENT_SECRET, call
    else:
        assert call["authorization"].lower().startswith(auth), call
    # A wrong secret: the endpoint refuses the filter (401 to it), the request gets 503, not 401.
    h2 = envoy_factory(plugin_config(auth=auth, client_secret="wrong"), jwks_port=idp.port)
    assert_unavailable(get(h2, idp.issue(**claims(sub="frank"))))


def test_one_call_for_parallel_requests_on_every_worker_then_the_answer_for_all(idp, envoy_factory):
    h = envoy_factory(plugin_config(), jwks_port=idp.port, concurrency=2, fresh=True)
    token = idp.issue(**claims(sub="grace"))
    idp.misbehave(delay=0.5)  # every request arrives while the one call is on its way
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: get(h, token).status, range(32)))
    assert statuses == [200] * 32, statuses
    assert idp.hits(token) == 1, "one call for the whole Envoy"
    idp.misbehave()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: get(h, token).status, range(40)))
    assert statuses == [200] * 40 and idp.hits(token) == 1, "every worker reads the stored answer"
    stats = h.wasm_stats()
    assert stats.get(f"wasm_authn.introspection_calls.{PROVIDER}") == 1, stats
    assert stats.get(f"wasm_authn.introspection_cache_hits.{PROVIDER}", 0) >= 40, stats


def test_a_request_that_waited_for_its_call_is_not_a_cache_hit(idp, envoy_factory):
    h = envoy_factory(plugin_config(), jwks_port=idp.port, fresh=True)
    token = idp.issue(**claims(sub="ivan"))
    counts = lambda: tuple(h.wasm_stats().get(f"wasm_authn.introspection_{what}.{PROVIDER}", 0)  # noqa: E731
                           for what in ("calls", "cache_hits"))
    assert get(h, token).status == 200 and counts() == (1, 0)
    assert get(h, token).status == 200 and counts() == (1, 1)


def test_the_token_is_never_in_envoys_log(envoy, idp):
    tokens = [idp.issue(**claims(sub="heidi")), "op_unknown_" + "z" * 20]
    for token in tokens:
        get(envoy, token)
    log = envoy.log_text()
    assert "introspecting token" in log, "the debug line per call is there"
    for token in tokens:
        assert token not in log
    assert CLIENT_SECRET not in log
