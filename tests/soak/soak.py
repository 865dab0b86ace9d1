#!/usr/bin/env python3
"""`make soak`: wasm-authn in a real Envoy under steady load while its JWKS
endpoint flaps, keys rotate, a key is removed and the plugin configuration is
reloaded. Prints a table at the end and exits non-zero if any check failed.

What runs (everything on 127.0.0.1):
  - Envoy 1.40 with --concurrency 2 (SOAK_CONCURRENCY), envoy/envoy.yaml with the
    ports and the plugin configuration replaced, the listener served from a
    watched file (file-based LDS, so the plugin configuration can be replaced
    without a restart) and the route answering 200 itself with the principal
    headers the filter set copied into the response (x-soak-principal, ...), so
    that every 200 is checked for the right principal and a removed credential.
  - the real module target/wasm32-wasip1/release/wasm_authn.wasm
  - a JwksServer (tests/integration/harness.py) behind the `jwks` cluster
  - wrk with tests/soak/soak.lua (one connection per thread, so every response is
    attributed to its request), or a Python client when wrk is missing (SOAK_LOAD)

Credentials (made here with PyJWT, cryptography and bcrypt, never with the
filter's code): three JWT providers (remote JWKS fetched by the filter; local
JWKS RS256 + HS256; local PEM Ed25519), Basic (sha256, bcrypt, htpasswd {SHA}),
API keys (header and client-id:key as Basic); and bad ones: bad signatures,
expired, unknown issuer, unknown kid, wrong audience, wrong passwords (for user
names of their own, never those of the valid classes), unknown users, wrong and
disabled API keys, no credential.

The fault cycle, repeated while time remains (at least once):
  1. rotation: a new RSA key is published next to the current one and tokens
     signed by it are sent from then on (the filter meets an unknown kid)
  2. the endpoint fails in each way in turn, each until the filter has failed
     twice, then recovers: slow beyond timeout_ms, HTTP 500, garbage, connection
     refused, a body over max_response_bytes
  3. the old key is removed from the endpoint; its tokens keep coming (now invalid)
  4. (first cycle only) the plugin configuration is reloaded: API client
     soak-retiring is disabled and soak-new added
  5. quiet: two refresh intervals with a healthy endpoint

Environment:
  SOAK_SECONDS (240)           load duration; the first cycle always completes
  SOAK_REFRESH_SECONDS         remote_jwks.refresh_seconds (10; 4 when SOAK_SECONDS < 180)
  SOAK_MIN_REFETCH_SECONDS     remote_jwks.min_refetch_seconds (2.5 x refresh)
  SOAK_WARMUP_SECONDS (60)     memory baseline taken after this (at most 40% of the run)
  SOAK_RSS_GROWTH_MIB (8)      allowed RSS growth after warm-up
  SOAK_CONCURRENCY (2)         Envoy worker threads
  SOAK_CONNECTIONS (8)         load connections (= wrk threads)
  SOAK_POOL (1000)             tokens per large pool (RS256/ES256 classes); smaller ones are a fifth
  SOAK_LOAD (wrk | python)     load generator; default wrk when installed
  SOAK_OUTPUT_DIR (target/soak/last)  pools, raw counts, timeline, Envoy log, table
  ENVOY_BIN, WASM_AUTHN_WASM   as for the integration tests
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import bcrypt  # noqa: E402
import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402
from jwt.algorithms import ECAlgorithm, RSAAlgorithm  # noqa: E402

from harness import EnvoyHarness, JwksServer, Reply, envoy_bin  # noqa: E402


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


SECONDS = env_int("SOAK_SECONDS", 240)
REFRESH = env_int("SOAK_REFRESH_SECONDS", 10 if SECONDS >= 180 else 4)
MIN_REFETCH = env_int("SOAK_MIN_REFETCH_SECONDS", math.ceil(REFRESH * 2.5))
WARMUP = min(env_int("SOAK_WARMUP_SECONDS", 60), int(SECONDS * 0.4))
RSS_GROWTH_MIB = env_int("SOAK_RSS_GROWTH_MIB", 8)
CONCURRENCY = env_int("SOAK_CONCURRENCY", 2)
CONNECTIONS = env_int("SOAK_CONNECTIONS", 8)
LOAD = os.environ.get("SOAK_LOAD", "").strip() or ("wrk" if shutil.which("wrk") else "python")
OUT = os.path.abspath(os.environ.get("SOAK_OUTPUT_DIR", "").strip() or os.path.join(ROOT, "target", "soak", "last"))

TIMEOUT_MS = 1000          # remote_jwks.timeout_ms; "slow" answers after 3x that
MAX_BYTES = 16384          # remote_jwks.max_response_bytes
JWKS_WAIT_MS = 2000
JWKS_PATH = "/jwks.json"
DRAIN_SECONDS = 3          # Envoy --drain-time-s: old connections after the reload
PROVIDER = "remote"
FAILED_STAT = f"wasmcustom.wasm_authn.jwks_fetch_failed.{PROVIDER}"
SUCCESS_STAT = f"wasmcustom.wasm_authn.jwks_fetch_success.{PROVIDER}"

ISS_REMOTE = "https://remote.soak.local"
ISS_LOCAL = "https://local.soak.local"
ISS_PEM = "https://pem.soak.local"
AUDIENCE = "soak-api"

# Classification margins (seconds), applied to the send time of a request:
ADD_MARGIN = 0.3        # a key counts as fetched from this long after the fetch that brought it
REMOVE_LEAD = 1.0       # ...and until this long before the fetch that dropped it
REMOVE_GRACE = 2.5      # a dropped key's tokens must fail from this long after that fetch
                        # (other workers pick the new set up on their 1 s tick; their caches go with it)
RELOAD_LEAD, RELOAD_TAIL = 0.5, 1.0   # around [reload written, old connections drained]
TOL_EARLY, TOL_LATE = 0.3, 2.5        # refresh due after exactly REFRESH s; ticks are 1 s apart

START = time.time()


def log(msg: str) -> None:
    print(f"soak [{time.time() - START:6.1f}s] {msg}", flush=True)


# =========================================================================== credentials


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sha256_hash(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def flip(token: str) -> str:
    h, p, s = token.split(".")
    i = len(s) // 2
    return f"{h}.{p}.{s[:i]}{'B' if s[i] != 'B' else 'C'}{s[i + 1:]}"


class Signer:
    def __init__(self, kid: Optional[str], alg: str, key, iss: str):
        self.kid, self.alg, self.key, self.iss = kid, alg, key, iss

    def jwk(self) -> dict:
        algo = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        d = algo.to_jwk(self.key.public_key(), as_dict=True)
        d.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return d

    def token(self, sub: str, exp_in: int, iss: Optional[str] = None, aud: str = AUDIENCE) -> str:
        now = int(time.time())
        claims = {"iss": iss or self.iss, "sub": sub, "aud": aud, "iat": now if exp_in > 0 else now + exp_in - 3600,
                  "exp": now + exp_in, "jti": uuid.uuid4().hex}
        headers = {"kid": self.kid} if self.kid else None
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Material:
    """Every key, secret and credential of the soak."""

    def __init__(self):
        self.lifetime = SECONDS + 4 * 3600
        self.stable = Signer("remote-stable", "ES256", ec.generate_private_key(ec.SECP256R1()), ISS_REMOTE)
        self.rotating: Dict[int, Signer] = {}
        self.ghost = Signer("never-published", "RS256", rsa_key(), ISS_REMOTE)
        self.local_rs = Signer("local-rs256", "RS256", rsa_key(), ISS_LOCAL)
        self.hmac_secret = secrets.token_bytes(32)
        self.local_hs = Signer("local-hs256", "HS256", self.hmac_secret, ISS_LOCAL)
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.pem = Signer(None, "EdDSA", self.ed, ISS_PEM)
        # alice, bob, carol and soak-client only ever send their right secret; the wrong
        # passwords go to dave, erin and soak-target, so that a per-name failure limit
        # (a lockout of guessed names) can never touch the valid classes.
        self.passwords = {u: secrets.token_urlsafe(12) for u in ("alice", "bob", "carol", "dave", "erin")}
        self.api_keys = {c: secrets.token_urlsafe(24) for c in
                         ("soak-client", "soak-target", "soak-disabled", "soak-retiring", "soak-new")}
        self.bob_hash = bcrypt.hashpw(self.passwords["bob"].encode(), bcrypt.gensalt(rounds=4)).decode()
        self.erin_hash = bcrypt.hashpw(self.passwords["erin"].encode(), bcrypt.gensalt(rounds=4)).decode()

    def rot(self, n: int) -> Signer:
        if n not in self.rotating:
            self.rotating[n] = Signer(f"rot-{n}", "RS256", rsa_key(), ISS_REMOTE)
        return self.rotating[n]

    def jwks(self, rot_kids: List[int]) -> dict:
        return {"keys": [self.stable.jwk()] + [self.rot(n).jwk() for n in rot_kids]}

    def plugin_config(self, reloaded: bool = False) -> dict:
        carol = "{SHA}" + base64.b64encode(hashlib.sha1(self.passwords["carol"].encode()).digest()).decode()
        clients = [
            {"id": "soak-client", "key_hash": sha256_hash(self.api_keys["soak-client"])},
            {"id": "soak-target", "key_hash": sha256_hash(self.api_keys["soak-target"])},
            {"id": "soak-disabled", "key_hash": sha256_hash(self.api_keys["soak-disabled"]), "disabled": True},
            {"id": "soak-retiring", "key_hash": sha256_hash(self.api_keys["soak-retiring"]), "disabled": reloaded},
        ]
        if reloaded:
            clients.append({"id": "soak-new", "key_hash": sha256_hash(self.api_keys["soak-new"])})
        pem = self.ed.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return {
            "realm": "soak",
            "basic": {"users": [{"name": "alice", "password_hash": sha256_hash(self.passwords["alice"])},
                                {"name": "bob", "password_hash": self.bob_hash},
                                {"name": "dave", "password_hash": sha256_hash(self.passwords["dave"])},
                                {"name": "erin", "password_hash": self.erin_hash}],
                      "htpasswd": f"# soak\ncarol:{carol}\n"},
            "api_keys": {"headers": ["x-api-key"], "allow_basic": True, "clients": clients},
            "jwt": {
                "jwks_wait_ms": JWKS_WAIT_MS,
                "providers": [
                    {"name": PROVIDER, "issuer": ISS_REMOTE, "audiences": [AUDIENCE],
                     "remote_jwks": {"cluster": "jwks", "authority": "jwks.soak.local", "path": JWKS_PATH,
                                     "refresh_seconds": REFRESH, "timeout_ms": TIMEOUT_MS,
                                     "min_refetch_seconds": MIN_REFETCH, "max_response_bytes": MAX_BYTES}},
                    {"name": "local", "issuer": ISS_LOCAL, "audiences": [AUDIENCE],
                     "local_jwks": {"keys": [self.local_rs.jwk(),
                                             {"kty": "oct", "kid": "local-hs256", "alg": "HS256",
                                              "k": b64u(self.hmac_secret)}]}},
                    {"name": "pem", "issuer": ISS_PEM, "audiences": [AUDIENCE], "local_pem": pem},
                ],
            },
            # Small on purpose: pools are larger, so signatures are really checked all along.
            "cache": {"max_entries": 512, "ttl_seconds": 30},
        }


# =========================================================================== load control files

# label -> (kind, weight); kind "valid" or "invalid" for labels whose expectation never
# changes; rotation labels (jwt.remote.rot-N) and reload labels are judged by time.
STATIC: Dict[str, Tuple[str, int]] = {
    "valid.jwt.remote.es256": ("valid", 3),
    "valid.jwt.local.rs256": ("valid", 3),
    "valid.jwt.local.hs256": ("valid", 2),
    "valid.jwt.pem.eddsa": ("valid", 2),
    "valid.basic.sha256": ("valid", 2),
    "valid.basic.bcrypt": ("valid", 2),
    "valid.basic.htpasswd-sha1": ("valid", 2),
    "valid.apikey.header": ("valid", 2),
    "valid.apikey.as-basic": ("valid", 2),
    "invalid.jwt.bad-signature.remote": ("invalid", 1),
    "invalid.jwt.bad-signature.local": ("invalid", 1),
    "invalid.jwt.expired.remote": ("invalid", 1),
    "invalid.jwt.expired.local": ("invalid", 1),
    "invalid.jwt.unknown-issuer": ("invalid", 1),
    "invalid.jwt.unknown-kid": ("invalid", 1),
    "invalid.jwt.wrong-audience": ("invalid", 1),
    "invalid.basic.wrong-password": ("invalid", 1),
    "invalid.basic.unknown-user": ("invalid", 1),
    "invalid.apikey.wrong": ("invalid", 1),
    "invalid.apikey.disabled": ("invalid", 1),
    "invalid.none": ("invalid", 1),
}
RELOAD_LABELS = {"reload.apikey.retiring": "before", "reload.apikey.new": "after"}  # valid before / after
ROT_CURRENT_WEIGHT, ROT_OLD_WEIGHT, RELOAD_WEIGHT = 3, 2, 2


def rot_label(n: int) -> str:
    return f"jwt.remote.rot-{n}"


class Control:
    """The files the load generator reads: immutable pools and a mix that changes."""

    def __init__(self, root: str):
        self.root = root
        os.makedirs(os.path.join(root, "pools"))
        os.makedirs(os.path.join(root, "out"))
        self.version = 0
        self.mix: Dict[str, Tuple[int, str, int]] = {}  # label -> (weight, pool file, bucket ms)
        self.lock = threading.Lock()

    def pool(self, label: str, rows: List[Tuple[str, str, Optional[str]]]) -> str:
        name = f"pools/{label}.txt"
        with open(os.path.join(self.root, name), "w") as f:
            for header, value, principal in rows:
                f.write(f"{header}\t{value}\t{principal or '-'}\n")
        return name

    def set(self, label: str, weight: int, pool: str, bucket_ms: int) -> None:
        with self.lock:
            self.mix[label] = (weight, pool, bucket_ms)

    def drop(self, label: str) -> None:
        with self.lock:
            self.mix.pop(label, None)

    def publish(self) -> None:
        with self.lock:
            self.version += 1
            lines = [f"version {self.version}"]
            lines += [f"{label}\t{w}\t{p}\t{b}" for label, (w, p, b) in sorted(self.mix.items())]
            text = "\n".join(lines) + "\nend\n"
            tmp = os.path.join(self.root, f".mix.{self.version}.tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, os.path.join(self.root, "mix.txt"))


def bearer_rows(tokens: List[Tuple[str, Optional[str]]]) -> List[Tuple[str, str, Optional[str]]]:
    return [("authorization", f"Bearer {t}", p) for t, p in tokens]


def make_static_pools(m: Material, ctl: Control, pool_size: int) -> None:
    life = m.lifetime
    small = max(50, pool_size // 5)

    def signed(s: Signer, label: str, n: int, **kw) -> List[Tuple[str, str]]:
        subs = [f"{label}-{i}" for i in range(n)]
        return [(s.token(sub, life, **kw), sub) for sub in subs]

    remote = signed(m.stable, "es256", pool_size)
    local_rs = signed(m.local_rs, "rs256", pool_size)
    rows = {
        "valid.jwt.remote.es256": bearer_rows(remote),
        "valid.jwt.local.rs256": bearer_rows(local_rs),
        "valid.jwt.local.hs256": bearer_rows(signed(m.local_hs, "hs256", small)),
        "valid.jwt.pem.eddsa": bearer_rows(signed(m.pem, "eddsa", small)),
        "valid.basic.sha256": [("authorization", basic("alice", m.passwords["alice"]), "alice")],
        "valid.basic.bcrypt": [("authorization", basic("bob", m.passwords["bob"]), "bob")],
        "valid.basic.htpasswd-sha1": [("authorization", basic("carol", m.passwords["carol"]), "carol")],
        "valid.apikey.header": [("x-api-key", m.api_keys["soak-client"], "soak-client")],
        "valid.apikey.as-basic": [("authorization", basic("soak-client", m.api_keys["soak-client"]), "soak-client")],
        "invalid.jwt.bad-signature.remote": bearer_rows([(flip(t), None) for t, _ in remote[:small]]),
        "invalid.jwt.bad-signature.local": bearer_rows([(flip(t), None) for t, _ in local_rs[:small]]),
        "invalid.jwt.expired.remote": bearer_rows([(m.stable.token(f"x{i}", -3600), None) for i in range(small)]),
        "invalid.jwt.expired.local": bearer_rows([(m.local_rs.token(f"x{i}", -3600), None) for i in range(small)]),
        "invalid.jwt.unknown-issuer": bearer_rows(
            [(m.local_rs.token(f"x{i}", life, iss="https://unknown.soak.local"), None) for i in range(small)]),
        "invalid.jwt.unknown-kid": bearer_rows([(m.ghost.token(f"x{i}", life), None) for i in range(small)]),
        "invalid.jwt.wrong-audience": bearer_rows(
            [(m.stable.token(f"x{i}", life, aud="other-api"), None) for i in range(small)]),
        "invalid.basic.wrong-password": [
            ("authorization", basic(u, m.passwords[u] + "x"), None) for u in ("dave", "erin")]
        + [("authorization", basic("soak-target", "wrong-" + m.api_keys["soak-target"]), None)],
        "invalid.basic.unknown-user": [("authorization", basic("mallory", m.passwords["alice"]), None)],
        "invalid.apikey.wrong": [("x-api-key", secrets.token_urlsafe(24), None) for _ in range(20)],
        "invalid.apikey.disabled": [("x-api-key", m.api_keys["soak-disabled"], None),
                                    ("authorization", basic("soak-disabled", m.api_keys["soak-disabled"]), None)],
        "invalid.none": [("-", "-", None)],
    }
    assert set(rows) == set(STATIC)
    for label, r in rows.items():
        ctl.set(label, STATIC[label][1], ctl.pool(label, r), 1000)
    # Valid before the reload / after; the expected principal is the same either way.
    ctl.set("reload.apikey.retiring", RELOAD_WEIGHT,
            ctl.pool("reload.apikey.retiring", [("x-api-key", m.api_keys["soak-retiring"], "soak-retiring")]), 100)
    ctl.set("reload.apikey.new", RELOAD_WEIGHT,
            ctl.pool("reload.apikey.new", [("x-api-key", m.api_keys["soak-new"], "soak-new")]), 100)


def make_rot_pool(m: Material, ctl: Control, n: int, size: int) -> str:
    s = m.rot(n)
    subs = [f"rot{n}-{i}" for i in range(size)]
    return ctl.pool(rot_label(n), bearer_rows([(s.token(sub, m.lifetime), sub) for sub in subs]))


# =========================================================================== load generators


class WrkLoad:
    def __init__(self, port: int, ctl: Control, budget_s: int):
        self.cmd = ["wrk", "-t", str(CONNECTIONS), "-c", str(CONNECTIONS), "-d", f"{budget_s}s", "--timeout", "10s",
                    "-s", os.path.join(HERE, "soak.lua"), f"http://127.0.0.1:{port}", "--", ctl.root]
        self.ctl = ctl
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.stdout = open(os.path.join(self.ctl.root, "out", "wrk.stdout"), "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self.stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> dict:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)  # wrk stops its threads and runs done()
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.stdout.close()
        path = os.path.join(self.ctl.root, "out", "summary.json")
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            out = open(os.path.join(self.ctl.root, "out", "wrk.stdout"), errors="replace").read()
            return {"error": f"wrk wrote no summary (exit {self.proc.returncode if self.proc else None}): {out[-500:]}"}


class PyLoad:
    """The same protocol as soak.lua, in Python threads (when wrk is not installed)."""

    def __init__(self, port: int, ctl: Control):
        self.port, self.ctl = port, ctl
        self.stop_event = threading.Event()
        self.threads: List[threading.Thread] = []
        self.errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
        self.requests = 0
        self.lock = threading.Lock()

    def start(self) -> None:
        for tid in range(1, CONNECTIONS + 1):
            t = threading.Thread(target=self._run, args=(tid,), daemon=True)
            t.start()
            self.threads.append(t)

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def _read_mix(self, pools: dict) -> Optional[List[Tuple[str, str, int]]]:
        try:
            text = open(os.path.join(self.ctl.root, "mix.txt")).read()
        except OSError:
            return None
        entries = []
        for line in text.splitlines():
            f = line.split("\t")
            if len(f) >= 4:
                label, weight, file, bucket = f[0], int(f[1]), f[2], int(f[3])
                if file not in pools:
                    rows = []
                    for row in open(os.path.join(self.ctl.root, file)).read().splitlines():
                        h, v, p = row.split("\t")
                        rows.append(({} if h == "-" else {h: v}, None if p == "-" else p))
                    pools[file] = rows
                entries.extend([(label, file, bucket)] * weight)
        return entries

    def _run(self, tid: int) -> None:
        import random
        rnd = random.Random(tid)
        pools: dict = {}
        cursors: Dict[str, int] = {}
        schedule: List[Tuple[str, str, int]] = []
        next_check = next_flush = 0.0
        counts: Dict[str, int] = {}
        latmax: Dict[str, int] = {}
        conn: Optional[http.client.HTTPConnection] = None
        out = os.path.join(self.ctl.root, "out", f"thread-{tid}.tsv")

        def flush():
            with open(out, "a") as f:
                for k, n in counts.items():
                    f.write(f"{k}\t{n}\n")
                for k, ms in latmax.items():
                    f.write(f"{k}\t{ms}\n")
            counts.clear()
            latmax.clear()

        i = 0
        while not self.stop_event.is_set():
            now = time.time()
            if now >= next_check:
                s = self._read_mix(pools)
                if s:
                    schedule = s
                    rnd.shuffle(schedule)
                next_check = now + 0.25
            label, file, bucket_ms = schedule[i % len(schedule)]
            i += 1
            pool = pools[file]
            c = cursors.get(file, tid * 7919) % len(pool)
            cursors[file] = c + 1
            headers, principal = pool[c]
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                t0 = time.time()
                conn.request("GET", f"/soak/{label}", headers=headers)
                r = conn.getresponse()
                r.read()
                t1 = time.time()
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors["timeout" if isinstance(e, TimeoutError) else "read"] += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            st = str(r.status)
            if r.status == 200 and principal and (r.getheader("x-soak-principal") != principal
                                                  or r.getheader("x-soak-authorization")
                                                  or r.getheader("x-soak-api-key")):
                st = "200-wrong"
            b = int(t0 * 1000 // bucket_ms * bucket_ms)
            k = f"C\t{label}\t{b}\t{st}"
            counts[k] = counts.get(k, 0) + 1
            lk = f"L\t{label}\t{b}"
            latmax[lk] = max(latmax.get(lk, 0), int((t1 - t0) * 1000 + 0.5))
            with self.lock:
                self.requests += 1
            if (r.getheader("connection") or "").lower() == "close":
                conn.close()
                conn = None
            if t1 >= next_flush:
                flush()
                next_flush = t1 + 1
        flush()

    def stop(self) -> dict:
        self.stop_event.set()
        for t in self.threads:
            t.join(15)
        return {"requests": self.requests, **self.errors, "status": 0}


def _die_with_parent() -> None:
    import ctypes
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


# =========================================================================== the endpoint


def jwks_kids(body: bytes) -> Optional[Set[str]]:
    try:
        doc = json.loads(body)
        keys = doc["keys"]
        kids = {k["kid"] for k in keys if isinstance(k, dict) and "kid" in k}
        return kids or None
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class Hit:
    t: float
    ok: bool                      # the filter can accept this answer (what the soak served, judged here)
    kids: Optional[Set[str]]      # the key ids it carried, when ok
    what: str                     # what was served
    reason: str = ""              # refresh | retry | unknown-kid | first (filled in by the analysis)


def judge_reply(reply: Reply) -> Tuple[bool, Optional[Set[str]], str]:
    if reply.mode != "normal":
        return False, None, reply.mode
    if reply.delay * 1000 >= TIMEOUT_MS:
        return False, None, f"slow ({reply.delay:g} s)"
    if reply.status != 200:
        return False, None, f"HTTP {reply.status}"
    if len(reply.body) > MAX_BYTES:
        return False, None, f"oversized ({len(reply.body)} bytes)"
    kids = jwks_kids(reply.body)
    if kids is None:
        return False, None, "garbage"
    return True, kids, "jwks " + ",".join(sorted(kids))


class Endpoint:
    """The JwksServer plus what it was told to do, with times."""

    def __init__(self, m: Material):
        self.m = m
        self.srv = JwksServer().start()
        self.rot: List[int] = []
        self.published: List[Tuple[float, Set[str]]] = []  # (from, kids published at the endpoint)
        self.refused: List[List[float]] = []               # [from, to] connection refused
        self.timeline: List[Tuple[float, str]] = []

    def event(self, what: str) -> None:
        self.timeline.append((time.time(), what))
        log(what)

    def healthy(self, rot: Optional[List[int]] = None) -> None:
        if rot is not None:
            self.rot = list(rot)
        doc = self.m.jwks(self.rot)
        if self.srv.refusing:
            self.srv.accept()
            self.refused[-1][1] = time.time()
        self.srv.set_jwks(doc, path=JWKS_PATH)
        self.published.append((time.time(), {k["kid"] for k in doc["keys"]}))

    def fail(self, mode: str) -> None:
        doc = self.m.jwks(self.rot)
        if mode == "slow":
            self.srv.set_jwks(doc, path=JWKS_PATH, delay=3 * TIMEOUT_MS / 1000)
        elif mode == "500":
            self.srv.set_reply(JWKS_PATH, status=500, body={"error": "soak: internal error"})
        elif mode == "garbage":
            self.srv.set_reply(JWKS_PATH, status=200, body=b"<html>\x00\xff not a JWKS {{{", content_type="text/html")
        elif mode == "oversized":
            padded = dict(doc, padding="x" * (MAX_BYTES + 4096))  # a valid JWKS, only too large
            self.srv.set_reply(JWKS_PATH, status=200, body=padded)
        elif mode == "refused":
            self.refused.append([time.time(), float("inf")])
            self.srv.refuse()
        else:
            raise ValueError(mode)

    def hits(self) -> List[Hit]:
        out = []
        for t, path, reply in list(self.srv.served):
            if path != JWKS_PATH:
                out.append(Hit(t, False, None, f"unexpected path {path}"))
                continue
            ok, kids, what = judge_reply(reply)
            out.append(Hit(t, ok, kids, what))
        return out

    def published_at(self, t: float) -> Set[str]:
        kids: Set[str] = set()
        for t0, k in self.published:
            if t0 <= t:
                kids = k
        return kids


# =========================================================================== samplers


class Sampler:
    """RSS of Envoy from /proc every 2 s; Envoy's wasm and listener stats every 5 s."""

    def __init__(self, h: EnvoyHarness):
        self.h = h
        self.pid = h.pid
        self.rss: List[Tuple[float, int]] = []     # (time, KiB)
        self.stats: List[Tuple[float, Dict[str, int]]] = []
        self.errors: List[str] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Sampler":
        self.thread.start()
        return self

    def rss_kib(self) -> Optional[int]:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def _run(self) -> None:
        next_stats = 0.0
        while not self.stop_event.is_set():
            now = time.time()
            r = self.rss_kib()
            if r is not None:
                self.rss.append((now, r))
            if now >= next_stats:
                try:
                    self.stats.append((now, self.h.stats(filter=r"^(wasm\.|server\.memory|listener_manager\.)")))
                except Exception as e:  # noqa: BLE001 - recorded, judged at the end
                    self.errors.append(f"{now - START:.1f}s: {e}")
                next_stats = now + 5
            self.stop_event.wait(2)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)


