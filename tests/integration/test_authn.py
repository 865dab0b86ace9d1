"""Acceptance tests of wasm-authn in a real Envoy 1.40, against the documented contract (docs/).

Every configuration here is written from the documented fields (docs/configuration.md), with keys
and secrets generated for this test session (RSA-2048, P-256, Ed25519, HMAC). Tokens
are made with PyJWT, hostile ones by hand. A handful of Envoys serve the whole module:

  MAIN      Basic (sha256, bcrypt, htpasswd {SHA}), API keys in two headers (no query
            parameter), JWT providers `corp` (RS256/PS256/ES256/EdDSA/HS256 keys,
            audience, max lifetime, claim_to_headers) and `partners` (dotted
            principal_claim, no expiration required), bypass rules.
  QUERY     API keys also in the `api_key` query parameter, custom principal header
            names, envoy_crypto off (pure-Rust RS256/ES256).
  FORWARD   JWT only, forward_credentials true, realm "edge".
  refused   bad configurations, each started in parallel and expected to make Envoy exit.
"""
from __future__ import annotations

import base64
import copy
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import EnvoyHarness, cli_check, refusal_of
from tokens import (b64u, b64u_json, basic_header, bcrypt_hash, ed25519_key, flip_signature, hmac_token,
                    htpasswd_sha, jwk, mint, now, p256_key, public_pem, random_secret, raw_token, rsa_key,
                    sha256_hash)

# --------------------------------------------------------------------------
# Session material

CORP_ISS = "https://id.corp.example"
PARTNER_ISS = "https://login.partner.example"
AUDIENCE = "orders-api"

PASSWORDS = {"alice": "alice-S3cret!", "bob": "bob:with:colons", "carol": "carol pass"}
API_KEYS = {"reporting": "rk_live_7f3a9c2b1d", "old-batch": "ob_dead_0000aaaa"}

BASIC_CHALLENGE = 'Basic realm="api", charset="UTF-8"'
BEARER_CHALLENGE = 'Bearer realm="api"'
API_KEY_CHALLENGE = 'ApiKey realm="api", header="x-api-key"'
ALL_CHALLENGES = (BASIC_CHALLENGE, BEARER_CHALLENGE, API_KEY_CHALLENGE)
MISSING_BODY = {"error": "unauthorized", "message": "credentials are required"}


class K:
    """Keys of this session."""
    rsa_rs = rsa_key()      # kid rsa-rs, alg RS256
    rsa_ps = rsa_key()      # kid rsa-ps, alg PS256
    rogue_rsa = rsa_key()   # not configured anywhere
    ec = p256_key()         # kid ec-1
    ed = ed25519_key()      # kid ed-1
    hs = random_secret(32)  # kid hs-1, alg HS256
    partner_ec = p256_key()  # partners' kid p-1


SIGNERS = {  # alg -> (private key, kid)
    "RS256": (K.rsa_rs, "rsa-rs"),
    "PS256": (K.rsa_ps, "rsa-ps"),
    "ES256": (K.ec, "ec-1"),
    "EdDSA": (K.ed, "ed-1"),
    "HS256": (K.hs, "hs-1"),
}

CORP_PROVIDER = {
    "name": "corp",
    "issuer": CORP_ISS,
    "audiences": [AUDIENCE],
    "local_jwks": {"keys": [
        jwk(K.rsa_rs, "rsa-rs", "RS256"),
        jwk(K.rsa_ps, "rsa-ps", "PS256"),
        jwk(K.ec, "ec-1", "ES256"),
        jwk(K.ed, "ed-1"),
        jwk(K.hs, "hs-1", "HS256"),
    ]},
    "require_expiration": True,
    "max_lifetime_seconds": 3600,
    "principal_claim": "sub",
    "claim_to_headers": [
        {"claim": "realm.roles", "header": "x-roles"},
        {"claim": "org.name", "header": "x-org"},
    ],
}

PARTNER_PROVIDER = {
    "name": "partners",
    "issuer": PARTNER_ISS,
    "local_jwks": {"keys": [jwk(K.partner_ec, "p-1", "ES256")]},
    "require_expiration": False,
    "principal_claim": "user.id",
}

MAIN = {
    "realm": "api",
    "clock_skew_seconds": 60,
    "principal_headers": {"principal": "x-auth-principal", "method": "x-auth-method", "provider": "x-auth-provider"},
    "forward_credentials": False,
    "bypass": [
        {"path_prefix": "/healthz"},
        {"method": "OPTIONS"},
        {"path_prefix": "/public/", "method": "GET"},
    ],
    "basic": {
        "users": [
            {"name": "alice", "password_hash": sha256_hash(PASSWORDS["alice"])},
            {"name": "bob", "password_hash": bcrypt_hash(PASSWORDS["bob"], cost=4)},
        ],
        "htpasswd": "# test users\ncarol:" + htpasswd_sha(PASSWORDS["carol"]) + "\n",
    },
    "api_keys": {
        "headers": ["x-api-key", "x-cdata-authtoken"],
        "allow_basic": True,
        "clients": [
            {"id": "reporting", "key_hash": sha256_hash(API_KEYS["reporting"])},
            {"id": "old-batch", "key_hash": sha256_hash(API_KEYS["old-batch"]), "disabled": True},
        ],
    },
    "jwt": {"providers": [CORP_PROVIDER, PARTNER_PROVIDER]},
    "cache": {"max_entries": 4096, "ttl_seconds": 300},
}

