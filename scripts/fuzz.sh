#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (issue 12), each for FUZZ_SECONDS (default 60),
# one after the other, from the committed seeds in fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh                      every target
#   scripts/fuzz.sh jwt_verify jwks      some of them
#   FUZZ_SECONDS=900 scripts/fuzz.sh jwt_verify
#   FUZZ_MERGE=1 scripts/fuzz.sh jwks    afterwards, add to fuzz/corpus/jwks/ the inputs
#                                        of the run that reach new coverage (libFuzzer -merge)
#   FUZZ_ARGS="-jobs=2 -workers=2" ...   extra libFuzzer flags
#   scripts/fuzz.sh --list               the targets
#
# New inputs of a run go to fuzz/target/corpus/<target>/ (not committed), crashes to
# fuzz/artifacts/<target>/; a crash fails the run (after the other targets ran) and
# is replayed with `fuzz/target/<triple>/release/<target> <artifact>`.
#
# Toolchain: libfuzzer-sys 0.4 with a stable compiler, the instrumentation `cargo fuzz`
# asks of a nightly passed as plain codegen flags. The compiler is Debian's rustc
# (rustc-web, what builds the wasm here: rustup has no nightly on these machines),
# installed by apt when missing; FUZZ_RUSTC / FUZZ_CARGO name others. Its build
# lives in fuzz/target, apart from every other build.
set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
log() { printf 'fuzz: %s\n' "$*"; }
die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 1; }

TARGETS_ALL=(
  credential_extract header_map path_normalize jwt_verify jwt_differential
  jwks discovery config verify_signature_reply shared_records decide stream_steps
)
# Longest input per target (libFuzzer's default is 4096 bytes).
declare -A MAX_LEN=([jwks]=16384 [config]=16384 [jwt_verify]=9000 [jwt_differential]=9000 [decide]=9000 [stream_steps]=900)

if [ "${1:-}" = "--list" ]; then printf '%s\n' "${TARGETS_ALL[@]}"; exit 0; fi
[[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] && [ "$SECONDS_EACH" -gt 0 ] || die "FUZZ_SECONDS must be a positive number of seconds"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${TARGETS_ALL[@]}")
for t in "${targets[@]}"; do
  printf '%s\n' "${TARGETS_ALL[@]}" | grep -qx "$t" || die "no fuzz target '$t' (scripts/fuzz.sh --list)"
done

# --- toolchain (idempotent) -------------------------------------------------
RUSTC_BIN="${FUZZ_RUSTC:-/usr/bin/rustc}"
CARGO_BIN="${FUZZ_CARGO:-/usr/bin/cargo}"
need=()
if [ -z "${FUZZ_RUSTC:-}" ] && [ ! -x "$RUSTC_BIN" ]; then need+=(rustc-web); fi
if [ -z "${FUZZ_CARGO:-}" ] && [ ! -x "$CARGO_BIN" ]; then need+=(cargo-web); fi
# libfuzzer-sys compiles libFuzzer's C++ sources.
command -v c++ >/dev/null 2>&1 || need+=(g++)
if [ "${#need[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and no apt-get: set FUZZ_RUSTC and FUZZ_CARGO"
  SUDO=""; if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
  log "apt: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq >/tmp/wasm-authn-fuzz-apt.log 2>&1 || { tail -n 20 /tmp/wasm-authn-fuzz-apt.log >&2; die "apt-get update failed"; }
  $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >>/tmp/wasm-authn-fuzz-apt.log 2>&1 \
    || { tail -n 20 /tmp/wasm-authn-fuzz-apt.log >&2; die "apt-get install failed (log: /tmp/wasm-authn-fuzz-apt.log)"; }
fi
[ -x "$RUSTC_BIN" ] || die "no rustc at $RUSTC_BIN"
[ -x "$CARGO_BIN" ] || die "no cargo at $CARGO_BIN"
TRIPLE="$("$RUSTC_BIN" -vV | sed -n 's/^host: //p')"

# What `cargo fuzz build` passes, minus the sanitizer: coverage counters, the PC
# table and comparison tracing for libFuzzer, cfg(fuzzing), and the debug checks
# (overflow too) in an optimized build. With --target these reach the fuzzed code
# only, not build scripts or proc macros (which are not linked with libFuzzer).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export RUSTC="$RUSTC_BIN" CARGO_TARGET_DIR="$FUZZ/target"
unset RUSTC_WRAPPER CARGO_BUILD_TARGET || true

log "building ${targets[*]} ($("$RUSTC_BIN" --version))"
bin_args=(); for t in "${targets[@]}"; do bin_args+=(--bin "$t"); done
# Not --locked: fuzz/Cargo.lock follows the project's own lock, and when the project
# gains a dependency cargo adds it here rather than refusing to build.
PATH="$(dirname "$CARGO_BIN"):$PATH" "$CARGO_BIN" build --manifest-path "$FUZZ/Cargo.toml" --release \
  --target "$TRIPLE" "${bin_args[@]}"
BIN_DIR="$FUZZ/target/$TRIPLE/release"

# --- run --------------------------------------------------------------------
summary="$FUZZ/target/fuzz-summary.txt"
: >"$summary"
failed=()
read -r -a extra <<<"${FUZZ_ARGS:-}"
for t in "${targets[@]}"; do
  seeds="$FUZZ/corpus/$t"
  work="$FUZZ/target/corpus/$t"
  artifacts="$FUZZ/artifacts/$t"
  mkdir -p "$seeds" "$work" "$artifacts"
  args=(-max_total_time="$SECONDS_EACH" -max_len="${MAX_LEN[$t]:-4096}" -timeout=20 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$artifacts/")
  [ -f "$FUZZ/dict/$t.dict" ] && args+=(-dict="$FUZZ/dict/$t.dict")
  log "$t: ${SECONDS_EACH}s from $(find "$seeds" -type f | wc -l) seeds (+ $(find "$work" -type f | wc -l) found earlier)"
  out="$FUZZ/target/$t.log"
  rc=0
  "$BIN_DIR/$t" "${args[@]}" "${extra[@]}" "$work" "$seeds" >"$out" 2>&1 || rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n1 || true)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -n1 || true)"
  cov="$( (grep -oE 'cov: [0-9]+' "$out" || true) | tail -n1 | cut -d' ' -f2)"
  if [ "$rc" != 0 ]; then
    failed+=("$t")
    grep -E '^(==[0-9]+== ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$out" | head -n 8 >&2 || true
    log "$t: FAILED (exit $rc), log $out, artifacts in $artifacts"
    printf '%-24s FAILED  execs=%s\n' "$t" "${execs:-?}" >>"$summary"
  else
    log "$t: ok, ${execs:-?} executions (${rate:-?}/s), coverage ${cov:-?}"
    printf '%-24s ok      execs=%-12s exec/s=%-8s cov=%s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" >>"$summary"
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ] && [ "$rc" = 0 ]; then
    "$BIN_DIR/$t" -merge=1 -max_len="${MAX_LEN[$t]:-4096}" "$seeds" "$work" >"$FUZZ/target/$t.merge.log" 2>&1 \
      && log "$t: merged into $seeds ($(find "$seeds" -type f | wc -l) files)"
  fi
done

log "summary ($summary):"
sed 's/^/  /' "$summary"
if [ "${#failed[@]}" -gt 0 ]; then
  die "failing targets: ${failed[*]}"
fi
