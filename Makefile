# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/miaoxiang demo

test: $(STAMP)
	$(BIN)/python tests/browser_setup.py
	$(BIN)/pytest -p no:cacheprovider -q --durations=15

bench: $(STAMP)
	$(BIN)/miaoxiang bench

clean:
	rm -rf $(VENV) .miaoxiang test-artifacts
