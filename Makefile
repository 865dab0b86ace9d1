# wasm-authn: `make demo` and `make test` work on a fresh machine (they install
# what is missing through scripts/setup.sh first).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV   := .venv
PYTHON := $(VENV)/bin/python
WASM   := target/wasm32-wasip1/release/wasm_authn.wasm
SCHEMA := wasm-authn.schema.json
REFERENCE := docs/configuration-reference.md
# Native unit tests use rustup's cargo (the Debian toolchain only builds the wasm,
# in target/debian; see scripts/build-wasm.sh).
CARGO  ?= cargo
PYTEST_ARGS ?=
# make fuzz: seconds per fuzz target, and which targets (all when empty).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

.PHONY: help setup wasm oci cli schema fleet-examples unit integration test test-fleet ratelimit-server demo run bench soak fuzz clean

help:
	@echo "make setup        install the toolchain, wrk and the .venv (idempotent)"
	@echo "make wasm         build $(WASM)"
	@echo "make oci          package it as an OCI image layout in target/oci (for Istio's WasmPlugin)"
	@echo "make cli          build the wasm-authn command-line companion (target/release/wasm-authn)"
	@echo "make schema       regenerate $(SCHEMA) and $(REFERENCE) from src/config/schema.rs"
	@echo "make fleet-examples  regenerate envoy/examples/{limitador-limits,ratelimit-config}.yaml from envoy/envoy-fleet.yaml"
	@echo "make test         unit tests (cargo test) + integration tests in a real Envoy (the fleet's included)"
	@echo "make test-fleet   only the fleet tests: two Envoys, one rate-limit engine (Limitador + Redis)"
	@echo "make ratelimit-server  build that engine (tools/ratelimit-server)"
	@echo "make run          start Envoy with the bundled config, the echo upstream and the JWKS server;"
	@echo "                  prints the ports and demo credentials, stays in the foreground (Ctrl-C stops it)"
	@echo "make demo         run the bundled Envoy config and show allowed/refused requests (builds the CLI too)"
	@echo "make bench        benchmarks (scripts/bench.sh)"
	@echo "make soak         soak test, ~5 min, not part of make test (scripts/soak.sh;"
	@echo "                  SOAK_SECONDS=3600 make soak runs it longer)"
	@echo "make fuzz         every libFuzzer target for FUZZ_SECONDS (60) each; FUZZ_TARGETS=\"jwks config\" picks some"
	@echo "make clean        remove build outputs"

setup:
	@scripts/setup.sh

wasm: setup
	@scripts/build-wasm.sh

# The module as an OCI image (Istio's "compat" Wasm image) in the OCI image layout
# target/oci; prints the module's sha256 and the manifest digest to pin.
oci: wasm
	@scripts/build-oci.sh $(WASM) target/oci

# The command-line companion, a native program (`wasm-authn --help`).
cli:
	$(CARGO) build --locked --release --bin wasm-authn
	@echo "built target/release/wasm-authn"

# The JSON Schema of the configuration and its reference, written by the CLI from the
# same types (cargo tests check both are current).
schema:
	$(CARGO) run --locked --quiet --bin wasm-authn -- schema > $(SCHEMA).tmp
	mv $(SCHEMA).tmp $(SCHEMA)
	$(CARGO) run --locked --quiet --bin wasm-authn -- schema --markdown > $(REFERENCE).tmp
	mv $(REFERENCE).tmp $(REFERENCE)

# The fleet tests' rate-limit engine: Kuadrant's Limitador behind Envoy's RateLimitService.
ratelimit-server: setup
	@scripts/build-ratelimit-server.sh >/dev/null

# Two Envoys sharing one budget through the engine (tests/integration/test_fleet.py).
test-fleet: wasm ratelimit-server
	$(CARGO) build --locked --bin wasm-authn
	$(PYTHON) -m pytest -q tests/integration/test_fleet.py $(PYTEST_ARGS)

# The engine's rules of envoy/envoy-fleet.yaml, as `wasm-authn ratelimit-config` prints them
# (a test checks they are current).
fleet-examples:
	$(CARGO) build --locked --quiet --bin wasm-authn
	@scripts/fleet-examples.sh

# fuzz/ and bench/stages are workspaces of their own on the library (feature `testing`):
# type-checked with the unit tests so that they cannot rot (building them is scripts/fuzz.sh's
# and scripts/bench.sh's).
CHECK_SATELLITES := $(CARGO) check --locked --quiet --manifest-path fuzz/Cargo.toml --bins && \
	$(CARGO) check --locked --quiet --manifest-path bench/stages/Cargo.toml

# The two halves of `make test`, without setup/build, for quick iterations.
unit:
	$(CARGO) test --locked
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CHECK_SATELLITES)

# test_cli.py runs the debug CLI (target/debug/wasm-authn); cargo test has built it already.
integration:
	$(CARGO) build --locked --bin wasm-authn
	$(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)

# Runs both suites even when the first fails, and fails if either did.
test: wasm ratelimit-server
	@rc=0; \
	echo "== unit tests (cargo test) and lints (cargo clippy, host adapter included)"; \
	$(CARGO) test --locked || rc=1; \
	$(CARGO) clippy --locked --all-targets -- -D warnings || rc=1; \
	$(CHECK_SATELLITES) || rc=1; \
	$(CARGO) build --locked --bin wasm-authn || rc=1; \
	echo "== integration tests (Envoy 1.40 + $(WASM), the wasm-authn CLI)"; \
	$(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS) || rc=1; \
	if [ $$rc != 0 ]; then echo "make test: FAILED" >&2; fi; \
	exit $$rc

demo: wasm cli
	@scripts/demo.sh

# The demo's Envoy, left running in the foreground (Ctrl-C stops it).
run: wasm cli
	@scripts/demo.sh --serve

bench: wasm
	@scripts/bench.sh

# Not part of `make test`: minutes of load with faults (tests/soak/soak.py).
soak: wasm
	@scripts/soak.sh
# Not part of `make test`: each target runs for FUZZ_SECONDS (scripts/fuzz.sh installs what it needs).
fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)

clean:
	rm -rf target fuzz/target fuzz/artifacts .pytest_cache
	find tests envoy scripts -name __pycache__ -type d -prune -exec rm -rf {} +
