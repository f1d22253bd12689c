# Two commands on a fresh machine: `make up` runs the gateway, `make test` passes the tests.
# Each creates the virtualenv and installs what it needs by itself.

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: up test test-random pytest lint typecheck imports unit e2e envoy-check system-deps agent-clis clean bench

# A current pip first: the one Python 3.11 bundles (23.x) spends ~10 s more matching wheel tags while it resolves.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

system-deps:
	@scripts/ensure-system-deps

# The coding agents the e2e suite runs against Lime (tests/e2e/test_agents.py): Claude Code and Codex CLI at the
# versions pinned in tests/e2e/agent_clis (package.json and its lock), from the npm registry, into .lime/agents.
# Without npm this fails, and so does `make test`: the agent tests are part of the suite, never skipped.
AGENTS_DIR := .lime/agents
AGENTS_STAMP := $(AGENTS_DIR)/.installed-$(shell cksum tests/e2e/agent_clis/package-lock.json | cut -d' ' -f1)

$(AGENTS_STAMP): tests/e2e/agent_clis/package.json tests/e2e/agent_clis/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: the agent tests need Node.js 20+ and npm (apt-get install nodejs npm)" >&2; exit 1; }
	mkdir -p $(AGENTS_DIR)
	cp tests/e2e/agent_clis/package.json tests/e2e/agent_clis/package-lock.json $(AGENTS_DIR)/
	npm ci --prefix $(AGENTS_DIR) --no-audit --no-fund --loglevel=error
	rm -f $(AGENTS_DIR)/.installed-*
	touch $(AGENTS_STAMP)

agent-clis: $(AGENTS_STAMP)

up: $(STAMP) system-deps
	$(VENV)/bin/lime up

# lint and typecheck keep one core busy for ~25 s on a clean clone (mypy has no cache yet) while the tests, which
# mostly wait on their servers, leave one idle: `make -j2 test` (as .ci/run does) runs them side by side.
test: lint typecheck imports pytest

pytest: $(STAMP) system-deps agent-clis
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The layers of the house: no import runs upward, protocols and money's rules stay pure (pyproject.toml).
imports: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

# Every test makes the traffic it asserts on: the suite passes in any order. SEED=n repeats an order.
test-random: $(STAMP) system-deps agent-clis
	$(VENV)/bin/pytest -p randomly $(if $(SEED),-p randomly --randomly-seed=$(SEED))

unit: $(STAMP) system-deps
	$(VENV)/bin/pytest tests/unit

e2e: $(STAMP) system-deps agent-clis
	$(VENV)/bin/pytest tests/e2e

envoy-check: $(STAMP)
	$(VENV)/bin/lime envoy check

# The benchmark (bench/, docs/performance.md): mock, bare Envoy and the full stack under the same load, then one
# process per core (the pinned phase: docs/deploy.md's capacity table; BENCH_ARGS=--pinned-only runs just it, ~50 s,
# --no-pinned skips it); writes bench/results/. QUICK=1: a short run (~2 min). LITELLM=1: LiteLLM's proxy as a further target (installed into its
# own virtualenv, it is big). PROFILE=1: also sample authz and extproc with py-spy. BENCH_ARGS: see
# `python -m bench --help` (rates, durations, stream sizes).
BENCH_STAMP := $(VENV)/.bench-installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
LITELLM_VENV := .lime/bench/litellm-venv

$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	rm -f $(VENV)/.bench-installed-*
	touch $(BENCH_STAMP)

$(LITELLM_VENV)/bin/litellm:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --disable-pip-version-check 'litellm[proxy]'

bench: $(BENCH_STAMP) system-deps $(if $(LITELLM),$(LITELLM_VENV)/bin/litellm)
	@bench/ensure-tools
	$(VENV)/bin/python -m bench $(if $(QUICK),--quick) $(if $(LITELLM),--litellm $(LITELLM_VENV)/bin/litellm) \
		$(if $(PROFILE),--profile 15) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .lime .pytest_cache .mypy_cache .ruff_cache
