# The two commands of the README:
#   make demo   a local Synapse (SQLite, loopback) with JWT login working
#   make test   every test: Rust unit and integration tests, lints
# `make help` lists the rest.

CARGO ?= cargo

.PHONY: help test lint test-rust test-python test-demo test-system test-nix bench demo fuzz

help:
	@echo "make demo    run a local Synapse with JWT login (Ctrl-C stops it)"
	@echo "make test    run all tests and lints"
	@echo "make bench   run every benchmark side by side; writes results/report.md and plots"
	@echo "make fuzz    fuzz the verifier, the config parser and claim rules, FUZZ_SECONDS (60) per target"

test: lint test-nix test-rust test-system test-demo test-python

demo:
	./examples/demo.sh

PYTHON_SOURCES = python-shim benches examples tests/system

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy --workspace --no-default-features --lib --locked -- -D warnings
	# The fuzz targets are a workspace of their own; this keeps them compiling.
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --locked -- -D warnings
	tools=$$(./python-shim/tools.sh) && \
	  $$tools/ruff check --config python-shim/pyproject.toml $(PYTHON_SOURCES) && \
	  $$tools/ruff format --check --config python-shim/pyproject.toml $(PYTHON_SOURCES)

test-rust:
	$(CARGO) test --workspace --locked
	# The core alone, as the Python extension links it: no actix, no tokio.
	$(CARGO) test --no-default-features --lib --test verify --test rotation --test wycheproof --locked

test-python:
	./python-shim/run-tests.sh

# Offline Nix checks: parse, deadnix, nixpkgs-fmt, rust-version against the dependencies,
# systemd-analyze verify on the generated units; with nixpkgs' lib (NIXPKGS_LIB) also module
# evaluation, generated units up to date, flake outputs and the VM test's nodes.
test-nix:
	./nixos/offline/check.sh

# The shipped units under a real systemd (systemd-nspawn, needs root): login, registration,
# socket activation, credentials, journald, reload and restart.
test-system:
	./tests/system/run.sh

# The README's first command, non-interactively: one JWT login against a fresh Synapse.
test-demo:
	DEMO_PORT=18448 ./examples/demo.sh --check

bench:
	./benches/run.sh

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer; `cargo install cargo-fuzz`). cargo-fuzz passes
# sanitizer flags that only nightly compilers take; RUSTC_BOOTSTRAP lets the stable one accept them.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = verify_token verify_signed_claims config jwks claim_rules oauth_answer

fuzz:
	cd fuzz && for target in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
