"""Incidents: idempotent on the dedup key, stored with the scan result and the pages, resolved and updated once."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from tests.store_contract.builders import T0, finding, incident, manifest, pages, rel
from tests.storekit import record_releases
from watcher.model import Ecosystem, EventType, IncidentState, Severity, incident_key
from watcher.store.api import Store
from watcher.store.types import IncidentUpdate


async def test_opening_an_incident_is_idempotent_on_its_dedup_key(store: Store) -> None:
    first, created = await store.open_incident_with_outbox(
        incident(), pages("platform/webhook", "platform/console"), now=T0
    )
    assert created and first.dedup_key == "watcher/npm/@acme/cli/1.0.1" == incident_key(
        "npm", "@acme/cli", "1.0.1"
    )
    second, created_again = await store.open_incident_with_outbox(
        incident(), pages("platform/webhook", "platform/console"), now=T0 + 1
    )
    assert not created_again and second.id == first.id
    counts = await store.counts(now=T0)
    assert counts.outbox_depth == {"platform/console": 1, "platform/webhook": 1}
    assert counts.open_incidents == 1
    stored = await store.get_incident(first.dedup_key)
    assert stored is not None and [f.rule for f in stored.findings] == ["x"]
    assert stored.worst() is Severity.CRITICAL and stored.id == first.id


async def test_scan_result_and_its_incident_are_stored_together(store: Store) -> None:
    await record_releases(store, [rel("@acme/cli", "1.0.1")], "f", "1", now=T0)
    [r] = await store.claim_pending(1, now=T0)
    opened, created = await store.mark_scanned(
        r.id,
        [finding()],
        manifest("x"),
        incident=incident(),
        deliveries=pages("platform/webhook"),
        now=T0,
    )
    assert created and opened is not None and opened.state is IncidentState.OPEN
    # a repeated scan (e.g. after a crash before the worker noticed) pages nothing more
    _, created_again = await store.mark_scanned(
        r.id,
        [finding()],
        manifest("x"),
        incident=incident(),
        deliveries=pages("platform/webhook"),
        now=T0,
    )
    assert not created_again
    assert (await store.counts(now=T0)).outbox_depth == {"platform/webhook": 1}


async def test_resolving_queues_resolved_pages_once(store: Store) -> None:
    opened, _ = await store.open_incident_with_outbox(incident(), [], now=T0)
    resolved, changed = await store.resolve_incident(
        opened.dedup_key,
        "unpublished",
        pages("platform/webhook", event=EventType.RESOLVED),
        now=T0 + 90,
    )
    assert changed and resolved is not None
    assert resolved.state is IncidentState.RESOLVED and resolved.resolution == "unpublished"
    assert resolved.resolved_at == datetime.fromtimestamp(T0 + 90, UTC)
    _, changed_again = await store.resolve_incident(
        opened.dedup_key, "unpublished", pages("platform/webhook", event=EventType.RESOLVED)
    )
    assert not changed_again
    assert await store.resolve_incident("watcher/npm/none/1.0.0", "x") == (None, False)
    item = await store.next_outbox_item("platform/webhook", now=T0 + 90)
    assert item is not None and item.event_type is EventType.RESOLVED
    assert item.incident_id == opened.id
    assert (await store.counts(now=T0)).outbox_depth == {"platform/webhook": 1}
    assert await store.open_incidents() == []


async def test_oldest_open_incident_age_per_ecosystem(store: Store) -> None:
    assert (await store.counts(now=T0)).oldest_open_incident_age_s == {}
    await store.open_incident_with_outbox(incident("1.0.1"), [], now=T0)
    await store.open_incident_with_outbox(incident("1.0.2"), [], now=T0 + 50)
    py = incident("2.0.0", name="acme-sdk", eco=Ecosystem.PYPI)
    await store.open_incident_with_outbox(py, [], now=T0 + 80)
    counts = await store.counts(now=T0 + 100)
    assert counts.oldest_open_incident_age_s == {Ecosystem.NPM: 100, Ecosystem.PYPI: 20}
    # a resolved incident no longer counts: the next oldest open one does
    await store.resolve_incident(incident_key("npm", "@acme/cli", "1.0.1"), "x", now=T0 + 90)
    counts = await store.counts(now=T0 + 100)
    assert counts.oldest_open_incident_age_s == {Ecosystem.NPM: 50, Ecosystem.PYPI: 20}


async def test_an_incident_update_applies_once_and_reopens_a_resolved_incident(
    store: Store,
) -> None:
    await record_releases(store, [rel("@acme/cli", "1.0.1")], "f", "1", now=T0)
    [r] = await store.claim_pending(1, now=T0)
    opened, _ = await store.mark_scanned(
        r.id, [finding()], manifest("x"), incident=incident(), deliveries=pages("hook"), now=T0
    )
    assert opened is not None
    await store.resolve_incident(opened.dedup_key, "unpublished", now=T0 + 10)
    update = IncidentUpdate(
        dataclasses.replace(opened, findings=[finding("x"), finding("y")]),
        note_kind="findings-1",
        note="1 new finding",
    )
    await record_releases(store, [rel("@acme/cli", "1.0.1", "late.whl")], "f", "2", now=T0 + 20)
    [again] = await store.claim_pending(1, now=T0 + 20)
    assert again.id == r.id and len(again.release.artifacts) == 2
    for attempt in range(2):  # a repeated scan (crash before it was noticed) repeats nothing
        updated, applied = await store.mark_scanned(
            again.id,
            [finding()],
            manifest("x"),
            update=update,
            deliveries=pages("hook", event=EventType.UPDATED),
            now=T0 + 20,
        )
        assert applied is (attempt == 0)
        assert updated is not None and updated.state is IncidentState.OPEN
        assert updated.resolved_at is None and updated.resolution is None
        assert [f.rule for f in updated.findings] == ["x", "y"]
    assert await store.incident_notes(opened.id) == {"findings-1": "1 new finding"}
    events = []
    while (item := await store.next_outbox_item("hook", now=T0 + 30)) is not None:
        events.append(item.event_type)
        await store.mark_delivered(item.id)
    assert events == [EventType.OPENED, EventType.UPDATED]
