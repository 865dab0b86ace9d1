#!/usr/bin/env bash
# Builds the fleet tests' rate-limit engine, tools/ratelimit-server (Kuadrant's
# Limitador library behind Envoy's RateLimitService), into
#   target/ratelimit-server/target/release/ratelimit-server
# and prints that path last. Quick when the binary is newer than its sources.
#
# limitador 0.14 (and 0.12, 0.13) on crates.io compiles only with its RocksDB disk
# storage: src/storage/keys.rs calls its `bin` module (which calls a method of
# Counter), both compiled only with the feature `disk_storage`. RocksDB is a C++ build of many minutes, which the test
# run cannot afford, and the server counts in Redis. So the crate, as cargo
# downloaded and checked it, is unpacked under target/ and built with those
# two `#[cfg(feature = "disk_storage")]` lines removed (that module and the one
# method it calls are plain Rust: keys encoded with postcard); every other
# dependency is the one Cargo.lock pins.
set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tools/ratelimit-server"
OUT="$ROOT/target/ratelimit-server"
BIN="$OUT/target/release/ratelimit-server"
CARGO="${CARGO:-cargo}"
log() { printf 'build-ratelimit-server: %s\n' "$*" >&2; }
die() { printf 'build-ratelimit-server: error: %s\n' "$*" >&2; exit 1; }

newest_source="$(find "$SRC/Cargo.toml" "$SRC/Cargo.lock" "$SRC/src" "${BASH_SOURCE[0]}" -type f -newer "$BIN" 2>/dev/null | head -1 || true)"
if [ -x "$BIN" ] && [ -z "$newest_source" ]; then
  echo "$BIN"
  exit 0
fi

start=$SECONDS
version="$(awk '/^name = "limitador"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$SRC/Cargo.lock")"
[ -n "$version" ] || die "no limitador in $SRC/Cargo.lock"
log "fetching the locked dependencies (limitador $version)"
"$CARGO" fetch --locked --manifest-path "$SRC/Cargo.toml" >&2

crate="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "limitador-$version.crate" -print -quit)"
[ -n "$crate" ] || die "cargo fetched no limitador-$version.crate"
rm -rf "$OUT/patched" "$OUT/build"
mkdir -p "$OUT/patched" "$OUT/build"
tar xzf "$crate" -C "$OUT/patched"
crate_dir="$OUT/patched/limitador-$version"
gate='#[cfg(feature = "disk_storage")]'
# file:the line (without its indentation) whose gate goes: the only two keys.rs needs.
# Lines are compared without their indentation.
for item in 'src/storage/keys.rs:pub mod bin {' 'src/counter.rs:pub(crate) fn variables_for_key(&self) -> Vec<(&str, &str)> {'; do
  file="$crate_dir/${item%%:*}"
  gated_line="${item#*:}"
  ungate='{ text = $0; sub(/^[ \t]+/, "", text) }
    held != "" { if (text == line) n++; else print held; held = "" }
    text == gate { held = $0; next }
    { print }
    END { exit n == 1 ? 0 : 3 }'
  awk -v gate="$gate" -v line="$gated_line" "$ungate" "$file" >"$file.new" \
    || die "limitador $version: ${item%%:*} no longer gates \"$gated_line\" as expected; look again"
  mv "$file.new" "$file"
done

# A copy of the crate to build, so that the patch never rewrites tools/ratelimit-server/Cargo.lock.
cp -r "$SRC/Cargo.toml" "$SRC/Cargo.lock" "$SRC/src" "$OUT/build/"
log "building (release, $(nproc) cores)"
(cd "$OUT/build" && CARGO_TARGET_DIR="$OUT/target" "$CARGO" build --release --offline \
  --config "patch.crates-io.limitador.path='$OUT/patched/limitador-$version'" >&2)
[ -x "$BIN" ] || die "no $BIN after the build"
touch "$BIN"
log "built in $((SECONDS - start)) s"
echo "$BIN"
