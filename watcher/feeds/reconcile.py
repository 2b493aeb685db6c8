"""The part every feed shares: touch a package (read its document, diff it against what the store
knows, emit events, remember) and sweep a list of packages at a paced rate.

A feed row only says "look at this package"; `PackageTracker.touch` decides what happened from the
document itself, so coalesced rows, late rows, lost rows and history missed while down are all
recovered the same way. `SweepFeed` is both the poll feed (every watched package each
`poll_interval`, spread over the interval) and the reconcile backstop (a slow loop within a
request budget). Both are generic over `PackageSource`, so npm and PyPI share them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from watcher import metrics
from watcher.errors import RegistryError
from watcher.feeds.base import (
    BaselineSeen,
    EventSink,
    FeedEvent,
    FeedStateStore,
    PackageState,
    PackageUnpublished,
    ReleaseSeen,
    VersionRemoved,
    Watchlist,
    count_events,
    error_backoff,
    record_iteration,
)
from watcher.feeds.coverage import NotFound
from watcher.model import Ecosystem, Release
from watcher.version_order import VersionKey, ascending, newest
from watcher.waits import sleep_or_stop

log = structlog.get_logger(__name__)


# ------------------------------------------------------------------------------ the source


@dataclass(frozen=True, slots=True)
class PackageSnapshot:
    """A package document reduced to what the diff needs."""

    releases: Mapping[str, Release]  # every version the document lists now, with its files
    etag: str | None = None
    generation: int | None = None  # npm `_rev` prefix, PyPI last serial; None when stripped
    removed: Mapping[str, datetime | None] = field(default_factory=dict)  # doc-stated removals
    yanked: frozenset[str] = frozenset()  # versions marked yanked (still listed)
    unpublished: bool = False  # a full-unpublish tombstone
    unpublished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NotModified:
    """The conditional request matched the stored ETag."""


@dataclass(frozen=True, slots=True)
class Missing:
    """The registry does not know the name (never published, or gone)."""


class PackageSource(Protocol):
    """Fetches one package document of one ecosystem (npm packument, PyPI project page)."""

    ecosystem: Ecosystem

    def canonical(self, name: str) -> str:
        """The name as the store keys it (PyPI normalises, npm does not)."""
        ...

    def version_key(self, text: str) -> Any | None:
        """Its ecosystem's version order (see `watcher.version_order`)."""
        ...

    async def fetch(self, name: str, etag: str | None) -> PackageSnapshot | NotModified | Missing:
        """Raises RegistryError when the registry cannot be read."""
        ...


def file_key(version: str, filename: str, sha256: str | None = None) -> str:
    """How an artifact is remembered in `PackageState.files` (neither part contains a `/`).
    With its sha256 when known: a file re-uploaded under the same name (private indexes allow
    overwrites) is new content and must be scanned again."""
    return f"{version}/{filename}" + (f"#sha256={sha256}" if sha256 else "")


# ----------------------------------------------------------------------------------- the diff


@dataclass(frozen=True, slots=True)
class TouchResult:
    name: str
    result: str  # changed | unchanged | not_modified | missing | stale
    events: tuple[FeedEvent, ...] = ()
    generation: int | None = None


