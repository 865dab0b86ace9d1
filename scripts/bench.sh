#!/usr/bin/env bash
# `make bench`: wasm-authn against Envoy's native auth filters, in one Envoy run.
#
#   scripts/bench.sh            (make bench builds the module first)
#
# Builds the trivial wasm filter (bench/trivial-filter, the wasm floor) and, if
# missing, wasm-authn; then bench/run.py makes the keys and tokens, renders one
# Envoy config with a listener per scenario (127.0.0.1 only), runs Envoy pinned
# to CPU 0 and wrk pinned to CPU 1, prints the table and writes BENCHMARKS.md.
# The fleet row also starts Redis and tools/ratelimit-server (pinned to wrk's CPU).
# Then bench/signing_costs.py appends the token endpoint's signing times, and
# bench/stages (the core's stages timed one by one in V8, through Node) its table, and
# bench/scale.py its cost against the configuration's size (N clients and users, 1,000 rules).
# About 6 minutes on a 2-core machine; bounded by BENCH_TIMEOUT (default 540 s)
# for the measuring part. Everything started here is stopped on exit, failure
# or interrupt. Knobs for quick runs: see bench/run.py (BENCH_ROUNDS,
# BENCH_DURATION, BENCH_ONLY, BENCH_OUTPUT, ...); BENCH_NO_BUILD=1 skips builds.
set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
ENVOY="${ENVOY_BIN:-$ROOT/.venv/bin/envoy}"
WASM=target/wasm32-wasip1/release/wasm_authn.wasm
TRIVIAL=bench/trivial-filter/target/wasm32-wasip1/release/trivial_filter.wasm

log() { printf 'bench: %s\n' "$*"; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "no .venv: run make setup"
[ -x "$ENVOY" ] || die "no Envoy at $ENVOY: run make setup (or set ENVOY_BIN)"
command -v wrk >/dev/null 2>&1 || die "wrk missing: run make setup"
command -v taskset >/dev/null 2>&1 || die "taskset missing (util-linux)"
command -v node >/dev/null 2>&1 || die "node missing: run make setup"
[ "$(nproc)" -ge 2 ] || log "warning: $(nproc) CPU: Envoy and wrk will share it, figures are not comparable"

# Python packages the bench needs (all in tests/requirements.txt; bcrypt added if an older .venv lacks it).
if ! "$PY" -c 'import jwt, cryptography, yaml, bcrypt' 2>/dev/null; then
  log "installing missing Python packages into .venv"
  "$PY" -m pip install --no-input --disable-pip-version-check -q 'PyJWT[crypto]' cryptography PyYAML bcrypt \
    || die "pip install failed"
fi

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  [ -f "$WASM" ] || scripts/build-wasm.sh
  scripts/build-wasm.sh bench/trivial-filter
  # The fleet row: the CLI writes the engine's rules, the engine is built if its sources changed.
  cargo build --locked --quiet --bin wasm-authn
  scripts/build-ratelimit-server.sh >/dev/null
fi
[ -f "$WASM" ] || die "$WASM missing: run make wasm"
[ -f "$TRIVIAL" ] || die "$TRIVIAL missing: run scripts/build-wasm.sh bench/trivial-filter"

pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    # run.py stops its Envoy and wrk itself on TERM; they also die with it (PDEATHSIG).
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Bounded in time: TERM after BENCH_TIMEOUT seconds, KILL 15 s later.
timeout -k 15 "${BENCH_TIMEOUT:-540}" "$PY" bench/run.py &
pid=$!
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" = 124 ] && die "timed out after ${BENCH_TIMEOUT:-540} s"
[ "$rc" = 0 ] || exit "$rc"

# The token endpoint's signing time per algorithm (about 30 s), appended to the same file.
output="${BENCH_OUTPUT:-$ROOT/BENCHMARKS.md}"
log "signing inside the VM (bench/signing_costs.py)"
if [ "$output" = - ]; then
  timeout -k 5 120 "$PY" bench/signing_costs.py
else
  timeout -k 5 120 "$PY" bench/signing_costs.py --append "$output"
fi

# Each stage of the core in V8 (about 20 s): where the filter's own microseconds go.
STAGES=bench/stages/target/wasm32-wasip1/release/stages.wasm
if [ "${BENCH_NO_BUILD:-0}" != 1 ] || [ ! -f "$STAGES" ]; then
  WASM_BIN=stages scripts/build-wasm.sh bench/stages
fi
log "the core's stages in V8 (bench/stages)"
stages="$(taskset -c 0 timeout -k 5 120 node --no-warnings --no-liftoff bench/stages/run.mjs "$STAGES")" || die "bench/stages failed"
stages_section() {
  cat <<EOF

## Where the time goes inside the VM

Each stage of the pure core on one request, timed in V8: Node $(node --version) runs bench/stages, a
WASI build of the same crate with the filter's profile, with optimized code only (\`--no-liftoff\`,
as Envoy sets V8 up). Host calls are not in it: the \`trivial-calls\` row above prices them. A
loop that runs one stage keeps it in the CPU's caches: inside Envoy, between network events, the
same code takes about twice as long (docs/performance.md).

$stages
EOF
}
if [ "$output" = - ]; then stages_section; else stages_section >> "$output"; fi

# Cost against the configuration's size (issue 18, about 7 minutes): 10 to 100,000 API
# clients and users, 1,000 rules, wasm-authn next to api_key_auth and basic_auth holding
# the same N, Envoy's RSS per worker count (bench/scale.py); the plot of cost against N
# in target/bench/scale.svg (docs/scale.svg is a copy of one). BENCH_SCALE=0 skips it.
if [ "${BENCH_SCALE:-1}" != 0 ]; then
  log "cost against the configuration's size (bench/scale.py)"
  if [ "$output" = - ]; then
    timeout -k 15 "${BENCH_SCALE_TIMEOUT:-900}" "$PY" bench/scale.py --svg target/bench/scale.svg
  else
    timeout -k 15 "${BENCH_SCALE_TIMEOUT:-900}" "$PY" bench/scale.py --append "$output" --svg target/bench/scale.svg
  fi
fi
