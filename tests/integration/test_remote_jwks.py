"""Remote JWKS (issue 3) against a real Envoy and a JWKS server the test controls.

Most tests start their own Envoy (the fetch state lives in Envoy's shared
data, so a test needs a fresh one to see a first fetch, count fetches, or use
the 30 s rate limit of unknown-kid refetches). Shared: the "endpoint failing
later" cases use one Envoy with a 1 s refresh and put the good key set back
before each case; the rotation's Envoy (a module fixture) is looked at again
by the last test, 30 s after the rotation.

Keys are generated once per module (RSA 2048 and EC P-256); tokens are minted
with PyJWT, each with its own `jti`, and the plugin's credential cache is off,
so every request is verified against the keys the filter holds at that moment.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from harness import EnvoyHarness, JwksServer, Response

ISS = "https://issuer.test"
PROVIDER = "remote"
JWKS_PATH = "/jwks.json"
SUCCESS = f"wasm_authn.jwks_fetch_success.{PROVIDER}"
FAILED = f"wasm_authn.jwks_fetch_failed.{PROVIDER}"
UNAVAILABLE_BODY = {"error": "temporarily_unavailable", "message": "signing keys not available yet"}


# ---------------------------------------------------------------------------
# keys, JWKS documents, tokens


class Signer:
    def __init__(self, kid: str, alg: str, private_key):
        self.kid, self.alg, self.private_key = kid, alg, private_key
        algo = RSAAlgorithm if alg.startswith("RS") else ECAlgorithm
        jwk = algo.to_jwk(private_key.public_key(), as_dict=True)
        jwk.update({"kid": kid, "alg": alg, "use": "sig"})
        self.jwk: dict = jwk

    def token(self, iss: str = ISS, **claims) -> str:
        now = int(time.time())
        body = {"iss": iss, "sub": f"user-{self.kid}", "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}
        body.update(claims)
        return jwt.encode(body, self.private_key, algorithm=self.alg, headers={"kid": self.kid})


@pytest.fixture(scope="module")
def signers() -> Dict[str, Signer]:
    """rsa-a/ec-a: the initial keys; rsa-b/ec-b: rotated in; ghost: never published."""
    out = {}
    for kid in ("rsa-a", "rsa-b", "ghost"):
        out[kid] = Signer(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    for kid in ("ec-a", "ec-b"):
        out[kid] = Signer(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))
    return out


def jwks_of(signers: Dict[str, Signer], *kids: str) -> dict:
    return {"keys": [signers[k].jwk for k in kids]}


def remote_provider(name: str = PROVIDER, issuer: str = ISS, path: str = JWKS_PATH, **fetch) -> dict:
    remote = {"cluster": "jwks", "authority": "jwks.test", "path": path, "refresh_seconds": 300, "timeout_ms": 2000}
    remote.update(fetch)
    return {"name": name, "issuer": issuer, "remote_jwks": remote}


def plugin_config(*providers: dict, wait_ms: int = 2000) -> dict:
    return {
        "realm": "api",
        "jwt": {"jwks_wait_ms": wait_ms, "providers": list(providers) or [remote_provider()]},
        # Off: a remembered credential would hide whether the keys are (still) there.
        "cache": {"max_entries": 0},
    }


# ---------------------------------------------------------------------------
# helpers


def call(h: EnvoyHarness, token: str, timeout: float = 15) -> Response:
    return h.request("GET", "/api/orders", {"authorization": f"Bearer {token}"}, timeout=timeout)


def show(r: Response) -> str:
    return f"{r.status} {r.headers.to_dict()} {r.body[:300]!r}"


def assert_allowed(r: Response, signer: Signer) -> None:
    assert r.status == 200, show(r)
    seen = EnvoyHarness.upstream_headers(r)
    assert seen.get("x-auth-principal") == f"user-{signer.kid}", seen
    assert seen.get("x-auth-method") == "jwt", seen
    assert seen.get("x-auth-provider") == PROVIDER, seen
    assert "authorization" not in seen, seen


def assert_unavailable(r: Response) -> None:
    assert r.status == 503, show(r)
    retry = r.headers.get("retry-after")
    assert retry is not None and retry.isdigit() and int(retry) >= 1, show(r)
    assert r.json() == UNAVAILABLE_BODY, show(r)


def assert_unknown_key(r: Response) -> None:
    assert r.status == 401, show(r)
    assert r.json()["message"] == "unknown signing key", show(r)
    challenge = r.headers.get("www-authenticate") or ""
    assert challenge.startswith("Bearer") and 'error="invalid_token"' in challenge, show(r)


def stat(h: EnvoyHarness, name: str) -> int:
    return h.wasm_stats().get(name, 0)


def wait_until(pred: Callable[[], object], timeout: float, what, h: Optional[EnvoyHarness] = None,
               interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            what = what() if callable(what) else what
            extra = ""
            if h is not None:
                extra = f"\nstats: {h.wasm_stats()}\nlog tail:\n" + "\n".join(h.log_text().splitlines()[-25:])
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(interval)


def wait_stat_above(h: EnvoyHarness, name: str, floor: int, timeout: float) -> int:
    return wait_until(lambda: (lambda v: v if v > floor else 0)(stat(h, name)), timeout, f"{name} > {floor}", h)


def parallel(fn: Callable[[int], object], n: int, workers: int = 10) -> list:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, range(n)))


def workers_used(h: EnvoyHarness) -> Dict[str, int]:
    """Downstream connections per Envoy worker (listener.<addr>.worker_<n>.downstream_cx_total)."""
    out = {}
    for k, v in h.stats(filter=r"\.worker_\d+\.downstream_cx_total$").items():
        m = re.search(r"\.(worker_\d+)\.downstream_cx_total$", k)
        if m and k.startswith("listener.") and v > 0:
            out[m.group(1)] = v
    return out


def wasm_lines(h: EnvoyHarness, needle: str) -> List[str]:
    return [line for line in h.log_text().splitlines() if needle in line]


def start(envoy_factory, config: dict, srv: JwksServer, **kw) -> EnvoyHarness:
    return envoy_factory(config, jwks_port=srv.port, fresh=True, **kw)


# ---------------------------------------------------------------------------
# 1. cold start


def test_cold_start_requests_wait_for_the_first_fetch(jwks_server, envoy_factory, signers):
    """Keys arrive ~2.5 s after the fetch starts: requests sent before then (on
    several workers) are held and all answered 200 as soon as the keys are in,
    not at the end of the 6 s wait, and not 401/503."""
    delay = 2.5
    jwks_server.set_jwks(jwks_of(signers, "rsa-a", "ec-a"), delay=delay)
    h = start(envoy_factory, plugin_config(remote_provider(timeout_ms=8000), wait_ms=6000), jwks_server, concurrency=2)
    assert jwks_server.wait_for_hits(JWKS_PATH, 1, timeout=5), "no first fetch after start-up"
    fetch_started = jwks_server.log[0][0]
    keys_served = fetch_started + delay
    assert stat(h, SUCCESS) == 0, "keys already in: the test did not exercise the cold start"
    assert time.time() < keys_served - 0.3, "Envoy started too slowly for this test to mean anything"

    order = ["rsa-a", "ec-a"]

    def one(i):
        s = signers[order[i % 2]]
        r = call(h, s.token())
        return r, s, time.time()

    results = parallel(one, 8)
    for r, s, _ in results:
        assert_allowed(r, s)
    for _, _, done in results:
        # answered when the keys arrived (resumed from a 20 ms tick), not at the 6 s deadline
        assert keys_served - 0.2 <= done <= keys_served + 1.5, (done - fetch_started, delay)
    assert jwks_server.hits(JWKS_PATH) == 1
    assert stat(h, SUCCESS) == 1
    assert stat(h, "wasm_authn.denied.jwks_unavailable") == 0


def test_cold_start_past_the_wait_is_503_then_200(jwks_server, envoy_factory, signers):
    """Keys later than jwks_wait_ms (1 s): 503 with Retry-After (never 401, never
    a pass); once the (slow) fetch lands, the same kind of token is accepted."""
    delay = 4.0
    jwks_server.set_jwks(jwks_of(signers, "rsa-a", "ec-a"), delay=delay)
    h = start(envoy_factory, plugin_config(remote_provider(timeout_ms=8000), wait_ms=1000), jwks_server)
    assert jwks_server.wait_for_hits(JWKS_PATH, 1, timeout=5)
    keys_served = jwks_server.log[0][0] + delay

    t0 = time.monotonic()
    r = call(h, signers["ec-a"].token())
    waited = time.monotonic() - t0
    assert time.time() < keys_served, "the keys arrived before the 503 could be observed"
    assert_unavailable(r)
    assert r.headers.get("retry-after") == "1", show(r)  # ceil(1000 ms)
    assert "www-authenticate" not in r.headers, show(r)  # not an authentication failure
    assert 0.8 <= waited <= 2.5, waited  # it did wait ~jwks_wait_ms before giving up
    assert stat(h, "wasm_authn.denied.jwks_unavailable") >= 1
    assert stat(h, SUCCESS) == 0

    def allowed():
        r = call(h, signers["rsa-a"].token())
        assert r.status in (200, 503), show(r)  # never a 401 while keys are loading
        return r if r.status == 200 else None

    r = wait_until(allowed, timeout=delay + 6, what="200 once the keys arrived", h=h)
    assert_allowed(r, signers["rsa-a"])
    assert_allowed(call(h, signers["ec-a"].token()), signers["ec-a"])
    assert jwks_server.hits(JWKS_PATH) == 1  # the slow fetch was waited for, not retried


# ---------------------------------------------------------------------------
# 2. one fetch per Envoy


def test_one_fetch_for_all_workers(jwks_server, envoy_factory, signers):
    jwks_server.set_jwks(jwks_of(signers, "rsa-a", "ec-a"))
    h = start(envoy_factory, plugin_config(remote_provider(refresh_seconds=86400)), jwks_server, concurrency=4)
    kids = ["rsa-a", "ec-a"]

    def one(i):
        s = signers[kids[i % 2]]
        return call(h, s.token()), s

    for r, s in parallel(one, 40, workers=8):
        assert_allowed(r, s)
    used = workers_used(h)
    assert len(used) >= 3, f"requests did not spread over the workers: {used}"
    time.sleep(0.3)  # let a straggling extra fetch (if any) reach the server
    assert jwks_server.hits(JWKS_PATH) == 1, jwks_server.log
    assert stat(h, SUCCESS) == 1
    assert stat(h, FAILED) == 0
    # Counted per request, handed to Envoy on the next tick.
    wait_until(lambda: stat(h, "wasm_authn.allowed") == 40, 3, "allowed == 40", h)


# ---------------------------------------------------------------------------
# 3. rotation


@pytest.fixture(scope="module")
def rotation(envoy_factory, signers):
    """An Envoy with 4 workers that fetched {rsa-a, ec-a}; then the endpoint
    rotates to {rsa-a, rsa-b, ec-b} (ec-a retired) and 20 concurrent, then 20
    sequential requests with the new kids arrive on fresh connections. Module
    scoped: the last test of the module looks at the same Envoy 30 s later."""
    with JwksServer() as srv:
        srv.set_jwks(jwks_of(signers, "rsa-a", "ec-a"))
        h = envoy_factory(plugin_config(remote_provider(refresh_seconds=86400)), jwks_port=srv.port, fresh=True,
                          concurrency=4)
        wait_stat_above(h, SUCCESS, 0, timeout=5)

        def one(kids):
            def send(i):
                s = signers[kids[i % len(kids)]]
                return call(h, s.token()), s
            return send

        warmup = parallel(one(["rsa-a", "ec-a"]), 12)  # every worker verifies with the first key set
        hits_before = srv.hits(JWKS_PATH)
        srv.set_jwks(jwks_of(signers, "rsa-a", "rsa-b", "ec-b"))
        rotated_at = time.monotonic()
        workers_before = workers_used(h)
        results = parallel(one(["rsa-b", "ec-b"]), 20, workers=10)  # concurrent first requests, new kids
        results += [one(["rsa-b", "ec-b"])(i) for i in range(20)]    # then one after another
        workers_after = workers_used(h)
        yield SimpleNamespace(h=h, srv=srv, warmup=warmup, hits_before=hits_before, rotated_at=rotated_at,
                              results=results, workers_before=workers_before, workers_after=workers_after)


def test_rotated_key_is_accepted_on_every_worker_with_one_refetch(rotation, signers):
    h, srv = rotation.h, rotation.srv
    for r, s in rotation.warmup:
        assert_allowed(r, s)
    assert rotation.hits_before == 1

    results = rotation.results
    bad = [show(r) for r, _ in results if r.status != 200]
    assert not bad, f"{len(bad)} of {len(results)} requests with a rotated key failed: {bad[:3]}"
    for r, s in results:
        assert_allowed(r, s)
    before, after = rotation.workers_before, rotation.workers_after
    assert sum(1 for w in after if after[w] > before.get(w, 0)) >= 3, (before, after)
    time.sleep(0.3)
    assert srv.hits(JWKS_PATH) == 2, f"expected one refetch for the whole Envoy: {srv.log}"
    assert stat(h, SUCCESS) == 2
    assert len(wasm_lines(h, "unknown key id, fetching its JWKS again")) == 1

    # the kept key still works, the retired one is gone (and cannot force another refetch)
    assert_allowed(call(h, signers["rsa-a"].token()), signers["rsa-a"])
    assert_unknown_key(call(h, signers["ec-a"].token()))
    assert srv.hits(JWKS_PATH) == 2


# ---------------------------------------------------------------------------
# 4. endpoint down at start


def test_endpoint_down_at_start_then_up(jwks_server, envoy_factory, signers):
    jwks_server.set_jwks(jwks_of(signers, "rsa-a", "ec-a"))
    jwks_server.refuse()
    h = start(envoy_factory, plugin_config(remote_provider(), wait_ms=1000), jwks_server)
    wait_stat_above(h, FAILED, 0, timeout=5)

    r = call(h, signers["rsa-a"].token())
    assert_unavailable(r)  # 503, never a 401 and never a pass
    assert stat(h, SUCCESS) == 0

    # Without any key it retries every second (no growing backoff): requests wait on it.
    wait_until(lambda: len(wasm_lines(h, "JWKS fetch failed")) >= 3, timeout=6, what="the third attempt", h=h)
    warnings = wasm_lines(h, "JWKS fetch failed")
    assert all("retrying in 1000 ms" in w for w in warnings), warnings
    assert all("[warning]" in w and "no keys yet" in w for w in warnings), warnings
    # The warning names what was fetched.
    assert all("(cluster jwks, authority jwks.test, path /jwks.json)" in w for w in warnings), warnings

    jwks_server.accept()
    accepted_at = time.monotonic()

    def allowed():
        r = call(h, signers["ec-a"].token())
        assert r.status in (200, 503), show(r)
        return r if r.status == 200 else None

    # the next attempt is at most 1 s away, plus one wait
    r = wait_until(allowed, timeout=4, what="200 after the endpoint came back", h=h)
    assert_allowed(r, signers["ec-a"])
    assert_allowed(call(h, signers["rsa-a"].token()), signers["rsa-a"])
    assert time.monotonic() - accepted_at < 4
    assert jwks_server.hits(JWKS_PATH) == 1
    assert stat(h, SUCCESS) == 1


def test_first_fetch_fails_and_the_retry_within_the_wait_answers(jwks_server, envoy_factory, signers):
    """A failed first fetch does not fail the requests waiting for keys: they
    keep waiting (within jwks_wait_ms) for the retry 1 s later and get 200."""
    jwks_server.set_reply(JWKS_PATH, status=500, body="down", delay=2.0)
    h = start(envoy_factory, plugin_config(remote_provider(timeout_ms=5000), wait_ms=6000), jwks_server,
              concurrency=2)
    assert jwks_server.wait_for_hits(JWKS_PATH, 1, timeout=5)
    jwks_server.set_jwks(jwks_of(signers, "rsa-a", "ec-a"))  # the retry will succeed
    assert stat(h, FAILED) == 0, "the first fetch failed before requests could wait for it"
    results = parallel(lambda i: (lambda s: (call(h, s.token()), s))(signers[("rsa-a", "ec-a")[i % 2]]), 6)
    for r, s in results:
        assert_allowed(r, s)
    assert stat(h, FAILED) == 1 and stat(h, SUCCESS) == 1, h.wasm_stats()
    assert jwks_server.hits(JWKS_PATH) == 2
    assert stat(h, "wasm_authn.denied.jwks_unavailable") == 0


# ---------------------------------------------------------------------------
# 5. endpoint failing later: one Envoy, refresh every second, last good keys kept


def _oversized(signers) -> bytes:
    doc = jwks_of(signers, "rsa-a", "ec-a")
    doc["padding"] = "OVERSIZED-MARKER-" + "x" * (70 * 1024)
    body = json.dumps(doc).encode()
    assert len(body) > 64 * 1024
    return body


def _near_limit(signers) -> bytes:
    doc = jwks_of(signers, "rsa-a", "ec-a")
    doc["padding"] = ""
    size = len(json.dumps(doc).encode())
    doc["padding"] = "y" * (64 * 1024 - 200 - size)
    body = json.dumps(doc).encode()
    assert 63 * 1024 < len(body) < 64 * 1024
    return body


def _no_usable_key(signers) -> dict:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = RSAAlgorithm.to_jwk(small.public_key(), as_dict=True)
    weak.update({"kid": "rsa-a", "alg": "RS256"})  # too small: must not replace the good rsa-a
    return {"keys": [weak, {"kty": "XYZ", "kid": "ec-a", "x": "NOUSABLE-MARKER"},
                     {"kty": "oct", "kid": "hs", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}


# Envoy's async client turns a refused/reset connection into a local 503 and a
# timeout into a local 504, so the filter may see either those or no status.
CONNECTION_FAILED = ("HTTP status 503", "timeout or connection failure")
TIMED_OUT = ("HTTP status 504", "timeout or connection failure")

FAILURES = {
    # case: (how to break the endpoint, log texts that name the cause)
    "http-500": (lambda srv, s: srv.set_reply(JWKS_PATH, status=500, body="ERROR-BODY-MARKER"), ("HTTP status 500",)),
    "refused": (lambda srv, s: srv.refuse(), CONNECTION_FAILED),
    "reset": (lambda srv, s: srv.set_reply(JWKS_PATH, mode="reset"), CONNECTION_FAILED),
    "garbage-json": (lambda srv, s: srv.set_jwks(b'{"keys": [GARBAGE-MARKER'), ("not valid JSON",)),
    "slow-past-timeout": (lambda srv, s: srv.set_jwks(jwks_of(s, "rsa-a", "ec-a"), delay=1.0), TIMED_OUT),
    "oversized": (lambda srv, s: srv.set_jwks(_oversized(s)), ("larger than 65536",)),
    "no-usable-key": (lambda srv, s: srv.set_jwks(_no_usable_key(s)), ("no usable signing key",)),
}


@pytest.fixture(scope="module")
def closing_jwks_server():
    with JwksServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def failing_envoy(closing_jwks_server, envoy_factory, signers):
    closing_jwks_server.set_jwks(jwks_of(signers, "rsa-a", "ec-a"))
    cfg = plugin_config(remote_provider(refresh_seconds=1, timeout_ms=300), wait_ms=2000)
    h = envoy_factory(cfg, jwks_port=closing_jwks_server.port, concurrency=2, fresh=True)
    wait_stat_above(h, SUCCESS, 0, timeout=5)
    return h


@pytest.mark.parametrize("case", list(FAILURES))
def test_endpoint_failing_later_keeps_last_good_keys(case, failing_envoy, closing_jwks_server, signers):
    h, srv = failing_envoy, closing_jwks_server
    srv.accept()
    srv.set_jwks(jwks_of(signers, "rsa-a", "ec-a"))
    # a fresh success first: the good keys are in and the backoff is reset
    wait_stat_above(h, SUCCESS, stat(h, SUCCESS), timeout=5)
    log_before = len(h.log_text())
    failed0 = stat(h, FAILED)
    tokens: List[str] = []

    def check_tokens():
        for kid in ("rsa-a", "ec-a"):
            tok = signers[kid].token()
            tokens.append(tok)
            assert_allowed(call(h, tok), signers[kid])

    break_endpoint, causes = FAILURES[case]
    try:
        break_endpoint(srv, signers)
        hits0 = srv.hits(JWKS_PATH)
        # two failed refreshes in a row (it keeps retrying), tokens accepted all along
        deadline = time.monotonic() + 8
        while stat(h, FAILED) < failed0 + 2:
            assert time.monotonic() < deadline, f"no two failed refreshes: {h.wasm_stats()}"
            check_tokens()
            time.sleep(0.1)
        check_tokens()
        if case == "refused":
            assert srv.hits(JWKS_PATH) == hits0, "the endpoint was still reached"
    finally:
        srv.accept()
        # after an oversized body, a body just under the 64 KiB bound must be accepted
        srv.set_jwks(_near_limit(signers) if case == "oversized" else jwks_of(signers, "rsa-a", "ec-a"))

    new_log = h.log_text()[log_before:]
    warnings = [line for line in new_log.splitlines() if "JWKS fetch failed" in line]
    assert warnings, new_log[-3000:]
    assert all("[warning]" in w for w in warnings), warnings
    assert any(c in w for w in warnings for c in causes), (causes, warnings)
    assert any("keeping the last good keys" in w for w in warnings), warnings
    # no secrets, no tokens, nothing of the answered body in the log
    for secret in tokens + ["MARKER", "c2VjcmV0", signers["rsa-a"].jwk["n"][:40], signers["ec-a"].jwk["x"]]:
        assert secret not in new_log, f"{secret[:30]}... leaked into the Envoy log"
    # and it recovers: the next good refresh counts as a success
    wait_stat_above(h, SUCCESS, stat(h, SUCCESS), timeout=5)
    check_tokens()


# ---------------------------------------------------------------------------
# 6. discovery


def test_discovery_reads_jwks_uri_then_fetches_it(jwks_server, envoy_factory, signers):
    jwks_server.set_discovery(jwks_path="/keys/v2/jwks.json", issuer=ISS, authority="jwks.test")
    jwks_server.set_jwks(jwks_of(signers, "rsa-a", "ec-a"), path="/keys/v2/jwks.json")
    provider = {"name": PROVIDER, "issuer": ISS, "discovery": {"cluster": "jwks", "authority": "jwks.test"}}
    h = start(envoy_factory, plugin_config(provider), jwks_server, concurrency=2)
    for kid in ("rsa-a", "ec-a", "rsa-a", "ec-a"):
        assert_allowed(call(h, signers[kid].token()), signers[kid])
    time.sleep(0.2)
    assert jwks_server.hits("/.well-known/openid-configuration") >= 1
    assert jwks_server.hits("/keys/v2/jwks.json") == 1
    assert jwks_server.hits(JWKS_PATH) == 0
    assert stat(h, SUCCESS) == 1
    assert_unknown_key(call(h, signers["ghost"].token()))
    # the unknown-kid refetch goes through discovery to the same JWKS again
    assert jwks_server.hits("/keys/v2/jwks.json") == 2


def test_discovery_is_read_again_at_each_refresh(jwks_server, envoy_factory, signers):
    """refresh_seconds=1: each refresh reads the discovery document, so when the
    IdP moves its jwks_uri the new JWKS replaces the old one at the next refresh."""
    doc = "/.well-known/openid-configuration"
    jwks_server.set_discovery(jwks_path="/k1", issuer=ISS, authority="jwks.test")
    jwks_server.set_jwks(jwks_of(signers, "rsa-a"), path="/k1")
    jwks_server.set_jwks(jwks_of(signers, "rsa-a", "rsa-b"), path="/k2")
    provider = {"name": PROVIDER, "issuer": ISS,
                "discovery": {"cluster": "jwks", "authority": "jwks.test", "refresh_seconds": 1}}
    h = start(envoy_factory, plugin_config(provider), jwks_server, concurrency=2)
    wait_stat_above(h, SUCCESS, 0, timeout=5)
    jwks_server.set_discovery(jwks_path="/k2", issuer=ISS, authority="jwks.test")
    docs0 = jwks_server.hits(doc)
    # No tokens meanwhile (an unknown kid would force a refetch): only refreshes run.
    # Three more refreshes, each one reading the document first, the JWKS at /k2 after it.
    wait_until(lambda: jwks_server.hits(doc) >= docs0 + 3 and jwks_server.hits("/k2") >= 2, timeout=6,
               what=lambda: f"refreshes through the discovery document: {[(p, jwks_server.hits(p)) for p in (doc, '/k1', '/k2')]}",
               h=h)
    k1 = jwks_server.hits("/k1")
    wait_stat_above(h, SUCCESS, stat(h, SUCCESS) + 1, timeout=4)
    assert jwks_server.hits("/k1") == k1, "the old jwks_uri is still fetched"
    assert_allowed(call(h, signers["rsa-b"].token()), signers["rsa-b"])


# ---------------------------------------------------------------------------
# 7. unknown kid


def test_unknown_kid_is_refetched_once_then_401(jwks_server, envoy_factory, signers):
    jwks_server.set_jwks(jwks_of(signers, "rsa-a", "ec-a"))
    h = start(envoy_factory, plugin_config(remote_provider(refresh_seconds=86400), wait_ms=3000), jwks_server,
              concurrency=2)
    wait_stat_above(h, SUCCESS, 0, timeout=5)
    assert_allowed(call(h, signers["rsa-a"].token()), signers["rsa-a"])
    assert jwks_server.hits(JWKS_PATH) == 1

    ghost = signers["ghost"]
    assert_unknown_key(call(h, ghost.token()))
    assert jwks_server.hits(JWKS_PATH) == 2, "an unknown kid must trigger one refetch"
    assert stat(h, SUCCESS) == 2

    # within 30 s: refused at once, on every worker, without another fetch
    for _ in range(6):
        t0 = time.monotonic()
        r = call(h, ghost.token())
        assert_unknown_key(r)
        assert time.monotonic() - t0 < 2.0, "a rate-limited unknown kid must not wait (jwks_wait_ms 3000)"
    # a different unknown kid is rate-limited too (per provider, not per kid)
    other = Signer("ghost-2", "ES256", signers["ec-a"].private_key)
    assert_unknown_key(call(h, other.token()))
    time.sleep(0.3)
    assert jwks_server.hits(JWKS_PATH) == 2, jwks_server.log
    assert_allowed(call(h, signers["ec-a"].token()), signers["ec-a"])


def test_unknown_kid_on_every_worker_waits_for_one_unchanged_refetch(jwks_server, envoy_factory, signers):
    """Requests with an unknown kid on four workers share one refetch; it returns the same
    document, and every one of them is answered 401 as soon as it is in, not at the wait limit."""
    jwks_server.set_jwks(jwks_of(signers, "rsa-a"))
    h = start(envoy_factory, plugin_config(remote_provider(refresh_seconds=86400), wait_ms=4000), jwks_server,
              concurrency=4)
    wait_stat_above(h, SUCCESS, 0, timeout=5)
    jwks_server.set_reply(JWKS_PATH, body=json.dumps(jwks_of(signers, "rsa-a")), delay=0.5)
    ghost = signers["ghost"]

    def one(_):
        t0 = time.monotonic()
        r = call(h, ghost.token())
        return r, time.monotonic() - t0

    results = parallel(one, 16, workers=16)
    for r, elapsed in results:
        assert_unknown_key(r)
        assert elapsed < 2.5, f"waited {elapsed:.1f} s for a refetch that took 0.5 s"
    assert jwks_server.hits(JWKS_PATH) == 2, jwks_server.log
    assert len(workers_used(h)) >= 2, workers_used(h)
    assert_allowed(call(h, signers["rsa-a"].token()), signers["rsa-a"])


def test_min_refetch_seconds_sets_the_unknown_kid_rate_limit(jwks_server, envoy_factory, signers):
    jwks_server.set_jwks(jwks_of(signers, "rsa-a"))
    h = start(envoy_factory, plugin_config(remote_provider(refresh_seconds=86400, min_refetch_seconds=1)), jwks_server)
    wait_stat_above(h, SUCCESS, 0, timeout=5)
    ghost = signers["ghost"]
    assert_unknown_key(call(h, ghost.token()))
    assert jwks_server.hits(JWKS_PATH) == 2
    time.sleep(1.2)  # past the configured 1 s, not the default 30 s
    assert_unknown_key(call(h, ghost.token()))
    assert jwks_server.hits(JWKS_PATH) == 3, jwks_server.log


def test_max_response_bytes_refuses_a_larger_jwks(jwks_server, envoy_factory, signers):
    jwks = dict(jwks_of(signers, "rsa-a"), padding="x" * 2000)  # a valid JWKS of over 2 KB
    jwks_server.set_jwks(jwks)
    h = start(envoy_factory, plugin_config(remote_provider(max_response_bytes=1024), wait_ms=500), jwks_server)
    wait_stat_above(h, FAILED, 0, timeout=5)
    assert_unavailable(call(h, signers["rsa-a"].token()))
    assert wasm_lines(h, "bytes is larger than 1024 bytes (max_response_bytes)"), h.log_text()[-2000:]
    assert stat(h, SUCCESS) == 0


# ---------------------------------------------------------------------------
# 8. metrics


def test_fetch_metrics_per_provider(jwks_server, envoy_factory, signers):
    """Counters are per provider (name made metric-safe): one provider succeeds,
    the other's endpoint answers 404."""
    jwks_server.set_jwks(jwks_of(signers, "rsa-a", "ec-a"))
    other = remote_provider(name="other.idp", issuer="https://other.test", path="/missing.json")
    h = start(envoy_factory, plugin_config(remote_provider(), other), jwks_server)
    wait_stat_above(h, SUCCESS, 0, timeout=5)
    wait_stat_above(h, "wasm_authn.jwks_fetch_failed.other_idp", 0, timeout=5)
    assert_allowed(call(h, signers["rsa-a"].token()), signers["rsa-a"])
    stats = h.wasm_stats()
    assert stats[SUCCESS] == jwks_server.hits(JWKS_PATH) == 1, stats
    assert stats.get(FAILED, 0) == 0, stats
    assert stats.get("wasm_authn.jwks_fetch_success.other_idp", 0) == 0, stats
    assert any("provider other.idp: JWKS fetch failed (cluster jwks, authority jwks.test, path /missing.json): "
               "HTTP status 404" in w
               for w in wasm_lines(h, "JWKS fetch failed")), h.log_text()[-2000:]


# ---------------------------------------------------------------------------
# last: the rotation's Envoy, 30 s later (module scoped, so this costs no extra wait
# when the module runs in order)


def test_no_refetch_after_a_rotation_without_unknown_kids(rotation):
    h, srv = rotation.h, rotation.srv
    deadline = rotation.rotated_at + 33  # past the 30 s unknown-kid rate limit
    hits = srv.hits(JWKS_PATH)
    assert hits == 2, srv.log
    while time.monotonic() < deadline and srv.hits(JWKS_PATH) == hits:
        time.sleep(0.2)
    lines = wasm_lines(h, "unknown key id, fetching its JWKS again")
    assert srv.hits(JWKS_PATH) == 2, "a refetch for an unknown kid no request carried:\n" + "\n".join(lines)
    assert len(lines) == 1, lines