def diff_package(
    ecosystem: Ecosystem,
    name: str,
    state: PackageState | None,
    fetched: PackageSnapshot | Missing,
    *,
    feed: str,
    now: datetime,
    new_since: datetime | None = None,
    version_key: VersionKey,
) -> tuple[list[FeedEvent], PackageState]:
    """Pure: what changed between `state` and the document, and the state to remember; events in
    the order of `version_key` (the ecosystem's, from its package source).

    `new_since`: on first sight, versions the document dates at or after this instant are new
    releases rather than history (a package first met through a feed pattern such as `@acme/*`
    after the watch began must page for its first version)."""
    events: list[FeedEvent] = []
    if isinstance(fetched, Missing):
        if state is not None and state.versions:
            versions = tuple(ascending(version_key, state.versions))
            events.append(PackageUnpublished(ecosystem, name, versions, feed, now))
        return events, PackageState()

    current = set(fetched.releases)
    files = {
        file_key(v, a.filename, a.sha256)
        for v, release in fetched.releases.items()
        for a in release.artifacts
    }
    new_state = PackageState(
        versions=frozenset(current),
        files=frozenset(files),
        yanked=frozenset(fetched.yanked & current),
        etag=fetched.etag,
        generation=fetched.generation,
    )
    if state is None:
        # First sight: the newest existing release becomes the baseline; nothing pages.
        fresh = set()
        if new_since is not None:
            fresh = {
                v
                for v, release in fetched.releases.items()
                if release.published_at is not None and release.published_at >= new_since
            }
        history = current - fresh
        chosen = newest(version_key, history - fetched.yanked) or newest(version_key, history)
        if chosen is not None:
            events.append(BaselineSeen(fetched.releases[chosen], feed, now))
        for version in ascending(version_key, fresh):
            events.append(ReleaseSeen(fetched.releases[version], feed, now))
        return events, new_state

    for version in ascending(version_key, current - state.versions):
        events.append(ReleaseSeen(fetched.releases[version], feed, now))
    for version in ascending(version_key, current & state.versions):
        release = fetched.releases[version]
        late = tuple(
            a
            for a in release.artifacts
            if file_key(version, a.filename, a.sha256) not in state.files
        )
        if late and state.files:
            events.append(
                ReleaseSeen(
                    Release(release.ecosystem, release.name, version, release.published_at, late),
                    feed,
                    now,
                )
            )
    gone = state.versions - current
    if gone and fetched.unpublished and not current:
        versions = tuple(ascending(version_key, gone))
        events.append(
            PackageUnpublished(ecosystem, name, versions, feed, now, fetched.unpublished_at)
        )
    else:
        for version in ascending(version_key, gone):
            events.append(
                VersionRemoved(
                    ecosystem, name, version, feed, now, removed_at=fetched.removed.get(version)
                )
            )
        listed = {(v, a.filename) for v, r in fetched.releases.items() for a in r.artifacts}
        for key in sorted(state.files - files):
            version, _, rest = key.partition("/")
            filename = rest.partition("#")[0]
            if version in current and (version, filename) not in listed:
                events.append(
                    VersionRemoved(
                        ecosystem, name, version, feed, now, reason="removed", filename=filename
                    )
                )
    for version in ascending(version_key, (fetched.yanked & current) - state.yanked):
        events.append(VersionRemoved(ecosystem, name, version, feed, now, reason="yanked"))
    return events, new_state


# ---------------------------------------------------------------------------------- the touch


@dataclass(frozen=True, slots=True)
class StaleRetry:
    """How long to wait for a document to catch up with what a feed announced (a CDN copy older
    than the change): jittered backoff from `initial` to `ceiling`, giving up after `give_up_after`
    seconds and proceeding with what we have (the next touch catches up)."""

    initial: float = 1.0
    ceiling: float = 8.0
    give_up_after: float = 60.0


