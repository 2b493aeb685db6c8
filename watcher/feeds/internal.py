"""Internal names on the public registry (`internal_names`): a package name that should exist only
in the owner's private registry showing up on the public one is a dependency-confusion or
wrong-registry publish.

The journal feeds (npm's changes feed, PyPI's journal) see every name the public registry changes;
each row a watch list does not claim is offered to `InternalNameWatch.candidates`, which matches it
against the patterns (compiled once, fnmatch-style). A match is read once on the public registry
(the unit's `PublicLookup`: who published what, when) and handed to the `SightingSink`, which the
service backs with the incident lifecycle (`internal-name-published`, one incident per name).
Without a journal feed, the entries that name one package (no wildcard) are polled by name
(`InternalNamePoll`): a 404 there is the expected state and is never coverage trouble (nothing
here goes through the tracker's not-found accounting).
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog

from watcher.errors import RegistryError
from watcher.feeds.base import Watchlist, record_iteration
from watcher.model import Ecosystem, RunbookStep
from watcher.waits import sleep_or_stop

log = structlog.get_logger(__name__)

RULE = "internal-name-published"


@dataclass(frozen=True, slots=True)
class InternalNameRule:
    """One `internal_names` entry of one ecosystem."""

    pattern: str
    owner: str

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.pattern for ch in "*?[")


@dataclass(frozen=True, slots=True)
class Publish:
    """One version as the public registry's document states it."""

    version: str
    published_at: datetime | None
    publisher: str | None  # npm `_npmUser`, PyPI's uploader where the index says


@dataclass(frozen=True, slots=True)
class PublicPackage:
    """A package bearing an internal name, as the public registry serves it."""

    name: str
    publishes: tuple[Publish, ...]  # oldest first
    maintainers: tuple[str, ...] = ()  # npm `maintainers`, PyPI `ownership.roles`
    url: str | None = None  # the document read (safe form: no credentials)


@dataclass(frozen=True, slots=True)
class InternalNameSighting:
    """A public package matching an internal name, not on the watch list: what the page says."""

    ecosystem: Ecosystem
    rule: InternalNameRule
    package: PublicPackage
    feed: str
    seen_at: datetime
    runbook: tuple[RunbookStep, ...]  # the unit's: its registry's report route, proxy, builds


class PublicLookup(Protocol):
    """The unit's read of one name on the PUBLIC registry (never a scope's private registry)."""

    async def public_package(self, name: str) -> PublicPackage | None:
        """None when the registry does not know the name (the expected state). RegistryError
        when it cannot be read."""
        ...

    def internal_name_runbook(self, package: PublicPackage) -> list[RunbookStep]:
        """Its registry's report route, blocking the name in the private registry's proxy, the
        builds to check."""
        ...


class SightingSink(Protocol):
    """Where sightings go (the service: the incident lifecycle); each returns once stored."""

    async def published(self, sighting: InternalNameSighting) -> None:
        """Page it: open the name's incident, or update it with versions it did not list."""
        ...

    async def gone(self, ecosystem: Ecosystem, name: str, feed: str) -> None:
        """The public registry does not (or no longer) serve `name`: resolve its incident when
        one is open (the registry took it down, or the publisher removed it)."""
        ...


class InternalNames:
    """The `internal_names` rules of one ecosystem, compiled once. `canonical` puts a name in the
    form the registry compares (PyPI: PEP 503), patterns included."""

    def __init__(
        self, rules: Sequence[InternalNameRule], canonical: Callable[[str], str] = str
    ) -> None:
        self.canonical = canonical
        self.exact: dict[str, InternalNameRule] = {}
        self.patterns: list[tuple[re.Pattern[str], InternalNameRule]] = []
        for rule in rules:
            if rule.is_pattern:
                # the pattern in the names' form (PyPI: `Acme_*` → `acme-*`); the wildcards
                # survive normalisation, and fnmatchcase semantics keep case as written
                text = canonical(rule.pattern)
                self.patterns.append((re.compile(fnmatch.translate(text)), rule))
            else:
                self.exact.setdefault(canonical(rule.pattern), rule)
        # one scan rejects the common case (a name matching nothing) in a single regex pass
        self._any = (
            re.compile("|".join(f"(?:{p.pattern})" for p, _ in self.patterns))
            if self.patterns
            else None
        )

    def __bool__(self) -> bool:
        return bool(self.exact or self.patterns)

    def match(self, name: str) -> InternalNameRule | None:
        key = self.canonical(name)
        rule = self.exact.get(key)
        if rule is not None or self._any is None or not self._any.match(key):
            return rule
        for pattern, candidate in self.patterns:
            if pattern.match(key):
                return candidate
        return None

    def exact_rules(self) -> list[tuple[str, InternalNameRule]]:
        """The entries naming one package (these can be polled by name)."""
        return sorted(self.exact.items())


