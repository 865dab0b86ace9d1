"""Limits across a fleet (issue 23): two Envoys (each --concurrency 2) share one
budget per principal through one real rate-limit engine, Kuadrant's Limitador
library behind Envoy's RateLimitService (tools/ratelimit-server), counting in
Redis. The plugin configuration says `limits.scope: "fleet"`; the engine's rules
and Envoy's rate-limit filter and route settings are what `wasm-authn
ratelimit-config` prints for it, used as printed.

Envoy A runs the rate-limit filter with failure_mode_deny false, Envoy B with
true; the filter's own questions to the engine (one-time keypair tokens, failed
passwords: `limits.engine_failure_mode_deny`) likewise. Envoy A brings bodies to the
filter before it decides (allow_on_headers_stop_iteration true), Envoy B does not.
Every request opens a new connection, so each Envoy spreads them over its two
workers. Each test uses principals of its own: the engine's counts last the hour.
"""
from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

import jwt

from harness import REPO_ROOT, EnvoyHarness, JwksServer, _wasm_filter, cli_run
from ratelimit_engine import RateLimitEngine, fleet_envoy, ratelimit_stats
from tokens import basic_header, hmac_token, now, sha256_hash
from test_streams import WAYS, Case, check, run_cases, upstream_requests
from wire import Body, send

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
    # Four failed passwords per name, fleet-wide (each Envoy alone would allow four more).
    "basic": {"users": [{"name": name, "password_hash": sha256_hash(f"pw-{name}")}
                        for name in ("bob", "carol", "dora", "erin", "body")],
              "failure_limit": {"max_failures": 4, "max_failures_per_name": 4, "window_seconds": 600}},
    "keypairs": [{"id": "once", "public_key": open(os.path.join(REPO_ROOT, "tests", "keys", "ec_p256_public.pem")).read(),
                  "max_lifetime_seconds": 300, "one_time": True}],
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


def envoy_of(envoy_side, engine_port, deny):
    """One Envoy of the fleet: failing open (A) or closed (B), in Envoy's rate-limit filter and the
    filter's own questions alike; A brings bodies to the filter before it decides, B does not."""
    config = json.loads(json.dumps(CONFIG))
    config["limits"]["engine_failure_mode_deny"] = deny
    kwargs = fleet_envoy(envoy_side, engine_port, failure_mode_deny=deny)
    wire_fleet = kwargs["config_hook"]

    def hook(cfg):
        wire_fleet(cfg)
        _wasm_filter(cfg)["allow_on_headers_stop_iteration"] = not deny

    return EnvoyHarness(config, concurrency=2, **{**kwargs, "config_hook": hook})


@pytest.fixture(scope="module")
def fleet(wasm_module, envoy_binary, engine, envoy_side):
    """(Envoy A: failure_mode_deny false, Envoy B: true)."""
    envoys = [envoy_of(envoy_side, engine.port, deny) for deny in (False, True)]
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
    principals = [d for d in rules["descriptors"] if d["key"] == "principal"]
    by_value = {d.get("value"): d["rate_limit"] for d in principals}
    # The filter's own questions: each one-time token once, failed passwords per name.
    own = {d["key"]: d for d in rules["descriptors"] if d["key"] != "principal"}
    assert own["one_time_keypair"]["value"] == "once"
    assert own["one_time_keypair"]["descriptors"] == [{"key": "jti", "rate_limit": {"unit": "day", "requests_per_unit": 1}}]
    assert own["basic_failures"]["rate_limit"] == {"unit": "hour", "requests_per_unit": 3}
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


# ---- what the filter asks the engine itself (issue 23.3) ----

EC_PRIVATE = open(os.path.join(REPO_ROOT, "tests", "keys", "ec_p256_private.pem")).read()


def one_time(jti):
    """A one-time token of keypair "once", signed by PyJWT."""
    token = jwt.encode({"iss": "once", "iat": now(), "exp": now() + 120, "jti": jti}, EC_PRIVATE, algorithm="ES256")
    return {"authorization": f"Bearer {token}"}


def basic(user, password=None):
    return {"authorization": basic_header(user, password or f"pw-{user}")}


