"""A state file whose outbox holds incidents (schema 5, what earlier releases wrote: each row the
whole page as JSON) opens with the outbox as deliveries of events: its queued pages keep their
ids, order, attempts and event ids and are delivered by the real outbox to a real webhook
receiver; dead letters stay dead; a page that was never JSON is dead-lettered as before; ids are
never reused after the migration."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.receivers import Receiver, webhook_receiver
from watcher.alerts.console import ConsoleChannel
from watcher.alerts.outbox import Outbox
from watcher.alerts.webhook import WebhookChannel, message_id
from watcher.config.schema import RetryPolicy
from watcher.incidents.lifecycle import opened
from watcher.model import EventType, IncidentState, Severity
from watcher.store import open_store
from watcher.store.sqlite import files as state_file
from watcher.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from watcher.store.types import Delivery

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "whsec_" + base64.b64encode(b"migration-test-signing-key-32byt").decode()
FAST = RetryPolicy(initial=0.05, max=0.2, jitter=0.0, give_up_after=3600)
HOOK, CONSOLE = "team/webhook", "team/console"
T0 = time.time() - 60


def content(version: str) -> dict[str, Any]:
    """An incident's `incident` object as the schema-5 outbox payload carried it."""
    return {
        "dedup_key": f"watcher/npm/demo/{version}",
        "ecosystem": "npm",
        "name": "demo",
        "version": version,
        "owner": "team",
        "opened_at": "2026-01-02T03:04:05+00:00",
        "published_at": "2026-01-02T03:04:00+00:00",
        "resolved_at": None,
        "resolution": None,
        "test": False,
        "links": {},
        "runbook": [{"text": "Deprecate it", "command": "npm deprecate demo@x", "url": None}],
        "findings": [
            {
                "rule": "dotenv-file",
                "category": "sensitive-file",
                "severity": "critical",
                "path": "package/.env",
                "line": None,
                "message": "environment file with credentials shipped",
                "new": True,
                "fingerprint": "f" * 64,
            }
        ],
    }


def page(version: str, kind: str = "incident.opened", message: str | None = None) -> str:
    return json.dumps(
        {
            "type": kind,
            "event_id": f"watcher/npm/demo/{version}#{kind}",
            "message": message,
            "incident": content(version),
        }
    )


def schema_5_file(path: Path) -> None:
    """Two incidents; 1.0.1 paged on two channels (its webhook page once tried), 1.0.2 paged on
    the webhook, a dead console letter of an update, one unreadable row; the webhook's earlier
    pages (ids 1..4) already delivered and deleted."""
    statements: list[str | tuple[str, tuple[Any, ...]]] = [
        *(s for migration in MIGRATIONS[:5] for s in migration),
        "PRAGMA user_version = 5",
    ]
    for number, version in ((1, "1.0.1"), (2, "1.0.2")):
        statements.append(
            (
                "INSERT INTO incidents (id, dedup_key, ecosystem, name, version, owner, state, "
                "worst_severity, opened_at, payload) VALUES (?, ?, 'npm', 'demo', ?, 'team', "
                "'open', 'critical', ?, ?)",
                (number, f"watcher/npm/demo/{version}", version, T0, json.dumps(content(version))),
            )
        )

    def row(
        row_id: int, incident: int | None, channel: str, event: str, payload: str, **extra: Any
    ) -> tuple[str, tuple[Any, ...]]:
        return (
            "INSERT INTO outbox (id, incident_id, channel, event, payload, attempts, "
            "next_attempt_at, last_error, created_at, state, dead_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row_id,
                incident,
                channel,
                event,
                payload,
                extra.get("attempts", 0),
                T0,
                extra.get("last_error"),
                T0 + row_id,
                extra.get("state", "pending"),
                extra.get("dead_at"),
            ),
        )

    statements += [
        # delivered long ago: the sequence remembers them
        row(4, 1, HOOK, "opened", page("1.0.0")),
        "DELETE FROM outbox WHERE id = 4",
        row(5, 1, HOOK, "opened", page("1.0.1"), attempts=1, last_error="HTTP 503"),
        row(6, 1, CONSOLE, "opened", page("1.0.1")),
        row(7, 2, HOOK, "opened", page("1.0.2")),
        row(
            8,
            1,
            CONSOLE,
            "update",
            page("1.0.1", "incident.updated", "deprecated on npm"),
            state="dead",
            attempts=3,
            last_error="console said no",
            dead_at=T0 + 9,
        ),
        row(9, None, CONSOLE, "test", "{not json"),
    ]
    state_file.execute(path, *statements)


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with webhook_receiver(SECRET) as receiver:
        yield receiver


