"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

    .venv/bin/python fuzz/seeds.py

It overwrites the seeds it writes and leaves other files (inputs merged by
`FUZZ_MERGE=1`) alone. Tokens are minted with PyJWT and `cryptography` (not with the filter's code) with
the fixed keys of tests/keys and the secrets of fuzz/src/lib.rs, valid at the
harness's time (NOW). ECDSA and PSS signatures are randomized, so a new run
changes those seeds; the committed ones are what the README's figures started from.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import struct

import bcrypt
import jwt

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KEYS = os.path.join(ROOT, "tests", "keys")
CORPUS = os.path.join(HERE, "corpus")

# fuzz/src/lib.rs
NOW = 1_800_000_000
HMAC_SECRET = b"fuzz-hmac-secret-0123456789abcdef-fuzz-hmac-secret-0123456789ab!"
HMAC_SECRET_NO_KID = b"kidless-secret-0123456789abcdef!"
PASSWORD = "open-sesame"
DISABLED_KEY = "retired-key"
ISSUER = "https://id.fuzz.example"
STRICT_ISSUER = "https://strict.fuzz.example"
REMOTE_ISSUER = "https://remote.fuzz.example"


def key(name: str) -> bytes:
    with open(os.path.join(KEYS, name), "rb") as f:
        return f.read()


RSA, EC, ED = key("rsa2048_private.pem"), key("ec_p256_private.pem"), key("ed25519_private.pem")
PUBLIC_JWKS = json.loads(key("public_jwks.json"))
RFC = json.load(open(os.path.join(ROOT, "tests", "vectors", "jose_examples.json")))


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over):
    c = {"iss": ISSUER, "sub": "user-1", "iat": NOW - 60, "exp": NOW + 3600,
         "realm": {"roles": ["reader", "writer"]}, "team": "blue"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def tokens() -> dict:
    t = {}
    for alg in ["HS256", "HS384", "HS512"]:
        t[f"{alg.lower()}_kid"] = jwt.encode(claims(), HMAC_SECRET, algorithm=alg, headers={"kid": "hs"})
    t["hs256_no_kid"] = jwt.encode(claims(), HMAC_SECRET, algorithm="HS256")
    t["hs256_kidless_key"] = jwt.encode(claims(), HMAC_SECRET_NO_KID, algorithm="HS256", headers={"kid": "unknown"})
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
        t[alg.lower()] = jwt.encode(claims(), RSA, algorithm=alg, headers={"kid": "rsa"})
    t["rs256_no_kid"] = jwt.encode(claims(), RSA, algorithm="RS256")
    t["es256"] = jwt.encode(claims(), EC, algorithm="ES256", headers={"kid": "ec"})
    t["es256_no_kid"] = jwt.encode(claims(), EC, algorithm="ES256")
    t["eddsa"] = jwt.encode(claims(), ED, algorithm="EdDSA", headers={"kid": "ed"})
    t["strict"] = jwt.encode(claims(iss=STRICT_ISSUER, aud=["other", "api"], email="bob@example.com"),
                             HMAC_SECRET, algorithm="HS256", headers={"kid": "hs"})
    t["strict_too_long"] = jwt.encode(claims(iss=STRICT_ISSUER, aud="api", email="bob@example.com", exp=NOW + 7200),
                                      HMAC_SECRET, algorithm="HS256", headers={"kid": "hs"})
    t["remote"] = jwt.encode(claims(iss=REMOTE_ISSUER), HMAC_SECRET, algorithm="HS256", headers={"kid": "r1"})
    t["expired"] = jwt.encode(claims(exp=NOW - 3600, iat=NOW - 7200), HMAC_SECRET, algorithm="HS256",
                              headers={"kid": "hs"})
    t["not_yet"] = jwt.encode(claims(nbf=NOW + 3600), HMAC_SECRET, algorithm="HS256", headers={"kid": "hs"})
    t["fractional_dates"] = jwt.encode(claims(exp=NOW + 0.5, iat=NOW - 0.25), HMAC_SECRET, algorithm="HS256",
                                       headers={"kid": "hs"})
    t["numeric_sub"] = jwt.encode(claims(sub=12345), HMAC_SECRET, algorithm="HS256", headers={"kid": "hs"})
    t["wrong_alg_for_key"] = jwt.encode(claims(), HMAC_SECRET, algorithm="HS256", headers={"kid": "rsa"})
    t["crit"] = jwt.encode(claims(), HMAC_SECRET, algorithm="HS256", headers={"kid": "hs", "crit": ["exp"]})
    t["none"] = b64u(b'{"alg":"none"}') + "." + b64u(json.dumps(claims()).encode()) + "."
    t["rfc7515_a1"] = RFC["rfc7515_a1_hs256"]["compact"]
    return t


def write(target: str, name: str, data: bytes) -> None:
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def header_map(pairs) -> bytes:
    out = struct.pack("<I", len(pairs))
    for n, v in pairs:
        out += struct.pack("<II", len(n), len(v))
    for n, v in pairs:
        out += n + b"\0" + v + b"\0"
    return out


def request(method: str, path: str, *headers: str) -> bytes:
    return "\n".join([method, path, *headers]).encode()


def basic(user: str, password: str) -> str:
    return "authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def main() -> None:
    toks = tokens()

    # credential_extract: mode 0 = a request in text; mode 1 = the bytes a Basic header carries.
    reqs = {
        "basic": request("GET", "/", basic("alice", PASSWORD)),
        "bearer": request("GET", "/", "authorization: Bearer " + toks["hs256_kid"]),
        "api_key_headers": request("GET", "/", "x-cdata-authtoken: k2", "x-api-key: k1"),
        "query": request("GET", "/x?a=1&api_key=k%2B1&API_KEY=x&api.key=y&api_key[]=z", "authorization: Digest x"),
        "two_authorization": request("GET", "/", "authorization: Bearer a", "authorization: Basic Zm9vOmJhcg=="),
        "odd_spacing": request("GET", "/", "authorization:   bEaReR    a.b.c   ", "x-api-key: \t k \t"),
    }
    for name, data in reqs.items():
        write("credential_extract", name, b"\0" + data)
    write("credential_extract", "basic_text", b"\x01alice:pa:ss")
    write("credential_extract", "basic_latin1", b"\x01caf\xe9:x")

    # header_map: the proxy-wasm wire form.
    write("header_map", "request", header_map([(b":method", b"GET"), (b":path", b"/orders?x=1"),
                                                (b"authorization", b"Bearer a.b.c"), (b"x-api-key", b"k")]))
    write("header_map", "non_utf8", header_map([(b"x-auth-principal\xff", b"caf\xe9"), (b"a", b"")]))
    write("header_map", "empty", header_map([]))

    # path_normalize: raw path, NUL, configured prefix.
    for i, p in enumerate(["/healthz/../admin\0/healthz", "/public/%2e%2E/x\0/public/", "http://h:80/a//b/./c?q#f\0/a",
                           "/a%2Fb/..%5c\\c\0/a", "/caf\u00e9/%41%7e%3f%\0/", "*\0/healthz", "/healthzadmin\0/healthz"]):
        write("path_normalize", f"path{i}", p.encode())

    # jwt_verify and jwt_differential: mode 0 = a whole token; mode 1 = header NUL payload, signed by the harness.
    for name, tok in toks.items():
        write("jwt_verify", name, b"\0" + tok.encode())
        write("jwt_differential", name, b"\0" + tok.encode())
    payload = json.dumps(claims()).encode()
    for alg, kid in [("HS256", "hs"), ("HS512", None), ("ES256", "ec"), ("EdDSA", "ed")]:
        header = {"alg": alg, **({"kid": kid} if kid else {})}
        write("jwt_verify", f"signed_{alg.lower()}", b"\x01" + json.dumps(header).encode() + b"\0" + payload)
    strict = json.dumps(claims(iss=STRICT_ISSUER, aud="api", email="e@x", exp=NOW + 600)).encode()
    write("jwt_verify", "signed_strict", b"\x01" + b'{"alg":"HS256","kid":"hs"}\0' + strict)
    write("jwt_verify", "signed_flipped", b"\x05" + b'{"alg":"ES256","kid":"ec"}\0' + payload)
    for alg, kid in [("RS256", "rsa"), ("PS384", "rsa"), ("ES256", "ec"), ("EdDSA", "ed"), ("HS384", "hs")]:
        header = json.dumps({"alg": alg, "kid": kid}).encode()
        write("jwt_differential", f"signed_{alg.lower()}", b"\x01" + header + b"\0" + payload)
        write("jwt_differential", f"flipped_{alg.lower()}", b"\x03" + header + b"\0" + payload)
    write("jwt_differential", "high_s_es256", b"\x05" + b'{"alg":"ES256","kid":"ec"}\0' + payload)

    # jwks
    pub = PUBLIC_JWKS
    write("jwks", "all_kinds", json.dumps({"keys": [
        {**pub["rsa2048"], "kid": "r", "use": "sig", "alg": "RS256"}, {**pub["ec_p256"], "kid": "e"},
        {**pub["ed25519"], "kid": "d", "alg": "EdDSA"}, {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}).encode())
    write("jwks", "with_secret", json.dumps({"keys": [{"kty": "oct", "k": b64u(HMAC_SECRET), "kid": "hs"},
                                                       pub["ec_p256"]]}).encode())
    write("jwks", "weak_and_unknown", json.dumps({"keys": [pub["rsa1024"], {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
                                                            {"kty": "OKP", "crv": "Ed25519", "x": b64u(bytes(32))},
                                                            {"kty": "XYZ"}, pub["ed25519"]]}).encode())
    write("jwks", "rfc_keys", json.dumps({"keys": [RFC["rfc7515_a2_rs256"]["jwk"], RFC["rfc7515_a3_es256"]["jwk"],
                                                    RFC["rfc8037_a4_eddsa"]["jwk"], RFC["rfc7520_4_4_hs256"]["jwk"]]}).encode())

    # discovery
    write("discovery", "google_like", json.dumps({"issuer": "https://accounts.example", "jwks_uri":
                                                  "https://Accounts.Example:8443/oauth2/v3/certs?v=1#frag",
                                                  "id_token_signing_alg_values_supported": ["RS256"]}).encode())
    write("discovery", "no_path", b'{"jwks_uri":"http://idp"}')

    # config: the harness's own configuration, the bundled one, and misplaced secrets.
    fuzz_config = {
        "bypass": [{"path_prefix": "/healthz"}, {"path_prefix": "/public/", "method": "GET"}],
        "bypass_cors_preflight": True, "realm": "api", "clock_skew_seconds": 60, "forward_credentials": False,
        "principal_headers": {"principal": "x-auth-principal", "method": "x-auth-method", "provider": "x-auth-provider"},
        "basic": {"users": [{"name": "alice", "password_hash": "sha256:" + hashlib.sha256(PASSWORD.encode()).hexdigest()},
                            {"name": "bob", "password_hash": bcrypt.hashpw(b"pw", b"$2b$04$abcdefghijklmnopqrstuu").decode()}],
                  "htpasswd": "carol:{SHA}" + base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode() + "\n# c\n",
                  "failure_limit": {"max_failures": 10, "window_seconds": 60}, "slow_hash_budget_ms_per_second": 250},
        "api_keys": {"headers": ["x-api-key"], "query_param": "api_key", "allow_basic": True,
                     "clients": [{"id": "reporting", "key_hash": "sha256:" + hashlib.sha256(PASSWORD.encode()).hexdigest()},
                                 {"id": "old", "key_hash": "sha256:" + hashlib.sha256(DISABLED_KEY.encode()).hexdigest(),
                                  "disabled": True}]},
        "jwt": {"jwks_wait_ms": 2000, "providers": [
            {"name": "corp", "issuer": ISSUER, "audiences": ["api"], "require_expiration": True,
             "max_lifetime_seconds": 86400, "principal_claim": "sub",
             "local_jwks": {"keys": [{**pub["rsa2048"], "kid": "rsa"}, {**pub["ec_p256"], "kid": "ec"},
                                     {"kty": "oct", "kid": "hs", "k": b64u(HMAC_SECRET)}]},
             "local_pem": key("ed25519_public.pem").decode(),
             "claim_to_headers": [{"claim": "realm.roles", "header": "x-roles"}]},
            {"name": "remote", "issuer": REMOTE_ISSUER, "remote_jwks": {
                "cluster": "jwks", "authority": "jwks.local", "path": "/jwks.json", "refresh_seconds": 300,
                "timeout_ms": 2000, "min_refetch_seconds": 30, "max_response_bytes": 65536}},
            {"name": "oidc", "issuer": "https://accounts.example", "discovery": {
                "cluster": "oidc", "authority": "accounts.example", "jwks_cluster": "jwks"}}]},
        "cache": {"max_entries": 4096, "ttl_seconds": 300}, "envoy_crypto": True,
    }
    write("config", "full", json.dumps(fuzz_config, indent=1).encode())
    write("config", "minimal_basic", b'{"basic":{"users":[{"name":"a","password_hash":"sha256:' +
          hashlib.sha256(b"x").hexdigest().encode() + b'"}]}}')
    write("config", "secret_as_number", b'{"basic":{"failure_limit":"SECRET-hunter2","users":[]}}')
    write("config", "secret_in_enum", b'{"realm":["SECRET-1"],"jwt":{"providers":[{"name":"SECRET-2","issuer":"i",'
                                      b'"local_jwks":{"keys":[{"kty":"oct","k":"SECRET-3"}]}}]}}')
    write("config", "secret_bad_hash", b'{"api_keys":{"clients":[{"id":"c","key_hash":"SECRET-plaintext"}]}}')
    write("config", "bypass_odd", b'{"bypass":[{"path_prefix":"/a/../SECRET"},{"method":"G3T"}],"api_keys":{"clients":[]}}')
    with open(os.path.join(ROOT, "envoy", "envoy.yaml")) as f:
        import yaml
        cfg = yaml.safe_load(f)
    for listener in cfg["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for filt in chain["filters"]:
                for http_filter in filt["typed_config"].get("http_filters", []):
                    if http_filter["name"] == "envoy.filters.http.wasm":
                        write("config", "bundled", http_filter["typed_config"]["config"]["configuration"]["value"].encode())

    # verify_signature_reply
    for name, data in {"true": b"\x08\x01", "false_error": b"\x12\x03bad", "error_then_true": b"\x12\x03bad\x08\x01",
                       "long_varint": b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "fixed32": b"\x0d\0\0\0\0",
                       "args": b"sha256\xff0Y0\x13\x06\x07\xff\x30\x45\xffheader.payload"}.items():
        write("verify_signature_reply", name, data)

    # shared_records: record NUL body NUL slot NUL numbers
    jwks = json.dumps({"keys": [{**pub["ec_p256"], "kid": "e"}]}).encode()
    slot = b"\x01" + struct.pack("<6Q", 7, NOW, 1, 2, 3, 4) * 2
    write("shared_records", "fresh", b"1 0 0 0 0 0\0" + jwks + b"\0" + slot + b"\0" + struct.pack("<6Q", 5, 1, 2, 7, 9, 9))
    write("shared_records", "failing", b"1 1800000005000 1799999000000 0 4 1800000001000\0{}\0\x01\0" + b"\x10" * 48)
    write("shared_records", "huge", b"1 18446744073709551615 18446744073709551615 18446744073709551615 4294967295 "
                                    b"18446744073709551615\0" + jwks + b"\0\x02\0")

    # decide: the harness's configuration (fuzz/src/lib.rs).
    d = {
        "basic_alice": request("GET", "/orders", basic("alice", PASSWORD)),
        "basic_carol_sha1": request("GET", "/orders", basic("carol", PASSWORD)),
        "basic_wrong": request("GET", "/orders", basic("alice", "nope")),
        "basic_client": request("POST", "/orders", basic("reporting", PASSWORD)),
        "basic_disabled": request("POST", "/orders", basic("retired", DISABLED_KEY)),
        "api_key": request("GET", "/orders", "x-api-key: " + PASSWORD, "x-auth-principal: admin", "X_Auth_Method: basic"),
        "api_key_query": request("GET", "/orders?api_key=" + PASSWORD + "&Api.Key=x", "x-cdata-authtoken: " + DISABLED_KEY),
        "disabled_and_valid": request("GET", "/orders", "x-api-key: " + DISABLED_KEY, "x-cdata-authtoken: " + PASSWORD),
        "bypass": request("GET", "/healthz/live", "x-auth-principal: admin", "authorization: Bearer x.y.z"),
        "bypass_escape": request("GET", "/healthz/..%2fadmin", "x-api-key: " + PASSWORD),
        "public_get": request("GET", "/public/../public/x?api_key=zz"),
        "preflight": request("OPTIONS", "/orders", "origin: https://app", "access-control-request-method: PUT"),
        "none": request("GET", "/orders"),
        "forged_roles": request("GET", "/orders", "authorization: Bearer " + toks["hs256_kid"], "x-roles: admin",
                                "x_team: red"),
    }
    for name in ["rs256", "es256", "eddsa", "ps256", "strict", "remote", "expired", "hs256_kidless_key"]:
        d[f"bearer_{name}"] = request("GET", "/orders", "authorization: Bearer " + toks[name])
    for name, data in d.items():
        write("decide", name, data)

    for target in sorted(os.listdir(CORPUS)):
        print(f"{target}: {len(os.listdir(os.path.join(CORPUS, target)))} seeds")


if __name__ == "__main__":
    main()
