"""The embedded store: one SQLite file (WAL), the default for one instance.

`SqliteStore` is the facade that satisfies every protocol of `watcher.store.api`: it composes
one repository per table group over one shared connection. Open it through
`watcher.store.open_store` (or `SqliteStore.open(path)`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from watcher.store.notify import LocalNotifications
from watcher.store.sqlite.connection import Connection
from watcher.store.sqlite.repositories import Repositories


class SqliteStore(Repositories):
    """Every concern over one connection; `await store.close()` when done (or `async with`)."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection, LocalNotifications())

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        synchronous: Literal["full", "normal"] = "full",
        check_integrity: bool = False,
    ) -> SqliteStore:
        """Open (creating if needed) and bring the schema up to date (after SQLite's
        `quick_check` with `check_integrity`: StateDamaged when it fails)."""
        return cls(
            await Connection.open(path, synchronous=synchronous, check_integrity=check_integrity)
        )

    @property
    def path(self) -> Path:
        return self._conn.path

    @property
    def location(self) -> str:
        return str(self._conn.path)

    @property
    def connection(self) -> Connection:
        """The SQLite connection, for this package's own tools and tests."""
        return self._conn

    @property
    def notifications(self) -> LocalNotifications:
        return self._notifications

    async def schema_version(self) -> int:
        return await self._conn.schema_version()

    async def close(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
