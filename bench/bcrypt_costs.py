#!/usr/bin/env python3
"""In-VM time of one bcrypt check per cost level, in a real Envoy.

    .venv/bin/python bench/bcrypt_costs.py [--wasm MODULE] [--max-cost 16]

One Envoy (one worker) with a Basic user per cost level; each wrong password
costs one full bcrypt check inside the VM (the module must be one that does not
remember failures, e.g. an old build, to time repeats). Prints a Markdown table
of the median request time per cost, minus the median of a request that needs no
hash (the filter's and Envoy's own time)."""
import argparse
import base64
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
from harness import EnvoyHarness  # noqa: E402
from tokens import bcrypt_hash, sha256_hash  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", default=None)
    ap.add_argument("--min-cost", type=int, default=4)
    ap.add_argument("--max-cost", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    costs = list(range(args.min_cost, args.max_cost + 1))
    users = [{"name": f"u{c}", "password_hash": bcrypt_hash("right", cost=c)} for c in costs]
    users.append({"name": "fast", "password_hash": sha256_hash("right")})
    # A large budget and failure limit, so that every attempt is hashed.
    basic = {"users": users}
    if args.wasm is None:
        basic.update({"slow_hash_budget_ms_per_second": 1000,
                      "failure_limit": {"max_failures": 1000000, "max_failures_per_name": 1000000}})
    config = {"basic": basic, "cache": {"max_entries": 0}}
    with EnvoyHarness(config, concurrency=1, wasm=args.wasm) as h:
        def timed(user: str, password: str) -> float:
            value = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            start = time.perf_counter()
            h.request("GET", "/", {"authorization": value})
            return time.perf_counter() - start
        base = statistics.median(timed("fast", f"wrong{i}") for i in range(20))
        print("| bcrypt cost | one check inside Envoy's V8 |")
        print("|---:|---:|")
        for c in costs:
            repeats = args.repeats if c <= 12 else 2
            median = statistics.median(timed(f"u{c}", f"wrong{i}") for i in range(repeats))
            print(f"| {c} | {max(median - base, 0) * 1000:,.1f} ms |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
