"""The security review's findings (issue 7), each tried in a real Envoy as an attacker would.

LAX is an Envoy with every path and header protection of the bundled envoy.yaml
turned off (no path normalization, slashes not merged, escaped slashes kept,
underscores in header names allowed): the filter must be safe on its own. The
bundled settings are tried separately. Tokens are minted with PyJWT.
"""
from __future__ import annotations

import base64
import time

import jwt as pyjwt
import pytest

from harness import EnvoyHarness, JwksServer, cli_check, refusal_of
from tokens import b64u, basic_header, ed25519_key, jwk, mint, now, public_pem, p256_key, raw_token, rsa_key, sha256_hash

ISS = "https://id.sec.example"
SECRET = b"security-test-hmac-secret-of-32-bytes!!"
PASSWORD = "alice-pass"
GOOD_KEY, DISABLED_KEY = "k-good-0123456789", "k-disabled-0123456789"

LAX_ENVOY = {
    "normalize_path": False,
    "merge_slashes": False,
    "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
    "common_http_protocol_options": {"headers_with_underscores_action": "ALLOW"},
}


def provider(**over):
    p = {"name": "sec", "issuer": ISS, "require_expiration": True,
         "local_jwks": {"keys": [{"kty": "oct", "kid": "h1", "alg": "HS256", "k": b64u(SECRET)}]}}
    p.update(over)
    return p


CONFIG = {
    "bypass": [{"path_prefix": "/healthz"}, {"path_prefix": "/public/", "method": "GET"}],
    "basic": {"users": [{"name": "alice", "password_hash": sha256_hash(PASSWORD)}]},
    "api_keys": {
        "headers": ["x-api-key", "x-cdata-authtoken"],
        "query_param": "api_key",
        "clients": [{"id": "good", "key_hash": sha256_hash(GOOD_KEY)},
                    {"id": "old", "key_hash": sha256_hash(DISABLED_KEY), "disabled": True}],
    },
    "jwt": {"providers": [provider(claim_to_headers=[{"claim": "team", "header": "x-team"}])]},
}


def token(**claims):
    t = now()
    body = {"iss": ISS, "sub": "user-1", "iat": t, "exp": t + 300}
    body.update(claims)
    return pyjwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256",
                        headers={"kid": "h1"})


def bearer(t=None):
    return "Bearer " + (t or token())


def echo(r):
    assert r.status == 200, (r.status, r.headers, r.body[:300])
    return EnvoyHarness.upstream_request(r)


@pytest.fixture(scope="module")
def lax(envoy_factory):
    return envoy_factory(CONFIG, hcm_overrides=LAX_ENVOY)


@pytest.fixture(scope="module")
def bundled(envoy_factory):
    return envoy_factory(CONFIG)


# --------------------------------------------------------------------------
# 3. Bypass prefixes match the normalized path, at segment boundaries


ESCAPES = ["/healthz/../orders", "/healthz/%2e%2e/orders", "/healthz/%2E%2E/orders", "/healthz/..%2forders",
           "/healthz/..%2Forders", "/healthz\\..\\orders", "/healthz/..\\orders", "/healthzadmin", "/healthz%2Forders",
           "/public/../admin", "/public/%2e%2e/admin", "/public/..%2fadmin", "/healthz/%2e%2e%2forders"]


@pytest.mark.parametrize("path", ESCAPES)
def test_bypass_cannot_be_escaped_whatever_envoy_does(lax, path):
    r = lax.request("GET", path)
    assert r.status == 401, (path, r.status, r.body[:200])


def test_absolute_form_cannot_escape_a_bypass(lax):
    r = lax.request("GET", "http://h/healthz/../orders")
    assert r.status in (400, 401), (r.status, r.body[:200])
    assert r.status != 200


@pytest.mark.parametrize("path", ["/healthz", "/healthz/", "/healthz/live", "//healthz/live", "/%68ealthz",
                                  "/x/../healthz", "/public/docs"])
