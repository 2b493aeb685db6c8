"""The service's durable state behind typed protocols (`api`), with the values they exchange
(`types`). `open_store` picks the implementation from the configuration: the embedded one-file
store (`sqlite`, `store.path`) or the shared one on PostgreSQL (`postgres`, `store.url`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from watcher.store.api import Store


class StoreSettings(Protocol):
    """The part of `config.store` the factory reads."""

    @property
    def path(self) -> Path: ...

    @property
    def synchronous(self) -> Literal["full", "normal"]: ...

    @property
    def database_url(self) -> str | None: ...


async def open_store(
    settings: StoreSettings | str | Path,
    *,
    synchronous: Literal["full", "normal"] | None = None,
    check_integrity: bool = False,
) -> Store:
    """Open the configured store, creating it and bringing its schema up to date. A bare path
    opens the embedded store there (what the operator commands and tests use).
    `check_integrity` (the service, at start): a damaged state raises StateDamaged. A
    `postgresql://` URL (a string, or `store.url`) opens the shared store on that database."""
    from watcher.store.sqlite.store import SqliteStore  # noqa: PLC0415 - the chosen engine only

    url = settings if isinstance(settings, str | Path) else settings.database_url
    if isinstance(url, str) and url.startswith(("postgresql://", "postgres://")):
        from watcher.store.postgres.store import PostgresStore  # noqa: PLC0415

        return await PostgresStore.open(url)
    if isinstance(settings, str | Path):
        return await SqliteStore.open(
            settings, synchronous=synchronous or "full", check_integrity=check_integrity
        )
    return await SqliteStore.open(
        settings.path,
        synchronous=synchronous or settings.synchronous,
        check_integrity=check_integrity,
    )


__all__ = ["Store", "StoreSettings", "open_store"]
