"""The token endpoint (issue 11.2) in a real Envoy with four workers: API clients
exchange their key for a JWT that expires, in Synerise's form (`{"apiKey"}`) and
as OAuth 2.0 client credentials (RFC 6749 4.4); the filter signs inside the VM,
serves its public key as a JWKS that PyJWT reads, and accepts its own tokens.
"""
from __future__ import annotations

import base64
import json
import socket
import time
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tokens import b64u, ed25519_key, p256_key, random_secret, rsa_key, sha256_hash

KEYS = {"reports": "rk-0123456789abcdef", "old": "ok-0123456789abcdef", "odd id+x": "odd-0123456789"}
ISSUER = "https://auth.api.example"


def pkcs8(private_key) -> str:
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()


def clients(disabled=("old",)):
    scopes = {"reports": ["orders:read", "orders:write"]}
    return [{"id": name, "key_hash": sha256_hash(key), "scopes": scopes.get(name, []), "disabled": name in disabled}
            for name, key in KEYS.items()]


def config(signing_key, **endpoint):
    return {
        "api_keys": {"clients": clients(), "allow_basic": False},
        "rules": [{"match": {"path_prefix": "/orders", "methods": ["POST"]}, "scopes": ["orders:write"]}],
        "token_endpoint": {"path": "/auth/token", "issuer": ISSUER, "audiences": ["orders-api"],
                           "lifetime_seconds": 600, "signing_key": signing_key, **endpoint},
    }


EC_KEY = p256_key()
CONFIG = config(pkcs8(EC_KEY))


@pytest.fixture(scope="module")
def envoy(envoy_factory):
    return envoy_factory(CONFIG, concurrency=4)


def post_json(envoy, body, headers=None, timeout=10):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return envoy.request("POST", "/auth/token", {"content-type": "application/json", **(headers or {})}, body=raw,
                         timeout=timeout)


def post_form(envoy, fields, headers=None):
    return envoy.request("POST", "/auth/token", {"content-type": "application/x-www-form-urlencoded",
                                                 **(headers or {})}, body=urlencode(fields).encode())


def basic(client_id, secret):
    # RFC 6749 2.3.1: each part form-urlencoded, then Basic.
    from urllib.parse import quote_plus
    return "Basic " + base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()


def issued(r) -> dict:
    assert r.status == 200, (r.status, r.body)
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    return body


def oauth_error(r, status, error):
    assert r.status == status, (r.status, r.body)
    body = r.json()
    assert body["error"] == error, body
    assert "error_description" in body
    for key in KEYS.values():
        assert key.encode() not in r.body
    return r


def verified_by_jwks(envoy, token):
    """PyJWT checks the token with the key the filter serves."""
    r = envoy.request("GET", "/.well-known/jwks.json")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    assert "max-age" in r.headers["cache-control"]
    keys = jwt.PyJWKSet.from_dict(r.json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    return jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience="orders-api", issuer=ISSUER)


def test_synerise_form_issues_a_token_that_pyjwt_verifies_with_the_jwks(envoy):
    body = issued(post_json(envoy, {"apiKey": KEYS["reports"]}))
    assert body["scope"] == "orders:read orders:write"
    claims = verified_by_jwks(envoy, body["access_token"])
    assert claims["sub"] == "reports" and claims["aud"] == "orders-api"
    assert claims["exp"] - claims["iat"] == 600 and abs(claims["iat"] - time.time()) < 5
    assert claims["scope"] == "orders:read orders:write"
    assert len(base64.urlsafe_b64decode(claims["jti"] + "==")) == 16


def test_token_ids_are_random(envoy):
    ids = {jwt.decode(issued(post_json(envoy, {"apiKey": KEYS["reports"]}))["access_token"],
                      options={"verify_signature": False})["jti"] for _ in range(6)}
    assert len(ids) == 6


