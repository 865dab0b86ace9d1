"""Credentials a thief cannot replay, in a real Envoy 1.40 (issue 21): client
certificates as principals (`mtls`), certificate-bound tokens (RFC 8705 3).

The certificates are made here with `openssl` (a CA, Envoy's server certificate,
clients named by SPIFFE URI SANs and common names, and one from another CA); Envoy's
listener verifies client certificates when they are presented
(`validation_context`), and the filter reads what Envoy verified. Tokens are made
with PyJWT.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import os
import ssl
import subprocess
import tempfile
from typing import Dict, Optional

import pytest

from harness import EnvoyHarness, Headers, Response
import json

import jwt as pyjwt

from tokens import basic_header, jwk, mint, now, p256_key, sha256_hash

SPIFFE = "spiffe://example.org/ns"
BILLING = f"{SPIFFE}/prod/sa/billing"
WEB = f"{SPIFFE}/prod/sa/web"
DEV = f"{SPIFFE}/dev/sa/tool"


# --------------------------------------------------------------------------
# Certificates (openssl), made once per module


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    """A CA and the certificates it signed, in a temp dir: `path(name)` is name.pem,
    `key(name)` name.key; `digest(name)` the DER certificate's SHA-256 (hex)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="wasm-authn-pki-")
        self._ca("ca", "wasm-authn test CA")
        self._ca("rogue-ca", "someone else's CA")
        self.issue("server", "localhost", "DNS:localhost,IP:127.0.0.1", server=True)
        self.issue("billing", "billing", f"URI:{BILLING}")
        self.issue("billing2", "billing", f"URI:{BILLING}")  # the same name, another key
        self.issue("web", "web", f"URI:{WEB},DNS:web.example.org")
        self.issue("dev", "tool", f"URI:{DEV}")
        self.issue("cn-only", "reporting-job", None)
        self.issue("rogue", "billing", f"URI:{BILLING}", ca="rogue-ca")

    def _ca(self, name: str, cn: str) -> None:
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/O=wasm-authn/CN={cn}",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                cwd=self.dir)

    def issue(self, name: str, cn: str, san: Optional[str], server: bool = False, ca: str = "ca") -> None:
        ext = os.path.join(self.dir, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n")
            f.write(f"extendedKeyUsage={'serverAuth' if server else 'clientAuth'}\n")
            if san:
                f.write(f"subjectAltName={san}\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-subj", f"/O=wasm-authn/OU=tests/CN={cn}", cwd=self.dir)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=self.dir)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.pem")

    def key(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.key")

    def digest(self, name: str) -> bytes:
        with open(self.path(name), "rb") as f:
            return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read().decode())).digest()

    def thumbprint(self, name: str) -> str:
        """RFC 8705 3.1 `x5t#S256`."""
        return base64.urlsafe_b64encode(self.digest(name)).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def tls_listener(pki: Pki, require: bool = False):
    """A config_hook: the listener speaks TLS, and verifies a client certificate when
    one is presented (`require`: only connections with one; without, the tests can
    also try a connection that has none)."""
    def hook(cfg: dict) -> None:
        listener = cfg["static_resources"]["listeners"][0]
        listener["filter_chains"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": require,
                "common_tls_context": {
                    "tls_certificates": [{"certificate_chain": {"filename": pki.path("server")},
                                          "private_key": {"filename": pki.key("server")}}],
                    "validation_context": {"trusted_ca": {"filename": pki.path("ca")}},
                },
            },
        }
    return hook


def tls_request(h: EnvoyHarness, pki: Pki, cert: Optional[str], method: str = "GET", path: str = "/",
                headers: Optional[Dict[str, str]] = None, body: Optional[bytes] = None) -> Response:
    """One request over a fresh TLS connection, with client certificate `cert` (None: without)."""
    context = ssl.create_default_context(cafile=pki.path("ca"))
    if cert:
        context.load_cert_chain(pki.path(cert), pki.key(cert))
    conn = http.client.HTTPSConnection("127.0.0.1", h.listener_port, context=context, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, Headers(r.getheaders()), r.read())
    finally:
        conn.close()