# =========================================================================== the scenario


class StepTimeout(Exception):
    pass


class Scenario:
    def __init__(self, h: EnvoyHarness, ep: Endpoint, m: Material, ctl: Control, pool_size: int):
        self.h, self.ep, self.m, self.ctl, self.pool_size = h, ep, m, ctl, pool_size
        self.steps: List[Tuple[str, bool, str]] = []  # (step, ok, detail)
        self.reload: Optional[Dict[str, float]] = None
        self.current = 1      # rotation generation whose key signs "current" tokens
        self.cycles = 0

    def stat(self, name: str) -> int:
        for attempt in range(5):
            try:
                return self.h.stats(filter="^" + re.escape(name) + "$").get(name, 0)
            except Exception:  # noqa: BLE001 - admin busy: try again
                time.sleep(0.2)
        raise StepTimeout(f"Envoy's admin does not answer (reading {name})")

    def wait(self, what: str, cond: Callable[[], bool], timeout: float) -> float:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if not self.h.running:
                raise StepTimeout(f"{what}: Envoy is not running")
            if cond():
                return time.time() - t0
            time.sleep(0.1)
        raise StepTimeout(f"{what}: not within {timeout:.0f} s")

    def wait_fetch(self, what: str, since: float, pred: Callable[[Set[str]], bool], timeout: float) -> Hit:
        box: List[Hit] = []

        def cond():
            for hit in self.ep.hits():
                if hit.t >= since and hit.ok and pred(hit.kids):
                    box.append(hit)
                    return True
            return False

        self.wait(what, cond, timeout)
        return box[0]

    def step(self, name: str, fn: Callable[[], str]) -> None:
        try:
            detail = fn()
            self.steps.append((name, True, detail))
        except StepTimeout as e:
            self.steps.append((name, False, str(e)))
            self.ep.event(f"STEP FAILED: {e}")
            self.ep.healthy()  # do not leave the endpoint failing

    # ---- steps

    def rotate_in(self) -> str:
        new = self.current + 1
        make_rot_pool(self.m, self.ctl, new, self.pool_size)  # before the key is published
        old_removed = self.current - 1
        t = time.time()
        self.ep.healthy([self.current, new])
        self.ep.event(f"rotation: rot-{new} published next to rot-{self.current}; its tokens are sent from now on")
        self.ctl.set(rot_label(new), ROT_CURRENT_WEIGHT, f"pools/{rot_label(new)}.txt", 100)
        self.ctl.set(rot_label(self.current), ROT_OLD_WEIGHT, f"pools/{rot_label(self.current)}.txt", 100)
        self.ctl.drop(rot_label(old_removed))  # its key went a cycle ago
        self.ctl.publish()
        kid = f"rot-{new}"
        hit = self.wait_fetch(f"a fetch bringing {kid}", t, lambda kids: kid in kids, REFRESH + MIN_REFETCH + 5)
        self.ep.event(f"rotation: {kid} fetched {hit.t - t:.1f} s after it was published")
        self.current = new
        time.sleep(3)
        return f"{kid} fetched after {hit.t - t:.1f} s"

    def flap(self, mode: str) -> str:
        before = self.stat(FAILED_STAT)
        t = time.time()
        self.ep.fail(mode)
        self.ep.event(f"endpoint: {mode}")
        # The next attempt is the next refresh (or an unknown-kid refetch), then retries 1 s, 2 s, ... later.
        self.wait(f"two failed fetches while {mode}", lambda: self.stat(FAILED_STAT) >= before + 2,
                  REFRESH + 3 * TIMEOUT_MS / 1000 + 10)
        t_fail = time.time() - t
        failures = self.stat(FAILED_STAT) - before
        t_ok = time.time()
        self.ep.healthy()
        self.ep.event(f"endpoint: healthy again after {mode} ({failures} failed fetches)")
        hit = self.wait_fetch(f"a good fetch after {mode}", t_ok, lambda kids: True, 20)
        time.sleep(2)
        return f"{failures} failures in {t_fail:.1f} s, recovered {hit.t - t_ok:.1f} s after"

    def rotate_out(self) -> str:
        old = self.current - 1
        kid = f"rot-{old}"
        t = time.time()
        self.ep.healthy([self.current])
        self.ep.event(f"removal: {kid} removed from the endpoint (its tokens keep coming)")
        hit = self.wait_fetch(f"a fetch without {kid}", t, lambda kids: kid not in kids, REFRESH + 5)
        self.ep.event(f"removal: the filter fetched the set without {kid} {hit.t - t:.1f} s later")
        time.sleep(3)
        return f"set without {kid} fetched after {hit.t - t:.1f} s"

    def do_reload(self) -> str:
        before = {"created": self.stat("wasm.envoy.wasm.runtime.v8.created"), "pid": self.h.pid}
        t0 = time.time()
        self.ep.event("reload: writing the listener file with the new plugin configuration")
        try:
            self.h.reload_plugin_config(self.m.plugin_config(reloaded=True), timeout=15)
        except RuntimeError as e:
            raise StepTimeout(str(e))
        t1 = time.time()
        self.ep.event(f"reload: Envoy applied it ({t1 - t0:.2f} s); old connections drain")
        self.wait("old filter chains drained",
                  lambda: self.stat("listener_manager.total_filter_chains_draining") == 0, DRAIN_SECONDS + 15)
        t2 = time.time()
        self.ep.event(f"reload: drained ({t2 - t1:.1f} s)")
        self.reload = {"written": t0, "applied": t1, "drained": t2, "pid_before": before["pid"],
                       "pid_after": self.h.pid, "created_before": before["created"]}
        time.sleep(2)
        return f"applied in {t1 - t0:.2f} s, drained in {t2 - t1:.1f} s, same Envoy (pid {self.h.pid})"

    def quiet(self) -> str:
        time.sleep(2 * REFRESH + 2)
        return f"{2 * REFRESH + 2} s"

    def run(self, deadline: float) -> None:
        cycle_seconds = None
        while True:
            t0 = time.time()
            if self.cycles > 0 and (cycle_seconds is None or t0 + cycle_seconds > deadline):
                break
            self.cycles += 1
            c = self.cycles
            self.ep.event(f"---- cycle {c}")
            self.step(f"cycle {c}: rotation, new key published and used", self.rotate_in)
            for mode in ("slow", "500", "garbage", "refused", "oversized"):
                self.step(f"cycle {c}: endpoint {mode}", lambda mode=mode: self.flap(mode))
            self.step(f"cycle {c}: old key removed", self.rotate_out)
            if self.reload is None:
                self.step(f"cycle {c}: plugin configuration reloaded", self.do_reload)
            self.step(f"cycle {c}: quiet", self.quiet)
            cycle_seconds = time.time() - t0
        left = deadline - time.time()
        if left > 0:
            self.ep.event(f"quiet until the end ({left:.0f} s)")
            while time.time() < deadline and self.h.running:
                time.sleep(min(1, max(0, deadline - time.time())))


