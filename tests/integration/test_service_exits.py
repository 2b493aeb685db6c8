"""`watcher run` ends in a way a supervisor can act on: a full disk or a crashed task exits
non-zero within seconds (never hangs) with the cause in the last log line; a damaged state file
stops the start with exit 3; Ctrl-C stops it without tracebacks from the scan pool; a start
removes what killed runs left in the service's own scratch directory and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from npm_servers import Verdaccio
from service_harness import ServiceProcess, publish, start_config, unique, until, wait_release

from watcher.store.sqlite import files as state_file

pytestmark = pytest.mark.asyncio(loop_scope="session")


def present(path: str | Path) -> bool:
    return os.path.exists(path)


def remove(path: Path) -> None:
    path.rmdir()


def last_event(service: ServiceProcess) -> dict[str, object]:
    lines = service.stderr_path.read_text(errors="replace").strip().splitlines()
    assert lines, "the service logged nothing"
    event: dict[str, object] = json.loads(lines[-1])
    return event


def wait_exit(service: ServiceProcess, within: float) -> int:
    assert service.proc is not None
    try:
        return service.proc.wait(within)
    except subprocess.TimeoutExpired:
        tail = service.stderr_path.read_text(errors="replace")[-2000:]
        raise AssertionError(f"the service did not exit within {within}s:\n{tail}") from None


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root only; skips where mounting is not allowed)."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> None:
    """Write until the filesystem says it is full."""
    chunk = b"\0" * 65536
    with (directory / "filler").open("wb", buffering=0) as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0")


async def test_a_full_disk_exits_non_zero_within_seconds_with_the_cause_last(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    name = unique("svc-disk")
    await publish(verdaccio, name, "1.0.0")
    disk = tmp_path / "disk"
    with small_disk(disk, "4m"):
        port_config = start_config(tmp_path, npm_url=verdaccio.url, packages=[name])
        state = disk / "state.db"
        text = port_config.config.read_text().replace(str(tmp_path / "state.db"), str(state))
        port_config.config.write_text(text)
        service = port_config
        service.start()
        try:
            await service.wait_ready()
            await wait_release(state, name, "1.0.0")
            # fold the WAL back into the file so the next write must grow it, then fill the disk
            state_file.query(state, "PRAGMA wal_checkpoint(TRUNCATE)")
            fill(disk)
            await publish(verdaccio, name, "1.0.1")
            started = time.monotonic()
            code = await asyncio.to_thread(wait_exit, service, 60)
            assert code == 1, "a supervisor's Restart=on-failure must see a failure"
            assert time.monotonic() - started < 45, "it ends within seconds of the failure"
            event = last_event(service)
            assert event["event"] == "service_stopped"
            assert event["level"] == "error"
            assert "full" in str(event["error"]), event
        finally:
            service.ensure_stopped()


def damage(path: Path) -> None:
    """Overwrite the b-tree header of every page after the first (the schema page stays
    readable, so the file still opens as a database)."""
    page = 4096
    size = path.stat().st_size
    assert size > 2 * page
    with path.open("r+b") as fh:
        for offset in range(page, size, page):
            fh.seek(offset)
            fh.write(b"\x07" * 12)


async def test_a_damaged_state_file_stops_the_start_with_exit_3(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    name = unique("svc-damaged")
    await publish(verdaccio, name, "1.0.0")
    service = start_config(tmp_path, npm_url=verdaccio.url, packages=[name])
    state = tmp_path / "state.db"
    service.start()
    try:
        await service.wait_ready()
        await wait_release(state, name, "1.0.0")
        assert await asyncio.to_thread(service.terminate) == 0
        damage(state)
        before = state.read_bytes()
        service.start()
        code = await asyncio.to_thread(wait_exit, service, 30)
        assert code == 3, "a damaged state file has its own exit code (restarting will not help)"
        err = service.stderr_path.read_text(errors="replace").strip().splitlines()
        assert str(state) in err[-1] and "damaged" in err[-1] and "restore" in err[-1], err[-1]
        assert state.read_bytes() == before, "nothing was written over the damaged file"
        assert not any(json.loads(line).get("event") == "service_started" for line in err[-5:-1])
    finally:
        service.ensure_stopped()


async def test_ctrl_c_stops_cleanly_without_scan_pool_tracebacks(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    name = unique("svc-ctrlc")
    await publish(verdaccio, name, "1.0.0")
    service = start_config(tmp_path, npm_url=verdaccio.url, packages=[name], extra="", poll="1s")
    # two pool processes, as `make run` has on a machine with two cores
    service.config.write_text(
        service.config.read_text().replace("scan: {workers: 1,", "scan: {workers: 2,")
    )
    service.start(own_group=True)
    try:
        await service.wait_ready()
        await wait_release(tmp_path / "state.db", name, "1.0.0")
        assert service.proc is not None
        os.killpg(service.proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        assert await asyncio.to_thread(wait_exit, service, 30) == 0
        err = service.stderr_path.read_text(errors="replace")
        assert "KeyboardInterrupt" not in err and "Traceback" not in err, err[-3000:]
        assert last_event(service)["event"] == "service_stopped"
    finally:
        service.ensure_stopped()


async def test_a_start_removes_what_killed_runs_left_and_only_that(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    name = unique("svc-scratch")
    await publish(verdaccio, name, "1.0.0")
    service = start_config(tmp_path, npm_url=verdaccio.url, packages=[name])
    scratch = tmp_path / "watcher-scratch"
    service.start()
    try:
        await service.wait_ready()
        await wait_release(tmp_path / "state.db", name, "1.0.0")
        service.kill()  # kill -9: no clean-up runs
        (killed_run,) = [p for p in scratch.glob("run-*") if p.is_dir()]
        (killed_run / "watcher-scan-x").mkdir()
        (killed_run / "watcher-scan-x" / "half.tgz").write_bytes(b"partial download")
        (pool_dir,) = (killed_run / "owned").read_text().split()
        assert present(pool_dir), "the pool's pymp-* directory outlived the killed run"
        # another live service sharing the scratch root, and someone else's pymp-* in /tmp
        live = scratch / "run-live0001"
        live.mkdir()
        lock = os.open(scratch / "run-live0001.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        foreign = Path(tempfile.mkdtemp(prefix="pymp-"))
        try:
            service.start()
            await service.wait_ready()
            await until(lambda: not killed_run.exists(), within=10)
            assert not present(pool_dir), "the killed run's pool directory is removed"
            assert live.is_dir(), "a live run's directory is left alone"
            assert present(foreign), "nothing outside what our runs recorded is touched"
            runs = [p for p in scratch.glob("run-*") if p.is_dir() and p != live]
            assert len(runs) == 1, runs
            assert await asyncio.to_thread(service.terminate) == 0
            assert not runs[0].exists(), "a clean stop removes its own run directory"
        finally:
            os.close(lock)
            remove(foreign)
    finally:
        service.ensure_stopped()
