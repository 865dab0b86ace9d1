"""Client keypairs (issue 11.1) in a real Envoy with four workers: each client
registers a public key and signs its own short-lived tokens, exactly as
thirdweb Engine's clients do (PyJWT, `iss` = the PEM text of the public key).
"""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tokens import ed25519_key, flip_signature, hmac_token, mint, now, p256_key, public_pem, rsa_key

KEYS = {
    "rsa-client": rsa_key(),
    "p256-client": p256_key(),
    "p384-client": ec.generate_private_key(ec.SECP384R1()),
    "ed-client": ed25519_key(),
    "once-client": p256_key(),
    "reader": p256_key(),
}
UNREGISTERED = p256_key()


def pem(name: str) -> str:
    return public_pem(KEYS[name]).decode()


CONFIG = {
    "keypairs": [
        {"id": "rsa-client", "public_key": pem("rsa-client")},
        {"id": "p256-client", "public_key": pem("p256-client"), "max_lifetime_seconds": 30},
        {"id": "p384-client", "public_key": pem("p384-client")},
        {"id": "ed-client", "public_key": pem("ed-client")},
        {"id": "once-client", "public_key": pem("once-client"), "one_time": True},
        {"id": "reader", "public_key": pem("reader"), "methods": ["GET"]},
    ],
}


@pytest.fixture(scope="module")
def envoy(envoy_factory):
    return envoy_factory(CONFIG, concurrency=4)


def thirdweb_token(name: str, alg: str, *, key=None, lifetime: int = 15, **claims) -> str:
    """What a thirdweb client sends: iss = its public key's PEM, 15 seconds to live."""
    t = now()
    body = {"iss": pem(name), "iat": t, "exp": t + lifetime, **claims}
    return mint(key or KEYS[name], alg, body)


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


def refusal(r) -> str:
    assert r.status == 401, (r.status, r.body)
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="api", error="invalid_token"'), challenge
    return r.json()["message"]


@pytest.mark.parametrize("name, alg", [
    ("rsa-client", "RS256"), ("rsa-client", "PS256"), ("p256-client", "ES256"),
    ("p384-client", "ES384"), ("ed-client", "EdDSA"),
])
def test_each_algorithm_signs_tokens_the_filter_accepts(envoy, name, alg):
    r = envoy.request("GET", "/orders", {**bearer(thirdweb_token(name, alg)), "x-auth-principal": "forged"})
    assert r.status == 200, (r.status, r.body)
    upstream = envoy.upstream_headers(r)
    assert upstream["x-auth-principal"] == name
    assert upstream["x-auth-method"] == "keypair"
    assert "x-auth-provider" not in upstream
    assert "authorization" not in upstream


def test_the_issuer_may_be_the_pem_with_crlf_or_the_id(envoy):
    t = now()
    crlf = pem("p256-client").replace("\n", "\r\n")
    for iss in (crlf, "  " + pem("p256-client") + "\n\n", "p256-client"):
        token = mint(KEYS["p256-client"], "ES256", {"iss": iss, "iat": t, "exp": t + 10})
        r = envoy.request("GET", "/", bearer(token))
        assert r.status == 200, (iss, r.status, r.body)
        assert envoy.upstream_headers(r)["x-auth-principal"] == "p256-client"


