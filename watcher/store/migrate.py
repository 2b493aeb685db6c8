"""`watcher store migrate --from state.db --to postgresql://…`: copy an embedded store into an
empty PostgreSQL store, row for row, so a team grows to several replicas without losing history
or re-baselining.

Table-driven: `COPIED` lists every table of the embedded store in foreign-key order, `NOT_COPIED`
the ones left behind and why. A table another change adds joins `COPIED` (or `NOT_COPIED`) in one
line; tests/test_store_migrate.py fails while an embedded table is in neither. Both engines have
the same table and column names (their migrations keep them so), ids are copied as they are and
the identity columns go on from the largest. Everything goes in one PostgreSQL transaction: a
failed copy leaves the target as empty as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcher.store.types import StoreError

# foreign keys point up this list
COPIED: tuple[str, ...] = (
    "feed_cursors",
    "packages",
    "removals",
    "releases",
    "manifests",
    "findings",
    "incidents",
    "incident_notes",
    "incident_events",
    "outbox",
    "disabled_channels",
    "containment_jobs",
    "approvals",
    "origin_checks",
    "channel_messages",
)

NOT_COPIED: dict[str, str] = {
    "leases": "feed leaders and channel senders are elected afresh by the replicas",
    "schema_version": "each engine keeps its own migrations",
    "watcher_schema": "each engine keeps its own migrations",
    "sqlite_sequence": "SQLite's own bookkeeping",
}

BATCH = 500  # rows per INSERT round trip


@dataclass(frozen=True, slots=True)
class Copied:
    table: str
    rows: int


def embedded_tables(path: Path) -> list[str]:
    """Every table in the state file."""
    with _read_only(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return sorted(str(r[0]) for r in rows)


def uncovered(tables: list[str]) -> list[str]:
    """Tables neither copied nor deliberately left behind."""
    return [t for t in tables if t not in COPIED and t not in NOT_COPIED]


async def migrate(
    source: Path, url: str, *, progress: Callable[[Copied], None] = lambda _c: None
) -> list[Copied]:
    """Copy `source` (brought up to its newest schema first) into the empty store at `url`."""
    from watcher.store.postgres.connection import Connection  # noqa: PLC0415
    from watcher.store.sqlite.store import SqliteStore  # noqa: PLC0415

    if not await asyncio.to_thread(source.is_file):
        raise StoreError(f"{source}: no such state file")
    embedded = await SqliteStore.open(source, check_integrity=True)  # its own migrations first
    await embedded.close()
    missing = uncovered(await asyncio.to_thread(embedded_tables, source))
    if missing:
        raise StoreError(f"{source}: tables this watcher does not know how to copy: {missing}")
    target = await Connection.open(url)
    copied: list[Copied] = []
    try:
        async with target.tx() as db:
            present = {
                str(r["table_name"])
                for r in await db.execute_fetchall(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()"
                )
            }
            tables = [t for t in COPIED if t in present]
            source_tables = set(await asyncio.to_thread(embedded_tables, source))
            for table in tables:
                rows = await db.execute_fetchall(f"SELECT 1 FROM {table} LIMIT 1")  # noqa: S608
                if rows:
                    raise StoreError(
                        f"{target.location}: table {table} is not empty; migrate into a new "
                        "database"
                    )
            for table in tables:
                if table not in source_tables:
                    continue
                count = await _copy_table(db, source, table)
                copied.append(Copied(table, count))
                progress(copied[-1])
            for table in tables:
                if await _has_identity(db, table):
                    await db.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                        f"GREATEST((SELECT MAX(id) FROM {table}), 1), "
                        f"(SELECT MAX(id) FROM {table}) IS NOT NULL)"
                    )
    finally:
        await target.close()
    return copied


async def _copy_table(db: Any, source: Path, table: str) -> int:
    target_columns = [
        str(r["column_name"])
        for r in await db.execute_fetchall(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
    ]
    source_columns = await asyncio.to_thread(_columns, source, table)
    only_here = [c for c in source_columns if c not in target_columns]
    if only_here:
        raise StoreError(f"table {table}: columns {only_here} have no place in PostgreSQL")
    columns = [c for c in source_columns if c in target_columns]
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    statement = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
    count = 0
    batches = _batches(source, table, columns)
    while True:
        batch = await asyncio.to_thread(next, batches, None)
        if batch is None:
            return count
        await db.executemany(statement, batch)
        count += len(batch)


async def _has_identity(db: Any, table: str) -> bool:
    rows = await db.execute_fetchall(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = ? AND column_name = 'id' AND is_identity = 'YES'",
        (table,),
    )
    return bool(rows)


def _columns(path: Path, table: str) -> list[str]:
    with _read_only(path) as conn:
        return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]


def _batches(path: Path, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
    # read in batches from whichever worker thread asks next
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        order = "ORDER BY id" if "id" in columns else ""
        cursor = conn.execute(f"SELECT {', '.join(columns)} FROM {table} {order}")  # noqa: S608
        while True:
            rows = cursor.fetchmany(BATCH)
            if not rows:
                return
            yield [tuple(row) for row in rows]
    finally:
        conn.close()


def _read_only(path: Path) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True))
