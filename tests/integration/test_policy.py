"""Who may do what (issue 9), in a real Envoy: route rules (path, method, host,
Envoy route name), required kinds, scopes, per-principal privileges, trusted
networks, revocation (local and fetched), and rules that cannot be escaped.

The test Envoy has two named routes (`admin-route` for /admin-area, `api-route`
for the rest), and, where networks are tested, `use_remote_address` with
`xff_num_trusted_hops: 1`, so that Envoy (not the filter) takes the client
address from X-Forwarded-For and the tests can come from other addresses.
Tokens are minted with PyJWT.
"""
from __future__ import annotations

import time
import uuid

import jwt as pyjwt
import pytest

from harness import EnvoyHarness, JwksServer
from tokens import b64u, basic_header, now, sha256_hash

ISS = "https://id.policy.example"
SECRET = b"policy-test-hmac-secret-32-bytes!!"
PW = "pw-0123456789"

ROUTES = {"name": "local_route", "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [
    {"name": "admin-route", "match": {"prefix": "/admin-area"}, "route": {"cluster": "echo", "timeout": "10s"}},
    {"name": "api-route", "match": {"prefix": "/"}, "route": {"cluster": "echo", "timeout": "10s"}},
]}]}
BEHIND_ONE_PROXY = {"route_config": ROUTES, "use_remote_address": True, "xff_num_trusted_hops": 1}


def provider(**over):
    p = {"name": "corp", "issuer": ISS, "local_jwks": {"keys": [{"kty": "oct", "kid": "k", "alg": "HS256", "k": b64u(SECRET)}]}}
    p.update(over)
    return p


def user(name, **privileges):
    return {"name": name, "password_hash": sha256_hash(PW), **privileges}


CONFIG = {
    "basic": {"users": [
        # CData's four privileges are GET, POST, PUT+PATCH+MERGE and DELETE; this user has GET and DELETE.
        user("reader", methods=["GET", "DELETE"], scopes=["orders:read"]),
        user("writer", methods=["GET", "POST", "PUT", "PATCH", "MERGE"], scopes=["orders:read", "orders:write"]),
        user("office", trusted_networks=["192.0.2.0/24"]),
        user("root"),
    ]},
    "api_keys": {"clients": [{"id": "reports", "key_hash": sha256_hash("k-reports"), "paths": ["/reports"]}]},
    "jwt": {"providers": [provider(), {**provider(name="partners", issuer="https://partners.example",
                                                 methods=["GET"])}]},
    "rules": [
        {"match": {"path_prefix": "/public"}, "require": "none"},
        {"match": {"path_prefix": "/maybe"}, "require": "optional"},
        {"match": {"route": "admin-route"}, "require": ["basic"], "principals": ["basic:root"]},
        {"match": {"path_prefix": "/orders", "methods": ["POST"]}, "scopes": ["orders:write"]},
        {"match": {"path_prefix": "/orders"}, "scopes": ["orders:read"]},
        {"match": {"path_prefix": "/corp-only"}, "require": ["jwt:corp"]},
        {"match": {"host": "*.keys.example"}, "require": ["api-key"]},
    ],
}


def token(iss=ISS, **claims):
    t = now()
    body = {"iss": iss, "sub": "u-1", "iat": t, "exp": t + 300}
    body.update(claims)
    return "Bearer " + pyjwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256",
                                    headers={"kid": "k"})


def auth(name):
    return {"authorization": basic_header(name, PW)}


def echo(r):
    assert r.status == 200, (r.status, r.headers, r.body[:300])
    return EnvoyHarness.upstream_request(r)


def forbidden(r, message):
    assert r.status == 403, (r.status, r.body)
    assert r.json() == {"error": "forbidden", "message": message}, r.json()


@pytest.fixture(scope="module")
def envoy(envoy_factory):
    return envoy_factory(CONFIG, hcm_overrides={"route_config": ROUTES})


# --------------------------------------------------------------------------
# Rules and required kinds


