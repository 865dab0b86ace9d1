#!/usr/bin/env python3
"""`make bench`'s scale section (issue 18): cost against the size of the configuration.

For each N (10, 10,000, 100,000) one Envoy (one worker, pinned to CPU 0, as bench/run.py
runs it) holds four listeners: wasm-authn with N API clients (`api_keys.clients_lines`)
and N Basic users ({SHA} htpasswd), Envoy's native `api_key_auth` with the same N keys
and `basic_auth` with the same htpasswd. wrk (pinned to CPU 1) loads each in turn with
a valid credential repeated, valid credentials cycling through all N, and unknown ones
(random keys, unknown user names), interleaved over rounds; a row is Envoy's CPU per
request (median over rounds). With the smallest N, the same API key under no rules and
under 1,000 prefix rules. Valid loads must get 200 only, unknown ones 401 only.

    .venv/bin/python bench/scale.py [--append BENCHMARKS.md]

Environment: SCALE_SIZES (10,10000,100000), SCALE_ROUNDS (2), SCALE_DURATION seconds (3),
SCALE_OBJECTS=1 writes clients as `clients[]` objects (a module without clients_lines),
BENCH_WASM_A the module (the built one), ENVOY_BIN.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_run", os.path.join(HERE, "run.py"))
run = importlib.util.module_from_spec(_spec)
sys.modules["bench_run"] = run  # its dataclasses look themselves up there
_spec.loader.exec_module(run)

SIZES = [int(x) for x in os.environ.get("SCALE_SIZES", "10,10000,100000").split(",") if x.strip()]
ROUNDS = run.env_int("SCALE_ROUNDS", 2)
DURATION = run.env_int("SCALE_DURATION", 3)
OBJECTS = os.environ.get("SCALE_OBJECTS") == "1"
UNKNOWN = 200_000
RULES = 1000


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Population:
    """N API keys and N Basic users, made here (never by the filter)."""

    def __init__(self, n: int, workdir: str):
        self.n = n
        self.keys = [secrets.token_hex(16) for _ in range(n)]
        self.passwords = [secrets.token_hex(8) for _ in range(n)]
        self.htpasswd = "".join(
            f"user-{i}:{{SHA}}{base64.b64encode(hashlib.sha1(pw.encode()).digest()).decode()}\n"
            for i, pw in enumerate(self.passwords))
        self.files = {
            "api-valid": self._pool(workdir, f"api-valid-{n}", self.keys),
            "basic-valid": self._pool(workdir, f"basic-valid-{n}",
                                      [basic_header(f"user-{i}", pw) for i, pw in enumerate(self.passwords)]),
        }

    @staticmethod
    def _pool(workdir: str, name: str, lines: List[str]) -> str:
        path = os.path.join(workdir, name + ".txt")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def api_keys(self) -> dict:
        if OBJECTS:
            clients = [{"id": f"client-{i}", "key_hash": "sha256:" + hashlib.sha256(k.encode()).hexdigest()}
                       for i, k in enumerate(self.keys)]
            return {"headers": ["x-api-key"], "clients": clients}
        lines = "".join(f"client-{i}:sha256:{hashlib.sha256(k.encode()).hexdigest()}\n" for i, k in enumerate(self.keys))
        return {"headers": ["x-api-key"], "clients_lines": lines}


def authn(name: str, configuration: dict) -> dict:
    configuration = {"realm": "api", "cache": {"max_entries": run.CACHE_ENTRIES, "ttl_seconds": 300}, **configuration}
    return run.wasm_filter(name, "wasm_authn_scale", run.WASM_AUTHN, "wasm_authn", configuration)


def native_api_key(p: Population) -> dict:
    return {"name": "envoy.filters.http.api_key_auth",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
                             "credentials": [{"key": k, "client": f"client-{i}"} for i, k in enumerate(p.keys)],
                             "key_sources": [{"header": "x-api-key"}]}}


def native_basic(p: Population) -> dict:
    return {"name": "envoy.filters.http.basic_auth",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuth",
                             "users": {"inline_string": p.htpasswd}}}


class Load:
    """One wrk run's shape: a listener, and a repeated credential or a pool file."""

    def __init__(self, key: str, listener: str, kind: str, expect: int, header: str,
                 value: Optional[str] = None, pool: Optional[str] = None, path: str = "/"):
        self.key, self.listener, self.kind, self.expect = key, listener, kind, expect
        self.header, self.value, self.pool, self.path = header, value, pool, path
        self.port = 0
        self.runs: List[dict] = []
        self.failure: Optional[str] = None


