# The two commands a new user runs: `make demo` and `make test`.
# Everything else they need (the Wasm target, Envoy, Debian packages) is
# installed by the targets themselves.

CARGO      ?= cargo
WASM_TARGET := wasm32-wasip1
WASM_OUT    := target/$(WASM_TARGET)/release

# Filter crates shipped to users: dist/filters/<crate_name>.wasm.
FILTERS  := security_headers metrics
# Test-only filters that prove host-test's ABI: dist/fixtures/<name>.wasm.
FIXTURES := conformance noop

HOST_TEST := target/release/host-test
SCENARIOS := $(sort $(wildcard tests/scenarios/*.yaml tests/scenarios/*/*.yaml))

.PHONY: all build fixtures host-test test demo bench fmt fmt-check lint clean

all: build

## build: every filter as dist/filters/<crate_name>.wasm
build:
	$(CARGO) build --release --target $(WASM_TARGET) $(foreach f,$(FILTERS),-p $(subst _,-,$(f)))
	@mkdir -p dist/filters
	@for f in $(FILTERS); do cp $(WASM_OUT)/$$f.wasm dist/filters/$$f.wasm; done
	@ls -l dist/filters

## fixtures: host-test's conformance filters as dist/fixtures/<name>.wasm
fixtures:
	$(CARGO) build --release --target $(WASM_TARGET) $(foreach f,$(FIXTURES),-p fixture-$(f))
	@mkdir -p dist/fixtures
	@for f in $(FIXTURES); do cp $(WASM_OUT)/$$f.wasm dist/fixtures/$$f.wasm; done

host-test:
	$(CARGO) build --release -p host-test --bin host-test

## test: builds what the tests load, then runs every test in the workspace
test: build fixtures
	$(CARGO) test --workspace --release
	$(MAKE) --no-print-directory scenarios

## scenarios: every tests/scenarios file through the host-test CLI
scenarios: host-test
	$(HOST_TEST) run $(SCENARIOS)

## demo: the main job: build the filters and run every scenario with a report
demo: build fixtures host-test
	$(HOST_TEST) run $(SCENARIOS)

## bench: criterion benches (host-test lifecycle, filter cores)
bench: build fixtures
	$(CARGO) bench -p benches

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

## lint: clippy, natively and for the Wasm target, warnings are errors
lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) $(foreach f,$(FILTERS),-p $(subst _,-,$(f))) $(foreach f,$(FIXTURES),-p fixture-$(f)) -- -D warnings

clean:
	$(CARGO) clean
	rm -rf dist
