"""Fixtures for the integration tests: a real Envoy 1.40 running the built module.

    def test_x(envoy):                       # demo config of envoy/envoy.yaml, one per module
        r = envoy.request("GET", "/healthz")

    def test_y(envoy_factory, demo_config):  # one Envoy per distinct config, per module
        cfg = demo_config; cfg["realm"] = "other"
        h = envoy_factory(cfg, concurrency=2)

    def test_z(jwks_server, envoy_factory):  # a JWKS endpoint the test controls
        jwks_server.set_jwks({...})
        h = envoy_factory(cfg, jwks_port=jwks_server.port, fresh=True)

See harness.py for the API.
"""
import copy
import json
import os

import pytest

from harness import (DEMO_KEYS, LIVE, EnvoyHarness, JwksServer, cli_path, demo_plugin_config, envoy_bin,
                     wasm_path)


@pytest.fixture(scope="session")
def wasm_module() -> str:
    path = wasm_path()
    if not os.path.isfile(path):
        pytest.fail(f"{path} is missing: run `make wasm` first", pytrace=False)
    return path


@pytest.fixture(scope="session")
def envoy_binary() -> str:
    try:
        return envoy_bin()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def cli() -> str:
    """The wasm-authn CLI binary (harness.cli_run / cli_check run it)."""
    try:
        return cli_path()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def _demo_config_pristine() -> dict:
    return demo_plugin_config()


@pytest.fixture
def demo_config(_demo_config_pristine) -> dict:
    """The plugin configuration bundled in envoy/envoy.yaml (a fresh copy to edit)."""
    return copy.deepcopy(_demo_config_pristine)


@pytest.fixture(scope="session")
def demo_credentials() -> dict:
    """Cleartext secrets of the demo config (envoy/demo-keys/demo-credentials.json),
    with "keys_dir" added (where the demo's PEM keys and HS256 secret are)."""
    with open(os.path.join(DEMO_KEYS, "demo-credentials.json")) as f:
        creds = json.load(f)
    creds["keys_dir"] = DEMO_KEYS
    return creds


@pytest.fixture(scope="module")
def envoy_factory(wasm_module, envoy_binary):
    """start(plugin_config=None, *, fresh=False, **EnvoyHarness kwargs) -> EnvoyHarness.

    Envoys are cached per (config, kwargs) for the module and all stopped at its end;
    fresh=True always starts a new one (e.g. for a cold-start test)."""
    cache = {}
    started = []

    def start(plugin_config=None, *, fresh=False, **kwargs):
        key = json.dumps([plugin_config, kwargs], sort_keys=True, default=str)
        h = None if fresh else cache.get(key)
        if h is None or not h.running:
            h = EnvoyHarness(plugin_config, **kwargs)
            started.append(h)
            h.start()
            if not fresh:
                cache[key] = h
        return h

    yield start
    for h in started:
        h.stop()


@pytest.fixture(scope="module")
def envoy(envoy_factory):
    """Envoy with envoy/envoy.yaml as bundled (only ports changed), the demo JWKS
    server (envoy/jwks_server.py) behind the `jwks` cluster."""
    return envoy_factory(None, demo_jwks=True)


@pytest.fixture
def jwks_server():
    """A JwksServer (harness.py) for one test; point Envoy at it with jwks_port=jwks_server.port."""
    with JwksServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def module_jwks_server():
    """A JwksServer shared by the tests of a module (reset its replies/hits as needed)."""
    with JwksServer() as srv:
        yield srv


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tail of the log of every running Envoy to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and LIVE:
        for h in list(LIVE):
            tail = "\n".join(h.log_text().splitlines()[-60:])
            rep.sections.append((f"envoy log (listener :{h.listener_port})", tail))
