"""Keys, JWKS and tokens for the integration tests, made independently of the
filter's Rust code: keys with `cryptography`, signed tokens with PyJWT, hostile
tokens by hand (base64url + hmac)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any, Dict, Optional, Union

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm


def b64u(data: Union[bytes, str]) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_json(obj: Any) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")))


def now() -> int:
    return int(time.time())


def sha256_hash(secret: str) -> str:
    """`sha256:<hex>` as the configuration expects."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def htpasswd_sha(secret: str) -> str:
    """htpasswd `{SHA}base64(sha1)`."""
    return "{SHA}" + base64.b64encode(hashlib.sha1(secret.encode()).digest()).decode()


def bcrypt_hash(secret: str, cost: int = 4, prefix: bytes = b"2b") -> str:
    import bcrypt
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=cost, prefix=prefix)).decode()


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk(key, kid: str, alg: Optional[str] = None) -> Dict[str, Any]:
    """The public JWK of a private key (or the `oct` JWK of an HMAC secret)."""
    if isinstance(key, (bytes, bytearray)):
        d = HMACAlgorithm.to_jwk(bytes(key), as_dict=True)
    elif isinstance(key, rsa.RSAPrivateKey):
        d = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        d = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        d = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        raise TypeError(type(key))
    d = {k: v for k, v in d.items() if k in ("kty", "n", "e", "crv", "x", "y", "k")}
    d["kid"] = kid
    if alg:
        d["alg"] = alg
    return d


def mint(key, alg: str, claims: Dict[str, Any], kid: Optional[str] = None,
         headers: Optional[Dict[str, Any]] = None) -> str:
    """A properly signed compact JWS, made by PyJWT."""
    h = dict(headers or {})
    if kid is not None:
        h["kid"] = kid
    return jwt.encode(claims, key, algorithm=alg, headers=h or None)


def raw_token(header: Union[Dict[str, Any], str], payload: Union[Dict[str, Any], str],
              signature: Union[bytes, str] = b"sig") -> str:
    """A compact JWS from parts; dicts are JSON+base64url, str parts are used verbatim."""
    h = b64u_json(header) if isinstance(header, dict) else header
    p = b64u_json(payload) if isinstance(payload, dict) else payload
    s = b64u(signature) if isinstance(signature, bytes) else signature
    return f"{h}.{p}.{s}"


def hmac_token(secret: bytes, header: Dict[str, Any], payload: Dict[str, Any], digest=hashlib.sha256) -> str:
    """HS* signed by hand (PyJWT refuses PEM public keys as HMAC secrets, on purpose)."""
    signing_input = f"{b64u_json(header)}.{b64u_json(payload)}"
    sig = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64u(sig)}"


def flip_signature(token: str) -> str:
    """The same token with one character in the middle of the signature changed
    (never the last one, whose low bits may be padding)."""
    h, p, s = token.split(".")
    i = len(s) // 2
    c = s[i]
    s = s[:i] + ("B" if c != "B" else "C") + s[i + 1:]
    return f"{h}.{p}.{s}"


def random_secret(n: int = 32) -> bytes:
    return os.urandom(n)
