"""What every repository of the embedded store shares: the connection and the notifications."""

from __future__ import annotations

from watcher.store.notify import LocalNotifications
from watcher.store.sqlite.connection import Connection


class Repository:
    """One concern's queries over the shared connection. The store composes them."""

    def __init__(self, connection: Connection, notifications: LocalNotifications) -> None:
        self._conn = connection
        self._notifications = notifications
