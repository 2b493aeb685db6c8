"""`watcher check-config --online`: every watched name read once from its registry, the way the
poll feed reads it, so a typo in `packages:` is caught before the service starts (it would
otherwise show as `watcher_packages_not_found` and under `not found on the registry` later).

Exact names only: a pattern (`@acme/*`) is matched against what a changes feed names, there is
nothing to look up. Read-only; nothing is stored.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from watcher.config import Config
from watcher.ecosystems.base import FeedContext
from watcher.errors import RegistryError
from watcher.feeds.base import FeedEvent, PackageState
from watcher.feeds.reconcile import Missing, NotModified, PackageSource
from watcher.model import Ecosystem

FOUND = "found"
NOT_FOUND = "not found on the registry"
UNREADABLE = "could not be read"


@dataclass(frozen=True, slots=True)
class NameCheck:
    ecosystem: Ecosystem
    name: str
    verdict: str  # FOUND | NOT_FOUND | UNREADABLE
    detail: str = ""  # versions listed, or why it could not be read


class _NoMemory:
    """The feeds' state store, empty: a look-up reads afresh and remembers nothing."""

    async def get_cursor(self, feed: str) -> str | None:
        return None

    async def set_cursor(self, feed: str, cursor: str) -> None:
        return None

    async def get_package_state(self, ecosystem: Ecosystem, name: str) -> PackageState | None:
        return None

    async def set_package_state(self, ecosystem: Ecosystem, name: str, state: PackageState) -> None:
        return None

    async def known_packages(self, ecosystem: Ecosystem) -> list[str]:
        return []


async def _no_sink(events: Sequence[FeedEvent]) -> None:
    return None


async def check_names(config: Config) -> list[NameCheck]:
    """Each exact watched name of each ecosystem, read from the registry it is served by."""
    from watcher.service.daemon import RECONCILE_PERIOD, connect_registries  # noqa: PLC0415

    http, registries = connect_registries(config)
    results: list[NameCheck] = []
    try:
        for eco, registry in registries.items():
            names = [p.name for p in config.packages_for(eco) if "*" not in p.name]
            built = registry.feeds(
                FeedContext(
                    http=http,
                    store=_NoMemory(),
                    sink=_no_sink,
                    section=config.registries.for_ecosystem(eco),
                    names=names,
                    reconcile_period=RECONCILE_PERIOD,
                )
            )
            source = built.trackers[0].source
            for name in names:
                results.append(await _check(eco, name, source))
    finally:
        await http.close()
    return results


async def _check(eco: Ecosystem, name: str, source: PackageSource) -> NameCheck:
    try:
        fetched = await source.fetch(source.canonical(name), None)
    except RegistryError as exc:
        return NameCheck(eco, name, UNREADABLE, str(exc)[:300])
    if isinstance(fetched, Missing):
        return NameCheck(eco, name, NOT_FOUND)
    if isinstance(fetched, NotModified):  # not asked conditionally: cannot happen
        return NameCheck(eco, name, FOUND)
    count = len(fetched.releases)
    return NameCheck(eco, name, FOUND, f"{count:,} version{'s' if count != 1 else ''}")


def print_checks(checks: Sequence[NameCheck], config: Config, out: TextIO = sys.stdout) -> bool:
    """The check's lines under the plan; True when every name was found."""
    patterns = [p for p in config.packages if "*" in p.name]
    out.write("online (each watched name read from its registry):\n")
    width = max((len(c.ecosystem.value) for c in checks), default=4)
    for check in checks:
        line = f"  {check.ecosystem.value:<{width}} {check.name}: {check.verdict}"
        if check.detail:
            line += f" ({check.detail})"
        if check.verdict == NOT_FOUND:
            line += " — a typo in packages:, the wrong registry, or not published yet"
        out.write(line + "\n")
    for entry in patterns:
        out.write(
            f"  {entry.ecosystem.value} {entry.name}: a pattern, matched as feeds name packages\n"
        )
    return all(c.verdict == FOUND for c in checks)


def online_check(config: Config) -> bool:
    return print_checks(asyncio.run(check_names(config)), config)
