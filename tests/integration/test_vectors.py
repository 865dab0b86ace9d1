"""Known-answer vectors inside a real Envoy (issue 12): the BoringSSL path.

Envoy's `verify_signature` (RS256/384/512 and ES256 inside Envoy) can only be tried
in Envoy, with real JWS tokens. What maps onto a token is tested, each in an Envoy
with `envoy_crypto` on (BoringSSL) and one with it off (pure Rust), which must
answer alike:

- RFC 7515 Appendix A.1 (HS256), A.2 (RS256) and A.3 (ES256) with the RFC's keys.
  Their tokens expired in 2011: the filter checks claims only once the signature
  holds, so "token expired" proves the signature verified, and the same token
  with one signature bit flipped gets "signature verification failed". A.3 is
  also sent with `s` replaced by `n - s` (just as valid an ECDSA signature).
- Wycheproof's ECDSA P-256 (P1363) and RSA PKCS#1 v1.5 2048/SHA-256 vectors whose
  signature is invalid whatever the message (r or s out of range, wrong lengths,
  RSA signatures 0, 1, n-1, >= n), on a JWS signing input with the vector's key
  (tests/vectors/wycheproof_message_independent.json; 80 tokens, 18 keys).
  Wycheproof's other vectors sign arbitrary messages, never a
  `base64url(header).base64url(payload)`, so they cannot be sent as tokens: they
  run through the pure-Rust path in tests/vectors.rs.
- RFC 7515 A.4/A.5 and RFC 7520 / RFC 8037 examples carry payloads that are not
  claims sets (or `alg: none`): refused as malformed before any signature check.
"""
from __future__ import annotations

import base64
import json
import os

import pytest

from harness import EnvoyHarness

VECTORS = os.path.join(os.path.dirname(__file__), "..", "vectors")
EXAMPLES = json.load(open(os.path.join(VECTORS, "jose_examples.json")))
WYCHEPROOF = json.load(open(os.path.join(VECTORS, "wycheproof_message_independent.json")))
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def wycheproof_keys_and_tokens():
    keys, tokens = [], []
    payload = b64u(json.dumps({"iss": "wycheproof", "sub": "w", "exp": 4102444800}).encode())
    for family, alg in [("ecdsa", "ES256"), ("rsa", "RS256")]:
        for group in WYCHEPROOF[family]:
            kid = f"w-{family}-{group['group']}"
            keys.append({**group["jwk"], "kid": kid})
            header = b64u(json.dumps({"alg": alg, "kid": kid}).encode())
            for test in group["tests"]:
                tokens.append((f"{family} tc {test['tcId']} ({test['comment']})",
                               f"{header}.{payload}.{test['sig']}", test["sig"] == ""))
    return keys, tokens


WYCHEPROOF_KEYS, WYCHEPROOF_TOKENS = wycheproof_keys_and_tokens()


def config(envoy_crypto: bool) -> dict:
    rfc_keys = [{**EXAMPLES[name]["jwk"], "kid": name}
                for name in ("rfc7515_a1_hs256", "rfc7515_a2_rs256", "rfc7515_a3_es256")]
    return {
        "envoy_crypto": envoy_crypto,
        "jwt": {"providers": [
            {"name": "rfc7515", "issuer": "joe", "principal_claim": "iss", "local_jwks": {"keys": rfc_keys}},
            {"name": "wycheproof", "issuer": "wycheproof", "local_jwks": {"keys": WYCHEPROOF_KEYS}},
        ]},
    }


@pytest.fixture(scope="module", params=[True, False], ids=["boringssl", "pure-rust"])
def envoy(request, envoy_factory):
    h = envoy_factory(config(request.param))
    expected = "Envoy's BoringSSL where it can" if request.param else "pure Rust"
    assert f"signatures via {expected}" in h.log_text()
    return h


def description(r) -> str:
    assert r.status == 401, (r.status, r.headers, r.body)
    challenge = r.headers.get_all("www-authenticate")
    assert len(challenge) == 1 and 'error="invalid_token"' in challenge[0], challenge
    return r.json()["message"]


def send(h, token: str) -> str:
    return description(h.request("GET", "/vectors", {"authorization": "Bearer " + token}))


def flip_bit(token: str) -> str:
    signing_input, signature = token.rsplit(".", 1)
    sig = bytearray(unb64u(signature))
    sig[len(sig) // 2] ^= 0x01
    return f"{signing_input}.{b64u(bytes(sig))}"


@pytest.mark.parametrize("name", ["rfc7515_a1_hs256", "rfc7515_a2_rs256", "rfc7515_a3_es256"])
def test_rfc7515_signatures_verify(envoy, name):
    token = EXAMPLES[name]["compact"]
    assert send(envoy, token) == "token expired"
    assert send(envoy, flip_bit(token)) == "signature verification failed"


def test_rfc7515_es256_with_high_s_verifies(envoy):
    signing_input, signature = EXAMPLES["rfc7515_a3_es256"]["compact"].rsplit(".", 1)
    sig = unb64u(signature)
    s = int.from_bytes(sig[32:], "big")
    high_s = sig[:32] + (P256_N - s).to_bytes(32, "big")
    assert send(envoy, f"{signing_input}.{b64u(high_s)}") == "token expired"


@pytest.mark.parametrize("name", ["rfc7515_a4_es512", "rfc7515_a5_none", "rfc7520_4_1_rs256", "rfc7520_4_2_ps384",
                                  "rfc7520_4_4_hs256", "rfc8037_a4_eddsa"])
def test_examples_without_a_claims_set_are_malformed(envoy, name):
    assert send(envoy, EXAMPLES[name]["compact"]) == "malformed token"


def test_wycheproof_message_independent_signatures_are_refused(envoy):
    assert len(WYCHEPROOF_TOKENS) == 80
    wrong = []
    for label, token, empty in WYCHEPROOF_TOKENS:
        got = send(envoy, token)
        want = "malformed token" if empty else "signature verification failed"
        if got != want:
            wrong.append(f"{label}: {got}")
    assert not wrong, wrong
