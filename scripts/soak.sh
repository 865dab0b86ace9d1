#!/usr/bin/env bash
# `make soak`: wasm-authn in a real Envoy (--concurrency 2) under steady load while
# the JWKS endpoint flaps, keys rotate, a key is removed and the plugin
# configuration is reloaded; prints a table of checks and exits non-zero if one
# failed. See tests/soak/soak.py for what runs and the knobs:
#
#   scripts/soak.sh                      # SOAK_SECONDS=240 (make soak builds the module first)
#   SOAK_SECONDS=3600 scripts/soak.sh    # an hour: the fault cycle repeats
#
# Bounded in time: TERM after SOAK_SECONDS + SOAK_TIMEOUT_MARGIN (default 600 s),
# KILL 15 s later. Everything started here (Envoy, wrk, the JWKS server) is
# stopped on exit, failure or interrupt, and dies with the script (PDEATHSIG).
set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
ENVOY="${ENVOY_BIN:-$ROOT/.venv/bin/envoy}"
WASM="${WASM_AUTHN_WASM:-target/wasm32-wasip1/release/wasm_authn.wasm}"

log() { printf 'soak: %s\n' "$*"; }
die() { printf 'soak: error: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "no .venv: run make setup"
[ -x "$ENVOY" ] || die "no Envoy at $ENVOY: run make setup (or set ENVOY_BIN)"
[ -f "$WASM" ] || die "$WASM missing: run make wasm"
if ! command -v wrk >/dev/null 2>&1; then
  log "wrk not installed: using the Python load client (slower; make setup installs wrk)"
  export SOAK_LOAD="${SOAK_LOAD:-python}"
fi
if ! "$PY" -c 'import jwt, cryptography, yaml, bcrypt' 2>/dev/null; then
  die "Python packages missing in .venv: run make setup"
fi

seconds="${SOAK_SECONDS:-240}"
limit=$((seconds + ${SOAK_TIMEOUT_MARGIN:-600}))
pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

timeout -k 15 "$limit" "$PY" tests/soak/soak.py &
pid=$!
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" = 124 ] && die "timed out after $limit s"
exit "$rc"