QUERY = {
    "principal_headers": {"principal": "x-user", "method": "x-how", "provider": "x-idp"},
    "api_keys": {
        "headers": ["x-api-key"],
        "query_param": "api_key",
        "clients": [
            {"id": "reporting", "key_hash": sha256_hash(API_KEYS["reporting"])},
            {"id": "old-batch", "key_hash": sha256_hash(API_KEYS["old-batch"]), "disabled": True},
        ],
    },
    "jwt": {"providers": [{
        "name": "corp",
        "issuer": CORP_ISS,
        "local_jwks": {"keys": [jwk(K.rsa_rs, "rsa-rs", "RS256"), jwk(K.ec, "ec-1", "ES256")]},
    }]},
    "envoy_crypto": False,
}

FORWARD = {
    "realm": "edge",
    "forward_credentials": True,
    "jwt": {"providers": [{
        "name": "corp",
        "issuer": CORP_ISS,
        "audiences": [AUDIENCE],
        "local_jwks": {"keys": [jwk(K.rsa_rs, "rsa-rs", "RS256")]},
    }]},
}


def claims(**over):
    t = now()
    c = {"iss": CORP_ISS, "sub": "user-1", "aud": AUDIENCE, "iat": t, "exp": t + 300}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def corp_token(alg="RS256", kid=..., **over):
    key, default_kid = SIGNERS[alg]
    return mint(key, alg, claims(**over), kid=default_kid if kid is ... else kid)


def partner_token(**over):
    t = now()
    c = {"iss": PARTNER_ISS, "user": {"id": "u-42"}, "iat": t, "exp": t + 300}
    c.update(over)
    return mint(K.partner_ec, "ES256", {k: v for k, v in c.items() if v is not None}, kid="p-1")


def bearer(token):
    return {"authorization": "Bearer " + token}


# --------------------------------------------------------------------------
# Fixtures and assertion helpers


@pytest.fixture(scope="module")
def main(envoy_factory):
    return envoy_factory(MAIN)


@pytest.fixture(scope="module")
def query_envoy(envoy_factory):
    return envoy_factory(QUERY)


@pytest.fixture(scope="module")
def forward_envoy(envoy_factory):
    return envoy_factory(FORWARD)


class Counters:
    """Deltas of the filter's counters around some requests."""

    def __init__(self, h: EnvoyHarness):
        self.h = h
        # allowed, bypassed and anonymous reach Envoy on the filter's next tick (each
        # second): let the counts of earlier requests land before taking the baseline.
        time.sleep(max(0.0, h.last_request_at + 1.1 - time.monotonic()))
        self.before = h.wasm_stats()

    def delta(self, name: str) -> int:
        after = self.h.wasm_stats()
        return after.get("wasm_authn." + name, 0) - self.before.get("wasm_authn." + name, 0)

    def expect(self, **deltas):
        deadline = time.monotonic() + 3
        while True:
            after = self.h.wasm_stats()
            got = {n: after.get("wasm_authn." + n, 0) - self.before.get("wasm_authn." + n, 0) for n in deltas}
            if got == deltas or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert got == deltas, (got, sorted(after))


def denied(reason: str) -> str:
    return "denied." + reason


def is_echo(r) -> bool:
    try:
        body = r.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "headers" in body and "path" in body


def assert_allowed(h, r, principal, method, provider=None, names=("x-auth-principal", "x-auth-method", "x-auth-provider")):
    assert r.status == 200, (r.status, r.headers, r.body)
    assert is_echo(r), r.body
    up = h.upstream_headers(r)
    p, m, pv = names
    assert up.get(p) == principal, up
    assert up.get(m) == method, up
    if provider is None:
        assert pv not in up, up
    else:
        assert up.get(pv) == provider, up
    return up


def assert_invalid_token(r, desc, realm="api", secret=None):
    assert r.status == 401, (r.status, r.headers, r.body)
    assert r.headers.get_all("www-authenticate") == [
        f'Bearer realm="{realm}", error="invalid_token", error_description="{desc}"'], r.headers
    assert r.json() == {"error": "invalid_token", "message": desc}
    assert r.headers.get("content-type", "").startswith("application/json")
    if secret:  # a token is never echoed
        assert secret not in r.text and secret not in (r.headers.get("www-authenticate") or "")


def assert_invalid_credentials(r, message):
    assert r.status == 401, (r.status, r.headers, r.body)
    assert sorted(r.headers.get_all("www-authenticate")) == sorted(ALL_CHALLENGES), r.headers
    body = r.json()
    assert set(body) == {"error", "message"}, body
    assert body["error"] == "invalid_credentials", body
    if isinstance(message, (tuple, list)):
        assert body["message"] in message, body
    elif message is not None:
        assert body["message"] == message, body
    else:
        assert isinstance(body["message"], str) and body["message"], body


def assert_missing(r, challenges=ALL_CHALLENGES):
    assert r.status == 401, (r.status, r.headers, r.body)
    assert sorted(r.headers.get_all("www-authenticate")) == sorted(challenges), r.headers
    assert r.json() == MISSING_BODY


# --------------------------------------------------------------------------
# JWT: valid tokens


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA", "HS256"])
def test_valid_token_each_algorithm(main, alg):
    token = corp_token(alg, sub=f"sub-{alg}")
    c = Counters(main)
    r = main.request("GET", "/api/orders", bearer(token))
    up = assert_allowed(main, r, f"sub-{alg}", "jwt", "corp")
    assert "authorization" not in up, up
    c.expect(allowed=1)


