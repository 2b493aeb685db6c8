"""Channels whose endpoint said it is gone (table disabled_channels): a row while disabled, so the
operator commands and `watcher status` see them and an operator can enable one from another
process."""

from __future__ import annotations

from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import now_or
from watcher.store.sqlite.connection import Row
from watcher.store.types import DisabledChannel, Topic


class ChannelRepository(Repository):
    async def disable_channel(
        self, channel: str, reason: str, recheck_at: float, *, now: float | None = None
    ) -> None:
        """The endpoint said it is gone: record it (keeping when this outage began)."""
        async with self._conn.tx() as db:
            await db.execute(
                "INSERT INTO disabled_channels (channel, reason, disabled_at, recheck_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (channel) DO UPDATE SET "
                "reason = excluded.reason, recheck_at = excluded.recheck_at",
                (channel, reason, now_or(now), recheck_at),
            )

    async def enable_channel(self, channel: str) -> bool:
        async with self._conn.tx() as db:
            cursor = await db.execute("DELETE FROM disabled_channels WHERE channel = ?", (channel,))
            enabled = cursor.rowcount == 1
        if enabled:
            self._notifications.notify(Topic.OUTBOX)
        return enabled

    async def clear_disabled_channels(self) -> int:
        """At start: every channel gets a fresh try (its configuration may have been fixed)."""
        async with self._conn.tx() as db:
            cursor = await db.execute("DELETE FROM disabled_channels")
            return cursor.rowcount

    async def disabled_channel(self, channel: str) -> DisabledChannel | None:
        rows = await self._conn.read(
            "SELECT * FROM disabled_channels WHERE channel = ?", (channel,)
        )
        return disabled_channel_of(rows[0]) if rows else None

    async def disabled_channels(self) -> list[DisabledChannel]:
        rows = await self._conn.read("SELECT * FROM disabled_channels ORDER BY channel")
        return [disabled_channel_of(row) for row in rows]


def disabled_channel_of(row: Row) -> DisabledChannel:
    return DisabledChannel(
        channel=row["channel"],
        reason=row["reason"],
        disabled_at=row["disabled_at"],
        recheck_at=row["recheck_at"],
    )