def upstream(r: Response) -> Dict[str, str]:
    assert r.status == 200, (r.status, r.body)
    return EnvoyHarness.upstream_headers(r.body)


# --------------------------------------------------------------------------
# 1. Client certificates as principals

PASSWORD = "alice-S3cret!"

MTLS = {
    "principal_headers": {"qualified": "x-auth-qualified"},
    "basic": {"users": [{"name": "alice", "password_hash": sha256_hash(PASSWORD)}]},
    "mtls": {
        "principal_from": "uri_san",
        "principals": [{"name": BILLING, "methods": ["GET"], "scopes": ["invoices"]}],
        "allow_prefixes": [f"{SPIFFE}/prod/"],
    },
    "rules": [
        {"match": {"path_prefix": "/services"}, "require": ["mtls"]},
        {"match": {"path_prefix": "/billing-only"}, "require": ["mtls"], "principals": [f"mtls:{BILLING}"]},
        {"match": {"path_prefix": "/people"}, "require": ["basic"]},
    ],
}

BY_CN = {
    "mtls": {"principal_from": "subject_cn", "principals": [{"name": "reporting-job", "paths": ["/reports"]}]},
}


@pytest.fixture(scope="module")
def mtls_envoy(pki):
    with EnvoyHarness(MTLS, config_hook=tls_listener(pki)) as h:
        yield h


def test_a_spiffe_id_is_the_principal_with_its_privileges(mtls_envoy, pki):
    seen = upstream(tls_request(mtls_envoy, pki, "billing", "GET", "/services/invoices"))
    assert seen["x-auth-principal"] == BILLING
    assert seen["x-auth-method"] == "mtls"
    assert seen["x-auth-qualified"] == f"mtls:{BILLING}"
    # Its own privileges: GET only.
    r = tls_request(mtls_envoy, pki, "billing", "POST", "/services/invoices")
    assert r.status == 403 and b"method" in r.body
    assert upstream(tls_request(mtls_envoy, pki, "billing", "GET", "/billing-only"))["x-auth-principal"] == BILLING


def test_a_name_under_an_allowed_prefix_has_the_defaults_and_others_are_refused(mtls_envoy, pki):
    seen = upstream(tls_request(mtls_envoy, pki, "web", "POST", "/services/x"))
    assert seen["x-auth-qualified"] == f"mtls:{WEB}"
    assert tls_request(mtls_envoy, pki, "web", "GET", "/billing-only").status == 403
    r = tls_request(mtls_envoy, pki, "dev", "GET", "/services/x")
    assert r.status == 401
    assert "mtls_not_allowed" in mtls_envoy.log_text() or b"not allowed" in r.body


def test_never_from_a_header(mtls_envoy, pki):
    forged = {
        "x-forwarded-client-cert": f"By=spiffe://example.org/envoy;Hash=00;URI={BILLING}",
        "x-auth-principal": BILLING, "x-auth-method": "mtls",
    }
    assert tls_request(mtls_envoy, pki, None, "GET", "/services/x", forged).status == 401
    # With a certificate, the forged principal headers are replaced.
    seen = upstream(tls_request(mtls_envoy, pki, "web", "GET", "/services/x", forged))
    assert seen["x-auth-principal"] == WEB
    # Over plain HTTP, on a listener without TLS, there is no certificate.
    with EnvoyHarness(MTLS) as plain:
        assert plain.request("GET", "/services/x", forged).status == 401


def test_a_certificate_without_the_configured_name_names_nobody(mtls_envoy, pki):
    assert tls_request(mtls_envoy, pki, "cn-only", "GET", "/services/x").status == 401


def test_a_certificate_of_another_ca_never_reaches_the_filter(mtls_envoy, pki):
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls_request(mtls_envoy, pki, "rogue", "GET", "/services/x")


