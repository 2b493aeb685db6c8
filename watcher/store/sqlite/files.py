"""Direct access to a state file, for tests and repair tools: plain statements on a file that
may be open elsewhere (WAL). The service never uses this; it goes through `SqliteStore`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def query(path: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of one statement (a PRAGMA or a SELECT)."""
    with sqlite3.connect(path) as db:
        return list(db.execute(sql, params).fetchall())


def execute(path: str | Path, *statements: str | tuple[str, Sequence[Any]]) -> None:
    """Run statements in autocommit mode (each on its own, as the sqlite3 shell would)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            sql, params = (statement, ()) if isinstance(statement, str) else statement
            db.execute(sql, params)
    finally:
        db.close()


def tables(path: str | Path) -> set[str]:
    return {row[0] for row in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
