# syntax=docker/dockerfile:1
# registry-watcher container image.
#
#   docker build -t registry-watcher .
#   docker run --read-only --tmpfs /tmp:rw,noexec,nosuid,size=1g \
#     -v watcher-state:/var/lib/watcher \
#     -v "$PWD/deploy/compose/watcher.yaml:/etc/watcher/watcher.yaml:ro" \
#     -e NPM_REGISTRY_URL -p 9464:9464 registry-watcher
#
# The root filesystem can be read-only: state lives in the /var/lib/watcher volume, downloads and
# scratch files go to TMPDIR (/tmp, a tmpfs sized for the largest artifact you expect), Python
# writes no bytecode. The configuration is mounted read-only; it must listen on 0.0.0.0 so the
# published port and the HEALTHCHECK reach it (deploy/compose/watcher.yaml does).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a wheel of the project, installed with its dependencies into a venv -----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY watcher ./watcher
RUN python -m venv /opt/watcher \
 && /opt/watcher/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/watcher/bin/pip install /tmp/wheels/*.whl

# ---- runtime: the venv, a non-root user, nothing else --------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG WATCHER_UID=10001
LABEL org.opencontainers.image.title="registry-watcher" \
      org.opencontainers.image.description="Watches npm and PyPI releases of your packages, screens them for accidental exposure and pages the owners."

# git reads `expect.tag` (git ls-remote); a base image that already has it keeps its own.
# Not pinned: the base image's suite decides git's version (security updates included).
# hadolint ignore=DL3008
RUN if ! command -v git >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi

RUN groupadd --system --gid "${WATCHER_UID}" watcher \
 && useradd --system --uid "${WATCHER_UID}" --gid watcher --home-dir /var/lib/watcher \
      --no-create-home --shell /usr/sbin/nologin watcher \
 && mkdir -p /var/lib/watcher /etc/watcher \
 && chown watcher:watcher /var/lib/watcher \
 && chmod 0750 /var/lib/watcher

COPY --from=build /opt/watcher /opt/watcher

# pip stays in the venv on purpose: with `registries.pypi.url: null` the service asks pip for its
# default index rather than spelling out a host. npm is not installed: set NPM_REGISTRY_URL (read
# by the config) or npm_config_registry.
ENV PATH=/opt/watcher/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    HOME=/var/lib/watcher \
    WATCHER_STATE=/var/lib/watcher/state.db \
    WATCHER_HEALTH_URL=http://127.0.0.1:9464/healthz

USER ${WATCHER_UID}:${WATCHER_UID}
WORKDIR /var/lib/watcher
VOLUME ["/var/lib/watcher"]
EXPOSE 9464

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(os.environ['WATCHER_HEALTH_URL'], timeout=4).status == 200 else 1)"]

ENTRYPOINT ["watcher"]
CMD ["run", "--config", "/etc/watcher/watcher.yaml"]