def engine_stats(envoy):
    stats = envoy.wasm_stats()
    return {name: stats.get(f"wasm_authn.engine.{name}", 0) for name in ("ok", "over_limit", "error", "failure_mode_allowed")}


def test_a_one_time_token_used_on_one_envoy_is_refused_on_the_other(fleet):
    a, b = fleet
    token = one_time(f"job-{time.time_ns()}")
    before = engine_stats(b)
    assert a.request("GET", "/x", token).status == 200
    refused = b.request("GET", "/x", token)
    assert refused.status == 401 and refused.json()["error"] == "invalid_token", refused
    assert "token already used" in refused.headers["www-authenticate"]
    assert engine_stats(b)["over_limit"] - before["over_limit"] == 1
    # And on A (its own record, or the engine), and on B again.
    assert a.request("GET", "/x", token).status == 401
    assert b.request("GET", "/x", token).status == 401
    # Another token passes on B first.
    assert b.request("GET", "/x", one_time(f"job-{time.time_ns()}")).status == 200


def test_failed_passwords_for_one_name_across_both_envoys_hit_one_limit(fleet):
    a, b = fleet
    # Four failures, two on each Envoy: under each one's own limit of four, at the fleet's.
    for i in range(4):
        r = fleet[i % 2].request("GET", "/x", basic("bob", f"guess-{i}"))
        assert r.status == 401, (i, r)
    # Now the right password is refused on either, and so is a fifth guess.
    for envoy in fleet:
        r = envoy.request("GET", "/x", basic("bob"))
        assert r.status == 429 and r.json()["error"] == "rate_limited", r
        assert int(r.headers["retry-after"]) == 600
    assert a.request("GET", "/x", basic("bob", "guess-5")).status == 429
    # Another name is untouched, and its right password passes on both.
    assert [envoy.request("GET", "/x", basic("carol")).status for envoy in fleet] == [200, 200]
    assert b.request("GET", "/x", basic("carol", "nope")).status == 401


def test_held_requests_go_on_with_their_bodies_over_http1_and_http2(fleet):
    """Held for the engine's answer (a Basic user's check), a request's body waits with it, on
    both Envoys (A brings bodies to the filter before it decides, B does not), and reaches the
    upstream intact; a refused one never does."""
    data = [bytes([65 + i]) * 30_000 for i in range(3)]
    for envoy in fleet:
        for protocol, body in (("h1", Body(data)), ("h1-chunked", Body(data, trailers=[("x-sum", "1")])),
                               ("h2", Body(data)), ("h2", Body(data[:1], trailers=[("grpc-status", "0")]))):
            headers = list(basic("body").items()) + [("content-type", "application/octet-stream")]
            r = send(envoy.listener_port, "POST", "/rows", headers, body, protocol, 20.0)
            assert r.status == 200, (protocol, r.status, r.body[:200])
            seen = EnvoyHarness.upstream_request(r)
            assert seen["body_length"] == len(body.data), protocol
            assert seen["headers"]["x-auth-principal"] == "body"
    # A locked name's body never goes upstream.
    for i in range(4):
        assert fleet[i % 2].request("GET", "/x", basic("dora", f"guess-{i}")).status == 401
    for envoy in fleet:
        for protocol in ("h1", "h2"):
            headers = list(basic("dora").items()) + [("content-type", "application/octet-stream")]
            # (Within one HTTP/2 window: the answer comes before the client is done sending.)
            r = send(envoy.listener_port, "POST", "/rows", headers, Body(data[:1]), protocol, 20.0)
            assert r.status == 429, (protocol, r.status)
            assert not r.body or b"rows" not in r.body


