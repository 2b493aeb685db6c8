"""The feed protocol, its events and the state a feed keeps between runs.

One rule under every feed: the package document is the truth, a feed is only a hint. Whatever
touched a package, its full version (and file) set is diffed against `PackageState`, so additions
and removals are both seen however the touch came. A feed's cursor is saved only after the events
it produced were handed to the `EventSink`, which returns once they are durably stored: a crash
repeats work, never skips it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

import structlog

from watcher import metrics
from watcher.model import Ecosystem, Release

# the feed memory is the store's to keep; re-exported for the feeds
from watcher.store.types import PackageState as PackageState  # noqa: PLC0414

log = structlog.get_logger(__name__)


# ------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class ReleaseSeen:
    """A version (or, on PyPI, new files of a version) not seen before: scan it and maybe page.
    `release.artifacts` holds only the files that are new."""

    release: Release
    feed: str
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class BaselineSeen:
    """First sight of a package: its newest existing release, to scan as the baseline without
    paging. Only releases after it page."""

    release: Release
    feed: str
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class VersionRemoved:
    """A version (or one file of it, when `filename` is set) left the registry: unpublished on
    npm, removed or yanked on PyPI. The containment watcher uses these."""

    ecosystem: Ecosystem
    name: str
    version: str
    feed: str
    seen_at: datetime
    reason: str = "unpublished"  # unpublished | yanked | removed
    filename: str | None = None
    removed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PackageUnpublished:
    """The whole package is gone (npm tombstone or 404 after we had seen versions)."""

    ecosystem: Ecosystem
    name: str
    versions: tuple[str, ...]
    feed: str
    seen_at: datetime
    unpublished_at: datetime | None = None


FeedEvent = ReleaseSeen | BaselineSeen | VersionRemoved | PackageUnpublished


# ------------------------------------------------------------------------------------- state


@runtime_checkable
class FeedStateStore(Protocol):
    """Durable feed memory; the SQLite store implements it."""

    async def get_cursor(self, feed: str) -> str | None: ...

    async def set_cursor(self, feed: str, cursor: str) -> None: ...

    async def get_package_state(self, ecosystem: Ecosystem, name: str) -> PackageState | None: ...

    async def set_package_state(
        self, ecosystem: Ecosystem, name: str, state: PackageState
    ) -> None: ...

    async def known_packages(self, ecosystem: Ecosystem) -> list[str]: ...


class EventSink(Protocol):
    """Stores events (releases as pending); returns only once they are durable."""

    async def __call__(self, events: Sequence[FeedEvent]) -> None: ...


# --------------------------------------------------------------------------------- watchlist


@dataclass(frozen=True, slots=True)
class Watchlist:
    """Exact names plus glob patterns such as `@acme/*` (patterns only match in feed mode, where
    the feed names packages we did not know of)."""

    names: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[str]) -> Watchlist:
        names: set[str] = set()
        patterns: list[str] = []
        for entry in entries:
            if any(ch in entry for ch in "*?["):
                patterns.append(entry)
            else:
                names.add(entry)
        return cls(frozenset(names), tuple(patterns))

    def matches(self, name: str) -> bool:
        return name in self.names or any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


# ---------------------------------------------------------------------------------- the loop


class Feed(Protocol):
    """One way of learning about releases. The daemon only calls `run` (and reads the health
    fields for /readyz); it never branches on the registry."""

    name: str
    ecosystem: Ecosystem
    interval: float
    last_success: float | None  # unix time of the last iteration that completed

    async def run(self, stop: asyncio.Event) -> None: ...


def record_iteration(ecosystem: Ecosystem, feed: str, ok: bool) -> float | None:
    """Count one iteration; return the success time to store in `last_success` (None on error)."""
    metrics.FEED_POLLS.labels(ecosystem.value, feed, "ok" if ok else "error").inc()
    if not ok:
        return None
    now = time.time()
    metrics.FEED_LAST_SUCCESS.labels(ecosystem.value, feed).set(now)
    return now


def error_backoff(consecutive_errors: int, interval: float, ceiling: float = 300.0) -> float:
    """Delay after a failed iteration: grows with repeated failures, never below the interval."""
    return max(interval, min(ceiling, interval * float(2 ** min(consecutive_errors, 8))))


def count_events(ecosystem: Ecosystem, feed: str, events: Sequence[FeedEvent]) -> None:
    for event in events:
        kind = {
            ReleaseSeen: "release",
            BaselineSeen: "baseline",
            VersionRemoved: "removed",
            PackageUnpublished: "unpublished",
        }[type(event)]
        metrics.FEED_EVENTS.labels(ecosystem.value, feed, kind).inc()
