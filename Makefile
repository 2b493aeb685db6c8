# `make test` is the one command CI runs: it builds the venv, installs what the tests need, lints and runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test lint unit venv run bench clean deploy-tools deploy-check deploy-sync

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

# Figures, not tests: each script prints what it measured (see docs/performance.md).
bench: venv
	$(BIN)/python bench/scan_bench.py
	$(BIN)/python bench/secrets_bench.py
	$(BIN)/python bench/feed_bench.py
	$(BIN)/python bench/service_bench.py

# promtool for tests/test_deploy.py: Debian's prometheus package unpacked into .cache/ (nothing is
# installed or started); apt-get update only when the package lists are missing. Idempotent.
PROMTOOL := .cache/prometheus/usr/bin/promtool
$(PROMTOOL):
	mkdir -p .cache/prometheus/deb
	cd .cache/prometheus/deb && rm -f prometheus_*.deb && \
	  { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb -x .cache/prometheus/deb/prometheus_*.deb .cache/prometheus
	touch $@

deploy-tools: $(PROMTOOL)

# Dockerfile (hadolint), k8s schemas, compose, alert rules (promtool), dashboard, systemd unit
deploy-check: venv deploy-tools
	$(BIN)/pytest -q -p no:cacheprovider tests/test_deploy.py

# regenerate docs/metrics.md's table (from watcher/metrics.py) and the k8s PrometheusRule's rules
# (from deploy/prometheus/alerts.yml)
deploy-sync: venv
	$(BIN)/python -m tests.test_deploy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
