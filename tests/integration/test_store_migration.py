"""A state file written by the watcher before the store redesign opens in this one: its queued
pages are delivered (once, in order, under the event ids they were queued with) and its pending
releases are scanned and paged, by the real service.

tests/data/state-wave1.sqlite was made by that older watcher (see tests/data/make_state_wave1.py):
two packages baselined, a leak paged in each while the webhook was down (two pages queued for the
webhook; the console had them), one more release of each left pending after a failed download.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import legacy_registry as legacy
import pytest
from service_harness import accepted, start_config, until, wait_release

from tests.receivers import Receiver
from watcher.model import Ecosystem
from watcher.store import open_store
from watcher.store.sqlite import files as state_file
from watcher.store.sqlite.migrations import SCHEMA_VERSION

pytestmark = pytest.mark.asyncio(loop_scope="session")

DATA = Path(__file__).resolve().parents[1] / "data" / "state-wave1.sqlite"


async def test_a_wave1_state_file_delivers_its_queued_pages_and_scans_its_pending_releases(
    hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    state = tmp_path / "state.db"
    await asyncio.to_thread(shutil.copyfile, DATA, state)
    # what the old watcher left: schema 4, two queued webhook pages, two pending releases
    assert state_file.query(state, "PRAGMA user_version") == [(4,)]
    assert (
        state_file.query(state, "SELECT channel, state FROM outbox ORDER BY id")
        == [("team/webhook", "pending")] * 2
    )
    assert state_file.query(
        state, "SELECT name, version FROM releases WHERE state = 'pending' ORDER BY id"
    ) == [("legacy-app", "1.0.2"), ("legacy-lib", "3.0.2")]

    registry = await legacy.LegacyRegistry(published=set(legacy.PACKAGES)).start()
    service = start_config(
        tmp_path,
        npm_url=legacy.URL,
        packages=["legacy-app", "legacy-lib"],
        webhook_url=receiver.url,
        secret=secret,
        extra="containment: {enabled: false}\n",
    )
    service.start()
    try:
        await service.wait_ready()
        await until(lambda: len(accepted(receiver)) >= 3, within=60)
        for name, version in (("legacy-app", "1.0.2"), ("legacy-lib", "3.0.2")):
            await wait_release(state, name, version, within=60)
        await asyncio.sleep(1.0)  # a page more would have been sent by now
        assert service.terminate() == 0
    finally:
        service.ensure_stopped()
        await registry.close()

    pages = accepted(receiver)
    assert [version for _, version in pages] == ["1.0.1", "3.0.1", "1.0.2"], "in order, once each"
    assert len({event_id for event_id, _ in pages}) == 3
    assert len(receiver.requests) == 3, "nothing sent twice"
    receiver.assert_valid()
    assert [r.json()["type"] for r in receiver.requests] == ["incident.opened"] * 3
    # the pending releases were downloaded from the registry and scanned
    assert {("legacy-app", "1.0.2"), ("legacy-lib", "3.0.2")} <= set(registry.downloads)
    out = service.stdout()
    assert out.count("key watcher/npm/legacy-app/1.0.2") == 1
    assert "key watcher/npm/legacy-app/1.0.1" not in out, "the console had it before the upgrade"
    assert "key watcher/npm/legacy-lib/3.0.2" not in out, "a clean release does not page"

    store = await open_store(state)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        for name, version in (("legacy-app", "1.0.2"), ("legacy-lib", "3.0.2")):
            scanned = await store.get_release(Ecosystem.NPM, name, version)
            assert scanned is not None and scanned.state.value == "scanned"
            assert scanned.attempts == 2, "the failed attempt before the upgrade stays counted"
        leak = await store.get_release(Ecosystem.NPM, "legacy-app", "1.0.2")
        assert leak is not None
        [finding] = await store.get_findings(leak.id)
        assert finding.rule == "sourcemap-embedded-sources" and finding.new
        opened = [i.version for i in await store.open_incidents()]
        assert opened == ["1.0.1", "3.0.1", "1.0.2"]
        counts = await store.counts()
        assert counts.outbox_depth == {} and counts.dead_letters == 0
    finally:
        await store.close()
