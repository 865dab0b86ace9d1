#!/usr/bin/env bash
# Builds the release wasm32-wasip1 module of a crate (default: the repo root).
#
#   scripts/build-wasm.sh [crate-dir]
#
# The module always ends up at <crate-dir>/target/wasm32-wasip1/release/<lib>.wasm.
#  - rustup has the wasm32-wasip1 target: plain `cargo build --release --target wasm32-wasip1`.
#  - otherwise: Debian's rustc/cargo 1.96 with -Zbuild-std (scripts/setup.sh installs
#    them), in the separate target dir <crate-dir>/target/debian so that the rustup
#    toolchain used by `cargo test` and the Debian one never share artifacts; the module
#    is then copied to the usual place.
# WASM_BUILD=rustup|debian forces a path.
set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$(cd "${1:-$ROOT}" && pwd)"
TARGET=wasm32-wasip1
log() { printf 'build-wasm: %s\n' "$*"; }
die() { printf 'build-wasm: error: %s\n' "$*" >&2; exit 1; }

[ -f "$CRATE/Cargo.toml" ] || die "no Cargo.toml in $CRATE"
cd "$CRATE"

# Name of the library target (the cdylib): [lib] name, else the package name, '-' -> '_'.
lib_name="$(awk '
  /^\[/ { sec=$0; next }
  /^[[:space:]]*name[[:space:]]*=/ {
    v=$0; sub(/^[^=]*=[[:space:]]*"/, "", v); sub(/".*$/, "", v)
    if (sec=="[lib]") lib=v; else if (sec=="[package]" && pkg=="") pkg=v
  }
  END { print (lib!="" ? lib : pkg) }' Cargo.toml)"
lib_name="${lib_name//-/_}"
[ -n "$lib_name" ] || die "cannot find the crate name in $CRATE/Cargo.toml"
# WASM_BIN=name builds that binary (a WASI command, e.g. bench/stages) instead of the library.
what=(--lib)
if [ -n "${WASM_BIN:-}" ]; then
  lib_name="$WASM_BIN"
  what=(--bin "$WASM_BIN")
fi

mode="${WASM_BUILD:-}"
if [ -z "$mode" ]; then
  if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    mode=rustup
  else
    mode=debian
  fi
fi

# Use the committed Cargo.lock as is: never let a build rewrite it.
locked=()
[ -f Cargo.lock ] && locked=(--locked)

out_dir="$CRATE/target/$TARGET/release"
start=$(date +%s)
case "$mode" in
  rustup)
    log "building $lib_name.wasm with rustup's toolchain ($(rustc --version))"
    cargo build --release --target "$TARGET" "${locked[@]}" "${what[@]}"
    built="$out_dir/$lib_name.wasm"
    ;;
  debian)
    for f in /usr/bin/rustc /usr/bin/cargo /usr/lib/llvm-22/bin/wasm-ld /usr/lib/wasm32-wasi/libc.a; do
      [ -e "$f" ] || die "$f missing: run scripts/setup.sh (make setup)"
    done
    dtarget="$CRATE/target/debian"
    log "building $lib_name.wasm with Debian $(/usr/bin/rustc --version | cut -d' ' -f1-2) and build-std (target dir target/debian)"
    # Clear anything rustup-specific or global that could mix in the other compiler.
    env -u RUSTUP_TOOLCHAIN -u RUSTC_WRAPPER -u RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
      PATH="/usr/bin:$PATH" \
      RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
      CARGO_TARGET_DIR="$dtarget" \
      CARGO_TARGET_WASM32_WASIP1_LINKER=/usr/lib/llvm-22/bin/wasm-ld \
      CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-L /usr/lib/wasm32-wasi" \
      /usr/bin/cargo build --release --target "$TARGET" "${locked[@]}" "${what[@]}" -Zbuild-std=std,panic_abort
    built="$dtarget/$TARGET/release/$lib_name.wasm"
    [ -f "$built" ] || die "build succeeded but $built is missing (is the crate a cdylib?)"
    mkdir -p "$out_dir"
    # Atomic replace: an Envoy reading the old file never sees a half-written one.
    cp "$built" "$out_dir/.$lib_name.wasm.tmp"
    mv -f "$out_dir/.$lib_name.wasm.tmp" "$out_dir/$lib_name.wasm"
    ;;
  *) die "WASM_BUILD must be rustup or debian, not '$mode'" ;;
esac

[ -f "$out_dir/$lib_name.wasm" ] || die "no $out_dir/$lib_name.wasm after the build"

# Binaryen's optimizer, for size: -Oz is 15,725 bytes smaller than -O3 (V8 optimizes
# the module again when it loads it; docs/performance.md). The features are those
# rustc enables for wasm32-wasip1.
command -v wasm-opt >/dev/null 2>&1 || die "wasm-opt missing: run scripts/setup.sh (make setup) for binaryen"
wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int \
  --enable-reference-types --enable-multivalue "$out_dir/$lib_name.wasm" -o "$out_dir/.$lib_name.wasm.opt" \
  || die "wasm-opt failed"
mv -f "$out_dir/.$lib_name.wasm.opt" "$out_dir/$lib_name.wasm"
size=$(wc -c <"$out_dir/$lib_name.wasm")
# The product's size budget: a module over it fails the build (and so CI).
max_size=$((1024 * 1024))
[ -n "${WASM_BIN:-}" ] || [ "$size" -lt "$max_size" ] || die "$lib_name.wasm is $size bytes: over the 1 MiB budget ($max_size)"
log "ok: ${out_dir#"$PWD"/}/$lib_name.wasm ($size bytes, $(( $(date +%s) - start )) s)"