def wrk(load: Load, envoy, seconds: int) -> dict:
    url = f"http://127.0.0.1:{load.port}{load.path}"
    cmd = ["taskset", "-c", run.WRK_CPU, "wrk", "-t1", f"-c{run.CONNECTIONS}", f"-d{seconds}s", "--timeout", "2s"]
    if load.pool:
        offset = secrets.randbelow(1 << 30)
        # Pool lines are whole header values: no prefix.
        cmd += ["-s", run.POOL_LUA, url, "--", load.pool, str(offset), load.header, ""]
    else:
        cmd += ["-s", run.HEADERS_LUA, url, "--", f"{load.header}: {load.value}"]
    cpu0 = envoy.cpu_seconds()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=run._child_setup)
    run.STARTED.append(proc)
    try:
        out, _ = proc.communicate(timeout=seconds + 30)
    finally:
        run.STARTED.remove(proc)
    cpu1 = envoy.cpu_seconds()
    line = next((l for l in out.splitlines() if l.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed for {load.key}:\n{out[-2000:]}")
    r = json.loads(line[len("BENCH_JSON "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    r["envoy_cpu_us"] = (cpu1 - cpu0) * 1e6 / r["requests"] if r["requests"] else 0.0
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    return r


def check(load: Load) -> Optional[str]:
    """None when a sample of the load gets the status it must."""
    if load.pool:
        with open(load.pool) as f:
            sample = [f.readline().strip() for _ in range(3)]
    else:
        sample = [load.value]
    for value in sample:
        status, _ = run.http_get(load.port, load.path, {load.header: value})
        if status != load.expect:
            return f"got {status}, expected {load.expect}"
    return None


def measure(size: int, workdir: str, binary: str, unknown_api: str, unknown_basic: str) -> dict:
    started = time.time()
    p = Population(size, workdir)
    log(f"N={size}: population made in {time.time() - started:.1f} s")
    filters = {
        "wasm-api": [authn(f"scale-api-{size}", {"api_keys": p.api_keys()})],
        "native-api": [native_api_key(p)],
        "wasm-basic": [authn(f"scale-basic-{size}", {"basic": {"htpasswd": p.htpasswd}})],
        "native-basic": [native_basic(p)],
    }
    loads: List[Load] = []
    for filt in ("wasm", "native"):
        loads += [
            Load(f"{filt}-api-repeated", f"{filt}-api", "API key, valid, repeated", 200, "x-api-key", p.keys[0]),
            Load(f"{filt}-api-cycling", f"{filt}-api", "API key, valid, cycling through N", 200, "x-api-key",
                 pool=p.files["api-valid"]),
            Load(f"{filt}-api-unknown", f"{filt}-api", "API key, unknown", 401, "x-api-key", pool=unknown_api),
            Load(f"{filt}-basic-repeated", f"{filt}-basic", "Basic {SHA}, valid, repeated", 200, "authorization",
                 basic_header("user-0", p.passwords[0])),
            Load(f"{filt}-basic-cycling", f"{filt}-basic", "Basic {SHA}, valid, cycling through N", 200,
                 "authorization", pool=p.files["basic-valid"]),
            Load(f"{filt}-basic-unknown", f"{filt}-basic", "Basic, unknown user", 401, "authorization",
                 pool=unknown_basic),
        ]
    if size == SIZES[0]:
        # The same API key under no rules and under 1,000 prefix rules (one per service; the last matches).
        rules = [{"match": {"path_prefix": f"/service-{i}"}, "require": ["api-key"]} for i in range(RULES)]
        filters["wasm-rules-0"] = [authn("scale-rules-0", {"api_keys": p.api_keys()})]
        filters[f"wasm-rules-{RULES}"] = [authn(f"scale-rules-{RULES}", {"api_keys": p.api_keys(), "rules": rules})]
        for count in (0, RULES):
            loads.append(Load(f"wasm-rules-{count}", f"wasm-rules-{count}", f"API key, repeated, {count:,} rules",
                              200, "x-api-key", p.keys[0], path=f"/service-{RULES - 1}/items"))
    scenarios = [run.Scenario(name, name, "scale", f) for name, f in filters.items()]
    config = run.envoy_config(scenarios)
    envoy = run.Envoy(binary, config, workdir, f"envoy-scale-{size}")
    t0 = time.time()
    ports = envoy.start(timeout=300)
    ready_s = time.time() - t0
    rss = envoy.rss_kib()
    log(f"N={size}: Envoy ready in {ready_s:.1f} s, RSS {rss / 1024:.0f} MiB")
    try:
        for load in loads:
            load.port = ports.get(load.listener, 0)
            load.failure = "listener missing" if not load.port else check(load)
            if load.failure:
                log(f"N={size}: {load.key} FAILED its check: {load.failure}\n{envoy.log_tail(10)}")
        active = [load for load in loads if load.failure is None]
        for load in active:
            wrk(load, envoy, 1)  # warm-up
        for rnd in range(ROUNDS):
            for load in active:
                r = wrk(load, envoy, DURATION)
                wrong = r["non2xx"] if load.expect == 200 else r["requests"] - r["non2xx"]
                if r["errors"] or wrong:
                    load.failure = f"{wrong} answers other than {load.expect}, {r['errors']} socket errors"
                load.runs.append(r)
            log(f"N={size}: round {rnd + 1}/{ROUNDS} done")
        rss_end = envoy.rss_kib()
    finally:
        envoy.stop()
    return {"size": size, "loads": loads, "ready_s": ready_s, "rss_mib": rss / 1024, "rss_end_mib": rss_end / 1024}


def log(msg: str) -> None:
    print(f"scale: {msg}", flush=True)


def cell(load: Optional[Load]) -> str:
    if load is None:
        return "-"
    if load.failure:
        return f"FAILED ({load.failure})"
    cpu = statistics.median(r["envoy_cpu_us"] for r in load.runs)
    rps = statistics.median(r["rps"] for r in load.runs)
    return f"{cpu:.1f} µs ({rps / 1000:.1f}k/s)"


def report(results: List[dict], binary: str) -> str:
    lines = [
        "",
        "## Cost against the configuration's size (bench/scale.py)",
        "",
        f"Envoy {run.envoy_version(binary)}, one worker; Envoy CPU per request (req/s), median of {ROUNDS} rounds "
        f"x {DURATION} s; wasm-authn's cache {run.CACHE_ENTRIES} entries. One Envoy per N holds both filters.",
        "",
        "| N | load | wasm-authn | native (`api_key_auth` / `basic_auth`) |",
        "|---:|---|---:|---:|",
    ]
    for res in results:
        by_key: Dict[str, Load] = {load.key: load for load in res["loads"]}
        for kind in ("api-repeated", "api-cycling", "api-unknown", "basic-repeated", "basic-cycling", "basic-unknown"):
            wasm = by_key.get(f"wasm-{kind}")
            lines.append(f"| {res['size']:,} | {wasm.kind if wasm else kind} | {cell(wasm)} | {cell(by_key.get(f'native-{kind}'))} |")
        for count in (0, RULES):
            rule = by_key.get(f"wasm-rules-{count}")
            if rule:
                lines.append(f"| {res['size']:,} | {rule.kind} | {cell(rule)} | - |")
    lines += ["", "| N | Envoy ready (both filters, every listener) | Envoy RSS after start / after the load |", "|---:|---:|---:|"]
    for res in results:
        lines.append(f"| {res['size']:,} | {res['ready_s']:.1f} s | {res['rss_mib']:.0f} / {res['rss_end_mib']:.0f} MiB |")
    return "\n".join(lines) + "\n"


def main() -> int:
    signal.signal(signal.SIGTERM, run._on_signal)
    signal.signal(signal.SIGINT, run._on_signal)
    binary = os.environ.get("ENVOY_BIN") or os.path.join(run.ROOT, ".venv", "bin", "envoy")
    append = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--append" else None
    os.makedirs(run.OUT_DIR, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="wasm-authn-scale.", dir=run.OUT_DIR)
    unknown_api = Population._pool(workdir, "api-unknown", [secrets.token_hex(16) for _ in range(UNKNOWN)])
    unknown_basic = Population._pool(workdir, "basic-unknown",
                                     [basic_header(f"nobody-{secrets.token_hex(4)}", "x") for _ in range(UNKNOWN)])
    results = []
    try:
        for size in SIZES:
            results.append(measure(size, workdir, binary, unknown_api, unknown_basic))
    finally:
        run.stop_all()
    text = report(results, binary)
    print(text)
    if append:
        with open(append, "a") as f:
            f.write(text)
    return 0 if all(load.failure is None for res in results for load in res["loads"]) else 1


if __name__ == "__main__":
    sys.exit(main())
