"""Incidents, one per dedup key, and the notes recorded on them (tables incidents,
incident_notes). Each change that pages queues its pages in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from watcher.model import Ecosystem, Severity
from watcher.store.sqlite import outbox
from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import now_or, to_json
from watcher.store.sqlite.connection import Db, Row, fetch
from watcher.store.types import (
    Delivery,
    Incident,
    IncidentState,
    IncidentUpdate,
    NewIncident,
    Topic,
)


class IncidentRepository(Repository):
    async def open_incident_with_outbox(
        self, incident: NewIncident, deliveries: Sequence[Delivery], *, now: float | None = None
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
    return Incident(
        id=row["id"],
        dedup_key=row["dedup_key"],
        ecosystem=Ecosystem(row["ecosystem"]),
        name=row["name"],
        version=row["version"],
        owner=row["owner"],
        state=IncidentState(row["state"]),
        worst_severity=Severity(row["worst_severity"]),
        opened_at=row["opened_at"],
        resolved_at=row["resolved_at"],
        resolution=row["resolution"],
        payload=orjson.loads(row["payload"]),
        release_id=row["release_id"],
    )


async def open_incident(
    db: Db, incident: NewIncident, deliveries: Sequence[Delivery], at: float
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
            Severity(incident.worst_severity).value,
            at,
            to_json(incident.payload),
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
    cursor = await db.execute(
        "INSERT INTO incident_notes (incident_id, kind, detail, recorded_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (incident_id, kind) DO NOTHING",
        (update.incident_id, update.note_kind, update.note, at),
    )
    applied = cursor.rowcount == 1
    if applied:
        # New exposure in a release whose incident was resolved: it is open again.
        await db.execute(
            "UPDATE incidents SET payload = ?, worst_severity = ?, state = 'open', "
            "resolved_at = NULL, resolution = NULL WHERE id = ?",
            (to_json(update.payload), Severity(update.worst_severity).value, update.incident_id),
        )
        await outbox.enqueue_rows(db, update.incident_id, deliveries, at)
    rows = await fetch(db, "SELECT * FROM incidents WHERE id = ?", (update.incident_id,))
    return (incident_of(rows[0]) if rows else None), applied
