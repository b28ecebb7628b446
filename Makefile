# `make help` lists the targets. Each creates .venv (the project and its dev tools) on first use;
# the `wave` command is then .venv/bin/wave.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
export WAVE_COMMIT_ID ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: help install run lab lab-stop test lint bench clean
.DEFAULT_GOAL := help

help:  ## this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with wave in it (then: .venv/bin/wave --help)

run: $(STAMP)  ## start wave on http://127.0.0.1:9090 with the embedded store
	$(VENV)/bin/wave serve

lab: $(STAMP)  ## start a registry on 127.0.0.1:5000 with demo images, and print what to try
	@$(PY) -m tests.support.labctl start

lab-stop: $(STAMP)  ## stop the lab registry
	@$(PY) -m tests.support.labctl stop

test: $(STAMP)  ## the whole suite: unit tests and real registries, clients, builders, Redis and S3
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff, mypy --strict (pyproject.toml), and the layers contract (tests/test_layers.py)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy wave
	$(PY) -m pytest -q -p no:cacheprovider tests/test_layers.py

bench: $(STAMP)  ## benchmarks against the upstream registry; writes build/bench.json
	$(PY) -m tests.bench

clean:  ## remove .venv and build outputs
	rm -rf $(VENV) build .pytest_cache .ruff_cache
