"""Incidents, one per dedup key, and the notes recorded on them (tables incidents,
incident_notes). Each change that pages queues its pages in the same transaction.

A row keeps the incident's content (findings, runbook, links, times) in the JSON form of
`watcher.store.incident_json`; its columns (state, resolution, worst severity, owner) are what
queries use and win over the content when the two are read back together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from watcher.model import Ecosystem, Incident, IncidentState
from watcher.store.incident_json import incident_content, incident_from_content
from watcher.store.sqlite import outbox
from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import now_or, to_json
from watcher.store.sqlite.connection import Db, Row, fetch
from watcher.store.types import Delivery, IncidentUpdate, Topic
from watcher.timefmt import from_epoch


class IncidentRepository(Repository):
    async def open_incident_with_outbox(
        self, incident: Incident, deliveries: Sequence[Delivery], *, now: float | None = None
    ) -> tuple[Incident, bool]:
        """Create the incident and queue its pages in one transaction. Idempotent on the dedup
        key: a second call for the same key changes nothing and returns (existing, False)."""
        async with self._conn.tx() as db:
            found, created = await open_incident(db, incident, deliveries, now_or(now))
        if created and deliveries:
            self._notifications.notify(Topic.OUTBOX)
        return found, created

    async def resolve_incident(
        self,
        dedup_key: str,
        resolution: str,
        deliveries: Sequence[Delivery] = (),
        *,
        now: float | None = None,
    ) -> tuple[Incident | None, bool]:
        """Resolve an open incident and queue its `resolved` pages, in one transaction.
        Returns (incident or None if unknown, whether this call resolved it)."""
        at = now_or(now)
        async with self._conn.tx() as db:
            rows = await fetch(db, "SELECT * FROM incidents WHERE dedup_key = ?", (dedup_key,))
            if not rows:
                return None, False
            row = rows[0]
            if row["state"] != IncidentState.OPEN:
                return incident_of(row), False
            await db.execute(
                "UPDATE incidents SET state = 'resolved', resolved_at = ?, resolution = ? "
                "WHERE id = ?",
                (at, resolution, row["id"]),
            )
            await outbox.enqueue_rows(db, row["id"], deliveries, at)
            rows = await fetch(db, "SELECT * FROM incidents WHERE id = ?", (row["id"],))
        if deliveries:
            self._notifications.notify(Topic.OUTBOX)
        return incident_of(rows[0]), True

    async def get_incident(self, dedup_key: str) -> Incident | None:
        rows = await self._conn.read("SELECT * FROM incidents WHERE dedup_key = ?", (dedup_key,))
        return incident_of(rows[0]) if rows else None

    async def open_incidents(self) -> list[Incident]:
        rows = await self._conn.read("SELECT * FROM incidents WHERE state = 'open' ORDER BY id")
        return [incident_of(row) for row in rows]

    async def incident_notes(self, incident_id: int) -> dict[str, str]:
        """What the containment watcher recorded for an incident: kind -> detail."""
        rows = await self._conn.read(
            "SELECT kind, detail FROM incident_notes WHERE incident_id = ? ORDER BY kind",
            (incident_id,),
        )
        return {row["kind"]: row["detail"] for row in rows}

    async def add_incident_note(
        self,
        incident_id: int,
        kind: str,
        detail: str,
        deliveries: Sequence[Delivery] = (),
        *,
        now: float | None = None,
    ) -> bool:
        """Record a note once per (incident, kind) and queue its pages in the same transaction.
        False (and nothing queued) when that kind was already recorded."""
        at = now_or(now)
        async with self._conn.tx() as db:
            cursor = await db.execute(
                "INSERT INTO incident_notes (incident_id, kind, detail, recorded_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (incident_id, kind) DO NOTHING",
                (incident_id, kind, detail, at),
            )
            if cursor.rowcount != 1:
                return False
            await outbox.enqueue_rows(db, incident_id, deliveries, at)
        if deliveries:
            self._notifications.notify(Topic.OUTBOX)
        return True


# ------------------------------------------------------------------ rows and statements


def incident_of(row: Row) -> Incident:
    """The stored incident: its content as recorded, with the row's own columns (id, state,
    resolution) the truth over it. A row whose content cannot be read (a state file edited by
    hand) still gives a bare incident from its columns."""
    resolved_at = row["resolved_at"]
    if row["state"] != IncidentState.RESOLVED:
        resolved_at = None
    elif resolved_at is None:  # resolved without a time: say when it was opened, not "open"
        resolved_at = row["opened_at"]
    try:
        content = incident_from_content(orjson.loads(row["payload"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        content = Incident(
            dedup_key=row["dedup_key"],
            ecosystem=Ecosystem(row["ecosystem"]),
            name=row["name"],
            version=row["version"],
            owner=row["owner"],
            opened_at=datetime.fromtimestamp(row["opened_at"], UTC),
            findings=[],
        )
    return replace(
        content,
        id=row["id"],
        release_id=row["release_id"],
        owner=row["owner"],
        resolved_at=from_epoch(resolved_at),
        resolution=row["resolution"] if resolved_at is not None else None,
    )


async def open_or_update(
    db: Db,
    incident: Incident | None,
    update: IncidentUpdate | None,
    deliveries: Sequence[Delivery],
    at: float,
) -> tuple[Incident | None, bool]:
    """What a scan or an origin check's verdict writes with it: `update` applied to the release's
    incident, else `incident` opened, else nothing; (incident, whether it was opened or applied)."""
    if update is not None:
        return await update_incident(db, update, deliveries, at)
    if incident is not None:
        return await open_incident(db, incident, deliveries, at)
    return None, False


async def open_incident(
    db: Db, incident: Incident, deliveries: Sequence[Delivery], at: float
) -> tuple[Incident, bool]:
    cursor = await db.execute(
        "INSERT INTO incidents (dedup_key, ecosystem, name, version, owner, release_id, state, "
        "worst_severity, opened_at, payload) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?) "
        "ON CONFLICT (dedup_key) DO NOTHING",
        (
            incident.dedup_key,
            Ecosystem(incident.ecosystem).value,
            incident.name,
            incident.version,
            incident.owner,
            incident.release_id,
            incident.worst().value,
            at,
            to_json(incident_content(incident)),
        ),
    )
    created = cursor.rowcount == 1
    rows = await fetch(db, "SELECT * FROM incidents WHERE dedup_key = ?", (incident.dedup_key,))
    stored = incident_of(rows[0])
    if created:
        await outbox.enqueue_rows(db, stored.id, deliveries, at)
    return stored, created


async def update_incident(
    db: Db, update: IncidentUpdate, deliveries: Sequence[Delivery], at: float
) -> tuple[Incident | None, bool]:
    incident_id = update.incident_id
    cursor = await db.execute(
        "INSERT INTO incident_notes (incident_id, kind, detail, recorded_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (incident_id, kind) DO NOTHING",
        (incident_id, update.note_kind, update.note, at),
    )
    applied = cursor.rowcount == 1
    if applied:
        # New exposure in a release whose incident was resolved: it is open again.
        await db.execute(
            "UPDATE incidents SET payload = ?, worst_severity = ?, state = 'open', "
            "resolved_at = NULL, resolution = NULL WHERE id = ?",
            (
                to_json(incident_content(update.incident)),
                update.incident.worst().value,
                incident_id,
            ),
        )
        await outbox.enqueue_rows(db, incident_id, deliveries, at)
    rows = await fetch(db, "SELECT * FROM incidents WHERE id = ?", (incident_id,))
    return (incident_of(rows[0]) if rows else None), applied
