"""Token and key locations (issue 13.3) in a real Envoy, tried as an attacker would:
each provider's `from_headers` / `from_params` / `from_cookies`, API keys in a
cookie, every credential place stripped before the request goes upstream (in any
spelling a lenient parser reads), ambiguity, and the binding of a place to its
providers. Tokens are minted with PyJWT.

The Envoy is test_security's LAX one (no path normalization, underscores in header
names allowed): the filter must be safe on its own.
"""
from __future__ import annotations

import jwt as pyjwt
import pytest

from harness import EnvoyHarness, cli_check, refusal_of
from test_security import LAX_ENVOY
from tokens import b64u, now, sha256_hash

SECRETS = {name: f"{name}-hmac-secret-of-at-least-32-bytes!".encode() for name in ("corp", "iap", "legacy", "web")}
ISSUERS = {name: f"https://{name}.example" for name in SECRETS}
GOOD_KEY, DISABLED_KEY = "k-good-0123456789", "k-disabled-0123456789"
WRONG_LOCATION = {"error": "invalid_token", "message": "token not accepted in this location"}
AMBIGUOUS = {"error": "invalid_credentials", "message": "more than one credential of a kind"}


def provider(name, **places):
    return {"name": name, "issuer": ISSUERS[name],
            "local_jwks": {"keys": [{"kty": "oct", "kid": name, "alg": "HS256", "k": b64u(SECRETS[name])}]},
            **places}


CONFIG = {
    "bypass": [{"path_prefix": "/healthz"}],
    "api_keys": {"headers": ["x-api-key"], "cookies": ["api_key"],
                 "clients": [{"id": "good", "key_hash": sha256_hash(GOOD_KEY)},
                             {"id": "old", "key_hash": sha256_hash(DISABLED_KEY), "disabled": True}]},
    "jwt": {"providers": [
        provider("corp"),  # no from_*: Authorization: Bearer
        provider("iap", from_headers=[{"name": "x-goog-iap-jwt-assertion"}]),
        provider("legacy", from_headers=[{"name": "authorization", "value_prefix": "Token "}],
                 from_params=["access_token"]),
        provider("web", from_cookies=["session"]),
    ]},
}


def token(name, sub=None):
    t = now()
    return pyjwt.encode({"iss": ISSUERS[name], "sub": sub or f"{name}-user", "iat": t, "exp": t + 300},
                        SECRETS[name], algorithm="HS256", headers={"kid": name})


@pytest.fixture(scope="module")
def lax(envoy_factory):
    return envoy_factory(CONFIG, hcm_overrides=LAX_ENVOY)


def upstream(r):
    assert r.status == 200, (r.status, r.headers, r.body[:300])
    return EnvoyHarness.upstream_request(r)


def refused(r, status, body):
    assert (r.status, r.json()) == (status, body), (r.status, r.body[:300])


# --------------------------------------------------------------------------
# Each place, and what reaches the upstream


CDATA = {"bypass": [{"path_prefix": "/healthz"}],
         "api_keys": {"query_param": "@authtoken", "clients": CONFIG["api_keys"]["clients"]}}


@pytest.mark.parametrize("name", ["@authtoken", "%40authtoken"])
def test_cdata_arcs_authtoken_parameter_under_any_encoding_of_its_name(envoy_factory, name):
    # CData Arc: the auth token as the query parameter @authtoken; clients encode '@' as %40.
    h = envoy_factory(CDATA, hcm_overrides=LAX_ENVOY)
    seen = upstream(h.request("GET", f"/o?a=1&{name}={GOOD_KEY}&%40AuthToken={DISABLED_KEY}"))
    assert seen["headers"]["x-auth-principal"] == "good"
    assert seen["path"] == "/o?a=1", seen
    r = h.request("GET", f"/o?@authtoken={GOOD_KEY}&%40authtoken={DISABLED_KEY}")
    refused(r, 401, AMBIGUOUS)
    assert upstream(h.request("GET", f"/healthz?%40authtoken={DISABLED_KEY}"))["path"] == "/healthz"


def test_a_percent_encoded_name_is_the_name(lax):
    # As servers read it: access%5Ftoken is access_token (read), and one next to it is a second token.
    seen = upstream(lax.request("GET", f"/o?access%5Ftoken={token('legacy')}&keep=1"))
    assert seen["headers"]["x-auth-provider"] == "legacy" and seen["path"] == "/o?keep=1"
    r = lax.request("GET", f"/o?access_token={token('legacy')}&access%5Ftoken={token('legacy', sub='other')}")
    refused(r, 401, AMBIGUOUS)


