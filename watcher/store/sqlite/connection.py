"""The one connection to the state file (aiosqlite, WAL) and the transactions over it.

Several coroutines share the connection; an asyncio lock keeps each transaction whole. Other
processes (the operator commands) open their own connection to the same file; SQLite's write lock
and `busy_timeout` order them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from watcher.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from watcher.store.types import StateDamaged, StoreError

Row = aiosqlite.Row
Db = aiosqlite.Connection


class Connection:
    """Open with `await Connection.open(path)`."""

    def __init__(self, db: Db, path: Path) -> None:
        self.db = db
        self.path = path
        self.lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        synchronous: Literal["full", "normal"] = "full",
        check_integrity: bool = False,
    ) -> Connection:
        """Open (creating if needed) and bring the schema up to date. `check_integrity` runs
        SQLite's `quick_check` first (the service does, at start): a damaged file raises
        StateDamaged instead of being migrated or written to."""
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous: expected 'full' or 'normal', got {synchronous!r}")
        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA busy_timeout = 10000")
            mode = await db.execute_fetchall("PRAGMA journal_mode = WAL")
            if next(iter(mode))[0] != "wal":
                raise StoreError(f"{path}: cannot switch the state file to WAL mode")
            await db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            await db.execute("PRAGMA foreign_keys = ON")
            if check_integrity:
                await _quick_check(db, path)
            conn = cls(db, path)
            await conn._migrate()
        except StoreError:
            await db.close()
            raise
        except aiosqlite.DatabaseError as exc:
            await db.close()
            raise StateDamaged(f"{path}: not a usable state file: {exc}; {_RESTORE}") from None
        except BaseException:
            await db.close()
            raise
        return conn

    async def close(self) -> None:
        async with self.lock:
            try:
                # a clean close folds the WAL back so the file can be copied on its own
                await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                # even when the checkpoint failed (disk full): a connection left open keeps
                # aiosqlite's worker thread alive and the process would never exit
                await self.db.close()

    async def schema_version(self) -> int:
        async with self.lock:
            return await self._user_version()

    async def _user_version(self) -> int:
        rows = await self.db.execute_fetchall("PRAGMA user_version")
        return int(next(iter(rows))[0])

    async def _migrate(self) -> None:
        current = await self._user_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: state schema version {current} is newer than this watcher "
                f"supports ({SCHEMA_VERSION}); upgrade the watcher"
            )
        for target in range(current + 1, SCHEMA_VERSION + 1):
            async with self.tx() as db:
                # another process may have migrated while we waited for the write lock
                if await self._user_version() >= target:
                    continue
                for statement in MIGRATIONS[target - 1]:
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {target}")

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Db]:
        """One write transaction, whole or not at all."""
        async with self.lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Db]:
        """Several reads with nothing of ours in between."""
        async with self.lock:
            yield self.db

    async def read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        async with self.lock:
            return list(await self.db.execute_fetchall(sql, params))


_RESTORE = (
    "stopping rather than starting afresh over it: restore the newest backup "
    "(docs/operations.md#damaged-state-file)"
)


async def _quick_check(db: Db, path: Path) -> None:
    """SQLite's structural check (pages, b-trees, records; not index contents): linear in the
    file's size, a second or two for a large state file."""
    try:
        rows = [str(r[0]) for r in await db.execute_fetchall("PRAGMA quick_check(5)")]
    except aiosqlite.DatabaseError as exc:
        rows = [str(exc)]
    if rows != ["ok"]:
        raise StateDamaged(
            f"{path}: the state file is damaged (SQLite quick_check: {'; '.join(rows)}); {_RESTORE}"
        )


async def fetch(db: Db, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
    return list(await db.execute_fetchall(sql, params))
