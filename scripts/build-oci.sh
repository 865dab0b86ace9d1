#!/usr/bin/env bash
# Packages the built module as an OCI image that Istio's WasmPlugin loads, in an
# OCI image layout directory (no Docker engine, no registry).
#
#   scripts/build-oci.sh [wasm-file [layout-dir [tag]]]
#
# Defaults: target/wasm32-wasip1/release/wasm_authn.wasm, target/oci, the crate's
# version. The image is Istio's "compat" Wasm image variant: one layer, of media
# type application/vnd.oci.image.layer.v1.tar+gzip, holding the module as
# plugin.wasm (see docs/envoy-and-istio.md, "Istio"). umoci writes the layout; skopeo reads the
# manifest digest back the way a registry client sees it.
#
# The image depends on the module's bytes alone (fixed timestamps, owner and
# mode), so the same module always gives the same manifest digest. That digest is
# what Istio compares a WasmPlugin's `sha256` with for an oci:// URL; it is
# printed last, as `WasmPlugin sha256: <64 hex digits>`.
set -euo pipefail
exec </dev/null

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WASM="${1:-target/wasm32-wasip1/release/wasm_authn.wasm}"
OUT="${2:-target/oci}"
TAG="${3:-$(sed -n 's/^version[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' Cargo.toml | head -n1)}"
# Every timestamp in the image (the layer's file, the config, its history).
EPOCH=1970-01-01T00:00:00Z

log() { printf 'build-oci: %s\n' "$*"; }
die() { printf 'build-oci: error: %s\n' "$*" >&2; exit 1; }

for tool in umoci skopeo; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: run scripts/setup.sh (make setup)"
done
[ -f "$WASM" ] || die "$WASM is missing: run make wasm"
[ -n "$TAG" ] || die "no tag given and no version in Cargo.toml"
head -c 4 "$WASM" | od -An -tx1 | grep -q '00 61 73 6d' || die "$WASM is not a wasm module"

# umoci needs --rootless to unpack as an ordinary user (repack reads it from the bundle).
rootless=()
[ "$(id -u)" = 0 ] || rootless=(--rootless)

# Build next to the destination, then swap it in: a reader never sees half a layout.
mkdir -p "$(dirname "$OUT")"
work="$(mktemp -d "$(dirname "$OUT")/.oci-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
layout="$work/layout"
bundle="$work/bundle"
image="$layout:$TAG"

umoci init --layout "$layout"
umoci new --image "$image"
# An empty bundle, the module added as /plugin.wasm, packed back as the one layer.
# (Not `umoci insert`: Debian's umoci 0.4.7 leaves the end-of-archive blocks out of
# the tar it writes, which GNU tar and Python's tarfile refuse.)
umoci unpack "${rootless[@]}" --image "$image" "$bundle" >/dev/null
install -m 0644 "$WASM" "$bundle/rootfs/plugin.wasm"
touch -h -d "$EPOCH" "$bundle/rootfs/plugin.wasm" "$bundle/rootfs"
umoci repack --image "$image" \
  --history.created "$EPOCH" --history.created_by "wasm-authn make oci: plugin.wasm" "$bundle" >/dev/null
umoci config --image "$image" --no-history --created "$EPOCH" --architecture wasm --os wasip1 \
  --manifest.annotation "module.wasm.image/variant=compat" \
  --manifest.annotation "org.opencontainers.image.title=wasm-authn" \
  --manifest.annotation "org.opencontainers.image.version=$TAG"
umoci gc --layout "$layout"

# Read it back as a registry client would.
digest="$(skopeo inspect --format '{{.Digest}}' "oci:$image")"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "unexpected manifest digest '$digest'"
layers="$(skopeo inspect --format '{{len .Layers}}' "oci:$image")"
[ "$layers" = 1 ] || die "the image has $layers layers, not 1"

rm -rf "$OUT"
mv "$layout" "$OUT"

module_sha="$(sha256sum "$WASM" | cut -d' ' -f1)"
log "OCI image layout: $OUT (tag $TAG; push: skopeo copy --format oci oci:$OUT:$TAG docker://REGISTRY/wasm-authn:$TAG)"
log "module sha256: $module_sha ($WASM, $(wc -c <"$WASM") bytes)"
log "manifest digest: $digest"
log "WasmPlugin sha256: ${digest#sha256:}"
