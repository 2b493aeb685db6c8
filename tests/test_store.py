"""What is particular to the embedded SQLite store, on real files: the schema and its migrations,
files it refuses, and the single-transaction guarantees under SIGKILL. Its behaviour as a store is
the contract suite's (tests/store_contract/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from watcher.feeds.base import PackageState
from watcher.model import Ecosystem
from watcher.store import open_store
from watcher.store.sqlite import files as state_file
from watcher.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from watcher.store.types import StoreError

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ lifecycle


async def test_migrates_an_empty_file_to_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    store = await open_store(path)
    assert await store.schema_version() == SCHEMA_VERSION
    await store.close()
    assert state_file.query(path, "PRAGMA journal_mode") == [("wal",)]
    assert state_file.query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = state_file.tables(path)
    assert {
        "feed_cursors",
        "packages",
        "releases",
        "manifests",
        "findings",
        "incidents",
        "outbox",
    } <= tables


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state_file.execute(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this watcher supports"):
        await open_store(path)


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable state file"):
        await open_store(path)


async def test_upgrades_a_version_1_file_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state_file.execute(
        path,
        *MIGRATIONS[0],
        "PRAGMA user_version = 1",
        "INSERT INTO packages (ecosystem, name, versions, files, etag, generation, first_seen, "
        "updated_at) VALUES ('pypi', 'sdk', '[\"1.0\"]', '[]', 'e', 7, 0, 0)",
    )
    store = await open_store(path)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        state = await store.get_package_state(Ecosystem.PYPI, "sdk")
        assert state == PackageState(versions=frozenset({"1.0"}), etag="e", generation=7)
    finally:
        await store.close()


# ----------------------------------------------------------- SIGKILL mid-transaction

_CRASHER = textwrap.dedent(
    """
    import asyncio, sys, time
    from datetime import UTC, datetime
    from watcher.model import Artifact, Ecosystem, Release, Severity
    from watcher.store.sqlite.store import SqliteStore
    from watcher.model import AlertEvent, EventType, Incident
    from watcher.store.types import CursorWrite, Delivery, FeedBatch
    from watcher.store.types import SeenRelease

    path, what, stop_at = sys.argv[1], sys.argv[2], sys.argv[3]

    def trace(sql: str) -> None:
        # runs on the store's database thread, as each statement starts
        if stop_at != "-" and stop_at in sql:
            print("REACHED", flush=True)
            time.sleep(120)

    async def main() -> None:
        store = await SqliteStore.open(path)
        await store.connection.db.set_trace_callback(trace)
        if what == "releases":
            releases = [
                Release(Ecosystem.NPM, f"pkg{i}", "1.0.0", datetime.now(UTC), (Artifact(f"pkg{i}.tgz"),))
                for i in range(50)
            ]
            seen = [SeenRelease(r, "npm-changes") for r in releases]
            await store.record_batch(FeedBatch(seen, cursor=CursorWrite("npm-changes", "1000")))
        else:
            incident = Incident(
                "watcher/npm/leaky/1.0.1", Ecosystem.NPM, "leaky", "1.0.1", "platform",
                datetime.now(UTC), [],
            )
            page = AlertEvent(EventType.OPENED, incident, "watcher/npm/leaky/1.0.1#incident.opened")
            deliveries = [Delivery(c, page) for c in ("a", "b", "c")]
            await store.open_incident_with_outbox(incident, deliveries)
        print("DONE", flush=True)
        time.sleep(120)

    asyncio.run(main())
    """
)


def run_and_kill(tmp_path: Path, what: str, stop_at: str) -> str:
    """Run a store operation in a child process and SIGKILL it when it reaches `stop_at` (a
    statement about to run) or, with "-", once the operation has returned."""
    script = tmp_path / "crasher.py"
    script.write_text(_CRASHER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "state.db"), what, stop_at],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    if not line:
        pytest.fail(f"child exited early: {child.stderr.read() if child.stderr else ''}")
    return line


async def releases_and_cursor(tmp_path: Path) -> tuple[int, str | None]:
    store = await open_store(tmp_path / "state.db")
    try:
        counts = await store.counts()
        return sum(counts.releases_by_state.values()), await store.get_cursor("npm-changes")
    finally:
        await store.close()


@pytest.mark.parametrize("stop_at", ["INSERT INTO releases", "INSERT INTO feed_cursors", "COMMIT"])
async def test_kill_mid_record_leaves_neither_releases_nor_cursor(
    tmp_path: Path, stop_at: str
) -> None:
    assert run_and_kill(tmp_path, "releases", stop_at) == "REACHED"
    assert await releases_and_cursor(tmp_path) == (0, None)


async def test_kill_after_record_leaves_both(tmp_path: Path) -> None:
    assert run_and_kill(tmp_path, "releases", "-") == "DONE"
    assert await releases_and_cursor(tmp_path) == (50, "1000")


@pytest.mark.parametrize(("stop_at", "expect"), [("INSERT INTO outbox", 0), ("-", 1)])
async def test_kill_mid_incident_leaves_incident_and_pages_together(
    tmp_path: Path, stop_at: str, expect: int
) -> None:
    run_and_kill(tmp_path, "incident", stop_at)
    store = await open_store(tmp_path / "state.db")
    try:
        counts = await store.counts()
        assert counts.open_incidents == expect
        assert sum(counts.outbox_depth.values()) == 3 * expect
    finally:
        await store.close()
