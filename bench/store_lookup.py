#!/usr/bin/env python3
"""Issue 18.3, measured: a client store as a map in each worker's VM (what
`api_keys.remote` does) against one copy in Envoy's shared data, read per request.

bench/store-lookup is a filter that does only that: SHA-256 of the request's
`x-api-key`, the client looked up (`map:N` or `shared:N`), `x-auth-principal` set or
401. One Envoy (one worker on CPU 0, wrk on CPU 1, as bench/scale.py) holds both
designs with N clients each, and both with 10; valid keys cycling through all N and
unknown keys, interleaved over rounds: Envoy CPU per request. Then Envoy's RSS with
each design alone at 1 and 2 workers (what one more worker costs).

    .venv/bin/python bench/store_lookup.py

Environment: STORE_N (100000), SCALE_ROUNDS (3), SCALE_DURATION seconds (3).
"""
from __future__ import annotations

import importlib.util
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_scale", os.path.join(HERE, "scale.py"))
scale = importlib.util.module_from_spec(_spec)
sys.modules["bench_scale"] = scale
_spec.loader.exec_module(scale)
run = scale.run

N = int(os.environ.get("STORE_N", "100000"))
ROUNDS = run.env_int("SCALE_ROUNDS", 3)
DURATION = run.env_int("SCALE_DURATION", 3)
WASM = os.path.join(HERE, "store-lookup", "target", "wasm32-wasip1", "release", "store_lookup.wasm")


def lookup_filter(design: str, n: int) -> dict:
    # One VM per design and size: the map of one is not in the memory of the other.
    return run.wasm_filter(f"store-{design}-{n}", f"store_{design}_{n}", WASM, "", f"{design}:{n}")


def main() -> int:
    if not os.path.exists(WASM):
        subprocess.run(["scripts/build-wasm.sh", "bench/store-lookup"], cwd=run.ROOT, check=True)
    binary = os.environ.get("ENVOY_BIN") or os.path.join(run.ROOT, ".venv", "bin", "envoy")
    os.makedirs(run.OUT_DIR, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="wasm-authn-store.", dir=run.OUT_DIR)
    valid = scale.Population._pool(workdir, "valid", [f"key-{secrets.randbelow(N)}" for _ in range(200_000)])
    unknown = scale.Population._pool(workdir, "unknown", [secrets.token_hex(16) for _ in range(200_000)])
    valid_small = scale.Population._pool(workdir, "valid-small", [f"key-{i % 10}" for i in range(1000)])
    loads, filters = [], {}
    for design in ("map", "shared"):
        for n in (10, N):
            listener = f"{design}-{n}"
            filters[listener] = [lookup_filter(design, n)]
            loads.append(scale.Load(f"{listener}-valid", listener, f"{design}, N = {n:,}, valid cycling", 200,
                                    "x-api-key", pool=valid if n == N else valid_small))
            loads.append(scale.Load(f"{listener}-unknown", listener, f"{design}, N = {n:,}, unknown", 401,
                                    "x-api-key", pool=unknown))
    rows = []
    try:
        scenarios = [run.Scenario(name, name, "scale", f) for name, f in filters.items()]
        envoy = run.Envoy(binary, run.envoy_config(scenarios), workdir, "envoy-store")
        ports = envoy.start(timeout=300)
        for load in loads:
            load.port = ports[load.listener]
            load.failure = scale.check(load)
            if load.failure:
                print(f"store: {load.key}: {load.failure}\n{envoy.log_tail(10)}", flush=True)
        active = [load for load in loads if load.failure is None]
        for load in active:
            scale.wrk(load, envoy, 1)
        for rnd in range(ROUNDS):
            for load in active:
                load.runs.append(scale.wrk(load, envoy, DURATION))
            print(f"store: round {rnd + 1}/{ROUNDS} done", flush=True)
        envoy.stop()
        for design in ("map", "shared"):
            rss = {}
            for workers in (1, 2):
                scenarios = [run.Scenario("one", "one", "scale", [lookup_filter(design, N)])]
                e = run.Envoy(binary, run.envoy_config(scenarios), workdir, f"envoy-rss-{design}-{workers}",
                              concurrency=workers)
                e.start(timeout=300)
                time.sleep(1)
                rss[workers] = e.rss_kib() / 1024
                e.stop()
            rows.append((design, rss))
    finally:
        run.stop_all()
    others = [r["others_pct"] for load in loads for r in load.runs]
    print(f"\nEnvoy CPU per request, median [range] of {ROUNDS} rounds x {DURATION} s; others took "
          f"{statistics.median(others) if others else 0:.0f}% of Envoy's CPU (median)\n")
    print("| load | Envoy CPU per request |\n|---|---:|")
    for load in loads:
        print(f"| {load.kind} | {scale.cell(load)} |")
    print(f"\n| design ({N:,} clients) | Envoy RSS, 1 worker | 2 workers | one more worker |\n|---|---:|---:|---:|")
    for design, rss in rows:
        print(f"| {design} | {rss[1]:.0f} MiB | {rss[2]:.0f} MiB | {rss[2] - rss[1]:+.0f} MiB |")
    return 0 if all(load.failure is None for load in loads) else 1


if __name__ == "__main__":
    sys.exit(main())
