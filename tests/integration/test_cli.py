"""The `wasm-authn` CLI agrees with the filter, and the JSON Schema with both.

`wasm-authn check` runs on every configuration the integration tests load into
Envoy: the good ones (the bundled envoy/envoy.yaml, test_authn's MAIN, QUERY and
FORWARD, test_security's CONFIG, test_token_locations' CONFIG, docs/configuration.md's complete
example) exit 0; every refused one (test_authn.BAD_CONFIGS, test_security.REFUSED)
exits 1 with the fragment the Envoy test expects in the filter's log. (test_authn,
test_security, test_token_locations and test_secrets_env also compare the CLI's
message with Envoy's log line, word for word.)

wasm-authn.schema.json, checked with Python's jsonschema (draft 2020-12), accepts
every good configuration and refuses the bad ones that are shape errors (unknown
fields, wrong types). The other bad configurations are value errors (a bad hash, a
weak key, a range, a key that does not fit its algorithm, a provider without keys):
those are the filter's job, and the schema accepts them; that is checked too, so
that each new bad configuration gets classified here. Whatever the schema refuses,
the filter refuses: SHAPE_ERRORS adds cases for that side.
"""
from __future__ import annotations

import copy
import fcntl
import json
import os
import re
import subprocess

import jsonschema
import pytest
import yaml

from harness import REPO_ROOT, EnvoyHarness, _hcm, cli_check, cli_run, demo_plugin_config
from test_authn import BAD_CONFIGS, FORWARD, MAIN, QUERY
from test_security import CONFIG as SECURITY_CONFIG
from test_security import REFUSED
from test_token_locations import CONFIG as LOCATIONS_CONFIG
from test_token_locations import REFUSED as LOCATIONS_REFUSED

SCHEMA_PATH = os.path.join(REPO_ROOT, "wasm-authn.schema.json")


def complete_example() -> dict:
    """The complete configuration example: the JSON block under "## Every field in one example"
    in docs/configuration.md."""
    with open(os.path.join(REPO_ROOT, "docs", "configuration.md")) as f:
        guide = f.read()
    section = guide[guide.index("\n## Every field in one example"):]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))


GOOD = {
    "bundled-envoy-yaml": demo_plugin_config(),
    "authn-main": MAIN,
    "authn-query": QUERY,
    "authn-forward": FORWARD,
    "security": SECURITY_CONFIG,
    "token-locations": LOCATIONS_CONFIG,
    "complete-example": complete_example(),
    "with-schema-reference": dict(FORWARD, **{"$schema": "./wasm-authn.schema.json"}),
}

# BAD_CONFIGS, by what refuses them.
SCHEMA_REFUSES = {"unknown-top-level-field", "unknown-nested-field", "wrong-type-top-level", "wrong-type-nested",
                  "local-jwks-not-a-jwks"}
FILTER_ONLY = {  # value errors: the schema accepts them
    "bad-hash", "clear-text-password", "provider-without-keys", "weak-rsa-key", "short-hmac-secret",
    "key-alg-mismatch", "api-key-hash-not-sha256", "clock-skew-too-large", "empty-issuer", "no-credentials",
}
NOT_JSON = {"invalid-json"}
# test_security.REFUSED and test_token_locations.REFUSED are all value errors (header names, a weak
# key, a path, places that overlap).

