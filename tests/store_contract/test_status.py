"""What `watcher status` and the gauges read."""

from __future__ import annotations

from tests.store_contract.builders import T0, incident, pages, rel
from tests.storekit import record_releases
from watcher.store.api import Store
from watcher.store.types import (
    ReleaseState,
)


async def test_status_summary(store: Store) -> None:
    await record_releases(
        store,
        [rel("a", "1.0.0"), rel("a", "1.0.1"), rel("b", "3.0.0")],
        "npm-changes",
        "42",
        now=T0,
    )
    await store.open_incident_with_outbox(incident(), pages("hook"), now=T0)
    status = await store.status(now=T0 + 1)
    assert [(c.feed, c.cursor) for c in status.cursors] == [("npm-changes", "42")]
    assert [(r.release.name, r.release.version) for r in status.last_releases] == [
        ("a", "1.0.1"),
        ("b", "3.0.0"),
    ]
    assert [i.dedup_key for i in status.open_incidents] == ["watcher/npm/@acme/cli/1.0.1"]
    assert status.counts.outbox_depth == {"hook": 1}
    assert status.counts.releases_by_state == {
        ReleaseState.PENDING: 3,
        ReleaseState.SCANNING: 0,
        ReleaseState.SCANNED: 0,
        ReleaseState.FAILED: 0,
    }
