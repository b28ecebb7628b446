# The two commands a new user needs: `make run` and `make test`. Each creates .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
export WAVE_COMMIT_ID ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## start wave on http://127.0.0.1:9090 with the embedded store
	$(PY) -m wave serve

test: $(STAMP)  ## the whole suite: unit tests and real registries, clients, builders, Redis and S3
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy wave

bench: $(STAMP)  ## benchmarks against the upstream registry; writes $(BENCH_OUT)
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