# =========================================================================== analysis


def read_counts(root: str):
    counts: Dict[Tuple[str, int, str], int] = {}
    latmax: Dict[Tuple[str, int], int] = {}
    out = os.path.join(root, "out")
    for name in sorted(os.listdir(out)):
        if not name.endswith(".tsv"):
            continue
        with open(os.path.join(out, name)) as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if p[0] == "C" and len(p) == 5:
                    k = (p[1], int(p[2]), p[3])
                    counts[k] = counts.get(k, 0) + int(p[4])
                elif p[0] == "L" and len(p) == 4:
                    k2 = (p[1], int(p[2]))
                    latmax[k2] = max(latmax.get(k2, 0), int(p[3]))
    return counts, latmax


class KeyWindows:
    """When the filter held each rotating key, from the answers it could accept."""

    def __init__(self, hits: List[Hit], ep: Endpoint):
        self.ep = ep
        self.changes: Dict[str, List[Tuple[float, bool]]] = {}
        held: Set[str] = set()
        for hit in hits:
            if not hit.ok:
                continue
            for kid in held | hit.kids:
                now_held = kid in hit.kids
                if now_held != (kid in held):
                    self.changes.setdefault(kid, []).append((hit.t, now_held))
            held = set(hit.kids)

    def held_at(self, kid: str, t: float) -> bool:
        state = False
        for tc, h in self.changes.get(kid, []):
            if tc <= t:
                state = h
        return state

    def change_between(self, kid: str, a: float, b: float) -> Optional[bool]:
        for tc, h in self.changes.get(kid, []):
            if a <= tc <= b:
                return h
        return None

    def classify(self, kid: str, b0: float, b1: float) -> str:
        """A request with a token of `kid` sent in [b0, b1)."""
        if self.held_at(kid, b0 - ADD_MARGIN) and self.change_between(kid, b0 - ADD_MARGIN, b1 + REMOVE_LEAD) is None:
            if kid in self.ep.published_at(b0) and kid in self.ep.published_at(b1):
                return "valid"
            return "valid-stale"          # removed at the endpoint, the filter not told yet: still its key
        if not self.held_at(kid, b0 - REMOVE_GRACE) and self.change_between(kid, b0 - REMOVE_GRACE, b1) is None:
            if kid in self.ep.published_at(b0) or kid in self.ep.published_at(b1):
                return "unfetched"        # published, the filter has not fetched it yet
            return "invalid"
        ch = self.change_between(kid, b0 - REMOVE_GRACE, b1 + REMOVE_LEAD)
        return "fetching" if ch else "removing"


