"""Limits per principal (issue 10) in a real Envoy with four workers: requests per
hour exact across workers, requests in flight that never leak (completed, reset,
timed out, answered by a later filter), the RateLimit fields, and the fleet
composition with Envoy's own rate limiting keyed on the verified principal.

Every request here opens a new connection, so Envoy spreads them over its
workers; the counts are exact because they live in shared data, changed only by
compare-and-swap.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from harness import REPO_ROOT, EnvoyHarness, cli_path, cli_run, envoy_bin
from tokens import sha256_hash

KEYS = {"a": "key-a-0123456789", "b": "key-b-0123456789", "c": "key-c-0123456789", "slow": "key-slow-0123"}

ROUTES = {"name": "local_route", "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [
    {"name": "timeout-route", "match": {"prefix": "/timeout"}, "route": {"cluster": "echo", "timeout": "0.5s"}},
    {"name": "api-route", "match": {"prefix": "/"}, "route": {"cluster": "echo", "timeout": "10s"}},
]}]}

CONFIG = {
    "limits": {"requests_per_hour": 6, "max_concurrent": 0, "expose_headers": True},
    "api_keys": {"clients": [
        {"id": "a", "key_hash": sha256_hash(KEYS["a"])},                            # the default: 6 per hour
        {"id": "b", "key_hash": sha256_hash(KEYS["b"]), "requests_per_hour": 3},    # its own: 3
        {"id": "c", "key_hash": sha256_hash(KEYS["c"]), "requests_per_hour": 0},    # unlimited
        {"id": "slow", "key_hash": sha256_hash(KEYS["slow"]), "requests_per_hour": 0, "max_concurrent": 2},
    ]},
}

# A Lua filter after wasm-authn that answers /lua-reply itself (a later filter's local reply).
LUA_REPLY = {"name": "envoy.filters.http.lua", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
    "default_source_code": {"inline_string": """
function envoy_on_request(h)
  if string.find(h:headers():get(":path"), "^/lua%-reply") then
    h:respond({[":status"] = "418"}, "from lua")
  end
end"""}}}


def key(name):
    return {"x-api-key": KEYS[name]}


@pytest.fixture(scope="module")
def envoy(envoy_factory):
    return envoy_factory(CONFIG, concurrency=4, hcm_overrides={"route_config": ROUTES},
                         http_filters_after=[LUA_REPLY])


def statuses(h, name, n, path="/x"):
    return [h.request("GET", path, key(name)).status for _ in range(n)]


def test_a_limit_of_n_per_hour_gives_exactly_n_across_workers(envoy):
    before = envoy.stats(filter="http.ingress_http.downstream_rq_total")
    got = statuses(envoy, "a", 10)
    assert got == [200] * 6 + [429] * 4, got
    r = envoy.request("GET", "/x", key("a"))
    assert r.status == 429 and r.json() == {"error": "rate_limited", "message": "requests per hour exceeded"}
    retry = int(r.headers["retry-after"])
    assert 0 < retry <= 2 * 3600, r.headers
    assert r.headers["ratelimit-policy"] == '"hourly";q=6;w=3600'
    assert r.headers["ratelimit"] == f'"hourly";r=0;t={retry}'
    stats = envoy.wasm_stats()
    assert stats.get("wasm_authn.denied.rate_limited", 0) >= 5
    # The requests really went over several workers.
    workers = envoy.stats(filter=r"^listener\.127\.0\.0\.1_\d+\.worker_\d+\.downstream_cx_total$")
    assert sum(1 for v in workers.values() if v > 0) >= 2, (workers, before)


def test_principals_do_not_share_a_budget_and_overrides_apply(envoy):
    assert statuses(envoy, "b", 5) == [200] * 3 + [429] * 2
    assert statuses(envoy, "c", 20) == [200] * 20
    r = envoy.request("GET", "/x", key("c"))
    assert "ratelimit" not in r.headers, "an unlimited principal has no quota to show"


def test_allowed_responses_show_the_quota(envoy_factory):
    h = envoy_factory(CONFIG, concurrency=2)
    first = h.request("GET", "/x", key("b"))
    assert first.status == 200
    assert first.headers["ratelimit-policy"] == '"hourly";q=3;w=3600'
    remaining, reset = first.headers["ratelimit"].split(";")[1:]
    assert remaining == "r=2" and 0 < int(reset[2:]) <= 3600
    assert h.request("GET", "/x", key("b")).headers["ratelimit"].split(";")[1] == "r=1"


def _slow_requests(h, n, delay, path="/x"):
    """n parallel requests for `slow`, each held `delay` s by the upstream; their statuses."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(h.request, "GET", f"{path}?echo_delay={delay}", key("slow"), None, 15)
                   for _ in range(n)]
        return sorted(f.result().status for f in futures)


