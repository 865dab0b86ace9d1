"""Limits across a fleet (issue 23): two Envoys (each --concurrency 2) share one
budget per principal through one real rate-limit engine, Kuadrant's Limitador
library behind Envoy's RateLimitService (tools/ratelimit-server), counting in
Redis. The plugin configuration says `limits.scope: "fleet"`; the engine's rules
and Envoy's rate-limit filter and route settings are what `wasm-authn
ratelimit-config` prints for it, used as printed.

Envoy A runs the rate-limit filter with failure_mode_deny false, Envoy B with
true. Every request opens a new connection, so each Envoy spreads them over its
two workers. Each test uses principals of its own: the engine's counts last the
hour.
"""
from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from harness import REPO_ROOT, EnvoyHarness, cli_run
from ratelimit_engine import RateLimitEngine, fleet_envoy, ratelimit_stats
from tokens import hmac_token, now, sha256_hash

HEADER = "x-auth-ratelimit-principal"
HMAC = b"fleet-secret-fleet-secret-fleet-secret"
KEYS = {name: f"key-{name}-0123456789" for name in
        ("exact", "three", "default", "unlimited", "thief", "victim", "burst", "down", "local")}

CONFIG = {
    "limits": {"requests_per_hour": 1000, "scope": "fleet"},
    "bypass": [{"path_prefix": "/healthz"}],
    "api_keys": {"clients": [
        {"id": "exact", "key_hash": sha256_hash(KEYS["exact"]), "requests_per_hour": 6},
        {"id": "three", "key_hash": sha256_hash(KEYS["three"]), "requests_per_hour": 3},
        {"id": "default", "key_hash": sha256_hash(KEYS["default"])},
        {"id": "unlimited", "key_hash": sha256_hash(KEYS["unlimited"]), "requests_per_hour": 0},
        {"id": "thief", "key_hash": sha256_hash(KEYS["thief"]), "requests_per_hour": 2},
        {"id": "victim", "key_hash": sha256_hash(KEYS["victim"]), "requests_per_hour": 2},
        {"id": "burst", "key_hash": sha256_hash(KEYS["burst"]), "requests_per_hour": 6},
        {"id": "down", "key_hash": sha256_hash(KEYS["down"]), "requests_per_hour": 1000},
        {"id": "local", "key_hash": sha256_hash(KEYS["local"]), "requests_per_hour": 2},
    ]},
    "jwt": {"providers": [{
        "name": "corp", "issuer": "https://corp.example", "requests_per_hour": 4,
        "local_jwks": {"keys": [{"kty": "oct", "alg": "HS256", "k": base64.urlsafe_b64encode(HMAC).rstrip(b"=").decode()}]},
    }]},
}


def key(name):
    return {"x-api-key": KEYS[name]}


def bearer(sub):
    token = hmac_token(HMAC, {"alg": "HS256", "typ": "JWT"}, {"iss": "https://corp.example", "sub": sub, "exp": now() + 600})
    return {"authorization": f"Bearer {token}"}


def ratelimit_config(fmt, config=CONFIG):
    code, out, err = cli_run(["ratelimit-config", "-", "--format", fmt], json.dumps(config).encode())
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def engine():
    with RateLimitEngine(ratelimit_config("limitador")) as engine:
        yield engine


@pytest.fixture(scope="module")
def envoy_side():
    return yaml.safe_load(ratelimit_config("envoy"))


@pytest.fixture(scope="module")
def fleet(wasm_module, envoy_binary, engine, envoy_side):
    """(Envoy A: failure_mode_deny false, Envoy B: true)."""
    envoys = [EnvoyHarness(CONFIG, concurrency=2, **fleet_envoy(envoy_side, engine.port, failure_mode_deny=deny))
              for deny in (False, True)]
    try:
        for envoy in envoys:
            envoy.start()
        yield tuple(envoys)
    finally:
        for envoy in envoys:
            envoy.stop()


def statuses(envoys, headers, n):
    """n requests, taking turns on the Envoys."""
    return [envoys[i % len(envoys)].request("GET", "/x", headers).status for i in range(n)]


def total(envoys, stat):
    return sum(ratelimit_stats(envoy)[stat] for envoy in envoys)


def test_an_hourly_limit_is_one_budget_across_both_envoys(fleet):
    before = total(fleet, "over_limit")
    # Six an hour, taking turns on A and B: the seventh is refused wherever it goes.
    assert statuses(fleet, key("exact"), 9) == [200] * 6 + [429] * 3
    for envoy in fleet:
        r = envoy.request("GET", "/x", key("exact"))
        assert r.status == 429 and r.headers.get("x-envoy-ratelimited") == "true", r
    assert total(fleet, "over_limit") - before == 5


def test_the_upstream_never_sees_the_descriptor_header(fleet):
    for envoy in fleet:
        r = envoy.request("GET", "/x", key("default"))
        assert r.status == 200, r
        seen = envoy.upstream_headers(r)
        assert HEADER not in seen, seen
        assert seen["x-auth-principal"] == "default"


def test_each_principal_has_its_own_limit(fleet):
    assert statuses(fleet, key("three"), 4) == [200, 200, 200, 429]
    # The default (1000) for a principal without its own, untouched by "three" being refused.
    assert statuses(fleet, key("default"), 4) == [200] * 4
    # Each subject of a provider has the provider's limit, counted apart.
    assert statuses(fleet, bearer("alice"), 5) == [200] * 4 + [429]
    assert statuses(fleet, bearer("bob"), 1) == [200]


def test_an_unlimited_principal_costs_no_call_to_the_engine(fleet):
    before = [ratelimit_stats(envoy) for envoy in fleet]
    assert statuses(fleet, key("unlimited"), 4) == [200] * 4
    assert [ratelimit_stats(envoy) for envoy in fleet] == before


