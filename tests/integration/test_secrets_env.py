"""Secrets outside the plugin configuration (issue 13.4) in a real Envoy: every
secret-bearing field given as `X_env`, its value in the VM's environment
(`vm_config.environment_variables`: `key_values`, or `host_env_keys` read from
Envoy's own environment), so the configuration holds none. A missing variable
makes Envoy refuse the plugin, the field named in its log; no value is ever logged.
"""
from __future__ import annotations

import json

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization

from harness import EnvoyHarness, cli_check, refusal_of, vm_environment
from tokens import b64u, basic_header, ed25519_key, htpasswd_sha, now, sha256_hash

PASSWORDS = {"alice": "alice-from-env", "carol": "carol-from-env"}
API_KEY = "rk-from-env-0123456789"
HMAC = b"an-hmac-secret-from-the-environment!!"
ISSUER = "https://id.env.example"
SIGNING_KEY = ed25519_key()
SIGNING_PEM = SIGNING_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()

# What the Envoy process is given: no value of these appears in CONFIG.
ENVIRONMENT = {
    "ALICE_HASH": sha256_hash(PASSWORDS["alice"]),
    "HTPASSWD": f"# mounted from a Secret\ncarol:{htpasswd_sha(PASSWORDS['carol'])}\n",
    "REPORTING_KEY_HASH": sha256_hash(API_KEY),
    "CORP_HMAC": b64u(HMAC),
    "TOKEN_KEY": SIGNING_PEM,
}

CONFIG = {
    "basic": {"users": [{"name": "alice", "password_hash_env": "ALICE_HASH"}], "htpasswd_env": "HTPASSWD"},
    "api_keys": {"clients": [{"id": "reporting", "key_hash_env": "REPORTING_KEY_HASH"}]},
    "jwt": {"providers": [{"name": "corp", "issuer": ISSUER,
                           "local_jwks": {"keys": [{"kty": "oct", "kid": "h1", "alg": "HS256", "k_env": "CORP_HMAC"}]}}]},
    "token_endpoint": {"path": "/auth/token", "issuer": "https://auth.env.example", "signing_key_env": "TOKEN_KEY"},
}


def secret_lines(value: str) -> list[str]:
    """The lines of a value that are secret (not comments, not PEM armour)."""
    return [line for line in value.strip().splitlines() if not line.startswith(("#", "-----"))]


def test_the_configuration_holds_no_secret():
    text = json.dumps(CONFIG)
    for name, value in ENVIRONMENT.items():
        assert not any(line in text for line in secret_lines(value)), name


@pytest.fixture(scope="module")
def envoy(envoy_factory):
    return envoy_factory(CONFIG, concurrency=2, config_hook=vm_environment(key_values=ENVIRONMENT))


def test_every_secret_from_the_environment_works(envoy):
    for user, password in PASSWORDS.items():
        r = envoy.request("GET", "/o", {"authorization": basic_header(user, password)})
        assert r.status == 200 and EnvoyHarness.upstream_headers(r)["x-auth-principal"] == user, (user, r.body)
    assert envoy.request("GET", "/o", {"authorization": basic_header("alice", "wrong")}).status == 401
    r = envoy.request("GET", "/o", {"x-api-key": API_KEY})
    assert r.status == 200 and EnvoyHarness.upstream_headers(r)["x-auth-principal"] == "reporting"
    t = now()
    token = pyjwt.encode({"iss": ISSUER, "sub": "u-env", "exp": t + 60}, HMAC, algorithm="HS256",
                         headers={"kid": "h1"})
    r = envoy.request("GET", "/o", {"authorization": f"Bearer {token}"})
    assert r.status == 200 and EnvoyHarness.upstream_headers(r)["x-auth-provider"] == "corp", r.body


def test_the_token_endpoint_signs_with_a_key_from_the_environment(envoy):
    r = envoy.request("POST", "/auth/token", {"content-type": "application/json"},
                      body=json.dumps({"apiKey": API_KEY}).encode())
    assert r.status == 200, r.body
    issued = r.json()["access_token"]
    claims = pyjwt.decode(issued, SIGNING_KEY.public_key(), algorithms=["EdDSA"], options={"verify_aud": False})
    assert claims["sub"] == "reporting"
    r = envoy.request("GET", "/o", {"authorization": f"Bearer {issued}"})
    assert r.status == 200 and EnvoyHarness.upstream_headers(r)["x-auth-principal"] == "reporting"


def test_no_secret_reaches_the_log(envoy):
    log = envoy.log_text()
    assert "configured" in log
    for name, value in ENVIRONMENT.items():
        assert not any(line in log for line in secret_lines(value)), name


def test_host_env_keys_read_envoys_own_environment(envoy_factory, monkeypatch):
    # Envoy inherits the test process's environment; host_env_keys passes these to the VM.
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(f"WASM_AUTHN_TEST_{name}", value)
    config = json.loads(json.dumps(CONFIG).replace('_env": "', '_env": "WASM_AUTHN_TEST_'))
    h = envoy_factory(config, config_hook=vm_environment(host_env_keys=[f"WASM_AUTHN_TEST_{n}" for n in ENVIRONMENT]),
                      fresh=True)
    r = h.request("GET", "/o", {"authorization": basic_header("alice", PASSWORDS["alice"])})
    assert r.status == 200, r.body


MISSING = {
    "signing-key": ("TOKEN_KEY", "token_endpoint.signing_key_env: environment variable TOKEN_KEY is not set"),
    "jwk-k": ("CORP_HMAC",
              "jwt.providers[0].local_jwks.keys[0].k_env: environment variable CORP_HMAC is not set"),
    "password-hash": ("ALICE_HASH", "basic.users[0].password_hash_env: environment variable ALICE_HASH is not set"),
}


@pytest.mark.parametrize("case", list(MISSING))
def test_a_missing_variable_makes_envoy_refuse_the_plugin_naming_the_field(case, cli):
    missing, expected = MISSING[case]
    given = {name: value for name, value in ENVIRONMENT.items() if name != missing}
    h = EnvoyHarness(CONFIG, concurrency=1, config_hook=vm_environment(key_values=given))
    code, log = h.start_expect_failure(timeout=40)
    assert code not in (None, 0), log[-2000:]
    assert refusal_of(log) == expected, log[-2000:]
    # `wasm-authn check` reads its own environment the same way.
    assert cli_check(CONFIG, env=given) == (1, f"wasm-authn: configuration refused: {expected}\n")


def test_a_bad_value_is_refused_without_echoing_it(cli):
    given = dict(ENVIRONMENT, ALICE_HASH="hunter2-in-clear")
    code, log = EnvoyHarness(CONFIG, concurrency=1,
                             config_hook=vm_environment(key_values=given)).start_expect_failure(timeout=40)
    assert code not in (None, 0)
    assert refusal_of(log).startswith("basic.users[0].password_hash_env: unsupported hash format"), log[-2000:]
    assert "hunter2" not in log
    assert cli_check(CONFIG, env=ENVIRONMENT) == (0, "")
