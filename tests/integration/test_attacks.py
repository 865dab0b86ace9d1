"""Attacks on requirement trees, shadow mode, claim conditions, the payload handed
upstream, client certificates, bound tokens and introspection, in a real Envoy:
owned headers in other spellings, over HTTP/1.1 (chunked, with trailers) and
HTTP/2; tokens whose payload is not canonical base64url (signed by an independent
implementation, `cryptography`); claims and subjects of odd JSON types; common
names with characters Envoy escapes in RFC 2253 text; a `cnf` with a second
binding; introspection answers judged under a looser configuration of the same
Envoy (after a reload).
"""
from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

import wire
from harness import EnvoyHarness
from tokens import b64u, basic_header, mint, now, public_pem, rsa_key, sha256_hash

KEY = rsa_key()
ISSUER = "https://id.attack.example"
PASSWORD = "alice-password-0123"
CLIENT_KEY = "alice-client-key-0123"

CONFIG = {
    "principal_headers": {"qualified": "x-auth-qualified"},
    "basic": {"users": [{"name": "alice", "password_hash": sha256_hash(PASSWORD)}]},
    "api_keys": {"clients": [{"id": "alice", "key_hash": sha256_hash(CLIENT_KEY)}]},
    "jwt": {"providers": [{
        "name": "corp", "issuer": ISSUER, "local_pem": public_pem(KEY).decode(),
        "from_headers": [{"name": "x-jwt"}],
        "claim_to_headers": [{"claim": "tenant", "header": "x-claim-tenant"}],
        "forward_payload_header": "x-jwt-payload",
        "payload_in_filter_state": True,
    }]},
    "rules": [
        {"match": {"path_prefix": "/claims"}, "require": ["jwt:corp"], "claims": [
            {"claim": "roles", "any_of": ["admin"]}]},
        {"match": {"path_prefix": "/tenant"}, "require": ["jwt:corp"], "claims": [
            {"claim": "tenant", "equals_header": "x-tenant"}]},
        {"match": {"path_prefix": "/tree"}, "require": {"all": ["basic", {"any": ["jwt:corp", "api-key"]}]}},
        {"match": {"path_prefix": "/shadow"}, "require": ["basic"], "enforce": False},
        {"match": {"path_prefix": "/token"}, "require": ["jwt:corp"]},
        {"match": {"path_prefix": "/open"}, "require": "optional"},
    ],
}

ALICE = {"authorization": basic_header("alice", PASSWORD)}


@pytest.fixture(scope="module")
def envoy(envoy_factory):
    # Envoy as an operator may run it: headers with underscores allowed (the bundled
    # envoy.yaml refuses them), so the filter's own handling of those spellings is what is tested.
    return envoy_factory(CONFIG, concurrency=1, hcm_overrides={
        "common_http_protocol_options": {"headers_with_underscores_action": "ALLOW"}})