def test_a_header_credential_goes_first_where_the_rule_takes_it(mtls_envoy, pki):
    basic = {"authorization": basic_header("alice", PASSWORD)}
    assert upstream(tls_request(mtls_envoy, pki, "web", "GET", "/people", basic))["x-auth-qualified"] == "basic:alice"
    # A rule taking any credential: the header's (a user on a service's connection) ...
    assert upstream(tls_request(mtls_envoy, pki, "web", "GET", "/other", basic))["x-auth-principal"] == "alice"
    # ... else the certificate's.
    assert upstream(tls_request(mtls_envoy, pki, "web", "GET", "/other"))["x-auth-principal"] == WEB
    # A certificate-only rule ignores a header credential.
    assert upstream(tls_request(mtls_envoy, pki, "web", "GET", "/services/x", basic))["x-auth-principal"] == WEB
    # A Basic-only rule does not take a certificate.
    assert tls_request(mtls_envoy, pki, "web", "GET", "/people").status == 401


def test_a_listener_requiring_client_certificates(pki):
    with EnvoyHarness(MTLS, config_hook=tls_listener(pki, require=True)) as h:
        assert upstream(tls_request(h, pki, "billing", "GET", "/services/x"))["x-auth-principal"] == BILLING
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            tls_request(h, pki, None, "GET", "/services/x")


def test_a_common_name_is_the_principal(pki):
    with EnvoyHarness(BY_CN, config_hook=tls_listener(pki)) as h:
        seen = upstream(tls_request(h, pki, "cn-only", "GET", "/reports/daily"))
        assert seen["x-auth-principal"] == "reporting-job" and seen["x-auth-method"] == "mtls"
        assert tls_request(h, pki, "cn-only", "GET", "/other").status == 403
        assert tls_request(h, pki, "billing", "GET", "/reports/daily").status == 401, "not listed"


# --------------------------------------------------------------------------
# 2. Certificate-bound tokens (RFC 8705 3)

ISSUER = "https://id.pop.example"
STRICT_ISSUER = "https://strict.pop.example"
ENDPOINT_ISSUER = "https://auth.pop.example"
SIGNER = p256_key()
API_KEY = "rk-0123456789abcdef"


def pkcs8(private_key) -> str:
    from cryptography.hazmat.primitives import serialization
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()


BOUND = {
    "api_keys": {"clients": [{"id": "reports", "key_hash": sha256_hash(API_KEY)}], "allow_basic": False},
    "jwt": {"providers": [
        {"name": "corp", "issuer": ISSUER, "local_jwks": {"keys": [jwk(SIGNER, "k1", "ES256")]}},
        {"name": "strict", "issuer": STRICT_ISSUER, "require_certificate_binding": True,
         "local_jwks": {"keys": [jwk(SIGNER, "k1", "ES256")]}},
    ]},
    "token_endpoint": {"path": "/auth/token", "issuer": ENDPOINT_ISSUER, "lifetime_seconds": 600,
                       "signing_key": pkcs8(p256_key())},
    "cache": {"max_entries": 1024, "ttl_seconds": 300},
}


def token(issuer: str = ISSUER, cnf=None, sub: str = "alice") -> str:
    t = now()
    claims = {"iss": issuer, "sub": sub, "iat": t, "exp": t + 300}
    if cnf is not None:
        claims["cnf"] = cnf
    return mint(SIGNER, "ES256", claims, kid="k1")


