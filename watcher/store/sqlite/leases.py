"""Named leases with epochs (table leases): who holds a role until when.

The embedded store has one service per file, so its roles always have one holder; the leases are
kept the same way a shared store keeps them, so the contract holds for both."""

from __future__ import annotations

from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import now_or
from watcher.store.sqlite.connection import Row, fetch
from watcher.store.types import Lease


class LeaseRepository(Repository):
    async def acquire_lease(
        self, name: str, owner: str, lease_s: float, *, now: float | None = None
    ) -> Lease | None:
        at = now_or(now)
        async with self._conn.tx() as db:
            rows = await fetch(db, "SELECT * FROM leases WHERE name = ?", (name,))
            if not rows:
                await db.execute(
                    "INSERT INTO leases (name, owner, epoch, expires_at) VALUES (?, ?, 1, ?)",
                    (name, owner, at + lease_s),
                )
                return Lease(name, owner, 1, at + lease_s)
            current = lease_of(rows[0])
            if current.owner == owner and current.expires_at > at:
                epoch = current.epoch  # renewed
            elif current.expires_at <= at:
                epoch = current.epoch + 1  # taken over (or taken again after it lapsed)
            else:
                return None
            await db.execute(
                "UPDATE leases SET owner = ?, epoch = ?, expires_at = ? WHERE name = ?",
                (owner, epoch, at + lease_s, name),
            )
        return Lease(name, owner, epoch, at + lease_s)

    async def release_lease(self, name: str, owner: str) -> bool:
        async with self._conn.tx() as db:
            # expired now: the next acquirer takes it over with the next epoch
            cursor = await db.execute(
                "UPDATE leases SET expires_at = 0 WHERE name = ? AND owner = ? AND expires_at > 0",
                (name, owner),
            )
            return cursor.rowcount == 1

    async def get_lease(self, name: str) -> Lease | None:
        rows = await self._conn.read("SELECT * FROM leases WHERE name = ?", (name,))
        return lease_of(rows[0]) if rows else None

    async def leases(self) -> list[Lease]:
        rows = await self._conn.read("SELECT * FROM leases ORDER BY name")
        return [lease_of(row) for row in rows]


def lease_of(row: Row) -> Lease:
    return Lease(row["name"], row["owner"], row["epoch"], row["expires_at"])