def test_token_without_kid_is_checked_against_the_keys_of_its_algorithm(main):
    r = main.request("GET", "/api", bearer(corp_token("ES256", kid=None, sub="nokid")))
    assert_allowed(main, r, "nokid", "jwt", "corp")


def test_audience_array_containing_an_allowed_audience(main):
    r = main.request("GET", "/api", bearer(corp_token(aud=["other", AUDIENCE], sub="multi-aud")))
    assert_allowed(main, r, "multi-aud", "jwt", "corp")


def test_claim_to_headers_dotted_and_array_claims(main):
    token = corp_token(sub="u-roles", realm={"roles": ["a", "b"]}, org={"name": "acme"})
    r = main.request("GET", "/api", bearer(token))
    up = assert_allowed(main, r, "u-roles", "jwt", "corp")
    assert up["x-roles"] == "a,b"
    assert up["x-org"] == "acme"


def test_claim_to_headers_absent_claim_sets_no_header(main):
    r = main.request("GET", "/api", bearer(corp_token(sub="u-noroles")))
    up = assert_allowed(main, r, "u-noroles", "jwt", "corp")
    assert "x-roles" not in up and "x-org" not in up, up


def test_principal_claim_dotted_path_and_second_provider(main):
    r = main.request("GET", "/api", bearer(partner_token()))
    up = assert_allowed(main, r, "u-42", "jwt", "partners")
    assert "authorization" not in up


def test_require_expiration_false_accepts_token_without_exp(main):
    r = main.request("GET", "/api", bearer(partner_token(exp=None, user={"id": "no-exp"})))
    assert_allowed(main, r, "no-exp", "jwt", "partners")


def test_clock_skew_default_tolerates_30_seconds(main):
    t = now()
    r = main.request("GET", "/api", bearer(corp_token(sub="late", iat=t - 600, exp=t - 30)))
    assert_allowed(main, r, "late", "jwt", "corp")
    r = main.request("GET", "/api", bearer(corp_token(sub="early", nbf=t + 30)))
    assert_allowed(main, r, "early", "jwt", "corp")


def test_accepted_token_is_accepted_again(main):
    """Second use of the same token (served by the verified-credential cache) gives the same principal."""
    token = corp_token("PS256", sub="twice", realm={"roles": ["r1"]})
    for _ in range(3):
        up = assert_allowed(main, main.request("GET", "/api", bearer(token)), "twice", "jwt", "corp")
        assert up["x-roles"] == "r1"


# --------------------------------------------------------------------------
# JWT: refused tokens


def _rejections():
    t = now()
    c = claims
    rs = lambda **o: corp_token("RS256", **o)  # noqa: E731
    header_rs = {"alg": "RS256", "typ": "JWT", "kid": "rsa-rs"}
    good = rs(sub="x")
    gh, gp, gs = good.split(".")
    return [
        ("expired", lambda: rs(iat=t - 600, exp=t - 120), "token expired", "jwt_expired"),
        ("expired-es256", lambda: corp_token("ES256", iat=t - 3000, exp=t - 2000), "token expired", "jwt_expired"),
        ("not-yet-valid-nbf", lambda: rs(nbf=t + 120), "token not yet valid", "jwt_not_yet_valid"),
        ("wrong-audience", lambda: rs(aud="billing-api"), "audience not allowed", "jwt_audience"),
        ("wrong-audience-array", lambda: rs(aud=["a", "b"]), "audience not allowed", "jwt_audience"),
        ("no-audience", lambda: rs(aud=None), "audience not allowed", "jwt_audience"),
        ("unknown-issuer", lambda: rs(iss="https://evil.example"), "unknown issuer", "jwt_unknown_issuer"),
        ("no-issuer", lambda: rs(iss=None), "unknown issuer", "jwt_unknown_issuer"),
        ("bad-signature-rs256", lambda: flip_signature(rs()), "signature verification failed", "jwt_bad_signature"),
        ("bad-signature-ps256", lambda: flip_signature(corp_token("PS256")), "signature verification failed", "jwt_bad_signature"),
        ("bad-signature-es256", lambda: flip_signature(corp_token("ES256")), "signature verification failed", "jwt_bad_signature"),
        ("bad-signature-eddsa", lambda: flip_signature(corp_token("EdDSA")), "signature verification failed", "jwt_bad_signature"),
        ("bad-signature-hs256", lambda: flip_signature(corp_token("HS256")), "signature verification failed", "jwt_bad_signature"),
        ("tampered-payload", lambda: f"{gh}.{b64u_json(c(sub='admin'))}.{gs}", "signature verification failed", "jwt_bad_signature"),
        ("signed-by-other-key-same-kid", lambda: mint(K.rogue_rsa, "RS256", c(), kid="rsa-rs"),
         "signature verification failed", "jwt_bad_signature"),
        ("hs256-wrong-secret", lambda: mint(random_secret(32), "HS256", c(), kid="hs-1"),
         "signature verification failed", "jwt_bad_signature"),
        ("unknown-kid", lambda: rs(kid="no-such-key"), "unknown signing key", "jwt_unknown_key"),
        ("corp-key-for-partner-issuer", lambda: mint(K.rsa_rs, "RS256", {"iss": PARTNER_ISS, "user": {"id": "x"}, "exp": t + 60}, kid="rsa-rs"),
         "unknown signing key", "jwt_unknown_key"),
        ("corp-ec-key-under-partner-kid", lambda: mint(K.ec, "ES256", {"iss": PARTNER_ISS, "user": {"id": "x"}, "exp": t + 60}, kid="p-1"),
         "signature verification failed", "jwt_bad_signature"),
        ("alg-none", lambda: raw_token({"alg": "none", "typ": "JWT"}, c(), b"junk-signature"),
         "algorithm not allowed", "jwt_algorithm"),
        ("alg-none-with-kid", lambda: raw_token({"alg": "none", "kid": "rsa-rs"}, c(), b"x"),
         "algorithm not allowed", "jwt_algorithm"),
        ("alg-unknown", lambda: raw_token({"alg": "RS1024", "kid": "rsa-rs"}, c(), b"x"),
         "algorithm not allowed", "jwt_algorithm"),
        ("hs256-with-rsa-public-key-pem", lambda: hmac_token(public_pem(K.rsa_rs), {"alg": "HS256", "typ": "JWT", "kid": "rsa-rs"}, c()),
         "algorithm not allowed", "jwt_algorithm"),
        ("rs256-on-ps256-bound-key", lambda: mint(K.rsa_ps, "RS256", c(), kid="rsa-ps"),
         "algorithm not allowed", "jwt_algorithm"),
        ("no-expiration", lambda: rs(exp=None), "expiration required", "jwt_no_expiration"),
        ("lifetime-too-long", lambda: rs(iat=t, exp=t + 7200), "token lifetime too long", "jwt_lifetime"),
        ("no-principal", lambda: rs(sub=None), "principal claim missing", "jwt_no_principal"),
        ("partner-no-principal", lambda: partner_token(user={"name": "x"}), "principal claim missing", "jwt_no_principal"),
        ("two-parts", lambda: f"{gh}.{gp}", "malformed token", "jwt_malformed"),
        ("four-parts", lambda: f"{gh}.{gp}.{gs}.{gs}", "malformed token", "jwt_malformed"),
        ("one-part", lambda: "notatoken", "malformed token", "jwt_malformed"),
        ("bad-base64-header", lambda: f"!!!.{gp}.{gs}", "malformed token", "jwt_malformed"),
        ("bad-base64-payload", lambda: f"{gh}.@@@@.{gs}", "malformed token", "jwt_malformed"),
        ("bad-base64-signature", lambda: f"{gh}.{gp}.***", "malformed token", "jwt_malformed"),
        ("payload-not-json", lambda: raw_token(header_rs, b64u("not json {")), "malformed token", "jwt_malformed"),
        ("payload-json-array", lambda: raw_token(header_rs, b64u("[1,2]")), "malformed token", "jwt_malformed"),
        ("header-not-json", lambda: raw_token(b64u("{alg:RS256"), c()), "malformed token", "jwt_malformed"),
        ("header-not-an-object", lambda: raw_token(b64u('"RS256"'), c()), "malformed token", "jwt_malformed"),
        ("huge-10kb", lambda: rs(pad="x" * 10_000), "token too large", "jwt_too_large"),
    ]