_ALICE = {"users": [{"name": "alice", "password_hash": "sha256:" + "0" * 64}]}
_PROVIDER = FORWARD["jwt"]["providers"][0]
_KEY = _PROVIDER["local_jwks"]["keys"][0]
SHAPE_ERRORS = {  # more shape errors, each refused by the schema and by the filter (the fragment)
    "negative-integer": ({"basic": _ALICE, "cache": {"ttl_seconds": -1}}, "cache.ttl_seconds: invalid value"),
    "float-for-integer": ({"basic": _ALICE, "jwt": {"jwks_wait_ms": 1.5, "providers": []}}, "jwt.jwks_wait_ms:"),
    "object-for-array": ({"basic": _ALICE, "bypass": {"path_prefix": "/x"}}, "bypass: invalid type: map"),
    "string-for-bool": ({"basic": _ALICE, "forward_credentials": "yes"}, "forward_credentials: invalid type"),
    "missing-required": ({"basic": {"users": [{"name": "alice"}]}}, "basic.users[0]: missing field `password_hash`"),
    "unknown-bypass-field": ({"basic": _ALICE, "bypass": [{"path": "/x"}]}, "bypass[0].path: unknown field `path`"),
    "number-schema-reference": ({"basic": _ALICE, "$schema": 1}, "$schema: invalid type: integer"),
    "jwks-keys-not-array": ({"jwt": {"providers": [dict(_PROVIDER, local_jwks={"keys": _KEY})]}},
                            "jwt.providers[0].local_jwks: must be a JWKS object"),
    "jwk-unknown-kty": ({"jwt": {"providers": [dict(_PROVIDER, local_jwks={"keys": [dict(_KEY, kty="RSA2")]})]}},
                        "jwt.providers[0].local_jwks.keys[0].kty: unsupported key type"),
    "jwk-private-part": ({"jwt": {"providers": [dict(_PROVIDER, local_jwks={"keys": [dict(_KEY, d="AQAB")]})]}},
                         "jwt.providers[0].local_jwks.keys[0].d: private key material"),
    "jwk-missing-member": ({"jwt": {"providers": [dict(_PROVIDER, local_jwks={"keys": [
        {k: v for k, v in _KEY.items() if k != "e"}]})]}}, "jwt.providers[0].local_jwks.keys[0].e: missing"),
    "jwk-unknown-alg": ({"jwt": {"providers": [dict(_PROVIDER, local_jwks={"keys": [dict(_KEY, alg="none")]})]}},
                        "jwt.providers[0].local_jwks.keys[0].alg: unsupported algorithm"),
}


@pytest.fixture(scope="module")
def validator():
    with open(SCHEMA_PATH) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(validator, config) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(config)]


# --------------------------------------------------------------------------
# `wasm-authn check` and the filter


@pytest.mark.parametrize("case", list(GOOD))
def test_check_accepts_every_good_configuration(cli, case):
    code, err = cli_check(GOOD[case])
    assert (code, err) == (0, ""), err


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_check_refuses_every_bad_configuration_as_envoy_does(cli, case):
    config, fragments = BAD_CONFIGS[case]
    code, err = cli_check(config)
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("wasm-authn: configuration refused: "), err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("case", list(REFUSED))
def test_check_refuses_every_dangerous_configuration_as_envoy_does(cli, case):
    config, fragment = REFUSED[case]
    code, err = cli_check(config)
    assert code == 1 and err.startswith("wasm-authn: configuration refused: ") and fragment in err, err


def test_check_reads_a_file_too(cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MAIN))
    code, out, err = cli_run(["check", str(path)])
    assert (code, err) == (0, ""), err
    assert out.startswith("configuration accepted: 3 Basic users, 2 API clients (1 disabled), 2 JWT providers"), out
    # Clients from a store are announced, not "0 API clients" alone.
    remote = {"cluster": "keystore", "authority": "keys.internal", "path": "/clients.json"}
    path.write_text(json.dumps({"api_keys": {"remote": remote}}))
    code, out, err = cli_run(["check", str(path)])
    assert (code, err) == (0, ""), err
    assert "0 API clients (0 disabled) and a client store (api_keys.remote), 0 JWT" in out, out
    path.write_text(json.dumps({"basic": {"remote": remote}}))
    code, out, err = cli_run(["check", str(path)])
    assert (code, err) == (0, ""), err
    assert "0 Basic users and a user store (basic.remote), 0 API clients" in out, out
    # So are introspection providers (they have no keys, remote or not).
    introspection = {"cluster": "idp", "authority": "idp", "path": "/introspect", "auth": "bearer", "client_secret": "s"}
    path.write_text(json.dumps({"jwt": {"providers": [{"name": "idp", "introspection": introspection}]}}))
    code, out, err = cli_run(["check", str(path)])
    assert (code, err) == (0, ""), err
    assert "1 JWT providers (0 with remote keys, 1 introspecting opaque tokens)" in out, out
    code, _, err = cli_run(["check", str(tmp_path / "missing.json")])
    assert code == 2 and err.startswith("wasm-authn: cannot read "), err


