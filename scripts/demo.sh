#!/usr/bin/env bash
# The demo: the bundled envoy/envoy.yaml with the filter, on loopback only.
# Starts the echo upstream (:8081), the JWKS server (:8082) and Envoy (:10000,
# admin :9901) from the repository root, sends a handful of requests, shows which
# are allowed and which are refused and why, prints the filter's counters, and
# stops everything, whatever happens. Run it through `make demo` (which builds
# the module first). Exits non-zero if a request does not get the expected status.
#
# --serve (`make run`): starts the same, prints the ports and the demo credentials,
# then stays in the foreground with Envoy's log until Ctrl-C (or Envoy exits),
# and stops everything.
set -euo pipefail
exec </dev/null

SERVE=0
case "${1:-}" in
  --serve) SERVE=1 ;;
  "") ;;
  *) printf 'usage: %s [--serve]\n' "$0" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ENVOY="${ENVOY_BIN:-$ROOT/.venv/bin/envoy}"
PY="$ROOT/.venv/bin/python"
WASM=target/wasm32-wasip1/release/wasm_authn.wasm
CONFIG=envoy/envoy.yaml

die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
[ -x "$ENVOY" ] || die "no Envoy at $ENVOY: run make setup (or set ENVOY_BIN)"
[ -x "$PY" ] || die "no .venv: run make setup"
# WASM_AUTHN_WASM: run another module with the same config (as the tests allow).
[ -f "${WASM_AUTHN_WASM:-$WASM}" ] || die "${WASM_AUTHN_WASM:-$WASM} missing: run make wasm"

for port in 10000 9901 8081 8082; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "127.0.0.1:$port is already in use (another demo or docker-compose running?)"
  fi
done

TMP="$(mktemp -d -t wasm-authn-demo.XXXXXX)"
pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${WASM_AUTHN_WASM:-}" ]; then
  CONFIG="$TMP/envoy.yaml"
  sed "s|filename: $WASM|filename: $(realpath "$WASM_AUTHN_WASM")|" envoy/envoy.yaml >"$CONFIG"
fi

echo "demo: starting echo upstream :8081, JWKS server :8082, Envoy :10000 (admin :9901)"
"$PY" envoy/echo_server.py --port 8081 >"$TMP/echo.log" 2>&1 & pids+=($!)
"$PY" envoy/jwks_server.py --port 8082 >"$TMP/jwks.log" 2>&1 & pids+=($!)
"$ENVOY" -c "$CONFIG" --disable-hot-restart --concurrency 2 --log-level info \
  --drain-time-s 0 >"$TMP/envoy.log" 2>&1 & envoy_pid=$!; pids+=($envoy_pid)