def bearer(value: str) -> Dict[str, str]:
    return {"authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def bound_envoy(pki):
    with EnvoyHarness(BOUND, config_hook=tls_listener(pki)) as h:
        yield h


def test_a_certificate_bound_token_serves_only_its_certificate(bound_envoy, pki):
    bound = token(cnf={"x5t#S256": pki.thumbprint("billing")})
    # First on the right connection: verified, and remembered ...
    for _ in range(2):
        assert upstream(tls_request(bound_envoy, pki, "billing", "GET", "/x", bearer(bound)))["x-auth-principal"] == "alice"
    # ... which never lets another connection use it: another certificate, the same
    # name with another key, no certificate, plain HTTP.
    for cert in ["web", "billing2", None]:
        r = tls_request(bound_envoy, pki, cert, "GET", "/x", bearer(bound))
        assert r.status == 401, cert
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert b"another client certificate" in r.body
    # And the right one still works after the refusals.
    assert tls_request(bound_envoy, pki, "billing", "GET", "/x", bearer(bound)).status == 200


def test_an_unbound_token_passes_unless_the_provider_requires_a_binding(bound_envoy, pki):
    assert tls_request(bound_envoy, pki, None, "GET", "/x", bearer(token())).status == 200
    r = tls_request(bound_envoy, pki, "billing", "GET", "/x", bearer(token(STRICT_ISSUER)))
    assert r.status == 401 and b"not bound" in r.body
    strict = token(STRICT_ISSUER, cnf={"x5t#S256": pki.thumbprint("web")})
    assert tls_request(bound_envoy, pki, "web", "GET", "/x", bearer(strict)).status == 200
    assert tls_request(bound_envoy, pki, "billing", "GET", "/x", bearer(strict)).status == 401


def test_bindings_the_filter_cannot_check_are_refused(bound_envoy, pki):
    for cnf in [{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}, {"kid": "x"}, {"x5t#S256": 5}, "bound"]:
        r = tls_request(bound_envoy, pki, "billing", "GET", "/x", bearer(token(cnf=cnf)))
        assert r.status == 401, cnf


def test_the_token_endpoint_binds_tokens_to_the_client_certificate(bound_envoy, pki):
    body = json.dumps({"apiKey": API_KEY}).encode()
    headers = {"content-type": "application/json"}
    r = tls_request(bound_envoy, pki, "billing", "POST", "/auth/token", headers, body)
    assert r.status == 200, r.body
    issued = json.loads(r.body)
    assert issued["token_type"] == "Bearer"
    claims = pyjwt.decode(issued["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"x5t#S256": pki.thumbprint("billing")}
    assert upstream(tls_request(bound_envoy, pki, "billing", "GET", "/x", bearer(issued["access_token"])))
    assert tls_request(bound_envoy, pki, "web", "GET", "/x", bearer(issued["access_token"])).status == 401
    # Without a certificate, an unbound token.
    r = tls_request(bound_envoy, pki, None, "POST", "/auth/token", headers, body)
    assert "cnf" not in pyjwt.decode(json.loads(r.body)["access_token"], options={"verify_signature": False})


# --------------------------------------------------------------------------
# A client certificate inside a requirement tree (issue 22.1's example)

TREE = {
    "api_keys": {"clients": [{"id": "reports", "key_hash": sha256_hash(API_KEY)}], "allow_basic": False},
    "jwt": {"providers": [{"name": "corp", "issuer": ISSUER, "local_jwks": {"keys": [jwk(SIGNER, "k1", "ES256")]}}]},
    "mtls": {"principal_from": "uri_san", "allow_prefixes": [f"{SPIFFE}/prod/"]},
    "rules": [{"match": {"path_prefix": "/"}, "require": {"all": ["mtls", {"any": ["jwt:corp", "api-key"]}]},
               "principal_from": ["jwt:corp", "api-key"]}],
}


@pytest.fixture(scope="module")
def tree_envoy(pki):
    with EnvoyHarness(TREE, config_hook=tls_listener(pki)) as h:
        yield h


def test_a_certificate_and_one_of_two_credentials(tree_envoy, pki):
    # Both: the token's principal, the certificate reported beside it.
    seen = upstream(tls_request(tree_envoy, pki, "billing", "GET", "/x", bearer(token())))
    assert seen["x-auth-principal"] == "alice"
    assert seen["x-auth-also-mtls"] == f"mtls:{BILLING}"
    seen = upstream(tls_request(tree_envoy, pki, "web", "GET", "/x", {"x-api-key": API_KEY}))
    assert (seen["x-auth-principal"], seen["x-auth-also-mtls"]) == ("reports", f"mtls:{WEB}")
    # A certificate alone, or a credential without a certificate (or with a forged
    # x-auth-also-mtls header), is missing the other half.
    for cert, headers in [("billing", {}), (None, bearer(token())),
                          (None, {**bearer(token()), "x-auth-also-mtls": f"mtls:{BILLING}"}),
                          ("dev", bearer(token()))]:  # a name the mtls section does not admit
        r = tls_request(tree_envoy, pki, cert, "GET", "/x", headers)
        assert r.status in (401, 403), (cert, headers, r.status, r.body)
    # A bad token next to a good certificate is refused, never passed over.
    r = tls_request(tree_envoy, pki, "billing", "GET", "/x", bearer(token()[:-4] + "AAAA"))
    assert r.status == 401, r.body