CATEGORY_TEXT = {
    "valid": "valid: key published and fetched",
    "valid-stale": "valid: key removed at the endpoint, removal not fetched yet (the filter still holds it)",
    "invalid": f"invalid: key removed and that fetched >= {REMOVE_GRACE:g} s before",
    "unfetched": "either: key published, not fetched yet (200 after an unknown-kid refetch, or 401 if rate-limited)",
    "fetching": f"either: within -{ADD_MARGIN:g} s of the fetch that brought the key",
    "removing": f"either: within -{REMOVE_LEAD:g}/+{REMOVE_GRACE:g} s of the fetch that dropped the key",
    "reload": f"either: reload in progress (written -{RELOAD_LEAD:g} s .. old connections drained +{RELOAD_TAIL:g} s)",
}
STRICT_VALID = {"valid", "valid-stale"}
LENIENT = {"unfetched", "fetching", "removing", "reload"}


def classify(label: str, bucket_ms: int, kw: KeyWindows, reload: Optional[Dict[str, float]]) -> str:
    if label in STATIC:
        return STATIC[label][0]
    b0 = bucket_ms / 1000
    if label.startswith("jwt.remote.rot-"):
        return kw.classify(label.rsplit(".", 1)[1], b0, b0 + 0.1)
    if label in RELOAD_LABELS:
        valid_before = RELOAD_LABELS[label] == "before"
        if reload is None:
            return "valid" if valid_before else "invalid"
        if b0 + 0.1 < reload["written"] - RELOAD_LEAD:
            return "valid" if valid_before else "invalid"
        if b0 > reload["drained"] + RELOAD_TAIL:
            return "invalid" if valid_before else "valid"
        return "reload"
    return "unknown"


