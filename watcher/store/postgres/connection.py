"""A pool of connections to one PostgreSQL database (psycopg 3, psycopg-pool) offering what the
embedded store's repositories use: `tx()` (one write transaction), `reading()`, `read()`.

Write transactions are serialised across every replica by a transaction-scoped advisory lock, as
SQLite's write lock serialises writers on one file: the repositories' read-then-write steps (a
lease takeover, an incident opened once, a package's releases claimed in order) stay correct on
several machines, and ids are handed out in commit order (a channel's pages leave in id order).
Each write is a few statements, so the lock is held for milliseconds. Reads take no lock.

The repositories' statements are written in SQLite's dialect; `dialect` rewrites the few phrases
that differ, once per statement text.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import RowMaker
from psycopg_pool import AsyncConnectionPool

from watcher.store.postgres.migrations import MIGRATIONS, SCHEMA_VERSION
from watcher.store.postgres.url import mask_password
from watcher.store.types import StoreError

# the advisory lock every write transaction takes (a constant of our own: 'watcher' in ASCII)
WRITE_LOCK = 0x77617463686572


class Row(tuple[Any, ...]):
    """A row read by position or by column name, as aiosqlite's rows are."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[Row]:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._names = names
        return row

    return make


class Result:
    """What `execute` returns: the rows affected and, for an insert, the new row's id."""

    def __init__(self, rowcount: int, lastrowid: int | None) -> None:
        self.rowcount = rowcount
        self.lastrowid = lastrowid


_ID_INSERT = re.compile(r"^\s*INSERT INTO (releases|incident_events|outbox|incidents)\b", re.I)


@lru_cache(maxsize=512)
def dialect(sql: str) -> str:
    """SQLite's phrases in the repositories' statements as PostgreSQL says them."""
    sql = sql.replace("%", "%%")
    sql = re.sub(r":([a-z_]+)\b", r"%(\1)s", sql)
    sql = sql.replace("LIMIT ?", "LIMIT NULLIF(?, -1)")  # SQLite's LIMIT -1: no limit
    sql = sql.replace("MAX(0, ", "GREATEST(0, ")
    sql = re.sub(r"\bWHERE 1\b", "WHERE TRUE", sql)
    sql = sql.replace("AND (1)", "AND (TRUE)")
    if sql.lstrip().upper().startswith("INSERT OR IGNORE INTO"):
        sql = sql.replace("INSERT OR IGNORE INTO", "INSERT INTO", 1) + " ON CONFLICT DO NOTHING"
    if sql.lstrip().upper().startswith("INSERT OR REPLACE INTO MANIFESTS"):
        sql = sql.replace("INSERT OR REPLACE INTO", "INSERT INTO", 1) + (
            " ON CONFLICT (release_id) DO UPDATE SET files = excluded.files, "
            "bytes = excluded.bytes, data = excluded.data"
        )
    return sql.replace("?", "%s")


class Db:
    """One connection inside a transaction (or a read), with aiosqlite's calls."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Result:
        statement = dialect(sql)
        wants_id = _ID_INSERT.match(sql) is not None and "RETURNING" not in sql.upper()
        if wants_id:
            statement += " RETURNING id"
        async with self._conn.cursor(row_factory=_row_factory) as cursor:
            await cursor.execute(statement, params)
            lastrowid = None
            if wants_id:
                row = await cursor.fetchone()
                lastrowid = None if row is None else int(row[0])
            return Result(cursor.rowcount, lastrowid)

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        if not params:
            return
        async with self._conn.cursor() as cursor:
            await cursor.executemany(dialect(sql), params)

    async def execute_fetchall(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[Row]:
        async with self._conn.cursor(row_factory=_row_factory) as cursor:
            await cursor.execute(dialect(sql), params)
            return await cursor.fetchall() if cursor.description else []


class Connection:
    """Open with `await Connection.open(url)`; the pool reconnects after the server comes back."""

    def __init__(self, pool: AsyncConnectionPool[Any], url: str) -> None:
        self.pool = pool
        self.url = url
        self.location = mask_password(url)

    @classmethod
    async def open(cls, url: str, *, max_size: int = 8, timeout_s: float = 10.0) -> Connection:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            timeout=timeout_s,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout_s))},
            name="watcher-store",
        )
        try:
            await pool.open(wait=True, timeout=timeout_s)
        except Exception as exc:
            await pool.close()
            raise StoreError(
                f"{mask_password(url)}: cannot reach PostgreSQL: {_reason(exc)}"
            ) from None
        conn = cls(pool, url)
        try:
            await conn._migrate()
        except BaseException:
            await pool.close()
            raise
        return conn

    async def close(self) -> None:
        await self.pool.close()

    async def schema_version(self) -> int:
        async with self.reading() as db:
            return await _version(db)

    async def _migrate(self) -> None:
        async with self.tx() as db:  # under the write lock: one replica migrates, others wait
            await db.execute(
                "CREATE TABLE IF NOT EXISTS watcher_schema (one INTEGER PRIMARY KEY "
                "CHECK (one = 1), version INTEGER NOT NULL)"
            )
            current = await _version(db)
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.location}: state schema version {current} is newer than this "
                    f"watcher supports ({SCHEMA_VERSION}); upgrade the watcher"
                )
            for target in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target - 1]:
                    await db.execute(statement)
            if current < SCHEMA_VERSION:
                await db.execute(
                    "INSERT INTO watcher_schema (one, version) VALUES (1, ?) "
                    "ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                    (SCHEMA_VERSION,),
                )

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Db]:
        """One write transaction, whole or not at all, serialised with every other writer."""
        try:
            async with self.pool.connection() as conn, conn.transaction():
                db = Db(conn)
                await db.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
                yield db
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.location}: {_reason(exc)}") from None

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Db]:
        """Several reads that see one snapshot."""
        try:
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield Db(conn)
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.location}: {_reason(exc)}") from None

    async def read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        try:
            async with self.pool.connection() as conn:
                return await Db(conn).execute_fetchall(sql, params)
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.location}: {_reason(exc)}") from None


async def _version(db: Db) -> int:
    exists = await db.execute_fetchall("SELECT to_regclass('watcher_schema') IS NOT NULL AS yes")
    if not exists[0]["yes"]:
        return 0
    rows = await db.execute_fetchall("SELECT version FROM watcher_schema")
    return int(rows[0]["version"]) if rows else 0


def _reason(exc: BaseException) -> str:
    """The driver's message without anything that could carry the password (it never does
    today; the URL is masked wherever we print it ourselves)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


async def fetch(db: Db, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
    return await db.execute_fetchall(sql, params)
