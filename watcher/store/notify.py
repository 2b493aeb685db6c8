"""In-process notifications: the listeners of this process, called after a committed change.

The embedded store uses it as is (its only writer that matters is this process); a store shared by
several processes would also forward what other processes notify (e.g. LISTEN/NOTIFY) into it.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from watcher.store.api import Listener
from watcher.store.types import Topic

log = structlog.get_logger(__name__)


class LocalNotifications:
    def __init__(self) -> None:
        self._listeners: dict[Topic, list[Listener]] = {topic: [] for topic in Topic}

    def subscribe(self, topic: Topic, listener: Listener) -> Callable[[], None]:
        listeners = self._listeners[Topic(topic)]
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    def notify(self, topic: Topic) -> None:
        for listener in list(self._listeners[Topic(topic)]):
            try:
                listener()
            except Exception:  # a listener's bug must not undo or fail a committed write
                log.exception("store_listener_failed", topic=str(topic))
