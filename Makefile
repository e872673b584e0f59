# ZeroTrustML. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Native Rust builds (the extension, clippy, cargo test, the wasm32 check of the core) share one target directory
# outside the clone, so a fresh clone reuses the compiled dependencies. The hApp's wasm keeps target/wasm (its
# DNA manifest points there; scripts/build-happ.sh sets its own).
export CARGO_TARGET_DIR ?= $(or $(ZTML_CACHE),$(HOME)/.cache/zerotrustml)/cargo-target

.PHONY: help run test build bench lint test-rust test-python wasm-check holochain happ webhapp test-holochain test-tryorama dashboard clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# What running needs: pyproject's dependencies and its holochain extra (`--backend holochain`), and maturin.
# tests/test_packaging.py keeps these lists and pyproject.toml in step.
$(VENV)/.deps: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.9,<2" "numpy>=1.26" "click>=8.1" "rich>=13" \
	    "mlxtend>=0.23" "scikit-learn>=1.4" "matplotlib>=3.8" "pynacl>=1.5" \
	    "websockets>=12" "msgpack>=1.0"
	touch $@

# The test extra: test, lint and benchmark tools (Flower is the peer the tests and benchmarks compare with;
# Sybil runs the examples in README.md and docs/ as tests; Schemathesis fuzzes the service; the ray extra, for
# `zerotrustml matrix --executor ray`), over the service extra.
$(VENV)/.deps-test: $(VENV)/.deps-service
	$(PY) -m pip install -q "pytest>=8" "hypothesis>=6.100" "flwr[simulation]==1.42.0" "mypy>=1.10" "ruff>=0.5" "sybil>=10,<11" \
	    "schemathesis>=4.3,<5" "playwright>=1.50,<2" "ray[client]>=2.40,<3"
	touch $@

# The service extra (`zerotrustml serve`, `node`, `cluster`): the web framework, its server, the metrics library,
# WebSockets for the live events, and the HTTP client the nodes use.
$(VENV)/.deps-service: $(VENV)/.deps
	$(PY) -m pip install -q "fastapi>=0.115" "uvicorn>=0.30" "prometheus-client>=0.20" "websockets>=12" "httpx>=0.27"
	touch $@

# The torch extra (torch_mlp, torch_cnn) for the tests only: the PyPI wheel brings CUDA libraries (~5 GB).
$(VENV)/.deps-torch: $(VENV)/.deps-test
	$(PY) -m pip install -q "torch>=2.4"
	touch $@

build: $(VENV)/.deps ## build the Rust extension into .venv (release)
	maturin develop --release --quiet

run: build ## the main job: simulate 20 nodes, 30% sign flip, MNIST, the detection pipeline (embedded store, no services)
	$(PY) -m zerotrustml run

test: build lint test-rust wasm-check test-python test-holochain test-tryorama ## every test: Rust, wasm, Python, real conductors

test-rust: ## cargo tests of the core and of the zomes' pure validation logic
	cargo test -p zerotrustml-core -p gradients_integrity --release

wasm-check: ## the core must build for wasm32 (the zomes reuse it)
	rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	cargo build -p zerotrustml-core --no-default-features --target wasm32-unknown-unknown --release

# The dashboard (web/: TypeScript, Chart.js, Vite) builds into the package, where `zerotrustml serve` serves it.
WEB_STAMP := web/node_modules/.npm-ci.stamp
$(WEB_STAMP): web/package-lock.json web/package.json
	cd web && npm ci --no-audit --no-fund
	touch $@

