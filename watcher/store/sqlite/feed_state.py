"""Feed cursors, per-package state and removals (tables feed_cursors, packages, removals)."""

from __future__ import annotations

import orjson

from watcher.model import Ecosystem
from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import now_or, to_json
from watcher.store.sqlite.connection import Db
from watcher.store.types import Cursor, PackageState, Removal, SeenRemoval
from watcher.timefmt import epoch


class FeedStateRepository(Repository):
    async def get_cursor(self, feed: str) -> str | None:
        rows = await self._conn.read("SELECT cursor FROM feed_cursors WHERE feed = ?", (feed,))
        return rows[0]["cursor"] if rows else None

    async def set_cursor(
        self, feed: str, cursor: str, *, epoch: int | None = None, now: float | None = None
    ) -> None:
        """`epoch` is ignored: one service writes a state file, so there is no stale leader."""
        async with self._conn.tx() as db:
            await write_cursor(db, feed, cursor, now_or(now))

    async def cursors(self) -> list[Cursor]:
        rows = await self._conn.read(
            "SELECT feed, cursor, updated_at FROM feed_cursors ORDER BY feed"
        )
        return [Cursor(r["feed"], r["cursor"], r["updated_at"]) for r in rows]

    async def get_package_state(self, ecosystem: Ecosystem, name: str) -> PackageState | None:
        rows = await self._conn.read(
            "SELECT versions, files, yanked, etag, generation FROM packages "
            "WHERE ecosystem = ? AND name = ?",
            (Ecosystem(ecosystem).value, name),
        )
        if not rows:
            return None
        row = rows[0]
        return PackageState(
            versions=frozenset(orjson.loads(row["versions"])),
            files=frozenset(orjson.loads(row["files"])),
            yanked=frozenset(orjson.loads(row["yanked"])),
            etag=row["etag"],
            generation=row["generation"],
        )

    async def set_package_state(
        self, ecosystem: Ecosystem, name: str, state: PackageState, *, now: float | None = None
    ) -> None:
        async with self._conn.tx() as db:
            await write_package_state(db, Ecosystem(ecosystem), name, state, now_or(now))

    async def known_packages(self, ecosystem: Ecosystem) -> list[str]:
        rows = await self._conn.read(
            "SELECT name FROM packages WHERE ecosystem = ? ORDER BY name",
            (Ecosystem(ecosystem).value,),
        )
        return [row["name"] for row in rows]

    async def removals(self, ecosystem: Ecosystem, name: str, version: str) -> list[Removal]:
        rows = await self._conn.read(
            "SELECT * FROM removals WHERE ecosystem = ? AND name = ? AND version = ? "
            "ORDER BY seen_at",
            (Ecosystem(ecosystem).value, name, version),
        )
        return [
            Removal(
                ecosystem=Ecosystem(r["ecosystem"]),
                name=r["name"],
                version=r["version"],
                filename=r["filename"] or None,
                reason=r["reason"],
                removed_at=r["removed_at"],
                seen_at=r["seen_at"],
            )
            for r in rows
        ]


# ------------------------------------------------------------------ statements inside a transaction


async def write_cursor(db: Db, feed: str, cursor: str, at: float) -> None:
    await db.execute(
        "INSERT INTO feed_cursors (feed, cursor, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (feed) DO UPDATE SET cursor = excluded.cursor, "
        "updated_at = excluded.updated_at",
        (feed, cursor, at),
    )


async def write_package_state(
    db: Db, ecosystem: Ecosystem, name: str, state: PackageState, at: float
) -> None:
    await db.execute(
        "INSERT INTO packages (ecosystem, name, versions, files, yanked, etag, generation, "
        "first_seen, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (ecosystem, name) DO UPDATE SET versions = excluded.versions, "
        "files = excluded.files, yanked = excluded.yanked, etag = excluded.etag, "
        "generation = excluded.generation, updated_at = excluded.updated_at",
        (
            ecosystem.value,
            name,
            to_json(sorted(state.versions)),
            to_json(sorted(state.files)),
            to_json(sorted(state.yanked)),
            state.etag,
            state.generation,
            at,
            at,
        ),
    )


async def write_removal(db: Db, removal: SeenRemoval, at: float) -> None:
    await db.execute(
        "INSERT OR IGNORE INTO removals (ecosystem, name, version, filename, reason, removed_at, "
        "seen_at, feed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            Ecosystem(removal.ecosystem).value,
            removal.name,
            removal.version,
            removal.filename or "",
            removal.reason,
            epoch(removal.removed_at),
            at,
            removal.feed,
        ),
    )