def test_client_credentials_in_the_body_and_in_basic(envoy):
    grant = {"grant_type": "client_credentials"}
    in_body = issued(post_form(envoy, {**grant, "client_id": "reports", "client_secret": KEYS["reports"]}))
    in_basic = issued(post_form(envoy, {**grant, "scope": "orders:read"},
                                {"authorization": basic("reports", KEYS["reports"])}))
    assert in_basic["scope"] == "orders:read"
    # A client id with a space and a plus, form-encoded in Basic as RFC 6749 asks.
    odd = issued(post_form(envoy, grant, {"authorization": basic("odd id+x", KEYS["odd id+x"])}))
    assert jwt.decode(odd["access_token"], options={"verify_signature": False})["sub"] == "odd id+x"
    assert in_body["access_token"] != in_basic["access_token"]


def test_the_api_key_header_with_no_body(envoy):
    r = envoy.request("POST", "/auth/token", {"x-api-key": KEYS["reports"]})
    assert issued(r)["scope"] == "orders:read orders:write"


def test_an_issued_token_opens_protected_routes_with_its_scopes(envoy):
    full = issued(post_json(envoy, {"apiKey": KEYS["reports"]}))["access_token"]
    narrow = issued(post_form(envoy, {"grant_type": "client_credentials", "client_id": "reports",
                                      "client_secret": KEYS["reports"], "scope": "orders:read"}))["access_token"]
    r = envoy.request("GET", "/orders/1", {"authorization": f"Bearer {full}"})
    assert r.status == 200, r.body
    upstream = envoy.upstream_headers(r)
    assert upstream["x-auth-principal"] == "reports"
    assert upstream["x-auth-method"] == "jwt" and upstream["x-auth-provider"] == "token-endpoint"
    assert envoy.request("POST", "/orders", {"authorization": f"Bearer {full}"}, body=b"{}").status == 200
    r = envoy.request("POST", "/orders", {"authorization": f"Bearer {narrow}"}, body=b"{}")
    assert r.status == 403 and r.json()["error"] == "insufficient_scope", r.body
    # Altered, it is nobody's.
    h, p, s = full.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    claims["sub"] = "old"
    forged = f"{h}.{b64u(json.dumps(claims))}.{s}"
    assert envoy.request("GET", "/orders/1", {"authorization": f"Bearer {forged}"}).status == 401


def test_errors_follow_rfc_6749(envoy):
    for r in (
        post_json(envoy, {"apiKey": "not-a-key"}),
        post_json(envoy, {"apiKey": KEYS["old"]}),  # disabled
        post_form(envoy, {"grant_type": "client_credentials", "client_id": "reports", "client_secret": "wrong"}),
        post_form(envoy, {"grant_type": "client_credentials"}),
    ):
        oauth_error(r, 401, "invalid_client")
        assert r.headers["www-authenticate"] == 'Basic realm="api", charset="UTF-8"'
    oauth_error(post_form(envoy, {"grant_type": "password", "username": "u", "password": "p"}), 400,
                "unsupported_grant_type")
    oauth_error(post_json(envoy, b"{not json"), 400, "invalid_request")
    oauth_error(post_form(envoy, {"client_id": "reports", "client_secret": KEYS["reports"]}), 400, "invalid_request")
    oauth_error(post_form(envoy, {"grant_type": "client_credentials", "client_id": "reports",
                                  "client_secret": KEYS["reports"], "scope": "admin"}), 400, "invalid_scope")
    oauth_error(post_json(envoy, {"apiKey": KEYS["reports"]}, {"x-api-key": KEYS["reports"]}), 400, "invalid_request")
    r = envoy.request("GET", "/auth/token", {"x-api-key": KEYS["reports"]})
    assert r.status == 405 and r.headers["allow"] == "POST"
    r = envoy.request("DELETE", "/.well-known/jwks.json")
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD"
    stats = envoy.wasm_stats()
    for reason in ("token_invalid_client", "token_unsupported_grant_type", "token_invalid_request",
                   "token_invalid_scope", "token_method_not_allowed"):
        assert stats.get(f"wasm_authn.denied.{reason}", 0) >= 1, (reason, stats)
    assert stats.get("wasm_authn.token_issued", 0) >= 1 and stats.get("wasm_authn.jwks_served", 0) >= 1