def test_expired_too_long_wrong_key_and_unknown_key_are_refused(envoy):
    t = now()
    expired = mint(KEYS["p256-client"], "ES256", {"iss": pem("p256-client"), "iat": t - 200, "exp": t - 180})
    assert refusal(envoy.request("GET", "/", bearer(expired))) == "token expired"
    too_long = thirdweb_token("p256-client", "ES256", lifetime=31)  # its max is 30
    assert "lifetime" in refusal(envoy.request("GET", "/", bearer(too_long)))
    # Without iat the lifetime counts from now; and the default max is 60.
    no_iat = mint(KEYS["rsa-client"], "RS256", {"iss": pem("rsa-client"), "exp": t + 120})
    assert "lifetime" in refusal(envoy.request("GET", "/", bearer(no_iat)))
    no_exp = mint(KEYS["rsa-client"], "RS256", {"iss": pem("rsa-client"), "iat": t})
    assert "expiration" in refusal(envoy.request("GET", "/", bearer(no_exp)))
    # Signed with another key than the one registered for that iss.
    wrong_key = thirdweb_token("p256-client", "ES256", key=UNREGISTERED)
    assert refusal(envoy.request("GET", "/", bearer(wrong_key))) == "signature verification failed"
    forged = flip_signature(thirdweb_token("ed-client", "EdDSA"))
    assert refusal(envoy.request("GET", "/", bearer(forged))) == "signature verification failed"
    # A key nobody registered, naming itself.
    unknown = mint(UNREGISTERED, "ES256", {"iss": public_pem(UNREGISTERED).decode(), "iat": t, "exp": t + 10})
    assert refusal(envoy.request("GET", "/", bearer(unknown))) == "unknown issuer"
    # An algorithm the key does not take (RSA keys: RS256 and PS256 by default).
    rs512 = thirdweb_token("rsa-client", "RS512")
    assert "algorithm" in refusal(envoy.request("GET", "/", bearer(rs512)))
    # The classic confusion: HS256 with the public PEM (which the client's iss carries) as the secret.
    for name in ("p256-client", "rsa-client", "ed-client"):
        confused = hmac_token(pem(name).encode(), {"alg": "HS256", "typ": "JWT"},
                              {"iss": pem(name), "iat": t, "exp": t + 10})
        assert "algorithm" in refusal(envoy.request("GET", "/", bearer(confused))), name
    stats = envoy.wasm_stats()
    for reason in ("jwt_expired", "jwt_lifetime", "jwt_bad_signature", "jwt_unknown_issuer", "jwt_algorithm"):
        assert stats.get(f"wasm_authn.denied.{reason}", 0) >= 1, (reason, stats)


def test_a_one_time_token_is_accepted_once_across_workers(envoy):
    token = thirdweb_token("once-client", "ES256", jti="job-1")
    first = envoy.request("GET", "/", bearer(token))
    assert first.status == 200, first.body
    # Every later use, on fresh connections (so on other workers too), is a replay.
    for _ in range(8):
        assert refusal(envoy.request("GET", "/", bearer(token))) == "token already used"
    assert envoy.wasm_stats().get("wasm_authn.denied.token_replayed", 0) >= 8
    assert envoy.request("GET", "/", bearer(thirdweb_token("once-client", "ES256", jti="job-2"))).status == 200
    no_jti = thirdweb_token("once-client", "ES256")
    assert "jti" in refusal(envoy.request("GET", "/", bearer(no_jti)))


def test_a_keypair_takes_the_privileges_it_is_configured_with(envoy):
    assert envoy.request("GET", "/", bearer(thirdweb_token("reader", "ES256"))).status == 200
    r = envoy.request("POST", "/", bearer(thirdweb_token("reader", "ES256")), body=b"{}")
    assert r.status == 403 and r.json()["error"] == "forbidden", (r.status, r.body)
    # Claims grant nothing: a keypair cannot name another principal.
    t = now()
    token = mint(KEYS["reader"], "ES256", {"iss": pem("reader"), "iat": t, "exp": t + 10, "sub": "rsa-client"})
    r = envoy.request("GET", "/", bearer(token))
    assert envoy.upstream_headers(r)["x-auth-principal"] == "reader"


def test_a_keypair_cannot_claim_a_providers_issuer(cli):
    from harness import cli_check
    config = {**CONFIG, "jwt": {"providers": [
        {"name": "corp", "issuer": "reader", "local_pem": pem("rsa-client")}]}}
    code, output = cli_check(config)
    assert code != 0 and "keypairs[5].id" in output, output
    code, output = cli_check({**CONFIG, "keypairs": CONFIG["keypairs"] + [{"id": "copy", "public_key": pem("reader")}]})
    assert code != 0 and "keypairs[6].public_key" in output and "BEGIN" not in output, output
