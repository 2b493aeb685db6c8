"""Counts for the metrics and the `watcher status` summary, read across the tables."""

from __future__ import annotations

from watcher.model import Ecosystem
from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.channels import disabled_channel_of
from watcher.store.sqlite.codec import now_or
from watcher.store.sqlite.connection import fetch
from watcher.store.sqlite.feed_state import FeedStateRepository
from watcher.store.sqlite.incidents import IncidentRepository
from watcher.store.sqlite.releases import RELEASE_COLUMNS, release_of
from watcher.store.types import ReleaseState, StatusSummary, StoreCounts


class StatusRepository(Repository):
    async def counts(self, *, now: float | None = None) -> StoreCounts:
        at = now_or(now)
        async with self._conn.reading() as db:
            by_state = {state: 0 for state in ReleaseState}
            for row in await fetch(db, "SELECT state, COUNT(*) AS n FROM releases GROUP BY state"):
                by_state[ReleaseState(row["state"])] = row["n"]
            depth = {
                row["channel"]: row["n"]
                for row in await fetch(
                    db,
                    "SELECT channel, COUNT(*) AS n FROM outbox WHERE state = 'pending' "
                    "GROUP BY channel ORDER BY channel",
                )
            }
            dead = await fetch(db, "SELECT COUNT(*) AS dead FROM outbox WHERE state = 'dead'")
            oldest_rows = await fetch(
                db, "SELECT MIN(created_at) AS oldest FROM outbox WHERE state = 'pending'"
            )
            open_rows = await fetch(db, "SELECT COUNT(*) AS n FROM incidents WHERE state = 'open'")
            oldest_open = {
                Ecosystem(row["ecosystem"]): max(0.0, at - row["opened"])
                for row in await fetch(
                    db,
                    "SELECT ecosystem, MIN(opened_at) AS opened FROM incidents "
                    "WHERE state = 'open' GROUP BY ecosystem",
                )
            }
        oldest = oldest_rows[0]["oldest"]
        return StoreCounts(
            releases_by_state=by_state,
            outbox_depth=depth,
            outbox_oldest_age_s=None if oldest is None else max(0.0, at - oldest),
            dead_letters=int(dead[0]["dead"] or 0),
            open_incidents=int(open_rows[0]["n"]),
            oldest_open_incident_age_s=oldest_open,
        )

    async def status(self, *, now: float | None = None) -> StatusSummary:
        feeds = FeedStateRepository(self._conn, self._notifications)
        incidents = IncidentRepository(self._conn, self._notifications)
        rows = await self._conn.read(
            f"SELECT {RELEASE_COLUMNS} FROM releases WHERE id IN ("  # noqa: S608
            "SELECT MAX(id) FROM releases GROUP BY ecosystem, name) ORDER BY ecosystem, name"
        )
        disabled = await self._conn.read("SELECT * FROM disabled_channels ORDER BY channel")
        return StatusSummary(
            cursors=await feeds.cursors(),
            last_releases=[release_of(row) for row in rows],
            open_incidents=await incidents.open_incidents(),
            counts=await self.counts(now=now),
            disabled_channels=[disabled_channel_of(row) for row in disabled],
        )
