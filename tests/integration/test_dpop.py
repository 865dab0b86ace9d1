"""DPoP (RFC 9449) in a real Envoy 1.40 (issue 21.3): tokens bound to a key
(`cnf.jkt`) are used as `Authorization: DPoP <token>` with a `DPoP` proof of that
key on each request; the token endpoint binds its tokens to the key of a token
request's proof.

Proofs are made here with PyJWT and `cryptography` (ES256, RS256, EdDSA) as RFC
9449's examples make them; no DPoP client is packaged (Authlib 1.9 has none). Envoy
runs two workers, and replays are sent on many fresh connections, so both see them.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from typing import Dict, Optional

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

import wire
from harness import EnvoyHarness, JwksServer, Response
from tokens import b64u, ed25519_key, jwk, mint, now, p256_key, rsa_key, sha256_hash

ISSUER = "https://id.dpop.example"
STRICT_ISSUER = "https://strict.dpop.example"
PLAIN_ISSUER = "https://plain.dpop.example"
ENDPOINT_ISSUER = "https://auth.dpop.example"
SIGNER = p256_key()
API_KEY = "rk-0123456789abcdef"
HOST = "api.test"
BASE = f"http://{HOST}"

# The client's keys, one per algorithm.
KEYS = {"ES256": p256_key(), "RS256": rsa_key(), "EdDSA": ed25519_key()}


def public_jwk(key) -> Dict[str, str]:
    """The proof's `jwk`: the public key's members only (as RFC 9449's examples)."""
    if isinstance(key, rsa.RSAPrivateKey):
        d = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        d = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        d = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {k: v for k, v in d.items() if k in ("kty", "n", "e", "crv", "x", "y")}


def private_jwk(key) -> Dict[str, str]:
    """The same key with its private members (what a careless client might send)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECAlgorithm.to_jwk(key, as_dict=True)
    return RSAAlgorithm.to_jwk(key, as_dict=True)


def thumbprint(key) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    members = public_jwk(key)
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64u(hashlib.sha256(canonical.encode()).digest())


def ath(access_token: str) -> str:
    return b64u(hashlib.sha256(access_token.encode()).digest())


def proof(key, htm: str, htu: str, access_token: Optional[str] = None, *, alg: Optional[str] = None,
          iat: Optional[int] = None, jti: Optional[str] = None, header: Optional[dict] = None,
          claims: Optional[dict] = None) -> str:
    """A DPoP proof JWT (RFC 9449 4.2) signed by PyJWT."""
    alg = alg or next(name for name, k in KEYS.items() if k is key)
    body = {"jti": jti or str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": now() if iat is None else iat}
    if access_token is not None:
        body["ath"] = ath(access_token)
    body.update(claims or {})
    headers = {"typ": "dpop+jwt", **(header or {})}
    if "jwk" not in headers:
        headers["jwk"] = public_jwk(key)
    return pyjwt.encode(body, key, algorithm=alg, headers=headers)


def token(issuer: str = ISSUER, key=None, sub: str = "alice") -> str:
    """An access token of `issuer`, bound to `key` (`cnf.jkt`) unless None."""
    t = now()
    claims = {"iss": issuer, "sub": sub, "iat": t, "exp": t + 300}
    if key is not None:
        claims["cnf"] = {"jkt": thumbprint(key)}
    return mint(SIGNER, "ES256", claims, kid="k1")


def dpop_headers(access_token: str, key, method: str = "GET", path: str = "/x", **kw) -> Dict[str, str]:
    return {"host": HOST, "authorization": f"DPoP {access_token}",
            "dpop": proof(key, method, BASE + path, access_token, **kw)}


def pkcs8(private_key) -> str:
    from cryptography.hazmat.primitives import serialization
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()


CONFIG = {
    "api_keys": {"clients": [{"id": "reports", "key_hash": sha256_hash(API_KEY), "scopes": ["orders"]}],
                 "allow_basic": False},
    "jwt": {"providers": [
        {"name": "corp", "issuer": ISSUER, "local_jwks": {"keys": [jwk(SIGNER, "k1", "ES256")]}, "dpop": "allowed"},
        {"name": "strict", "issuer": STRICT_ISSUER, "local_jwks": {"keys": [jwk(SIGNER, "k1", "ES256")]},
         "dpop": {"mode": "required", "max_age_seconds": 30, "algorithms": ["ES256", "EdDSA"]}},
        {"name": "plain", "issuer": PLAIN_ISSUER, "local_jwks": {"keys": [jwk(SIGNER, "k1", "ES256")]}},
    ]},
    "token_endpoint": {"path": "/auth/token", "issuer": ENDPOINT_ISSUER, "lifetime_seconds": 600,
                       "signing_key": pkcs8(p256_key()), "dpop": "allowed"},
    "cache": {"max_entries": 1024, "ttl_seconds": 300},
    "clock_skew_seconds": 5,
}


@pytest.fixture(scope="module")
def h():
    with EnvoyHarness(CONFIG, concurrency=2) as envoy:
        yield envoy


def upstream(r: Response) -> Dict[str, str]:
    assert r.status == 200, (r.status, r.headers.get("www-authenticate"), r.body)
    return EnvoyHarness.upstream_headers(r.body)


def connections_per_worker(h: EnvoyHarness) -> Dict[str, int]:
    """Downstream connections each Envoy worker accepted so far (the listener's)."""
    out: Dict[str, int] = {}
    for name, n in h.stats(filter=r"\.worker_\d+\.downstream_cx_total$").items():
        found = re.search(r"\.(worker_\d+)\.downstream_cx_total$", name)
        if found and name.startswith("listener.") and not name.startswith("listener.admin"):
            out[found.group(1)] = out.get(found.group(1), 0) + n
    return out


def refused_proof(r: Response, description: bytes) -> None:
    """RFC 9449 7.1: 401 with a DPoP challenge, `invalid_dpop_proof` and the algorithms."""
    assert r.status == 401, (r.status, r.body)
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("DPoP ") and 'error="invalid_dpop_proof"' in challenge, challenge
    assert 'algs="ES256 RS256 PS256 EdDSA"' in challenge, challenge
    assert description in r.body, r.body


# --------------------------------------------------------------------------
# Accepted


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_a_bound_token_with_a_proof_of_its_key(h, alg):
    key = KEYS[alg]
    bound = token(key=key)
    # Twice: the second time the token is remembered, and its new proof is checked all the same.
    for _ in range(2):
        seen = upstream(h.request("GET", "/x", dpop_headers(bound, key)))
        assert seen["x-auth-principal"] == "alice"
        # Neither the token nor its proof goes upstream.
        assert "authorization" not in seen and "dpop" not in seen
    # A remembered token without this request's proof is refused.
    r = h.request("GET", "/x", {"host": HOST, "authorization": f"DPoP {bound}"})
    refused_proof(r, b"exactly one DPoP proof")


def test_a_request_without_credentials_is_offered_dpop_with_its_algorithms(h):
    """RFC 9449 7.1: a protected resource that takes DPoP says so, with the algorithms its
    providers take (corp's four and strict's two, once each; the token endpoint's are for
    token requests), next to the other schemes."""
    r = h.request("GET", "/x", {"host": HOST})
    assert r.status == 401, (r.status, r.body)
    challenges = r.headers.get_all("www-authenticate")
    assert 'DPoP realm="api", algs="ES256 RS256 PS256 EdDSA"' in challenges, challenges
    assert 'Bearer realm="api"' in challenges, challenges


def test_over_http2_and_with_a_body(h):
    key = KEYS["ES256"]
    bound = token(key=key)
    for protocol in ["h1", "h1-chunked", "h2"]:
        headers = dpop_headers(bound, key, "POST", "/orders")
        del headers["host"]  # wire.send names api.test
        body = wire.Body(parts=[b'{"item": 1', b', "count": 2}'])
        r = wire.send(h.listener_port, "POST", "/orders", list(headers.items()), body, protocol=protocol)
        assert r.status == 200, (protocol, r.status, r.body)
        echoed = EnvoyHarness.upstream_request(r.body)
        assert echoed["headers"]["x-auth-principal"] == "alice", protocol
        # The same proof again, over HTTP/2 too: replayed.
        again = wire.send(h.listener_port, "POST", "/orders", list(headers.items()), body, protocol=protocol)
        refused_proof(again, b"replayed")


def test_a_held_request_spends_its_proof_once(envoy_factory):
    """A request held for its provider's first JWKS fetch (and the revocation list's)
    is decided again when they arrive: its proof is checked, and its jti spent, once."""
    key = KEYS["ES256"]
    with JwksServer() as keys:
        # The keys first, the list later: a request waits for one, then the other.
        keys.set_jwks({"keys": [jwk(SIGNER, "k1", "ES256")]}, delay=1.5)
        keys.set_reply("/revoked.json", body={"jti": []}, delay=3.0)
        config = {
            "jwt": {"jwks_wait_ms": 6000, "providers": [
                {"name": "remote", "issuer": ISSUER, "dpop": "required",
                 "remote_jwks": {"cluster": "jwks", "authority": "jwks.test", "path": "/jwks.json",
                                 "timeout_ms": 5000}}]},
            "revocation": {"remote": {"cluster": "jwks", "authority": "jwks.test", "path": "/revoked.json",
                                      "timeout_ms": 5000}, "wait_ms": 6000},
        }
        h = envoy_factory(config, jwks_port=keys.port, fresh=True)
        assert keys.wait_for_hits("/jwks.json", 1, timeout=5)
        bound = token(key=key)
        body = wire.Body(parts=[b'{"item": 1}'])
        for protocol in ["h1", "h2"]:
            headers = dpop_headers(bound, key, "POST", "/orders")
            del headers["host"]
            r = wire.send(h.listener_port, "POST", "/orders", list(headers.items()), body, protocol=protocol)
            assert r.status == 200, (protocol, r.status, r.body)
            assert EnvoyHarness.upstream_request(r.body)["headers"]["x-auth-principal"] == "alice"
        assert keys.hits("/jwks.json") == 1


# --------------------------------------------------------------------------
# Refused proofs (RFC 9449 4.3)


def test_each_check_of_the_proof(h):
    key = KEYS["ES256"]
    bound = token(key=key)
    t = now()

    def send(dpop: str, path: str = "/x", method: str = "GET", host: str = HOST) -> Response:
        return h.request(method, path, {"host": host, "authorization": f"DPoP {bound}", "dpop": dpop})

    cases = [
        (proof(key, "POST", BASE + "/x", bound), b"htm"),
        (proof(key, "GET", BASE + "/y", bound), b"htu"),
        (proof(key, "GET", "http://other.test/x", bound), b"htu"),
        (proof(key, "GET", "https://api.test/x", bound), b"htu"),
        (proof(key, "GET", BASE + "/x?q=1", bound), b"htu"),
        (proof(key, "GET", BASE + "/x", bound, iat=t - 60 - 5 - 10), b"iat"),
        (proof(key, "GET", BASE + "/x", bound, iat=t + 5 + 10), b"iat"),
        (proof(key, "GET", BASE + "/x"), b"ath"),
        (proof(key, "GET", BASE + "/x", token(key=key, sub="bob")), b"ath"),
        (proof(key, "GET", BASE + "/x", bound, header={"typ": "JWT"}), b"typ"),
        (proof(key, "GET", BASE + "/x", bound, header={"jwk": private_jwk(key)}), b"private"),
        (proof(KEYS["RS256"], "GET", BASE + "/x", bound), b"cnf.jkt"),
        (proof(b"a-shared-secret-of-32-bytes-long", "GET", BASE + "/x", bound, alg="HS256",
               header={"jwk": {"kty": "oct", "k": b64u(b"a-shared-secret-of-32-bytes-long")}}), b"algorithm"),
        (proof(b"x" * 32, "GET", BASE + "/x", bound, alg="HS256", header={"jwk": public_jwk(key)}), b"algorithm"),
        (pyjwt.encode({"jti": "n", "htm": "GET", "htu": BASE + "/x", "iat": t, "ath": ath(bound)}, None,
                      algorithm="none", headers={"typ": "dpop+jwt", "jwk": public_jwk(key)}), b"algorithm"),
        (proof(key, "GET", BASE + "/x", bound, claims={"jti": ""}), b"jti"),
        ("not-a-jws", b"not a JWS"),
    ]
    for dpop, description in cases:
        refused_proof(send(dpop), description)
    # The right host with another port, or another method on the right URI.
    refused_proof(send(proof(key, "GET", f"http://{HOST}:8080/x", bound)), b"htu")
    refused_proof(send(proof(key, "GET", BASE + "/x", bound), method="DELETE"), b"htm")
    # A signature made by another key than the proof's jwk.
    forged = proof(KEYS["EdDSA"], "GET", BASE + "/x", bound, header={"jwk": public_jwk(key)})
    assert send(forged).status == 401
    # Two proofs.
    two = [("host", HOST), ("authorization", f"DPoP {bound}"),
           ("dpop", proof(key, "GET", BASE + "/x", bound)), ("dpop", proof(key, "GET", BASE + "/x", bound))]
    refused_proof(h.request("GET", "/x", two), b"exactly one")
    # After all that, a good proof passes.
    assert upstream(send(proof(key, "GET", BASE + "/x", bound)))["x-auth-principal"] == "alice"


def test_a_replayed_proof_is_refused_by_every_worker(h):
    key = KEYS["EdDSA"]
    bound = token(key=key)
    headers = dpop_headers(bound, key)
    assert upstream(h.request("GET", "/x", headers))["x-auth-principal"] == "alice"
    # Each on a fresh connection: Envoy's two workers take them in turn.
    before = connections_per_worker(h)
    for _ in range(16):
        refused_proof(h.request("GET", "/x", headers), b"replayed")
    after = connections_per_worker(h)
    assert sum(1 for worker, n in after.items() if n > before.get(worker, 0)) == 2, (before, after)


# --------------------------------------------------------------------------
# Bound and unbound tokens, each scheme


def test_a_bound_token_is_never_a_bearer_token(h):
    key = KEYS["ES256"]
    for issuer in [ISSUER, STRICT_ISSUER, PLAIN_ISSUER]:
        bound = token(issuer, key=key)
        r = h.request("GET", "/x", {"host": HOST, "authorization": f"Bearer {bound}"})
        assert r.status == 401, issuer
        assert r.headers["www-authenticate"].startswith("Bearer") and 'error="invalid_token"' in r.headers[
            "www-authenticate"]
        assert b"DPoP proof is required" in r.body
        # Nor with a proof alongside.
        r = h.request("GET", "/x", {**dpop_headers(bound, key), "authorization": f"Bearer {bound}"})
        assert r.status == 401, issuer
    # A provider without `dpop` takes no DPoP-bound token, even with its proof.
    r = h.request("GET", "/x", dpop_headers(token(PLAIN_ISSUER, key=key), key))
    assert r.status == 401 and b"not configured" in r.body


def test_unbound_tokens_as_the_mode_says(h):
    key = KEYS["ES256"]
    # "allowed": Bearer tokens pass; the DPoP scheme needs a bound token.
    assert upstream(h.request("GET", "/x", {"authorization": f"Bearer {token()}"}))["x-auth-principal"] == "alice"
    r = h.request("GET", "/x", dpop_headers(token(), key))
    assert r.status == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert r.headers["www-authenticate"].startswith("DPoP ")
    # "required": only bound tokens, with their proof; its own algorithms in the challenge.
    r = h.request("GET", "/x", {"authorization": f"Bearer {token(STRICT_ISSUER)}"})
    assert r.status == 401 and b"DPoP-bound token is required" in r.body
    assert 'algs="ES256 EdDSA"' in r.headers["www-authenticate"]
    strict = token(STRICT_ISSUER, key=key)
    assert upstream(h.request("GET", "/x", dpop_headers(strict, key)))["x-auth-principal"] == "alice"
    # Its algorithms: RS256 is not one.
    rsa_bound = token(STRICT_ISSUER, key=KEYS["RS256"])
    r = h.request("GET", "/x", dpop_headers(rsa_bound, KEYS["RS256"]))
    assert r.status == 401 and b"algorithm not allowed" in r.body
    # Its max_age_seconds (30, and 5 of skew).
    r = h.request("GET", "/x", dpop_headers(strict, key, iat=now() - 40))
    assert r.status == 401 and b"iat" in r.body
    # A plain provider's bearer tokens are not affected.
    assert h.request("GET", "/x", {"authorization": f"Bearer {token(PLAIN_ISSUER)}"}).status == 200


# --------------------------------------------------------------------------
# htu behind Envoy: scheme from x-forwarded-proto / :scheme, authority from :authority


def test_the_target_uri_as_the_client_wrote_it(h):
    key = KEYS["ES256"]
    bound = token(key=key)

    def send(path: str, htu: str, host: str = HOST) -> Response:
        return h.request("GET", path, {"host": host, "authorization": f"DPoP {bound}",
                                       "dpop": proof(key, "GET", htu, bound)})

    # Case of scheme and host, the default port, a trailing dot of the host (either side).
    assert send("/x", "HTTP://API.Test:80/x").status == 200
    assert send("/x", "http://api.test./x").status == 200
    assert send("/x", "http://api.test/x", host="api.test.").status == 200
    assert send("/x", "http://api.test/x", host="api.test:80").status == 200
    # Percent-encodings: case and unreserved characters are the same URI ...
    assert send("/files/a%7eb", "http://api.test/files/a~b").status == 200
    assert send("/files/a~b", "http://api.test/files/a%7Eb").status == 200
    # ... an encoded reserved character is not that character (Envoy itself refuses `%2F`).
    assert send("/files/a%3Bv=1", "http://api.test/files/a;v=1").status == 401
    assert send("/files/a%3bv=1", "http://api.test/files/a%3Bv=1").status == 200
    # Dot segments are removed on both sides (RFC 9449 4.3 asks for RFC 3986 6.2.2 normalization):
    # a path Envoy normalized (or not) meets the URI the client signed; `..;x` is no dot segment.
    assert send("/files/./a/../b", "http://api.test/files/b").status == 200
    assert send("/files/b", "http://api.test/files/a/%2E%2E/b").status == 200
    assert send("/files/b", "http://api.test/files/a/../../b").status == 401
    assert send("/files/b", "http://api.test/files/a/..;x/b").status == 401
    # `;` parameters are part of the path.
    assert send("/files/a;v=1", "http://api.test/files/a;v=1").status == 200
    assert send("/files/a;v=1", "http://api.test/files/a").status == 401
    assert send("/files/a", "http://api.test/files/a;v=1").status == 401
    # The query is not: the request's is ignored, a proof's refused.
    assert send("/x?page=2", "http://api.test/x").status == 200
    assert send("/x?page=2", "http://api.test/x?page=2").status == 401
    # Another host that routes here (Host is the client's) does not match.
    assert send("/x", "http://api.test/x", host="other.test").status == 401


def test_the_scheme_is_the_connections(h):
    """Envoy at the edge (use_remote_address: true) sets x-forwarded-proto from the
    connection: a client cannot make a plain-HTTP request look like https."""
    key = KEYS["ES256"]
    bound = token(key=key)
    forged = {"host": HOST, "authorization": f"DPoP {bound}", "x-forwarded-proto": "https",
              "dpop": proof(key, "GET", "https://api.test/x", bound)}
    assert h.request("GET", "/x", forged).status == 401
    honest = {**forged, "dpop": proof(key, "GET", "http://api.test/x", bound)}
    assert h.request("GET", "/x", honest).status == 200


# --------------------------------------------------------------------------
# The token endpoint (RFC 9449 5)


def token_request(h, dpop: Optional[str]) -> Response:
    headers = {"host": HOST, "content-type": "application/json"}
    if dpop is not None:
        headers["dpop"] = dpop
    return h.request("POST", "/auth/token", headers, json.dumps({"apiKey": API_KEY}).encode())


def test_the_token_endpoint_issues_dpop_bound_tokens(h):
    key = KEYS["EdDSA"]
    r = token_request(h, proof(key, "POST", BASE + "/auth/token"))
    assert r.status == 200, r.body
    issued = r.json()
    assert issued["token_type"] == "DPoP"
    claims = pyjwt.decode(issued["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": thumbprint(key)}
    access = issued["access_token"]
    seen = upstream(h.request("GET", "/orders", dpop_headers(access, key, path="/orders")))
    assert seen["x-auth-principal"] == "reports"
    # As Bearer, or with another key's proof: refused.
    assert h.request("GET", "/orders", {"authorization": f"Bearer {access}"}).status == 401
    refused_proof(h.request("GET", "/orders", dpop_headers(access, KEYS["ES256"], path="/orders")), b"cnf.jkt")
    # Without a proof: a Bearer token, as before.
    r = token_request(h, None)
    assert r.status == 200 and r.json()["token_type"] == "Bearer"
    assert "cnf" not in pyjwt.decode(r.json()["access_token"], options={"verify_signature": False})


def test_the_token_endpoint_refuses_a_bad_proof(h):
    key = KEYS["ES256"]
    good = proof(key, "POST", BASE + "/auth/token")
    assert token_request(h, good).status == 200
    for bad, description in [
        (good, b"replayed"),
        (proof(key, "GET", BASE + "/auth/token"), b"htm"),
        (proof(key, "POST", BASE + "/auth/other"), b"htu"),
        (proof(key, "POST", BASE + "/auth/token", iat=now() - 120), b"iat"),
        (proof(key, "POST", BASE + "/auth/token", header={"jwk": private_jwk(key)}), b"private"),
    ]:
        r = token_request(h, bad)
        assert r.status == 400, (description, r.status, r.body)
        assert r.json()["error"] == "invalid_dpop_proof" and description in r.body


def test_dpop_required_at_the_token_endpoint():
    config = json.loads(json.dumps(CONFIG))
    config["token_endpoint"]["dpop"] = {"mode": "required", "algorithms": ["ES256"]}
    with EnvoyHarness(config) as envoy:
        r = token_request(envoy, None)
        assert r.status == 400 and r.json()["error"] == "invalid_dpop_proof"
        r = token_request(envoy, proof(KEYS["EdDSA"], "POST", BASE + "/auth/token"))
        assert r.status == 400 and b"algorithm" in r.body
        r = token_request(envoy, proof(KEYS["ES256"], "POST", BASE + "/auth/token"))
        assert r.status == 200 and r.json()["token_type"] == "DPoP"
        access = r.json()["access_token"]
        assert envoy.request("GET", "/x", dpop_headers(access, KEYS["ES256"])).status == 200


def test_a_proof_iat_is_a_numeric_date(h):
    """RFC 7519's NumericDate may be fractional (as PyJWT writes `time.time()`); a string is none."""
    key = KEYS["ES256"]
    bound = token(key=key)
    assert h.request("GET", "/x", dpop_headers(bound, key, iat=now() + 0.5)).status == 200
    refused_proof(h.request("GET", "/x", dpop_headers(bound, key, claims={"iat": str(now())})), b"iat")


def test_the_proof_key_thumbprint_is_rfc_7638s(h):
    """The token's cnf.jkt is the thumbprint of the members its key type requires: a
    jwk carrying others (kid, use, a stray member of another key type) is the same key."""
    key = KEYS["ES256"]
    bound = token(key=key)
    jwk_more = {**public_jwk(key), "kid": "k", "use": "sig", "n": "AQAB"}
    assert h.request("GET", "/x", dpop_headers(bound, key, header={"jwk": jwk_more})).status == 200
