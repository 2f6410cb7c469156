# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= outputs/demo

.PHONY: venv demo test test-all mutation clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# The main job on the built-in synthetic corpus: generate, train, test each dataset.
demo: $(STAMP)
	$(PY) tools/demo.py --output-dir $(DEMO_DIR)

# The linter (ruff.toml), then the default suite (slow tests excluded; see `make test-all`).
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

# Plant each bug of tools/mutation_check.py's table in a scratch copy; fails unless all are caught.
mutation: $(STAMP)
	$(PY) tools/mutation_check.py

clean:
	rm -rf $(VENV) outputs build *.egg-info
