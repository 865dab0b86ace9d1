"""The harness itself and the bundled configuration: Envoy 1.40 starts with
envoy/envoy.yaml as shipped (only the ports changed), bypass works, a request
without credentials is refused with a challenge, a refused configuration is
observable, and the JWKS test server does what the remote-JWKS tests need."""
import http.client
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from harness import REPO_ROOT, JwksServer, demo_plugin_config, envoy_bin, http_get, load_envoy_yaml


def test_bundled_config_is_valid_for_envoy(wasm_module, envoy_binary, tmp_path):
    """envoy/envoy.yaml as is (ports included) passes Envoy's own validation
    (with WASM_AUTHN_WASM set, only the module path is replaced)."""
    cfg = "envoy/envoy.yaml"
    if os.environ.get("WASM_AUTHN_WASM"):
        import yaml
        from harness import _wasm_filter
        d = load_envoy_yaml()
        _wasm_filter(d)["vm_config"]["code"]["local"]["filename"] = wasm_module
        cfg = str(tmp_path / "envoy.yaml")
        with open(cfg, "w") as f:
            yaml.safe_dump(d, f)
    p = subprocess.run([envoy_binary, "--mode", "validate", "-c", cfg, "--disable-hot-restart"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_bundled_plugin_config_uses_documented_fields():
    cfg = demo_plugin_config()
    assert cfg["realm"] == "api"
    assert {"path_prefix": "/healthz"} in cfg["bypass"]
    hashes = [u["password_hash"] for u in cfg["basic"]["users"]]
    assert any(h.startswith("sha256:") for h in hashes)
    assert any(h.startswith(("$2a$", "$2b$", "$2y$")) for h in hashes)
    assert "{SHA}" in cfg["basic"]["htpasswd"]
    clients = cfg["api_keys"]["clients"]
    assert any(c.get("disabled") for c in clients) and any(not c.get("disabled") for c in clients)
    providers = {p["name"]: p for p in cfg["jwt"]["providers"]}
    kinds = {(k["kty"], k.get("alg")) for k in providers["demo-local"]["local_jwks"]["keys"]}
    assert ("RSA", "RS256") in kinds and ("oct", "HS256") in kinds
    assert providers["remote-demo"]["remote_jwks"] == {"cluster": "jwks", "authority": "jwks.local", "path": "/jwks.json"}
    wasm = load_envoy_yaml()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert wasm["typed_config"]["http_filters"][-1]["name"] == "envoy.filters.http.router"


def test_healthz_is_bypassed(envoy):
    r = envoy.request("GET", "/healthz")
    assert r.status == 200, r
    seen = envoy.upstream_request(r)
    assert seen["path"] == "/healthz" and seen["method"] == "GET"


def test_missing_credential_is_challenged(envoy):
    r = envoy.request("GET", "/api/things")
    assert r.status == 401, r
    challenges = r.headers.get_all("www-authenticate")
    assert challenges, r.headers
    assert any('realm="api"' in c for c in challenges), challenges


def test_filter_counters_are_on_the_stats_page(envoy):
    envoy.request("GET", "/api/things")
    stats = envoy.stats()
    assert any(k.startswith("wasmcustom.") for k in stats), sorted(stats)[:50]
    assert envoy.wasm_stats()
    # the admin text page the demo shows
    r = envoy.admin("/stats?filter=wasmcustom")
    assert r.status == 200 and b"wasmcustom." in r.body


def test_refused_configuration_is_observable(wasm_module, envoy_factory):
    from harness import EnvoyHarness
    t0 = time.monotonic()
    code, log = EnvoyHarness("{ this is not json").start_expect_failure(timeout=15)
    assert code is not None and code != 0, log[-3000:]
    assert "Unable to create Wasm plugin" in log or "failed to load" in log, log[-3000:]
    assert time.monotonic() - t0 < 15


def test_request_helper_keeps_repeated_headers_and_no_redirects(envoy):
    r = envoy.request("GET", "/healthz", [("x-dup", "a"), ("x-dup", "b")])
    assert r.status == 200
    assert envoy.upstream_headers(r.body)["x-dup"] in ("a, b", "a,b")


# ---- the JWKS server the remote-JWKS tests drive -----------------------------

def _get(port, path):
    r = http_get(port, path)
    return r.status, r.body


def test_jwks_server_controls(jwks_server):
    assert _get(jwks_server.port, "/nope")[0] == 404
    jwks_server.set_jwks({"keys": []})
    assert _get(jwks_server.port, "/jwks.json") == (200, b'{"keys": []}')
    jwks_server.set_reply("/jwks.json", status=503, body="down")
    assert _get(jwks_server.port, "/jwks.json") == (503, b"down")
    assert jwks_server.hits("/jwks.json") == 2 and jwks_server.hits() == 3
    jwks_server.set_reply("/slow", body="x", delay=0.3)
    t0 = time.monotonic()
    assert _get(jwks_server.port, "/slow")[1] == b"x" and time.monotonic() - t0 >= 0.3
    jwks_server.set_reply("/reset", mode="reset")
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        _get(jwks_server.port, "/reset")
    port = jwks_server.port
    jwks_server.refuse()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    jwks_server.accept()
    assert jwks_server.port == port and _get(port, "/jwks.json")[0] == 503
    jwks_server.set_discovery(jwks_path="/keys", authority="jwks.test")
    doc = json.loads(_get(port, "/.well-known/openid-configuration")[1])
    assert doc["jwks_uri"] == "http://jwks.test/keys"
    assert jwks_server.wait_for_hits("/.well-known/openid-configuration", 1, timeout=1)
    assert not jwks_server.wait_for_hits("/never", 1, timeout=0.1)


def test_jwks_server_reached_through_envoy_cluster(jwks_server, envoy_factory):
    """Envoy starts with the `jwks` cluster pointed at the test's server."""
    jwks_server.set_jwks(open(os.path.join(REPO_ROOT, "envoy", "demo-keys", "remote-jwks.json")).read())
    h = envoy_factory(None, jwks_port=jwks_server.port, fresh=True)
    assert h.jwks_port == jwks_server.port
    assert h.request("GET", "/healthz").status == 200


# ---- docker-compose uses the same files ---------------------------------------

def test_docker_compose_file_is_valid():
    """docker-compose (Debian's 1.29, installed by scripts/setup.sh; it needs no Docker
    engine to parse and validate) accepts envoy/docker-compose.yaml, and the file runs
    the very envoy/envoy.yaml these tests use, the echo upstream and the JWKS server."""
    import yaml

    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: run scripts/setup.sh (make setup)"
    p = subprocess.run([tool, "-f", "envoy/docker-compose.yaml", "config"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    every = yaml.safe_load(p.stdout)["services"]
    services = every
    assert set(services) == {"envoy", "echo", "jwks"}, sorted(every)
    envoy = services["envoy"]
    assert envoy["command"][:3] == ["envoy", "-c", "envoy/envoy.yaml"], envoy["command"]
    assert envoy["image"] == "envoyproxy/envoy:v1.40.0"
    for name, svc in services.items():
        # the repository itself, mounted where each command runs: the same files as here
        (volume,) = svc["volumes"]
        src, dst, mode = volume.rsplit(":", 2)
        assert (os.path.realpath(src), dst, mode) == (os.path.realpath(REPO_ROOT), "/work", "ro"), (name, volume)
        assert svc["working_dir"] == "/work", name
        assert svc["network_mode"] == "host", name
        assert all(os.path.exists(os.path.join(REPO_ROOT, a)) for a in svc["command"] if a.startswith("envoy/")), svc


def test_docker_compose_fleet_file_is_valid():
    """envoy/docker-compose-fleet.yaml (docs/operating.md, "Operating a fleet"): two Envoys running
    the very envoy/envoy-fleet.yaml, Kuadrant's Limitador with the rules that
    `wasm-authn ratelimit-config` wrote for it (test_limits checks they are current),
    Redis and the echo upstream, all on the compose network under the names that
    envoy-fleet.yaml's clusters use."""
    import yaml

    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: run scripts/setup.sh (make setup)"
    p = subprocess.run([tool, "-f", "envoy/docker-compose-fleet.yaml", "config"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    services = yaml.safe_load(p.stdout)["services"]
    assert set(services) == {"envoy-a", "envoy-b", "echo", "limitador", "redis"}, sorted(services)
    for name in ("envoy-a", "envoy-b"):
        envoy = services[name]
        assert envoy["image"] == "envoyproxy/envoy:v1.40.0"
        assert envoy["command"][:3] == ["envoy", "-c", "envoy/envoy-fleet.yaml"], envoy["command"]
        (volume,) = envoy["volumes"]
        assert os.path.realpath(volume.rsplit(":", 2)[0]) == os.path.realpath(REPO_ROOT) and envoy["working_dir"] == "/work"
    # Each Envoy's listener (:10000 in envoy-fleet.yaml) on a loopback port of its own.
    assert sorted(services[n]["ports"][0] for n in ("envoy-a", "envoy-b")) == \
        ["127.0.0.1:10010:10000/tcp", "127.0.0.1:10011:10000/tcp"]
    limitador = services["limitador"]
    assert limitador["image"].startswith("quay.io/kuadrant/limitador:v")
    (rules,) = limitador["volumes"]
    src, dst, mode = rules.rsplit(":", 2)
    assert os.path.realpath(src) == os.path.join(REPO_ROOT, "envoy", "examples", "limitador-limits.yaml") and mode == "ro"
    # limitador-server's arguments: the mounted rules, Redis by its service name.
    assert limitador["command"][-3:] == [dst, "redis", "redis://redis:6379"], limitador["command"]
    assert limitador["command"][limitador["command"].index("--rls-port") + 1] == "8081"
    fleet = load_envoy_yaml(os.path.join(REPO_ROOT, "envoy", "envoy-fleet.yaml"))
    endpoints = {c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                 for c in fleet["static_resources"]["clusters"]}
    assert endpoints["ratelimit"] == {"address": "limitador", "port_value": 8081}
    assert endpoints["echo"] == {"address": "echo", "port_value": 8081}
    assert services["echo"]["command"][-4:] == ["--host", "0.0.0.0", "--port", "8081"]


# ---- the demo keys match the bundled configuration -----------------------------

def _demo_token(creds, remote=False, **claims):
    import time as _t
    import jwt
    j = creds["jwt"]
    key_file = j["remote_private_key"] if remote else j["rs256_private_key"]
    body = {"iss": j["remote_issuer"] if remote else j["local_issuer"], "sub": "smoke", "aud": j["audience"],
            "iat": int(_t.time()), "exp": int(_t.time()) + 300}
    body.update(claims)
    with open(os.path.join(creds["keys_dir"], key_file)) as f:
        return jwt.encode(body, f.read(), algorithm="RS256",
                          headers={"kid": j["remote_kid"] if remote else j["rs256_kid"]})


@pytest.mark.parametrize("remote", [False, True], ids=["local-jwks", "remote-jwks"])
def test_demo_tokens_are_accepted(envoy, demo_credentials, remote):
    r = envoy.request("GET", "/api", {"authorization": "Bearer " + _demo_token(demo_credentials, remote)})
    assert r.status == 200, (r.status, r.headers, r.body)
    seen = envoy.upstream_headers(r)
    assert seen.get("x-auth-principal") == "smoke"
    assert seen.get("x-auth-provider") == ("remote-demo" if remote else "demo-local")


def test_demo_basic_user_is_accepted(envoy, demo_credentials):
    import base64
    auth = base64.b64encode(b"alice:" + demo_credentials["basic"]["alice"].encode()).decode()
    r = envoy.request("GET", "/api", {"authorization": "Basic " + auth, "x-auth-principal": "admin"})
    assert r.status == 200, r
    assert envoy.upstream_headers(r)["x-auth-principal"] == "alice"


def test_istio_example_plugin_config_is_accepted(envoy_factory):
    """The pluginConfig of envoy/istio-wasmplugin.yaml (its WasmPlugin document) is a
    configuration the filter accepts: Envoy starts with it and the example's Basic user
    and local JWKS provider answer."""
    import yaml

    with open(os.path.join(REPO_ROOT, "envoy", "istio-wasmplugin.yaml")) as f:
        plugins = [d for d in yaml.safe_load_all(f) if d and d["kind"] == "WasmPlugin"]
    assert len(plugins) == 1, plugins
    plugin = plugins[0]
    assert plugin["spec"]["phase"] == "AUTHN"
    h = envoy_factory(plugin["spec"]["pluginConfig"])
    r = h.request("GET", "/orders", {})
    assert r.status == 401
    assert r.headers.get_all("www-authenticate") == [
        'Basic realm="api", charset="UTF-8"', 'Bearer realm="api"', 'ApiKey realm="api", header="x-api-key"']
    assert h.request("GET", "/healthz", {}).status == 200
