"""Small helpers for tests that put state into a store through its protocols."""

from __future__ import annotations

from collections.abc import Sequence

from watcher.model import Release
from watcher.store.api import ReleaseQueue
from watcher.store.types import CursorWrite, FeedBatch, SeenRelease, StoredRelease


async def record_releases(
    store: ReleaseQueue,
    releases: Sequence[Release],
    feed: str,
    cursor: str,
    *,
    baselines: Sequence[Release] = (),
    now: float | None = None,
) -> list[StoredRelease]:
    """Releases as pending (baselines first) and the feed's cursor after them, in one batch."""
    seen = [SeenRelease(r, feed, baseline=True) for r in baselines]
    seen += [SeenRelease(r, feed) for r in releases]
    return await store.record_batch(FeedBatch(seen, cursor=CursorWrite(feed, cursor)), now=now)