def _all_slots_free(h, expected=2):
    """`expected` slow requests in flight at once are all admitted: no slot leaked."""
    deadline = time.monotonic() + 5
    got = None
    while time.monotonic() < deadline:
        got = _slow_requests(h, expected, 0.4)
        if got == [200] * expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"slots leaked: {got}")


def test_max_concurrent_holds_under_parallel_slow_requests(envoy):
    got = _slow_requests(envoy, 6, 1.0)
    assert got.count(200) == 2 and got.count(429) == 4, got
    r = envoy.request("GET", "/x", key("slow"))
    assert r.status == 200, "the slots came back when the slow requests ended"
    _all_slots_free(envoy)


def _reset_mid_response(h, path):
    """Send a request and close the connection before the (slow) answer: a client reset."""
    s = socket.create_connection(("127.0.0.1", h.listener_port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nx-api-key: {KEYS['slow']}\r\n\r\n".encode())
    time.sleep(0.3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    s.close()


def test_slots_return_after_resets_timeouts_and_later_filters_replies(envoy):
    for _ in range(3):
        threads = [threading.Thread(target=_reset_mid_response, args=(envoy, "/x?echo_delay=3")) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    _all_slots_free(envoy)
    # Upstream timeouts: Envoy answers 504 after 0.5 s, the upstream would take 3 s.
    assert _slow_requests(envoy, 2, 3, path="/timeout") == [504, 504]
    _all_slots_free(envoy)
    # A later filter answers the request itself.
    for _ in range(4):
        assert envoy.request("GET", "/lua-reply", key("slow")).status == 418
    _all_slots_free(envoy)
    assert "panicked" not in envoy.log_text()


def test_tracked_principals_gauge(envoy):
    envoy.request("GET", "/x", key("c"))
    gauges = envoy.stats(filter=r"^wasmcustom\.wasm_authn\.tracked_principals$")
    assert gauges.get("wasmcustom.wasm_authn.tracked_principals", 0) >= 2, gauges


# --------------------------------------------------------------------------
# Fleets: Envoy's own rate limiting, keyed on the verified principal


def _example(name):
    with open(os.path.join(REPO_ROOT, "envoy", "examples", name)) as f:
        return yaml.safe_load(f)


def test_local_ratelimit_per_principal_after_wasm_authn(envoy_factory):
    example = _example("local-ratelimit.yaml")
    routes = {"name": "local_route", "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "echo", "timeout": "10s",
                                             "rate_limits": example["route_rate_limits"]}}]}]}
    config = {"api_keys": {"clients": [{"id": n, "key_hash": sha256_hash(k)} for n, k in KEYS.items()]},
              "bypass": [{"path_prefix": "/healthz"}]}
    h = envoy_factory(config, concurrency=1, hcm_overrides={"route_config": routes},
                      http_filters_after=[example["http_filter"]])
    # Three per principal per minute (the example's bucket), each principal its own bucket.
    assert statuses(h, "a", 5) == [200, 200, 200, 429, 429]
    assert statuses(h, "b", 4) == [200, 200, 200, 429]
    limited = h.request("GET", "/x", key("a"))
    assert limited.headers.get("x-local-rate-limit") == "true"
    # A forged principal header is removed before local_ratelimit reads it.
    r = h.request("GET", "/x", {**key("c"), "x-auth-principal": "a"})
    assert r.status == 200
    # Requests without a principal meet only the default bucket.
    assert [h.request("GET", "/healthz").status for _ in range(5)] == [200] * 5


