#!/usr/bin/env bash
# Writes the rate-limit engine's rules of envoy/envoy-fleet.yaml's plugin configuration
# with `wasm-authn ratelimit-config`: envoy/examples/limitador-limits.yaml (mounted into
# Limitador by envoy/docker-compose-fleet.yaml) and envoy/examples/ratelimit-config.yaml
# (envoyproxy/ratelimit). With --check, writes nothing and fails when either differs.
#   CLI=path/to/wasm-authn (default target/debug/wasm-authn), PYTHON (default .venv/bin/python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLI="${CLI:-target/debug/wasm-authn}"
PYTHON="${PYTHON:-.venv/bin/python}"
check=false
[ "${1:-}" = "--check" ] && check=true

config="$("$PYTHON" -c '
import json, sys, yaml
cfg = yaml.safe_load(open("envoy/envoy-fleet.yaml"))
for lst in cfg["static_resources"]["listeners"]:
    for hf in lst["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
        if hf["name"] == "envoy.filters.http.wasm":
            print(hf["typed_config"]["config"]["configuration"]["value"])
')"
status=0
for pair in limitador:limitador-limits.yaml ratelimit:ratelimit-config.yaml; do
  format="${pair%%:*}"
  file="envoy/examples/${pair#*:}"
  text="$(printf '# Written by `make fleet-examples` (wasm-authn ratelimit-config --format %s) from\n# envoy/envoy-fleet.yaml'"'"'s plugin configuration: do not edit.\n' "$format"
          printf '%s' "$config" | "$CLI" ratelimit-config - --format "$format")"
  if $check; then
    if [ "$text" != "$(cat "$file" 2>/dev/null)" ]; then
      echo "fleet-examples: $file is not what ratelimit-config prints: run make fleet-examples" >&2
      status=1
    fi
  else
    printf '%s\n' "$text" >"$file"
    echo "fleet-examples: wrote $file"
  fi
done
exit $status