def test_a_token_in_a_provider_header(lax):
    seen = upstream(lax.request("GET", "/o", {"x-goog-iap-jwt-assertion": token("iap")}))
    assert (seen["headers"]["x-auth-principal"], seen["headers"]["x-auth-provider"]) == ("iap-user", "iap")
    assert "x-goog-iap-jwt-assertion" not in seen["headers"]


def test_a_token_after_a_custom_prefix_in_authorization(lax):
    for prefix in ("Token ", "token ", "TOKEN \t "):
        seen = upstream(lax.request("GET", "/o", {"authorization": prefix + token("legacy")}))
        assert seen["headers"]["x-auth-provider"] == "legacy" and "authorization" not in seen["headers"]


def test_a_token_in_a_query_parameter_is_removed_from_the_path(lax):
    # Percent-encoded, as a client library may send it.
    encoded = token("legacy").replace(".", "%2E")
    seen = upstream(lax.request("GET", f"/o?page=2&access_token={encoded}&sort=asc"))
    assert seen["headers"]["x-auth-provider"] == "legacy"
    assert seen["path"] == "/o?page=2&sort=asc"


def test_a_token_in_a_cookie_is_removed_and_other_cookies_kept(lax):
    seen = upstream(lax.request("GET", "/o", {"cookie": f"theme=dark; session={token('web')}; lang=en"}))
    assert seen["headers"]["x-auth-provider"] == "web"
    assert seen["headers"]["cookie"] == "theme=dark; lang=en"
    seen = upstream(lax.request("GET", "/o", {"cookie": f"session={token('web')}"}))
    assert "cookie" not in seen["headers"]


def test_an_api_key_in_a_cookie(lax):
    seen = upstream(lax.request("GET", "/o", {"cookie": f"api_key={GOOD_KEY}; theme=dark"}))
    assert (seen["headers"]["x-auth-principal"], seen["headers"]["x-auth-method"]) == ("good", "api-key")
    assert seen["headers"]["cookie"] == "theme=dark"
    r = lax.request("GET", "/o", {"cookie": f"api_key={DISABLED_KEY}"})
    refused(r, 401, {"error": "invalid_credentials", "message": "invalid API key"})


def test_the_default_place_still_works(lax):
    seen = upstream(lax.request("GET", "/o", {"authorization": "Bearer " + token("corp")}))
    assert seen["headers"]["x-auth-provider"] == "corp"


# --------------------------------------------------------------------------
# A place is bound to its providers


@pytest.mark.parametrize("name,headers,path", [
    ("web", {"authorization": "Bearer {t}"}, "/o"),        # web reads only its cookie
    ("corp", {"cookie": "session={t}"}, "/o"),             # corp reads only Authorization: Bearer
    ("iap", {}, "/o?access_token={t}"),                    # legacy's parameter, iap's token
    ("corp", {"x-goog-iap-jwt-assertion": "{t}"}, "/o"),
    ("iap", {"authorization": "Token {t}"}, "/o"),
])
def test_a_token_in_another_providers_place_is_refused(lax, name, headers, path):
    t = token(name)
    before = lax.wasm_stats().get("wasm_authn.denied.jwt_wrong_location", 0)
    r = lax.request("GET", path.format(t=t), {k: v.format(t=t) for k, v in headers.items()})
    refused(r, 401, WRONG_LOCATION)
    assert 'error_description="token not accepted in this location"' in r.headers["www-authenticate"]
    assert lax.wasm_stats()["wasm_authn.denied.jwt_wrong_location"] == before + 1


def test_a_token_verified_in_its_place_is_not_remembered_for_another(lax):
    t = token("corp", sub="cached-user")
    upstream(lax.request("GET", "/o", {"authorization": "Bearer " + t}))
    refused(lax.request("GET", "/o", {"cookie": f"session={t}"}), 401, WRONG_LOCATION)


# --------------------------------------------------------------------------
# Two credentials, and spellings


@pytest.mark.parametrize("headers,path", [
    ({"authorization": "Bearer {corp}", "cookie": "session={web}"}, "/o"),
    ({"x-goog-iap-jwt-assertion": "{iap}"}, "/o?access_token={legacy}"),
    ({"authorization": "Token {legacy}"}, "/o?access_token={legacy2}"),
    ({"cookie": "session={web}; session={web2}"}, "/o"),
    ([("cookie", "session={web}"), ("cookie", "session={web2}")], "/o"),
    ({}, "/o?access_token={legacy}&access_token={legacy}"),
])
def test_two_tokens_are_ambiguous(lax, headers, path):
    tokens = {"corp": token("corp"), "web": token("web"), "web2": token("web", sub="other"), "iap": token("iap"),
              "legacy": token("legacy"), "legacy2": token("legacy", sub="other")}
    pairs = headers.items() if isinstance(headers, dict) else headers
    r = lax.request("GET", path.format(**tokens), [(k, v.format(**tokens)) for k, v in pairs])
    refused(r, 401, AMBIGUOUS)


