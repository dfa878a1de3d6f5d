# Quick start: `make demo` (a live migration on local servers), `make test` (lint, types, tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test test-all soak lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,spark]'
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Everything but the long soak: also the tests marked slow (minutes each).
test-all: lint
	$(VENV)/bin/pytest -m 'not soak' $(PYTEST_ARGS)

# Long randomized fault schedules (minutes per seed): SOAK_SEEDS=1,2,3 SOAK_DURATION=300 make soak
# (SOAK_SEED=N reruns one seed's schedule). `make test-all` runs a short one (seed 36, ~1 min).
soak: install
	$(VENV)/bin/pytest -m soak -s tests/soak $(PYTEST_ARGS)

demo: install
	$(PY) bench/demo.py

# Every section in one run, the code at BENCH_BEFORE timed beside this one, docs regenerated.
BENCH_BEFORE ?= 5b3d873
bench: install
	$(PY) bench/run.py --write-docs --before $(BENCH_BEFORE) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules .demo .bench
