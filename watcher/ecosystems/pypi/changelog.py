"""PyPI's serial-ordered journal: XML-RPC `changelog_since_serial(serial)`, the only global,
uncached change log an index offers (registry-feeds notes §2.1).

Each entry is `[name, version, unix_ts, action, serial]`; actions cover new releases, added files,
yanks and removals (`new release`, `add py3 file x.whl`, `yank release`, `remove file x`, `remove
release`, `remove project`, role changes). An entry is only a hint that names a project: the
project's page says what changed, and it must show a serial at least the entry's (else it is a
stale cache copy and is re-read). Up to 50,000 entries a call, at most about one call a second;
the cursor is the highest serial whose entries were acted on, saved only after the events they
produced are stored, so a crash re-reads a batch, never skips one.
"""

from __future__ import annotations

import asyncio
import time
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.parsers.expat import ExpatError

import structlog

from watcher import metrics
from watcher.ecosystems.http import RegistryHttp, RegistryUnavailable, safe_url
from watcher.ecosystems.pypi.client import normalize
from watcher.errors import RegistryError
from watcher.feeds.base import Watchlist
from watcher.feeds.follower import JournalFollower
from watcher.feeds.reconcile import NamesProvider, PackageTracker
from watcher.model import Ecosystem

log = structlog.get_logger(__name__)

BATCH_LIMIT = 50_000  # warehouse's `.limit(50000)` on changelog_since_serial
_ROLE_ACTIONS = ("add Owner ", "add Maintainer ", "remove Owner ", "remove Maintainer ")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    name: str  # display name as the journal spells it; compare after normalize()
    version: str | None
    timestamp: int | None
    action: str
    serial: int


def parse_entries(result: Any) -> list[JournalEntry]:
    """Entries from a `changelog_since_serial` result; malformed rows are skipped, not fatal."""
    if not isinstance(result, list):
        raise RegistryError("changelog_since_serial did not answer a list")
    entries: list[JournalEntry] = []
    for row in result:
        if not isinstance(row, list | tuple) or len(row) < 5:
            continue
        name, version, stamp, action, serial = row[:5]
        if not isinstance(name, str) or isinstance(serial, bool) or not isinstance(serial, int):
            continue
        entries.append(
            JournalEntry(
                name=name,
                version=version if isinstance(version, str) else None,
                timestamp=stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None,
                action=action if isinstance(action, str) else "",
                serial=serial,
            )
        )
    return entries


class XmlRpcJournal:
    """The two mirroring calls we need, paced to at most one call per `min_interval` seconds."""

    def __init__(
        self,
        http: RegistryHttp,
        url: str,
        *,
        min_interval: float = 1.0,
        attempts: int = 4,
        backoff: float = 1.0,
    ) -> None:
        self.http = http
        self.url = url
        self.min_interval = min_interval
        self.attempts = attempts
        self.backoff = backoff
        self._last_call = 0.0
        self._pace = asyncio.Lock()

    async def last_serial(self) -> int:
        result = await self._call("changelog_last_serial")
        if isinstance(result, bool) or not isinstance(result, int):
            raise RegistryError("changelog_last_serial did not answer an integer")
        return result

    async def since(self, serial: int) -> list[JournalEntry]:
        return parse_entries(await self._call("changelog_since_serial", serial))

    async def _call(self, method: str, *params: Any) -> Any:
        """One XML-RPC call. Transport faults are retried by the HTTP layer; here we retry what
        reaches us intact-looking but is not: a cut-off XML body, or a fault for rate limiting."""
        body = xmlrpc.client.dumps(params, method, allow_none=True).encode()
        delay = self.backoff
        last: Exception | None = None
        for attempt in range(1, self.attempts + 1):
            await self._wait_turn()
            response = await self.http.post(
                self.url,
                body,
                ecosystem=Ecosystem.PYPI.value,
                headers={"Content-Type": "text/xml"},
            )
            try:
                # From the configured index only; expat >= 2.4.1 bounds entity expansion.
                values, _ = xmlrpc.client.loads(response.body)
                return values[0] if values else None
            except xmlrpc.client.Fault as fault:
                # Warehouse wraps its rate limiter's 429 in a fault; other faults will not heal.
                if "429" not in fault.faultString and "TooMany" not in fault.faultString:
                    raise RegistryError(
                        f"{method} fault {fault.faultCode}: {fault.faultString}"
                    ) from None
                last = fault
                reason = "rate_limited"
            except (ExpatError, xmlrpc.client.ResponseError, IndexError) as exc:
                last = exc
                reason = "bad_xml"
            metrics.REGISTRY_RETRIES.labels(Ecosystem.PYPI.value).inc()
            log.info(
                "journal_retry",
                url=safe_url(self.url),
                method=method,
                attempt=attempt,
                reason=reason,
            )
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        raise RegistryUnavailable(f"{safe_url(self.url)} {method} kept failing: {last}")

    async def _wait_turn(self) -> None:
        async with self._pace:
            wait = self._last_call + self.min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_call = time.monotonic()