def test_none_and_optional_routes(envoy):
    seen = echo(envoy.request("GET", "/public/docs", {"x-auth-principal": "root"}))
    assert "x-auth-principal" not in seen["headers"]
    seen = echo(envoy.request("GET", "/maybe/x"))
    assert "x-auth-principal" not in seen["headers"]
    assert echo(envoy.request("GET", "/maybe/x", auth("reader")))["headers"]["x-auth-principal"] == "reader"
    r = envoy.request("GET", "/maybe/x", {"authorization": basic_header("reader", "wrong")})
    assert r.status == 401, "a credential on an optional route must verify"
    assert envoy.request("GET", "/anything").status == 401


def test_the_envoy_route_name_selects_a_rule(envoy):
    # /admin-area is matched by Envoy's route "admin-route"; the rule names it.
    assert echo(envoy.request("GET", "/admin-area/x", auth("root")))["headers"]["x-auth-principal"] == "root"
    forbidden(envoy.request("GET", "/admin-area/x", auth("reader")), "principal not allowed")
    r = envoy.request("GET", "/admin-area/x", {"authorization": token()})
    assert r.status == 401 and r.json()["error"] == "unauthorized", (r.status, r.body)
    assert r.headers.get_all("www-authenticate") == ['Basic realm="api", charset="UTF-8"']
    # Other paths are on the other route, not under that rule.
    assert echo(envoy.request("GET", "/admin", {"authorization": token()}))


def test_a_route_for_one_provider(envoy):
    assert echo(envoy.request("GET", "/corp-only", {"authorization": token()}))
    r = envoy.request("GET", "/corp-only", {"authorization": token(iss="https://partners.example")})
    assert r.status == 401 and r.headers.get_all("www-authenticate") == ['Bearer realm="api"']
    assert envoy.request("GET", "/corp-only", auth("root")).status == 401


def test_a_host_rule(envoy):
    key = {"x-api-key": "k-reports"}
    assert echo(envoy.request("GET", "/reports/q1", {**key, "host": "eu.keys.example"}))
    r = envoy.request("GET", "/reports/q1", {**auth("root"), "host": "eu.keys.example:8443"})
    assert r.status == 401 and r.json()["message"] == "this route does not accept this kind of credential"
    assert echo(envoy.request("GET", "/reports/q1", {**auth("root"), "host": "keys.example"}))


# --------------------------------------------------------------------------
# Scopes and privileges


def test_scopes_from_scope_and_scp(envoy):
    assert echo(envoy.request("GET", "/orders", {"authorization": token(scope="orders:read other")}))
    assert echo(envoy.request("GET", "/orders", {"authorization": token(scp=["orders:read"])}))
    assert echo(envoy.request("GET", "/orders", {"authorization": token(scp="orders:read")}))
    r = envoy.request("POST", "/orders", {"authorization": token(scope="orders:read")})
    assert r.status == 403 and r.json()["error"] == "insufficient_scope", (r.status, r.body)
    assert r.headers["www-authenticate"] == ('Bearer realm="api", error="insufficient_scope", '
                                             'error_description="insufficient scope", scope="orders:write"')
    assert echo(envoy.request("POST", "/orders", {"authorization": token(scope="orders:write")}))


def test_users_scopes_and_cdata_method_privileges(envoy):
    assert echo(envoy.request("GET", "/orders/1", auth("reader")))
    assert echo(envoy.request("DELETE", "/other", auth("reader")))
    for method in ("POST", "PUT", "PATCH", "MERGE"):
        forbidden(envoy.request(method, "/other", auth("reader")), "method not allowed")
    r = envoy.request("POST", "/orders", auth("writer"))
    assert echo(r)["headers"]["x-auth-principal"] == "writer"
    forbidden(envoy.request("DELETE", "/other", auth("writer")), "method not allowed")
    r = envoy.request("GET", "/orders", auth("root"))
    assert r.status == 403 and r.json()["error"] == "insufficient_scope" and "www-authenticate" not in r.headers


