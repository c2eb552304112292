# Kustos — the two commands a new machine needs are `make demo` and `make test`.
# Both install everything they need: Debian packages, a virtual environment with the
# project and its dev extras, and the control-plane binaries (cached under ~/.cache/kustos).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# The native core (native/, Rust and pyo3: the audit writer's hot loop, the credential
# detector), built into the source tree as kustos._native; without cargo Kustos runs the
# Python path.
CARGO ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
NATIVE := src/kustos/_native.abi3.so

.PHONY: all demo test unit integration lint format deps system-deps venv native controlplane sops vault proto bench bench-peers clean help

all: test

help:
	@echo "make demo          install everything, start the local control plane, run the tour"
	@echo "make test          install everything, lint, run unit and integration tests"
	@echo "make unit          unit tests only (no control plane)"
	@echo "make integration   integration tests only"
	@echo "make lint          ruff, ruff format --check, mypy --strict, import-linter"
	@echo "make native        build the audit writer's native core (Rust; the Python path without it)"
	@echo "make controlplane  build or reuse the control-plane binaries"
	@echo "make vault         build or reuse the Vault server for the source tests"
	@echo "make bench         install Checkov/Trivy, run every benchmark (about an hour)"
	@echo "make proto         regenerate the KMS v2 gRPC stubs from kms_v2.proto"

deps: system-deps venv native controlplane sops

system-deps:
	@tools/install-system-deps.sh

# Bytecode written once here: machines that set PYTHONDONTWRITEBYTECODE would otherwise
# compile every module at each start of a command (compileall skips what is up to date).
venv: $(STAMP) $(NATIVE)
	@$(BIN)/python -m compileall -q src

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)
	@echo "python: $(VENV) ready"


native: $(NATIVE)

$(NATIVE): native/Cargo.toml native/Cargo.lock native/src/lib.rs native/src/detect.rs native/src/reader.rs native/src/credentials.rs | $(STAMP)
	@if [ -x "$(CARGO)" ]; then \
		cd native && PYO3_PYTHON=$(abspath $(BIN)/python) $(CARGO) build --release --locked -q \
		&& cp target/release/libkustos_native.so ../$(NATIVE).new && mv ../$(NATIVE).new ../$(NATIVE) \
		&& echo "native: $(NATIVE) built"; \
	else \
		echo "native: no cargo (rustup.rs): the audit archive takes the slower Python path"; \
	fi

controlplane:
	@tools/controlplane/build.sh >/dev/null

sops:
	@tools/sops/build.sh >/dev/null

# Vault v1.21.0 from the Go module proxy: the first build takes 10-40 minutes on 2 cores.
vault:
	@nice -n 10 tools/vault/build.sh >/dev/null

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

proto: venv
	$(BIN)/python -m grpc_tools.protoc -I src --python_out=src --grpc_python_out=src \
		--pyi_out=src src/kustos/kms/proto/kms_v2.proto

bench-peers:
	@tools/peers/install.sh

bench: deps bench-peers
	$(BIN)/python -m bench
	$(BIN)/python -m bench.kms
	$(BIN)/python -m bench.rotation
	$(BIN)/python -m bench.sources
	$(BIN)/python -m bench.backup
	$(BIN)/python -m bench.audit

unit: venv native
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: deps vault
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test: deps vault lint
	$(BIN)/pytest tests $(PYTEST_ARGS)

demo: deps
	$(BIN)/kustos demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
