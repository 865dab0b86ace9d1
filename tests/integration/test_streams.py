"""Only a decision continues a stream (issue 17.1-17.3), in a real Envoy.

Every way the filter holds a request (keys never fetched, an unknown `kid`
refetched, discovery pending, the revocation list pending, an introspection
answer pending, the client store pending, a token request reading its body) x every way a request carries a body (none, small, larger
than one read, chunked HTTP/1.1, HTTP/2 with several DATA frames, trailers,
more than Envoy buffers) x both values of Envoy's
`allow_on_headers_stop_iteration`: forged credentials never reach the upstream
(Envoy's own count of upstream requests says so, not only the answers), valid
ones reach it with the body intact (the echo upstream's digest of what it got).

Each scenario is one Envoy per flag value; its cases run in parallel, so that
they are held at the same time (an unknown kid is refetched once per 30 s: the
cases of that scenario wait for one refetch together).
"""
from __future__ import annotations

import hashlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from harness import EnvoyHarness, JwksServer, Response, _wasm_filter
from introspection_server import ISSUER as INTROSPECTION_ISSUER
from introspection_server import IntrospectionServer
from wire import Body, send

ISS = "https://issuer.test"
WAIT_MS = 1500
KEY = b"held-client-key-0123456789"


def _ec_key():
    return ec.generate_private_key(ec.SECP256R1())


SIGNING_KEY = _ec_key()  # published in the JWKS as kid "k1"
FORGER_KEY = _ec_key()  # never published
JWK = dict(ECAlgorithm.to_jwk(SIGNING_KEY.public_key(), as_dict=True), kid="k1", alg="ES256")


