# `make test` builds the venv, installs what the tests need, lints and runs the suite; CI (.ci/run)
# runs it and then `make image-check`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: pg-tools test lint unit venv run bench clean deploy-tools deploy-check deploy-sync image-tools image-check

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

test: lint pg-tools
	$(BIN)/pytest -q -p no:cacheprovider

run: venv
	$(BIN)/watcher run --config config/watcher.example.yaml

# Figures, not tests: each script prints what it measured (see docs/performance.md).
bench: venv
	$(BIN)/python bench/scan_bench.py
	$(BIN)/python bench/secrets_bench.py
	$(BIN)/python bench/feed_bench.py
	$(BIN)/python bench/service_bench.py
	$(BIN)/python bench/contain_bench.py
	$(BIN)/python bench/fingerprint_bench.py
	$(BIN)/python bench/replica_bench.py

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

# Debian's postgresql for the shared-store tests (tests/pgserver.py starts one server per session
# as the postgres user); installed when missing and we are root. Idempotent.
pg-tools:
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "pg-tools: postgresql missing and not installable here (needs root and apt-get)"; \
	else \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq -o DPkg::Lock::Timeout=300 postgresql >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=300 postgresql >/dev/null; }; \
	fi

# The image built and run for real (tests/test_image.py, deselected from `make test`): a private
# dockerd (containerd, data, sockets, pid files under .cache/docker; no bridge, no iptables), a
# base image debootstrapped from this machine's Debian mirror (kept in that engine, so the next run
# only looks it up), the Dockerfile built with --network host. docker.io and debootstrap come from
# apt when missing; without root nothing is installed and the tests skip, saying why. The engine
# is stopped by its PID whatever happens to pytest.
image-tools:
	@if command -v dockerd >/dev/null && command -v containerd >/dev/null && command -v debootstrap >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "image-tools: docker.io/debootstrap missing and not installable here (needs root and apt-get)"; \
	else \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq -o DPkg::Lock::Timeout=300 docker.io debootstrap >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=300 docker.io debootstrap >/dev/null; }; \
	fi

image-check: venv image-tools
	$(BIN)/pytest -q -p no:cacheprovider -m image -rs -s tests/test_image.py; \
	  status=$$?; $(BIN)/python -m tests.image_daemon stop .cache/docker; exit $$status

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
