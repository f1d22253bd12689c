# Two commands on a fresh machine: `make up` runs the gateway, `make test` passes the tests.
# Each creates the virtualenv and installs what it needs by itself.

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: up test test-random pytest lint typecheck imports unit e2e envoy-check system-deps clean bench

# A current pip first: the one Python 3.11 bundles (23.x) spends ~10 s more matching wheel tags while it resolves.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

system-deps:
	@scripts/ensure-system-deps

up: $(STAMP) system-deps
	$(VENV)/bin/lime up

# lint and typecheck keep one core busy for ~25 s on a clean clone (mypy has no cache yet) while the tests, which
# mostly wait on their servers, leave one idle: `make -j2 test` (as .ci/run does) runs them side by side.
test: lint typecheck imports pytest

pytest: $(STAMP) system-deps
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The layers of the house: no import runs upward, protocols and money's rules stay pure (pyproject.toml).
imports: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

# Every test makes the traffic it asserts on: the suite passes in any order. SEED=n repeats an order.
test-random: $(STAMP) system-deps
	$(VENV)/bin/pytest -p randomly $(if $(SEED),-p randomly --randomly-seed=$(SEED))

unit: $(STAMP) system-deps
	$(VENV)/bin/pytest tests/unit

e2e: $(STAMP) system-deps
	$(VENV)/bin/pytest tests/e2e

envoy-check: $(STAMP)
	$(VENV)/bin/lime envoy check

# The benchmark (bench/, docs/performance.md): mock, bare Envoy and the full stack under the same load; writes
# bench/results/. QUICK=1: a short run (~2 min). LITELLM=1: LiteLLM's proxy as a further target (installed into its
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