# Readiness: admin /ready says LIVE and the listener accepts (at most 20 s).
ready=0
for _ in $(seq 200); do
  kill -0 "$envoy_pid" 2>/dev/null || break
  if [ "$(curl -s --max-time 1 http://127.0.0.1:9901/ready 2>/dev/null)" = LIVE ] \
     && (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null \
     && (exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "demo: Envoy did not become ready; its errors:" >&2
  { grep -E '\]\[(warning|error|critical)\]' "$TMP/envoy.log" || tail -n 15 "$TMP/envoy.log"; } | tail -n 15 | cut -c1-300 >&2
  exit 1
fi
echo "demo: Envoy is ready"
echo

if [ "$SERVE" = 1 ]; then
  "$PY" - <<'PYEOF'
import json
c = json.load(open("envoy/demo-keys/demo-credentials.json"))
b, k = c["basic"], c["api_keys"]
print(f"""wasm-authn is running (envoy/envoy.yaml, DEMO credentials: envoy/demo-keys/):
  Envoy with the filter   http://127.0.0.1:10000   (routes everything to the echo upstream)
  Envoy admin             http://127.0.0.1:9901    (/stats?filter=wasmcustom: the filter's counters)
  echo upstream           127.0.0.1:8081           (envoy/echo_server.py: answers with the request it got, as JSON)
  JWKS server             127.0.0.1:8082           (envoy/jwks_server.py: the keys of the provider remote-demo)

  Basic users             alice:{b['alice']}  bob:{b['bob']} (bcrypt)  carol:{b['carol']}
  API keys (x-api-key)    demo-client: {k['demo-client']}
                          revoked-client (disabled): {k['revoked-client']}
  JWT providers           demo-local (RS256/HS256, keys in envoy/demo-keys/), remote-demo (fetched keys)
  token endpoint          POST /auth/token with demo-client's key

Try, from another terminal:
  curl -i http://127.0.0.1:10000/healthz
  curl -i http://127.0.0.1:10000/api/orders
  curl -i -u alice:{b['alice']} http://127.0.0.1:10000/api/orders
  curl -i -H 'x-api-key: {k['demo-client']}' http://127.0.0.1:10000/api/orders
  curl -s -H 'content-type: application/json' -d '{{"apiKey": "{k['demo-client']}"}}' http://127.0.0.1:10000/auth/token
  curl -s -X POST 'http://127.0.0.1:9901/logging?wasm=debug'   # one log line per decision
More: docs/getting-started.md. Ctrl-C stops Envoy and the servers.
""")
PYEOF
  echo "demo: Envoy's log follows"
  tail -n 0 -f "$TMP/envoy.log" & pids+=($!)
  set +e
  wait "$envoy_pid"
  rc=$?
  set -e
  echo "demo: Envoy exited ($rc)" >&2
  exit "$rc"
fi

rc=0
"$PY" - <<'PYEOF' || rc=$?
import base64, http.client, json, os, sys, time
import jwt  # PyJWT

KEYS = "envoy/demo-keys"
creds = json.load(open(os.path.join(KEYS, "demo-credentials.json")))
J = creds["jwt"]
now = int(time.time())
rs_key = open(os.path.join(KEYS, J["rs256_private_key"])).read()
remote_key = open(os.path.join(KEYS, J["remote_private_key"])).read()

def token(key, kid, iss, **claims):
    body = {"iss": iss, "sub": "svc-reports", "aud": J["audience"], "iat": now, "exp": now + 600,
            "scope": "orders:read reports:read"}
    body.update(claims)
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})

def basic(user, pw):
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()

good_rs = token(rs_key, J["rs256_kid"], J["local_issuer"])
expired = token(rs_key, J["rs256_kid"], J["local_issuer"], iat=now - 7200, exp=now - 3600)
remote = token(remote_key, J["remote_kid"], J["remote_issuer"], sub="svc-remote")
alice, bob, carol = (creds["basic"][u] for u in ("alice", "bob", "carol"))

# A client keypair, as thirdweb's clients sign: iss = the public key's PEM, 15 s to live.
engine = creds["keypairs"]["demo-engine"]
engine_key = open(os.path.join(KEYS, engine["private_key"])).read()
engine_pem = open(os.path.join(KEYS, engine["public_key"])).read()
keypair = jwt.encode({"iss": engine_pem, "iat": now, "exp": now + 15}, engine_key, algorithm="ES256")
too_long = jwt.encode({"iss": engine_pem, "iat": now, "exp": now + 3600}, engine_key, algorithm="ES256")
demo_key = creds["api_keys"]["demo-client"]
json_type = {"content-type": "application/json"}

def issued_token():
    """The demo client exchanges its API key at the token endpoint (Synerise's form)."""
    status, _, body = send("/auth/token", json_type, "POST", json.dumps({"apiKey": demo_key}).encode())
    return json.loads(body)["access_token"] if status == 200 else "none"

