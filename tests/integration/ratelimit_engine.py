"""A real rate-limit engine for the fleet tests: Redis (Debian's redis-server) and
tools/ratelimit-server (Kuadrant's Limitador library behind Envoy's RateLimitService,
built by scripts/build-ratelimit-server.sh), on free loopback ports.

    engine = RateLimitEngine(limits_yaml_text).start()
    engine.stop_server() / engine.start_server()     # the engine down and up again (same port)
    engine.stop_redis() / engine.start_redis()       # its storage down and up again (counts lost)
    engine.stop()

    hook = fleet_hook(engine.port, envoy_side, failure_mode_deny=True)
    EnvoyHarness(cfg, http_filters_after=[filter_of(envoy_side, ...)], config_hook=hook)

`envoy_side` is what `wasm-authn ratelimit-config --format envoy` prints (a dict);
fleet_envoy() wires it into envoy/envoy.yaml as the harness renders it. Envoy's own
counters of the rate-limit filter are `cluster.<route cluster>.ratelimit.<ok |
over_limit | error | failure_mode_allowed>`: ratelimit_stats() reads them.
"""
from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional

from harness import REPO_ROOT, EnvoyHarness, _die_with_parent, _hcm, _kill, free_port

BUILD_SCRIPT = os.path.join(REPO_ROOT, "scripts", "build-ratelimit-server.sh")
RATELIMIT_STATS = ("ok", "over_limit", "error", "failure_mode_allowed")


def ratelimit_server_bin() -> str:
    """The engine's binary, built first if its sources changed (seconds when current)."""
    p = subprocess.run([BUILD_SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)
    if p.returncode != 0:
        raise RuntimeError(f"scripts/build-ratelimit-server.sh failed:\n{p.stderr[-4000:]}")
    return p.stdout.strip().splitlines()[-1]


def redis_server_bin() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise RuntimeError("redis-server is missing: run `make setup` (Debian's redis-server)")
    return path


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on 127.0.0.1:{port} after {timeout:g} s")


class RateLimitEngine:
    """Redis and the engine; `port` is the engine's gRPC port (the Envoy cluster's)."""

    def __init__(self, limits_yaml: str, server_bin: Optional[str] = None):
        self.server_bin = server_bin or ratelimit_server_bin()
        self.tmpdir = tempfile.mkdtemp(prefix="wasm-authn-engine-")
        self.limits_path = os.path.join(self.tmpdir, "limits.yaml")
        with open(self.limits_path, "w") as f:
            f.write(limits_yaml)
        self.port = free_port()
        self.redis_port = free_port()
        while self.redis_port == self.port:
            self.redis_port = free_port()
        self.server: Optional[subprocess.Popen] = None
        self.redis: Optional[subprocess.Popen] = None

    def __enter__(self) -> "RateLimitEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, args: List[str], log: str) -> subprocess.Popen:
        with open(os.path.join(self.tmpdir, log), "ab") as out:
            return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self.tmpdir, preexec_fn=_die_with_parent)

    def start_redis(self) -> None:
        self.redis = self._spawn([redis_server_bin(), "--bind", "127.0.0.1", "--port", str(self.redis_port),
                                  "--save", "", "--appendonly", "no", "--protected-mode", "yes"], "redis.log")
        _wait_for_port(self.redis_port, self.redis, "redis-server")

    def stop_redis(self) -> None:
        _kill(self.redis, grace=2)
        self.redis = None

    def start_server(self) -> None:
        self.server = self._spawn([self.server_bin, "--rls-ip", "127.0.0.1", "--rls-port", str(self.port),
                                   self.limits_path, "redis", f"redis://127.0.0.1:{self.redis_port}"], "server.log")
        _wait_for_port(self.port, self.server, "ratelimit-server")

    def stop_server(self) -> None:
        _kill(self.server, grace=2)
        self.server = None

    def start(self) -> "RateLimitEngine":
        try:
            self.start_redis()
            self.start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.stop_server()
        self.stop_redis()
        if os.environ.get("WASM_AUTHN_KEEP_TMP") != "1":
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def log_text(self) -> str:
        path = os.path.join(self.tmpdir, "server.log")
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def fleet_envoy(envoy_side: Dict[str, Any], engine_port: int, *, failure_mode_deny: Optional[bool] = None):
    """EnvoyHarness keyword arguments that add the engine to envoy/envoy.yaml: the
    rate-limit filter of `envoy_side` after wasm-authn (with failure_mode_deny as
    given, else as generated), the `ratelimit` cluster (HTTP/2) on engine_port, and
    the route settings on every route of the first virtual host."""
    http_filter = copy.deepcopy(envoy_side["http_filter"])
    if failure_mode_deny is not None:
        http_filter["typed_config"]["failure_mode_deny"] = failure_mode_deny
    cluster_name = http_filter["typed_config"]["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"]

    def hook(cfg: dict) -> None:
        cfg["static_resources"]["clusters"].append({
            "name": cluster_name, "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": cluster_name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": engine_port}}}}]}]},
        })
        for route in _hcm(cfg)["route_config"]["virtual_hosts"][0]["routes"]:
            route["route"]["rate_limits"] = copy.deepcopy(envoy_side["route"]["rate_limits"])
            route["request_headers_to_remove"] = list(envoy_side["route"]["request_headers_to_remove"])

    return {"http_filters_after": [http_filter], "config_hook": hook}


def ratelimit_stats(envoy: EnvoyHarness, cluster: str = "echo") -> Dict[str, int]:
    """Envoy's counters of its rate-limit filter for requests routed to `cluster`."""
    stats = envoy.stats(filter=rf"^cluster\.{cluster}\.ratelimit\.")
    return {name: stats.get(f"cluster.{cluster}.ratelimit.{name}", 0) for name in RATELIMIT_STATS}