def test_a_field_given_twice_is_refused(envoy):
    # serde_json keeps the last member: the first apiKey is never checked (issue 17.13).
    good = KEYS["reports"]
    for body in (f'{{"apiKey": "x", "apiKey": "{good}"}}', f'{{"apiKey": "{good}", "apiKey": "x"}}',
                 f'{{"apiKey": "{good}", "api\\u004bey": "{good}"}}', f'{{"apiKey": "{good}", "scope": "", "scope": "admin"}}'):
        r = oauth_error(post_json(envoy, body.encode()), 400, "invalid_request")
        assert "twice" in r.json()["error_description"], (body, r.body)
    for form in (f"grant_type=client_credentials&client_id=reports&client_secret=x&client_secret={good}",
                 f"grant_type=client_credentials&client_id=reports&client_secret={good}&client%5Fsecret=x"):
        r = envoy.request("POST", "/auth/token", {"content-type": "application/x-www-form-urlencoded"},
                          body=form.encode())
        assert "twice" in oauth_error(r, 400, "invalid_request").json()["error_description"], form


def raw_exchange(envoy, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", envoy.listener_port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def test_bodies_over_8192_bytes_are_refused_declared_or_streamed(envoy):
    big = json.dumps({"apiKey": KEYS["reports"], "pad": "x" * 9000}).encode()
    oauth_error(post_json(envoy, big), 413, "invalid_request")
    # Chunked: no length up front; refused once the body passes the limit.
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 1000]), big[i:i + 1000]) for i in range(0, len(big), 1000))
    request = (b"POST /auth/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
               b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    assert raw_exchange(envoy, request).startswith(b"HTTP/1.1 413 "), "chunked"
    # A small chunked body is read to its end and answered.
    small = json.dumps({"apiKey": KEYS["reports"]}).encode()
    request = (b"POST /auth/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
               b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))
    assert raw_exchange(envoy, request).startswith(b"HTTP/1.1 200 ")
    assert envoy.wasm_stats().get("wasm_authn.denied.token_body_too_large", 0) >= 2


def test_the_endpoint_paths_never_reach_the_upstream(envoy):
    for method, path in (("POST", "/auth/token"), ("POST", "/auth//token"), ("GET", "/.well-known/jwks.json"),
                         ("PUT", "/auth/%74oken")):
        r = envoy.request(method, path, {"x-api-key": "nope"}, body=b"")
        assert b'"headers"' not in r.body, (method, path, r.status, r.body)  # the echo upstream's answer
    assert envoy.request("GET", "/auth/token/other", {"x-api-key": KEYS["reports"]}).status == 200