def test_bypass_still_matches_its_own_paths(lax, path):
    seen = echo(lax.request("GET", path))
    # The filter matches on a normal form, but forwards what Envoy has (Python's
    # http.server, the echo upstream, folds a leading "//" itself).
    assert seen["path"] == path or path.startswith("//")


def test_bypass_method_rule_matches_the_normalized_path(lax):
    assert lax.request("POST", "/public/docs").status == 401


@pytest.mark.parametrize("path,status", [("/healthz/../orders", 401), ("/healthz/..%2forders", 400),
                                         ("/healthz%5c..%5corders", 400)])
def test_bundled_envoy_settings_normalize_or_refuse(bundled, path, status):
    r = bundled.request("GET", path)
    assert r.status == status, (path, r.status, r.body[:200])


def test_bundled_envoy_refuses_underscore_headers(bundled):
    r = bundled.request("GET", "/healthz", {"X_Auth_Principal": "root"})
    assert r.status == 400, (r.status, r.body[:200])


# --------------------------------------------------------------------------
# 4. No unverified credential reaches the upstream


def test_valid_bearer_with_disabled_api_keys(lax):
    seen = echo(lax.request("GET", "/o", {"authorization": bearer(), "x-api-key": DISABLED_KEY,
                                          "x-cdata-authtoken": DISABLED_KEY}))
    assert seen["headers"]["x-auth-principal"] == "user-1"
    for name in ("authorization", "x-api-key", "x-cdata-authtoken"):
        assert name not in seen["headers"], seen


def test_valid_api_key_with_a_disabled_second_header(lax):
    seen = echo(lax.request("GET", "/o", {"x-api-key": GOOD_KEY, "x-cdata-authtoken": DISABLED_KEY}))
    assert seen["headers"]["x-auth-principal"] == "good"
    assert "x-cdata-authtoken" not in seen["headers"] and "x-api-key" not in seen["headers"], seen


def test_valid_basic_with_a_disabled_query_key(lax):
    seen = echo(lax.request("GET", f"/o?a=1&api_key={DISABLED_KEY}",
                            {"authorization": basic_header("alice", PASSWORD)}))
    assert seen["headers"]["x-auth-principal"] == "alice"
    assert seen["path"] == "/o?a=1", seen


def test_every_spelling_of_the_query_key_is_removed(lax):
    path = f"/o?api_key={GOOD_KEY}&api%5Fkey[]={DISABLED_KEY}&API_KEY={DISABLED_KEY}&api.key={DISABLED_KEY}&keep=1"
    seen = echo(lax.request("GET", path))
    assert seen["headers"]["x-auth-principal"] == "good"
    assert seen["path"] == "/o?keep=1", seen
    # api%5Fkey is api_key itself, as servers decode names: a second one is ambiguous.
    r = lax.request("GET", f"/o?api_key={GOOD_KEY}&api%5Fkey={DISABLED_KEY}")
    assert r.status == 401 and r.json()["message"] == "more than one credential of a kind", r.body


def test_credentials_never_reach_the_upstream_of_a_bypass(lax):
    seen = echo(lax.request("GET", f"/healthz?api_key={DISABLED_KEY}", {"x-api-key": DISABLED_KEY,
                                                                         "authorization": bearer()}))
    assert seen["path"] == "/healthz"
    assert "x-api-key" not in seen["headers"] and "authorization" not in seen["headers"], seen


def test_forward_credentials_forwards_only_the_verified_one(envoy_factory):
    h = envoy_factory({**CONFIG, "forward_credentials": True})
    seen = echo(h.request("GET", f"/o?api_key={DISABLED_KEY}", {"authorization": bearer(),
                                                                 "x-api-key": DISABLED_KEY}))
    assert seen["headers"]["authorization"].startswith("Bearer ")
    assert "x-api-key" not in seen["headers"] and seen["path"] == "/o", seen


# --------------------------------------------------------------------------
# Method overrides (issue 17.7): privileges judge the method the upstream acts on


