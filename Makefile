# `make test` is the one command CI runs: it builds the venv, installs what the tests need, lints and runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test lint unit venv run bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

lint: venv
	$(BIN)/ruff check watcher tests bench
	$(BIN)/ruff format --check watcher tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q -p no:cacheprovider

run: venv
	$(BIN)/watcher run --config config/watcher.example.yaml

bench: venv
	$(BIN)/python bench/scan_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