@pytest.mark.parametrize("name, signing_key, alg", [
    ("eddsa", pkcs8(ed25519_key()), "EdDSA"),
    ("rs256", pkcs8(rsa_key()), "RS256"),
    ("hs256", {"kty": "oct", "k": b64u(random_secret(32))}, "HS256"),
])
def test_every_kind_of_signing_key(envoy_factory, name, signing_key, alg):
    h = envoy_factory(config(signing_key), concurrency=1)
    token = issued(post_json(h, {"apiKey": KEYS["reports"]}))["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == alg
    if alg == "HS256":
        secret = base64.urlsafe_b64decode(signing_key["k"] + "==")
        jwt.decode(token, secret, algorithms=["HS256"], audience="orders-api", issuer=ISSUER)
        assert h.request("GET", "/.well-known/jwks.json", {"x-api-key": KEYS["reports"]}).status == 200  # upstream
    else:
        assert verified_by_jwks(h, token)["sub"] == "reports"
    r = h.request("GET", "/orders/1", {"authorization": f"Bearer {token}"})
    assert r.status == 200 and h.upstream_headers(r)["x-auth-principal"] == "reports"


def test_a_disabled_clients_tokens_are_refused_once_the_configuration_changes(envoy_factory):
    h = envoy_factory(CONFIG, concurrency=2, dynamic_listeners=True, fresh=True)
    token = issued(post_json(h, {"apiKey": KEYS["reports"]}))["access_token"]
    for _ in range(3):  # remembered as verified on the workers that saw it
        assert h.request("GET", "/orders/1", {"authorization": f"Bearer {token}"}).status == 200
    disabled = json.loads(json.dumps(CONFIG))
    disabled["api_keys"]["clients"] = clients(disabled=("old", "reports"))
    h.reload_plugin_config(disabled)
    for _ in range(4):
        r = h.request("GET", "/orders/1", {"authorization": f"Bearer {token}"})
        assert r.status == 401, (r.status, r.body)
        assert r.json()["message"] == "token revoked"
    oauth_error(post_json(h, {"apiKey": KEYS["reports"]}), 401, "invalid_client")


def test_bad_endpoint_configurations_are_refused_naming_the_field(cli):
    from harness import cli_check
    secret_pem = pkcs8(p256_key())
    cases = [
        (config(secret_pem.replace("M", "N", 3)), "token_endpoint.signing_key"),
        (config({"kty": "oct", "k": b64u(random_secret(32))}, jwks_path="/keys"), "token_endpoint.jwks_path"),
        (config(secret_pem, path="auth/token"), "token_endpoint.path"),
        (config(secret_pem, lifetime_seconds=0), "token_endpoint.lifetime_seconds"),
        ({**config(secret_pem), "jwt": {"providers": [
            {"name": "idp", "issuer": ISSUER, "local_pem": public_pem_of(p256_key())}]}}, "token_endpoint.issuer"),
        ({**config(secret_pem), "api_keys": {}}, "token_endpoint"),
    ]
    for plugin_config, field in cases:
        code, output = cli_check(plugin_config)
        assert code != 0 and f"{field}:" in output, (field, output)
        assert "PRIVATE KEY" not in output and secret_pem.splitlines()[1][:20] not in output, output


def public_pem_of(private_key) -> str:
    from tokens import public_pem
    return public_pem(private_key).decode()


def test_without_stop_iteration_the_header_form_works_and_a_body_gets_408(envoy_factory):
    """Istio's WasmPlugin cannot set allow_on_headers_stop_iteration: Envoy then never
    hands the body over; the request is answered (408) and the log says why."""
    def without_the_setting(cfg):
        from harness import _wasm_filter
        _wasm_filter(cfg).pop("allow_on_headers_stop_iteration")

    h = envoy_factory(CONFIG, concurrency=1, config_hook=without_the_setting, fresh=True)
    assert issued(h.request("POST", "/auth/token", {"x-api-key": KEYS["reports"]}))
    started = time.monotonic()
    r = post_json(h, {"apiKey": KEYS["reports"]}, timeout=30)
    assert r.status == 408 and r.json()["error"] == "invalid_request", (r.status, r.body)
    assert 9 <= time.monotonic() - started < 15
    assert "allow_on_headers_stop_iteration" in h.log_text()
    assert b'"headers"' not in r.body


# --------------------------------------------------------------------------
# Limits: one client, one budget (issue 17.8)


def limited_config(**limits):
    cfg = json.loads(json.dumps(CONFIG))
    cfg["api_keys"]["clients"] = [dict(c, **limits) if c["id"] == "reports" else c for c in clients()]
    return cfg


def test_a_clients_key_and_its_tokens_share_one_budget(envoy_factory):
    h = envoy_factory(limited_config(requests_per_hour=4), concurrency=4)
    token = issued(post_json(h, {"apiKey": KEYS["reports"]}))["access_token"]  # one of its four (17.9)
    with_key = [h.request("GET", "/orders/1", {"x-api-key": KEYS["reports"]}).status for _ in range(3)]
    assert with_key == [200] * 3, with_key
    with_token = [h.request("GET", "/orders/1", {"authorization": f"Bearer {token}"}).status for _ in range(3)]
    assert with_token == [429] * 3, with_token


def test_issuing_a_token_is_one_of_the_clients_requests(envoy_factory):
    h = envoy_factory(limited_config(requests_per_hour=3), concurrency=4)
    token = issued(post_json(h, {"apiKey": KEYS["reports"]}))["access_token"]
    assert h.request("GET", "/orders/1", {"authorization": f"Bearer {token}"}).status == 200
    assert h.request("GET", "/orders/1", {"x-api-key": KEYS["reports"]}).status == 200
    r = oauth_error(post_json(h, {"apiKey": KEYS["reports"]}), 429, "rate_limited")
    assert int(r.headers["retry-after"]) > 0 and r.headers["ratelimit-policy"] == '"hourly";q=3;w=3600'
    assert h.request("GET", "/orders/1", {"x-api-key": KEYS["reports"]}).status == 429
    assert h.wasm_stats().get("wasm_authn.denied.rate_limited", 0) >= 2


TOKEN_FLOOD = r"""
import http.client, sys, time
port, seconds, per_second, key = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + seconds
counts = {}
while time.monotonic() < deadline:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/auth/token", headers={"x-api-key": key})
        r = conn.getresponse()
        r.read()
        counts[r.status] = counts.get(r.status, 0) + 1
    except OSError:
        pass
    finally:
        conn.close()
    time.sleep(1 / per_second)
print(counts)
"""


def _p50_of_valid_requests(h, headers, n=100, interval=0.02):
    """Median latency of valid requests sent at a fixed rate, each timed from when it was due
    (open loop: a stalled worker shows in every request that arrives while it is stalled)."""
    from concurrent.futures import ThreadPoolExecutor
    start = time.perf_counter()

    def one(i):
        due = start + i * interval
        time.sleep(max(0.0, due - time.perf_counter()))
        r = h.request("GET", "/orders/1", headers[i % len(headers)])
        assert r.status == 200, (r.status, r.body)
        return time.perf_counter() - due

    with ThreadPoolExecutor(max_workers=16) as pool:
        times = sorted(pool.map(one, range(n)))
    return times[len(times) // 2]


def test_a_signing_flood_is_refused_and_valid_traffic_still_passes(envoy_factory):
    """Issue 17.9: one client asks for RS256 tokens as fast as it can (160 a second: more than a
    worker can sign); the signing budget refuses the excess with 503 (counted), and valid
    requests on that worker are all answered 200 meanwhile."""
    import subprocess
    import sys
    cfg = config(pkcs8(rsa_key()))
    cfg["api_keys"]["clients"].append({"id": "flooder", "key_hash": sha256_hash("flooder-key-0123")})
    h = envoy_factory(cfg, concurrency=1, fresh=True)
    valid_token = issued(post_json(h, {"apiKey": KEYS["reports"]}))["access_token"]
    valid = [{"x-api-key": KEYS["reports"]}, {"authorization": f"Bearer {valid_token}"}]
    undisturbed = _p50_of_valid_requests(h, valid)
    flooders = [subprocess.Popen([sys.executable, "-c", TOKEN_FLOOD, str(h.listener_port), "8", "40",
                                  "flooder-key-0123"], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        time.sleep(1)
        flooded = _p50_of_valid_requests(h, valid)
    finally:
        outputs = [f.communicate(timeout=30)[0] for f in flooders]
    # What is asserted is the mechanism (every valid request answered 200 during the flood,
    # the flood refused and counted); the latency is printed, not asserted: speed is the
    # bench's to measure, and a ratio on a shared 2-core CI machine is noise.
    print(f"valid requests' p50: {undisturbed * 1000:.2f} ms alone, {flooded * 1000:.2f} ms under the flood")
    statuses = {}
    for out in outputs:
        for status, count in eval(out.strip()).items():  # noqa: S307 - our own child's dict literal
            statuses[status] = statuses.get(status, 0) + count
    busy = h.wasm_stats().get("wasm_authn.denied.token_signing_busy", 0)
    assert statuses.get(200, 0) > 0 and statuses.get(503, 0) >= busy > 0, (statuses, busy)
