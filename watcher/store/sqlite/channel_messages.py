"""Messages a channel posted and can edit later (table channel_messages): Slack's `ts` of an
incident's first message, so updates thread under it and the resolution edits it, and a retried
opening page after a crash is not posted twice."""

from __future__ import annotations

from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import now_or
from watcher.store.types import ChannelMessage


class ChannelMessageRepository(Repository):
    async def record_channel_message(
        self,
        channel: str,
        dedup_key: str,
        remote_channel: str,
        ref: str,
        *,
        now: float | None = None,
    ) -> bool:
        """Keep the first message's reference; False (and nothing changed) when one is kept."""
        async with self._conn.tx() as db:
            cursor = await db.execute(
                "INSERT INTO channel_messages (channel, dedup_key, remote_channel, ref, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel, dedup_key) DO NOTHING",
                (channel, dedup_key, remote_channel, ref, now_or(now)),
            )
            return cursor.rowcount == 1

    async def channel_message(self, channel: str, dedup_key: str) -> ChannelMessage | None:
        rows = await self._conn.read(
            "SELECT * FROM channel_messages WHERE channel = ? AND dedup_key = ?",
            (channel, dedup_key),
        )
        if not rows:
            return None
        row = rows[0]
        return ChannelMessage(
            channel=row["channel"],
            dedup_key=row["dedup_key"],
            remote_channel=row["remote_channel"],
            ref=row["ref"],
            created_at=row["created_at"],
            resolved_at=row["resolved_at"],
        )

    async def mark_channel_message_resolved(
        self, channel: str, dedup_key: str, *, now: float | None = None
    ) -> None:
        async with self._conn.tx() as db:
            await db.execute(
                "UPDATE channel_messages SET resolved_at = ? WHERE channel = ? AND dedup_key = ?",
                (now_or(now), channel, dedup_key),
            )