cases = [
    # (what, path, headers, expected status)
    ("/healthz (bypass)", "/healthz", {}, 200),
    ("no credential", "/api/orders", {}, 401),
    ("Basic alice (sha256)", "/api/orders", {"authorization": basic("alice", alice)}, 200),
    ("Basic bob (bcrypt)", "/api/orders", {"authorization": basic("bob", bob)}, 200),
    ("Basic carol (htpasswd {SHA})", "/api/orders", {"authorization": basic("carol", carol)}, 200),
    ("Basic alice, wrong password", "/api/orders", {"authorization": basic("alice", "guess")}, 401),
    ("X-API-Key demo-client", "/api/orders", {"x-api-key": creds["api_keys"]["demo-client"]}, 200),
    ("X-API-Key revoked-client (disabled)", "/api/orders", {"x-api-key": creds["api_keys"]["revoked-client"]}, 401),
    ("Bearer RS256 (local JWKS)", "/api/reports", {"authorization": "Bearer " + good_rs}, 200),
    ("Bearer RS256, expired", "/api/reports", {"authorization": "Bearer " + expired}, 401),
    ("Bearer RS256 (remote JWKS)", "/api/reports", {"authorization": "Bearer " + remote}, 200),
    ("forged x-auth-principal, no credential", "/api/orders", {"x-auth-principal": "admin"}, 401),
    ("forged x-auth-principal + Basic alice", "/api/orders",
     {"x-auth-principal": "admin", "authorization": basic("alice", alice)}, 200),
    ("Bearer keypair demo-engine (ES256, iss=PEM)", "/api/orders", {"authorization": "Bearer " + keypair}, 200),
    ("Bearer keypair, lives an hour (max 60 s)", "/api/orders", {"authorization": "Bearer " + too_long}, 401),
    ("POST /auth/token {apiKey: demo-client}", "/auth/token", json_type, 200,
     "POST", json.dumps({"apiKey": demo_key}).encode()),
    ("POST /auth/token client_credentials, wrong key", "/auth/token",
     {"content-type": "application/x-www-form-urlencoded"}, 401,
     "POST", b"grant_type=client_credentials&client_id=demo-client&client_secret=guess"),
    ("Bearer token from /auth/token", "/api/orders", lambda: {"authorization": "Bearer " + issued_token()}, 200),
    ("GET /.well-known/jwks.json (the endpoint's key)", "/.well-known/jwks.json", {}, 200),
]

def send(path, headers, method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", 10000, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        c.close()

W = 50
print(f"{'#':>2}  {'request':<{W}} {'want':>4} {'got':>4}   why / what the upstream saw")
print(f"{'-'*2}  {'-'*W} {'-'*4} {'-'*4}   {'-'*40}")
bad = 0
for i, (what, path, headers, want, *request) in enumerate(cases, 1):
    try:
        status, hdrs, body = send(path, headers() if callable(headers) else headers, *request)
    except OSError as e:
        status, hdrs, body = 0, [], str(e).encode()
    mark = "  " if status == want else " !"
    bad += status != want
    detail = []
    if status == 200:
        try:
            seen = json.loads(body)["headers"]
            auth = {k: v for k, v in seen.items() if k.startswith("x-auth-")}
            detail.append(", ".join(f"{k}: {v}" for k, v in sorted(auth.items())) or "no x-auth-* headers")
            if "authorization" in seen or "x-api-key" in seen:
                detail.append("credential forwarded upstream")
        except (ValueError, KeyError):
            detail.append(body[:80].decode("utf-8", "replace") + ("..." if len(body) > 80 else ""))
    else:
        chall = [v for k, v in hdrs if k.lower() == "www-authenticate"]
        detail += [f"WWW-Authenticate: {c}" for c in chall]
        retry = [v for k, v in hdrs if k.lower() == "retry-after"]
        detail += [f"Retry-After: {r}" for r in retry]
        try:
            msg = json.loads(body)
            detail.append(f"body: {json.dumps(msg, separators=(',', ':'))}")
        except ValueError:
            if body:
                detail.append(f"body: {body[:80]!r}")
    print(f"{i:>2}  {what:<{W}} {want:>4} {status:>4}{mark} " + (detail[0] if detail else ""))
    for d in detail[1:]:
        print(f"{'':>2}  {'':<{W}} {'':>4} {'':>4}   {d}")
print()
if bad:
    print(f"demo: {bad} request(s) did not get the expected status (marked !)")
sys.exit(1 if bad else 0)
PYEOF

sleep 1.2 # allowed, bypassed and anonymous reach Envoy on the filter's next tick
echo "demo: the filter's counters (http://127.0.0.1:9901/stats?filter=wasmcustom):"
curl -s --max-time 5 'http://127.0.0.1:9901/stats?filter=wasmcustom' | sed 's/^/  /'
echo "demo: stopping"
exit "$rc"