def test_without_the_engine_the_filters_own_questions_fail_open_or_closed_and_are_counted(fleet, engine):
    a, b = fleet
    engine.stop_server()
    try:
        before = [engine_stats(envoy) for envoy in fleet]
        # A (engine_failure_mode_deny false): decided on its own records; its rate-limit filter lets it pass too.
        assert a.request("GET", "/x", basic("erin")).status == 200
        assert a.request("GET", "/x", one_time(f"down-{time.time_ns()}")).status == 200
        # B (true): 503, before Envoy's rate-limit filter is asked.
        r = b.request("GET", "/x", basic("erin"))
        assert r.status == 503 and r.json()["error"] == "temporarily_unavailable", r
        # A one-time token answered 503 there is not spent by it: its retry is asked about again.
        retried = one_time(f"down-b-{time.time_ns()}")
        assert b.request("GET", "/x", retried).status == 503
        # A failed password is refused either way.
        assert [envoy.request("GET", "/x", basic("erin", "nope")).status for envoy in fleet] == [401, 401]
        after = [engine_stats(envoy) for envoy in fleet]
        assert after[0]["error"] - before[0]["error"] == 3
        assert after[0]["failure_mode_allowed"] - before[0]["failure_mode_allowed"] == 2
        assert after[1]["error"] - before[1]["error"] == 3
        assert after[1]["failure_mode_allowed"] == before[1]["failure_mode_allowed"]
        assert b.wasm_stats().get("wasm_authn.denied.limits_unavailable", 0) >= 1
    finally:
        engine.start_server()
    deadline = time.monotonic() + 10
    while b.request("GET", "/x", basic("erin")).status != 200:
        assert time.monotonic() < deadline, engine.log_text()[-2000:]
        time.sleep(0.1)
    assert b.request("GET", "/x", retried).status == 200
    assert [envoy.request("GET", "/x", retried).status for envoy in fleet] == [401, 401]


def test_a_request_decided_on_a_tick_still_gets_the_engines_answer(fleet, engine, envoy_side):
    """A request held for something else first (here a store user's, before the user store's
    first fetch: basic.remote) is decided on the root context's tick, and its question to the
    engine is asked from there: the answer must still reach it. A name locked fleet-wide is
    429 on an Envoy failing open as on any other, and a right password passes on one failing
    closed (not 503 for an answer that came but went to no one)."""
    locked, free = f"frank-{time.time_ns()}", f"gina-{time.time_ns()}"
    # Locked on the fleet (unknown names are counted as known ones).
    for i in range(4):
        assert fleet[i % 2].request("GET", "/x", basic(locked, f"guess-{i}")).status == 401
    store_doc = {"users": [{"name": name, "password_hash": sha256_hash(f"pw-{name}")} for name in (locked, free)]}
    for deny in (False, True):
        config = json.loads(json.dumps(CONFIG))
        config["limits"]["engine_failure_mode_deny"] = deny
        config["basic"]["remote"] = {"cluster": "jwks", "authority": "users.test", "path": "/users.json",
                                     "refresh_seconds": 60, "timeout_ms": 3000}
        kwargs = fleet_envoy(envoy_side, engine.port, failure_mode_deny=deny)
        wire_fleet = kwargs["config_hook"]

        def hook(cfg):  # as envoy_of: one Envoy brings bodies to the filter before it decides, one does not
            wire_fleet(cfg)
            _wasm_filter(cfg)["allow_on_headers_stop_iteration"] = not deny

        with JwksServer() as store:
            store.set_reply("/users.json", 200, store_doc, delay=1.5)
            with EnvoyHarness(config, concurrency=1, jwks_port=store.port, **{**kwargs, "config_hook": hook}) as envoy:
                # Every way a body comes, held with the two GETs for the first fetch, then for the engine:
                # the locked name's never goes upstream, the other's does, intact.
                before = upstream_requests(envoy)
                posts = [Case(way, list(basic(name).items()) + [("content-type", "application/octet-stream")],
                              name == free) for way in WAYS for name in (locked, free)]
                with ThreadPoolExecutor(2) as pool:  # both held for the first fetch
                    posted = pool.submit(run_cases, envoy, posts)
                    got = list(pool.map(lambda name: envoy.request("GET", "/x", basic(name)), (locked, free)))
                assert [r.status for r in got] == [429, 200], (deny, [(r.status, r.body[:120]) for r in got])
                check(envoy, posted.result(), 429, before + 1)
                assert engine_stats(envoy)["error"] == 0, engine_stats(envoy)