def test_client_paths_and_provider_methods(envoy):
    key = {"x-api-key": "k-reports"}
    assert echo(envoy.request("GET", "/reports/2026", key))
    for outside in ("/reportsX", "/other", "/reports/../other"):
        forbidden(envoy.request("GET", outside, key), "path not allowed")
    partner = {"authorization": token(iss="https://partners.example")}
    assert echo(envoy.request("GET", "/x", partner))
    forbidden(envoy.request("PUT", "/x", partner), "method not allowed")


# --------------------------------------------------------------------------
# Rules cannot be escaped


@pytest.mark.parametrize("path", ["/public/../admin-area", "//orders", "/%6frders", "/public/%2e%2e/orders",
                                  "/PUBLIC/", "/publicX", "/public%2F..%2Forders"])
def test_protected_routes_cannot_be_reached_without_credentials(envoy_factory, path):
    lax = envoy_factory(CONFIG, hcm_overrides={"route_config": ROUTES, "normalize_path": False,
                                               "merge_slashes": False,
                                               "path_with_escaped_slashes_action": "KEEP_UNCHANGED"})
    r = lax.request("GET", path)
    assert r.status == 401, (path, r.status, r.body[:200])


# --------------------------------------------------------------------------
# Trusted networks (Envoy takes the client address from X-Forwarded-For, one trusted hop)


@pytest.fixture(scope="module")
def networks(envoy_factory):
    config = dict(CONFIG, trusted_networks=["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"])
    return envoy_factory(config, hcm_overrides=BEHIND_ONE_PROXY)


def from_(address):
    return {"x-forwarded-for": address}


def test_outside_the_trusted_networks_nothing_is_checked(networks):
    r = networks.request("GET", "/x", {**from_("203.0.113.5"), **auth("root")})
    forbidden(r, "network not trusted")
    assert echo(networks.request("GET", "/x", {**from_("198.51.100.7"), **auth("root")}))
    assert echo(networks.request("GET", "/x", {**from_("2001:db8::7"), **auth("root")}))
    # require "none" routes are open to every network.
    assert echo(networks.request("GET", "/public/x", from_("203.0.113.5")))


def test_a_principal_of_its_own_networks(networks):
    assert echo(networks.request("GET", "/x", {**from_("192.0.2.10"), **auth("office")}))
    forbidden(networks.request("GET", "/x", {**from_("198.51.100.7"), **auth("office")}), "network not trusted")


def test_the_filter_never_reads_x_forwarded_for_itself(envoy_factory):
    """With use_remote_address and no trusted hop (the bundled envoy.yaml), the client
    is the connection's peer, 127.0.0.1, whatever X-Forwarded-For says."""
    config = dict(CONFIG, trusted_networks=["192.0.2.0/24"])
    h = envoy_factory(config, hcm_overrides={"route_config": ROUTES, "use_remote_address": True})
    forbidden(h.request("GET", "/x", {**from_("192.0.2.1"), **auth("root")}), "network not trusted")
    h = envoy_factory(dict(CONFIG, trusted_networks=["127.0.0.1"]), hcm_overrides={"use_remote_address": True})
    assert echo(h.request("GET", "/x", {**from_("192.0.2.1"), **auth("root")}))


# --------------------------------------------------------------------------
# Revocation


def test_local_revocation(envoy_factory):
    t = now()
    config = dict(CONFIG, revocation={"jti": ["leaked-1"], "not_before": {"jwt:corp:u-old": t - 100}})
    h = envoy_factory(config)
    r = h.request("GET", "/x", {"authorization": token(jti="leaked-1")})
    assert r.status == 401 and r.json() == {"error": "invalid_token", "message": "token revoked"}
    assert h.request("GET", "/x", {"authorization": token(sub="u-old", iat=t - 200)}).status == 401
    assert echo(h.request("GET", "/x", {"authorization": token(sub="u-old", iat=t - 50)}))
    # partners' u-old is another principal.
    assert echo(h.request("GET", "/x", {"authorization": token(iss="https://partners.example", sub="u-old", iat=t - 200)}))
    assert h.wasm_stats().get("wasm_authn.denied.token_revoked") == 2


