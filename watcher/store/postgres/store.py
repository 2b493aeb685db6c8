"""The shared store on PostgreSQL: several replicas, one database.

`PostgresStore` runs the embedded store's repositories over `connection.Connection` (PostgreSQL,
writes serialised by an advisory lock) and replaces the steps whose meaning differs when several
processes share the state:

- claims pick due releases `FOR UPDATE SKIP LOCKED` and take over only claims whose lease expired;
  `requeue_scanning` at a replica's start requeues only those (and lease-less ones), never a live
  replica's;
- a cursor write that names an epoch is refused (`StaleEpoch`) when the feed's lease
  (`feed:<name>`) has a newer one, or the cursor was last written under a newer one;
- leases are judged by the database server's clock (replicas' clocks may disagree);
- notifications reach the other replicas (LISTEN/NOTIFY).
"""

from __future__ import annotations

from watcher.model import Ecosystem
from watcher.store.postgres.connection import Connection, Db, fetch
from watcher.store.postgres.notify import PgNotifications
from watcher.store.sqlite import feed_state
from watcher.store.sqlite.codec import now_or
from watcher.store.sqlite.releases import (
    RELEASE_COLUMNS,
    release_of,
    releases_by_id,
    upsert_release,
)
from watcher.store.sqlite.repositories import Repositories
from watcher.store.types import (
    Claimant,
    CursorWrite,
    FeedBatch,
    Lease,
    StaleEpoch,
    StoredRelease,
    Topic,
)

_UNCLAIMED = "claimed_by = NULL, lease_expires_at = NULL"