def parse_envoy_time(line: str) -> Optional[float]:
    m = re.match(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3})\]", line)
    if not m:
        return None
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


def fetch_analysis(hits: List[Hit], ep: Endpoint, envoy_log: str, t_end: float) -> dict:
    forced_log = [t for t in (parse_envoy_time(l) for l in envoy_log.splitlines()
                              if f"provider {PROVIDER}: unknown key id, fetching its JWKS again" in l) if t]
    # The log line is written when the fetch is leased, just before the call, and a lease is
    # only taken while no other fetch is in flight: its hit is the first one at or after the
    # line (same clock; the log's time is the millisecond floor). A refresh that reached the
    # endpoint a millisecond earlier is not it.
    used = set()
    for ft in forced_log:
        for i, hit in enumerate(hits):
            if i not in used and ft - 0.0001 <= hit.t <= ft + 0.5:
                hit.reason = "unknown-kid"
                used.add(i)
                break
    refresh_gaps, retry_gaps, problems = [], [], []
    last_ok: Optional[Hit] = None
    prev: Optional[Hit] = None
    failures: Optional[int] = 0  # consecutive failed fetches seen; None: unknown (connection refused)
    for hit in hits:
        if hit.what.startswith("unexpected"):
            problems.append(f"{hit.t - START:.1f}s: {hit.what}")
        refused_between = prev is not None and any(a <= hit.t and b >= prev.t for a, b in ep.refused)
        if hit.reason == "unknown-kid":
            pass
        elif prev is None:
            hit.reason = "first"
        elif not prev.ok or refused_between:
            hit.reason = "retry"
            gap = hit.t - prev.t
            retry_gaps.append(gap)
            # Backoff: 1 s doubling (capped at 60 s and at the refresh interval) after each failure.
            backoff = 1.0 if refused_between or failures is None else min(2.0 ** (failures - 1), 60, REFRESH)
            if gap < backoff - TOL_EARLY:
                problems.append(f"{hit.t - START:.1f}s: retry {gap:.2f} s after failed fetch number {failures} "
                                f"(backoff {backoff:g} s)")
        else:
            hit.reason = "refresh"
            gap = hit.t - prev.t
            refresh_gaps.append(gap)
            if gap < REFRESH - TOL_EARLY:
                problems.append(f"{hit.t - START:.1f}s: a second fetch {gap:.2f} s after a good one "
                                f"(refresh interval {REFRESH} s, no unknown kid logged)")
            elif gap > REFRESH + TOL_LATE:
                problems.append(f"{hit.t - START:.1f}s: refresh came {gap:.1f} s after the last good fetch "
                                f"(interval {REFRESH} s)")
        if hit.ok:
            last_ok = hit
            failures = 0
        elif refused_between:
            failures = None  # attempts that never reached the endpoint may lie between
        elif failures is not None:
            failures += 1
        prev = hit
    if last_ok is not None and prev is last_ok and t_end - last_ok.t > REFRESH + TOL_LATE:
        problems.append(f"no refresh in the last {t_end - last_ok.t:.1f} s of the run (interval {REFRESH} s)")
    soon_after_good = 0
    for prev_hit, hit in zip(hits, hits[1:]):
        if hit.reason == "unknown-kid" and prev_hit.ok and hit.t - prev_hit.t < 1.0:
            soon_after_good += 1
    forced_gaps = [b - a for a, b in zip(forced_log, forced_log[1:])]
    forced_problems = [f"{b - START:.1f}s: unknown-kid refetch {b - a:.1f} s after the previous one "
                       f"(min_refetch_seconds {MIN_REFETCH})" for a, b in zip(forced_log, forced_log[1:])
                       if b - a < MIN_REFETCH - TOL_EARLY]
    return {"forced_log": forced_log, "forced_hits": len(used), "forced_gaps": forced_gaps,
            "forced_soon_after_good": soon_after_good,
            "forced_problems": forced_problems, "refresh_gaps": refresh_gaps, "retry_gaps": retry_gaps,
            "problems": problems}


