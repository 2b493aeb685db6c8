"""The container image, built from the Dockerfile and run for real (`make image-check`; its tests
are marked `image`, which `make test` deselects): a private Docker engine (tests/image_daemon.py) builds the image on a base made
from Debian packages (tests/image_base.py), then the image runs as the docs show — read-only root,
the documented tmpfs on /tmp, all capabilities dropped — as a non-root user, its HEALTHCHECK passes
against the running service (and fails without one), and `watcher scan` of a local tarball exits as
the README documents. Containers run with `--network none` (loopback only); only the build uses the
host's network, for pip. Skipped, with the reason, only where the engine cannot start at all."""

from __future__ import annotations

import json
import random
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests import fakecreds
from tests.builders import npm_tarball
from tests.image_base import ensure_base_image
from tests.image_daemon import DockerUnavailable, PrivateDocker

_Test = TypeVar("_Test", bound=Callable[..., None])


def image_check(test: _Test) -> _Test:
    """Only under `make image-check` (the last test, on the docs alone, runs in `make test`)."""
    marked: _Test = pytest.mark.image(pytest.mark.timeout(1500)(test))
    return marked


ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
IMAGE = "registry-watcher:image-check"
BUILD_STAGE = "registry-watcher:image-check-build"
UID = "10001"
# nothing listens there inside the container's own loopback: polls fail fast, nothing leaves
NOWHERE = "http://127.0.0.1:9"


def _tmpfs_in(name: str) -> list[str]:
    return re.findall(r"--tmpfs\s+(\S+)", (ROOT / name).read_text())


# the `--tmpfs` of docs/operations.md's `docker run` (the README's must agree: checked below)
TMPFS = next(iter(_tmpfs_in("docs/operations.md")), "/tmp")
HARDENING = ("--read-only", "--tmpfs", TMPFS, "--cap-drop", "ALL",
             "--security-opt", "no-new-privileges", "--network", "none")  # fmt: skip


def _say(text: str) -> None:
    print(f"[image-check] {text}", flush=True)


@pytest.fixture(scope="module")
def engine() -> Iterator[PrivateDocker]:
    docker = PrivateDocker(CACHE / "docker")
    started = time.monotonic()
    try:
        docker.start()
    except DockerUnavailable as exc:
        pytest.skip(f"Docker cannot start here, so the image is not checked: {exc}")
    _say(f"private dockerd up in {time.monotonic() - started:.1f}s ({docker.sock})")
    _clear_leftovers(docker)
    try:
        yield docker
    finally:
        docker.stop()
        _say("private dockerd stopped")


def _clear_leftovers(docker: PrivateDocker) -> None:
    """What interrupted runs left in this engine (it is ours alone): containers, including a killed
    build's, and their volumes."""
    containers = docker.docker("ps", "--all", "--quiet").stdout.split()
    if containers:
        docker.docker("rm", "--force", "--volumes", *containers, check=False)
    docker.docker("volume", "prune", "--force", check=False)


@pytest.fixture(scope="module")
def image(engine: PrivateDocker) -> str:
    started = time.monotonic()
    base, timings = ensure_base_image(engine, CACHE / "image")
    made = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) or "cached"
    _say(f"base image {base}: {made} ({time.monotonic() - started:.1f}s)")
    started = time.monotonic()
    build = ("build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}")
    # the build stage is tagged too, so it stays the next run's cache while every older build,
    # untagged now, is pruned: the data root keeps the base and two images, not one per change
    engine.docker(*build, "--target", "build", "--tag", BUILD_STAGE, str(ROOT), timeout=1200)
    engine.docker(*build, "--tag", IMAGE, str(ROOT), timeout=1200)
    _say(f"docker build: {time.monotonic() - started:.1f}s")
    engine.docker("image", "prune", "--force", check=False)
    return IMAGE


def _inspect(engine: PrivateDocker, ref: str, what: str = "{{json .}}") -> object:
    return json.loads(engine.docker("inspect", "--format", what, ref).stdout)