OVERRIDES = {
    "bypass": [{"path_prefix": "/healthz"}],
    "rules": [{"match": {"path_prefix": "/catalog", "methods": ["GET"]}, "require": "optional"}],
    "basic": {"users": [{"name": "reader", "password_hash": sha256_hash(PASSWORD), "methods": ["GET"]},
                        {"name": "alice", "password_hash": sha256_hash(PASSWORD)}]},
}
READER, ALICE = basic_header("reader", PASSWORD), basic_header("alice", PASSWORD)
OVERRIDE_HEADERS = {"X-HTTP-Method-Override": "DELETE", "X-HTTP-Method": "DELETE", "X-Method-Override": "PUT"}


@pytest.mark.parametrize("settings", ["bundled", "lax"])
def test_method_overrides_never_reach_the_upstream(envoy_factory, settings):
    h = envoy_factory(OVERRIDES, hcm_overrides=LAX_ENVOY if settings == "lax" else {})
    headers = dict(OVERRIDE_HEADERS, **({"X_HTTP_Method_Override": "DELETE"} if settings == "lax" else {}))
    for path, auth in (("/o", {"authorization": READER}), ("/healthz", {}), ("/catalog", {})):
        query = "?_method=DELETE&%5Fmethod=PUT&_METHOD=PATCH&_method[]=x&keep=1"
        seen = echo(h.request("GET", path + query, {**headers, **auth}))
        assert seen["path"] == path + "?keep=1", seen
        assert not [name for name in seen["headers"] if "method" in name and name != "x-auth-method"], seen


JUDGE = dict(OVERRIDES, method_overrides="judge")


def test_judged_method_overrides_are_each_within_the_privileges(envoy_factory):
    h = envoy_factory(JUDGE, hcm_overrides=LAX_ENVOY)
    for headers, path in (({"X-HTTP-Method-Override": "DELETE"}, "/o"), ({"x_method_override": "get, put"}, "/o"),
                          ({}, "/o?_method=delete")):
        r = h.request("GET", path, {"authorization": READER, **headers})
        assert (r.status, r.json()["message"]) == (403, "method not allowed"), (headers, path, r.body)
    # Within them (or none but the request's own): forwarded as sent.
    seen = echo(h.request("POST", "/o?_method=PUT", {"authorization": ALICE, "X-HTTP-Method-Override": "PUT"}))
    assert seen["headers"]["x-http-method-override"] == "PUT" and seen["path"] == "/o?_method=PUT", seen
    # An optional GET route that would be a protected DELETE: neither is chosen.
    r = h.request("GET", "/catalog", {"X-HTTP-Method": "DELETE"})
    assert (r.status, r.json()["error"]) == (400, "bad_request"), r.body
    assert h.wasm_stats().get("wasm_authn.denied.method_override_refused") == 1
    assert echo(h.request("GET", "/catalog", {"X-HTTP-Method": "GET"}))["path"] == "/catalog"


# --------------------------------------------------------------------------
# 6-8. Principal headers: forged, shadowed, padded


@pytest.mark.parametrize("name", ["X_Auth_Principal", "x_auth_method", "X-Auth_Provider", "x_team"])
def test_underscore_spellings_of_owned_headers_never_reach_the_upstream(lax, name):
    for path, headers in (("/healthz", {}), ("/o", {"x-api-key": GOOD_KEY})):
        seen = echo(lax.request("GET", path, {name: "root", **headers}))
        assert name.lower() not in seen["headers"], seen
    seen = echo(lax.request("GET", "/o", {name: "root", "x-api-key": GOOD_KEY}))
    assert seen["headers"]["x-auth-principal"] == "good"


@pytest.mark.parametrize("sub", [" admin", "admin ", "\tadmin"])
def test_a_principal_with_surrounding_whitespace_is_refused(lax, sub):
    r = lax.request("GET", "/o", {"authorization": bearer(token(sub=sub))})
    assert r.status == 401, (r.status, r.body)
    assert r.json() == {"error": "invalid_token", "message": "principal claim invalid"}


