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

    .venv/bin/python bench/scale.py [--append BENCHMARKS.md] [--svg docs/scale.svg]

Every N's Envoy runs at once and each round loads every N in turn, so that a change in
the machine's load hits every N alike (the flatness table compares each N with the
smallest in the same run). Then Envoy's RSS with the largest N at each worker count
(SCALE_WORKERS), wasm-authn's filters and the native ones apart. --svg writes the plot
of cost against N, one line per filter and load.

Environment: SCALE_SIZES (10,10000,100000), SCALE_ROUNDS (2), SCALE_DURATION seconds (3),
SCALE_WORKERS (1,2,4; empty: no RSS table),
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
WORKERS = [int(x) for x in os.environ.get("SCALE_WORKERS", "1,2,4").split(",") if x.strip()]
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
    cpu0, busy0 = envoy.cpu_seconds(), run.cpu_busy_seconds(run.ENVOY_CPU)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=run._child_setup)
    run.STARTED.append(proc)
    try:
        out, _ = proc.communicate(timeout=seconds + 30)
    finally:
        run.STARTED.remove(proc)
    cpu1, busy1 = envoy.cpu_seconds(), run.cpu_busy_seconds(run.ENVOY_CPU)
    line = next((l for l in out.splitlines() if l.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed for {load.key}:\n{out[-2000:]}")
    r = json.loads(line[len("BENCH_JSON "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    r["envoy_cpu_us"] = (cpu1 - cpu0) * 1e6 / r["requests"] if r["requests"] else 0.0
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    # Share of Envoy's CPU taken by other processes during the run (noise from the rest of the machine).
    seconds_run = r["duration_us"] / 1e6 or 1.0
    r["others_pct"] = max(0.0, (busy1 - busy0) - (cpu1 - cpu0)) / seconds_run * 100
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


class Size:
    """One N: its population, its Envoy (every filter holding N) and its loads."""

    def __init__(self, size: int, workdir: str, binary: str, unknown_api: str, unknown_basic: str):
        started = time.time()
        self.size = size
        p = Population(size, workdir)
        log(f"N={size}: population made in {time.time() - started:.1f} s")
        filters = {
            "wasm-api": [authn(f"scale-api-{size}", {"api_keys": p.api_keys()})],
            "native-api": [native_api_key(p)],
            "wasm-basic": [authn(f"scale-basic-{size}", {"basic": {"htpasswd": p.htpasswd}})],
            "native-basic": [native_basic(p)],
        }
        self.loads: List[Load] = []
        for filt in ("wasm", "native"):
            self.loads += [
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
                self.loads.append(Load(f"wasm-rules-{count}", f"wasm-rules-{count}",
                                       f"API key, repeated, {count:,} rules", 200, "x-api-key", p.keys[0],
                                       path=f"/service-{RULES - 1}/items"))
        self.population, self.filters = p, filters
        scenarios = [run.Scenario(name, name, "scale", f) for name, f in filters.items()]
        self.envoy = run.Envoy(binary, run.envoy_config(scenarios), workdir, f"envoy-scale-{size}")
        t0 = time.time()
        ports = self.envoy.start(timeout=300)
        self.ready_s = time.time() - t0
        self.rss_mib = self.envoy.rss_kib() / 1024
        log(f"N={size}: Envoy ready in {self.ready_s:.1f} s, RSS {self.rss_mib:.0f} MiB")
        for load in self.loads:
            load.port = ports.get(load.listener, 0)
            load.failure = "listener missing" if not load.port else check(load)
            if load.failure:
                log(f"N={size}: {load.key} FAILED its check: {load.failure}\n{self.envoy.log_tail(10)}")
        for load in self.active():
            wrk(load, self.envoy, 1)  # warm-up

    def active(self) -> List[Load]:
        return [load for load in self.loads if load.failure is None]

    def round(self) -> None:
        for load in self.active():
            r = wrk(load, self.envoy, DURATION)
            wrong = r["non2xx"] if load.expect == 200 else r["requests"] - r["non2xx"]
            if r["errors"] or wrong:
                load.failure = f"{wrong} answers other than {load.expect}, {r['errors']} socket errors"
            load.runs.append(r)

    def result(self) -> dict:
        rss_end = self.envoy.rss_kib() / 1024
        return {"size": self.size, "loads": self.loads, "ready_s": self.ready_s, "rss_mib": self.rss_mib,
                "rss_end_mib": rss_end}


def rss_per_worker(size: int, workdir: str, binary: str, workers: List[int]) -> List[dict]:
    """Envoy's RSS after start with `size` API clients and users, wasm-authn's filters alone
    and the native ones alone, at each worker count (each worker runs its own VM)."""
    p = Population(size, workdir)
    kinds = {
        "wasm-authn": {"wasm-api": [authn(f"rss-api-{size}", {"api_keys": p.api_keys()})],
                       "wasm-basic": [authn(f"rss-basic-{size}", {"basic": {"htpasswd": p.htpasswd}})]},
        "native": {"native-api": [native_api_key(p)], "native-basic": [native_basic(p)]},
    }
    rows = []
    for count in workers:
        row = {"workers": count}
        for kind, filters in kinds.items():
            scenarios = [run.Scenario(name, name, "scale", f) for name, f in filters.items()]
            envoy = run.Envoy(binary, run.envoy_config(scenarios), workdir, f"envoy-rss-{kind}-{count}",
                              concurrency=count)
            try:
                envoy.start(timeout=300)
                time.sleep(1)  # every worker's VM is up once the listeners are ready; let allocations settle
                row[kind] = envoy.rss_kib() / 1024
            finally:
                envoy.stop()
        log(f"RSS with {size:,} clients and users, {count} worker(s): wasm-authn {row['wasm-authn']:.0f} MiB, "
            f"native {row['native']:.0f} MiB")
        rows.append(row)
    return rows


def log(msg: str) -> None:
    print(f"scale: {msg}", flush=True)


def cell(load: Optional[Load]) -> str:
    if load is None:
        return "-"
    if load.failure:
        return f"FAILED ({load.failure})"
    cpu = statistics.median(r["envoy_cpu_us"] for r in load.runs)
    rps = statistics.median(r["rps"] for r in load.runs)
    low, high = min(r["envoy_cpu_us"] for r in load.runs), max(r["envoy_cpu_us"] for r in load.runs)
    return f"{cpu:.1f} µs [{low:.1f}-{high:.1f}] ({rps / 1000:.1f}k/s)"


def median_cpu(load: Optional[Load]) -> Optional[float]:
    if load is None or load.failure or not load.runs:
        return None
    return statistics.median(r["envoy_cpu_us"] for r in load.runs)


# The plot's lines: (load key, label, colour, dashed).
CURVES = [
    ("wasm-api-cycling", "wasm-authn, API key valid (cycling)", "#1f77b4", False),
    ("wasm-api-unknown", "wasm-authn, API key unknown", "#1f77b4", True),
    ("native-api-cycling", "api_key_auth, valid (cycling)", "#7f7f7f", False),
    ("wasm-basic-cycling", "wasm-authn, Basic valid (cycling)", "#d62728", False),
    ("wasm-basic-unknown", "wasm-authn, Basic unknown user", "#d62728", True),
    ("native-basic-cycling", "basic_auth, valid (cycling)", "#2ca02c", False),
]
# The bar: valid and unknown within this of the N = 10 figure.
FLAT_US = 2.0


def flatness(results: List[dict]) -> List[str]:
    """Each wasm-authn load at each N against the smallest N (the issue's bar)."""
    if len(results) < 2:
        return []
    base = {load.key: median_cpu(load) for load in results[0]["loads"]}
    lines = ["", f"| load | " + " | ".join(f"N = {res['size']:,} − N = {results[0]['size']:,}" for res in results[1:])
             + f" | within {FLAT_US:.0f} µs |", "|---|" + "---:|" * len(results)]
    for key in ("wasm-api-repeated", "wasm-api-cycling", "wasm-api-unknown", "wasm-basic-repeated",
                "wasm-basic-cycling", "wasm-basic-unknown"):
        deltas = []
        for res in results[1:]:
            now = median_cpu(next((l for l in res["loads"] if l.key == key), None))
            deltas.append(None if now is None or base.get(key) is None else now - base[key])
        flat = all(d is not None and abs(d) <= FLAT_US for d in deltas)
        cells = " | ".join("-" if d is None else f"{d:+.1f} µs" for d in deltas)
        lines.append(f"| {key} | {cells} | {'yes' if flat else 'no'} |")
    return lines


def svg(results: List[dict]) -> str:
    """Envoy CPU per request against N (log scale), one line per filter and load; each
    point the median of the rounds, its bar their range. Written by hand (no matplotlib)."""
    width, height, left, right, top, bottom = 800, 400, 60, 290, 20, 50
    sizes = [res["size"] for res in results]
    points = {}
    for key, *_ in CURVES:
        row = []
        for res in results:
            load = next((l for l in res["loads"] if l.key == key), None)
            if median_cpu(load) is not None:
                cpus = [r["envoy_cpu_us"] for r in load.runs]
                row.append((res["size"], statistics.median(cpus), min(cpus), max(cpus)))
        points[key] = row
    highest = max([p[3] for row in points.values() for p in row] + [10.0])
    y_max = 10 * (int(highest / 10) + 1)
    import math
    lo, hi = math.log10(min(sizes)), math.log10(max(sizes)) if max(sizes) > min(sizes) else math.log10(min(sizes)) + 1
    x = lambda n: left + (math.log10(n) - lo) / (hi - lo) * (width - left - right)
    y = lambda us: top + (1 - us / y_max) * (height - top - bottom)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for tick in range(0, y_max + 1, 10):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
    for n in sizes:
        out.append(f'<line x1="{x(n):.1f}" x2="{x(n):.1f}" y1="{top}" y2="{height - bottom}" stroke="#eee"/>')
        out.append(f'<text x="{x(n):.1f}" y="{height - bottom + 16}" text-anchor="middle">{n:,}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 10}" text-anchor="middle">'
               f'N (API clients / Basic users in the configuration, log scale)</text>')
    out.append(f'<text transform="translate(14,{(top + height - bottom) / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle">Envoy CPU per request (µs)</text>')
    for i, (key, label, colour, dashed) in enumerate(CURVES):
        row = points[key]
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        if row:
            path = " ".join(f"{x(n):.1f},{y(med):.1f}" for n, med, _, _ in row)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            for n, med, low, high in row:
                out.append(f'<line x1="{x(n):.1f}" x2="{x(n):.1f}" y1="{y(low):.1f}" y2="{y(high):.1f}" '
                           f'stroke="{colour}"/>')
                out.append(f'<circle cx="{x(n):.1f}" cy="{y(med):.1f}" r="3" fill="{colour}"/>')
        ly = top + 14 + 20 * i
        lx = width - right + 12
        out.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" '
                   f'stroke-width="2"{dash}/>')
        out.append(f'<text x="{lx + 30}" y="{ly}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def report(results: List[dict], binary: str, rss: List[dict]) -> str:
    others = [r["others_pct"] for res in results for load in res["loads"] for r in load.runs]
    lines = [
        "",
        "## Cost against the configuration's size (bench/scale.py)",
        "",
        f"Envoy {run.envoy_version(binary)}, one worker; Envoy CPU per request, median [range] of {ROUNDS} "
        f"rounds x {DURATION} s (req/s); wasm-authn's cache {run.CACHE_ENTRIES} entries. One Envoy per N holds "
        f"both filters; every N's Envoy runs at once and the rounds interleave every N and load. Other "
        f"processes took {statistics.median(others) if others else 0:.0f}% (median, "
        f"{max(others) if others else 0:.0f}% at most) of Envoy's CPU during the runs.",
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
    lines += flatness(results)
    lines += ["", "| N | Envoy ready (both filters, every listener) | Envoy RSS after start / after the load |", "|---:|---:|---:|"]
    for res in results:
        lines.append(f"| {res['size']:,} | {res['ready_s']:.1f} s | {res['rss_mib']:.0f} / {res['rss_end_mib']:.0f} MiB |")
    if rss:
        lines += ["", f"| workers | Envoy RSS, wasm-authn ({SIZES[-1]:,} clients and users) | native, the same |",
                  "|---:|---:|---:|"]
        for row in rss:
            lines.append(f"| {row['workers']} | {row['wasm-authn']:.0f} MiB | {row['native']:.0f} MiB |")
    return "\n".join(lines) + "\n"


def main() -> int:
    signal.signal(signal.SIGTERM, run._on_signal)
    signal.signal(signal.SIGINT, run._on_signal)
    binary = os.environ.get("ENVOY_BIN") or os.path.join(run.ROOT, ".venv", "bin", "envoy")
    args = sys.argv[1:]
    append = args[args.index("--append") + 1] if "--append" in args else None
    svg_path = args[args.index("--svg") + 1] if "--svg" in args else None
    os.makedirs(run.OUT_DIR, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="wasm-authn-scale.", dir=run.OUT_DIR)
    unknown_api = Population._pool(workdir, "api-unknown", [secrets.token_hex(16) for _ in range(UNKNOWN)])
    unknown_basic = Population._pool(workdir, "basic-unknown",
                                     [basic_header(f"nobody-{secrets.token_hex(4)}", "x") for _ in range(UNKNOWN)])
    rss: List[dict] = []
    try:
        sizes = [Size(size, workdir, binary, unknown_api, unknown_basic) for size in SIZES]
        for rnd in range(ROUNDS):
            for size in sizes:
                size.round()
            log(f"round {rnd + 1}/{ROUNDS} done")
        results = [size.result() for size in sizes]
        for size in sizes:
            size.envoy.stop()
        if WORKERS:
            rss = rss_per_worker(SIZES[-1], workdir, binary, WORKERS)
    finally:
        run.stop_all()
    text = report(results, binary, rss)
    print(text)
    if append:
        with open(append, "a") as f:
            f.write(text)
    if svg_path:
        with open(svg_path, "w") as f:
            f.write(svg(results))
    return 0 if all(load.failure is None for res in results for load in res["loads"]) else 1


if __name__ == "__main__":
    sys.exit(main())
