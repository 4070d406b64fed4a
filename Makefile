# One-command set-up: `make test` and `make figures` create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: setup test test-unit test-notebooks figures lab clean

setup: $(STAMP)

# Everything installs into .venv (nothing is registered globally); the stamp
# is refreshed when the declared dependencies change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[notebooks,dev,book]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadscope tests
	$(PY) -m pytest -q --nbval-lax --nbval-current-env notebooks/

test-unit: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadscope tests

test-notebooks: $(STAMP)
	$(PY) -m pytest -q --nbval-lax --nbval-current-env notebooks/

figures: $(STAMP)
	$(PY) -m companion.figures --out figures

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Teaching: student copies (solutions removed, outputs cleared), the offline book, the browser tests.
.PHONY: student book test-ui

student: $(STAMP)
	$(PY) -m companion.student --out build/student

book: $(STAMP)
	$(PY) docs/build_book.py --out build/book

test-ui: $(STAMP)
	$(PY) -m pytest -q -m ui tests/ui

# Benchmarks against the peers (results/bench.json and results/bench.md).
.PHONY: bench
bench: $(STAMP)
	$(PY) -m companion.bench --notebooks