def test_a_reader_that_stops_early_is_no_error(cli):
    """`wasm-authn schema | head`: the closed pipe is the reader's choice (exit 0, nothing on
    stderr), as with other Unix tools. The pipe holds 4 KiB, far less than the schema."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, 1031, 4096)  # F_SETPIPE_SZ
    proc = subprocess.Popen([cli, "schema"], stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as out:
        assert out.read(100).startswith(b"{")
    err = proc.stderr.read().decode()
    assert (proc.wait(timeout=30), err) == (0, ""), err


# --------------------------------------------------------------------------
# The JSON Schema


def test_every_bad_configuration_is_classified():
    assert SCHEMA_REFUSES | FILTER_ONLY | NOT_JSON == set(BAD_CONFIGS), "classify the new case above"
    assert not (SCHEMA_REFUSES & FILTER_ONLY)


@pytest.mark.parametrize("case", list(GOOD))
def test_schema_accepts_every_good_configuration(validator, case):
    assert schema_errors(validator, GOOD[case]) == []


@pytest.mark.parametrize("case", sorted(SCHEMA_REFUSES))
def test_schema_refuses_the_shape_errors(validator, case):
    assert schema_errors(validator, BAD_CONFIGS[case][0])


VALUE_ERRORS = {**{case: BAD_CONFIGS[case][0] for case in FILTER_ONLY},
                **{f"security:{case}": config for case, (config, _) in REFUSED.items()},
                **{f"locations:{case}": config for case, (config, _) in LOCATIONS_REFUSED.items()}}


@pytest.mark.parametrize("case", sorted(VALUE_ERRORS))
def test_schema_leaves_value_errors_to_the_filter(validator, case):
    assert schema_errors(validator, VALUE_ERRORS[case]) == []


@pytest.mark.parametrize("case", list(SHAPE_ERRORS))
def test_what_the_schema_refuses_the_filter_refuses(validator, cli, case):
    config, fragment = SHAPE_ERRORS[case]
    assert schema_errors(validator, config), "the schema accepts it"
    code, err = cli_check(config)
    assert code == 1 and fragment in err, err


def test_schema_describes_every_field(validator):
    """Editors show these descriptions: every property has one (the doc comments of src/config/schema.rs)."""
    schema = validator.schema
    missing = []
    for name, definition in [("(root)", schema)] + list(schema["$defs"].items()):
        for prop, sub in definition.get("properties", {}).items():
            if not sub.get("description"):
                missing.append(f"{name}.{prop}")
    assert missing == []


def test_complete_example_uses_the_schema_file():
    example = complete_example()
    assert example["$schema"] == "./wasm-authn.schema.json" and os.path.isfile(SCHEMA_PATH)
    assert "..." not in json.dumps(example), "no placeholders: the example is copy-pastable"


def test_a_copy_of_a_good_configuration_with_a_stray_field_is_refused_by_both(validator, cli):
    config = copy.deepcopy(MAIN)
    config["jwt"]["providers"][0]["audience"] = "orders-api"  # `audiences`, misspelt
    assert any("audience" in e for e in schema_errors(validator, config))
    code, err = cli_check(config)
    assert code == 1 and "jwt.providers[0].audience: unknown field `audience`" in err, err


# ---- wasm-authn envoy: the printed filter block in a real Envoy ----

DEMO_KEY = "demo-key-903fdf20394b7f47fbdf59f9"
# Written with what YAML and JSON must escape: quotes, a backslash, non-ASCII, a JWK's `y`.
EMBEDDED = {
    "realm": "docs",
    "bypass": [{"path_prefix": "/healthz"}],
    "basic": {"htpasswd": "# \"quoted\" \\ | \u00e9 \U0001f600 \t: y\ncarol:{SHA}NxjbCIMb0ZKUzwlXBgGmHqGE3mw=\n"},
    "api_keys": {"clients": [{"id": "demo-client",
                              "key_hash": "sha256:5d60436179138c86dd8c184f3cb73736d66813526133e8262fdaa55ffcef3a72"}]},
    "jwt": {"providers": [{"name": "p", "issuer": "https://i", "local_jwks": {"keys": [{
        "kty": "EC", "crv": "P-256", "x": "S1girUZOIM7_kImgnEZIBoEVwe8GL6tspQuP1Gim26g",
        "y": "9lP4gV-78XxToEXjh4HmiNpkoKDf8GW81wWSMnFGodc"}]}}]},
}


def test_the_printed_filter_block_runs_in_envoy(wasm_module, envoy_binary, cli):
    """`wasm-authn envoy` prints the wasm filter; put in place of the bundled one, the
    Envoy it configures answers as its configuration says."""
    code, out, err = cli_run(["envoy", "-", "--module", wasm_module], json.dumps(EMBEDDED, ensure_ascii=False).encode())
    assert (code, err) == (0, ""), err
    block = yaml.safe_load(out)
    assert isinstance(block, list) and len(block) == 1 and block[0]["name"] == "envoy.filters.http.wasm"
    assert json.loads(block[0]["typed_config"]["config"]["configuration"]["value"]) == EMBEDDED

    def with_printed_filter(cfg: dict) -> None:
        filters = _hcm(cfg)["http_filters"]
        at = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.wasm")
        filters[at] = block[0]

    with EnvoyHarness(None, config_hook=with_printed_filter) as h:
        r = h.request("GET", "/orders")
        assert r.status == 401 and 'realm="docs"' in r.headers["www-authenticate"], r
        r = h.request("GET", "/orders", {"x-api-key": DEMO_KEY})
        assert r.status == 200 and h.upstream_headers(r)["x-auth-principal"] == "demo-client", r
        r = h.request("GET", "/orders", {"authorization": "Basic Y2Fyb2w6Y2Fyb2wtZGVtby1wYXNzd29yZA=="})  # carol
        assert r.status == 200 and h.upstream_headers(r)["x-auth-principal"] == "carol", r
        assert h.request("GET", "/healthz").status == 200
        assert h.request("GET", "/orders", {"x-api-key": "revoked-key-48066887a1dbfb830608c415"}).status == 401


def test_the_printed_wasmplugin_holds_the_configuration(cli):
    code, out, err = cli_run(["envoy", "-", "--istio"], json.dumps(EMBEDDED).encode())
    assert (code, err) == (0, ""), err
    plugin = yaml.safe_load(out)
    assert (plugin["apiVersion"], plugin["kind"]) == ("extensions.istio.io/v1alpha1", "WasmPlugin")
    assert plugin["spec"]["pluginConfig"] == EMBEDDED
    assert plugin["spec"]["phase"] == "AUTHN" and plugin["spec"]["pluginName"] == "wasm_authn"


def test_the_printed_filter_refuses_what_the_filter_refuses(cli):
    code, out, err = cli_run(["envoy", "-"], b'{"basic": {"users": [{"name": "bob", "password_hash": "hunter2"}]}}')
    assert code == 1 and out == ""
    assert err.startswith("wasm-authn: configuration refused: basic.users[0].password_hash: unsupported hash format"), err


def test_the_istio_example_quotes_what_yaml_1_1_reads_as_booleans():
    """Kubernetes reads YAML 1.1: a plain `n:` (a JWK's modulus) would reach Istio as the key "false"."""
    with open(os.path.join(REPO_ROOT, "envoy", "istio-wasmplugin.yaml")) as f:
        text = f.read()
    plain = re.findall(r"(?m)^[ \t]*(?:- )?(y|Y|n|N|yes|Yes|no|No|on|On|off|Off)[ \t]*:", text)
    assert plain == [], f"quote these keys: {plain}"
