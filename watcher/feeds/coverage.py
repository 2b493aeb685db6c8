"""Watched names the registry says do not exist: zero coverage that would otherwise look healthy.

A typo in `packages:` (or a name not published yet) answers 404 on every poll. The tracker
reports each such name here: a warning once per name, `watcher_packages_not_found{ecosystem}`,
and the list kept in the state file (one feed-cursor row per ecosystem, `coverage/not-found/ECO`,
a JSON list) so `watcher status` shows it under `not found on the registry`. A name that appears
later (its first publish) leaves the list and is picked up as any other.

A restart keeps what the last run learnt: the saved names that are still watched come back at
start (gauge and status right at once, no warning again), and the first poll of each corrects
them (a name published while the service was down leaves the list then).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping

import structlog

from watcher import metrics
from watcher.feeds.base import FeedStateStore
from watcher.model import Ecosystem
from watcher.store.types import Cursor

log = structlog.get_logger(__name__)

_PREFIX = "coverage/not-found/"


def key_for(ecosystem: Ecosystem) -> str:
    return f"{_PREFIX}{ecosystem.value}"


class NotFound:
    """The names of one ecosystem the registry answered "no such package" for, as of their last
    read. `restore` at start takes back the saved names still watched; each read corrects them."""

    def __init__(self, ecosystem: Ecosystem, store: FeedStateStore) -> None:
        self.ecosystem = ecosystem
        self.store = store
        self.names: set[str] = set()
        self._lock = asyncio.Lock()

    async def restore(self, watched: Callable[[str], bool]) -> None:
        """At start: the names an earlier run saved that `watched` still names (a name taken out
        of `packages:` is dropped). Each was warned about when first found missing; not again."""
        saved = await self.store.get_cursor(key_for(self.ecosystem))
        names = _names(saved) if saved is not None else []
        async with self._lock:
            self.names = {name for name in names if watched(name)}
            await self._save()
        if self.names:
            log.info(
                "packages_not_found_restored",
                ecosystem=self.ecosystem.value,
                packages=sorted(self.names),
            )

    async def seen(self, name: str, *, missing: bool) -> None:
        """One read of `name`: `missing` when the registry does not know it."""
        if missing == (name in self.names):
            return
        async with self._lock:
            if missing == (name in self.names):
                return
            if missing:
                self.names.add(name)
                log.warning(
                    "package_not_found",
                    ecosystem=self.ecosystem.value,
                    package=name,
                    hint="check the name in `packages:`; it is watched and picked up if it "
                    "is published later",
                )
            else:
                self.names.discard(name)
                log.info("package_found", ecosystem=self.ecosystem.value, package=name)
            await self._save()

    async def _save(self) -> None:
        metrics.PACKAGES_NOT_FOUND.labels(self.ecosystem.value).set(len(self.names))
        await self.store.set_cursor(key_for(self.ecosystem), json.dumps(sorted(self.names)))


def split_cursors(cursors: Iterable[Cursor]) -> tuple[list[Cursor], Mapping[str, list[str]]]:
    """(the feeds' own cursors, {ecosystem: names not found}) from the stored cursor rows."""
    feeds: list[Cursor] = []
    missing: dict[str, list[str]] = {}
    for cursor in cursors:
        if not cursor.feed.startswith(_PREFIX):
            feeds.append(cursor)
            continue
        names = _names(cursor.cursor)
        if names:
            missing[cursor.feed.removeprefix(_PREFIX)] = names
    return feeds, missing


def _names(saved: str) -> list[str]:
    """The saved JSON list; empty when it is not one (a damaged row is relearnt by the polls)."""
    try:
        value = json.loads(saved)
    except ValueError:
        return []
    return [str(n) for n in value] if isinstance(value, list) else []