class PostgresStore(Repositories):
    """Every concern over one pool; `await store.close()` when done (or `async with`)."""

    def __init__(self, connection: Connection, notifications: PgNotifications) -> None:
        # the repositories only call tx/reading/read and the cursor methods Db mirrors
        super().__init__(connection, notifications)  # type: ignore[arg-type]
        self._pg = connection
        self._pg_notifications = notifications

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 8) -> PostgresStore:
        connection = await Connection.open(url, max_size=pool_size)
        notifications = PgNotifications(url)
        notifications.start()
        return cls(connection, notifications)

    @property
    def location(self) -> str:
        return self._pg.location

    @property
    def notifications(self) -> PgNotifications:
        return self._pg_notifications

    async def schema_version(self) -> int:
        return await self._pg.schema_version()

    async def ping(self) -> None:
        """One round trip (readiness): StoreError when the server cannot be reached."""
        await self._pg.read("SELECT 1")

    async def close(self) -> None:
        await self._pg_notifications.close()
        await self._pg.close()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- leases on the server's clock -----------------------------------------------------------

    async def acquire_lease(
        self, name: str, owner: str, lease_s: float, *, now: float | None = None
    ) -> Lease | None:
        """As the embedded store's, but judged by the database server's clock: replicas on
        machines whose clocks disagree still agree on when a lease expired."""
        at = await self.server_time() if now is None else now
        return await super().acquire_lease(name, owner, lease_s, now=at)

    async def server_time(self) -> float:
        rows = await self._pg.read("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8 AS at")
        return float(rows[0]["at"])

    # -- cursors under a leader epoch ----------------------------------------------------------

    async def set_cursor(
        self, feed: str, cursor: str, *, epoch: int | None = None, now: float | None = None
    ) -> None:
        async with self._pg.tx() as db:
            await _write_cursor(db, CursorWrite(feed, cursor, epoch=epoch), now_or(now))

    async def record_batch(
        self, batch: FeedBatch, *, now: float | None = None
    ) -> list[StoredRelease]:
        at = now_or(now)
        changed: list[int] = []
        async with self._pg.tx() as db:
            if batch.cursor is not None:  # first: a stale leader's step is refused whole
                await _write_cursor(db, batch.cursor, at)
            for seen in batch.releases:
                release_id = await upsert_release(
                    db,  # type: ignore[arg-type]
                    seen.release,
                    baseline=seen.baseline,
                    feed=seen.feed,
                    now=at,
                )
                if release_id is not None:
                    changed.append(release_id)
            for removal in batch.removals:
                await feed_state.write_removal(db, removal, at)  # type: ignore[arg-type]
            for ecosystem, name, state in batch.package_states:
                await feed_state.write_package_state(
                    db,  # type: ignore[arg-type]
                    Ecosystem(ecosystem),
                    name,
                    state,
                    at,
                )
            stored = await releases_by_id(db, changed)  # type: ignore[arg-type]
        if stored:
            self.notifications.notify(Topic.RELEASES)
        return stored

    # -- claims shared by replicas -------------------------------------------------------------

    async def claim_pending(
        self, limit: int, *, claimant: Claimant | None = None, now: float | None = None
    ) -> list[StoredRelease]:
        """As the embedded store claims (oldest first, one per package, none of a package with a
        live claim), with the candidate rows locked `FOR UPDATE SKIP LOCKED`."""
        at = now_or(now)
        async with self._pg.tx() as db:
            rows = await fetch(
                db,
                f"""WITH due AS (
                        SELECT r.id, r.ecosystem, r.name FROM releases AS r
                        WHERE ((r.state = 'pending' AND COALESCE(r.next_attempt_at, 0) <= :now)
                               OR (r.state = 'scanning' AND r.lease_expires_at <= :now))
                          AND NOT EXISTS (
                              SELECT 1 FROM releases AS s
                              WHERE s.ecosystem = r.ecosystem AND s.name = r.name
                                AND s.state = 'scanning' AND s.id <> r.id
                                AND (s.lease_expires_at IS NULL OR s.lease_expires_at > :now))
                        ORDER BY r.id
                        FOR UPDATE OF r SKIP LOCKED),
                    firsts AS (
                        SELECT MIN(id) AS id FROM due GROUP BY ecosystem, name
                        ORDER BY MIN(id) LIMIT :limit)
                    UPDATE releases
                    SET state = 'scanning', attempts = attempts + 1, updated_at = :now,
                        claimed_by = :owner, lease_expires_at = :until
                    WHERE id IN (SELECT id FROM firsts)
                    RETURNING {RELEASE_COLUMNS}""",  # noqa: S608 - constant column list
                {
                    "now": at,
                    "limit": limit,
                    "owner": None if claimant is None else claimant.owner,
                    "until": None if claimant is None else at + claimant.lease_s,
                },
            )
        return sorted((release_of(row) for row in rows), key=lambda r: r.id)  # type: ignore[arg-type]

    async def requeue_scanning(self, *, now: float | None = None) -> int:
        """Claims whose lease expired, or that have none (a one-process tool's), go back to
        pending with their attempt counted; a live replica's claims stay its own."""
        at = now_or(now)
        async with self._pg.tx() as db:
            result = await db.execute(
                f"UPDATE releases SET state = 'pending', {_UNCLAIMED}, updated_at = ? "  # noqa: S608
                "WHERE state = 'scanning' AND (lease_expires_at IS NULL OR lease_expires_at <= ?)",
                (at, at),
            )
        if result.rowcount:
            self.notifications.notify(Topic.RELEASES)
        return result.rowcount


async def _write_cursor(db: Db, write: CursorWrite, at: float) -> None:
    if write.epoch is not None:
        lease = await fetch(db, "SELECT epoch FROM leases WHERE name = ?", (f"feed:{write.feed}",))
        stored = await fetch(db, "SELECT epoch FROM feed_cursors WHERE feed = ?", (write.feed,))
        newest = max(
            [int(r["epoch"]) for r in lease] + [int(r["epoch"]) for r in stored if r["epoch"]],
            default=0,
        )
        if write.epoch < newest:
            raise StaleEpoch(
                f"cursor of {write.feed}: written under leader epoch {write.epoch}, "
                f"but epoch {newest} leads now"
            )
    await db.execute(
        "INSERT INTO feed_cursors (feed, cursor, updated_at, epoch) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (feed) DO UPDATE SET cursor = excluded.cursor, "
        "updated_at = excluded.updated_at, "
        "epoch = COALESCE(excluded.epoch, feed_cursors.epoch)",
        (write.feed, write.cursor, at, write.epoch),
    )