def signed(payload_segment: str) -> str:
    """An RS256 token over the payload segment exactly as given (canonical or not)."""
    header = b64u(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{payload_segment}".encode()
    return f"{header}.{payload_segment}.{b64u(KEY.sign(signing_input, padding.PKCS1v15(), hashes.SHA256()))}"


def claims(**extra) -> dict:
    t = now()
    return {"iss": ISSUER, "sub": "bob", "iat": t, "exp": t + 300, **extra}


def token(**extra) -> str:
    return mint(KEY, "RS256", claims(**extra))


def owned_seen(headers: dict) -> dict:
    """The upstream's headers that read (lower case, underscores as dashes) as the filter's."""
    owned = ("x-auth-", "x-jwt-payload", "x-claim-tenant")
    return {k: v for k, v in headers.items() if k.lower().replace("_", "-").startswith(owned)}


FORGED_SPELLINGS = [
    ("X-Auth-Principal", "admin"), ("x_auth_principal", "admin"), ("X_AUTH_QUALIFIED", "basic:admin"),
    ("x-auth-also-mtls", "mtls:admin"), ("X_Auth_Also_Mtls", "mtls:admin"), ("x-auth-also-basic", "basic:admin"),
    ("x_auth_also_keypair", "keypair:admin"), ("x-jwt-payload", b64u(b'{"sub":"admin"}')),
    ("X_JWT_PAYLOAD", b64u(b'{"sub":"admin"}')), ("x_claim_tenant", "acme"), ("x-claim-tenant", "acme"),
    ("x-claim-tenant", "acme2"),
]


@pytest.mark.parametrize("protocol", ["h1", "h1-chunked", "h2"])
@pytest.mark.parametrize("path, credentials, expected", [
    ("/open/x", [], {}),
    ("/shadow/x", [], {}),
    ("/shadow/x", list(ALICE.items()), {}),
    ("/tree/x", list(ALICE.items()) + [("x-api-key", CLIENT_KEY)],
     {"x-auth-principal": "alice", "x-auth-qualified": "basic:alice", "x-auth-method": "basic",
      "x-auth-also-api-key": "api-key:alice"}),
])
def test_owned_headers_in_every_spelling_never_reach_the_upstream(envoy, protocol, path, credentials, expected):
    forged = FORGED_SPELLINGS if protocol != "h2" else [(k.lower(), v) for k, v in FORGED_SPELLINGS]
    body = wire.Body(parts=[b"a" * 10, b"b" * 10], trailers=[("x-auth-also-jwt", "jwt:corp:admin")]
                     if protocol != "h1" else ())
    r = wire.send(envoy.listener_port, "POST", path, credentials + forged, body, protocol=protocol)
    assert r.status == 200, (r.status, r.body)
    assert owned_seen(EnvoyHarness.upstream_headers(r)) == expected


def test_a_trees_other_token_hands_on_no_claims_or_payload(envoy):
    """/tree: Basic alice is the principal; bob's token beside it is reported as
    `x-auth-also-jwt`, but its claims and payload are not alice's."""
    r = envoy.request("GET", "/tree/x", {**ALICE, "x-jwt": token(tenant="acme"), "x-claim-tenant": "forged"})
    assert r.status == 200, r.body
    assert owned_seen(EnvoyHarness.upstream_headers(r)) == {
        "x-auth-principal": "alice", "x-auth-qualified": "basic:alice", "x-auth-method": "basic",
        "x-auth-also-jwt": "jwt:corp:bob"}


def test_a_payload_that_is_not_canonical_base64url_is_refused_or_forwarded_as_verified(envoy):
    """The upstream decodes `x-jwt-payload` itself: whatever the filter accepts, the
    upstream must read the claims the filter verified (or nothing at all)."""
    text = json.dumps(claims(tenant="acme")).encode()
    canonical = b64u(text)
    variants = {
        "padded": base64.urlsafe_b64encode(text).decode() if len(text) % 3 else canonical + "=",
        "standard alphabet": base64.b64encode(text).decode().rstrip("="),
        "dot inside": canonical[:8] + "." + canonical[8:],
        "space inside": canonical[:8] + " " + canonical[8:],
    }
    if len(text) % 3:  # the last character's unused low bits set
        last = canonical[-1]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        spare = 4 if len(text) % 3 == 1 else 2
        variants["trailing bits"] = canonical[:-1] + alphabet[alphabet.index(last) | (spare - 1)]
    for name, segment in variants.items():
        if segment == canonical:
            continue
        r = envoy.request("GET", "/token/x", {"x-jwt": signed(segment)})
        if r.status == 200:
            seen = EnvoyHarness.upstream_headers(r)
            forwarded = seen["x-jwt-payload"]
            decoded = json.loads(base64.urlsafe_b64decode(forwarded + "=" * (-len(forwarded) % 4)))
            assert decoded["sub"] == seen["x-auth-principal"] and decoded["tenant"] == seen["x-claim-tenant"], name
        else:
            assert r.status == 401, (name, r.status, r.body)
    # The canonical one passes (so the refusals above are about the encoding).
    assert envoy.request("GET", "/token/x", {"x-jwt": signed(canonical)}).status == 200


@pytest.mark.parametrize("roles, status", [
    (["admin"], 200), ("admin", 200),
    ([["admin"]], 403), ({"admin": True}, 403), ("admin user", 403), ("admin,user", 403), (["Admin"], 403),
    ([{"role": "admin"}], 403), (None, 403), ([None, "user"], 403), (["admin\u0000"], 403), ("ａdmin", 403),
])
def test_claim_values_of_odd_types(envoy, roles, status):
    r = envoy.request("GET", "/claims/x", {"x-jwt": token(roles=roles)})
    assert r.status == status, (roles, r.status, r.body)


@pytest.mark.parametrize("tenant, sent, status", [
    (42, [("x-tenant", "42")], 200),
    ("42", [("x-tenant", "42")], 200),
    ([42, "acme"], [("x-tenant", "acme")], 200),
    ("acme", [("X-Tenant", "acme"), ("x-tenant", "evil")], 403),
    ("acme", [("x-tenant", "acme"), ("X_TENANT", "evil")], 403),
    ("acme", [("x-tenant", "acme,evil")], 403),
    ("acme", [("x-tenant", " acme")], 200),  # Envoy trims the value as it reads it: the upstream sees `acme`
    (["acme", "evil"], [("x-tenant", "acme,evil")], 403),
    ({"acme": True}, [("x-tenant", '{"acme":true}')], 403),
    (True, [("x-tenant", "true")], 200),
    (None, [("x-tenant", "null")], 403),
])
def test_equals_header_against_odd_claims_and_spellings(envoy, tenant, sent, status):
    r = envoy.request("GET", "/tenant/x", [("x-jwt", token(tenant=tenant))] + sent)
    assert r.status == status, (tenant, sent, r.status, r.body)
    if status == 200:
        assert EnvoyHarness.upstream_headers(r)["x-tenant"] in {str(v).lower() if isinstance(v, bool) else str(v)
                                                                 for v in (tenant if isinstance(tenant, list) else [tenant])}


@pytest.mark.parametrize("protocol", ["h2", "h1-chunked"])
@pytest.mark.parametrize("sent, status", [
    ([("x-tenant", "acme")], 200),
    ([("x-tenant", "acme"), ("x-tenant", "evil")], 403),
    ([("x-tenant", "acme"), ("x_tenant", "evil")], 403),
    ([("x-tenant", "")], 403),
])
def test_equals_header_over_the_wire(envoy, protocol, sent, status):
    r = wire.send(envoy.listener_port, "POST", "/tenant/x", [("x-jwt", token(tenant="acme"))] + sent,
                  wire.Body(parts=[b"x" * 8], trailers=[("x-tenant", "evil")]), protocol=protocol)
    assert r.status == status, (sent, r.status, r.body)
    if status == 200:
        assert EnvoyHarness.upstream_headers(r)["x-tenant"] == "acme"


@pytest.mark.parametrize("sub, status", [
    ("alice", 200), (7, 200), ("admin\u00a0", 401), ("\u2003admin", 401), ("a" * 5000, 401),
    ("ad\u0000min", 401), (["admin"], 401), ({"id": "admin"}, 401), (True, 401), ("", 401),
])
def test_principal_claims_of_odd_types(envoy, sub, status):
    r = envoy.request("GET", "/token/x", {"x-jwt": mint(KEY, "RS256", {**claims(), "sub": sub})})
    assert r.status == status, (sub, r.status, r.body)
    if status == 200:
        seen = EnvoyHarness.upstream_headers(r)
        assert seen["x-auth-qualified"] == f"jwt:corp:{sub}", seen


# --------------------------------------------------------------------------
# Client certificates named by their common name: Envoy hands the subject as
# RFC 2253 text, where a control character or a non-ASCII byte is a `\XX` escape.


def issue_with_cn(pki, name: str, cn: str) -> None:
    """A client certificate of the test CA whose CN is `cn` exactly (made with `cryptography`)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    with open(pki.path("ca"), "rb") as f:
        ca_cert = x509.load_pem_x509_certificate(f.read())
    with open(pki.key("ca"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wasm-authn"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(pki.path(name), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(pki.key(name), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


BY_CN = {
    "principal_headers": {"qualified": "x-auth-qualified"},
    "mtls": {"principal_from": "subject_cn"},
    "rules": [{"match": {"path_prefix": "/services"}, "require": ["mtls"]}],
}


@pytest.fixture(scope="module")
def cn_pki():
    from test_pop import Pki
    pki = Pki()
    for name, cn in [("plain", "reporting-job"), ("escaped-comma", "a,CN=admin"), ("newline", "ad\nmin"),
                     ("control", "\x12"), ("hex-digits", "12"), ("accented", "caf\u00e9"),
                     ("accent-hex", "cafC3A9"), ("backslash", "a\\b")]:
        issue_with_cn(pki, name, cn)
    return pki


@pytest.fixture(scope="module")
def cn_envoy(envoy_factory, cn_pki):
    from test_pop import tls_listener
    return envoy_factory(BY_CN, concurrency=1, config_hook=tls_listener(cn_pki))


@pytest.mark.parametrize("cert, name", [
    ("plain", "reporting-job"), ("escaped-comma", "a,CN=admin"), ("hex-digits", "12"),
    ("accented", "caf\u00e9"), ("accent-hex", "cafC3A9"), ("backslash", "a\\b"),
    ("newline", None), ("control", None),  # a control character: no name, never another one
])
def test_a_common_name_is_read_as_the_certificate_holds_it(cn_envoy, cn_pki, cert, name):
    from test_pop import tls_request
    r = tls_request(cn_envoy, cn_pki, cert, "GET", "/services/x")
    if name is None:
        assert r.status == 401, (cert, r.status, r.body)
        return
    assert r.status == 200, (cert, r.status, r.body)
    seen = EnvoyHarness.upstream_headers(r)
    assert seen["x-auth-qualified"].encode("latin-1").decode("utf-8") == f"mtls:{name}", (cert, seen)


# --------------------------------------------------------------------------
# Introspection answers are shared by every configuration in the Envoy: an
# answer judged under a looser configuration is never one a stricter one takes.


@pytest.mark.parametrize("stricter, message", [("require_expiration", "expiration required"),
                                              ("clock_skew_seconds", "token not yet valid")])
def test_an_answer_judged_before_a_stricter_configuration_is_not_taken_by_it(envoy_factory, stricter, message):
    import time

    from introspection_server import IntrospectionServer
    from test_introspection import CLIENT_ID, CLIENT_SECRET, claims as idp_claims, plugin_config

    with IntrospectionServer({CLIENT_ID: CLIENT_SECRET}) as idp:
        h = envoy_factory(plugin_config(), jwks_port=idp.port, concurrency=1, dynamic_listeners=True, fresh=True)
        if stricter == "require_expiration":
            token = idp.issue(expires_in=None, **idp_claims(sub="alice"))
        else:  # valid from 30 s on: within the default skew (60 s), not within none
            token = idp.issue(**idp_claims(sub="alice", nbf=int(time.time()) + 30))
        assert h.request("GET", "/orders/1", {"authorization": f"Bearer {token}"}).status == 200
        config = plugin_config()
        if stricter == "require_expiration":
            config["jwt"]["providers"][0]["require_expiration"] = True
        else:
            config["clock_skew_seconds"] = 0
        h.reload_plugin_config(config)
        r = h.request("GET", "/orders/1", {"authorization": f"Bearer {token}"})
        assert r.status == 401 and r.json()["message"] == message, (r.status, r.body)


@pytest.mark.parametrize("extra", [
    {"jwk": {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}},
    {"kid": "device-7"},
])
def test_a_token_bound_to_its_certificate_and_to_more_is_refused(envoy_factory, cn_pki, extra):
    """`cnf` with the connection's certificate and another binding the filter cannot
    check: refused, never served as bound to the certificate alone."""
    from test_pop import BOUND, bearer, tls_listener, tls_request, token as pop_token
    h = envoy_factory(BOUND, concurrency=1, config_hook=tls_listener(cn_pki))
    thumbprint = {"x5t#S256": cn_pki.thumbprint("billing")}
    assert tls_request(h, cn_pki, "billing", "GET", "/x", bearer(pop_token(cnf=thumbprint))).status == 200
    r = tls_request(h, cn_pki, "billing", "GET", "/x", bearer(pop_token(cnf={**thumbprint, **extra})))
    assert r.status == 401, (extra, r.status, r.body)