CRASH_PATTERNS = [r"panicked", r"Function: proxy_on_\w+ failed", r"wasm trap", r"Wasm VM failed", r"RuntimeError",
                  r"Plugin \S+ failed", r"\[critical\]", r"Caught Segmentation", r"Backtrace", r"Wasm VM .*crash",
                  r"out of bounds"]


def median(xs: List[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt_counts(c: Dict[str, int]) -> str:
    order = sorted(c, key=lambda s: (not s.startswith("2"), s))
    return ", ".join(f"{s}: {c[s]}" for s in order) if c else "-"


def machine() -> str:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(open("/proc/meminfo").readline().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({model}){mem}, {platform.system()} {platform.release()}"


def envoy_version() -> str:
    try:
        out = subprocess.run([envoy_bin(), "--version"], capture_output=True, text=True, timeout=20).stdout
        m = re.search(r"version: [0-9a-f]+/([^/\s]+)", out)
        return m.group(1) if m else out.strip()[:60]
    except Exception:  # noqa: BLE001
        return "unknown"


# =========================================================================== main


def route_hook(cfg: dict) -> None:
    """The route answers 200 itself and copies what the filter set into the response."""
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["route_config"]["virtual_hosts"][0]["routes"] = [{
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
        "response_headers_to_add": [
            {"header": {"key": "x-soak-principal", "value": "%REQ(x-auth-principal)%"}},
            {"header": {"key": "x-soak-method", "value": "%REQ(x-auth-method)%"}},
            {"header": {"key": "x-soak-provider", "value": "%REQ(x-auth-provider)%"}},
            # Must stay absent: forward_credentials is false, the filter removes them.
            {"header": {"key": "x-soak-authorization", "value": "%REQ(authorization)%"}},
            {"header": {"key": "x-soak-api-key", "value": "%REQ(x-api-key)%"}},
        ],
    }]


def main() -> int:
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    log(f"duration {SECONDS} s, refresh {REFRESH} s, min_refetch {MIN_REFETCH} s, timeout {TIMEOUT_MS} ms, "
        f"Envoy --concurrency {CONCURRENCY}, {CONNECTIONS} connections ({LOAD}), warm-up {WARMUP} s; output {OUT}")
    pool_size = env_int("SOAK_POOL", 1000)
    t = time.time()
    m = Material()
    ctl = Control(os.path.join(OUT, "load"))
    make_static_pools(m, ctl, pool_size)
    make_rot_pool(m, ctl, 1, pool_size)
    ctl.set(rot_label(1), ROT_CURRENT_WEIGHT, f"pools/{rot_label(1)}.txt", 100)
    ctl.publish()
    log(f"keys and {sum(1 for _ in os.listdir(os.path.join(ctl.root, 'pools')))} credential pools made "
        f"in {time.time() - t:.1f} s")

    ep = Endpoint(m)
    ep.healthy([1])
    h = EnvoyHarness(m.plugin_config(), concurrency=CONCURRENCY, jwks_port=ep.srv.port, dynamic_listeners=True,
                     drain_time_s=DRAIN_SECONDS, config_hook=route_hook)
    load = None
    sampler = None
    scenario = None
    summary: dict = {}
    envoy_log = ""
    envoy_exit = None
    stats_end: Dict[str, int] = {}
    stats_start: Dict[str, int] = {}
    t_load = t_end = time.time()
    try:
        h.start()
        log(f"Envoy up (pid {h.pid}), admin :{h.admin_port}, listener :{h.listener_port}, jwks :{ep.srv.port}")
        scenario = Scenario(h, ep, m, ctl, pool_size)
        scenario.wait("the first key set", lambda: scenario.stat(SUCCESS_STAT) >= 1, 15)
        time.sleep(0.5)  # every request of the load comes clearly after the first fetch
        stats_start = h.stats()
        sampler = Sampler(h).start()
        t_load = time.time()
        if LOAD == "wrk":
            load = WrkLoad(h.listener_port, ctl, SECONDS + 900)
        else:
            load = PyLoad(h.listener_port, ctl)
        load.start()
        ep.event(f"load started ({LOAD}, {CONNECTIONS} connections)")
        scenario.run(t_load + SECONDS)
        ep.healthy()
        t_end = time.time()
        if not load.alive():
            scenario.steps.append(("load generator ran to the end", False, "it exited early"))
        summary = load.stop()
        ep.event("load stopped")
        sampler.stop()
        time.sleep(0.5)
        try:
            stats_end = h.stats()
        except Exception as e:  # noqa: BLE001 - Envoy gone: the checks say so
            log(f"cannot read Envoy's stats at the end: {e}")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except StepTimeout as e:
        log(f"error: {e}")
        return 1
    finally:
        if load is not None and load.alive():
            load.stop()
        if sampler is not None:
            sampler.stop()
        running = h.running
        envoy_exit = h.stop()
        envoy_log = h.log_text()
        ep.srv.stop()
        with open(os.path.join(OUT, "envoy.log"), "w") as f:
            f.write(envoy_log)
        with open(os.path.join(OUT, "timeline.txt"), "w") as f:
            for tt, what in ep.timeline:
                f.write(f"{tt - START:8.2f}  {what}\n")

    report = analyse(m, ep, ctl, scenario, sampler, summary, envoy_log, envoy_exit, running, stats_start, stats_end,
                     t_load, t_end)
    return report


def analyse(m, ep, ctl, scenario, sampler, summary, envoy_log, envoy_exit, running, stats_start, stats_end,
            t_load, t_end) -> int:
    checks: List[Tuple[str, bool, str]] = []
    hits = ep.hits()
    fa = fetch_analysis(hits, ep, envoy_log, t_end)
    with open(os.path.join(OUT, "jwks-hits.txt"), "w") as f:
        for hit in hits:
            f.write(f"{hit.t - START:8.2f}  {hit.reason:12s} {'ok ' if hit.ok else 'BAD'}  {hit.what}\n")
    kw = KeyWindows(hits, ep)
    counts, latmax = read_counts(ctl.root)
    reload = scenario.reload if scenario else None

    # per label and category: status -> n
    table: Dict[Tuple[str, str], Dict[str, int]] = {}
    first_bad: Dict[str, List[str]] = {"valid": [], "invalid": []}
    for (label, bucket, status), n in sorted(counts.items(), key=lambda kv: kv[0][1]):
        cat = classify(label, bucket, kw, reload)
        d = table.setdefault((label, cat), {})
        d[status] = d.get(status, 0) + n
        when = f"{bucket / 1000 - START:.1f}s"
        if cat in STRICT_VALID and status != "200" and len(first_bad["valid"]) < 12:
            first_bad["valid"].append(f"{when} {label}: {status} x{n}")
        if cat == "invalid" and status.startswith("200") and len(first_bad["invalid"]) < 12:
            first_bad["invalid"].append(f"{when} {label}: {status} x{n}")
    with open(os.path.join(OUT, "counts.json"), "w") as f:
        json.dump([{"label": k[0], "bucket_ms": k[1], "status": k[2], "n": n} for k, n in sorted(counts.items())], f)

    def total(cats: Set[str]) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for (label, cat), d in table.items():
            if cat in cats:
                for s, n in d.items():
                    out[s] = out.get(s, 0) + n
        return out

    grand_total = sum(counts.values())
    valid = total(STRICT_VALID)
    nv = sum(valid.values())
    v5 = sum(n for s, n in valid.items() if s.startswith("5"))
    v401 = valid.get("401", 0)
    vother = sum(n for s, n in valid.items() if s not in ("200",) and not s.startswith("5") and s != "401")
    checks.append(("valid credentials whose keys were available: no 5xx, no 401 (and every 200 the right principal)",
                   nv > 0 and v5 == 0 and v401 == 0 and vother == 0,
                   f"{nv} requests; 5xx {v5}, 401 {v401}, other {vother} ({fmt_counts(valid)})"
                   + ("; first: " + "; ".join(first_bad["valid"]) if first_bad["valid"] else "")))
    invalid = total({"invalid"})
    ni = sum(invalid.values())
    i200 = sum(n for s, n in invalid.items() if s.startswith("200"))
    checks.append(("invalid credentials: no 200", ni > 0 and i200 == 0,
                   f"{ni} requests; 200 {i200} ({fmt_counts(invalid)})"
                   + ("; first: " + "; ".join(first_bad["invalid"]) if first_bad["invalid"] else "")))
    lenient = total(LENIENT)
    # How sharp the cutovers really were (the windows above are wider on purpose).
    seen = []
    for kid, changes in sorted(kw.changes.items()):
        label = f"jwt.remote.{kid}"
        for tc, held in changes:
            if not held:
                last200 = max((b for (l, b, st), n in counts.items() if l == label and st == "200"), default=None)
                if last200 is not None:
                    seen.append(f"last 200 for {kid} {last200 / 1000 + 0.1 - tc:+.1f} s from the fetch that dropped it")
    if reload:
        last_old = max((b for (l, b, st), n in counts.items() if l == "reload.apikey.retiring" and st == "200"),
                       default=None)
        first_new = min((b for (l, b, st), n in counts.items() if l == "reload.apikey.new" and st == "200"),
                        default=None)
        if last_old is not None and first_new is not None:
            seen.append(f"reload: first 200 for soak-new {first_new / 1000 - reload['written']:+.1f} s, last 200 for "
                        f"soak-retiring {last_old / 1000 + 0.1 - reload['written']:+.1f} s from the file replace")
    checks.append(("windows around rotation/removal/reload (either outcome accepted, counted)", True,
                   f"{sum(lenient.values())} requests ({fmt_counts(lenient)})"
                   + ("; observed: " + "; ".join(seen) if seen else "")))

    # --- VMs
    bad_lines = [l for l in envoy_log.splitlines() if any(re.search(p, l) for p in CRASH_PATTERNS)
                 or "][error][" in l]
    # Warnings expected here: the filter's failed fetches, Envoy's connection-limit notice, the final SIGTERM.
    odd_warnings = [l for l in envoy_log.splitlines() if "][warning][" in l and not any(
        x in l for x in ("JWKS fetch failed", "no configured limit to the number of allowed active", "caught ENVOY_SIGTERM"))]
    actives = sorted({s.get("wasm.envoy.wasm.runtime.v8.active") for _, s in (sampler.stats if sampler else [])
                      if "wasm.envoy.wasm.runtime.v8.active" in s})
    reloads = {k: stats_end.get(k, 0) for k in stats_end if k.startswith("wasm.wasm_authn.vm_reload")}
    created0 = stats_start.get("wasm.envoy.wasm.runtime.v8.created", 0)
    created1 = stats_end.get("wasm.envoy.wasm.runtime.v8.created", 0)
    active0 = stats_start.get("wasm.envoy.wasm.runtime.v8.active", 0)
    config_loads = 1 if reload else 0
    vm_ok = (running and not bad_lines and actives == [active0] and not any(reloads.values())
             and created1 - created0 <= config_loads and bool(stats_end) and envoy_exit == 0)
    checks.append(("no wasm VM crash or restart (Envoy's wasm stats, the log)",
                   vm_ok,
                   f"v8 VMs active {active0} throughout (samples: {actives}); created {created0} -> {created1} "
                   f"(+1 per plugin configuration loaded: {config_loads}); "
                   f"vm_reload* {sum(reloads.values())}; log lines matching a crash: {len(bad_lines)}"
                   + (f" (first: {bad_lines[0][:200]})" if bad_lines else "")
                   + f"; other warnings: {len(odd_warnings)}"
                   + (f" (first: {odd_warnings[0][:200]})" if odd_warnings else "")
                   + f"; Envoy running at the end: {running}, exit code on SIGTERM: {envoy_exit}"))

    # --- memory
    rss = sampler.rss if sampler else []
    warm_end = t_load + WARMUP
    base = [r for t, r in rss if warm_end <= t <= warm_end + 20]
    last = [r for t, r in rss if t >= t_end - 20]
    post = [(t, r) for t, r in rss if t >= warm_end]
    if base and last:
        b, e = median(base) / 1024, median(last) / 1024
        peak = max(r for _, r in post) / 1024
        first_min = [r for t, r in rss if t < warm_end]
        start_mib = (first_min[0] / 1024) if first_min else b
        slope = 0.0
        if len(post) >= 3:
            xs = [t for t, _ in post]
            ys = [r / 1024 for _, r in post]
            mx, my = statistics.mean(xs), statistics.mean(ys)
            den = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 60 if den else 0.0
        growth = e - b
        checks.append((f"Envoy RSS flat after warm-up (growth from {WARMUP} s to the end <= {RSS_GROWTH_MIB} MiB)",
                       growth <= RSS_GROWTH_MIB,
                       f"{start_mib:.1f} MiB at load start, {b:.1f} MiB after warm-up, {e:.1f} MiB at the end "
                       f"(growth {growth:+.1f} MiB, peak {peak:.1f} MiB, trend {slope:+.2f} MiB/min, "
                       f"{len(rss)} samples every 2 s)"))
    else:
        checks.append(("Envoy RSS flat after warm-up", False, f"not enough samples ({len(rss)}; run longer than warm-up)"))

    # --- fetches
    refresh_gaps = fa["refresh_gaps"]
    rp = [p for p in fa["problems"] if "retry" not in p]
    checks.append((f"JWKS: exactly one fetch per refresh interval ({REFRESH} s)",
                   not rp and len(refresh_gaps) > 0,
                   f"{len(refresh_gaps)} refresh intervals, each ended by one fetch "
                   f"{min(refresh_gaps, default=0):.2f}-{max(refresh_gaps, default=0):.2f} s after the last good one; "
                   f"{len(hits)} hits in all"
                   + ("; " + "; ".join(rp[:6]) if rp else "")))
    fg = fa["forced_gaps"]
    checks.append((f"JWKS: unknown-kid refetches at most one per min_refetch_seconds ({MIN_REFETCH} s)",
                   not fa["forced_problems"],
                   f"{len(fa['forced_log'])} refetches ({fa['forced_hits']} reached the endpoint), "
                   f"spacing {min(fg, default=0):.1f}-{max(fg, default=0):.1f} s; "
                   f"{fa['forced_soon_after_good']} of them < 1 s after a good fetch (requests that waited for "
                   f"a refresh without their kid)"
                   + ("; " + "; ".join(fa["forced_problems"][:6]) if fa["forced_problems"] else "")))
    rg = fa["retry_gaps"]
    retry_problems = [p for p in fa["problems"] if "retry" in p]
    failed = stats_end.get(FAILED_STAT, 0)
    checks.append(("JWKS: failed fetches back off (1 s, doubling), last good keys kept",
                   not retry_problems,
                   f"{failed} failed fetches (jwks_fetch_failed), {len(rg)} retries seen at the endpoint, "
                   f"{min(rg, default=0):.1f}-{max(rg, default=0):.1f} s after the failure they retried"
                   + ("; " + "; ".join(retry_problems[:6]) if retry_problems else "")))

    # --- scenario and load
    steps = scenario.steps if scenario else []
    failed_steps = [f"{s}: {d}" for s, ok, d in steps if not ok]
    checks.append(("fault scenario: every step happened", bool(steps) and not failed_steps,
                   f"{len(steps)} steps in {scenario.cycles if scenario else 0} cycle(s)"
                   + ("; FAILED: " + "; ".join(failed_steps) if failed_steps else "")))
    if reload:
        new_after = table.get(("reload.apikey.new", "valid"), {}).get("200", 0)
        old_after = table.get(("reload.apikey.retiring", "invalid"), {})
        ok = new_after > 0 and sum(old_after.values()) > 0 and reload["pid_before"] == reload["pid_after"]
        checks.append(("plugin configuration reloaded without a restart", ok,
                       f"LDS file replaced, applied in {reload['applied'] - reload['written']:.2f} s, drained in "
                       f"{reload['drained'] - reload['applied']:.1f} s, same process; after it soak-new got 200 "
                       f"{new_after}x, soak-retiring {fmt_counts(old_after)}"))
    else:
        checks.append(("plugin configuration reloaded without a restart", False, "the reload step did not run"))
    errs = {k: summary.get(k, 0) for k in ("connect", "read", "write", "timeout")}
    answered = summary.get("requests", 0)
    checks.append(("load: no socket errors or timeouts, every response attributed to its request",
                   "error" not in summary and not any(errs.values()) and answered == grand_total,
                   summary.get("error") or f"{answered} responses in {t_end - t_load:.0f} s "
                   f"({answered / max(t_end - t_load, 1):.0f}/s), {grand_total} of them attributed; errors {errs}"))

    # --- output
    lines = []
    now = datetime.datetime.now().astimezone()
    lines.append(f"Soak run {now:%Y-%m-%d %H:%M %Z}: {t_end - t_load:.0f} s of load, Envoy {envoy_version()} "
                 f"--concurrency {CONCURRENCY}, {CONNECTIONS} connections ({LOAD}); {machine()}")
    lines.append(f"refresh_seconds {REFRESH}, min_refetch_seconds {MIN_REFETCH}, timeout_ms {TIMEOUT_MS}, "
                 f"max_response_bytes {MAX_BYTES}, jwks_wait_ms {JWKS_WAIT_MS}; "
                 f"{scenario.cycles if scenario else 0} fault cycle(s)")
    lines.append("")
    lines.append("| check | result | detail |")
    lines.append("|---|---|---|")
    for name, ok, detail in checks:
        lines.append(f"| {name} | {'PASS' if ok else '**FAIL**'} | {detail} |")
    lines.append("")
    lines.append("| class | judged as | requests | statuses | max latency |")
    lines.append("|---|---|---:|---|---:|")
    lat_by: Dict[Tuple[str, str], int] = {}
    for (label, bucket), ms in latmax.items():
        cat = classify(label, bucket, kw, reload)
        lat_by[(label, cat)] = max(lat_by.get((label, cat), 0), ms)
    order = {"valid": 0, "valid-stale": 1, "unfetched": 2, "fetching": 3, "removing": 4, "reload": 5, "invalid": 6}
    for (label, cat), d in sorted(table.items(), key=lambda kv: (kv[0][0].split(".")[0] != "valid",
                                                                  kv[0][0], order.get(kv[0][1], 9))):
        lines.append(f"| {label} | {cat} | {sum(d.values())} | {fmt_counts(d)} | {lat_by.get((label, cat), 0)} ms |")
    grand = sum(sum(d.values()) for d in table.values())
    lines.append(f"| all | | {grand} | | |")
    lines.append("")
    lines.append("Judged as: " + "; ".join(f"`{k}` = {v}" for k, v in CATEGORY_TEXT.items())
                 + ". Static classes (valid.*, invalid.*) are judged the same all along.")
    ok_all = all(ok for _, ok, _ in checks)
    lines.append("")
    lines.append(f"soak: {'PASS' if ok_all else 'FAIL'}")
    text = "\n".join(lines)
    with open(os.path.join(OUT, "table.md"), "w") as f:
        f.write(text + "\n")
    print()
    print(text)
    print(f"\n(raw data: {OUT}: table.md, timeline.txt, jwks-hits.txt, counts.json, envoy.log)")
    return 0 if ok_all else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(main())