class PackageTracker:
    """Touches packages of one ecosystem. Share one instance between all feeds of an ecosystem:
    touches of the same package are serialised, so two feeds never race on its state."""

    def __init__(
        self,
        source: PackageSource,
        store: FeedStateStore,
        sink: EventSink,
        *,
        stale_retry: StaleRetry | None = None,
        not_found: NotFound | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.sink = sink
        self.stale_retry = stale_retry or StaleRetry()
        # watched names the registry does not know (typos, not yet published)
        self.not_found = not_found or NotFound(source.ecosystem, store)
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def ecosystem(self) -> Ecosystem:
        return self.source.ecosystem

    async def touch(
        self,
        name: str,
        *,
        feed: str,
        min_generation: int | None = None,
        new_since: datetime | None = None,
    ) -> TouchResult:
        """Read `name`'s document, diff it, hand the events to the sink, then remember the new
        state (in that order: a crash in between repeats the events, never loses them).
        `min_generation`: the document must be at least this new (the feed said so).
        `new_since`: see `diff_package`."""
        canonical = self.source.canonical(name)
        lock = self._locks.setdefault(canonical, asyncio.Lock())
        async with lock:
            return await self._touch(canonical, feed, min_generation, new_since)

    async def _touch(
        self, name: str, feed: str, min_generation: int | None, new_since: datetime | None
    ) -> TouchResult:
        eco = self.ecosystem
        state = await self.store.get_package_state(eco, name)
        need_fresh = (
            min_generation is not None
            and state is not None
            and (state.generation is None or state.generation < min_generation)
        )
        etag = state.etag if state is not None and not need_fresh else None
        started = time.monotonic()
        delay = self.stale_retry.initial
        while True:
            fetched = await self.source.fetch(name, etag)
            if isinstance(fetched, NotModified):
                metrics.FEED_PACKAGE_TOUCHES.labels(eco.value, "not_modified").inc()
                return TouchResult(name, "not_modified", (), state.generation if state else None)
            generation = fetched.generation if isinstance(fetched, PackageSnapshot) else None
            behind_feed = (
                min_generation is not None
                and generation is not None
                and generation < min_generation
            )
            if not behind_feed:
                break
            if time.monotonic() - started >= self.stale_retry.give_up_after:
                log.warning(
                    "document_still_stale",
                    ecosystem=eco.value,
                    package=name,
                    generation=generation,
                    wanted=min_generation,
                )
                break
            metrics.FEED_STALE_RETRIES.labels(eco.value).inc()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter only
            delay = min(delay * 2, self.stale_retry.ceiling)

        if (
            isinstance(fetched, PackageSnapshot)
            and state is not None
            and fetched.generation is not None
            and state.generation is not None
            and fetched.generation < state.generation
        ):
            # Older than what we already diffed (a lagging cache): it would invent removals.
            metrics.FEED_PACKAGE_TOUCHES.labels(eco.value, "stale").inc()
            return TouchResult(name, "stale", (), fetched.generation)

        # never seen with a version and the registry does not know it: no coverage at all
        absent = isinstance(fetched, Missing) and (state is None or not state.versions)
        await self.not_found.seen(name, missing=absent)
        now = datetime.now(UTC)
        events, new_state = diff_package(
            eco,
            name,
            state,
            fetched,
            feed=feed,
            now=now,
            new_since=new_since,
            version_key=self.source.version_key,
        )
        if events:
            await self.sink(events)
            count_events(eco, feed, events)
            for event in events:
                if isinstance(event, ReleaseSeen) and event.release.published_at is not None:
                    lag = (now - event.release.published_at).total_seconds()
                    if lag >= 0:
                        metrics.FEED_LAG.labels(eco.value).observe(lag)
                log.info(
                    "feed_event",
                    ecosystem=eco.value,
                    package=name,
                    feed=feed,
                    kind=type(event).__name__,
                    version=_event_version(event),
                )
        if new_state != state:
            await self.store.set_package_state(eco, name, new_state)
        if isinstance(fetched, Missing):
            result = "missing"
        else:
            result = "changed" if events or new_state != state else "unchanged"
        metrics.FEED_PACKAGE_TOUCHES.labels(eco.value, result).inc()
        return TouchResult(name, result, tuple(events), new_state.generation)


def _event_version(event: FeedEvent) -> str | None:
    if isinstance(event, ReleaseSeen | BaselineSeen):
        return event.release.version
    if isinstance(event, VersionRemoved):
        return event.version
    return None


# ---------------------------------------------------------------------------------- the sweep

NamesProvider = Callable[[], Awaitable[Sequence[str]]]


def watched_names(
    watchlist: Watchlist, store: FeedStateStore, ecosystem: Ecosystem
) -> NamesProvider:
    """Exact names plus every known package a pattern matches (found earlier by a changes feed)."""

    async def names() -> list[str]:
        known = await store.known_packages(ecosystem)
        return sorted(watchlist.names | {n for n in known if watchlist.matches(n)})

    return names


class SweepFeed:
    """Touch every watched package once per `interval`, the starts spread evenly over it and never
    faster than `max_rate` per second (the request budget). As the poll feed the interval is
    `poll_interval`; as the reconcile backstop it is the slow loop's period."""

    def __init__(
        self,
        tracker: PackageTracker,
        names: NamesProvider,
        *,
        name: str,
        interval: float,
        max_rate: float | None = None,
        concurrency: int = 4,
    ) -> None:
        self.tracker = tracker
        self.names = names
        self.name = name
        self.ecosystem = tracker.ecosystem
        self.interval = interval
        self.max_rate = max_rate
        self.concurrency = concurrency
        self.last_success: float | None = None
        self._errors = 0

    def _step(self, count: int) -> float:
        step = self.interval / max(count, 1)
        if self.max_rate:
            step = max(step, 1.0 / self.max_rate)
        return step

    async def sweep_once(self, *, spread: bool = False) -> list[TouchResult]:
        """One pass over every watched package. Raises RegistryError after the pass when any
        package could not be read (the others are done)."""
        names = list(await self.names())
        step = self._step(len(names)) if spread else 0.0
        slots = asyncio.Semaphore(self.concurrency)
        results: list[TouchResult] = []
        failures: list[str] = []
        start = time.monotonic()

        async def one(name: str) -> None:
            async with slots:
                try:
                    results.append(await self.tracker.touch(name, feed=self.name))
                except RegistryError as exc:
                    failures.append(name)
                    log.warning(
                        "package_touch_failed",
                        ecosystem=self.ecosystem.value,
                        package=name,
                        feed=self.name,
                        error=str(exc),
                    )

        async with asyncio.TaskGroup() as group:
            for index, name in enumerate(names):
                wait = start + index * step - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                group.create_task(one(name))
        if failures:
            raise RegistryError(f"{len(failures)} of {len(names)} packages could not be read")
        return results

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            cycle_start = time.monotonic()
            try:
                await self.sweep_once(spread=True)
            except RegistryError:
                self._errors += 1
                record_iteration(self.ecosystem, self.name, ok=False)
                if await sleep_or_stop(stop, error_backoff(self._errors, min(self.interval, 5.0))):
                    return
                continue
            self._errors = 0
            self.last_success = record_iteration(self.ecosystem, self.name, ok=True)
            # The spread already used most of the interval; wait out the rest.
            remaining = self.interval - (time.monotonic() - cycle_start)
            if await sleep_or_stop(stop, remaining):
                return


def watchlist_sweep(
    tracker: PackageTracker,
    watchlist: Watchlist,
    *,
    name: str,
    interval: float,
    max_rate: float | None,
) -> SweepFeed:
    """A sweep over the watchlist's names (in the tracker's ecosystem): the poll feed with
    `poll_interval`, the reconcile backstop with its slow period."""
    names = watched_names(watchlist, tracker.store, tracker.ecosystem)
    return SweepFeed(tracker, names, name=name, interval=interval, max_rate=max_rate)


@dataclass(frozen=True, slots=True)
class EcosystemSweeps:
    """An ecosystem's two sweeps over its watchlist, named `<prefix>-poll` and
    `<prefix>-reconcile`: the poll feed (every `poll_interval`, unthrottled unless told) and the
    slow reconcile backstop (every `period`, at most `max_rate` requests a second). `names` is how
    the ecosystem keys a watchlist (PyPI normalizes; npm keeps names as written)."""

    prefix: str
    names: Callable[[Watchlist], Watchlist] = lambda watchlist: watchlist

    def poll(
        self,
        tracker: PackageTracker,
        watchlist: Watchlist,
        *,
        interval: float,
        max_rate: float | None = None,
        name: str | None = None,
    ) -> SweepFeed:
        """The poll feed; `tracker` must wrap the ecosystem's package source."""
        return watchlist_sweep(
            tracker,
            self.names(watchlist),
            name=f"{self.prefix}-poll" if name is None else name,
            interval=interval,
            max_rate=max_rate,
        )

    def reconcile(
        self,
        tracker: PackageTracker,
        watchlist: Watchlist,
        *,
        period: float,
        max_rate: float = 1.0,
        name: str | None = None,
    ) -> SweepFeed:
        """The backstop beside a changes feed: every watched package re-read each `period`."""
        return watchlist_sweep(
            tracker,
            self.names(watchlist),
            name=f"{self.prefix}-reconcile" if name is None else name,
            interval=period,
            max_rate=max_rate,
        )
