"""The mechanism under the feeds that follow a registry-wide journal (npm's changes feed, PyPI's
changelog): read what came after the cursor, touch the watched packages it names, save the cursor;
when the cursor cannot be trusted, restart from the journal's head and reconcile every watched
package. The registry-specific parts (reading a page, telling a bad cursor) stay in the feeds.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import ClassVar

import structlog

from watcher import metrics
from watcher.errors import RegistryError
from watcher.feeds.base import Watchlist, error_backoff, record_iteration
from watcher.feeds.internal import InternalNameWatch
from watcher.feeds.reconcile import NamesProvider, PackageTracker
from watcher.model import Ecosystem
from watcher.waits import sleep_or_stop

log = structlog.get_logger(__name__)

# The longest wait after repeated failures: a journal feed is the fast path, it retries sooner
# than the generic backoff's ceiling.
ERROR_BACKOFF_CEILING = 120.0


class JournalFollower(ABC):
    """A feed behind a cursor into a registry-wide journal. Subclasses read the journal."""

    ecosystem: Ecosystem
    # What the registry calls a package, for the error a partial reconcile raises.
    noun: ClassVar[str] = "packages"

    def __init__(
        self,
        tracker: PackageTracker,
        watchlist: Watchlist,
        names: NamesProvider,
        *,
        name: str,
        interval: float,
    ) -> None:
        self.tracker = tracker
        self.watchlist = watchlist
        self.names = names
        self.name = name
        self.interval = interval
        self.last_success: float | None = None
        self._errors = 0
        self._began: datetime | None = None
        # names the watch list does not claim, matched against `internal_names` (set by the unit)
        self.internal: InternalNameWatch | None = None

    async def watch_began(self) -> datetime:
        """When this feed first started (kept beside its cursor): a package an entry names for
        the first time (found through a pattern such as `@acme/*`) pages for every version
        published since then."""
        if self._began is None:
            store = self.tracker.store
            key = f"{self.name}/began"
            text = await store.get_cursor(key)
            if text is None:
                text = datetime.now(UTC).isoformat()
                await store.set_cursor(key, text)
            self._began = datetime.fromisoformat(text)
        return self._began

    async def check_internal(self, names: Iterable[str]) -> None:
        """Offer the names a journal page changed to the internal-name watch (when there is one):
        those matching `internal_names` and not watched are read on the public registry."""
        if self.internal is not None:
            await self.internal.check_all(names, feed=self.name, since=await self.watch_began())

    @abstractmethod
    async def head(self) -> str:
        """The journal's current position, as a cursor."""

    @abstractmethod
    async def poll_once(self) -> bool:
        """Read once after the cursor and act on it. True when the read was full (read again at
        once). Raises RegistryError when the cursor must stay where it is."""

    async def reconcile_all(self) -> None:
        """Touch every watched package (first start, or after the cursor was reset)."""
        failures = 0
        for package in await self.names():
            try:
                await self.tracker.touch(package, feed=self.name)
            except RegistryError as exc:
                failures += 1
                log.warning("package_touch_failed", package=package, feed=self.name, error=str(exc))
        if failures:
            raise RegistryError(f"reconcile left {failures} {self.noun} unread")

    async def restart_from_head(self, reason: str, cursor: str | None) -> str:
        """Start over at the head; `cursor` is the one given up (None at first start). Head first,
        then reconcile: anything journaled meanwhile is read again next time."""
        head = await self.head()
        if cursor is not None:
            log.warning(
                "feed_cursor_reset", feed=self.name, reason=reason, cursor=cursor, head=head
            )
            metrics.FEED_CURSOR_RESETS.labels(self.ecosystem.value, self.name).inc()
        await self.reconcile_all()
        await self.tracker.store.set_cursor(self.name, head)
        log.info("feed_started", feed=self.name, cursor=head, reason=reason)
        return head

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                more = await self.poll_once()
            except RegistryError as exc:
                self._errors += 1
                record_iteration(self.ecosystem, self.name, ok=False)
                log.warning("feed_poll_failed", feed=self.name, error=str(exc))
                delay = error_backoff(self._errors, self.interval, ERROR_BACKOFF_CEILING)
                if await sleep_or_stop(stop, delay):
                    return
                continue
            self._errors = 0
            self.last_success = record_iteration(self.ecosystem, self.name, ok=True)
            if not more and await sleep_or_stop(stop, self.interval):
                return