class InternalNameWatch:
    """Matches names a journal feed saw against the internal names, and reads and reports the
    ones that are on the public registry. Names on the watch list are the owner's own releases
    (the tracker follows them): never a sighting."""

    def __init__(
        self,
        ecosystem: Ecosystem,
        names: InternalNames,
        lookup: PublicLookup,
        sink: SightingSink,
        watchlist: Watchlist,
    ) -> None:
        self.ecosystem = ecosystem
        self.names = names
        self.lookup = lookup
        self.sink = sink
        self.watchlist = watchlist

    def watched(self, name: str) -> bool:
        canonical = self.names.canonical
        return self.watchlist.matches(name) or self.watchlist.matches(canonical(name))

    def candidates(self, names: Iterable[str]) -> dict[str, InternalNameRule]:
        """Canonical name → its rule, for the names that match and are not watched."""
        found: dict[str, InternalNameRule] = {}
        for name in names:
            rule = self.names.match(name)
            if rule is not None and not self.watched(name):
                found[self.names.canonical(name)] = rule
        return found

    async def check(
        self, name: str, rule: InternalNameRule, *, feed: str, since: datetime | None
    ) -> bool:
        """Read `name` on the public registry and report it when it has versions (published at
        or after `since`, when given: a journal row can be metadata churn of a package that was
        public before the watch began). True when it was reported."""
        package = await self.lookup.public_package(name)
        if package is None:
            log.debug("internal_name_absent", ecosystem=self.ecosystem.value, package=name)
            await self.sink.gone(self.ecosystem, self.names.canonical(name), feed)
            return False
        fresh = [
            p
            for p in package.publishes
            if since is None or p.published_at is None or p.published_at >= since
        ]
        if not fresh:
            log.warning(
                "internal_name_already_public",
                ecosystem=self.ecosystem.value,
                package=name,
                pattern=rule.pattern,
                versions=len(package.publishes),
                hint="public before the watch began and nothing published since: not paged; "
                "narrow the pattern or block the name in the private registry's proxy",
            )
            return False
        runbook = tuple(self.lookup.internal_name_runbook(package))
        log.info(  # the sink says whether this opened or updated an incident, or nothing new
            "internal_name_public",
            ecosystem=self.ecosystem.value,
            package=name,
            pattern=rule.pattern,
            owner=rule.owner,
            feed=feed,
            versions=[p.version for p in fresh],
        )
        await self.sink.published(
            InternalNameSighting(self.ecosystem, rule, package, feed, datetime.now(UTC), runbook)
        )
        return True

    async def check_all(self, names: Iterable[str], *, feed: str, since: datetime | None) -> None:
        """Every candidate among `names`; a name that cannot be read is logged and retried the
        next time a row names it (its versions will still be there)."""
        for name, rule in self.candidates(names).items():
            try:
                await self.check(name, rule, feed=feed, since=since)
            except RegistryError as exc:
                log.warning(
                    "internal_name_read_failed",
                    ecosystem=self.ecosystem.value,
                    package=name,
                    feed=feed,
                    error=str(exc),
                )


class InternalNamePoll:
    """Poll mode: each entry that names one package is read by name on the public registry every
    `interval`. Absent is the expected state. The sink makes repeats harmless (one incident per
    name, one update per version), so every read that finds the package reports it."""

    def __init__(self, watch: InternalNameWatch, *, name: str, interval: float) -> None:
        self.watch = watch
        self.name = name
        self.ecosystem = watch.ecosystem
        self.interval = interval
        self.last_success: float | None = None

    async def poll_once(self) -> bool:
        """One pass; False when a name could not be read (the others were)."""
        ok = True
        for name, rule in self.watch.names.exact_rules():
            if self.watch.watched(name):
                continue
            try:
                await self.watch.check(name, rule, feed=self.name, since=None)
            except RegistryError as exc:
                ok = False
                log.warning(
                    "internal_name_read_failed",
                    ecosystem=self.ecosystem.value,
                    package=name,
                    feed=self.name,
                    error=str(exc),
                )
        return ok

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            ok = await self.poll_once()
            stamp = record_iteration(self.ecosystem, self.name, ok=ok)
            if ok:
                self.last_success = stamp
            if await sleep_or_stop(stop, self.interval):
                return


def internal_watch(
    ecosystem: Ecosystem,
    rules: Sequence[InternalNameRule],
    sightings: SightingSink | None,
    lookup: PublicLookup,
    watchlist: Watchlist,
    *,
    canonical: Callable[[str], str] = str,
) -> InternalNameWatch | None:
    """The watch a unit hands its journal feed (None when there are no rules or no sink)."""
    if not rules or sightings is None:
        return None
    return InternalNameWatch(
        ecosystem, InternalNames(rules, canonical), lookup, sightings, watchlist
    )


def internal_polls(
    watch: InternalNameWatch | None, *, name: str, interval: float
) -> list[InternalNamePoll]:
    """Poll mode (no journal feed): the by-name poll over the entries without wildcards; the
    patterns cannot be polled, which is said once at start."""
    if watch is None:
        return []
    patterns = [rule.pattern for _, rule in watch.names.patterns]
    if patterns:
        log.warning(
            "internal_names_not_followed",
            ecosystem=watch.ecosystem.value,
            patterns=patterns,
            hint="patterns need the registry's changes feed (registries.<ecosystem>.changes_url);"
            " only entries naming one package are polled",
        )
    if not watch.names.exact:
        return []
    return [InternalNamePoll(watch, name=name, interval=interval)]