def test_a_forged_descriptor_header_neither_picks_a_bucket_nor_reaches_the_engine(fleet):
    forged = {**key("thief"), HEADER: "api-key:victim"}
    # The thief's own requests count against the thief only.
    assert statuses(fleet, forged, 3) == [200, 200, 429]
    assert statuses(fleet, key("victim"), 3) == [200, 200, 429]
    # Without a principal (bypass), a forged header never reaches the engine nor the upstream.
    before = [ratelimit_stats(envoy) for envoy in fleet]
    for envoy in fleet:
        r = envoy.request("GET", "/healthz", {HEADER: "api-key:victim"})
        assert r.status == 200, r
        assert HEADER not in envoy.upstream_headers(r)
    assert [ratelimit_stats(envoy) for envoy in fleet] == before


def test_concurrent_requests_meet_limitadors_documented_precision(fleet):
    """Limitador's Redis storage reads the counts, then adds the hit (docs/operating.md, "Operating
    a fleet"): requests racing for the last units may all pass, never fewer than the limit."""
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: fleet[i % 2].request("GET", "/x", key("burst")).status, range(24)))
    allowed = codes.count(200)
    assert codes.count(429) == 24 - allowed, codes
    assert 6 <= allowed <= 6 + 7, codes
    # Once the racing stops, the budget is spent for both.
    assert statuses(fleet, key("burst"), 2) == [429, 429]


def test_the_engine_down_fails_open_or_closed_as_each_envoy_says_and_counts_it(fleet, engine):
    a, b = fleet
    assert statuses(fleet, key("down"), 2) == [200, 200]
    for stop, start in ((engine.stop_server, engine.start_server), (engine.stop_redis, engine.start_redis)):
        stop()
        try:
            before = [ratelimit_stats(envoy) for envoy in fleet]
            # failure_mode_deny false: the request passes, counted as an error allowed.
            assert a.request("GET", "/x", key("down")).status == 200
            # failure_mode_deny true: Envoy's 500.
            r = b.request("GET", "/x", key("down"))
            assert r.status == 500, r
            after = [ratelimit_stats(envoy) for envoy in fleet]
            assert after[0]["error"] - before[0]["error"] == 1 and after[0]["failure_mode_allowed"] - before[0]["failure_mode_allowed"] == 1
            assert after[1]["error"] - before[1]["error"] == 1 and after[1]["failure_mode_allowed"] == before[1]["failure_mode_allowed"]
        finally:
            start()
    # Both back (Redis empty): the engine reconnects on its first call to Redis (the
    # ones before it fail), then answers again on both.
    deadline = time.monotonic() + 10
    while b.request("GET", "/x", key("down")).status != 200:
        assert time.monotonic() < deadline, engine.log_text()[-2000:]
        time.sleep(0.1)
    assert statuses(fleet, key("down"), 4) == [200] * 4


def test_scope_envoy_never_asks_the_engine_even_with_envoy_wired_for_it(wasm_module, envoy_binary, engine, envoy_side):
    """The same Envoy wiring with limits.scope "envoy": the filter counts the hour
    itself and hands no principal to the rate-limit filter: never both counts."""
    local = json.loads(json.dumps(CONFIG))
    local["limits"]["scope"] = "envoy"
    with EnvoyHarness(local, concurrency=1, **fleet_envoy(envoy_side, engine.port)) as envoy:
        assert statuses([envoy], key("local"), 3) == [200, 200, 429]
        refused = envoy.request("GET", "/x", key("local"))
        assert refused.json()["error"] == "rate_limited" and "x-envoy-ratelimited" not in refused.headers
        assert ratelimit_stats(envoy) == {"ok": 0, "over_limit": 0, "error": 0, "failure_mode_allowed": 0}


def test_the_cli_refuses_to_write_rules_for_scope_envoy():
    local = json.loads(json.dumps(CONFIG))
    local["limits"]["scope"] = "envoy"
    code, out, err = cli_run(["ratelimit-config", "-"], json.dumps(local).encode())
    assert code == 1 and not out
    assert err.startswith("wasm-authn: no engine rules: limits.scope: is \"envoy\""), err


def test_the_envoyproxy_ratelimit_rules_say_what_limitador_was_told():
    """The same limits in envoyproxy/ratelimit's format (no such engine runs here):
    the default for every principal, each principal's own, a provider's per subject."""
    rules = yaml.safe_load(ratelimit_config("ratelimit"))
    assert rules["domain"] == "wasm_authn"
    by_value = {d.get("value"): d["rate_limit"] for d in rules["descriptors"]}
    assert all(d["key"] == "principal" for d in rules["descriptors"])
    assert by_value[None] == {"unit": "hour", "requests_per_unit": 1000}
    assert by_value["api-key:exact"] == {"unit": "hour", "requests_per_unit": 6}
    assert by_value["api-key:unlimited"] == {"unlimited": True}
    assert by_value["jwt:corp:*"] == {"unit": "hour", "requests_per_unit": 4}
    assert "api-key:default" not in by_value and "api-key:down" not in by_value


def test_the_compose_fleets_rules_load_in_the_engine(engine):
    """envoy/examples/limitador-limits.yaml, which envoy/docker-compose-fleet.yaml mounts
    into Limitador, is a limits file the engine accepts (it exits on one it cannot read)."""
    with open(os.path.join(REPO_ROOT, "envoy", "examples", "limitador-limits.yaml")) as f:
        rules = f.read()
    with RateLimitEngine(rules, server_bin=engine.server_bin) as other:
        assert other.server.poll() is None