def watched_entries(entries: Sequence[JournalEntry], watchlist: Watchlist) -> dict[str, int]:
    """Normalized project name → the highest serial any entry announced for it."""
    names = {normalize(n) for n in watchlist.names}
    wanted: dict[str, int] = {}
    for entry in entries:
        name = normalize(entry.name)
        if name in names or watchlist.matches(name) or watchlist.matches(entry.name):
            wanted[name] = max(wanted.get(name, entry.serial), entry.serial)
    return wanted


class PypiChangelogFeed(JournalFollower):
    """Follows the journal; touches each watched project an entry names."""

    ecosystem = Ecosystem.PYPI
    noun = "projects"

    def __init__(
        self,
        journal: XmlRpcJournal,
        tracker: PackageTracker,
        watchlist: Watchlist,
        names: NamesProvider,
        *,
        name: str = "pypi-changelog",
        interval: float = 10.0,
        batch_limit: int = BATCH_LIMIT,
    ) -> None:
        super().__init__(tracker, watchlist, names, name=name, interval=interval)
        self.journal = journal
        self.batch_limit = batch_limit

    async def head(self) -> str:
        return str(await self.journal.last_serial())

    async def poll_once(self) -> bool:
        """Read one batch and act on it. True when the batch was full (read again at once)."""
        store = self.tracker.store
        cursor = await store.get_cursor(self.name)
        if cursor is None or not cursor.isdigit():
            await self.watch_began()
            await self.restart_from_head("first start", cursor)
            return False
        since = int(cursor)
        entries = [e for e in await self.journal.since(since) if e.serial > since]
        if not entries:
            # A journal whose head is now below our cursor (index restored, URL pointed
            # elsewhere) answers empty forever: notice it and start over.
            if await self.journal.last_serial() < since:
                await self.restart_from_head("journal head below cursor", cursor)
            return False

        for entry in entries:
            if entry.action.startswith(_ROLE_ACTIONS) and self._watched(entry.name):
                log.info("pypi_role_change", package=normalize(entry.name), action=entry.action)
        lagging: list[str] = []
        began = await self.watch_began()
        for package, serial in watched_entries(entries, self.watchlist).items():
            result = await self.tracker.touch(
                package, feed=self.name, min_generation=serial, new_since=began
            )
            if result.generation is not None and result.generation < serial:
                lagging.append(package)
        # every action names the project as it stands now (a removal may resolve its incident)
        await self.check_internal(e.name for e in entries)
        if lagging:
            # The tracker gave up waiting for a fresh copy: keep the cursor so the batch is read
            # again after the error backoff, rather than step past files we have not seen.
            raise RegistryError(f"index pages still older than the journal: {sorted(lagging)}")
        await store.set_cursor(self.name, str(max(e.serial for e in entries)))
        return len(entries) >= self.batch_limit

    def _watched(self, name: str) -> bool:
        return bool(watched_entries([JournalEntry(name, None, None, "", 0)], self.watchlist))