async def test_a_schema_5_outbox_becomes_deliveries_of_events(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    schema_5_file(path)
    store = await open_store(path)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        head = await store.outbox_head(HOOK)
        assert head is not None and head.id == 5 and head.attempts == 1
        assert head.last_error == "HTTP 503" and head.incident_id == 1
        assert head.event_type is EventType.OPENED
        assert head.event_id == "watcher/npm/demo/1.0.1#incident.opened"
        assert head.dedup_key == "watcher/npm/demo/1.0.1"
        assert head.event is not None and head.event.incident.findings[0].rule == "dotenv-file"
        assert head.event.incident.runbook[0].command == "npm deprecate demo@x"

        console = await store.outbox_head(CONSOLE)
        assert console is not None and console.id == 6 and console.event == head.event
        # one page on two channels is one event
        assert state_file.query(path, "SELECT COUNT(*) FROM incident_events") == [(4,)]
        [dead] = await store.dead_letters()
        assert dead.id == 8 and dead.last_error == "console said no" and dead.attempts == 3
        assert dead.event is not None and dead.event.message == "deprecated on npm"
        assert dead.event_type is EventType.UPDATED

        # the incident reads back from its own row
        incident = await store.get_incident("watcher/npm/demo/1.0.2")
        assert incident is not None and incident.id == 2 and incident.state is IncidentState.OPEN
        assert incident.worst() is Severity.CRITICAL and incident.findings[0].path.endswith(".env")

        # ids are never reused: a new page comes after every old one, even the deleted ones
        [new_id] = await store.enqueue([Delivery(HOOK, opened(incident))])
        assert new_id == 10
    finally:
        await store.close()


async def test_the_migrated_pages_are_delivered_once_with_their_event_ids(
    tmp_path: Path, hook: Receiver
) -> None:
    path = tmp_path / "state.db"
    schema_5_file(path)
    store = await open_store(path)
    channel = WebhookChannel(HOOK, hook.url, SECRET)
    stop = asyncio.Event()
    task = asyncio.create_task(Outbox(store, {HOOK: channel}, FAST).run(stop))
    try:
        await hook.wait_for(2)
        deadline = time.monotonic() + 10
        while await store.outbox_head(HOOK) is not None:
            assert time.monotonic() < deadline, "the migrated webhook pages were not delivered"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await channel.close()
        await store.close()
    hook.assert_valid()
    sent = [(r.headers["webhook-id"], r.json()["data"]["version"]) for r in hook.requests]
    assert sent == [
        (message_id("watcher/npm/demo/1.0.1#incident.opened"), "1.0.1"),
        (message_id("watcher/npm/demo/1.0.2#incident.opened"), "1.0.2"),
    ]


async def test_a_migrated_page_that_was_never_json_is_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    schema_5_file(path)
    store = await open_store(path)
    out = io.StringIO()
    stop = asyncio.Event()
    task = asyncio.create_task(
        Outbox(store, {CONSOLE: ConsoleChannel(CONSOLE, out)}, FAST).run(stop)
    )
    try:
        deadline = time.monotonic() + 10
        while await store.outbox_head(CONSOLE) is not None:
            assert time.monotonic() < deadline, "the console queue did not drain"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    try:
        assert out.getvalue().count("key watcher/npm/demo/1.0.1") == 1
        dead = {item.id: item for item in await store.dead_letters()}
        assert sorted(dead) == [8, 9]
        assert dead[9].event is None and dead[9].event_type is None
        assert (dead[9].last_error or "").startswith("unreadable payload")
    finally:
        await store.close()