def token(key=SIGNING_KEY, kid: str = "k1", iss: str = ISS, **claims) -> str:
    now = int(time.time())
    body = {"iss": iss, "sub": "held-user", "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex, **claims}
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": kid})


# ---- the ways a body comes -------------------------------------------------------------

class Way(NamedTuple):
    name: str
    protocol: str  # wire.send's protocol
    body: Body
    # More than Envoy buffers for a held request (per_connection_buffer_limit_bytes, 1 MiB).
    over_buffer: bool = False


def _parts(n: int, size: int) -> List[bytes]:
    return [bytes([65 + i]) * size for i in range(n)]


WAYS = [
    Way("no body", "h1", Body()),
    Way("small body", "h1", Body([b'{"rows": [1, 2, 3]}'])),
    Way("body larger than one read", "h1", Body(_parts(3, 100_000))),
    Way("chunked HTTP/1.1 with trailers", "h1-chunked", Body(_parts(3, 5_000), trailers=[("x-checksum", "1")])),
    Way("HTTP/2, several DATA frames", "h2", Body(_parts(4, 20_000))),
    Way("HTTP/2 with trailers (gRPC)", "h2", Body(_parts(2, 300), trailers=[("grpc-status", "0")])),
    Way("more than Envoy buffers", "h1", Body(_parts(2, 1_200_000)), over_buffer=True),
]


def flag_hook(allow: bool) -> Callable[[dict], None]:
    def hook(cfg: dict) -> None:
        _wasm_filter(cfg)["allow_on_headers_stop_iteration"] = allow
    return hook


def upstream_requests(h: EnvoyHarness) -> int:
    return h.stats(filter=r"^cluster\.echo\.upstream_rq_total$").get("cluster.echo.upstream_rq_total", 0)


class Case(NamedTuple):
    way: Way
    headers: List[Tuple[str, str]]
    valid: bool  # a valid credential: it must reach the upstream, body intact


def run_cases(h: EnvoyHarness, cases: List[Case], method: str = "POST", path: str = "/rows"
              ) -> List[Tuple[Case, Response]]:
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = [pool.submit(send, h.listener_port, method, path, c.headers, c.way.body, c.way.protocol, 20.0)
                   for c in cases]
        return list(zip(cases, [f.result() for f in futures]))


def check(h: EnvoyHarness, results: List[Tuple[Case, Response]], refused: int, before: int) -> None:
    """Forged: answered `refused` (or, over Envoy's buffer, Envoy's 413 or a closed
    connection), never upstream. Valid: 200 with the body the client sent (over
    Envoy's buffer, 413 or a closed connection may come first)."""
    reached = 0
    for case, r in results:
        label = f"{case.way.name} ({'valid' if case.valid else 'forged'}): {r.status} {r.body[:200]!r}"
        if r.status == 200:
            assert case.valid, label
            seen = EnvoyHarness.upstream_request(r)
            assert seen["body_length"] == len(case.way.body.data), label
            assert seen["body_sha256"] == hashlib.sha256(case.way.body.data).hexdigest(), label
            assert seen["headers"].get("x-auth-principal"), label
            assert "authorization" not in seen["headers"], label
            reached += 1
        elif case.way.over_buffer:
            assert r.status in (refused, 413, 0), label
        else:
            assert not case.valid and r.status == refused, label
    # Envoy's count: exactly the requests answered 200 went upstream, whatever else happened.
    deadline = time.monotonic() + 2
    while upstream_requests(h) - before < reached and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream_requests(h) - before == reached, "a request reached the upstream undecided"


def bearer(t: str) -> List[Tuple[str, str]]:
    return [("authorization", f"Bearer {t}"), ("content-type", "application/octet-stream")]


FLAGS = [pytest.param(True, id="allow_on_headers_stop_iteration"), pytest.param(False, id="flag-false")]


def remote_provider(**remote) -> dict:
    fetch = {"cluster": "jwks", "authority": "jwks.test", "path": "/jwks.json", "timeout_ms": 3000}
    fetch.update(remote)
    return {"name": "remote", "issuer": ISS, "remote_jwks": fetch}


def start(config: dict, flag: bool, jwks_port: Optional[int] = None) -> EnvoyHarness:
    config = {"realm": "api", "cache": {"max_entries": 0}, **config}
    return EnvoyHarness(config, jwks_port=jwks_port, config_hook=flag_hook(flag), log_level="debug").start()


# ---- the ways a request is held ----------------------------------------------------------

@pytest.mark.parametrize("flag", FLAGS)
def test_keys_never_fetched(flag: bool) -> None:
    """The issue's attack: the JWKS endpoint is down, a forged POST with a body waits
    for keys that never come. 503 after the wait, never the upstream."""
    with start({"jwt": {"jwks_wait_ms": WAIT_MS, "providers": [remote_provider()]}}, flag) as h:
        before = upstream_requests(h)
        cases = [Case(way, bearer(token(FORGER_KEY)), valid=False) for way in WAYS]
        results = run_cases(h, cases)
        check(h, results, 503, before)
        stats = h.wasm_stats()
        assert stats.get("wasm_authn.held", 0) >= len(WAYS) - 1, stats
        assert stats.get("wasm_authn.held_timeout", 0) >= len(WAYS) - 1, stats
        assert "held for signing keys" in h.log_text()
        assert "answered 503: jwks_unavailable (after 1" in h.log_text()


@pytest.mark.parametrize("flag", FLAGS)
def test_unknown_kid_refetch(flag: bool) -> None:
    """Keys known; a token with a fresh kid makes the filter refetch and hold the
    request. Forged (the kid never appears): 401 after the refetch. Valid (the key
    was rotated in at the endpoint): 200 with the body intact."""
    rotated = _ec_key()
    rotated_jwk = dict(ECAlgorithm.to_jwk(rotated.public_key(), as_dict=True), kid="k2", alg="ES256")
    with JwksServer() as srv:
        srv.set_jwks({"keys": [JWK]})
        config = {"jwt": {"jwks_wait_ms": 4000, "providers": [remote_provider()]}}
        with start(config, flag, srv.port) as h:
            assert h.request("GET", "/x", {"authorization": f"Bearer {token()}"}).status == 200
            # The refetch answers late, so that every case arrives while it is on its way.
            srv.set_jwks({"keys": [JWK, rotated_jwk]}, delay=1.5)
            srv.reset_hits()
            before = upstream_requests(h)
            cases = [Case(w, bearer(token(FORGER_KEY, kid="ghost")), valid=False) for w in WAYS]
            cases += [Case(w, bearer(token(rotated, kid="k2")), valid=True) for w in WAYS]
            check(h, run_cases(h, cases), 401, before)
            assert srv.hits("/jwks.json") == 1, "one refetch for every held request"


@pytest.mark.parametrize("flag", FLAGS)
def test_discovery_pending(flag: bool) -> None:
    """OpenID Connect discovery answers slowly: every request waits for the first
    keys; a forged token gets 401, a valid one reaches the upstream with its body."""
    with JwksServer() as srv:
        srv.set_discovery(jwks_path="/jwks.json")
        srv.set_reply("/.well-known/openid-configuration", 200,
                      {"issuer": ISS, "jwks_uri": "http://jwks.test/jwks.json"}, delay=1.5)
        srv.set_jwks({"keys": [JWK]})
        provider = {"name": "remote", "issuer": ISS,
                    "discovery": {"cluster": "jwks", "authority": "jwks.test", "timeout_ms": 4000}}
        with start({"jwt": {"jwks_wait_ms": 5000, "providers": [provider]}}, flag, srv.port) as h:
            before = upstream_requests(h)
            cases = [Case(w, bearer(token(FORGER_KEY)), valid=False) for w in WAYS]
            cases += [Case(w, bearer(token()), valid=True) for w in WAYS]
            check(h, run_cases(h, cases), 401, before)


@pytest.mark.parametrize("flag", FLAGS)
def test_revocation_list_pending(flag: bool) -> None:
    """The remote revocation list answers slowly (issue 17.12: it failed open until its
    first fetch): a revoked token waits for it and gets 401, another waits and passes."""
    with JwksServer() as srv:
        srv.set_reply("/revoked.json", 200, {"jti": ["stolen"]}, delay=1.5)
        config = {
            "jwt": {"providers": [{"name": "local", "issuer": ISS, "local_jwks": {"keys": [JWK]}}]},
            "revocation": {"wait_ms": 5000, "remote": {"cluster": "jwks", "authority": "jwks.test",
                                                       "path": "/revoked.json", "timeout_ms": 4000}},
        }
        with start(config, flag, srv.port) as h:
            before = upstream_requests(h)
            cases = [Case(w, bearer(token(jti="stolen")), valid=False) for w in WAYS]
            cases += [Case(w, bearer(token()), valid=True) for w in WAYS]
            check(h, run_cases(h, cases), 401, before)


@pytest.mark.parametrize("flag", FLAGS)
def test_revocation_list_down_is_503_unless_allowed(flag: bool) -> None:
    """The revocation endpoint is down after a restart: tokens wait, then 503, never
    the upstream; `allow_before_first_fetch` lets them through, as documented."""
    remote = {"cluster": "jwks", "authority": "jwks.test", "path": "/revoked.json", "timeout_ms": 500}
    jwt_config = {"providers": [{"name": "local", "issuer": ISS, "local_jwks": {"keys": [JWK]}}]}
    with start({"jwt": jwt_config, "revocation": {"wait_ms": WAIT_MS, "remote": remote}}, flag) as h:
        before = upstream_requests(h)
        cases = [Case(w, bearer(token()), valid=False) for w in WAYS]
        check(h, run_cases(h, cases), 503, before)
        assert h.wasm_stats().get("wasm_authn.denied.revocation_unavailable", 0) >= len(WAYS) - 1
        # Basic and API keys are never revoked by the list: they never wait for it.
    allowed = {"jwt": jwt_config, "revocation": {"remote": remote, "allow_before_first_fetch": True}}
    with start(allowed, flag) as h:
        r = h.request("GET", "/x", {"authorization": f"Bearer {token()}"})
        assert r.status == 200, r


@pytest.mark.parametrize("flag", FLAGS)
def test_introspection_pending(flag: bool) -> None:
    """An opaque token's introspection answer comes late (issue 20): every request
    waits for it, decided when its own call answers; an inactive token gets 401, an
    active one reaches the upstream with its body."""
    with IntrospectionServer({"filter": "secret"}) as idp:
        introspection = {"cluster": "jwks", "authority": "idp.test", "path": "/introspect", "timeout_ms": 4000,
                         "client_id": "filter", "client_secret": "secret"}
        config = {"jwt": {"providers": [{"name": "idp", "issuer": INTROSPECTION_ISSUER,
                                         "introspection": introspection}]}}
        with start(config, flag, idp.port) as h:
            idp.misbehave(delay=1.0)
            before = upstream_requests(h)
            cases = [Case(w, bearer(f"op_forged_{uuid.uuid4().hex}"), valid=False) for w in WAYS]
            cases += [Case(w, bearer(idp.issue(iss=INTROSPECTION_ISSUER, sub="held-user")), valid=True) for w in WAYS]
            check(h, run_cases(h, cases), 401, before)
            assert "held for an introspection answer" in h.log_text()


@pytest.mark.parametrize("flag", FLAGS)
def test_client_store_pending(flag: bool) -> None:
    """The client store (`api_keys.remote`) answers its first fetch late: a request whose
    key no configured client holds waits for it; a key the store lists reaches the
    upstream with its body, one it does not gets 401."""
    stored = b"stored-client-key-0123456789"
    with JwksServer() as srv:
        document = {"clients": [{"id": "stored", "key_hash": "sha256:" + hashlib.sha256(stored).hexdigest()}]}
        srv.set_reply("/clients.json", 200, document, delay=1.5)
        remote = {"cluster": "jwks", "authority": "store.test", "path": "/clients.json", "timeout_ms": 4000}
        with start({"api_keys": {"remote": remote}}, flag, srv.port) as h:
            before = upstream_requests(h)
            key = lambda value: [("x-api-key", value.decode()), ("content-type", "application/octet-stream")]  # noqa: E731
            cases = [Case(w, key(b"not-a-stored-key"), valid=False) for w in WAYS]
            cases += [Case(w, key(stored), valid=True) for w in WAYS]
            check(h, run_cases(h, cases), 401, before)
            assert "held for the client store" in h.log_text()


def token_endpoint_config() -> dict:
    with open("tests/keys/ec_p256_private.pem") as f:
        signing_key = f.read()
    return {
        "api_keys": {"clients": [{"id": "held-client", "key_hash": "sha256:" + hashlib.sha256(KEY).hexdigest()}]},
        "token_endpoint": {"path": "/token", "issuer": "https://auth.test", "signing_key": signing_key},
    }


@pytest.mark.parametrize("flag", FLAGS)
def test_token_request_reading_its_body(flag: bool) -> None:
    """The token endpoint reads the body before it answers: whatever way the body
    comes, it is answered (200 for the right key, 401 for a wrong one), never
    forwarded. Without allow_on_headers_stop_iteration Envoy never brings the body:
    408 after 10 s, as documented."""
    good = b'{"apiKey": "%s"}' % KEY
    wrong = b'{"apiKey": "not-the-key"}'
    with start(token_endpoint_config(), flag) as h:
        before = upstream_requests(h)
        ways = [
            ("one piece", "h1", Body([good]), Body([wrong])),
            ("chunked with trailers", "h1-chunked", Body([good[:5], good[5:]], trailers=[("x-a", "1")]),
             Body([wrong[:5], wrong[5:]], trailers=[("x-a", "1")])),
            ("HTTP/2 frames", "h2", Body([good[:7], good[7:]]), Body([wrong[:7], wrong[7:]])),
            ("HTTP/2 trailers", "h2", Body([good], trailers=[("grpc-status", "0")]),
             Body([wrong], trailers=[("grpc-status", "0")])),
        ]
        headers = [("content-type", "application/json")]
        with ThreadPoolExecutor(len(ways) * 2) as pool:
            futures = []
            for name, protocol, good_body, wrong_body in ways:
                futures.append((name, 200, pool.submit(send, h.listener_port, "POST", "/token", headers, good_body,
                                                       protocol, 20.0)))
                futures.append((name, 401, pool.submit(send, h.listener_port, "POST", "/token", headers, wrong_body,
                                                       protocol, 20.0)))
            for name, expected, future in futures:
                r = future.result()
                if flag:
                    assert r.status == expected, f"{name}: {r.status} {r.body[:200]!r}"
                else:
                    assert r.status == 408, f"{name}: {r.status} {r.body[:200]!r}"
        assert upstream_requests(h) == before, "a token request went upstream"


# ---- an API key in a form field (issue 17.17) ---------------------------------------------

def form_config() -> dict:
    client = {"id": "form-client", "key_hash": "sha256:" + hashlib.sha256(KEY).hexdigest()}
    return {"api_keys": {"form_field": "@authtoken", "clients": [client]}}


def without_key(form: bytes) -> bytes:
    return b"&".join(p for p in form.split(b"&") if not p.startswith((b"%40authtoken=", b"@authtoken=")))


@pytest.mark.parametrize("flag", FLAGS)
def test_api_key_in_a_form_field(flag: bool) -> None:
    """CData Arc's `@authtoken` as form-post data: the request is held until its body
    is read, whatever way it comes; the right key reaches the upstream without the
    field (the rest of the body intact), a wrong one gets 401, a form over 64 KiB
    413, and none of them is forwarded undecided. Without allow_on_headers_stop_iteration
    Envoy never brings the body: 408 after 10 s."""
    good = b"a=1&%40authtoken=" + KEY + b"&b=x%26y+z"
    wrong = b"a=1&@authtoken=not-the-key"
    pad = b"p=" + b"x" * 20_000
    large_good = pad + b"&@authtoken=" + KEY + b"&" + pad
    ways = [
        ("one piece", "h1", [good], [wrong], []),
        ("larger than one read", "h1", [large_good[:15_000], large_good[15_000:30_000], large_good[30_000:]],
         [wrong], []),
        ("chunked with trailers", "h1-chunked", [good[:9], good[9:]], [wrong[:9], wrong[9:]], [("x-a", "1")]),
        ("HTTP/2 frames", "h2", [good[:7], good[7:20], good[20:]], [wrong[:7], wrong[7:]], []),
        ("HTTP/2 trailers", "h2", [good], [wrong], [("grpc-status", "0")]),
    ]
    headers = [("content-type", "application/x-www-form-urlencoded")]
    with start(form_config(), flag) as h:
        before = upstream_requests(h)
        with ThreadPoolExecutor(len(ways) * 2 + 1) as pool:
            futures = []
            for name, protocol, good_parts, wrong_parts, trailers in ways:
                for parts, expected in ((good_parts, 200), (wrong_parts, 401)):
                    body = Body(parts, trailers=trailers)
                    futures.append((name, expected, body, pool.submit(
                        send, h.listener_port, "POST", "/arc", headers, body, protocol, 20.0)))
            over = Body([b"a=" + b"y" * 40_000, b"&@authtoken=" + KEY + b"&b=" + b"z" * 40_000])
            futures.append(("over 64 KiB", 413, over, pool.submit(
                send, h.listener_port, "POST", "/arc", headers, over, "h1", 20.0)))
            reached = 0
            for name, expected, body, future in futures:
                r = future.result()
                label = f"{name}: {r.status} {r.body[:200]!r}"
                if not flag:
                    assert r.status == 408, label
                    continue
                assert r.status == expected, label
                if expected == 200:
                    seen = EnvoyHarness.upstream_request(r)
                    forwarded = without_key(body.data)
                    assert seen["body_length"] == len(forwarded), label
                    assert seen["body_sha256"] == hashlib.sha256(forwarded).hexdigest(), label
                    assert seen["headers"].get("x-auth-principal") == "form-client", label
                    reached += 1
        deadline = time.monotonic() + 2
        while upstream_requests(h) - before < reached and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstream_requests(h) - before == reached, "a form request reached the upstream undecided"
        if flag:
            assert "reading its form for an API key" in h.log_text()
            # Not a form: never held for its body; no key anywhere is a 401 at once.
            r = h.request("POST", "/arc", {"content-type": "text/plain"}, body=b"@authtoken=" + KEY)
            assert r.status == 401, r
