# driftloop: two commands do all the set-up on a fresh machine.
#   make demo   # the local closed loop (moto on 127.0.0.1, local training and endpoint)
#   make test   # the whole suite
# Everything is installed into ./.venv and ./node_modules; nothing global is changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Lambda runs Python 3.12 (see infra/config.py); its wheels are fetched for that runtime and
# platform, never taken from this machine's site-packages.
LAMBDA_PYTHON := 3.12
LAMBDA_DEPS := build/lambda-deps
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1

.PHONY: install demo test test-fast lint bench synth clean

# setup.py and the C source too: the editable install compiles driftloop/_scan.c in place.
$(VENV)/.installed: pyproject.toml setup.py driftloop/_scan.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

$(LAMBDA_DEPS)/.installed: lambdas/requirements.txt
	rm -rf $(LAMBDA_DEPS)
	$(PIP) install -q --target $(LAMBDA_DEPS) --platform manylinux2014_x86_64 \
		--implementation cp --python-version $(LAMBDA_PYTHON) --only-binary=:all: \
		-r lambdas/requirements.txt
	touch $@

install: $(VENV)/.installed node_modules/.installed $(LAMBDA_DEPS)/.installed

demo: install
	$(PY) -m driftloop.local.loop

# Lint and types first (seconds), then the suite.
test: install
	$(VENV)/bin/ruff check driftloop lambdas training infra tests bench app.py
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: install
	$(PY) -m pytest -n 2 --dist loadgroup -m "not slow and not e2e"

lint: install
	$(VENV)/bin/ruff check driftloop lambdas training infra tests bench app.py
	$(VENV)/bin/mypy

synth: install
	npx cdk synth -q

bench: install
	$(PY) bench/run.py

clean:
	rm -rf cdk.out build .pytest_cache .mypy_cache .ruff_cache driftloop/*.so $(VENV)/.installed
