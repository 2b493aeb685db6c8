"""Notifications across replicas: LISTEN/NOTIFY on one channel per topic.

A change is told to this process's listeners at once (as the embedded store does) and sent as a
NOTIFY for the other replicas; a listener task on its own connection forwards the others' into
this process. The payload names the sending store, so a replica does not hear itself twice. When
the server is away the listener reconnects; subscribers poll meanwhile, as they always do.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import psycopg
import structlog

from watcher.store.notify import LocalNotifications
from watcher.store.types import Topic

log = structlog.get_logger(__name__)

CHANNELS = {topic: f"watcher_{topic.value}" for topic in Topic}
_TOPICS = {channel: topic for topic, channel in CHANNELS.items()}


class PgNotifications(LocalNotifications):
    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self.token = uuid.uuid4().hex
        self._sending: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._sender: psycopg.AsyncConnection[Any] | None = None

    def start(self) -> None:
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    def notify(self, topic: Topic) -> None:
        super().notify(topic)
        task = asyncio.get_running_loop().create_task(self._send(Topic(topic)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, topic: Topic) -> None:
        async with self._send_lock:
            try:
                if self._sender is None or self._sender.closed:
                    self._sender = await psycopg.AsyncConnection.connect(
                        self._url, autocommit=True, connect_timeout=5
                    )
                await self._sender.execute(
                    "SELECT pg_notify(%s, %s)", (CHANNELS[topic], self.token)
                )
            except psycopg.Error as exc:  # the others poll; a lost wake-up only delays them
                log.warning("store_notify_failed", topic=topic.value, error=str(exc)[:200])
                self._sender = None

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5
                ) as conn:
                    for channel in CHANNELS.values():
                        await conn.execute(f"LISTEN {channel}")
                    backoff = 0.5
                    async for note in conn.notifies():
                        if note.payload != self.token and note.channel in _TOPICS:
                            super().notify(_TOPICS[note.channel])
            except psycopg.Error as exc:
                log.warning("store_listen_lost", error=str(exc)[:200], retry_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._sender is not None:
            await self._sender.close()