@pytest.mark.parametrize("exp", ["1e308", "18446744073709551616", "253402300800"])
def test_absurd_expiry_times_are_malformed(lax, exp):
    t = now()
    payload = '{"iss":"%s","sub":"u","iat":%d,"exp":%s}' % (ISS, t, exp)
    header = b64u('{"alg":"HS256","kid":"h1"}')
    signing_input = f"{header}.{b64u(payload)}"
    import hashlib
    import hmac
    sig = b64u(hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest())
    r = lax.request("GET", "/o", {"authorization": f"Bearer {signing_input}.{sig}"})
    assert r.status == 401 and r.json()["message"] == "malformed token", (exp, r.status, r.body)


# --------------------------------------------------------------------------
# Bad configurations refused at load, naming the field


KEYPAIR_PEM = public_pem(p256_key()).decode()
WEAK_ED25519 = {"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": b64u(b"\x01" + b"\x00" * 31)}
REFUSED = {
    "claim-sets-principal": (
        {"jwt": {"providers": [provider(claim_to_headers=[{"claim": "nick", "header": "x-auth-principal"}])]}},
        "jwt.providers[0].claim_to_headers[0].header:"),
    "principal-headers-shared": (
        {"principal_headers": {"method": "x-auth-principal"}, "jwt": {"providers": [provider()]}},
        "principal_headers.principal:"),
    "small-order-ed25519": (
        {"jwt": {"providers": [provider(local_jwks={"keys": [WEAK_ED25519]})]}},
        "jwt.providers[0].local_jwks.keys[0].x: a small-order (weak) Ed25519 public key"),
    "non-normal-bypass": (
        {"bypass": [{"path_prefix": "/a/../b"}], "jwt": {"providers": [provider()]}}, "bypass[0].path_prefix:"),
    # Rules that can never match (issue 17.14), and a host no request carries (17.5).
    "rule-path-outside-its-prefix": (
        {"rules": [{"match": {"path": "/admin", "path_prefix": "/public"}}], "jwt": {"providers": [provider()]}},
        "rules[0].match: path is not under path_prefix: the rule never matches"),
    "rule-without-methods": (
        {"rules": [{"match": {"path_prefix": "/admin", "methods": []}}], "jwt": {"providers": [provider()]}},
        "rules[0].match.methods: must list a method"),
    "rule-behind-a-bypass": (
        {"bypass": [{"path_prefix": "/healthz"}], "rules": [{"match": {"path_prefix": "/healthz/x"}, "require": "optional"}],
         "jwt": {"providers": [provider()]}},
        "rules[0]: never matches: bypass[0] before it matches every request it would"),
    "rule-behind-a-wider-rule": (
        {"rules": [{"match": {"host": "*.example"}, "require": ["jwt"]},
                   {"match": {"host": "admin.example", "path_prefix": "/x"}, "principals": ["jwt:sec:root"]}],
         "jwt": {"providers": [provider()]}},
        "rules[1]: never matches: rules[0]"),
    # A provider whose issuer is a keypair's public key (as its tokens carry it; issue 17.15).
    "provider-issuer-is-a-keypairs-key": (
        {"jwt": {"providers": [provider(issuer=KEYPAIR_PEM.replace("\n", "\r\n"))]},
         "keypairs": [{"id": "engine", "public_key": KEYPAIR_PEM}]},
        "keypairs[0].public_key: jwt.providers[0].issuer claims this issuer too"),
    "host-with-a-trailing-dot": (
        {"rules": [{"match": {"host": "admin.example."}}], "jwt": {"providers": [provider()]}}, "rules[0].match.host:"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_dangerous_configuration_is_refused(case, cli):
    config, fragment = REFUSED[case]
    code, log = EnvoyHarness(config, concurrency=1).start_expect_failure(timeout=40)
    assert code not in (None, 0), log[-2000:]
    lines = [line for line in log.splitlines() if "wasm-authn: configuration refused:" in line]
    assert lines and fragment in lines[0], (fragment, lines, log[-2000:])
    # `wasm-authn check` refuses it with the very same message.
    cli_code, cli_err = cli_check(config)
    assert (cli_code, refusal_of(cli_err)) == (1, refusal_of(lines[0])), cli_err


# --------------------------------------------------------------------------
# Safe by construction


LUA_BAD_HEADER_NAME = {"name": "envoy.filters.http.lua", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
    "default_source_code": {"inline_string":
                            'function envoy_on_request(h) h:headers():add("x-bad\\255name", "v\\255") end'}}}


def test_a_non_utf8_header_name_from_another_filter_does_not_kill_the_vm(envoy_factory):
    h = envoy_factory(CONFIG, concurrency=1, http_filters_before=[LUA_BAD_HEADER_NAME])
    for _ in range(3):
        r = h.request("GET", "/o", {"x-api-key": "wrong-key"})
        assert r.status == 401, (r.status, r.body)
    assert "panicked" not in h.log_text()


def test_cors_preflight_bypass_needs_a_real_preflight(envoy_factory):
    h = envoy_factory({**CONFIG, "bypass": [], "bypass_cors_preflight": True})
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    assert echo(h.request("OPTIONS", "/o", preflight))["method"] == "OPTIONS"
    assert h.request("OPTIONS", "/o").status == 401
    assert h.request("OPTIONS", "/o", {"origin": "https://app.example"}).status == 401


def test_api_key_only_configuration_sends_a_challenge(envoy_factory):
    h = envoy_factory({"api_keys": {"allow_basic": False, "clients": CONFIG["api_keys"]["clients"]}})
    r = h.request("GET", "/o")
    assert r.status == 401
    assert r.headers.get_all("www-authenticate") == ['ApiKey realm="api", header="x-api-key"']


def test_several_pem_blocks_are_several_keys(envoy_factory):
    rsa, ec = rsa_key(), p256_key()
    pem = (public_pem(rsa) + public_pem(ec)).decode()
    h = envoy_factory({"jwt": {"providers": [{"name": "pem", "issuer": ISS, "local_pem": pem}]}})
    for key, alg in ((rsa, "RS256"), (ec, "ES256")):
        t = now()
        tok = mint(key, alg, {"iss": ISS, "sub": alg, "iat": t, "exp": t + 60})
        assert echo(h.request("GET", "/o", {"authorization": "Bearer " + tok}))["headers"]["x-auth-principal"] == alg


# --------------------------------------------------------------------------
# Remote keys, as a new user meets them


def test_unknown_kid_while_the_endpoint_is_down_is_a_503(envoy_factory):
    signer = rsa_key()
    with JwksServer() as srv:
        srv.set_jwks({"keys": [jwk(signer, "k1", "RS256")]})
        config = {"jwt": {"jwks_wait_ms": 1500, "providers": [{
            "name": "remote", "issuer": ISS,
            "remote_jwks": {"cluster": "jwks", "authority": "jwks.test", "path": "/jwks.json"}}]},
            "cache": {"max_entries": 0}}
        h = envoy_factory(config, jwks_port=srv.port, fresh=True)
        t = now()
        claims = {"iss": ISS, "sub": "u", "iat": t, "exp": t + 300}
        assert echo(h.request("GET", "/o", {"authorization": "Bearer " + mint(signer, "RS256", claims, kid="k1")}))
        srv.refuse()
        r = h.request("GET", "/o", {"authorization": "Bearer " + mint(signer, "RS256", claims, kid="k2")})
        assert r.status == 503, (r.status, r.body)
        assert r.headers.get("retry-after", "").isdigit()
        # A known key keeps working while the endpoint is down.
        assert echo(h.request("GET", "/o", {"authorization": "Bearer " + mint(signer, "RS256", claims, kid="k1")}))


def test_discovery_with_a_jwks_uri_on_another_host(envoy_factory):
    signer = rsa_key()
    with JwksServer() as srv:
        srv.set_discovery(jwks_path="/keys.json", authority="keys.other.example")
        srv.set_jwks({"keys": [jwk(signer, "k1", "RS256")]}, path="/keys.json")
        discovery = {"cluster": "jwks", "authority": "jwks.test"}
        config = {"jwt": {"jwks_wait_ms": 1000, "providers": [{"name": "oidc", "issuer": ISS,
                                                               "discovery": discovery}]}}
        h = envoy_factory(config, jwks_port=srv.port, fresh=True)
        deadline = time.monotonic() + 15
        while "discovery.jwks_cluster" not in h.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "jwks_uri is on host keys.other.example, not on jwks.test: set discovery.jwks_cluster" \
            in h.log_text(), h.log_text()[-2000:]
        assert srv.hits("/keys.json") == 0
        # Stopped: it would go on asking for the discovery document every second.
        h.stop()

        config["jwt"]["providers"][0]["discovery"] = {**discovery, "jwks_cluster": "jwks"}
        h = envoy_factory(config, jwks_port=srv.port, fresh=True)
        t = now()
        tok = mint(signer, "RS256", {"iss": ISS, "sub": "u", "iat": t, "exp": t + 60}, kid="k1")
        assert echo(h.request("GET", "/o", {"authorization": "Bearer " + tok}))
        assert srv.hits("/keys.json") >= 1


# --------------------------------------------------------------------------
# 1, 5. Password guessing costs the guesser, not the worker

FLOOD = r"""
import base64, http.client, os, sys, time
port, seconds, per_second, known = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
deadline = time.monotonic() + seconds
counts = {}
i = 0
while time.monotonic() < deadline:
    i += 1
    user = known if i % 2 else "nobody-" + os.urandom(6).hex()  # a known name and made-up ones
    value = "Basic " + base64.b64encode(f"{user}:guess-{os.urandom(8).hex()}".encode()).decode()
    try:
        conn.request("GET", "/o", headers={"authorization": value})
        r = conn.getresponse()
        r.read()
        counts[r.status] = counts.get(r.status, 0) + 1
    except OSError:
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    time.sleep(1 / per_second)
print(counts)
"""


def _p50_of_valid_requests(h, n=100, interval=0.02):
    """Median latency of valid API-key and JWT requests sent at a fixed rate (open loop:
    each is timed from when it was due, so a stalled worker shows in every request that
    arrives while it is stalled, not only in the one a closed-loop client would wait on)."""
    from concurrent.futures import ThreadPoolExecutor
    headers = [{"x-api-key": GOOD_KEY}, {"authorization": bearer()}]
    start = time.perf_counter()

    def one(i):
        due = start + i * interval
        time.sleep(max(0.0, due - time.perf_counter()))
        r = h.request("GET", "/o", headers[i % 2])
        assert r.status == 200, (r.status, r.body)
        return time.perf_counter() - due

    with ThreadPoolExecutor(max_workers=16) as pool:
        times = sorted(pool.map(one, range(n)))
    return times[len(times) // 2]


def test_a_wrong_password_flood_is_refused_and_valid_traffic_still_passes(envoy_factory):
    import subprocess
    import sys
    import bcrypt as pybcrypt
    cost10 = pybcrypt.hashpw(b"bob-password", pybcrypt.gensalt(rounds=10)).decode()
    config = {**CONFIG, "basic": {"users": [{"name": "bob", "password_hash": cost10}]}}
    h = envoy_factory(config, concurrency=1, fresh=True)
    # Warm up (the first bcrypt, the VM's caches), then the undisturbed figure.
    assert h.request("GET", "/o", {"authorization": basic_header("bob", "bob-password")}).status == 200
    undisturbed = _p50_of_valid_requests(h)

    flooders = [subprocess.Popen([sys.executable, "-c", FLOOD, str(h.listener_port), "8", "25", "bob"],
                                 stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        time.sleep(1)
        flooded = _p50_of_valid_requests(h)
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
    assert 200 not in statuses, statuses
    busy = h.wasm_stats().get("wasm_authn.denied.password_checks_busy", 0)
    # Made-up names and bob's guesses met the worker's budget for slow hashes.
    assert statuses.get(503, 0) >= busy > 0, (statuses, busy)

    # bob's guesses from here are limited too: within basic.failure_limit (10) more, 429 until the window ends.
    # (A guess that meets the budget still spent, on a slow or shared machine, is 503: not a
    # check, so not a failure; it is tried again once the budget refills.)
    wrong = 0
    for attempt in range(60):
        time.sleep(0.35)  # the budget refills
        r = h.request("GET", "/o", {"authorization": basic_header("bob", f"guess-{attempt}")})
        if r.status == 429:
            break
        if r.status == 503:
            continue
        assert r.status == 401, (attempt, r.status, r.body)
        wrong += 1
    assert wrong <= 10, wrong
    assert r.status == 429 and int(r.headers["retry-after"]) > 0, (r.status, r.headers)
    assert r.json()["error"] == "rate_limited"
    # bob's own, remembered login from elsewhere still works: a lookup, not a check (from
    # the guessing address it is refused like a guess: a remembered login is no oracle).
    bob = {"authorization": basic_header("bob", "bob-password")}
    assert h.request("GET", "/o", bob, source="127.0.0.2").status == 200
    assert h.request("GET", "/o", bob).status == 429


# --------------------------------------------------------------------------
# 17.11: a guessing source throttles itself, not the user it guesses at

GUESSED = {"basic": {"users": [{"name": "bob", "password_hash": sha256_hash("bob-password-0123")}],
                     "failure_limit": {"max_failures": 10, "max_failures_per_name": 100, "window_seconds": 60}},
           "jwt": {"providers": [provider()]}}
BOB = {"authorization": basic_header("bob", "bob-password-0123")}


def _guess(h, source, n, password="guess"):
    return [h.request("GET", "/o", {"authorization": basic_header("bob", f"{password}-{i}")}, source=source).status
            for i in range(n)]


def test_a_wrong_password_flood_from_one_address_leaves_the_user_elsewhere_alone(envoy_factory):
    # No remembered verifications: every valid request meets the throttle and a check.
    h = envoy_factory({**GUESSED, "cache": {"max_entries": 0}}, concurrency=2, fresh=True)
    valid = []
    for _ in range(4):
        _guess(h, "127.0.0.2", 10)
        valid += [h.request("GET", "/o", BOB, source="127.0.0.1").status for _ in range(5)]
    assert valid == [200] * 20, valid
    r = h.request("GET", "/o", {"authorization": basic_header("bob", "another-guess")}, source="127.0.0.2")
    assert r.status == 429 and 0 < int(r.headers["retry-after"]) <= 60, (r.status, r.headers)
    assert r.json() == {"error": "rate_limited", "message": "too many failed attempts for this user name"}
    # The guessing address gets 429 for the right password too; another address does not.
    assert h.request("GET", "/o", BOB, source="127.0.0.2").status == 429
    assert h.request("GET", "/o", BOB, source="127.0.0.3").status == 200


def test_a_remembered_login_is_no_oracle_for_a_throttled_address(envoy_factory):
    h = envoy_factory(GUESSED, concurrency=1, fresh=True)
    assert h.request("GET", "/o", BOB, source="127.0.0.1").status == 200  # verified and remembered
    assert _guess(h, "127.0.0.2", 11)[-1] == 429
    assert h.request("GET", "/o", BOB, source="127.0.0.2").status == 429, "the cache answered a throttled guesser"
    assert h.request("GET", "/o", BOB, source="127.0.0.1").status == 200


def test_guessing_from_many_addresses_meets_the_ceiling_of_the_name(envoy_factory):
    """The documented cost: a distributed guess (here 3 addresses x 2 failures) locks the name
    out from everywhere until the window ends, its owner included; other names are not."""
    config = {"basic": {"users": [{"name": "bob", "password_hash": sha256_hash("bob-password-0123")},
                                  {"name": "ann", "password_hash": sha256_hash("ann-password-0123")}],
                        "failure_limit": {"max_failures": 2, "max_failures_per_name": 6, "window_seconds": 60}},
              "cache": {"max_entries": 0}}
    h = envoy_factory(config, concurrency=2, fresh=True)
    for source in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
        assert _guess(h, source, 2) == [401, 401], source
    assert h.request("GET", "/o", BOB, source="127.0.0.1").status == 429
    ann = {"authorization": basic_header("ann", "ann-password-0123")}
    assert h.request("GET", "/o", ann, source="127.0.0.1").status == 200
