"""API clients fetched through an Envoy cluster (`api_keys.remote`, issue 18.3), in a
real Envoy against a client store the test controls: a key added or removed at the
store applies within `refresh_seconds` with no configuration push, on every worker;
before the first fetch a key that is not configured gets 503 (never 401, never a
pass); a bad document keeps the last good clients; fetched clients work as Basic
`id:key` and at the token endpoint, with their own privileges.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import EnvoyHarness, JwksServer

PATH = "/clients.json"
LOCAL_KEY = "local-" + secrets.token_urlsafe(16)


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def document(**clients) -> dict:
    """{"clients": [...]} with one entry per id=key (a dict value: the entry's other fields)."""
    entries = []
    for client_id, value in clients.items():
        key, extra = (value, {}) if isinstance(value, str) else (value.pop("key"), value)
        entries.append({"id": client_id.replace("_", "-"), "key_hash": digest(key), **extra})
    return {"clients": entries}


def plugin_config(**remote) -> dict:
    fetch = {"cluster": "jwks", "authority": "clients.test", "path": PATH, "refresh_seconds": 1, "timeout_ms": 1000}
    fetch.update(remote)
    return {
        "realm": "api",
        "api_keys": {"headers": ["x-api-key"], "remote": fetch,
                     "clients": [{"id": "local", "key_hash": digest(LOCAL_KEY)}]},
        "cache": {"max_entries": 0},
    }


def with_key(h: EnvoyHarness, key: str, path: str = "/x", method: str = "GET"):
    return h.request(method, path, {"x-api-key": key})


def eventually(check, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.fixture()
def store():
    with JwksServer() as srv:
        yield srv


def test_keys_added_and_removed_at_the_store_apply_without_a_push(store, envoy_factory):
    alice, bob = "alice-" + secrets.token_urlsafe(16), "bob-" + secrets.token_urlsafe(16)
    store.set_reply(PATH, 200, document(alice=alice))
    h = envoy_factory(plugin_config(), jwks_port=store.port, concurrency=2, fresh=True)
    assert eventually(lambda: with_key(h, alice).status == 200)
    r = with_key(h, alice)
    assert EnvoyHarness.upstream_request(r)["headers"]["x-auth-principal"] == "alice"
    assert with_key(h, bob).status == 401
    assert with_key(h, LOCAL_KEY).status == 200, "configured clients answer as before"
    # bob added, alice removed at the store: every worker follows within a refresh.
    store.set_reply(PATH, 200, document(bob=bob))
    assert eventually(lambda: all(with_key(h, bob).status == 200 for _ in range(8)))
    assert eventually(lambda: all(with_key(h, alice).status == 401 for _ in range(8)))
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: with_key(h, alice).status, range(32)))
    assert statuses == [401] * 32, "removed on every worker"
    stats = h.wasm_stats()
    assert stats.get("wasm_authn.api_clients_fetch_success", 0) >= 2, stats


def test_a_request_before_the_first_fetch_waits_for_it(store, envoy_factory):
    erin = "erin-" + secrets.token_urlsafe(16)
    store.set_reply(PATH, 200, document(erin=erin), delay=0.5)
    h = envoy_factory(plugin_config(), jwks_port=store.port, fresh=True, concurrency=2,
                      extra_args=["--component-log-level", "wasm:debug"])
    basic = {"authorization": "Basic " + base64.b64encode(f"erin:{erin}".encode()).decode()}
    asks = [lambda: with_key(h, erin), lambda: with_key(h, erin), lambda: with_key(h, "nobody-" + erin),
            lambda: with_key(h, erin), lambda: h.request("GET", "/x", basic)]
    with ThreadPoolExecutor(len(asks)) as pool:  # held together, on the first fetch
        statuses = list(pool.map(lambda ask: ask().status, asks))
    assert statuses == [200, 200, 401, 200, 200], statuses
    assert "held for the client store" in h.log_text()


def test_before_the_first_fetch_an_unknown_key_is_503_never_a_pass(store, envoy_factory):
    store.refuse()  # the store is down from the start
    h = envoy_factory(plugin_config(), jwks_port=store.port, fresh=True)
    stranger = "never-" + secrets.token_urlsafe(16)
    # Held for the first fetch (timeout_ms and a second more), then 503.
    r = with_key(h, stranger)
    assert r.status == 503 and r.headers.get("retry-after"), (r.status, r.body)
    assert with_key(h, LOCAL_KEY).status == 200, "configured clients do not wait for the store"
    assert h.wasm_stats().get("wasm_authn.denied.api_clients_unavailable", 0) >= 1
    assert eventually(lambda: "API clients fetch failed" in h.log_text())
    # The store comes up: the same key is now known to be nobody's (401), a listed one passes.
    carol = "carol-" + secrets.token_urlsafe(16)
    store.set_reply(PATH, 200, document(carol=carol))
    store.accept()
    assert eventually(lambda: with_key(h, carol).status == 200, 8)
    assert with_key(h, stranger).status == 401


