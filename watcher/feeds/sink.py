"""Feed events into the store: what a feed saw becomes one `FeedBatch`, stored in one transaction.

The store knows releases, removals, package states and cursors, not feed events; this is the one
place that maps the one onto the other.
"""

from __future__ import annotations

from collections.abc import Sequence

from watcher.feeds.base import (
    BaselineSeen,
    FeedEvent,
    PackageUnpublished,
    ReleaseSeen,
    VersionRemoved,
)
from watcher.model import Ecosystem
from watcher.store.api import ReleaseQueue
from watcher.store.types import (
    CursorWrite,
    FeedBatch,
    PackageState,
    SeenRelease,
    SeenRemoval,
    StoredRelease,
)


def feed_batch(
    events: Sequence[FeedEvent],
    *,
    cursor: CursorWrite | None = None,
    package_states: Sequence[tuple[Ecosystem, str, PackageState]] = (),
) -> FeedBatch:
    """Releases (baselines marked) in event order; an unpublished package is a removal of each
    of its versions."""
    releases: list[SeenRelease] = []
    removals: list[SeenRemoval] = []
    for event in events:
        if isinstance(event, ReleaseSeen | BaselineSeen):
            baseline = isinstance(event, BaselineSeen)
            releases.append(SeenRelease(event.release, event.feed, baseline))
        elif isinstance(event, VersionRemoved):
            removals.append(
                SeenRemoval(
                    ecosystem=event.ecosystem,
                    name=event.name,
                    version=event.version,
                    reason=event.reason,
                    filename=event.filename,
                    removed_at=event.removed_at,
                    feed=event.feed,
                )
            )
        elif isinstance(event, PackageUnpublished):
            removals += [
                SeenRemoval(
                    ecosystem=event.ecosystem,
                    name=event.name,
                    version=version,
                    reason="unpublished",
                    removed_at=event.unpublished_at,
                    feed=event.feed,
                )
                for version in event.versions
            ]
    return FeedBatch(releases, removals, package_states, cursor)


async def record_events(
    store: ReleaseQueue,
    events: Sequence[FeedEvent],
    *,
    cursor: CursorWrite | None = None,
    package_states: Sequence[tuple[Ecosystem, str, PackageState]] = (),
    now: float | None = None,
) -> list[StoredRelease]:
    """Store the events durably; returns the releases that are new or got new files."""
    batch = feed_batch(events, cursor=cursor, package_states=package_states)
    return await store.record_batch(batch, now=now)


class StoreSink:
    """The feeds' `EventSink` over a store: returns once the events are durable."""

    def __init__(self, store: ReleaseQueue) -> None:
        self.store = store

    async def __call__(self, events: Sequence[FeedEvent]) -> None:
        await record_events(self.store, events)