def test_the_fleet_example_is_a_valid_envoy_configuration():
    """envoy/envoy-fleet.yaml (wasm-authn, then the global rate-limit filter) as Envoy reads
    it, wired as `wasm-authn ratelimit-config` prints it for its own plugin configuration,
    and the engine's rules in envoy/examples/ written by that command (`make
    fleet-examples`); the compose services around it are validated by test_smoke, the
    composition itself runs in test_fleet."""
    result = subprocess.run([envoy_bin(), "--mode", "validate", "-c", "envoy/envoy-fleet.yaml"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "OK" in result.stdout + result.stderr, result.stdout[-2000:] + result.stderr[-2000:]
    with open(os.path.join(REPO_ROOT, "envoy", "envoy-fleet.yaml")) as f:
        fleet = yaml.safe_load(f)
    hcm = fleet["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in hcm["http_filters"]]
    assert names == ["envoy.filters.http.wasm", "envoy.filters.http.ratelimit", "envoy.filters.http.router"]
    plugin_config = hcm["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]
    assert json.loads(plugin_config)["limits"]["scope"] == "fleet"
    code, out, err = cli_run(["ratelimit-config", "-", "--format", "envoy"], plugin_config.encode())
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert hcm["http_filters"][1] == printed["http_filter"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route["route"]["rate_limits"] == printed["route"]["rate_limits"]
    assert route["request_headers_to_remove"] == printed["route"]["request_headers_to_remove"]
    check = subprocess.run(["scripts/fleet-examples.sh", "--check"], cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=60, env={**os.environ, "CLI": cli_path(), "PYTHON": sys.executable})
    assert check.returncode == 0, check.stderr


# --------------------------------------------------------------------------
# Records forgotten only when the table is full (issue 17.10)


def _slot_of(qualified: str, slots: int) -> int:
    """The shared-data slot a principal's record lives in (src/shared_table.rs: SHA-256, little end, mod slots)."""
    import hashlib
    return int.from_bytes(hashlib.sha256(qualified.encode()).digest()[:8], "little") % slots


def test_records_are_forgotten_only_when_the_table_is_full(envoy_factory):
    # Twelve clients whose records share one slot of a 16-principal table (two slots of eight on average).
    ids = [f"c{i}" for i in range(200) if _slot_of(f"api-key:c{i}", 2) == 0][:12]
    keys = {client: f"key-of-{client}-0123" for client in ids}
    config = {"limits": {"requests_per_hour": 3, "max_tracked_principals": 16},
              "api_keys": {"clients": [{"id": c, "key_hash": sha256_hash(k), "max_concurrent": 1 if c == ids[1] else 0}
                                       for c, k in keys.items()]}}
    h = envoy_factory(config, concurrency=2, fresh=True)
    victim, busy, others = ids[0], ids[1], ids[2:]
    assert [h.request("GET", "/x", {"x-api-key": keys[victim]}).status for _ in range(3)] == [200] * 3
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(h.request, "GET", "/x?echo_delay=3", {"x-api-key": keys[busy]}, None, 15)
        time.sleep(0.5)
        for client in others:
            assert h.request("GET", "/x", {"x-api-key": keys[client]}).status == 200, client
        r = h.request("GET", "/x", {"x-api-key": keys[victim]})
        assert r.status == 429, "its count was kept: the table is not full"
        r = h.request("GET", "/x", {"x-api-key": keys[busy]})
        assert r.status == 429 and r.json()["message"] == "too many requests in flight", (r.status, r.body)
        assert slow.result().status == 200
    gauge = h.stats(filter=r"^wasmcustom\.wasm_authn\.tracked_principals$")
    assert gauge.get("wasmcustom.wasm_authn.tracked_principals") == 12, gauge
