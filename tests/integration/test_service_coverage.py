"""A watched name the registry does not know (a typo, not published yet) is not silent: one
warning per name, `watcher_packages_not_found{ecosystem}`, `watcher status` lists it under
`not found on the registry`; once the name is published it is picked up and leaves the list."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from npm_servers import Verdaccio
from pypi_servers import PypiServer
from service_harness import (
    ServiceProcess,
    publish,
    service_yaml,
    start_config,
    unique,
    until,
    wait_release,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


def status(service: ServiceProcess) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "status", "--config", str(service.config)],
        capture_output=True,
        text=True,
        check=False,
        cwd=service.workdir,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def gauge(service: ServiceProcess, ecosystem: str) -> float | None:
    _, text = service.get("/metrics")
    prefix = f'watcher_packages_not_found{{ecosystem="{ecosystem}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return None


def serving(service: ServiceProcess) -> bool:
    """The HTTP server answers (it starts once the state file is open and the lists restored)."""
    assert service.proc is not None and service.proc.poll() is None, service.stderr_path.read_text()
    try:
        return service.get("/metrics")[0] == 200
    except OSError:
        return False


def warnings(service: ServiceProcess, name: str) -> int:
    return sum(
        1 for e in service.logs() if e["event"] == "package_not_found" and e["package"] == name
    )


async def test_a_watched_name_the_registry_does_not_know_is_reported_until_it_appears(
    verdaccio: Verdaccio, pypiserver: PypiServer, tmp_path: Path
) -> None:
    real, typo = unique("svc-cover"), unique("svc-typo")
    missing_project = unique("svc-noproject")
    await publish(verdaccio, real, "1.0.0")
    service = start_config(
        tmp_path,
        npm_url=verdaccio.url,
        packages=[real, typo],
        pypi_url=pypiserver.url + "/simple/",
        pypi_packages=[missing_project],
    )
    service.start()
    try:
        await service.wait_ready()
        await wait_release(tmp_path / "state.db", real, "1.0.0")
        await until(lambda: gauge(service, "npm") == 1.0 and gauge(service, "pypi") == 1.0)
        text = await asyncio.to_thread(status, service)
        section = text.split("not found on the registry:\n", 1)[1]
        assert f"npm  {typo}" in section and f"pypi {missing_project}" in section, text
        assert real not in section
        await asyncio.sleep(2.5)  # two more polls: still one warning per name
        assert warnings(service, typo) == 1
        assert warnings(service, missing_project) == 1

        await publish(verdaccio, typo, "0.1.0")  # its first publish
        await wait_release(tmp_path / "state.db", typo, "0.1.0")
        await until(lambda: gauge(service, "npm") == 0.0)
        text = await asyncio.to_thread(status, service)
        assert (
            typo not in text.split("not found on the registry:", 1)[-1].split("open incidents")[0]
        )
        assert f"pypi {missing_project}" in text
    finally:
        service.ensure_stopped()


async def test_a_restart_keeps_the_names_not_found_until_their_next_poll(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    """Right after a restart the gauge and `watcher status` still name the missing package (the
    state file keeps them), although its next poll is far off; no second warning. A name taken out
    of `packages:` is dropped at the next start."""
    real, typo = unique("a-svc-kept"), unique("z-svc-typo")  # the typo sorts last: polled last
    await publish(verdaccio, real, "1.0.0")
    first = start_config(tmp_path, npm_url=verdaccio.url, packages=[real, typo])
    first.start()
    try:
        await first.wait_ready()
        await until(lambda: gauge(first, "npm") == 1.0)
        assert first.terminate() == 0
    finally:
        first.ensure_stopped()

    # polls spread over 30 minutes: the typo's first read comes ~15 minutes after the start (and
    # /readyz waits for a first full sweep), so what the metrics say at once is what was restored
    again = start_config(tmp_path, npm_url=verdaccio.url, packages=[real, typo], poll="30m")
    again.start()
    try:
        await until(lambda: serving(again), within=60)
        assert gauge(again, "npm") == 1.0, "the restart forgot the name the registry lacks"
        text = await asyncio.to_thread(status, again)
        assert f"npm  {typo}" in text.split("not found on the registry:\n", 1)[1], text
        assert warnings(again, typo) == 1, "warned once, in the first run only"
        assert again.terminate() == 0
    finally:
        again.ensure_stopped()

    dropped = start_config(tmp_path, npm_url=verdaccio.url, packages=[real], poll="30m")
    dropped.start()
    try:
        await until(lambda: serving(dropped), within=60)
        assert gauge(dropped, "npm") == 0.0, "a name no longer watched is not reported"
        assert "not found on the registry" not in await asyncio.to_thread(status, dropped)
    finally:
        dropped.ensure_stopped()


async def test_check_config_online_reads_each_watched_name_before_the_start(
    verdaccio: Verdaccio, pypiserver: PypiServer, tmp_path: Path
) -> None:
    """`watcher check-config --online`: each exact name read from its registry; a name the
    registry lacks is named (exit 1), all found is exit 0. Nothing is stored."""
    real, typo, missing_project = unique("chk-real"), unique("chk-typo"), unique("chk-noproject")
    await publish(verdaccio, real, "1.0.0")
    config = tmp_path / "watcher.yaml"

    def check(npm: list[str], pypi: list[str]) -> subprocess.CompletedProcess[str]:
        config.write_text(
            service_yaml(
                state=tmp_path / "state.db",
                port=9,
                npm_url=verdaccio.url,
                packages=npm,
                pypi_url=pypiserver.url + "/simple/",
                pypi_packages=pypi,
            )
        )
        return subprocess.run(
            [sys.executable, "-m", "watcher.cli", "check-config", str(config), "--online"],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            timeout=120,
        )

    done = await asyncio.to_thread(check, [real, typo], [missing_project])
    assert done.returncode == 1, done.stdout + done.stderr
    online = done.stdout.split("online (each watched name read from its registry):\n", 1)[1]
    assert f"npm  {real}: found (1 version)" in online
    assert f"npm  {typo}: not found on the registry" in online
    assert f"pypi {missing_project}: not found on the registry" in online
    assert "registry_resolved" not in done.stdout, "log lines go to stderr"
    assert not (tmp_path / "state.db").exists(), "a look-up stores nothing"

    done = await asyncio.to_thread(check, [real], [])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"npm {real}: found (1 version)" in done.stdout