REJECTIONS = _rejections()


@pytest.mark.parametrize("make,desc,reason", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_refused_token(main, make, desc, reason):
    token = make()
    c = Counters(main)
    r = main.request("GET", "/api/orders", bearer(token))
    assert_invalid_token(r, desc, secret=token.split(".")[-1] if "." in token else token)
    assert not is_echo(r)
    c.expect(**{denied(reason): 1, "allowed": 0})


def test_huge_token_is_about_10kb_and_otherwise_valid(main):
    """The 10 KB case above is refused for its size only: the same claims without padding pass."""
    token = corp_token(pad="x" * 10_000)
    assert 10_000 < len(token) < 16_000
    assert main.request("GET", "/api", bearer(corp_token(pad="x" * 100))).status == 200


def test_clock_skew_120_seconds_late_fails_but_30_passes(main):
    t = now()
    assert main.request("GET", "/api", bearer(corp_token(iat=t - 600, exp=t - 30))).status == 200
    assert_invalid_token(main.request("GET", "/api", bearer(corp_token(iat=t - 600, exp=t - 120))), "token expired")


def test_alg_none_unsecured_jws_with_empty_signature(main):
    token = raw_token({"alg": "none", "typ": "JWT"}, claims(), "")
    assert token.endswith(".")
    r = main.request("GET", "/api", bearer(token))
    assert r.status == 401 and not is_echo(r)
    body = r.json()
    assert body["error"] == "invalid_token"
    assert body["message"] in ("algorithm not allowed", "malformed token"), body


def test_hs256_with_rsa_public_key_without_kid_is_refused(main):
    for pem in (public_pem(K.rsa_rs), public_pem(K.rsa_rs).strip()):
        token = hmac_token(pem, {"alg": "HS256", "typ": "JWT"}, claims(sub="attacker"))
        r = main.request("GET", "/api", bearer(token))
        assert r.status == 401 and not is_echo(r), r.body
        assert r.json()["error"] == "invalid_token"
        assert r.json()["message"] in ("algorithm not allowed", "signature verification failed")


def test_bearer_over_authorization_limit_is_refused(main):
    """20 KB Authorization: over the filter's 16 KiB bound, under Envoy's 60 KiB."""
    token = corp_token(pad="y" * 20_000)
    r = main.request("GET", "/api", bearer(token))
    assert r.status == 401 and not is_echo(r), (r.status, r.body[:200])
    assert token.split(".")[-1] not in r.text


def test_bearer_over_authorization_limit_is_an_invalid_token(main):
    token = corp_token(pad="y" * 20_000)
    assert_invalid_token(main.request("GET", "/api", bearer(token)), "token too large")


def test_header_over_envoy_limit_is_refused_by_envoy(main):
    """Above 60 KiB of headers Envoy itself answers 431: nothing reaches the filter or upstream."""
    r = main.request("GET", "/api", bearer(corp_token(pad="z" * 70_000)))
    assert r.status == 431, (r.status, r.body[:200])
    assert not is_echo(r)


def test_two_authorization_headers_are_refused(main):
    good = "Bearer " + corp_token(sub="dup")
    r = main.request("GET", "/api", [("authorization", good), ("authorization", basic_header("alice", PASSWORDS["alice"]))])
    assert r.status == 401 and not is_echo(r), r.body


# --------------------------------------------------------------------------
# Basic


@pytest.mark.parametrize("user", ["alice", "bob", "carol"], ids=["sha256", "bcrypt", "htpasswd-SHA"])
def test_basic_valid(main, user):
    c = Counters(main)
    r = main.request("GET", "/api", {"authorization": basic_header(user, PASSWORDS[user])})
    up = assert_allowed(main, r, user, "basic")
    assert "authorization" not in up
    c.expect(allowed=1)


@pytest.mark.parametrize("user,password", [
    ("alice", "wrong"), ("alice", ""), ("alice", PASSWORDS["alice"] + "x"),
    ("bob", "bob"), ("carol", "Carol pass"), ("mallory", "anything"), ("ALICE", PASSWORDS["alice"]),
], ids=["sha256", "empty", "suffix", "bcrypt", "htpasswd", "unknown-user", "user-case"])
def test_basic_wrong_password(main, user, password):
    c = Counters(main)
    r = main.request("GET", "/api", {"authorization": basic_header(user, password)})
    assert_invalid_credentials(r, "invalid user name or password")
    c.expect(**{denied("basic_invalid"): 1, "allowed": 0})


@pytest.mark.parametrize("value", [
    "Basic " + base64.b64encode(b"alice" + PASSWORDS["alice"].encode()).decode(),  # no colon
    "Basic " + base64.b64encode(b"alice").decode(),
], ids=["no-colon", "user-only"])
def test_basic_no_colon(main, value):
    c = Counters(main)
    r = main.request("GET", "/api", {"authorization": value})
    assert_invalid_credentials(r, None)
    c.expect(**{denied("basic_malformed"): 1, "allowed": 0})


@pytest.mark.parametrize("value", ["Basic %%%not-base64%%%", "Basic YWxpY2U6c2VjcmV0!", "Basic ====",
                                   "Basic YWxpY2U6cGFzcw"], ids=["junk", "trailing-bang", "padding-only", "unpadded"])
def test_basic_bad_base64(main, value):
    c = Counters(main)
    r = main.request("GET", "/api", {"authorization": value})
    assert_invalid_credentials(r, None)
    c.expect(**{denied("basic_malformed"): 1, "allowed": 0})


def test_basic_scheme_is_case_insensitive(main):
    value = "basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    assert_allowed(main, main.request("GET", "/api", {"authorization": value}), "alice", "basic")


def test_api_key_as_basic_credentials(main):
    r = main.request("GET", "/api", {"authorization": basic_header("reporting", API_KEYS["reporting"])})
    up = assert_allowed(main, r, "reporting", "api-key")
    assert "authorization" not in up


def test_api_key_as_basic_wrong_key(main):
    c = Counters(main)
    r = main.request("GET", "/api", {"authorization": basic_header("reporting", "nope")})
    assert_invalid_credentials(r, ("invalid user name or password", "invalid API key"))
    assert c.delta(denied("api_key_invalid")) + c.delta(denied("basic_invalid")) == 1
    assert c.delta("allowed") == 0


def test_api_key_as_basic_disabled_client(main):
    c = Counters(main)
    r = main.request("GET", "/api", {"authorization": basic_header("old-batch", API_KEYS["old-batch"])})
    assert_invalid_credentials(r, "invalid API key")
    c.expect(**{denied("api_key_disabled"): 1, "allowed": 0})


# --------------------------------------------------------------------------
# API keys


@pytest.mark.parametrize("header", ["x-api-key", "x-cdata-authtoken", "X-CData-AuthToken"])
def test_api_key_header_valid(main, header):
    c = Counters(main)
    r = main.request("GET", "/api/report", {header: API_KEYS["reporting"]})
    up = assert_allowed(main, r, "reporting", "api-key")
    assert header.lower() not in up, up
    c.expect(allowed=1)


@pytest.mark.parametrize("header", ["x-api-key", "x-cdata-authtoken"])
def test_api_key_disabled(main, header):
    c = Counters(main)
    r = main.request("GET", "/api", {header: API_KEYS["old-batch"]})
    assert_invalid_credentials(r, "invalid API key")
    c.expect(**{denied("api_key_disabled"): 1, "allowed": 0})


@pytest.mark.parametrize("key", ["wrong-key", API_KEYS["reporting"] + "x", API_KEYS["reporting"].upper()])
def test_api_key_wrong(main, key):
    c = Counters(main)
    r = main.request("GET", "/api", {"x-api-key": key})
    assert_invalid_credentials(r, "invalid API key")
    c.expect(**{denied("api_key_invalid"): 1, "allowed": 0})


def test_a_hundred_thousand_clients_and_users(envoy_factory):
    """Issue 18: 100,000 API clients (objects and `clients_lines`) and 100,000 htpasswd
    users, more than the old 1 MiB configuration held, load into a real Envoy; a key is
    found by its digest, a client by its id (Basic `id:key`), whatever their number."""
    import secrets
    keys = [secrets.token_hex(12) for _ in range(100_000)]
    objects = [{"id": f"obj-{i}", "key_hash": sha256_hash(keys[i]), "scopes": ["s"]} for i in range(1000)]
    lines = "".join(f"line-{i}:{sha256_hash(keys[i])}\n" for i in range(1000, 100_000))
    htpasswd = "".join(f"user-{i}:{htpasswd_sha(keys[i])}\n" for i in range(100_000))
    h = envoy_factory({"api_keys": {"headers": ["x-api-key"], "clients": objects, "clients_lines": lines},
                       "basic": {"htpasswd": htpasswd}})
    assert_allowed(h, h.request("GET", "/api", {"x-api-key": keys[999]}), "obj-999", "api-key")
    assert_allowed(h, h.request("GET", "/api", {"x-api-key": keys[54_321]}), "line-54321", "api-key")
    assert_allowed(h, h.request("GET", "/api", {"authorization": basic_header("line-99999", keys[99_999])}),
                   "line-99999", "api-key")
    assert_allowed(h, h.request("GET", "/api", {"authorization": basic_header("user-77777", keys[77_777])}),
                   "user-77777", "basic")
    for r, message in ((h.request("GET", "/api", {"x-api-key": secrets.token_hex(12)}), "invalid API key"),
                       (h.request("GET", "/api", {"authorization": basic_header("line-5", keys[6])}),
                        "invalid user name or password"),
                       (h.request("GET", "/api", {"authorization": basic_header("user-5", keys[6])}),
                        "invalid user name or password")):
        assert (r.status, r.json()) == (401, {"error": "invalid_credentials", "message": message}), (r.status, r.body)


def test_api_key_in_unconfigured_header_is_not_a_credential(main):
    r = main.request("GET", "/api", {"x-other-key": API_KEYS["reporting"]})
    assert_missing(r)


def test_query_api_key_ignored_where_not_configured(main):
    c = Counters(main)
    r = main.request("GET", f"/api?api_key={API_KEYS['reporting']}")
    assert_missing(r)
    c.expect(**{denied("missing_credential"): 1, "allowed": 0})


def test_query_api_key_removed_from_upstream_path(query_envoy):
    h = query_envoy
    c = Counters(h)
    r = h.request("GET", f"/items?a=1&api_key={API_KEYS['reporting']}&b=two")
    assert_allowed(h, r, "reporting", "api-key", names=("x-user", "x-how", "x-idp"))
    assert h.upstream_request(r)["path"] == "/items?a=1&b=two"
    r = h.request("GET", f"/items?api_key={API_KEYS['reporting']}")
    assert_allowed(h, r, "reporting", "api-key", names=("x-user", "x-how", "x-idp"))
    assert h.upstream_request(r)["path"] == "/items"
    c.expect(allowed=2)


def test_query_api_key_wrong_and_disabled(query_envoy):
    h = query_envoy
    c = Counters(h)
    assert_invalid_credentials(h.request("GET", "/items?api_key=nope"), "invalid API key")
    assert_invalid_credentials(h.request("GET", f"/items?api_key={API_KEYS['old-batch']}"), "invalid API key")
    c.expect(**{denied("api_key_invalid"): 1, denied("api_key_disabled"): 1, "allowed": 0})


def test_custom_principal_header_names(query_envoy):
    h = query_envoy
    r = h.request("GET", "/items", {"x-api-key": API_KEYS["reporting"], "x-user": "root", "x-how": "magic", "x-idp": "evil"})
    up = assert_allowed(h, r, "reporting", "api-key", names=("x-user", "x-how", "x-idp"))
    assert "x-api-key" not in up
    assert "x-auth-principal" not in up


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_pure_rust_signature_path(query_envoy, alg):
    """envoy_crypto false: RS256 and ES256 are checked without Envoy's BoringSSL, with the same results."""
    h = query_envoy
    token = corp_token(alg, sub=f"pure-{alg}", aud=None)
    up = assert_allowed(h, h.request("GET", "/x", bearer(token)), f"pure-{alg}", "jwt", "corp",
                        names=("x-user", "x-how", "x-idp"))
    assert "authorization" not in up
    assert_invalid_token(h.request("GET", "/x", bearer(flip_signature(token))), "signature verification failed")


# --------------------------------------------------------------------------
# forward_credentials, realm, JWT-only challenges


def test_forward_credentials_keeps_authorization(forward_envoy):
    h = forward_envoy
    token = corp_token(sub="fwd")
    r = h.request("GET", "/api", bearer(token))
    up = assert_allowed(h, r, "fwd", "jwt", "corp")
    assert up.get("authorization") == "Bearer " + token


def test_credentials_are_stripped_by_default(main):
    """The counterpart on MAIN (forward_credentials false): every credential kind is removed."""
    r = main.request("GET", "/api", bearer(corp_token(sub="nofwd")))
    assert "authorization" not in assert_allowed(main, r, "nofwd", "jwt", "corp")


def test_only_bearer_challenge_when_only_jwt_configured(forward_envoy):
    c = Counters(forward_envoy)
    r = forward_envoy.request("GET", "/api")
    assert_missing(r, challenges=['Bearer realm="edge"'])
    c.expect(**{denied("missing_credential"): 1})


def test_realm_in_invalid_token_challenge(forward_envoy):
    token = corp_token(aud="elsewhere")
    assert_invalid_token(forward_envoy.request("GET", "/api", bearer(token)), "audience not allowed", realm="edge")


# --------------------------------------------------------------------------
# Missing credentials


@pytest.mark.parametrize("headers", [{}, {"authorization": "Digest username=x"}, {"x-auth-principal": "admin"}],
                         ids=["none", "unknown-scheme", "forged-principal-only"])
def test_missing_credential_challenges_both_schemes(main, headers):
    c = Counters(main)
    r = main.request("GET", "/api/orders", headers)
    assert_missing(r)
    assert not is_echo(r)
    c.expect(**{denied("missing_credential"): 1, "allowed": 0})


# --------------------------------------------------------------------------
# Forged principal headers

FORGED = [("x-auth-principal", "admin"), ("x-auth-method", "basic"), ("x-auth-provider", "corp"),
          ("x-roles", "superuser"), ("x-org", "root-org")]


def test_forged_headers_without_credential_are_refused(main):
    r = main.request("GET", "/api", FORGED)
    assert_missing(r)


def test_forged_headers_with_basic_credentials(main):
    r = main.request("GET", "/api", FORGED + [("authorization", basic_header("alice", PASSWORDS["alice"]))])
    up = assert_allowed(main, r, "alice", "basic")
    assert "x-roles" not in up and "x-org" not in up, up


def test_forged_headers_with_api_key(main):
    r = main.request("GET", "/api", FORGED + FORGED + [("x-api-key", API_KEYS["reporting"])])
    up = assert_allowed(main, r, "reporting", "api-key")
    assert "x-roles" not in up and "x-org" not in up, up


def test_forged_headers_with_jwt(main):
    token = corp_token(sub="jwt-user", realm={"roles": ["a", "b"]})
    r = main.request("GET", "/api", FORGED + [("X-Auth-Principal", "admin2")] + list(bearer(token).items()))
    up = assert_allowed(main, r, "jwt-user", "jwt", "corp")
    assert up["x-roles"] == "a,b"  # exactly the claim, not joined with the forged value
    assert "x-org" not in up  # no org claim: the forged one is gone too


def test_forged_provider_header_with_partner_token(main):
    r = main.request("GET", "/api", [("x-auth-provider", "corp")] + list(bearer(partner_token()).items()))
    assert_allowed(main, r, "u-42", "jwt", "partners")


# --------------------------------------------------------------------------
# Bypass


@pytest.mark.parametrize("method,path", [("GET", "/healthz"), ("GET", "/healthz/deep?x=1"), ("OPTIONS", "/api/orders"),
                                         ("GET", "/public/logo.png"), ("HEAD", "/healthz")])
def test_bypass_passes_and_strips_forged_headers(main, method, path):
    c = Counters(main)
    r = main.request(method, path, FORGED)
    assert r.status == 200, (r.status, r.body)
    if method != "HEAD":
        seen = main.upstream_request(r)
        assert seen["path"] == path and seen["method"] == method
        for name, _ in FORGED:
            assert name not in seen["headers"], seen["headers"]
    c.expect(bypassed=1, allowed=0)


@pytest.mark.parametrize("method,path", [("POST", "/public/logo.png"), ("GET", "/publicity"), ("GET", "/api/healthz"),
                                         ("DELETE", "/api/orders")])
def test_bypass_rules_need_every_condition(main, method, path):
    c = Counters(main)
    r = main.request(method, path)
    assert_missing(r)
    c.expect(bypassed=0, **{denied("missing_credential"): 1})


def test_bypass_keeps_credentials_and_sets_no_principal(main):
    r = main.request("GET", "/healthz", {"authorization": basic_header("alice", PASSWORDS["alice"])})
    assert r.status == 200
    up = main.upstream_headers(r)
    assert "x-auth-principal" not in up and "x-auth-method" not in up


# --------------------------------------------------------------------------
# Counters


def test_counters_by_reason_on_the_stats_page(main):
    t = now()
    c = Counters(main)
    main.request("GET", "/api", bearer(corp_token(iat=t - 900, exp=t - 600)))
    main.request("GET", "/api", bearer(corp_token(iat=t - 900, exp=t - 600, sub="other")))
    main.request("GET", "/api", bearer(corp_token(kid="ghost")))
    main.request("GET", "/api")
    main.request("GET", "/api", {"x-api-key": API_KEYS["reporting"]})
    main.request("GET", "/healthz")
    c.expect(**{denied("jwt_expired"): 2, denied("jwt_unknown_key"): 1, denied("missing_credential"): 1,
                "allowed": 1, "bypassed": 1})
    text = main.admin("/stats?filter=wasmcustom").text
    assert "wasmcustom.wasm_authn.denied.jwt_expired:" in text
    assert "wasmcustom.wasm_authn.allowed:" in text


# --------------------------------------------------------------------------
# Configurations refused at load


def _bad_configs():
    good_users = {"users": [{"name": "alice", "password_hash": sha256_hash("x")}]}
    provider = copy.deepcopy(FORWARD["jwt"]["providers"][0])
    no_keys = {k: v for k, v in provider.items() if k != "local_jwks"}
    weak = copy.deepcopy(provider)
    n = base64.urlsafe_b64decode(weak["local_jwks"]["keys"][0]["n"] + "==")
    weak["local_jwks"]["keys"][0]["n"] = b64u(n[:64])  # 512-bit modulus
    short_oct = copy.deepcopy(provider)
    short_oct["local_jwks"] = {"keys": [{"kty": "oct", "kid": "s", "alg": "HS256", "k": b64u(b"0123456789abcdef")}]}
    bad_alg = copy.deepcopy(provider)
    bad_alg["local_jwks"]["keys"][0]["alg"] = "ES256"
    return {
        "bad-hash": ({"basic": {"users": [{"name": "alice", "password_hash": "md5:0123abcd"}]}},
                     ["basic.users[0].password_hash:"]),
        "clear-text-password": ({"basic": {"users": [{"name": "a", "password_hash": sha256_hash("x")},
                                                     {"name": "b", "password_hash": "hunter2"}]}},
                                ["basic.users[1].password_hash:"]),
        "provider-without-keys": ({"jwt": {"providers": [no_keys]}}, ["jwt.providers[0]:", "local_jwks"]),
        "weak-rsa-key": ({"jwt": {"providers": [weak]}}, ["jwt.providers[0].local_jwks.keys[0].n:"]),
        "short-hmac-secret": ({"jwt": {"providers": [short_oct]}}, ["jwt.providers[0].local_jwks.keys[0]"]),
        "key-alg-mismatch": ({"jwt": {"providers": [bad_alg]}}, ["jwt.providers[0].local_jwks.keys[0]"]),
        "unknown-top-level-field": ({"basic": good_users, "realms": "api"}, ["unknown field `realms`"]),
        "unknown-nested-field": ({"basic": dict(good_users, user=[])}, ["basic.user: unknown field `user`"]),
        "api-key-hash-not-sha256": ({"api_keys": {"clients": [{"id": "c", "key_hash": "plain-key"}]}},
                                    ["api_keys.clients[0].key_hash:"]),
        "clock-skew-too-large": ({"basic": good_users, "clock_skew_seconds": 601}, ["clock_skew_seconds:"]),
        "empty-issuer": ({"jwt": {"providers": [dict(provider, issuer="")]}}, ["jwt.providers[0].issuer: must not be empty"]),
        "no-credentials": ({"realm": "api"}, ["no credentials configured"]),
        "invalid-json": ('{"basic": {"users": [', ["not valid JSON"]),
        "wrong-type-top-level": ({"basic": good_users, "clock_skew_seconds": "60"},
                                 ["clock_skew_seconds: invalid type: string (value hidden), expected u64"]),
        "wrong-type-nested": ({"basic": good_users, "api_keys": {"headers": "x-api-key"}},
                              ["api_keys.headers: invalid type: string (value hidden)"]),
        "local-jwks-not-a-jwks": ({"jwt": {"providers": [dict(provider, local_jwks=provider["local_jwks"]["keys"])]}},
                                  ["jwt.providers[0].local_jwks: must be a JWKS object"]),
    }


BAD_CONFIGS = _bad_configs()


@pytest.fixture(scope="module")
def refused(wasm_module, envoy_binary):
    """Every bad configuration started at once; {case: (exit code, log)}."""
    def run(cfg):
        return EnvoyHarness(cfg, concurrency=1).start_expect_failure(timeout=40)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {name: pool.submit(run, cfg) for name, (cfg, _) in BAD_CONFIGS.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_configuration_is_refused_at_load(refused, case, cli):
    code, log = refused[case]
    assert code is not None and code != 0, f"Envoy kept running or exited 0 ({code})\n{log[-2000:]}"
    lines = [l for l in log.splitlines() if "wasm-authn: configuration refused:" in l]
    assert lines, log[-3000:]
    for fragment in BAD_CONFIGS[case][1]:
        assert fragment in lines[0], lines[0]
    assert "Unable to create Wasm plugin" in log or "failed to load" in log, log[-2000:]
    # `wasm-authn check` refuses it with the very same message (test_cli.py: every other config).
    cli_code, cli_err = cli_check(BAD_CONFIGS[case][0])
    assert (cli_code, refusal_of(cli_err)) == (1, refusal_of(lines[0])), cli_err


def test_bad_configuration_log_does_not_leak_secrets(refused):
    """The refused HMAC secret and bad hashes are not printed back."""
    _, log = refused["short-hmac-secret"]
    assert b64u(b"0123456789abcdef") not in log
    _, log = refused["clear-text-password"]
    assert "hunter2" not in log


def test_main_configuration_is_accepted(main):
    """The documented fields used above form a configuration Envoy loads (sanity for the refused cases)."""
    assert main.running
    assert "configuration refused" not in main.log_text()


# --------------------------------------------------------------------------
# Header bytes a client controls


def raw_request(envoy: EnvoyHarness, header_lines: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request written byte for byte (http.client would re-encode the header values)."""
    import socket

    with socket.create_connection(("127.0.0.1", envoy.listener_port), timeout=10) as s:
        s.sendall(b"GET /api HTTP/1.1\r\nHost: test\r\n" + header_lines + b"Connection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_non_utf8_header_values_pass_untouched_and_never_crash_the_vm(main):
    """obs-text (bytes >= 0x80) is legal in HTTP/1.1 header values. It once panicked the VM
    (the SDK decoded header values as UTF-8), turning every later request into a 503."""
    auth = basic_header("alice", PASSWORDS["alice"]).encode()
    status, body = raw_request(main, b"Authorization: " + auth + b"\r\nX-Note: caf\xe9\r\nX-Auth-Principal: \xff\r\n")
    assert status == 200, body
    upstream = main.upstream_headers(body)
    assert upstream["x-note"] == "caf\u00e9"  # the echo server reads header bytes as Latin-1
    assert upstream["x-auth-principal"] == "alice"
    status, _ = raw_request(main, b"X-Api-Key: caf\xe9\r\n")
    assert status == 401
    assert main.request("GET", "/api", {"authorization": basic_header("alice", PASSWORDS["alice"])}).status == 200
