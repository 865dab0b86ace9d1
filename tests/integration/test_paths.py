"""What a request names, as rules read it (issue 17, items 4 and 5): `;` path
parameters, dot segments with parameters (`..;`, which servlet containers resolve
and Envoy does not), and a trailing dot in Host.

Every case runs twice: in Envoy with the bundled envoy.yaml's settings, and in a
LAX Envoy without any of its path or host protections; the filter must hold in both.
The echo upstream shows the path and Host it received.
"""
from __future__ import annotations

import pytest

from harness import EnvoyHarness
from tokens import basic_header, sha256_hash

PASSWORD = "paths-test-password"
ALICE, BOB, CLERK = (basic_header(name, PASSWORD) for name in ("alice", "bob", "clerk"))

LAX_ENVOY = {
    "normalize_path": False,
    "merge_slashes": False,
    "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
    "strip_trailing_host_dot": None,
}

CONFIG = {
    "bypass": [{"path_prefix": "/healthz"}],
    "rules": [
        {"match": {"path_prefix": "/public"}, "require": "none"},
        {"match": {"path_prefix": "/catalog"}, "require": "optional"},
        {"match": {"path_prefix": "/mgmt"}, "require": ["basic"], "principals": ["basic:alice"]},
        {"match": {"host": "admin.example"}, "require": ["basic"], "principals": ["basic:alice"]},
        {"match": {"host": "*.api.example"}, "require": ["basic"], "principals": ["basic:alice"]},
        {"match": {"host": "open.example"}, "require": "none"},
    ],
    "basic": {"users": [
        {"name": "alice", "password_hash": sha256_hash(PASSWORD)},
        {"name": "bob", "password_hash": sha256_hash(PASSWORD)},
        {"name": "clerk", "password_hash": sha256_hash(PASSWORD), "paths": ["/orders"]},
    ]},
}


@pytest.fixture(scope="module", params=["bundled", "lax"])
def envoy_settings(request, envoy_factory):
    return envoy_factory(CONFIG, hcm_overrides=LAX_ENVOY if request.param == "lax" else {})


def upstream(r):
    assert r.status == 200, (r.status, r.body[:200])
    return EnvoyHarness.upstream_request(r)


# --------------------------------------------------------------------------
# Item 4: `;` parameters and dot segments with parameters


HIDDEN_DOTS = ["/healthz/%2e%2e;/mgmt/a", "/healthz/%2E%2E;/mgmt/a", "/healthz/.%2e;/mgmt/a", "/healthz/%2e.;x=1/mgmt/a",
               "/public/%2e%2e;/mgmt/a", "/catalog/%2e%2e;/mgmt/a", "/healthz/%2e%2e%3b/mgmt/a"]


@pytest.mark.parametrize("path", HIDDEN_DOTS)
def test_a_dot_segment_with_parameters_is_refused_not_bypassed(envoy_settings, path):
    # Bundled: Envoy resolves dots before it decodes %2e, so the upstream would get
    # /healthz/..;/mgmt/a, which Tomcat, Jetty and Spring read as /mgmt/a.
    before = envoy_settings.wasm_stats().get("wasm_authn.denied.ambiguous_path", 0)
    for headers in ({}, {"authorization": ALICE}):
        r = envoy_settings.request("GET", path, headers)
        assert r.status == 400, (path, r.status, r.body[:200])
        assert b"ambiguous path" in r.body
    assert envoy_settings.wasm_stats().get("wasm_authn.denied.ambiguous_path", 0) == before + 2


@pytest.mark.parametrize("path", ["/healthz/..;/mgmt/a", "/healthz/..;x=1/mgmt/a", "/public/.;/../mgmt/a"])
def test_a_literal_dot_segment_with_parameters_never_bypasses(envoy_settings, path):
    # Bundled: Envoy itself resolves a literal `..;` (the filter then sees /mgmt/a: 401);
    # lax: the filter sees it and refuses it.
    r = envoy_settings.request("GET", path)
    assert r.status in (400, 401), (path, r.status, r.body[:200])


def test_a_path_privilege_is_not_escaped_by_a_dot_segment_with_parameters(envoy_settings):
    assert upstream(envoy_settings.request("GET", "/orders/7", {"authorization": CLERK}))["path"] == "/orders/7"
    r = envoy_settings.request("GET", "/orders/%2e%2e;/billing", {"authorization": CLERK})
    assert r.status == 400, (r.status, r.body[:200])


@pytest.mark.parametrize("path", ["/mgmt;x=1/a", "/mgmt;/a", "/mgmt;jsessionid=1"])
def test_parameters_do_not_escape_a_rule(envoy_settings, path):
    r = envoy_settings.request("GET", path, {"authorization": BOB})
    assert r.status == 403, (path, r.status, r.body[:200])
    assert upstream(envoy_settings.request("GET", path, {"authorization": ALICE}))["path"] == path


def test_parameters_still_match_a_bypass(envoy_settings):
    seen = upstream(envoy_settings.request("GET", "/healthz;jsessionid=1"))
    assert seen["path"] == "/healthz;jsessionid=1"
    assert upstream(envoy_settings.request("GET", "/public;v=2/docs"))["path"] == "/public;v=2/docs"


# --------------------------------------------------------------------------
# Item 5: a trailing dot in Host


@pytest.mark.parametrize("host", ["x.api.example.", "X.API.example.", "admin.example.", "admin.example.:8443",
                                  "Admin.Example."])
def test_a_trailing_dot_does_not_escape_a_host_rule(envoy_settings, host):
    r = envoy_settings.request("GET", "/reports", {"host": host, "authorization": BOB})
    assert r.status == 403, (host, r.status, r.body[:200])
    seen = upstream(envoy_settings.request("GET", "/reports", {"host": host, "authorization": ALICE}))
    # Bundled: Envoy strips the dot (strip_trailing_host_dot); lax: the upstream gets it as sent.
    assert seen["headers"]["host"] in (host, host.replace(".:", ":").rstrip(".")), seen["headers"]["host"]


def test_the_bundled_envoy_strips_the_trailing_dot(envoy_factory):
    seen = upstream(envoy_factory(CONFIG).request("GET", "/healthz", {"host": "admin.example.:8443"}))
    assert seen["headers"]["host"] == "admin.example:8443"


def test_a_trailing_dot_still_matches_a_relaxed_host_rule(envoy_settings):
    assert upstream(envoy_settings.request("GET", "/reports", {"host": "open.example."}))["path"] == "/reports"