def test_a_bad_document_keeps_the_last_good_clients(store, envoy_factory):
    dave = "dave-" + secrets.token_urlsafe(16)
    store.set_reply(PATH, 200, document(dave=dave))
    h = envoy_factory(plugin_config(), jwks_port=store.port, fresh=True)
    assert eventually(lambda: with_key(h, dave).status == 200)
    failed_before = h.wasm_stats().get("wasm_authn.api_clients_fetch_failed", 0)
    for bad in ({"clients": [{"id": "local", "key_hash": digest("x")}]},  # a configured client's id
                {"clients": [{"id": "eve", "key_hash": "plain-text"}]},
                {"clients": [{"id": "eve", "key_hash": digest(LOCAL_KEY)}]},  # a configured client's key
                b"not json", {"users": []}):
        store.set_reply(PATH, 200, bad)
        assert eventually(lambda: h.wasm_stats().get("wasm_authn.api_clients_fetch_failed", 0) > failed_before)
        failed_before = h.wasm_stats().get("wasm_authn.api_clients_fetch_failed", 0)
        assert with_key(h, dave).status == 200, bad
    assert "not an API client document" in h.log_text()
    assert 'clients "local" and "eve" hold the same key' in h.log_text()
    assert EnvoyHarness.upstream_request(with_key(h, LOCAL_KEY))["headers"]["x-auth-principal"] == "local"
    store.set_reply(PATH, 500, b"oops")
    assert eventually(lambda: h.wasm_stats().get("wasm_authn.api_clients_fetch_failed", 0) > failed_before)
    assert with_key(h, dave).status == 200


def test_fetched_clients_as_basic_at_the_token_endpoint_and_with_their_privileges(store, envoy_factory):
    frank = "frank-" + secrets.token_urlsafe(16)
    grace = "grace-" + secrets.token_urlsafe(16)
    store.set_reply(PATH, 200, document(frank={"key": frank, "methods": ["GET"], "scopes": ["orders:read"]},
                                        grace={"key": grace, "disabled": True}))
    config = plugin_config()
    with open("tests/keys/ec_p256_private.pem") as f:
        config["token_endpoint"] = {"path": "/token", "issuer": "https://auth.test", "signing_key": f.read()}
    h = envoy_factory(config, jwks_port=store.port, fresh=True)
    assert eventually(lambda: with_key(h, frank).status == 200)
    assert with_key(h, frank, method="POST").status == 403, "its own methods"
    assert with_key(h, grace).status == 401, "disabled at the store"

    basic = "Basic " + base64.b64encode(f"frank:{frank}".encode()).decode()
    assert h.request("GET", "/x", {"authorization": basic}).status == 200
    r = h.request("POST", "/token", {"content-type": "application/x-www-form-urlencoded", "authorization": basic},
                  body=b"grant_type=client_credentials")
    assert r.status == 200, (r.status, r.body)
    token = r.json()["access_token"]
    assert h.request("GET", "/x", {"authorization": f"Bearer {token}"}).status == 200
    # frank removed at the store: its issued token stops too (a client removed since is refused).
    store.set_reply(PATH, 200, document(grace={"key": grace, "disabled": True}))
    assert eventually(lambda: h.request("GET", "/x", {"authorization": f"Bearer {token}"}).status == 401)
    assert h.request("GET", "/x", {"authorization": basic}).status == 401


def test_moving_a_configured_client_to_the_store(store, envoy_factory):
    # docs/operating.md's order: the store's document first (its fetches fail, naming
    # the configured id, and the configured entry keeps answering), then the push
    # without the configured entry; the client then answers from the store.
    other = "other-" + secrets.token_urlsafe(16)
    store.set_reply(PATH, 200, document(other=other))
    h = envoy_factory(plugin_config(), jwks_port=store.port, dynamic_listeners=True, fresh=True)
    assert eventually(lambda: with_key(h, other).status == 200)
    failed_before = h.wasm_stats().get("wasm_authn.api_clients_fetch_failed", 0)
    store.set_reply(PATH, 200, document(other=other, local=LOCAL_KEY))
    assert eventually(lambda: h.wasm_stats().get("wasm_authn.api_clients_fetch_failed", 0) > failed_before)
    assert '"local" is a configured client' in h.log_text()
    assert with_key(h, LOCAL_KEY).status == 200, "the configured entry answers meanwhile"
    moved = plugin_config()
    moved["api_keys"]["clients"] = []
    h.reload_plugin_config(moved)
    assert eventually(lambda: all(with_key(h, LOCAL_KEY).status == 200 for _ in range(8)), seconds=10)
    r = with_key(h, LOCAL_KEY)
    assert EnvoyHarness.upstream_request(r)["headers"]["x-auth-principal"] == "local"