def test_a_fetched_revocation_beats_the_cache_on_every_worker():
    with JwksServer() as srv:
        srv.set_reply("/revoked.json", body={"jti": []})
        config = dict(CONFIG, revocation={"remote": {"cluster": "jwks", "authority": "rev.test",
                                                     "path": "/revoked.json", "refresh_seconds": 1}})
        with EnvoyHarness(config, concurrency=4, jwks_port=srv.port) as h:
            tokens = [token(jti=f"t-{i}-{uuid.uuid4().hex}") for i in range(3)]
            assert srv.wait_for_hits("/revoked.json", 1)
            time.sleep(0.3)
            # Verified, and remembered on whichever workers served them.
            for _ in range(4):
                for tk in tokens:
                    assert echo(h.request("GET", "/x", {"authorization": tk}))
            revoked = tokens[0].split(" ")[1]
            jti = pyjwt.decode(revoked, options={"verify_signature": False})["jti"]
            srv.set_reply("/revoked.json", body={"jti": [jti], "not_before": {}})
            hits = srv.hits("/revoked.json")
            assert srv.wait_for_hits("/revoked.json", hits + 1, timeout=5)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and h.wasm_stats().get("wasm_authn.revocation_fetch_success", 0) < hits + 1:
                time.sleep(0.05)
            # From the first request after that refresh, on every worker: 12 requests, new connections.
            for _ in range(12):
                r = h.request("GET", "/x", {"authorization": tokens[0]})
                assert r.status == 401 and r.json()["message"] == "token revoked", (r.status, r.body)
            for tk in tokens[1:]:
                assert echo(h.request("GET", "/x", {"authorization": tk}))
            # One fetch per refresh for the whole Envoy, not one per worker.
            stats = h.wasm_stats()
            assert stats.get("wasm_authn.revocation_fetch_success", 0) == srv.hits("/revoked.json")


def test_a_failed_revocation_fetch_keeps_the_last_good_list():
    t = now()
    with JwksServer() as srv:
        srv.set_reply("/revoked.json", body={"jti": ["gone"], "not_before": {"jwt:corp:old": t}})
        config = dict(CONFIG, revocation={"remote": {"cluster": "jwks", "authority": "rev.test",
                                                     "path": "/revoked.json", "refresh_seconds": 1}})
        with EnvoyHarness(config, concurrency=2, jwks_port=srv.port) as h:
            assert srv.wait_for_hits("/revoked.json", 1)
            time.sleep(0.3)
            assert h.request("GET", "/x", {"authorization": token(jti="gone")}).status == 401
            old = token(sub="old", iat=t - 10)
            assert h.request("GET", "/x", {"authorization": old}).status == 401
            assert echo(h.request("GET", "/x", {"authorization": token(iss="https://partners.example", sub="old",
                                                                       iat=t - 10)}))
            # A list that names a principal without its kind is no list: the last good one stays.
            srv.set_reply("/revoked.json", body={"jti": [], "not_before": {"old": t}})
            hits = srv.hits("/revoked.json")
            assert srv.wait_for_hits("/revoked.json", hits + 2, timeout=6)
            assert '\"old\" is not a qualified principal' in h.log_text() or '"old" is not a qualified principal' in h.log_text()
            assert h.request("GET", "/x", {"authorization": old}).status == 401
            srv.set_reply("/revoked.json", status=500, body="down")
            hits = srv.hits("/revoked.json")
            assert srv.wait_for_hits("/revoked.json", hits + 2, timeout=6)
            assert h.request("GET", "/x", {"authorization": token(jti="gone")}).status == 401
            assert h.wasm_stats().get("wasm_authn.revocation_fetch_failed", 0) >= 1
            assert "revocation list fetch failed" in h.log_text()
