# The two set-up commands of the README: `make demo` and `make test`.
# Both build .venv from nothing: torch 2.13.0 first (the CPU wheel), then the package.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.leafscope-installed
DEMO_OUT ?= leafscope-demo

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/leafscope demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check leafscope tests bench
	$(BIN)/ruff format --check leafscope tests bench

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