def test_one_token_in_two_of_its_places_is_one_credential(lax):
    t = token("legacy")
    seen = upstream(lax.request("GET", f"/o?access_token={t}", {"authorization": "Token " + t}))
    assert seen["headers"]["x-auth-provider"] == "legacy"
    assert "authorization" not in seen["headers"] and seen["path"] == "/o"


def test_a_token_outranks_an_api_key_which_is_removed(lax):
    seen = upstream(lax.request("GET", "/o", {"cookie": f"session={token('web')}; api_key={DISABLED_KEY}",
                                              "x-api-key": DISABLED_KEY}))
    assert seen["headers"]["x-auth-provider"] == "web"
    assert "x-api-key" not in seen["headers"] and "cookie" not in seen["headers"], seen


def test_every_spelling_of_a_credential_place_is_removed(lax):
    headers = {
        "cookie": f"session={token('web')}; Session=forged; SESSION=forged; session%5B%5D=forged; "
                  f"API.KEY={DISABLED_KEY}; keep=1",
        "x_goog_iap_jwt_assertion": "forged",
        "x_api_key": DISABLED_KEY,
    }
    path = "/o?ACCESS_TOKEN=forged&access.token=forged&access%5Ftoken[]=forged&access_token[]=forged&keep=1"
    seen = upstream(lax.request("GET", path, headers))
    assert seen["headers"]["x-auth-provider"] == "web"
    assert seen["headers"]["cookie"] == "keep=1"
    assert "x_goog_iap_jwt_assertion" not in seen["headers"] and "x_api_key" not in seen["headers"], seen
    assert seen["path"] == "/o?keep=1"


def test_a_bypassed_request_loses_every_credential_place(lax):
    headers = {"cookie": "session=x; api_key=y; keep=1", "x-goog-iap-jwt-assertion": "x",
               "authorization": "Token x"}
    seen = upstream(lax.request("GET", "/healthz?access_token=x&a=1", headers))
    assert seen["path"] == "/healthz?a=1" and seen["headers"]["cookie"] == "keep=1"
    assert "x-goog-iap-jwt-assertion" not in seen["headers"] and "authorization" not in seen["headers"]


def test_forward_credentials_keeps_the_verified_token_where_it_was(envoy_factory):
    h = envoy_factory({**CONFIG, "forward_credentials": True}, hcm_overrides=LAX_ENVOY)
    t = token("web")
    seen = upstream(h.request("GET", "/o?Access_Token=forged", {"cookie": f"session={t}; Session=forged; a=1",
                                                                 "x-api-key": DISABLED_KEY}))
    assert seen["headers"]["cookie"] == f"session={t}; a=1"
    assert "x-api-key" not in seen["headers"] and seen["path"] == "/o", seen


# --------------------------------------------------------------------------
# Places that could be read as another are refused at load, naming the field


REFUSED = {
    "prefix-overlap": (
        {"jwt": {"providers": [provider("iap", from_headers=[{"name": "x-token"}]),
                               provider("legacy", from_headers=[{"name": "x-token", "value_prefix": "JWT "}])]}},
        "jwt.providers[1].from_headers[0]: overlaps jwt.providers[0].from_headers[0]: one value could be read as both"),
    "authorization-without-prefix": (
        {"jwt": {"providers": [provider("iap", from_headers=[{"name": "Authorization"}])]}},
        "jwt.providers[0].from_headers[0].value_prefix: is required on authorization (e.g. \"Bearer \")"),
    "param-spells-the-api-key-param": (
        {"api_keys": {"query_param": "api_key", "clients": CONFIG["api_keys"]["clients"]},
         "jwt": {"providers": [provider("legacy", from_params=["API.key"])]}},
        "jwt.providers[0].from_params[0]: is also the API key parameter (api_keys.query_param), in some spelling"),
    "cookie-name-charset": (
        {"jwt": {"providers": [provider("web", from_cookies=["sess;ion"])]}},
        "jwt.providers[0].from_cookies[0]: must be a non-empty name of [A-Za-z0-9-_.]"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_place_that_could_be_read_as_another_is_refused(case, cli):
    config, expected = REFUSED[case]
    code, log = EnvoyHarness(config, concurrency=1).start_expect_failure(timeout=40)
    assert code not in (None, 0), log[-2000:]
    assert refusal_of(log) == expected, log[-2000:]
    assert cli_check(config) == (1, f"wasm-authn: configuration refused: {expected}\n")

