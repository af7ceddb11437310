# The two set-up commands of the README: `make demo` and `make test`.
# Both build .venv from nothing: torch 2.13.0 first (the CPU wheel), then the package.
# `make demo` installs only what the package needs; `make test` adds the dev extra (pytest,
# ruff, sphinx, dask, lightning) on top.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.leafscope-core
DEV := $(VENV)/.leafscope-dev
DEMO_OUT ?= leafscope-demo

.PHONY: demo test test-slow lint bench clean

$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e .
	touch $(CORE)

$(DEV): $(CORE)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV)

demo: $(CORE)
	$(BIN)/leafscope demo --out $(DEMO_OUT)

test: $(DEV)
	$(BIN)/python -m pytest -q

test-slow: $(DEV)
	$(BIN)/python -m pytest -q -m slow

lint: $(DEV)
	$(BIN)/ruff check leafscope tests bench examples
	$(BIN)/ruff format --check leafscope tests bench examples

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
