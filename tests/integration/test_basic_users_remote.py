"""Basic users fetched through an Envoy cluster (`basic.remote`, issue 18.3), in a real
Envoy against a user store the test controls, as test_api_clients_remote.py does for
API clients: a user added or removed at the store applies within `refresh_seconds` with
no configuration push, on every worker (remembered verifications forgotten); before the
first fetch a name that is not configured is held for it, then gets 503 (never 401,
never a pass); a bad document keeps the last good users; fetched users come in the
configuration's forms (users[] with their own privileges, htpasswd lines, bcrypt).
Password hashes are made here (hashlib, the bcrypt package), never by the filter.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest

from harness import EnvoyHarness, JwksServer

PATH = "/users.json"
LOCAL_PASSWORD = "local-" + secrets.token_urlsafe(16)


def sha256(password: str) -> str:
    return "sha256:" + hashlib.sha256(password.encode()).hexdigest()


def document(**users) -> dict:
    """{"users": [...]} with one entry per name=password (a dict value: the entry's other fields)."""
    entries = []
    for name, value in users.items():
        password, extra = (value, {}) if isinstance(value, str) else (value.pop("password"), value)
        entries.append({"name": name, "password_hash": sha256(password), **extra})
    return {"users": entries}


def plugin_config(**remote) -> dict:
    fetch = {"cluster": "jwks", "authority": "users.test", "path": PATH, "refresh_seconds": 1, "timeout_ms": 1000}
    fetch.update(remote)
    return {
        "realm": "api",
        "basic": {"remote": fetch, "users": [{"name": "local", "password_hash": sha256(LOCAL_PASSWORD)}]},
    }


def basic(h: EnvoyHarness, user: str, password: str, method: str = "GET"):
    value = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return h.request(method, "/x", {"authorization": value})


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


def test_users_added_and_removed_at_the_store_apply_without_a_push(store, envoy_factory):
    alice, bob = "alice-" + secrets.token_urlsafe(16), "bob-" + secrets.token_urlsafe(16)
    store.set_reply(PATH, 200, document(alice=alice))
    h = envoy_factory(plugin_config(), jwks_port=store.port, concurrency=2, fresh=True)
    assert eventually(lambda: basic(h, "alice", alice).status == 200)
    r = basic(h, "alice", alice)
    assert EnvoyHarness.upstream_request(r)["headers"]["x-auth-principal"] == "alice"
    # bob fails before he is added (a failure each worker may remember), alice is remembered.
    assert all(basic(h, "bob", bob).status == 401 for _ in range(4))
    assert all(basic(h, "alice", alice).status == 200 for _ in range(4))
    assert basic(h, "local", LOCAL_PASSWORD).status == 200, "configured users answer as before"
    # bob added, alice removed at the store: every worker follows within a refresh.
    store.set_reply(PATH, 200, document(bob=bob))
    assert eventually(lambda: all(basic(h, "bob", bob).status == 200 for _ in range(8)))
    assert eventually(lambda: all(basic(h, "alice", alice).status == 401 for _ in range(8)))
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: basic(h, "alice", alice).status, range(32)))
    assert statuses == [401] * 32, "removed on every worker"
    stats = h.wasm_stats()
    assert stats.get("wasm_authn.basic_users_fetch_success", 0) >= 2, stats


def test_a_request_before_the_first_fetch_waits_for_it(store, envoy_factory):
    erin = "erin-" + secrets.token_urlsafe(16)
    store.set_reply(PATH, 200, document(erin=erin), delay=0.5)
    h = envoy_factory(plugin_config(), jwks_port=store.port, fresh=True, concurrency=2,
                      extra_args=["--component-log-level", "wasm:debug"])
    asks = [lambda: basic(h, "erin", erin), lambda: basic(h, "erin", erin), lambda: basic(h, "nobody", erin),
            lambda: basic(h, "erin", "wrong"), lambda: basic(h, "erin", erin)]
    with ThreadPoolExecutor(len(asks)) as pool:  # held together, on the first fetch
        statuses = list(pool.map(lambda ask: ask().status, asks))
    assert statuses == [200, 200, 401, 401, 200], statuses
    assert "held for the user store" in h.log_text()


def test_before_the_first_fetch_an_unknown_name_is_503_never_a_pass(store, envoy_factory):
    store.refuse()  # the store is down from the start
    h = envoy_factory(plugin_config(), jwks_port=store.port, fresh=True)
    carol = "carol-" + secrets.token_urlsafe(16)
    # Held for the first fetch (timeout_ms and a second more), then 503.
    r = basic(h, "carol", carol)
    assert r.status == 503 and r.headers.get("retry-after"), (r.status, r.body)
    assert basic(h, "local", LOCAL_PASSWORD).status == 200, "configured users do not wait for the store"
    assert basic(h, "local", "wrong").status == 401
    assert h.wasm_stats().get("wasm_authn.denied.basic_users_unavailable", 0) >= 1
    assert eventually(lambda: "Basic users fetch failed" in h.log_text())
    # The store comes up: a listed user passes, a name it does not list is nobody's (401).
    store.set_reply(PATH, 200, document(carol=carol))
    store.accept()
    assert eventually(lambda: basic(h, "carol", carol).status == 200, 8)
    assert basic(h, "stranger", carol).status == 401


def test_a_bad_document_keeps_the_last_good_users(store, envoy_factory):
    dave = "dave-" + secrets.token_urlsafe(16)
    store.set_reply(PATH, 200, document(dave=dave))
    h = envoy_factory(plugin_config(), jwks_port=store.port, fresh=True)
    assert eventually(lambda: basic(h, "dave", dave).status == 200)
    failed = lambda: h.wasm_stats().get("wasm_authn.basic_users_fetch_failed", 0)
    failed_before = failed()
    for bad in ({"users": [{"name": "local", "password_hash": sha256("x")}]},  # a configured user's name
                {"users": [{"name": "eve", "password_hash": "plain-text"}]},
                {"htpasswd": "eve"}, b"not json", {"clients": []}):
        store.set_reply(PATH, 200, bad)
        assert eventually(lambda: failed() > failed_before)
        failed_before = failed()
        assert basic(h, "dave", dave).status == 200, bad
    assert "not a user document" in h.log_text()
    store.set_reply(PATH, 500, b"oops")
    assert eventually(lambda: failed() > failed_before)
    assert basic(h, "dave", dave).status == 200


def test_fetched_users_in_the_configurations_forms_with_their_privileges(store, envoy_factory):
    frank, grace, heidi = ("frank-" + secrets.token_urlsafe(12), "grace-" + secrets.token_urlsafe(12),
                           "heidi-" + secrets.token_urlsafe(12))
    doc = document(frank={"password": frank, "methods": ["GET"], "requests_per_hour": 2})
    sha1 = base64.b64encode(hashlib.sha1(grace.encode()).digest()).decode()
    doc["htpasswd"] = f"# htpasswd lines\ngrace:{{SHA}}{sha1}\n"
    doc["users"].append({"name": "heidi", "password_hash": bcrypt.hashpw(heidi.encode(), bcrypt.gensalt(4)).decode()})
    store.set_reply(PATH, 200, doc)
    h = envoy_factory(plugin_config(), jwks_port=store.port, fresh=True)
    assert eventually(lambda: basic(h, "grace", grace).status == 200)
    assert basic(h, "heidi", heidi).status == 200 and basic(h, "heidi", frank).status == 401
    assert basic(h, "frank", frank, method="POST").status == 403, "its own methods"
    statuses = [basic(h, "frank", frank).status for _ in range(3)]
    assert statuses == [200, 200, 429], f"its own limits: {statuses}"
