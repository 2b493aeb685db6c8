"""npm's replication feed as it works since the 2025 rework: `GET <changes_url>?since=<seq>&limit=<n>`
polled every few seconds (no include_docs, no longpoll/continuous), rows `{seq, id, changes:[{rev}],
deleted?}`, `last_seq` as the next `since`, the first start from the root's `update_seq`.

A row only names a package; the packument says what changed (one row may stand for several
publishes). Sequences are opaque and may jump or go backwards: then we restart from the head and
reconcile every watched package. The cursor is saved only after the touched packages' events were
stored, so a crash re-reads a page, never skips one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import structlog

from watcher.ecosystems.http import RegistryHttp
from watcher.ecosystems.npm.client import rev_generation
from watcher.errors import RegistryError
from watcher.feeds.base import Watchlist
from watcher.feeds.follower import JournalFollower
from watcher.feeds.reconcile import NamesProvider, PackageTracker
from watcher.model import Ecosystem

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ChangeRow:
    seq: str
    id: str
    generation: int | None  # highest `<n>` of the row's `changes[].rev`
    deleted: bool


@dataclass(frozen=True, slots=True)
class ChangesPage:
    rows: list[ChangeRow]
    last_seq: str | None


def seq_text(value: Any) -> str | None:
    """Sequences are opaque JSON values (integers today, `"12-g1AA…"` strings on CouchDB 2+)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        return str(value)
    return None


def seq_number(seq: str | None) -> int | None:
    """The numeric part of a sequence, only to notice jumps and regressions."""
    if seq is None:
        return None
    head = seq.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def parse_changes_page(data: Any) -> ChangesPage:
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise RegistryError("changes feed answered without a `results` list")
    rows: list[ChangeRow] = []
    for raw in data["results"]:
        if not isinstance(raw, dict):
            continue
        doc_id = raw.get("id")
        seq = seq_text(raw.get("seq"))
        if not isinstance(doc_id, str) or seq is None:
            continue
        best: int | None = None
        changes = raw.get("changes")
        if isinstance(changes, list):
            for change in changes:
                gen = rev_generation(change.get("rev")) if isinstance(change, dict) else None
                if gen is not None and (best is None or gen > best):
                    best = gen
        rows.append(ChangeRow(seq, doc_id, best, raw.get("deleted") is True))
    return ChangesPage(rows, seq_text(data.get("last_seq")))


def watched_rows(rows: Iterable[ChangeRow], watchlist: Watchlist) -> dict[str, int | None]:
    """Package name → the newest generation any row announced for it (design docs skipped)."""
    wanted: dict[str, int | None] = {}
    for row in rows:
        if row.id.startswith("_design/") or not watchlist.matches(row.id):
            continue
        previous = wanted.get(row.id)
        if row.id not in wanted or (
            row.generation is not None and (previous or -1) < row.generation
        ):
            wanted[row.id] = row.generation
    return wanted


def root_url_of(changes_url: str) -> str:
    """`…/registry/_changes` → `…/registry/` (its root holds `update_seq`)."""
    parts = urlsplit(changes_url)
    path = parts.path.rstrip("/")
    parent = path.rsplit("/", 1)[0] + "/" if path.endswith("_changes") else path + "/"
    return urlunsplit((parts.scheme, parts.netloc, parent, "", ""))


class NpmChangesFeed(JournalFollower):
    """Follows the changes feed; touches each watched package a row names."""

    ecosystem = Ecosystem.NPM

    def __init__(
        self,
        http: RegistryHttp,
        changes_url: str,
        tracker: PackageTracker,
        watchlist: Watchlist,
        names: NamesProvider,
        *,
        name: str = "npm-changes",
        interval: float = 5.0,
        limit: int = 1000,
        jump_threshold: int = 10_000_000,
        head_check_interval: float = 60.0,
    ) -> None:
        super().__init__(tracker, watchlist, names, name=name, interval=interval)
        self.http = http
        self.changes_url = changes_url
        self.root_url = root_url_of(changes_url)
        self.limit = limit
        self.jump_threshold = jump_threshold
        self.head_check_interval = head_check_interval
        self._last_head_check = time.monotonic()

    async def head(self) -> str:
        response = await self.http.get_json(self.root_url, ecosystem=Ecosystem.NPM.value)
        data = response.data
        seq = seq_text(data.get("update_seq")) if isinstance(data, dict) else None
        if seq is None:
            raise RegistryError(f"{self.root_url} has no update_seq")
        return seq

    async def restart_from_head(self, reason: str, cursor: str | None) -> str:
        head = await super().restart_from_head(reason, cursor)
        self._last_head_check = time.monotonic()
        return head

    async def poll_once(self) -> bool:
        """Read one page and act on it. True when the page was full (read again at once)."""
        store = self.tracker.store
        cursor = await store.get_cursor(self.name)
        if cursor is None:
            await self.watch_began()
            await self.restart_from_head("first start", None)
            return False

        query = urlencode({"since": cursor, "limit": self.limit})
        response = await self.http.get_json(
            f"{self.changes_url}?{query}", ecosystem=Ecosystem.NPM.value
        )
        page = parse_changes_page(response.data)
        before, after = seq_number(cursor), seq_number(page.last_seq)
        if before is not None and after is not None:
            if after < before:
                await self.restart_from_head("sequence went backwards", cursor)
                return False
            if after - before > self.jump_threshold:
                await self.restart_from_head("sequence jumped", cursor)
                return False

        began = await self.watch_began()
        for package, generation in watched_rows(page.rows, self.watchlist).items():
            await self.tracker.touch(
                package, feed=self.name, min_generation=generation, new_since=began
            )
        # (a deletion row too: a full unpublish resolves the name's incident)
        await self.check_internal(row.id for row in page.rows if not row.id.startswith("_design/"))

        if not page.rows:
            # `since` beyond a regressed head answers empty forever: look at the head now and then.
            if time.monotonic() - self._last_head_check >= self.head_check_interval:
                self._last_head_check = time.monotonic()
                head_number = seq_number(await self.head())
                if before is not None and head_number is not None and head_number < before:
                    await self.restart_from_head("head below cursor", cursor)
            return False
        if page.last_seq is not None and page.last_seq != cursor:
            await store.set_cursor(self.name, page.last_seq)
        return len(page.rows) >= self.limit
