# Two commands on a fresh machine: `make up` runs the gateway, `make test` passes the tests.
# Each creates the virtualenv and installs what it needs by itself.

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: up test lint typecheck unit e2e envoy-check system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

system-deps:
	@scripts/ensure-system-deps

up: $(STAMP) system-deps
	$(VENV)/bin/lime up

test: $(STAMP) system-deps lint typecheck
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP) system-deps
	$(VENV)/bin/pytest tests/unit

e2e: $(STAMP) system-deps
	$(VENV)/bin/pytest tests/e2e

envoy-check: $(STAMP)
	$(VENV)/bin/lime envoy check

clean:
	rm -rf $(VENV) .lime .pytest_cache .mypy_cache .ruff_cache
