"""`watcher store migrate --from state.db --to postgresql://…` against a real PostgreSQL: every
table of a populated embedded store arrives row for row, the stores read the same through their
protocols, ids go on from the largest, a non-empty target is refused, the password never shows;
and every table an embedded migration creates is either copied or named as left behind."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import PgServer, session_server
from tests.store_contract.builders import T0, finding, incident, manifest, pages, rel
from tests.storekit import record_releases
from watcher.cli.main import main
from watcher.model import Ecosystem
from watcher.store import open_store
from watcher.store.migrate import COPIED, NOT_COPIED, embedded_tables, uncovered
from watcher.store.types import (
    CursorWrite,
    FeedBatch,
    NewApproval,
    NewJob,
    PackageState,
    ReleaseState,
    SeenRemoval,
)

NPM = Ecosystem.NPM


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    yield from session_server()


async def populate(path: Path) -> None:
    """Something in every table the embedded store has."""
    store = await open_store(path)
    try:
        base, leaky = rel("@acme/cli", "1.0.0"), rel("@acme/cli", "1.0.1")
        stored = await record_releases(store, [leaky], "npm-changes", "42", baselines=[base])
        await store.record_batch(
            FeedBatch(
                removals=[SeenRemoval(NPM, "@acme/cli", "0.9.0", "unpublished")],
                package_states=[(NPM, "@acme/cli", PackageState(frozenset({"1.0.0", "1.0.1"})))],
                cursor=CursorWrite("npm-changes/began", "2026-01-01T00:00:00+00:00"),
            ),
            now=T0,
        )
        claimed = await store.claim_pending(2, now=T0)
        await store.mark_scanned(claimed[0].id, [], manifest("package/a.js"), now=T0)
        opened, _ = await store.mark_scanned(
            stored[1].id,
            [finding()],
            manifest("package/cli.js.map"),
            incident=incident(),
            deliveries=pages("team/webhook", "team/console"),
            now=T0,
        )
        assert opened is not None and opened.id is not None
        await store.add_incident_note(opened.id, "deprecated", "1.0.1 deprecated", now=T0)
        await store.add_containment_jobs(
            opened.id, NPM, "@acme/cli", [NewJob("dist_tag", "latest", {"to": "1.0.0"})], now=T0
        )
        await store.disable_channel("team/slack", "410 channel_is_archived", T0 + 3600, now=T0)
        await store.acquire_lease("feed:npm-changes", "old-host/1/x", 15, now=T0)
        await store.add_approval(
            NewApproval(NPM, "@acme/cli", "1.0.1", "a" * 64, "ci-gate", report={"ok": True}),
            now=T0,
        )
        await store.record_channel_message(
            "team/slack", incident().dedup_key, "C0123", "1700000000.000100", now=T0
        )
        await store.schedule_origin_check(stored[1].id, "approval", T0 + 120, {"grace": 120})
    finally:
        await store.close()


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {
            t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
            for t in embedded_tables(path)
            if t in COPIED
        }


def test_every_table_of_the_embedded_store_is_copied_or_named_as_left_behind(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    asyncio.run(_close_new(path))  # created, every migration applied
    tables = embedded_tables(path)
    assert not uncovered(tables), (
        f"tables watcher store migrate does not copy: {uncovered(tables)}; add each to "
        "watcher.store.migrate.COPIED (in foreign-key order) or NOT_COPIED (with the reason)"
    )
    assert set(COPIED) & set(NOT_COPIED) == set()


async def _close_new(path: Path) -> None:
    store = await open_store(path)
    await store.close()


def test_migrate_copies_every_row_and_the_stores_read_the_same(
    tmp_path: Path, pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.db"
    asyncio.run(populate(path))
    before = counts(path)
    assert all(before[t] > 0 for t in before), f"the fixture fills every table: {before}"
    password = "pw-" + tmp_path.name[-6:]
    pg_server.psql(f"ALTER USER watcher PASSWORD '{password}'")
    url = pg_server.fresh_database().replace("watcher@", f"watcher:{password}@")

    assert main(["store", "migrate", "--from", str(path), "--to", url]) == 0
    out = capsys.readouterr()
    assert password not in out.out + out.err
    for table, rows in before.items():
        assert f"  {table}: {rows} rows" in out.out

    async def compare() -> None:
        old, new = await open_store(path), await open_store(url)
        try:
            assert await new.cursors() == await old.cursors()
            assert await new.get_package_state(NPM, "@acme/cli") == await old.get_package_state(
                NPM, "@acme/cli"
            )
            assert await new.removals(NPM, "@acme/cli", "0.9.0") == await old.removals(
                NPM, "@acme/cli", "0.9.0"
            )
            for version in ("1.0.0", "1.0.1"):
                a = await old.get_release(NPM, "@acme/cli", version)
                b = await new.get_release(NPM, "@acme/cli", version)
                assert a == b
                assert a is not None and b is not None
                assert await new.get_findings(b.id) == await old.get_findings(a.id)
                assert await new.get_manifest(NPM, "@acme/cli", version) == await old.get_manifest(
                    NPM, "@acme/cli", version
                )
            key = incident().dedup_key
            a_inc, b_inc = await old.get_incident(key), await new.get_incident(key)
            assert a_inc == b_inc and b_inc is not None and b_inc.id is not None
            assert await new.incident_notes(b_inc.id) == await old.incident_notes(b_inc.id)
            assert await new.containment_jobs(b_inc.id) == await old.containment_jobs(b_inc.id)
            for channel in ("team/webhook", "team/console"):
                assert await new.outbox_head(channel) == await old.outbox_head(channel)
            assert await new.disabled_channels() == await old.disabled_channels()
            assert await new.approvals(NPM, "@acme/cli") == await old.approvals(NPM, "@acme/cli")
            key_slack = ("team/slack", incident().dedup_key)
            assert await new.channel_message(*key_slack) == await old.channel_message(*key_slack)
            leaky = await new.get_release(NPM, "@acme/cli", "1.0.1")
            assert leaky is not None
            assert await new.origin_checks(leaky.id) == await old.origin_checks(leaky.id)
            assert await new.get_lease("feed:npm-changes") is None, "roles are elected afresh"
            # the ids go on after the copied ones
            [added] = await record_releases(new, [rel("@acme/cli", "1.0.2")], "npm-changes", "43")
            assert added.id > max(r.id for r in await new.releases_in_state([ReleaseState.SCANNED]))
        finally:
            await old.close()
            await new.close()

    asyncio.run(compare())

    # a second copy into the same database is refused: it is not empty
    assert main(["store", "migrate", "--from", str(path), "--to", url]) == 2
    out = capsys.readouterr()
    assert "not empty" in out.err and password not in out.out + out.err
    pg_server.psql("ALTER USER watcher PASSWORD NULL")