DASHBOARD := python/zerotrustml/service/static/index.html
$(DASHBOARD): $(WEB_STAMP) web/index.html web/vite.config.ts web/tsconfig.json $(wildcard web/src/*)
	cd web && npm run build --silent

dashboard: $(DASHBOARD) ## build the service's dashboard into the package (npm; served by `zerotrustml serve` at /)

# The browser tests drive Debian's Chromium with Playwright's library (its own browser download does not work
# on these machines). ZTML_CHROMIUM points the tests at another executable.
CHROMIUM := $(or $(ZTML_CHROMIUM),/usr/bin/chromium)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "no Chromium at $@: install it, or set ZTML_CHROMIUM" >&2; exit 1; }
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

test-python: build dashboard $(CHROMIUM) $(VENV)/.deps-torch ## pytest (differential vs Flower, properties, errors, the service, the mock conductor)
	$(PY) -m pytest -q -m "not conductors"

lint: $(VENV)/.deps-test $(VENV)/.deps-torch ## clippy -D warnings, rustfmt, ruff, mypy, stub check
	cargo fmt --check
	cargo clippy -p zerotrustml-core -p zerotrustml-py --release -- -D warnings
	cargo clippy -p gradients_integrity -p gradients -p byzantine -p validation-cost --release --all-targets -- -D warnings
	ruff check python tests benchmarks scripts conftest.py
	mypy
	$(PY) -m mypy.stubtest zerotrustml._core --ignore-missing-stub

holochain: ## install holochain 0.6.3, hc and the bootstrap server (cached outside the repo; ~1 h the first time)
	bash scripts/install-holochain.sh

happ: holochain ## build the zomes (wasm32) and pack workdir/zerotrustml.happ
	bash scripts/build-happ.sh

webhapp: happ dashboard ## pack workdir/zerotrustml.webhapp: the hApp with the dashboard as its UI (reads the DHT)
	bash scripts/build-webhapp.sh

test-holochain: webhapp build $(CHROMIUM) $(VENV)/.deps-test ## the Python bridge on real conductors (pytest -m conductors) and the two-conductor sync proof
	@bin=$${HC_BIN_DIR:-$$(bash scripts/install-holochain.sh | tail -n 1)}; \
	  HC_BIN_DIR="$$bin" $(PY) -m pytest -q -m conductors -p no:cacheprovider && \
	  HC_BIN_DIR="$$bin" $(PY) scripts/sync-proof.py --timeout 120

# npm ci only when node_modules is missing or the lock changed; the stamp
# lives inside node_modules, so `npm ci` (which deletes that dir) resets it.
TRYORAMA_STAMP := tryorama/node_modules/.npm-ci.stamp
$(TRYORAMA_STAMP): tryorama/package-lock.json tryorama/package.json
	cd tryorama && npm ci --no-audit --no-fund
	touch $@

# tryorama 0.19 spawns kitsune2-bootstrap-srv, hc and holochain by bare name,
# so the cached bin dir goes first on PATH (HC_BIN_DIR overrides it, as in
# build-happ.sh and sync-proof.py).
test-tryorama: happ $(TRYORAMA_STAMP) ## tryorama (TypeScript): 3-5 agents on real conductors: submissions, aggregates, votes, reputation
	@bin=$${HC_BIN_DIR:-$$(bash scripts/install-holochain.sh | tail -n 1)}; \
	  test -x "$$bin/holochain" -a -x "$$bin/hc" -a -x "$$bin/kitsune2-bootstrap-srv" \
	    || { echo "holochain binaries not found in '$$bin'" >&2; exit 1; }; \
	  echo "holochain binaries: $$bin"; \
	  cd tryorama && log=$$(mktemp) && trap 'rm -f "$$log"' EXIT; \
	  PATH="$$bin:$$PATH" npx vitest run 2>&1 | tee "$$log"; rc=$${PIPESTATUS[0]}; \
	  if [ "$$rc" != 0 ]; then echo "tryorama failed; the errors and fresh starts:"; \
	    grep -a -E '^\[ztml\] (network|DHT)|(Error|DhtNotInSync): ' "$$log" | cut -c1-600 | tail -n 8; fi; \
	  exit $$rc

bench: build $(VENV)/.deps-test ## benchmark the kernels against numpy, Flower and the hardware floor
	$(PY) benchmarks/aggregators.py

clean: ## remove this clone's build outputs (keeps .venv and the shared caches under ~/.cache/zerotrustml)
	rm -rf target