@pytest.fixture(scope="module")
def service(engine: PrivateDocker, image: str) -> Iterator[str]:
    """The service as docs/operations.md runs it: deploy/compose/watcher.yaml mounted read-only,
    a state volume, the hardening flags; health probed every second instead of every 30 s (the
    command is the image's)."""
    name = f"rw-check-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-state"
    engine.docker("volume", "create", volume)
    try:
        engine.docker(
            "run", "--detach", "--name", name, *HARDENING,
            "--volume", f"{volume}:/var/lib/watcher",
            "--volume", f"{ROOT / 'deploy/compose/watcher.yaml'}:/etc/watcher/watcher.yaml:ro",
            "--env", f"NPM_REGISTRY_URL={NOWHERE}", "--env", f"PIP_INDEX_URL={NOWHERE}/simple/",
            "--health-interval", "1s", "--health-start-period", "60s",
            image,
        )  # fmt: skip
        yield name
    finally:
        engine.docker("rm", "--force", "--volumes", name, check=False)
        engine.docker("volume", "rm", "--force", volume, check=False)


def _wait_health(engine: PrivateDocker, name: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        state = _inspect(engine, name, "{{json .State}}")
        assert isinstance(state, dict)
        if not state["Running"]:
            logs = engine.docker("logs", "--tail", "20", name, check=False)
            pytest.fail(f"service exited {state['ExitCode']}:\n{logs.stdout}{logs.stderr}")
        status = str(state.get("Health", {}).get("Status", ""))
        if status in ("healthy", "unhealthy"):
            return status
        time.sleep(0.5)
    return status


def _healthcheck_argv(engine: PrivateDocker, image: str) -> list[str]:
    test = _inspect(engine, image, "{{json .Config.Healthcheck.Test}}")
    assert isinstance(test, list) and test[0] == "CMD", f"HEALTHCHECK is not an exec form: {test}"
    return [str(word) for word in test[1:]]


@image_check
def test_healthcheck_passes_against_the_running_service(engine: PrivateDocker, image: str,
                                                        service: str) -> None:  # fmt: skip
    started = time.monotonic()
    assert _wait_health(engine, service) == "healthy"
    _say(f"service healthy after {time.monotonic() - started:.1f}s")
    argv = _healthcheck_argv(engine, image)
    # the container runs the image's command, unchanged, and so does a direct probe
    assert _inspect(engine, service, "{{json .Config.Healthcheck.Test}}") == ["CMD", *argv]
    assert engine.docker("exec", service, *argv, check=False).returncode == 0
    # the state file is on the volume and the operator commands read it while the service runs
    status = engine.docker(
        "exec", service, "watcher", "status", "--config", "/etc/watcher/watcher.yaml",
        check=False,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert engine.docker("exec", service, "test", "-s", "/var/lib/watcher/state.db",
                         check=False).returncode == 0  # fmt: skip


@image_check
def test_healthcheck_fails_without_a_service(engine: PrivateDocker, image: str) -> None:
    """The probe can fail: the same command in a container of the image where nothing listens."""
    name = f"rw-check-idle-{uuid.uuid4().hex[:8]}"
    engine.docker("run", "--detach", "--name", name, *HARDENING, "--entrypoint", "sleep",
                  image, "300")  # fmt: skip
    try:
        probe = engine.docker("exec", name, *_healthcheck_argv(engine, image), check=False)
        assert probe.returncode != 0
        assert "Connection refused" in probe.stderr
    finally:
        engine.docker("rm", "--force", "--volumes", name, check=False)


@image_check
def test_runs_as_non_root_without_capabilities(engine: PrivateDocker, image: str,
                                               service: str) -> None:  # fmt: skip
    assert _inspect(engine, image, "{{json .Config.User}}") == f"{UID}:{UID}"
    assert engine.docker("exec", service, "id", "-u").stdout.strip() == UID
    status = engine.docker("exec", service, "cat", "/proc/1/status").stdout
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
    assert uids and set(uids.group(1).split()) == {UID}, status  # real, effective, saved, fs
    cap_eff = re.search(r"^CapEff:\s+(\S+)$", status, re.M)
    assert cap_eff and int(cap_eff.group(1), 16) == 0
    cmdline = engine.docker("exec", service, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert "run" in cmdline and any(part.endswith("watcher") for part in cmdline), cmdline


@image_check
def test_root_filesystem_is_read_only_and_tmp_is_the_documented_tmpfs(
    engine: PrivateDocker, service: str
) -> None:
    for path in ("/opt/watcher/probe", "/etc/watcher/probe", "/probe"):
        write = engine.docker("exec", service, "sh", "-c", f": > {path}", check=False)
        assert write.returncode != 0 and "Read-only file system" in write.stderr, (path, write)
    assert engine.docker("exec", service, "sh", "-c", ": > /tmp/probe && rm /tmp/probe",
                         check=False).returncode == 0  # fmt: skip
    mounts = engine.docker("exec", service, "cat", "/proc/mounts").stdout.splitlines()
    root = next(line.split() for line in mounts if line.split()[1] == "/")
    assert "ro" in root[3].split(","), root
    tmp = next(line.split() for line in mounts if line.split()[1] == "/tmp")
    options = set(tmp[3].split(","))
    wanted = dict(o.partition("=")[::2] for o in TMPFS.split(":", 1)[1].split(","))
    assert tmp[2] == "tmpfs", tmp
    assert {"noexec", "nosuid"} <= options, tmp
    assert {flag for flag, value in wanted.items() if not value} <= options, (tmp, TMPFS)
    if "size" in wanted:  # the kernel shows the size in KiB
        units = {"k": 1, "m": 1024, "g": 1024**2}
        size = wanted["size"].lower()
        kib = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size) // 1024
        assert f"size={kib}k" in options, (tmp, kib)
    env = engine.docker("exec", service, "env").stdout.split()
    assert "TMPDIR=/tmp" in env


def _scan(
    engine: PrivateDocker, image: str, tarball: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return engine.docker(
        "run", "--rm", *HARDENING,
        "--volume", f"{tarball.parent}:/scan:ro",
        image, "--log-format", "json", "scan", f"/scan/{tarball.name}", *args,
        check=False,
    )  # fmt: skip


@image_check
def test_scan_of_a_local_tarball_inside_the_image(
    engine: PrivateDocker, image: str, tmp_path: Path
) -> None:
    token = fakecreds.github_token(random.Random(11))
    env_file = f"APP_ENV=production\nGITHUB_TOKEN={token}\n"
    leaky = npm_tarball(tmp_path / "leaky-1.0.0.tgz", {"index.js": "module.exports = 1;\n",
                                                        ".env": env_file})  # fmt: skip
    clean = npm_tarball(tmp_path / "clean-1.0.0.tgz", {"index.js": "module.exports = 1;\n"})
    tmp_path.chmod(0o755)  # the image's user reads the mounted directory

    started = time.monotonic()
    result = _scan(engine, image, leaky, "--format", "json")
    _say(f"scan in a container: {time.monotonic() - started:.1f}s")
    assert result.returncode == 1, result.stderr  # findings at or above --fail-on high
    report = json.loads(result.stdout)
    found = {(f["category"], f["rule"], f["path"]) for f in report["findings"]}
    assert ("sensitive-file", "dotenv-file", "package/.env") in found, found
    secrets = [f for f in report["findings"] if f["category"] == "secret"]
    assert secrets and secrets[0]["path"] == "package/.env", report["findings"]
    assert token not in result.stdout + result.stderr  # redacted everywhere
    assert '"event": "scan_finished"' in result.stderr  # logs on stderr, the report on stdout

    ok = _scan(engine, image, clean)
    assert ok.returncode == 0, ok.stderr
    assert "0 findings" in ok.stdout

    missing = _scan(engine, image, tmp_path / "nope.tgz")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == "watcher: /scan/nope.tgz: no such file"


@image_check
def test_service_stops_cleanly_on_sigterm(engine: PrivateDocker, service: str) -> None:
    """Last, it stops the shared service: `docker stop` sends SIGTERM; a clean stop exits 0."""
    assert _wait_health(engine, service) == "healthy"
    engine.docker("stop", "--time", "45", service, timeout=120)
    state = _inspect(engine, service, "{{json .State}}")
    assert isinstance(state, dict)
    logs = engine.docker("logs", "--tail", "5", service).stderr
    assert state["ExitCode"] == 0, logs
    assert "service_stopped" in logs, logs


def test_documented_run_flags_are_the_ones_checked() -> None:
    """docs/operations.md's `docker run` carries every hardening flag this module runs with."""
    text = (ROOT / "docs/operations.md").read_text()
    block = re.search(r"```sh\n(docker build[^`]*?docker run[^`]*?)```", text)
    assert block, "docs/operations.md has no docker run block"
    words = shlex.split(block.group(1).replace("\\\n", " "))
    for flag in ("--read-only", "--cap-drop", "--security-opt"):
        assert flag in words, flag
    assert words[words.index("--tmpfs") + 1] == TMPFS
    assert _tmpfs_in("README.md") == [TMPFS], "the README's docker run shows another --tmpfs"
    assert words[words.index("--cap-drop") + 1] == "ALL"
    assert words[words.index("--security-opt") + 1] == "no-new-privileges"
