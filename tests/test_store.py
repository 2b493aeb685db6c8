"""The SQLite store on real files: schema, idempotency, the queue, incidents, the outbox, and the
single-transaction guarantees under SIGKILL."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.storekit import record_releases
from watcher.feeds.base import (
    BaselineSeen,
    FeedStateStore,
    PackageState,
    PackageUnpublished,
    ReleaseSeen,
    VersionRemoved,
)
from watcher.feeds.sink import record_events
from watcher.model import (
    Artifact,
    Category,
    Ecosystem,
    Finding,
    Manifest,
    ManifestEntry,
    Release,
    Severity,
    incident_key,
)
from watcher.scanning.baseline import baseline_manifest
from watcher.store import open_store
from watcher.store.api import Store
from watcher.store.sqlite import files as state_file
from watcher.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from watcher.store.types import (
    CursorWrite,
    Delivery,
    IncidentState,
    IncidentUpdate,
    NewIncident,
    OutboxEvent,
    ReleaseState,
    StoreError,
)

REPO = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000.0  # a fixed "now" so no test depends on the clock


def rel(name: str, version: str, *files: str, eco: Ecosystem = Ecosystem.NPM) -> Release:
    artifacts = tuple(
        Artifact(filename=f, url=f"http://127.0.0.1:1/{f}", size=10, sha256="0" * 64)
        for f in (files or (f"{name}-{version}.tgz",))
    )
    return Release(
        ecosystem=eco,
        name=name,
        version=version,
        published_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        artifacts=artifacts,
    )


def finding(
    rule: str = "sourcemap-embedded-sources", severity: Severity = Severity.CRITICAL
) -> Finding:
    return Finding(
        rule=rule,
        category=Category.SOURCE_MAP,
        severity=severity,
        path="package/cli.js.map",
        message="source map embeds 3 first-party source files",
        line=None,
        evidence={"first_party_files": 3},
        key="k",
        severity_if_new=Severity.HIGH,
        new=True,
        fingerprint="f" * 64,
    )


def manifest(*paths: str, fp: str = "f" * 64) -> Manifest:
    return Manifest(
        files={p: ManifestEntry(size=len(p), sha256="a" * 64) for p in paths},
        fingerprints={fp: Severity.CRITICAL},
    )


def incident(version: str = "1.0.1", owner: str = "platform") -> NewIncident:
    return NewIncident(
        ecosystem=Ecosystem.NPM,
        name="@acme/cli",
        version=version,
        owner=owner,
        worst_severity=Severity.CRITICAL,
        payload={"package": "@acme/cli", "version": version, "findings": [{"rule": "x"}]},
    )


def pages(*channels: str, event: OutboxEvent = OutboxEvent.OPENED) -> list[Delivery]:
    return [Delivery(channel=c, event=event, payload={"to": c}) for c in channels]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(tmp_path / "state.db")
    yield s
    await s.close()


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


async def test_reopen_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await open_store(path)
    await record_releases(store, [rel("a", "1.0.0")], "npm-changes", "7", now=T0)
    await store.close()
    store = await open_store(path)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        assert await store.get_cursor("npm-changes") == "7"
        stored = await store.get_release(Ecosystem.NPM, "a", "1.0.0")
        assert stored is not None and stored.state is ReleaseState.PENDING
    finally:
        await store.close()


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


# ---------------------------------------------------------------------------- feed state


async def test_store_implements_the_feed_state_protocol(store: Store) -> None:
    assert isinstance(store, FeedStateStore)
    assert await store.get_cursor("npm-changes") is None
    await store.set_cursor("npm-changes", "100")
    await store.set_cursor("npm-changes", "205")
    assert await store.get_cursor("npm-changes") == "205"

    assert await store.get_package_state(Ecosystem.NPM, "left-pad") is None
    state = PackageState(
        versions=frozenset({"1.0.0", "1.1.0"}),
        files=frozenset({"left-pad-1.1.0.tgz"}),
        etag='"abc"',
        generation=3,
    )
    await store.set_package_state(Ecosystem.NPM, "left-pad", state)
    await store.set_package_state(Ecosystem.PYPI, "six", PackageState())
    assert await store.get_package_state(Ecosystem.NPM, "left-pad") == state
    assert await store.get_package_state(Ecosystem.PYPI, "six") == PackageState()
    assert await store.known_packages(Ecosystem.NPM) == ["left-pad"]


async def test_every_package_state_field_round_trips(store: Store) -> None:
    """Fails when PackageState gains a field the store does not keep."""
    values: dict[str, object] = {}
    for f in dataclasses.fields(PackageState):
        default = f.default
        if isinstance(default, frozenset):
            values[f.name] = frozenset({f"{f.name}-1", f"{f.name}-2"})
        elif f.name == "generation":
            values[f.name] = 42
        else:
            values[f.name] = f"{f.name}-value"
    state = PackageState(**values)  # type: ignore[arg-type]
    await store.set_package_state(Ecosystem.PYPI, "sdk", state)
    assert await store.get_package_state(Ecosystem.PYPI, "sdk") == state


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


async def test_recording_releases_is_idempotent(store: Store) -> None:
    first = await record_releases(
        store,
        [rel("a", "1.0.1"), rel("b", "2.0.0")],
        "npm-changes",
        "10",
        baselines=[rel("a", "1.0.0")],
        now=T0,
    )
    assert [(r.release.version, r.baseline) for r in first] == [
        ("1.0.0", True),
        ("1.0.1", False),
        ("2.0.0", False),
    ]
    again = await record_releases(
        store, [rel("a", "1.0.1"), rel("b", "2.0.0")], "npm-changes", "11", now=T0 + 1
    )
    assert again == []  # nothing new: a repeated feed page creates nothing
    assert await store.get_cursor("npm-changes") == "11"
    counts = await store.counts(now=T0)
    assert counts.releases_by_state[ReleaseState.PENDING] == 3
    stored = await store.get_release(Ecosystem.NPM, "a", "1.0.1")
    assert stored is not None
    assert stored.release == rel("a", "1.0.1")  # round trip, artifacts and publish time included
    assert stored.feed == "npm-changes" and stored.attempts == 0


async def test_new_files_of_a_known_version_are_scanned_again(store: Store) -> None:
    eco = Ecosystem.PYPI
    await record_events(
        store,
        [ReleaseSeen(rel("sdk", "1.0", "sdk-1.0.tar.gz", eco=eco), "pypi", datetime.now(UTC))],
    )
    [claimed] = await store.claim_pending(10, now=T0)
    await store.mark_scanned(claimed.id, [], manifest("a"), now=T0)
    # a wheel uploaded later to the same version
    changed = await record_events(
        store,
        [
            ReleaseSeen(
                rel("sdk", "1.0", "sdk-1.0-py3-none-any.whl", eco=eco), "pypi", datetime.now(UTC)
            )
        ],
    )
    assert [r.state for r in changed] == [ReleaseState.PENDING]
    assert [a.filename for a in changed[0].release.artifacts] == [
        "sdk-1.0.tar.gz",
        "sdk-1.0-py3-none-any.whl",
    ]
    # and while it is being scanned, yet another file: the scan finishing must not close it
    [claimed] = await store.claim_pending(10, now=T0)
    await record_events(
        store, [ReleaseSeen(rel("sdk", "1.0", "sdk-1.0.zip", eco=eco), "pypi", datetime.now(UTC))]
    )
    await store.mark_scanned(claimed.id, [], manifest("a"), now=T0)
    again = await store.get_release(eco, "sdk", "1.0")
    assert again is not None and again.state is ReleaseState.PENDING
    assert len(again.release.artifacts) == 3


async def test_events_with_package_state_and_cursor_in_one_call(store: Store) -> None:
    now = datetime.now(UTC)
    await record_events(
        store,
        [
            BaselineSeen(rel("a", "1.0.0"), "npm-poll", now),
            VersionRemoved(Ecosystem.NPM, "a", "0.9.0", "npm-poll", now, reason="unpublished"),
            PackageUnpublished(Ecosystem.NPM, "gone", ("1.0.0", "1.1.0"), "npm-poll", now),
        ],
        cursor=CursorWrite("npm-poll", "x"),
        package_states=[
            (Ecosystem.NPM, "a", PackageState(versions=frozenset({"1.0.0"}), etag="e1"))
        ],
    )
    assert await store.get_cursor("npm-poll") == "x"
    state = await store.get_package_state(Ecosystem.NPM, "a")
    assert state is not None and state.etag == "e1"
    [removal] = await store.removals(Ecosystem.NPM, "a", "0.9.0")
    assert removal.reason == "unpublished" and removal.filename is None
    assert [r.reason for r in await store.removals(Ecosystem.NPM, "gone", "1.1.0")] == [
        "unpublished"
    ]


# ---------------------------------------------------------------------------- scan queue


async def test_claim_moves_pending_to_scanning_one_per_package_in_order(store: Store) -> None:
    await record_releases(
        store,
        [rel("a", "1.0.1"), rel("a", "1.0.2"), rel("b", "1.0.0"), rel("c", "1.0.0")],
        "f",
        "1",
        baselines=[rel("a", "1.0.0")],
        now=T0,
    )
    claimed = await store.claim_pending(10, now=T0)
    assert [(r.release.name, r.release.version) for r in claimed] == [
        ("a", "1.0.0"),
        ("b", "1.0.0"),
        ("c", "1.0.0"),
    ]
    assert all(r.state is ReleaseState.SCANNING and r.attempts == 1 for r in claimed)
    # a's next release waits until its predecessor is done, so it finds that manifest
    assert await store.claim_pending(10, now=T0) == []
    await store.mark_scanned(claimed[0].id, [], manifest("package/index.js"), now=T0)
    [nxt] = await store.claim_pending(10, now=T0)
    assert (nxt.release.name, nxt.release.version) == ("a", "1.0.1")


async def test_claim_respects_limit_and_retry_time(store: Store) -> None:
    await record_releases(store, [rel(n, "1.0.0") for n in "abcde"], "f", "1", now=T0)
    assert len(await store.claim_pending(2, now=T0)) == 2
    [c] = await store.claim_pending(1, now=T0)
    await store.schedule_retry(c.id, "registry answered 503", T0 + 60, now=T0)
    due = await store.claim_pending(10, now=T0 + 30)
    assert c.id not in [r.id for r in due]  # not yet due
    assert await store.next_due_at() == T0 + 60
    [retried] = await store.claim_pending(10, now=T0 + 60)
    assert (
        retried.id == c.id
        and retried.attempts == 2
        and retried.last_error == "registry answered 503"
    )


async def test_concurrent_claims_never_hand_out_a_release_twice(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    stores = [await open_store(path) for _ in range(3)]  # separate connections to one file
    try:
        await record_releases(
            stores[0], [rel(f"p{i}", "1.0.0") for i in range(60)], "f", "1", now=T0
        )
        results = await asyncio.gather(
            *(s.claim_pending(7, now=T0) for s in stores for _ in range(4))
        )
        ids = [r.id for batch in results for r in batch]
        assert len(ids) == len(set(ids)) == 60
    finally:
        for s in stores:
            await s.close()


async def test_requeue_after_crash_keeps_the_attempt_unclaim_refunds_it(store: Store) -> None:
    await record_releases(store, [rel("a", "1.0.0"), rel("b", "1.0.0")], "f", "1", now=T0)
    _a, b = await store.claim_pending(10, now=T0)
    await store.unclaim(b.id)
    assert await store.requeue_scanning(now=T0) == 1  # only a was still scanning
    again = {r.release.name: r for r in await store.claim_pending(10, now=T0)}
    assert again["a"].attempts == 2  # the crashed attempt counts
    assert again["b"].attempts == 1  # the graceful one does not


async def test_failed_releases_keep_their_reason(store: Store) -> None:
    await record_releases(store, [rel("a", "1.0.0")], "f", "1", now=T0)
    [a] = await store.claim_pending(1, now=T0)
    await store.mark_failed(a.id, "integrity: sha512 mismatch", now=T0)
    failed = await store.get_release_by_id(a.id)
    assert failed is not None and failed.state is ReleaseState.FAILED
    assert failed.last_error == "integrity: sha512 mismatch"
    assert (await store.counts(now=T0)).releases_by_state[ReleaseState.FAILED] == 1
    assert await store.claim_pending(1, now=T0) == []
    assert await store.retry_failed(a.id)
    assert [r.id for r in await store.claim_pending(1, now=T0)] == [a.id]


async def test_findings_and_manifest_round_trip(store: Store) -> None:
    await record_releases(store, [rel("a", "1.0.0")], "f", "1", now=T0)
    [a] = await store.claim_pending(1, now=T0)
    f = finding()
    m = manifest("package/index.js", "package/cli.js.map")
    created = await store.mark_scanned(a.id, [f], m, now=T0 + 5)
    assert created == (None, False)
    assert await store.get_findings(a.id) == [f]
    assert await store.get_manifest(Ecosystem.NPM, "a", "1.0.0") == m
    done = await store.get_release_by_id(a.id)
    assert done is not None and done.state is ReleaseState.SCANNED and done.scanned_at == T0 + 5
    # scanning again replaces, never duplicates, the findings
    await store.mark_scanned(a.id, [f], m, now=T0 + 6)
    assert len(await store.get_findings(a.id)) == 1


async def test_baseline_manifest_follows_version_order_not_publish_order(store: Store) -> None:
    for version in ("1.2.4", "2.0.0", "1.2.5-beta.1"):
        await record_releases(store, [rel("a", version)], "f", version, now=T0)
        [r] = await store.claim_pending(1, now=T0)
        await store.mark_scanned(r.id, [], manifest(f"package/{version}.js"), now=T0)
    found = await baseline_manifest(store, Ecosystem.NPM, "a", "1.2.5")
    assert found is not None
    version, m = found
    assert version == "1.2.4" and "package/1.2.4.js" in m.files
    assert await baseline_manifest(store, Ecosystem.NPM, "a", "1.0.0") is None
    assert await store.get_manifest(Ecosystem.NPM, "a", "9.9.9") is None


# ----------------------------------------------------------------------------- incidents


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
    assert stored is not None and stored.payload["findings"] == [{"rule": "x"}]
    assert stored.worst_severity is Severity.CRITICAL


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
        pages("platform/webhook", event=OutboxEvent.RESOLVED),
        now=T0 + 90,
    )
    assert changed and resolved is not None
    assert resolved.state is IncidentState.RESOLVED and resolved.resolution == "unpublished"
    assert resolved.resolved_at == T0 + 90
    _, changed_again = await store.resolve_incident(
        opened.dedup_key, "unpublished", pages("platform/webhook", event=OutboxEvent.RESOLVED)
    )
    assert not changed_again
    assert await store.resolve_incident("watcher/npm/none/1.0.0", "x") == (None, False)
    item = await store.next_outbox_item("platform/webhook", now=T0 + 90)
    assert item is not None and item.event is OutboxEvent.RESOLVED and item.incident_id == opened.id
    assert (await store.counts(now=T0)).outbox_depth == {"platform/webhook": 1}
    assert await store.open_incidents() == []


async def test_oldest_open_incident_age_per_ecosystem(store: Store) -> None:
    assert (await store.counts(now=T0)).oldest_open_incident_age_s == {}
    await store.open_incident_with_outbox(incident("1.0.1"), [], now=T0)
    await store.open_incident_with_outbox(incident("1.0.2"), [], now=T0 + 50)
    py = dataclasses.replace(incident("2.0.0"), ecosystem=Ecosystem.PYPI, name="acme-sdk")
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
        incident_id=opened.id,
        note_kind="findings-1",
        note="1 new finding",
        worst_severity=Severity.CRITICAL,
        payload={"findings": [{"rule": "x"}, {"rule": "y"}]},
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
            deliveries=pages("hook", event=OutboxEvent.UPDATE),
            now=T0 + 20,
        )
        assert applied is (attempt == 0)
        assert updated is not None and updated.state is IncidentState.OPEN
        assert updated.resolved_at is None and updated.resolution is None
        assert updated.payload["findings"] == [{"rule": "x"}, {"rule": "y"}]
    assert await store.incident_notes(opened.id) == {"findings-1": "1 new finding"}
    events = []
    while (item := await store.next_outbox_item("hook", now=T0 + 30)) is not None:
        events.append(item.event)
        await store.mark_delivered(item.id)
    assert events == [OutboxEvent.OPENED, OutboxEvent.UPDATE]


# -------------------------------------------------------------------------------- outbox


async def test_outbox_delivers_in_order_per_channel_without_holding_up_others(store: Store) -> None:
    for version in ("1.0.1", "1.0.2", "1.0.3"):
        await store.open_incident_with_outbox(incident(version), pages("hook", "console"), now=T0)
    assert await store.outbox_channels() == ["console", "hook"]

    head = await store.next_outbox_item("hook", now=T0)
    assert head is not None and head.payload == {"to": "hook"} and head.event is OutboxEvent.OPENED
    # the webhook is down: its head waits, and nothing behind it overtakes
    await store.mark_retry(head.id, T0 + 30, "503 Service Unavailable")
    assert await store.next_outbox_item("hook", now=T0 + 10) is None
    waiting = await store.outbox_head("hook")
    assert waiting is not None and waiting.id == head.id and waiting.attempts == 1
    assert waiting.last_error == "503 Service Unavailable"
    # the console channel is not held up
    delivered = []
    while (item := await store.next_outbox_item("console", now=T0 + 10)) is not None:
        delivered.append(item.id)
        await store.mark_delivered(item.id)
    assert len(delivered) == 3 and delivered == sorted(delivered)
    # the webhook is back: every page, in order, once
    hook_order = []
    while (item := await store.next_outbox_item("hook", now=T0 + 30)) is not None:
        hook_order.append(item.id)
        await store.mark_delivered(item.id)
    assert hook_order[0] == head.id and hook_order == sorted(hook_order) and len(hook_order) == 3
    assert await store.outbox_channels() == []


async def test_dead_letters_keep_their_reason_and_are_counted(store: Store) -> None:
    opened, _ = await store.open_incident_with_outbox(incident(), pages("hook"), now=T0)
    await store.open_incident_with_outbox(incident("1.0.2"), pages("hook"), now=T0 + 5)
    first = await store.next_outbox_item("hook", now=T0 + 5)
    assert first is not None
    counts = await store.counts(now=T0 + 100)
    assert counts.outbox_oldest_age_s == 100 and counts.dead_letters == 0
    await store.mark_dead(first.id, "410 Gone: endpoint disabled", now=T0 + 100)
    # the next page becomes the head of the channel
    nxt = await store.next_outbox_item("hook", now=T0 + 100)
    assert nxt is not None and nxt.id != first.id
    [dead] = await store.dead_letters()
    assert dead.id == first.id and dead.last_error == "410 Gone: endpoint disabled"
    assert dead.incident_id == opened.id and dead.state == "dead"
    counts = await store.counts(now=T0 + 100)
    assert counts.dead_letters == 1 and counts.outbox_depth == {"hook": 1}
    assert counts.outbox_oldest_age_s == 95


async def test_test_alerts_are_queued_without_an_incident(store: Store) -> None:
    [item_id] = await store.enqueue(
        [Delivery("demo/console", OutboxEvent.TEST, {"test": True})], now=T0
    )
    item = await store.next_outbox_item("demo/console", now=T0)
    assert item is not None and item.id == item_id and item.incident_id is None
    assert item.event is OutboxEvent.TEST


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


# ----------------------------------------------------------- SIGKILL mid-transaction

_CRASHER = textwrap.dedent(
    """
    import asyncio, sys, time
    from datetime import UTC, datetime
    from watcher.model import Artifact, Ecosystem, Release, Severity
    from watcher.store.sqlite.store import SqliteStore
    from watcher.store.types import CursorWrite, Delivery, FeedBatch, NewIncident, OutboxEvent
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
            incident = NewIncident(Ecosystem.NPM, "leaky", "1.0.1", "platform", Severity.CRITICAL, {"k": 1})
            deliveries = [Delivery(c, OutboxEvent.OPENED, {"c": c}) for c in ("a", "b", "c")]
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
