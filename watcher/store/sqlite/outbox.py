"""The alert outbox (tables incident_events, outbox): pages per channel, delivered in the order
they were queued.

An event of an incident (opened, updated, resolved) is recorded once in `incident_events`, with its
stable id, its message and the incident as it was when it happened (what every channel renders,
however late it is sent); the outbox holds one delivery of it per channel with its attempt state.
Events stay after their deliveries are done: the incident's history of what was sent.

Ids are AUTOINCREMENT, never reused, so per-channel order by id is delivery order; only a
channel's head is tried, so later pages never overtake it. A page leaves the outbox only once the
channel accepted it; one that is given up on stays as a dead letter with its reason."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from watcher.model import AlertEvent, EventType
from watcher.store.incident_json import event_from_parts, incident_content
from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import now_or, to_json
from watcher.store.sqlite.connection import Db, Row, fetch
from watcher.store.types import ChannelQueue, Delivery, OutboxItem, Requeued, Topic


class OutboxRepository(Repository):
    async def enqueue(
        self,
        deliveries: Sequence[Delivery],
        *,
        incident_id: int | None = None,
        now: float | None = None,
    ) -> list[int]:
        """Queue pages outside an incident's creation (test alerts, updates)."""
        async with self._conn.tx() as db:
            ids = await enqueue_rows(db, incident_id, deliveries, now_or(now))
        if ids:
            self._notifications.notify(Topic.OUTBOX)
        return ids

    async def outbox_channels(self) -> list[str]:
        rows = await self._conn.read(
            "SELECT DISTINCT channel FROM outbox WHERE state = 'pending' ORDER BY channel"
        )
        return [row["channel"] for row in rows]

    async def outbox_head(self, channel: str) -> OutboxItem | None:
        """The oldest pending item of a channel, due or not: pages leave a channel in order."""
        rows = await self._conn.read(
            f"{_ITEMS} WHERE o.channel = ? AND o.state = 'pending' ORDER BY o.id LIMIT 1",
            (channel,),
        )
        return outbox_item_of(rows[0]) if rows else None

    async def next_outbox_item(
        self, channel: str, *, now: float | None = None
    ) -> OutboxItem | None:
        """The channel's head item if it is due; None while the head waits for its retry time
        (later items never overtake it)."""
        head = await self.outbox_head(channel)
        if head is None or head.next_attempt_at > now_or(now):
            return None
        return head

    async def amend_held_event(
        self,
        incident_id: int,
        event_id: str,
        message: str | None,
        *,
        release: bool,
        now: float | None = None,
        margin: float = 0.5,
    ) -> bool:
        """Change what a held event says (its message; None keeps it) and, with `release`, make
        its deliveries due now. Only while every delivery of it is still held, untried, more than
        `margin` seconds before its hold ends (so a sender reading it at the end of the hold reads
        the amended event, never half of it): False otherwise, and nothing changes."""
        at = now_or(now)
        async with self._conn.tx() as db:
            rows = await fetch(
                db,
                "SELECT e.id AS event, o.id, o.attempts, o.next_attempt_at, o.state "
                "FROM incident_events AS e JOIN outbox AS o ON o.event = e.id "
                "WHERE e.incident_id = ? AND e.event_id = ?",
                (incident_id, event_id),
            )
            if not rows or any(
                r["attempts"] != 0 or r["state"] != "pending" or r["next_attempt_at"] <= at + margin
                for r in rows
            ):
                return False
            ref = rows[0]["event"]
            if message is not None:
                await db.execute(
                    "UPDATE incident_events SET message = ? WHERE id = ?", (message, ref)
                )
            if release:
                await db.execute(
                    "UPDATE outbox SET next_attempt_at = ? WHERE event = ? AND state = 'pending'",
                    (at, ref),
                )
        if release:
            self._notifications.notify(Topic.OUTBOX)
        return True

    async def mark_delivered(self, item_id: int) -> None:
        """The channel accepted it: only now does it leave the outbox."""
        async with self._conn.tx() as db:
            await db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    async def mark_retry(self, item_id: int, next_attempt_at: float, error: str) -> None:
        """Not accepted this time: the item stays at the head of its channel until then."""
        async with self._conn.tx() as db:
            await db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
                "WHERE id = ? AND state = 'pending'",
                (next_attempt_at, error, item_id),
            )

    async def mark_dead(self, item_id: int, reason: str, *, now: float | None = None) -> None:
        """Given up on this page: kept as a dead letter with its reason, and counted."""
        async with self._conn.tx() as db:
            await db.execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, "
                "dead_at = ? WHERE id = ?",
                (reason, now_or(now), item_id),
            )

    async def dead_letters(self, limit: int | None = 100) -> list[OutboxItem]:
        rows = await self._conn.read(
            f"{_ITEMS} WHERE o.state = 'dead' ORDER BY o.id LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [outbox_item_of(row) for row in rows]

    async def outbox_queues(self) -> list[ChannelQueue]:
        """Each channel with pending pages: depth, oldest page, and its head (the page being
        tried, whose last error is the channel's)."""
        rows = await self._conn.read(
            "SELECT o.channel, q.depth, q.oldest, o.id, o.attempts, o.next_attempt_at, "
            "o.last_error FROM outbox AS o JOIN ("
            "  SELECT channel, COUNT(*) AS depth, MIN(created_at) AS oldest, MIN(id) AS head "
            "  FROM outbox WHERE state = 'pending' GROUP BY channel"
            ") AS q ON o.id = q.head ORDER BY o.channel"
        )
        return [
            ChannelQueue(
                channel=row["channel"],
                depth=row["depth"],
                oldest_created_at=row["oldest"],
                head_id=row["id"],
                head_attempts=row["attempts"],
                head_next_attempt_at=row["next_attempt_at"],
                last_error=row["last_error"],
            )
            for row in rows
        ]

    async def requeue_dead(
        self,
        ids: Sequence[int] = (),
        *,
        channel: str | None = None,
        everything: bool = False,
        now: float | None = None,
    ) -> Requeued:
        """Dead letters back to pending, in one short transaction (safe beside a running
        service): those with `ids`, those of `channel`, or all with `everything`. Attempts reset,
        due now, and a whole retry window again (`created_at` is now); they keep their ids, so
        their order within a channel is the order they were queued in. `channel` and `everything`
        also enable the disabled channels they name, which the running outbox notices within its
        idle poll."""
        at = now_or(now)
        where: str
        params: list[str | int]
        if everything:
            where, params = "1", []
        elif channel is not None:
            where, params = "channel = ?", [channel]
        elif ids:
            where, params = f"id IN ({', '.join('?' for _ in ids)})", [int(i) for i in ids]
        else:
            return Requeued([], [])
        async with self._conn.tx() as db:
            rows = await fetch(
                db,
                f"UPDATE outbox SET state = 'pending', attempts = 0, "  # noqa: S608 - placeholders
                f"next_attempt_at = ?, created_at = ?, dead_at = NULL "
                f"WHERE state = 'dead' AND ({where}) RETURNING id",
                (at, at, *params),
            )
            items = await _items_by_id(db, [row["id"] for row in rows])
            enabled: list[str] = []
            if everything or channel is not None:
                gone = await fetch(
                    db,
                    f"DELETE FROM disabled_channels WHERE {where} RETURNING channel",  # noqa: S608
                    params,
                )
                enabled = sorted(row["channel"] for row in gone)
        if items or enabled:
            self._notifications.notify(Topic.OUTBOX)
        return Requeued(items, enabled)


_EVENT_TYPES = frozenset(t.value for t in EventType)

# Every read of a delivery carries its event.
_ITEMS = (
    "SELECT o.id, o.channel, o.attempts, o.next_attempt_at, o.last_error, o.created_at, "
    "o.state, o.dead_at, e.incident_id, e.event_id, e.type, e.dedup_key, e.message, e.incident "
    "FROM outbox AS o JOIN incident_events AS e ON e.id = o.event"
)


async def _items_by_id(db: Db, ids: Sequence[int]) -> list[OutboxItem]:
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    rows = await fetch(db, f"{_ITEMS} WHERE o.id IN ({marks}) ORDER BY o.id", list(ids))
    return [outbox_item_of(row) for row in rows]


def outbox_item_of(row: Row) -> OutboxItem:
    event: AlertEvent | None = None
    unreadable: str | None = None
    try:
        event = event_from_parts(
            row["type"], row["event_id"], row["message"], orjson.loads(row["incident"])
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        unreadable = f"{type(exc).__name__}: {exc}"[:300]
    event_type = EventType(row["type"]) if row["type"] in _EVENT_TYPES else None
    return OutboxItem(
        id=row["id"],
        incident_id=row["incident_id"],
        channel=row["channel"],
        event_id=row["event_id"],
        event_type=event_type,
        dedup_key=row["dedup_key"],
        event=event,
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        state=row["state"],
        dead_at=row["dead_at"],
        unreadable=unreadable,
    )


async def enqueue_rows(
    db: Db, incident_id: int | None, deliveries: Sequence[Delivery], at: float
) -> list[int]:
    """Each distinct event once (deliveries of one event share it), then one delivery per
    channel, in the order given."""
    events: dict[str, int] = {}
    ids = []
    for delivery in deliveries:
        event = delivery.event
        ref = events.get(event.event_id)
        if ref is None:
            cursor = await db.execute(
                "INSERT INTO incident_events (event_id, type, incident_id, dedup_key, message, "
                "incident, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    event.event_id,
                    EventType(event.type).value,
                    incident_id,
                    event.incident.dedup_key,
                    event.message,
                    to_json(incident_content(event.incident)),
                    at,
                ),
            )
            assert cursor.lastrowid is not None
            ref = events[event.event_id] = cursor.lastrowid
        due = at if delivery.hold_until is None else max(at, delivery.hold_until)
        cursor = await db.execute(
            "INSERT INTO outbox (event, channel, next_attempt_at, created_at) VALUES (?, ?, ?, ?)",
            (ref, delivery.channel, due, at),
        )
        assert cursor.lastrowid is not None
        ids.append(cursor.lastrowid)
    return ids
